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
    /// Pools by model id (`[models] fast = { id, pool }`); other models go
    /// to `pool`.
    pub pools: std::collections::BTreeMap<String, String>,
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
    waiting: HashMap<(u64, u32), Waiting>,
    arrived: HashMap<(u64, u32), WorkResult>,
    answered: std::collections::HashSet<(u64, u32)>,
}

/// A try waiting for its result, and where its request is in the work
/// stream, so a broker that lost it gets it again.
struct Waiting {
    tx: oneshot::Sender<WorkResult>,
    published: Option<Published>,
}

#[derive(Clone)]
struct Published {
    subject: String,
    payload: bytes::Bytes,
    msg_id: String,
    seq: u64,
    /// How often it was published again.
    again: u32,
}

/// A connection to the broker for one run.
pub struct Dispatch {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
    events: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>>>,
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
    redispatched: AtomicU64,
    /// Told when the connection is back after a loss.
    reconnected: tokio::sync::Notify,
}

impl Dispatch {
    /// Connects and makes sure the streams exist.
    pub fn connect(options: DispatchOptions) -> Result<Dispatch, String> {
        wire::check_token("pool", &options.pool)?;
        for pool in options.pools.values() {
            wire::check_token("pool", pool)?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wasmflow-dispatch")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime for dispatch: {e}"))?;
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let js = runtime.block_on(async {
            let client = broker::connect_watching(&options.broker, Some(events_tx)).await?;
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
                redispatched: AtomicU64::new(0),
                reconnected: tokio::sync::Notify::new(),
            }),
            runtime: Some(runtime),
            events: Mutex::new(Some(events)),
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
        // Fails here, not later, when the results cannot be read at all.
        let consumer = self
            .inner
            .handle
            .block_on(results_consumer(&inner, id, (None, 0)))?;
        self.inner.handle.spawn(listen(inner.clone(), consumer));
        if let Some(events) = self.events.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.inner.handle.spawn(watch_broker(inner.clone(), events));
        }
        // A request the pool gave up on (its deliveries exhausted: workers
        // died or hung on it) ends its try as failed, not as a hang.
        let advisories = self.inner.handle.block_on(async {
            inner
                .js
                .client()
                .subscribe(format!(
                    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
                    wire::WORK_STREAM
                ))
                .await
                .map_err(|e| format!("cannot listen for exhausted deliveries: {e}"))
        })?;
        self.inner.handle.spawn(exhausted(inner, advisories));
        Ok(())
    }

    /// Results seen twice (acked, not journaled), results dropped for a
    /// wrong signature, and requests published again because the broker
    /// lost them.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.inner.duplicates.load(Ordering::Relaxed),
            self.inner.forged.load(Ordering::Relaxed),
            self.inner.redispatched.load(Ordering::Relaxed),
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

/// A consumer of the run's results after stream sequence `after.1` (0: all
/// of them). A
/// stream made at another time than `after.0` is a new one (the broker
/// lost its store): all of it is new. Returns the stream's creation time.
async fn results_consumer(
    inner: &Inner,
    run: &str,
    after: (Option<String>, u64),
) -> Result<(consumer::Consumer<consumer::pull::Config>, String), String> {
    let mut stream = inner
        .js
        .get_stream(wire::RESULT_STREAM)
        .await
        .map_err(|e| format!("cannot open the {} stream: {e}", wire::RESULT_STREAM))?;
    let created = stream
        .info()
        .await
        .map(|i| i.created.to_string())
        .map_err(|e| format!("cannot read the {} stream: {e}", wire::RESULT_STREAM))?;
    let deliver_policy = match after {
        (Some(was), seq) if seq > 0 && was == created => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
        _ => consumer::DeliverPolicy::All,
    };
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: wire::run_results(run),
            deliver_policy,
            ack_policy: consumer::AckPolicy::Explicit,
            inactive_threshold: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot listen for the run's results: {e}"))?;
    Ok((consumer, created))
}

/// Reads the run's results for as long as the run lasts, making its
/// consumer again when the broker lost it (restarted, or its store gone).
async fn listen(inner: Arc<Inner>, first: (consumer::Consumer<consumer::pull::Config>, String)) {
    let Some((run, secret)) = inner.run.get().cloned() else {
        return;
    };
    let mut created = Some(first.1.clone());
    let mut consumer = Some(first.0);
    let mut last = 0u64;
    loop {
        let current = match consumer.take() {
            Some(c) => c,
            None => match async {
                // The broker may have come back without its streams.
                broker::ensure_streams(&inner.js).await?;
                results_consumer(&inner, &run, (created.clone(), last)).await
            }
            .await
            {
                Ok((c, made)) => {
                    if created.as_deref() != Some(made.as_str()) {
                        last = 0;
                    }
                    created = Some(made);
                    c
                }
                Err(e) => {
                    tracing::debug!("dispatch: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let mut messages = match current
            .stream()
            .expires(Duration::from_secs(10))
            .heartbeat(Duration::from_secs(4))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("dispatch: cannot read results: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut missed = 0;
        loop {
            let message = tokio::select! {
                m = messages.next() => m,
                // The broker came back: its consumer may be gone.
                _ = inner.reconnected.notified() => break,
            };
            let Some(message) = message else {
                break;
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    use consumer::pull::MessagesErrorKind as K;
                    missed += 1;
                    match e.kind() {
                        K::MissingHeartbeat if missed < 2 => continue,
                        _ => break,
                    }
                }
            };
            missed = 0;
            if let Ok(info) = message.info() {
                last = info.stream_sequence;
            }
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
            if result.blob.is_some() {
                // Fetched beside the loop: other results need not wait.
                inner.handle.spawn(fetch_blob(inner.clone(), result));
            } else {
                deliver(&inner, result);
            }
        }
        tracing::debug!("dispatch: the results consumer ended; making it again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Hands a checked result to the try waiting for it, or keeps it for the
/// try a resumed run will ask for.
fn deliver(inner: &Inner, result: WorkResult) {
    let key = (result.agent, result.attempt);
    let mut waits = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
    if waits.answered.contains(&key) || waits.arrived.contains_key(&key) {
        inner.duplicates.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match waits.waiting.remove(&key) {
        Some(w) => {
            waits.answered.insert(key);
            let _ = w.tx.send(result);
        }
        None => {
            waits.arrived.insert(key, result);
        }
    }
}

/// Fetches an output too big for a message from the object store, checks
/// it against the size and sha256 its signed result names, and delivers
/// it; a missing or altered one fails the try.
async fn fetch_blob(inner: Arc<Inner>, mut result: WorkResult) {
    let Some(blob) = result.blob.clone() else {
        return;
    };
    let what = format!("the output of agent {}", result.agent);
    let fetched = async {
        let (store, bytes) = broker::fetch_blob(&inner.js, &blob, &what).await?;
        result.internalise(&bytes)?;
        Ok::<_, String>(store)
    }
    .await;
    match fetched {
        Ok(store) => {
            deliver(&inner, result);
            // After delivering: a duplicate of this result fetching it
            // meanwhile must not fail the try first.
            let _ = store.delete(&blob.name).await;
        }
        Err(reason) => {
            tracing::warn!("dispatch: {reason}");
            result.blob = None;
            result.output = None;
            result.failure = Some(reason);
            result.kind = None;
            deliver(&inner, result);
        }
    }
}

/// Watches the connection: when it comes back after a loss, the broker
/// may have restarted without its store, so what the journal still waits
/// for is checked against it ([`reconcile`]).
async fn watch_broker(
    inner: Arc<Inner>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
) {
    while broker::next_return(&mut events, "dispatch").await.is_some() {
        inner.reconnected.notify_one();
        // Workers reconnect too; give the streams a moment to load.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Err(e) = reconcile(&inner).await {
            tracing::warn!("dispatch: cannot check the broker's requests: {e}");
        }
    }
}

/// Publishes again each waiting try whose request the broker no longer
/// has and whose result it never got: a broker that restarted on an
/// empty (or damaged) store loses them, and the run's record says they
/// are outstanding.
async fn reconcile(inner: &Inner) -> Result<(), String> {
    let Some((run, _)) = inner.run.get().cloned() else {
        return Ok(());
    };
    broker::ensure_streams(&inner.js).await?;
    let work = inner
        .js
        .get_stream(wire::WORK_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let results = inner
        .js
        .get_stream(wire::RESULT_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let outstanding: Vec<((u64, u32), Published)> = inner
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .waiting
        .iter()
        .filter_map(|(k, w)| Some((*k, w.published.clone()?)))
        .collect();
    for (key, published) in outstanding {
        let kept = match work.get_raw_message(published.seq).await {
            Ok(m) => m
                .headers
                .get("Nats-Msg-Id")
                .is_some_and(|id| id.as_str() == published.msg_id),
            Err(_) => false,
        };
        if kept {
            continue;
        }
        let sent = results
            .get_last_raw_message_by_subject(&wire::result_subject(&run, key.0, key.1))
            .await
            .is_ok();
        if sent {
            continue;
        }
        let again = published.again + 1;
        let msg_id = format!("{}.again{again}", published.msg_id);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        let ack = inner
            .js
            .publish_with_headers(
                published.subject.clone(),
                headers,
                published.payload.clone(),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let mut waits = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = waits.waiting.get_mut(&key) {
            w.published = Some(Published {
                msg_id,
                seq: ack.sequence,
                again,
                ..published
            });
            inner.redispatched.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "dispatch: agent {} (try {}) published again: the broker had lost it",
                key.0,
                key.1
            );
        }
    }
    Ok(())
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
        if let Some(Waiting { tx, .. }) = waiting {
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
                blob: None,
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
    /// The object holding a request too big for a message.
    blob: Option<String>,
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
        if let Some(name) = self.blob.take() {
            let js = self.inner.js.clone();
            self.inner.handle.spawn(async move {
                if let Ok(store) = broker::blob_store(&js).await {
                    let _ = store.delete(&name).await;
                }
            });
        }
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
        blob: None,
    };
    let mut payload = serde_json::to_vec(&work).map_err(|e| failure(e.to_string()))?;
    let (tx, rx) = oneshot::channel();
    let key = (request.id, request.attempt);
    {
        let mut waits = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(result) = waits.arrived.remove(&key) {
            // Finished while no coordinator waited: used, not re-run.
            waits.answered.insert(key);
            return result.into_agent_result();
        }
        waits.waiting.insert(
            key,
            Waiting {
                tx,
                published: None,
            },
        );
    }
    let mut pending = Pending {
        inner: inner.clone(),
        key,
        blob: None,
    };
    let msg_id = format!(
        "{}.{}",
        wire::msg_id(&run, request.id, request.attempt),
        inner.nonce
    );
    if payload.len() > wire::BLOB_ABOVE {
        // Over the message limit: the request goes through the object
        // store, and the message carries its size and sha256.
        let blob = wire::Blob::of(format!("request.{msg_id}"), &payload);
        broker::put_blob(&inner.js, &blob, &payload)
            .await
            .map_err(failure)?;
        pending.blob = Some(blob.name.clone());
        payload = serde_json::to_vec(&work.envelope(blob)).map_err(|e| failure(e.to_string()))?;
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id.as_str());
    let pool = request
        .model
        .as_ref()
        .and_then(|m| inner.options.pools.get(m))
        .unwrap_or(&inner.options.pool)
        .clone();
    let subject = wire::work_subject(&pool);
    let payload = bytes::Bytes::from(payload);
    // A broker that is away (restarting) gets the request when it is back;
    // the message id keeps a request it stored before it went once.
    let deadline = tokio::time::Instant::now() + inner.options.agent_timeout;
    let ack = loop {
        let tried = async {
            let published = inner
                .js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
                .map_err(|e| format!("cannot publish the agent to the broker: {e}"))?;
            tokio::time::timeout(Duration::from_secs(5), published)
                .await
                .map_err(|_| "the broker did not acknowledge the agent within 5s".to_string())?
                .map_err(|e| format!("the broker refused the agent: {e}"))
        }
        .await;
        match tried {
            Ok(ack) => break ack,
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(failure(e)),
            Err(e) => {
                tracing::debug!("dispatch: agent {}: {e}; trying again", request.id);
                tokio::time::sleep(Duration::from_millis(500)).await;
                // A broker back without its store has no streams yet.
                let _ = broker::ensure_streams(&inner.js).await;
            }
        }
    };
    if let Some(w) = inner
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .waiting
        .get_mut(&key)
    {
        w.published = Some(Published {
            subject,
            payload,
            msg_id,
            seq: ack.sequence,
            again: 0,
        });
    }
    match tokio::time::timeout(inner.options.agent_timeout, rx).await {
        Err(_) => Err(failure(format!(
            "no worker of pool `{pool}` answered within {:?} (are workers running? `wasmflow worker --nats URL --pool {pool}`)",
            inner.options.agent_timeout
        ))),
        Ok(Err(_)) => Err(failure("dispatch: the results listener stopped".into())),
        Ok(Ok(result)) => result.into_agent_result(),
    }
}
