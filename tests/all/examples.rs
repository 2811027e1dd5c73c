//! The bundled examples run as the README says, with their golden results.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::support::{run_in, temp_dir};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn route_audit_confirms_two_findings() {
    let dir = temp_dir("example");
    let ex = examples_dir();
    let script = ex.join("route-audit.js");
    let rules = ex.join("route-audit.rules.json");
    let out = run_in(
        &dir,
        script.to_str().unwrap(),
        &[
            "--quiet",
            "--json",
            "--sim-rules",
            rules.to_str().unwrap(),
            "--events",
            "events.jsonl",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let result = &v["result"];
    assert_eq!(result["scanned"], 5);
    assert_eq!(result["suspected"], 3);
    let confirmed: Vec<&str> = result["confirmed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(confirmed, ["src/routes/admin.rs", "src/routes/billing.rs"]);
    assert_eq!(
        result["confirmed"][1]["votes"],
        serde_json::json!({"confirmed": 2, "rejected": 0, "missing": 1})
    );
    assert_eq!(
        result["dismissed"],
        serde_json::json!(["src/routes/users.rs"])
    );
    assert_eq!(
        v["agents"],
        serde_json::json!({"spawned": 15, "done": 14, "failed": 1})
    );
    assert_eq!(v["failures"][0]["label"], "verify:src/routes/billing.rs:2");

    let events = std::fs::read_to_string(out.path("events.jsonl")).unwrap();
    let mut per_phase: BTreeMap<String, u32> = BTreeMap::new();
    for line in events.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["type"] == "agent_started" {
            *per_phase
                .entry(e["phase"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let expected: BTreeMap<String, u32> = [("Scan", 1), ("Audit", 5), ("Verify", 9)]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    assert_eq!(per_phase, expected);
}
