//! The conformance suite: every script in `tests/conformance/` runs through
//! the CLI on the sim backend and must meet the expectations in its header.
//!
//! Header lines (each `// key: <one-line JSON>`):
//! - `flags`: extra arguments after the script path;
//! - `rules`: a sim rules object (passed with `--sim-rules`);
//! - `file`: `{"name": …, "source": …}`, written next to the script;
//! - `expect`: `exit` (default 0), `result` (exact), `error_name`,
//!   `error_contains`, `error_line`, `result_contains` (substring of a
//!   string result), `stderr_contains` (list), `agents`
//!   (exact counts), `events_contain` (objects matched against `--events`
//!   lines by their listed fields).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::support::{run_in, temp_dir};

struct Case {
    name: String,
    source: String,
    flags: Vec<String>,
    rules: Option<Value>,
    files: Vec<(String, String)>,
    expect: Map<String, Value>,
}

fn cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/conformance exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "js"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let source = std::fs::read_to_string(&path).unwrap();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let mut case = Case {
                name: name.clone(),
                source: source.clone(),
                flags: Vec::new(),
                rules: None,
                files: Vec::new(),
                expect: Map::new(),
            };
            for line in source
                .lines()
                .skip_while(|l| l.starts_with("#!"))
                .take_while(|l| l.starts_with("//"))
            {
                let Some((key, json)) = line.trim_start_matches("//").trim().split_once(": ")
                else {
                    continue;
                };
                let parse = || -> Value {
                    serde_json::from_str(json)
                        .unwrap_or_else(|e| panic!("{name}: bad `{key}` header: {e}"))
                };
                match key {
                    "flags" => case.flags = serde_json::from_value(parse()).unwrap(),
                    "rules" => case.rules = Some(parse()),
                    "file" => {
                        let f = parse();
                        case.files.push((
                            f["name"].as_str().unwrap().into(),
                            f["source"].as_str().unwrap().into(),
                        ));
                    }
                    "expect" => case.expect = parse().as_object().unwrap().clone(),
                    _ => {}
                }
            }
            case
        })
        .collect()
}

/// Does `actual` have every field of `expected` (recursively for objects)?
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        _ => actual == expected,
    }
}

/// How a case runs: the script as it is (poll driver), the script under
/// the blocking driver, or compiled with `wasmflow build` first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Script,
    Blocking,
    Module,
}

fn check(case: &Case, mode: Mode) -> Result<(), String> {
    let dir = temp_dir(&case.name);
    std::fs::write(dir.join("flow.js"), &case.source).unwrap();
    for (name, source) in &case.files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, source).unwrap();
    }
    let mut args: Vec<String> = vec![
        "--json".into(),
        "--quiet".into(),
        "--events".into(),
        "events.jsonl".into(),
    ];
    if let Some(rules) = &case.rules {
        std::fs::write(dir.join("rules.json"), rules.to_string()).unwrap();
        args.extend(["--sim-rules".into(), "rules.json".into()]);
    }
    let e = &case.expect;
    let exit = e.get("exit").and_then(Value::as_i64).unwrap_or(0) as i32;
    let mut target = "flow.js";
    // Before the case's flags: those may end in trailing text arguments.
    if mode == Mode::Blocking {
        args.extend(["--driver".into(), "blocking".into()]);
    }
    args.extend(case.flags.iter().cloned());
    match mode {
        Mode::Script | Mode::Blocking => {}
        Mode::Module => {
            let strict = case.flags.iter().any(|f| f == "--strict");
            let mut build = crate::support::wasmflow();
            build.current_dir(&dir).env("HOME", &dir).args([
                "build",
                "flow.js",
                "-o",
                "flow.wasm",
                "--quiet",
            ]);
            if strict {
                build.arg("--strict");
            }
            let built = build.output().unwrap();
            let code = built.status.code().unwrap_or(-1);
            if code != 0 {
                // What the static checks refuse, build refuses the same way.
                return if code == exit {
                    Ok(())
                } else {
                    Err(format!(
                        "build exited {code} (run expects {exit}): {}",
                        String::from_utf8_lossy(&built.stderr)
                    ))
                };
            }
            target = "flow.wasm";
        }
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_in(&dir, target, &arg_refs);
    let fail = |what: String| {
        Err(format!(
            "{what}\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        ))
    };
    if out.code != exit {
        return fail(format!("exit {} (expected {exit})", out.code));
    }
    let summary: Value = match serde_json::from_str(&out.stdout) {
        Ok(v) => v,
        Err(_) if exit == 2 => Value::Null,
        Err(err) => return fail(format!("stdout is not JSON: {err}")),
    };
    if let Some(result) = e.get("result")
        && summary["result"] != *result
    {
        return fail(format!("result {} (expected {result})", summary["result"]));
    }
    if let Some(text) = e.get("result_contains").and_then(Value::as_str)
        && !summary["result"]
            .as_str()
            .unwrap_or_default()
            .contains(text)
    {
        return fail(format!(
            "result {} does not contain `{text}`",
            summary["result"]
        ));
    }
    if let Some(name) = e.get("error_name")
        && summary["error"]["script"]["name"] != *name
    {
        return fail(format!(
            "error name {} (expected {name})",
            summary["error"]["script"]["name"]
        ));
    }
    if let Some(text) = e.get("error_contains").and_then(Value::as_str) {
        let message = summary["error"]["message"].as_str().unwrap_or_default();
        if !message.contains(text) && !out.stderr.contains(text) {
            return fail(format!("error does not mention `{text}`"));
        }
    }
    if let Some(line) = e.get("error_line")
        && summary["error"]["script"]["line"] != *line
    {
        return fail(format!(
            "error line {} (expected {line})",
            summary["error"]["script"]["line"]
        ));
    }
    for text in e
        .get("stderr_contains")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !out.stderr.contains(text.as_str().unwrap()) {
            return fail(format!("stderr lacks `{text}`"));
        }
    }
    // The expected counts, compared key by key (`cached` is 0 unless
    // a script says otherwise).
    if let Some(Value::Object(agents)) = e.get("agents")
        && agents.iter().any(|(k, v)| summary["agents"][k] != *v)
    {
        return fail(format!(
            "agents {} (expected {})",
            summary["agents"],
            Value::Object(agents.clone())
        ));
    }
    if let Some(wanted) = e.get("events_contain").and_then(Value::as_array) {
        let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        for w in wanted {
            if !events.iter().any(|ev| contains(ev, w)) {
                return fail(format!("no event like {w}"));
            }
        }
    }
    Ok(())
}

#[test]
fn conformance_suite() {
    run_suite(Mode::Script);
}

/// The blocking driver (`runner.run` on `await-next`) gives what the poll
/// driver gives, script by script.
#[test]
fn conformance_suite_blocking_driver() {
    run_suite(Mode::Blocking);
}

/// Every script compiled with `wasmflow build` and run as a component
/// behaves as the script does (static checks refused at build time).
#[test]
fn conformance_suite_compiled_modules() {
    run_suite(Mode::Module);
}

fn run_suite(mode: Mode) {
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "the suite has {} scripts; the contract asks for 30 or more",
        cases.len()
    );
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(4))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|c| {
                            check(c, mode)
                                .err()
                                .map(|e| format!("== {} ({mode:?}): {e}", c.name))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} conformance scripts failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
