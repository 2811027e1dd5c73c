//! The opencode backend end to end, with a fake `opencode` on PATH
//! (tests/fixtures/fake-opencode, shaped from opencode's source).

use std::path::Path;

use serde_json::json;

use crate::fake_cli::{
    argv, calls, run_backend, setup, stalls_crashes_and_quota, worktree_and_missing_binary,
};
use crate::support::Output;

fn opencode(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut env = vec![("ANTHROPIC_API_KEY", "test")];
    env.extend_from_slice(extra);
    run_backend(dir, "opencode", args, &env)
}

#[test]
fn agents_continue_their_session_for_a_schema_retry_and_fail_clearly() {
    let dir = setup(
        "opencode-schema",
        &["opencode"],
        "const a = await agent('hello there', { agentType: 'build' })\nconst b = await agent('SCHEMA-RETRY count', { schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } })\nreturn { a, b }\n",
        "default_model = \"anthropic/claude-sonnet-4-5\"\n",
    );
    let out = opencode(&dir, &["--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(
        v["result"],
        json!({"a": "opencode says: hello there", "b": {"n": 4}})
    );
    let calls = calls(&dir, "opencode.log");
    assert_eq!(calls.len(), 3);
    assert_eq!(
        argv(&calls[0]).join(" "),
        "run --format json --model anthropic/claude-sonnet-4-5 --agent build"
    );
    assert!(
        !argv(&calls[0])
            .iter()
            .any(|a| a == "--auto" || a.contains("yolo") || a.contains("dangerously"))
    );
    assert_eq!(calls[0]["stdin"], "hello there");
    let third = argv(&calls[2]);
    let i = third
        .iter()
        .position(|a| a == "--session")
        .expect("continued");
    assert!(third[i + 1].starts_with("ses_"));
    assert!(
        !calls[2]["stdin"]
            .as_str()
            .unwrap()
            .contains("SCHEMA-RETRY count"),
        "only the errors"
    );
    // Two steps of 30 in / 6+2 out / 70 cached per agent try.
    assert_eq!(v["tokens"]["input"], 180);

    stalls_crashes_and_quota(
        &dir,
        "opencode",
        &[("ANTHROPIC_API_KEY", "test")],
        "rate limit",
    );
    worktree_and_missing_binary(
        &dir,
        "opencode",
        &[("ANTHROPIC_API_KEY", "test")],
        "npm install -g opencode-ai",
    );

    let empty = dir.join("empty-home");
    std::fs::create_dir_all(&empty).unwrap();
    let out = opencode(
        &dir,
        &[],
        &[
            ("ANTHROPIC_API_KEY", ""),
            ("HOME", empty.to_str().unwrap()),
            ("XDG_DATA_HOME", empty.to_str().unwrap()),
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("auth login"), "{}", out.stderr);
    std::fs::write(dir.join("wasmflow.toml"), "default_model = \"sonnet\"\n").unwrap();
    let out = opencode(&dir, &[], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("provider/model"), "{}", out.stderr);
}
