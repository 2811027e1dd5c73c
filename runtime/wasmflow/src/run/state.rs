//! [`RunState`]: what a run is doing, from its run directory alone —
//! `run.json`, its lock, and `events.jsonl` — so any process can follow any
//! run. `runs`, `show`, `wait`, `logs` (and the MCP server and the
//! dashboard) read runs through it; nobody else folds events.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::run::run_dir::{EVENTS, EVENTS_OLD, RunDir, RunInfo, now_ms};

/// Log lines kept.
const LAST_LOGS: usize = 20;

/// Counts of one phase (or of the run).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Agents that answered.
    pub done: u64,
    /// Agents that failed.
    pub failed: u64,
    /// Agents running now.
    pub running: u64,
    /// Agents waiting for a slot.
    pub queued: u64,
}

/// One phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseState {
    /// Its title (`(none)` outside phases).
    pub title: String,
    /// Its agents.
    #[serde(flatten)]
    pub counts: Counts,
}

/// An agent running now.
#[derive(Debug, Clone, Serialize)]
pub struct RunningAgent {
    /// Its id in the run.
    pub id: u64,
    /// Its label.
    pub label: String,
    /// Its phase.
    pub phase: Option<String>,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
}

/// A failed agent.
#[derive(Debug, Clone, Serialize)]
pub struct FailedAgent {
    /// Its id in the run.
    pub id: u64,
    /// Its label.
    pub label: String,
    /// Why.
    pub reason: String,
}

/// Tokens of the run so far.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tokens {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input read from a prompt cache.
    pub cache_read: u64,
    /// Input written to a prompt cache.
    pub cache_write: u64,
}

/// What a run is doing, or did.
#[derive(Debug, Clone, Serialize)]
pub struct RunState {
    /// The run id.
    pub id: String,
    /// The workflow's name.
    pub name: String,
    /// `running`, `interrupted` (it says running, but no process holds its
    /// lock), `paused`, `ok`, `script_error`, `limit`, `bad_input`,
    /// `internal_error`, or `starting` (launched, not yet running).
    pub status: String,
    /// Created (ms since the epoch).
    pub created_ms: u64,
    /// Last change of run.json.
    pub updated_ms: u64,
    /// Since it was created, or until its last session ended.
    pub elapsed_ms: u64,
    /// Sessions that ran it.
    pub sessions: u32,
    /// The process of the last session.
    pub pid: u32,
    /// Agents of the current (or last) session, cached ones included.
    pub agents: Counts,
    /// By phase, in the order phases began.
    pub phases: Vec<PhaseState>,
    /// Running now.
    pub running: Vec<RunningAgent>,
    /// Waiting for a slot.
    pub queued: Vec<RunningAgent>,
    /// Agents abandoned on request (`wasmflow skip`).
    pub skipped: u64,
    /// Tries started again on request, by agent id.
    pub retries: BTreeMap<u64, u32>,
    /// Tokens so far.
    pub tokens: Tokens,
    /// USD so far; `None` when an agent's model has no price.
    pub cost_usd: Option<f64>,
    /// Failed agents.
    pub failures: Vec<FailedAgent>,
    /// The last log lines.
    pub logs: VecDeque<String>,
    /// Why it ended, when it failed.
    pub error: Option<String>,
    #[serde(skip)]
    running_by_id: BTreeMap<u64, RunningAgent>,
    #[serde(skip)]
    queued_by_id: BTreeMap<u64, RunningAgent>,
    #[serde(skip)]
    phase_index: BTreeMap<String, usize>,
    #[serde(skip)]
    priced: bool,
    /// The session of the last `run_started` event read.
    #[serde(skip)]
    events_session: Option<u64>,
}

impl RunState {
    /// A state with what `run.json` says and no events yet.
    pub fn from_info(info: &RunInfo, status: String) -> RunState {
        let error = info
            .summary
            .as_ref()
            .and_then(|s| s["error"]["message"].as_str())
            .map(String::from);
        RunState {
            id: info.id.clone(),
            name: info.name.clone(),
            status,
            created_ms: info.created_ms,
            updated_ms: info.updated_ms,
            elapsed_ms: 0,
            sessions: info.sessions,
            pid: info.pid,
            agents: Counts::default(),
            phases: Vec::new(),
            running: Vec::new(),
            queued: Vec::new(),
            skipped: 0,
            retries: BTreeMap::new(),
            tokens: Tokens::default(),
            cost_usd: Some(0.0),
            failures: Vec::new(),
            logs: VecDeque::new(),
            error,
            running_by_id: BTreeMap::new(),
            queued_by_id: BTreeMap::new(),
            phase_index: BTreeMap::new(),
            priced: true,
            events_session: None,
        }
    }

    /// The state of the run in `dir`: run.json, its lock and every event.
    pub fn load(dir: &RunDir) -> Result<RunState, String> {
        let info = dir.read_info()?;
        let mut state = RunState::from_info(&info, dir.status(&info));
        let mut follower = EventFollower::new(&dir.path);
        for event in follower.read_new() {
            state.apply(&event);
        }
        state.finish_reading();
        Ok(state)
    }

    /// Re-reads run.json and the lock (status, sessions, error).
    pub fn refresh(&mut self, dir: &RunDir) -> Result<(), String> {
        let info = dir.read_info()?;
        let fresh = RunState::from_info(&info, dir.status(&info));
        self.status = fresh.status;
        self.updated_ms = fresh.updated_ms;
        self.sessions = fresh.sessions;
        self.pid = fresh.pid;
        self.error = fresh.error;
        self.finish_reading();
        Ok(())
    }

    /// Whether the run has ended (or stopped: paused, interrupted).
    pub fn is_finished(&self) -> bool {
        !matches!(self.status.as_str(), "running" | "starting")
    }

    fn phase_mut(&mut self, title: Option<&str>) -> &mut Counts {
        let title = title.unwrap_or("(none)");
        let i = match self.phase_index.get(title) {
            Some(i) => *i,
            None => {
                self.phases.push(PhaseState {
                    title: title.to_string(),
                    counts: Counts::default(),
                });
                self.phase_index
                    .insert(title.to_string(), self.phases.len() - 1);
                self.phases.len() - 1
            }
        };
        &mut self.phases[i].counts
    }

    /// Folds one event (a line of `events.jsonl`).
    pub fn apply(&mut self, e: &Value) {
        let str_of = |k: &str| e[k].as_str().map(String::from);
        let id = e["id"].as_u64().unwrap_or(0);
        match e["type"].as_str().unwrap_or("") {
            "run_started" => {
                self.events_session = e["session"].as_u64();
                // A new session hands cached agents back as events again:
                // count that session's (log lines stay).
                self.agents = Counts::default();
                self.phases.clear();
                self.phase_index.clear();
                self.running_by_id.clear();
                self.queued_by_id.clear();
                self.skipped = 0;
                self.retries.clear();
                self.tokens = Tokens::default();
                self.cost_usd = Some(0.0);
                self.priced = true;
                self.failures.clear();
            }
            "phase" => {
                let title = str_of("title");
                self.phase_mut(title.as_deref());
            }
            "log" => {
                let level = e["level"].as_str().unwrap_or("info");
                let message = e["message"].as_str().unwrap_or("");
                let line = match level {
                    "info" | "debug" => message.to_string(),
                    other => format!("{other}: {message}"),
                };
                if self.logs.len() == LAST_LOGS {
                    self.logs.pop_front();
                }
                self.logs.push_back(line);
            }
            "agent_queued" => {
                self.agents.queued += 1;
                let phase = str_of("phase");
                self.phase_mut(phase.as_deref()).queued += 1;
                self.queued_by_id.insert(
                    id,
                    RunningAgent {
                        id,
                        label: str_of("label").unwrap_or_default(),
                        phase,
                        started_ms: 0,
                    },
                );
            }
            "agent_skipped" => {
                let phase = str_of("phase");
                let was_running = self.running_by_id.remove(&id).is_some();
                let was_queued = self.queued_by_id.remove(&id).is_some();
                self.skipped += 1;
                let counts = self.phase_mut(phase.as_deref());
                if was_running {
                    counts.running = counts.running.saturating_sub(1);
                } else if was_queued {
                    counts.queued = counts.queued.saturating_sub(1);
                }
                if was_running {
                    self.agents.running = self.agents.running.saturating_sub(1);
                } else if was_queued {
                    self.agents.queued = self.agents.queued.saturating_sub(1);
                }
            }
            "agent_retried" => {
                self.retries
                    .insert(id, e["retries"].as_u64().unwrap_or(1) as u32);
                if let Some(r) = self.running_by_id.get_mut(&id) {
                    r.started_ms = e["ts"].as_u64().unwrap_or(r.started_ms);
                }
            }
            "agent_started" => {
                self.queued_by_id.remove(&id);
                let phase = str_of("phase");
                self.agents.queued = self.agents.queued.saturating_sub(1);
                self.agents.running += 1;
                let counts = self.phase_mut(phase.as_deref());
                counts.queued = counts.queued.saturating_sub(1);
                counts.running += 1;
                self.running_by_id.insert(
                    id,
                    RunningAgent {
                        id,
                        label: str_of("label").unwrap_or_default(),
                        phase,
                        started_ms: e["ts"].as_u64().unwrap_or(0),
                    },
                );
            }
            kind @ ("agent_done" | "agent_failed") => {
                let phase = str_of("phase");
                let was_running = self.running_by_id.remove(&id).is_some();
                if was_running {
                    self.agents.running = self.agents.running.saturating_sub(1);
                }
                let failed = kind == "agent_failed";
                if failed {
                    self.agents.failed += 1;
                    self.failures.push(FailedAgent {
                        id,
                        label: str_of("label").unwrap_or_default(),
                        reason: str_of("reason").unwrap_or_default(),
                    });
                } else {
                    self.agents.done += 1;
                }
                let counts = self.phase_mut(phase.as_deref());
                if was_running {
                    counts.running = counts.running.saturating_sub(1);
                }
                if failed {
                    counts.failed += 1;
                } else {
                    counts.done += 1;
                }
                let u = &e["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                self.tokens.input += n("input");
                self.tokens.output += n("output");
                self.tokens.cache_read += n("cache_read");
                self.tokens.cache_write += n("cache_write");
                match e["usd"].as_f64() {
                    Some(usd) => {
                        if let Some(total) = self.cost_usd.as_mut() {
                            *total += usd;
                        }
                    }
                    None if e.get("model").is_some_and(|m| !m.is_null()) => {
                        self.priced = false;
                    }
                    None => {}
                }
            }
            "run_finished" => {
                // The end of an earlier session says nothing about a
                // session that has taken the run up and not yet written
                // its `run_started`.
                let this_session = self
                    .events_session
                    .is_none_or(|s| s == u64::from(self.sessions));
                if let Some(status) = e["status"].as_str()
                    && self.status == "running"
                    && this_session
                {
                    // run.json follows a moment later: trust the event.
                    self.status = status.to_string();
                }
                for (_, r) in std::mem::take(&mut self.running_by_id) {
                    let counts = self.phase_mut(r.phase.as_deref());
                    counts.running = counts.running.saturating_sub(1);
                }
                for (_, r) in std::mem::take(&mut self.queued_by_id) {
                    let counts = self.phase_mut(r.phase.as_deref());
                    counts.queued = counts.queued.saturating_sub(1);
                }
                self.agents.running = 0;
                self.agents.queued = 0;
            }
            _ => {}
        }
    }

    /// Derived fields, after a batch of events.
    pub fn finish_reading(&mut self) {
        self.running = self.running_by_id.values().cloned().collect();
        self.queued = self.queued_by_id.values().cloned().collect();
        if !self.priced {
            self.cost_usd = None;
        }
        let end = if self.is_finished() {
            self.updated_ms
        } else {
            now_ms()
        };
        self.elapsed_ms = end.saturating_sub(self.created_ms);
    }
}

/// Reads a run's events as they are appended, across rotations: it keeps
/// the file it has open, and when the name points at a new file it first
/// reads the old one to its end, so no line is lost.
pub struct EventFollower {
    dir: PathBuf,
    file: Option<std::fs::File>,
    inode: u64,
    partial: Vec<u8>,
    started: bool,
}

impl EventFollower {
    /// Follows the events of the run in `dir` from the beginning.
    pub fn new(dir: &Path) -> EventFollower {
        EventFollower {
            dir: dir.to_path_buf(),
            file: None,
            inode: 0,
            partial: Vec::new(),
            started: false,
        }
    }

    fn open(&mut self, name: &str) -> bool {
        match std::fs::File::open(self.dir.join(name)) {
            Ok(f) => {
                self.inode = f.metadata().map(|m| m.ino()).unwrap_or(0);
                self.file = Some(f);
                true
            }
            Err(_) => false,
        }
    }

    fn drain(&mut self, out: &mut Vec<Value>) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            return;
        }
        self.partial.extend_from_slice(&bytes);
        let Some(last) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=last).collect();
        out.extend(
            complete
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(|l| serde_json::from_slice(l).ok()),
        );
    }

    /// Every complete event appended since the last call.
    pub fn read_new(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            // The generation before the current one, if a rotation left it.
            if self.open(EVENTS_OLD) {
                self.drain(&mut out);
                self.partial.clear();
            }
            self.file = None;
            self.open(EVENTS);
        }
        self.drain(&mut out);
        // Rotated: the name now points at another file.
        let current = std::fs::metadata(self.dir.join(EVENTS))
            .map(|m| m.ino())
            .unwrap_or(self.inode);
        if self.file.is_none() || current != self.inode {
            if self.file.is_some() {
                self.drain(&mut out);
                self.partial.clear();
            }
            if self.open(EVENTS) {
                if let Some(f) = self.file.as_mut() {
                    let _ = f.seek(SeekFrom::Start(0));
                }
                self.drain(&mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_earlier_sessions_end_does_not_end_a_resumed_run() {
        let info = RunInfo {
            sessions: 2,
            ..RunInfo::default()
        };
        let mut s = RunState::from_info(&info, "running".into());
        // Session 2 holds the lock but has not written its run_started.
        s.apply(&json!({"type": "run_started", "session": 1}));
        s.apply(&json!({"type": "run_finished", "status": "paused"}));
        assert_eq!(s.status, "running");
        assert!(!s.is_finished());
        s.apply(&json!({"type": "run_started", "session": 2}));
        s.apply(&json!({"type": "run_finished", "status": "ok"}));
        assert_eq!(s.status, "ok");
    }

    #[test]
    fn events_fold_into_counts_by_phase() {
        let mut s = RunState::from_info(&RunInfo::default(), "running".into());
        for e in [
            json!({"type": "run_started", "session": 1}),
            json!({"type": "phase", "title": "Scan"}),
            json!({"type": "agent_queued", "id": 1, "phase": "Scan"}),
            json!({"type": "agent_queued", "id": 2, "phase": "Scan"}),
            json!({"type": "agent_started", "id": 1, "label": "a", "phase": "Scan", "ts": 5}),
            json!({"type": "agent_started", "id": 2, "label": "b", "phase": "Scan", "ts": 6}),
            json!({"type": "agent_done", "id": 1, "label": "a", "phase": "Scan", "model": "m", "usage": {"input": 10, "output": 2}, "usd": 0.5}),
            json!({"type": "log", "level": "info", "message": "hello"}),
        ] {
            s.apply(&e);
        }
        s.finish_reading();
        assert_eq!(
            s.agents,
            Counts {
                done: 1,
                failed: 0,
                running: 1,
                queued: 0
            }
        );
        assert_eq!(s.running.len(), 1);
        assert_eq!(s.running[0].label, "b");
        assert_eq!(s.phases[0].counts.running, 1);
        assert_eq!(s.tokens.input, 10);
        assert_eq!(s.cost_usd, Some(0.5));
        assert_eq!(s.logs, ["hello"]);
        s.apply(&json!({"type": "agent_failed", "id": 2, "label": "b", "phase": "Scan", "reason": "boom", "model": "x", "usd": null}));
        s.finish_reading();
        assert_eq!(s.failures[0].reason, "boom");
        assert_eq!(s.cost_usd, None);
        assert!(s.running.is_empty());
    }

    #[test]
    fn a_follower_loses_no_line_across_a_rotation() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("wf-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let line = |i: u32| format!("{}\n", json!({"type": "log", "message": i.to_string()}));
        let append = |i: u32| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(dir.join(EVENTS))
                .unwrap();
            f.write_all(line(i).as_bytes()).unwrap();
        };
        let mut follower = EventFollower::new(&dir);
        let mut seen = Vec::new();
        for i in 0..30 {
            append(i);
            if i % 10 == 9 {
                // Rotate, as the writer does, between two reads.
                std::fs::rename(dir.join(EVENTS), dir.join(EVENTS_OLD)).unwrap();
            }
            if i % 4 == 0 {
                seen.extend(follower.read_new());
            }
        }
        seen.extend(follower.read_new());
        let got: Vec<String> = seen
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (0..30).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
