//! `wasmflow resume`, `stop`, `runs`, `runs prune`, `show`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use wasmflow::error::exit;
use wasmflow::run_dir::{self, RunDir, RunInfo, now_ms};

use super::RunArgs;

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run to continue (`wasmflow runs` lists them).
    pub id: String,
    /// `run` flags that override the stored ones (e.g. --budget 2m).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "FLAGS"
    )]
    pub flags: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    pub id: String,
    /// Return at once instead of waiting for the run to pause.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Delete finished runs older than a duration (never running ones).
    Prune {
        /// e.g. 30d, 12h.
        #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
        older_than: Duration,
        /// Say what would go, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    pub id: String,
    /// Print run.json as it is (same as --format json).
    #[arg(long)]
    pub json: bool,
    /// `text` (default), `md` (a Markdown report: phases, agents,
    /// failures with reasons, tokens and cost by phase and model, the
    /// result) or `json`.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "md", "json"])]
    pub format: Option<String>,
}

fn root() -> Result<PathBuf, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    Ok(run_dir::runs_root(&cwd))
}

/// A run of the working directory and its run.json.
pub(crate) fn open_run(id: &str) -> Result<(RunDir, RunInfo), String> {
    let dir = RunDir::open(&root()?, id)?;
    let info = dir.read_info()?;
    Ok((dir, info))
}

fn fail(message: String) -> i32 {
    eprintln!("error: {message}");
    exit::USAGE
}

/// Whether the session recorded in `info` is still alive.
pub fn session_alive(info: &RunInfo) -> bool {
    info.status == "running"
        && info.pid != 0
        && info.pid != std::process::id()
        && Path::new(&format!("/proc/{}", info.pid)).exists()
}

/// The flags that reproduce `args` (args, script, output and resume apart):
/// stored in run.json, replayed by `resume`.
pub fn to_flags(args: &RunArgs) -> Vec<String> {
    let mut f: Vec<String> = Vec::new();
    let mut push = |name: &str, value: String| {
        f.push(name.to_string());
        f.push(value);
    };
    let abs = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .to_string_lossy()
            .into_owned()
    };
    let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
    if let Some(b) = &args.backend {
        push("--backend", b.clone());
    }
    if let Some(c) = &args.exec_command {
        push("--exec", c.clone());
    }
    if let Some(d) = args.agent_timeout {
        push("--agent-timeout", ms(d));
    }
    if let Some(d) = args.stall_timeout {
        push("--stall-timeout", ms(d));
    }
    if let Some(n) = args.retries {
        push("--retries", n.to_string());
    }
    if let Some(n) = args.concurrency {
        push("--concurrency", n.to_string());
    }
    if let Some(n) = args.max_agents {
        push("--max-agents", n.to_string());
    }
    if args.cpu_limit != wasmflow::Limits::DEFAULT_FUEL_PER_SLICE {
        push("--cpu-limit", args.cpu_limit.to_string());
    }
    if args.memory_limit != wasmflow::Limits::DEFAULT_MEMORY_BYTES {
        push("--memory-limit", format!("{}K", args.memory_limit >> 10));
    }
    if args.timeout != wasmflow::Limits::DEFAULT_WALL_CLOCK {
        push("--timeout", ms(args.timeout));
    }
    let sizes = wasmflow::Sizes::default();
    for (name, value, default) in [
        ("--max-prompt", args.max_prompt, sizes.prompt),
        ("--max-options", args.max_options, sizes.options),
        ("--max-schema", args.max_schema, sizes.schema),
        ("--max-result", args.max_result, sizes.result),
        ("--max-log-line", args.max_log_line, sizes.log_line),
        (
            "--max-agent-output",
            args.max_agent_output,
            sizes.agent_output,
        ),
    ] {
        if value != default {
            push(name, value.to_string());
        }
    }
    if args.log_rate != sizes.log_lines_per_sec {
        push("--log-rate", args.log_rate.to_string());
    }
    if let Some(b) = args.budget {
        push("--budget", b.to_string());
    }
    if args.schema_tries != 5 {
        push("--schema-tries", args.schema_tries.to_string());
    }
    if let Some(m) = &args.model {
        push("--model", m.clone());
    }
    if let Some(c) = args.max_cost {
        push("--max-cost", c.to_string());
    }
    if args.driver == wasmflow::DriverKind::Blocking {
        push("--driver", "blocking".into());
    }
    if args.circuit_breaker != 3 {
        push("--circuit-breaker", args.circuit_breaker.to_string());
    }
    if args.grace != Duration::from_secs(30) {
        push("--grace", ms(args.grace));
    }
    if args.sim_latency != 0 {
        push("--sim-latency", args.sim_latency.to_string());
    }
    if let Some(p) = &args.sim_rules {
        push("--sim-rules", abs(p));
    }
    if let Some(p) = &args.sim_trace {
        push("--sim-trace", abs(p));
    }
    if args.strict {
        f.push("--strict".into());
    }
    f
}

pub fn resume(args: ResumeArgs) -> i32 {
    let (_, info) = match open_run(&args.id) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let gives_args = args.flags.iter().any(|f| {
        f == "--args"
            || f == "--args-file"
            || f.starts_with("--args=")
            || f.starts_with("--args-file=")
    });
    let mut argv: Vec<String> = vec!["wasmflow".into(), "run".into()];
    argv.extend(info.flags.iter().cloned());
    argv.extend(args.flags.iter().cloned());
    if !gives_args {
        argv.push("--args".into());
        argv.push(info.args.to_string());
    }
    argv.push("--resume".into());
    argv.push(info.id.clone());
    argv.push("--".into());
    argv.push(info.script_path.to_string_lossy().into_owned());
    match super::parse_run(argv) {
        Ok(run_args) => super::run::run(run_args),
        Err(e) => {
            let _ = e.print();
            exit::USAGE
        }
    }
}

pub fn stop(args: StopArgs) -> i32 {
    let (dir, info) = match open_run(&args.id) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if !session_alive(&info) {
        return fail(format!(
            "run {} is not running (status: {}); resume it with: wasmflow resume {}",
            info.id, info.status, info.id
        ));
    }
    if let Err(e) = dir.request_stop() {
        return fail(format!("cannot ask run {} to stop: {e}", info.id));
    }
    eprintln!(
        "wasmflow: asked run {} (process {}) to pause: no new agents; running ones may finish",
        info.id, info.pid
    );
    if args.no_wait {
        return exit::OK;
    }
    loop {
        std::thread::sleep(Duration::from_millis(100));
        match dir.read_info() {
            Ok(i) if i.status != "running" => {
                eprintln!(
                    "wasmflow: run {} is {}; resume it with: wasmflow resume {}",
                    i.id, i.status, i.id
                );
                return exit::OK;
            }
            Ok(i) if !session_alive(&i) => {
                eprintln!("wasmflow: the process of run {} is gone", i.id);
                return exit::OK;
            }
            _ => {}
        }
    }
}

fn age(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The row `runs` shows for one run.
fn row(info: &RunInfo) -> Value {
    let s = info.summary.clone().unwrap_or(Value::Null);
    let status = if info.status == "running" && !session_alive(info) {
        "interrupted".to_string()
    } else {
        info.status.clone()
    };
    json!({
        "id": info.id,
        "name": info.name,
        "status": status,
        "agents": s["agents"],
        "tokens": s["tokens"],
        "cost_usd": s["cost"]["total_usd"],
        "created_ms": info.created_ms,
        "updated_ms": info.updated_ms,
        "sessions": info.sessions,
    })
}

pub fn runs(args: RunsArgs) -> i32 {
    let root = match root() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Some(RunsCommand::Prune {
        older_than,
        dry_run,
    }) = args.command
    {
        return prune(&root, older_than, dry_run);
    }
    let all = run_dir::list(&root);
    if args.json {
        let rows: Vec<Value> = all.iter().map(row).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return exit::OK;
    }
    if all.is_empty() {
        eprintln!("wasmflow: no runs in {}", root.display());
        return exit::OK;
    }
    println!(
        "{:<22} {:<20} {:<12} {:>7} {:>7} {:>10} {:>9} {:>5}",
        "ID", "NAME", "STATUS", "AGENTS", "FAILED", "TOKENS", "COST", "AGE"
    );
    for info in &all {
        let r = row(info);
        let tokens = r["tokens"]["input"].as_u64().unwrap_or(0)
            + r["tokens"]["output"].as_u64().unwrap_or(0);
        let cost = match r["cost_usd"].as_f64() {
            Some(c) => format!("${c:.4}"),
            None => "-".into(),
        };
        let name: String = info.name.chars().take(20).collect();
        println!(
            "{:<22} {:<20} {:<12} {:>7} {:>7} {:>10} {:>9} {:>5}",
            info.id,
            name,
            r["status"].as_str().unwrap_or(""),
            r["agents"]["done"].as_u64().unwrap_or(0),
            r["agents"]["failed"].as_u64().unwrap_or(0),
            tokens,
            cost,
            age(info.updated_ms)
        );
    }
    exit::OK
}

fn prune(root: &Path, older_than: Duration, dry_run: bool) -> i32 {
    let cutoff = now_ms().saturating_sub(older_than.as_millis() as u64);
    let mut removed = 0;
    for info in run_dir::list(root) {
        if info.updated_ms > cutoff || session_alive(&info) {
            continue;
        }
        let path = root.join(&info.id);
        if dry_run {
            println!("would remove {} ({}, {})", info.id, info.name, info.status);
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                removed += 1;
                println!("removed {} ({}, {})", info.id, info.name, info.status);
            }
            Err(e) => eprintln!("wasmflow: cannot remove {}: {e}", path.display()),
        }
    }
    if !dry_run {
        eprintln!("wasmflow: removed {removed} run(s)");
    }
    exit::OK
}

pub fn show(args: ShowArgs) -> i32 {
    let (dir, info) = match open_run(&args.id) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let r = row(&info);
    match args.format.as_deref() {
        _ if args.json => {}
        Some("json") => {}
        Some("md") => {
            print!(
                "{}",
                super::report::markdown(&info, r["status"].as_str().unwrap_or(""))
            );
            return exit::OK;
        }
        _ => return show_text(&dir, &info, &r),
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&info).unwrap_or_default()
    );
    exit::OK
}

fn show_text(dir: &RunDir, info: &RunInfo, r: &Value) -> i32 {
    let s = info.summary.clone().unwrap_or(Value::Null);
    println!("run       {}", info.id);
    println!("name      {}", info.name);
    println!("script    {}", info.script_path.display());
    println!("args      {}", info.args);
    println!(
        "status    {}  ({} session(s), updated {} ago)",
        r["status"].as_str().unwrap_or(""),
        info.sessions,
        age(info.updated_ms)
    );
    println!(
        "agents    {} done ({} from the journal), {} failed, {} spawned",
        s["agents"]["done"], s["agents"]["cached"], s["agents"]["failed"], s["agents"]["spawned"]
    );
    println!(
        "tokens    {} input, {} output, {} cache read, {} cache write",
        s["tokens"]["input"],
        s["tokens"]["output"],
        s["tokens"]["cache_read"],
        s["tokens"]["cache_write"]
    );
    match s["cost"]["total_usd"].as_f64() {
        Some(c) => println!(
            "cost      ${c:.4} (this session live: {}, from the journal: {})",
            s["live"]["usd"], s["from_journal"]["usd"]
        ),
        None => println!("cost      unknown (unpriced models)"),
    }
    if let Some(failures) = s["failures"].as_array().filter(|f| !f.is_empty()) {
        println!("failures");
        for f in failures {
            println!(
                "  {}: {}",
                f["label"].as_str().unwrap_or("?"),
                f["reason"].as_str().unwrap_or("?")
            );
        }
    }
    if let Some(e) = s.get("error").filter(|e| !e.is_null()) {
        println!("error     {}", e["message"].as_str().unwrap_or(""));
    }
    println!("result    {}", dir.path.join("run.json").display());
    println!("journal   {}", dir.path.join("journal.jsonl").display());
    if info.status != "ok" {
        println!("resume    wasmflow resume {}", info.id);
    }
    exit::OK
}
