//! `wasmflow mcp`: wasmflow as an MCP server, so any MCP client (Claude
//! Code, Claude Desktop, Codex CLI, Gemini CLI, Cursor, opencode) can hand
//! it a workflow script, let it run in the background, and read back only
//! the answer.
//!
//! The server is driven by model output: what a call may choose is bounded
//! by [`policy::Policy`] (the user's `[mcp]` config and the server's
//! flags), scripts are read only from inside the project
//! ([`project::Project`]), and runs go on in processes of their own,
//! handed the spec sealed into their run directory, never a command line
//! built from input. Its stdout carries only JSON-RPC.

// Logging (`notifications/message`) and roots are deprecated by SEP-2577,
// but they are what the clients people use today speak: the end-of-run
// message and the project from the client's root rely on them.
#![allow(deprecated)]

#[cfg(feature = "http")]
pub mod client;
pub mod http;
pub mod policy;
pub mod project;
mod prompts;
mod read;
mod resources;
mod start;
mod tasks;
mod tools;

use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CreateTaskResult, ElicitRequestParams, ElicitationAction, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, GetTaskParams, GetTaskResult, Implementation,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ServerCapabilities, ServerConfig, SetLevelRequestParams,
};
use rmcp::service::{ElicitationMode, RequestContext, RoleServer};
use rmcp::{ErrorData, Peer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use wasmflow::run::control::Op;
use wasmflow::run::launch::Env;
use wasmflow::run::run_dir::RunDir;
use wasmflow::run::spec::SimSpec;
use wasmflow::run::state::RunState;
use wasmflow::sandbox::engine::WorkflowEngine;

use crate::policy::{Flags, Policy};
use crate::project::Project;

/// Starts the process that runs a run the server created (status
/// `starting`, its spec sealed in `run.json`): the embedding binary knows
/// how (`wasmflow run-detached ID`, in a session of its own).
pub type Spawn = Arc<dyn Fn(&RunDir, &Env) -> Result<Child, String> + Send + Sync>;

/// How the server is set up: the user's choices, never a model's.
pub struct Options {
    /// `--project`; else the working directory (unless it is `/` or the
    /// home directory, where desktop clients start servers), else the
    /// client's first root.
    pub project: Option<PathBuf>,
    /// `$HOME`: the user config and saved workflows.
    pub home: Option<PathBuf>,
    /// Limits from the command line.
    pub flags: Flags,
    /// The simulated backend's settings for runs on `sim`.
    pub sim: SimSpec,
    /// Starts a created run's process.
    pub spawn: Spawn,
}

/// How often a waiting `workflow_result` reports progress (Claude Code
/// resets its tool watchdog on each).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The MCP server.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    options: Options,
    engine: OnceLock<Result<WorkflowEngine, String>>,
    project: tokio::sync::OnceCell<Project>,
    /// Counting the runs going and creating one happen together, so
    /// concurrent calls cannot all pass `max_running_runs`.
    launching: Mutex<()>,
}

type ToolResult = Result<Value, String>;

/// Runs `f` on the blocking pool (the library's steps block, and some
/// start runtimes of their own).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("internal error: {e}")))
}

impl Server {
    /// A server; the engine starts loading at once, in the background.
    pub fn new(options: Options) -> Server {
        let server = Server {
            inner: Arc::new(Inner {
                options,
                engine: OnceLock::new(),
                project: tokio::sync::OnceCell::new(),
                launching: Mutex::new(()),
            }),
        };
        let warm = server.clone();
        std::thread::spawn(move || {
            let _ = warm.engine_blocking();
        });
        server
    }

    fn engine_blocking(&self) -> Result<WorkflowEngine, String> {
        self.inner
            .engine
            .get_or_init(|| WorkflowEngine::new().map_err(|e| format!("loading the engine: {e:#}")))
            .clone()
    }

    async fn engine(&self) -> Result<WorkflowEngine, String> {
        let me = self.clone();
        blocking(move || me.engine_blocking()).await
    }

    async fn project(&self, peer: &Peer<RoleServer>) -> Result<Project, String> {
        let options = &self.inner.options;
        self.inner
            .project
            .get_or_try_init(|| async {
                let root = match &options.project {
                    Some(p) => p.clone(),
                    None => {
                        let cwd = std::env::current_dir()
                            .map_err(|e| format!("cannot read the working directory: {e}"))?;
                        let unusable = cwd == std::path::Path::new("/")
                            || options.home.as_deref() == Some(cwd.as_path());
                        match unusable {
                            true => first_root(peer).await.unwrap_or(cwd),
                            false => cwd,
                        }
                    }
                };
                Project::new(&root, options.home.clone())
            })
            .await
            .cloned()
    }

    fn policy(&self, project: &Project) -> Result<Policy, String> {
        Policy::load(
            &project.root,
            self.inner.options.home.as_deref(),
            &self.inner.options.flags,
        )
    }

    async fn call(&self, name: &str, args: Value, ctx: &RequestContext<RoleServer>) -> ToolResult {
        let project = self.project(&ctx.peer).await?;
        match name {
            "workflow_run" => self.run(project, tools::read(name, args)?, ctx).await,
            "workflow_plan" => self.plan(project, tools::read(name, args)?).await,
            "workflow_status" => {
                let input: tools::RunIdInput = tools::read(name, args)?;
                blocking(move || read::status(&project, &input.run_id)).await
            }
            "workflow_result" => self.result(project, tools::read(name, args)?, ctx).await,
            "workflow_stop" => {
                let input: tools::RunIdInput = tools::read(name, args)?;
                blocking(move || read::stop(&project, &input.run_id)).await
            }
            "workflow_skip" | "workflow_retry" => {
                let input: tools::AgentInput = tools::read(name, args)?;
                let op = if name == "workflow_skip" {
                    Op::Skip
                } else {
                    Op::Retry
                };
                blocking(move || read::steer(&project, &input.run_id, &input.agent, op)).await
            }
            "workflow_agent" => {
                let input: tools::AgentInput = tools::read(name, args)?;
                blocking(move || read::agent(&project, &input.run_id, &input.agent)).await
            }
            "workflow_list" => {
                let _: tools::NoInput = tools::read(name, args)?;
                let home = self.inner.options.home.clone();
                blocking(move || {
                    Ok(json!({"workflows": wasmflow::script::catalog::entries(&project.root, home.as_deref())}))
                })
                .await
            }
            other => Err(format!(
                "there is no tool `{other}` (tools/list lists them)"
            )),
        }
    }

    async fn plan(&self, project: Project, input: tools::PlanInput) -> ToolResult {
        let policy = self.policy(&project)?;
        let engine = self.engine().await?;
        let sim = self.inner.options.sim.clone();
        blocking(move || {
            let ready = start::prepare(&project, &policy, &engine, &sim, input.into())?;
            let script = &ready.prepared.script;
            Ok(json!({
                "workflowName": script.name(),
                "meta": script.meta.as_ref().map(|m| m.raw.clone()),
                "backend": ready.prepared.backend_name,
                "phases": start::phases_json(&ready),
                "estimate": start::estimate_json(&ready.estimate),
                "needsConsent": ready.needs_consent,
                "limits": policy,
            }))
        })
        .await
    }

    async fn run(
        &self,
        project: Project,
        input: tools::RunInput,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let policy = self.policy(&project)?;
        let going = {
            let project = project.clone();
            blocking(move || Ok(start::running_runs(&project))).await?
        };
        if going >= policy.max_running_runs {
            return Err(too_many(going, &policy));
        }
        let engine = self.engine().await?;
        let sim = self.inner.options.sim.clone();
        let ready = {
            let (project, policy) = (project.clone(), policy.clone());
            blocking(move || start::prepare(&project, &policy, &engine, &sim, input.into())).await?
        };
        let started = Instant::now();
        let mut response = json!({
            "status": "async_launched",
            "workflowName": ready.prepared.script.name(),
            "scriptPath": ready.script_path,
            "backend": ready.prepared.backend_name,
            "phases": start::phases_json(&ready),
            "estimate": start::estimate_json(&ready.estimate),
        });
        if let Some(why) = &ready.needs_consent {
            consent(&ctx.peer, why).await?;
        }
        let inner = self.inner.clone();
        let env = project.env.clone();
        let (dir, child) = blocking(move || {
            let _one_at_a_time = inner.launching.lock().unwrap_or_else(|e| e.into_inner());
            let going = start::running_runs(&project);
            if going >= policy.max_running_runs {
                return Err(too_many(going, &policy));
            }
            let dir = start::create(ready)?;
            let child = (inner.options.spawn)(&dir, &env)?;
            Ok((dir, child))
        })
        .await?;
        tracing::info!(run = %dir.id, after_consent_ms = started.elapsed().as_millis() as u64, "run launched");
        response["runId"] = json!(dir.id);
        response["note"] = json!(
            "the run goes on in the background: workflow_status shows its progress, workflow_result (with waitSeconds) returns its result"
        );
        watch(child, dir, ctx.peer.clone());
        Ok(response)
    }

    async fn result(
        &self,
        project: Project,
        input: tools::ResultInput,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let wait =
            Duration::from_secs(input.wait_seconds.unwrap_or(0).min(tools::MAX_WAIT_SECONDS));
        let (dir, _) = {
            let (project, id) = (project.clone(), input.run_id.clone());
            blocking(move || read::open(&project, &id)).await?
        };
        let token = ctx.meta.get_progress_token();
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let dir = Arc::new(dir);
        while !wait.is_zero() {
            // Each tick reads only run.json and the lock; the events are
            // folded only when a progress notification is due.
            let d = dir.clone();
            let status = blocking(move || d.read_info().map(|i| d.status(&i))).await?;
            if !matches!(status.as_str(), "running" | "starting") || started.elapsed() >= wait {
                break;
            }
            if let Some(token) = &token
                && last_progress.elapsed() >= PROGRESS_EVERY
            {
                last_progress = Instant::now();
                let d = dir.clone();
                let state = blocking(move || RunState::load(&d)).await?;
                let mut p =
                    ProgressNotificationParam::new(token.clone(), started.elapsed().as_secs_f64());
                p.total = Some(wait.as_secs_f64());
                p.message = Some(progress_line(&state));
                let _ = ctx.peer.notify_progress(p).await;
            }
            tokio::select! {
                _ = ctx.ct.cancelled() => return Err("cancelled".into()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        blocking(move || read::result(&project, &input.run_id, input.offset, input.max_bytes)).await
    }
}

fn too_many(going: u64, policy: &Policy) -> String {
    format!(
        "{going} runs are going in this project, the most allowed at once ([mcp] max_running_runs = {}); wait for one to end (workflow_result with waitSeconds) or stop one (workflow_stop)",
        policy.max_running_runs
    )
}

/// One line on a run's progress, as a progress notification shows it.
fn progress_line(s: &RunState) -> String {
    let phase = s
        .phases
        .iter()
        .rev()
        .find(|p| p.counts.running > 0)
        .map(|p| format!(", phase {}", p.title))
        .unwrap_or_default();
    format!(
        "run {}: {} agents done, {} failed, {} running{phase}; {}s",
        s.id,
        s.agents.done,
        s.agents.failed,
        s.agents.running,
        s.elapsed_ms / 1000
    )
}

/// A person's agreement, asked through MCP elicitation; a client that
/// cannot ask gets a refusal that says what the user can do.
async fn consent(peer: &Peer<RoleServer>, why: &str) -> Result<(), String> {
    if !peer
        .supported_elicitation_modes()
        .contains(&ElicitationMode::Form)
    {
        return Err(format!(
            "{why}; not started: this client cannot ask the user (it has no MCP elicitation), and a run this size needs a person's yes. The user can start it from a terminal (`wasmflow run --detach`), or raise [plan] confirm_agents / confirm_usd in ~/.config/wasmflow/config.toml"
        ));
    }
    let params: ElicitRequestParams = serde_json::from_value(json!({
        "mode": "form",
        "message": format!("{why}. Start it?"),
        "requestedSchema": {"type": "object", "properties": {}},
    }))
    .map_err(|e| format!("internal error: {e}"))?;
    match peer.create_elicitation(params).await {
        Ok(answer) if answer.action == ElicitationAction::Accept => Ok(()),
        Ok(_) => Err(format!("{why}; not started: the user declined")),
        Err(e) => Err(format!("{why}; not started: asking the user failed ({e})")),
    }
}

/// Reaps a run's process and, when it ends, tells the client that started
/// it (`notifications/message`); polling stays the reliable path.
fn watch(mut child: Child, dir: RunDir, peer: Peer<RoleServer>) {
    tokio::spawn(async move {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        let status = dir
            .read_info()
            .map(|i| dir.status(&i))
            .unwrap_or_else(|_| "unknown".into());
        let data = json!({
            "runId": dir.id,
            "status": status,
            "message": format!("wasmflow run {} ended: {status} (workflow_result returns its result)", dir.id),
        });
        let mut note = LoggingMessageNotificationParam::new(LoggingLevel::Info, data);
        note.logger = Some("wasmflow".into());
        #[allow(deprecated)]
        let _ = peer.notify_logging_message(note).await;
    });
}

/// The client's first root, when it has roots and one is a local path.
async fn first_root(peer: &Peer<RoleServer>) -> Option<PathBuf> {
    let has_roots = peer
        .peer_info()
        .is_some_and(|i| i.capabilities.roots.is_some());
    if !has_roots {
        return None;
    }
    #[allow(deprecated)]
    let roots = peer.list_roots().await.ok()?;
    roots
        .roots
        .iter()
        .find_map(|r| r.uri.strip_prefix("file://").map(PathBuf::from))
}

/// A protocol type from its wire form.
fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ErrorData> {
    serde_json::from_value(v)
        .map_err(|e| ErrorData::internal_error(format!("building a reply: {e}"), None))
}

fn text_result(value: &Value, error: bool) -> CallToolResult {
    if error {
        CallToolResult::error(vec![ContentBlock::text(
            value
                .as_str()
                .map_or_else(|| value.to_string(), String::from),
        )])
    } else {
        CallToolResult::structured(value.clone())
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .enable_resources()
                .enable_prompts()
                .enable_tasks()
                .build(),
        );
        info.server_info = Implementation::new("wasmflow", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "wasmflow runs workflow scripts: JavaScript that orchestrates many LLM agents (fan-out, cross-checks, votes, pipelines) in a sandbox, in the background, journaled so a resumed run never pays twice. Start one with workflow_run (script text, a saved workflow's name, or a scriptPath in the project); it returns a runId at once. Poll workflow_status, then read only the final answer with workflow_result (waitSeconds waits). workflow_plan estimates without running.".into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = tools::list()
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ErrorData::internal_error(format!("tool list: {e}"), None))?;
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        let name = request.name.to_string();
        let wants_task = context
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        let result = match self.call(&name, args, &context).await {
            Ok(v) if name == "workflow_run" && wants_task => {
                let id = v["runId"].as_str().unwrap_or_default().to_string();
                return Ok(CallToolResponse::Task(CreateTaskResult::new(
                    tasks::created(&id, &v),
                )));
            }
            Ok(v) => text_result(&v, false),
            Err(message) => {
                tracing::info!(tool = %name, "refused: {message}");
                text_result(&json!(message), true)
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        from_json(resources::list())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        from_json(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let project = self
            .project(&context.peer)
            .await
            .map_err(|e| ErrorData::internal_error(e, None))?;
        let uri = request.uri.clone();
        let (text, mime) = blocking(move || resources::read(&project, &uri))
            .await
            .map_err(|e| ErrorData::resource_not_found(e, None))?;
        let result: ReadResourceResult = from_json(json!({
            "contents": [{"uri": request.uri, "mimeType": mime, "text": text}],
        }))?;
        Ok(result.into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let project = self
            .project(&context.peer)
            .await
            .map_err(|e| ErrorData::internal_error(e, None))?;
        let home = self.inner.options.home.clone();
        let list = blocking(move || Ok(prompts::list(&project.root, home.as_deref())))
            .await
            .map_err(|e| ErrorData::internal_error(e, None))?;
        from_json(list)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let project = self
            .project(&context.peer)
            .await
            .map_err(|e| ErrorData::internal_error(e, None))?;
        let home = self.inner.options.home.clone();
        let args = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("args"))
            .and_then(|v| v.as_str())
            .map(String::from);
        let name = request.name.clone();
        let prompt =
            blocking(move || prompts::get(&project.root, home.as_deref(), &name, args.as_deref()))
                .await
                .map_err(|e| ErrorData::invalid_params(e, None))?;
        let result: GetPromptResult = from_json(prompt)?;
        Ok(result.into())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let project = self
            .project(&context.peer)
            .await
            .map_err(|e| ErrorData::internal_error(e, None))?;
        let task = blocking(move || tasks::get(&project, &request.task_id))
            .await
            .map_err(|e| ErrorData::invalid_params(e, None))?;
        Ok(GetTaskResult::new(task))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let project = self
            .project(&context.peer)
            .await
            .map_err(|e| ErrorData::internal_error(e, None))?;
        blocking(move || tasks::cancel(&project, &request.task_id))
            .await
            .map_err(|e| ErrorData::invalid_params(e, None))
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }
}

/// Serves MCP over stdin and stdout until the client closes the session.
/// Runs it started go on.
pub async fn serve_stdio(options: Options) -> anyhow::Result<()> {
    let service = Server::new(options)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("starting the MCP session: {e}"))?;
    service.waiting().await?;
    Ok(())
}
