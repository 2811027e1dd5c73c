//! Prompts, options and outcomes cross the sandbox boundary unchanged.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmflow::WorkflowEngine;
use wasmflow::fuzzing::{ArbJson, Outcome, round_trip};

fn engine() -> &'static WorkflowEngine {
    static ENGINE: OnceLock<WorkflowEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WorkflowEngine::new().expect("the engine loads"))
}

fuzz_target!(|input: (String, ArbJson, Outcome)| {
    round_trip(engine(), &input.0, &input.1, input.2);
});
