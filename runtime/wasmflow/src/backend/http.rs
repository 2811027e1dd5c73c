//! What both HTTP backends share: sending with retries, classifying
//! failures, and reading an event stream with a stall timeout.

use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::retry::{RetryPolicy, retry_after};
use super::sse::{SseEvent, SseParser};
use super::{AgentFailure, FailureKind, Usage};

/// Timeouts and retries of one HTTP backend.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Wall clock for one agent, retries and their waits included.
    pub timeout: Duration,
    /// Longest silence of the server (no headers, no bytes) before the try
    /// is abandoned as stalled.
    pub stall: Duration,
    /// Backoff between tries.
    pub retry: RetryPolicy,
}

/// Why one try did not produce a reply.
#[derive(Debug)]
pub enum TryError {
    /// Worth another try: 429, 5xx, a network error, a stall.
    Retry {
        /// What went wrong.
        reason: String,
        /// When the server asked to retry (`retry-after`).
        after: Option<Duration>,
        /// Quota, auth or other.
        kind: FailureKind,
    },
    /// Trying again would fail the same way.
    Fail(AgentFailure),
}

impl TryError {
    /// A failure worth another try.
    pub fn retry(reason: impl Into<String>) -> TryError {
        TryError::Retry {
            reason: reason.into(),
            after: None,
            kind: FailureKind::Other,
        }
    }

    /// A failure no retry can fix.
    pub fn fail(reason: impl Into<String>, kind: FailureKind) -> TryError {
        TryError::Fail(AgentFailure {
            reason: reason.into(),
            usage: Usage::default(),
            kind,
        })
    }

    /// A reply that does not parse: retried.
    pub fn malformed(what: impl std::fmt::Display) -> TryError {
        TryError::fail(format!("malformed reply: {what}"), FailureKind::Other)
    }
}

/// What the stream reader should do after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// More events may follow.
    More,
    /// The stream ended.
    Done,
}

/// The client both backends use: connect timeout only; the rest is
/// bounded per try by the stall timeout and per agent by the agent timeout.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .user_agent(concat!("wasmflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", chain(&e)))
}

/// An error and its causes on one line (reqwest's own message says little).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The `error.message` of an error body (both APIs use that shape, and
/// gateways send it SSE-framed too: `data: {"error": …}`), else the start
/// of the body; on one line.
pub fn error_message(body: &str) -> String {
    let message_of = |text: &str| -> Option<String> {
        let v: Value = serde_json::from_str(text.trim()).ok()?;
        let e = &v["error"];
        e["message"]
            .as_str()
            .or_else(|| e.as_str())
            .or_else(|| v["message"].as_str())
            .map(String::from)
    };
    let found = message_of(body).or_else(|| {
        body.lines()
            .filter_map(|l| l.trim_start().strip_prefix("data:"))
            .find_map(message_of)
    });
    one_line(&found.unwrap_or_else(|| body.to_string()))
}

/// The first non-empty line, at most 300 characters, saying when more was
/// cut (a server's message may carry a whole traceback).
pub fn one_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let clipped = clip(first, 300);
    if lines.next().is_some() && !clipped.ends_with('…') {
        format!("{clipped} …")
    } else {
        clipped
    }
}

fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Sends a request and sorts the answer: a success response to stream, or
/// what to do about a failure.
pub async fn send(request: RequestBuilder, stall: Duration) -> Result<Response, TryError> {
    let response = match tokio::time::timeout(stall, request.send()).await {
        Err(_) => {
            return Err(TryError::retry(format!(
                "stalled: no response within {stall:?}"
            )));
        }
        Ok(Err(e)) => return Err(TryError::retry(format!("network error: {}", chain(&e)))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let after = retry_after(response.headers());
    let body = read_limited(response, stall, 64 << 10).await;
    let message = error_message(&body);
    let said = format!("HTTP {}: {message}", status.as_u16());
    let lower = body.to_ascii_lowercase();
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS if lower.contains("insufficient_quota") => {
            TryError::fail(said, FailureKind::Quota)
        }
        StatusCode::TOO_MANY_REQUESTS => TryError::Retry {
            reason: said,
            after,
            kind: FailureKind::Quota,
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TryError::fail(
            format!("{said} (the API key was refused)"),
            FailureKind::Auth,
        ),
        StatusCode::PAYMENT_REQUIRED => TryError::fail(said, FailureKind::Quota),
        s if s == StatusCode::REQUEST_TIMEOUT || s.is_server_error() || s.as_u16() == 529 => {
            TryError::Retry {
                reason: said,
                after,
                kind: FailureKind::Other,
            }
        }
        _ if lower.contains("credit balance") => TryError::fail(said, FailureKind::Quota),
        s if s.is_client_error() && s != StatusCode::CONFLICT => {
            TryError::fail(said, FailureKind::Refused)
        }
        _ => TryError::fail(said, FailureKind::Other),
    })
}

/// What a server sent back for a streaming request.
pub enum Answer {
    /// An event stream, to read with [`read_events`].
    Stream(Response),
    /// A whole JSON body: the server did not stream (some gateways
    /// answer so); read it as the API's non-streamed response.
    Complete(Value),
}

/// Largest whole JSON reply read.
const MAX_COMPLETE_BYTES: usize = 64 << 20;

/// Sorts a success response by its content type: an event stream, a whole
/// JSON reply, or anything else (a failure naming the type, not retried:
/// the server will answer the same way again).
pub async fn answer(mut response: Response, stall: Duration) -> Result<Answer, TryError> {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if mime.is_empty() || mime == "text/event-stream" {
        return Ok(Answer::Stream(response));
    }
    if mime != "application/json" && !mime.ends_with("+json") {
        return Err(TryError::fail(
            format!(
                "the server answered a streaming request with content type `{content_type}`, neither an event stream nor JSON"
            ),
            FailureKind::Other,
        ));
    }
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(stall, response.chunk()).await {
            Err(_) => {
                return Err(TryError::retry(format!(
                    "stalled: no data for {stall:?} in a JSON reply"
                )));
            }
            Ok(Err(e)) => {
                return Err(TryError::retry(format!(
                    "the connection broke mid-reply: {}",
                    chain(&e)
                )));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(bytes))) => {
                body.extend_from_slice(&bytes);
                if body.len() > MAX_COMPLETE_BYTES {
                    return Err(TryError::fail(
                        format!("the JSON reply is over {MAX_COMPLETE_BYTES} bytes"),
                        FailureKind::Other,
                    ));
                }
            }
        }
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| TryError::malformed(format!("the JSON reply does not parse: {e}")))?;
    if let Some(e) = value.get("error").filter(|e| !e.is_null()) {
        let message = e["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| e.to_string());
        return Err(TryError::fail(one_line(&message), FailureKind::Other));
    }
    Ok(Answer::Complete(value))
}

/// At most `max` bytes of a body, as text; whatever arrived if the body
/// stalls or breaks (it only feeds an error message).
async fn read_limited(mut response: Response, stall: Duration, max: usize) -> String {
    let mut body = Vec::new();
    while body.len() < max {
        match tokio::time::timeout(stall, response.chunk()).await {
            Ok(Ok(Some(bytes))) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    body.truncate(max);
    String::from_utf8_lossy(&body).into_owned()
}

/// Reads an event stream to its end (`Flow::Done`); silence longer than
/// `stall` abandons the try.
pub async fn read_events(
    mut response: Response,
    stall: Duration,
    mut on_event: impl FnMut(SseEvent) -> Result<Flow, TryError>,
) -> Result<(), TryError> {
    let mut parser = SseParser::default();
    loop {
        let chunk = match tokio::time::timeout(stall, response.chunk()).await {
            Err(_) => {
                return Err(TryError::retry(format!(
                    "stalled: no data for {stall:?} (raise it with stall_timeout in wasmflow.toml or opts.stallMs)"
                )));
            }
            Ok(Err(e)) => {
                return Err(TryError::retry(format!(
                    "the connection broke mid-reply: {}",
                    chain(&e)
                )));
            }
            Ok(Ok(None)) => {
                return Err(TryError::retry(
                    "the connection closed before the reply was complete",
                ));
            }
            Ok(Ok(Some(c))) => c,
        };
        for event in parser.push(&chunk).map_err(TryError::malformed)? {
            if on_event(event)? == Flow::Done {
                return Ok(());
            }
        }
    }
}

/// Runs tries until one answers, a failure is final, the retries are
/// spent, or `deadline` (the agent's wall clock) passes.
pub async fn with_retries<T, F, Fut>(
    options: HttpOptions,
    deadline: tokio::time::Instant,
    agent: &str,
    seed: u64,
    mut attempt: F,
) -> Result<T, AgentFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TryError>>,
{
    let timed_out = || AgentFailure {
        reason: format!(
            "the agent timed out after {:?} (raise it with --agent-timeout)",
            options.timeout
        ),
        usage: Usage::default(),
        kind: FailureKind::Other,
    };
    let mut retry = 0u32;
    loop {
        let outcome = match tokio::time::timeout_at(deadline, attempt()).await {
            Err(_) => return Err(timed_out()),
            Ok(o) => o,
        };
        let (reason, after, kind) = match outcome {
            Ok(reply) => return Ok(reply),
            Err(TryError::Fail(f)) => return Err(f),
            Err(TryError::Retry {
                reason,
                after,
                kind,
            }) => (reason, after, kind),
        };
        let gave_up = |why: String| AgentFailure {
            reason: format!("{reason} ({why})"),
            usage: Usage::default(),
            kind,
        };
        if retry >= options.retry.retries {
            return Err(gave_up(format!(
                "gave up after {} tr{}",
                retry + 1,
                if retry == 0 { "y" } else { "ies" }
            )));
        }
        let Some(delay) = options.retry.delay(retry, after, seed) else {
            return Err(gave_up(format!(
                "the server asked to wait {:?}, longer than the {:?} wasmflow waits",
                after.unwrap_or_default(),
                options.retry.max_retry_after
            )));
        };
        if tokio::time::Instant::now() + delay > deadline {
            return Err(timed_out());
        }
        tracing::warn!(
            "{agent}: {reason}; retry {}/{} in {:.1}s",
            retry + 1,
            options.retry.retries,
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
        retry += 1;
    }
}

/// The failure of an agent that was still calling tools at its last turn.
pub fn turn_limit(max_turns: u32, usage: Usage) -> AgentFailure {
    AgentFailure {
        reason: format!(
            "the agent reached its turn limit ({max_turns} model replies) while still calling tools (raise opts.maxTurns or [tools] max_turns)"
        ),
        usage,
        kind: FailureKind::Other,
    }
}

/// The failure of an agent whose wall clock ran out in a tool call.
pub fn tool_timeout(timeout: std::time::Duration, usage: Usage) -> AgentFailure {
    AgentFailure {
        reason: format!(
            "the agent timed out after {timeout:?} in a tool call (raise it with --agent-timeout)"
        ),
        usage,
        kind: FailureKind::Other,
    }
}

/// Adds what earlier turns used to a failure's usage.
pub fn with_usage(mut failure: AgentFailure, earlier: Usage) -> AgentFailure {
    failure.usage += earlier;
    failure
}

/// A base URL without its trailing slash.
pub fn trim_base(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// Model ids a server lists at `GET …/models` (`data[].id`, both APIs).
pub async fn list_models(
    request: RequestBuilder,
    server: &str,
) -> Result<Option<Vec<String>>, String> {
    let response = match tokio::time::timeout(Duration::from_secs(30), request.send()).await {
        Err(_) => return Err(format!("{server} did not answer within 30s")),
        Ok(Err(e)) => return Err(format!("cannot reach {server}: {}", chain(&e))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let code = status.as_u16();
    if matches!(code, 400 | 401 | 403 | 422) {
        // A gateway without a working key may answer every route with one
        // of these (LiteLLM: 400 "No connected db."): nothing would work.
        let body = read_limited(response, Duration::from_secs(10), 64 << 10).await;
        let said = one_line(&error_message(&body));
        return Err(if matches!(code, 401 | 403) {
            format!("{server} refused the API key (HTTP {code}: {said})")
        } else {
            format!(
                "{server} refused the request for its model list (HTTP {code}: {said}); check the API key and the server's set-up"
            )
        });
    }
    if !status.is_success() {
        // 404/405: this server lists no models; go on without checking.
        if !matches!(code, 404 | 405) {
            tracing::warn!(
                "{server} answered HTTP {code} for its model list; model names are not checked"
            );
        }
        return Ok(None);
    }
    let body = read_limited(response, Duration::from_secs(30), 16 << 20).await;
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        return Ok(None);
    };
    Ok(v["data"].as_array().map(|models| {
        models
            .iter()
            .filter_map(|m| m["id"].as_str().map(String::from))
            .collect()
    }))
}

/// Whether a listed id serves `wanted`: equal, or a dated version of it
/// (`claude-haiku-4-5` is served as `claude-haiku-4-5-20251001`).
pub fn model_listed(listed: &[String], wanted: &str) -> bool {
    listed
        .iter()
        .any(|id| id == wanted || id.strip_prefix(wanted).is_some_and(|r| r.starts_with('-')))
}
