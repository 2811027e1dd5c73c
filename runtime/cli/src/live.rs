//! The live progress view for a terminal: a tree of phases (agents done,
//! running, queued and failed, tokens, cost, elapsed) with the running
//! agents under their phase, and `log()` lines scrolling above it.
//!
//! Events only update counters under a mutex (a few tens of nanoseconds);
//! a ticker thread redraws at most five times a second, so a run of
//! thousands of agents does not wait on the terminal.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmflow::backend::Usage;
use wasmflow::run::events::{ProgressView, tokens};

/// Running agents shown under a phase; the rest are counted.
const SHOWN_PER_PHASE: usize = 6;
const TICK: Duration = Duration::from_millis(200);

/// One phase's row.
#[derive(Debug, Default)]
struct PhaseRow {
    title: String,
    model: Option<String>,
    done: u64,
    failed: u64,
    queued: u64,
    input: u64,
    output: u64,
    usd: f64,
    priced: bool,
    unpriced: bool,
    first: Option<Instant>,
    last: Option<Instant>,
}

#[derive(Debug)]
struct RunningRow {
    label: String,
    /// Index into `Board::phases`.
    phase: usize,
    model: Option<String>,
    started: Instant,
}

/// What the view shows.
struct Board {
    title: String,
    start: Instant,
    phases: Vec<PhaseRow>,
    running: BTreeMap<u64, RunningRow>,
    /// Lines to print above the tree at the next draw.
    pending: Vec<String>,
    /// Lines the last tree took (the cursor goes back up over them).
    drawn: usize,
    finished: bool,
    out: Box<dyn Write + Send>,
    width: usize,
}

/// A live view; dropping it (or [`LiveView::finish`]) draws the final
/// state and leaves it on screen.
pub struct LiveView {
    board: Arc<Mutex<Board>>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

const OUTSIDE: &str = "(no phase)";

impl LiveView {
    /// A view titled `title`, with the phases `meta` announces, drawing to
    /// `out` (stderr for a run) at most `width` columns wide.
    pub fn new(
        title: &str,
        phases: &[(String, Option<String>)],
        out: Box<dyn Write + Send>,
        width: usize,
    ) -> LiveView {
        let board = Arc::new(Mutex::new(Board {
            title: title.to_string(),
            start: Instant::now(),
            phases: phases
                .iter()
                .map(|(t, m)| PhaseRow {
                    title: t.clone(),
                    model: m.clone(),
                    ..PhaseRow::default()
                })
                .collect(),
            running: BTreeMap::new(),
            pending: Vec::new(),
            drawn: 0,
            finished: false,
            out,
            width: width.max(40),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (board, stop) = (board.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wasmflow-progress".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        if let Ok(mut b) = board.lock()
                            && !b.finished
                        {
                            b.draw();
                        }
                    }
                })
                .ok()
        };
        LiveView {
            board,
            stop,
            ticker,
        }
    }

    fn with(&self, f: impl FnOnce(&mut Board)) {
        if let Ok(mut b) = self.board.lock() {
            f(&mut b);
        }
    }
}

impl ProgressView for LiveView {
    /// The script entered a phase.
    fn phase(&self, title: &str) {
        self.with(|b| {
            b.row(title);
        });
    }

    /// A line above the tree.
    fn line(&self, text: &str) {
        self.with(|b| {
            b.pending.extend(text.lines().map(str::to_string));
        });
    }

    /// An agent is waiting for a slot (`started` later names the same
    /// phase).
    fn queued(&self, phase: Option<&str>) {
        self.with(|b| {
            b.row(phase.unwrap_or(OUTSIDE)).queued += 1;
        });
    }

    /// An agent started.
    fn started(&self, id: u64, label: &str, phase: Option<&str>, model: Option<&str>) {
        self.with(|b| {
            let now = Instant::now();
            let phase = b.index(phase.unwrap_or(OUTSIDE));
            let row = &mut b.phases[phase];
            row.queued = row.queued.saturating_sub(1);
            row.first.get_or_insert(now);
            b.running.insert(
                id,
                RunningRow {
                    label: label.to_string(),
                    phase,
                    model: model.map(str::to_string),
                    started: now,
                },
            );
        });
    }

    /// An agent ended (`usd`: `None` when its model has no price).
    fn finished(&self, id: u64, phase: Option<&str>, failed: bool, usage: Usage, usd: Option<f64>) {
        self.with(|b| {
            let phase = match b.running.remove(&id) {
                Some(r) => r.phase,
                None => b.index(phase.unwrap_or(OUTSIDE)),
            };
            let row = &mut b.phases[phase];
            if failed {
                row.failed += 1;
            } else {
                row.done += 1;
            }
            row.input += usage.input + usage.cache_read + usage.cache_write;
            row.output += usage.output;
            match usd {
                Some(u) => {
                    row.usd += u;
                    row.priced = true;
                }
                None => row.unpriced = true,
            }
            let now = Instant::now();
            row.first.get_or_insert(now);
            row.last = Some(now);
        });
    }

    /// Stops the ticker and draws the final state, which stays on screen.
    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.with(|b| {
            if !b.finished {
                b.running.clear();
                b.draw();
                b.finished = true;
            }
        });
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Board {
    fn row(&mut self, title: &str) -> &mut PhaseRow {
        let i = self.index(title);
        &mut self.phases[i]
    }

    /// The phase's row, added when new.
    fn index(&mut self, title: &str) -> usize {
        match self.phases.iter().position(|p| p.title == title) {
            Some(i) => i,
            None => {
                self.phases.push(PhaseRow {
                    title: title.to_string(),
                    ..PhaseRow::default()
                });
                self.phases.len() - 1
            }
        }
    }

    fn lines(&self) -> Vec<String> {
        let now = Instant::now();
        let mut lines = Vec::new();
        let (mut done, mut failed, mut input, mut output, mut usd) = (0, 0, 0, 0, 0.0);
        let (mut priced, mut unpriced) = (false, false);
        for p in &self.phases {
            done += p.done;
            failed += p.failed;
            input += p.input;
            output += p.output;
            usd += p.usd;
            priced |= p.priced;
            unpriced |= p.unpriced;
        }
        let queued: u64 = self.phases.iter().map(|p| p.queued).sum();
        // Nothing when no agent has a price (sim runs, unpriced models);
        // `+?` when some have none.
        let cost = |usd: f64, priced: bool, unpriced: bool| match (priced, unpriced) {
            (false, _) => String::new(),
            (true, false) => format!("  ${usd:.4}"),
            (true, true) => format!("  ${usd:.4}+?"),
        };
        lines.push(format!(
            "{}  {}  {} done · {} failed · {} running · {} queued  {} in / {} out{}",
            self.title,
            clock(now - self.start),
            done,
            failed,
            self.running.len(),
            queued,
            tokens(input),
            tokens(output),
            cost(usd, priced, unpriced)
        ));
        for (i, p) in self.phases.iter().enumerate() {
            let running: Vec<&RunningRow> =
                self.running.values().filter(|r| r.phase == i).collect();
            let started = p.first.is_some() || !running.is_empty() || p.queued > 0;
            let mark = if !started {
                " "
            } else if !running.is_empty() || p.queued > 0 {
                "▸"
            } else if p.failed > 0 {
                "!"
            } else {
                "✓"
            };
            let mut text = format!("{mark} {}", p.title);
            if !started {
                if let Some(m) = &p.model {
                    text.push_str(&format!("  [{m}]"));
                }
                text.push_str("  (not started)");
                lines.push(text);
                continue;
            }
            text.push_str(&format!("  {} done", p.done));
            if p.failed > 0 {
                text.push_str(&format!(" · {} failed", p.failed));
            }
            if !running.is_empty() {
                text.push_str(&format!(" · {} running", running.len()));
            }
            if p.queued > 0 {
                text.push_str(&format!(" · {} queued", p.queued));
            }
            if p.done + p.failed > 0 {
                text.push_str(&format!(
                    "  {} in / {} out{}",
                    tokens(p.input),
                    tokens(p.output),
                    cost(p.usd, p.priced, p.unpriced)
                ));
            }
            if let Some(first) = p.first {
                let end = if running.is_empty() && p.queued == 0 {
                    p.last.unwrap_or(now)
                } else {
                    now
                };
                text.push_str(&format!("  {}", clock(end - first)));
            }
            lines.push(text);
            for r in running.iter().take(SHOWN_PER_PHASE) {
                let model = r
                    .model
                    .as_deref()
                    .map(|m| format!("  {m}"))
                    .unwrap_or_default();
                lines.push(format!(
                    "    · {}{model}  {}",
                    r.label,
                    clock(now - r.started)
                ));
            }
            if running.len() > SHOWN_PER_PHASE {
                lines.push(format!(
                    "    … and {} more running",
                    running.len() - SHOWN_PER_PHASE
                ));
            }
        }
        lines
    }

    fn draw(&mut self) {
        let mut frame = String::new();
        if self.drawn > 0 {
            // Back to the tree's first line, and clear from there down.
            frame.push_str(&format!("\r\x1b[{}A\x1b[J", self.drawn));
        }
        for line in self.pending.drain(..) {
            frame.push_str(&line);
            frame.push('\n');
        }
        let lines = self.lines();
        for line in &lines {
            // A wrapped line would break the cursor arithmetic.
            frame.extend(line.chars().take(self.width - 1));
            frame.push('\n');
        }
        self.drawn = lines.len();
        let _ = self.out.write_all(frame.as_bytes());
        let _ = self.out.flush();
    }
}

/// `1:05` or `12.3s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}:{:02}", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Columns of the terminal on stderr, when it is one.
pub fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a winsize struct; a failure leaves it zeroed.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            Some(ws.ws_col as usize)
        } else {
            None
        }
    }
}
