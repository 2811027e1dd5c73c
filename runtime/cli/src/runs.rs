//! `wasmflow resume`, `stop`, `runs`, `runs prune`, `show`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use wasmflow::error::exit;
use wasmflow::run::run_dir::{self, RunDir, RunInfo, now_ms};
use wasmflow::run::state::RunState;

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run to continue (`wasmflow runs` lists them), and `run` flags,
    /// anywhere on the line, that override the stored ones (e.g. --budget
    /// 2m); text after the id replaces the stored args.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "ID [FLAGS]"
    )]
    pub words: Vec<String>,
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
    /// One agent's record instead: its number, or a label only one agent
    /// has (prompt, options, model, tries, output, usage, cost, timing).
    #[arg(long, value_name = "N|LABEL")]
    pub agent: Option<String>,
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

pub fn resume(args: ResumeArgs) -> i32 {
    let start = std::time::Instant::now();
    // The words read as a `run` command line whose target is the run id:
    // flags may stand anywhere, as they may for `run`.
    let mut argv: Vec<String> = vec!["wasmflow".into(), "run".into()];
    argv.extend(args.words.iter().cloned());
    let overrides = match crate::parse_run(argv) {
        Ok(a) => a,
        Err(e) => {
            crate::print_usage_error(&e);
            return exit::USAGE;
        }
    };
    let (dir, info) = match open_run(&overrides.script) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let home = wasmflow::script::saved::home_dir();
    let mut spec = match wasmflow::run::launch::stored_spec(&dir, &info, home.as_deref()) {
        Ok(Some(spec)) => spec,
        Ok(None) => match crate::spec::legacy(&info) {
            Ok(spec) => spec,
            Err(e) => return fail(e),
        },
        Err(e) => return fail(e.to_string()),
    };
    // Where output goes belongs to this session.
    spec.progress = Default::default();
    spec.journal.enabled = true;
    spec.journal.resume = Some(info.id.clone());
    let env = wasmflow::run::launch::Env::from_process();
    if overrides.detach {
        // Continued in the background, like `run --detach`: the spec with
        // these flags is sealed into the run directory for the new process.
        return match env {
            Ok(env) => match crate::spec::apply(&mut spec, &overrides) {
                Ok(()) => crate::background::launch(spec, &env, overrides.yes, overrides.json),
                Err(e) => fail(e.to_string()),
            },
            Err(e) => fail(e.to_string()),
        };
    }
    let finished = env.map_err(Into::into).and_then(|env| {
        crate::spec::apply(&mut spec, &overrides)?;
        crate::run::run_spec(spec, &env, overrides.yes)
    });
    crate::run::report(finished, start, overrides.json)
}

pub fn stop(args: StopArgs) -> i32 {
    let (dir, info) = match open_run(&args.id) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if !dir.is_locked() {
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
            Ok(_) if !dir.is_locked() => {
                eprintln!("wasmflow: the process of run {} is gone", info.id);
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

/// The row `runs` shows for one run: a running run's counts are live, from
/// its events.
fn row(root: &Path, info: &RunInfo) -> Value {
    let mut s = info.summary.clone().unwrap_or(Value::Null);
    let dir = RunDir::open(root, &info.id).ok();
    let status = dir
        .as_ref()
        .map_or_else(|| info.status.clone(), |d| d.status(info));
    if matches!(status.as_str(), "running" | "starting")
        && let Some(state) = dir.as_ref().and_then(|d| RunState::load(d).ok())
    {
        s = json!({
            "agents": {"done": state.agents.done, "failed": state.agents.failed,
                       "running": state.agents.running, "queued": state.agents.queued},
            "tokens": state.tokens,
            "cost": {"total_usd": state.cost_usd},
        });
    }
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
        let rows: Vec<Value> = all.iter().map(|i| row(&root, i)).collect();
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
        let r = row(&root, info);
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
        let locked = RunDir::open(root, &info.id).is_ok_and(|d| d.is_locked());
        if info.updated_ms > cutoff || locked {
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
    if let Some(agent) = &args.agent {
        let json = args.json || args.format.as_deref() == Some("json");
        return crate::steer::show_agent(&args.id, agent, json);
    }
    let (dir, info) = match open_run(&args.id) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let r = row(
        &dir.path.parent().map(Path::to_path_buf).unwrap_or_default(),
        &info,
    );
    match args.format.as_deref() {
        _ if args.json => {}
        Some("json") => {}
        Some("md") => {
            print!(
                "{}",
                crate::report::markdown(&info, r["status"].as_str().unwrap_or(""))
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
