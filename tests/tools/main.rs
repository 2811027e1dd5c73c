//! Agents with MCP tools on the HTTP backends, end to end: the `wasmflow`
//! binary, a real MCP server not written by us
//! (`@modelcontextprotocol/server-filesystem`, pinned in
//! tests/tools/node/package-lock.json; `WASMFLOW_FS_SERVER` names its
//! executable), and a model scripted on 127.0.0.1 as each API documents
//! tool use:
//! - OpenAI Chat Completions: `tools: [{type: "function", function}]`;
//!   streamed `delta.tool_calls[]` whose first chunk per `index` carries
//!   `id` and `function.name`, later ones `function.arguments` fragments,
//!   several calls interleaved; `finish_reason: "tool_calls"`; results as
//!   `{role: "tool", tool_call_id, content}`
//!   (<https://platform.openai.com/docs/guides/function-calling>,
//!   <https://platform.openai.com/docs/api-reference/chat-streaming>).
//! - Anthropic Messages: `tools: [{name, description, input_schema}]`;
//!   `content_block_start` of a `tool_use` block (`id`, `name`, `input:
//!   {}`), `input_json_delta` fragments, `stop_reason: "tool_use"`; results
//!   as `tool_result` blocks in the next user message with `is_error`
//!   (<https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/overview>,
//!   <https://docs.anthropic.com/en/docs/build-with-claude/streaming>).
//!
//! Run by tests/tools/run.sh (not by a bare `cargo test`: it needs node and
//! the npm package, which that script installs).

#![allow(dead_code)]

#[path = "../all/fake_http.rs"]
mod fake_http;
#[path = "../all/support.rs"]
mod support;

use std::path::{Path, PathBuf};

use fake_http::{FakeServer, Reply, models_list};
use serde_json::{Value, json};
use support::{Output, run_env, temp_dir};

const MODEL: &str = "tool-model";

fn fs_server() -> PathBuf {
    let path = std::env::var_os("WASMFLOW_FS_SERVER")
        .map(PathBuf::from)
        .expect("WASMFLOW_FS_SERVER names the filesystem MCP server (run tests/tools/run.sh)");
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A project with two files, `wasmflow.toml` giving the filesystem server
/// access to it, and `extra` config after that.
fn project(name: &str, backend: &str, server: &FakeServer, extra: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("a.txt"), "alpha contents").unwrap();
    std::fs::write(dir.join("b.txt"), "beta contents").unwrap();
    let base = match backend {
        "openai" => format!("{}/v1", server.url),
        _ => server.url.clone(),
    };
    std::fs::write(
        dir.join("wasmflow.toml"),
        format!(
            r#"backend = "{backend}"
default_model = "{MODEL}"
retries = 0

[{backend}]
base_url = "{base}"

[mcp_servers.fs]
command = "{}"
args = ["{}"]
{extra}"#,
            fs_server().display(),
            dir.display()
        ),
    )
    .unwrap();
    dir
}

fn run(dir: &Path, script: &str, args: &[&str]) -> Output {
    std::fs::write(dir.join("flow.js"), script).unwrap();
    let mut all = vec!["--yes", "--json", "--quiet"];
    all.extend_from_slice(args);
    run_env(
        dir,
        "flow.js",
        &all,
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("OPENAI_API_KEY", "sk-test-secret"),
        ],
    )
}

const READ_BOTH: &str = r#"
export const meta = { name: "read-both", description: "Reads two files through MCP tools" };
const text = await agent("Read a.txt and b.txt and say what they hold.", { label: "reader" });
return text;
"#;

// ---- the scripted models -------------------------------------------------

/// What the scripted model does on a turn.
enum Move {
    /// Call these tools (name, arguments) in one turn.
    Call(Vec<(String, Value)>),
    /// Answer with this text.
    Say(String),
}

fn openai_chunk(delta: Value, finish: Value) -> (String, String) {
    (
        String::new(),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string(),
    )
}

/// A Chat Completions stream for `m`: calls with their arguments split in
/// fragments and interleaved across calls.
fn openai_stream(m: Move) -> Vec<(String, String)> {
    let mut events = vec![openai_chunk(
        json!({"role": "assistant", "content": null}),
        Value::Null,
    )];
    let finish = match m {
        Move::Say(text) => {
            for part in [&text[..text.len() / 2], &text[text.len() / 2..]] {
                events.push(openai_chunk(json!({"content": part}), Value::Null));
            }
            "stop"
        }
        Move::Call(calls) => {
            let args: Vec<String> = calls.iter().map(|(_, a)| a.to_string()).collect();
            for (i, (name, _)) in calls.iter().enumerate() {
                events.push(openai_chunk(
                    json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function",
                           "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
            }
            // Three fragments each, round-robin over the calls.
            for k in 0..3 {
                for (i, a) in args.iter().enumerate() {
                    let third = a.len().div_ceil(3);
                    let part = &a[(k * third).min(a.len())..((k + 1) * third).min(a.len())];
                    events.push(openai_chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": part}}]}),
                        Value::Null,
                    ));
                }
            }
            "tool_calls"
        }
    };
    events.push(openai_chunk(json!({}), json!(finish)));
    events.push((
        String::new(),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
               "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})
        .to_string(),
    ));
    events.push((String::new(), "[DONE]".into()));
    events
}

/// A Messages stream for `m`: tool inputs in `input_json_delta` fragments.
fn anthropic_stream(m: Move) -> Vec<(String, String)> {
    let ev = |name: &str, v: Value| (name.to_string(), v.to_string());
    let mut events = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
               "content": [], "model": MODEL, "stop_reason": null,
               "usage": {"input_tokens": 100, "output_tokens": 1}}}),
    )];
    let stop = match m {
        Move::Say(text) => {
            events.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})));
            events.push(ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            "end_turn"
        }
        Move::Call(calls) => {
            events.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me look."}})));
            events.push(ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            for (i, (name, args)) in calls.iter().enumerate() {
                let index = i + 1;
                events.push(ev("content_block_start", json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": {}}})));
                let a = args.to_string();
                let half = a.len() / 2;
                for part in [&a[..half], &a[half..]] {
                    events.push(ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": part}}),
                    ));
                }
                events.push(ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                ));
            }
            "tool_use"
        }
    };
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 10}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    events
}

/// Tool results in the last message(s) of a request, in order, with
/// whether each was an error: OpenAI `role: "tool"` messages after the last
/// assistant message; Anthropic `tool_result` blocks of the last user
/// message.
fn tool_results(body: &Value) -> Vec<(String, bool)> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for m in messages.iter().rev() {
        if m["role"] == "tool" {
            let text = m["content"].as_str().unwrap_or("").to_string();
            out.push((text.clone(), text.starts_with("Error: ")));
        } else {
            break;
        }
    }
    out.reverse();
    if out.is_empty()
        && let Some(last) = messages.last()
        && last["role"] == "user"
        && let Some(blocks) = last["content"].as_array()
    {
        for b in blocks.iter().filter(|b| b["type"] == "tool_result") {
            let text = match &b["content"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push((text, b["is_error"].as_bool().unwrap_or(false)));
        }
    }
    out
}

fn offered(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            t["function"]["name"]
                .as_str()
                .or(t["name"].as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// A model on `backend` that plays `script(request body, turn)`.
fn model(
    backend: &'static str,
    script: impl Fn(&Value) -> Move + Send + Sync + 'static,
) -> FakeServer {
    FakeServer::start(move |req, _| {
        if req.method == "GET" {
            return models_list(&[MODEL]);
        }
        let m = script(&req.body);
        Reply::Sse {
            events: if backend == "openai" {
                openai_stream(m)
            } else {
                anthropic_stream(m)
            },
            stall: None,
        }
    })
}

fn turns(server: &FakeServer) -> Vec<Value> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body)
        .collect()
}

// ---- the tests -------------------------------------------------------------

/// The model reads two files through the real server in one turn (two
/// interleaved calls), then answers with what it read.
fn reads_two_files(backend: &'static str) {
    let dir_cell = std::sync::Arc::new(std::sync::OnceLock::<PathBuf>::new());
    let dir_for_model = dir_cell.clone();
    let server = model(backend, move |body| {
        let results = tool_results(body);
        if results.is_empty() {
            let dir = dir_for_model.get().unwrap();
            Move::Call(vec![
                (
                    "mcp__fs__read_text_file".into(),
                    json!({"path": dir.join("a.txt")}),
                ),
                (
                    "mcp__fs__read_text_file".into(),
                    json!({"path": dir.join("b.txt")}),
                ),
            ])
        } else {
            Move::Say(
                results
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" + "),
            )
        }
    });
    let dir = project(&format!("read-{backend}"), backend, &server, "");
    dir_cell.set(dir.clone()).unwrap();
    let out = run(&dir, READ_BOTH, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, out.stdout);
    let summary = out.json();
    assert_eq!(summary["result"], "alpha contents + beta contents");
    let requests = turns(&server);
    assert_eq!(requests.len(), 2, "one turn with the calls, one answer");
    let tools = offered(&requests[0]);
    assert!(
        tools.contains(&"mcp__fs__read_text_file".to_string()),
        "{tools:?}"
    );
    assert!(
        tools.contains(&"mcp__fs__write_file".to_string()),
        "{tools:?}"
    );
    // Tokens summed over both turns; the calls counted.
    assert_eq!(summary["tokens"]["input"], 200, "{summary}");
    assert_eq!(summary["tokens"]["output"], 20, "{summary}");
    assert_eq!(summary["per_agent"][0]["tool_uses"], 2, "{summary}");
    // The second turn carries the first's calls back, under their ids.
    let second = &requests[1];
    if backend == "openai" {
        let assistant = &second["messages"][1];
        assert_eq!(assistant["tool_calls"][0]["id"], "call_0");
        assert_eq!(
            assistant["tool_calls"][1]["function"]["arguments"],
            json!({"path": dir.join("b.txt")}).to_string()
        );
        assert_eq!(second["messages"][2]["tool_call_id"], "call_0");
        assert_eq!(second["messages"][3]["tool_call_id"], "call_1");
    } else {
        let assistant = &second["messages"][1]["content"];
        assert_eq!(assistant[1]["id"], "toolu_0");
        assert_eq!(assistant[2]["input"], json!({"path": dir.join("b.txt")}));
        assert_eq!(
            second["messages"][2]["content"][1]["tool_use_id"],
            "toolu_1"
        );
    }
}

#[test]
fn openai_agent_reads_two_files_through_the_filesystem_server() {
    reads_two_files("openai");
}

#[test]
fn anthropic_agent_reads_two_files_through_the_filesystem_server() {
    reads_two_files("anthropic");
}

#[test]
fn max_turns_stops_a_model_that_never_ends_its_turn() {
    for backend in ["openai", "anthropic"] {
        let server = model(backend, |_| {
            Move::Call(vec![(
                "mcp__fs__list_allowed_directories".into(),
                json!({}),
            )])
        });
        let dir = project(&format!("turns-{backend}"), backend, &server, "");
        let out = run(
            &dir,
            r#"const r = await agent("loop forever", { label: "looper", maxTurns: 3 });
               return r === null ? "failed" : r;"#,
            &[],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let summary = out.json();
        assert_eq!(summary["result"], "failed");
        let reason = summary["failures"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("turn limit (3 model replies)"), "{reason}");
        assert_eq!(turns(&server).len(), 3, "{backend}");
        // The calls of the first two turns ran; the third's did not.
        assert_eq!(summary["per_agent"][0]["tool_uses"], 2, "{summary}");
    }
}

#[test]
fn denied_tools_are_never_offered_nor_run() {
    for backend in ["openai", "anthropic"] {
        let dir_cell = std::sync::Arc::new(std::sync::OnceLock::<PathBuf>::new());
        let d = dir_cell.clone();
        // A model that calls a tool it was not offered anyway.
        let server = model(backend, move |body| {
            if tool_results(body).is_empty() {
                Move::Call(vec![(
                    "mcp__fs__write_file".into(),
                    json!({"path": d.get().unwrap().join("pwned.txt"), "content": "x"}),
                )])
            } else {
                Move::Say(tool_results(body)[0].0.clone())
            }
        });
        let dir = project(
            &format!("deny-{backend}"),
            backend,
            &server,
            "\n[tools]\ndeny = [\"mcp__fs__write_*\", \"mcp__fs__edit_file\"]\n",
        );
        dir_cell.set(dir.clone()).unwrap();
        let out = run(
            &dir,
            r#"return await agent("write something", { disallowedTools: ["mcp__fs__move_file"] });"#,
            &[],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let tools = offered(&turns(&server)[0]);
        assert!(
            tools.contains(&"mcp__fs__read_text_file".to_string()),
            "{tools:?}"
        );
        for denied in [
            "mcp__fs__write_file",
            "mcp__fs__edit_file",
            "mcp__fs__move_file",
        ] {
            assert!(
                !tools.contains(&denied.to_string()),
                "{denied} offered: {tools:?}"
            );
        }
        let said = out.json()["result"].as_str().unwrap().to_string();
        assert!(
            said.contains("no tool named `mcp__fs__write_file`"),
            "{said}"
        );
        assert!(!dir.join("pwned.txt").exists());
    }
}

#[test]
fn a_tool_error_reaches_the_model() {
    for backend in ["openai", "anthropic"] {
        let server = model(backend, |body| {
            let results = tool_results(body);
            if results.is_empty() {
                Move::Call(vec![(
                    "mcp__fs__read_text_file".into(),
                    json!({"path": "/etc/passwd"}),
                )])
            } else {
                Move::Say(format!("error={} {}", results[0].1, results[0].0))
            }
        });
        let dir = project(&format!("err-{backend}"), backend, &server, "");
        let out = run(&dir, r#"return await agent("read /etc/passwd");"#, &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let said = out.json()["result"].as_str().unwrap().to_string();
        // The server refuses a path outside the directories it was given.
        assert!(said.starts_with("error=true"), "{said}");
        assert!(
            said.contains("outside allowed directories") || said.contains("Access denied"),
            "{said}"
        );
        assert!(!said.contains("root:"), "{said}");
    }
}

#[test]
fn servers_get_a_minimal_environment() {
    let server = model("openai", |_| Move::Say("done".into()));
    let dir = temp_dir("env");
    let env_file = dir.join("server-env.txt");
    std::fs::write(
        dir.join("wasmflow.toml"),
        format!(
            r#"backend = "openai"
default_model = "{MODEL}"
[openai]
base_url = "{}/v1"
[mcp_servers.fs]
command = "sh"
args = ["-c", "env > '{}'; exec '{}' '{}'"]
env = {{ GREETING = "hello" }}
"#,
            server.url,
            env_file.display(),
            fs_server().display(),
            dir.display()
        ),
    )
    .unwrap();
    let out = run(&dir, r#"return await agent("hi");"#, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let env = std::fs::read_to_string(&env_file).unwrap();
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(env.contains("GREETING=hello"), "{env}");
    assert!(names.contains(&"PATH") && names.contains(&"HOME"), "{env}");
    assert!(
        !env.contains("OPENAI_API_KEY") && !env.contains("sk-test-secret"),
        "{env}"
    );
    assert!(!env.contains("ANTHROPIC_API_KEY"), "{env}");
    assert!(!names.contains(&"WASMFLOW_CACHE_DIR"), "{env}");
}

#[test]
fn a_dot_mcp_json_needs_the_opt_in() {
    let server = model("openai", |_| Move::Say("done".into()));
    let dir = project("mcpjson", "openai", &server, "");
    std::fs::write(
        dir.join(".mcp.json"),
        format!(
            r#"{{"mcpServers": {{"project-fs": {{"command": "{}", "args": ["${{PROJECT_DIR:-{}}}"]}}}}}}"#,
            fs_server().display(),
            dir.display()
        ),
    )
    .unwrap();
    let script = r#"return await agent("hi");"#;
    let has_project_fs = |body: &Value| {
        offered(body)
            .iter()
            .any(|t| t.starts_with("mcp__project-fs__"))
    };
    // Without the opt-in: ignored.
    let out = run(&dir, script, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!has_project_fs(turns(&server).last().unwrap()));
    // A project file cannot opt itself in.
    let toml = std::fs::read_to_string(dir.join("wasmflow.toml")).unwrap();
    std::fs::write(
        dir.join("wasmflow.toml"),
        format!("mcp_json = true\n{toml}"),
    )
    .unwrap();
    let out = run(&dir, script, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("mcp_json"), "{}", out.stderr);
    std::fs::write(dir.join("wasmflow.toml"), &toml).unwrap();
    // The user's config opts in (tests point HOME at the project).
    std::fs::create_dir_all(dir.join(".config/wasmflow")).unwrap();
    std::fs::write(
        dir.join(".config/wasmflow/config.toml"),
        "mcp_json = true\n",
    )
    .unwrap();
    let out = run(&dir, script, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(has_project_fs(turns(&server).last().unwrap()));
    std::fs::remove_file(dir.join(".config/wasmflow/config.toml")).unwrap();
    // So does --mcp-config FILE.
    let out = run(&dir, script, &["--mcp-config", ".mcp.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(has_project_fs(turns(&server).last().unwrap()));
}

#[test]
fn a_server_that_cannot_start_fails_before_any_agent() {
    let server = model("openai", |_| Move::Say("done".into()));
    // A missing command.
    let dir = temp_dir("nostart");
    let toml = |servers: &str| {
        format!(
            "backend = \"openai\"\ndefault_model = \"{MODEL}\"\n[openai]\nbase_url = \"{}/v1\"\n{servers}",
            server.url
        )
    };
    // Refused before any agent, exit 2, naming the server and what it said.
    let refused = |servers: &str, expect: [&str; 2]| {
        std::fs::write(dir.join("wasmflow.toml"), toml(servers)).unwrap();
        let out = run(&dir, r#"return await agent("hi");"#, &[]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        for e in expect {
            assert!(out.stderr.contains(e), "{e}: {}", out.stderr);
        }
    };
    // A missing command.
    refused(
        "[mcp_servers.ghost]\ncommand = \"/nonexistent/mcp-server\"\n",
        ["`ghost`", "/nonexistent/mcp-server"],
    );
    // A server that dies at start: its stderr is in the message.
    refused(
        "[mcp_servers.crashy]\ncommand = \"sh\"\nargs = [\"-c\", \"echo 'cannot open the database' >&2; exit 3\"]\n",
        ["`crashy`", "cannot open the database"],
    );
    assert!(turns(&server).is_empty(), "no agent ran");
    assert!(
        !dir.join(".wasmflow/runs").exists()
            || std::fs::read_dir(dir.join(".wasmflow/runs"))
                .unwrap()
                .next()
                .is_none(),
        "nothing resumable was left"
    );
    // Servers start only for runs that can use an HTTP backend: on sim the
    // broken server is never started.
    let out = run(&dir, r#"return await agent("hi");"#, &["--backend", "sim"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn structured_output_comes_last_after_tool_use() {
    for backend in ["openai", "anthropic"] {
        let dir_cell = std::sync::Arc::new(std::sync::OnceLock::<PathBuf>::new());
        let d = dir_cell.clone();
        let server = model(backend, move |body| {
            let results = tool_results(body);
            let forced = body["tool_choice"]["name"] == "structured_output";
            if forced {
                // Anthropic's last step: the answer through the output tool.
                return Move::Call(vec![(
                    "structured_output".into(),
                    json!({"first": "alpha contents"}),
                )]);
            }
            if results.is_empty() && !body.to_string().contains("Give your final answer now") {
                Move::Call(vec![(
                    "mcp__fs__read_text_file".into(),
                    json!({"path": d.get().unwrap().join("a.txt")}),
                )])
            } else {
                Move::Say(
                    json!({"first": results.first().map(|r| r.0.clone()).unwrap_or_default()})
                        .to_string(),
                )
            }
        });
        let dir = project(&format!("schema-{backend}"), backend, &server, "");
        dir_cell.set(dir.clone()).unwrap();
        let out = run(
            &dir,
            r#"return await agent("What does a.txt hold?", {
                 schema: { type: "object", properties: { first: { type: "string" } }, required: ["first"] } });"#,
            &[],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            out.json()["result"],
            json!({"first": "alpha contents"}),
            "{backend}"
        );
        let requests = turns(&server);
        if backend == "anthropic" {
            assert_eq!(requests.len(), 3, "tools, words, then the forced answer");
            assert!(offered(&requests[0]).contains(&"structured_output".to_string()));
            assert!(requests[0].get("tool_choice").is_none());
        } else {
            assert_eq!(requests.len(), 2);
            assert_eq!(requests[1]["response_format"]["type"], "json_schema");
        }
    }
}

/// A streamable-HTTP MCP server (`wasmflow mcp --listen`, behind its bearer
/// token) reached through `url` and `headers`, with `${VAR}` expanded.
#[test]
fn a_streamable_http_server_with_headers() {
    let project = temp_dir("http-server-project");
    let token = "bench-token-0123456789abcdef";
    let mut child = support::wasmflow()
        .args(["mcp", "--listen", "127.0.0.1:0", "--project"])
        .arg(&project)
        .env("WASMFLOW_MCP_TOKEN", token)
        .env("HOME", &project)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "wasmflow mcp ended before serving"
        );
        if let Some(rest) = line.trim().strip_prefix("wasmflow mcp: serving MCP at ") {
            break rest.to_string();
        }
    };
    let server = model("openai", |body| {
        let results = tool_results(body);
        if results.is_empty() {
            Move::Call(vec![("mcp__wf__workflow_list".into(), json!({}))])
        } else {
            Move::Say(results[0].0.clone())
        }
    });
    let dir = temp_dir("http-server");
    std::fs::write(
        dir.join("wasmflow.toml"),
        format!(
            r#"backend = "openai"
default_model = "{MODEL}"
[openai]
base_url = "{}/v1"
[mcp_servers.wf]
url = "{url}"
headers = {{ Authorization = "Bearer ${{WF_TOKEN}}" }}
"#,
            server.url
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("flow.js"),
        r#"return await agent("list the workflows");"#,
    )
    .unwrap();
    let out = run_env(
        &dir,
        "flow.js",
        &["--yes", "--json", "--quiet"],
        &[("WF_TOKEN", token)],
    );
    // A wrong token: the server refuses, before any agent.
    let bad = run_env(
        &dir,
        "flow.js",
        &["--yes", "--json", "--quiet"],
        &[("WF_TOKEN", "not-the-token-at-all")],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let said = out.json()["result"].as_str().unwrap().to_string();
    // The server's answer, whole: its bundled workflows.
    assert!(said.contains("\"name\":\"deep-research\""), "{said}");
    assert!(offered(&turns(&server)[0]).contains(&"mcp__wf__workflow_run".to_string()));
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("`wf`"), "{}", bad.stderr);
}

/// A server that crashes mid-run (the filesystem server under a wrapper
/// that dies at its second call) fails only the calls made to it, with its
/// last words; it is restarted once; the run goes on; its stderr is kept in
/// the run directory.
#[test]
fn a_crashing_server_fails_only_its_calls_and_restarts_once() {
    let dir_cell = std::sync::Arc::new(std::sync::OnceLock::<PathBuf>::new());
    let d = dir_cell.clone();
    let server = model("openai", move |body| {
        let dir = d.get().unwrap();
        let read = |server: &str, file: &str| {
            (
                format!("mcp__{server}__read_text_file"),
                json!({"path": dir.join(file)}),
            )
        };
        let turn = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count();
        match turn {
            0 => Move::Call(vec![read("flaky", "a.txt")]),
            1 => Move::Call(vec![read("flaky", "b.txt"), read("fs", "b.txt")]),
            2..=4 => Move::Call(vec![read("flaky", "a.txt")]),
            _ => {
                // Every result the agent saw, in order.
                let all: Vec<String> = body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["role"] == "tool")
                    .map(|m| m["content"].as_str().unwrap_or("").to_string())
                    .collect();
                Move::Say(serde_json::to_string(&all).unwrap())
            }
        }
    });
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tools/crash_after.py");
    let dir = project(
        "crash",
        "openai",
        &server,
        &format!(
            "\n[mcp_servers.flaky]\ncommand = \"python3\"\nargs = [\"{}\", \"1\", \"{}\", \"{{DIR}}\"]\n",
            wrapper.display(),
            fs_server().display()
        ),
    );
    let toml = std::fs::read_to_string(dir.join("wasmflow.toml"))
        .unwrap()
        .replace("{DIR}", &dir.display().to_string());
    std::fs::write(dir.join("wasmflow.toml"), toml).unwrap();
    dir_cell.set(dir.clone()).unwrap();
    let out = run(
        &dir,
        r#"return await agent("read through a flaky server", { label: "flaky" });"#,
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = out.json();
    let seen: Vec<String> = serde_json::from_str(summary["result"].as_str().unwrap()).unwrap();
    assert_eq!(seen.len(), 6, "{seen:#?}");
    assert_eq!(seen[0], "alpha contents");
    // The crash fails the call made to it, not the other server's.
    assert!(seen[1].starts_with("Error: "), "{}", seen[1]);
    assert!(
        seen[1].contains("`flaky` failed during this call"),
        "{}",
        seen[1]
    );
    assert!(seen[1].contains("giving up after 1 call"), "{}", seen[1]);
    assert!(
        seen[1].contains("restarted for the next call"),
        "{}",
        seen[1]
    );
    assert_eq!(seen[2], "beta contents");
    // Restarted once: its next call works, the one after crashes it again,
    // and then it stays down.
    assert_eq!(seen[3], "alpha contents");
    assert!(seen[4].contains("failed during this call"), "{}", seen[4]);
    assert!(seen[5].contains("stays down"), "{}", seen[5]);
    assert_eq!(summary["per_agent"][0]["tool_uses"], 6);
    // Its stderr, both lives, in the run directory.
    let id = support::only_run_id(&dir);
    let log =
        std::fs::read_to_string(dir.join(format!(".wasmflow/runs/{id}/mcp/flaky.stderr.log")))
            .unwrap();
    assert_eq!(log.matches("giving up after 1 call").count(), 2, "{log}");
    assert!(log.contains("restarting it once"), "{log}");
    assert!(
        dir.join(format!(".wasmflow/runs/{id}/mcp/fs.stderr.log"))
            .exists()
    );
}

/// A tool-using agent's turns, calls and results are kept in the run
/// directory and shown by `wasmflow show <run> --agent N`.
#[test]
fn transcripts_show_each_turn() {
    let dir_cell = std::sync::Arc::new(std::sync::OnceLock::<PathBuf>::new());
    let d = dir_cell.clone();
    let server = model("anthropic", move |body| {
        if tool_results(body).is_empty() {
            Move::Call(vec![(
                "mcp__fs__read_text_file".into(),
                json!({"path": d.get().unwrap().join("a.txt")}),
            )])
        } else {
            Move::Say("it says alpha".into())
        }
    });
    let dir = project("transcript", "anthropic", &server, "");
    dir_cell.set(dir.clone()).unwrap();
    let out = run(
        &dir,
        r#"return await agent("what is in a.txt?", { label: "reader" });"#,
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = support::only_run_id(&dir);
    let shown = support::cli_in(&dir, &["show", &id, "--agent", "1", "--json"]);
    let record: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let kinds: Vec<&str> = record["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "request",
            "assistant",
            "tool_call",
            "tool_result",
            "assistant",
            "end"
        ]
    );
    let result = &record["transcript"][3];
    assert_eq!(result["text"], "alpha contents");
    assert_eq!(result["name"], "mcp__fs__read_text_file");
    let text = support::cli_in(&dir, &["show", &id, "--agent", "reader"]);
    let text = support::text(&text.stdout);
    assert!(text.contains("transcript"), "{text}");
    assert!(
        text.contains("turn 1  call mcp__fs__read_text_file"),
        "{text}"
    );
    assert!(text.contains("turn 1  result: alpha contents"), "{text}");
    assert!(text.contains("turn 2  model: it says alpha"), "{text}");
}

/// Journaling stays per agent: resuming a run hands back its finished
/// agents from the journal, so their tool calls are not made again.
#[test]
fn a_resumed_run_does_not_repeat_a_finished_agents_tool_calls() {
    let dir_cell = std::sync::Arc::new(std::sync::OnceLock::<PathBuf>::new());
    let d = dir_cell.clone();
    let server = model("openai", move |body| {
        if tool_results(body).is_empty() {
            Move::Call(vec![(
                "mcp__fs__read_text_file".into(),
                json!({"path": d.get().unwrap().join("a.txt")}),
            )])
        } else {
            Move::Say(tool_results(body)[0].0.clone())
        }
    });
    let dir = project("resume", "openai", &server, "");
    dir_cell.set(dir.clone()).unwrap();
    let out = run(
        &dir,
        r#"return await agent("read a.txt", { label: "reader" });"#,
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(turns(&server).len(), 2);
    let id = support::only_run_id(&dir);
    let again = support::cli_in(&dir, &["resume", &id, "--json", "--quiet", "--yes"]);
    let text = support::text(&again.stdout);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text,
        support::text(&again.stderr)
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["result"], "alpha contents");
    assert_eq!(v["agents"]["cached"], 1);
    assert_eq!(
        turns(&server).len(),
        2,
        "no model turn, so no tool call, was made again"
    );
}
