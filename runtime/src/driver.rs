//! The event loop across the sandbox boundary.
//!
//! One fresh store per run, on a current-thread tokio runtime (sequential
//! agent round trips are several times cheaper than on the multi-thread
//! one). The guest runs in slices: `start`, then one `deliver` per batch of
//! ended agents and timers; between slices the driver starts spawned agents
//! and waits. Every slice gets a fresh fuel allowance.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use wasmtime::Store;

use crate::backend::{AgentBackend, AgentOutput};
use crate::bindings::{self, AgentOutcome, Event, ScriptError, Step};
use crate::engine::WorkflowEngine;
use crate::error::{LimitKind, RunError, ScriptFailure};
use crate::events::EventSink;
use crate::host::{HostState, TimerOp};
use crate::limits::Limits;
use crate::scheduler::{AgentEnd, Scheduler, Wake};
use crate::script::{Script, line_in_stack};
use crate::summary::{AgentCost, AgentNote, Failure, Stats};

/// What a run needs besides the script.
pub struct RunConfig {
    pub limits: Limits,
    /// The value the script sees as `args`, as JSON text.
    pub args_json: String,
    pub backend: Arc<dyn AgentBackend>,
    /// `budget.total`, in output tokens.
    pub budget: Option<u64>,
    /// Tries for an agent whose output must match a schema.
    pub schema_tries: u32,
    /// Unknown `agent()` options and `meta` keys are errors.
    pub strict: bool,
    /// Saved workflows for `workflow(name)`.
    pub saved: Vec<crate::saved::SearchDir>,
    /// Model aliases and prices.
    pub config: std::sync::Arc<crate::config::Config>,
    /// The default model alias (`--model`, else the config's).
    pub default_model: Option<String>,
    /// `--max-cost`, USD.
    pub max_cost: Option<f64>,
    /// End the run after this many consecutive quota or auth failures
    /// (0: never).
    pub circuit_breaker: u32,
}

impl RunConfig {
    /// Defaults for everything but the backend.
    pub fn new(backend: Arc<dyn AgentBackend>) -> RunConfig {
        RunConfig {
            limits: Limits::default(),
            args_json: "null".into(),
            backend,
            budget: None,
            schema_tries: 5,
            strict: false,
            saved: Vec::new(),
            config: Default::default(),
            default_model: None,
            max_cost: None,
            circuit_breaker: 3,
        }
    }
}

/// How a run ended, with its accounting.
pub struct RunOutcome {
    pub result: Result<Value, RunError>,
    pub stats: Stats,
    /// Events sink, handed back so the caller can close it.
    pub events: EventSink,
}

/// Runs `script` to its end on a fresh current-thread tokio runtime.
pub fn run_script(
    engine: &WorkflowEngine,
    script: &Script,
    config: RunConfig,
    events: EventSink,
) -> RunOutcome {
    // All drivers: timers, and I/O plus signals for backends that run
    // processes or talk to servers.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return RunOutcome {
                result: Err(RunError::Internal(
                    anyhow::Error::new(e).context("starting tokio"),
                )),
                stats: Stats::default(),
                events,
            };
        }
    };
    rt.block_on(run_async(engine, script, config, events))
}

/// Runs `script` on the caller's current-thread tokio runtime.
pub async fn run_async(
    engine: &WorkflowEngine,
    script: &Script,
    config: RunConfig,
    events: EventSink,
) -> RunOutcome {
    let mut store = Store::new(
        &engine.engine,
        HostState::new(events, config.limits.max_agents, config.limits.memory_bytes),
    );
    store.limiter(|s| &mut s.limiter);
    {
        let data = store.data_mut();
        data.strict = config.strict;
        data.max_cost = config.max_cost;
        data.routing =
            crate::host::Routing::new(config.config.clone(), config.default_model.clone(), script);
        data.children = crate::host::ChildLoader {
            base_dir: script
                .path
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            saved: config.saved.clone(),
            check: crate::check::CheckOptions {
                strict: config.strict,
            },
        };
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut run = Run {
        store,
        limits: config.limits.clone(),
        scheduler: Scheduler::new(
            config.backend,
            config.limits.concurrency,
            config.schema_tries,
            tx.clone(),
        ),
        tx,
        rx,
        timers: HashMap::new(),
        stats: Stats::default(),
        filename: script.filename.clone(),
        breaker: Breaker {
            threshold: config.circuit_breaker,
            consecutive: 0,
            tripped: None,
        },
    };
    let options = bindings::RunOptions {
        budget_total: config.budget,
    };
    // What would fail every agent (a missing key, a dead server, a typo in
    // a model name) stops the run before the first spawn.
    let planned = run.store.data().routing.planned(script);
    let result = match run.scheduler.backend().check(planned).await {
        Err(message) => Err(RunError::Input(crate::error::InputError::Invalid(message))),
        Ok(()) => {
            run.execute(engine, script, &config.args_json, options)
                .await
        }
    };
    run.scheduler.abort_all();
    for (_, t) in run.timers.drain() {
        t.abort();
    }
    run.stats.agents.spawned = run.store.data().spawned;
    run.stats.peak_concurrency = run.scheduler.peak;
    let stats = std::mem::take(&mut run.stats);
    let events = std::mem::replace(&mut run.store.data_mut().events, EventSink::silent());
    RunOutcome {
        result,
        stats,
        events,
    }
}

struct Run {
    store: Store<HostState>,
    limits: Limits,
    scheduler: Scheduler,
    tx: mpsc::UnboundedSender<Wake>,
    rx: mpsc::UnboundedReceiver<Wake>,
    timers: HashMap<u64, AbortHandle>,
    stats: Stats,
    filename: String,
    breaker: Breaker,
}

/// Counts consecutive quota/auth failures; any answer resets it.
struct Breaker {
    threshold: u32,
    consecutive: u32,
    /// Why it tripped.
    tripped: Option<String>,
}

impl Breaker {
    fn record(&mut self, end: &AgentEnd) {
        match end {
            AgentEnd::Reply(_) => self.consecutive = 0,
            AgentEnd::Failed(f) if f.kind.trips_breaker() => {
                self.consecutive += 1;
                if self.threshold > 0
                    && self.consecutive >= self.threshold
                    && self.tripped.is_none()
                {
                    self.tripped = Some(format!(
                        "circuit breaker: {} agents in a row failed for lack of quota or credentials (last: {}); no new agents were started. Fix the account or wait, then run again (--circuit-breaker sets the count)",
                        self.consecutive, f.reason
                    ));
                }
            }
            _ => {}
        }
    }
}

impl Run {
    async fn execute(
        &mut self,
        engine: &WorkflowEngine,
        script: &Script,
        args_json: &str,
        options: bindings::RunOptions,
    ) -> Result<Value, RunError> {
        let deadline = tokio::time::Instant::now() + self.limits.wall_clock;
        self.refuel()?;
        let instance = engine
            .pre
            .instantiate(&mut self.store)
            .map_err(|e| self.trap(e, "instantiating the engine"))?;
        self.refuel()?;
        let bytecode = instance
            .wasmflow_workflow_compiler()
            .call_compile(&mut self.store, &script.wrapped, &script.filename)
            .map_err(|e| self.trap(e, "compiling the script"))?
            .map_err(|e| self.script_error(e))?;
        instance
            .wasmflow_workflow_compiler()
            .call_load(&mut self.store, &bytecode)
            .map_err(|e| self.trap(e, "loading the script"))?
            .map_err(|e| self.script_error(e))?;
        let driver = instance.wasmflow_workflow_driver();
        self.refuel()?;
        let mut step = driver
            .call_start(&mut self.store, args_json, options)
            .map_err(|e| self.trap(e, "running the script"))?;
        loop {
            match step {
                Step::Done(Ok(())) => return self.take_result(),
                Step::Done(Err(e)) => return Err(self.script_error(e)),
                Step::Waiting(_) => {}
            }
            self.act_on_slice();
            if self.scheduler.in_flight() == 0 && self.timers.is_empty() {
                return Err(RunError::Internal(anyhow::anyhow!(
                    "the engine waits for agents or timers, but none is in flight"
                )));
            }
            let events = self.wait(deadline).await?;
            self.refuel()?;
            step = driver
                .call_deliver(&mut self.store, &events)
                .map_err(|e| self.trap(e, "running the script"))?;
        }
    }

    fn refuel(&mut self) -> Result<(), RunError> {
        self.store
            .set_fuel(self.limits.fuel_per_slice)
            .map_err(|e| RunError::Internal(anyhow::Error::from(e).context("setting fuel")))
    }

    /// Starts what the guest asked for during its last slice.
    fn act_on_slice(&mut self) {
        let data = self.store.data_mut();
        for request in data.new_agents.drain(..) {
            self.scheduler.submit(request, &mut data.events);
        }
        for op in data.timer_ops.drain(..) {
            match op {
                TimerOp::Set { id, delay_ms } => {
                    let tx = self.tx.clone();
                    let task = tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(delay_ms.into())).await;
                        let _ = tx.send(Wake::Timer { id });
                    });
                    self.timers.insert(id, task.abort_handle());
                }
                TimerOp::Clear { id } => {
                    if let Some(t) = self.timers.remove(&id) {
                        t.abort();
                    }
                }
            }
        }
        self.scheduler.pump(&mut data.events);
    }

    /// Waits for at least one event, then takes every other one already
    /// there: the guest gets them as one batch.
    async fn wait(&mut self, deadline: tokio::time::Instant) -> Result<Vec<Event>, RunError> {
        let first = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(w)) => w,
            Ok(None) => return Err(RunError::Internal(anyhow::anyhow!("event channel closed"))),
            Err(_) => {
                return Err(RunError::Limit {
                    kind: LimitKind::WallClock,
                    message: format!(
                        "the run exceeded its wall-clock limit of {:?} (raise it with --timeout)",
                        self.limits.wall_clock
                    ),
                });
            }
        };
        let mut events = Vec::new();
        self.on_wake(first, &mut events);
        while let Ok(w) = self.rx.try_recv() {
            self.on_wake(w, &mut events);
        }
        if let Some(message) = self.breaker.tripped.take() {
            return Err(RunError::Limit {
                kind: LimitKind::CircuitBreaker,
                message,
            });
        }
        // Refill free slots before the guest runs, so queued agents start in
        // call order ahead of whatever the guest spawns next.
        let data = self.store.data_mut();
        self.scheduler.pump(&mut data.events);
        Ok(events)
    }

    fn on_wake(&mut self, wake: Wake, events: &mut Vec<Event>) {
        match wake {
            Wake::Timer { id } => {
                if self.timers.remove(&id).is_some() {
                    events.push(Event::Timer(id));
                }
            }
            Wake::Agent { id, end, notes } => {
                self.breaker.record(&end);
                let Some(running) = self.scheduler.finished(id) else {
                    return;
                };
                let (outcome, usage, failure) = match end {
                    AgentEnd::Reply(reply) => {
                        let outcome = match reply.output {
                            AgentOutput::Text(t) => AgentOutcome::Text(t),
                            AgentOutput::Json(v) => AgentOutcome::Json(v.to_string()),
                        };
                        (outcome, reply.usage, None)
                    }
                    AgentEnd::Failed(f) => (
                        AgentOutcome::Failed(f.reason.clone()),
                        f.usage,
                        Some(f.reason),
                    ),
                    AgentEnd::Thrown { message, usage } => {
                        (AgentOutcome::Error(message.clone()), usage, Some(message))
                    }
                };
                self.stats.tokens += usage;
                let usd = {
                    let routing = &self.store.data().routing;
                    running
                        .model
                        .as_deref()
                        .and_then(|m| routing.config.price(m))
                        .map(|p| p.cost_of(usage))
                };
                self.store.data_mut().spent_usd += usd.unwrap_or(0.0);
                self.stats.cost.add(
                    running.model.as_deref(),
                    running.phase.as_deref(),
                    usage,
                    usd,
                );
                self.stats.per_agent.push(AgentCost {
                    id,
                    label: running.label.clone(),
                    phase: running.phase.clone(),
                    model: running.model.clone(),
                    usage,
                    usd,
                    ok: failure.is_none(),
                });
                for note in notes {
                    self.store
                        .data_mut()
                        .events
                        .note(&format!("{}: {note}", running.label));
                    self.stats.notes.push(AgentNote {
                        id,
                        label: running.label.clone(),
                        note,
                    });
                }
                match &failure {
                    None => self.stats.agents.done += 1,
                    Some(reason) => {
                        self.stats.agents.failed += 1;
                        self.stats.failures.push(Failure {
                            id,
                            label: running.label.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                let counts = self
                    .scheduler
                    .counts(self.stats.agents.done, self.stats.agents.failed);
                self.store.data_mut().events.agent_finished(
                    crate::events::AgentEnded {
                        id,
                        label: &running.label,
                        phase: running.phase.as_deref(),
                        model: running.model.as_deref(),
                        failure: failure.as_deref(),
                        usage,
                        usd,
                    },
                    counts,
                );
                events.push(Event::Agent(bindings::AgentResult {
                    id,
                    outcome,
                    usage: bindings::Usage {
                        input_tokens: usage.input,
                        output_tokens: usage.output,
                    },
                }));
            }
        }
    }

    fn take_result(&mut self) -> Result<Value, RunError> {
        let Some(json) = self.store.data_mut().report.take() else {
            return Err(RunError::Internal(anyhow::anyhow!(
                "the engine finished without reporting a result"
            )));
        };
        serde_json::from_str(&json).map_err(|e| {
            RunError::Internal(anyhow::anyhow!(
                "the engine reported a result that is not JSON: {e}"
            ))
        })
    }

    fn memory_limit_message(&self) -> String {
        format!(
            "the script ran out of memory: it may use at most {} MiB (raise it with --memory-limit)",
            self.limits.memory_bytes >> 20
        )
    }

    fn script_error(&self, e: ScriptError) -> RunError {
        if self.store.data().limiter.hit && e.message.contains("out of memory") {
            return RunError::Limit {
                kind: LimitKind::Memory,
                message: self.memory_limit_message(),
            };
        }
        let line = e
            .stack
            .as_deref()
            .and_then(|s| line_in_stack(s, &self.filename))
            .map(|(l, _)| l);
        RunError::Script(ScriptFailure {
            name: e.name,
            message: e.message,
            stack: e.stack,
            line,
        })
    }

    /// Turns a trap into the error the user should see.
    fn trap(&self, e: wasmtime::Error, doing: &str) -> RunError {
        if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::OutOfFuel)
        ) {
            return RunError::Limit {
                kind: LimitKind::Cpu,
                message: format!(
                    "the script used its whole CPU allowance ({} fuel) without waiting for an agent: an endless loop? (raise it with --cpu-limit)",
                    self.limits.fuel_per_slice
                ),
            };
        }
        if self.store.data().limiter.hit {
            return RunError::Limit {
                kind: LimitKind::Memory,
                message: self.memory_limit_message(),
            };
        }
        RunError::Internal(
            anyhow::Error::from(e).context(format!("the engine trapped while {doing}")),
        )
    }
}
