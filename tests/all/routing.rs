//! Config files, model routing and cost: routing observed in the requests a
//! real (fake) agent receives, cost checked against the price table.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::{run_in, temp_dir};

const CONFIG: &str = r#"default_model = "sonnet"
[models]
haiku = "h-1"
sonnet = "s-1"
opus = "o-1"
[prices.h-1]
input = 1.0
output = 5.0
[prices.sonnet]
input = 3.0
output = 15.0
"#;

fn setup(name: &str, script: &str, config: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("flow.js"), script).unwrap();
    std::fs::write(dir.join("wasmflow.toml"), config).unwrap();
    dir
}

/// `setup` with the CONFIG prices and sim rules (`r.json`) that make every
/// agent use a million input and 100k output tokens.
fn setup_priced(name: &str, script: &str) -> PathBuf {
    let dir = setup(name, script, CONFIG);
    std::fs::write(
        dir.join("r.json"),
        r#"{"default": {"usage": {"input": 1000000, "output": 100000}}}"#,
    )
    .unwrap();
    dir
}

#[test]
fn call_option_then_phase_model_then_default() {
    let src = "export const meta = { name: 'r', description: 'routing', phases: [{ title: 'Scan', model: 'haiku' }, { title: 'Write' }] }\nphase('Scan')\nawait agent('text:a', { label: 'a' })\nawait agent('text:b', { label: 'b', model: 'opus' })\nphase('Write')\nawait agent('text:c', { label: 'c' })\nawait agent('text:d', { label: 'd', phase: 'Scan' })\nawait agent('text:e', { label: 'e', model: 'custom-model-7' })\nreturn 1\n";
    let dir = setup("routing", src, CONFIG);
    let log = dir.join("requests.jsonl");
    let agent =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-agent.py");
    let command = format!(
        "FAKE_AGENT_LOG={} python3 {}",
        log.display(),
        agent.display()
    );
    let out = run_in(&dir, "flow.js", &["--quiet", "--exec", &command]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let models: Vec<(String, Value)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| (r["label"].as_str().unwrap().to_string(), r["model"].clone()))
        .collect();
    assert_eq!(
        models,
        [
            ("a".to_string(), json!("h-1")),
            ("b".to_string(), json!("o-1")),
            ("c".to_string(), json!("s-1")),
            ("d".to_string(), json!("h-1")),
            ("e".to_string(), json!("custom-model-7")),
        ]
    );
}

#[test]
fn cost_totals_follow_the_price_table() {
    let src = "export const meta = { name: 'c', description: 'cost', phases: [{ title: 'Scan', model: 'haiku' }] }\nphase('Scan')\nawait parallel([() => agent('a'), () => agent('b')])\nphase('Write')\nawait agent('c')\nreturn 1\n";
    let dir = setup_priced("cost", src);
    let out = run_in(
        &dir,
        "flow.js",
        &["--quiet", "--json", "--sim-rules", "r.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cost = &out.json()["cost"];
    // haiku (h-1): 1.0 + 0.5 per agent; sonnet (priced by alias): 3.0 + 1.5.
    assert_eq!(cost["total_usd"], json!(7.5));
    assert_eq!(cost["unpriced_agents"], 0);
    assert_eq!(
        cost["by_model"]["h-1"],
        json!({"agents": 2, "input": 2000000, "output": 200000, "cache_read": 0, "cache_write": 0, "usd": 3.0})
    );
    assert_eq!(cost["by_model"]["s-1"]["usd"], json!(4.5));
    assert_eq!(cost["by_phase"]["Scan"]["usd"], json!(3.0));
    assert_eq!(cost["by_phase"]["Write"]["agents"], 1);
}

#[test]
fn unpriced_models_are_never_zero() {
    let dir = setup(
        "unpriced",
        "await agent('a', { model: 'opus' })\nreturn 1\n",
        CONFIG,
    );
    let out = run_in(&dir, "flow.js", &["--quiet", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cost = &out.json()["cost"];
    assert_eq!(cost["total_usd"], Value::Null);
    assert_eq!(cost["unpriced_agents"], 1);
    assert_eq!(cost["by_model"]["o-1"]["usd"], Value::Null);
}

#[test]
fn max_cost_refuses_a_run_with_an_unpriced_model() {
    let dir = setup(
        "max-cost-unpriced",
        "await agent('a', { model: 'opus' })\nreturn 1\n",
        CONFIG,
    );
    let out = run_in(&dir, "flow.js", &["--quiet", "--max-cost", "5"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no price for o-1"), "{}", out.stderr);
    let dir = setup(
        "max-cost-no-default",
        "return 1\n",
        "[prices.x]\ninput = 1.0\noutput = 1.0\n",
    );
    let out = run_in(&dir, "flow.js", &["--quiet", "--max-cost", "5"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("set default_model"), "{}", out.stderr);
}

#[test]
fn max_cost_stops_new_spawns() {
    let src = "let n = 0\ntry { for (;;) { await agent('step ' + n); n++ } } catch (e) { return [n, e.name, e.message.includes('cost cap')] }\n";
    let dir = setup_priced("max-cost-stop", src);
    let out = run_in(
        &dir,
        "flow.js",
        &[
            "--quiet",
            "--json",
            "--max-cost",
            "10",
            "--sim-rules",
            "r.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    // 4.5 USD each: after three (13.5) the cap of 10 is passed.
    assert_eq!(v["result"], json!([3, "WorkflowBudgetExceededError", true]));
    assert_eq!(v["cost"]["total_usd"], json!(13.5));
}

#[test]
fn config_values_apply_and_flags_win() {
    let src = "return (await parallel(Array.from({ length: 8 }, (_, i) => () => agent('p' + i)))).length\n";
    let dir = setup("config-precedence", src, "concurrency = 2\n");
    let out = run_in(
        &dir,
        "flow.js",
        &["--quiet", "--json", "--sim-latency", "5"],
    );
    assert_eq!(out.json()["peak_concurrency"], 2);
    let out = run_in(
        &dir,
        "flow.js",
        &[
            "--quiet",
            "--json",
            "--sim-latency",
            "5",
            "--concurrency",
            "4",
        ],
    );
    assert_eq!(out.json()["peak_concurrency"], 4);
}

#[test]
fn a_bad_config_names_the_file_and_key() {
    let dir = setup("bad-config", "return 1\n", "concurency = 2\n");
    let out = run_in(&dir, "flow.js", &["--quiet"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("wasmflow.toml") && out.stderr.contains("concurency"),
        "{}",
        out.stderr
    );
}
