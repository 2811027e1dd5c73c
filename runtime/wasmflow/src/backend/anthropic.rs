//! The `anthropic` backend: one streamed Messages API request per try
//! (<https://docs.anthropic.com/en/api/messages>,
//! <https://docs.anthropic.com/en/docs/build-with-claude/streaming>).
//!
//! A single completion without tools: the agent cannot read files or run
//! commands. `opts.schema` goes through a forced tool whose input schema is
//! the schema, so the reply is the tool's input. Long prompts carry a
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
        })
    }
}

/// Agents through the Anthropic Messages API (streamed).
pub struct AnthropicBackend {
    settings: Arc<AnthropicSettings>,
    client: reqwest::Client,
}

impl AnthropicBackend {
    /// A backend with its HTTP client; `Err` when the client cannot be built.
    pub fn new(settings: AnthropicSettings) -> Result<AnthropicBackend, String> {
        Ok(AnthropicBackend {
            settings: Arc::new(settings),
            client: http::client()?,
        })
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

/// The request body for one try.
pub fn request_body(request: &AgentRequest, model: &str, max_tokens: u32) -> (Value, bool) {
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "stream": true,
        "messages": [{"role": "user", "content": content_blocks(&request.prompt_with_feedback())}],
    });
    let mut wrapped = false;
    if let Some(schema) = &request.schema {
        let (input_schema, w) = tool_schema(&schema.value);
        wrapped = w;
        body["tools"] = json!([{
            "name": OUTPUT_TOOL,
            "description": "Give your final answer by calling this tool; its input is the answer.",
            "input_schema": input_schema,
        }]);
        body["tool_choice"] = json!({"type": "tool", "name": OUTPUT_TOOL});
    }
    (body, wrapped)
}

/// What one streamed message adds up to.
#[derive(Debug, Default)]
pub struct MessageState {
    /// Text blocks so far.
    pub text: String,
    /// The forced tool's input JSON so far.
    pub tool_json: String,
    /// The reply used the structured-output tool.
    pub saw_tool: bool,
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
        match kind {
            "message_start" => self.merge_usage(&v["message"]["usage"]),
            "content_block_start" => {
                if v["content_block"]["type"] == "tool_use" {
                    self.saw_tool = true;
                } else if let Some(t) = v["content_block"]["text"].as_str() {
                    self.text.push_str(t);
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => self.text.push_str(d["text"].as_str().unwrap_or("")),
                    Some("input_json_delta") => self
                        .tool_json
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
    }

    /// A whole (non-streamed) Messages response, as the stream would have
    /// built it.
    pub fn from_message(v: &Value) -> Result<MessageState, TryError> {
        let blocks = v["content"]
            .as_array()
            .ok_or_else(|| TryError::malformed("the JSON reply has no `content`"))?;
        let mut state = MessageState::default();
        for block in blocks {
            match block["type"].as_str() {
                Some("text") => state.text.push_str(block["text"].as_str().unwrap_or("")),
                Some("tool_use") => {
                    state.saw_tool = true;
                    state.tool_json = block["input"].to_string();
                }
                _ => {}
            }
        }
        state.merge_usage(&v["usage"]);
        state.stop_reason = v["stop_reason"].as_str().map(String::from);
        Ok(state)
    }

    /// The agent's answer.
    pub fn into_reply(self, wrapped: bool, schema: bool) -> Result<AgentReply, TryError> {
        let output = if schema && self.saw_tool {
            let input = if self.tool_json.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str::<Value>(&self.tool_json).map_err(|e| {
                    TryError::malformed(format!("the structured output is not JSON: {e}"))
                })?
            };
            let value = if wrapped {
                input.get("value").cloned().unwrap_or(Value::Null)
            } else {
                input
            };
            AgentOutput::Json(value)
        } else {
            if self.stop_reason.as_deref() == Some("max_tokens") && self.text.is_empty() {
                return Err(TryError::fail(
                    "the reply hit max_tokens before any text (raise [anthropic] max_tokens)",
                    super::FailureKind::Other,
                ));
            }
            AgentOutput::Text(self.text)
        };
        Ok(AgentReply {
            output,
            usage: self.usage,
        })
    }
}

async fn one_try(
    client: reqwest::Client,
    settings: Arc<AnthropicSettings>,
    request: AgentRequest,
    model: String,
) -> Result<AgentReply, TryError> {
    let (body, wrapped) = request_body(&request, &model, settings.max_tokens);
    let stall = request.stall_timeout(settings.http.stall);
    let builder = client
        .post(format!("{}/v1/messages", settings.base_url))
        .header("x-api-key", &settings.api_key)
        .header("anthropic-version", API_VERSION)
        .header("content-type", "application/json")
        .body(body.to_string());
    let response = http::send(builder, stall).await?;
    let state = match http::answer(response, stall).await? {
        http::Answer::Complete(v) => MessageState::from_message(&v)?,
        http::Answer::Stream(response) => {
            let mut state = MessageState::default();
            http::read_events(response, stall, |e| state.apply(&e.event, &e.data)).await?;
            state
        }
    };
    state.into_reply(wrapped, request.schema.is_some())
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
        let client = self.client.clone();
        let settings = self.settings.clone();
        Box::pin(http::run_agent(
            self.settings.http,
            request,
            move |request, model| one_try(client.clone(), settings.clone(), request, model),
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
                cache_write: 0
            }
        );
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
