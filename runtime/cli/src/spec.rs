//! `run` flags → [`RunSpec`]. Only flags that were given change a spec, so
//! `resume` can lay the flags it is given over the spec a run stored.

use serde_json::Value;

use wasmflow::error::InputError;
use wasmflow::run::launch::target_from_word;
use wasmflow::run::run_dir::RunInfo;
use wasmflow::run::spec::{ProgressMode, RunSpec};

use crate::RunArgs;

/// The spec a `run` command line describes.
pub fn from_args(args: &RunArgs) -> Result<RunSpec, InputError> {
    let mut spec = RunSpec::new(target_from_word(&args.script));
    apply(&mut spec, args)?;
    Ok(spec)
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Lays the flags that `args` gives over `spec` (its target apart).
pub fn apply(spec: &mut RunSpec, args: &RunArgs) -> Result<(), InputError> {
    if let Some(value) = read_args(args)? {
        spec.args = Some(value);
    }
    let b = &mut spec.backend;
    if let Some(name) = &args.backend {
        b.name = Some(name.clone());
    }
    if let Some(c) = &args.exec_command {
        b.exec = Some(c.clone());
    }
    if let Some(d) = args.agent_timeout {
        b.agent_timeout_ms = Some(ms(d));
    }
    if let Some(d) = args.stall_timeout {
        b.stall_timeout_ms = Some(ms(d));
    }
    if let Some(n) = args.retries {
        b.retries = Some(n);
    }
    if let Some(u) = &args.dispatch {
        b.dispatch = Some(u.clone());
    }
    if let Some(p) = &args.mcp_config {
        b.mcp_config = Some(p.clone());
    }
    if let Some(n) = args.sim_latency {
        b.sim.latency_ms = n;
    }
    if let Some(p) = &args.sim_rules {
        b.sim.rules = Some(p.clone());
    }
    if let Some(p) = &args.sim_trace {
        b.sim.trace = Some(p.clone());
    }
    if let Some(m) = &args.model {
        spec.model = Some(m.clone());
    }
    let l = &mut spec.limits;
    if let Some(n) = args.concurrency {
        l.concurrency = Some(n);
    }
    if let Some(n) = args.max_agents {
        l.max_agents = Some(n);
    }
    if let Some(n) = args.cpu_limit {
        l.cpu_fuel = n;
    }
    if let Some(n) = args.memory_limit {
        l.memory_bytes = n;
    }
    if let Some(d) = args.timeout {
        l.timeout_ms = ms(d);
    }
    for (given, field) in [
        (args.max_prompt, &mut l.sizes.prompt),
        (args.max_options, &mut l.sizes.options),
        (args.max_schema, &mut l.sizes.schema),
        (args.max_result, &mut l.sizes.result),
        (args.max_log_line, &mut l.sizes.log_line),
        (args.max_agent_output, &mut l.sizes.agent_output),
    ] {
        if let Some(v) = given {
            *field = v;
        }
    }
    if let Some(n) = args.log_rate {
        l.sizes.log_lines_per_sec = n;
    }
    if let Some(b) = args.budget {
        spec.budget = Some(b);
    }
    if let Some(c) = args.max_cost {
        spec.max_cost = Some(c);
    }
    if let Some(n) = args.schema_tries {
        spec.schema_tries = n;
    }
    if let Some(n) = args.circuit_breaker {
        spec.circuit_breaker = n;
    }
    if args.strict {
        spec.strict = true;
    }
    if let Some(d) = args.driver {
        spec.driver = d;
    }
    if args.no_journal {
        spec.journal.enabled = false;
    }
    if let Some(id) = &args.resume {
        spec.journal.resume = Some(id.clone());
    }
    if let Some(d) = args.grace {
        spec.journal.grace_ms = ms(d);
    }
    let p = &mut spec.progress;
    if args.quiet {
        p.quiet = true;
    }
    match args.progress.as_deref() {
        Some("live") => p.mode = Some(ProgressMode::Live),
        Some("agents") => p.mode = Some(ProgressMode::Agents),
        Some(_) => p.mode = Some(ProgressMode::Plain),
        None => {}
    }
    if let Some(path) = &args.events {
        p.events = Some(path.clone());
    }
    if let Some(path) = &args.record {
        p.record = Some(path.clone());
    }
    Ok(())
}

/// The args the command line gives: text after the workflow, `--args` or
/// `--args-file`; `None` when it gives none.
pub fn read_args(args: &RunArgs) -> Result<Option<Value>, InputError> {
    if !args.text.is_empty() {
        if args.args.is_some() || args.args_file.is_some() {
            return Err(InputError::Invalid(
                "give args either as text after the workflow or with --args/--args-file, not both"
                    .into(),
            ));
        }
        return Ok(Some(Value::String(args.text.join(" "))));
    }
    if let Some(text) = &args.args {
        let value: Value = serde_json::from_str(text).map_err(|e| InputError::ArgsJson {
            reason: e.to_string(),
        })?;
        return Ok(Some(value));
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
        return Ok(Some(value));
    }
    Ok(None)
}

/// The spec of a run written before `run.json` held one: its stored `run`
/// flags read as a command line, with the args it ran with.
pub fn legacy(info: &RunInfo) -> Result<RunSpec, String> {
    let mut argv: Vec<String> = vec!["wasmflow".into(), "run".into()];
    argv.extend(info.flags.iter().cloned());
    argv.push("--".into());
    argv.push(info.script_path.to_string_lossy().into_owned());
    let args = crate::parse_run(argv).map_err(|e| {
        format!(
            "run {} was written by an older wasmflow and its stored flags no longer parse ({}); start it again with `wasmflow run {}`",
            info.id,
            e.to_string().lines().next().unwrap_or_default(),
            info.script_path.display()
        )
    })?;
    let mut spec = from_args(&args).map_err(|e| e.to_string())?;
    spec.args = Some(info.args.clone());
    Ok(spec)
}
