//! wasmflow runs LLM workflow scripts (JavaScript that orchestrates many
//! agents) inside a WebAssembly sandbox whose only imports are the host
//! interface of `wit/workflow.wit`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use wasmflow::backend::sim::{SimBackend, SimRules};
//! use wasmflow::{EventSink, Limits, RunConfig, Script, WorkflowEngine, run_script};
//!
//! let engine = WorkflowEngine::new()?;
//! let script = Script::from_source(
//!     "flow.js".into(),
//!     "flow.js".into(),
//!     "const [a, b] = await parallel([() => agent('x'), () => agent('y')]); return { a, b }".into(),
//!     Default::default(),
//! )?;
//! let mut config = RunConfig::new(Arc::new(SimBackend::new(SimRules::default(), Duration::ZERO, None)));
//! config.limits = Limits { concurrency: 4, ..Limits::default() };
//! let outcome = run_script(&engine, &script, config, EventSink::silent());
//! println!("{}", outcome.result?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Compiled workflows (`wasmflow build`): [`build_module`] makes a
//! component, [`WorkflowModule::load`] checks and loads one, and
//! [`run_program`] runs either kind with [`Program`]; see
//! `runtime/wasmflow/examples/embed.rs` and docs/embedding.md.

#![deny(missing_docs)]

pub mod backend;
pub mod config;
pub mod error;
pub mod fuzzing;
pub mod limits;
pub mod run;
pub mod sandbox;
pub mod script;
pub mod tools;

pub use error::{InputError, RunError};
pub use limits::{Limits, Sizes};
pub use run::events::EventSink;
pub use sandbox::driver::{
    DriverKind, Program, RunConfig, RunOutcome, run_async, run_program, run_program_async,
    run_script,
};
pub use sandbox::engine::WorkflowEngine;
pub use sandbox::module::{WorkflowModule, build_module};
pub use script::Script;
