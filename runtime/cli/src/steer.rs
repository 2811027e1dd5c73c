//! Watch and steer a run from any shell: `attach`, `skip`, `retry`, and
//! `show --agent`.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use wasmflow::backend::Usage;
use wasmflow::error::exit;
use wasmflow::run::control::{self, Op};
use wasmflow::run::events::ProgressView;
use wasmflow::run::launch::Env;
use wasmflow::run::run_dir::RunDir;
use wasmflow::run::state::EventFollower;

#[derive(Args, Debug)]
pub struct SteerArgs {
    /// The run (`wasmflow runs` lists them).
    pub id: String,
    /// The agent: its number, or a label only one agent has.
    pub agent: String,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The run to watch.
    pub id: String,
}

/// `writeln!` into a String (which cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

fn open(id: &str) -> Result<RunDir, String> {
    let env = Env::from_process().map_err(|e| e.to_string())?;
    RunDir::open(&env.runs_root, id)
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    exit::USAGE
}

fn steer(args: SteerArgs, op: Op) -> i32 {
    let outcome = open(&args.id).and_then(|dir| {
        let agent = control::resolve_agent(&dir, &args.agent)?;
        control::ask(&dir, op, agent)
    });
    match outcome {
        Ok(message) => {
            eprintln!("wasmflow: {message}");
            exit::OK
        }
        Err(e) => fail(e),
    }
}

/// `wasmflow skip`.
pub fn skip(args: SteerArgs) -> i32 {
    steer(args, Op::Skip)
}

/// `wasmflow retry`.
pub fn retry(args: SteerArgs) -> i32 {
    steer(args, Op::Retry)
}

/// `wasmflow show ID --agent N|LABEL`.
pub fn show_agent(id: &str, agent: &str, json: bool) -> i32 {
    let record = open(id).and_then(|dir| {
        let n = control::resolve_agent(&dir, agent)?;
        control::agent_record(&dir, n)
    });
    let record = match record {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if json {
        crate::run::print_stdout(&serde_json::to_string_pretty(&record).unwrap_or_default());
        return exit::OK;
    }
    let mut out = String::new();
    let s = |k: &str| match &record[k] {
        Value::String(t) => t.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    outln!(out, "agent     {} ({})", s("id"), s("label"));
    outln!(out, "state     {}", s("state"));
    outln!(out, "phase     {}", s("phase"));
    outln!(out, "model     {}", s("model"));
    if record["retries"].as_u64().unwrap_or(0) > 0 {
        outln!(out, "retries   {}", s("retries"));
    }
    if let Some(sessions) = record["sessions"].as_array().filter(|s| s.len() > 1) {
        outln!(out, "sessions");
        for (i, t) in sessions.iter().enumerate() {
            outln!(
                out,
                "  {}: {}{}",
                i + 1,
                t["type"].as_str().unwrap_or("?"),
                t["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !record["error"].is_null() {
        outln!(out, "failure   {}", s("error"));
    }
    let u = &record["usage"];
    if u.is_object() {
        outln!(
            out,
            "usage     {} input, {} output, {} cache read, {} cache write",
            u["input"],
            u["output"],
            u["cache_read"],
            u["cache_write"]
        );
    }
    if let Some(usd) = record["usd"].as_f64() {
        outln!(out, "cost      ${usd:.4}");
    }
    if let Some(ms) = record["duration_ms"]
        .as_u64()
        .or(record["running_ms"].as_u64())
    {
        outln!(out, "time      {:.1}s", ms as f64 / 1000.0);
    }
    if !record["options"].is_null() {
        outln!(
            out,
            "options   {}",
            serde_json::to_string(&record["options"]).unwrap_or_default()
        );
    }
    if let Some(prompt) = record["prompt"].as_str() {
        outln!(out, "prompt");
        for line in prompt.lines() {
            outln!(out, "  {line}");
        }
    }
    if let Some(entries) = record["transcript"].as_array() {
        outln!(out, "transcript");
        for line in transcript_lines(entries) {
            outln!(out, "  {line}");
        }
    }
    match &record["output"] {
        Value::Null => {}
        Value::String(text) => {
            outln!(out, "output");
            for line in text.lines() {
                outln!(out, "  {line}");
            }
        }
        value => outln!(
            out,
            "output\n{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
    }
    crate::run::print_stdout(out.trim_end());
    exit::OK
}

/// A tool-using agent's transcript as lines: each turn's reply, its tool
/// calls and their results, one line each (long texts shortened; `--json`
/// has them whole, up to the transcript's bounds).
fn transcript_lines(entries: &[Value]) -> Vec<String> {
    let short = |v: &Value, max: usize| -> String {
        let text = v
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| v.to_string());
        let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match one.char_indices().nth(max) {
            Some((i, _)) => format!("{}…", &one[..i]),
            None => one,
        }
    };
    let mut lines = Vec::new();
    for e in entries {
        let turn = e["turn"]
            .as_u64()
            .map(|t| format!("turn {t}  "))
            .unwrap_or_default();
        let line = match e["kind"].as_str().unwrap_or("") {
            "request" => format!(
                "try {}: tools {}",
                e["attempt"],
                e["tools"]
                    .as_array()
                    .map(|t| t
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            ),
            "assistant" if e["text"].as_str().is_some_and(|t| !t.is_empty()) => {
                format!("{turn}model: {}", short(&e["text"], 160))
            }
            "assistant" => continue,
            "tool_call" => format!(
                "{turn}call {} {}",
                e["name"].as_str().unwrap_or("?"),
                short(&e["input"], 120)
            ),
            "tool_result" => format!(
                "{turn}{} {}",
                if e["is_error"] == true {
                    "error:"
                } else {
                    "result:"
                },
                short(&e["text"], 160)
            ),
            "server_tool" => format!("{turn}server tool: {}", short(&e["block"], 160)),
            "end" if e["ok"] == true => "ended with an answer".to_string(),
            "end" => format!("failed: {}", short(&e["reason"], 200)),
            other => format!("{other}: {}", short(&e["text"], 160)),
        };
        lines.push(line);
    }
    lines
}

/// `wasmflow attach`: the live tree of a run in another process, drawn
/// from its events; Ctrl-C leaves the run going.
pub fn attach(args: AttachArgs) -> i32 {
    let dir = match open(&args.id) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let info = match dir.read_info() {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let width = crate::live::terminal_width().unwrap_or(100);
    let mut view = crate::live::LiveView::new(&info.name, &[], Box::new(std::io::stderr()), width);
    let mut follower = EventFollower::new(&dir.path);
    loop {
        let finished = match dir.read_info() {
            Ok(i) => !matches!(dir.status(&i).as_str(), "running" | "starting"),
            Err(e) => return fail(e),
        };
        for e in follower.read_new() {
            feed(&view, &e);
        }
        if finished {
            view.finish();
            let status = dir.read_info().map(|i| dir.status(&i)).unwrap_or_default();
            eprintln!("wasmflow: run {} is {status}", args.id);
            return exit::OK;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn feed(view: &crate::live::LiveView, e: &Value) {
    let s = |k: &str| e[k].as_str();
    let id = e["id"].as_u64().unwrap_or(0);
    match s("type").unwrap_or("") {
        "phase" => view.phase(s("title").unwrap_or("")),
        "log" => match s("level").unwrap_or("info") {
            "info" | "debug" => view.line(s("message").unwrap_or("")),
            level => view.line(&format!("{level}: {}", s("message").unwrap_or(""))),
        },
        "agent_queued" => view.queued(s("phase")),
        "agent_started" => view.started(id, s("label").unwrap_or(""), s("phase"), s("model")),
        kind @ ("agent_done" | "agent_failed" | "agent_skipped") => {
            let u = &e["usage"];
            let n = |k: &str| u[k].as_u64().unwrap_or(0);
            let usage = Usage {
                input: n("input"),
                output: n("output"),
                cache_read: n("cache_read"),
                cache_write: n("cache_write"),
                tool_uses: n("tool_uses"),
                ..Usage::default()
            };
            view.finished(
                id,
                s("phase"),
                kind != "agent_done",
                usage,
                e["usd"].as_f64(),
            );
        }
        _ => {}
    }
}
