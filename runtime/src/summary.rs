//! The run summary: what `--json` prints and what tests assert.

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
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub id: u64,
    pub label: String,
    pub reason: String,
}

/// Accounting for one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub agents: AgentCounts,
    pub failures: Vec<Failure>,
    pub peak_concurrency: usize,
    pub tokens: Usage,
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
    /// `ok`, `script_error`, `limit`, `bad_input` or `internal_error`.
    pub status: &'static str,
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
                let (status, script, limit) = match e {
                    RunError::Script(f) => ("script_error", Some(f.clone()), None),
                    RunError::Limit { kind, .. } => ("limit", None, Some(*kind)),
                    RunError::Input(_) => ("bad_input", None, None),
                    RunError::Internal(_) => ("internal_error", None, None),
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
            result: value,
            error,
            stats,
            duration_ms,
        }
    }
}
