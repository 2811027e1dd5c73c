//! The coordinator's side: an [`AgentBackend`] whose agents run on
//! workers. Each try is published to the pool's work-queue subject (de-
//! duplicated by run, agent and try), and its result comes back on the
//! run's results subject, checked against the run's secret before the
//! scheduler sees it. The scheduler journals it as any local result: the
//! run directory stays the record; the broker is transport.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::oneshot;
use wasmflow::backend::{
    AgentBackend, AgentFailure, AgentRequest, AgentResult, BoxFuture, FailureKind, Usage,
};
use wasmflow::run::run_dir::RunDir;

use crate::broker::{self, BrokerOptions};
use crate::wire::{self, WorkRequest, WorkResult};

/// Where the run's agents go.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// The broker.
    pub broker: BrokerOptions,
    /// The pool of workers (`default`).
    pub pool: String,
    /// The backend workers run agents on when routing names none.
    pub backend: String,
    /// Longest wait for one try's result.
    pub agent_timeout: Duration,
}

/// Tries waiting for their result, and results no try waited for yet:
/// those of an earlier coordinator of the run (killed, or stopped before
/// they came), used when the resumed run asks for the same try instead of
/// dispatching it again.
#[derive(Default)]
struct Waits {
    waiting: HashMap<(u64, u32), oneshot::Sender<WorkResult>>,
    arrived: HashMap<(u64, u32), WorkResult>,
    answered: std::collections::HashSet<(u64, u32)>,
}

/// A connection to the broker for one run.
pub struct Dispatch {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

struct Inner {
    handle: tokio::runtime::Handle,
    js: jetstream::Context,
    options: DispatchOptions,
    run: OnceLock<(String, String)>,
    /// Makes this coordinator's requests distinct from an earlier one's of
    /// the same run (a resume re-queues what was cancelled).
    nonce: String,
    pending: Mutex<Waits>,
    duplicates: AtomicU64,
    forged: AtomicU64,
}

impl Dispatch {
    /// Connects and makes sure the streams exist.
    pub fn connect(options: DispatchOptions) -> Result<Dispatch, String> {
        wire::check_token("pool", &options.pool)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wasmflow-dispatch")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime for dispatch: {e}"))?;
        let js = runtime.block_on(async {
            let client = broker::connect(&options.broker).await?;
            let js = jetstream::new(client);
            broker::ensure_streams(&js).await?;
            Ok::<_, String>(js)
        })?;
        Ok(Dispatch {
            inner: Arc::new(Inner {
                handle: runtime.handle().clone(),
                js,
                options,
                run: OnceLock::new(),
                nonce: wire::new_secret()?[..12].to_string(),
                pending: Mutex::new(Waits::default()),
                duplicates: AtomicU64::new(0),
                forged: AtomicU64::new(0),
            }),
            runtime: Some(runtime),
        })
    }

    /// The backend the run's scheduler talks to.
    pub fn backend(&self) -> Arc<dyn AgentBackend> {
        Arc::new(DispatchBackend {
            inner: self.inner.clone(),
        })
    }

    /// Binds the run: its id names its results subject, and its secret
    /// (kept in the run directory, so a resumed run checks results its
    /// first session asked for) signs them. Then listens for results, all
    /// the run's results from the start, so ones that arrived while no
    /// coordinator listened are used.
    pub fn bind_run(&self, id: &str, dir: Option<&RunDir>) -> Result<(), String> {
        wire::check_token("run id", id)?;
        let secret = match dir {
            Some(d) => run_secret(d)?,
            None => wire::new_secret()?,
        };
        self.inner
            .run
            .set((id.to_string(), secret))
            .map_err(|_| "the dispatch is bound to a run already".to_string())?;
        let inner = self.inner.clone();
        let consumer = self.inner.handle.block_on(async {
            let stream = inner
                .js
                .get_stream(wire::RESULT_STREAM)
                .await
                .map_err(|e| format!("cannot open the {} stream: {e}", wire::RESULT_STREAM))?;
            stream
                .create_consumer(consumer::pull::Config {
                    filter_subject: wire::run_results(id),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::Explicit,
                    inactive_threshold: Duration::from_secs(600),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("cannot listen for the run's results: {e}"))
        })?;
        self.inner.handle.spawn(listen(inner.clone(), consumer));
        // A request the pool gave up on (its deliveries exhausted: workers
        // died or hung on it) ends its try as failed, not as a hang.
        let advisories = self.inner.handle.block_on(async {
            inner
                .js
                .client()
                .subscribe(format!(
                    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.pool-{}",
                    wire::WORK_STREAM,
                    inner.options.pool
                ))
                .await
                .map_err(|e| format!("cannot listen for exhausted deliveries: {e}"))
        })?;
        self.inner.handle.spawn(exhausted(inner, advisories));
        Ok(())
    }

    /// Results seen twice (acked, not journaled) and results dropped for a
    /// wrong signature.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.duplicates.load(Ordering::Relaxed),
            self.inner.forged.load(Ordering::Relaxed),
        )
    }

    /// Sends what is queued (cancels of agents the run dropped), then
    /// closes the connection.
    pub fn shutdown(mut self) {
        if let Some(rt) = self.runtime.take() {
            let client = self.inner.js.client();
            rt.block_on(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Dispatch {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The run's secret from `dispatch.secret` in its directory (made on first
/// use, readable by the user alone).
fn run_secret(dir: &RunDir) -> Result<String, String> {
    let path = dir.path.join("dispatch.secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if s.len() == 64 {
            return Ok(s);
        }
    }
    let secret = wire::new_secret()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        secret.as_bytes(),
    )
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(secret)
}

async fn listen(inner: Arc<Inner>, consumer: consumer::Consumer<consumer::pull::Config>) {
    let Some((_, secret)) = inner.run.get().cloned() else {
        return;
    };
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("dispatch: cannot read results: {e}");
            return;
        }
    };
    while let Some(message) = messages.next().await {
        let Ok(message) = message else {
            continue;
        };
        let result: Option<WorkResult> = (message.payload.len() <= wire::MAX_MESSAGE)
            .then(|| serde_json::from_slice(&message.payload).ok())
            .flatten();
        let _ = message.ack().await;
        let Some(result) = result else {
            inner.forged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("dispatch: dropped a result that does not parse");
            continue;
        };
        if !result.verify(&secret) {
            inner.forged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "dispatch: dropped a result for agent {} that is not signed with the run's secret",
                result.agent
            );
            continue;
        }
        let key = (result.agent, result.attempt);
        let mut waits = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        if waits.answered.contains(&key) || waits.arrived.contains_key(&key) {
            inner.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match waits.waiting.remove(&key) {
            Some(tx) => {
                waits.answered.insert(key);
                let _ = tx.send(result);
            }
            None => {
                waits.arrived.insert(key, result);
            }
        }
    }
}

async fn exhausted(inner: Arc<Inner>, mut advisories: async_nats::Subscriber) {
    let Some((run, _)) = inner.run.get().cloned() else {
        return;
    };
    let Ok(stream) = inner.js.get_stream(wire::WORK_STREAM).await else {
        return;
    };
    while let Some(a) = advisories.next().await {
        let Ok(v) = serde_json::from_slice::<Value>(&a.payload) else {
            continue;
        };
        let Some(seq) = v["stream_seq"].as_u64() else {
            continue;
        };
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let Ok(request) = serde_json::from_slice::<WorkRequest>(&message.payload) else {
            continue;
        };
        if request.run != run {
            continue;
        }
        let _ = stream.delete_message(seq).await;
        let waiting = inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting
            .remove(&(request.agent, request.attempt));
        if let Some(tx) = waiting {
            let deliveries = v["deliveries"].as_u64().unwrap_or(0);
            let _ = tx.send(WorkResult {
                v: wire::VERSION,
                run: run.clone(),
                agent: request.agent,
                attempt: request.attempt,
                key: request.key,
                worker: String::new(),
                output: None,
                failure: Some(format!(
                    "the request was delivered {deliveries} times without a result: the workers that took it died or hung (their logs say which)"
                )),
                kind: None,
                usage: Usage::default(),
                mac: String::new(),
            });
        }
    }
}

struct DispatchBackend {
    inner: Arc<Inner>,
}

fn failure(reason: String) -> AgentFailure {
    AgentFailure {
        reason,
        usage: Usage::default(),
        kind: FailureKind::Other,
    }
}

impl AgentBackend for DispatchBackend {
    fn name(&self) -> &str {
        "dispatch"
    }

    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        let inner = self.inner.clone();
        let task = AbortOnDrop(self.inner.handle.spawn(dispatch_one(inner, request)));
        Box::pin(async move {
            let mut task = task;
            (&mut task.0)
                .await
                .unwrap_or_else(|e| Err(failure(format!("dispatch ended abnormally: {e}"))))
        })
    }
}

/// The scheduler dropping a try (stop, skip, retry) ends its task on the
/// dispatch runtime too, which cancels it on the worker.
struct AbortOnDrop(tokio::task::JoinHandle<AgentResult>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes the pending entry when the try ends any way (a result, a
/// timeout, or the scheduler dropping it on stop or skip).
struct Pending {
    inner: Arc<Inner>,
    key: (u64, u32),
}

impl Drop for Pending {
    fn drop(&mut self) {
        let unanswered = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting
            .remove(&self.key)
            .is_some();
        // Dropped before its result came (stop, skip, retry, timeout): the
        // worker running it abandons it.
        if unanswered && let Some((run, secret)) = self.inner.run.get() {
            let subject = wire::cancel_subject(run, self.key.0, self.key.1);
            let mac = wire::cancel_mac(secret, &subject);
            let client = self.inner.js.client();
            self.inner.handle.spawn(async move {
                let _ = client.publish(subject, mac.into()).await;
                let _ = client.flush().await;
            });
        }
    }
}

async fn dispatch_one(inner: Arc<Inner>, request: AgentRequest) -> AgentResult {
    let Some((run, secret)) = inner.run.get().cloned() else {
        return Err(failure(
            "dispatch: the run is not bound (an embedder must call Dispatch::bind_run)".into(),
        ));
    };
    if request.option_str("isolation") == Some("worktree") {
        return Err(failure(
            "agents with isolation: 'worktree' cannot run on remote workers; run this workflow without --dispatch".into(),
        ));
    }
    let backend = request
        .backend
        .clone()
        .unwrap_or_else(|| inner.options.backend.clone());
    let work = WorkRequest {
        v: wire::VERSION,
        run: run.clone(),
        agent: request.id,
        attempt: request.attempt,
        key: wasmflow::run::key::content_key(&request.prompt, &request.options),
        backend,
        model: request.model.clone(),
        prompt: request.prompt.clone(),
        options: request.options.clone(),
        label: request.label.clone(),
        phase: request.phase.clone(),
        schema: request.schema.as_ref().map(|s| Value::clone(&s.value)),
        feedback: request.feedback.clone(),
        secret,
    };
    let payload = serde_json::to_vec(&work).map_err(|e| failure(e.to_string()))?;
    if payload.len() > wire::MAX_MESSAGE {
        return Err(failure(format!(
            "the request is {} bytes, over the {} a worker takes",
            payload.len(),
            wire::MAX_MESSAGE
        )));
    }
    let (tx, rx) = oneshot::channel();
    let key = (request.id, request.attempt);
    {
        let mut waits = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(result) = waits.arrived.remove(&key) {
            // Finished while no coordinator waited: used, not re-run.
            waits.answered.insert(key);
            return result.into_agent_result();
        }
        waits.waiting.insert(key, tx);
    }
    let _pending = Pending {
        inner: inner.clone(),
        key,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!(
            "{}.{}",
            wire::msg_id(&run, request.id, request.attempt),
            inner.nonce
        )
        .as_str(),
    );
    let subject = wire::work_subject(&inner.options.pool);
    let published = inner
        .js
        .publish_with_headers(subject, headers, payload.into())
        .await
        .map_err(|e| failure(format!("cannot publish the agent to the broker: {e}")))?;
    tokio::time::timeout(Duration::from_secs(10), published)
        .await
        .map_err(|_| failure("the broker did not acknowledge the agent within 10s".into()))?
        .map_err(|e| failure(format!("the broker refused the agent: {e}")))?;
    match tokio::time::timeout(inner.options.agent_timeout, rx).await {
        Err(_) => Err(failure(format!(
            "no worker of pool `{}` answered within {:?} (are workers running? `wasmflow worker --nats URL --pool {}`)",
            inner.options.pool, inner.options.agent_timeout, inner.options.pool
        ))),
        Ok(Err(_)) => Err(failure("dispatch: the results listener stopped".into())),
        Ok(Ok(result)) => result.into_agent_result(),
    }
}
