//! The bundled examples run as the README says, with their golden results.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::support::{run_in, temp_dir};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every example with a rules file completes on the sim backend with its
/// golden result, agent counts, and live executions per phase (from the
/// trace; schema retries count as executions).
#[test]
fn every_example_matches_its_golden_file() {
    let ex = examples_dir();
    let mut names: Vec<String> = std::fs::read_dir(&ex)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.strip_suffix(".js")?.to_string();
            Some(name)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 5, "examples: {names:?}");
    for name in names {
        let rules = ex.join(format!("{name}.rules.json"));
        let expected_path = ex.join(format!("{name}.expected.json"));
        assert!(
            rules.exists() && expected_path.exists(),
            "{name} needs a rules file and a golden file"
        );
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        let script = ex.join(format!("{name}.js"));
        // The script, the script under the blocking driver, and the
        // compiled component under both drivers.
        let built = temp_dir(&format!("{name}-wasm")).join(format!("{name}.wasm"));
        let build = crate::support::wasmflow()
            .args(["build", "--quiet", "-o"])
            .arg(&built)
            .arg(&script)
            .output()
            .unwrap();
        assert!(build.status.success(), "{name}: build: {build:?}");
        for (target, driver) in [
            (&script, "poll"),
            (&script, "blocking"),
            (&built, "poll"),
            (&built, "blocking"),
        ] {
            let name = format!("{name} ({}, {driver})", target.display());
            check_example(&name, target, driver, &rules, &expected);
        }
    }
}

fn check_example(
    name: &str,
    target: &std::path::Path,
    driver: &str,
    rules: &std::path::Path,
    expected: &serde_json::Value,
) {
    {
        let dir = temp_dir("example");
        let out = run_in(
            &dir,
            target.to_str().unwrap(),
            &[
                "--quiet",
                "--json",
                "--driver",
                driver,
                "--sim-rules",
                rules.to_str().unwrap(),
                "--sim-trace",
                "trace.jsonl",
            ],
        );
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        let v = out.json();
        assert_eq!(v["result"], expected["result"], "{name}: result");
        for (k, n) in expected["agents"].as_object().unwrap() {
            assert_eq!(v["agents"][k], *n, "{name}: agent count `{k}`");
        }
        assert_eq!(
            v["agents"]["cached"], 0,
            "{name}: nothing is cached in a fresh run"
        );
        let mut per_phase: BTreeMap<String, u64> = BTreeMap::new();
        for e in crate::support::read_trace(&out.path("trace.jsonl")) {
            *per_phase
                .entry(e.phase.unwrap_or_else(|| "(none)".into()))
                .or_default() += 1;
        }
        let expected_phases: BTreeMap<String, u64> =
            serde_json::from_value(expected["executions_per_phase"].clone()).unwrap();
        assert_eq!(per_phase, expected_phases, "{name}: executions per phase");
    }
}

#[test]
fn the_bug_sweep_budget_guard_stops_early() {
    let ex = examples_dir();
    let dir = temp_dir("sweep-budget");
    let out = run_in(
        &dir,
        ex.join("bug-sweep.js").to_str().unwrap(),
        &[
            "--quiet",
            "--json",
            "--budget",
            "2000",
            "--sim-rules",
            ex.join("bug-sweep.rules.json").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"]["stopped"], "budget");
    assert_eq!(v["result"]["rounds"], 1);
    assert_eq!(v["agents"]["spawned"], 3);
}
