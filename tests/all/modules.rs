//! Compiled workflow modules: what `wasmflow build` emits, what the loader
//! refuses, and `inspect`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{run_in, temp_dir, wasmflow};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/{name}"))
}

/// `wasmflow build` of an example into `dir`; the component's bytes.
fn build(dir: &Path, script: &Path) -> Vec<u8> {
    let out = wasmflow()
        .current_dir(dir)
        .args(["build", "-o", "flow.wasm"])
        .arg(script)
        .output()
        .unwrap();
    assert!(out.status.success(), "build: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("built flow.wasm"), "{stderr}");
    std::fs::read(dir.join("flow.wasm")).unwrap()
}

fn inspect_json(dir: &Path, file: &str) -> Value {
    let out = wasmflow()
        .current_dir(dir)
        .args(["inspect", "--json", file])
        .output()
        .unwrap();
    assert!(out.status.success(), "inspect: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every import of the component and of every core module inside it.
fn all_imports(wasm: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut top, mut inner) = (Vec::new(), Vec::new());
    let mut depth = 0;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.unwrap() {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ComponentImportSection(r) if depth == 0 => {
                for i in r {
                    top.push(i.unwrap().name.name.to_string());
                }
            }
            wasmparser::Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    inner.push(i.unwrap().module.to_string());
                }
            }
            _ => {}
        }
    }
    (top, inner)
}

fn validate(wasm: &[u8]) {
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(wasm)
        .expect("a valid component");
}

#[test]
fn a_built_component_imports_only_the_workflow_world() {
    let dir = temp_dir("built-imports");
    let wasm = build(&dir, &example("route-audit.js"));
    validate(&wasm);
    assert!(wasm.len() <= 1_500_000, "{} bytes", wasm.len());
    let (top, inner) = all_imports(&wasm);
    assert!(!top.is_empty());
    for name in &top {
        assert!(name.starts_with("wasmflow:workflow/"), "import {name}");
    }
    // The core modules inside import only what the component wires to them
    // (our interfaces and wit-component's own shims), never WASI.
    for module in &inner {
        assert!(!module.contains("wasi"), "inner import from {module}");
    }
    let v = inspect_json(&dir, "flow.wasm");
    assert_eq!(v["kind"], "component");
    assert_eq!(v["sandboxed"], true, "{v}");
    let listed: Vec<String> = serde_json::from_value(v["imports"].clone()).unwrap();
    assert_eq!(listed, top);
    let exports: Vec<String> = serde_json::from_value(v["exports"].clone()).unwrap();
    assert_eq!(
        exports,
        [
            "wasmflow:workflow/driver@0.1.0",
            "wasmflow:workflow/runner@0.1.0"
        ]
    );
    assert_eq!(v["workflow"]["wit"], "wasmflow:workflow@0.1.0");
    assert_eq!(v["workflow"]["wasmflow"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["workflow"]["filename"], "route-audit.js");
    assert_eq!(v["workflow"]["meta"]["name"], "route-audit");
    assert_eq!(v["workflow"]["meta"]["phases"][1]["title"], "Audit");
}

/// Appends `(import NAME (instance))` to a component: new type and instance
/// indices come last, so everything already there keeps its meaning.
pub fn with_extra_import(wasm: &[u8], name: &str) -> Vec<u8> {
    let mut types = wasm_encoder::ComponentTypeSection::new();
    types.instance(&wasm_encoder::InstanceType::new());
    let type_index = count_component_types(wasm);
    let mut imports = wasm_encoder::ComponentImportSection::new();
    imports.import(name, wasm_encoder::ComponentTypeRef::Instance(type_index));
    let mut extra = wasm_encoder::Component::new();
    extra.section(&types).section(&imports);
    let extra = extra.finish();
    let mut out = wasm.to_vec();
    out.extend_from_slice(&extra[8..]);
    out
}

/// Component-level types defined so far (type sections, type-kind imports,
/// aliases and exports of types).
fn count_component_types(wasm: &[u8]) -> u32 {
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    let types = validator.validate_all(wasm).expect("valid");
    types.as_ref().component_type_count()
}

#[test]
fn a_component_with_one_extra_import_is_refused_naming_it() {
    let dir = temp_dir("extra-import");
    let wasm = build(&dir, &example("route-audit.js"));
    let bad = with_extra_import(&wasm, "wasi:cli/environment@0.2.0");
    validate(&bad);
    std::fs::write(dir.join("bad.wasm"), &bad).unwrap();
    let out = run_in(&dir, "bad.wasm", &["--quiet"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("imports `wasi:cli/environment@0.2.0`")
            && out.stderr.contains("WASI")
            && out.stderr.contains("bad.wasm"),
        "{}",
        out.stderr
    );
    let v = inspect_json(&dir, "bad.wasm");
    assert_eq!(v["sandboxed"], false);
    assert!(
        v["refusal"]
            .as_str()
            .unwrap()
            .contains("wasi:cli/environment@0.2.0"),
        "{v}"
    );
    // Not only WASI: any name outside our world.
    let other = with_extra_import(&wasm, "acme:net/sockets");
    std::fs::write(dir.join("other.wasm"), &other).unwrap();
    let out = run_in(&dir, "other.wasm", &["--quiet"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("`acme:net/sockets`"), "{}", out.stderr);
}

#[test]
fn a_component_built_for_another_wit_version_is_refused_naming_both() {
    let dir = temp_dir("other-wit");
    let wasm = build(&dir, &example("route-audit.js"));
    // Every name of our package, and the section's `wit`, say 0.9.0: the
    // same bytes a wasmflow speaking wasmflow:workflow@0.9.0 would emit.
    let (from, to) = (b"@0.1.0", b"@0.9.0");
    let mut other = wasm.clone();
    let mut replaced = 0;
    for i in 0..other.len().saturating_sub(from.len()) {
        if &other[i..i + from.len()] == from {
            other[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
        }
    }
    assert!(replaced >= 5, "{replaced}");
    validate(&other);
    std::fs::write(dir.join("old.wasm"), &other).unwrap();
    let out = run_in(&dir, "old.wasm", &["--quiet"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("wasmflow:workflow@0.9.0")
            && out.stderr.contains("wasmflow:workflow@0.1.0")
            && out.stderr.contains("rebuild"),
        "{}",
        out.stderr
    );
}

fn core_module(import: Option<(&str, &str, wasm_encoder::EntityType)>) -> Vec<u8> {
    let mut module = wasm_encoder::Module::new();
    let mut types = wasm_encoder::TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    if let Some((m, n, ty)) = import {
        let mut imports = wasm_encoder::ImportSection::new();
        imports.import(m, n, ty);
        module.section(&imports);
    }
    module.finish()
}

#[test]
fn core_modules_are_refused_naming_their_imports() {
    let dir = temp_dir("core-modules");
    let cases = [
        (
            core_module(Some((
                "wasi_snapshot_preview1",
                "fd_write",
                wasm_encoder::EntityType::Function(0),
            ))),
            "wasi_snapshot_preview1::fd_write",
        ),
        (
            core_module(Some((
                "env",
                "memory",
                wasm_encoder::EntityType::Memory(wasm_encoder::MemoryType {
                    minimum: 1,
                    maximum: None,
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                }),
            ))),
            "env::memory (memory)",
        ),
        (core_module(None), "core module"),
    ];
    for (i, (wasm, named)) in cases.iter().enumerate() {
        let file = format!("core{i}.wasm");
        std::fs::write(dir.join(&file), wasm).unwrap();
        let out = run_in(&dir, &file, &["--quiet"]);
        assert_eq!(out.code, 2, "{named}: {}", out.stderr);
        assert!(out.stderr.contains(named), "{named}: {}", out.stderr);
    }
}

#[test]
fn build_refuses_what_run_refuses_and_names_it() {
    let dir = temp_dir("build-refuses");
    std::fs::write(dir.join("bad.js"), "import fs from 'fs';\nreturn 1\n").unwrap();
    let out = wasmflow()
        .current_dir(&dir)
        .args(["build", "bad.js"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("import"), "{stderr}");
    assert!(!dir.join("bad.wasm").exists());
    std::fs::write(dir.join("x.wasm"), "not wasm").unwrap();
    let out = run_in(&dir, "x.wasm", &["--quiet"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("x.wasm: not a WebAssembly file"),
        "{}",
        out.stderr
    );
}

/// A run of a built module resumes from its journal like a script's.
#[test]
fn a_compiled_module_runs_with_run_flags_and_resumes() {
    let dir = temp_dir("module-flags");
    build(&dir, &example("review.js"));
    let rules = example("review.rules.json");
    let out = run_in(
        &dir,
        "flow.wasm",
        &[
            "--quiet",
            "--json",
            "--sim-rules",
            rules.to_str().unwrap(),
            "--concurrency",
            "2",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first = out.json();
    let id = first["run_id"].as_str().unwrap().to_string();
    let out = crate::support::wasmflow()
        .current_dir(&dir)
        .env("HOME", &dir)
        .args(["resume", &id, "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["result"], first["result"]);
    assert_eq!(again["agents"]["cached"], first["agents"]["done"]);
}

/// A component built elsewhere reuses the engine's compiled functions:
/// the second, different component's compile finds nearly all of its
/// functions in the function cache the first one filled.
#[test]
fn a_new_component_reuses_compiled_functions() {
    let cache = crate::support::temp_dir("function-cache");
    let (engine, _) = wasmflow::WorkflowEngine::with_cache_dir(Some(&cache)).unwrap();
    let component = |body: &str| {
        let script = wasmflow::Script::from_source(
            "flow.js".into(),
            "flow.js".into(),
            body.to_string(),
            Default::default(),
        )
        .unwrap();
        wasmflow::build_module(&engine, &script).unwrap()
    };
    let stats = || engine.function_cache_stats().expect("a cache directory");
    let before = stats();
    engine.compile_module(&component("return 1\n")).unwrap();
    let first = stats();
    engine
        .compile_module(&component("return [1, 2].map(x => x * 3)\n"))
        .unwrap();
    let second = stats();
    let lookups = second.lookups - first.lookups;
    let hits = second.hits - first.hits;
    println!("function cache: first {first:?}, second: {hits} of {lookups} hit");
    assert!(lookups > 1000, "{before:?} {first:?} {second:?}");
    assert!(
        hits * 10 >= lookups * 9,
        "{hits} of {lookups} hit: {first:?} {second:?}"
    );
}
