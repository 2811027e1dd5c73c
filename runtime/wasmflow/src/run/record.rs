//! Recording a run's agent results (`wasmflow run --record FILE`) so that
//! another host (tests/embed: Node with jco, Python with wasmtime-py) can
//! replay the same run without agents and must reach the same result.
//!
//! An agent is named by its prompt and how many agents with that prompt
//! came before it (its occurrence): stable across hosts, whatever ids they
//! assign. Results are listed in the order the guest received them; a
//! replaying host hands them over one at a time in that order.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::sandbox::bindings::{AgentOutcome, Event};

/// One agent result as the guest received it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedAgent {
    /// The agent's prompt.
    pub prompt: String,
    /// Agents with the same prompt spawned before this one.
    pub occurrence: u32,
    /// `text`, `json`, `failed`, `skipped` or `error`.
    pub kind: String,
    /// The text, the JSON text, the failure reason or the error message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Tokens, as delivered (the guest counts budget from output tokens).
    pub input_tokens: u64,
    /// See `input_tokens`.
    pub output_tokens: u64,
}

/// A run's table of agent results, written by `--record`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recording {
    /// Layout version (1).
    pub format: u32,
    /// The value the script saw as `args`; absent when none was given
    /// (the script saw `undefined`: a host passes the empty string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// `budget.total`, when set.
    pub budget: Option<u64>,
    /// Results in delivery order.
    pub agents: Vec<RecordedAgent>,
    /// The run's result (null when it failed).
    pub result: serde_json::Value,
}

/// Collects results while a run goes.
#[derive(Debug, Default)]
pub struct Recorder {
    names: HashMap<u64, (String, u32)>,
    seen: HashMap<String, u32>,
    /// Results so far, in delivery order.
    pub agents: Vec<RecordedAgent>,
}

impl Recorder {
    /// An agent was spawned (ids in spawn order).
    pub fn spawned(&mut self, id: u64, prompt: &str) {
        let n = self.seen.entry(prompt.to_string()).or_insert(0);
        self.names.insert(id, (prompt.to_string(), *n));
        *n += 1;
    }

    /// A batch of events is about to reach the guest.
    pub fn delivered(&mut self, events: &[Event]) {
        for event in events {
            let Event::Agent(r) = event else { continue };
            let Some((prompt, occurrence)) = self.names.remove(&r.id) else {
                continue;
            };
            let (kind, value) = match &r.outcome {
                AgentOutcome::Text(t) => ("text", Some(t.clone())),
                AgentOutcome::Json(j) => ("json", Some(j.clone())),
                AgentOutcome::Failed(f) => ("failed", Some(f.clone())),
                AgentOutcome::Skipped => ("skipped", None),
                AgentOutcome::Error(e) => ("error", Some(e.clone())),
            };
            self.agents.push(RecordedAgent {
                prompt,
                occurrence,
                kind: kind.into(),
                value,
                input_tokens: r.usage.input_tokens,
                output_tokens: r.usage.output_tokens,
            });
        }
    }
}
