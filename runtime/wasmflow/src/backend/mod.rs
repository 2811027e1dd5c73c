//! Agent backends: what actually answers an `agent()` call.
//!
//! A backend gets one [`AgentRequest`] per live execution and returns the
//! agent's final output or a terminal failure. The runtime owns concurrency,
//! caps, accounting and progress; a backend only talks to its agent.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::{Map, Value};

pub mod anthropic;
pub mod build;
pub mod claude;
pub mod cli_agent;
pub mod codex;
pub mod exec;
pub mod gemini;
pub mod http;
pub mod openai;
pub mod opencode;
pub mod qwen;
pub mod retry;
pub mod router;
pub mod sim;
mod sse;

/// The last `max` characters of a process's stderr, trimmed, for a
/// failure message.
pub(crate) fn stderr_tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(max)
        .map(|(i, _)| i)
        .unwrap_or(0);
    text[start..].to_string()
}

/// The failure of an agent that routing gave no model (HTTP backends need
/// one).
pub(crate) fn no_model() -> AgentFailure {
    AgentFailure {
        reason: "no model for this agent: set default_model in wasmflow.toml, pass --model, or give opts.model".into(),
        usage: Usage::default(),
        kind: FailureKind::Other,
    }
}

/// A boxed, sendable future, so backends stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One live execution of an agent.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The run-wide agent id (spawn order, from 1).
    pub id: u64,
    /// The prompt, as the script passed it (plus schema instructions when a schema is set).
    pub prompt: String,
    /// Every option the script passed to `agent()`.
    pub options: Map<String, Value>,
    /// `opts.label`, when set.
    pub label: Option<String>,
    /// The progress group (`opts.phase`, else the current `phase()`).
    pub phase: Option<String>,
    /// 1 for the first try.
    pub attempt: u32,
    /// Queue priority (higher starts first; then call order).
    pub priority: u32,
    /// The model id routing chose: `opts.model`, else the phase's model in
    /// `meta.phases`, else the default model (aliases resolved by config).
    pub model: Option<String>,
    /// The backend the model's alias routes to (`[models]` in the config);
    /// `None`: the run's default backend. Only [`router::Router`] reads it.
    pub backend: Option<String>,
    /// `opts.schema`, compiled: the reply must be a JSON value matching it.
    pub schema: Option<crate::script::schema::Schema>,
    /// On a schema retry: what was wrong with the previous reply. Backends
    /// with sessions send only this; others use [`Self::prompt_with_feedback`].
    pub feedback: Vec<String>,
}

impl AgentRequest {
    /// `opts.stallMs` when the script set a usable one, else `default`.
    pub fn stall_timeout(&self, default: std::time::Duration) -> std::time::Duration {
        match self.options.get("stallMs").and_then(Value::as_f64) {
            Some(ms) if ms.is_finite() && ms >= 1.0 => {
                std::time::Duration::from_millis(ms.min(u32::MAX as f64) as u64)
            }
            _ => default,
        }
    }

    /// A string option (`effort`, `agentType`, ...), when set to a string.
    pub fn option_str(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(Value::as_str)
    }

    /// The label shown to users: `opts.label`, else `agent #id`.
    pub fn display_label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| format!("agent #{}", self.id))
    }

    /// The prompt, followed by the previous try's schema errors if any: for
    /// backends without sessions.
    pub fn prompt_with_feedback(&self) -> String {
        if self.feedback.is_empty() {
            self.prompt.clone()
        } else {
            crate::script::schema::retry_prompt(&self.prompt, &self.feedback)
        }
    }
}

/// Tokens used, as the backend reports them. `input` counts uncached
/// input only; prompt-cache reads and writes are apart, as the Messages API
/// reports them, because they are priced apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// Tool calls the agent made (MCP tools on the HTTP backends).
    #[serde(skip_serializing_if = "is_zero")]
    pub tool_uses: u64,
    /// Anthropic web searches (server tool; priced per search).
    #[serde(skip_serializing_if = "is_zero")]
    pub web_searches: u64,
    /// Anthropic web fetches (server tool).
    #[serde(skip_serializing_if = "is_zero")]
    pub web_fetches: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Plain input and output tokens, no cache.
    pub fn new(input: u64, output: u64) -> Usage {
        Usage {
            input,
            output,
            ..Usage::default()
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.tool_uses += other.tool_uses;
        self.web_searches += other.web_searches;
        self.web_fetches += other.web_fetches;
    }
}

/// What an agent answered.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOutput {
    /// Final text: `agent()` resolves to this string.
    Text(String),
    /// A structured value: `agent()` resolves to it.
    Json(Value),
}

/// A finished agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    /// What `agent()` resolves to.
    pub output: AgentOutput,
    /// Tokens used.
    pub usage: Usage,
}

/// A terminal failure: `agent()` resolves `null` and the run summary lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFailure {
    /// What went wrong, for the run summary.
    pub reason: String,
    /// Tokens used before it failed.
    pub usage: Usage,
    /// Quota and auth failures feed the circuit breaker.
    pub kind: FailureKind,
}

/// What kind of failure, as far as the run is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// This agent failed; others may well succeed.
    #[default]
    Other,
    /// The account is out of quota (or rate-limited past its retries).
    Quota,
    /// The credentials were refused.
    Auth,
    /// The server refused the request as it stands (a 4xx other than 408,
    /// 409 and 429): a gateway with a bad key may answer every request so.
    /// It counts toward the circuit breaker until an agent has succeeded.
    Refused,
}

impl FailureKind {
    /// Failures that say the next agent will fail the same way.
    pub fn trips_breaker(self) -> bool {
        matches!(self, FailureKind::Quota | FailureKind::Auth)
    }
}

/// How one live execution ended.
pub type AgentResult = Result<AgentReply, AgentFailure>;

/// A model the run may use, known before it starts (the default model, a
/// phase's model, or a literal `opts.model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedModel {
    /// As written (an alias or an id).
    pub alias: String,
    /// What the config resolves it to.
    pub id: String,
    /// The backend its alias routes to; `None`: the run's default.
    pub backend: Option<String>,
    /// Where it was written, for messages (`script line 12`, `--model`).
    pub origin: String,
}

/// Something that runs agents. Implement it to plug in your own.
///
/// The runtime calls [`check`](Self::check) once before the script starts,
/// then [`run`](Self::run) once per try of each agent (a schema retry is a
/// new try with [`AgentRequest::feedback`] set), then
/// [`finish`](Self::finish) once after an agent's last try.
pub trait AgentBackend: Send + Sync {
    /// Short name for messages (`sim`, `claude`, ...).
    fn name(&self) -> &str;

    /// Runs one agent to its end. Must not panic on anything the agent or
    /// its service sends: return an [`AgentFailure`] naming what went wrong.
    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult>;

    /// Checks, before any agent is spawned, what would otherwise fail every
    /// agent: credentials, reachability, the models the run names. `Err`
    /// stops the run with that message. The default accepts everything.
    fn check(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let _ = models;
        Box::pin(async { Ok(()) })
    }

    /// Called once after the last try of agent `id`, to release what it
    /// held across tries (a session, a worktree). Returns notes for the run
    /// summary, e.g. where a changed worktree was kept.
    fn finish(&self, id: u64) -> BoxFuture<'static, Vec<String>> {
        let _ = id;
        Box::pin(async { Vec::new() })
    }
}
