//! The event loop across the sandbox boundary.
//!
//! One fresh store per run, on a current-thread tokio runtime (sequential
//! agent round trips are several times cheaper than on the multi-thread
//! one). The guest runs in slices: `start`, then one `deliver` per batch of
//! ended agents and timers; between slices the driver starts spawned agents
//! and waits. Every slice gets a fresh fuel allowance.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use wasmtime::component::Linker;
use wasmtime::{AsContextMut, Store, StoreContextMut};

use crate::backend::{AgentBackend, AgentOutput};
use crate::error::{LimitKind, RunError, ScriptFailure};
use crate::limits::Limits;
use crate::run::events::EventSink;
use crate::run::journal::{Cached, Record, Replay};
use crate::run::run_dir::{JournalWriter, RunDir, now_ms};
use crate::run::scheduler::{AgentEnd, Scheduler, Wake};
use crate::run::summary::{AgentCost, AgentNote, Failure, Stats};
use crate::sandbox::bindings::exports::wasmflow::workflow::{
    driver as driver_api, runner as runner_api,
};
use crate::sandbox::bindings::{self, AgentOutcome, Event, ScriptError, Step};
use crate::sandbox::engine::WorkflowEngine;
use crate::sandbox::host::{HostState, TimerOp};
use crate::script::{Script, line_in_stack};

/// What a run needs besides the script.
pub struct RunConfig {
    /// Caps and bounds.
    pub limits: Limits,
    /// The value the script sees as `args`, as JSON text; empty when none
    /// was given (the script then sees `undefined`).
    pub args_json: String,
    /// What runs the agents.
    pub backend: Arc<dyn AgentBackend>,
    /// `budget.total`, in output tokens.
    pub budget: Option<u64>,
    /// Tries for an agent whose output must match a schema.
    pub schema_tries: u32,
    /// Unknown `agent()` options and `meta` keys are errors.
    pub strict: bool,
    /// Saved workflows for `workflow(name)`.
    pub saved: Vec<crate::script::saved::SearchDir>,
    /// Model aliases and prices.
    pub config: std::sync::Arc<crate::config::Config>,
    /// The default model alias (`--model`, else the config's).
    pub default_model: Option<String>,
    /// `--max-cost`, USD.
    pub max_cost: Option<f64>,
    /// End the run after this many consecutive quota or auth failures
    /// (0: never).
    pub circuit_breaker: u32,
    /// Journal every agent into a run directory (and resume from it).
    pub durability: Option<Durability>,
    /// Ctrl-C pauses the run (first: no new agents, running ones finish
    /// within the grace period; second: abandon them) instead of killing it.
    pub pause_on_signal: bool,
    /// Poll (`driver`) or blocking (`runner`); results are the same.
    pub driver: DriverKind,
    /// Keep every agent result as the guest got it (`Stats::recorded`).
    pub record: bool,
    /// The backend's preflight (keys, reachability, model names) already
    /// passed, before the run directory was made: do not ask again.
    pub preflight_done: bool,
}

/// A run's journal, and what a resume hands back from it.
pub struct Durability {
    /// The run directory.
    pub dir: Arc<RunDir>,
    /// Results of earlier sessions.
    pub replay: Replay,
    /// Bytes of the journal to keep (a torn last line is cut).
    pub valid_len: u64,
    /// `fdatasync` each batch of results before the script sees it; off
    /// only to measure what durability costs.
    pub sync: bool,
    /// How long running agents may finish after a pause request.
    pub grace: Duration,
}

impl RunConfig {
    /// Defaults for everything but the backend.
    pub fn new(backend: Arc<dyn AgentBackend>) -> RunConfig {
        RunConfig {
            limits: Limits::default(),
            args_json: String::new(),
            backend,
            budget: None,
            schema_tries: 5,
            strict: false,
            saved: Vec::new(),
            config: Default::default(),
            default_model: None,
            max_cost: None,
            circuit_breaker: 3,
            durability: None,
            pause_on_signal: false,
            driver: DriverKind::Poll,
            record: false,
            preflight_done: false,
        }
    }
}

/// How a run ended, with its accounting.
pub struct RunOutcome {
    /// The script's result, or why there is none.
    pub result: Result<Value, RunError>,
    /// Accounting.
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

/// What a run executes.
#[derive(Clone, Copy)]
pub enum Program<'a> {
    /// A script, compiled to bytecode in the engine when the run starts.
    Script(&'a Script),
    /// A compiled workflow component (`wasmflow build`).
    Module(&'a crate::sandbox::module::WorkflowModule),
}

impl Program<'_> {
    /// The script (for a module: the one it was built from).
    pub fn script(&self) -> &Script {
        match self {
            Program::Script(s) => s,
            Program::Module(m) => &m.script,
        }
    }
}

/// Runs `script` on the caller's current-thread tokio runtime.
pub async fn run_async(
    engine: &WorkflowEngine,
    script: &Script,
    config: RunConfig,
    events: EventSink,
) -> RunOutcome {
    run_program_async(engine, Program::Script(script), config, events).await
}

/// Runs a script or a compiled module to its end on a fresh current-thread
/// tokio runtime.
pub fn run_program(
    engine: &WorkflowEngine,
    program: Program<'_>,
    config: RunConfig,
    events: EventSink,
) -> RunOutcome {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run_program_async(engine, program, config, events)),
        Err(e) => RunOutcome {
            result: Err(RunError::Internal(
                anyhow::Error::new(e).context("starting tokio"),
            )),
            stats: Stats::default(),
            events,
        },
    }
}

/// Runs a script or a compiled module on the caller's current-thread tokio
/// runtime.
pub async fn run_program_async(
    engine: &WorkflowEngine,
    program: Program<'_>,
    config: RunConfig,
    events: EventSink,
) -> RunOutcome {
    let script = program.script();
    let mut store = Store::new(
        &engine.engine,
        HostState::new(events, config.limits.max_agents, config.limits.memory_bytes),
    );
    store.limiter(|s| &mut s.limiter);
    {
        let data = store.data_mut();
        data.strict = config.strict;
        data.sizes = config.limits.sizes;
        data.max_cost = config.max_cost;
        data.routing = crate::sandbox::host::Routing::new(
            config.config.clone(),
            config.default_model.clone(),
            script,
        );
        data.children = crate::sandbox::host::ChildLoader {
            base_dir: script
                .path
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            saved: config.saved.clone(),
            check: crate::script::check::CheckOptions {
                strict: config.strict,
            },
        };
    }
    let journal = match config.durability {
        None => None,
        Some(d) => {
            d.dir.clear_stop();
            match d.dir.journal_writer(d.valid_len) {
                Ok(writer) => Some(JournalState {
                    dir: d.dir,
                    writer,
                    replay: d.replay,
                    sync: d.sync,
                    grace: d.grace,
                    occurrences: HashMap::new(),
                    metas: HashMap::new(),
                    agent_files: Vec::new(),
                    broken: false,
                }),
                Err(e) => {
                    let events =
                        std::mem::replace(&mut store.data_mut().events, EventSink::silent());
                    return RunOutcome {
                        result: Err(RunError::Internal(
                            anyhow::Error::new(e).context("opening the run's journal"),
                        )),
                        stats: Stats::default(),
                        events,
                    };
                }
            }
        }
    };
    let sigint = if config.pause_on_signal {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok()
    } else {
        None
    };
    let mut stop_poll = tokio::time::interval(Duration::from_millis(250));
    stop_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (tx, rx) = mpsc::unbounded_channel();
    let run = Run {
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
            answered: false,
            tripped: None,
        },
        journal,
        cached_ready: BinaryHeap::new(),
        cached: HashMap::new(),
        sigint,
        stop_poll,
        deadline: tokio::time::Instant::now() + config.limits.wall_clock,
        abort: None,
        recorder: config.record.then(crate::run::record::Recorder::default),
    };
    let options = bindings::RunOptions {
        budget_total: config.budget,
    };
    // What would fail every agent (a missing key, a dead server, a typo in
    // a model name) stops the run before the first spawn.
    let checked = if config.preflight_done {
        Ok(())
    } else {
        let planned = run.store.data().routing.planned(script);
        run.scheduler.backend().check(planned).await
    };
    let (mut run, result) = match checked {
        Err(message) => (
            run,
            Err(RunError::Input(crate::error::InputError::Invalid(message))),
        ),
        Ok(()) => match config.driver {
            DriverKind::Poll => {
                let mut run = run;
                let result = run
                    .execute_poll(engine, program, &config.args_json, options)
                    .await;
                (run, result)
            }
            DriverKind::Blocking => {
                match run
                    .execute_blocking(engine, program, &config.args_json, options)
                    .await
                {
                    Ok(pair) => pair,
                    Err(lost) => return lost,
                }
            }
        },
    };
    run.commit();
    run.store.data_mut().flush_log_drops();
    run.scheduler.abort_all();
    for (_, t) in run.timers.drain() {
        t.abort();
    }
    run.stats.agents.spawned = run.store.data().spawned;
    run.stats.peak_concurrency = run.scheduler.peak;
    if let Some(r) = run.recorder.take() {
        run.stats.recorded = r.agents;
    }
    let stats = std::mem::take(&mut run.stats);
    let events = std::mem::replace(&mut run.store.data_mut().events, EventSink::silent());
    RunOutcome {
        result,
        stats,
        events,
    }
}

/// How the host drives the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// `driver.start` / `driver.deliver`: the guest returns whenever it
    /// waits, and the host calls it again with what happened.
    #[default]
    Poll,
    /// `runner.run`: one call for the whole run; the guest suspends in
    /// `wait.await-next` (a fiber here) while agents work.
    Blocking,
}

/// The guest's entry points in one instance.
struct Entry {
    driver: driver_api::Guest,
    runner: Option<runner_api::Guest>,
}

/// The store, owned (the poll driver, and the blocking driver between
/// calls) or lent to `await-next` while `runner.run` is suspended in it.
trait StoreAccess: AsContextMut<Data = HostState> + Send {
    fn host(&mut self) -> &mut HostState;
    fn host_ref(&self) -> &HostState;
}

impl StoreAccess for Store<HostState> {
    fn host(&mut self) -> &mut HostState {
        self.data_mut()
    }
    fn host_ref(&self) -> &HostState {
        self.data()
    }
}

impl StoreAccess for StoreContextMut<'_, HostState> {
    fn host(&mut self) -> &mut HostState {
        self.data_mut()
    }
    fn host_ref(&self) -> &HostState {
        self.data()
    }
}

/// `wait.await-next`: the blocking driver parks the run in the store before
/// it calls `runner.run`; each call here takes it back, does what the poll
/// driver does between two `deliver`s, and parks it again. Without a parked
/// run (the poll driver) the call traps.
pub(crate) fn add_wait_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut wait = linker.instance("wasmflow:workflow/wait@0.1.0")?;
    wait.func_wrap_async(
        "await-next",
        |mut store: StoreContextMut<'_, HostState>, (): ()| {
            Box::new(async move {
                let parked = store
                    .data_mut()
                    .parked
                    .take()
                    .and_then(|p| p.downcast::<Run<()>>().ok());
                let Some(parked) = parked else {
                    return Err(wasmtime::Error::msg(
                        "the guest called wait.await-next, but this run drives it with the poll driver (driver.start/deliver); only runner.run may wait",
                    ));
                };
                let (mut run, ()) = parked.with_store(store);
                let next = run.next_events().await;
                let (mut parked, mut store) = run.with_store(());
                let result = match next {
                    Ok(events) => Ok((events,)),
                    Err(e) => {
                        parked.abort = Some(e);
                        Err(wasmtime::Error::msg("the run stopped"))
                    }
                };
                store.data_mut().parked = Some(Box::new(parked));
                result
            })
        },
    )
}

struct Run<S> {
    store: S,
    limits: Limits,
    scheduler: Scheduler,
    tx: mpsc::UnboundedSender<Wake>,
    rx: mpsc::UnboundedReceiver<Wake>,
    timers: HashMap<u64, AbortHandle>,
    stats: Stats,
    filename: String,
    breaker: Breaker,
    journal: Option<JournalState>,
    /// Agents answered from the journal, by original completion order.
    cached_ready: BinaryHeap<Reverse<(usize, u64)>>,
    cached: HashMap<u64, CachedAgent>,
    sigint: Option<tokio::signal::unix::Signal>,
    stop_poll: tokio::time::Interval,
    /// The wall-clock limit, from the first guest call.
    deadline: tokio::time::Instant,
    /// Why `await-next` stopped the run (the guest then traps).
    abort: Option<RunError>,
    recorder: Option<crate::run::record::Recorder>,
}

impl<S> Run<S> {
    /// The same run with another store handle; the old one comes back.
    fn with_store<T>(self, store: T) -> (Run<T>, S) {
        let Run {
            store: old,
            limits,
            scheduler,
            tx,
            rx,
            timers,
            stats,
            filename,
            breaker,
            journal,
            cached_ready,
            cached,
            sigint,
            stop_poll,
            deadline,
            abort,
            recorder,
        } = self;
        (
            Run {
                store,
                limits,
                scheduler,
                tx,
                rx,
                timers,
                stats,
                filename,
                breaker,
                journal,
                cached_ready,
                cached,
                sigint,
                stop_poll,
                deadline,
                abort,
                recorder,
            },
            old,
        )
    }
}

/// The journal of a durable run, while it runs.
struct JournalState {
    dir: Arc<RunDir>,
    writer: JournalWriter,
    replay: Replay,
    sync: bool,
    grace: Duration,
    /// Calls with the same content so far, by content key.
    occurrences: HashMap<String, u32>,
    metas: HashMap<u64, AgentMeta>,
    /// Lines of `agents.jsonl` to write once the batch is durable.
    agent_files: Vec<(u64, Value)>,
    /// Writing failed once (said on stderr); keep going without.
    broken: bool,
}

/// What the journal needs of a live agent when it ends.
impl JournalState {
    /// Journals an ended agent's line and queues its agents.jsonl record
    /// (the line plus what was asked, and `phase` when the line lacks it).
    fn record(&mut self, id: u64, line: &Record, meta: AgentMeta, phase: Option<Value>) {
        self.writer.push(line);
        let mut file = serde_json::to_value(line).unwrap_or(Value::Null);
        file["prompt"] = Value::String(meta.prompt);
        file["options"] = Value::Object(meta.options);
        if let Some(phase) = phase {
            file["phase"] = phase;
        }
        file["startedTs"] = meta.started_ms.into();
        self.agent_files.push((id, file));
    }
}

struct AgentMeta {
    key: String,
    prompt: String,
    options: serde_json::Map<String, Value>,
    started: Instant,
    started_ms: u64,
}

struct CachedAgent {
    cached: Cached,
    label: String,
    phase: Option<String>,
    model: Option<String>,
}

/// An answer as the guest receives it.
fn outcome_of(output: AgentOutput) -> AgentOutcome {
    match output {
        AgentOutput::Text(t) => AgentOutcome::Text(t),
        AgentOutput::Json(v) => AgentOutcome::Json(v.to_string()),
    }
}

/// The event that hands an ended agent to the guest.
fn agent_event(id: u64, outcome: AgentOutcome, usage: crate::backend::Usage) -> Event {
    Event::Agent(bindings::AgentResult {
        id,
        outcome,
        usage: bindings::Usage {
            input_tokens: usage.input,
            output_tokens: usage.output,
        },
    })
}

/// A script error from the guest, positioned in the user's file.
pub(crate) fn script_failure(e: ScriptError, filename: &str) -> ScriptFailure {
    let line = e
        .stack
        .as_deref()
        .and_then(|s| line_in_stack(s, filename))
        .map(|(l, _)| l);
    ScriptFailure {
        name: e.name,
        message: e.message,
        stack: e.stack,
        line,
    }
}

/// Waits for the first Ctrl-C, or forever when Ctrl-C is not ours.
async fn interrupted(sigint: &mut Option<tokio::signal::unix::Signal>) {
    match sigint {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Counts consecutive quota/auth failures (and refused requests until one
/// agent has succeeded); any answer resets it.
struct Breaker {
    threshold: u32,
    consecutive: u32,
    /// An agent has answered: a refused request is then about that agent.
    answered: bool,
    /// Why it tripped.
    tripped: Option<String>,
}

impl Breaker {
    fn record(&mut self, end: &AgentEnd) {
        match end {
            AgentEnd::Reply(_) => {
                self.consecutive = 0;
                self.answered = true;
            }
            AgentEnd::Failed(f)
                if f.kind.trips_breaker()
                    || (f.kind == crate::backend::FailureKind::Refused && !self.answered) =>
            {
                self.consecutive += 1;
                if self.threshold > 0
                    && self.consecutive >= self.threshold
                    && self.tripped.is_none()
                {
                    self.tripped = Some(format!(
                        "circuit breaker: {} agents in a row failed for lack of quota or credentials, or were refused by the server before any agent succeeded (last: {}); no new agents were started. Fix the account or wait, then run again (--circuit-breaker sets the count)",
                        self.consecutive, f.reason
                    ));
                }
            }
            _ => {}
        }
    }
}

impl Run<Store<HostState>> {
    /// The blocking driver: one `runner.run`, suspended in `await-next`
    /// while agents work. `Err` only if the run's state was lost (never
    /// expected): the outcome to return as it is.
    async fn execute_blocking(
        mut self,
        engine: &WorkflowEngine,
        program: Program<'_>,
        args_json: &str,
        options: bindings::RunOptions,
    ) -> Result<(Self, Result<Value, RunError>), RunOutcome> {
        self.deadline = tokio::time::Instant::now() + self.limits.wall_clock;
        let entry = match self.instantiate(engine, program).await {
            Ok(e) => e,
            Err(e) => return Ok((self, Err(e))),
        };
        let Some(runner) = entry.runner else {
            let message =
                "this module exports no wasmflow:workflow/runner: run it with --driver poll";
            return Ok((
                self,
                Err(RunError::Input(crate::error::InputError::Invalid(
                    message.into(),
                ))),
            ));
        };
        if let Err(e) = self.refuel() {
            return Ok((self, Err(e)));
        }
        let (parked, mut store) = self.with_store(());
        store.data_mut().parked = Some(Box::new(parked));
        let called = runner.call_run(&mut store, args_json, options).await;
        let parked = store
            .data_mut()
            .parked
            .take()
            .and_then(|p| p.downcast::<Run<()>>().ok());
        let Some(parked) = parked else {
            let events = std::mem::replace(&mut store.data_mut().events, EventSink::silent());
            return Err(RunOutcome {
                result: Err(RunError::Internal(anyhow::anyhow!(
                    "the run's state was lost in wait.await-next"
                ))),
                stats: Stats::default(),
                events,
            });
        };
        let (mut run, ()) = parked.with_store(store);
        let result = match called {
            Err(trap) => Err(match run.abort.take() {
                Some(e) => e,
                None => run.trap(trap, "running the script"),
            }),
            Ok(Err(e)) => Err(run.script_error(e)),
            Ok(Ok(())) => run.take_result(),
        };
        Ok((run, result))
    }
}

impl<S: StoreAccess> Run<S> {
    /// A fresh instance of the program, script compiled and loaded.
    async fn instantiate(
        &mut self,
        engine: &WorkflowEngine,
        program: Program<'_>,
    ) -> Result<Entry, RunError> {
        self.refuel()?;
        match program {
            Program::Script(script) => {
                let instance = engine
                    .pre
                    .instantiate_async(&mut self.store)
                    .await
                    .map_err(|e| self.trap(e, "instantiating the engine"))?;
                self.refuel()?;
                let compiler = instance.wasmflow_workflow_compiler();
                let bytecode = compiler
                    .call_compile(&mut self.store, &script.wrapped, &script.filename)
                    .await
                    .map_err(|e| self.trap(e, "compiling the script"))?
                    .map_err(|e| self.script_error(e))?;
                compiler
                    .call_load(&mut self.store, &bytecode)
                    .await
                    .map_err(|e| self.trap(e, "loading the script"))?
                    .map_err(|e| self.script_error(e))?;
                Ok(Entry {
                    driver: instance.wasmflow_workflow_driver().clone(),
                    runner: Some(instance.wasmflow_workflow_runner().clone()),
                })
            }
            Program::Module(module) => {
                let instance = module
                    .pre
                    .instantiate_async(&mut self.store)
                    .await
                    .map_err(|e| self.trap(e, "instantiating the workflow module"))?;
                let driver = module
                    .driver
                    .load(&mut self.store, &instance)
                    .map_err(|e| self.trap(e, "reading the module's driver"))?;
                let runner = match &module.runner {
                    Some(r) => Some(
                        r.load(&mut self.store, &instance)
                            .map_err(|e| self.trap(e, "reading the module's runner"))?,
                    ),
                    None => None,
                };
                Ok(Entry { driver, runner })
            }
        }
    }

    /// The poll driver: `start`, then one `deliver` per batch of events.
    async fn execute_poll(
        &mut self,
        engine: &WorkflowEngine,
        program: Program<'_>,
        args_json: &str,
        options: bindings::RunOptions,
    ) -> Result<Value, RunError> {
        self.deadline = tokio::time::Instant::now() + self.limits.wall_clock;
        let entry = self.instantiate(engine, program).await?;
        self.refuel()?;
        let mut step = entry
            .driver
            .call_start(&mut self.store, args_json, options)
            .await
            .map_err(|e| self.trap(e, "running the script"))?;
        loop {
            match step {
                Step::Done(Ok(())) => return self.take_result(),
                Step::Done(Err(e)) => return Err(self.script_error(e)),
                Step::Waiting(_) => {}
            }
            let events = self.next_events().await?;
            step = entry
                .driver
                .call_deliver(&mut self.store, &events)
                .await
                .map_err(|e| self.trap(e, "running the script"))?;
        }
    }

    /// Between two slices, for both drivers: start what the guest asked
    /// for, wait for at least one event, refuel.
    async fn next_events(&mut self) -> Result<Vec<Event>, RunError> {
        self.act_on_slice();
        if self.scheduler.in_flight() == 0 && self.timers.is_empty() && self.cached_ready.is_empty()
        {
            return Err(RunError::Internal(anyhow::anyhow!(
                "the engine waits for agents or timers, but none is in flight"
            )));
        }
        let events = self.wait(self.deadline).await?;
        if let Some(r) = self.recorder.as_mut() {
            r.delivered(&events);
        }
        self.refuel()?;
        Ok(events)
    }

    fn refuel(&mut self) -> Result<(), RunError> {
        self.store
            .as_context_mut()
            .set_fuel(self.limits.fuel_per_slice)
            .map_err(|e| RunError::Internal(anyhow::Error::from(e).context("setting fuel")))
    }

    /// Starts what the guest asked for during its last slice.
    fn act_on_slice(&mut self) {
        let data = self.store.host();
        for request in data.new_agents.drain(..) {
            if let Some(r) = self.recorder.as_mut() {
                r.spawned(request.id, &request.prompt);
            }
            if let Some(j) = self.journal.as_mut() {
                let content = crate::run::journal::content_of(
                    &request.prompt,
                    &request.options,
                    request.model.as_deref(),
                );
                let n = j.occurrences.entry(content.clone()).or_insert(0);
                let key = crate::run::journal::key_of(&content, *n);
                *n += 1;
                let label = request.display_label();
                if let Some(cached) = j.replay.take(&key) {
                    self.cached_ready.push(Reverse((cached.seq, request.id)));
                    self.cached.insert(
                        request.id,
                        CachedAgent {
                            cached,
                            label,
                            phase: request.phase.clone(),
                            model: request.model.clone(),
                        },
                    );
                    continue;
                }
                let started_ms = now_ms();
                j.writer.push(&Record::Started {
                    key: key.clone(),
                    agent_id: request.id,
                    label,
                    phase: request.phase.clone(),
                    model: request.model.clone(),
                    ts: started_ms,
                });
                j.metas.insert(
                    request.id,
                    AgentMeta {
                        key,
                        prompt: request.prompt.clone(),
                        options: request.options.clone(),
                        started: Instant::now(),
                        started_ms,
                    },
                );
            }
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
        // Results from the journal go first, one per slice, in the order
        // they first completed: a script whose prompts depend on that
        // order takes the same path and meets the same keys.
        if let Some(Reverse((_, id))) = self.cached_ready.pop() {
            let mut events = Vec::new();
            self.deliver_cached(id, &mut events);
            let data = self.store.host();
            self.scheduler.pump(&mut data.events);
            return Ok(events);
        }
        let first = loop {
            tokio::select! {
                w = self.rx.recv() => match w {
                    Some(w) => break w,
                    None => {
                        return Err(RunError::Internal(anyhow::anyhow!("event channel closed")));
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(RunError::Limit {
                        kind: LimitKind::WallClock,
                        message: format!(
                            "the run exceeded its wall-clock limit of {:?} (raise it with --timeout)",
                            self.limits.wall_clock
                        ),
                    });
                }
                _ = interrupted(&mut self.sigint) => return Err(self.pause("Ctrl-C").await),
                _ = self.stop_poll.tick(), if self.journal.is_some() => {
                    if self.journal.as_ref().is_some_and(|j| j.dir.stop_requested()) {
                        return Err(self.pause("wasmflow stop").await);
                    }
                    self.apply_controls();
                    // Followers see events at most a tick behind, even
                    // when nothing else happens.
                    self.store.host().events.flush_run_events();
                }
            }
        };
        let mut events = Vec::new();
        self.on_wake(first, &mut events);
        while let Ok(w) = self.rx.try_recv() {
            self.on_wake(w, &mut events);
        }
        // Group commit: the whole batch is on disk, with one fdatasync,
        // before the script sees any of it.
        self.commit();
        if let Some(message) = self.breaker.tripped.take() {
            return Err(RunError::Limit {
                kind: LimitKind::CircuitBreaker,
                message,
            });
        }
        // Refill free slots before the guest runs, so queued agents start in
        // call order ahead of whatever the guest spawns next.
        let data = self.store.host();
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
            Wake::Agent {
                id,
                end: AgentEnd::Skipped { by, queued },
                notes,
            } => self.on_skipped(id, &by, queued, notes, events),
            Wake::Agent { id, end, notes } => {
                let end = self.bound_output(id, end);
                self.breaker.record(&end);
                let Some(running) = self.scheduler.finished(id) else {
                    return;
                };
                // The journal keeps the output as a value: no re-parse of
                // the text the guest gets.
                let mut journaled = None;
                let (outcome, usage, failure) = match end {
                    AgentEnd::Reply(reply) => {
                        if self.journal.is_some() {
                            journaled = Some(match &reply.output {
                                AgentOutput::Text(t) => ("text", Value::String(t.clone())),
                                AgentOutput::Json(v) => ("json", v.clone()),
                            });
                        }
                        (outcome_of(reply.output), reply.usage, None)
                    }
                    AgentEnd::Failed(f) => (
                        AgentOutcome::Failed(f.reason.clone()),
                        f.usage,
                        Some(f.reason),
                    ),
                    AgentEnd::Thrown { message, usage } => {
                        (AgentOutcome::Error(message.clone()), usage, Some(message))
                    }
                    // Handled by on_skipped, in the arm above.
                    AgentEnd::Skipped { by, .. } => (
                        AgentOutcome::Skipped,
                        Default::default(),
                        Some(format!("skipped ({by})")),
                    ),
                };
                self.stats.tokens += usage;
                let usd = {
                    let routing = &self.store.host_ref().routing;
                    running
                        .model
                        .as_deref()
                        .and_then(|m| routing.config.price(m))
                        .map(|p| p.cost_of(usage))
                };
                self.store.host().spent_usd += usd.unwrap_or(0.0);
                self.stats.cost.add(
                    running.model.as_deref(),
                    running.phase.as_deref(),
                    usage,
                    usd,
                );
                self.stats.live.add(usage, usd);
                self.stats.per_agent.push(AgentCost {
                    id,
                    label: running.label.clone(),
                    phase: running.phase.clone(),
                    model: running.model.clone(),
                    usage,
                    usd,
                    ok: failure.is_none(),
                    cached: false,
                });
                if let Some(j) = self.journal.as_mut()
                    && let Some(meta) = j.metas.remove(&id)
                {
                    let ts = now_ms();
                    let duration_ms = meta.started.elapsed().as_millis() as u64;
                    let line = match journaled {
                        Some((kind, output)) => Record::Result {
                            key: meta.key.clone(),
                            agent_id: id,
                            label: running.label.clone(),
                            phase: running.phase.clone(),
                            model: running.model.clone(),
                            kind: kind.into(),
                            output,
                            usage,
                            usd,
                            duration_ms,
                            ts,
                        },
                        None => Record::Failed {
                            key: meta.key.clone(),
                            agent_id: id,
                            label: running.label.clone(),
                            error: failure.clone().unwrap_or_default(),
                            usage,
                            ts,
                        },
                    };
                    j.record(id, &line, meta, None);
                }
                for note in notes {
                    self.store
                        .host()
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
                self.store.host().events.agent_finished(
                    crate::run::events::AgentEnded {
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
                events.push(agent_event(id, outcome, usage));
            }
        }
    }

    /// Skip and retry requests left in the run directory by other
    /// processes (`wasmflow skip` / `retry`), each answered.
    fn apply_controls(&mut self) {
        let Some(dir) = self.journal.as_ref().map(|j| j.dir.clone()) else {
            return;
        };
        for (name, request) in dir.take_controls() {
            use crate::run::control::{Answer, Op};
            let id = request.agent;
            let result = match request.op {
                Op::Skip => self.scheduler.skip(id, &request.by).map(|()| {
                    format!("agent {id} is skipped: agent() resolves null; a resume runs it again")
                }),
                Op::Retry => self.scheduler.retry(id).map(|retries| {
                    let label = self
                        .scheduler
                        .label_of(id)
                        .unwrap_or_else(|| format!("agent #{id}"));
                    self.store
                        .host()
                        .events
                        .agent_retried(id, &label, &request.by, retries);
                    format!("agent {id} started again (retry {retries})")
                }),
            };
            let answer = match result {
                Ok(message) => Answer { ok: true, message },
                Err(message) => Answer { ok: false, message },
            };
            dir.answer_control(&name, &answer);
        }
    }

    /// An agent abandoned on request: `agent()` resolves `null`, the
    /// journal says who asked, a resume runs it again.
    fn on_skipped(
        &mut self,
        id: u64,
        by: &str,
        queued: bool,
        notes: Vec<String>,
        events: &mut Vec<Event>,
    ) {
        let Some(running) = self.scheduler.finished(id) else {
            return;
        };
        if let Some(j) = self.journal.as_mut()
            && let Some(meta) = j.metas.remove(&id)
        {
            let line = Record::Skipped {
                key: meta.key.clone(),
                agent_id: id,
                label: running.label.clone(),
                by: by.to_string(),
                ts: now_ms(),
            };
            j.record(id, &line, meta, Some(running.phase.clone().into()));
        }
        for note in notes {
            self.store
                .host()
                .events
                .note(&format!("{}: {note}", running.label));
        }
        self.stats.agents.skipped += 1;
        let counts = self
            .scheduler
            .counts(self.stats.agents.done, self.stats.agents.failed);
        self.store.host().events.agent_skipped(
            id,
            &running.label,
            running.phase.as_deref(),
            by,
            queued,
            counts,
        );
        events.push(agent_event(id, AgentOutcome::Skipped, Default::default()));
    }

    /// An answer over `--max-agent-output` fails the agent; its whole
    /// output is kept in the run directory for the user.
    fn bound_output(&mut self, id: u64, end: AgentEnd) -> AgentEnd {
        let AgentEnd::Reply(reply) = &end else {
            return end;
        };
        let text = match &reply.output {
            AgentOutput::Text(t) => std::borrow::Cow::Borrowed(t.as_str()),
            AgentOutput::Json(v) => std::borrow::Cow::Owned(v.to_string()),
        };
        let max = self.limits.sizes.agent_output;
        if text.len() <= max {
            return end;
        }
        let kept = match self.journal.as_ref().map(|j| j.dir.write_output(id, &text)) {
            Some(Ok(path)) => format!("the whole output is in {}", path.display()),
            Some(Err(e)) => format!("it could not be kept: {e}"),
            None => "it was not kept (--no-journal)".into(),
        };
        AgentEnd::Failed(crate::backend::AgentFailure {
            reason: format!(
                "the agent's output is {} bytes, over the limit of {max} (raise it with --max-agent-output); {kept}",
                text.len()
            ),
            usage: reply.usage,
            kind: crate::backend::FailureKind::Other,
        })
    }

    /// Hands the script a result from the journal, accounted as it was
    /// the first time (budget, cost cap), and not paid again.
    fn deliver_cached(&mut self, id: u64, events: &mut Vec<Event>) {
        let Some(c) = self.cached.remove(&id) else {
            return;
        };
        let usage = c.cached.usage;
        let usd = c.cached.usd;
        self.stats.tokens += usage;
        self.store.host().spent_usd += usd.unwrap_or(0.0);
        self.stats
            .cost
            .add(c.model.as_deref(), c.phase.as_deref(), usage, usd);
        self.stats.from_journal.add(usage, usd);
        self.stats.agents.done += 1;
        self.stats.agents.cached += 1;
        self.stats.per_agent.push(AgentCost {
            id,
            label: c.label,
            phase: c.phase,
            model: c.model,
            usage,
            usd,
            ok: true,
            cached: true,
        });
        events.push(agent_event(id, outcome_of(c.cached.output), usage));
    }

    /// Makes the journal's pending lines durable, then writes the agents'
    /// record files. A write error is said once; the run goes on (its
    /// results are paid for) without durability.
    fn commit(&mut self) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        if let Err(e) = j.writer.commit(j.sync)
            && !j.broken
        {
            j.broken = true;
            eprintln!(
                "wasmflow: warning: cannot write the journal in {}: {e}; results from now on are not durable (a resume would run those agents again)",
                j.dir.path.display()
            );
        }
        // The agent records are for people (the journal holds what a
        // resume needs): appended after the batch, not synced.
        if !j.agent_files.is_empty() {
            let records = std::mem::take(&mut j.agent_files);
            if let Err(e) = j.dir.append_agents(&records) {
                tracing::warn!("cannot write agents.jsonl: {e}");
            }
        }
    }

    /// Stops the run resumably: no new agents; running ones get the grace
    /// period to finish and be journaled; a second Ctrl-C abandons them.
    async fn pause(&mut self, why: &str) -> RunError {
        self.scheduler.drop_queue();
        let (grace, id) = match &self.journal {
            Some(j) => (j.grace, j.dir.id.clone()),
            None => (Duration::ZERO, String::new()),
        };
        let running = self.scheduler.running();
        if running > 0 {
            eprintln!(
                "wasmflow: {why}: pausing; no new agents; waiting up to {grace:?} for {running} running (Ctrl-C or `wasmflow stop` again to abandon them: they run again on resume)"
            );
        }
        let until = tokio::time::Instant::now() + grace;
        let mut discard = Vec::new();
        // A second `wasmflow stop`, like a second Ctrl-C, abandons them.
        if let Some(j) = &self.journal {
            j.dir.clear_stop();
        }
        while self.scheduler.running() > 0 {
            tokio::select! {
                w = self.rx.recv() => match w {
                    Some(w) => {
                        self.on_wake(w, &mut discard);
                        self.commit();
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
                _ = interrupted(&mut self.sigint) => break,
                _ = self.stop_poll.tick(), if self.journal.is_some() => {
                    if self.journal.as_ref().is_some_and(|j| j.dir.stop_requested()) {
                        break;
                    }
                }
            }
        }
        let message = if id.is_empty() {
            format!("{why}: the run stopped")
        } else {
            format!("{why}: the run is paused; resume it with: wasmflow resume {id}")
        };
        RunError::Paused { message }
    }

    fn take_result(&mut self) -> Result<Value, RunError> {
        if let Some(size) = self.store.host_ref().oversized_report {
            return Err(RunError::Limit {
                kind: LimitKind::ResultSize,
                message: format!(
                    "the script's result is {size} bytes of JSON, over the limit of {} (raise it with --max-result)",
                    self.limits.sizes.result
                ),
            });
        }
        let Some(json) = self.store.host().report.take() else {
            return Err(RunError::Internal(anyhow::anyhow!(
                "the engine finished without reporting a result"
            )));
        };
        serde_json::from_str(&json).map_err(|e| {
            // The guest's JSON.stringify nests as deep as its stack allows;
            // the host reads 128 levels (deeper would risk its own stack).
            if e.to_string().starts_with("recursion limit exceeded") {
                return RunError::Limit {
                    kind: LimitKind::ResultDepth,
                    message: "the script's result nests arrays and objects more than 128 levels deep, deeper than wasmflow reads back: return a flatter value".into(),
                };
            }
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
        if self.store.host_ref().limiter.hit && e.message.contains("out of memory") {
            return RunError::Limit {
                kind: LimitKind::Memory,
                message: self.memory_limit_message(),
            };
        }
        RunError::Script(script_failure(e, &self.filename))
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
        if self.store.host_ref().limiter.hit {
            return RunError::Limit {
                kind: LimitKind::Memory,
                message: self.memory_limit_message(),
            };
        }
        // QuickJS recurses in C for nested syntax and calls; the wasm call
        // stack can run out before its own JavaScript stack check fires.
        if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::StackOverflow)
        ) {
            return RunError::Script(crate::error::ScriptFailure {
                name: "RangeError".into(),
                message: format!(
                    "the engine's call stack ran out while {doing}: the script nests expressions or recurses too deeply (flatten the nesting, or recurse less)"
                ),
                stack: None,
                line: None,
            });
        }
        RunError::Internal(
            anyhow::Error::from(e).context(format!("the engine trapped while {doing}")),
        )
    }
}
