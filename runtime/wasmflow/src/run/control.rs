//! Steering a run from any process: skip or retry one of its agents, and
//! read one agent's record. Requests are files in the run directory's
//! `control/` folder; the process running the run picks them up within
//! 250 ms (as it does `stop`) and answers each in a file beside it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::run::run_dir::{RunDir, now_ms};
use crate::run::state::RunState;

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Abandon the agent: `agent()` resolves `null`.
    Skip,
    /// Abandon its running try and start it again.
    Retry,
}

/// One request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// The agent's id in the run.
    pub agent: u64,
    /// Who asked (user, host, process), for the journal.
    pub by: String,
}

/// The running process's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// Whether it was done.
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
}

/// How long a request waits for its answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// Who is asking: user, host and process.
pub fn requester() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{user}@{host} (process {})", std::process::id())
}

/// The agent `word` names in the run: its id, or a label only one agent has.
pub fn resolve_agent(dir: &RunDir, word: &str) -> Result<u64, String> {
    if let Ok(id) = word.parse::<u64>() {
        return Ok(id);
    }
    let mut ids: Vec<u64> = agent_records(dir)
        .iter()
        .filter(|r| r["label"] == word)
        .filter_map(|r| r["agentId"].as_u64())
        .collect();
    if let Ok(state) = RunState::load(dir) {
        ids.extend(
            state
                .running
                .iter()
                .chain(&state.queued)
                .filter(|a| a.label == word)
                .map(|a| a.id),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [] => Err(format!(
            "run {} has no agent labelled `{word}` (give its number, or a label from `wasmflow logs {} --agents`)",
            dir.id, dir.id
        )),
        [id] => Ok(*id),
        many => Err(format!(
            "the label `{word}` belongs to {} agents of run {}: {}; name one by its number",
            many.len(),
            dir.id,
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Asks the process running `dir`'s run to `op` agent `agent` and waits
/// for its answer.
pub fn ask(dir: &RunDir, op: Op, agent: u64) -> Result<String, String> {
    if !dir.is_locked() {
        let status = dir
            .read_info()
            .map(|i| dir.status(&i))
            .unwrap_or_else(|_| "unknown".into());
        return Err(format!(
            "run {} is not running (status: {status}): there is no agent to {}",
            dir.id,
            match op {
                Op::Skip => "skip",
                Op::Retry => "retry",
            }
        ));
    }
    let state = RunState::load(dir)?;
    let live = state.running.iter().any(|a| a.id == agent)
        || (op == Op::Skip && state.queued.iter().any(|a| a.id == agent));
    if !live {
        let finished = agent_records(dir)
            .iter()
            .any(|r| r["agentId"].as_u64() == Some(agent));
        return Err(if finished {
            format!("agent {agent} of run {} already finished", dir.id)
        } else if op == Op::Retry && state.queued.iter().any(|a| a.id == agent) {
            format!("agent {agent} has not started yet: nothing to retry")
        } else {
            format!("run {} has no running agent {agent}", dir.id)
        });
    }
    let request = Request {
        op,
        agent,
        by: requester(),
    };
    let name = dir.write_control(&request).map_err(|e| {
        format!(
            "cannot write a request into {}/control: {e}",
            dir.path.display()
        )
    })?;
    let started = Instant::now();
    while started.elapsed() < ANSWER_WAIT {
        if let Some(answer) = dir.control_answer(&name) {
            return if answer.ok {
                Ok(answer.message)
            } else {
                Err(answer.message)
            };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!(
        "run {} did not answer within {ANSWER_WAIT:?}; the request stays in {}/control and is applied if the run picks it up",
        dir.id,
        dir.path.display()
    ))
}

/// Every finished agent's record (`agents.jsonl`).
pub fn agent_records(dir: &RunDir) -> Vec<Value> {
    let Ok(bytes) = dir.open_file("agents.jsonl").and_then(|mut f| {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut b).map(|_| b)
    }) else {
        return Vec::new();
    };
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// One agent's record: prompt, options, model, output, usage, cost,
/// timing, its tries and why they failed, or what it is doing now.
pub fn agent_record(dir: &RunDir, agent: u64) -> Result<Value, String> {
    let records: Vec<Value> = agent_records(dir)
        .into_iter()
        .filter(|r| r["agentId"].as_u64() == Some(agent))
        .collect();
    let state = RunState::load(dir)?;
    if let Some(last) = records.last() {
        let mut out = json!({
            "id": agent,
            "label": last["label"],
            "phase": last["phase"],
            "model": last["model"],
            "state": match last["type"].as_str() {
                Some("result") => "done",
                Some("skipped") => "skipped",
                _ => "failed",
            },
            "prompt": last["prompt"],
            "options": last["options"],
            "output": last.get("output").cloned().unwrap_or(Value::Null),
            "error": last.get("error").cloned().unwrap_or(Value::Null),
            "usage": last["usage"],
            "usd": last.get("usd").cloned().unwrap_or(Value::Null),
            "started_ms": last["startedTs"],
            "ended_ms": last["ts"],
            "duration_ms": last.get("durationMs").cloned().unwrap_or(Value::Null),
        });
        // Earlier sessions' tries of the same agent (failed, then resumed).
        out["sessions"] = Value::Array(
            records
                .iter()
                .map(|r| json!({"type": r["type"], "error": r.get("error"), "ended_ms": r["ts"]}))
                .collect(),
        );
        out["retries"] = json!(state.retries.get(&agent).copied().unwrap_or(0));
        let transcript = crate::run::transcript::read(dir, agent);
        if !transcript.is_empty() {
            out["transcript"] = Value::Array(transcript);
        }
        return Ok(out);
    }
    if let Some(a) = state.running.iter().find(|a| a.id == agent) {
        let mut out = json!({
            "id": agent, "label": a.label, "phase": a.phase, "state": "running",
            "started_ms": a.started_ms, "running_ms": now_ms().saturating_sub(a.started_ms),
            "retries": state.retries.get(&agent).copied().unwrap_or(0),
        });
        let transcript = crate::run::transcript::read(dir, agent);
        if !transcript.is_empty() {
            out["transcript"] = Value::Array(transcript);
        }
        return Ok(out);
    }
    if let Some(a) = state.queued.iter().find(|a| a.id == agent) {
        return Ok(json!({"id": agent, "label": a.label, "phase": a.phase, "state": "queued"}));
    }
    Err(format!("run {} has no agent {agent}", dir.id))
}

/// Files of the `control/` folder.
pub(crate) fn request_file(name: &str) -> String {
    format!("control/{name}.json")
}

/// Its answer's file.
pub(crate) fn answer_file(name: &str) -> String {
    format!("control/{name}.answer")
}

/// A unique request name.
pub(crate) fn new_name() -> String {
    format!("{}-{}", now_ms(), std::process::id())
}
