//! Runs that outlive their launcher: `run --detach`, and `wait`, `logs`,
//! `result` over any run directory.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use wasmflow::error::{InputError, RunError, exit};
use wasmflow::run::launch::{self, Env};
use wasmflow::run::run_dir::RunDir;
use wasmflow::run::spec::RunSpec;
use wasmflow::run::state::{EventFollower, RunState};

/// The process exits with this when the run it waits for was interrupted
/// (killed, out of memory, a reboot): `wasmflow resume` continues it.
pub const INTERRUPTED: i32 = 75;
/// `wait --timeout` passed; the run goes on.
pub const TIMED_OUT: i32 = 124;

/// The hidden command a detached run's own process runs.
#[derive(Args, Debug)]
pub struct RunDetachedArgs {
    /// The run the launcher created.
    pub id: String,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// The run to wait for (`wasmflow runs` lists them).
    pub id: String,
    /// Give up after this long (e.g. 30s, 10m): exit 124, the run goes on.
    #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
    pub timeout: Option<Duration>,
    /// Print the run's summary (with `result`) instead of the bare result.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The run.
    pub id: String,
    /// Keep following until the run ends.
    #[arg(long, short)]
    pub follow: bool,
    /// Every agent event (started, done, failed), not only failures.
    #[arg(long)]
    pub agents: bool,
}

#[derive(Args, Debug)]
pub struct ResultArgs {
    /// The run.
    pub id: String,
    /// Only this part of the result (a JSON pointer, e.g. /sections/0).
    #[arg(long, value_name = "POINTER")]
    pub pointer: Option<String>,
    /// Start at this byte of the result's compact JSON.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: u64,
    /// At most this many bytes (a page ends on a UTF-8 boundary).
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,
    /// Print `{total_bytes, offset, next_offset, data}`.
    #[arg(long)]
    pub json: bool,
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    exit::USAGE
}

fn open(id: &str) -> Result<RunDir, String> {
    let env = Env::from_process().map_err(|e| e.to_string())?;
    RunDir::open(&env.runs_root, id)
}

/// `run --detach`: every check a foreground run makes before its first
/// agent happens here, with its errors and exit codes; then the run goes
/// on in a new process of this binary, in a session of its own, with
/// nothing inherited but the working directory and the environment.
pub fn launch(spec: RunSpec, env: &Env, yes: bool, json: bool) -> i32 {
    match try_launch(spec, env, yes) {
        Ok((dir, pid)) => {
            if json {
                println!(
                    "{}",
                    json!({"run_id": dir.id, "dir": dir.path.display().to_string(), "pid": pid})
                );
            } else {
                println!("{}", dir.id);
            }
            exit::OK
        }
        Err(e) => {
            crate::run::print_error(&e);
            e.exit_code()
        }
    }
}

fn try_launch(spec: RunSpec, env: &Env, yes: bool) -> Result<(RunDir, u32), RunError> {
    wasmflow::config::refuse_if_disabled(&env.cwd, env.home.as_deref())?;
    let mut prepared = launch::prepare(spec, env)?;
    let quiet = prepared.spec.progress.quiet;
    crate::run::show(prepared.notices.take(), quiet);
    if prepared.wants_confirmation() && !yes {
        let estimate = prepared.estimate()?;
        crate::plan::confirm(&estimate, &prepared.config, &prepared.script)?;
    }
    let (dir, notices) = prepared.create_detached()?;
    crate::run::show(notices, true);
    let child = spawn(&dir, env)?;
    Ok((dir, child.id()))
}

/// Starts the process of a run created detached (`run-detached ID`): in a
/// session of its own, its output into the run directory, nothing
/// inherited but the working directory and the environment. The caller
/// reaps it (or exits first).
pub fn spawn(dir: &RunDir, env: &Env) -> Result<std::process::Child, RunError> {
    let output = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path.join(name))
            .map_err(|e| InputError::Output {
                what: "the detached run's output",
                path: dir.path.join(name),
                reason: e.to_string(),
            })
    };
    let exe = std::env::current_exe()
        .map_err(|e| RunError::Internal(anyhow::anyhow!("finding the wasmflow binary: {e}")))?;
    let mut command = Command::new(exe);
    command
        .args(["run-detached", &dir.id])
        .current_dir(&env.cwd)
        .stdin(Stdio::null())
        .stdout(output("stdout.log")?)
        .stderr(output("stderr.log")?);
    // SAFETY: setsid is async-signal-safe; it makes the child the leader of
    // a new session, so the terminal closing (SIGHUP) or the launcher's
    // exit does not reach it.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| RunError::Internal(anyhow::anyhow!("starting the detached run: {e}")))?;
    Ok(child)
}

/// [`spawn`] as the servers (`mcp`, `serve`) take it.
pub fn spawner() -> wasmflow_serve::Spawn {
    std::sync::Arc::new(|dir, env| spawn(dir, env).map_err(|e| e.to_string()))
}

/// The runtime a server command runs on; an error is reported and its
/// exit code returned.
pub fn server_runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: starting tokio: {e}");
            exit::INTERNAL
        })
}

/// The detached run's own process: the spec its launcher sealed into
/// run.json, run as a resume of that id.
pub fn run_detached(args: RunDetachedArgs) -> i32 {
    let start = Instant::now();
    let finished = (|| -> Result<launch::Finished, RunError> {
        let env = Env::from_process()?;
        let dir = RunDir::open(&env.runs_root, &args.id).map_err(InputError::Invalid)?;
        let info = dir.read_info().map_err(InputError::Invalid)?;
        let mut spec = launch::stored_spec(&dir, &info, env.home.as_deref())?
            .ok_or_else(|| InputError::Invalid(format!("run {} holds no spec to run", args.id)))?;
        spec.journal.resume = Some(args.id.clone());
        spec.progress.mode = Some(wasmflow::run::spec::ProgressMode::Plain);
        crate::run::run_spec(spec, &env, true)
    })();
    crate::run::report(finished, start, false)
}

/// The exit code a run's status stands for.
fn code_of(status: &str) -> i32 {
    match status {
        "ok" => exit::OK,
        "script_error" => exit::SCRIPT_ERROR,
        "bad_input" => exit::USAGE,
        "limit" => exit::LIMIT,
        "paused" => exit::PAUSED,
        "interrupted" => INTERRUPTED,
        _ => exit::INTERNAL,
    }
}

/// Blocks until `dir`'s run has ended (or `timeout` passed: `None`).
pub fn wait_for(dir: &RunDir, timeout: Option<Duration>) -> Result<Option<RunState>, String> {
    let started = Instant::now();
    loop {
        let info = dir.read_info()?;
        let status = dir.status(&info);
        if !matches!(status.as_str(), "running" | "starting") {
            let mut state = RunState::from_info(&info, status);
            state.finish_reading();
            return Ok(Some(state));
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait(args: WaitArgs) -> i32 {
    let dir = match open(&args.id) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let state = match wait_for(&dir, args.timeout) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "wasmflow: run {} is still running after {:?}; it goes on (wait again, or `wasmflow logs {} -f`)",
                args.id,
                args.timeout.unwrap_or_default(),
                args.id
            );
            return TIMED_OUT;
        }
        Err(e) => return fail(e),
    };
    let info = match dir.read_info() {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let code = code_of(&state.status);
    let result = dir
        .read_result()
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    if args.json {
        let mut summary = info.summary.clone().unwrap_or_else(|| json!({}));
        summary["status"] = json!(state.status);
        summary["run_id"] = json!(info.id);
        summary["result"] = result.unwrap_or(Value::Null);
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else if let Some(result) = result {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    }
    match state.status.as_str() {
        "ok" => {}
        "interrupted" => eprintln!(
            "wasmflow: run {} was interrupted (its process is gone); continue it with: wasmflow resume {}",
            info.id, info.id
        ),
        "paused" => eprintln!(
            "wasmflow: run {} is paused; continue it with: wasmflow resume {}",
            info.id, info.id
        ),
        other => eprintln!(
            "wasmflow: run {} ended {other}: {}",
            info.id,
            state.error.as_deref().unwrap_or("(no message)")
        ),
    }
    code
}

/// One event as a `logs` line, or nothing when `agents` is off and the
/// event is a routine agent event.
fn log_line(e: &Value, agents: bool) -> Option<String> {
    let s = |k: &str| e[k].as_str().unwrap_or("");
    Some(match s("type") {
        "run_started" => format!("wasmflow: session {} of run {}", e["session"], s("run_id")),
        "phase" => format!("wasmflow: ▸ phase {}", s("title")),
        "log" => match s("level") {
            "info" | "debug" => s("message").to_string(),
            level => format!("{level}: {}", s("message")),
        },
        "agent_failed" => format!("wasmflow:   ✗ {}: {}", s("label"), s("reason")),
        "agent_done" if agents => format!("wasmflow:   ✓ {}", s("label")),
        "agent_started" if agents => format!("wasmflow:   … {} started", s("label")),
        "run_finished" => format!("wasmflow: run finished: {}", s("status")),
        _ => return None,
    })
}

pub fn logs(args: LogsArgs) -> i32 {
    let dir = match open(&args.id) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut follower = EventFollower::new(&dir.path);
    let mut out = std::io::stdout().lock();
    loop {
        // Read the status first: events written before the run ended are
        // then all in the file by the read that follows.
        let finished = match dir.read_info() {
            Ok(info) => !matches!(dir.status(&info).as_str(), "running" | "starting"),
            Err(e) => return fail(e),
        };
        for e in follower.read_new() {
            if let Some(line) = log_line(&e, args.agents)
                && writeln!(out, "{line}").is_err()
            {
                return exit::OK;
            }
        }
        let _ = out.flush();
        if !args.follow || finished {
            return exit::OK;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn result(args: ResultArgs) -> i32 {
    let dir = match open(&args.id) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let bytes = match dir.read_result() {
        Ok(b) => b,
        Err(_) => {
            let status = dir
                .read_info()
                .map(|i| dir.status(&i))
                .unwrap_or_else(|_| "unknown".into());
            return fail(format!(
                "run {} has no result (status: {status}){}",
                args.id,
                if status == "running" {
                    format!("; wait for it with `wasmflow wait {}`", args.id)
                } else {
                    String::new()
                }
            ));
        }
    };
    let bytes = match &args.pointer {
        None => bytes,
        Some(p) => {
            let value: Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => return fail(format!("result.json of run {} is damaged: {e}", args.id)),
            };
            match value.pointer(p) {
                Some(part) => serde_json::to_vec(part).unwrap_or_default(),
                None => return fail(format!("the result has nothing at {p}")),
            }
        }
    };
    let page = match wasmflow::run::page::page(&bytes, args.offset, args.max_bytes) {
        Ok(p) => p,
        Err(e) => return fail(e.replace("page size", "--max-bytes")),
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let mut line = json!(page);
        line["data"] = json!(String::from_utf8_lossy(page.bytes));
        writeln!(out, "{line}")
    } else {
        out.write_all(page.bytes).and_then(|_| {
            if page.next_offset.is_none() {
                writeln!(out)
            } else {
                Ok(())
            }
        })
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => fail(e),
        _ => exit::OK,
    }
}
