//! Concurrency, asserted from the sim trace rather than from wall-clock totals.

use crate::support::{max_overlap, read_trace, run};

const FAN_OUT_64: &str = "const r = await parallel(Array.from({ length: 64 }, (_, i) => () => agent('item ' + i, { label: 'item:' + i })))\nreturn r.filter(x => x !== null).length\n";

#[test]
fn sixty_four_agents_overlap_at_most_sixteen_and_reach_sixteen() {
    let out = run(
        FAN_OUT_64,
        &[
            "--quiet",
            "--sim-latency",
            "40",
            "--sim-trace",
            "trace.jsonl",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), serde_json::json!(64));
    let trace = read_trace(&out.path("trace.jsonl"));
    assert_eq!(trace.len(), 64);
    assert_eq!(max_overlap(&trace), 16);
}

#[test]
fn concurrency_four_caps_at_four() {
    let out = run(
        FAN_OUT_64,
        &[
            "--quiet",
            "--json",
            "--concurrency",
            "4",
            "--sim-latency",
            "10",
            "--sim-trace",
            "trace.jsonl",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["peak_concurrency"], 4);
    let trace = read_trace(&out.path("trace.jsonl"));
    assert_eq!(trace.len(), 64);
    assert_eq!(max_overlap(&trace), 4);
}

#[test]
fn queued_agents_start_in_call_order() {
    let out = run(
        FAN_OUT_64,
        &[
            "--quiet",
            "--concurrency",
            "2",
            "--sim-latency",
            "5",
            "--events",
            "events.jsonl",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(out.path("events.jsonl")).unwrap();
    let started: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "agent_started")
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(started, (1..=64).collect::<Vec<_>>());
}

#[test]
fn three_agents_of_different_latency_overlap() {
    let rules = r#"{"rules": [{"match": {"label": "a"}, "latency_ms": 300},
                              {"match": {"label": "b"}, "latency_ms": 200},
                              {"match": {"label": "c"}, "latency_ms": 100}]}"#;
    let src = "return await parallel([() => agent('x', { label: 'a' }), () => agent('y', { label: 'b' }), () => agent('z', { label: 'c' })]).then(r => r.length)\n";
    let (_, trace) = crate::support::run_traced(src, rules, &[]);
    assert_eq!(max_overlap(&trace), 3);
    // Ends come in latency order: c, b, a.
    let mut by_end = trace.clone();
    by_end.sort_by_key(|e| e.end);
    let labels: Vec<_> = by_end.iter().map(|e| e.label.clone().unwrap()).collect();
    assert_eq!(labels, ["c", "b", "a"]);
}

#[test]
fn a_sequential_loop_never_overlaps() {
    let out = run(
        "for (let i = 0; i < 10; i++) await agent('step ' + i)\nreturn 'done'\n",
        &[
            "--quiet",
            "--sim-latency",
            "5",
            "--sim-trace",
            "trace.jsonl",
        ],
    );
    assert_eq!(out.code, 0);
    assert_eq!(max_overlap(&read_trace(&out.path("trace.jsonl"))), 1);
}

fn by_label(trace: &[crate::support::Execution], label: &str) -> crate::support::Execution {
    trace
        .iter()
        .find(|e| e.label.as_deref() == Some(label))
        .unwrap_or_else(|| panic!("no execution labelled {label}"))
        .clone()
}

#[test]
fn pipeline_has_no_barrier_between_stages() {
    let src = "const items = Array.from({ length: 40 }, (_, i) => i)\nconst r = await pipeline(items,\n  (x, item, i) => agent('first ' + i, { label: 's1:' + i }),\n  (prev, item, i) => agent('second ' + i, { label: 's2:' + i }))\nreturn r.length\n";
    let out = run(
        src,
        &[
            "--quiet",
            "--concurrency",
            "4",
            "--sim-latency",
            "5",
            "--sim-trace",
            "trace.jsonl",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let trace = read_trace(&out.path("trace.jsonl"));
    assert_eq!(trace.len(), 80);
    let second_of_first = by_label(&trace, "s2:0");
    let first_of_last = by_label(&trace, "s1:39");
    assert!(
        second_of_first.start < first_of_last.end,
        "item 0 entered stage 2 at {} but item 39 left stage 1 at {}",
        second_of_first.start,
        first_of_last.end
    );
    assert_eq!(max_overlap(&trace), 4);
}

#[test]
fn parallel_is_a_barrier() {
    let rules = r#"{"rules": [{"match": {"label": "slow"}, "latency_ms": 120},
                              {"match": {"label": "fast:*"}, "latency_ms": 5}]}"#;
    let src = "await parallel([() => agent('s', { label: 'slow' }), ...Array.from({ length: 6 }, (_, i) => () => agent('f' + i, { label: 'fast:' + i }))])\nawait parallel([() => agent('next', { label: 'next' })])\nreturn 'ok'\n";
    let (_, trace) = crate::support::run_traced(src, rules, &[]);
    let next = by_label(&trace, "next");
    let barrier = trace
        .iter()
        .filter(|e| e.label.as_deref() != Some("next"))
        .map(|e| e.end)
        .max()
        .unwrap();
    assert!(
        next.start >= barrier,
        "`next` started at {} before the first parallel settled at {barrier}",
        next.start
    );
}
