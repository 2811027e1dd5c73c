//! `wasmflow build`: one script becomes one component of the `workflow`
//! world. The engine's pre-initialised core module gets the script's
//! bytecode as a passive data segment and a few instructions that load it
//! on the first call; wit-component then wraps it again, now without the
//! `compiler` export. Nothing is compiled and the engine's code is copied
//! as raw bytes, so a build takes milliseconds.

use anyhow::{Context, Result, anyhow, bail};
use wit_component::{ComponentEncoder, StringEncoding};

use super::section::{SECTION_FORMAT, SECTION_NAME, WIT_PACKAGE, WorkflowSection};
use crate::script::Script;

/// The WIT the component is encoded against (the same file as bindgen's).
pub(crate) const WIT_SOURCE: &str = include_str!("../../../../../wit/workflow.wit");

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
        sha256: crate::run::key::sha256_hex(script.source.as_bytes()),
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
    let wasm = crate::sandbox::engine::ENGINE_WASM;
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

/// Copies the engine's core module section by section (function bodies
/// and data segments as raw bytes: nothing is re-parsed into an IR) and
/// adds: a passive data segment with the bytecode, a `pending` global, an
/// init function that loads the bytecode on the first call, and wrappers
/// that call it before `driver.start` and `runner.run`. The compiler
/// exports and the engine's component type are left out.
fn embed_bytecode(core: &[u8], bytecode: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
    use wasm_encoder::{
        BlockType, CodeSection, ConstExpr, DataCountSection, DataSection, ExportSection, Function,
        FunctionSection, GlobalSection, GlobalType, Instruction, MemArg, Module, RawSection,
        TypeSection, ValType,
    };
    use wasmparser::{ExternalKind, Payload, TypeRef};

    let len = i32::try_from(bytecode.len()).context("the bytecode is over 2 GiB")?;
    // First pass: the index spaces and the functions we call.
    let (mut imported_funcs, mut defined_funcs, mut globals, mut data_segments) = (0u32, 0, 0, 0);
    let mut func_types: Vec<u32> = Vec::new();
    let mut unit_type = None;
    let mut type_count = 0u32;
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        match payload? {
            Payload::TypeSection(r) => {
                for (i, ty) in r.into_iter_err_on_gc_types().enumerate() {
                    let ty = ty?;
                    if ty.params().is_empty() && ty.results().is_empty() && unit_type.is_none() {
                        unit_type = Some(i as u32);
                    }
                    type_count += 1;
                }
            }
            Payload::ImportSection(r) => {
                for import in r.into_imports() {
                    match import?.ty {
                        TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                            func_types.push(t);
                            imported_funcs += 1;
                        }
                        TypeRef::Global(_) => globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    func_types.push(t?);
                    defined_funcs += 1;
                }
            }
            Payload::GlobalSection(r) => globals += r.count(),
            Payload::DataSection(r) => data_segments += r.count(),
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e?;
                    exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            _ => {}
        }
    }
    let func = |name: &str| -> Result<u32> {
        exports
            .iter()
            .find(|(n, k, _)| n == name && *k == ExternalKind::Func)
            .map(|(_, _, i)| *i)
            .ok_or_else(|| anyhow!("the engine does not export {name}"))
    };
    let realloc = func("cabi_realloc")?;
    let load = func(LOAD_EXPORT)?;
    let entries: Vec<(&str, u32)> = ENTRY_EXPORTS
        .iter()
        .map(|name| func(name).map(|i| (*name, i)))
        .collect::<Result<_>>()?;
    let (unit_type, add_unit_type) = match unit_type {
        Some(t) => (t, false),
        None => (type_count, true),
    };
    let pending = globals;
    let segment = data_segments;
    let init = imported_funcs + defined_funcs;
    let wrapper = |k: usize| init + 1 + k as u32;

    // Second pass: copy, changing what must change.
    let mut module = Module::new();
    let mut saw_data_count = false;
    let mut saw_data = false;
    let mut reencoder = RoundtripReencoder;
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        let payload = payload?;
        match &payload {
            Payload::Version { .. } | Payload::End(_) => continue,
            Payload::TypeSection(r) if add_unit_type => {
                let mut types = TypeSection::new();
                reencoder.parse_type_section(&mut types, r.clone())?;
                types.ty().function([], []);
                module.section(&types);
            }
            Payload::FunctionSection(r) => {
                let mut funcs = FunctionSection::new();
                reencoder.parse_function_section(&mut funcs, r.clone())?;
                funcs.function(unit_type);
                for (_, target) in &entries {
                    let ty = func_types
                        .get(*target as usize)
                        .copied()
                        .ok_or_else(|| anyhow!("function {target} has no type"))?;
                    funcs.function(ty);
                }
                module.section(&funcs);
            }
            Payload::GlobalSection(r) => {
                let mut section = GlobalSection::new();
                reencoder.parse_global_section(&mut section, r.clone())?;
                section.global(
                    GlobalType {
                        val_type: ValType::I32,
                        mutable: true,
                        shared: false,
                    },
                    &ConstExpr::i32_const(1),
                );
                module.section(&section);
            }
            Payload::ExportSection(_) => {
                let mut section = ExportSection::new();
                for (name, kind, index) in &exports {
                    if name.contains("wasmflow:workflow/compiler@") {
                        continue;
                    }
                    let index = match entries.iter().position(|(n, _)| n == name) {
                        Some(k) => wrapper(k),
                        None => *index,
                    };
                    section.export(name, reencoder.export_kind(*kind)?, index);
                }
                module.section(&section);
            }
            Payload::DataCountSection { count, .. } => {
                saw_data_count = true;
                module.section(&DataCountSection { count: count + 1 });
            }
            Payload::CodeSectionStart { .. } => {
                if !saw_data_count {
                    module.section(&DataCountSection {
                        count: data_segments + 1,
                    });
                }
            }
            Payload::CodeSectionEntry(_) => {}
            Payload::DataSection(r) => {
                saw_data = true;
                let mut data = DataSection::new();
                for segment in r.clone() {
                    data.raw(&core[segment?.range]);
                }
                data.passive(bytecode.iter().copied());
                module.section(&data);
            }
            Payload::CustomSection(c) if c.name().starts_with("component-type") => {}
            _ => {
                if let Some((id, range)) = payload.as_section() {
                    module.section(&RawSection {
                        id,
                        data: &core[range],
                    });
                }
            }
        }
        // The code section: every body as it was, then ours.
        if let Payload::CodeSectionStart { count, range, .. } = &payload {
            let mut code = CodeSection::new();
            let reader = wasmparser::CodeSectionReader::new(wasmparser::BinaryReader::new(
                &core[range.clone()],
                range.start,
            ))?;
            for body in reader {
                let body = body?;
                code.raw(&core[body.range()]);
            }
            if code.len() != *count {
                bail!("the code section holds {} bodies, not {count}", code.len());
            }
            let mut f = Function::new([(1, ValType::I32)]);
            for i in [
                Instruction::GlobalGet(pending),
                Instruction::If(BlockType::Empty),
                Instruction::I32Const(0),
                Instruction::GlobalSet(pending),
                Instruction::I32Const(0),
                Instruction::I32Const(0),
                Instruction::I32Const(1),
                Instruction::I32Const(len),
                Instruction::Call(realloc),
                Instruction::LocalTee(0),
                Instruction::I32Const(0),
                Instruction::I32Const(len),
                Instruction::MemoryInit {
                    mem: 0,
                    data_index: segment,
                },
                Instruction::DataDrop(segment),
                Instruction::LocalGet(0),
                Instruction::I32Const(len),
                Instruction::Call(load),
                // result<_, script-error>: a non-zero tag is an error, which
                // a fresh instance cannot have.
                Instruction::I32Load8U(MemArg {
                    offset: 0,
                    align: 0,
                    memory_index: 0,
                }),
                Instruction::If(BlockType::Empty),
                Instruction::Unreachable,
                Instruction::End,
                Instruction::End,
                Instruction::End,
            ] {
                f.instruction(&i);
            }
            code.function(&f);
            for (_, target) in &entries {
                let params = param_count(core, func_types[*target as usize])?;
                let mut f = Function::new([]);
                f.instruction(&Instruction::Call(init));
                for p in 0..params {
                    f.instruction(&Instruction::LocalGet(p));
                }
                f.instruction(&Instruction::Call(*target));
                f.instruction(&Instruction::End);
                code.function(&f);
            }
            module.section(&code);
        }
    }
    if !saw_data {
        let mut data = DataSection::new();
        data.passive(bytecode.iter().copied());
        module.section(&data);
    }
    Ok(module.finish())
}

/// Parameters of function type `ty`.
fn param_count(core: &[u8], ty: u32) -> Result<u32> {
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        if let wasmparser::Payload::TypeSection(r) = payload? {
            let ty = r
                .into_iter_err_on_gc_types()
                .nth(ty as usize)
                .ok_or_else(|| anyhow!("type {ty} is missing"))??;
            return Ok(ty.params().len() as u32);
        }
    }
    bail!("the engine has no type section")
}
