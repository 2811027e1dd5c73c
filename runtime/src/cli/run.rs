//! `wasmflow run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use wasmflow::check::CheckOptions;
use wasmflow::config::Config;
use wasmflow::driver::Durability;
use wasmflow::error::{InputError, RunError, exit};
use wasmflow::journal::Replay;
use wasmflow::run_dir::{self, RunDir, RunInfo, now_ms};
use wasmflow::saved;
use wasmflow::summary::RunSummary;
use wasmflow::{
    EventSink, Limits, Program, RunConfig, Script, WorkflowEngine, WorkflowModule, run_program,
};

use super::RunArgs;

/// The run directory of a journaled run, and its run.json.
struct RunRecord {
    dir: Arc<RunDir>,
    info: RunInfo,
}

impl RunRecord {
    /// Records how the session ended in run.json.
    fn finish(mut self, summary: &RunSummary) {
        self.info.status = summary.status.to_string();
        self.info.result = (summary.status == "ok").then(|| summary.result.clone());
        self.info.summary = serde_json::to_value(summary).ok();
        self.info.updated_ms = now_ms();
        if let Err(e) = self.dir.write_info(&self.info) {
            eprintln!(
                "wasmflow: warning: cannot write {}/run.json: {e}",
                self.dir.path.display()
            );
        }
    }
}

pub fn run(args: RunArgs) -> i32 {
    let start = Instant::now();
    let json = args.json;
    let mut record = None;
    let (result, stats) = match prepare_and_run(args, &mut record) {
        Ok(outcome) => outcome,
        Err(e) => (Err(e), Default::default()),
    };
    let duration_ms = start.elapsed().as_millis() as u64;
    let code = match &result {
        Ok(_) => exit::OK,
        Err(e) => e.exit_code(),
    };
    let mut summary = RunSummary::new(&result, stats, duration_ms);
    summary.run_id = record.as_ref().map(|r: &RunRecord| r.dir.id.clone());
    if let Some(r) = record {
        r.finish(&summary);
    }
    if json {
        match serde_json::to_string_pretty(&summary) {
            Ok(text) => print_stdout(&text),
            Err(e) => eprintln!("wasmflow: cannot print the summary: {e}"),
        }
        if let Err(e) = &result {
            print_error(e);
        }
        return code;
    }
    match &result {
        Ok(value) => {
            print_stdout(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()))
        }
        Err(e) => print_error(e),
    }
    code
}

/// Prints to stdout; a closed pipe (`| head`) is not worth a panic, and the
/// exit code already says how the run ended.
fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|_| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("wasmflow: cannot write the result to stdout: {e}");
    }
}

fn print_error(e: &RunError) {
    match e {
        RunError::Paused { message } => eprintln!("wasmflow: {message}"),
        RunError::Script(f) => {
            eprintln!("error: {f}");
            if let Some(stack) = &f.stack {
                for line in stack.lines().filter(|l| !l.trim().is_empty()) {
                    eprintln!("  {}", line.trim_start());
                }
            }
        }
        other => eprintln!("error: {other}"),
    }
}

type Outcome = (Result<Value, RunError>, wasmflow::summary::Stats);

fn prepare_and_run(args: RunArgs, record: &mut Option<RunRecord>) -> Result<Outcome, RunError> {
    let cwd = std::env::current_dir()
        .map_err(|e| InputError::Invalid(format!("cannot read the working directory: {e}")))?;
    let saved = saved::search_dirs(&cwd, saved::home_dir().as_deref());
    let target = resolve_target(&args.script, &saved)?;
    let check = CheckOptions {
        strict: args.strict,
    };
    super::refuse_if_disabled(&cwd)?;
    let engine = WorkflowEngine::new().map_err(RunError::Internal)?;
    let (module, script) = load_program(&engine, &target, check)?;
    for w in &script.warnings {
        eprintln!(
            "warning: {}:{}:{}: {}",
            script.filename, w.line, w.column, w.message
        );
    }
    if args.no_journal && args.resume.is_some() {
        return Err(InputError::Invalid(
            "--resume reads the journal that --no-journal turns off: give one or the other".into(),
        )
        .into());
    }
    let mut args_json = read_args(&args)?;
    // A resume runs with the args the run was started with, unless given.
    if let Some(id) = &args.resume
        && args.args.is_none()
        && args.args_file.is_none()
        && args.text.is_empty()
    {
        let info = RunDir::open(&run_dir::runs_root(&cwd), id)
            .and_then(|d| d.read_info())
            .map_err(InputError::Invalid)?;
        args_json = info.args.to_string();
    }
    let (file_config, _files) = Config::load(&cwd, saved::home_dir().as_deref())?;
    let backend_name = backend_name(&args, &file_config);
    let default_model = default_model(&args, &file_config, &backend_name, !args.quiet);
    if let Some(max) = args.max_cost {
        check_prices(&script, &file_config, default_model.as_deref(), max)?;
    }
    // Real agents cost money: over the threshold, ask first (or, without a
    // terminal, refuse without --yes). Resumes were agreed to already.
    if backend_name != "sim" && !args.yes && args.resume.is_none() {
        let program = match &module {
            Some(m) => Program::Module(m),
            None => Program::Script(&script),
        };
        let estimate = super::plan::estimate_for(&args, &engine, program, &file_config, &saved)?;
        super::plan::confirm(&estimate, &file_config, &script)?;
    }
    let agent_timeout = match (args.agent_timeout, &file_config.agent_timeout) {
        (Some(t), _) => t,
        (None, Some(text)) => {
            wasmflow::limits::parse_duration(text).map_err(InputError::Invalid)?
        }
        (None, None) => std::time::Duration::from_secs(30 * 60),
    };
    let backend = super::backends::build(
        &args,
        &backend_name,
        &file_config,
        &script,
        default_model.as_deref(),
        agent_timeout,
    )?;
    let live = match args.progress.as_deref() {
        _ if args.quiet => false,
        Some("live") => true,
        Some(_) => false,
        None => {
            use std::io::IsTerminal;
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    };
    let mut events = EventSink::new(!args.quiet && !live, args.events.as_deref()).map_err(|e| {
        InputError::Output {
            what: "the events file",
            path: args.events.clone().unwrap_or_default(),
            reason: e.to_string(),
        }
    })?;
    let limits = limits(&args, &file_config);
    let durability = open_run_dir(&args, &cwd, &script, &args_json, record)?;
    // After the lines above: the view redraws over what follows it.
    if live {
        let phases: Vec<(String, Option<String>)> = script
            .meta
            .iter()
            .flat_map(|m| m.phases.iter())
            .map(|p| (p.title.clone(), p.model.clone()))
            .collect();
        let width = wasmflow::live::terminal_width().unwrap_or(100);
        events = events.with_live(wasmflow::live::LiveView::new(
            &script.name(),
            &phases,
            Box::new(std::io::stderr()),
            width,
        ));
    }
    let recorded_args: Value = serde_json::from_str(&args_json).unwrap_or(Value::Null);
    let config = RunConfig {
        limits,
        args_json,
        backend,
        budget: args.budget,
        schema_tries: args.schema_tries,
        strict: args.strict,
        saved,
        config: Arc::new(file_config),
        default_model,
        max_cost: args.max_cost,
        circuit_breaker: args.circuit_breaker,
        driver: args.driver,
        record: args.record.is_some(),
        pause_on_signal: durability.is_some(),
        durability,
    };
    let program = match &module {
        Some(m) => Program::Module(m),
        None => Program::Script(&script),
    };
    let outcome = run_program(&engine, program, config, events);
    let mut events = outcome.events;
    let status = match &outcome.result {
        Ok(_) => "ok",
        Err(e) => e.status(),
    };
    let s = &outcome.stats;
    events.note(&format!(
        "{status}: {} agents ({} done, {} failed), {} input / {} output tokens",
        s.agents.spawned, s.agents.done, s.agents.failed, s.tokens.input, s.tokens.output
    ));
    if s.agents.cached > 0 {
        events.note(&format!(
            "  {} from the journal (not run again: {} input / {} output tokens{}), {} run live",
            s.agents.cached,
            s.from_journal.input,
            s.from_journal.output,
            s.from_journal
                .usd
                .map(|u| format!(", ${u:.4}"))
                .unwrap_or_default(),
            s.live.agents
        ));
    }
    if let Some(usd) = s.cost.total_usd {
        events.note(&format!("cost: ${usd:.4}"));
    }
    for f in &s.failures {
        events.note(&format!("  failed: {}: {}", f.label, f.reason));
    }
    events.run_finished(status);
    if let Some(path) = &args.record {
        let recording = wasmflow::record::Recording {
            format: 1,
            args: recorded_args,
            budget: args.budget,
            agents: outcome.stats.recorded.clone(),
            result: outcome.result.as_ref().cloned().unwrap_or(Value::Null),
        };
        let text = serde_json::to_string_pretty(&recording).unwrap_or_default();
        std::fs::write(path, text).map_err(|e| InputError::Output {
            what: "the recording",
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok((outcome.result, outcome.stats))
}

/// `--backend`, else `--exec`'s, else the config's, else `sim`.
pub(crate) fn backend_name(args: &RunArgs, file_config: &Config) -> String {
    args.backend
        .clone()
        .or_else(|| args.exec_command.as_ref().map(|_| "exec".to_string()))
        .or_else(|| file_config.backend.clone())
        .unwrap_or_else(|| "sim".into())
}

/// `--model`, else the config's `default_model`; for the Claude backends
/// never silently the most expensive model: the middle one, said.
pub(crate) fn default_model(
    args: &RunArgs,
    file_config: &Config,
    backend_name: &str,
    say: bool,
) -> Option<String> {
    match args
        .model
        .clone()
        .or_else(|| file_config.default_model.clone())
    {
        Some(m) => Some(m),
        None if backend_name == "claude" || backend_name == "anthropic" => {
            if say {
                eprintln!(
                    "wasmflow: no default model set: agents that name none use sonnet ({}); set default_model in wasmflow.toml or pass --model",
                    file_config.model_id("sonnet")
                );
            }
            Some("sonnet".to_string())
        }
        None => None,
    }
}

/// The caps and bounds from flags and config.
pub(crate) fn limits(args: &RunArgs, file_config: &Config) -> Limits {
    Limits {
        concurrency: args
            .concurrency
            .or(file_config.concurrency)
            .unwrap_or(Limits::DEFAULT_CONCURRENCY),
        max_agents: args
            .max_agents
            .or(file_config.max_agents)
            .unwrap_or(Limits::DEFAULT_MAX_AGENTS),
        fuel_per_slice: args.cpu_limit,
        memory_bytes: args.memory_limit,
        wall_clock: args.timeout,
        sizes: wasmflow::Sizes {
            prompt: args.max_prompt,
            options: args.max_options,
            schema: args.max_schema,
            result: args.max_result,
            log_line: args.max_log_line,
            log_lines_per_sec: args.log_rate,
            agent_output: args.max_agent_output,
        },
    }
}

/// Creates the run's directory, or opens the one `--resume` names and
/// reads its journal back.
fn open_run_dir(
    args: &RunArgs,
    cwd: &Path,
    script: &Script,
    args_json: &str,
    record: &mut Option<RunRecord>,
) -> Result<Option<Durability>, RunError> {
    if args.no_journal {
        if args.resume.is_some() {
            return Err(InputError::Invalid(
                "--resume reads the journal that --no-journal turns off: give one or the other"
                    .into(),
            )
            .into());
        }
        return Ok(None);
    }
    let root = run_dir::runs_root(cwd);
    let output_error = |path: &Path, e: std::io::Error| InputError::Output {
        what: "the run directory",
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let (dir, mut info, replay, valid_len) = match &args.resume {
        Some(id) => {
            let dir = RunDir::open(&root, id).map_err(InputError::Invalid)?;
            let info = dir.read_info().map_err(InputError::Invalid)?;
            if super::runs::session_alive(&info) {
                return Err(InputError::Invalid(format!(
                    "run {id} is still running (process {}); pause it first: wasmflow stop {id}",
                    info.pid
                ))
                .into());
            }
            let read = dir.read_journal().map_err(InputError::Invalid)?;
            for skipped in &read.skipped {
                eprintln!("wasmflow: warning: journal of run {id}: skipped {skipped}");
            }
            let replay = Replay::from_records(&read.records);
            if !args.quiet {
                eprintln!(
                    "wasmflow: resuming run {id}: {} finished agent(s) in the journal are handed back, not run again",
                    replay.len()
                );
            }
            (dir, info, replay, read.valid_len)
        }
        None => {
            let id = run_dir::new_run_id();
            let dir = RunDir::create(&root, &id).map_err(|e| output_error(&root.join(&id), e))?;
            let info = RunInfo {
                id,
                created_ms: now_ms(),
                ..RunInfo::default()
            };
            (dir, info, Replay::default(), 0)
        }
    };
    info.name = script.name();
    // A bundled workflow is stored by name, which a resume looks up again.
    info.script_path = if wasmflow::bundled::find(&script.path.to_string_lossy()).is_some()
        && script.path.components().count() == 1
        && !script.path.exists()
    {
        script.path.clone()
    } else {
        std::path::absolute(&script.path).unwrap_or_else(|_| script.path.clone())
    };
    info.script_sha256 = wasmflow::key::sha256_hex(script.source.as_bytes());
    info.args = serde_json::from_str(args_json).unwrap_or(Value::Null);
    info.flags = super::runs::to_flags(args);
    info.status = "running".into();
    info.pid = std::process::id();
    info.sessions += 1;
    info.updated_ms = now_ms();
    info.result = None;
    dir.write_info(&info)
        .map_err(|e| output_error(&dir.path, e))?;
    if !args.quiet {
        eprintln!(
            "wasmflow: run {} (in {}; Ctrl-C pauses it, `wasmflow resume {}` continues it)",
            info.id,
            dir.path.display(),
            info.id
        );
    }
    let dir = Arc::new(dir);
    *record = Some(RunRecord {
        dir: dir.clone(),
        info,
    });
    Ok(Some(Durability {
        dir,
        replay,
        valid_len,
        sync: true,
        grace: args.grace,
    }))
}

/// The script, and the component when the target is one: a compiled
/// workflow (`wasmflow build`) runs like its script, which comes back out
/// of the module's custom section.
pub(crate) fn load_program(
    engine: &WorkflowEngine,
    target: &Target,
    check: CheckOptions,
) -> Result<(Option<WorkflowModule>, Script), RunError> {
    Ok(match target {
        Target::Bundled(b) => (None, b.script(check)?),
        Target::File(path) => match super::module::read_wasm(path)? {
            Some(bytes) => {
                let m = WorkflowModule::load(engine, path, &bytes, check)?;
                let script = m.script.clone();
                (Some(m), script)
            }
            None => (None, Script::load(path, check)?),
        },
    })
}

/// What a name on the command line stands for.
pub(crate) enum Target {
    /// A script or component file.
    File(PathBuf),
    /// A workflow inside the binary.
    Bundled(&'static wasmflow::bundled::Bundled),
}

/// A path to a script, or the name of a saved or bundled workflow (saved
/// first).
pub(crate) fn resolve_target(
    target: &str,
    saved: &[saved::SearchDir],
) -> Result<Target, InputError> {
    let path = Path::new(target);
    if path.exists()
        || target.ends_with(".js")
        || target.ends_with(".wasm")
        || target.contains(std::path::MAIN_SEPARATOR)
    {
        return Ok(Target::File(path.to_path_buf()));
    }
    if let Some(found) = saved::find(target, saved) {
        return Ok(Target::File(found));
    }
    if let Some(b) = wasmflow::bundled::find(target) {
        return Ok(Target::Bundled(b));
    }
    Err(InputError::Invalid(saved::not_found(target, saved)))
}

pub(crate) fn read_args(args: &RunArgs) -> Result<String, InputError> {
    if !args.text.is_empty() {
        if args.args.is_some() || args.args_file.is_some() {
            return Err(InputError::Invalid(
                "give args either as text after the workflow or with --args/--args-file, not both"
                    .into(),
            ));
        }
        return Ok(Value::String(args.text.join(" ")).to_string());
    }
    if let Some(text) = &args.args {
        let value: Value = serde_json::from_str(text).map_err(|e| InputError::ArgsJson {
            reason: e.to_string(),
        })?;
        return Ok(value.to_string());
    }
    if let Some(path) = &args.args_file {
        let text = std::fs::read_to_string(path).map_err(|e| InputError::ArgsFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| InputError::ArgsFileJson {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        return Ok(value.to_string());
    }
    Ok("null".into())
}

/// `--max-cost` needs a price for every model the run may use: the
/// default, the phases' models, and models named literally in the script.
/// An unpriced model is never counted as $0.
fn check_prices(
    script: &Script,
    config: &Config,
    default_model: Option<&str>,
    max: f64,
) -> Result<(), InputError> {
    let Some(default_model) = default_model else {
        return Err(InputError::Invalid(format!(
            "--max-cost {max} needs to know what agents cost: set default_model (and its price) in wasmflow.toml, or pass --model"
        )));
    };
    let mut models: Vec<String> = vec![default_model.to_string()];
    if let Some(meta) = &script.meta {
        models.extend(meta.phases.iter().filter_map(|p| p.model.clone()));
    }
    models.extend(script.literal_models.iter().cloned());
    let mut unpriced: Vec<String> = models
        .iter()
        .map(|alias| config.model_id(alias))
        .filter(|id| config.price(id).is_none())
        .collect();
    unpriced.sort();
    unpriced.dedup();
    if unpriced.is_empty() {
        return Ok(());
    }
    Err(InputError::Invalid(format!(
        "--max-cost {max}: no price for {}; add one per model to wasmflow.toml, e.g. [prices.\"{}\"] input = 3.0, output = 15.0 (USD per million tokens)",
        unpriced.join(", "),
        unpriced[0]
    )))
}
