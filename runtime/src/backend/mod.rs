//! Agent backends: what actually answers an `agent()` call.
//!
//! A backend gets one [`AgentRequest`] per live execution and returns the
//! agent's final output or a terminal failure. The runtime owns concurrency,
//! caps, accounting and progress; a backend only talks to its agent.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::{Map, Value};

pub mod exec;
pub mod sim;

/// A boxed, sendable future, so backends stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One live execution of an agent.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The run-wide agent id (spawn order, from 1).
    pub id: u64,
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
    /// `opts.schema`, compiled: the reply must be a JSON value matching it.
    pub schema: Option<crate::schema::Schema>,
    /// On a schema retry: what was wrong with the previous reply. Backends
    /// with sessions send only this; others use [`Self::prompt_with_feedback`].
    pub feedback: Vec<String>,
}

impl AgentRequest {
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
            crate::schema::retry_prompt(&self.prompt, &self.feedback)
        }
    }
}

/// Tokens used, as the backend reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.input += other.input;
        self.output += other.output;
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
    pub output: AgentOutput,
    pub usage: Usage,
}

/// A terminal failure: `agent()` resolves `null` and the run summary lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFailure {
    pub reason: String,
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
}

impl FailureKind {
    /// Failures that say the next agent will fail the same way.
    pub fn trips_breaker(self) -> bool {
        matches!(self, FailureKind::Quota | FailureKind::Auth)
    }
}

/// How one live execution ended.
pub type AgentResult = Result<AgentReply, AgentFailure>;

/// Something that runs agents. Implement it to plug in your own.
pub trait AgentBackend: Send + Sync {
    /// Short name for messages (`sim`, `claude`, ...).
    fn name(&self) -> &str;

    /// Runs one agent to its end. Must not panic on anything the agent or
    /// its service sends: return an [`AgentFailure`] naming what went wrong.
    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult>;
}
