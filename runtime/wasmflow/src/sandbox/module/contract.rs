//! What a workflow module may import and must export, checked from its
//! bytes before any of it is compiled.

use serde::Serialize;

use super::ModuleError;
use super::section::{SECTION_NAME, WIT_PACKAGE, WIT_VERSION, WorkflowSection};

/// The interfaces of our world a workflow component may import.
const ALLOWED_IMPORTS: &[&str] = &["types", "host", "wait"];

/// What `wasmflow inspect` reports about a file.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleInfo {
    /// `component` or `core module`.
    pub kind: &'static str,
    /// Size in bytes.
    pub size: usize,
    /// Top-level import names (`module::name (kind)` for core modules).
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// The `wasmflow-workflow` section, when present.
    #[serde(skip)]
    pub section: Option<WorkflowSection>,
    /// Why the section could not be read, when it is there but broken.
    #[serde(skip)]
    pub section_error: Option<String>,
}

/// Reads the top level of a module or component: nothing is compiled.
pub fn read_info(bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
    if !wasmparser::Parser::is_component(bytes) && !wasmparser::Parser::is_core_wasm(bytes) {
        return Err(ModuleError::NotWasm);
    }
    let mut info = ModuleInfo {
        kind: if wasmparser::Parser::is_component(bytes) {
            "component"
        } else {
            "core module"
        },
        size: bytes.len(),
        imports: Vec::new(),
        exports: Vec::new(),
        section: None,
        section_error: None,
    };
    let malformed = |e: wasmparser::BinaryReaderError| ModuleError::Malformed(e.to_string());
    // Nested modules and components have payloads of their own; only the
    // outermost level is the file's interface.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        use wasmparser::Payload::*;
        match payload.map_err(malformed)? {
            ModuleSection { .. } | ComponentSection { .. } => depth += 1,
            End(_) => depth = depth.saturating_sub(1),
            ComponentImportSection(r) if depth == 0 => {
                for import in r {
                    info.imports
                        .push(import.map_err(malformed)?.name.name.to_string());
                }
            }
            ComponentExportSection(r) if depth == 0 => {
                for export in r {
                    info.exports
                        .push(export.map_err(malformed)?.name.name.to_string());
                }
            }
            ImportSection(r) if depth == 0 => {
                for import in r.into_imports() {
                    let import = import.map_err(malformed)?;
                    let kind = match import.ty {
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_) => {
                            "function"
                        }
                        wasmparser::TypeRef::Table(_) => "table",
                        wasmparser::TypeRef::Memory(_) => "memory",
                        wasmparser::TypeRef::Global(_) => "global",
                        wasmparser::TypeRef::Tag(_) => "tag",
                    };
                    info.imports
                        .push(format!("{}::{} ({kind})", import.module, import.name));
                }
            }
            ExportSection(r) if depth == 0 => {
                for export in r {
                    info.exports
                        .push(export.map_err(malformed)?.name.to_string());
                }
            }
            CustomSection(c) if depth == 0 && c.name() == SECTION_NAME => {
                // Two sections are as suspect as a broken one.
                match serde_json::from_slice::<WorkflowSection>(c.data()) {
                    Ok(_) if info.section.is_some() => {
                        info.section_error = Some(format!("{SECTION_NAME} appears twice"))
                    }
                    Ok(s) => info.section = Some(s),
                    Err(e) => info.section_error = Some(e.to_string()),
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Refuses anything outside the sandbox contract, naming the cause.
pub fn check(info: &ModuleInfo) -> Result<(), ModuleError> {
    if info.kind != "component" {
        if let Some(import) = info.imports.first() {
            return Err(ModuleError::Import {
                import: import.clone(),
                why: core_import_reason(import),
            });
        }
        return Err(ModuleError::CoreModule);
    }
    for import in &info.imports {
        match parse_ours(import) {
            Some((_, version)) if version != WIT_VERSION => {
                return Err(ModuleError::WitVersion {
                    found: format!("wasmflow:workflow@{version}"),
                    ours: WIT_PACKAGE.into(),
                });
            }
            Some((iface, _)) if ALLOWED_IMPORTS.contains(&iface) => {}
            Some(_) => {
                return Err(ModuleError::Import {
                    import: import.clone(),
                    why: "not an import of the workflow world (types, host, wait)".into(),
                });
            }
            None => {
                return Err(ModuleError::Import {
                    import: import.clone(),
                    why: outside_reason(import),
                });
            }
        }
    }
    if let Some(e) = &info.section_error {
        return Err(ModuleError::BadSection(e.clone()));
    }
    if let Some(s) = &info.section
        && s.wit != WIT_PACKAGE
    {
        return Err(ModuleError::WitVersion {
            found: s.wit.clone(),
            ours: WIT_PACKAGE.into(),
        });
    }
    let driver = format!("wasmflow:workflow/driver@{WIT_VERSION}");
    if !info.exports.contains(&driver) {
        if let Some((_, version)) = info.exports.iter().find_map(|e| parse_ours(e))
            && version != WIT_VERSION
        {
            return Err(ModuleError::WitVersion {
                found: format!("wasmflow:workflow@{version}"),
                ours: WIT_PACKAGE.into(),
            });
        }
        return Err(ModuleError::NoDriver { driver });
    }
    Ok(())
}

/// `wasmflow:workflow/<iface>@<version>` → (iface, version).
fn parse_ours(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("wasmflow:workflow/")?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

fn outside_reason(import: &str) -> String {
    if import.starts_with("wasi:") {
        "WASI (files, clocks, sockets, environment) is not granted to workflows; a workflow may import only wasmflow:workflow/{types,host,wait}".into()
    } else {
        "outside the wasmflow sandbox; a workflow may import only wasmflow:workflow/{types,host,wait}".into()
    }
}

fn core_import_reason(import: &str) -> String {
    if import.ends_with("(memory)") {
        "a workflow owns its memory; imported memory is refused".into()
    } else if import.starts_with("wasi_snapshot_preview1::") {
        "WASI preview 1 is not granted to workflows".into()
    } else {
        "a core module cannot be a workflow; build a component with `wasmflow build`".into()
    }
}
