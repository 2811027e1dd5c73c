//! A real HTTP/1.1 server on 127.0.0.1 for the HTTP backends' tests: it
//! records every request and answers from a script, including the bad
//! days (429 with retry-after, 500, a malformed body, a stalled body, a
//! dropped connection).
//!
//! The streams it sends follow the providers' documentation:
//! - Anthropic Messages streaming:
//!   <https://docs.anthropic.com/en/docs/build-with-claude/streaming>
//!   (`message_start`, `content_block_start`, `content_block_delta` with
//!   `text_delta` / `input_json_delta`, `content_block_stop`,
//!   `message_delta` with the final `usage.output_tokens`, `message_stop`;
//!   errors as `{"type":"error","error":{"type","message"}}`).
//! - Anthropic models list: <https://docs.anthropic.com/en/api/models-list>
//!   (`{"data": [{"id", "type": "model", ...}]}`).
//! - OpenAI Chat Completions streaming:
//!   <https://platform.openai.com/docs/api-reference/chat-streaming>
//!   (`chat.completion.chunk` objects, a last chunk with `usage` when
//!   `stream_options.include_usage` is set, then `data: [DONE]`), and
//!   models list <https://platform.openai.com/docs/api-reference/models/list>.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    pub at: Instant,
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A plain response.
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// An event stream: `(event, data)` pairs; with `stall`, the server
    /// goes silent after that many events for that long, then closes.
    Sse {
        events: Vec<(String, String)>,
        stall: Option<(usize, Duration)>,
    },
    /// Headers and part of the stream, then the connection is dropped.
    DropAfter { events: Vec<(String, String)> },
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

pub struct FakeServer {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    /// Serves `handler(request, index of this request among those to the
    /// same path)` until the test process ends.
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &*handler, &seen);
                });
            }
        });
        FakeServer { url, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests to paths starting with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let request = Request {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    };
    let index = {
        let mut all = seen.lock().unwrap();
        let index = all.iter().filter(|r| r.path == request.path).count();
        all.push(request.clone());
        index
    };
    let mut out = stream;
    match handler(&request, index) {
        Reply::Status {
            code,
            headers,
            body,
        } => {
            // JSON unless the reply names its own content type.
            let own_type = headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
            let mut head = format!(
                "HTTP/1.1 {code} X\r\n{}content-length: {}\r\nconnection: close\r\n",
                if own_type {
                    ""
                } else {
                    "content-type: application/json\r\n"
                },
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            out.write_all(format!("{head}\r\n{body}").as_bytes())?;
        }
        Reply::Sse { events, stall } => {
            out.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            )?;
            for (i, (event, data)) in events.iter().enumerate() {
                if let Some((after, pause)) = stall
                    && i == after
                {
                    out.flush()?;
                    std::thread::sleep(pause);
                    return Ok(());
                }
                write_event(&mut out, event, data)?;
            }
        }
        Reply::DropAfter { events } => {
            out.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
            )?;
            for (event, data) in &events {
                write_event(&mut out, event, data)?;
            }
            out.flush()?;
            let _ = out.shutdown(std::net::Shutdown::Both);
        }
    }
    out.flush()
}

fn write_event(out: &mut TcpStream, event: &str, data: &str) -> std::io::Result<()> {
    if event.is_empty() {
        write!(out, "data: {data}\n\n")?;
    } else {
        write!(out, "event: {event}\ndata: {data}\n\n")?;
    }
    out.flush()
}

pub fn json_reply(code: u16, body: Value) -> Reply {
    Reply::Status {
        code,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

/// `GET /v1/models` (Anthropic) or `/v1/models` (OpenAI): the same shape.
pub fn models_list(ids: &[&str]) -> Reply {
    json_reply(
        200,
        json!({"data": ids.iter().map(|id| json!({"id": id, "type": "model", "object": "model"})).collect::<Vec<_>>()}),
    )
}

/// Usage as the Messages API reports it.
#[derive(Debug, Clone, Copy)]
pub struct AnthropicUsage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

fn anthropic_head(model: &str, u: AnthropicUsage) -> Vec<(String, String)> {
    vec![
        (
            "message_start".into(),
            json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [],
            "model": model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": u.input, "output_tokens": 1,
                      "cache_read_input_tokens": u.cache_read,
                      "cache_creation_input_tokens": u.cache_write}}})
            .to_string(),
        ),
        ("ping".into(), json!({"type": "ping"}).to_string()),
    ]
}

fn anthropic_tail(stop: &str, u: AnthropicUsage) -> Vec<(String, String)> {
    vec![
        (
            "content_block_stop".into(),
            json!({"type": "content_block_stop", "index": 0}).to_string(),
        ),
        (
            "message_delta".into(),
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                   "usage": {"output_tokens": u.output}})
            .to_string(),
        ),
        (
            "message_stop".into(),
            json!({"type": "message_stop"}).to_string(),
        ),
    ]
}

/// A streamed text answer, in two deltas.
pub fn anthropic_text(model: &str, text: &str, u: AnthropicUsage) -> Vec<(String, String)> {
    let mut events = anthropic_head(model, u);
    let half = text.len() / 2;
    let half = (0..=half)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    events.push((
        "content_block_start".into(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string(),
    ));
    for part in [&text[..half], &text[half..]] {
        events.push((
            "content_block_delta".into(),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}).to_string(),
        ));
    }
    events.extend(anthropic_tail("end_turn", u));
    events
}

/// A streamed forced-tool answer whose input is `input`.
pub fn anthropic_tool(model: &str, input: &Value, u: AnthropicUsage) -> Vec<(String, String)> {
    let mut events = anthropic_head(model, u);
    events.push((
        "content_block_start".into(),
        json!({"type": "content_block_start", "index": 0, "content_block":
               {"type": "tool_use", "id": "toolu_1", "name": "structured_output", "input": {}}})
        .to_string(),
    ));
    let text = input.to_string();
    let half = text.len() / 2;
    for part in [&text[..half], &text[half..]] {
        events.push((
            "content_block_delta".into(),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}}).to_string(),
        ));
    }
    events.extend(anthropic_tail("tool_use", u));
    events
}

/// A streamed Chat Completions answer with a usage chunk.
pub fn openai_text(
    model: &str,
    text: &str,
    prompt: u64,
    completion: u64,
    cached: u64,
) -> Vec<(String, String)> {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    vec![
        (String::new(), chunk(json!({"role": "assistant", "content": ""}), Value::Null)),
        (String::new(), chunk(json!({"content": text}), Value::Null)),
        (String::new(), chunk(json!({}), json!("stop"))),
        (
            String::new(),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                   "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}})
            .to_string(),
        ),
        (String::new(), "[DONE]".into()),
    ]
}
