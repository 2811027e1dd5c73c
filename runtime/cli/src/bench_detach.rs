//! `bench` figures of background runs: launch to id, how soon `wait`
//! returns after the end, and a detached run's resident memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Medians over the runs measured.
pub struct DetachFigures {
    /// `run -d` from start to exit (the id printed).
    pub launch: Duration,
    /// From the end recorded in run.json to `wait` returning.
    pub wait_latency_ms: f64,
    /// A detached run waiting on a timer, kB.
    pub rss_idle_kb: u64,
    /// A detached run with 16 agents running, kB.
    pub rss_16_agents_kb: u64,
}

fn exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| e.to_string())
}

fn launch(dir: &Path, script: &str, extra: &[&str]) -> Result<(String, u32, Duration), String> {
    std::fs::write(dir.join("flow.js"), script).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let out = Command::new(exe()?)
        .current_dir(dir)
        .args(["run", "flow.js", "-d", "--json", "--quiet"])
        .args(extra)
        .output()
        .map_err(|e| e.to_string())?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let id = v["run_id"].as_str().unwrap_or_default().to_string();
    Ok((id, v["pid"].as_u64().unwrap_or(0) as u32, took))
}

fn wait(dir: &Path, id: &str) -> Result<(), String> {
    let out = Command::new(exe()?)
        .current_dir(dir)
        .args(["wait", id])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn median<T: PartialOrd + Copy>(mut xs: Vec<T>) -> T {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    xs[xs.len() / 2]
}

/// Runs the measurements `n` times each (a few for memory).
pub fn figures(n: u32) -> Result<DetachFigures, String> {
    let dir = std::env::temp_dir().join(format!("wasmflow-bench-detach-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let mut launches = Vec::new();
        for _ in 0..n.max(1) {
            let (id, _, took) = launch(&dir, "return 1\n", &[])?;
            launches.push(took);
            wait(&dir, &id)?;
        }
        let mut latencies = Vec::new();
        for _ in 0..n.clamp(1, 10) {
            let (id, _, _) = launch(&dir, "return await agent('x')\n", &["--sim-latency", "200"])?;
            wait(&dir, &id)?;
            let returned = wasmflow::run::run_dir::now_ms();
            let info: Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(".wasmflow/runs").join(&id).join("run.json"))
                    .map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            let ended = info["updated_ms"].as_u64().unwrap_or(returned);
            latencies.push(returned.saturating_sub(ended) as f64);
        }
        let memory = |script: &str, extra: &[&str]| -> Result<u64, String> {
            let (id, pid, _) = launch(&dir, script, extra)?;
            std::thread::sleep(Duration::from_millis(800));
            let kb = rss_kb(pid);
            wait(&dir, &id)?;
            Ok(kb)
        };
        let idle = memory(
            "await new Promise(r => setTimeout(r, 1500))\nreturn 1\n",
            &[],
        )?;
        let busy = memory(
            "const xs = await parallel(Array.from({ length: 16 }, (_, i) => () => agent('a' + i)))\nreturn xs.length\n",
            &["--sim-latency", "1500"],
        )?;
        Ok(DetachFigures {
            launch: median(launches),
            wait_latency_ms: median(latencies),
            rss_idle_kb: idle,
            rss_16_agents_kb: busy,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
