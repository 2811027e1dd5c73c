//! The `openai` backend: streamed Chat Completions, as OpenAI documents
//! them (<https://platform.openai.com/docs/api-reference/chat/create>,
//! <https://platform.openai.com/docs/api-reference/chat-streaming>) and as
//! Ollama, vLLM and llama.cpp serve them.
//!
//! A single completion without tools. `opts.schema` goes through
//! `response_format: {type: "json_schema"}`; usage comes from the last
//! chunk (`stream_options.include_usage`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::http::{self, Flow, HttpOptions, TryError};
use super::{
    AgentBackend, AgentOutput, AgentReply, AgentRequest, AgentResult, BoxFuture, FailureKind,
    PlannedModel, Usage,
};

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
}

impl OpenAiBackend {
    /// A backend with its HTTP client; `Err` when the client cannot be built.
    pub fn new(settings: OpenAiSettings) -> Result<OpenAiBackend, String> {
        Ok(OpenAiBackend {
            settings: Arc::new(settings),
            client: http::client()?,
        })
    }
}

/// The request body for one try.
pub fn request_body(request: &AgentRequest, model: &str, max_tokens: Option<u32>) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": request.prompt_with_feedback()}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(n) = max_tokens {
        body["max_tokens"] = json!(n);
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
            if let Some(r) = c["finish_reason"].as_str() {
                state.finish_reason = Some(r.to_string());
            }
        }
        state.take_usage(v);
        Ok(state)
    }
}

async fn one_try(
    client: reqwest::Client,
    settings: Arc<OpenAiSettings>,
    request: AgentRequest,
    model: String,
) -> Result<AgentReply, TryError> {
    let body = request_body(&request, &model, settings.max_tokens);
    let stall = request.stall_timeout(settings.http.stall);
    let mut builder = client
        .post(format!("{}/chat/completions", settings.base_url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = &settings.api_key {
        builder = builder.bearer_auth(key);
    }
    let response = http::send(builder, stall).await?;
    let state = match http::answer(response, stall).await? {
        http::Answer::Complete(v) => CompletionState::from_completion(&v)?,
        http::Answer::Stream(response) => {
            let mut state = CompletionState::default();
            http::read_events(response, stall, |e| state.apply(&e.data)).await?;
            state
        }
    };
    let output = if request.schema.is_some() {
        match serde_json::from_str::<Value>(state.text.trim()) {
            Ok(v) => AgentOutput::Json(v),
            // Servers that ignore response_format: the schema check sends
            // the errors back on the next try.
            Err(_) => AgentOutput::Text(state.text),
        }
    } else {
        AgentOutput::Text(state.text)
    };
    Ok(AgentReply {
        output,
        usage: state.usage,
    })
}

impl AgentBackend for OpenAiBackend {
    fn name(&self) -> &str {
        "openai"
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
                cache_write: 0
            }
        );
        assert!(matches!(s.apply("{}"), Err(TryError::Fail(_))));
        assert!(matches!(s.apply("nope"), Err(TryError::Fail(_))));
    }
}
