//! Caps and queueing for live agents.
//!
//! At most `concurrency` agents run at once; the rest wait in a queue and
//! start in the order the script called `agent()`, except that a higher
//! priority starts first: `pipeline()` gives each agent its stage index, so
//! an item's later stages do not wait behind every item's first stage.
//! Each running agent is a tokio task that sends its end back on the run's
//! channel.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;

use crate::backend::{AgentBackend, AgentFailure, AgentOutput, AgentReply, AgentRequest, Usage};
use crate::run::events::{Counts, EventSink};
use crate::script::schema::parse_reply;

/// How an `agent()` call ended, after any schema retries.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEnd {
    /// `agent()` resolves to the output.
    Reply(AgentReply),
    /// A terminal failure: `agent()` resolves `null`.
    Failed(AgentFailure),
    /// `agent()` throws this message (the schema was never met).
    Thrown {
        /// The message `agent()` throws.
        message: String,
        /// Tokens over all tries.
        usage: Usage,
    },
    /// Abandoned on request (`wasmflow skip`): `agent()` resolves `null`;
    /// a resume runs it again.
    Skipped {
        /// Who asked.
        by: String,
        /// Whether it was still waiting for a slot.
        queued: bool,
    },
}

/// Something the driver waits for.
pub enum Wake {
    /// An agent ended.
    Agent {
        /// Its id.
        id: u64,
        /// How.
        end: AgentEnd,
        /// What the backend said when it released the agent.
        notes: Vec<String>,
    },
    /// A timer fired.
    Timer {
        /// Its id.
        id: u64,
    },
}

/// Runs one agent call to its end, then lets the backend release what the
/// agent held (a session, a worktree).
pub async fn run_agent(
    backend: Arc<dyn AgentBackend>,
    request: AgentRequest,
    max_tries: u32,
) -> (AgentEnd, Vec<String>) {
    let id = request.id;
    let end = run_tries(backend.clone(), request, max_tries).await;
    (end, backend.finish(id).await)
}

/// With a schema, each invalid reply is sent back with its validation
/// errors, up to `max_tries` tries in all.
async fn run_tries(
    backend: Arc<dyn AgentBackend>,
    mut request: AgentRequest,
    max_tries: u32,
) -> AgentEnd {
    let Some(schema) = request.schema.clone() else {
        return match backend.run(request).await {
            Ok(reply) => AgentEnd::Reply(reply),
            Err(failure) => AgentEnd::Failed(failure),
        };
    };
    let mut usage = Usage::default();
    let max_tries = max_tries.max(1);
    for attempt in 1..=max_tries {
        request.attempt = attempt;
        let reply = match backend.run(request.clone()).await {
            Ok(reply) => reply,
            Err(failure) => {
                usage += failure.usage;
                return AgentEnd::Failed(AgentFailure {
                    reason: failure.reason,
                    usage,
                    kind: failure.kind,
                });
            }
        };
        usage += reply.usage;
        let value = match reply.output {
            AgentOutput::Json(v) => Some(v),
            AgentOutput::Text(t) => parse_reply(&t),
        };
        let errors = match &value {
            Some(v) => schema.errors(v),
            None => vec!["the reply is not JSON".to_string()],
        };
        match value {
            Some(v) if errors.is_empty() => {
                return AgentEnd::Reply(AgentReply {
                    output: AgentOutput::Json(v),
                    usage,
                });
            }
            _ => request.feedback = errors,
        }
    }
    AgentEnd::Thrown {
        message: format!(
            "agent output did not match opts.schema after {max_tries} tries: {}",
            request.feedback.join("; ")
        ),
        usage,
    }
}

/// A queued agent; the heap pops the highest priority, then the lowest id
/// (the earliest call).
struct Queued(AgentRequest);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .priority
            .cmp(&other.0.priority)
            .then_with(|| other.0.id.cmp(&self.0.id))
    }
}

/// What the scheduler remembers of a started agent.
pub struct Running {
    /// Its label.
    pub label: String,
    /// Its phase.
    pub phase: Option<String>,
    /// Its model alias.
    pub model: Option<String>,
    /// When it started.
    pub started: Instant,
    /// Tries started by `retry` (0: none).
    pub retries: u32,
    abort: AbortHandle,
    /// What it runs, for a retry.
    request: Option<AgentRequest>,
}

/// Runs agents under the concurrency cap, highest priority first.
pub struct Scheduler {
    backend: Arc<dyn AgentBackend>,
    concurrency: usize,
    queue: BinaryHeap<Queued>,
    running: HashMap<u64, Running>,
    tx: UnboundedSender<Wake>,
    schema_tries: u32,
    /// Most agents that ever ran at once.
    pub peak: usize,
}

impl Scheduler {
    /// A scheduler sending ends to `tx`.
    pub fn new(
        backend: Arc<dyn AgentBackend>,
        concurrency: usize,
        schema_tries: u32,
        tx: UnboundedSender<Wake>,
    ) -> Scheduler {
        Scheduler {
            backend,
            concurrency: concurrency.max(1),
            queue: BinaryHeap::new(),
            running: HashMap::new(),
            tx,
            schema_tries,
            peak: 0,
        }
    }

    /// The backend agents run on.
    pub fn backend(&self) -> &Arc<dyn AgentBackend> {
        &self.backend
    }

    /// Agents running or queued.
    pub fn in_flight(&self) -> usize {
        self.queue.len() + self.running.len()
    }

    /// Counts for progress lines.
    pub fn counts(&self, done: u64, failed: u64) -> Counts {
        Counts {
            running: self.running.len(),
            queued: self.queue.len(),
            done,
            failed,
        }
    }

    /// Queues an agent behind those already waiting.
    pub fn submit(&mut self, request: AgentRequest, events: &mut EventSink) {
        if events.records_agents() {
            events.agent_queued(
                request.id,
                || request.display_label(),
                request.phase.as_deref(),
            );
        }
        self.queue.push(Queued(request));
    }

    /// Starts queued agents while there is room.
    pub fn pump(&mut self, events: &mut EventSink) {
        while self.running.len() < self.concurrency {
            let Some(Queued(request)) = self.queue.pop() else {
                break;
            };
            let id = request.id;
            let label = request.display_label();
            let phase = request.phase.clone();
            let model = request.model.clone();
            events.agent_started(id, &label, phase.as_deref(), model.as_deref());
            let abort = self.start(request.clone());
            self.running.insert(
                id,
                Running {
                    label,
                    phase,
                    model,
                    started: Instant::now(),
                    retries: 0,
                    abort,
                    request: Some(request),
                },
            );
            self.peak = self.peak.max(self.running.len());
        }
    }

    fn start(&self, request: AgentRequest) -> AbortHandle {
        let id = request.id;
        let tx = self.tx.clone();
        let work = run_agent(self.backend.clone(), request, self.schema_tries);
        tokio::spawn(async move {
            let (end, notes) = work.await;
            // The driver may already be gone (run ended): nothing to do.
            let _ = tx.send(Wake::Agent { id, end, notes });
        })
        .abort_handle()
    }

    /// Abandons agent `id`, asked by `by`: a running one's task is
    /// cancelled (its process or request with it), a queued one leaves the
    /// queue; its end comes back through the channel as `Skipped`.
    pub fn skip(&mut self, id: u64, by: &str) -> Result<(), String> {
        let queued = if let Some(r) = self.running.get(&id) {
            r.abort.abort();
            false
        } else {
            let before = self.queue.len();
            let mut request = None;
            self.queue = std::mem::take(&mut self.queue)
                .into_iter()
                .filter_map(|Queued(r)| {
                    if r.id == id {
                        request = Some(r);
                        None
                    } else {
                        Some(Queued(r))
                    }
                })
                .collect();
            let Some(request) = request else {
                return Err(format!(
                    "agent {id} is neither running nor queued (it finished, or no agent has that id)"
                ));
            };
            debug_assert_eq!(self.queue.len() + 1, before);
            self.running.insert(
                id,
                Running {
                    label: request.display_label(),
                    phase: request.phase.clone(),
                    model: request.model.clone(),
                    started: Instant::now(),
                    retries: 0,
                    abort: tokio::spawn(async {}).abort_handle(),
                    request: None,
                },
            );
            true
        };
        let tx = self.tx.clone();
        let backend = self.backend.clone();
        let by = by.to_string();
        tokio::spawn(async move {
            // What the agent held (a session, a worktree) is released.
            let notes = backend.finish(id).await;
            let _ = tx.send(Wake::Agent {
                id,
                end: AgentEnd::Skipped { by, queued },
                notes,
            });
        });
        Ok(())
    }

    /// Abandons agent `id`'s running try and starts the same request again
    /// at once (a new attempt of the same agent); returns how many retries
    /// it has had.
    pub fn retry(&mut self, id: u64) -> Result<u32, String> {
        let Some(running) = self.running.get(&id) else {
            return Err(if self.queue.iter().any(|q| q.0.id == id) {
                format!("agent {id} has not started yet: nothing to retry")
            } else {
                format!("agent {id} is not running (it finished, or no agent has that id)")
            });
        };
        let Some(mut request) = running.request.clone() else {
            return Err(format!("agent {id} is being skipped"));
        };
        running.abort.abort();
        request.attempt += 1;
        let abort = self.start(request.clone());
        let running = self.running.get_mut(&id).expect("present above");
        running.abort = abort;
        running.retries += 1;
        running.request = Some(request);
        Ok(running.retries)
    }

    /// A running agent's label.
    pub fn label_of(&self, id: u64) -> Option<String> {
        self.running.get(&id).map(|r| r.label.clone())
    }

    /// Forgets a finished agent and returns what was known of it.
    pub fn finished(&mut self, id: u64) -> Option<Running> {
        self.running.remove(&id)
    }

    /// Agents running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Forgets every queued agent (a pause: none of them starts).
    pub fn drop_queue(&mut self) {
        self.queue.clear();
    }

    /// Stops everything still running or queued (the run has ended).
    pub fn abort_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.abort.abort();
        }
        self.queue.clear();
    }
}
