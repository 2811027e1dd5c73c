//! What the suites that drive fake coding-agent CLIs share: the calls a
//! fake recorded, their argv, and git in a test repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{Output, run_env, temp_dir};

/// A directory with `bin/TOOL` (each a fake from tests/fixtures), the
/// script as flow.js and the config.
pub fn setup(name: &str, tools: &[&str], script: &str, toml: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    for tool in tools {
        std::fs::copy(
            fixtures.join(format!("fake-{tool}")),
            dir.join("bin").join(tool),
        )
        .unwrap();
    }
    std::fs::write(dir.join("flow.js"), script).unwrap();
    std::fs::write(dir.join("wasmflow.toml"), toml).unwrap();
    dir
}

/// `wasmflow run flow.js --backend BACKEND ARGS` with the fakes first on
/// PATH, each logging to `TOOL.log` (`FAKE_TOOL_LOG`), and `extra` set.
pub fn run_backend(dir: &Path, backend: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let logs: Vec<(String, String)> = std::fs::read_dir(dir.join("bin"))
        .unwrap()
        .flatten()
        .map(|e| {
            let tool = e.file_name().to_string_lossy().into_owned();
            (
                format!("FAKE_{}_LOG", tool.to_uppercase()),
                dir.join(format!("{tool}.log")).display().to_string(),
            )
        })
        .collect();
    let mut env: Vec<(&str, &str)> = vec![("PATH", path.as_str())];
    env.extend(logs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env.extend_from_slice(extra);
    let mut all = vec!["--backend", backend];
    all.extend_from_slice(args);
    run_env(dir, "flow.js", &all, &env)
}

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

/// What every CLI backend reports the same way: an agent that prints
/// nothing stalls, one that exits non-zero is quoted, and repeated quota
/// failures end the run through the circuit breaker (exit 3). The fakes
/// act on the words STALL, CRASH and QUOTA.
pub fn stalls_crashes_and_quota(
    dir: &Path,
    backend: &str,
    extra: &[(&str, &str)],
    quota_words: &str,
) {
    std::fs::write(
        dir.join("flow.js"),
        "return await parallel([() => agent('STALL now', { label: 'staller' }), () => agent('CRASH now', { label: 'crasher' })])\n",
    )
    .unwrap();
    let out = run_backend(
        dir,
        backend,
        // Long enough for the fake (Python) to start on a loaded CI machine.
        &["--json", "--quiet", "--stall-timeout", "3s"],
        extra,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let failures = out.json()["failures"].to_string();
    assert!(
        failures.contains(&format!(
            "stalled: the {backend} CLI printed nothing for 3s"
        )),
        "{failures}"
    );
    assert!(
        failures.contains("exited with") && failures.contains("boom"),
        "{failures}"
    );
    std::fs::write(
        dir.join("flow.js"),
        "for (let i = 0; i < 5; i++) await agent('QUOTA ' + i)\nreturn 1\n",
    )
    .unwrap();
    let out = run_backend(dir, backend, &[], extra);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("circuit breaker") && out.stderr.contains(quota_words),
        "{}",
        out.stderr
    );
}

/// Two more things every CLI backend does alike: an agent with
/// `isolation: 'worktree'` runs in its own checkout of a real repository
/// (removed after, as nothing changed), and a missing executable is
/// refused before any agent (exit 2) with `hint`.
pub fn worktree_and_missing_binary(dir: &Path, backend: &str, extra: &[(&str, &str)], hint: &str) {
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join(".gitignore"), "bin/\n*.log\n").unwrap();
    std::fs::write(
        dir.join("flow.js"),
        "return await agent('look around', { label: 'isolated', isolation: 'worktree' })\n",
    )
    .unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "start"]);
    let before = calls(dir, &format!("{backend}.log")).len();
    let out = run_backend(dir, backend, &["--json"], extra);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let call = &calls(dir, &format!("{backend}.log"))[before];
    assert!(
        call["cwd"]
            .as_str()
            .unwrap()
            .contains("/.wasmflow/worktrees/agent-"),
        "{call}"
    );
    assert!(
        out.json()["notes"].as_array().is_none_or(|n| n.is_empty()),
        "an unchanged worktree is removed"
    );
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
    let mut no_bin = extra.to_vec();
    no_bin.push(("PATH", "/usr/bin:/bin"));
    let out = run_backend(dir, backend, &[], &no_bin);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(hint), "{}", out.stderr);
}
