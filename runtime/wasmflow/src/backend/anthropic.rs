//! The `anthropic` backend: one streamed Messages API request per try
//! (<https://docs.anthropic.com/en/api/messages>,
//! <https://docs.anthropic.com/en/docs/build-with-claude/streaming>).
//!
//! With MCP tools configured (`[mcp_servers]`), the agent loop
//! (<https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/overview>):
//! the tools go out in `tools`, each `tool_use` block's input is put
//! together from its `input_json_delta` fragments, the calls of a turn run
//! at once and go back as `tool_result` blocks, until the model ends its
//! turn or `maxTurns` is reached. Without tools, one completion.
//! `opts.schema` goes through a tool whose input schema is the schema, so
//! the reply is the tool's input: forced when the agent has no other
//! tools, else offered beside them and forced as the last step. Long prompts carry a
//! prompt-cache breakpoint before their last paragraph, where fan-outs put
//! the item that differs, so agents sharing instructions read them from the
//! cache.

use std::sync::Arc;

use serde_json::{Value, json};

use super::http::{self, Flow, HttpOptions, TryError};
use super::{
    AgentBackend, AgentOutput, AgentReply, AgentRequest, AgentResult, BoxFuture, PlannedModel,
    Usage,
};
use crate::run::transcript::{Transcript, Transcripts, bounded};
use crate::tools::{Entry, ToolCall, Toolbox};

/// The API version header every request sends.
pub const API_VERSION: &str = "2023-06-01";
/// Anthropic's own API.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Name of the forced tool that carries structured output.
const OUTPUT_TOOL: &str = "structured_output";
/// Below this many characters (about 1,024 tokens, the smallest cacheable
/// prefix) a prompt gets no cache breakpoint.
const CACHE_MIN_CHARS: usize = 4096;

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub struct AnthropicSettings {
    /// Without `/v1` (as `ANTHROPIC_BASE_URL` in the official SDKs).
    pub base_url: String,
    /// The API key (`x-api-key`).
    pub api_key: String,
    /// `max_tokens` of every request.
    pub max_tokens: u32,
    /// Timeouts and retries.
    pub http: HttpOptions,
    /// Server tools every agent gets.
    pub server_tools: Vec<String>,
    /// Server tools `opts.tools` may turn on.
    pub allowed_server_tools: Vec<String>,
    /// Most searches per request.
    pub web_search_max_uses: u32,
    /// Most fetches per request.
    pub web_fetch_max_uses: u32,
    /// Model replies per agent when it has tools (`[tools] max_turns`).
    pub max_turns: u32,
}

/// The server tools wasmflow knows, as `opts.tools` and `[anthropic]
/// server_tools` name them.
pub const SERVER_TOOLS: &[&str] = &["web_search", "web_fetch", "code_execution"];

/// A server tool's definition and the beta header it needs
/// (<https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/web-search-tool>,
/// `…/web-fetch-tool`, `…/code-execution-tool`).
fn server_tool(name: &str, settings: &AnthropicSettings) -> (Value, Option<&'static str>) {
    match name {
        "web_search" => (
            json!({"type": "web_search_20250305", "name": "web_search", "max_uses": settings.web_search_max_uses}),
            None,
        ),
        "web_fetch" => (
            json!({"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": settings.web_fetch_max_uses}),
            Some("web-fetch-2025-09-10"),
        ),
        _ => (
            json!({"type": "code_execution_20250825", "name": "code_execution"}),
            Some("code-execution-2025-08-25"),
        ),
    }
}

/// The server tools one agent gets: the configured ones and those
/// `opts.tools` asks for, if allowed.
pub fn server_tools_for(
    request: &AgentRequest,
    settings: &AnthropicSettings,
) -> Result<Vec<String>, String> {
    let mut tools = settings.server_tools.clone();
    for t in request
        .options
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !settings.allowed_server_tools.iter().any(|a| a == t) {
            return Err(format!(
                "opts.tools asks for `{t}`, which this configuration does not allow ([anthropic] allowed_server_tools: {})",
                if settings.allowed_server_tools.is_empty() {
                    "none".to_string()
                } else {
                    settings.allowed_server_tools.join(", ")
                }
            ));
        }
        if !tools.iter().any(|x| x == t) {
            tools.push(t.to_string());
        }
    }
    Ok(tools)
}

impl AnthropicSettings {
    /// Base URL: config, else `ANTHROPIC_BASE_URL`, else the public API.
    /// Key: the variable `key_env` names (default `ANTHROPIC_API_KEY`).
    pub fn from_env(
        section: &crate::config::HttpSection,
        http: HttpOptions,
    ) -> Result<AnthropicSettings, String> {
        let key_env = section
            .api_key_env
            .clone()
            .unwrap_or_else(|| "ANTHROPIC_API_KEY".into());
        let api_key = std::env::var(&key_env).unwrap_or_default();
        if api_key.trim().is_empty() {
            return Err(format!(
                "the anthropic backend needs an API key: {key_env} is not set (export it, or use --backend claude to run agents through Claude Code's own login)"
            ));
        }
        let base_url = section
            .base_url
            .clone()
            .or_else(|| std::env::var("ANTHROPIC_BASE_URL").ok())
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        Ok(AnthropicSettings {
            base_url: http::trim_base(&base_url),
            api_key: api_key.trim().to_string(),
            max_tokens: section.max_tokens.unwrap_or(16_384),
            http,
            server_tools: section.server_tools.clone().unwrap_or_default(),
            allowed_server_tools: section
                .allowed_server_tools
                .clone()
                .unwrap_or_else(|| SERVER_TOOLS.iter().map(|t| t.to_string()).collect()),
            web_search_max_uses: section.web_search_max_uses.unwrap_or(5),
            web_fetch_max_uses: section.web_fetch_max_uses.unwrap_or(10),
            max_turns: crate::tools::DEFAULT_MAX_TURNS,
        })
    }
}

/// Agents through the Anthropic Messages API (streamed).
pub struct AnthropicBackend {
    settings: Arc<AnthropicSettings>,
    client: reqwest::Client,
    tools: Option<Arc<Toolbox>>,
    transcripts: Transcripts,
}

impl AnthropicBackend {
    /// A backend with its HTTP client; `Err` when the client cannot be built.
    pub fn new(settings: AnthropicSettings) -> Result<AnthropicBackend, String> {
        Ok(AnthropicBackend {
            settings: Arc::new(settings),
            client: http::client()?,
            tools: None,
            transcripts: Transcripts::default(),
        })
    }

    /// Gives its agents these tools; those that use tools keep their
    /// transcripts in `transcripts`.
    pub fn with_tools(
        mut self,
        tools: Option<Arc<Toolbox>>,
        transcripts: Transcripts,
    ) -> AnthropicBackend {
        self.tools = tools;
        self.transcripts = transcripts;
        self
    }
}

/// The prompt as content blocks: a cache breakpoint on everything before
/// the last paragraph when that is long enough to be cached.
fn content_blocks(prompt: &str) -> Value {
    if let Some(cut) = prompt.rfind("\n\n")
        && cut >= CACHE_MIN_CHARS
    {
        let (prefix, rest) = prompt.split_at(cut);
        return json!([
            {"type": "text", "text": prefix, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": rest},
        ]);
    }
    if prompt.len() >= CACHE_MIN_CHARS {
        return json!([{"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}]);
    }
    json!([{"type": "text", "text": prompt}])
}

/// The tool input schema must be an object: other schemas are wrapped in
/// `{value: …}` and unwrapped from the reply.
fn tool_schema(schema: &Value) -> (Value, bool) {
    if schema.get("type").and_then(Value::as_str) == Some("object") {
        (schema.clone(), false)
    } else {
        (
            json!({"type": "object", "properties": {"value": schema}, "required": ["value"]}),
            true,
        )
    }
}

/// How the structured-output tool is offered in a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputTool {
    /// No schema: not offered.
    None,
    /// Offered beside the agent's tools.
    Offered,
    /// The only choice: the model must answer through it.
    Forced,
}

/// The request body of one turn: the conversation so far, the agent's
/// tools and the structured-output tool. Returns whether a non-object
/// schema was wrapped in `{value: …}`.
pub fn request_body(
    request: &AgentRequest,
    model: &str,
    max_tokens: u32,
    messages: &[Value],
    tools: &[Entry],
    server_tools: &[Value],
    output_tool: OutputTool,
) -> (Value, bool) {
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "stream": true,
        "messages": messages,
    });
    let mut list: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "name": t.api_name,
                "description": t.info.description,
                "input_schema": t.info.input_schema,
            })
        })
        .collect();
    list.extend(server_tools.iter().cloned());
    let mut wrapped = false;
    if let Some(schema) = request
        .schema
        .as_ref()
        .filter(|_| output_tool != OutputTool::None)
    {
        let (input_schema, w) = tool_schema(&schema.value);
        wrapped = w;
        list.push(json!({
            "name": OUTPUT_TOOL,
            "description": "Give your final answer by calling this tool; its input is the answer.",
            "input_schema": input_schema,
        }));
        if output_tool == OutputTool::Forced {
            body["tool_choice"] = json!({"type": "tool", "name": OUTPUT_TOOL});
        }
    }
    if !list.is_empty() {
        body["tools"] = Value::Array(list);
    }
    (body, wrapped)
}

/// One content block of a streamed message.
#[derive(Debug, Clone)]
pub struct Block {
    /// The block as `content_block_start` gave it.
    pub start: Value,
    /// Its text so far (text blocks).
    pub text: String,
    /// Its input JSON so far (tool-use blocks).
    pub json: String,
}

impl Block {
    fn kind(&self) -> &str {
        self.start["type"].as_str().unwrap_or("")
    }

    /// A server tool's call or result (`server_tool_use`,
    /// `web_search_tool_result`, …): run by the API, not by wasmflow.
    pub fn is_server_tool(&self) -> bool {
        let kind = self.kind();
        kind == "server_tool_use" || kind.ends_with("_tool_result")
    }

    /// The block as it goes back in the next turn's assistant message.
    fn to_content(&self) -> Value {
        let mut block = self.start.clone();
        match self.kind() {
            // Citations stay out: the text is what the next turn needs.
            "text" => block = json!({"type": "text", "text": self.text}),
            "tool_use" | "server_tool_use" => {
                block["input"] = if self.json.trim().is_empty() {
                    self.start
                        .get("input")
                        .cloned()
                        .unwrap_or_else(|| json!({}))
                } else {
                    serde_json::from_str(&self.json).unwrap_or_else(|_| json!({}))
                };
            }
            _ => {}
        }
        block
    }
}

/// What one streamed message adds up to.
#[derive(Debug, Default)]
pub struct MessageState {
    /// Content blocks by their `index`.
    pub blocks: std::collections::BTreeMap<u64, Block>,
    /// Usage from `message_start` and `message_delta`.
    pub usage: Usage,
    /// Why the model stopped.
    pub stop_reason: Option<String>,
}

impl MessageState {
    /// Applies one stream event (event types as the streaming page lists).
    pub fn apply(&mut self, event: &str, data: &str) -> Result<Flow, TryError> {
        if event == "ping" {
            return Ok(Flow::More);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| TryError::malformed(format!("`{event}` event is not JSON: {e}")))?;
        let kind = v["type"].as_str().unwrap_or(event);
        let index = v["index"].as_u64().unwrap_or(0);
        match kind {
            "message_start" => self.merge_usage(&v["message"]["usage"]),
            "content_block_start" => {
                let start = v["content_block"].clone();
                let text = start["text"].as_str().unwrap_or("").to_string();
                self.blocks.insert(
                    index,
                    Block {
                        start,
                        text,
                        json: String::new(),
                    },
                );
            }
            "content_block_delta" => {
                let d = &v["delta"];
                let block = self.blocks.entry(index).or_insert_with(|| Block {
                    start: json!({"type": if d["type"] == "input_json_delta" { "tool_use" } else { "text" }}),
                    text: String::new(),
                    json: String::new(),
                });
                match d["type"].as_str() {
                    Some("text_delta") => block.text.push_str(d["text"].as_str().unwrap_or("")),
                    Some("input_json_delta") => block
                        .json
                        .push_str(d["partial_json"].as_str().unwrap_or("")),
                    _ => {}
                }
            }
            "message_delta" => {
                self.merge_usage(&v["usage"]);
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(r.to_string());
                }
            }
            "message_stop" => return Ok(Flow::Done),
            "error" => {
                let e = &v["error"];
                let message = format!(
                    "{}: {}",
                    e["type"].as_str().unwrap_or("error"),
                    e["message"].as_str().unwrap_or("(no message)")
                );
                return Err(match e["type"].as_str() {
                    Some("overloaded_error" | "api_error") => TryError::retry(message),
                    Some("rate_limit_error") => TryError::Retry {
                        reason: message,
                        after: None,
                        kind: super::FailureKind::Quota,
                    },
                    _ => TryError::fail(message, super::FailureKind::Other),
                });
            }
            _ => {}
        }
        Ok(Flow::More)
    }

    /// Usage counts are cumulative, and gateways report the input in
    /// `message_delta` with 0 in `message_start`: each field's largest
    /// value wins.
    fn merge_usage(&mut self, u: &Value) {
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        let usage = &mut self.usage;
        usage.input = usage.input.max(n("input_tokens"));
        usage.output = usage.output.max(n("output_tokens"));
        usage.cache_read = usage.cache_read.max(n("cache_read_input_tokens"));
        usage.cache_write = usage.cache_write.max(n("cache_creation_input_tokens"));
        let server = &u["server_tool_use"];
        let s = |k: &str| server[k].as_u64().unwrap_or(0);
        usage.web_searches = usage.web_searches.max(s("web_search_requests"));
        usage.web_fetches = usage.web_fetches.max(s("web_fetch_requests"));
    }

    /// A whole (non-streamed) Messages response, as the stream would have
    /// built it.
    pub fn from_message(v: &Value) -> Result<MessageState, TryError> {
        let blocks = v["content"]
            .as_array()
            .ok_or_else(|| TryError::malformed("the JSON reply has no `content`"))?;
        let mut state = MessageState::default();
        for (i, block) in blocks.iter().enumerate() {
            state.blocks.insert(
                i as u64,
                Block {
                    start: block.clone(),
                    text: block["text"].as_str().unwrap_or("").to_string(),
                    json: match block.get("input") {
                        Some(input) if block["type"] == "tool_use" => input.to_string(),
                        _ => String::new(),
                    },
                },
            );
        }
        state.merge_usage(&v["usage"]);
        state.stop_reason = v["stop_reason"].as_str().map(String::from);
        Ok(state)
    }

    /// The text blocks, joined.
    pub fn text(&self) -> String {
        self.blocks
            .values()
            .filter(|b| b.kind() == "text")
            .map(|b| b.text.as_str())
            .collect()
    }

    /// The structured-output tool's call, if the reply made one.
    fn output_call(&self) -> Option<&Block> {
        self.blocks
            .values()
            .find(|b| b.kind() == "tool_use" && b.start["name"] == OUTPUT_TOOL)
    }

    /// The calls of the agent's own tools.
    pub fn tool_calls(&self) -> Vec<ToolCall> {
        self.blocks
            .values()
            .filter(|b| b.kind() == "tool_use" && b.start["name"] != OUTPUT_TOOL)
            .map(|b| ToolCall {
                id: b.start["id"].as_str().unwrap_or_default().to_string(),
                name: b.start["name"].as_str().unwrap_or_default().to_string(),
                arguments: b.json.clone(),
            })
            .collect()
    }

    /// The reply as the next turn's assistant message content.
    pub fn assistant_content(&self) -> Value {
        Value::Array(
            self.blocks
                .values()
                .filter(|b| !(b.kind() == "text" && b.text.is_empty()))
                .map(Block::to_content)
                .collect(),
        )
    }

    /// The agent's answer.
    pub fn into_reply(self, wrapped: bool, schema: bool) -> Result<AgentReply, TryError> {
        let output = match self.output_call().filter(|_| schema) {
            Some(call) => {
                let input = if call.json.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str::<Value>(&call.json).map_err(|e| {
                        TryError::malformed(format!("the structured output is not JSON: {e}"))
                    })?
                };
                let value = if wrapped {
                    input.get("value").cloned().unwrap_or(Value::Null)
                } else {
                    input
                };
                AgentOutput::Json(value)
            }
            None => {
                let text = self.text();
                if self.stop_reason.as_deref() == Some("max_tokens") && text.is_empty() {
                    return Err(TryError::fail(
                        "the reply hit max_tokens before any text (raise [anthropic] max_tokens)",
                        super::FailureKind::Other,
                    ));
                }
                AgentOutput::Text(text)
            }
        };
        Ok(AgentReply {
            output,
            usage: self.usage,
        })
    }
}

/// One turn: a streamed (or, from some gateways, whole) message.
async fn message(
    client: &reqwest::Client,
    settings: &AnthropicSettings,
    body: &Value,
    betas: &[&str],
    stall: std::time::Duration,
) -> Result<MessageState, TryError> {
    let mut builder = client
        .post(format!("{}/v1/messages", settings.base_url))
        .header("x-api-key", &settings.api_key)
        .header("anthropic-version", API_VERSION)
        .header("content-type", "application/json");
    if !betas.is_empty() {
        builder = builder.header("anthropic-beta", betas.join(","));
    }
    let builder = builder.body(body.to_string());
    let response = http::send(builder, stall).await?;
    Ok(match http::answer(response, stall).await? {
        http::Answer::Complete(v) => MessageState::from_message(&v)?,
        http::Answer::Stream(response) => {
            let mut state = MessageState::default();
            http::read_events(response, stall, |e| state.apply(&e.event, &e.data)).await?;
            state
        }
    })
}

/// One agent: turns until the model ends its turn without calling a tool
/// (then, with a schema, one forced structured-output turn).
async fn run_agent(
    client: reqwest::Client,
    settings: Arc<AnthropicSettings>,
    tools: Option<Arc<Toolbox>>,
    transcripts: Transcripts,
    request: AgentRequest,
) -> AgentResult {
    let offered = tools
        .as_ref()
        .map(|t| t.offered(&request))
        .unwrap_or_default();
    let tools = tools.filter(|_| !offered.is_empty());
    let server = server_tools_for(&request, &settings).map_err(|reason| super::AgentFailure {
        reason,
        usage: Usage::default(),
        kind: super::FailureKind::Other,
    })?;
    let mut log = match tools.is_some() || !server.is_empty() {
        true => transcripts.agent(request.id, request.attempt),
        false => Transcript::none(),
    };
    let mut names: Vec<&str> = offered.iter().map(|e| e.name.as_str()).collect();
    names.extend(server.iter().map(String::as_str));
    log.record(
        "request",
        json!({"prompt": bounded(&request.prompt_with_feedback()), "tools": names}),
    );
    let result = turns(client, settings, tools, offered, server, &request, &mut log).await;
    log.end(&result);
    result
}

/// The turns of one agent, with its tools (none: one completion).
async fn turns(
    client: reqwest::Client,
    settings: Arc<AnthropicSettings>,
    tools: Option<Arc<Toolbox>>,
    offered: Vec<Entry>,
    server: Vec<String>,
    request: &AgentRequest,
    log: &mut Transcript,
) -> AgentResult {
    let Some(model) = request.model.clone() else {
        return Err(super::no_model());
    };
    let mut betas: Vec<&str> = Vec::new();
    let server: Vec<Value> = server
        .iter()
        .map(|t| {
            let (def, beta) = server_tool(t, &settings);
            betas.extend(beta);
            def
        })
        .collect();
    let has_tools = tools.is_some() || !server.is_empty();
    let max_turns = match &tools {
        Some(t) => t.max_turns(request),
        None if has_tools => crate::tools::max_turns(request, settings.max_turns),
        None => 1,
    };
    let schema = request.schema.is_some();
    let deadline = tokio::time::Instant::now() + settings.http.timeout;
    let stall = request.stall_timeout(settings.http.stall);
    let label = request.display_label();
    let mut messages =
        vec![json!({"role": "user", "content": content_blocks(&request.prompt_with_feedback())})];
    let mut usage = Usage::default();
    let mut output_tool = match (schema, has_tools) {
        (false, _) => OutputTool::None,
        (true, false) => OutputTool::Forced,
        (true, true) => OutputTool::Offered,
    };
    let mut turn = 0;
    loop {
        turn += 1;
        let (body, wrapped) = request_body(
            request,
            &model,
            settings.max_tokens,
            &messages,
            &offered,
            &server,
            output_tool,
        );
        let state = http::with_retries(settings.http, deadline, &label, request.id, || {
            message(&client, &settings, &body, &betas, stall)
        })
        .await
        .map_err(|f| http::with_usage(f, usage))?;
        log.reply(turn, &state.text(), state.usage);
        for b in state.blocks.values().filter(|b| b.is_server_tool()) {
            log.record(
                "server_tool",
                json!({"turn": turn, "block": bounded(&b.to_content().to_string())}),
            );
        }
        let calls = state.tool_calls();
        if state.stop_reason.as_deref() == Some("pause_turn") && calls.is_empty() {
            // A long server-tool turn the API paused: sent back as it is,
            // the model carries on.
            usage += state.usage;
            if turn >= max_turns {
                return Err(http::turn_limit(max_turns, usage));
            }
            messages.push(json!({"role": "assistant", "content": state.assistant_content()}));
            continue;
        }
        let Some(toolbox) = tools.as_ref().filter(|_| !calls.is_empty()) else {
            if output_tool == OutputTool::Offered && state.output_call().is_none() {
                // The model answered in words: ask for the answer in the
                // schema's shape, as the last step.
                usage += state.usage;
                messages.push(json!({"role": "assistant", "content": state.assistant_content()}));
                messages.push(json!({"role": "user", "content": format!("Give your final answer now by calling the {OUTPUT_TOOL} tool.")}));
                output_tool = OutputTool::Forced;
                continue;
            }
            let mut reply = state
                .into_reply(wrapped, schema)
                .map_err(|e| match e {
                    TryError::Fail(f) => f,
                    TryError::Retry { reason, kind, .. } => super::AgentFailure {
                        reason,
                        usage: Usage::default(),
                        kind,
                    },
                })
                .map_err(|f| http::with_usage(f, usage))?;
            reply.usage += usage;
            return Ok(reply);
        };
        usage += state.usage;
        if turn >= max_turns {
            return Err(http::turn_limit(max_turns, usage));
        }
        messages.push(json!({"role": "assistant", "content": state.assistant_content()}));
        let results = tokio::time::timeout_at(deadline, toolbox.call_all(&offered, &calls))
            .await
            .map_err(|_| http::tool_timeout(settings.http.timeout, usage))?;
        usage.tool_uses += calls.len() as u64;
        log.calls(turn, &calls, &results);
        let content: Vec<Value> = calls
            .iter()
            .zip(results)
            .map(|(call, out)| {
                json!({
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": out.text,
                    "is_error": out.is_error,
                })
            })
            .collect();
        messages.push(json!({"role": "user", "content": content}));
    }
}

/// How messages name the server: Anthropic's own API, or a gateway that
/// speaks its protocol.
fn server_name(base_url: &str) -> String {
    if http::trim_base(base_url) == DEFAULT_BASE_URL {
        format!("the Anthropic API at {DEFAULT_BASE_URL}")
    } else {
        format!("the Anthropic-compatible server at {base_url}")
    }
}

impl AgentBackend for AnthropicBackend {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        Box::pin(run_agent(
            self.client.clone(),
            self.settings.clone(),
            self.tools.clone(),
            self.transcripts.clone(),
            request,
        ))
    }

    fn check(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let client = self.client.clone();
        let settings = self.settings.clone();
        Box::pin(async move {
            let url = format!("{}/v1/models?limit=1000", settings.base_url);
            let server = server_name(&settings.base_url);
            let listed = http::list_models(
                client
                    .get(&url)
                    .header("x-api-key", &settings.api_key)
                    .header("anthropic-version", API_VERSION),
                &server,
            )
            .await?;
            super::router::check_listed(&models, listed.as_deref(), &server)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_prompts_get_a_cache_breakpoint_before_the_last_paragraph() {
        let shared = "instructions ".repeat(400);
        let blocks = content_blocks(&format!("{shared}\n\nitem 7"));
        assert_eq!(blocks[0]["cache_control"]["type"], "ephemeral");
        assert_eq!(blocks[0]["text"], shared.as_str());
        assert_eq!(blocks[1]["text"], "\n\nitem 7");
        assert!(content_blocks("short")[0].get("cache_control").is_none());
    }

    #[test]
    fn stream_events_add_up() {
        let mut s = MessageState::default();
        for (e, d) in [
            (
                "message_start",
                r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":4000,"cache_creation_input_tokens":0,"output_tokens":1}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"structured_output","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"value\": [1,"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":" 2]}"}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":12}}"#,
            ),
        ] {
            assert_eq!(s.apply(e, d).unwrap(), Flow::More);
        }
        assert_eq!(
            s.apply("message_stop", r#"{"type":"message_stop"}"#)
                .unwrap(),
            Flow::Done
        );
        let reply = s.into_reply(true, true).unwrap();
        assert_eq!(reply.output, AgentOutput::Json(json!([1, 2])));
        assert_eq!(
            reply.usage,
            Usage {
                input: 10,
                output: 12,
                cache_read: 4000,
                cache_write: 0,
                tool_uses: 0,
                ..Usage::default()
            }
        );
        // Two tool_use blocks after a text block, inputs in fragments.
        let mut s = MessageState::default();
        for (e, d) in [
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Reading both."}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"mcp__fs__read_text_file","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"path\": "}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"mcp__fs__read_text_file","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"a.txt\"}"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"path\": \"b.txt\"}"}}"#,
            ),
        ] {
            s.apply(e, d).unwrap();
        }
        let calls = s.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].arguments.as_str()),
            ("toolu_a", r#"{"path": "a.txt"}"#)
        );
        assert_eq!(calls[1].arguments, r#"{"path": "b.txt"}"#);
        let content = s.assistant_content();
        assert_eq!(content[0], json!({"type": "text", "text": "Reading both."}));
        assert_eq!(content[1]["input"], json!({"path": "a.txt"}));
        assert_eq!(content[2]["id"], "toolu_b");
        let mut s = MessageState::default();
        assert!(matches!(
            s.apply(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            Err(TryError::Retry { .. })
        ));
        assert!(matches!(
            s.apply("content_block_delta", "{not json"),
            Err(TryError::Fail(_))
        ));
    }
}
