//! What the suites that drive fake coding-agent CLIs share: the calls a
//! fake recorded, their argv, and git in a test repository.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// What a fake recorded in `dir/log`, one entry per run.
pub fn calls(dir: &Path, log: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(log))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A recorded call's arguments.
pub fn argv(call: &Value) -> Vec<String> {
    call["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// `git -C dir args`, with an author set; its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
