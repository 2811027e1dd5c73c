//! The gemini backend end to end: the CLI runs a fake `gemini` found on PATH
//! (tests/fixtures/fake-gemini, shaped from the Gemini CLI's source), which
//! records what it was given.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::fake_cli::{argv, calls, git, stalls_crashes_and_quota};
use crate::support::{Output, run_env, temp_dir};

fn setup(name: &str, script: &str, toml: &str) -> PathBuf {
    let dir = temp_dir(name);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    for tool in ["gemini", "codex", "claude"] {
        std::fs::copy(fixtures.join(format!("fake-{tool}")), bin.join(tool)).unwrap();
    }
    std::fs::write(dir.join("flow.js"), script).unwrap();
    std::fs::write(dir.join("wasmflow.toml"), toml).unwrap();
    git(&dir, &["init", "-q"]);
    std::fs::write(dir.join(".gitignore"), "bin/\n*.log\n").unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-qm", "start"]);
    dir
}

fn gemini_env(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let logs: Vec<String> = ["gemini", "codex", "claude"]
        .iter()
        .map(|t| dir.join(format!("{t}.log")).display().to_string())
        .collect();
    let mut env = vec![
        ("PATH", path.as_str()),
        ("GEMINI_API_KEY", "test-key"),
        ("FAKE_GEMINI_LOG", logs[0].as_str()),
        ("FAKE_CODEX_LOG", logs[1].as_str()),
        ("FAKE_CLAUDE_LOG", logs[2].as_str()),
    ];
    env.extend_from_slice(extra);
    run_env(dir, "flow.js", args, &env)
}

fn gemini(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--backend", "gemini"];
    all.extend_from_slice(args);
    gemini_env(dir, &all, &[])
}

#[test]
fn an_agent_gets_the_approval_mode_and_the_text_after_its_tools() {
    let dir = setup(
        "gemini-plain",
        "return await agent('Summarise the repository')\n",
        "default_model = \"gemini-2.5-pro\"\n",
    );
    let out = gemini(&dir, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], "gemini says: Summarise the repository");
    let c = &calls(&dir, "gemini.log")[0];
    assert_eq!(
        argv(c).join(" "),
        "--output-format stream-json --approval-mode auto_edit --model gemini-2.5-pro -p  "
    );
    assert!(!argv(c).iter().any(|a| a.contains("yolo")));
    assert_eq!(c["stdin"], "Summarise the repository");
    assert_eq!(
        (
            v["tokens"]["input"].as_u64(),
            v["tokens"]["cache_read"].as_u64(),
            v["tokens"]["output"].as_u64()
        ),
        (Some(20), Some(100), Some(30))
    );
}

#[test]
fn a_schema_retry_is_a_fresh_call_with_the_feedback() {
    let dir = setup(
        "gemini-schema",
        "return await agent('SCHEMA-RETRY count things', { schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } })\n",
        "default_model = \"gemini-2.5-pro\"\n",
    );
    let out = gemini(&dir, &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), json!({"n": 2}));
    let calls = calls(&dir, "gemini.log");
    assert_eq!(calls.len(), 2);
    assert!(!argv(&calls[1]).iter().any(|a| a == "--resume" || a == "-r"));
    let retry = calls[1]["stdin"].as_str().unwrap();
    assert!(
        retry.contains("count things") && retry.contains("did not match the required JSON Schema"),
        "{retry}"
    );
}

#[test]
fn worktrees_stalls_crashes_quota_and_refusals() {
    let dir = setup(
        "gemini-worktree",
        "return await agent('EDIT the notes', { label: 'editor', isolation: 'worktree' })\n",
        "default_model = \"gemini-2.5-pro\"\n",
    );
    let out = gemini(&dir, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["result"], "edited");
    assert!(
        calls(&dir, "gemini.log")[0]["cwd"]
            .as_str()
            .unwrap()
            .contains("/.wasmflow/worktrees/agent-")
    );
    assert!(!dir.join("agent-note.txt").exists());
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");

    stalls_crashes_and_quota(
        &dir,
        "gemini",
        &[("GEMINI_API_KEY", "test-key")],
        "Quota exceeded",
    );

    // Signed out: no key, no ~/.gemini sign-in (HOME points at an empty dir).
    let empty = dir.join("empty-home");
    std::fs::create_dir_all(&empty).unwrap();
    let out = gemini_env(
        &dir,
        &["--backend", "gemini"],
        &[("GEMINI_API_KEY", ""), ("HOME", empty.to_str().unwrap())],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("gemini is not signed in"),
        "{}",
        out.stderr
    );
    let out = gemini_env(&dir, &["--backend", "gemini"], &[("PATH", "/usr/bin:/bin")]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("npm install -g @google/gemini-cli"),
        "{}",
        out.stderr
    );
    std::fs::write(
        dir.join("wasmflow.toml"),
        "[gemini]\napproval_mode = \"yolo\"\n",
    )
    .unwrap();
    let out = gemini(&dir, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("gemini.approval_mode"),
        "{}",
        out.stderr
    );
}

#[test]
fn phases_on_codex_gemini_and_claude() {
    let dir = setup(
        "gemini-routes",
        "export const meta = { name: 'mixed', description: 'three CLIs', phases: [\n  { title: 'Fan', model: 'fast' }, { title: 'Review', model: 'wide' }, { title: 'Sum', model: 'careful' }] }\nphase('Fan')\nconst a = await agent('fan out')\nphase('Review')\nconst b = await agent('review it', { effort: 'high' })\nphase('Sum')\nconst c = await agent('sum it')\nreturn { a, b, c }\n",
        "[models]\nfast = { id = \"gpt-5.1-codex\", backend = \"codex\" }\nwide = { id = \"gemini-2.5-pro\", backend = \"gemini\" }\ncareful = { id = \"haiku\", backend = \"claude\" }\n",
    );
    let out = gemini_env(&dir, &["--backend", "sim", "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"]["a"], "done: fan out");
    assert_eq!(v["result"]["b"], "gemini says: review it");
    assert_eq!(v["result"]["c"], "claude says: sum it");
    for log in ["codex.log", "gemini.log", "claude.log"] {
        assert_eq!(calls(&dir, log).len(), 1, "{log}");
    }
    assert!(
        out.stderr
            .contains("the gemini backend has no equivalent of opts.effort"),
        "{}",
        out.stderr
    );
}
