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
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
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
    /// Agents running.
    pub running: usize,
    /// Agents waiting for a slot.
    pub queued: usize,
    /// Agents done.
    pub done: u64,
    /// Agents failed.
    pub failed: u64,
}

/// One ended agent, as progress shows it.
#[derive(Debug, Clone, Copy)]
pub struct AgentEnded<'a> {
    /// The agent's id.
    pub id: u64,
    /// Its label.
    pub label: &'a str,
    /// Its phase.
    pub phase: Option<&'a str>,
    /// Its model alias.
    pub model: Option<&'a str>,
    /// Why it failed; `None` for an answer.
    pub failure: Option<&'a str>,
    /// Tokens it used.
    pub usage: Usage,
    /// `None`: the model has no price.
    pub usd: Option<f64>,
}

/// A view of progress drawn somewhere other than as lines (the CLI's live
/// terminal tree): it is told every event and draws on its own schedule.
pub trait ProgressView: Send {
    /// The script entered a phase.
    fn phase(&self, title: &str);
    /// A line to show above the view.
    fn line(&self, text: &str);
    /// An agent is waiting for a slot (`started` later names the same
    /// phase).
    fn queued(&self, phase: Option<&str>);
    /// An agent started.
    fn started(&self, id: u64, label: &str, phase: Option<&str>, model: Option<&str>);
    /// An agent ended (`usd`: `None` when its model has no price).
    fn finished(&self, id: u64, phase: Option<&str>, failed: bool, usage: Usage, usd: Option<f64>);
    /// The run ended: draw the final state.
    fn finish(&mut self);
}

/// `12.3k` for token counts.
pub fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// How often the condensed progress form prints a tally.
pub const TALLY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Where events go. Writing the event file is best-effort after the first
/// error, which is reported once: a full disk must not kill a paid run.
pub struct EventSink {
    progress: bool,
    /// A line per ended agent; otherwise the condensed form: failures,
    /// phases, logs, and a tally at most every [`TALLY_EVERY`].
    agent_lines: bool,
    last_tally: Instant,
    /// Script warnings reach stderr even without progress (`--quiet`
    /// keeps them); a silent sink drops them.
    warnings: bool,
    live: Option<Box<dyn ProgressView>>,
    file: Option<BufWriter<File>>,
    file_error_reported: bool,
    /// The run directory's `events.jsonl`, for followers in other
    /// processes.
    run_events: Option<RunEvents>,
    start: Instant,
}

impl EventSink {
    /// `progress`: print lines on stderr. `events`: also write JSON lines.
    pub fn new(progress: bool, events: Option<&Path>) -> std::io::Result<EventSink> {
        let file = events.map(File::create).transpose()?.map(BufWriter::new);
        Ok(EventSink {
            progress,
            agent_lines: false,
            last_tally: Instant::now(),
            warnings: true,
            live: None,
            file,
            file_error_reported: false,
            run_events: None,
            start: Instant::now(),
        })
    }

    /// No output at all (library use, benchmarks).
    pub fn silent() -> EventSink {
        EventSink {
            progress: false,
            agent_lines: false,
            last_tally: Instant::now(),
            warnings: false,
            live: None,
            file: None,
            file_error_reported: false,
            run_events: None,
            start: Instant::now(),
        }
    }

    fn write(&mut self, mut event: serde_json::Value) {
        if self.file.is_none() && self.run_events.is_none() {
            return;
        }
        event["t_ms"] = json!(self.start.elapsed().as_millis() as u64);
        event["ts"] = json!(crate::run::run_dir::now_ms());
        let mut line = event.to_string();
        line.push('\n');
        if let Some(run) = self.run_events.as_mut() {
            run.push(line.as_bytes());
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if let Err(e) = file.write_all(line.as_bytes())
            && !self.file_error_reported
        {
            self.file_error_reported = true;
            eprintln!(
                "wasmflow: warning: cannot write the events file: {e}; events are no longer recorded"
            );
        }
    }

    /// Also writes every event to the run directory's `events.jsonl`.
    pub fn with_run_events(mut self, events: RunEvents) -> EventSink {
        self.run_events = Some(events);
        self
    }

    /// Writes the run directory's buffered events now.
    pub fn flush_run_events(&mut self) {
        if let Some(run) = self.run_events.as_mut() {
            run.flush();
        }
    }

    /// Whether events are written anywhere.
    fn records(&self) -> bool {
        self.file.is_some() || self.run_events.is_some()
    }

    /// A session of a run began (the first, or a resume).
    /// (Only in the run directory's events: `--events` files keep their
    /// shape.)
    pub fn run_started(&mut self, run_id: &str, session: u32) {
        if let Some(run) = self.run_events.as_mut() {
            let event = json!({"type": "run_started", "run_id": run_id, "session": session,
                               "t_ms": 0, "ts": crate::run::run_dir::now_ms()});
            run.push(format!("{event}\n").as_bytes());
        }
    }

    /// One progress line per ended agent instead of the condensed form.
    pub fn with_agent_lines(mut self) -> EventSink {
        self.agent_lines = true;
        self
    }

    /// Shows progress in `view` (a terminal) instead of as lines.
    pub fn with_live(mut self, view: Box<dyn ProgressView>) -> EventSink {
        self.progress = false;
        self.live = Some(view);
        self
    }

    /// Whether queued and started agents are wanted (an events file, or
    /// the live view).
    pub fn records_agents(&self) -> bool {
        self.records() || self.live.is_some()
    }

    /// The script entered a phase.
    pub fn phase(&mut self, title: &str) {
        if let Some(live) = &self.live {
            live.phase(title);
        }
        if self.progress {
            eprintln!("wasmflow: ▸ phase {title}");
        }
        self.write(json!({"type": "phase", "title": title}));
    }

    /// A `log()` or `console.*` line.
    pub fn log(&mut self, level: Level, message: &str) {
        if let Some(live) = &self.live {
            match level {
                Level::Info | Level::Debug => live.line(message),
                _ => live.line(&format!("{}: {message}", level.as_str())),
            }
        } else if self.progress || (self.warnings && level >= Level::Warn) {
            match level {
                Level::Info | Level::Debug => eprintln!("{message}"),
                _ => eprintln!("{}: {message}", level.as_str()),
            }
        }
        self.write(json!({"type": "log", "level": level.as_str(), "message": message}));
    }

    /// An agent waits for a free slot; `label` is made only when an
    /// events file wants it.
    pub fn agent_queued(&mut self, id: u64, label: impl FnOnce() -> String, phase: Option<&str>) {
        if let Some(live) = &self.live {
            live.queued(phase);
        }
        if !self.records() {
            return;
        }
        self.write(json!({"type": "agent_queued", "id": id, "label": label(), "phase": phase}));
    }

    /// An agent started.
    pub fn agent_started(
        &mut self,
        id: u64,
        label: &str,
        phase: Option<&str>,
        model: Option<&str>,
    ) {
        if let Some(live) = &self.live {
            live.started(id, label, phase, model);
        }
        if !self.records() {
            return;
        }
        self.write(json!({"type": "agent_started", "id": id, "label": label, "phase": phase}));
    }

    /// An agent ended.
    pub fn agent_finished(&mut self, a: AgentEnded<'_>, counts: Counts) {
        let AgentEnded {
            id,
            label,
            phase,
            model,
            failure,
            usage,
            usd,
        } = a;
        if let Some(live) = &self.live {
            live.finished(id, phase, failure.is_some(), usage, usd);
        }
        let tally = || {
            format!(
                "{} done, {} failed, {} running, {} queued",
                counts.done, counts.failed, counts.running, counts.queued
            )
        };
        if self.progress && !self.agent_lines && failure.is_none() {
            if self.last_tally.elapsed() >= TALLY_EVERY {
                self.last_tally = Instant::now();
                eprintln!("wasmflow:   … {}", tally());
            }
        } else if self.progress {
            let tally = tally();
            // Model, tokens and cost only when there is something to say:
            // sim runs without a model keep their short lines.
            let mut cost = Vec::new();
            if let Some(m) = model {
                cost.push(m.to_string());
            }
            if usage != Usage::default() {
                let cached = usage.cache_read + usage.cache_write;
                cost.push(if cached > 0 {
                    format!(
                        "{} in (+{} cached) / {} out",
                        tokens(usage.input),
                        tokens(cached),
                        tokens(usage.output)
                    )
                } else {
                    format!("{} in / {} out", tokens(usage.input), tokens(usage.output))
                });
            }
            if let Some(usd) = usd {
                cost.push(format!("${usd:.4}"));
            }
            let cost = if model.is_some() && !cost.is_empty() {
                format!(" [{}]", cost.join(", "))
            } else {
                String::new()
            };
            match failure {
                None => eprintln!("wasmflow:   ✓ {label}{cost} ({tally})"),
                Some(reason) => eprintln!("wasmflow:   ✗ {label}: {reason}{cost} ({tally})"),
            }
        }
        if !self.records() {
            return;
        }
        let mut event = json!({
            "type": if failure.is_some() { "agent_failed" } else { "agent_done" },
            "id": id, "label": label, "phase": phase, "model": model,
            "usage": usage, "usd": usd,
        });
        if let Some(reason) = failure {
            event["reason"] = json!(reason);
        }
        self.write(event);
    }

    /// An agent was abandoned on request (`queued`: before it started).
    pub fn agent_skipped(
        &mut self,
        id: u64,
        label: &str,
        phase: Option<&str>,
        by: &str,
        queued: bool,
        counts: Counts,
    ) {
        if let Some(live) = &self.live {
            live.finished(id, phase, true, Usage::default(), Some(0.0));
        }
        if self.progress {
            eprintln!(
                "wasmflow:   ⤼ {label}: skipped ({by}) ({} done, {} failed, {} running, {} queued)",
                counts.done, counts.failed, counts.running, counts.queued
            );
        }
        self.write(
            json!({"type": "agent_skipped", "id": id, "label": label, "phase": phase,
                          "by": by, "queued": queued}),
        );
    }

    /// An agent's running try was abandoned and started again.
    pub fn agent_retried(&mut self, id: u64, label: &str, by: &str, retries: u32) {
        if let Some(live) = &self.live {
            live.line(&format!("wasmflow: ↻ {label}: retried ({by})"));
        }
        if self.progress {
            eprintln!("wasmflow:   ↻ {label}: started again ({by}; retry {retries})");
        }
        self.write(json!({"type": "agent_retried", "id": id, "label": label, "by": by, "retries": retries}));
    }

    /// A line for the user (stderr only).
    pub fn note(&mut self, message: &str) {
        if let Some(live) = &self.live {
            live.line(&format!("wasmflow: {message}"));
        }
        if self.progress {
            eprintln!("wasmflow: {message}");
        }
    }

    /// The run ended with `status`.
    pub fn run_finished(&mut self, status: &str) {
        if let Some(live) = self.live.as_mut() {
            live.finish();
        }
        self.write(json!({"type": "run_finished", "status": status}));
        if let Some(run) = self.run_events.as_mut() {
            run.flush();
        }
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

/// `events.jsonl` of a run directory: appended in batches (at most
/// [`RunEvents::FLUSH_EVERY`] behind), rotated past
/// [`crate::run::run_dir::EVENTS_ROTATE_BYTES`] to `events.1.jsonl`.
/// Best-effort: a write error is reported once and recording stops, the
/// run goes on.
pub struct RunEvents {
    dir: cap_std::fs::Dir,
    file: Option<cap_std::fs::File>,
    size: u64,
    buffer: Vec<u8>,
    last_flush: Instant,
    limit: u64,
}

impl RunEvents {
    /// How long events may wait in memory before followers see them.
    pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

    pub(crate) fn open(dir: cap_std::fs::Dir) -> std::io::Result<RunEvents> {
        let file = Self::append(&dir)?;
        let size = file.metadata()?.len();
        Ok(RunEvents {
            dir,
            file: Some(file),
            size,
            buffer: Vec::new(),
            last_flush: Instant::now(),
            limit: crate::run::run_dir::EVENTS_ROTATE_BYTES,
        })
    }

    fn append(dir: &cap_std::fs::Dir) -> std::io::Result<cap_std::fs::File> {
        use cap_std::fs::OpenOptionsExt;
        let mut o = cap_std::fs::OpenOptions::new();
        o.append(true).create(true).mode(0o600);
        dir.open_with(crate::run::run_dir::EVENTS, &o)
    }

    /// Rotates past `limit` bytes instead of the default (tests).
    pub fn with_limit(mut self, limit: u64) -> RunEvents {
        self.limit = limit;
        self
    }

    fn push(&mut self, line: &[u8]) {
        self.buffer.extend_from_slice(line);
        if self.buffer.len() >= 64 << 10 || self.last_flush.elapsed() >= Self::FLUSH_EVERY {
            self.flush();
        }
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.buffer.is_empty() {
            return;
        }
        let Some(file) = self.file.as_mut() else {
            self.buffer.clear();
            return;
        };
        // Whole lines only go to a file: rotate before one would pass the
        // limit, so a follower never sees a line split across two files.
        if self.size > 0 && self.size + self.buffer.len() as u64 > self.limit {
            let rotated = self
                .dir
                .rename(
                    crate::run::run_dir::EVENTS,
                    &self.dir,
                    crate::run::run_dir::EVENTS_OLD,
                )
                .and_then(|_| Self::append(&self.dir));
            match rotated {
                Ok(f) => {
                    *file = f;
                    self.size = 0;
                }
                Err(e) => return self.fail(e),
            }
        }
        match file.write_all(&self.buffer) {
            Ok(()) => self.size += self.buffer.len() as u64,
            Err(e) => return self.fail(e),
        }
        self.buffer.clear();
    }

    fn fail(&mut self, e: std::io::Error) {
        eprintln!(
            "wasmflow: warning: cannot write the run's events.jsonl: {e}; its events are no longer recorded"
        );
        self.file = None;
        self.buffer.clear();
    }
}

impl Drop for RunEvents {
    fn drop(&mut self) {
        self.flush();
    }
}
