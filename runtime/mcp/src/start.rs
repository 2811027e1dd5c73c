//! `workflow_run` and `workflow_plan`: from tool input to a checked,
//! estimated run within the policy, and from there to a detached run.
//! Nothing here builds a command line from input: the detached process is
//! handed the spec sealed into its run directory.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};
use wasmflow::run::launch::{self, Prepared};
use wasmflow::run::plan::Estimate;
use wasmflow::run::run_dir::{self, RunDir};
use wasmflow::run::spec::{RunSpec, SimSpec, Target};
use wasmflow::sandbox::engine::WorkflowEngine;

use crate::policy::Policy;
use crate::project::{Project, check_name};
use crate::tools::{PlanInput, RunInput};

/// What a call asks to run, before anything is loaded.
pub struct Ask {
    pub script: Option<String>,
    pub name: Option<String>,
    pub script_path: Option<String>,
    pub args: Option<Value>,
    pub resume: Option<String>,
    pub backend: Option<String>,
}

impl From<RunInput> for Ask {
    fn from(i: RunInput) -> Ask {
        Ask {
            script: i.script,
            name: i.name,
            script_path: i.script_path,
            args: i.args,
            resume: i.resume_from_run_id,
            backend: i.backend,
        }
    }
}

impl From<PlanInput> for Ask {
    fn from(i: PlanInput) -> Ask {
        Ask {
            script: i.script,
            name: i.name,
            script_path: i.script_path,
            args: i.args,
            resume: None,
            backend: i.backend,
        }
    }
}

/// A run checked and estimated, not started.
pub struct Ready {
    pub prepared: Prepared,
    pub estimate: Estimate,
    /// The script file the model can edit (an inline script's copy).
    pub script_path: Option<PathBuf>,
    /// Set when the estimate is over `[plan]`'s thresholds: a person must
    /// agree first.
    pub needs_consent: Option<String>,
}

/// `args` as given; a string that starts like JSON must be JSON.
fn read_args(args: Option<Value>) -> Result<Option<Value>, String> {
    match args {
        Some(Value::String(s)) if s.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str(&s).map(Some).map_err(|e| {
                format!("args is a string that starts like JSON but is not JSON ({e}); pass the value itself, or text that does not start with {{ or [")
            })
        }
        other => Ok(other),
    }
}

/// The target a call names, within the project; `None` when it names
/// none (a resume runs its run's own).
fn target(project: &Project, ask: &Ask) -> Result<(Option<Target>, Option<PathBuf>), String> {
    let given = [
        ask.script.is_some(),
        ask.name.is_some(),
        ask.script_path.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err("give one of script, name and scriptPath".into());
    }
    if let Some(source) = &ask.script {
        let path = project.keep_inline(source)?;
        return Ok((Some(Target::File { path: path.clone() }), Some(path)));
    }
    if let Some(name) = &ask.name {
        check_name(name)?;
        return Ok((Some(Target::Name { name: name.clone() }), None));
    }
    if let Some(p) = &ask.script_path {
        let path = project.script_path(p)?;
        return Ok((Some(Target::File { path: path.clone() }), Some(path)));
    }
    if ask.resume.is_none() {
        return Err("give the workflow to run: script (its text), name (a saved or bundled workflow) or scriptPath (a file in the project)".into());
    }
    Ok((None, None))
}

/// The run a resume continues, and its target as it was stored (checked
/// to be inside the project when it is a file).
fn resumed_target(project: &Project, id: &str) -> Result<(Target, Option<PathBuf>), String> {
    run_dir::check_id(id)?;
    let dir =
        RunDir::open(&project.env.runs_root, id).map_err(|e| format!("resumeFromRunId: {e}"))?;
    let info = dir.read_info()?;
    let stored = launch::stored_spec(&dir, &info, project.env.home.as_deref())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "run {id} was started by an older wasmflow: resume it with `wasmflow resume {id}`"
            )
        })?;
    match stored.target {
        Target::File { path } => {
            let real = path
                .canonicalize()
                .map_err(|e| format!("run {id}'s script {}: {e}", path.display()))?;
            project.inside(&real, &path.display().to_string())?;
            Ok((Target::File { path: real.clone() }, Some(real)))
        }
        other => Ok((other, None)),
    }
}

/// Loads, checks, routes and estimates what `ask` names, within `policy`.
pub fn prepare(
    project: &Project,
    policy: &Policy,
    engine: &WorkflowEngine,
    sim: &SimSpec,
    ask: Ask,
) -> Result<Ready, String> {
    let args = read_args(ask.args.clone())?;
    let backend = policy.backend(ask.backend.as_deref())?;
    let (mut target, mut script_path) = target(project, &ask)?;
    if let Some(id) = &ask.resume
        && target.is_none()
    {
        let (t, p) = resumed_target(project, id)?;
        target = Some(t);
        script_path = p;
    }
    let target = target.ok_or("nothing to run")?;
    let mut spec = RunSpec::new(target);
    spec.args = args;
    spec.backend.name = Some(backend.clone());
    if backend == "sim" {
        spec.backend.sim = sim.clone();
    }
    spec.journal.resume = ask.resume.clone();
    spec.progress.quiet = true;
    let load = |spec: RunSpec| {
        launch::prepare_with(spec, &project.env, engine.clone(), Instant::now())
            .map_err(|e| e.to_string())
    };
    let kept = match (&ask.script, &script_path) {
        (Some(_), Some(p)) => format!(
            " (the script is saved as {}: edit it there and pass scriptPath)",
            p.display()
        ),
        _ => String::new(),
    };
    let mut prepared = load(spec.clone()).map_err(|e| format!("{e}{kept}"))?;
    let used = prepared.backends_used();
    policy.check_backends(&used)?;
    let costs_money = used.iter().any(|b| b != "sim");
    if costs_money && !policy.allow_unpriced {
        // Every model the run may use needs a price, and the run stops
        // spawning at the cap.
        spec.max_cost = Some(policy.max_cost_usd);
        prepared = load(spec).map_err(|e| {
            format!("{e} (runs started through MCP need a price for every model unless the user sets [mcp] allow_unpriced = true)")
        })?;
    }
    // Estimated under the configured caps only: under the policy's, a
    // dry run would stop at it and always look within it.
    let estimate = prepared.estimate().map_err(|e| e.to_string())?;
    let cap = prepared
        .config
        .max_agents
        .unwrap_or(u64::MAX)
        .min(policy.max_agents);
    prepared.spec.limits.max_agents = Some(cap);
    let typical = &estimate.typical;
    let name = prepared.script.name();
    if typical.agents > policy.max_agents {
        return Err(format!(
            "{name} would start about {} agents, over the limit of {} for runs started through MCP; nothing started. Make the script start fewer, or the user can raise [mcp] max_agents in ~/.config/wasmflow/config.toml",
            typical.agents, policy.max_agents
        ));
    }
    if costs_money {
        match typical.usd {
            Some(usd) if usd > policy.max_cost_usd => {
                return Err(format!(
                    "{name} would cost about ${usd:.2}, over the limit of ${:.2} for runs started through MCP; nothing started. The user can raise [mcp] max_cost_usd in ~/.config/wasmflow/config.toml",
                    policy.max_cost_usd
                ));
            }
            None if !policy.allow_unpriced => {
                return Err(format!(
                    "{name} uses models without a price ({} agents), so its cost cannot be capped; nothing started. Add [prices] to the config, or the user can set [mcp] allow_unpriced = true",
                    typical.unpriced_agents
                ));
            }
            _ => {}
        }
    }
    let needs_consent = if prepared.wants_confirmation() {
        estimate.over_thresholds(&prepared.config.plan, &name)
    } else {
        None
    };
    Ok(Ready {
        prepared,
        estimate,
        script_path,
        needs_consent,
    })
}

/// The estimate as a tool shows it.
pub fn estimate_json(e: &Estimate) -> Value {
    json!({
        "agents": {"low": e.agents.min, "typical": e.agents.typical},
        "usd": e.typical.usd,
        "input_tokens": e.typical.input_tokens,
        "output_tokens": e.typical.output_tokens,
        "unpriced_agents": e.typical.unpriced_agents,
        "by_model": e.typical.by_model,
        "dry_run_ended": e.ended,
    })
}

/// The phases with the agents each is estimated to start.
pub fn phases_json(ready: &Ready) -> Value {
    let by_phase = &ready.estimate.typical.by_phase;
    let phases: Vec<Value> = match &ready.prepared.script.meta {
        Some(meta) => meta
            .phases
            .iter()
            .map(|p| json!({"title": p.title, "agents": by_phase.get(&p.title).map_or(0, |c| c.agents)}))
            .collect(),
        None => by_phase
            .iter()
            .map(|(title, c)| json!({"title": title, "agents": c.agents}))
            .collect(),
    };
    Value::Array(phases)
}

/// Runs going now in the project (`starting` or holding their lock).
pub fn running_runs(project: &Project) -> u64 {
    run_dir::list(&project.env.runs_root)
        .iter()
        .filter(|info| match info.status.as_str() {
            // A launch whose process never took the run up is not going.
            "starting" => {
                run_dir::now_ms().saturating_sub(info.updated_ms.max(info.created_ms)) < 60_000
            }
            "running" => RunDir::open(&project.env.runs_root, &info.id)
                .map(|d| d.is_locked())
                .unwrap_or(false),
            _ => false,
        })
        .count() as u64
}

/// The run directory, sealed with the spec, status `starting`; the caller
/// starts its process.
pub fn create(ready: Ready) -> Result<RunDir, String> {
    let (dir, _notices) = ready
        .prepared
        .create_detached()
        .map_err(|e| e.to_string())?;
    Ok(dir)
}
