//! `bench` figures of `wasmflow serve`: server time and bytes for a
//! finished 1,000-agent run's page data and agents, and the server's
//! memory over 20 runs. Plain HTTP/1.1 over a socket, by hand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Medians over the requests measured.
pub struct ServeFigures {
    pub run_ms: f64,
    pub run_bytes: usize,
    pub agents_ms: f64,
    pub agents_bytes: usize,
    pub rss_20_runs_kb: u64,
}

fn get(addr: &str, token: &str, path: &str) -> Result<(Duration, usize), String> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).map_err(|e| e.to_string())?;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&body);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", text.lines().next().unwrap_or("")));
    }
    let header_end = text.find("\r\n\r\n").map_or(0, |i| i + 4);
    Ok((took, body.len() - header_end))
}

fn median(mut xs: Vec<Duration>) -> f64 {
    xs.sort();
    xs[xs.len() / 2].as_secs_f64() * 1e3
}

pub fn figures(n: u32) -> Result<ServeFigures, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("wasmflow-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        std::fs::write(
            dir.join("big.js"),
            "phase('Work')\nconst r = await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('p' + i, { label: 'item-' + i })))\nreturn r.length\n",
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("small.js"), "return await agent('x')\n")
            .map_err(|e| e.to_string())?;
        let run = |script: &str| {
            Command::new(&exe)
                .current_dir(&dir)
                .args(["run", script, "--quiet", "--json"])
                .output()
                .map_err(|e| e.to_string())
                .and_then(|o| {
                    let v: serde_json::Value =
                        serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
                    Ok(v["run_id"].as_str().unwrap_or_default().to_string())
                })
        };
        let big = run("big.js")?;
        for _ in 0..19 {
            run("small.js")?;
        }
        let mut server = Command::new(&exe)
            .current_dir(&dir)
            .args(["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(server.stdout.take().ok_or("no stdout")?)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let url = line.trim().to_string();
        let figures = (|| {
            let addr = url
                .strip_prefix("http://")
                .and_then(|r| r.split('/').next())
                .ok_or(format!("serve printed {url:?}"))?
                .to_string();
            let token = url.split("token=").nth(1).ok_or("no token")?.to_string();
            get(&addr, &token, "/api/runs")?;
            let (mut runs, mut agents) = (Vec::new(), Vec::new());
            let (mut run_bytes, mut agents_bytes) = (0, 0);
            for _ in 0..n.max(1) {
                let (t, b) = get(&addr, &token, &format!("/api/runs/{big}"))?;
                runs.push(t);
                run_bytes = b;
                let (t, b) = get(&addr, &token, &format!("/api/runs/{big}/agents"))?;
                agents.push(t);
                agents_bytes = b;
            }
            let rss = crate::bench_detach::rss_kb(server.id());
            Ok(ServeFigures {
                run_ms: median(runs),
                run_bytes,
                agents_ms: median(agents),
                agents_bytes,
                rss_20_runs_kb: rss,
            })
        })();
        let _ = server.kill();
        let _ = server.wait();
        figures
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
