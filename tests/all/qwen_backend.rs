//! The qwen backend end to end, with a fake `qwen` on PATH
//! (tests/fixtures/fake-qwen, shaped from Qwen Code's source).

use std::path::Path;

use serde_json::json;

use crate::fake_cli::{
    argv, calls, run_backend, setup, stalls_crashes_and_quota, worktree_and_missing_binary,
};
use crate::support::Output;

fn qwen(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut env = vec![("OPENAI_API_KEY", "test")];
    env.extend_from_slice(extra);
    run_backend(dir, "qwen", args, &env)
}

#[test]
fn agents_resume_their_session_for_a_schema_retry_and_fail_clearly() {
    let dir = setup(
        "qwen-schema",
        &["qwen"],
        "const a = await agent('hello there')\nconst b = await agent('SCHEMA-RETRY count', { schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } })\nreturn { a, b }\n",
        "default_model = \"qwen3-coder-plus\"\n",
    );
    let out = qwen(&dir, &["--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(
        v["result"],
        json!({"a": "qwen says: hello there", "b": {"n": 3}})
    );
    let calls = calls(&dir, "qwen.log");
    assert_eq!(calls.len(), 3);
    assert_eq!(
        argv(&calls[0]).join(" "),
        "--output-format stream-json --approval-mode auto-edit --model qwen3-coder-plus -p  "
    );
    assert!(!argv(&calls[0]).iter().any(|a| a.contains("yolo")));
    let third = argv(&calls[2]);
    let i = third.iter().position(|a| a == "--resume").expect("resumed");
    assert_eq!(third[i + 1].len(), 36);
    assert!(
        !calls[2]["stdin"]
            .as_str()
            .unwrap()
            .contains("SCHEMA-RETRY count"),
        "only the errors"
    );
    assert_eq!(v["tokens"]["cache_read"], 150);

    stalls_crashes_and_quota(&dir, "qwen", &[("OPENAI_API_KEY", "test")], "rate limit");
    worktree_and_missing_binary(
        &dir,
        "qwen",
        &[("OPENAI_API_KEY", "test")],
        "npm install -g @qwen-code/qwen-code",
    );

    let empty = dir.join("empty-home");
    std::fs::create_dir_all(&empty).unwrap();
    let out = qwen(
        &dir,
        &[],
        &[("OPENAI_API_KEY", ""), ("HOME", empty.to_str().unwrap())],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("qwen is not signed in"),
        "{}",
        out.stderr
    );
    std::fs::write(
        dir.join("wasmflow.toml"),
        "[qwen]\napproval_mode = \"yolo\"\n",
    )
    .unwrap();
    let out = qwen(&dir, &[], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("qwen.approval_mode"), "{}", out.stderr);
}
