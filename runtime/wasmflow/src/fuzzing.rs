//! Oracles shared by the fuzz targets (`fuzz/`) and the property tests of
//! the normal test suite: each takes arbitrary input, drives the real code,
//! and panics only when an invariant breaks (a panic inside the code under
//! test is a finding too).

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use serde_json::{Map, Value};

use crate::backend::{
    AgentBackend, AgentFailure, AgentOutput, AgentReply, AgentRequest, AgentResult, BoxFuture,
    FailureKind, Usage,
};
use crate::run::events::EventSink;
use crate::sandbox::bindings::LogLevel;
use crate::sandbox::bindings::wasmflow::workflow::{host::Host, types};
use crate::sandbox::host::HostState;
use crate::{Limits, RunConfig, RunError, Script, WorkflowEngine, run_script};

/// One call a guest could make, with whatever arguments.
#[derive(Debug, Arbitrary)]
pub enum HostOp {
    /// Raw spawn: any prompt, any options text.
    Spawn {
        /// The prompt.
        prompt: String,
        /// The options, as JSON text (may be invalid).
        options_json: String,
        /// The phase.
        phase: Option<String>,
        /// The queue priority.
        priority: u32,
    },
    /// A spawn with well-formed options, to get past parsing.
    SpawnShaped {
        /// The prompt.
        prompt: String,
        /// `opts.label`.
        label: Option<String>,
        /// `opts.model`.
        model: Option<String>,
        /// Which schema, if any.
        schema: Option<u8>,
        /// Add an option the host does not know.
        unknown_option: bool,
    },
    /// `host.report`.
    Report(String),
    /// `host.log` with a level byte.
    Log(u8, String),
    /// `host.phase`.
    Phase(String),
    /// `host.set-timer`.
    SetTimer(u32),
    /// `host.clear-timer` (ids may not exist).
    ClearTimer(u64),
    /// `host.load-workflow`.
    LoadWorkflow(String),
    /// The driver takes the slice's spawns and timers.
    Drain,
}

fn shaped_options(
    label: &Option<String>,
    model: &Option<String>,
    schema: Option<u8>,
    unknown: bool,
) -> String {
    let mut o = Map::new();
    if let Some(l) = label {
        o.insert("label".into(), Value::String(l.clone()));
    }
    if let Some(m) = model {
        o.insert("model".into(), Value::String(m.clone()));
    }
    if let Some(kind) = schema {
        let s = match kind % 4 {
            0 => serde_json::json!({"type": "object", "required": ["n"]}),
            1 => serde_json::json!({"$ref": "http://example.com/x.json"}),
            2 => serde_json::json!({"type": 5}),
            _ => serde_json::json!({"type": "array", "items": {"$ref": "#/$defs/missing"}}),
        };
        o.insert("schema".into(), s);
    }
    if unknown {
        o.insert("frobnicate".into(), Value::Bool(true));
    }
    Value::Object(o).to_string()
}

/// Drives the real host implementation with a sequence of calls; checks
/// that caps and accounting stay consistent.
pub fn host_calls(ops: &[HostOp], max_agents: u64) {
    let mut h = HostState::new(EventSink::silent(), max_agents.max(1), 64 << 20);
    h.sizes.prompt = 4096;
    h.sizes.options = 4096;
    h.sizes.log_lines_per_sec = 50;
    let mut ids_seen = 0u64;
    let mut taken = 0u64;
    let mut first_report: Option<String> = None;
    let mut timers = std::collections::HashSet::new();
    for op in ops {
        match op {
            HostOp::Spawn {
                prompt,
                options_json,
                phase,
                priority,
            } => {
                let before = h.spawned;
                let r = h.spawn(types::AgentRequest {
                    prompt: prompt.clone(),
                    options_json: options_json.clone(),
                    phase: phase.clone(),
                    priority: *priority,
                });
                check_spawn(&h, before, r, &mut ids_seen);
            }
            HostOp::SpawnShaped {
                prompt,
                label,
                model,
                schema,
                unknown_option,
            } => {
                let before = h.spawned;
                let r = h.spawn(types::AgentRequest {
                    prompt: prompt.clone(),
                    options_json: shaped_options(label, model, *schema, *unknown_option),
                    phase: None,
                    priority: 0,
                });
                check_spawn(&h, before, r, &mut ids_seen);
            }
            HostOp::Report(text) => {
                h.report(text.clone());
                if first_report.is_none() && text.len() <= h.sizes.result {
                    first_report = Some(text.clone());
                }
                assert!(
                    h.report.is_none() || h.report == first_report,
                    "report changed"
                );
            }
            HostOp::Log(level, text) => {
                let level = match level % 4 {
                    0 => LogLevel::Debug,
                    1 => LogLevel::Info,
                    2 => LogLevel::Warn,
                    _ => LogLevel::Error,
                };
                h.log(level, text.clone());
            }
            HostOp::Phase(t) => {
                h.phase(t.clone());
                assert_eq!(h.current_phase.as_deref(), Some(t.as_str()));
            }
            HostOp::SetTimer(ms) => {
                let id = h.set_timer(*ms);
                assert!(timers.insert(id), "timer id {id} handed out twice");
            }
            HostOp::ClearTimer(id) => h.clear_timer(*id),
            HostOp::LoadWorkflow(reference) => {
                // Names that do not exist are errors, never panics; paths
                // resolve against an empty base and fail the same way.
                let _ = h.load_workflow(reference.clone());
            }
            HostOp::Drain => {
                for a in h.new_agents.drain(..) {
                    taken += 1;
                    assert_eq!(a.id, taken, "agents leave in spawn order");
                }
                h.timer_ops.clear();
            }
        }
        assert!(h.spawned <= max_agents.max(1), "agent cap exceeded");
        assert_eq!(
            taken + h.new_agents.len() as u64,
            h.spawned,
            "every spawned agent is handed to the driver exactly once"
        );
    }
}

fn check_spawn(
    h: &HostState,
    before: u64,
    r: Result<u64, crate::sandbox::bindings::SpawnError>,
    ids_seen: &mut u64,
) {
    match r {
        Ok(id) => {
            assert_eq!(id, before + 1, "ids are consecutive");
            assert_eq!(h.spawned, id);
            *ids_seen = id;
        }
        Err(_) => assert_eq!(h.spawned, before, "a refused spawn counts nothing"),
    }
}

/// What a fake agent answers in the round trip.
#[derive(Debug, Clone, Arbitrary)]
pub enum Outcome {
    /// A text answer.
    Text(String),
    /// JSON built from arbitrary data (strings, numbers, nesting).
    Json(ArbJson),
    /// A terminal failure.
    Fail(String),
}

/// A JSON value from arbitrary bytes (finite numbers only: JSON has no NaN).
#[derive(Debug, Clone, Arbitrary)]
pub enum ArbJson {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Int(i32),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<ArbJson>),
    /// An object.
    Object(Vec<(String, ArbJson)>),
}

impl ArbJson {
    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            ArbJson::Null => Value::Null,
            ArbJson::Bool(b) => Value::Bool(*b),
            ArbJson::Int(i) => Value::from(*i),
            ArbJson::Str(s) => Value::String(s.clone()),
            ArbJson::List(l) => Value::Array(l.iter().map(ArbJson::to_value).collect()),
            ArbJson::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), v.to_value())).collect())
            }
        }
    }
}

/// Answers every agent with a fixed outcome and remembers what it was sent.
struct Echo {
    outcome: Outcome,
    seen: Arc<std::sync::Mutex<Vec<AgentRequest>>>,
}

impl AgentBackend for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        if let Ok(mut s) = self.seen.lock() {
            s.push(request);
        }
        let usage = Usage::new(3, 4);
        let r = match &self.outcome {
            Outcome::Text(t) => Ok(AgentReply {
                output: AgentOutput::Text(t.clone()),
                usage,
            }),
            Outcome::Json(j) => Ok(AgentReply {
                output: AgentOutput::Json(j.to_value()),
                usage,
            }),
            Outcome::Fail(reason) => Err(AgentFailure {
                reason: reason.clone(),
                usage,
                kind: FailureKind::Other,
            }),
        };
        Box::pin(async move { r })
    }
}

const ROUND_TRIP: &str = "const r = await agent(args.prompt, args.options)\nreturn { r }\n";

/// Arbitrary prompts, options and outcomes cross the boundary and come
/// back unchanged: the backend sees the script's prompt and options, the
/// script sees the backend's output.
pub fn round_trip(engine: &WorkflowEngine, prompt: &str, options: &ArbJson, outcome: Outcome) {
    let mut options = match options.to_value() {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    // Options the host interprets are not what this oracle is about.
    for k in ["schema", "model", "label", "phase", "stallMs", "effort"] {
        options.remove(k);
    }
    let script = match Script::from_source(
        "rt.js".into(),
        "rt.js".into(),
        ROUND_TRIP.into(),
        Default::default(),
    ) {
        Ok(s) => s,
        Err(e) => panic!("the round-trip script is refused: {e}"),
    };
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut config = RunConfig::new(Arc::new(Echo {
        outcome: outcome.clone(),
        seen: seen.clone(),
    }));
    config.args_json =
        serde_json::json!({"prompt": prompt, "options": Value::Object(options.clone())})
            .to_string();
    config.limits = Limits {
        wall_clock: Duration::from_secs(30),
        ..Limits::default()
    };
    let outcome_run = run_script(engine, &script, config, EventSink::silent());
    let result = match outcome_run.result {
        Ok(v) => v,
        // Prompts or options over the size bounds are refused cleanly.
        Err(RunError::Script(f))
            if f.message.contains("--max-") || f.message.contains("128 levels") =>
        {
            return;
        }
        // Values nested past the host's 128 levels end the run cleanly.
        Err(RunError::Limit {
            kind: crate::error::LimitKind::ResultDepth,
            ..
        }) => return,
        Err(e) => panic!("round trip failed: {e}"),
    };
    let sent = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].prompt, prompt, "the prompt changed on the way");
    for (k, v) in &options {
        assert_eq!(sent[0].options.get(k), Some(v), "option `{k}` changed");
    }
    let expected = match outcome {
        Outcome::Text(t) => Value::String(t),
        Outcome::Json(j) => j.to_value(),
        Outcome::Fail(_) => Value::Null,
    };
    assert_eq!(result["r"], expected, "the outcome changed on the way back");
}

/// Runs arbitrary source under small bounds: a clean result or a clean
/// error, never a host crash, a hang past the wall clock, or an internal
/// error. Returns how the run ended (`None`: the static checks refused it).
pub fn script(engine: &WorkflowEngine, source: &str) -> Option<crate::RunOutcome> {
    let Ok(script) = Script::from_source(
        "fuzz.js".into(),
        "fuzz.js".into(),
        source.into(),
        Default::default(),
    ) else {
        return None; // refused by the checks: a clean error
    };
    let outcome = run_on_virtual_clock(engine, crate::Program::Script(&script), small_bounds(50));
    if let Err(RunError::Internal(e)) = &outcome.result {
        panic!("internal error on a script: {e:#}\n--- script ---\n{source}");
    }
    Some(outcome)
}

/// Whatever bytes arrive as a workflow module: [`WorkflowModule::load`]
/// refuses them with a message, or what it accepted keeps to the sandbox
/// contract and runs to a clean end under small bounds. Never a panic.
///
/// [`WorkflowModule::load`]: crate::WorkflowModule::load
pub fn loader(engine: &WorkflowEngine, bytes: &[u8]) {
    let path = std::path::Path::new("fuzz.wasm");
    let module = match crate::WorkflowModule::load(engine, path, bytes, Default::default()) {
        Ok(m) => m,
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("fuzz.wasm") || matches!(e, RunError::Script(_)),
                "a refusal must name the file: {message}"
            );
            return;
        }
    };
    for import in &module.info.imports {
        assert!(
            import.starts_with("wasmflow:workflow/"),
            "accepted a component importing {import}"
        );
    }
    // Any outcome is clean here: a damaged module may trap (an internal
    // error naming the trap) as long as the host survives it.
    let _ = run_on_virtual_clock(engine, crate::Program::Module(&module), small_bounds(20));
}

/// The sim backend at zero latency under small CPU, memory, wall-clock and
/// agent bounds.
fn small_bounds(max_agents: u64) -> RunConfig {
    let mut config = RunConfig::new(Arc::new(crate::backend::sim::SimBackend::new(
        Default::default(),
        Duration::ZERO,
        None,
    )));
    config.limits = Limits {
        fuel_per_slice: 20_000_000,
        memory_bytes: 64 << 20,
        wall_clock: Duration::from_secs(5),
        max_agents,
        ..Limits::default()
    };
    config
}

/// Runs `program` on a current-thread runtime with a virtual clock that
/// moves 1 ms per scheduler turn. Generated scripts sleep a lot
/// (`setTimeout`, waits up to the wall clock): in real time the fuzzer spent
/// over 90 % of its wall clock asleep. Timers still fire in order, and the
/// wall-clock bound still ends a script that waits forever, or that loops on
/// zero-delay timers (which a clock that only jumps when idle would never
/// end), only sooner.
fn run_on_virtual_clock(
    engine: &WorkflowEngine,
    program: crate::Program<'_>,
    config: RunConfig,
) -> crate::RunOutcome {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("starting tokio: {e}"),
    };
    rt.block_on(async {
        let clock = tokio::spawn(async {
            loop {
                tokio::time::advance(Duration::from_millis(1)).await;
            }
        });
        let outcome = crate::run_program_async(engine, program, config, EventSink::silent()).await;
        clock.abort();
        outcome
    })
}

/// A built component with bytes changed: each edit XORs `mask` into the
/// byte at `offset` (modulo the length).
pub fn mutate(base: &[u8], edits: &[(u32, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    if out.is_empty() {
        return out;
    }
    for &(offset, mask) in edits {
        let i = offset as usize % out.len();
        out[i] ^= mask;
    }
    out
}

/// Scripts built from a small grammar of workflow statements, so the fuzzer
/// reaches agent calls, combinators and timers, not only syntax errors.
#[derive(Debug, Arbitrary)]
pub enum Stmt {
    /// `agent(prompt)`.
    Agent(String),
    /// `parallel()` of N agents.
    Parallel(u8),
    /// `pipeline()` of N items over M stages.
    Pipeline(u8, u8),
    /// `phase(title)`.
    Phase(String),
    /// `log(text)`.
    Log(String),
    /// `setTimeout` of N ms.
    Timer(u16),
    /// `throw new Error(text)`.
    Throw(String),
    /// A loop of N rounds.
    Loop(u8, Box<Stmt>),
    /// `try { … } catch {}`.
    TryCatch(Box<Stmt>),
    /// Read `budget`.
    Budget,
}

impl Stmt {
    /// Appends the statement as JavaScript.
    pub fn render(&self, out: &mut String, depth: usize) {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "''".into());
        match self {
            Stmt::Agent(p) => out.push_str(&format!("acc.push(await agent({}));\n", q(p))),
            Stmt::Parallel(n) => out.push_str(&format!(
                "acc.push(await parallel(Array.from({{ length: {} }}, (_, i) => () => agent('p' + i))));\n",
                n % 8
            )),
            Stmt::Pipeline(n, s) => {
                let stages: Vec<String> = (0..(s % 3 + 1))
                    .map(|k| format!("x => agent('s{k} ' + x)"))
                    .collect();
                out.push_str(&format!(
                    "acc.push(await pipeline(Array.from({{ length: {} }}, (_, i) => i), {}));\n",
                    n % 6,
                    stages.join(", ")
                ));
            }
            Stmt::Phase(t) => out.push_str(&format!("phase({});\n", q(t))),
            Stmt::Log(t) => out.push_str(&format!("log({});\n", q(t))),
            Stmt::Timer(ms) => out.push_str(&format!(
                "await new Promise(r => setTimeout(r, {}));\n",
                ms % 20
            )),
            Stmt::Throw(m) => out.push_str(&format!("throw new Error({});\n", q(m))),
            Stmt::Loop(n, body) if depth < 4 => {
                out.push_str(&format!("for (let i{depth} = 0; i{depth} < {}; i{depth}++) {{\n", n % 4));
                body.render(out, depth + 1);
                out.push_str("}\n");
            }
            Stmt::TryCatch(body) if depth < 4 => {
                out.push_str("try {\n");
                body.render(out, depth + 1);
                out.push_str("} catch (e) { acc.push(String(e)) }\n");
            }
            Stmt::Budget => out.push_str("acc.push(budget.remaining());\n"),
            _ => {}
        }
    }
}

/// A whole script from statements.
pub fn render(stmts: &[Stmt]) -> String {
    let mut s = String::from("const acc = [];\n");
    for st in stmts {
        st.render(&mut s, 0);
    }
    s.push_str("return acc.length;\n");
    s
}
