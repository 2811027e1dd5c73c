//! The MCP Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663):
//! for a client that declares it, `workflow_run` answers with a task whose
//! id is the run id; `tasks/get` reads the run directory, and
//! `tasks/cancel` pauses the run as `workflow_stop` does.

use rmcp::model::{DetailedTask, Task, TaskPayload, TaskStatus};
use serde_json::{Map, Value, json};
use wasmflow::run::run_dir::{RunDir, RunInfo};
use wasmflow::run::state::RunState;

use crate::project::Project;
use crate::read;

/// How often a client should poll `tasks/get`.
const POLL_MS: u64 = 2000;

/// `ms` since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = wasmflow::run::run_dir::utc(ms);
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        ms % 1000
    )
}

/// The task handle `workflow_run` returns.
pub fn created(run_id: &str, launched: &Value) -> Task {
    let now = rfc3339(wasmflow::run::run_dir::now_ms());
    Task::new(run_id, TaskStatus::Working, now.clone(), now)
        .with_poll_interval_ms(POLL_MS)
        .with_status_message(format!(
            "run {run_id} of {} launched on {}",
            launched["workflowName"].as_str().unwrap_or("the workflow"),
            launched["backend"].as_str().unwrap_or("its backend")
        ))
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    }
}

/// A finished call's result object (as `tools/call` would answer).
fn tool_result(v: &Value, error: bool) -> Map<String, Value> {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut r = json!({"content": [{"type": "text", "text": text}], "isError": error});
    if !error {
        r["structuredContent"] = v.clone();
    }
    object(r)
}

/// The task of run `id` as its directory says.
pub fn get(project: &Project, id: &str) -> Result<DetailedTask, String> {
    let (dir, info): (RunDir, RunInfo) = read::open(project, id)?;
    let status = dir.status(&info);
    let base = |status| {
        Task::new(
            id,
            status,
            rfc3339(info.created_ms),
            rfc3339(info.updated_ms.max(info.created_ms)),
        )
        .with_poll_interval_ms(POLL_MS)
    };
    let (payload, message) = match status.as_str() {
        "starting" | "running" => {
            let s = RunState::load(&dir)?;
            let msg = format!(
                "{} agents done, {} failed, {} running",
                s.agents.done, s.agents.failed, s.agents.running
            );
            (TaskPayload::Working, msg)
        }
        "ok" => {
            let v = read::result(project, id, None, None)?;
            (
                TaskPayload::Completed {
                    result: tool_result(&v, false),
                },
                "finished".to_string(),
            )
        }
        "paused" => (
            TaskPayload::Cancelled,
            format!("paused: workflow_run with resumeFromRunId {id} continues it"),
        ),
        "interrupted" => (
            TaskPayload::Failed {
                error: object(
                    json!({"code": -32603, "message": format!("run {id} was interrupted (its process is gone): workflow_run with resumeFromRunId {id} continues it")}),
                ),
            },
            "interrupted".to_string(),
        ),
        other => {
            let s = RunState::load(&dir)?;
            let msg = format!(
                "run {id} ended {other}: {}",
                s.error.as_deref().unwrap_or("(no message)")
            );
            (
                TaskPayload::Completed {
                    result: tool_result(&json!(msg), true),
                },
                other.to_string(),
            )
        }
    };
    let task = base(payload.status()).with_status_message(message);
    Ok(DetailedTask::new(task, payload))
}

/// `tasks/cancel`: the run is asked to pause.
pub fn cancel(project: &Project, id: &str) -> Result<(), String> {
    let (dir, _) = read::open(project, id)?;
    if dir.is_locked() {
        dir.request_stop()
            .map_err(|e| format!("cannot ask run {id} to stop: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_796_000_000_123),
            "2026-11-30T00:53:20.123Z"
        );
    }
}
