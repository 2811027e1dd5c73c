//! The exec backend, end to end through the CLI, against a real program
//! (tests/fixtures/fake-agent.py) that records what it was sent.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::{run_in, temp_dir};

fn fake_agent() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-agent.py");
    format!("python3 {}", p.display())
}

struct ExecRun {
    out: crate::support::Output,
    requests: Vec<Value>,
}

fn run_exec(source: &str, extra: &[&str]) -> ExecRun {
    let dir = temp_dir("exec");
    std::fs::write(dir.join("flow.js"), source).unwrap();
    let log = dir.join("requests.jsonl");
    let command = format!("FAKE_AGENT_LOG={} {}", log.display(), fake_agent());
    let mut args = vec!["--quiet", "--json", "--exec", command.as_str()];
    args.extend_from_slice(extra);
    let out = run_in(&dir, "flow.js", &args);
    let requests = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    ExecRun { out, requests }
}

#[test]
fn replies_of_every_shape_reach_the_script() {
    let r = run_exec(
        "const a = await agent('text:hello')\nconst b = await agent('json:{\"files\": [\"a.rs\"]}')\nconst c = await agent('plain:just words')\nreturn { a, b, c }\n",
        &[],
    );
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
    let v = r.out.json();
    assert_eq!(
        v["result"],
        json!({"a": "hello", "b": {"files": ["a.rs"]}, "c": "just words"})
    );
    // Usage from the two reply objects; plain text reports none.
    assert_eq!(v["tokens"]["output"], 14);
}

#[test]
fn the_request_carries_prompt_options_and_context() {
    let r = run_exec(
        "phase('Scan')\nawait agent('text:x', { label: 'scan:1', model: 'haiku', effort: 'low' })\nreturn 1\n",
        &[],
    );
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
    let req = &r.requests[0];
    assert_eq!(req["protocol"], "wasmflow-exec/1");
    assert_eq!(req["prompt"], "text:x");
    assert_eq!(req["label"], "scan:1");
    assert_eq!(req["phase"], "Scan");
    assert_eq!(req["attempt"], 1);
    assert_eq!(
        req["options"],
        json!({"label": "scan:1", "model": "haiku", "effort": "low"})
    );
    assert_eq!(req["env_agent_id"], "1");
}

#[test]
fn failures_resolve_null_and_are_listed_with_their_reason() {
    let r = run_exec(
        "const r = await parallel([() => agent('error:quota exhausted', { label: 'e' }), () => agent('exit:segfault in tool', { label: 'x' }), () => agent('garbage', { label: 'g' })])\nreturn r\n",
        &[],
    );
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
    let v = r.out.json();
    assert_eq!(v["result"], json!([null, null, null]));
    assert_eq!(
        v["agents"],
        json!({"spawned": 3, "done": 0, "failed": 3, "cached": 0})
    );
    let reason = |label: &str| -> String {
        v["failures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["label"] == label)
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason("e"), "quota exhausted");
    assert!(
        reason("x").contains("exit status: 3") && reason("x").contains("segfault in tool"),
        "{}",
        reason("x")
    );
    assert!(reason("g").contains("not UTF-8"), "{}", reason("g"));
}

#[test]
fn a_hung_agent_times_out() {
    let r = run_exec(
        "return await agent('sleep:30', { label: 'slow' })\n",
        &["--agent-timeout", "300ms"],
    );
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
    let v = r.out.json();
    assert_eq!(v["result"], Value::Null);
    assert!(
        v["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{v}"
    );
    assert!(v["duration_ms"].as_u64().unwrap() < 20_000, "{v}");
}

#[test]
fn a_schema_retry_sends_the_validation_errors() {
    let src = "const S = { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } }\nreturn await agent('schema', { schema: S })\n";
    let r = run_exec(src, &[]);
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
    assert_eq!(r.out.json()["result"], json!({"n": 2}));
    assert_eq!(r.requests.len(), 2);
    assert_eq!(r.requests[1]["attempt"], 2);
    let feedback = r.requests[1]["feedback"].as_array().unwrap();
    assert!(
        feedback[0]
            .as_str()
            .unwrap()
            .contains("\"n\" is a required property"),
        "{feedback:?}"
    );
    assert!(
        r.requests[1]["prompt_with_feedback"]
            .as_str()
            .unwrap()
            .contains("did not match the required JSON Schema")
    );
    assert_eq!(r.requests[1]["schema"]["required"], json!(["n"]));
}

#[test]
fn agents_run_concurrently() {
    let r = run_exec(
        "return (await parallel([1, 2, 3, 4].map(i => () => agent('sleep:0.3')))).length\n",
        &["--concurrency", "4"],
    );
    assert_eq!(r.out.code, 0, "{}", r.out.stderr);
    assert_eq!(r.out.json()["peak_concurrency"], 4);
}

#[test]
fn exec_flags_are_checked() {
    let dir = temp_dir("exec-flags");
    std::fs::write(dir.join("flow.js"), "return 1\n").unwrap();
    let out = run_in(&dir, "flow.js", &["--backend", "exec"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("the exec backend needs the command"),
        "{}",
        out.stderr
    );
    let out = run_in(&dir, "flow.js", &["--backend", "sim", "--exec", "true"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--exec goes with --backend exec"),
        "{}",
        out.stderr
    );
}

#[test]
fn exec_quota_failures_trip_the_circuit_breaker() {
    let dir = temp_dir("exec-breaker");
    std::fs::write(
        dir.join("flow.js"),
        "for (let i = 0; i < 10; i++) await agent('x')\nreturn 1\n",
    )
    .unwrap();
    let command = r#"cat >/dev/null; echo '{"error": "429 out of credits", "kind": "quota"}'"#;
    let out = run_in(
        &dir,
        "flow.js",
        &[
            "--quiet",
            "--json",
            "--exec",
            command,
            "--circuit-breaker",
            "2",
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["error"]["limit"], "circuit_breaker");
    assert_eq!(v["agents"]["spawned"], 2);
}
