//! The anthropic and openai backends end to end: the CLI against real HTTP
//! servers on 127.0.0.1 (`fake_http`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_http::{
    AnthropicUsage, FakeServer, Reply, anthropic_text, anthropic_tool, json_reply, models_list,
    openai_text,
};
use crate::support::{Output, run_env, temp_dir};

const ANTHROPIC_MODELS: &[&str] = &[
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-6",
    "claude-opus-4-6",
];

pub(crate) fn setup(name: &str, script: &str, toml: &str) -> std::path::PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("flow.js"), script).unwrap();
    std::fs::write(dir.join("wasmflow.toml"), toml).unwrap();
    dir
}

pub(crate) fn anthropic(dir: &std::path::Path, server: &FakeServer, args: &[&str]) -> Output {
    let mut all = vec!["--backend", "anthropic"];
    all.extend_from_slice(args);
    run_env(
        dir,
        "flow.js",
        &all,
        &[
            ("ANTHROPIC_API_KEY", "test-key"),
            ("ANTHROPIC_BASE_URL", &server.url),
        ],
    )
}

/// The user message's text, whatever its blocks.
fn prompt_of(body: &Value) -> String {
    match &body["messages"][0]["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<String>(),
        _ => String::new(),
    }
}

fn usage_for(model: &str) -> AnthropicUsage {
    match model {
        "claude-haiku-4-5" => AnthropicUsage {
            input: 12,
            output: 40,
            cache_read: 1500,
            cache_write: 0,
        },
        "claude-opus-4-6" => AnthropicUsage {
            input: 30,
            output: 9,
            cache_read: 0,
            cache_write: 0,
        },
        _ => AnthropicUsage {
            input: 200,
            output: 80,
            cache_read: 0,
            cache_write: 300,
        },
    }
}

const E2E_SCRIPT: &str = r#"export const meta = {
  name: 'e2e',
  description: 'routing, schema, cache and cost against the Messages API',
  phases: [{ title: 'Scan', model: 'haiku' }, { title: 'Write' }],
}
phase('Scan')
const shared = 'Shared instructions for every scanner. '.repeat(150)
const [a, b] = await parallel([
  () => agent(shared + '\n\nitem A', { label: 'scan-a' }),
  () => agent('pick a number', { label: 'pick', model: 'opus',
    schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } }),
])
phase('Write')
const c = await agent('write it up', { label: 'write' })
return { a, b, c, budgetSpent: budget.spent() }
"#;

const PRICES: &str = r#"
[prices.claude-haiku-4-5]
input = 2.0
output = 10.0
cache_read = 0.2
cache_write = 2.5
[prices.claude-sonnet-4-6]
input = 4.0
output = 20.0
cache_read = 0.4
cache_write = 5.0
[prices.claude-opus-4-6]
input = 6.0
output = 30.0
"#;

#[test]
fn anthropic_routes_caches_structures_and_costs() {
    let server = FakeServer::start(|req, _| {
        if req.path.starts_with("/v1/models") {
            return models_list(ANTHROPIC_MODELS);
        }
        let model = req.body["model"].as_str().unwrap_or("").to_string();
        let u = usage_for(&model);
        let events = if req.body.get("tools").is_some() {
            anthropic_tool(&model, &json!({"n": 7}), u)
        } else {
            anthropic_text(&model, &format!("answer from {model}"), u)
        };
        Reply::Sse {
            events,
            stall: None,
        }
    });
    let dir = setup(
        "anthropic-e2e",
        E2E_SCRIPT,
        &format!("default_model = \"sonnet\"\n{PRICES}"),
    );
    let out = anthropic(&dir, &server, &["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"]["a"], "answer from claude-haiku-4-5");
    assert_eq!(v["result"]["b"], json!({"n": 7}));
    assert_eq!(v["result"]["c"], "answer from claude-sonnet-4-6");
    // budget counts real output tokens.
    assert_eq!(v["result"]["budgetSpent"], 40 + 9 + 80);

    let posts = server.requests_to("/v1/messages");
    assert_eq!(posts.len(), 3);
    let by_prompt = |needle: &str| {
        posts
            .iter()
            .find(|r| prompt_of(&r.body).contains(needle))
            .unwrap_or_else(|| panic!("no request with {needle}"))
            .clone()
    };
    // Routing: phase model, call option, default.
    assert_eq!(by_prompt("item A").body["model"], "claude-haiku-4-5");
    assert_eq!(by_prompt("pick a number").body["model"], "claude-opus-4-6");
    assert_eq!(by_prompt("write it up").body["model"], "claude-sonnet-4-6");
    for r in &posts {
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers["x-api-key"], "test-key");
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert_eq!(r.body["stream"], true);
    }
    // The shared prefix of the long prompt carries a cache breakpoint.
    let scan = by_prompt("item A").body;
    assert_eq!(
        scan["messages"][0]["content"][0]["cache_control"]["type"],
        "ephemeral"
    );
    assert!(
        scan["messages"][0]["content"][1]["text"]
            .as_str()
            .unwrap()
            .contains("item A")
    );
    // The schema goes through a forced tool.
    let pick = by_prompt("pick a number").body;
    assert_eq!(
        pick["tool_choice"],
        json!({"type": "tool", "name": "structured_output"})
    );
    assert_eq!(pick["tools"][0]["input_schema"]["required"], json!(["n"]));

    // Cost: the server's usage times the price table.
    let expected = |model: &str, p: [f64; 4]| {
        let u = usage_for(model);
        (u.input as f64 * p[0]
            + u.output as f64 * p[1]
            + u.cache_read as f64 * p[2]
            + u.cache_write as f64 * p[3])
            / 1e6
    };
    let haiku = expected("claude-haiku-4-5", [2.0, 10.0, 0.2, 2.5]);
    let opus = expected("claude-opus-4-6", [6.0, 30.0, 0.0, 0.0]);
    let sonnet = expected("claude-sonnet-4-6", [4.0, 20.0, 0.4, 5.0]);
    let close = |a: &Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-12;
    assert!(
        close(&v["cost"]["total_usd"], haiku + opus + sonnet),
        "{:#}",
        v["cost"]
    );
    assert!(close(
        &v["cost"]["by_model"]["claude-haiku-4-5"]["usd"],
        haiku
    ));
    assert_eq!(
        v["cost"]["by_model"]["claude-haiku-4-5"]["cache_read"],
        1500
    );
    assert!(close(&v["cost"]["by_phase"]["Write"]["usd"], sonnet));
    assert_eq!(v["tokens"]["cache_write"], 300);
    let per_agent = v["per_agent"].as_array().unwrap();
    assert_eq!(per_agent.len(), 3);
    let pick_cost = per_agent.iter().find(|a| a["label"] == "pick").unwrap();
    assert_eq!(pick_cost["model"], "claude-opus-4-6");
    assert!(close(&pick_cost["usd"], opus));
    // Without --json the per-agent cost shows in the progress lines.
    let out = anthropic(&dir, &server, &["--progress", "agents"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("✓ pick [claude-opus-4-6, 30 in / 9 out, $0.000"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("agents have no tools"));
}

#[test]
fn retry_after_is_honoured() {
    let server = FakeServer::start(|req, n| {
        if req.path.starts_with("/v1/models") {
            return models_list(ANTHROPIC_MODELS);
        }
        if n == 0 {
            return Reply::Status {
                code: 429,
                headers: vec![("retry-after".into(), "1".into())],
                body: json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}).to_string(),
            };
        }
        Reply::Sse {
            events: anthropic_text("claude-haiku-4-5", "fine", usage_for("x")),
            stall: None,
        }
    });
    let dir = setup(
        "retry-after",
        "return await agent('hello')\n",
        "default_model = \"haiku\"\nretry_base = \"10ms\"\n",
    );
    let out = anthropic(&dir, &server, &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), json!("fine"));
    let posts = server.requests_to("/v1/messages");
    assert_eq!(posts.len(), 2);
    // The backoff alone would have waited about 10 ms.
    let gap = posts[1].at - posts[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert!(out.stderr.contains("HTTP 429: slow down"), "{}", out.stderr);
}

#[test]
fn bad_days_fail_or_retry_each_agent_clearly() {
    let tries: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
    let server = FakeServer::start(move |req, _| {
        if req.path.starts_with("/v1/models") {
            return models_list(ANTHROPIC_MODELS);
        }
        let prompt = prompt_of(&req.body);
        let n = {
            let mut t = tries.lock().unwrap();
            let e = t.entry(prompt.clone()).or_insert(0);
            *e += 1;
            *e - 1
        };
        let ok = Reply::Sse {
            events: anthropic_text("claude-haiku-4-5", &format!("ok {prompt}"), usage_for("x")),
            stall: None,
        };
        match (prompt.as_str(), n) {
            ("five-hundred", 0) => json_reply(
                500,
                json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}),
            ),
            ("malformed", _) => Reply::Sse {
                events: vec![("message_start".into(), "this is not json".into())],
                stall: None,
            },
            ("stall", _) => Reply::Sse {
                events: anthropic_text("claude-haiku-4-5", "never", usage_for("x")),
                stall: Some((2, Duration::from_secs(3))),
            },
            ("drop", 0) => Reply::DropAfter {
                events: anthropic_text("claude-haiku-4-5", "partial", usage_for("x"))[..3].to_vec(),
            },
            _ => ok,
        }
    });
    let dir = setup(
        "bad-days",
        "return await parallel(['five-hundred', 'malformed', 'stall', 'drop'].map(p => () => agent(p, { label: p })))\n",
        "default_model = \"haiku\"\nretry_base = \"10ms\"\nretries = 1\nstall_timeout = \"300ms\"\n",
    );
    let out = anthropic(&dir, &server, &["--json", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(
        v["result"],
        json!(["ok five-hundred", null, null, "ok drop"])
    );
    let failures: HashMap<String, String> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["label"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures["malformed"].contains("malformed reply"),
        "{failures:?}"
    );
    assert!(
        failures["stall"].contains("stalled: no data for 300ms")
            && failures["stall"].contains("gave up after 2 tries"),
        "{failures:?}"
    );
    let posts = server.requests_to("/v1/messages");
    let count = |p: &str| posts.iter().filter(|r| prompt_of(&r.body) == p).count();
    // A malformed reply is final; the others are retried.
    assert_eq!(
        (
            count("five-hundred"),
            count("malformed"),
            count("stall"),
            count("drop")
        ),
        (2, 1, 2, 2)
    );
}

#[test]
fn problems_are_reported_before_any_agent_runs() {
    let server = FakeServer::start(|req, _| {
        if req.path.starts_with("/v1/models") {
            return models_list(ANTHROPIC_MODELS);
        }
        Reply::Sse {
            events: anthropic_text("claude-haiku-4-5", "x", usage_for("x")),
            stall: None,
        }
    });
    // A typo in a model alias, written literally.
    let dir = setup(
        "unknown-alias",
        "const a = await agent('one')\nconst b = await agent('two', { model: 'sonet' })\nreturn [a, b]\n",
        "default_model = \"haiku\"\n",
    );
    let out = anthropic(&dir, &server, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown model `sonet`") && out.stderr.contains("flow.js:2"),
        "{}",
        out.stderr
    );
    assert!(server.requests_to("/v1/messages").is_empty());

    // No key.
    let out = run_env(
        &dir,
        "flow.js",
        &["--backend", "anthropic"],
        &[("ANTHROPIC_BASE_URL", &server.url)],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("ANTHROPIC_API_KEY is not set"),
        "{}",
        out.stderr
    );

    // Nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    std::fs::write(dir.join("flow.js"), "return await agent('one')\n").unwrap();
    let out = run_env(
        &dir,
        "flow.js",
        &["--backend", "anthropic"],
        &[
            ("ANTHROPIC_API_KEY", "k"),
            ("ANTHROPIC_BASE_URL", &dead_url),
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(&format!(
            "cannot reach the Anthropic-compatible server at {dead_url}"
        )),
        "{}",
        out.stderr
    );

    // A refused key.
    let refusing = FakeServer::start(|_, _| {
        json_reply(
            401,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        )
    });
    let out = run_env(
        &dir,
        "flow.js",
        &["--backend", "anthropic"],
        &[
            ("ANTHROPIC_API_KEY", "bad"),
            ("ANTHROPIC_BASE_URL", &refusing.url),
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("refused the API key") && out.stderr.contains("invalid x-api-key"),
        "{}",
        out.stderr
    );
    assert!(refusing.requests_to("/v1/messages").is_empty());
}

fn openai_server() -> FakeServer {
    FakeServer::start(|req, _| {
        if req.path == "/v1/models" {
            return models_list(&["llama3.1:8b", "qwen2.5"]);
        }
        let model = req.body["model"].as_str().unwrap_or("").to_string();
        let text = if req.body.get("response_format").is_some() {
            r#"{"ok": true}"#.to_string()
        } else {
            format!("{model} says hi")
        };
        Reply::Sse {
            events: openai_text(&model, &text, 50, 5, 10),
            stall: None,
        }
    })
}

#[test]
fn openai_compatible_servers_work_end_to_end() {
    let server = openai_server();
    let dir = setup(
        "openai-e2e",
        "const a = await agent('hello')\nconst b = await agent('judge', { model: 'qwen2.5', schema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } })\nreturn { a, b }\n",
        "[prices.\"llama3.1:8b\"]\ninput = 1.0\noutput = 2.0\ncache_read = 0.5\n[prices.\"qwen2.5\"]\ninput = 1.0\noutput = 1.0\n",
    );
    let base = format!("{}/v1", server.url);
    let out = run_env(
        &dir,
        "flow.js",
        &["--backend", "openai", "--model", "llama3.1:8b", "--json"],
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-test")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(
        v["result"],
        json!({"a": "llama3.1:8b says hi", "b": {"ok": true}})
    );
    let posts = server.requests_to("/v1/chat/completions");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].headers["authorization"], "Bearer sk-test");
    assert_eq!(posts[0].body["stream_options"]["include_usage"], true);
    let judge = posts.iter().find(|r| r.body["model"] == "qwen2.5").unwrap();
    assert_eq!(judge.body["response_format"]["type"], "json_schema");
    assert_eq!(
        judge.body["response_format"]["json_schema"]["schema"]["required"],
        json!(["ok"])
    );
    // 50 prompt tokens of which 10 cached: 40 input + 10 cache reads.
    assert_eq!(
        v["tokens"],
        json!({"input": 80, "output": 10, "cache_read": 20, "cache_write": 0})
    );
    let expected = (40.0 * 1.0 + 5.0 * 2.0 + 10.0 * 0.5) / 1e6 + (40.0 + 5.0) / 1e6;
    assert!((v["cost"]["total_usd"].as_f64().unwrap() - expected).abs() < 1e-12);
}

#[test]
fn an_alias_routes_to_its_own_backend() {
    let server = openai_server();
    let dir = setup(
        "mixed",
        "const a = await agent('simulated')\nconst b = await agent('local one', { model: 'local' })\nreturn [typeof a, b]\n",
        &format!(
            "[models]\nlocal = {{ backend = \"openai\", id = \"qwen2.5\" }}\n[openai]\nbase_url = \"{}/v1\"\n",
            server.url
        ),
    );
    let out = run_env(&dir, "flow.js", &["--backend", "sim", "--quiet"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json(), json!(["string", "qwen2.5 says hi"]));
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 1);
}

#[test]
fn quota_failures_trip_the_circuit_breaker() {
    let server = FakeServer::start(|req, _| {
        if req.path == "/v1/models" {
            return models_list(&["m"]);
        }
        json_reply(
            429,
            json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}),
        )
    });
    let dir = setup(
        "breaker-http",
        "const out = []\nfor (let i = 0; i < 6; i++) out.push(await agent('task ' + i))\nreturn out\n",
        "",
    );
    let base = format!("{}/v1", server.url);
    let out = run_env(
        &dir,
        "flow.js",
        &["--backend", "openai", "--model", "m"],
        &[("OPENAI_BASE_URL", &base)],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("circuit breaker")
            && out.stderr.contains("exceeded your current quota"),
        "{}",
        out.stderr
    );
    // insufficient_quota is not retried, and no fourth agent starts.
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 3);
}

#[test]
fn retry_warnings_in_a_pipe_are_plain_and_one_line_each() {
    let server = FakeServer::start(|req, n| {
        if req.path.starts_with("/v1/models") {
            return models_list(ANTHROPIC_MODELS);
        }
        if n < 2 {
            return json_reply(
                500,
                json!({"type": "error", "error": {"type": "api_error", "message": "upstream said:\nline two\r\nline three"}}),
            );
        }
        Reply::Sse {
            events: anthropic_text("claude-haiku-4-5", "fine", usage_for("x")),
            stall: None,
        }
    });
    let dir = setup(
        "retry-one-line",
        "return await agent('hello')\n",
        "default_model = \"haiku\"\nretry_base = \"10ms\"\n",
    );
    let out = anthropic(&dir, &server, &["--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains('\u{1b}'),
        "colour codes in a pipe: {:?}",
        out.stderr
    );
    let retries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("retry "))
        .collect();
    assert_eq!(retries.len(), 2, "{}", out.stderr);
    for line in retries {
        assert!(line.contains("upstream said:"), "{line}");
    }
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("line two")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_run_refused_by_the_preflight_leaves_nothing_resumable() {
    let refusing = FakeServer::start(|_, _| {
        json_reply(
            401,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        )
    });
    let dir = setup(
        "preflight-nothing",
        "return await agent('one')\n",
        "default_model = \"haiku\"\n",
    );
    let out = anthropic(&dir, &refusing, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("invalid x-api-key"), "{}", out.stderr);
    assert!(!out.stderr.contains("resume"), "{}", out.stderr);
    assert!(
        !dir.join(".wasmflow/runs").exists(),
        "a run directory was made"
    );
    assert!(refusing.requests_to("/v1/messages").is_empty());
}
