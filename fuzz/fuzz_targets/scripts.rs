//! Arbitrary scripts, raw or from the statement grammar, under small CPU
//! and memory bounds: a clean result or a clean error, never a crash.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmflow::WorkflowEngine;
use wasmflow::fuzzing::{Stmt, render, script};

fn engine() -> &'static WorkflowEngine {
    static ENGINE: OnceLock<WorkflowEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WorkflowEngine::new().expect("the engine loads"))
}

#[derive(Debug, arbitrary::Arbitrary)]
enum Input {
    Raw(String),
    Grammar(Vec<Stmt>),
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(source) => drop(script(engine(), &source)),
        Input::Grammar(stmts) => drop(script(engine(), &render(&stmts))),
    }
});
