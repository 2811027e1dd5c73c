//! The size bounds: each with its flag, each failing clearly.

use crate::support::{run, run_with_files};

#[test]
fn oversized_prompts_options_and_schemas_make_agent_throw() {
    let out = run(
        "const msgs = []\nfor (const f of [() => agent('x'.repeat(5000)), () => agent('y', { label: 'z'.repeat(5000) }), () => agent('w', { schema: { type: 'object', description: 'd'.repeat(3000) } })]) {\n  try { await f() } catch (e) { msgs.push(e.message) }\n}\nreturn msgs\n",
        &[
            "--quiet",
            "--max-prompt",
            "4K",
            "--max-options",
            "4K",
            "--max-schema",
            "2K",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let msgs = out.json();
    let msgs: Vec<&str> = msgs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(
        msgs[0].contains("the prompt is 5000 bytes") && msgs[0].contains("--max-prompt"),
        "{msgs:?}"
    );
    assert!(msgs[1].contains("--max-options"), "{msgs:?}");
    assert!(
        msgs[2].contains("opts.schema") && msgs[2].contains("--max-schema"),
        "{msgs:?}"
    );
}

#[test]
fn an_oversized_result_ends_the_run_naming_the_flag() {
    let out = run(
        "return 'x'.repeat(3000)\n",
        &["--quiet", "--max-result", "2K"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("--max-result"), "{}", out.stderr);
}

#[test]
fn long_log_lines_are_cut_and_floods_dropped() {
    let out = run(
        "console.log('a'.repeat(5000))\nfor (let i = 0; i < 500; i++) log('line ' + i)\nreturn 1\n",
        &["--max-log-line", "1K", "--log-rate", "20"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("(cut: the line is 5000 bytes"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&"a".repeat(1100)));
    assert!(out.stderr.contains("log line(s) dropped"), "{}", out.stderr);
    assert!(!out.stderr.contains("line 499"));
}

#[test]
fn an_oversized_agent_output_fails_the_agent_and_is_kept() {
    let big = "b".repeat(3000);
    let rules = format!(r#"{{"rules": [{{"match": {{"label": "big"}}, "reply": "{big}"}}]}}"#);
    let out = run_with_files(
        "const a = await agent('p', { label: 'big' })\nconst b = await agent('q')\nreturn [a, typeof b]\n",
        &[("rules.json", &rules)],
        &[
            "--json",
            "--quiet",
            "--sim-rules",
            "rules.json",
            "--max-agent-output",
            "2K",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], serde_json::json!([null, "string"]));
    let reason = v["failures"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("--max-agent-output") && reason.contains("3000 bytes"),
        "{reason}"
    );
    let run_id = v["run_id"].as_str().unwrap();
    let kept = out.path(&format!(".wasmflow/runs/{run_id}/outputs/1.txt"));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), big);
    assert!(reason.contains(&kept.display().to_string()), "{reason}");
}
