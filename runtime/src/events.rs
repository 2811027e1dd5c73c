//! What a run tells the outside while it goes: progress lines on stderr and,
//! with `--events FILE`, one JSON line per phase, agent and log event.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::backend::Usage;

/// Severity of a script's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Counters printed with each progress line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub running: usize,
    pub queued: usize,
    pub done: u64,
    pub failed: u64,
}

/// Where events go. Writing the event file is best-effort after the first
/// error, which is reported once: a full disk must not kill a paid run.
pub struct EventSink {
    progress: bool,
    file: Option<BufWriter<File>>,
    file_error_reported: bool,
    start: Instant,
}

impl EventSink {
    /// `progress`: print lines on stderr. `events`: also write JSON lines.
    pub fn new(progress: bool, events: Option<&Path>) -> std::io::Result<EventSink> {
        let file = events.map(File::create).transpose()?.map(BufWriter::new);
        Ok(EventSink {
            progress,
            file,
            file_error_reported: false,
            start: Instant::now(),
        })
    }

    /// No output at all (library use, benchmarks).
    pub fn silent() -> EventSink {
        EventSink {
            progress: false,
            file: None,
            file_error_reported: false,
            start: Instant::now(),
        }
    }

    fn write(&mut self, mut event: serde_json::Value) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        event["t_ms"] = json!(self.start.elapsed().as_millis() as u64);
        if let Err(e) = writeln!(file, "{event}")
            && !self.file_error_reported
        {
            self.file_error_reported = true;
            eprintln!(
                "wasmflow: warning: cannot write the events file: {e}; events are no longer recorded"
            );
        }
    }

    /// Whether per-agent events are recorded (an events file is open).
    pub fn records_agents(&self) -> bool {
        self.file.is_some()
    }

    pub fn phase(&mut self, title: &str) {
        if self.progress {
            eprintln!("wasmflow: ▸ phase {title}");
        }
        self.write(json!({"type": "phase", "title": title}));
    }

    pub fn log(&mut self, level: Level, message: &str) {
        if self.progress || level >= Level::Warn {
            match level {
                Level::Info | Level::Debug => eprintln!("{message}"),
                _ => eprintln!("{}: {message}", level.as_str()),
            }
        }
        self.write(json!({"type": "log", "level": level.as_str(), "message": message}));
    }

    pub fn agent_queued(&mut self, id: u64, label: &str, phase: Option<&str>) {
        if self.file.is_none() {
            return;
        }
        self.write(json!({"type": "agent_queued", "id": id, "label": label, "phase": phase}));
    }

    pub fn agent_started(&mut self, id: u64, label: &str, phase: Option<&str>) {
        if self.file.is_none() {
            return;
        }
        self.write(json!({"type": "agent_started", "id": id, "label": label, "phase": phase}));
    }

    pub fn agent_finished(
        &mut self,
        id: u64,
        label: &str,
        phase: Option<&str>,
        failure: Option<&str>,
        usage: Usage,
        counts: Counts,
    ) {
        if self.progress {
            let tally = format!(
                "{} done, {} failed, {} running, {} queued",
                counts.done, counts.failed, counts.running, counts.queued
            );
            match failure {
                None => eprintln!("wasmflow:   ✓ {label} ({tally})"),
                Some(reason) => eprintln!("wasmflow:   ✗ {label}: {reason} ({tally})"),
            }
        }
        if self.file.is_none() {
            return;
        }
        let mut event = json!({
            "type": if failure.is_some() { "agent_failed" } else { "agent_done" },
            "id": id, "label": label, "phase": phase,
            "usage": {"input": usage.input, "output": usage.output},
        });
        if let Some(reason) = failure {
            event["reason"] = json!(reason);
        }
        self.write(event);
    }

    pub fn note(&mut self, message: &str) {
        if self.progress {
            eprintln!("wasmflow: {message}");
        }
    }

    pub fn run_finished(&mut self, status: &str) {
        self.write(json!({"type": "run_finished", "status": status}));
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.flush()
            && !self.file_error_reported
        {
            eprintln!("wasmflow: warning: cannot write the events file: {e}");
        }
    }
}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some((*self as u8).cmp(&(*other as u8)))
    }
}
