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
        serde_json::json!({"spawned": 2, "done": 1, "failed": 1})
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
        "duration_ms",
    ] {
        assert!(v.get(key).is_some(), "summary lacks {key}: {v:#}");
    }
    assert_eq!(v["status"], "ok");
    assert_eq!(v["tokens"], serde_json::json!({"input": 200, "output": 14}));
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
