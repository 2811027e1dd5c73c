//! Caps and queueing for live agents.
//!
//! At most `concurrency` agents run at once; the rest wait in a FIFO queue,
//! so agents start in the order the script called `agent()`. Each running
//! agent is a tokio task that sends its end back on the run's channel.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;

use crate::backend::{AgentBackend, AgentRequest, AgentResult};
use crate::events::{Counts, EventSink};

/// Something the driver waits for.
pub enum Wake {
    Agent { id: u64, result: AgentResult },
    Timer { id: u64 },
}

/// What the scheduler remembers of a started agent.
pub struct Running {
    pub label: String,
    pub phase: Option<String>,
    pub started: Instant,
    abort: AbortHandle,
}

pub struct Scheduler {
    backend: Arc<dyn AgentBackend>,
    concurrency: usize,
    queue: VecDeque<AgentRequest>,
    running: HashMap<u64, Running>,
    tx: UnboundedSender<Wake>,
    /// Most agents that ever ran at once.
    pub peak: usize,
}

impl Scheduler {
    pub fn new(
        backend: Arc<dyn AgentBackend>,
        concurrency: usize,
        tx: UnboundedSender<Wake>,
    ) -> Scheduler {
        Scheduler {
            backend,
            concurrency: concurrency.max(1),
            queue: VecDeque::new(),
            running: HashMap::new(),
            tx,
            peak: 0,
        }
    }

    /// Agents running or queued.
    pub fn in_flight(&self) -> usize {
        self.queue.len() + self.running.len()
    }

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
        events.agent_queued(
            request.id,
            &request.display_label(),
            request.phase.as_deref(),
        );
        self.queue.push_back(request);
    }

    /// Starts queued agents while there is room.
    pub fn pump(&mut self, events: &mut EventSink) {
        while self.running.len() < self.concurrency {
            let Some(request) = self.queue.pop_front() else {
                break;
            };
            let id = request.id;
            let label = request.display_label();
            let phase = request.phase.clone();
            events.agent_started(id, &label, phase.as_deref());
            let tx = self.tx.clone();
            let work = self.backend.run(request);
            let task = tokio::spawn(async move {
                let result = work.await;
                // The driver may already be gone (run ended): nothing to do.
                let _ = tx.send(Wake::Agent { id, result });
            });
            self.running.insert(
                id,
                Running {
                    label,
                    phase,
                    started: Instant::now(),
                    abort: task.abort_handle(),
                },
            );
            self.peak = self.peak.max(self.running.len());
        }
    }

    /// Forgets a finished agent and returns what was known of it.
    pub fn finished(&mut self, id: u64) -> Option<Running> {
        self.running.remove(&id)
    }

    /// Stops everything still running or queued (the run has ended).
    pub fn abort_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.abort.abort();
        }
        self.queue.clear();
    }
}
