//! The embedded engine: the pre-initialised QuickJS component built by
//! `scripts/build-guest.sh`, compiled to native code once and cached on disk
//! so no run pays the compile twice.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use wasmtime::Store;

use crate::error::RunError;
use crate::run::events::EventSink;
use crate::sandbox::bindings::EnginePre;
use crate::sandbox::function_cache::FunctionCache;
use crate::sandbox::host::HostState;
use crate::script::Script;

/// The committed engine artifact (a component of the `engine` world).
pub static ENGINE_WASM: &[u8] = include_bytes!("../../assets/engine.wasm");

/// A compiled engine, ready to instantiate once per run. Cheap to share.
#[derive(Clone)]
pub struct WorkflowEngine {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) pre: EnginePre<HostState>,
    /// The host interface, for compiled workflow modules.
    pub(crate) linker: Linker<HostState>,
    cache: Option<PathBuf>,
    functions: Option<Arc<FunctionCache>>,
}

/// How the compiled engine was obtained (for diagnostics and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineSource {
    /// Deserialised from the disk cache.
    DiskCache,
    /// Compiled now.
    Compiled,
}

impl WorkflowEngine {
    /// Loads the engine, from the disk cache when possible.
    pub fn new() -> Result<WorkflowEngine> {
        Self::with_cache_dir(cache_dir().as_deref()).map(|(e, _)| e)
    }

    /// Loads the engine using `dir` as the compile cache (`None`: no cache).
    pub fn with_cache_dir(dir: Option<&Path>) -> Result<(WorkflowEngine, EngineSource)> {
        let functions = dir.map(|d| {
            Arc::new(FunctionCache::new(
                d.join(format!("functions-{}.bin", env!("CARGO_PKG_VERSION"))),
            ))
        });
        let mut config = engine_config();
        if let Some(f) = &functions {
            config
                .enable_incremental_compilation(f.clone())
                .map_err(anyhow::Error::from)
                .context("enabling the function cache")?;
        }
        let engine = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let (component, source) =
            load_cached(&engine, ENGINE_WASM, "engine", dir, functions.as_deref())
                .context("compiling the embedded engine")?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        add_host_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the host interface")?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("pre-instantiating the engine")?;
        let pre = EnginePre::new(pre)
            .map_err(anyhow::Error::from)
            .context("checking the engine's exports")?;
        Ok((
            WorkflowEngine {
                engine,
                pre,
                linker,
                cache: dir.map(Path::to_path_buf),
                functions,
            },
            source,
        ))
    }

    /// Compiles a script to QuickJS bytecode in a fresh engine instance.
    pub fn compile_bytecode(&self, script: &Script) -> Result<Vec<u8>, RunError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| RunError::Internal(anyhow::Error::new(e).context("starting tokio")))?;
        rt.block_on(self.compile_bytecode_async(script))
    }

    /// [`WorkflowEngine::compile_bytecode`] on the caller's runtime.
    pub async fn compile_bytecode_async(&self, script: &Script) -> Result<Vec<u8>, RunError> {
        let limits = crate::limits::Limits::default();
        let mut store = Store::new(
            &self.engine,
            HostState::new(EventSink::silent(), 0, limits.memory_bytes),
        );
        store.limiter(|s| &mut s.limiter);
        let internal = |e: wasmtime::Error, doing: &str| {
            RunError::Internal(anyhow::Error::from(e).context(doing.to_string()))
        };
        store
            .set_fuel(limits.fuel_per_slice)
            .map_err(|e| internal(e, "setting fuel"))?;
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| internal(e, "instantiating the engine"))?;
        instance
            .wasmflow_workflow_compiler()
            .call_compile(&mut store, &script.wrapped, &script.filename)
            .await
            .map_err(|e| internal(e, "compiling the script"))?
            .map_err(|e| {
                RunError::Script(crate::sandbox::driver::script_failure(e, &script.filename))
            })
    }

    /// What the function cache did in this engine's compiles (`None`:
    /// no cache directory).
    pub fn function_cache_stats(&self) -> Option<crate::sandbox::function_cache::CacheStats> {
        self.functions.as_ref().map(|f| f.stats())
    }

    /// Compiles a workflow component to native code, from the disk cache
    /// when this exact file was compiled before.
    pub fn compile_module(&self, bytes: &[u8]) -> Result<Component> {
        load_cached(
            &self.engine,
            bytes,
            "module",
            self.cache.as_deref(),
            self.functions.as_deref(),
        )
        .map(|(c, _)| c)
    }
}

/// `types` and `host` from bindgen; `wait.await-next` by hand, because it
/// suspends on the driver (see driver::add_wait_to_linker).
fn add_host_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use crate::sandbox::bindings::wasmflow::workflow::{host, types};
    use wasmtime::component::HasSelf;
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    host::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    crate::sandbox::driver::add_wait_to_linker(linker)
}

fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    // Fuel bounds the CPU of each guest slice (see Limits::fuel_per_slice).
    config.consume_fuel(true);
    config.wasm_component_model(true);
    config
}

/// `$WASMFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmflow`, else
/// `~/.cache/wasmflow`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WASMFLOW_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("wasmflow"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("wasmflow"))
}

/// Names the compiled artifact by everything that changes its code: the
/// engine bytes, the wasmtime version and the `Config` (fuel on or off
/// changes the generated code).
fn cache_key(engine: &wasmtime::Engine, wasm: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut sha = Sha256::new();
    sha.update(wasm);
    sha.update(hasher.finish().to_le_bytes());
    sha.update(env!("CARGO_PKG_VERSION").as_bytes());
    crate::run::key::hex(&sha.finalize()[..12])
}

fn load_cached(
    engine: &wasmtime::Engine,
    wasm: &[u8],
    kind: &str,
    dir: Option<&Path>,
    functions: Option<&FunctionCache>,
) -> Result<(Component, EngineSource)> {
    let Some(dir) = dir else {
        return Ok((compile(engine, wasm)?, EngineSource::Compiled));
    };
    let path = dir.join(format!("{kind}-{}.cwasm", cache_key(engine, wasm)));
    if path.exists() {
        // SAFETY: the file is one we serialised ourselves into the user's
        // cache directory, named by the hash of its source; wasmtime checks
        // its header against this engine.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, EngineSource::DiskCache)),
            Err(e) => tracing::warn!(
                "ignoring the unusable compile cache {}: {e:#}",
                path.display()
            ),
        }
    }
    let component = compile(engine, wasm)?;
    if let Some(f) = functions
        && let Err(e) = f.flush()
    {
        tracing::warn!("cannot keep compiled functions in {}: {e:#}", dir.display());
    }
    if let Err(e) = store_cache(&component, dir, &path) {
        tracing::warn!("cannot cache compiled code in {}: {e:#}", dir.display());
    }
    Ok((component, EngineSource::Compiled))
}

fn compile(engine: &wasmtime::Engine, wasm: &[u8]) -> Result<Component> {
    Component::new(engine, wasm).map_err(anyhow::Error::from)
}

fn store_cache(component: &Component, dir: &Path, path: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    // Temp file + rename: concurrent processes never see half a file.
    let tmp = dir.join(format!(".compile-{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
