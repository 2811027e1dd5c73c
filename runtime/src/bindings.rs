//! Host bindings generated from `wit/workflow.wit`.

wasmtime::component::bindgen!({
    world: "engine",
    path: "../wit",
    imports: {
        // Only the blocking driver calls it; the poll host traps.
        "wasmflow:workflow/wait.await-next": trappable,
    },
});

pub use self::wasmflow::workflow::types::{
    AgentOutcome, AgentRequest, AgentResult, ChildScript, Event, LogLevel, RunOptions, ScriptError,
    SpawnError, Step, Usage,
};
