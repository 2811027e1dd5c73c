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
    let client = broker::connect(&options.broker).await?;
    let js = jetstream::new(client);
    broker::ensure_streams(&js).await?;
    let results = js
        .get_stream(wire::RESULT_STREAM)
        .await
        .map_err(|e| format!("cannot open the {} stream: {e}", wire::RESULT_STREAM))?;
    let stream = js
        .get_stream(wire::WORK_STREAM)
        .await
        .map_err(|e| format!("cannot open the {} stream: {e}", wire::WORK_STREAM))?;
    let durable = format!("pool-{}", options.pool);
    let consumer = stream
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
        .map_err(|e| format!("cannot join pool `{}`: {e}", options.pool))?;
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
    loop {
        if *stop.borrow() {
            break;
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
                tracing::warn!("worker: cannot fetch from pool: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = stop.changed() => break,
                next = batch.next() => next,
            };
            let Some(Ok(message)) = next else {
                break;
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
                permit,
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
    Ok(())
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
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let request: Option<WorkRequest> = (message.payload.len() <= wire::MAX_MESSAGE)
        .then(|| serde_json::from_slice(&message.payload).ok())
        .flatten();
    let Some(request) = request.filter(|r| r.v == wire::VERSION) else {
        tracing::warn!("worker: dropped a request that does not parse");
        let _ = message.ack_with(AckKind::Term).await;
        return;
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
    let outcome = match refusal {
        Some(reason) => Err(AgentFailure {
            reason,
            usage: Usage::default(),
            kind: FailureKind::Refused,
        }),
        None => {
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
            let work = backend.run(agent_request);
            tokio::pin!(work);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut work => break Some(outcome),
                    _ = heartbeat.tick() => {
                        if lease.lapsed(options.ack_wait) {
                            break None;
                        }
                        if message.ack_with(AckKind::Progress).await.is_ok() {
                            lease.renewed();
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
    let result = WorkResult::new(&request, &options.name, &outcome);
    let Ok(payload) = serde_json::to_vec(&result) else {
        return;
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", done_key.as_str());
    let sent = match js
        .publish_with_headers(subject, headers, payload.into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
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
    let _ = message.ack().await;
}

/// A request's lease as this worker sees it: renewed when an in-progress
/// ack goes out. The server's clock starts when the ack arrives, later, so
/// a lease lapsed here has lapsed there too.
struct Lease {
    renewed: Instant,
}

impl Lease {
    fn renewed(&mut self) {
        self.renewed = Instant::now();
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
