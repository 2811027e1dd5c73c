//! The `openai` backend: streamed Chat Completions, as OpenAI documents
//! them (<https://platform.openai.com/docs/api-reference/chat/create>,
//! <https://platform.openai.com/docs/api-reference/chat-streaming>) and as
//! Ollama, vLLM and llama.cpp serve them.
//!
//! With MCP tools configured (`[mcp_servers]`), the agent loop: the tools
//! go out as `tools: [{type: "function", …}]`, streamed `tool_calls` are
//! put together from their fragments (by `index`, several interleaved),
//! run, and sent back as `role: "tool"` messages until the model answers
//! without calling one or `maxTurns` is reached
//! (<https://platform.openai.com/docs/guides/function-calling>). Without
//! tools, one completion. `opts.schema` goes through `response_format:
//! {type: "json_schema"}`; usage comes from each turn's last chunk
//! (`stream_options.include_usage`) and is summed over the turns.

use std::sync::Arc;

use serde_json::{Value, json};

use super::http::{self, Flow, HttpOptions, TryError};
use super::{
    AgentBackend, AgentOutput, AgentReply, AgentRequest, AgentResult, BoxFuture, FailureKind,
    PlannedModel, Usage,
};
use crate::run::transcript::{Transcript, Transcripts, bounded};
use crate::tools::{Entry, ToolCall, Toolbox};

const PUBLIC_API: &str = "https://api.openai.com/v1";

/// Where and how to reach the server.
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// With `/v1`, as `OPENAI_BASE_URL` in the official SDKs.
    pub base_url: String,
    /// Local servers need none.
    pub api_key: Option<String>,
    /// `max_tokens` of every request, when set.
    pub max_tokens: Option<u32>,
    /// Timeouts and retries.
    pub http: HttpOptions,
}

impl OpenAiSettings {
    /// Base URL: config, else `OPENAI_BASE_URL`, else OpenAI's. Key: the
    /// variable `api_key_env` names (default `OPENAI_API_KEY`); required
    /// only for OpenAI's own API.
    pub fn from_env(
        section: &crate::config::HttpSection,
        http: HttpOptions,
    ) -> Result<OpenAiSettings, String> {
        let key_env = section
            .api_key_env
            .clone()
            .unwrap_or_else(|| "OPENAI_API_KEY".into());
        let api_key = std::env::var(&key_env)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        let base_url = http::trim_base(
            &section
                .base_url
                .clone()
                .or_else(|| std::env::var("OPENAI_BASE_URL").ok())
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| PUBLIC_API.into()),
        );
        if api_key.is_none() && base_url == PUBLIC_API {
            return Err(format!(
                "the openai backend needs an API key for {PUBLIC_API}: {key_env} is not set (export it; for a local server such as Ollama set OPENAI_BASE_URL or [openai] base_url)"
            ));
        }
        Ok(OpenAiSettings {
            base_url,
            api_key,
            max_tokens: section.max_tokens,
            http,
        })
    }
}

/// Agents through an OpenAI-compatible Chat Completions API (streamed).
pub struct OpenAiBackend {
    settings: Arc<OpenAiSettings>,
    client: reqwest::Client,
    tools: Option<Arc<Toolbox>>,
    transcripts: Transcripts,
}

impl OpenAiBackend {
    /// A backend with its HTTP client; `Err` when the client cannot be built.
    pub fn new(settings: OpenAiSettings) -> Result<OpenAiBackend, String> {
        Ok(OpenAiBackend {
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
    ) -> OpenAiBackend {
        self.tools = tools;
        self.transcripts = transcripts;
        self
    }
}

/// The request body of one turn: the conversation so far and the tools.
pub fn request_body(
    request: &AgentRequest,
    model: &str,
    max_tokens: Option<u32>,
    messages: &[Value],
    tools: &[Entry],
) -> Value {
    let mut body = json!({
        "model": model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(n) = max_tokens {
        body["max_tokens"] = json!(n);
    }
    if !tools.is_empty() {
        body["tools"] = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.api_name,
                    "description": t.info.description,
                    "parameters": t.info.input_schema,
                }})
            })
            .collect();
    }
    if let Some(schema) = &request.schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": *schema.value, "strict": false},
        });
    }
    body
}

/// What one streamed completion adds up to.
#[derive(Debug, Default)]
pub struct CompletionState {
    /// Content so far.
    pub text: String,
    /// Usage from the final chunk.
    pub usage: Usage,
    /// Why the model stopped.
    pub finish_reason: Option<String>,
    /// Tool calls by their `index`: id, name and arguments so far.
    pub calls: std::collections::BTreeMap<u64, ToolCall>,
}

impl CompletionState {
    /// Applies one `data:` payload.
    pub fn apply(&mut self, data: &str) -> Result<Flow, TryError> {
        if data.trim() == "[DONE]" {
            return Ok(Flow::Done);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| TryError::malformed(format!("a stream chunk is not JSON: {e}")))?;
        if let Some(e) = v.get("error") {
            let message = e["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| e.to_string());
            return Err(TryError::fail(message, FailureKind::Other));
        }
        if let Some(choices) = v["choices"].as_array() {
            for c in choices {
                if let Some(t) = c["delta"]["content"].as_str() {
                    self.text.push_str(t);
                }
                for (n, call) in c["delta"]["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let index = call["index"].as_u64().unwrap_or(n as u64);
                    let entry = self.calls.entry(index).or_insert_with(|| ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                    if let Some(id) = call["id"].as_str() {
                        entry.id = id.to_string();
                    }
                    let f = &call["function"];
                    if let Some(name) = f["name"].as_str() {
                        entry.name.push_str(name);
                    }
                    if let Some(a) = f["arguments"].as_str() {
                        entry.arguments.push_str(a);
                    }
                }
                if let Some(r) = c["finish_reason"].as_str() {
                    self.finish_reason = Some(r.to_string());
                }
            }
        } else if v.get("usage").is_none() {
            return Err(TryError::malformed("a stream chunk has no `choices`"));
        }
        self.take_usage(&v);
        Ok(Flow::More)
    }

    fn take_usage(&mut self, v: &Value) {
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let cached = u["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0);
            let prompt = u["prompt_tokens"].as_u64().unwrap_or(0);
            self.usage = Usage {
                input: prompt.saturating_sub(cached),
                output: u["completion_tokens"].as_u64().unwrap_or(0),
                cache_read: cached,
                cache_write: 0,
                tool_uses: 0,
                ..Usage::default()
            };
        }
    }

    /// A whole (non-streamed) chat completion, as the stream would have
    /// built it.
    pub fn from_completion(v: &Value) -> Result<CompletionState, TryError> {
        let choices = v["choices"]
            .as_array()
            .ok_or_else(|| TryError::malformed("the JSON reply has no `choices`"))?;
        let mut state = CompletionState::default();
        for c in choices {
            if let Some(t) = c["message"]["content"].as_str() {
                state.text.push_str(t);
            }
            for (n, call) in c["message"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let f = &call["function"];
                state.calls.insert(
                    n as u64,
                    ToolCall {
                        id: call["id"].as_str().unwrap_or_default().to_string(),
                        name: f["name"].as_str().unwrap_or_default().to_string(),
                        arguments: match &f["arguments"] {
                            Value::String(a) => a.clone(),
                            other => other.to_string(),
                        },
                    },
                );
            }
            if let Some(r) = c["finish_reason"].as_str() {
                state.finish_reason = Some(r.to_string());
            }
        }
        state.take_usage(v);
        Ok(state)
    }
}

/// One turn: a streamed (or, from some gateways, whole) completion.
async fn completion(
    client: &reqwest::Client,
    settings: &OpenAiSettings,
    body: &Value,
    stall: std::time::Duration,
) -> Result<CompletionState, TryError> {
    let mut builder = client
        .post(format!("{}/chat/completions", settings.base_url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = &settings.api_key {
        builder = builder.bearer_auth(key);
    }
    let response = http::send(builder, stall).await?;
    Ok(match http::answer(response, stall).await? {
        http::Answer::Complete(v) => CompletionState::from_completion(&v)?,
        http::Answer::Stream(response) => {
            let mut state = CompletionState::default();
            http::read_events(response, stall, |e| state.apply(&e.data)).await?;
            state
        }
    })
}

/// One agent: turns until the model answers without calling a tool.
async fn run_agent(
    client: reqwest::Client,
    settings: Arc<OpenAiSettings>,
    tools: Option<Arc<Toolbox>>,
    transcripts: Transcripts,
    request: AgentRequest,
) -> AgentResult {
    let offered = tools
        .as_ref()
        .map(|t| t.offered(&request))
        .unwrap_or_default();
    let tools = tools.filter(|_| !offered.is_empty());
    let mut log = match &tools {
        Some(_) => transcripts.agent(request.id, request.attempt),
        None => Transcript::none(),
    };
    log.record(
        "request",
        json!({"prompt": bounded(&request.prompt_with_feedback()), "tools": offered.iter().map(|e| &e.name).collect::<Vec<_>>()}),
    );
    let result = turns(client, settings, tools, offered, &request, &mut log).await;
    log.end(&result);
    result
}

/// The turns of one agent, with its tools (`None`: one completion).
async fn turns(
    client: reqwest::Client,
    settings: Arc<OpenAiSettings>,
    tools: Option<Arc<Toolbox>>,
    offered: Vec<Entry>,
    request: &AgentRequest,
    log: &mut Transcript,
) -> AgentResult {
    let Some(model) = request.model.clone() else {
        return Err(super::no_model());
    };
    let max_turns = tools.as_ref().map_or(1, |t| t.max_turns(request));
    let deadline = tokio::time::Instant::now() + settings.http.timeout;
    let stall = request.stall_timeout(settings.http.stall);
    let label = request.display_label();
    let mut messages = vec![json!({"role": "user", "content": request.prompt_with_feedback()})];
    let mut usage = Usage::default();
    for turn in 1..=max_turns {
        let body = request_body(request, &model, settings.max_tokens, &messages, &offered);
        let state = http::with_retries(settings.http, deadline, &label, request.id, || {
            completion(&client, &settings, &body, stall)
        })
        .await
        .map_err(|f| http::with_usage(f, usage))?;
        usage += state.usage;
        log.reply(turn, &state.text, state.usage);
        let calls: Vec<ToolCall> = state.calls.into_values().collect();
        let Some(toolbox) = tools.as_ref().filter(|_| !calls.is_empty()) else {
            return Ok(AgentReply {
                output: output(state.text, request.schema.is_some()),
                usage,
            });
        };
        if turn == max_turns {
            break;
        }
        messages.push(json!({
            "role": "assistant",
            "content": if state.text.is_empty() { Value::Null } else { json!(state.text) },
            "tool_calls": calls.iter().map(|c| json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            })).collect::<Vec<_>>(),
        }));
        let results = tokio::time::timeout_at(deadline, toolbox.call_all(&offered, &calls))
            .await
            .map_err(|_| http::tool_timeout(settings.http.timeout, usage))?;
        usage.tool_uses += calls.len() as u64;
        log.calls(turn, &calls, &results);
        for (call, out) in calls.iter().zip(results) {
            let content = if out.is_error {
                format!("Error: {}", out.text)
            } else {
                out.text
            };
            messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": content}));
        }
    }
    Err(http::turn_limit(max_turns, usage))
}

/// The agent's answer from its final text.
fn output(text: String, schema: bool) -> AgentOutput {
    if schema {
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(v) => AgentOutput::Json(v),
            // Servers that ignore response_format: the schema check sends
            // the errors back on the next try.
            Err(_) => AgentOutput::Text(text),
        }
    } else {
        AgentOutput::Text(text)
    }
}

impl AgentBackend for OpenAiBackend {
    fn name(&self) -> &str {
        "openai"
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
            let mut request = client.get(format!("{}/models", settings.base_url));
            if let Some(key) = &settings.api_key {
                request = request.bearer_auth(key);
            }
            let listed = http::list_models(
                request,
                &format!("the OpenAI-compatible server at {}", settings.base_url),
            )
            .await?;
            super::router::check_listed(&models, listed.as_deref(), "the server")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_add_up() {
        let mut s = CompletionState::default();
        for d in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":8}}}"#,
        ] {
            assert_eq!(s.apply(d).unwrap(), Flow::More);
        }
        assert_eq!(s.apply("[DONE]").unwrap(), Flow::Done);
        assert_eq!(s.text, "Hello");
        assert_eq!(
            s.usage,
            Usage {
                input: 12,
                output: 2,
                cache_read: 8,
                cache_write: 0,
                tool_uses: 0,
                ..Usage::default()
            }
        );
        assert!(matches!(s.apply("{}"), Err(TryError::Fail(_))));
        assert!(matches!(s.apply("nope"), Err(TryError::Fail(_))));
    }

    #[test]
    fn interleaved_tool_call_fragments_come_together() {
        // As OpenAI streams two calls in one turn: the first chunk of each
        // carries its id and name, later ones only `index` and fragments.
        let mut s = CompletionState::default();
        for d in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"mcp__fs__read_text_file","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"mcp__fs__read_text_file","arguments":"{\"pa"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\": \"a"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"th\": \"b.txt\"}"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":".txt\"}"}}]},"finish_reason":"tool_calls"}]}"#,
        ] {
            s.apply(d).unwrap();
        }
        let calls: Vec<ToolCall> = s.calls.into_values().collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "call_a");
        assert_eq!(calls[0].arguments, r#"{"path": "a.txt"}"#);
        assert_eq!(calls[1].id, "call_b");
        assert_eq!(calls[1].arguments, r#"{"path": "b.txt"}"#);
        assert_eq!(s.finish_reason.as_deref(), Some("tool_calls"));
    }
}
