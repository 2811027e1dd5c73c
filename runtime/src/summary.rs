//! The run summary: what `--json` prints and what tests assert.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::backend::Usage;
use crate::error::{LimitKind, RunError, ScriptFailure};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
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
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub id: u64,
    pub label: String,
    pub reason: String,
}

/// Tokens and cost of a group of agents (one model, or one phase).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CostLine {
    pub agents: u64,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
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
    pub by_model: BTreeMap<String, CostLine>,
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
    pub id: u64,
    pub label: String,
    pub phase: Option<String>,
    pub model: Option<String>,
    #[serde(flatten)]
    pub usage: Usage,
    /// `null` when the model has no price.
    pub usd: Option<f64>,
    pub ok: bool,
    /// From the journal of an earlier session.
    pub cached: bool,
}

/// Something a backend reported about an agent when it released it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentNote {
    pub id: u64,
    pub label: String,
    pub note: String,
}

/// Accounting for one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub agents: AgentCounts,
    pub failures: Vec<Failure>,
    pub peak_concurrency: usize,
    pub tokens: Usage,
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
    pub recorded: Vec<crate::record::RecordedAgent>,
}

/// The error part of a summary.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    pub kind: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    pub result: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(flatten)]
    pub stats: Stats,
    pub duration_ms: u64,
}

impl RunSummary {
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
