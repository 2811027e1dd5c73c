//! wasmflow's agents on many machines, over NATS JetStream.
//!
//! [`dispatch`] is the coordinator's agent backend: the script runs where
//! `wasmflow run --dispatch nats://…` runs, its agents go to a pool of
//! [`worker`]s (`wasmflow worker --nats nats://…`), each of which runs them
//! on its own local backend. The run's journal stays the one record of
//! what finished; the broker only carries requests and results
//! ([`wire`]), authenticated per run. docs/distributed.md has the design
//! and its guarantees.

pub mod broker;
pub mod dispatch;
pub mod fleet;
pub mod wire;
pub mod worker;
