//! Helpers: run the real `wasmflow` binary on scripts in fresh directories.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// The engine cache shared by every test process, filled once up front so
/// parallel tests do not all compile the engine at the same time.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-cache");
        wasmflow::WorkflowEngine::with_cache_dir(Some(&dir)).expect("engine loads");
        dir
    })
}

/// Where the run-signing key of test runs lives.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("user-data")
}

/// The engine, loaded once per test process from the shared cache.
pub fn engine() -> &'static wasmflow::WorkflowEngine {
    static ENGINE: OnceLock<wasmflow::WorkflowEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        wasmflow::WorkflowEngine::with_cache_dir(Some(cache_dir()))
            .expect("engine loads")
            .0
    })
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "t-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn wasmflow() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmflow"));
    cmd.env("WASMFLOW_CACHE_DIR", cache_dir());
    // The run-signing key lives outside the project, as a user's would
    // (tests point HOME at the project directory).
    cmd.env("XDG_DATA_HOME", data_dir());
    cmd
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub dir: PathBuf,
}

impl Output {
    /// stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Writes `source` to `flow.js` in a fresh directory and runs
/// `wasmflow run flow.js <args>` there. Paths in `args` are relative to it.
pub fn run(source: &str, args: &[&str]) -> Output {
    let dir = temp_dir("run");
    std::fs::write(dir.join("flow.js"), source).unwrap();
    run_in(&dir, "flow.js", args)
}

/// Like `run`, with extra files written next to the script first.
pub fn run_with_files(source: &str, files: &[(&str, &str)], args: &[&str]) -> Output {
    let dir = temp_dir("run");
    std::fs::write(dir.join("flow.js"), source).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    run_in(&dir, "flow.js", args)
}

/// Runs `source` with a sim rules file and a trace; returns the output and
/// the trace's executions.
pub fn run_traced(source: &str, rules: &str, args: &[&str]) -> (Output, Vec<Execution>) {
    let mut all = vec![
        "--quiet",
        "--sim-rules",
        "rules.json",
        "--sim-trace",
        "trace.jsonl",
    ];
    all.extend_from_slice(args);
    let out = run_with_files(source, &[("rules.json", rules)], &all);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let trace = read_trace(&out.path("trace.jsonl"));
    (out, trace)
}

pub fn run_in(dir: &Path, script: &str, args: &[&str]) -> Output {
    run_env(dir, script, args, &[])
}

/// Backend settings the developer's environment may hold: tests set their
/// own.
const BACKEND_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
];

/// `run_in` with environment variables set (and the backend ones cleared
/// first).
pub fn run_env(dir: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = wasmflow();
    for k in BACKEND_ENV {
        cmd.env_remove(k);
    }
    // No user config from the developer's home.
    cmd.env("HOME", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .current_dir(dir)
        .arg("run")
        .arg(script)
        .args(args)
        .output()
        .expect("wasmflow runs");
    let output = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        dir: dir.to_path_buf(),
    };
    assert!(
        !output.stderr.contains("panicked"),
        "wasmflow panicked:\n{}",
        output.stderr
    );
    output
}

/// One live execution from a `--sim-trace` file.
#[derive(Debug, Clone)]
pub struct Execution {
    pub label: Option<String>,
    pub phase: Option<String>,
    pub start: u64,
    pub end: u64,
}

/// The executions that ran to their end (a skipped, retried or stopped
/// execution's line says `abandoned`).
pub fn read_trace(path: &Path) -> Vec<Execution> {
    let text = std::fs::read_to_string(path).expect("trace file");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("trace line is JSON"))
        .filter(|v| v["abandoned"] != Value::Bool(true))
        .map(|v| Execution {
            label: v["label"].as_str().map(String::from),
            phase: v["phase"].as_str().map(String::from),
            start: v["start_us"].as_u64().unwrap(),
            end: v["end_us"].as_u64().unwrap(),
        })
        .collect()
}

/// Most executions alive at one instant (intervals are half-open).
pub fn max_overlap(execs: &[Execution]) -> usize {
    let mut points: Vec<(u64, i32)> = Vec::new();
    for e in execs {
        points.push((e.start, 1));
        points.push((e.end, -1));
    }
    // At equal times, ends before starts.
    points.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in points {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// `wasmflow ARGS` in `dir` (which is HOME too), stdin closed.
pub fn cli_in(dir: &Path, args: &[&str]) -> std::process::Output {
    wasmflow()
        .current_dir(dir)
        .env("HOME", dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wasmflow runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The id of the one run under `dir/.wasmflow/runs`.
pub fn only_run_id(dir: &Path) -> String {
    std::fs::read_dir(dir.join(".wasmflow/runs"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned()
}
