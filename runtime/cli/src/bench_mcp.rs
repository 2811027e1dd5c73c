//! `bench` figures of `wasmflow mcp`: a `workflow_run` call from request
//! to `async_launched` on the sim backend, and the server's resident
//! memory with 20 runs going. JSON-RPC over the server's stdio, by hand.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Medians over the calls measured.
pub struct McpFigures {
    /// `workflow_run` request to its answer.
    pub run_call: Duration,
    /// The server with 20 runs going, kB.
    pub rss_20_runs_kb: u64,
}

struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
}

impl Client {
    fn start(project: &std::path::Path) -> Result<Client, String> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args([
                "mcp",
                "--backends",
                "sim",
                "--max-running-runs",
                "64",
                "--sim-latency",
                "4s",
                "--project",
            ])
            .arg(project)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting wasmflow mcp: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut c = Client {
            child,
            stdin,
            stdout,
            next: 1,
        };
        c.request("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}))?;
        c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(c)
    }

    fn send(&mut self, m: &Value) -> Result<(), String> {
        writeln!(self.stdin, "{m}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| e.to_string())
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        loop {
            let mut line = String::new();
            if self
                .stdout
                .read_line(&mut line)
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("the server closed its output".into());
            }
            let m: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
            if m["id"] == json!(id) {
                return match m.get("error") {
                    Some(e) => Err(e.to_string()),
                    None => Ok(m["result"].clone()),
                };
            }
        }
    }

    fn tool(&mut self, name: &str, args: Value) -> Result<Value, String> {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}))?;
        if r["isError"] == json!(true) {
            return Err(r["content"][0]["text"].as_str().unwrap_or("").to_string());
        }
        r["structuredContent"]
            .as_object()
            .map(|o| Value::Object(o.clone()))
            .ok_or_else(|| r.to_string())
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// Runs the measurements (`n` calls timed).
pub fn figures(n: u32) -> Result<McpFigures, String> {
    let dir = std::env::temp_dir().join(format!("wasmflow-bench-mcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut client = Client::start(&dir)?;
    let result = (|| {
        let mut ids = Vec::new();
        let mut calls = Vec::new();
        // The first call waits for the engine the server loads at start.
        for i in 0..=n.clamp(1, 20) {
            let script = format!("return await agent('bench {i}')");
            let start = Instant::now();
            let r = client.tool("workflow_run", json!({"script": script}))?;
            if i > 0 {
                calls.push(start.elapsed());
            }
            ids.push(r["runId"].as_str().unwrap_or_default().to_string());
        }
        while ids.len() < 20 {
            let r = client.tool(
                "workflow_run",
                json!({"script": format!("return await agent('more {}')", ids.len())}),
            )?;
            ids.push(r["runId"].as_str().unwrap_or_default().to_string());
        }
        std::thread::sleep(Duration::from_millis(300));
        let rss = crate::bench_detach::rss_kb(client.child.id());
        for id in &ids {
            client.tool("workflow_result", json!({"runId": id, "waitSeconds": 60}))?;
        }
        Ok(McpFigures {
            run_call: median(calls),
            rss_20_runs_kb: rss,
        })
    })();
    drop(client.stdin);
    let _ = client.child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
