//! The codex backend end to end: the CLI runs a fake `codex` found on PATH
//! (tests/fixtures/fake-codex, shaped from the Codex CLI's source), which
//! records what it was given.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::fake_cli::{argv, calls, git, stalls_crashes_and_quota};
use crate::support::{Output, run_env, temp_dir};

/// A git repository with `bin/codex` (and `bin/claude`), the script and
/// the config.
fn setup(name: &str, script: &str, toml: &str, repo: bool) -> PathBuf {
    let dir = temp_dir(name);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    std::fs::copy(fixtures.join("fake-codex"), bin.join("codex")).unwrap();
    std::fs::copy(fixtures.join("fake-claude"), bin.join("claude")).unwrap();
    std::fs::write(dir.join("flow.js"), script).unwrap();
    std::fs::write(dir.join("wasmflow.toml"), toml).unwrap();
    if repo {
        git(&dir, &["init", "-q"]);
        std::fs::write(dir.join(".gitignore"), "bin/\n*.log\n").unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "-qm", "start"]);
    }
    dir
}

fn codex_env(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = dir.join("codex.log");
    let claude_log = dir.join("claude.log");
    let mut env = vec![
        ("PATH", path.as_str()),
        ("FAKE_CODEX_LOG", log.to_str().unwrap()),
        ("FAKE_CLAUDE_LOG", claude_log.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    run_env(dir, "flow.js", args, &env)
}

fn codex(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--backend", "codex"];
    all.extend_from_slice(args);
    codex_env(dir, &all, &[])
}

#[test]
fn an_agent_runs_with_the_sandbox_flag_and_usage_counts_the_cache() {
    let dir = setup(
        "codex-plain",
        "return await agent('Summarise the repository', { label: 'sum', effort: 'low' })\n",
        "default_model = \"gpt-5.1-codex\"\n",
        true,
    );
    let out = codex(&dir, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], "done: Summarise the repository");
    let calls = calls(&dir, "codex.log");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        argv(&calls[0]).join(" "),
        "exec --json --sandbox workspace-write --model gpt-5.1-codex -c model_reasoning_effort=low -"
    );
    assert!(
        !argv(&calls[0])
            .iter()
            .any(|a| a.contains("dangerously") || a.contains("full-access"))
    );
    assert_eq!(calls[0]["env"]["WASMFLOW_AGENT_ID"], "1");
    assert_eq!(calls[0]["stdin"], "Summarise the repository");
    // input_tokens counts the cached ones: 1200 of which 1000 cached.
    assert_eq!(v["tokens"]["input"], 200);
    assert_eq!(v["tokens"]["cache_read"], 1000);
    assert_eq!(v["tokens"]["output"], 30);
}

#[test]
fn a_schema_retry_resumes_the_thread() {
    let dir = setup(
        "codex-schema",
        "return await agent('SCHEMA-RETRY count things', { schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } })\n",
        "default_model = \"gpt-5.1-codex\"\n",
        true,
    );
    let out = codex(&dir, &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), json!({"n": 1}));
    let calls = calls(&dir, "codex.log");
    assert_eq!(calls.len(), 2);
    assert!(!argv(&calls[0]).contains(&"resume".to_string()));
    let second = argv(&calls[1]);
    let i = second.iter().position(|a| a == "resume").expect("resumed");
    assert_eq!(second[i + 1].len(), 36, "the thread the first try started");
    assert_eq!(second.last().map(String::as_str), Some("-"));
    let retry = calls[1]["stdin"].as_str().unwrap();
    assert!(
        retry.contains("did not match the required JSON Schema"),
        "{retry}"
    );
    assert!(
        !retry.contains("count things"),
        "the preamble is not paid again"
    );
}

#[test]
fn a_worktree_agent_edits_its_own_checkout() {
    let dir = setup(
        "codex-worktree",
        "return await parallel([() => agent('EDIT the notes', { label: 'editor', isolation: 'worktree' }), () => agent('just look', { label: 'reader', isolation: 'worktree' })])\n",
        "default_model = \"gpt-5.1-codex\"\n",
        true,
    );
    let out = codex(&dir, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], json!(["edited", "done: just look"]));
    for c in calls(&dir, "codex.log") {
        assert!(
            c["cwd"]
                .as_str()
                .unwrap()
                .contains("/.wasmflow/worktrees/agent-"),
            "{c}"
        );
    }
    let notes = v["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0]["note"]
            .as_str()
            .unwrap()
            .contains("worktree kept with changes")
    );
    assert!(!dir.join("agent-note.txt").exists());
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
}

#[test]
fn stalls_crashes_and_quota_fail_clearly() {
    let dir = setup(
        "codex-fail",
        "return 1\n",
        "default_model = \"gpt-5.1-codex\"\n",
        true,
    );
    stalls_crashes_and_quota(&dir, "codex", &[], "usage limit");
}

#[test]
fn refused_before_any_agent_missing_logged_out_outside_git_or_a_claude_model() {
    let script = "return await agent('a')\n";
    let dir = setup(
        "codex-refused",
        script,
        "default_model = \"gpt-5.1-codex\"\n",
        true,
    );
    std::fs::remove_file(dir.join("bin/codex")).unwrap();
    let out = codex_env(&dir, &["--backend", "codex"], &[("PATH", "/usr/bin:/bin")]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("npm install -g @openai/codex"),
        "{}",
        out.stderr
    );

    let dir = setup(
        "codex-logged-out",
        script,
        "default_model = \"gpt-5.1-codex\"\n",
        true,
    );
    let out = codex_env(
        &dir,
        &["--backend", "codex"],
        &[("FAKE_CODEX_LOGGED_OUT", "1")],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("codex login"), "{}", out.stderr);
    assert!(calls(&dir, "codex.log").is_empty(), "no agent ran");

    // Test directories sit inside this repository: git must not look above.
    let dir = setup(
        "codex-no-git",
        script,
        "default_model = \"gpt-5.1-codex\"\n",
        false,
    );
    let ceiling = dir.parent().unwrap().display().to_string();
    let no_git = [("GIT_CEILING_DIRECTORIES", ceiling.as_str())];
    let out = codex_env(&dir, &["--backend", "codex"], &no_git);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("skip_git_repo_check"), "{}", out.stderr);
    std::fs::write(
        dir.join("wasmflow.toml"),
        "default_model = \"gpt-5.1-codex\"\n[codex]\nskip_git_repo_check = true\n",
    )
    .unwrap();
    let out = codex_env(&dir, &["--backend", "codex"], &no_git);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(argv(&calls(&dir, "codex.log")[0]).contains(&"--skip-git-repo-check".to_string()));

    std::fs::write(
        dir.join("wasmflow.toml"),
        "[codex]\nsandbox = \"danger-full-access\"\n",
    )
    .unwrap();
    let out = codex(&dir, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("codex.sandbox"), "{}", out.stderr);

    let dir = setup(
        "codex-claude-model",
        script,
        "default_model = \"sonnet\"\n",
        true,
    );
    let out = codex(&dir, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is a Claude model"), "{}", out.stderr);
}

#[test]
fn one_script_routes_three_phases_to_three_backends() {
    let dir = setup(
        "codex-routes",
        "export const meta = { name: 'mixed', description: 'three backends', phases: [\n  { title: 'Fan', model: 'fast' }, { title: 'Review', model: 'careful' }, { title: 'Sum' }] }\nphase('Fan')\nconst a = await parallel([1, 2].map(i => () => agent(`fan ${i}`, { agentType: 'x' })))\nphase('Review')\nconst b = await agent('review it')\nphase('Sum')\nconst c = await agent('sum it')\nreturn { a, b, c }\n",
        "[models]\nfast = { id = \"gpt-5.1-codex\", backend = \"codex\" }\ncareful = { id = \"haiku\", backend = \"claude\" }\n",
        true,
    );
    let out = codex_env(&dir, &["--backend", "sim", "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"]["a"], json!(["done: fan 1", "done: fan 2"]));
    assert_eq!(v["result"]["b"], "claude says: review it");
    assert!(v["result"]["c"].as_str().unwrap().starts_with("sim reply"));
    assert_eq!(calls(&dir, "codex.log").len(), 2);
    assert_eq!(calls(&dir, "claude.log").len(), 1);
    assert!(
        out.stderr
            .contains("the codex backend has no equivalent of opts.agentType"),
        "{}",
        out.stderr
    );
}
