//! Defects a new user hits on the command line: flags after the text, empty
//! scripts, colour codes in logs, plain-progress volume, preflight refusals
//! that looked resumable, wording.

use serde_json::{Value, json};

use crate::support::{cli_in as cli, only_run_id, run, run_in, temp_dir, wasmflow};

const ECHO: &str = "export const meta = { name: 'echo', description: 'echoes' }\nconst a = await agent('hi')\nreturn { args, a }\n";

#[test]
fn flags_after_the_text_are_flags() {
    let out = run(ECHO, &["what", "is", "wasm", "--backend", "sim", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = out.json();
    assert_eq!(summary["status"], "ok", "{summary:#}");
    assert_eq!(summary["result"]["args"], json!("what is wasm"));
}

#[test]
fn an_unknown_dash_word_after_the_text_is_an_error_suggesting_double_dash() {
    let out = run(ECHO, &["what", "is", "--bakend", "sim"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--bakend"), "{}", out.stderr);
    assert!(out.stderr.contains("-- --bakend"), "{}", out.stderr);
    assert!(!out.dir.join(".wasmflow/runs").exists());
}

#[test]
fn words_after_double_dash_are_text_and_positionals_keep_their_order() {
    let out = run(ECHO, &["--quiet", "first", "--", "-5", "--backend", "x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["args"], json!("first -5 --backend x"));
}

#[test]
fn resume_takes_flags_before_and_after_the_id_and_text_as_args() {
    let dir = temp_dir("resume-flags");
    std::fs::write(dir.join("flow.js"), ECHO).unwrap();
    let out = run_in(&dir, "flow.js", &["old", "words", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["args"], json!("old words"));
    let id = only_run_id(&dir);
    let resume = |words: &[&str]| {
        wasmflow()
            .current_dir(&dir)
            .env("HOME", &dir)
            .arg("resume")
            .args(words)
            .output()
            .unwrap()
    };
    let out = resume(&["--quiet", &id, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["result"]["args"], json!("old words"));
    assert_eq!(summary["agents"]["cached"], 1, "{summary:#}");
    let out = resume(&[&id, "new", "words", "--quiet"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["args"], json!("new words"));
    let out = resume(&[&id, "--nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_empty_script_is_refused() {
    for source in [
        "",
        "  \n\t\n",
        "// nothing\n/* at all */\n",
        "#!/usr/bin/env wasmflow\n// just a comment\n",
    ] {
        let out = run(source, &[]);
        assert_eq!(out.code, 2, "{source:?}: {}", out.stderr);
        assert!(out.stderr.contains("the script is empty"), "{}", out.stderr);
        assert!(!out.dir.join(".wasmflow/runs").exists(), "{source:?}");
    }
}

#[test]
fn plain_progress_off_a_terminal_stays_short_for_a_thousand_agents() {
    let script = "export const meta = { name: 'wide', description: 'd' }\n\
        phase('Fan')\n\
        const xs = await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('item ' + i, { label: 'item-' + i })))\n\
        log('fanned out')\n\
        phase('Judge')\n\
        return xs.length\n";
    let rules = r#"{"rules": [{"match": {"label": "item-7"}, "error": "boom"}]}"#;
    let out = crate::support::run_with_files(
        script,
        &[("rules.json", rules)],
        &["--max-agents", "2000", "--sim-rules", "rules.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = out.stderr.lines().count();
    assert!(lines <= 30, "{lines} lines:\n{}", out.stderr);
    for needle in [
        "▸ phase Fan",
        "▸ phase Judge",
        "✗ item-7: boom",
        "fanned out",
        "999 done, 1 failed",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("✓ item-1"), "{}", out.stderr);
}

#[test]
fn one_agent_is_one_agent() {
    let out = run(ECHO, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("ok: 1 agent (1 done, 0 failed)"),
        "{}",
        out.stderr
    );
}

#[test]
fn plan_counts_fan_outs_with_typical_lists() {
    let dir = temp_dir("plan-fanout");
    let out = cli(&dir, &["plan", "deep-research", "what is wasm", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &plan["estimate"];
    assert_eq!(e["agents"]["min"], 7, "{e:#}");
    let typical = e["agents"]["typical"].as_u64().unwrap();
    assert!(typical > 50, "{e:#}");
    assert_eq!(e["typical"]["agents"], typical);
    assert_eq!(e["list_items"], 5);
    let fan_out: Vec<&str> = e["fan_out"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        fan_out.contains(&"Sources") && !fan_out.contains(&"Angles"),
        "{fan_out:?}"
    );
    // `[plan] list_items` changes the typical case only.
    std::fs::write(dir.join("wasmflow.toml"), "[plan]\nlist_items = 2\n").unwrap();
    let out = cli(&dir, &["plan", "deep-research", "x", "--json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["estimate"]["agents"]["min"], 7);
    assert!(plan["estimate"]["agents"]["typical"].as_u64().unwrap() < typical);
    // The text names the range and the phases that fan out.
    let out = cli(&dir, &["plan", "deep-research", "x"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("agents     7 – ") && text.contains("(1 / 2 items per list)"),
        "{text}"
    );
    assert!(
        text.contains("fans out   ") && text.contains("the default model"),
        "{text}"
    );
}

#[test]
fn the_confirmation_uses_the_typical_count() {
    let dir = temp_dir("confirm-typical");
    // Seven agents with one-item lists, far more with typical ones.
    let out = cli(
        &dir,
        &["run", "deep-research", "what is wasm", "--exec", "cat"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("would start about") && !stderr.contains("about 7 agents"),
        "{stderr}"
    );
    assert!(!dir.join(".wasmflow/runs").exists());
}
