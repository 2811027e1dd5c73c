//! The run summary: what `--json` prints and what tests assert.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::backend::Usage;
use crate::error::{LimitKind, RunError, ScriptFailure};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
/// Agent counts of a run.
pub struct AgentCounts {
    /// `agent()` calls the host accepted.
    pub spawned: u64,
    /// Agents that finished with an answer.
    pub done: u64,
    /// Agents that failed terminally (`agent()` gave `null`).
    pub failed: u64,
    /// Of `done`, agents whose result came from the journal of an earlier
    /// session of the run (not run again, not paid again).
    pub cached: u64,
    /// Agents abandoned on request (`wasmflow skip`): `agent()` gave
    /// `null`; a resume runs them again.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
/// An agent that failed terminally.
pub struct Failure {
    /// The agent's id.
    pub id: u64,
    /// Its label (`opts.label`, else a prompt excerpt).
    pub label: String,
    /// Why it failed.
    pub reason: String,
}

/// Tokens and cost of a group of agents (one model, or one phase).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CostLine {
    /// Agents in the group.
    pub agents: u64,
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write: u64,
    /// USD; `null` when any agent of the group has no price (never $0).
    pub usd: Option<f64>,
}

impl CostLine {
    /// Records one agent.
    pub fn add(&mut self, usage: Usage, usd: Option<f64>) {
        self.usd = match (self.agents, self.usd, usd) {
            (0, _, u) => u,
            (_, Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.agents += 1;
        self.input += usage.input;
        self.output += usage.output;
        self.cache_read += usage.cache_read;
        self.cache_write += usage.cache_write;
    }
}

/// What the run cost, by model and by phase.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CostReport {
    /// USD of all agents; `null` when any agent had no price.
    pub total_usd: Option<f64>,
    /// Agents whose model has no price in the config.
    pub unpriced_agents: u64,
    /// Tokens and cost by model alias.
    pub by_model: BTreeMap<String, CostLine>,
    /// Tokens and cost by phase.
    pub by_phase: BTreeMap<String, CostLine>,
}

impl CostReport {
    /// Records one ended agent.
    pub fn add(
        &mut self,
        model: Option<&str>,
        phase: Option<&str>,
        usage: Usage,
        usd: Option<f64>,
    ) {
        let first = self.by_model.is_empty();
        self.total_usd = match (first, self.total_usd, usd) {
            (true, _, u) => u,
            (false, Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        if usd.is_none() {
            self.unpriced_agents += 1;
        }
        self.by_model
            .entry(model.unwrap_or("(none)").to_string())
            .or_default()
            .add(usage, usd);
        self.by_phase
            .entry(phase.unwrap_or("(none)").to_string())
            .or_default()
            .add(usage, usd);
    }
}

/// Tokens and cost of one agent (all its tries).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentCost {
    /// The agent's id.
    pub id: u64,
    /// Its label.
    pub label: String,
    /// Its phase.
    pub phase: Option<String>,
    /// Its model alias.
    pub model: Option<String>,
    #[serde(flatten)]
    /// Tokens over all its tries.
    pub usage: Usage,
    /// `null` when the model has no price.
    pub usd: Option<f64>,
    /// It ended with an answer.
    pub ok: bool,
    /// From the journal of an earlier session.
    pub cached: bool,
}

/// Something a backend reported about an agent when it released it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentNote {
    /// The agent's id.
    pub id: u64,
    /// Its label.
    pub label: String,
    /// What the backend said (e.g. where a changed worktree was kept).
    pub note: String,
}

/// Accounting for one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Agent counts.
    pub agents: AgentCounts,
    /// Every terminal failure.
    pub failures: Vec<Failure>,
    /// Most agents running at once.
    pub peak_concurrency: usize,
    /// Tokens of every agent.
    pub tokens: Usage,
    /// Cost by model and phase.
    pub cost: CostReport,
    /// Every ended agent, in the order they ended.
    pub per_agent: Vec<AgentCost>,
    /// E.g. worktrees kept because the agent changed them.
    pub notes: Vec<AgentNote>,
    /// Agents handed back from the journal: tokens and cost of earlier
    /// sessions, not spent again.
    pub from_journal: CostLine,
    /// Agents run in this session.
    pub live: CostLine,
    /// With `RunConfig::record`: every agent result in the order the guest
    /// got it (`--record`), for other hosts to replay.
    #[serde(skip)]
    pub recorded: Vec<crate::run::record::RecordedAgent>,
}

/// The error part of a summary.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    /// `script_error`, `limit`, `bad_input`, `internal_error` or `paused`.
    pub kind: &'static str,
    /// The message shown to the user.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The script error, with its position.
    pub script: Option<ScriptFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The limit that ended the run.
    pub limit: Option<LimitKind>,
}

/// `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// `ok`, `script_error`, `limit`, `bad_input`, `internal_error` or
    /// `paused`.
    pub status: &'static str,
    /// The run directory's id (`.wasmflow/runs/<id>`), when journaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The script's result (`null` on failure).
    pub result: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why there is no result.
    pub error: Option<ErrorInfo>,
    #[serde(flatten)]
    /// Accounting.
    pub stats: Stats,
    /// Wall-clock time of the run.
    pub duration_ms: u64,
}

impl RunSummary {
    /// The summary of a finished run.
    pub fn new(result: &Result<Value, RunError>, stats: Stats, duration_ms: u64) -> RunSummary {
        let (status, value, error) = match result {
            Ok(v) => ("ok", v.clone(), None),
            Err(e) => {
                let status = e.status();
                let (script, limit) = match e {
                    RunError::Script(f) => (Some(f.clone()), None),
                    RunError::Limit { kind, .. } => (None, Some(*kind)),
                    RunError::Input(_) | RunError::Internal(_) | RunError::Paused { .. } => {
                        (None, None)
                    }
                };
                let info = ErrorInfo {
                    kind: status,
                    message: e.to_string(),
                    script,
                    limit,
                };
                (status, Value::Null, Some(info))
            }
        };
        RunSummary {
            status,
            run_id: None,
            result: value,
            error,
            stats,
            duration_ms,
        }
    }
}
