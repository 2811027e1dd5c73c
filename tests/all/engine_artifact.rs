//! The committed engine stays inside the sandbox contract.

use wasmparser::{Parser, Payload};

/// Every import name anywhere in the engine: the component's own imports
/// and those of each core module inside it.
fn all_imports(wasm: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut component_imports = Vec::new();
    let mut core_imports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("engine parses") {
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    component_imports.push(import.unwrap().name.name.to_string());
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.unwrap();
                    core_imports.push(format!("{}::{}", import.module, import.name));
                }
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (component_imports, core_imports)
}

#[test]
fn engine_imports_only_the_workflow_interface() {
    let (component, core) = all_imports(wasmflow::sandbox::engine::ENGINE_WASM);
    assert!(
        !component.is_empty(),
        "the engine imports the host interface"
    );
    for name in &component {
        assert!(
            name.starts_with("wasmflow:workflow/"),
            "unexpected component import {name}"
        );
    }
    for name in &core {
        assert!(!name.contains("wasi"), "a core module imports WASI: {name}");
        assert!(
            name.starts_with("wasmflow:workflow/")
                || name.starts_with("::")
                || name.starts_with("$"),
            "unexpected core import {name}"
        );
    }
}

#[test]
fn engine_exports_the_driver_and_compiler() {
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(wasmflow::sandbox::engine::ENGINE_WASM) {
        if let Payload::ComponentExportSection(reader) = payload.unwrap() {
            for e in reader {
                exports.push(e.unwrap().name.name.to_string());
            }
        }
    }
    assert!(
        exports
            .iter()
            .any(|e| e == "wasmflow:workflow/driver@0.1.0"),
        "{exports:?}"
    );
    assert!(
        exports
            .iter()
            .any(|e| e == "wasmflow:workflow/compiler@0.1.0"),
        "{exports:?}"
    );
}

#[test]
fn compiled_engine_is_cached_on_disk() {
    let dir = crate::support::temp_dir("cache");
    let (_, first) = wasmflow::WorkflowEngine::with_cache_dir(Some(&dir)).unwrap();
    let (_, second) = wasmflow::WorkflowEngine::with_cache_dir(Some(&dir)).unwrap();
    assert_eq!(first, wasmflow::sandbox::engine::EngineSource::Compiled);
    assert_eq!(second, wasmflow::sandbox::engine::EngineSource::DiskCache);
}

#[test]
fn a_corrupt_cache_is_replaced() {
    let dir = crate::support::temp_dir("cache-corrupt");
    wasmflow::WorkflowEngine::with_cache_dir(Some(&dir)).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a compiled engine").unwrap();
    }
    let (_, source) = wasmflow::WorkflowEngine::with_cache_dir(Some(&dir)).unwrap();
    assert_eq!(source, wasmflow::sandbox::engine::EngineSource::Compiled);
    let (_, source) = wasmflow::WorkflowEngine::with_cache_dir(Some(&dir)).unwrap();
    assert_eq!(source, wasmflow::sandbox::engine::EngineSource::DiskCache);
}
