//! The worker's side: takes agent requests from its pool, runs each on its
//! local backend, and sends the signed result back.
//!
//! A request's lease is the work-queue consumer's ack wait: the worker
//! extends it with in-progress acks while the agent runs, so a worker
//! that dies costs only its in-flight agents, redelivered to another worker
//! once their lease lapses. Before running a request the worker asks the
//! results stream for the try's subject: a try whose result was sent is
//! not run again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt;
use tokio::sync::{Semaphore, watch};
use wasmflow::backend::{AgentBackend, AgentFailure, FailureKind, Usage};

use crate::broker::{self, BrokerOptions};
use crate::wire::{self, WorkRequest, WorkResult};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The broker.
    pub broker: BrokerOptions,
    /// The pool it takes work from.
    pub pool: String,
    /// Agents at once.
    pub slots: usize,
    /// The lease of one request: redelivered elsewhere when not extended
    /// for this long.
    pub ack_wait: Duration,
    /// On SIGTERM: how long running agents may take to finish before they
    /// are handed back.
    pub grace: Duration,
    /// Its name in results and logs.
    pub name: String,
    /// Its backend's name (requests for another are refused).
    pub backend_name: String,
    /// Model ids it runs (`None`: any).
    pub models: Option<Vec<String>>,
    /// Deliveries of one request before the pool gives it up and the run
    /// fails that agent (`max_deliver` of the pool's consumer, set by the
    /// worker that creates it).
    pub max_deliver: i64,
}

/// Runs until `stop` turns true, then lets running agents finish within
/// the grace period and hands the rest back.
pub async fn run(
    options: WorkerOptions,
    backend: Arc<dyn AgentBackend>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    wire::check_token("pool", &options.pool)?;
    let (events, mut watched) = tokio::sync::mpsc::unbounded_channel();
    let client = broker::connect_watching(&options.broker, Some(events)).await?;
    // A broker that comes back may have lost its store, and with it the
    // pool's consumer, which a fetch does not report: joined again then.
    let rejoin = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = rejoin.clone();
    tokio::spawn(async move {
        while broker::next_return(&mut watched, "worker").await.is_some() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let js = jetstream::new(client);
    let mut consumer = join_pool(&js, &options).await?;
    // A handle names the stream; it serves again once a broker that lost
    // its store has the stream again.
    let results = js
        .get_stream(wire::RESULT_STREAM)
        .await
        .map_err(|e| format!("cannot open the {} stream: {e}", wire::RESULT_STREAM))?;
    tracing::info!(
        "worker {} takes agents from pool `{}` on {} ({} slots, lease {:?})",
        options.name,
        options.pool,
        options.backend_name,
        options.slots,
        options.ack_wait
    );
    let cancels = Arc::new(Cancels::default());
    let mut cancel_sub = js
        .client()
        .subscribe("wasmflow.cancel.>")
        .await
        .map_err(|e| format!("cannot listen for cancels: {e}"))?;
    let listening = cancels.clone();
    tokio::spawn(async move {
        while let Some(m) = cancel_sub.next().await {
            let mac = String::from_utf8_lossy(&m.payload).into_owned();
            listening.cancel(m.subject.as_str(), &mac);
        }
    });
    let options = Arc::new(options);
    let slots = Arc::new(Semaphore::new(options.slots));
    let (give_up_tx, give_up) = watch::channel(false);
    let stats = Arc::new(Stats {
        started_ms: wire::now_ms(),
        host: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        done: AtomicU64::new(0),
    });
    let beating = tokio::spawn(heartbeat(
        js.clone(),
        options.clone(),
        slots.clone(),
        stats.clone(),
        stop.clone(),
    ));
    loop {
        if *stop.borrow() {
            break;
        }
        if rejoin.swap(false, Ordering::Relaxed) {
            match join_pool(&js, &options).await {
                Ok(c) => consumer = c,
                Err(e) => {
                    tracing::warn!("worker: {e}; trying again");
                    rejoin.store(true, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = stop.changed() => continue,
                permit = slots.clone().acquire_owned() => drop(permit),
            }
            continue;
        }
        let batch = consumer
            .batch()
            .max_messages(free)
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                // The broker restarted, perhaps without its store: the
                // pool's consumer is made again.
                tracing::warn!("worker: cannot fetch from pool: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(c) = join_pool(&js, &options).await {
                    consumer = c;
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = stop.changed() => break,
                next = batch.next() => next,
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::debug!("worker: a fetch ended: {e}");
                    if let Ok(c) = join_pool(&js, &options).await {
                        consumer = c;
                    }
                    break;
                }
                None => break,
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            tokio::spawn(handle(
                options.clone(),
                cancels.clone(),
                backend.clone(),
                js.clone(),
                results.clone(),
                message,
                give_up.clone(),
                (permit, stats.clone()),
            ));
        }
    }
    // Stop taking work; let running agents finish within the grace period.
    let all = options.slots as u32;
    let drained = tokio::time::timeout(options.grace, slots.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!(
            "worker {}: agents still running after the {:?} grace period are handed back",
            options.name,
            options.grace
        );
        let _ = give_up_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(all)).await;
    }
    beating.abort();
    let _ = publish_heartbeat(&js, &options, &slots, &stats, "stopped").await;
    let _ = tokio::time::timeout(Duration::from_secs(2), js.client().flush()).await;
    Ok(())
}

/// The whole request an envelope names, from the object store.
async fn fetch_request(
    js: &jetstream::Context,
    envelope: &WorkRequest,
) -> Result<WorkRequest, String> {
    let Some(blob) = &envelope.blob else {
        return Ok(envelope.clone());
    };
    let what = format!("the request of agent {}", envelope.agent);
    let (_, bytes) = broker::fetch_blob(js, blob, &what).await?;
    envelope.from_blob(&bytes)
}

/// The pool's durable work-queue consumer, made (with the streams) when
/// missing: at start, and again when a broker comes back without them.
async fn join_pool(
    js: &jetstream::Context,
    options: &WorkerOptions,
) -> Result<consumer::Consumer<consumer::pull::Config>, String> {
    broker::ensure_streams(js).await?;
    let stream = js
        .get_stream(wire::WORK_STREAM)
        .await
        .map_err(|e| format!("cannot open the {} stream: {e}", wire::WORK_STREAM))?;
    let durable = format!("pool-{}", options.pool);
    stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: wire::work_subject(&options.pool),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: options.ack_wait,
                max_deliver: options.max_deliver,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot join pool `{}`: {e}", options.pool))
}

/// What the heartbeat reports beside the slots.
struct Stats {
    started_ms: u64,
    host: String,
    done: AtomicU64,
}

/// Says every few seconds that this worker is alive, and how busy
/// (`wasmflow worker ls`).
async fn heartbeat(
    js: jetstream::Context,
    options: Arc<WorkerOptions>,
    slots: Arc<Semaphore>,
    stats: Arc<Stats>,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(wire::HEARTBEAT_SECS));
    loop {
        tick.tick().await;
        let state = if *stop.borrow() {
            "draining"
        } else {
            "running"
        };
        if let Err(e) = publish_heartbeat(&js, &options, &slots, &stats, state).await {
            tracing::debug!("worker: heartbeat not sent: {e}");
        }
    }
}

async fn publish_heartbeat(
    js: &jetstream::Context,
    options: &WorkerOptions,
    slots: &Semaphore,
    stats: &Stats,
    state: &str,
) -> Result<(), String> {
    let beat = wire::Heartbeat {
        v: wire::VERSION,
        name: options.name.clone(),
        pool: options.pool.clone(),
        backend: options.backend_name.clone(),
        models: options.models.clone(),
        slots: options.slots,
        busy: options.slots.saturating_sub(slots.available_permits()),
        done: stats.done.load(Ordering::Relaxed),
        state: state.to_string(),
        started_ms: stats.started_ms,
        at_ms: wire::now_ms(),
        host: stats.host.clone(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let payload = serde_json::to_vec(&beat).map_err(|e| e.to_string())?;
    js.client()
        .publish(
            wire::worker_subject(&options.pool, &options.name),
            payload.into(),
        )
        .await
        .map_err(|e| e.to_string())
}

/// Tries a coordinator no longer wants: those running here are abandoned,
/// and ones cancelled before they arrive are not started.
#[derive(Default)]
struct Cancels {
    state: Mutex<CancelState>,
}

#[derive(Default)]
struct CancelState {
    /// Running tries: subject -> (run secret, its abandon switch).
    running: HashMap<String, (String, watch::Sender<bool>)>,
    /// Recently cancelled subjects whose try was not here (bounded).
    early: VecDeque<(String, String)>,
}

impl Cancels {
    /// Registers a running try; `None` when it was cancelled already.
    fn register(&self, subject: &str, secret: &str) -> Option<watch::Receiver<bool>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mac = wire::cancel_mac(secret, subject);
        if s.early.iter().any(|(subj, m)| subj == subject && *m == mac) {
            return None;
        }
        let (tx, rx) = watch::channel(false);
        s.running
            .insert(subject.to_string(), (secret.to_string(), tx));
        Some(rx)
    }

    fn done(&self, subject: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.running.remove(subject);
    }

    fn cancel(&self, subject: &str, mac: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.running.get(subject) {
            Some((secret, tx)) => {
                if wire::cancel_mac(secret, subject) == mac {
                    let _ = tx.send(true);
                }
            }
            None => {
                s.early.push_back((subject.to_string(), mac.to_string()));
                if s.early.len() > 10_000 {
                    s.early.pop_front();
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    options: Arc<WorkerOptions>,
    cancels: Arc<Cancels>,
    backend: Arc<dyn AgentBackend>,
    js: jetstream::Context,
    results: jetstream::stream::Stream,
    message: jetstream::Message,
    mut give_up: watch::Receiver<bool>,
    (_permit, stats): (tokio::sync::OwnedSemaphorePermit, Arc<Stats>),
) {
    let request: Option<WorkRequest> = (message.payload.len() <= wire::MAX_MESSAGE)
        .then(|| serde_json::from_slice(&message.payload).ok())
        .flatten();
    let Some(request) = request.filter(|r| r.v == wire::VERSION) else {
        tracing::warn!("worker: dropped a request that does not parse");
        let _ = message.ack_with(AckKind::Term).await;
        return;
    };
    // A request too big for a message: the whole of it is in the object
    // store. One that cannot be had fails the try (its run retries it).
    let (request, unreadable) = match &request.blob {
        None => (request, None),
        Some(_) => match fetch_request(&js, &request).await {
            Ok(full) => (full, None),
            Err(e) => {
                tracing::warn!("worker {}: {e}", options.name);
                (request, Some(e))
            }
        },
    };
    let mut lease = Lease {
        renewed: Instant::now(),
    };
    let done_key = wire::msg_id(&request.run, request.agent, request.attempt);
    let subject = wire::result_subject(&request.run, request.agent, request.attempt);
    // A redelivery, or a resumed coordinator re-queueing a try whose result
    // went out already: not run twice.
    if results
        .get_last_raw_message_by_subject(&subject)
        .await
        .is_ok()
    {
        let _ = message.ack().await;
        return;
    }
    let refusal = if request.backend != options.backend_name {
        Some(format!(
            "worker {} runs agents on `{}`; it has no `{}` backend",
            options.name, options.backend_name, request.backend
        ))
    } else {
        match (&options.models, &request.model) {
            (Some(allowed), Some(m)) if !allowed.iter().any(|a| a == m) => Some(format!(
                "worker {} does not run model `{m}` (it runs {})",
                options.name,
                allowed.join(", ")
            )),
            _ => None,
        }
    };
    let outcome = match (unreadable, refusal) {
        (Some(reason), _) => Err(AgentFailure {
            reason,
            usage: Usage::default(),
            kind: FailureKind::Other,
        }),
        (None, Some(reason)) => Err(AgentFailure {
            reason,
            usage: Usage::default(),
            kind: FailureKind::Refused,
        }),
        (None, None) => {
            let agent_request = match request.to_agent_request() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("worker: a request's schema does not compile: {e}");
                    let _ = message.ack_with(AckKind::Term).await;
                    return;
                }
            };
            let cancel_key = wire::cancel_subject(&request.run, request.agent, request.attempt);
            let Some(mut cancelled) = cancels.register(&cancel_key, &request.secret) else {
                let _ = message.ack_with(AckKind::Term).await;
                return;
            };
            // The lease, extended while the agent runs.
            let beat = options.ack_wait / 3;
            let mut heartbeat = tokio::time::interval(beat.max(Duration::from_millis(100)));
            heartbeat.tick().await;
            tracing::info!(
                "worker {}: started agent {} of run {} (try {})",
                options.name,
                request.agent,
                request.run,
                request.attempt
            );
            let work = backend.run(agent_request);
            tokio::pin!(work);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut work => break Some(outcome),
                    _ = heartbeat.tick() => {
                        if lease.lapsed(options.ack_wait) {
                            break None;
                        }
                        // Renewed only when the broker says so: a progress
                        // ack buffered on a dead link renews nothing.
                        let asked = Instant::now();
                        if let Ok(Ok(())) = tokio::time::timeout(beat, message.double_ack_with(AckKind::Progress)).await {
                            lease.renewed_at(asked);
                        }
                    }
                    _ = cancelled.changed() => {
                        // The coordinator no longer wants it (stop, skip,
                        // retry): abandoned, never redelivered.
                        cancels.done(&cancel_key);
                        let _ = message.ack_with(AckKind::Term).await;
                        tracing::info!("worker {}: agent {} of run {} cancelled", options.name, request.agent, request.run);
                        return;
                    }
                    _ = give_up.changed() => {
                        // Shutting down past the grace period: back to the
                        // pool for another worker.
                        cancels.done(&cancel_key);
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                        return;
                    }
                }
            };
            cancels.done(&cancel_key);
            match outcome {
                Some(o) => o,
                None => {
                    lease.fenced(&options.name, request.agent);
                    return;
                }
            }
        }
    };
    // Paused or cut off past the lease: another worker has the request
    // now; this one neither sends nor acks (fencing).
    if lease.lapsed(options.ack_wait) {
        lease.fenced(&options.name, request.agent);
        return;
    }
    let mut result = WorkResult::new(&request, &options.name, &outcome);
    let Ok(mut payload) = serde_json::to_vec(&result) else {
        return;
    };
    if payload.len() > wire::BLOB_ABOVE {
        // Over the message limit: the output goes through the object
        // store, and the message carries its size and sha256.
        let bytes = result.externalise(&request.secret);
        let stored = match &result.blob {
            Some(blob) => broker::put_blob(&js, blob, &bytes).await,
            None => Ok(()),
        };
        if let Err(e) = stored {
            tracing::warn!(
                "worker {}: cannot store the {}-byte output of agent {}: {e}; it will be redelivered",
                options.name,
                bytes.len(),
                request.agent
            );
            return;
        }
        let Ok(p) = serde_json::to_vec(&result) else {
            return;
        };
        payload = p;
    }
    let payload = bytes::Bytes::from(payload);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", done_key.as_str());
    // A broker away for a moment gets the result when it is back, while
    // the lease holds; the message id stores it once.
    let mut sent = false;
    while !lease.lapsed(options.ack_wait) {
        let tried = async {
            js.publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match tried {
            Ok(_) => {
                sent = true;
                break;
            }
            Err(e) => {
                tracing::debug!("worker: result of agent {} not sent: {e}", request.agent);
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = broker::ensure_streams(&js).await;
            }
        }
    }
    if !sent {
        // Not acked: the lease lapses and another worker (or this one)
        // runs it again; the journal keeps it once.
        tracing::warn!(
            "worker {}: could not send the result of agent {}; it will be redelivered",
            options.name,
            request.agent
        );
        return;
    }
    stats.done.fetch_add(1, Ordering::Relaxed);
    let _ = message.ack().await;
}

/// A request's lease as this worker sees it: renewed when an in-progress
/// ack goes out. The server's clock starts when the ack arrives, later, so
/// a lease lapsed here has lapsed there too.
struct Lease {
    renewed: Instant,
}

impl Lease {
    fn renewed_at(&mut self, asked: Instant) {
        self.renewed = asked;
    }

    fn lapsed(&self, ack_wait: Duration) -> bool {
        self.renewed.elapsed() > ack_wait
    }

    fn fenced(&self, worker: &str, agent: u64) {
        tracing::warn!(
            "worker {worker}: the lease on agent {agent} lapsed ({:.1}s without renewal: paused or cut off); its request went to another worker, so its result is dropped, not sent",
            self.renewed.elapsed().as_secs_f64()
        );
    }
}
