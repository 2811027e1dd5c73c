//! The host side of `wasmflow:workflow/host`: what a script's calls do.
//!
//! Every import returns at once: spawns and timers are recorded here and
//! acted on by the driver when the guest's slice ends.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::backend::AgentRequest;
use crate::run::events::{EventSink, Level};
use crate::sandbox::bindings::wasmflow::workflow::{host, types};
use crate::sandbox::bindings::{LogLevel, SpawnError};
use crate::script::Script;
use crate::script::check::CheckOptions;
use crate::script::saved::SearchDir;
use crate::script::schema::SchemaCache;

/// Where `workflow()` looks for children, and how they are checked.
#[derive(Debug, Clone, Default)]
pub struct ChildLoader {
    /// `{scriptPath}` is relative to the parent script's directory.
    pub base_dir: PathBuf,
    /// Saved workflows, in lookup order.
    pub saved: Vec<SearchDir>,
    /// Static checks for children.
    pub check: CheckOptions,
}

impl ChildLoader {
    /// `{scriptPath}` must name a `.js` file inside the calling script's
    /// directory: a script must not be able to read other files through
    /// the loader (their parse errors would reach it).
    fn child_path(&self, p: &str) -> Result<PathBuf, String> {
        let path = self.base_dir.join(p);
        if path.extension().and_then(|e| e.to_str()) != Some("js") {
            return Err(format!("workflow(): scriptPath `{p}` must name a .js file"));
        }
        let base = std::fs::canonicalize(if self.base_dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            &self.base_dir
        })
        .map_err(|e| format!("workflow(): cannot resolve the script's directory: {e}"))?;
        let real = std::fs::canonicalize(&path)
            .map_err(|e| format!("workflow(): cannot read scriptPath `{p}`: {e}"))?;
        if !real.starts_with(&base) {
            return Err(format!(
                "workflow(): scriptPath `{p}` is outside the calling script's directory ({}); save the child there or as a named workflow",
                base.display()
            ));
        }
        Ok(real)
    }

    fn load(&self, reference_json: &str) -> Result<Script, String> {
        let reference: Value = serde_json::from_str(reference_json)
            .map_err(|e| format!("workflow(): bad reference: {e}"))?;
        let path = match &reference {
            Value::String(name) => {
                crate::script::saved::find(name, &self.saved).ok_or_else(|| {
                    format!(
                        "workflow(): {}",
                        crate::script::saved::not_found(name, &self.saved)
                    )
                })?
            }
            Value::Object(o) => match o.get("scriptPath") {
                Some(Value::String(p)) => self.child_path(p)?,
                _ => return Err(
                    "workflow(): give a saved workflow name or { scriptPath: \"path/to/flow.js\" }"
                        .into(),
                ),
            },
            _ => {
                return Err(
                    "workflow(): give a saved workflow name or { scriptPath: \"path/to/flow.js\" }"
                        .into(),
                );
            }
        };
        Script::load(&path, self.check).map_err(|e| format!("workflow(): {}: {e}", path.display()))
    }
}

/// Guest memory bound; remembers whether the script ran into it, so the
/// error that follows can say so.
pub struct MemoryLimiter {
    /// Most bytes the guest may have.
    pub max_bytes: usize,
    /// The guest asked for more.
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// A timer request from the guest's last slice.
pub enum TimerOp {
    /// `set-timer`.
    Set {
        /// The timer's id.
        id: u64,
        /// When it fires.
        delay_ms: u32,
    },
    /// `clear-timer`.
    Clear {
        /// The timer's id.
        id: u64,
    },
}

/// The store's data: one per run.
pub struct HostState {
    /// Bounds guest memory.
    pub limiter: MemoryLimiter,
    /// Progress and events.
    pub events: EventSink,
    max_agents: u64,
    /// Agents spawned so far (ids are 1..=spawned).
    pub spawned: u64,
    next_timer: u64,
    /// Spawned during the current slice, in call order.
    pub new_agents: Vec<AgentRequest>,
    /// Timers set or cleared during the current slice.
    pub timer_ops: Vec<TimerOp>,
    /// The result the script reported, as JSON text.
    pub report: Option<String>,
    /// The phase of the last `phase()` call.
    pub current_phase: Option<String>,
    /// Unknown `agent()` options are errors instead of warnings.
    pub strict: bool,
    warned_options: HashSet<String>,
    schemas: SchemaCache,
    /// Resolves `workflow()`.
    pub children: ChildLoader,
    /// Model routing.
    pub routing: Routing,
    /// `--max-cost`, USD: no new agents once `spent_usd` reaches it.
    pub max_cost: Option<f64>,
    /// USD of every priced agent that has ended (kept by the driver).
    pub spent_usd: f64,
    /// Size bounds of what crosses the boundary.
    pub sizes: crate::limits::Sizes,
    /// Set when the reported result was over `sizes.result`.
    pub oversized_report: Option<usize>,
    log_window: std::time::Instant,
    logs_in_window: u32,
    logs_dropped: u64,
    /// The run, while the blocking driver's `runner.run` is in the guest
    /// (driver::add_wait_to_linker).
    pub(crate) parked: Option<Box<dyn std::any::Any + Send>>,
}

/// How an agent's model is chosen.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// Aliases and prices.
    pub config: std::sync::Arc<crate::config::Config>,
    /// The default model alias (`--model`, else `default_model`).
    pub default_model: Option<String>,
    /// `meta.phases[].model` by phase title.
    pub phase_models: std::collections::HashMap<String, String>,
}

impl Routing {
    /// Routing for `script`: its phases' models, then the default.
    pub fn new(
        config: std::sync::Arc<crate::config::Config>,
        default_model: Option<String>,
        script: &Script,
    ) -> Routing {
        Routing {
            config,
            default_model,
            phase_models: script
                .meta
                .iter()
                .flat_map(|m| m.phases.iter())
                .filter_map(|p| Some((p.title.clone(), p.model.clone()?)))
                .collect(),
        }
    }

    /// `opts.model`, else the phase's model, else the default; resolved.
    pub fn model_for(
        &self,
        options: &Map<String, Value>,
        phase: Option<&str>,
    ) -> Option<crate::config::ModelRoute> {
        let alias = options
            .get("model")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| phase.and_then(|p| self.phase_models.get(p).cloned()))
            .or_else(|| self.default_model.clone())?;
        Some(self.config.route(&alias))
    }

    /// Every model the run can be seen to use before it starts: the
    /// default, the phases' models, and `opts.model` literals.
    pub fn planned(&self, script: &Script) -> Vec<crate::backend::PlannedModel> {
        let mut planned = Vec::new();
        let mut add = |alias: &str, origin: String| {
            if planned
                .iter()
                .any(|p: &crate::backend::PlannedModel| p.alias == alias)
            {
                return;
            }
            let route = self.config.route(alias);
            planned.push(crate::backend::PlannedModel {
                alias: alias.to_string(),
                id: route.id,
                backend: route.backend,
                origin,
            });
        };
        if let Some(d) = &self.default_model {
            add(d, "the default model".into());
        }
        for (i, p) in script.meta.iter().flat_map(|m| m.phases.iter()).enumerate() {
            if let Some(m) = &p.model {
                add(m, format!("meta.phases[{i}].model"));
            }
        }
        for m in &script.literal_models {
            let origin = match script.line_of_literal(m) {
                Some(line) => format!("opts.model, {}:{line}", script.filename),
                None => format!("opts.model in {}", script.filename),
            };
            add(m, origin);
        }
        planned
    }
}

impl HostState {
    /// Host state for one run.
    pub fn new(events: EventSink, max_agents: u64, memory_bytes: usize) -> HostState {
        HostState {
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                hit: false,
            },
            events,
            max_agents,
            spawned: 0,
            next_timer: 0,
            new_agents: Vec::new(),
            timer_ops: Vec::new(),
            report: None,
            current_phase: None,
            strict: false,
            warned_options: HashSet::new(),
            schemas: SchemaCache::default(),
            children: ChildLoader::default(),
            routing: Routing::default(),
            max_cost: None,
            spent_usd: 0.0,
            sizes: Default::default(),
            oversized_report: None,
            log_window: std::time::Instant::now(),
            logs_in_window: 0,
            logs_dropped: 0,
            parked: None,
        }
    }

    /// Says how many log lines the rate limit dropped since it last said.
    pub fn flush_log_drops(&mut self) {
        if self.logs_dropped > 0 {
            let dropped = std::mem::take(&mut self.logs_dropped);
            self.events.log(
                Level::Warn,
                &format!(
                    "wasmflow: {dropped} log line(s) dropped: over {} per second (raise it with --log-rate)",
                    self.sizes.log_lines_per_sec
                ),
            );
        }
    }

    /// Checks a spawn's options; warns once per unknown option name.
    fn check_options(&mut self, options: &Map<String, Value>) -> Result<(), SpawnError> {
        let unknown = crate::script::options::check(options).map_err(SpawnError::Invalid)?;
        for key in unknown {
            if self.strict {
                return Err(SpawnError::Invalid(format!(
                    "agent(): unknown option `{key}` (--strict makes unknown options errors)"
                )));
            }
            if self.warned_options.insert(key.clone()) {
                self.events.log(
                    Level::Warn,
                    &format!("agent(): unknown option `{key}` is passed on but has no effect here (--strict makes this an error)"),
                );
            }
        }
        Ok(())
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn spawn(&mut self, request: types::AgentRequest) -> Result<u64, SpawnError> {
        if self.spawned >= self.max_agents {
            return Err(SpawnError::CapReached(format!(
                "agent cap reached: this run may spawn at most {} agents (raise it with --max-agents)",
                self.max_agents
            )));
        }
        let sizes = self.sizes;
        if request.prompt.len() > sizes.prompt {
            return Err(SpawnError::Invalid(format!(
                "agent(): the prompt is {} bytes, over the limit of {} (raise it with --max-prompt)",
                request.prompt.len(),
                sizes.prompt
            )));
        }
        if request.options_json.len() > sizes.options {
            return Err(SpawnError::Invalid(format!(
                "agent(): opts are {} bytes of JSON, over the limit of {} (raise it with --max-options)",
                request.options_json.len(),
                sizes.options
            )));
        }
        let options: Map<String, Value> = match serde_json::from_str(&request.options_json) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(SpawnError::Invalid(
                    "agent(): opts must be an object".into(),
                ));
            }
            Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
                return Err(SpawnError::Invalid(
                    "agent(): opts nest arrays and objects more than 128 levels deep, deeper than wasmflow reads: pass a flatter value".into(),
                ));
            }
            Err(e) => {
                return Err(SpawnError::Invalid(format!(
                    "agent(): opts are not valid JSON: {e}"
                )));
            }
        };
        self.check_options(&options)?;
        if let Some(max) = self.max_cost
            && self.spent_usd >= max
        {
            return Err(SpawnError::BudgetExceeded(format!(
                "the cost cap of ${max:.2} is reached (${:.4} spent): no new agents; agents already running keep their results (raise it with --max-cost)",
                self.spent_usd
            )));
        }
        let route = self.routing.model_for(&options, request.phase.as_deref());
        let label = options
            .get("label")
            .and_then(Value::as_str)
            .map(String::from);
        let schema = match options.get("schema") {
            None | Some(Value::Null) => None,
            Some(s) if s.to_string().len() > sizes.schema => {
                return Err(SpawnError::Invalid(format!(
                    "agent(): opts.schema is {} bytes of JSON, over the limit of {} (raise it with --max-schema)",
                    s.to_string().len(),
                    sizes.schema
                )));
            }
            Some(s) => {
                let compiled = self
                    .schemas
                    .get(s)
                    .map_err(|e| SpawnError::Invalid(format!("agent(): {e}")))?;
                // Refused before anything is paid (as Claude Code does): a
                // schema that is not an object, or that no value satisfies.
                if let Some(why) = crate::script::contradiction::not_an_object(s) {
                    return Err(SpawnError::Invalid(format!("agent(): {why}")));
                }
                if let Some(why) = crate::script::contradiction::contradiction(s) {
                    return Err(SpawnError::Invalid(format!(
                        "agent(): opts.schema can never be satisfied: {why}; no agent was started"
                    )));
                }
                Some(compiled)
            }
        };
        self.spawned += 1;
        let id = self.spawned;
        self.new_agents.push(AgentRequest {
            id,
            prompt: request.prompt,
            options,
            label,
            phase: request.phase,
            attempt: 1,
            priority: request.priority,
            model: route.as_ref().map(|r| r.id.clone()),
            backend: route.and_then(|r| r.backend),
            schema,
            feedback: Vec::new(),
        });
        Ok(id)
    }

    fn report(&mut self, result_json: String) {
        // The guest reports once; keep the first if a broken module repeats.
        if self.report.is_none() && self.oversized_report.is_none() {
            if result_json.len() > self.sizes.result {
                self.oversized_report = Some(result_json.len());
            } else {
                self.report = Some(result_json);
            }
        }
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        let now = std::time::Instant::now();
        if now.duration_since(self.log_window) >= std::time::Duration::from_secs(1) {
            self.flush_log_drops();
            self.log_window = now;
            self.logs_in_window = 0;
        }
        if self.logs_in_window >= self.sizes.log_lines_per_sec {
            self.logs_dropped += 1;
            return;
        }
        self.logs_in_window += 1;
        let max = self.sizes.log_line;
        if message.len() > max {
            let cut = (0..=max)
                .rev()
                .find(|i| message.is_char_boundary(*i))
                .unwrap_or(0);
            let line = format!(
                "{}… (cut: the line is {} bytes, over {}; --max-log-line)",
                &message[..cut],
                message.len(),
                max
            );
            self.events.log(level, &line);
            return;
        }
        self.events.log(level, &message);
    }

    fn phase(&mut self, title: String) {
        self.events.phase(&title);
        self.current_phase = Some(title);
    }

    fn set_timer(&mut self, delay_ms: u32) -> u64 {
        self.next_timer += 1;
        let id = self.next_timer;
        self.timer_ops.push(TimerOp::Set { id, delay_ms });
        id
    }

    fn clear_timer(&mut self, id: u64) {
        self.timer_ops.push(TimerOp::Clear { id });
    }

    fn load_workflow(&mut self, reference_json: String) -> Result<types::ChildScript, String> {
        let script = self.children.load(&reference_json)?;
        for w in &script.warnings {
            self.events.log(
                Level::Warn,
                &format!("{}:{}:{}: {}", script.filename, w.line, w.column, w.message),
            );
        }
        Ok(types::ChildScript {
            source: script.child_source(),
            filename: script.filename,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_paths_stay_inside_the_script_directory() {
        let base = std::env::temp_dir().join(format!("wf-child-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("inner/lib")).unwrap();
        std::fs::write(base.join("outside.js"), "return 1\n").unwrap();
        std::fs::write(base.join("inner/lib/ok.js"), "return 1\n").unwrap();
        let loader = ChildLoader {
            base_dir: base.join("inner"),
            ..ChildLoader::default()
        };
        assert!(loader.child_path("lib/ok.js").is_ok());
        let e = loader.child_path("../outside.js").unwrap_err();
        assert!(e.contains("outside the calling script's directory"), "{e}");
        let e = loader.child_path("/etc/passwd").unwrap_err();
        assert!(e.contains("must name a .js file"), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
