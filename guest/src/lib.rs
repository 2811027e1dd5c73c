//! The wasmflow engine: QuickJS (through the `javy` crate) plus the workflow
//! globals, exporting the poll-style driver of `wit/workflow.wit`.
//!
//! The runtime and the prelude are created in `wizer-initialize`, which the
//! engine builder runs once and snapshots, so a run starts from a ready
//! JavaScript context. Everything here is single-threaded: the guest never
//! blocks, it returns `step::waiting` and the host calls `deliver` later.

use std::cell::UnsafeCell;
use std::ffi::CString;

use javy::quickjs::{self, Ctx, Function, Object, Persistent, Value, qjs};
use javy::{Config, Runtime};

wit_bindgen::generate!({
    world: "engine",
    path: "../wit",
});

use exports::wasmflow::workflow::{compiler, driver, runner};
use wasmflow::workflow::types::{
    AgentOutcome, AgentRequest, Event, LogLevel, RunOptions, ScriptError, SpawnError, Step,
};
use wasmflow::workflow::{host, wait};

const PRELUDE: &str = include_str!("prelude.js");

struct State {
    runtime: Runtime,
    /// The object the prelude returns: `start`, `agentDone`, `timerFired`,
    /// `status`.
    api: Persistent<Object<'static>>,
    /// Bytecode from `load`, kept alive as long as the instance: QuickJS may
    /// keep pointers into it.
    bytecode: Option<Vec<u8>>,
}

/// The guest's one global. Wasm instances are single-threaded and the host
/// never re-enters an export, so exclusive access holds.
struct Global(UnsafeCell<Option<State>>);
unsafe impl Sync for Global {}
static STATE: Global = Global(UnsafeCell::new(None));

fn state() -> &'static mut State {
    // SAFETY: see `Global`.
    let slot = unsafe { &mut *STATE.0.get() };
    if slot.is_none() {
        *slot = Some(init_state());
    }
    slot.as_mut().expect("initialised above")
}

/// Called once by the engine builder (Wizer) and snapshotted.
#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn wizer_initialize() {
    state();
}

fn init_state() -> State {
    let mut config = Config::default();
    // The cycle collector must run in long workflows; usize::MAX (javy's
    // default) would never trigger it.
    config.gc_threshold(4 * 1024 * 1024);
    config.max_stack_size(1024 * 1024);
    let runtime = Runtime::new(config).expect("QuickJS runtime");
    let api = runtime
        .context()
        .with(|ctx| -> quickjs::Result<_> {
            let native = native_object(&ctx)?;
            let factory: Function = ctx.eval(PRELUDE)?;
            let api: Object = factory.call((native,))?;
            Ok(Persistent::save(&ctx, api))
        })
        .unwrap_or_else(|e| panic!("prelude failed to initialise: {e}"));
    State {
        runtime,
        api,
        bytecode: None,
    }
}

/// The host calls the prelude uses, as JS functions.
fn native_object<'js>(ctx: &Ctx<'js>) -> quickjs::Result<Object<'js>> {
    let native = Object::new(ctx.clone())?;
    native.set(
        "spawn",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             prompt: String,
             options_json: String,
             phase: Option<String>,
             priority: f64| { spawn(ctx, prompt, options_json, phase, priority) },
        )?,
    )?;
    native.set(
        "log",
        Function::new(ctx.clone(), |level: i32, msg: String| {
            let level = match level {
                0 => LogLevel::Debug,
                1 => LogLevel::Info,
                2 => LogLevel::Warn,
                _ => LogLevel::Error,
            };
            host::log(level, &msg);
        })?,
    )?;
    native.set(
        "phase",
        Function::new(ctx.clone(), |title: String| host::phase(&title))?,
    )?;
    native.set(
        "setTimer",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, ms: f64| {
            id_value(&ctx, host::set_timer(ms.clamp(0.0, u32::MAX as f64) as u32))
        })?,
    )?;
    native.set(
        "clearTimer",
        Function::new(ctx.clone(), |id: f64| {
            if id >= 0.0 && id.fract() == 0.0 {
                host::clear_timer(id as u64);
            }
        })?,
    )?;
    native.set(
        "loadWorkflow",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, reference: String| {
            load_workflow(ctx, reference)
        })?,
    )?;
    native.set(
        "evaluate",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, source: String, filename: String| evaluate(&ctx, &source, &filename),
        )?,
    )?;
    Ok(native)
}

fn load_workflow<'js>(ctx: Ctx<'js>, reference: String) -> quickjs::Result<Object<'js>> {
    let obj = Object::new(ctx)?;
    match host::load_workflow(&reference) {
        Ok(child) => {
            obj.set("source", child.source)?;
            obj.set("filename", child.filename)?;
        }
        Err(message) => obj.set("error", message)?,
    }
    Ok(obj)
}

/// Evaluates trusted-shape source from the host (a wrapped child workflow)
/// and returns its completion value; `eval` itself is not reachable from
/// scripts.
fn evaluate<'js>(ctx: &Ctx<'js>, source: &str, filename: &str) -> quickjs::Result<Value<'js>> {
    eval_raw(ctx, source, filename, qjs::JS_EVAL_TYPE_GLOBAL)
}

/// `JS_Eval` of global code with `flags`; the result is owned by the
/// returned value. A NUL byte in the source or name is a TypeError.
fn eval_raw<'js>(
    ctx: &Ctx<'js>,
    source: &str,
    filename: &str,
    flags: u32,
) -> quickjs::Result<Value<'js>> {
    let nul = |what| quickjs::Error::new_from_js_message("string", what, "contains a NUL byte");
    let src = CString::new(source).map_err(|_| nul("source"))?;
    let name = CString::new(filename).map_err(|_| nul("filename"))?;
    // SAFETY: a plain QuickJS API call on a live context; the value it
    // returns is handed to rquickjs, which frees it.
    unsafe {
        let v = qjs::JS_Eval(
            ctx.as_raw().as_ptr(),
            src.as_ptr(),
            src.as_bytes().len() as _,
            name.as_ptr(),
            flags as i32,
        );
        if qjs::JS_IsException(v) {
            return Err(quickjs::Error::Exception);
        }
        Ok(Value::from_raw(ctx.clone(), v))
    }
}

fn spawn<'js>(
    ctx: Ctx<'js>,
    prompt: String,
    options_json: String,
    phase: Option<String>,
    priority: f64,
) -> quickjs::Result<Value<'js>> {
    let request = AgentRequest {
        prompt,
        options_json,
        phase,
        priority: priority.clamp(0.0, u32::MAX as f64) as u32,
    };
    match host::spawn(&request) {
        Ok(id) => Ok(id_value(&ctx, id)),
        Err(err) => {
            let (kind, message) = match err {
                SpawnError::CapReached(m) => ("cap", m),
                SpawnError::BudgetExceeded(m) => ("budget", m),
                SpawnError::Invalid(m) => ("invalid", m),
            };
            let obj = Object::new(ctx)?;
            obj.set("kind", kind)?;
            obj.set("message", message)?;
            Ok(obj.into_value())
        }
    }
}

/// Ids cross as small integers where they fit: QuickJS hashes float keys of
/// a `Map` poorly, and the prelude keys its pending agents by id.
fn id_value<'js>(ctx: &Ctx<'js>, id: u64) -> Value<'js> {
    match i32::try_from(id) {
        Ok(small) => Value::new_int(ctx.clone(), small),
        Err(_) => Value::new_number(ctx.clone(), id as f64),
    }
}

/// Turns a pending JS exception into a `ScriptError`.
fn caught(ctx: &Ctx<'_>, err: quickjs::Error) -> ScriptError {
    if !matches!(err, quickjs::Error::Exception) {
        return ScriptError {
            name: "InternalError".into(),
            message: err.to_string(),
            stack: None,
        };
    }
    let exc = ctx.catch();
    describe_error(&exc)
}

fn describe_error(exc: &Value<'_>) -> ScriptError {
    if let Some(obj) = exc.as_object() {
        let get = |k: &str| -> Option<String> {
            obj.get::<_, Option<quickjs::Coerced<String>>>(k)
                .ok()
                .flatten()
                .map(|c| c.0)
        };
        ScriptError {
            name: get("name").unwrap_or_else(|| "Error".into()),
            message: get("message").unwrap_or_default(),
            stack: get("stack").filter(|s| !s.is_empty()),
        }
    } else {
        let message = exc
            .as_string()
            .and_then(|s| s.to_string().ok())
            .unwrap_or_else(|| format!("uncaught {}", exc.type_name()));
        ScriptError {
            name: "Error".into(),
            message,
            stack: None,
        }
    }
}

fn internal(message: impl Into<String>) -> ScriptError {
    ScriptError {
        name: "InternalError".into(),
        message: message.into(),
        stack: None,
    }
}

/// Drains the microtask queue; a failing job is a script error.
fn run_jobs(state: &State) -> Result<(), ScriptError> {
    state
        .runtime
        .resolve_pending_jobs()
        .map_err(|e| internal(format!("pending job failed: {e}")))
}

/// Reads the prelude's `status()` and turns it into a step; on success the
/// result goes to the host through `report`.
fn current_step(state: &State) -> Step {
    state.runtime.context().with(|ctx| {
        let outcome = (|| -> Result<Step, ScriptError> {
            let api = state
                .api
                .clone()
                .restore(&ctx)
                .map_err(|e| caught(&ctx, e))?;
            let status_fn: Function = api.get("status").map_err(|e| caught(&ctx, e))?;
            let status: Object = status_fn.call(()).map_err(|e| caught(&ctx, e))?;
            let field =
                |k: &str| -> Option<String> { status.get::<_, Option<String>>(k).ok().flatten() };
            match field("state").as_deref() {
                Some("waiting") => {
                    let n: f64 = status.get("inflight").unwrap_or(0.0);
                    Ok(Step::Waiting(n.clamp(0.0, u32::MAX as f64) as u32))
                }
                Some("ok") => {
                    host::report(&field("json").unwrap_or_else(|| "null".into()));
                    Ok(Step::Done(Ok(())))
                }
                _ => Ok(Step::Done(Err(ScriptError {
                    name: field("name").unwrap_or_else(|| "Error".into()),
                    message: field("message").unwrap_or_default(),
                    stack: field("stack"),
                }))),
            }
        })();
        outcome.unwrap_or_else(|e| Step::Done(Err(e)))
    })
}

struct Component;

impl compiler::Guest for Component {
    fn compile(source: String, filename: String) -> Result<Vec<u8>, ScriptError> {
        let state = state();
        state.runtime.context().with(|ctx| {
            let flags = qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY;
            let func = eval_raw(&ctx, &source, &filename, flags).map_err(|e| caught(&ctx, e))?;
            let raw = ctx.as_raw().as_ptr();
            // SAFETY: plain QuickJS API calls on a live context; the buffer
            // JS_WriteObject returns is copied, then freed.
            unsafe {
                let mut len = 0usize;
                let buf = qjs::JS_WriteObject(
                    raw,
                    &mut len as *mut usize as *mut _,
                    func.as_raw(),
                    qjs::JS_WRITE_OBJ_BYTECODE as i32,
                );
                if buf.is_null() {
                    return Err(caught(&ctx, quickjs::Error::Exception));
                }
                let bytes = std::slice::from_raw_parts(buf, len).to_vec();
                qjs::js_free(raw, buf as *mut _);
                Ok(bytes)
            }
        })
    }

    fn load(bytecode: Vec<u8>) -> Result<(), ScriptError> {
        let state = state();
        if state.bytecode.is_some() {
            return Err(internal("a script is already loaded in this instance"));
        }
        state.bytecode = Some(bytecode);
        Ok(())
    }
}

impl driver::Guest for Component {
    fn start(args_json: String, options: RunOptions) -> Step {
        let state = state();
        let Some(bytecode) = state.bytecode.as_ref() else {
            return Step::Done(Err(internal("start() called before a script was loaded")));
        };
        let (ptr, len) = (bytecode.as_ptr() as usize, bytecode.len());
        let started = state
            .runtime
            .context()
            .with(|ctx| -> Result<(), ScriptError> {
                let api = state
                    .api
                    .clone()
                    .restore(&ctx)
                    .map_err(|e| caught(&ctx, e))?;
                let start: Function = api.get("start").map_err(|e| caught(&ctx, e))?;
                let run = run_function(&ctx, ptr, len).map_err(|e| caught(&ctx, e))?;
                let total = options.budget_total.map(|t| t as f64);
                start
                    .call::<_, ()>((args_json, run, total))
                    .map_err(|e| caught(&ctx, e))
            });
        if let Err(e) = started {
            return Step::Done(Err(e));
        }
        if let Err(e) = run_jobs(state) {
            return Step::Done(Err(e));
        }
        current_step(state)
    }

    fn deliver(events: Vec<Event>) -> Step {
        let state = state();
        let delivered = state
            .runtime
            .context()
            .with(|ctx| -> Result<(), ScriptError> {
                let api = state
                    .api
                    .clone()
                    .restore(&ctx)
                    .map_err(|e| caught(&ctx, e))?;
                let agent_done: Function = api.get("agentDone").map_err(|e| caught(&ctx, e))?;
                let agent_error: Function = api.get("agentError").map_err(|e| caught(&ctx, e))?;
                let timer_fired: Function = api.get("timerFired").map_err(|e| caught(&ctx, e))?;
                for event in events {
                    match event {
                        Event::Agent(result) => {
                            let id = id_value(&ctx, result.id);
                            let output_tokens = result.usage.output_tokens as f64;
                            if let AgentOutcome::Error(message) = result.outcome {
                                agent_error
                                    .call::<_, bool>((id, message, output_tokens))
                                    .map_err(|e| caught(&ctx, e))?;
                                continue;
                            }
                            let value = outcome_value(&ctx, result.outcome)?;
                            agent_done
                                .call::<_, bool>((id, value, output_tokens))
                                .map_err(|e| caught(&ctx, e))?;
                        }
                        Event::Timer(id) => {
                            timer_fired
                                .call::<_, ()>((id_value(&ctx, id),))
                                .map_err(|e| caught(&ctx, e))?;
                        }
                    }
                }
                Ok(())
            });
        if let Err(e) = delivered {
            return Step::Done(Err(e));
        }
        if let Err(e) = run_jobs(state) {
            return Step::Done(Err(e));
        }
        current_step(state)
    }
}

impl runner::Guest for Component {
    /// The blocking driver is the poll driver with the host's wait in the
    /// loop: one event loop for both.
    fn run(args_json: String, options: RunOptions) -> Result<(), ScriptError> {
        let mut step = <Component as driver::Guest>::start(args_json, options);
        loop {
            match step {
                Step::Done(result) => return result,
                Step::Waiting(_) => {
                    let events = wait::await_next();
                    step = <Component as driver::Guest>::deliver(events);
                }
            }
        }
    }
}

fn outcome_value<'js>(ctx: &Ctx<'js>, outcome: AgentOutcome) -> Result<Value<'js>, ScriptError> {
    match outcome {
        AgentOutcome::Text(text) => quickjs::String::from_str(ctx.clone(), &text)
            .map(|s| s.into_value())
            .map_err(|e| caught(ctx, e)),
        AgentOutcome::Json(json) => ctx.json_parse(json).map_err(|e| {
            let mut err = caught(ctx, e);
            err.message = format!(
                "the host delivered an agent reply that is not JSON: {}",
                err.message
            );
            err
        }),
        AgentOutcome::Failed(_) | AgentOutcome::Skipped | AgentOutcome::Error(_) => {
            Ok(Value::new_null(ctx.clone()))
        }
    }
}

fn run_function<'js>(ctx: &Ctx<'js>, ptr: usize, len: usize) -> quickjs::Result<Function<'js>> {
    Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
        eval_bytecode(&ctx, ptr, len)
    })
}

/// Runs the loaded script: its completion value is the promise of the
/// wrapped async body.
fn eval_bytecode<'js>(ctx: &Ctx<'js>, ptr: usize, len: usize) -> quickjs::Result<Value<'js>> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: ptr/len point into `State::bytecode`, which lives as long as
    // the instance; the bytecode came from `compile` in this same engine.
    unsafe {
        let func = qjs::JS_ReadObject(
            raw,
            ptr as *const u8,
            len as _,
            qjs::JS_READ_OBJ_BYTECODE as i32,
        );
        if qjs::JS_IsException(func) {
            return Err(quickjs::Error::Exception);
        }
        let ret = qjs::JS_EvalFunction(raw, func);
        if qjs::JS_IsException(ret) {
            return Err(quickjs::Error::Exception);
        }
        Ok(Value::from_raw(ctx.clone(), ret))
    }
}

export!(Component);
