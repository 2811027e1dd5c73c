//! What travels over the broker: agent requests to workers, results back,
//! and the HMAC that authenticates a result with its run's secret.
//!
//! A request carries what a local backend gets for one try (prompt,
//! options, model, schema, feedback) and nothing of the coordinator's
//! machine: no command line, working directory or environment.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wasmflow::backend::{AgentFailure, AgentOutput, AgentReply, AgentRequest, FailureKind, Usage};

/// Format of the messages below.
pub const VERSION: u32 = 1;
/// Largest request or result a worker or coordinator accepts.
pub const MAX_MESSAGE: usize = 1 << 20;

/// The stream agent requests wait in, one subject per pool.
pub const WORK_STREAM: &str = "WASMFLOW_WORK";
/// The stream results go back on, one subject per run.
pub const RESULT_STREAM: &str = "WASMFLOW_RESULTS";
/// The stream of workers' heartbeats, the last one of each.
pub const WORKER_STREAM: &str = "WASMFLOW_WORKERS";
/// The object store results over [`BLOB_ABOVE`] go through.
pub const BLOB_BUCKET: &str = "wasmflow_results";
/// A result whose message would be larger goes through the object store
/// (the margin leaves room for headers).
pub const BLOB_ABOVE: usize = MAX_MESSAGE - 16 * 1024;
/// Largest output a coordinator fetches from the object store.
pub const MAX_BLOB: u64 = 256 << 20;
/// How often a worker says it is alive.
pub const HEARTBEAT_SECS: u64 = 5;

/// Where a worker's heartbeat goes: one subject per worker, so the stream
/// keeps the last of each.
pub fn worker_subject(pool: &str, name: &str) -> String {
    let token: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("wasmflow.worker.{pool}.{token}")
}

/// The object holding one try's output.
pub fn blob_name(run: &str, agent: u64, attempt: u32) -> String {
    format!("{run}.{agent}.{attempt}")
}

/// Where a pool's requests go.
pub fn work_subject(pool: &str) -> String {
    format!("wasmflow.work.{pool}")
}

/// Every result of a run (the coordinator's filter).
pub fn run_results(run: &str) -> String {
    format!("wasmflow.result.{run}.>")
}

/// Where one try's result goes: its own subject, so a worker can ask the
/// stream whether it was sent already.
pub fn result_subject(run: &str, agent: u64, attempt: u32) -> String {
    format!("wasmflow.result.{run}.{agent}.{attempt}")
}

/// The broker's de-duplication id of one try of one agent: a request
/// published twice, or a result sent twice, is stored once.
pub fn msg_id(run: &str, agent: u64, attempt: u32) -> String {
    format!("{run}.{agent}.{attempt}")
}

/// Where a coordinator says a try is no longer wanted (stop, skip, retry):
/// workers running it abandon it.
pub fn cancel_subject(run: &str, agent: u64, attempt: u32) -> String {
    format!("wasmflow.cancel.{run}.{agent}.{attempt}")
}

/// A cancel's payload: the MAC of its subject under the run's secret (hex),
/// so only the coordinator can cancel its run's agents.
pub fn cancel_mac(secret: &str, subject: &str) -> String {
    wasmflow::run::key::hex(&wasmflow::run::seal::hmac(
        secret.as_bytes(),
        subject.as_bytes(),
    ))
}

/// Pool and run names become subject tokens: letters, digits, `-`, `_`.
pub fn check_token(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{what} `{name}` must be 1-64 letters, digits, `-` or `_`"
        ));
    }
    Ok(())
}

/// One try of one agent, for a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkRequest {
    /// [`VERSION`].
    pub v: u32,
    /// The run (its results subject).
    pub run: String,
    /// The run-wide agent id.
    pub agent: u64,
    /// The scheduler's try (a broker redelivery keeps it).
    pub attempt: u32,
    /// The agent's content key (prompt and options).
    pub key: String,
    /// The backend the worker must run it on.
    pub backend: String,
    /// The model routing chose.
    pub model: Option<String>,
    /// The prompt as a local backend gets it.
    pub prompt: String,
    /// The script's options.
    pub options: Map<String, Value>,
    /// `opts.label`.
    pub label: Option<String>,
    /// The progress group.
    pub phase: Option<String>,
    /// `opts.schema`, as written.
    pub schema: Option<Value>,
    /// A schema retry's feedback.
    pub feedback: Vec<String>,
    /// The run's secret (hex): results are signed with it.
    pub secret: String,
    /// When the request was too big for a message: where the whole of it
    /// is (this one then carries only its identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Blob>,
}

impl WorkRequest {
    /// What goes on the work subject for a request whose message would be
    /// too big: its identity and where the whole request is.
    pub fn envelope(&self, blob: Blob) -> WorkRequest {
        WorkRequest {
            prompt: String::new(),
            options: Map::new(),
            schema: None,
            feedback: Vec::new(),
            blob: Some(blob),
            ..self.clone()
        }
    }

    /// The whole request from the object `self` (an envelope) names, once
    /// its size and sha256 are the ones the envelope gives and it is the
    /// same try.
    pub fn from_blob(&self, bytes: &[u8]) -> Result<WorkRequest, String> {
        let Some(blob) = &self.blob else {
            return Ok(self.clone());
        };
        blob.check(bytes, &format!("the request of agent {}", self.agent))?;
        let full: WorkRequest = serde_json::from_slice(bytes)
            .map_err(|e| format!("the request of agent {} does not parse: {e}", self.agent))?;
        if (&full.run, full.agent, full.attempt, &full.secret)
            != (&self.run, self.agent, self.attempt, &self.secret)
            || full.blob.is_some()
        {
            return Err(format!(
                "the object of agent {}'s request is another request",
                self.agent
            ));
        }
        Ok(full)
    }

    /// The request a local backend would get.
    pub fn to_agent_request(&self) -> Result<AgentRequest, String> {
        let schema = match &self.schema {
            Some(s) => Some(wasmflow::script::schema::Schema::compile(s)?),
            None => None,
        };
        Ok(AgentRequest {
            id: self.agent,
            prompt: self.prompt.clone(),
            options: self.options.clone(),
            label: self.label.clone(),
            phase: self.phase.clone(),
            attempt: self.attempt,
            priority: 0,
            model: self.model.clone(),
            // The worker runs it on its own backend: no routing there.
            backend: None,
            schema,
            feedback: self.feedback.clone(),
        })
    }
}

/// How a try ended, from a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkResult {
    /// [`VERSION`].
    pub v: u32,
    /// The run.
    pub run: String,
    /// The agent.
    pub agent: u64,
    /// The try.
    pub attempt: u32,
    /// The agent's content key, as the request had it.
    pub key: String,
    /// The worker that ran it.
    pub worker: String,
    /// `{"text": …}` or `{"json": …}` when it answered.
    pub output: Option<Value>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// `quota`, `auth`, `refused` or `other`.
    pub kind: Option<String>,
    /// Tokens used.
    pub usage: Usage,
    /// When the output was too big for a message: where it is instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Blob>,
    /// HMAC-SHA256 of the rest, under the run's secret (hex).
    #[serde(default)]
    pub mac: String,
}

impl WorkResult {
    /// A result for `request` from `outcome`, signed.
    pub fn new(
        request: &WorkRequest,
        worker: &str,
        outcome: &wasmflow::backend::AgentResult,
    ) -> WorkResult {
        let (output, failure, kind, usage) = match outcome {
            Ok(reply) => (
                Some(match &reply.output {
                    AgentOutput::Text(t) => serde_json::json!({"text": t}),
                    AgentOutput::Json(v) => serde_json::json!({"json": v}),
                }),
                None,
                None,
                reply.usage,
            ),
            Err(f) => (
                None,
                Some(f.reason.clone()),
                Some(
                    match f.kind {
                        FailureKind::Quota => "quota",
                        FailureKind::Auth => "auth",
                        FailureKind::Refused => "refused",
                        FailureKind::Other => "other",
                    }
                    .to_string(),
                ),
                f.usage,
            ),
        };
        let mut result = WorkResult {
            v: VERSION,
            run: request.run.clone(),
            agent: request.agent,
            attempt: request.attempt,
            key: request.key.clone(),
            worker: worker.to_string(),
            output,
            failure,
            kind,
            usage,
            blob: None,
            mac: String::new(),
        };
        result.mac = result.expected_mac(&request.secret);
        result
    }

    /// Moves the output out of the message, into an object described by
    /// its name, size and sha256 (which the signature then covers).
    /// Returns the output's bytes to store.
    pub fn externalise(&mut self, secret: &str) -> Vec<u8> {
        let bytes = serde_json::to_vec(&self.output.take()).unwrap_or_default();
        self.blob = Some(Blob::of(
            blob_name(&self.run, self.agent, self.attempt),
            &bytes,
        ));
        self.mac = self.expected_mac(secret);
        bytes
    }

    /// Puts back an output fetched from the object store, once its size
    /// and sha256 are the ones the signed result names.
    pub fn internalise(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Some(blob) = &self.blob else {
            return Ok(());
        };
        blob.check(bytes, &format!("the output of agent {}", self.agent))?;
        self.output = serde_json::from_slice(bytes)
            .map_err(|e| format!("the output of agent {} does not parse: {e}", self.agent))?;
        self.blob = None;
        Ok(())
    }

    /// The MAC this result should carry under `secret` (hex).
    pub fn expected_mac(&self, secret: &str) -> String {
        let mut unsigned = self.clone();
        unsigned.mac = String::new();
        let bytes = serde_json::to_vec(&unsigned).unwrap_or_default();
        wasmflow::run::key::hex(&wasmflow::run::seal::hmac(secret.as_bytes(), &bytes))
    }

    /// Whether it was signed with `secret` (constant-time compare).
    pub fn verify(&self, secret: &str) -> bool {
        let expected = self.expected_mac(secret);
        expected.len() == self.mac.len()
            && expected
                .bytes()
                .zip(self.mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// What the scheduler gets.
    pub fn into_agent_result(self) -> wasmflow::backend::AgentResult {
        match (self.output, self.failure) {
            (Some(out), _) => {
                let output = match (out.get("text"), out.get("json")) {
                    (Some(Value::String(t)), _) => AgentOutput::Text(t.clone()),
                    (_, Some(v)) => AgentOutput::Json(v.clone()),
                    _ => {
                        return Err(AgentFailure {
                            reason: "a worker's result has no text or json output".into(),
                            usage: self.usage,
                            kind: FailureKind::Other,
                        });
                    }
                };
                Ok(AgentReply {
                    output,
                    usage: self.usage,
                })
            }
            (None, failure) => Err(AgentFailure {
                reason: failure.unwrap_or_else(|| "the worker gave no reason".into()),
                usage: self.usage,
                kind: match self.kind.as_deref() {
                    Some("quota") => FailureKind::Quota,
                    Some("auth") => FailureKind::Auth,
                    Some("refused") => FailureKind::Refused,
                    _ => FailureKind::Other,
                },
            }),
        }
    }
}

/// An output kept in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// The object's name.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
}

impl Blob {
    /// The description of `bytes` stored as `name`.
    pub fn of(name: String, bytes: &[u8]) -> Blob {
        Blob {
            name,
            size: bytes.len() as u64,
            sha256: wasmflow::run::key::sha256_hex(bytes),
        }
    }

    /// Whether `bytes` are the object this describes (`what` names it in
    /// the error).
    pub fn check(&self, bytes: &[u8], what: &str) -> Result<(), String> {
        if bytes.len() as u64 != self.size || wasmflow::run::key::sha256_hex(bytes) != self.sha256 {
            return Err(format!(
                "{what} in the object store ({} bytes) is not the one that was sent ({} bytes, sha256 {}): dropped",
                bytes.len(),
                self.size,
                self.sha256
            ));
        }
        Ok(())
    }
}

/// What a worker says of itself every [`HEARTBEAT_SECS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// [`VERSION`].
    pub v: u32,
    /// The worker's name.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// Its backend.
    pub backend: String,
    /// The model ids it runs (`None`: any).
    pub models: Option<Vec<String>>,
    /// Agents at once.
    pub slots: usize,
    /// Agents running now.
    pub busy: usize,
    /// Agents it finished since it started.
    pub done: u64,
    /// `running`, `draining` (stopping: no new agents) or `stopped`.
    pub state: String,
    /// When it started, and when it said this (Unix milliseconds).
    pub started_ms: u64,
    /// When it said this (Unix milliseconds).
    pub at_ms: u64,
    /// Its host, as it names itself.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// wasmflow's version there.
    pub version: String,
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 32 random bytes as hex: a run's secret.
pub fn new_secret() -> Result<String, String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a run secret: {e}"))?;
    Ok(wasmflow::run::key::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> WorkRequest {
        WorkRequest {
            v: VERSION,
            run: "r1".into(),
            agent: 7,
            attempt: 1,
            key: "k".into(),
            backend: "sim".into(),
            model: None,
            prompt: "p".into(),
            options: Map::new(),
            label: None,
            phase: None,
            schema: None,
            feedback: Vec::new(),
            secret: "s3cret".into(),
            blob: None,
        }
    }

    #[test]
    fn results_are_signed_and_checked() {
        let reply: wasmflow::backend::AgentResult = Ok(AgentReply {
            output: AgentOutput::Text("hi".into()),
            usage: Usage::new(3, 4),
        });
        let r = WorkResult::new(&request(), "w1", &reply);
        assert!(r.verify("s3cret"));
        assert!(!r.verify("other"));
        let mut forged = r.clone();
        forged.output = Some(serde_json::json!({"text": "FORGED"}));
        assert!(!forged.verify("s3cret"));
        assert_eq!(
            r.into_agent_result().unwrap().output,
            AgentOutput::Text("hi".into())
        );
        assert!(check_token("pool", "haiku-pool").is_ok());
        assert_eq!(
            worker_subject("p", "host.a b"),
            "wasmflow.worker.p.host_a_b"
        );
        assert!(check_token("pool", "a.b").is_err());
    }

    #[test]
    fn big_outputs_travel_beside_their_signed_result() {
        let reply: wasmflow::backend::AgentResult = Ok(AgentReply {
            output: AgentOutput::Text("x".repeat(3000)),
            usage: Usage::new(1, 1),
        });
        let mut r = WorkResult::new(&request(), "w1", &reply);
        let bytes = r.externalise("s3cret");
        assert!(r.output.is_none() && r.verify("s3cret"));
        let blob = r.blob.clone().unwrap();
        assert_eq!(
            (blob.name.as_str(), blob.size),
            ("r1.7.1", bytes.len() as u64)
        );
        let mut tampered = bytes.clone();
        tampered[10] ^= 1;
        assert!(
            r.clone()
                .internalise(&tampered)
                .unwrap_err()
                .contains("sha256")
        );
        r.internalise(&bytes).unwrap();
        assert_eq!(
            r.into_agent_result().unwrap().output,
            AgentOutput::Text("x".repeat(3000))
        );
    }

    #[test]
    fn big_requests_travel_as_an_envelope_and_an_object() {
        let mut full = request();
        full.prompt = "p".repeat(5000);
        let bytes = serde_json::to_vec(&full).unwrap();
        let blob = Blob {
            name: "request.r1.7.1.n".into(),
            size: bytes.len() as u64,
            sha256: wasmflow::run::key::sha256_hex(&bytes),
        };
        let envelope = full.envelope(blob);
        assert!(envelope.prompt.is_empty() && envelope.blob.is_some());
        assert_eq!(envelope.from_blob(&bytes).unwrap().prompt, full.prompt);
        let mut tampered = bytes.clone();
        tampered[40] ^= 1;
        assert!(
            envelope
                .from_blob(&tampered)
                .unwrap_err()
                .contains("sha256")
        );
        let mut other = full.clone();
        other.agent = 8;
        let other_bytes = serde_json::to_vec(&other).unwrap();
        let lying = full.envelope(Blob {
            name: "x".into(),
            size: other_bytes.len() as u64,
            sha256: wasmflow::run::key::sha256_hex(&other_bytes),
        });
        assert!(
            lying
                .from_blob(&other_bytes)
                .unwrap_err()
                .contains("another request")
        );
    }
}
