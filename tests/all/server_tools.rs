//! Anthropic server tools (web search, web fetch) on the `anthropic`
//! backend, against a Messages server scripted on 127.0.0.1 as Anthropic
//! documents them:
//! - web search
//!   (<https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/web-search-tool>):
//!   the tool `{type: "web_search_20250305", name: "web_search", max_uses}`;
//!   streamed, a `server_tool_use` block (`id`, `name`, its input in
//!   `input_json_delta` fragments), a `web_search_tool_result` block whole
//!   in its `content_block_start` (`tool_use_id`, `content: [{type:
//!   "web_search_result", url, title, encrypted_content, page_age}]`), text
//!   blocks whose citations arrive as `citations_delta`; the count in
//!   `usage.server_tool_use.web_search_requests`; $10 per 1,000 searches.
//! - web fetch (`…/web-fetch-tool`): `{type: "web_fetch_20250910", name:
//!   "web_fetch", max_uses}` with the beta header
//!   `anthropic-beta: web-fetch-2025-09-10`; a `web_fetch_tool_result`
//!   block; `usage.server_tool_use.web_fetch_requests`.
//! - `stop_reason: "pause_turn"`: a long server-tool turn paused; the
//!   client sends the reply back as it is to continue.

use serde_json::{Value, json};

use crate::fake_http::{FakeServer, Reply, models_list};
use crate::http_backends::{anthropic, setup};

fn ev(name: &str, v: Value) -> (String, String) {
    (name.to_string(), v.to_string())
}

/// A turn that searches once (`query`), reads the results and answers
/// `text` with a citation; `stop` is its stop reason.
fn searching_turn(query: &str, text: &str, stop: &str, searches: u64) -> Vec<(String, String)> {
    let q = json!({"query": query}).to_string();
    let (a, b) = q.split_at(q.len() / 2);
    vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_s", "type": "message",
            "role": "assistant", "content": [], "model": "claude-haiku-4-5", "stop_reason": null,
            "usage": {"input_tokens": 1000, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search"}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": a}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": b}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                {"type": "web_search_result", "title": "Sandboxing with WebAssembly", "url": "https://example.org/wasm-sandbox",
                 "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5", "page_age": "April 30, 2025"}]}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 2,
            "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "citations_delta", "citation": {"type": "web_search_result_location",
                "url": "https://example.org/wasm-sandbox", "title": "Sandboxing with WebAssembly",
                "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm", "cited_text": "Wasm isolates memory."}}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "text_delta", "text": text}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 2}),
        ),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop},
            "usage": {"input_tokens": 1000, "output_tokens": 50, "server_tool_use": {"web_search_requests": searches}}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
}

fn text_turn(text: &str) -> Vec<(String, String)> {
    vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_t", "type": "message",
            "role": "assistant", "content": [], "model": "claude-haiku-4-5", "stop_reason": null,
            "usage": {"input_tokens": 100, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 10}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
}

/// The structured-output tool's answer.
fn output_turn(input: &Value) -> Vec<(String, String)> {
    let text = input.to_string();
    vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_o", "type": "message",
            "role": "assistant", "content": [], "model": "claude-haiku-4-5", "stop_reason": null,
            "usage": {"input_tokens": 200, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block":
            {"type": "tool_use", "id": "toolu_out", "name": "structured_output", "input": {}}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": text}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
}

fn tool_types(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["type"].as_str().unwrap_or("custom").to_string())
        .collect()
}

const TOML: &str = "default_model = \"haiku\"\nretries = 0\n";

#[test]
fn server_tools_are_sent_counted_priced_and_their_text_extracted() {
    let server = FakeServer::start(|req, n| {
        if req.method == "GET" {
            return models_list(&["claude-haiku-4-5"]);
        }
        // First a paused turn, then the rest of it.
        let stop = if n == 0 { "pause_turn" } else { "end_turn" };
        Reply::Sse {
            events: searching_turn(
                "wasm sandbox",
                &format!("Wasm isolates memory (turn {n})."),
                stop,
                2,
            ),
            stall: None,
        }
    });
    let dir = setup(
        "server-tools",
        r#"return await agent("Is Wasm a sandbox?", { tools: ["web_search", "web_fetch"] });"#,
        TOML,
    );
    let out = anthropic(&dir, &server, &["--json", "--yes", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    // The text blocks, not the search results or citations.
    assert_eq!(v["result"], "Wasm isolates memory (turn 1).");
    let posts = server.requests_to("/v1/messages");
    assert_eq!(posts.len(), 2, "a paused turn is continued");
    let first = &posts[0];
    assert_eq!(
        tool_types(&first.body),
        ["web_search_20250305", "web_fetch_20250910"]
    );
    assert_eq!(first.body["tools"][0]["max_uses"], 5);
    assert!(
        first.headers["anthropic-beta"].contains("web-fetch-2025-09-10"),
        "{:?}",
        first.headers
    );
    // The paused reply goes back as it was: the search and its result.
    let echoed = &posts[1].body["messages"][1];
    assert_eq!(echoed["role"], "assistant");
    assert_eq!(echoed["content"][0]["type"], "server_tool_use");
    assert_eq!(
        echoed["content"][0]["input"],
        json!({"query": "wasm sandbox"})
    );
    assert_eq!(echoed["content"][1]["type"], "web_search_tool_result");
    assert_eq!(
        echoed["content"][1]["content"][0]["url"],
        "https://example.org/wasm-sandbox"
    );
    // Counted and priced: 2 searches per turn, $10 per 1,000.
    let agent = &v["per_agent"][0];
    assert_eq!(agent["web_searches"], 4, "{agent}");
    assert_eq!(agent["input"], 2000);
    let tokens = (2000.0 * 1.0 + 100.0 * 5.0) / 1e6;
    let usd = agent["usd"].as_f64().unwrap();
    assert!((usd - (tokens + 0.04)).abs() < 1e-9, "{usd}");
    assert_eq!(v["tokens"]["web_searches"], 4);
}

#[test]
fn opts_tools_chooses_only_among_what_the_user_allowed() {
    let server = FakeServer::start(|req, _| {
        if req.method == "GET" {
            return models_list(&["claude-haiku-4-5"]);
        }
        Reply::Sse {
            events: text_turn("no search"),
            stall: None,
        }
    });
    let dir = setup(
        "server-tools-refused",
        r#"const a = await agent("search", { tools: ["web_search"] });
           const b = await agent("plain");
           return [a, b];"#,
        &format!("{TOML}[anthropic]\nallowed_server_tools = []\nserver_tools = [\"web_fetch\"]\n"),
    );
    let out = anthropic(&dir, &server, &["--json", "--yes", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], json!([null, "no search"]));
    let reason = v["failures"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("opts.tools asks for `web_search`"),
        "{reason}"
    );
    // The configured tool goes to every agent.
    let posts = server.requests_to("/v1/messages");
    assert_eq!(posts.len(), 1);
    assert_eq!(tool_types(&posts[0].body), ["web_fetch_20250910"]);
    // A bad name is a TypeError in the script.
    let dir = setup(
        "server-tools-bad-name",
        r#"return await agent("x", { tools: ["browser"] });"#,
        TOML,
    );
    let out = anthropic(&dir, &server, &["--json", "--yes", "--quiet"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("opts.tools must be a list of server tools"),
        "{}",
        out.stdout
    );
}

/// The bundled deep-research end to end on the anthropic backend: its
/// searchers search, its readers fetch, every schema answered through the
/// structured-output tool.
#[test]
fn deep_research_runs_on_the_anthropic_backend() {
    let server = FakeServer::start(|req, _| {
        if req.method == "GET" {
            return models_list(&["claude-haiku-4-5", "claude-sonnet-4-6"]);
        }
        let body = &req.body;
        let prompt = body["messages"][0]["content"]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|x| x["text"].as_str())
                    .collect::<String>()
            })
            .unwrap_or_default();
        let forced = body["tool_choice"]["name"] == "structured_output";
        let searched = body.to_string().contains("web_search_tool_result");
        let events = if forced {
            let schema = body["tools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == "structured_output")
                .unwrap()["input_schema"]
                .clone();
            let required = schema["required"][0].as_str().unwrap_or("");
            let n = prompt.len() % 7;
            output_turn(&match required {
                "angles" => json!({"angles": ["isolation", "performance"]}),
                "sources" => json!({"sources": [{"url": format!("https://example.org/s{n}")}]}),
                _ => {
                    json!({"claims": [{"id": format!("c{n}"), "text": "Wasm isolates linear memory"}]})
                }
            })
        } else if tool_types(body).contains(&"web_search_20250305".to_string()) && !searched {
            searching_turn("wasm isolation", "Found a source.", "end_turn", 1)
        } else if prompt.starts_with("Voter") {
            text_turn("supported")
        } else {
            text_turn("Wasm is a sound sandbox [https://example.org].")
        };
        Reply::Sse {
            events,
            stall: None,
        }
    });
    let dir = setup("deep-research-anthropic", "", TOML);
    let out = crate::support::run_env(
        &dir,
        "deep-research",
        &["--backend", "anthropic", "--json", "--yes", "--quiet"],
        &[
            ("ANTHROPIC_API_KEY", "test-key"),
            ("ANTHROPIC_BASE_URL", &server.url),
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, out.stdout);
    let v = out.json();
    let result = &v["result"];
    assert_eq!(result["angles"], 2);
    assert!(result["sources"].as_u64().unwrap() >= 1, "{result}");
    assert!(result["claims"].as_u64().unwrap() >= 1, "{result}");
    assert!(!result["kept"].as_array().unwrap().is_empty(), "{result}");
    assert_eq!(
        result["report"],
        "Wasm is a sound sandbox [https://example.org]."
    );
    // Each searcher searched once; readers had web_fetch (with its beta).
    assert_eq!(v["tokens"]["web_searches"], 2, "{}", v["tokens"]);
    let posts = server.requests_to("/v1/messages");
    assert!(posts.iter().any(|p| {
        tool_types(&p.body).contains(&"web_fetch_20250910".to_string())
            && p.headers
                .get("anthropic-beta")
                .is_some_and(|b| b.contains("web-fetch-2025-09-10"))
    }));
    assert_eq!(v["failures"], json!([]));
}
