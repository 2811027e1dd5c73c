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
//! `runtime/examples/embed.rs` and docs/embedding.md.

#![deny(missing_docs)]

pub mod backend;
pub mod bindings;
pub mod bundled;
pub mod check;
pub mod config;
pub mod driver;
pub mod engine;
pub mod error;
pub mod events;
pub mod fuzzing;
pub mod host;
pub mod journal;
pub mod key;
pub mod limits;
pub mod live;
pub mod module;
pub mod options;
pub mod plan;
pub mod record;
pub mod run_dir;
pub mod saved;
pub mod scheduler;
pub mod schema;
pub mod script;
pub mod summary;

pub use driver::{
    DriverKind, Program, RunConfig, RunOutcome, run_async, run_program, run_program_async,
    run_script,
};
pub use engine::WorkflowEngine;
pub use error::{InputError, RunError};
pub use events::EventSink;
pub use limits::{Limits, Sizes};
pub use module::{WorkflowModule, build_module};
pub use script::Script;
