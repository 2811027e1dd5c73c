//! The host side of `wasmflow:workflow/host`: what a script's calls do.
//!
//! Every import returns at once: spawns and timers are recorded here and
//! acted on by the driver when the guest's slice ends.

use serde_json::{Map, Value};

use crate::backend::AgentRequest;
use crate::bindings::wasmflow::workflow::{host, types};
use crate::bindings::{LogLevel, SpawnError};
use crate::events::{EventSink, Level};

/// Guest memory bound; remembers whether the script ran into it, so the
/// error that follows can say so.
pub struct MemoryLimiter {
    pub max_bytes: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// A timer request from the guest's last slice.
pub enum TimerOp {
    Set { id: u64, delay_ms: u32 },
    Clear { id: u64 },
}

/// The store's data: one per run.
pub struct HostState {
    pub limiter: MemoryLimiter,
    pub events: EventSink,
    max_agents: u64,
    /// Agents spawned so far (ids are 1..=spawned).
    pub spawned: u64,
    next_timer: u64,
    /// Spawned during the current slice, in call order.
    pub new_agents: Vec<AgentRequest>,
    pub timer_ops: Vec<TimerOp>,
    /// The result the script reported, as JSON text.
    pub report: Option<String>,
    pub current_phase: Option<String>,
}

impl HostState {
    pub fn new(events: EventSink, max_agents: u64, memory_bytes: usize) -> HostState {
        HostState {
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                hit: false,
            },
            events,
            max_agents,
            spawned: 0,
            next_timer: 0,
            new_agents: Vec::new(),
            timer_ops: Vec::new(),
            report: None,
            current_phase: None,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn spawn(&mut self, request: types::AgentRequest) -> Result<u64, SpawnError> {
        if self.spawned >= self.max_agents {
            return Err(SpawnError::CapReached(format!(
                "agent cap reached: this run may spawn at most {} agents (raise it with --max-agents)",
                self.max_agents
            )));
        }
        let options: Map<String, Value> = match serde_json::from_str(&request.options_json) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(SpawnError::Invalid(
                    "agent(): opts must be an object".into(),
                ));
            }
            Err(e) => {
                return Err(SpawnError::Invalid(format!(
                    "agent(): opts are not valid JSON: {e}"
                )));
            }
        };
        let label = match options.get("label") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(SpawnError::Invalid(
                    "agent(): opts.label must be a string".into(),
                ));
            }
        };
        self.spawned += 1;
        let id = self.spawned;
        self.new_agents.push(AgentRequest {
            id,
            prompt: request.prompt,
            options,
            label,
            phase: request.phase,
            attempt: 1,
        });
        Ok(id)
    }

    fn report(&mut self, result_json: String) {
        // The guest reports once; keep the first if a broken module repeats.
        if self.report.is_none() {
            self.report = Some(result_json);
        }
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        self.events.log(level, &message);
    }

    fn phase(&mut self, title: String) {
        self.events.phase(&title);
        self.current_phase = Some(title);
    }

    fn set_timer(&mut self, delay_ms: u32) -> u64 {
        self.next_timer += 1;
        let id = self.next_timer;
        self.timer_ops.push(TimerOp::Set { id, delay_ms });
        id
    }

    fn clear_timer(&mut self, id: u64) {
        self.timer_ops.push(TimerOp::Clear { id });
    }
}
