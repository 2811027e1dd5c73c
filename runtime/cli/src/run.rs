//! `wasmflow run`.

use std::time::Instant;

use wasmflow::EventSink;
use wasmflow::error::{RunError, exit};
use wasmflow::run::launch::{self, Env, Finished, Notice};
use wasmflow::run::spec::{ProgressMode, RunSpec};
use wasmflow::run::summary::RunSummary;

use crate::RunArgs;

pub fn run(args: RunArgs) -> i32 {
    let start = Instant::now();
    let json = args.json;
    let yes = args.yes;
    let spec =
        Env::from_process().and_then(|env| crate::spec::from_args(&args).map(|spec| (spec, env)));
    let finished = match spec {
        Ok((spec, env)) if args.detach => {
            return crate::background::launch(spec, &env, yes, json);
        }
        Ok((spec, env)) => run_spec(spec, &env, yes),
        Err(e) => Err(e.into()),
    };
    report(finished, start, json)
}

/// Prints how a run ended (the result, or the summary with `--json`) and
/// gives its exit code.
pub fn report(finished: Result<Finished, RunError>, start: Instant, json: bool) -> i32 {
    let (result, summary) = match finished {
        Ok(f) => {
            if let Some(e) = &f.record_error {
                eprintln!("wasmflow: warning: {e}");
            }
            (f.result, f.summary)
        }
        Err(e) => {
            let result = Err(e);
            let summary = RunSummary::new(
                &result,
                Default::default(),
                start.elapsed().as_millis() as u64,
            );
            (result, summary)
        }
    };
    let code = match &result {
        Ok(_) => exit::OK,
        Err(e) => e.exit_code(),
    };
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
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|_| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("wasmflow: cannot write the result to stdout: {e}");
    }
}

pub fn print_error(e: &RunError) {
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

pub fn show(notices: Vec<Notice>, quiet: bool) {
    for n in notices {
        if n.warning || !quiet {
            eprintln!("{}", n.text);
        }
    }
}

/// Runs `spec` in the foreground: its notices and progress on stderr, the
/// confirmation asked where a real run's estimate is over the thresholds
/// (unless `yes`).
pub fn run_spec(spec: RunSpec, env: &Env, yes: bool) -> Result<Finished, RunError> {
    // Before the script is even read: a managed machine refuses at once.
    wasmflow::config::refuse_if_disabled(&env.cwd, env.home.as_deref())?;
    let mut prepared = launch::prepare(spec, env)?;
    let quiet = prepared.spec.progress.quiet;
    show(prepared.notices.take(), quiet);
    // Real agents cost money: over the threshold, ask first (or, without a
    // terminal, refuse without --yes).
    if prepared.wants_confirmation() && !yes {
        let estimate = prepared.estimate()?;
        crate::plan::confirm(&estimate, &prepared.config, &prepared.script)?;
    }
    let progress = prepared.spec.progress.clone();
    let live = match progress.mode {
        _ if progress.quiet => false,
        Some(ProgressMode::Live) => true,
        Some(ProgressMode::Plain | ProgressMode::Agents) => false,
        None => {
            use std::io::IsTerminal;
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    };
    let mut events =
        EventSink::new(!progress.quiet && !live, progress.events.as_deref()).map_err(|e| {
            wasmflow::error::InputError::Output {
                what: "the events file",
                path: progress.events.clone().unwrap_or_default(),
                reason: e.to_string(),
            }
        })?;
    if progress.mode == Some(ProgressMode::Agents) {
        events = events.with_agent_lines();
    }
    // MCP servers for the HTTP backends' agents: started once, before any
    // agent, shared by all, stopped at the end.
    let servers = prepared.tool_servers()?;
    let tool_servers = if servers.is_empty() {
        None
    } else {
        let started = wasmflow_mcp::client::ToolServers::start(&servers)
            .map_err(|e| wasmflow::error::InputError::Invalid(e.to_string()))?;
        prepared.tools = Some(started.provider());
        Some(started)
    };
    // Agents on workers over NATS: the script runs here.
    let dispatch = match prepared
        .spec
        .backend
        .dispatch
        .clone()
        .or_else(|| prepared.config.dispatch.url.clone())
    {
        None => None,
        Some(url) => {
            let (url, pool) = wasmflow_nats::broker::split_pool(&url)
                .map_err(wasmflow::error::InputError::Invalid)?;
            let d = wasmflow_nats::dispatch::Dispatch::connect(
                wasmflow_nats::dispatch::DispatchOptions {
                    broker: wasmflow_nats::broker::BrokerOptions {
                        url,
                        creds: prepared.config.dispatch.creds.clone(),
                        name: "wasmflow coordinator".into(),
                    },
                    pool,
                    pools: prepared
                        .config
                        .pools()
                        .map_err(wasmflow::error::InputError::Invalid)?,
                    backend: prepared.backend_name.clone(),
                    agent_timeout: prepared.agent_timeout()?,
                },
            )
            .map_err(wasmflow::error::InputError::Invalid)?;
            prepared.backend_override = Some(d.backend());
            Some(d)
        }
    };
    let mut session = prepared.open()?;
    if let Some(d) = &dispatch {
        let bound = match session.run_dir() {
            Some(dir) => d.bind_run(&dir.id, Some(dir)),
            None => d.bind_run(&wasmflow::run::run_dir::new_run_id(), None),
        };
        bound.map_err(wasmflow::error::InputError::Invalid)?;
    }
    if let (Some(servers), Some(dir)) = (&tool_servers, session.run_dir())
        && let Err(e) = servers.keep_stderr_in(dir)
    {
        eprintln!(
            "wasmflow: warning: cannot keep the MCP servers' stderr in {}/mcp: {e}",
            dir.path.display()
        );
    }
    show(session.take_notices(), quiet);
    // After the lines above: the view redraws over what follows it.
    if live {
        let script = session.script();
        let phases: Vec<(String, Option<String>)> = script
            .meta
            .iter()
            .flat_map(|m| m.phases.iter())
            .map(|p| (p.title.clone(), p.model.clone()))
            .collect();
        let width = crate::live::terminal_width().unwrap_or(100);
        events = events.with_live(Box::new(crate::live::LiveView::new(
            &script.name(),
            &phases,
            Box::new(std::io::stderr()),
            width,
        )));
    }
    let finished = session.run(events);
    if let Some(d) = dispatch {
        let (duplicates, dropped, again) = d.counts();
        if duplicates > 0 || dropped > 0 || again > 0 {
            eprintln!(
                "wasmflow: dispatch: {duplicates} duplicate result(s) ignored, {dropped} result(s) dropped for a bad signature, {again} request(s) published again after the broker lost them"
            );
        }
        d.shutdown();
    }
    if let Some(servers) = tool_servers {
        servers.shutdown();
    }
    Ok(finished)
}
