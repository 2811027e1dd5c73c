//! What the dashboard shows, read from run directories: a row per run and
//! a row per agent. Finished runs' rows are cached by their `updated_ms`,
//! so listing many big runs does not re-read their events each time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Value, json};
use wasmflow::run::run_dir::{self, RunDir, RunInfo};
use wasmflow::run::state::{EventFollower, RunState};

/// One agent, as the table shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentRow {
    pub id: u64,
    pub label: String,
    pub phase: Option<String>,
    pub model: Option<String>,
    /// `queued`, `running`, `done`, `failed`, `skipped`.
    pub state: &'static str,
    pub attempts: u32,
    pub started_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usd: Option<f64>,
    pub reason: Option<String>,
}

/// Every agent of a run, from its events (the latest session's view: a
/// resumed run hands cached agents back as events again).
pub fn agents(dir: &Path) -> Vec<AgentRow> {
    let mut rows: BTreeMap<u64, AgentRow> = BTreeMap::new();
    let mut follower = EventFollower::new(dir);
    for e in follower.read_new() {
        let id = e["id"].as_u64();
        let s = |k: &str| e[k].as_str().map(String::from);
        let ts = e["ts"].as_u64();
        match (e["type"].as_str().unwrap_or(""), id) {
            ("run_started", _) => rows.clear(),
            ("agent_queued", Some(id)) => {
                rows.insert(
                    id,
                    AgentRow {
                        id,
                        label: s("label").unwrap_or_default(),
                        phase: s("phase"),
                        state: "queued",
                        ..AgentRow::default()
                    },
                );
            }
            (kind, Some(id)) => {
                let row = rows.entry(id).or_insert_with(|| AgentRow {
                    id,
                    label: s("label").unwrap_or_default(),
                    phase: s("phase"),
                    ..AgentRow::default()
                });
                match kind {
                    "agent_started" => {
                        row.state = "running";
                        row.attempts = row.attempts.max(1);
                        row.started_ms = row.started_ms.or(ts);
                    }
                    "agent_retried" => row.attempts += 1,
                    "agent_done" | "agent_failed" | "agent_skipped" => {
                        row.state = match kind {
                            "agent_done" => "done",
                            "agent_failed" => "failed",
                            _ => "skipped",
                        };
                        row.model = s("model").or(row.model.take());
                        row.reason = s("reason");
                        row.input_tokens = e["usage"]["input"].as_u64().unwrap_or(0);
                        row.output_tokens = e["usage"]["output"].as_u64().unwrap_or(0);
                        row.usd = e["usd"].as_f64();
                        if let (Some(end), Some(start)) = (ts, row.started_ms) {
                            row.duration_ms = Some(end.saturating_sub(start));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    rows.into_values().collect()
}

/// A run as the runs page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub done: u64,
    pub failed: u64,
    pub running: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    pub created_ms: u64,
    pub duration_ms: u64,
}

impl RunRow {
    fn of(state: &RunState) -> RunRow {
        RunRow {
            id: state.id.clone(),
            name: state.name.clone(),
            status: state.status.clone(),
            done: state.agents.done,
            failed: state.agents.failed,
            running: state.agents.running,
            input_tokens: state.tokens.input,
            output_tokens: state.tokens.output,
            cost_usd: state.cost_usd,
            created_ms: state.created_ms,
            duration_ms: state.elapsed_ms,
        }
    }
}

/// Rows of runs that have ended, by id, with the `updated_ms` they were
/// read at.
#[derive(Default)]
pub struct RunCache {
    rows: Mutex<HashMap<String, (u64, RunRow)>>,
}

impl RunCache {
    /// Every run under `root`, newest first.
    pub fn list(&self, root: &Path) -> Vec<RunRow> {
        let mut out = Vec::new();
        for info in run_dir::list(root) {
            let Ok(dir) = RunDir::open(root, &info.id) else {
                continue;
            };
            let status = dir.status(&info);
            let ended = !matches!(status.as_str(), "running" | "starting");
            if ended
                && let Some((at, row)) =
                    self.rows.lock().ok().and_then(|m| m.get(&info.id).cloned())
                && at == info.updated_ms
            {
                out.push(row);
                continue;
            }
            let Ok(state) = RunState::load(&dir) else {
                continue;
            };
            let row = RunRow::of(&state);
            if ended && let Ok(mut m) = self.rows.lock() {
                m.insert(info.id.clone(), (info.updated_ms, row.clone()));
            }
            out.push(row);
        }
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        out
    }
}

/// One run in full: its state, its backend, where its script and result
/// are, and the line of a script error.
pub fn run(dir: &RunDir, info: &RunInfo) -> Result<Value, String> {
    let state = RunState::load(dir)?;
    let summary = info.summary.clone().unwrap_or(Value::Null);
    let error = &summary["error"];
    let backend = info.spec.as_ref().and_then(|s| s.backend.name.clone());
    Ok(json!({
        "state": state,
        "backend": backend,
        "script_path": info.script_path,
        "script_sha256": info.script_sha256,
        "has_result": dir.read_result().is_ok(),
        "error": {
            "message": error["message"],
            "line": error["script"]["line"],
            "kind": error["kind"],
        },
        "summary_failures": summary["failures"],
    }))
}
