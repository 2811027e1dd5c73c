#![allow(missing_docs)] // generated from wit/workflow.wit
//! Host bindings generated from `wit/workflow.wit`.

wasmtime::component::bindgen!({
    world: "engine",
    path: "../../wit",
    // Guest calls run on fibers, so the blocking driver's `await-next` can
    // suspend `runner.run` while agents work (driver::add_wait_to_linker).
    exports: { default: async },
});

pub use self::wasmflow::workflow::types::{
    AgentOutcome, AgentRequest, AgentResult, ChildScript, Event, LogLevel, RunOptions, ScriptError,
    SpawnError, Step, Usage,
};
