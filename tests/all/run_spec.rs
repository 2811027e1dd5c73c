//! The RunSpec: what `run.json` stores, what `resume` reads back (also from
//! run directories written before the spec existed), and the library's one
//! call that runs a spec.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use wasmflow::run::launch::{self, Env};
use wasmflow::run::spec::{RunSpec, Target};

use crate::support::{cli_in, engine, only_run_id, read_trace, run_in, temp_dir};

const FLOW: &str = r#"export const meta = { name: 'specced', description: 'spec test' }
const xs = await parallel([1, 2, 3, 4].map(i => () => agent('item ' + i + ' of ' + JSON.stringify(args), { label: 'i' + i })))
return { xs, args: args === undefined ? 'undefined' : args }
"#;

fn run_json(dir: &Path) -> (String, Value) {
    let id = only_run_id(dir);
    let path = dir.join(".wasmflow/runs").join(&id).join("run.json");
    let text = std::fs::read_to_string(path).unwrap();
    (id, serde_json::from_str(&text).unwrap())
}

fn resume(dir: &Path, id: &str, flags: &[&str]) -> std::process::Output {
    let mut args = vec!["resume", id];
    args.extend_from_slice(flags);
    cli_in(dir, &args)
}

#[test]
fn run_json_stores_the_spec_and_it_round_trips() {
    let dir = temp_dir("spec-store");
    std::fs::write(dir.join("flow.js"), FLOW).unwrap();
    let out = run_in(
        &dir,
        "flow.js",
        &[
            "--quiet",
            "--concurrency",
            "3",
            "--sim-latency",
            "5",
            "--budget",
            "1000",
            "--driver",
            "blocking",
            "--args",
            r#"{"n": 2}"#,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, info) = run_json(&dir);
    assert!(info.get("flags").is_none(), "{info:#}");
    let stored = &info["spec"];
    assert_eq!(stored["args"], json!({"n": 2}));
    assert_eq!(stored["limits"]["concurrency"], 3);
    assert_eq!(stored["backend"]["sim"]["latency_ms"], 5);
    assert_eq!(stored["budget"], 1000);
    assert_eq!(stored["driver"], "blocking");
    assert_eq!(stored["target"]["kind"], "file");
    assert!(
        Path::new(stored["target"]["path"].as_str().unwrap()).is_absolute(),
        "{stored}"
    );
    let spec = RunSpec::from_json(&stored.to_string()).unwrap();
    assert_eq!(serde_json::to_value(&spec).unwrap(), *stored);
}

#[test]
fn a_run_written_before_the_spec_still_resumes() {
    let dir = temp_dir("spec-legacy");
    std::fs::write(dir.join("flow.js"), FLOW).unwrap();
    let out = run_in(&dir, "flow.js", &["--quiet", "--args", r#""hello""#]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first = out.json();
    // Rewrite run.json as the previous format wrote it: flags, no spec.
    let (id, mut info) = run_json(&dir);
    let trace = dir.join("trace.jsonl");
    let obj = info.as_object_mut().unwrap();
    obj.remove("spec");
    obj.insert(
        "flags".into(),
        json!(["--concurrency", "2", "--sim-trace", trace.to_str().unwrap()]),
    );
    obj.insert("status".into(), json!("paused"));
    let path = dir.join(".wasmflow/runs").join(&id).join("run.json");
    std::fs::write(&path, serde_json::to_string_pretty(&info).unwrap()).unwrap();

    let out = resume(&dir, &id, &["--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again, first);
    // Every agent came from the journal: the stored --sim-trace saw none.
    assert!(!trace.exists() || read_trace(&trace).is_empty());
    // The resumed run now stores a spec carrying the old flags.
    let (_, info) = run_json(&dir);
    assert_eq!(info["spec"]["limits"]["concurrency"], 2, "{info:#}");
    assert_eq!(info["spec"]["args"], json!("hello"));
    assert!(info.get("flags").is_none());
}

#[test]
fn an_old_run_whose_flags_no_longer_parse_is_refused_saying_how_to_rerun() {
    let dir = temp_dir("spec-legacy-bad");
    std::fs::write(dir.join("flow.js"), FLOW).unwrap();
    let out = run_in(&dir, "flow.js", &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (id, mut info) = run_json(&dir);
    let obj = info.as_object_mut().unwrap();
    obj.remove("spec");
    obj.insert("flags".into(), json!(["--no-such-flag", "1"]));
    obj.insert("status".into(), json!("paused"));
    let run = dir.join(".wasmflow/runs").join(&id);
    let journal_before = std::fs::read(run.join("journal.jsonl")).unwrap();
    std::fs::write(run.join("run.json"), info.to_string()).unwrap();
    let out = resume(&dir, &id, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("older wasmflow") && stderr.contains("wasmflow run"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(run.join("journal.jsonl")).unwrap(),
        journal_before
    );
}

#[test]
fn resume_flags_override_the_stored_spec_and_output_wishes_reset() {
    let dir = temp_dir("spec-override");
    std::fs::write(dir.join("flow.js"), FLOW).unwrap();
    let out = run_in(
        &dir,
        "flow.js",
        &["--quiet", "--concurrency", "3", "--events", "events.jsonl"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (id, _) = run_json(&dir);
    std::fs::remove_file(dir.join("events.jsonl")).unwrap();
    let out = resume(&dir, &id, &["--max-agents", "50", "--quiet"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, info) = run_json(&dir);
    assert_eq!(info["spec"]["limits"]["concurrency"], 3);
    assert_eq!(info["spec"]["limits"]["max_agents"], 50);
    // The stored spec describes the run, not the session that resumed it.
    assert!(info["spec"]["journal"].get("resume").is_none(), "{info:#}");
    // Where output went was the first session's.
    assert!(!dir.join("events.jsonl").exists());
}

#[test]
fn the_library_runs_an_inline_spec_and_journals_it() {
    let dir = temp_dir("spec-library");
    let env = Env {
        cwd: dir.clone(),
        home: Some(dir.clone()),
        runs_root: dir.join("runs"),
    };
    let mut spec = RunSpec::new(Target::inline("inline.js", FLOW.to_string()));
    spec.args = Some(json!([1]));
    spec.backend.name = Some("sim".into());
    let prepared =
        launch::prepare_with(spec, &env, engine().clone(), Instant::now()).expect("prepares");
    let finished = prepared
        .open()
        .expect("opens")
        .run(wasmflow::EventSink::silent());
    let result = finished.result.expect("runs");
    assert_eq!(result["args"], json!([1]));
    assert_eq!(result["xs"].as_array().unwrap().len(), 4);
    let id = finished.summary.run_id.expect("journaled");
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("runs").join(&id).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["status"], "ok");
    assert_eq!(info["spec"]["target"]["kind"], "inline");
    assert_eq!(info["spec"]["target"]["source"], FLOW);

    // A tampered inline source is refused before anything runs.
    let mut spec = RunSpec::new(Target::inline("inline.js", FLOW.to_string()));
    if let Target::Inline { source, .. } = &mut spec.target {
        source.push_str("\n// edited");
    }
    let err = launch::run_spec(spec, &env, wasmflow::EventSink::silent())
        .result
        .unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
}

#[test]
fn a_run_without_args_resumes_with_args_still_undefined() {
    let dir = temp_dir("spec-undefined");
    std::fs::write(
        dir.join("flow.js"),
        "const a = await agent(args === undefined ? 'no args at all' : 'args ' + JSON.stringify(args))\nconst b = await agent('then ' + a)\nreturn { sawUndefined: args === undefined, a, b }\n",
    )
    .unwrap();
    let out = run_in(&dir, "flow.js", &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first = out.json();
    assert_eq!(first["sawUndefined"], true);
    let (id, info) = run_json(&dir);
    assert!(info["spec"].get("args").is_none(), "{info:#}");
    let out = resume(&dir, &id, &["--json", "--quiet"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["result"], first);
    assert_eq!(summary["agents"]["cached"], 2, "{summary:#}");
}
