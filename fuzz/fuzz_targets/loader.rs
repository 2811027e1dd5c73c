//! Arbitrary modules and components through the loader: core modules from
//! wasm-smith, raw bytes, and built workflow components with bytes changed.
//! Each is refused naming the file, or keeps to the contract and runs to a
//! clean end.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasmflow::fuzzing::{loader, mutate};
use wasmflow::{Script, WorkflowEngine, build_module};

fn engine() -> &'static WorkflowEngine {
    static ENGINE: OnceLock<WorkflowEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WorkflowEngine::new().expect("the engine loads"))
}

/// A real workflow component to damage.
fn base() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let source = "phase('a'); const r = await parallel([() => agent('x'), () => agent('y')]); log(r); return r";
        let script = Script::from_source(
            "fuzz.js".into(),
            "fuzz.js".into(),
            source.into(),
            Default::default(),
        )
        .expect("the base script checks");
        build_module(engine(), &script).expect("the base component builds")
    })
}

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Smith(&'a [u8]),
    Raw(&'a [u8]),
    Mutated(Vec<(u32, u8)>),
}

fuzz_target!(|input: Input| {
    match input {
        Input::Smith(seed) => {
            let mut u = Unstructured::new(seed);
            if let Ok(module) = wasm_smith::Module::new(wasm_smith::Config::default(), &mut u) {
                loader(engine(), &module.to_bytes());
            }
        }
        Input::Raw(bytes) => loader(engine(), bytes),
        Input::Mutated(edits) => loader(engine(), &mutate(base(), &edits)),
    }
});
