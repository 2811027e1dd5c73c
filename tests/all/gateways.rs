//! The HTTP backends behind a gateway that behaves as the LiteLLM proxy
//! does (scripted on 127.0.0.1): a bad key answered 400 on every route,
//! usage reported in `message_delta`, a JSON reply to a streaming request,
//! SSE-framed error bodies.

use serde_json::{Value, json};

use crate::fake_http::{FakeServer, Reply, json_reply, models_list, openai_text};
use crate::http_backends::{anthropic, setup};
use crate::support::{Output, run_env};

fn openai(dir: &std::path::Path, server: &FakeServer, args: &[&str]) -> Output {
    let mut all = vec!["--backend", "openai", "--model", "gpt-4o-mini"];
    all.extend_from_slice(args);
    let base = format!("{}/v1", server.url);
    run_env(
        dir,
        "flow.js",
        &all,
        &[("OPENAI_API_KEY", "sk-bad"), ("OPENAI_BASE_URL", &base)],
    )
}

/// LiteLLM without a database, for a bad key, on every route.
fn no_db() -> Reply {
    json_reply(
        400,
        json!({"error": {"message": "No connected db.", "type": "no_db_connection", "param": null, "code": "400"}}),
    )
}

const FIVE: &str =
    "const r = await parallel([1, 2, 3, 4, 5].map(i => () => agent('q' + i)))\nreturn r\n";

#[test]
fn a_bad_key_answered_400_everywhere_refuses_the_run_before_it_starts() {
    let server = FakeServer::start(|_, _| no_db());
    for backend in ["anthropic", "openai"] {
        let dir = setup(
            &format!("nodb-{backend}"),
            FIVE,
            "default_model = \"haiku\"\n",
        );
        let out = if backend == "anthropic" {
            anthropic(&dir, &server, &["--yes"])
        } else {
            openai(&dir, &server, &["--yes"])
        };
        assert_eq!(out.code, 2, "{backend}: {}", out.stderr);
        assert!(
            out.stderr.contains("No connected db."),
            "{backend}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("HTTP 400"), "{}", out.stderr);
        assert!(!dir.join(".wasmflow/runs").exists(), "{backend}");
        assert!(!out.stderr.contains("resume"), "{}", out.stderr);
    }
    assert!(server.requests_to("/v1/messages").is_empty());
    assert!(server.requests_to("/v1/chat").is_empty());
}

#[test]
fn a_server_without_a_model_list_is_warned_about_and_used() {
    let server = FakeServer::start(|req, _| {
        if req.path.contains("/models") {
            return Reply::Status {
                code: 404,
                headers: vec![],
                body: "{\"detail\": \"Not Found\"}".into(),
            };
        }
        let model = req.body["model"].as_str().unwrap_or("").to_string();
        Reply::Sse {
            events: openai_text(&model, "hello", 5, 2, 0),
            stall: None,
        }
    });
    let dir = setup("no-listing", "return await agent('hi')\n", "");
    let out = openai(&dir, &server, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), json!("hello"));
}

#[test]
fn refused_requests_before_any_success_trip_the_breaker() {
    let server = FakeServer::start(|req, _| {
        if req.path.contains("/models") {
            return Reply::Status {
                code: 404,
                headers: vec![],
                body: "{}".into(),
            };
        }
        no_db()
    });
    let dir = setup("nodb-run", FIVE, "");
    let out = openai(&dir, &server, &["--concurrency", "1", "--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("circuit breaker"), "{}", out.stderr);
    assert!(out.stderr.contains("No connected db."), "{}", out.stderr);
    // Three refusals trip it; the other agents never start.
    assert_eq!(server.requests_to("/v1/chat").len(), 3);
}

#[test]
fn a_refused_request_after_a_success_is_that_agent_s_failure() {
    let server = FakeServer::start(|req, n| {
        if req.path.contains("/models") {
            return models_list(&["gpt-4o-mini"]);
        }
        if n == 0 {
            return Reply::Sse {
                events: openai_text("gpt-4o-mini", "fine", 5, 2, 0),
                stall: None,
            };
        }
        json_reply(
            400,
            json!({"error": {"message": "prompt too long for this model"}}),
        )
    });
    let dir = setup("refused-later", FIVE, "");
    let out = openai(&dir, &server, &["--concurrency", "1", "--json", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = out.json();
    assert_eq!(summary["status"], "ok");
    assert_eq!(summary["agents"]["failed"], 4, "{summary:#}");
}

fn sse(events: Vec<(&str, Value)>) -> Reply {
    Reply::Sse {
        events: events
            .into_iter()
            .map(|(e, d)| (e.to_string(), d.to_string()))
            .collect(),
        stall: None,
    }
}

#[test]
fn anthropic_usage_in_message_delta_is_counted() {
    let server = FakeServer::start(|req, _| {
        if req.path.contains("/models") {
            return models_list(&["claude-haiku-4-5"]);
        }
        sse(vec![
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "claude-haiku-4-5", "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"input_tokens": 1200, "output_tokens": 40, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 20}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ])
    });
    let dir = setup(
        "usage-delta",
        "return await agent('hi')\n",
        "default_model = \"haiku\"\n",
    );
    let out = anthropic(&dir, &server, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.json();
    assert_eq!(s["result"], "ok");
    assert_eq!(
        s["tokens"],
        json!({"input": 1200, "output": 40, "cache_read": 300, "cache_write": 20}),
        "{s:#}"
    );
    // haiku: $1 in, $5 out, $0.10 cache read, $1.25 cache write per million.
    let usd = s["cost"]["total_usd"].as_f64().unwrap();
    assert!(usd > 0.0012, "{usd}");
}

#[test]
fn a_json_reply_to_a_streaming_request_is_read_as_the_whole_response() {
    let server = FakeServer::start(|req, _| {
        if req.path.contains("/models") {
            return models_list(&["claude-haiku-4-5", "gpt-4o-mini"]);
        }
        if req.path.starts_with("/v1/messages") {
            return json_reply(
                200,
                json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": "whole "}, {"type": "text", "text": "reply"}],
                "stop_reason": "end_turn", "usage": {"input_tokens": 11, "output_tokens": 3}}),
            );
        }
        json_reply(
            200,
            json!({"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole reply"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}),
        )
    });
    let dir = setup(
        "json-reply",
        "return await agent('hi')\n",
        "default_model = \"haiku\"\n",
    );
    let out = anthropic(&dir, &server, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["result"], "whole reply");
    assert_eq!(out.json()["tokens"]["input"], 11);
    let out = openai(&dir, &server, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["result"], "whole reply");
    assert_eq!(out.json()["tokens"]["output"], 3);
    // One try each: nothing was retried.
    assert_eq!(server.requests_to("/v1/messages").len(), 1);
    assert_eq!(server.requests_to("/v1/chat").len(), 1);
}

#[test]
fn another_content_type_fails_once_naming_it() {
    let server = FakeServer::start(|req, _| {
        if req.path.contains("/models") {
            return models_list(&["gpt-4o-mini"]);
        }
        Reply::Status {
            code: 200,
            headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
            body: "<html>login</html>".into(),
        }
    });
    let dir = setup(
        "html-reply",
        "return await agent('hi')\n",
        "retry_base = \"10ms\"\n",
    );
    let out = openai(&dir, &server, &["--json"]);
    let s = out.json();
    assert_eq!(s["result"], Value::Null);
    let reason = s["failures"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("text/html"), "{reason}");
    assert_eq!(server.requests_to("/v1/chat").len(), 1);
}

#[test]
fn an_sse_framed_error_body_is_reduced_to_its_message() {
    let server = FakeServer::start(|req, _| {
        if req.path.contains("/models") {
            return models_list(&["gpt-4o-mini"]);
        }
        Reply::Status {
            code: 500,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: format!(
                "data: {}\n\n",
                json!({"error": {"message": "litellm.InternalServerError: upstream exploded\nTraceback (most recent call last):\n  File \"proxy.py\", line 1", "type": null, "param": null, "code": "500"}})
            ),
        }
    });
    let dir = setup(
        "sse-error",
        "return await agent('hi')\n",
        "retry_base = \"10ms\"\nretries = 1\n",
    );
    let out = openai(&dir, &server, &["--json"]);
    let s = out.json();
    let reason = s["failures"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 500: litellm.InternalServerError: upstream exploded"),
        "{reason}"
    );
    assert!(
        !reason.contains("Traceback") && !reason.contains("data:"),
        "{reason}"
    );
    assert!(!out.stderr.contains("Traceback"), "{}", out.stderr);
}
