//! The claude backend end to end: the CLI runs a fake `claude` found on
//! PATH (tests/fixtures/fake-claude), which records what it was given.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::fake_cli::{argv, calls, git};
use crate::support::{Output, run_env, temp_dir};

/// A directory with `bin/claude` and the script; returns it.
fn setup(name: &str, script: &str, toml: &str) -> PathBuf {
    let dir = temp_dir(name);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-claude");
    std::fs::copy(&fixture, bin.join("claude")).unwrap();
    std::fs::write(dir.join("flow.js"), script).unwrap();
    std::fs::write(dir.join("wasmflow.toml"), toml).unwrap();
    dir
}

fn claude(dir: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = dir.join("claude.log");
    let mut all = vec!["--backend", "claude"];
    all.extend_from_slice(args);
    run_env(
        dir,
        "flow.js",
        &all,
        &[("PATH", &path), ("FAKE_CLAUDE_LOG", log.to_str().unwrap())],
    )
}

#[test]
fn agents_run_with_the_documented_flags() {
    let dir = setup(
        "claude-flags",
        "return await agent('hello there', { label: 'a', effort: 'high', agentType: 'reviewer', disallowedTools: ['Bash(rm:*)'] })\n",
        "default_model = \"haiku\"\n[claude]\nallowed_tools = [\"Read\", \"Bash(git log:*)\"]\ndisallowed_tools = [\"WebFetch\"]\n",
    );
    let out = claude(&dir, &["--json", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], "claude says: hello there");
    assert_eq!(
        v["tokens"],
        json!({"input": 11, "output": 7, "cache_read": 300, "cache_write": 20})
    );
    let calls = calls(&dir, "claude.log");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        argv(&calls[0]),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
            "--model",
            "claude-haiku-4-5",
            "--effort",
            "high",
            "--agent",
            "reviewer",
            "--allowedTools",
            "Read",
            "Bash(git log:*)",
            "--disallowedTools",
            "WebFetch",
            "Bash(rm:*)",
        ]
    );
    // The prompt goes on stdin, whole.
    assert_eq!(calls[0]["stdin"], "hello there");
    // Built-in prices: haiku at $1 / $5 / $0.10 / $1.25 per million.
    let usd = v["cost"]["total_usd"].as_f64().unwrap();
    let expected = (11.0 * 1.0 + 7.0 * 5.0 + 300.0 * 0.10 + 20.0 * 1.25) / 1e6;
    assert!((usd - expected).abs() < 1e-12, "{usd} vs {expected}");
}

#[test]
fn a_schema_retry_continues_the_session() {
    let dir = setup(
        "claude-schema",
        "return await agent('SCHEMA-RETRY count things', { schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } })\n",
        "default_model = \"sonnet\"\n",
    );
    let out = claude(&dir, &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), json!({"n": 3}));
    let calls = calls(&dir, "claude.log");
    assert_eq!(calls.len(), 2);
    let first = argv(&calls[0]);
    assert!(!first.contains(&"--resume".to_string()));
    assert!(
        calls[0]["stdin"]
            .as_str()
            .unwrap()
            .contains("matches this JSON Schema")
    );
    let second = argv(&calls[1]);
    let i = second
        .iter()
        .position(|a| a == "--resume")
        .expect("resumed");
    // The session the first run reported in its init message.
    assert_eq!(second[i + 1].len(), 36);
    let retry = calls[1]["stdin"].as_str().unwrap();
    assert!(retry.contains("did not match the required JSON Schema"));
    assert!(
        !retry.contains("count things"),
        "the preamble is not paid again: {retry}"
    );
}

#[test]
fn worktrees_are_removed_when_unchanged_and_kept_when_changed() {
    let dir = setup(
        "claude-worktree",
        "return await parallel([\n  () => agent('EDIT the notes', { label: 'editor', isolation: 'worktree' }),\n  () => agent('just look', { label: 'reader', isolation: 'worktree' }),\n])\n",
        "default_model = \"haiku\"\n",
    );
    git(&dir, &["init", "-q"]);
    std::fs::write(dir.join(".gitignore"), "bin/\nclaude.log\n").unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-qm", "start"]);
    let out = claude(&dir, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], json!(["edited", "claude says: just look"]));
    // Each agent ran in its own worktree.
    let calls = calls(&dir, "claude.log");
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert!(
            c["cwd"]
                .as_str()
                .unwrap()
                .contains("/.wasmflow/worktrees/agent-"),
            "{c}"
        );
    }
    // The changed one is kept and reported; the other is gone.
    let notes = v["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["label"], "editor");
    let note = notes[0]["note"].as_str().unwrap();
    assert!(note.contains("worktree kept with changes"), "{note}");
    assert!(out.stderr.contains("editor: worktree kept with changes"));
    let kept: Vec<_> = std::fs::read_dir(dir.join(".wasmflow/worktrees"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].path().join("agent-note.txt").is_file());
    assert!(note.contains(&kept[0].path().display().to_string()));
    assert!(!dir.join("agent-note.txt").exists());
    assert_eq!(git(&dir, &["worktree", "list"]).lines().count(), 2);
    // The repository itself stays clean.
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
}

#[test]
fn stalls_crashes_and_quota_fail_clearly() {
    let dir = setup(
        "claude-fail",
        "return await parallel([() => agent('STALL now', { label: 'staller' }), () => agent('CRASH now', { label: 'crasher' })])\n",
        "default_model = \"haiku\"\n",
    );
    // Long enough for the fake (Python) to start on a loaded CI machine.
    let out = claude(&dir, &["--json", "--quiet", "--stall-timeout", "3s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], json!([null, null]));
    let reasons: Vec<String> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{}: {}", f["label"], f["reason"]))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("staller")
            && r.contains("stalled: the claude CLI printed nothing for 3s")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("crasher") && r.contains("exited with") && r.contains("boom")),
        "{reasons:?}"
    );

    std::fs::write(
        dir.join("flow.js"),
        "for (let i = 0; i < 5; i++) await agent('QUOTA ' + i)\nreturn 1\n",
    )
    .unwrap();
    let out = claude(&dir, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("circuit breaker") && out.stderr.contains("usage limit reached"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unknown_model_is_refused_before_any_agent() {
    let dir = setup(
        "claude-unknown",
        "await agent('a')\nreturn await agent('b', { model: 'gpt-4o' })\n",
        "default_model = \"haiku\"\n",
    );
    let out = claude(&dir, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown model `gpt-4o`") && out.stderr.contains("flow.js:2"),
        "{}",
        out.stderr
    );
    assert!(calls(&dir, "claude.log").is_empty());
    // And a missing executable says what to do.
    let out = run_env(
        &dir,
        "flow.js",
        &["--backend", "claude"],
        &[("PATH", "/nonexistent")],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot run the claude CLI"),
        "{}",
        out.stderr
    );
}
