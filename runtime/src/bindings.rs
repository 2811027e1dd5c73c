//! Host bindings generated from `wit/workflow.wit`.

wasmtime::component::bindgen!({
    world: "engine",
    path: "../wit",
});

pub use self::wasmflow::workflow::types::{
    AgentOutcome, AgentRequest, AgentResult, ChildScript, Event, LogLevel, RunOptions, ScriptError,
    SpawnError, Step, Usage,
};
