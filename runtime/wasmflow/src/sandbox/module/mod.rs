//! Compiled workflow modules: `wasmflow build` makes one from a script
//! ([`build_module`]), `wasmflow inspect` reads one ([`contract::read_info`]),
//! and [`WorkflowModule::load`] checks one against the sandbox contract and
//! prepares it to run like a script.

use std::path::Path;

use wasmtime::component::InstancePre;

use crate::error::RunError;
use crate::sandbox::bindings::exports::wasmflow::workflow::{driver, runner};
use crate::sandbox::engine::WorkflowEngine;
use crate::sandbox::host::HostState;
use crate::script::Script;
use crate::script::check::CheckOptions;

pub mod build;
pub mod contract;
pub mod section;

pub use contract::ModuleInfo;
pub use section::WorkflowSection;

/// Why a file is not a workflow wasmflow will run.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The file has no valid module or component header.
    #[error("not a WebAssembly file (no valid module or component header)")]
    NotWasm,
    /// The binary does not parse.
    #[error("not valid WebAssembly: {0}")]
    Malformed(String),
    /// An import outside the workflow world.
    #[error("it imports `{import}`: {why}")]
    Import {
        /// The import, as the file names it.
        import: String,
        /// Why it is refused.
        why: String,
    },
    /// Built against another version of the WIT package.
    #[error(
        "it was built for {found}, but this wasmflow speaks {ours}: rebuild it from its script with this wasmflow (`wasmflow build`)"
    )]
    WitVersion {
        /// The package version the file uses.
        found: String,
        /// The one this wasmflow implements.
        ours: String,
    },
    /// A core module with nothing wrong but being one.
    #[error(
        "it is a core module; wasmflow runs components of the workflow world (build one with `wasmflow build`)"
    )]
    CoreModule,
    /// The component does not export the poll driver.
    #[error("it does not export {driver}: not a workflow component")]
    NoDriver {
        /// The interface it should export.
        driver: String,
    },
    /// The names match, the types do not.
    #[error("it does not match the workflow world: {0}")]
    Link(String),
    /// The `wasmflow-workflow` section is there but unreadable.
    #[error("its wasmflow-workflow section is unreadable ({0}); rebuild it with `wasmflow build`")]
    BadSection(String),
    /// wasmtime refused or failed to compile it.
    #[error("cannot compile it: {0}")]
    Compile(String),
}

/// A workflow component checked, compiled and linked, ready to run any
/// number of times.
pub struct WorkflowModule {
    /// The script it was built from (from its `wasmflow-workflow` section),
    /// for meta, routing and error positions.
    pub script: Script,
    /// What the file declares.
    pub info: ModuleInfo,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) driver: driver::GuestIndices,
    /// The blocking driver, when the module exports it.
    pub(crate) runner: Option<runner::GuestIndices>,
}

impl WorkflowModule {
    /// Checks `bytes` (read from `path`) against the sandbox contract,
    /// compiles it (or takes it from the disk cache) and links it.
    pub fn load(
        engine: &WorkflowEngine,
        path: &Path,
        bytes: &[u8],
        options: CheckOptions,
    ) -> Result<WorkflowModule, RunError> {
        let refused = |e: ModuleError| {
            RunError::Input(crate::error::InputError::Invalid(format!(
                "{}: {e}",
                path.display()
            )))
        };
        let info = contract::read_info(bytes).map_err(refused)?;
        contract::check(&info).map_err(refused)?;
        let script = match &info.section {
            Some(s) => Script::from_source(
                path.to_path_buf(),
                s.filename.clone(),
                s.source.clone(),
                options,
            )?,
            None => {
                let filename = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "workflow.wasm".into());
                Script::from_source(path.to_path_buf(), filename, String::new(), options)?
            }
        };
        let component = engine
            .compile_module(bytes)
            .map_err(|e| refused(ModuleError::Compile(format!("{e:#}"))))?;
        let pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(|e| refused(ModuleError::Link(format!("{e:#}"))))?;
        let driver = driver::GuestIndices::new(&pre)
            .map_err(|e| refused(ModuleError::Link(format!("{e:#}"))))?;
        let runner = runner::GuestIndices::new(&pre).ok();
        Ok(WorkflowModule {
            script,
            info,
            pre,
            driver,
            runner,
        })
    }
}

/// Compiles `script` to a component of the `workflow` world: its bytecode,
/// its `meta` and the versions in a custom section.
pub fn build_module(engine: &WorkflowEngine, script: &Script) -> Result<Vec<u8>, RunError> {
    let bytecode = engine.compile_bytecode(script)?;
    build::link(script, &bytecode)
        .map_err(|e| RunError::Internal(e.context("building the workflow component")))
}

/// Reads `path` when it is WebAssembly (by its magic bytes, whatever its
/// name); `None` for anything else, which is then read as a script.
pub fn read_wasm(path: &std::path::Path) -> Result<Option<Vec<u8>>, crate::error::InputError> {
    let unreadable = |e: std::io::Error| {
        crate::error::InputError::Invalid(format!("cannot read {}: {e}", path.display()))
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        // Script::load says what is wrong with a missing script.
        Err(_) if path.extension().is_none_or(|e| e != "wasm") => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    let mut magic = [0u8; 4];
    let n = std::io::Read::read(&mut file, &mut magic).map_err(unreadable)?;
    if n < 4 || magic != *b"\0asm" {
        if path.extension().is_some_and(|e| e == "wasm") {
            return Err(crate::error::InputError::Invalid(format!(
                "{}: not a WebAssembly file (it does not start with \\0asm); build one with `wasmflow build flow.js`",
                path.display()
            )));
        }
        return Ok(None);
    }
    let mut bytes = magic.to_vec();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(unreadable)?;
    Ok(Some(bytes))
}
