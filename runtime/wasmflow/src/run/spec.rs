//! [`RunSpec`]: the one description of a run.
//!
//! Every entry point (the command line, `resume`, and later detached runs,
//! the MCP server, the dashboard and remote workers) builds a `RunSpec`;
//! [`crate::run::launch`] turns it into a running run, and `run.json`
//! stores it so a resume runs the same thing. What a spec asks for is
//! what the user asked for: fields left `None` take the configuration's
//! value (then the built-in default) when the run starts, so a resume
//! sees today's `wasmflow.toml`, as it always has.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::backend::router::BACKENDS;
use crate::error::InputError;
use crate::limits::{Limits, Sizes};
use crate::sandbox::driver::DriverKind;

/// The format of a serialised spec; a newer one is refused by name.
pub const SPEC_FORMAT: u32 = 1;

/// Everything that defines a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// [`SPEC_FORMAT`] when written.
    #[serde(default = "format_one")]
    pub format: u32,
    /// What runs.
    pub target: Target,
    /// The value the script sees as `args`; `None` when none was given
    /// (which is not the same as an explicit `null`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub args: Option<Value>,
    /// Which backend runs the agents, and its settings.
    #[serde(default)]
    pub backend: BackendSpec,
    /// Default model alias for agents that name none (else the config's
    /// `default_model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Caps and bounds.
    #[serde(default)]
    pub limits: LimitSpec,
    /// Output-token budget (`budget.total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// Stop spawning agents once they have cost this many USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
    /// Tries for an agent whose reply must match its schema.
    #[serde(default = "default_schema_tries")]
    pub schema_tries: u32,
    /// End the run after this many consecutive quota or auth failures
    /// (0: never).
    #[serde(default = "default_circuit_breaker")]
    pub circuit_breaker: u32,
    /// Unknown `agent()` options and `meta` keys are errors.
    #[serde(default)]
    pub strict: bool,
    /// Journaling and resume.
    #[serde(default)]
    pub journal: JournalSpec,
    /// How the guest is driven.
    #[serde(default)]
    pub driver: DriverKind,
    /// Where progress goes.
    #[serde(default)]
    pub progress: ProgressSpec,
}

fn format_one() -> u32 {
    SPEC_FORMAT
}
fn default_schema_tries() -> u32 {
    5
}
fn default_circuit_breaker() -> u32 {
    3
}

/// A field that is present is `Some`, even when it holds `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What a run executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A script file, or a compiled workflow (`.wasm`, told apart by its
    /// first bytes).
    File {
        /// The file.
        path: PathBuf,
    },
    /// The name of a saved workflow, else a bundled one; resolved when the
    /// run is prepared (into [`Target::File`] or [`Target::Bundled`]).
    Name {
        /// As typed.
        name: String,
    },
    /// A workflow inside the binary.
    Bundled {
        /// Its name.
        name: String,
    },
    /// A script given as text (by a tool call, say).
    Inline {
        /// The name used in stack traces and as the script's path.
        filename: String,
        /// The script.
        source: String,
        /// SHA-256 of `source`, hex; checked.
        sha256: String,
    },
}

impl Target {
    /// An inline script with its hash.
    pub fn inline(filename: &str, source: String) -> Target {
        Target::Inline {
            filename: filename.to_string(),
            sha256: crate::run::key::sha256_hex(source.as_bytes()),
            source,
        }
    }

    /// How the target reads in messages.
    pub fn describe(&self) -> String {
        match self {
            Target::File { path } => path.display().to_string(),
            Target::Name { name } | Target::Bundled { name } => name.clone(),
            Target::Inline { filename, .. } => filename.clone(),
        }
    }
}

/// The backend and its settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSpec {
    /// `sim`, `claude`, `anthropic`, `openai` or `exec`; `None`: the
    /// config's, else `exec` when [`Self::exec`] is set, else `sim`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The exec backend's command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    /// Wall clock for one agent, retries included, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_timeout_ms: Option<u64>,
    /// An agent that shows no progress this long fails, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_timeout_ms: Option<u64>,
    /// HTTP backends: retries after 429, 5xx and network errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// `nats://HOST:PORT[/POOL]`: the agents run on workers there
    /// (`--dispatch`; the embedder supplies the backend, see
    /// `Prepared::backend_override`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<String>,
    /// A Claude Code `.mcp.json`-format file of MCP servers for the
    /// agents (`--mcp-config`), besides `[mcp_servers]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_config: Option<PathBuf>,
    /// The simulated backend.
    pub sim: SimSpec,
}

/// The simulated backend's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSpec {
    /// Latency of agents no rule gives one.
    pub latency_ms: u64,
    /// A rules file scripting replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// Append one JSON line per live execution here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<PathBuf>,
}

/// Caps and bounds; `None` caps take the config's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSpec {
    /// Agents at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Agents over the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_agents: Option<u64>,
    /// Wasm fuel between two waits.
    pub cpu_fuel: u64,
    /// Guest memory, bytes.
    pub memory_bytes: usize,
    /// Wall clock of the whole run, milliseconds.
    pub timeout_ms: u64,
    /// Largest prompt, options, schema, result, log line and agent output.
    pub sizes: Sizes,
}

impl Default for LimitSpec {
    fn default() -> LimitSpec {
        LimitSpec {
            concurrency: None,
            max_agents: None,
            cpu_fuel: Limits::DEFAULT_FUEL_PER_SLICE,
            memory_bytes: Limits::DEFAULT_MEMORY_BYTES,
            timeout_ms: Limits::DEFAULT_WALL_CLOCK.as_millis() as u64,
            sizes: Sizes::default(),
        }
    }
}

/// Journaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSpec {
    /// Journal the run in a run directory (it can then be resumed).
    pub enabled: bool,
    /// Continue this run: its finished agents are handed back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// After a pause request: how long running agents may finish, ms.
    pub grace_ms: u64,
}

impl Default for JournalSpec {
    fn default() -> JournalSpec {
        JournalSpec {
            enabled: true,
            resume: None,
            grace_ms: 30_000,
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressMode {
    /// A live tree on a terminal.
    Live,
    /// Phases, failures, log lines and a tally every few seconds.
    Plain,
    /// One line per ended agent.
    Agents,
}

/// Progress wishes. Where output goes belongs to the session that runs:
/// a resume starts from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProgressSpec {
    /// No progress on stderr.
    pub quiet: bool,
    /// `None`: live on a terminal, plain elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProgressMode>,
    /// One JSON line per event here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<PathBuf>,
    /// Every agent result the script got, here (`--record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<PathBuf>,
}

impl RunSpec {
    /// A spec for `target` with every default.
    pub fn new(target: Target) -> RunSpec {
        RunSpec {
            format: SPEC_FORMAT,
            target,
            args: None,
            backend: BackendSpec::default(),
            model: None,
            limits: LimitSpec::default(),
            budget: None,
            max_cost: None,
            schema_tries: default_schema_tries(),
            circuit_breaker: default_circuit_breaker(),
            strict: false,
            journal: JournalSpec::default(),
            driver: DriverKind::Poll,
            progress: ProgressSpec::default(),
        }
    }

    /// Reads a spec from JSON, validated.
    pub fn from_json(text: &str) -> Result<RunSpec, InputError> {
        let spec: RunSpec = serde_json::from_str(text)
            .map_err(|e| InputError::Invalid(format!("the run spec is not valid: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every field against what a run accepts; the one place that
    /// does, whichever entry point built the spec.
    pub fn validate(&self) -> Result<(), InputError> {
        let bad = |what: String| Err(InputError::Invalid(what));
        if self.format != SPEC_FORMAT {
            return bad(format!(
                "run spec format {} is not one this wasmflow reads ({SPEC_FORMAT}); run it with the wasmflow that wrote it, or start it again",
                self.format
            ));
        }
        match &self.target {
            Target::Inline {
                source,
                sha256,
                filename,
            } => {
                if crate::run::key::sha256_hex(source.as_bytes()) != *sha256 {
                    return bad(format!(
                        "the inline script {filename} does not match its sha256"
                    ));
                }
                if filename.is_empty() || filename.contains('/') {
                    return bad(format!(
                        "`{filename}` is not a file name for an inline script"
                    ));
                }
            }
            Target::Name { name } | Target::Bundled { name } if name.is_empty() => {
                return bad("the workflow name is empty".into());
            }
            _ => {}
        }
        if let Some(name) = &self.backend.name
            && !BACKENDS.contains(&name.as_str())
        {
            return bad(format!(
                "unknown backend `{name}`; available: {}",
                BACKENDS.join(", ")
            ));
        }
        if self.backend.exec.is_some()
            && let Some(name) = self.backend.name.as_deref().filter(|n| *n != "exec")
        {
            return bad(format!(
                "--exec goes with --backend exec, not with --backend {name}"
            ));
        }
        if self.backend.retries.is_some_and(|r| r > 20) {
            return bad("retries: at most 20".into());
        }
        let l = &self.limits;
        if l.concurrency.is_some_and(|c| !(1..=4096).contains(&c)) {
            return bad("concurrency: from 1 to 4096".into());
        }
        if l.max_agents.is_some_and(|m| !(1..=10_000_000).contains(&m)) {
            return bad("max agents: from 1 to 10,000,000".into());
        }
        if l.cpu_fuel < 1_000_000 {
            return bad("cpu limit: at least 1,000,000 fuel".into());
        }
        if l.sizes.log_lines_per_sec == 0 {
            return bad("log rate: at least 1 line per second".into());
        }
        if !(1..=20).contains(&self.schema_tries) {
            return bad("schema tries: from 1 to 20".into());
        }
        if let Some(c) = self.max_cost
            && !(c.is_finite() && c > 0.0)
        {
            return bad(format!("max cost `{c}` must be a positive amount"));
        }
        if !self.journal.enabled && self.journal.resume.is_some() {
            return bad(
                "--resume reads the journal that --no-journal turns off: give one or the other"
                    .into(),
            );
        }
        if let Some(id) = &self.journal.resume {
            crate::run::run_dir::check_id(id).map_err(InputError::Invalid)?;
        }
        Ok(())
    }

    /// The run's caps and bounds, with the config filling what the spec
    /// leaves open.
    pub fn resolved_limits(&self, config: &crate::config::Config) -> Limits {
        let l = &self.limits;
        Limits {
            concurrency: l
                .concurrency
                .or(config.concurrency)
                .unwrap_or(Limits::DEFAULT_CONCURRENCY),
            max_agents: l
                .max_agents
                .or(config.max_agents)
                .unwrap_or(Limits::DEFAULT_MAX_AGENTS),
            fuel_per_slice: l.cpu_fuel,
            memory_bytes: l.memory_bytes,
            wall_clock: Duration::from_millis(l.timeout_ms),
            sizes: l.sizes,
        }
    }

    /// The backend's name: the spec's, else `exec` when it names a
    /// command, else the config's, else `sim`.
    pub fn backend_name(&self, config: &crate::config::Config) -> String {
        self.backend
            .name
            .clone()
            .or_else(|| self.backend.exec.as_ref().map(|_| "exec".to_string()))
            .or_else(|| config.backend.clone())
            .unwrap_or_else(|| "sim".into())
    }

    /// The args as the JSON text the guest parses: empty when none were
    /// given (the script sees `undefined`).
    pub fn args_json(&self) -> String {
        self.args
            .as_ref()
            .map_or_else(String::new, Value::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_round_trips_and_keeps_null_apart_from_none() {
        let mut spec = RunSpec::new(Target::File {
            path: "/p/flow.js".into(),
        });
        assert_eq!(spec.args_json(), "");
        let text = serde_json::to_string(&spec).unwrap();
        assert!(!text.contains("\"args\""), "{text}");
        assert_eq!(RunSpec::from_json(&text).unwrap(), spec);
        spec.args = Some(Value::Null);
        spec.limits.concurrency = Some(3);
        spec.backend.sim.latency_ms = 20;
        spec.driver = DriverKind::Blocking;
        let text = serde_json::to_string(&spec).unwrap();
        let back = RunSpec::from_json(&text).unwrap();
        assert_eq!(back.args, Some(Value::Null));
        assert_eq!(back, spec);
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let mut spec = RunSpec::new(Target::inline("x.js", "return 1".into()));
        assert!(spec.validate().is_ok());
        spec.target = Target::Inline {
            filename: "x.js".into(),
            source: "return 2".into(),
            sha256: "00".into(),
        };
        assert!(spec.validate().unwrap_err().to_string().contains("sha256"));
        let mut spec = RunSpec::new(Target::Name { name: "x".into() });
        spec.backend.name = Some("nope".into());
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("unknown backend")
        );
        spec.backend.name = None;
        spec.limits.concurrency = Some(0);
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("concurrency")
        );
        spec.limits.concurrency = None;
        spec.journal.enabled = false;
        spec.journal.resume = Some("r".into());
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("--no-journal")
        );
        let text = r#"{"target": {"kind": "name", "name": "x"}, "bogus": 1}"#;
        assert!(
            RunSpec::from_json(text)
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
    }
}
