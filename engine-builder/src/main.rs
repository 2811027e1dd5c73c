//! Turns the guest build (`wasmflow_guest.wasm`, a wasm32-wasip1 core module)
//! into the committed engine component, `runtime/wasmflow/assets/engine.wasm`:
//!
//! 1. every `wasi_snapshot_preview1` import becomes a local stub, so the
//!    engine can reach nothing outside its own memory;
//! 2. Wizer runs `wizer-initialize` (QuickJS runtime + prelude) and
//!    snapshots the memory, so no run pays for that start-up;
//! 3. wit-component wraps the core module as a component of the `engine`
//!    world, whose only imports are `wasmflow:workflow/host`.
//!
//! Usage: `wasmflow-engine-builder <guest.wasm> <engine.wasm>`; run through
//! `scripts/build-guest.sh`. The output is byte-for-byte reproducible.

use anyhow::{Context, Result, bail};
use walrus::ir::{MemArg, StoreKind};
use walrus::{FunctionId, ImportKind, MemoryId, Module};

mod wasi_stubs;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        bail!("usage: wasmflow-engine-builder <guest.wasm> <engine.wasm>");
    };
    let guest = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let stubbed = stub_wasi(&guest).context("replacing WASI imports with stubs")?;
    let initialized = wizen(&stubbed).context("pre-initialising with Wizer")?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&initialized)
        .context("reading the component type of the guest")?
        .encode()
        .context("encoding the engine component")?;
    std::fs::write(output, &component).with_context(|| format!("writing {output}"))?;
    eprintln!(
        "engine: {} bytes (guest core module {} bytes) -> {output}",
        component.len(),
        guest.len()
    );
    Ok(())
}

fn stub_wasi(wasm: &[u8]) -> Result<Vec<u8>> {
    let mut module = Module::from_buffer(wasm)?;
    let memory: MemoryId = module.get_memory_id()?;
    let imports: Vec<(FunctionId, String)> = module
        .imports
        .iter()
        .filter(|i| i.module == "wasi_snapshot_preview1")
        .map(|i| match i.kind {
            ImportKind::Function(f) => Ok((f, i.name.clone())),
            _ => bail!("WASI import {} is not a function", i.name),
        })
        .collect::<Result<_>>()?;
    for (func, name) in imports {
        let stub = wasi_stubs::stub_for(&name);
        module.replace_imported_func(func, |(body, params)| {
            for &(param, value) in stub.zero_out_params {
                // Each named out-parameter gets a zero of its width.
                body.local_get(params[param]);
                match value {
                    wasi_stubs::Out::I32 => {
                        body.i32_const(0).store(
                            memory,
                            StoreKind::I32 { atomic: false },
                            MemArg {
                                align: 4,
                                offset: 0,
                            },
                        );
                    }
                    wasi_stubs::Out::I64 => {
                        body.i64_const(0).store(
                            memory,
                            StoreKind::I64 { atomic: false },
                            MemArg {
                                align: 8,
                                offset: 0,
                            },
                        );
                    }
                }
            }
            if let Some((ptr, len)) = stub.zero_fill {
                body.local_get(params[ptr])
                    .i32_const(0)
                    .local_get(params[len])
                    .memory_fill(memory);
            }
            match stub.errno {
                Some(errno) => {
                    body.i32_const(errno);
                }
                None => {
                    body.unreachable();
                }
            }
        })?;
    }
    let remaining: Vec<String> = module
        .imports
        .iter()
        .filter(|i| !i.module.starts_with("wasmflow:workflow/"))
        .map(|i| format!("{}::{}", i.module, i.name))
        .collect();
    if !remaining.is_empty() {
        bail!("imports outside wasmflow:workflow remain: {remaining:?}");
    }
    Ok(module.emit_wasm())
}

fn wizen(wasm: &[u8]) -> Result<Vec<u8>> {
    let engine =
        wasmtime::Engine::new(&wasmtime::Config::new()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut store = wasmtime::Store::new(&engine, ());
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(async {
        wasmtime_wizer::Wizer::new()
            .init_func("wizer-initialize")
            .run(&mut store, wasm, async |store, module| {
                // The host interface is not there at build time: any call
                // to it during initialisation is a bug and traps.
                let mut linker = wasmtime::Linker::new(store.engine());
                linker.define_unknown_imports_as_traps(module)?;
                linker.instantiate_async(store, module).await
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    })
}
