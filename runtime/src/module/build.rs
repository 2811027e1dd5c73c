//! `wasmflow build`: one script becomes one component of the `workflow`
//! world. The engine's pre-initialised core module gets the script's
//! bytecode as a passive data segment and a few instructions that load it
//! on the first call; wit-component then wraps it again, now without the
//! `compiler` export. No code is compiled, so a build takes milliseconds.

use anyhow::{Context, Result, anyhow};
use walrus::ir::{LoadKind, MemArg, Value as WasmValue};
use walrus::{ConstExpr, DataKind, ExportItem, FunctionBuilder, FunctionId, ValType};
use wit_component::{ComponentEncoder, StringEncoding};

use super::section::{SECTION_FORMAT, SECTION_NAME, WIT_PACKAGE, WorkflowSection};
use crate::script::Script;

/// The WIT the component is encoded against (the same file as bindgen's).
pub(crate) const WIT_SOURCE: &str = include_str!("../../../wit/workflow.wit");

const LOAD_EXPORT: &str = "wasmflow:workflow/compiler@0.1.0#load";
/// The exports that run script code: each loads the bytecode first.
const ENTRY_EXPORTS: &[&str] = &[
    "wasmflow:workflow/driver@0.1.0#start",
    "wasmflow:workflow/runner@0.1.0#run",
];

/// Builds the component for `script` from its QuickJS `bytecode`.
pub fn link(script: &Script, bytecode: &[u8]) -> Result<Vec<u8>> {
    let core = engine_core_module().context("finding the engine's core module")?;
    let mut core = embed_bytecode(core, bytecode).context("embedding the bytecode")?;
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str("workflow.wit", WIT_SOURCE)
        .context("parsing wit/workflow.wit")?;
    let world = resolve
        .select_world(&[package], Some("workflow"))
        .context("selecting the workflow world")?;
    wit_component::embed_component_metadata(&mut core, &resolve, world, StringEncoding::UTF8)
        .context("embedding the component type")?;
    let mut component = ComponentEncoder::default()
        .module(&core)
        .context("reading the component type")?
        .encode()
        .context("encoding the component")?;
    let section = WorkflowSection {
        format: SECTION_FORMAT,
        wasmflow: env!("CARGO_PKG_VERSION").into(),
        wit: WIT_PACKAGE.into(),
        filename: script.filename.clone(),
        sha256: crate::key::sha256_hex(script.source.as_bytes()),
        meta: script.meta.as_ref().map(|m| m.raw.clone()),
        source: script.source.clone(),
    };
    let payload = serde_json::to_vec(&section)?;
    super::section::append_custom_section(&mut component, SECTION_NAME, &payload);
    Ok(component)
}

/// The engine component's main core module: the largest one it holds (the
/// others are wit-component's small shims).
fn engine_core_module() -> Result<&'static [u8]> {
    let wasm = crate::engine::ENGINE_WASM;
    let mut best: Option<std::ops::Range<usize>> = None;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::ModuleSection {
            unchecked_range, ..
        } = payload?
            && best
                .as_ref()
                .is_none_or(|b| unchecked_range.len() > b.len())
        {
            best = Some(unchecked_range);
        }
    }
    let range = best.ok_or_else(|| anyhow!("the engine holds no core module"))?;
    Ok(&wasm[range])
}

fn embed_bytecode(core: &[u8], bytecode: &[u8]) -> Result<Vec<u8>> {
    let mut module = walrus::ModuleConfig::new()
        .generate_producers_section(false)
        .parse(core)?;
    let memory = module.get_memory_id()?;
    let realloc = module.exports.get_func("cabi_realloc")?;
    let load = module.exports.get_func(LOAD_EXPORT)?;
    let len = i32::try_from(bytecode.len()).context("the bytecode is over 2 GiB")?;
    let data = module.data.add(DataKind::Passive, bytecode.to_vec());
    let pending = module.globals.add_local(
        ValType::I32,
        true,
        false,
        ConstExpr::Value(WasmValue::I32(1)),
    );
    // init: on the first call only, copy the bytecode into memory the guest
    // owns (cabi_realloc, as for any list argument) and hand it to `load`.
    // A failed load traps: it cannot fail on a fresh instance.
    let ptr = module.locals.add(ValType::I32);
    let mut init = FunctionBuilder::new(&mut module.types, &[], &[]);
    init.name("wasmflow-load-embedded-script".into());
    init.func_body().global_get(pending).if_else(
        None,
        |then| {
            then.i32_const(0)
                .global_set(pending)
                .i32_const(0)
                .i32_const(0)
                .i32_const(1)
                .i32_const(len)
                .call(realloc)
                .local_tee(ptr)
                .i32_const(0)
                .i32_const(len)
                .memory_init(memory, data)
                .data_drop(data)
                .local_get(ptr)
                .i32_const(len)
                .call(load)
                .load(
                    memory,
                    LoadKind::I32_8 {
                        kind: walrus::ir::ExtendedLoad::ZeroExtend,
                    },
                    MemArg {
                        align: 1,
                        offset: 0,
                    },
                )
                .if_else(
                    None,
                    |failed| {
                        failed.unreachable();
                    },
                    |_| {},
                );
        },
        |_| {},
    );
    let init = init.finish(vec![], &mut module.funcs);
    for name in ENTRY_EXPORTS {
        wrap_export(&mut module, name, init)?;
    }
    // What only the engine needs: the compiler interface and the component
    // type of the engine world (ours is embedded next).
    let compiler: Vec<_> = module
        .exports
        .iter()
        .filter(|e| e.name.contains("wasmflow:workflow/compiler@"))
        .map(|e| e.id())
        .collect();
    for id in compiler {
        module.exports.delete(id);
    }
    let component_types: Vec<_> = module
        .customs
        .iter()
        .filter(|(_, c)| c.name().starts_with("component-type"))
        .map(|(id, _)| id)
        .collect();
    for id in component_types {
        module.customs.delete(id);
    }
    Ok(module.emit_wasm())
}

/// Points export `name` at a new function that calls `first`, then the
/// original with the same arguments.
fn wrap_export(module: &mut walrus::Module, name: &str, first: FunctionId) -> Result<()> {
    let export = module
        .exports
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.id())
        .ok_or_else(|| anyhow!("the engine does not export {name}"))?;
    let target = module.exports.get_func(name)?;
    let ty = module.types.get(module.funcs.get(target).ty());
    let (params, results) = (ty.params().to_vec(), ty.results().to_vec());
    let args: Vec<_> = params.iter().map(|t| module.locals.add(*t)).collect();
    let mut wrapper = FunctionBuilder::new(&mut module.types, &params, &results);
    let mut body = wrapper.func_body();
    body.call(first);
    for a in &args {
        body.local_get(*a);
    }
    body.call(target);
    let wrapper = wrapper.finish(args, &mut module.funcs);
    module.exports.get_mut(export).item = ExportItem::Function(wrapper);
    Ok(())
}
