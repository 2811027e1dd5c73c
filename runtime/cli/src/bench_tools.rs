//! `bench` figures of agents with tools: the MCP client against a real
//! stdio server (`wasmflow mcp` itself, so the bench needs nothing
//! installed): start-up to its tool list, and one call's round trip; and
//! the agent loop's own cost, 1,000 `openai` agents that each make one
//! tool call, against a local scripted server and an in-process tool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use wasmflow::WorkflowEngine;
use wasmflow::backend::BoxFuture;
use wasmflow::backend::openai::{OpenAiBackend, OpenAiSettings};
use wasmflow::tools::servers::{ServerSpec, Transport};
use wasmflow::tools::{ToolInfo, ToolOutput, ToolProvider, ToolSettings, Toolbox};

/// What was measured.
pub struct ToolFigures {
    /// Spawn, MCP handshake and `tools/list` of a stdio server (median).
    pub start: Duration,
    /// One `tools/call` round trip, median.
    pub call_p50: Duration,
    /// ... and 99th percentile.
    pub call_p99: Duration,
    /// 1,000 agents in parallel, two turns and one tool call each.
    pub loop_1000: Duration,
}

/// A tool that answers at once: what remains is the loop's cost.
struct Echo;

impl ToolProvider for Echo {
    fn tools(&self) -> Vec<ToolInfo> {
        vec![ToolInfo {
            server: "bench".into(),
            tool: "echo".into(),
            description: "Echoes its input".into(),
            input_schema: serde_json::json!({"type": "object"}),
        }]
    }

    fn call(
        &self,
        _server: &str,
        _tool: &str,
        arguments: Map<String, Value>,
    ) -> BoxFuture<'static, Result<ToolOutput, String>> {
        Box::pin(async move {
            Ok(ToolOutput {
                text: Value::Object(arguments).to_string(),
                is_error: false,
            })
        })
    }
}

/// First turn: one tool call; once the request holds the tool's result:
/// the answer.
fn two_turns(body: &[u8]) -> &'static str {
    if body.windows(13).any(|w| w == b"\"role\":\"tool\"") {
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":1}}\n\n",
            "data: [DONE]\n\n"
        )
    } else {
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"mcp__bench__echo\",\"arguments\":\"{\\\"x\\\":\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n",
            "data: [DONE]\n\n"
        )
    }
}

pub fn figures(engine: &WorkflowEngine, n: u32) -> Result<ToolFigures, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let project = std::env::temp_dir().join(format!("wasmflow-bench-tools-{}", std::process::id()));
    std::fs::create_dir_all(&project).map_err(|e| e.to_string())?;
    let spec = ServerSpec {
        name: "wf".into(),
        transport: Transport::Stdio {
            command: exe.to_string_lossy().into_owned(),
            args: vec![
                "mcp".into(),
                "--project".into(),
                project.to_string_lossy().into_owned(),
            ],
            env: Default::default(),
            cwd: project.clone(),
        },
        origin: "bench".into(),
    };
    let mut starts = Vec::new();
    let mut calls = Vec::new();
    for i in 0..n.clamp(1, 5) {
        let t = Instant::now();
        let servers = wasmflow_mcp::client::ToolServers::start(std::slice::from_ref(&spec))
            .map_err(|e| e.to_string())?;
        starts.push(t.elapsed());
        let provider = servers.provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            for _ in 0..(if i == 0 { 1 } else { 200 }) {
                let t = Instant::now();
                provider
                    .call("wf", "workflow_list", Map::new())
                    .await
                    .map_err(|e| format!("workflow_list: {e}"))?;
                if i > 0 {
                    calls.push(t.elapsed());
                }
            }
            Ok::<_, String>(())
        })?;
        servers.shutdown();
    }
    let _ = std::fs::remove_dir_all(&project);
    calls.sort();
    let pick = |q: f64| calls[((calls.len() - 1) as f64 * q).round() as usize];
    let url = crate::bench::chat_server_with(two_turns)?;
    let toolbox = Arc::new(
        Toolbox::new(
            Arc::new(Echo),
            ToolSettings::from_config(&Default::default()).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?,
    );
    let backend = || -> Arc<dyn wasmflow::backend::AgentBackend> {
        let settings = OpenAiSettings {
            base_url: url.clone(),
            api_key: None,
            max_tokens: None,
            http: wasmflow::backend::http::HttpOptions {
                timeout: Duration::from_secs(60),
                stall: Duration::from_secs(60),
                retry: Default::default(),
            },
        };
        Arc::new(
            OpenAiBackend::new(settings)
                .expect("the client builds")
                .with_tools(Some(toolbox.clone()), Default::default()),
        )
    };
    crate::bench::openai(&url)?; // the client builds
    let loop_1000 = crate::bench::measure(
        engine,
        "const r = await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('t' + i, { model: 'm' }))); if (r.some(x => x !== 'ok')) throw new Error('a tool agent failed'); return r.length",
        n.min(5),
        backend,
    )?;
    starts.sort();
    Ok(ToolFigures {
        start: starts[starts.len() / 2],
        call_p50: pick(0.5),
        call_p99: pick(0.99),
        loop_1000,
    })
}
