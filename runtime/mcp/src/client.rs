//! wasmflow as an MCP client: the servers of `[mcp_servers]` (and an
//! opted-in `.mcp.json`) started for a run, their tools offered to agents
//! on the HTTP backends through the library's [`ToolProvider`].
//!
//! Servers run on a runtime of their own (one worker thread), so they
//! outlive any runtime the run builds and stop together at the end.
//! A stdio server's environment is PATH, HOME and its configured `env`,
//! nothing else: never the keys of wasmflow's own backends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;
use wasmflow::backend::BoxFuture;
use wasmflow::run::run_dir::RunDir;
use wasmflow::tools::servers::{ServerSpec, Transport};
use wasmflow::tools::{ToolInfo, ToolOutput, ToolProvider};

/// Longest a server may take to start and list its tools.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a server's stderr is kept for messages.
const STDERR_TAIL: usize = 4096;

/// A server that did not start.
#[derive(Debug)]
pub struct StartError {
    /// Its name.
    pub server: String,
    /// Where it was configured.
    pub origin: String,
    /// What went wrong.
    pub reason: String,
    /// The end of what it wrote to stderr.
    pub stderr: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the MCP server `{}` ({}) did not start: {}",
            self.server, self.origin, self.reason
        )?;
        if !self.stderr.trim().is_empty() {
            write!(f, "\nits stderr ends:\n{}", self.stderr.trim_end())?;
        }
        Ok(())
    }
}

/// What a server writes to stderr: its last bytes, for messages, and,
/// once the run directory is known, all of it in `mcp/<name>.stderr.log`.
#[derive(Clone, Default)]
struct StderrLog(Arc<Mutex<StderrState>>);

#[derive(Default)]
struct StderrState {
    tail: VecDeque<u8>,
    file: Option<std::fs::File>,
}

impl StderrLog {
    fn push(&self, bytes: &[u8]) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = s.file.as_mut() {
            let _ = std::io::Write::write_all(f, bytes);
        }
        s.tail.extend(bytes);
        let extra = s.tail.len().saturating_sub(STDERR_TAIL);
        s.tail.drain(..extra);
    }

    fn text(&self) -> String {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&s.tail.iter().copied().collect::<Vec<u8>>()).into_owned()
    }

    /// From now on into `file`, starting with what was kept so far.
    fn keep_in(&self, mut file: std::fs::File) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let so_far: Vec<u8> = s.tail.iter().copied().collect();
        let _ = std::io::Write::write_all(&mut file, &so_far);
        s.file = Some(file);
    }
}

/// One server: how to start it, the live connection, and whether its one
/// restart is spent.
struct Slot {
    spec: ServerSpec,
    stderr: StderrLog,
    state: tokio::sync::Mutex<SlotState>,
}

struct SlotState {
    service: Option<RunningService<RoleClient, ()>>,
    restarted: bool,
}

/// A run's started servers.
pub struct ToolServers {
    runtime: Option<tokio::runtime::Runtime>,
    provider: Arc<Provider>,
}

struct Provider {
    handle: tokio::runtime::Handle,
    slots: BTreeMap<String, Arc<Slot>>,
    tools: Vec<ToolInfo>,
}

impl ToolServers {
    /// Starts every server at once and lists its tools; the first that
    /// fails stops the others and is returned.
    pub fn start(specs: &[ServerSpec]) -> Result<ToolServers, StartError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wasmflow-mcp-client")
            .enable_all()
            .build()
            .map_err(|e| StartError {
                server: String::new(),
                origin: String::new(),
                reason: format!("cannot start a runtime for MCP servers: {e}"),
                stderr: String::new(),
            })?;
        let results = runtime.block_on(async {
            let tasks: Vec<_> = specs
                .iter()
                .cloned()
                .map(|spec| tokio::spawn(start_one(spec)))
                .collect();
            let mut results = Vec::new();
            for (task, spec) in tasks.into_iter().zip(specs) {
                results.push(task.await.unwrap_or_else(|e| {
                    Err(StartError {
                        server: spec.name.clone(),
                        origin: spec.origin.clone(),
                        reason: format!("its start-up ended abnormally: {e}"),
                        stderr: String::new(),
                    })
                }));
            }
            results
        });
        let mut slots = BTreeMap::new();
        let mut failure = None;
        let mut tools = Vec::new();
        for result in results {
            match result {
                Ok(started) => {
                    tools.extend(started.tools);
                    slots.insert(
                        started.spec.name.clone(),
                        Arc::new(Slot {
                            spec: started.spec,
                            stderr: started.stderr,
                            state: tokio::sync::Mutex::new(SlotState {
                                service: Some(started.service),
                                restarted: false,
                            }),
                        }),
                    );
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let servers = ToolServers {
            provider: Arc::new(Provider {
                handle: runtime.handle().clone(),
                slots,
                tools,
            }),
            runtime: Some(runtime),
        };
        match failure {
            Some(e) => {
                servers.shutdown();
                Err(e)
            }
            None => Ok(servers),
        }
    }

    /// Keeps each server's stderr in the run directory
    /// (`mcp/<name>.stderr.log`): what it wrote so far, and from now on.
    pub fn keep_stderr_in(&self, run: &RunDir) -> std::io::Result<()> {
        let dir = run.subdir("mcp")?;
        for (name, slot) in &self.provider.slots {
            slot.stderr
                .keep_in(RunDir::append_in(&dir, &format!("{name}.stderr.log"))?);
        }
        Ok(())
    }

    /// What agents get: the servers' tools.
    pub fn provider(&self) -> Arc<dyn ToolProvider> {
        self.provider.clone()
    }

    /// Stops every server (stdio ones: stdin closed, then SIGTERM, then
    /// killed, as the MCP specification's shutdown sequence goes).
    pub fn shutdown(mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let slots: Vec<Arc<Slot>> = self.provider.slots.values().cloned().collect();
        runtime.block_on(async {
            let stops: Vec<_> = slots
                .into_iter()
                .map(|slot| {
                    tokio::spawn(async move {
                        if let Some(mut service) = slot.state.lock().await.service.take() {
                            let _ = service.close_with_timeout(Duration::from_secs(5)).await;
                        }
                    })
                })
                .collect();
            for s in stops {
                let _ = s.await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

impl Drop for ToolServers {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping the services kills stdio children (rmcp's cleanup
            // guard); the runtime must not be dropped inside another.
            for slot in self.provider.slots.values() {
                if let Ok(mut state) = slot.state.try_lock() {
                    state.service = None;
                }
            }
            runtime.shutdown_background();
        }
    }
}

/// A server that started: its connection and tools.
struct Started {
    spec: ServerSpec,
    stderr: StderrLog,
    service: RunningService<RoleClient, ()>,
    tools: Vec<ToolInfo>,
}

async fn start_one(spec: ServerSpec) -> Result<Started, StartError> {
    start_with(spec, StderrLog::default()).await
}

async fn start_with(spec: ServerSpec, stderr: StderrLog) -> Result<Started, StartError> {
    let failed = |reason: String, stderr: &StderrLog| StartError {
        server: spec.name.clone(),
        origin: spec.origin.clone(),
        reason,
        stderr: stderr.text(),
    };
    let started = tokio::time::timeout(START_TIMEOUT, async {
        let service = match &spec.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).current_dir(cwd).env_clear();
                for var in ["PATH", "HOME"] {
                    if let Some(v) = std::env::var_os(var) {
                        cmd.env(var, v);
                    }
                }
                cmd.envs(env);
                let (process, child_stderr) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot run `{command}`: {e}"))?;
                if let Some(mut pipe) = child_stderr {
                    let tail = stderr.clone();
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = pipe.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            tail.push(&buf[..n]);
                        }
                    });
                }
                ().serve(process)
                    .await
                    .map_err(|e| format!("the MCP handshake failed: {e}"))?
            }
            Transport::Http { url, headers } => {
                let mut custom = std::collections::HashMap::new();
                for (k, v) in headers {
                    let name = ::http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| format!("header `{k}`: {e}"))?;
                    let value = ::http::HeaderValue::from_str(v)
                        .map_err(|e| format!("header `{k}`: {e}"))?;
                    custom.insert(name, value);
                }
                let config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom);
                ().serve(StreamableHttpClientTransport::from_config(config))
                    .await
                    .map_err(|e| format!("the MCP handshake with {url} failed: {e}"))?
            }
        };
        let listed = service
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {e}"))?;
        Ok::<_, String>((service, listed))
    })
    .await;
    let (service, listed) = match started {
        Err(_) => {
            // Give its last words a moment to arrive.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(failed(
                format!("no answer within {START_TIMEOUT:?}"),
                &stderr,
            ));
        }
        Ok(Err(reason)) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(failed(reason, &stderr));
        }
        Ok(Ok(s)) => s,
    };
    let tools = listed
        .into_iter()
        .map(|t| ToolInfo {
            server: spec.name.clone(),
            tool: t.name.to_string(),
            description: t.description.map(|d| d.to_string()).unwrap_or_default(),
            input_schema: Value::Object((*t.input_schema).clone()),
        })
        .collect();
    Ok(Started {
        spec,
        stderr,
        service,
        tools,
    })
}

impl ToolProvider for Provider {
    fn tools(&self) -> Vec<ToolInfo> {
        self.tools.clone()
    }

    fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> BoxFuture<'static, Result<ToolOutput, String>> {
        let Some(slot) = self.slots.get(server).cloned() else {
            let server = server.to_string();
            return Box::pin(async move { Err(format!("no MCP server named `{server}`")) });
        };
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = Some(arguments);
        // On the servers' runtime: the caller's may be any.
        let call = self.handle.spawn(call_on(slot, params));
        Box::pin(async move {
            call.await
                .map_err(|e| format!("the call ended abnormally: {e}"))?
        })
    }
}

/// One call on a server's live connection; a server found dead is
/// restarted once for the whole run, then stays down. A crash fails the
/// calls it was serving, with its stderr's last words.
async fn call_on(slot: Arc<Slot>, params: CallToolRequestParams) -> Result<ToolOutput, String> {
    let name = slot.spec.name.clone();
    let peer = {
        let mut state = slot.state.lock().await;
        let alive = state
            .service
            .as_ref()
            .is_some_and(|s| !s.peer().is_transport_closed());
        if !alive {
            state.service = None;
            if state.restarted {
                return Err(format!(
                    "the MCP server `{name}` crashed again after its restart and stays down for this run; do without its tools"
                ));
            }
            state.restarted = true;
            tracing::warn!("MCP server `{name}` died; restarting it once");
            slot.stderr
                .push(b"\n[wasmflow: the server died; restarting it once]\n");
            match start_with(slot.spec.clone(), slot.stderr.clone()).await {
                Ok(started) => state.service = Some(started.service),
                Err(e) => {
                    return Err(format!(
                        "the MCP server `{name}` died and did not restart: {}",
                        e.reason
                    ));
                }
            }
        }
        match &state.service {
            Some(s) => s.peer().clone(),
            None => return Err(format!("the MCP server `{name}` is down")),
        }
    };
    match peer.call_tool(params).await {
        Ok(result) => Ok(ToolOutput {
            text: text_of(&result.content, result.structured_content.as_ref()),
            is_error: result.is_error.unwrap_or(false),
        }),
        Err(ServiceError::McpError(e)) => {
            Err(format!("`{name}` answered with an error: {}", e.message))
        }
        Err(e) => {
            // Its last words arrive just after the pipe closes.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tail = slot.stderr.text();
            let tail = tail.trim();
            let restarted = slot.state.lock().await.restarted;
            Err(format!(
                "the MCP server `{name}` failed during this call ({e}){}; {}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(", its stderr ends: {}", last_line(tail))
                },
                if restarted {
                    "it was restarted once already, so it stays down"
                } else {
                    "it is restarted for the next call"
                }
            ))
        }
    }
}

/// The last non-empty line of `text`, at most 300 characters.
fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// A tool result as text for the model: text blocks as they are, other
/// blocks described, structured content when there is nothing else.
fn text_of(content: &[ContentBlock], structured: Option<&Value>) -> String {
    let mut parts = Vec::new();
    for block in content {
        match block {
            ContentBlock::Text(t) => parts.push(t.text.clone()),
            ContentBlock::Image(i) => parts.push(format!("[image: {}]", i.mime_type)),
            ContentBlock::Audio(a) => parts.push(format!("[audio: {}]", a.mime_type)),
            ContentBlock::Resource(r) => {
                parts.push(serde_json::to_string(&r.resource).unwrap_or_default())
            }
            ContentBlock::ResourceLink(r) => parts.push(format!("[resource: {}]", r.uri)),
            other => parts.push(serde_json::to_string(other).unwrap_or_default()),
        }
    }
    if parts.is_empty()
        && let Some(v) = structured
    {
        return v.to_string();
    }
    parts.join("\n")
}
