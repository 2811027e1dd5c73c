//! The tools that read and steer runs: status, result, agent, stop,
//! skip, retry. Each is a blocking function over the run directory, the
//! same operations the CLI uses.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmflow::run::control::{self, Op};
use wasmflow::run::run_dir::{self, RunDir, RunInfo};
use wasmflow::run::state::RunState;

use crate::project::Project;

/// A result up to this many bytes comes back whole, as a value.
pub const WHOLE_RESULT_BYTES: u64 = 64 * 1024;
/// Largest page a call may ask for.
pub const MAX_PAGE_BYTES: u64 = 1 << 20;

/// The run `id` of the project.
pub fn open(project: &Project, id: &str) -> Result<(RunDir, RunInfo), String> {
    run_dir::check_id(id)?;
    let dir = RunDir::open(&project.env.runs_root, id)
        .map_err(|e| format!("{e} (workflow_run returns the ids of the runs it starts)"))?;
    let info = dir.read_info()?;
    Ok((dir, info))
}

/// The backend a run's spec names (what every response reports).
pub fn backend_of(info: &RunInfo) -> Value {
    json!(info.spec.as_ref().and_then(|s| s.backend.name.clone()))
}

/// `workflow_status`.
pub fn status(project: &Project, id: &str) -> Result<Value, String> {
    let (dir, info) = open(project, id)?;
    let state = RunState::load(&dir)?;
    let mut v = json!(state);
    v["backend"] = backend_of(&info);
    if !state.is_finished() {
        v["hint"] = json!("workflow_result with waitSeconds waits for the end");
    }
    Ok(v)
}

/// `workflow_result` once any wait is over: the value when it fits and no
/// page was asked for, else a page of its JSON text.
pub fn result(
    project: &Project,
    id: &str,
    offset: Option<u64>,
    max_bytes: Option<u64>,
) -> Result<Value, String> {
    let (dir, info) = open(project, id)?;
    let status = dir.status(&info);
    let backend = backend_of(&info);
    let bytes = match dir.read_result() {
        Ok(b) => b,
        Err(_) => {
            let state = RunState::load(&dir)?;
            let next = match status.as_str() {
                "running" | "starting" => "it is still running: call again with waitSeconds",
                "paused" | "interrupted" => "continue it with workflow_run and resumeFromRunId",
                _ => "see workflow_status for its failures and logs",
            };
            return Ok(json!({
                "status": status, "runId": id, "backend": backend, "result": null,
                "error": state.error, "note": format!("run {id} has no result: {next}"),
            }));
        }
    };
    if offset.is_none() && max_bytes.is_none() && bytes.len() as u64 <= WHOLE_RESULT_BYTES {
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("result.json of run {id} is damaged: {e}"))?;
        return Ok(json!({
            "status": status, "runId": id, "backend": backend, "result": value, "summary": brief(info.summary),
        }));
    }
    let max = max_bytes.unwrap_or(WHOLE_RESULT_BYTES).min(MAX_PAGE_BYTES);
    let page = wasmflow::run::page::page(&bytes, offset.unwrap_or(0), Some(max))
        .map_err(|e| e.replace("the page size", "maxBytes"))?;
    let mut v = json!(page);
    v["status"] = json!(status);
    v["runId"] = json!(id);
    v["backend"] = backend;
    v["data"] = json!(String::from_utf8_lossy(page.bytes));
    if page.next_offset.is_some() {
        v["note"] = json!(
            "data is a page of the result's JSON text: call again with offset = next_offset and join the pages"
        );
    }
    Ok(v)
}

/// A run's summary without what would flood a model's context: the
/// result (given beside it) and the per-agent lines (`workflow_agent`
/// reads one agent).
fn brief(summary: Option<Value>) -> Value {
    let mut s = summary.unwrap_or(Value::Null);
    if let Value::Object(m) = &mut s {
        m.remove("result");
        m.remove("per_agent");
    }
    s
}

/// `workflow_stop`: asks the run to pause and waits a little for it.
pub fn stop(project: &Project, id: &str) -> Result<Value, String> {
    let (dir, info) = open(project, id)?;
    if !dir.is_locked() {
        return Err(format!(
            "run {id} is not running (status: {}); continue it with workflow_run and resumeFromRunId",
            dir.status(&info)
        ));
    }
    dir.request_stop()
        .map_err(|e| format!("cannot ask run {id} to stop: {e}"))?;
    let started = Instant::now();
    let mut status = "running".to_string();
    while started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        let info = dir.read_info()?;
        status = dir.status(&info);
        if status != "running" {
            break;
        }
    }
    Ok(json!({
        "runId": id, "status": status, "backend": backend_of(&info),
        "note": if status == "running" {
            "asked to pause: no new agents start; running ones may finish (workflow_status shows when it has paused)"
        } else {
            "paused: workflow_run with resumeFromRunId continues it; finished agents are not run again"
        },
    }))
}

/// The agent a call names: a number, or a label only one agent has.
fn agent_of(dir: &RunDir, agent: &Value) -> Result<u64, String> {
    match agent {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("agent {n} is not an agent number")),
        Value::String(s) => control::resolve_agent(dir, s),
        other => Err(format!("agent must be a number or a label, not {other}")),
    }
}

/// `workflow_skip` and `workflow_retry`.
pub fn steer(project: &Project, id: &str, agent: &Value, op: Op) -> Result<Value, String> {
    let (dir, info) = open(project, id)?;
    let n = agent_of(&dir, agent)?;
    let message = control::ask(&dir, op, n)?;
    Ok(json!({"runId": id, "agent": n, "backend": backend_of(&info), "message": message}))
}

/// `workflow_agent`.
pub fn agent(project: &Project, id: &str, agent: &Value) -> Result<Value, String> {
    let (dir, info) = open(project, id)?;
    let n = agent_of(&dir, agent)?;
    let mut record = control::agent_record(&dir, n)?;
    if let Value::Object(m) = &mut record {
        m.insert("backend".into(), backend_of(&info));
    }
    Ok(record)
}
