//! From a [`RunSpec`] to a running run, in three steps every entry point
//! shares: [`prepare`] (resolve the target, load and check the script, read
//! the configuration, route models; nothing started, nothing written),
//! [`Prepared::open`] (build the backends, create or reopen the run
//! directory and store the spec in `run.json`) and [`Session::run`] (run
//! to the end, journaled, and record how it ended). [`run_spec`] does all
//! three. What the steps have to tell the user comes back as [`Notices`]
//! for the caller to show; the library prints nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use crate::error::{InputError, RunError};
use crate::run::events::EventSink;
use crate::run::journal::Replay;
use crate::run::plan::{Assumptions, Estimate};
use crate::run::run_dir::{self, RunDir, RunInfo, now_ms};
use crate::run::spec::{RunSpec, Target};
use crate::run::summary::RunSummary;
use crate::sandbox::driver::{Durability, Program, RunConfig, run_program};
use crate::sandbox::engine::WorkflowEngine;
use crate::sandbox::module::{WorkflowModule, read_wasm};
use crate::script::check::CheckOptions;
use crate::script::{Script, bundled, saved};

/// Where a run happens: the project directory, the user's home (for the
/// user config and saved workflows) and where run directories live.
#[derive(Debug, Clone)]
pub struct Env {
    /// The working (project) directory.
    pub cwd: PathBuf,
    /// `$HOME`, when set.
    pub home: Option<PathBuf>,
    /// Where run directories are created.
    pub runs_root: PathBuf,
}

impl Env {
    /// This process's working directory, home and runs root.
    pub fn from_process() -> Result<Env, InputError> {
        let cwd = std::env::current_dir()
            .map_err(|e| InputError::Invalid(format!("cannot read the working directory: {e}")))?;
        Ok(Env {
            runs_root: run_dir::runs_root(&cwd),
            home: saved::home_dir(),
            cwd,
        })
    }
}

/// One line for the user. Warnings are shown always; notes are progress,
/// which `quiet` hides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The whole line, as it is shown.
    pub text: String,
    /// A warning rather than a progress note.
    pub warning: bool,
}

/// Lines for the user, in the order they arose.
#[derive(Debug, Clone, Default)]
pub struct Notices(pub Vec<Notice>);

impl Notices {
    /// A progress note.
    pub fn note(&mut self, text: String) {
        self.0.push(Notice {
            text,
            warning: false,
        });
    }

    /// A warning.
    pub fn warning(&mut self, text: String) {
        self.0.push(Notice {
            text,
            warning: true,
        });
    }

    /// Takes the lines gathered so far.
    pub fn take(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.0)
    }
}

/// A target resolved against the saved workflows: a name becomes the file
/// that saved it, else the bundled workflow of that name.
pub fn resolve_target(target: &Target, saved: &[saved::SearchDir]) -> Result<Target, InputError> {
    match target {
        Target::Name { name } => {
            if let Some(found) = saved::find(name, saved) {
                return Ok(Target::File { path: found });
            }
            if let Some(b) = bundled::find(name) {
                return Ok(Target::Bundled {
                    name: b.name.to_string(),
                });
            }
            Err(InputError::Invalid(saved::not_found(name, saved)))
        }
        Target::Bundled { name } => match bundled::find(name) {
            Some(b) => Ok(Target::Bundled {
                name: b.name.to_string(),
            }),
            None => Err(InputError::Invalid(saved::not_found(name, saved))),
        },
        other => Ok(other.clone()),
    }
}

/// What a word on a command line names: a path to a script or component,
/// or the name of a saved or bundled workflow.
pub fn target_from_word(word: &str) -> Target {
    let path = Path::new(word);
    if path.exists()
        || word.ends_with(".js")
        || word.ends_with(".wasm")
        || word.contains(std::path::MAIN_SEPARATOR)
    {
        Target::File {
            path: path.to_path_buf(),
        }
    } else {
        Target::Name {
            name: word.to_string(),
        }
    }
}

/// The script, and the component when the target is one: a compiled
/// workflow (`wasmflow build`) runs like its script, which comes back out
/// of the module's custom section. `target` must be resolved.
pub fn load_program(
    engine: &WorkflowEngine,
    target: &Target,
    check: CheckOptions,
) -> Result<(Option<WorkflowModule>, Script), RunError> {
    Ok(match target {
        Target::Name { .. } | Target::Bundled { .. } => {
            let name = match target {
                Target::Name { name } | Target::Bundled { name } => name,
                _ => unreachable!("matched above"),
            };
            match bundled::find(name) {
                Some(b) => (None, b.script(check)?),
                None => {
                    return Err(InputError::Invalid(format!(
                        "no bundled workflow `{name}` (`wasmflow list` shows them)"
                    ))
                    .into());
                }
            }
        }
        Target::Inline {
            filename, source, ..
        } => (
            None,
            Script::from_source(
                PathBuf::from(filename),
                filename.clone(),
                source.clone(),
                check,
            )?,
        ),
        Target::File { path } => match read_wasm(path)? {
            Some(bytes) => {
                let m = WorkflowModule::load(engine, path, &bytes, check)?;
                let script = m.script.clone();
                (Some(m), script)
            }
            None => (None, Script::load(path, check)?),
        },
    })
}

/// A spec made ready: its script loaded and checked, the configuration read,
/// models routed. Nothing has started and nothing is written.
pub struct Prepared {
    /// The spec, its target resolved (a name became a file or a bundled
    /// workflow) and its args filled from the run it resumes.
    pub spec: RunSpec,
    /// Where it runs.
    pub env: Env,
    /// The engine.
    pub engine: WorkflowEngine,
    /// The component, when the target is one.
    pub module: Option<WorkflowModule>,
    /// The script (a component's, for a component).
    pub script: Script,
    /// The merged configuration.
    pub config: Config,
    /// Saved-workflow directories, for `workflow(name)`.
    pub saved: Vec<saved::SearchDir>,
    /// The backend agents run on unless routed elsewhere.
    pub backend_name: String,
    /// The default model alias.
    pub default_model: Option<String>,
    /// What the user should be told before the run starts.
    pub notices: Notices,
    /// Tools for agents on the HTTP backends (MCP servers the caller
    /// started, see [`Prepared::tool_servers`]).
    pub tools: Option<Arc<dyn crate::tools::ToolProvider>>,
    /// Where agents that use tools keep their transcripts (the run
    /// directory, once open).
    pub transcripts: crate::run::transcript::Transcripts,
    /// The backend agents go to instead of the one the spec names (the
    /// command line puts NATS dispatch here; an embedder its own).
    pub backend_override: Option<Arc<dyn crate::backend::AgentBackend>>,
    started: Instant,
}

/// Loads, checks and routes `spec` without starting anything.
pub fn prepare(spec: RunSpec, env: &Env) -> Result<Prepared, RunError> {
    let started = Instant::now();
    let engine = WorkflowEngine::new().map_err(RunError::Internal)?;
    prepare_with(spec, env, engine, started)
}

/// [`prepare`] with an engine the caller already has (a server running
/// many runs loads it once).
pub fn prepare_with(
    mut spec: RunSpec,
    env: &Env,
    engine: WorkflowEngine,
    started: Instant,
) -> Result<Prepared, RunError> {
    spec.validate()?;
    let saved = saved::search_dirs(&env.cwd, env.home.as_deref());
    spec.target = resolve_target(&spec.target, &saved)?;
    let check = CheckOptions {
        strict: spec.strict,
    };
    let mut notices = Notices::default();
    if let Some(id) = &spec.journal.resume {
        let dir = RunDir::open(&env.runs_root, id).map_err(InputError::Invalid)?;
        let info = dir.read_info().map_err(InputError::Invalid)?;
        // A resume runs with the args the run was started with, unless
        // given.
        if spec.args.is_none() {
            spec.args = match stored_spec(&dir, &info, env.home.as_deref())? {
                Some(stored) => stored.args,
                None => Some(info.args.clone()),
            };
        }
        // A moved or deleted script: the copy the run kept.
        if let Target::File { path } = &spec.target
            && !path.exists()
            && let Some(source) = dir.kept_script(&info.script_sha256)
        {
            let filename = path.file_name().map_or_else(
                || "workflow.js".into(),
                |f| f.to_string_lossy().into_owned(),
            );
            notices.warning(format!(
                "wasmflow: warning: {} is gone: running the copy run {id} kept (scripts/{}.js)",
                path.display(),
                info.script_sha256
            ));
            spec.target = Target::inline(&filename, source);
        }
    }
    let (module, script) = load_program(&engine, &spec.target, check)?;
    for w in &script.warnings {
        notices.warning(format!(
            "warning: {}:{}:{}: {}",
            script.filename, w.line, w.column, w.message
        ));
    }
    let (config, _files) = Config::load(&env.cwd, env.home.as_deref())?;
    let backend_name = spec.backend_name(&config);
    let default_model = default_model(&spec, &config, &backend_name, &mut notices);
    if let Some(max) = spec.max_cost {
        check_prices(&script, &config, default_model.as_deref(), max)?;
    }
    Ok(Prepared {
        spec,
        env: env.clone(),
        engine,
        module,
        script,
        config,
        saved,
        backend_name,
        default_model,
        notices,
        tools: None,
        transcripts: Default::default(),
        backend_override: None,
        started,
    })
}

/// The spec a run stored, checked against its seal: `None` for a run
/// written before specs were (it stored flags); an error naming the file
/// when the spec is missing its seal or does not verify.
pub fn stored_spec(
    dir: &RunDir,
    info: &RunInfo,
    home: Option<&Path>,
) -> Result<Option<RunSpec>, InputError> {
    let Some(spec) = &info.spec else {
        return Ok(None);
    };
    let refused = |why: &str| {
        InputError::Invalid(format!(
            "{}/run.json {why}: it was changed since wasmflow wrote it, so it is not run again (start the workflow anew with `wasmflow run`)",
            dir.path.display()
        ))
    };
    let mac = info
        .spec_hmac
        .as_deref()
        .ok_or_else(|| refused("has no seal on its spec"))?;
    match crate::run::seal::verify(spec, mac, home) {
        Ok(true) => Ok(Some(spec.clone())),
        Ok(false) => Err(refused("holds a spec that does not verify")),
        Err(e) => Err(InputError::Invalid(e)),
    }
}

/// The spec that continues run `id` under today's configuration: the
/// script and args the run stored (its seal checked) and its journal;
/// backend settings, caps and limits are left to the configuration, never
/// taken from `run.json`. What a dashboard or an MCP client may ask for.
pub fn continue_spec(env: &Env, id: &str) -> Result<RunSpec, InputError> {
    let dir = RunDir::open(&env.runs_root, id).map_err(InputError::Invalid)?;
    let info = dir.read_info().map_err(InputError::Invalid)?;
    let stored = stored_spec(&dir, &info, env.home.as_deref())?.ok_or_else(|| {
        InputError::Invalid(format!(
            "run {id} was started by an older wasmflow: resume it with `wasmflow resume {id}`"
        ))
    })?;
    let mut spec = RunSpec::new(stored.target);
    spec.args = stored.args;
    spec.journal.resume = Some(id.to_string());
    spec.progress.quiet = true;
    Ok(spec)
}

/// The spec's model, else the config's `default_model`; for the Claude
/// backends never silently the most expensive model: the middle one, said.
fn default_model(
    spec: &RunSpec,
    config: &Config,
    backend_name: &str,
    notices: &mut Notices,
) -> Option<String> {
    match spec.model.clone().or_else(|| config.default_model.clone()) {
        Some(m) => Some(m),
        None if backend_name == "claude" || backend_name == "anthropic" => {
            notices.note(format!(
                "wasmflow: no default model set: agents that name none use sonnet ({}); set default_model in wasmflow.toml or pass --model",
                config.model_id("sonnet")
            ));
            Some("sonnet".to_string())
        }
        None => None,
    }
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

impl Prepared {
    /// What runs.
    pub fn program(&self) -> Program<'_> {
        match &self.module {
            Some(m) => Program::Module(m),
            None => Program::Script(&self.script),
        }
    }

    /// Every backend the run's agents may go to: its own, and those the
    /// `[models]` aliases it names route to.
    pub fn backends_used(&self) -> Vec<String> {
        crate::backend::build::backend_names(
            &self.backend_name,
            &self.config,
            self.default_model.as_deref(),
            &self.script,
        )
    }

    /// The MCP servers this run's agents use: configured ones, when the
    /// run can send agents to an HTTP backend (the `claude` backend gets
    /// them from its own configuration file). Empty: start none.
    pub fn tool_servers(&self) -> Result<Vec<crate::tools::servers::ServerSpec>, InputError> {
        let http = self
            .backends_used()
            .iter()
            .any(|b| b == "anthropic" || b == "openai");
        if !http {
            return Ok(Vec::new());
        }
        crate::tools::servers::configured(
            &self.config,
            &self.env.cwd,
            self.spec.backend.mcp_config.as_deref(),
        )
    }

    /// Whether a run of this spec should be agreed to first when its
    /// estimate is over the `[plan]` thresholds: real agents cost money,
    /// and a resume was agreed to already.
    pub fn wants_confirmation(&self) -> bool {
        self.backend_name != "sim" && self.spec.journal.resume.is_none()
    }

    /// The run's settings for the driver, on `backend`.
    fn run_config(&self, backend: Arc<dyn crate::backend::AgentBackend>) -> RunConfig {
        RunConfig {
            limits: self.spec.resolved_limits(&self.config),
            args_json: self.spec.args_json(),
            backend,
            budget: self.spec.budget,
            schema_tries: self.spec.schema_tries,
            strict: self.spec.strict,
            saved: self.saved.clone(),
            config: Arc::new(self.config.clone()),
            default_model: self.default_model.clone(),
            max_cost: self.spec.max_cost,
            circuit_breaker: self.spec.circuit_breaker,
            durability: None,
            pause_on_signal: false,
            driver: self.spec.driver,
            record: self.spec.progress.record.is_some(),
            preflight_done: false,
        }
    }

    /// A dry run on simulated agents with the settings a real run would
    /// have (the sim rules of the spec, if any, answer).
    pub fn estimate(&self) -> Result<Estimate, RunError> {
        let rules = match &self.spec.backend.sim.rules {
            Some(path) => Some(crate::backend::sim::SimRules::load(path).map_err(|reason| {
                InputError::SimRules {
                    path: path.clone(),
                    reason,
                }
            })?),
            None => None,
        };
        let sim = || -> Arc<dyn crate::backend::AgentBackend> {
            Arc::new(crate::backend::sim::SimBackend::new(
                Default::default(),
                Duration::ZERO,
                None,
            ))
        };
        Ok(crate::run::plan::estimate(
            &self.engine,
            self.program(),
            || self.run_config(sim()),
            rules,
            Assumptions::from_config(&self.config),
            self.config.plan.list_items.unwrap_or(5).clamp(1, 64),
        ))
    }

    /// Wall clock per agent: the spec's, else the config's, else 30 minutes.
    pub fn agent_timeout(&self) -> Result<Duration, InputError> {
        Ok(
            match (
                self.spec.backend.agent_timeout_ms,
                &self.config.agent_timeout,
            ) {
                (Some(ms), _) => Duration::from_millis(ms),
                (None, Some(text)) => {
                    crate::limits::parse_duration(text).map_err(InputError::Invalid)?
                }
                (None, None) => Duration::from_secs(30 * 60),
            },
        )
    }

    /// Builds the backends and creates the run directory (or reopens the
    /// one the spec resumes, reading its journal back), storing the spec
    /// in `run.json`. Refused on a machine where wasmflow is disabled.
    pub fn open(mut self) -> Result<Session, RunError> {
        let backend = self.checked_backend()?;
        let mut config = self.run_config(backend);
        config.preflight_done = true;
        let record = if self.spec.journal.enabled {
            let (record, durability) = self.open_run_dir()?;
            config.pause_on_signal = true;
            config.durability = Some(durability);
            Some(record)
        } else {
            None
        };
        Ok(Session {
            prepared: self,
            config,
            record,
        })
    }

    /// For a run that goes on in another process (`--detach`): everything
    /// a run does before its first agent (the backends and their
    /// preflight), then the run directory (a new one, or the one the spec
    /// resumes) with the spec, status `starting`. The process that runs it
    /// resumes that id.
    pub fn create_detached(mut self) -> Result<(RunDir, Vec<Notice>), RunError> {
        if !self.spec.journal.enabled {
            return Err(InputError::Invalid(
                "--detach runs in the background and is followed through its run directory: it cannot go with --no-journal".into(),
            )
            .into());
        }
        self.checked_backend()?;
        let (dir, mut info) = match self.spec.journal.resume.clone() {
            None => {
                let (dir, mut info) = self.new_run_dir()?;
                info.sessions = 0;
                info.pid = 0;
                (dir, info)
            }
            Some(id) => {
                let dir = RunDir::open(&self.env.runs_root, &id).map_err(InputError::Invalid)?;
                let info = dir.read_info().map_err(InputError::Invalid)?;
                if dir.is_locked() {
                    return Err(InputError::Invalid(format!(
                        "run {id} is still running (process {}); pause it first: wasmflow stop {id}",
                        info.pid
                    ))
                    .into());
                }
                (dir, info)
            }
        };
        info.status = "starting".into();
        self.seal_and_write(&dir, &mut info)?;
        Ok((dir, self.notices.take()))
    }

    /// The backends, built and checked (keys, reachability, model names);
    /// refused on a machine where wasmflow is disabled.
    fn checked_backend(&mut self) -> Result<Arc<dyn crate::backend::AgentBackend>, RunError> {
        crate::config::refuse_if_disabled(&self.env.cwd, self.env.home.as_deref())?;
        let agent_timeout = self.agent_timeout()?;
        let toolbox = match &self.tools {
            Some(provider) => Some(Arc::new(
                crate::tools::Toolbox::new(
                    provider.clone(),
                    crate::tools::ToolSettings::from_config(&self.config.tools)?,
                )
                .map_err(InputError::Invalid)?,
            )),
            None => None,
        };
        let cx = crate::backend::build::BuildContext {
            spec: &self.spec,
            config: &self.config,
            script: &self.script,
            default_model: self.default_model.as_deref(),
            agent_timeout,
            tools: toolbox,
            transcripts: self.transcripts.clone(),
        };
        let backend = match &self.backend_override {
            Some(b) => b.clone(),
            None => crate::backend::build::build(&cx, &self.backend_name, &mut self.notices)?,
        };
        // What would fail every agent (a missing key, a dead server, a typo
        // in a model name) is found before the run directory exists:
        // nothing that did not start may look resumable.
        let routing = crate::sandbox::host::Routing::new(
            Arc::new(self.config.clone()),
            self.default_model.clone(),
            &self.script,
        );
        let planned = routing.planned(&self.script);
        let checked = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RunError::Internal(anyhow::Error::new(e).context("starting tokio")))?
            .block_on(backend.check(planned));
        checked.map_err(InputError::Invalid)?;
        Ok(backend)
    }

    fn new_run_dir(&self) -> Result<(RunDir, RunInfo), RunError> {
        let root = &self.env.runs_root;
        let id = run_dir::new_run_id();
        let dir = RunDir::create(root, &id).map_err(|e| InputError::Output {
            what: "the run directory",
            path: root.join(&id),
            reason: e.to_string(),
        })?;
        let info = RunInfo {
            id,
            created_ms: now_ms(),
            ..RunInfo::default()
        };
        Ok((dir, info))
    }

    /// Fills run.json with what this session runs (the spec sealed under
    /// the user's key, the script kept by its hash) and writes it.
    fn seal_and_write(&mut self, dir: &RunDir, info: &mut RunInfo) -> Result<(), RunError> {
        let output_error = |e: std::io::Error| InputError::Output {
            what: "the run directory",
            path: dir.path.clone(),
            reason: e.to_string(),
        };
        let script = &self.script;
        info.name = script.name();
        info.script_path = match &self.spec.target {
            // A bundled workflow is stored by name, which a resume looks
            // up again.
            Target::Bundled { name } => PathBuf::from(name),
            Target::Inline { filename, .. } => PathBuf::from(filename),
            Target::File { path } => std::path::absolute(path).unwrap_or_else(|_| path.clone()),
            Target::Name { name } => PathBuf::from(name),
        };
        if let Target::File { path } = &mut self.spec.target {
            *path = info.script_path.clone();
        }
        info.script_sha256 = crate::run::key::sha256_hex(script.source.as_bytes());
        dir.keep_script(&info.script_sha256, &script.source)
            .map_err(output_error)?;
        info.args = self.spec.args.clone().unwrap_or(Value::Null);
        // Stored with absolute paths: a resume from another directory finds
        // the same files.
        let cwd = &self.env.cwd;
        let sim = &mut self.spec.backend.sim;
        for path in [&mut sim.rules, &mut sim.trace].into_iter().flatten() {
            *path = cwd.join(&*path);
        }
        if let Some(path) = &mut self.spec.backend.mcp_config {
            *path = cwd.join(&*path);
        }
        // Where output went belongs to the session that asked.
        let mut stored = self.spec.clone();
        stored.journal.resume = None;
        info.spec_hmac = Some(
            crate::run::seal::sign(&stored, self.env.home.as_deref())
                .map_err(InputError::Invalid)?,
        );
        info.spec = Some(stored);
        info.flags = Vec::new();
        info.updated_ms = now_ms();
        info.result = None;
        dir.write_info(info).map_err(output_error)?;
        Ok(())
    }

    fn open_run_dir(&mut self) -> Result<(RunRecord, Durability), RunError> {
        let root = self.env.runs_root.clone();
        let (dir, mut info, replay, valid_len, lock) = match self.spec.journal.resume.clone() {
            Some(id) => {
                let dir = RunDir::open(&root, &id).map_err(InputError::Invalid)?;
                let info = dir.read_info().map_err(InputError::Invalid)?;
                // The lock makes a second session of a running run
                // impossible, whatever pids say.
                let lock = dir
                    .try_lock()
                    .map_err(|e| InputError::Invalid(format!("cannot lock run {id}: {e}")))?
                    .ok_or_else(|| {
                        InputError::Invalid(format!(
                            "run {id} is still running (process {}); pause it first: wasmflow stop {id}",
                            info.pid
                        ))
                    })?;
                let read = dir.read_journal().map_err(InputError::Invalid)?;
                for skipped in &read.skipped {
                    self.notices.warning(format!(
                        "wasmflow: warning: journal of run {id}: skipped {skipped}"
                    ));
                }
                let replay = Replay::from_records(&read.records);
                if info.sessions > 0 {
                    self.notices.note(format!(
                        "wasmflow: resuming run {id}: {} finished agent(s) in the journal are handed back, not run again",
                        replay.len()
                    ));
                }
                (dir, info, replay, read.valid_len, lock)
            }
            None => {
                let (dir, info) = self.new_run_dir()?;
                let lock = dir
                    .try_lock()
                    .map_err(|e| InputError::Invalid(format!("cannot lock the new run: {e}")))?
                    .ok_or_else(|| {
                        InputError::Invalid("the new run is locked by another process".into())
                    })?;
                (dir, info, Replay::default(), 0, lock)
            }
        };
        info.status = "running".into();
        info.pid = std::process::id();
        info.sessions += 1;
        self.seal_and_write(&dir, &mut info)?;
        if let Err(e) = self.transcripts.attach(&dir) {
            self.notices.warning(format!(
                "wasmflow: warning: cannot keep agent transcripts in {}/transcripts: {e}",
                dir.path.display()
            ));
        }
        self.notices.note(format!(
            "wasmflow: run {} (in {}; Ctrl-C pauses it, `wasmflow resume {}` continues it)",
            info.id,
            dir.path.display(),
            info.id
        ));
        let dir = Arc::new(dir);
        Ok((
            RunRecord {
                dir: dir.clone(),
                info,
                _lock: lock,
            },
            Durability {
                dir,
                replay,
                valid_len,
                sync: true,
                grace: Duration::from_millis(self.spec.journal.grace_ms),
            },
        ))
    }
}

/// The run directory of a journaled run, its run.json, and its lock (held
/// until the end is recorded).
struct RunRecord {
    dir: Arc<RunDir>,
    info: RunInfo,
    _lock: crate::run::run_dir::RunLock,
}

impl RunRecord {
    /// Records how the session ended in run.json.
    fn finish(mut self, summary: &RunSummary) -> Option<String> {
        if summary.status == "ok"
            && let Err(e) = self.dir.write_result(&summary.result)
        {
            return Some(format!(
                "cannot write {}/result.json: {e}",
                self.dir.path.display()
            ));
        }
        self.info.status = summary.status.to_string();
        self.info.result = (summary.status == "ok").then(|| summary.result.clone());
        self.info.summary = serde_json::to_value(summary).ok();
        self.info.updated_ms = now_ms();
        self.dir
            .write_info(&self.info)
            .err()
            .map(|e| format!("cannot write {}/run.json: {e}", self.dir.path.display()))
    }
}

/// A run ready to go: backends built, run directory open.
pub struct Session {
    prepared: Prepared,
    config: RunConfig,
    record: Option<RunRecord>,
}

/// How a run ended.
pub struct Finished {
    /// The result, or why there is none.
    pub result: Result<Value, RunError>,
    /// The `--json` summary (also stored in `run.json`).
    pub summary: RunSummary,
    /// A problem recording the end in `run.json` (the run itself is not
    /// affected).
    pub record_error: Option<String>,
}

impl Session {
    /// The spec, its target resolved.
    pub fn spec(&self) -> &RunSpec {
        &self.prepared.spec
    }

    /// The script.
    pub fn script(&self) -> &Script {
        &self.prepared.script
    }

    /// The run id and directory, when journaled.
    pub fn run_dir(&self) -> Option<&RunDir> {
        self.record.as_ref().map(|r| r.dir.as_ref())
    }

    /// What the user should be told now (taken: each line once).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.prepared.notices.take()
    }

    /// Runs to the end, reports the tally through `events`, writes the
    /// recording the spec asks for and records the end in `run.json`.
    pub fn run(self, events: EventSink) -> Finished {
        let Session {
            prepared,
            config,
            record,
        } = self;
        let recorded_args = prepared.spec.args.clone();
        let mut events = events;
        if let Some(r) = &record {
            // Every event also goes to the run directory, where any process
            // can follow the run.
            match r.dir.events_writer() {
                Ok(w) => events = events.with_run_events(w),
                Err(e) => eprintln!(
                    "wasmflow: warning: cannot open {}/events.jsonl: {e}; other processes cannot follow this run",
                    r.dir.path.display()
                ),
            }
            events.run_started(&r.dir.id, r.info.sessions);
        }
        let outcome = run_program(&prepared.engine, prepared.program(), config, events);
        let mut events = outcome.events;
        let status = match &outcome.result {
            Ok(_) => "ok",
            Err(e) => e.status(),
        };
        let s = &outcome.stats;
        events.note(&format!(
            "{status}: {} ({} done, {} failed), {} input / {} output tokens",
            plural(s.agents.spawned, "agent"),
            s.agents.done,
            s.agents.failed,
            s.tokens.input,
            s.tokens.output
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
        drop(events);
        let mut result = outcome.result;
        if let Some(path) = &prepared.spec.progress.record {
            let recording = crate::run::record::Recording {
                format: 1,
                args: recorded_args,
                budget: prepared.spec.budget,
                agents: outcome.stats.recorded.clone(),
                result: result.as_ref().cloned().unwrap_or(Value::Null),
            };
            let text = serde_json::to_string_pretty(&recording).unwrap_or_default();
            if let Err(e) = std::fs::write(path, text) {
                result = Err(InputError::Output {
                    what: "the recording",
                    path: path.clone(),
                    reason: e.to_string(),
                }
                .into());
            }
        }
        let duration_ms = prepared.started.elapsed().as_millis() as u64;
        let mut summary = RunSummary::new(&result, outcome.stats, duration_ms);
        summary.run_id = record.as_ref().map(|r| r.dir.id.clone());
        let record_error = record.and_then(|r| r.finish(&summary));
        Finished {
            result,
            summary,
            record_error,
        }
    }
}

/// `1 agent`, `2 agents`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Prepares, opens and runs `spec` with no confirmation asked: the one
/// call for an embedder. Notices go nowhere; `events` gets the progress.
pub fn run_spec(spec: RunSpec, env: &Env, events: EventSink) -> Finished {
    let started = Instant::now();
    match prepare(spec, env).and_then(Prepared::open) {
        Ok(session) => session.run(events),
        Err(e) => {
            let result = Err(e);
            let summary = RunSummary::new(
                &result,
                Default::default(),
                started.elapsed().as_millis() as u64,
            );
            Finished {
                result,
                summary,
                record_error: None,
            }
        }
    }
}
