//! A run: what describes it ([`spec`]), its scheduler, journal and run
//! directory, the events it emits, its summary, and dry-run estimates.

pub mod control;
pub mod events;
pub mod journal;
pub mod key;
pub mod launch;
pub mod page;
pub mod plan;
pub mod record;
pub mod run_dir;
pub mod scheduler;
pub mod seal;
pub mod spec;
pub mod state;
pub mod summary;
pub mod transcript;
