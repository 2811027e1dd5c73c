//! The bad-input corpus (`tests/bad-input/<category>.json`): each case must
//! exit non-zero with a message that names what was wrong, never panic.

use std::path::Path;

use serde_json::Value;

use crate::support::{temp_dir, wasmflow};

const DEFAULT_SCRIPT: &str = "return await agent('x')\n";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A component `wasmflow build` made from `spec.script` (default: the
/// default script), then damaged as `spec` says: `replace` (pairs of
/// same-length strings, every occurrence), `extra_import` (a name),
/// `truncate_percent`, `append_section` (a second `wasmflow-workflow`
/// section with this text).
fn built(spec: &Value) -> Vec<u8> {
    let source = spec["script"].as_str().unwrap_or(DEFAULT_SCRIPT);
    let engine = crate::support::engine();
    let script = wasmflow::Script::from_source(
        "flow.js".into(),
        "flow.js".into(),
        source.into(),
        Default::default(),
    )
    .unwrap();
    let mut wasm = wasmflow::build_module(engine, &script).unwrap();
    for pair in spec["replace"].as_array().into_iter().flatten() {
        let (from, to) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        assert_eq!(from.len(), to.len());
        let mut i = 0;
        while i + from.len() <= wasm.len() {
            if &wasm[i..i + from.len()] == from.as_bytes() {
                wasm[i..i + from.len()].copy_from_slice(to.as_bytes());
                i += from.len();
            } else {
                i += 1;
            }
        }
    }
    if let Some(name) = spec["extra_import"].as_str() {
        wasm = crate::modules::with_extra_import(&wasm, name);
    }
    if let Some(p) = spec["truncate_percent"].as_u64() {
        wasm.truncate(wasm.len() * p as usize / 100);
    }
    if let Some(text) = spec["append_section"].as_str() {
        wasmflow::sandbox::module::section::append_custom_section(
            &mut wasm,
            wasmflow::sandbox::module::section::SECTION_NAME,
            text.as_bytes(),
        );
    }
    wasm
}

/// Runs one case; `Err` says how it went wrong.
fn run_case(category: &str, case: &Value) -> Result<(), String> {
    let name = case["name"].as_str().unwrap_or("?");
    let dir = temp_dir(&format!("bad-{category}"));
    match case.get("script") {
        None => std::fs::write(dir.join("flow.js"), DEFAULT_SCRIPT).unwrap(),
        Some(Value::String(s)) => std::fs::write(dir.join("flow.js"), s).unwrap(),
        Some(_) => {}
    }
    for d in case["mkdirs"].as_array().into_iter().flatten() {
        std::fs::create_dir_all(dir.join(d.as_str().unwrap())).unwrap();
    }
    let write = |path: &str, bytes: &[u8]| {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    for (path, text) in case["files"].as_object().into_iter().flatten() {
        write(path, text.as_str().unwrap().as_bytes());
    }
    for (path, h) in case["files_hex"].as_object().into_iter().flatten() {
        write(path, &hex(h.as_str().unwrap()));
    }
    for (path, spec) in case["files_built"].as_object().into_iter().flatten() {
        write(path, &built(spec));
    }
    let strings = |key: &str| -> Vec<String> {
        case[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let argv: Vec<String> = if case.get("argv").is_some() {
        strings("argv")
    } else {
        let mut a = vec!["run".to_string()];
        a.extend(strings("args"));
        a.push(
            case["argv_script"]
                .as_str()
                .unwrap_or("flow.js")
                .to_string(),
        );
        a.extend(strings("text"));
        a
    };
    let mut cmd = wasmflow();
    for k in [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("HOME", &dir).current_dir(&dir).args(&argv);
    for (k, v) in case["env"].as_object().into_iter().flatten() {
        cmd.env(k, v.as_str().unwrap());
    }
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected_code = case["code"].as_i64().unwrap() as i32;
    let needle = case["stderr"].as_str().unwrap();
    if stderr.contains("panicked") {
        return Err(format!("{name}: panicked:\n{stderr}"));
    }
    if code == 0 || code != expected_code || !stderr.contains(needle) {
        return Err(format!(
            "{name}: exit {code} (expected {expected_code}), stderr should name `{needle}`:\n{stderr}"
        ));
    }
    Ok(())
}

#[test]
fn every_bad_input_is_refused_with_a_message_naming_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad-input");
    let mut failures = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let path = entry.path();
        let category = path.file_stem().unwrap().to_string_lossy().into_owned();
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(cases.len() >= 10, "{category}: only {} cases", cases.len());
        for case in &cases {
            total += 1;
            if let Err(e) = run_case(&category, case) {
                failures.push(format!("[{category}] {e}"));
            }
        }
    }
    assert!(total >= 70, "{total} cases");
    assert!(
        failures.is_empty(),
        "{} of {total} bad-input cases failed:\n{}",
        failures.len(),
        failures.join("\n---\n")
    );
}
