//! Tools for agents on the HTTP backends: MCP servers' tools, offered to
//! the model and called for it in the agent loop.
//!
//! The library knows tools only through [`ToolProvider`]; the MCP client
//! (crate `wasmflow-mcp`) implements it and the command line wires it, so
//! an embedder can plug in tools of its own without an MCP dependency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::backend::{AgentRequest, BoxFuture};
use crate::config::ToolsSection;
use crate::error::InputError;

pub mod names;
pub mod servers;

/// One tool a provider offers.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    /// The server it belongs to.
    pub server: String,
    /// Its name on that server.
    pub tool: String,
    /// What it does, for the model.
    pub description: String,
    /// Its input, a JSON Schema object.
    pub input_schema: Value,
}

/// What a call gave back, for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The result as text.
    pub text: String,
    /// The tool reported an error (the model is told so).
    pub is_error: bool,
}

/// Something that has tools and calls them. Implement it to give agents
/// tools of your own.
pub trait ToolProvider: Send + Sync {
    /// Every tool, as the servers listed them when they started.
    fn tools(&self) -> Vec<ToolInfo>;

    /// Calls `tool` on `server`. `Err`: the call did not reach an answer
    /// (the server died, the transport broke); the model gets the message.
    fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> BoxFuture<'static, Result<ToolOutput, String>>;
}

/// The bounds of the agent loop, from `[tools]`.
#[derive(Debug, Clone)]
pub struct ToolSettings {
    /// Globs: only matching tools are offered (`None`: all).
    pub allow: Option<Vec<String>>,
    /// Globs: never offered.
    pub deny: Vec<String>,
    /// Model replies per agent (default 25).
    pub max_turns: u32,
    /// One call's longest wait.
    pub call_timeout: Duration,
    /// Longest result passed to the model, in bytes.
    pub max_result_bytes: usize,
}

/// Default of `[tools] max_turns` and `opts.maxTurns`.
pub const DEFAULT_MAX_TURNS: u32 = 25;

impl ToolSettings {
    /// From `[tools]`, defaults filled.
    pub fn from_config(section: &ToolsSection) -> Result<ToolSettings, InputError> {
        let call_timeout = match &section.call_timeout {
            Some(t) => crate::limits::parse_duration(t)
                .map_err(|e| InputError::Invalid(format!("tools.call_timeout: {e}")))?,
            None => Duration::from_secs(120),
        };
        Ok(ToolSettings {
            allow: section.allow.clone(),
            deny: section.deny.clone(),
            max_turns: section.max_turns.unwrap_or(DEFAULT_MAX_TURNS),
            call_timeout,
            max_result_bytes: section.max_result_bytes.unwrap_or(100 << 10),
        })
    }
}

/// A tool as the model sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `mcp__SERVER__TOOL`, as Claude Code names it (what globs match).
    pub name: String,
    /// The name sent to the API (valid there; see [`names::api_name`]).
    pub api_name: String,
    /// The provider's description.
    pub info: ToolInfo,
}

/// One call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The API's id for it (results are sent back under it).
    pub id: String,
    /// The tool's API name.
    pub name: String,
    /// Its input as the model wrote it (a JSON object, as text).
    pub arguments: String,
}

/// A run's tools: what its provider offers, under `[tools]`.
pub struct Toolbox {
    provider: Arc<dyn ToolProvider>,
    entries: Vec<Entry>,
    settings: ToolSettings,
}

impl Toolbox {
    /// The provider's tools that `[tools]` allows, named for the APIs;
    /// `Err` when two of them would get the same API name.
    pub fn new(provider: Arc<dyn ToolProvider>, settings: ToolSettings) -> Result<Toolbox, String> {
        let mut entries = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for info in provider.tools() {
            let name = names::qualified(&info.server, &info.tool);
            let allowed = settings
                .allow
                .as_ref()
                .is_none_or(|a| a.iter().any(|p| names::matches(p, &name)));
            if !allowed || settings.deny.iter().any(|p| names::matches(p, &name)) {
                continue;
            }
            let api_name = names::api_name(&name);
            if let Some(other) = seen.insert(api_name.clone(), name.clone()) {
                return Err(format!(
                    "the MCP tools `{other}` and `{name}` would both be sent to the model as `{api_name}`; deny one of them in [tools] deny"
                ));
            }
            entries.push(Entry {
                name,
                api_name,
                info,
            });
        }
        Ok(Toolbox {
            provider,
            entries,
            settings,
        })
    }

    /// Every tool `[tools]` allows.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The tools offered to one agent: those allowed, less
    /// `opts.disallowedTools`.
    pub fn offered(&self, request: &AgentRequest) -> Vec<Entry> {
        let denied: Vec<&str> = request
            .options
            .get("disallowedTools")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        self.entries
            .iter()
            .filter(|e| !denied.iter().any(|p| names::matches(p, &e.name)))
            .cloned()
            .collect()
    }

    /// The agent's turn limit: `opts.maxTurns` when lower than `[tools]
    /// max_turns`, else that.
    pub fn max_turns(&self, request: &AgentRequest) -> u32 {
        max_turns(request, self.settings.max_turns)
    }

    /// Runs one turn's calls at once; a result per call, in order. A call
    /// to a tool not offered, with input that is not a JSON object, that
    /// fails or that times out gives the model an error result.
    pub async fn call_all(&self, offered: &[Entry], calls: &[ToolCall]) -> Vec<ToolOutput> {
        let timeout = self.settings.call_timeout;
        let mut pending = Vec::new();
        for call in calls {
            let Some(entry) = offered.iter().find(|e| e.api_name == call.name) else {
                pending.push(Err(error(format!(
                    "there is no tool named `{}` here",
                    call.name
                ))));
                continue;
            };
            let arguments = if call.arguments.trim().is_empty() {
                Map::new()
            } else {
                match serde_json::from_str::<Value>(&call.arguments) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => {
                        pending.push(Err(error("the tool input must be a JSON object".into())));
                        continue;
                    }
                    Err(e) => {
                        pending.push(Err(error(format!("the tool input is not JSON: {e}"))));
                        continue;
                    }
                }
            };
            let future = self
                .provider
                .call(&entry.info.server, &entry.info.tool, arguments);
            let label = entry.name.clone();
            pending.push(Ok(tokio::spawn(async move {
                match tokio::time::timeout(timeout, future).await {
                    Err(_) => error(format!("{label} did not answer within {timeout:?}")),
                    Ok(Err(e)) => error(format!("{label} failed: {e}")),
                    Ok(Ok(out)) => out,
                }
            })));
        }
        let mut outputs = Vec::with_capacity(pending.len());
        for p in pending {
            let out = match p {
                Err(out) => out,
                Ok(handle) => handle
                    .await
                    .unwrap_or_else(|e| error(format!("the tool call ended abnormally: {e}"))),
            };
            outputs.push(cut(out, self.settings.max_result_bytes));
        }
        outputs
    }
}

/// The agent's turn limit against a configured one.
pub fn max_turns(request: &AgentRequest, configured: u32) -> u32 {
    match request.options.get("maxTurns").and_then(Value::as_f64) {
        Some(n) if n >= 1.0 => (n.min(u32::MAX as f64) as u32).min(configured),
        _ => configured,
    }
}

fn error(text: String) -> ToolOutput {
    ToolOutput {
        text,
        is_error: true,
    }
}

/// A result cut to `max` bytes on a character boundary, with a note saying
/// so.
fn cut(mut out: ToolOutput, max: usize) -> ToolOutput {
    if out.text.len() <= max {
        return out;
    }
    let total = out.text.len();
    let mut end = max;
    while !out.text.is_char_boundary(end) {
        end -= 1;
    }
    out.text.truncate(end);
    out.text.push_str(&format!(
        "\n[wasmflow: this result was cut to its first {end} of {total} bytes]"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fake;

    impl ToolProvider for Fake {
        fn tools(&self) -> Vec<ToolInfo> {
            ["read_file", "write_file", "list"]
                .iter()
                .map(|t| ToolInfo {
                    server: "fs".into(),
                    tool: t.to_string(),
                    description: String::new(),
                    input_schema: json!({"type": "object"}),
                })
                .collect()
        }

        fn call(
            &self,
            _server: &str,
            tool: &str,
            arguments: Map<String, Value>,
        ) -> BoxFuture<'static, Result<ToolOutput, String>> {
            let tool = tool.to_string();
            Box::pin(async move {
                match tool.as_str() {
                    "list" => Err("the server went away".into()),
                    "read_file" => {
                        if arguments.contains_key("slow") {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                        Ok(ToolOutput {
                            text: "é".repeat(100),
                            is_error: false,
                        })
                    }
                    _ => Ok(ToolOutput {
                        text: "ok".into(),
                        is_error: false,
                    }),
                }
            })
        }
    }

    fn settings() -> ToolSettings {
        ToolSettings::from_config(&ToolsSection {
            deny: vec!["*write*".into()],
            max_result_bytes: Some(51),
            call_timeout: Some("1s".into()),
            ..ToolsSection::default()
        })
        .unwrap()
    }

    fn request(options: Value) -> AgentRequest {
        AgentRequest {
            id: 1,
            prompt: String::new(),
            options: options.as_object().unwrap().clone(),
            label: None,
            phase: None,
            attempt: 1,
            priority: 0,
            model: None,
            backend: None,
            schema: None,
            feedback: Vec::new(),
        }
    }

    #[test]
    fn denied_tools_are_never_offered() {
        let b = Toolbox::new(Arc::new(Fake), settings()).unwrap();
        let names: Vec<_> = b.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["mcp__fs__read_file", "mcp__fs__list"]);
        let offered = b.offered(&request(json!({"disallowedTools": ["mcp__fs__list"]})));
        assert_eq!(offered.len(), 1);
        assert_eq!(b.max_turns(&request(json!({"maxTurns": 3}))), 3);
        assert_eq!(
            b.max_turns(&request(json!({"maxTurns": 300}))),
            DEFAULT_MAX_TURNS
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_fail_softly_and_are_cut() {
        let b = Toolbox::new(Arc::new(Fake), settings()).unwrap();
        let offered = b.offered(&request(json!({})));
        let call = |name: &str, args: &str| ToolCall {
            id: "c".into(),
            name: name.into(),
            arguments: args.into(),
        };
        let out = b
            .call_all(
                &offered,
                &[
                    call("mcp__fs__read_file", "{}"),
                    call("mcp__fs__write_file", "{}"),
                    call("mcp__fs__list", ""),
                    call("mcp__fs__read_file", "[1]"),
                    call("mcp__fs__read_file", "{\"slow\": true}"),
                ],
            )
            .await;
        assert!(!out[0].is_error);
        assert!(out[0].text.starts_with(&"é".repeat(25)));
        assert!(out[0].text.contains("cut to its first 50 of 200 bytes"));
        assert!(out[1].is_error && out[1].text.contains("no tool named"));
        assert!(out[2].is_error && out[2].text.contains("went away"));
        assert!(out[3].is_error && out[3].text.contains("JSON object"));
        assert!(out[4].is_error && out[4].text.contains("did not answer"));
    }
}
