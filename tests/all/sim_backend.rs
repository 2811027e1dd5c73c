//! The simulated backend: rules, failures and the summary.

use crate::support::run_with_files;

#[test]
fn an_error_rule_resolves_null_and_is_listed() {
    let rules = r#"{"rules": [{"match": {"label": "verify:*"}, "error": "model overloaded"}]}"#;
    let src = "const a = await agent('check a', { label: 'verify:a' })\nconst b = await agent('scan b', { label: 'scan:b' })\nreturn { a, b: typeof b }\n";
    let out = run_with_files(
        src,
        &[("rules.json", rules)],
        &["--quiet", "--json", "--sim-rules", "rules.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], serde_json::json!({"a": null, "b": "string"}));
    assert_eq!(
        v["agents"],
        serde_json::json!({"spawned": 2, "done": 1, "failed": 1, "cached": 0})
    );
    assert_eq!(v["failures"][0]["label"], "verify:a");
    assert_eq!(v["failures"][0]["reason"], "model overloaded");
}

#[test]
fn the_summary_has_every_field() {
    let rules = r#"{"default": {"usage": {"input": 100, "output": 7}}}"#;
    let out = run_with_files(
        "await parallel([() => agent('a'), () => agent('b')])\nreturn 'ok'\n",
        &[("r.json", rules)],
        &["--quiet", "--json", "--sim-rules", "r.json"],
    );
    let v = out.json();
    for key in [
        "status",
        "result",
        "agents",
        "failures",
        "peak_concurrency",
        "tokens",
        "cost",
        "per_agent",
        "notes",
        "duration_ms",
    ] {
        assert!(v.get(key).is_some(), "summary lacks {key}: {v:#}");
    }
    assert_eq!(v["status"], "ok");
    assert_eq!(
        v["tokens"],
        serde_json::json!({"input": 200, "output": 14, "cache_read": 0, "cache_write": 0})
    );
    assert_eq!(v["peak_concurrency"], 2);
}

#[test]
fn replies_are_a_pure_function_of_the_call() {
    let src = "const a = await agent('same', { label: 'one' })\nconst b = await agent('same', { label: 'two' })\nconst c = await agent('other')\nreturn [a === b, a === c]\n";
    let out = run_with_files(src, &[], &["--quiet"]);
    assert_eq!(out.json(), serde_json::json!([true, false]));
}

#[test]
fn first_matching_rule_wins() {
    let rules = r#"{"rules": [{"match": {"prompt": "alpha"}, "reply": "first"},
                              {"match": {"prompt": "alpha beta"}, "reply": "second"},
                              {"match": {"label": "l?"}, "reply": 42}]}"#;
    let src = "return [await agent('alpha beta'), await agent('x', { label: 'l1' }), typeof await agent('x', { label: 'l12' })]\n";
    let out = run_with_files(
        src,
        &[("r.json", rules)],
        &["--quiet", "--sim-rules", "r.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::json!(["first", 42, "string"]));
}

#[test]
fn the_circuit_breaker_ends_the_run_after_consecutive_quota_failures() {
    let rules = r#"{"rules": [{"match": {"label": "q:*"}, "error": "quota exhausted", "error_kind": "quota"},
                              {"match": {"label": "plain:*"}, "error": "flaky tool"}]}"#;
    // An answer resets the count; a plain failure neither counts nor resets.
    let src = "const labels = ['q:0', 'ok:1', 'q:2', 'plain:3', 'q:4', 'q:5', 'q:6', 'q:7']\nfor (const l of labels) await agent('work ' + l, { label: l })\nreturn 'unreachable'\n";
    let out = run_with_files(
        src,
        &[("rules.json", rules)],
        &["--quiet", "--json", "--sim-rules", "rules.json"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["error"]["limit"], "circuit_breaker");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 agents in a row"),
        "{v}"
    );
    assert_eq!(
        v["agents"]["spawned"], 6,
        "q:2, q:4 and q:5 trip it: q:6 and q:7 never start"
    );
    assert!(out.stderr.contains("quota exhausted"), "{}", out.stderr);
}

#[test]
fn the_circuit_breaker_can_be_turned_off() {
    let rules = r#"{"rules": [{"error": "no credits", "error_kind": "auth"}]}"#;
    let src = "const r = await parallel(Array.from({ length: 5 }, (_, i) => () => agent('a' + i)))\nreturn r\n";
    let out = run_with_files(
        src,
        &[("rules.json", rules)],
        &[
            "--quiet",
            "--json",
            "--sim-rules",
            "rules.json",
            "--circuit-breaker",
            "0",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["agents"]["failed"], 5);
}
