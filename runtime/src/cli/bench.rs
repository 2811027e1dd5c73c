//! `wasmflow bench`: the figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use wasmflow::backend::sim::{SimBackend, SimRules};
use wasmflow::error::exit;
use wasmflow::{EventSink, RunConfig, Script, WorkflowEngine, run_script};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub iterations: u32,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

const TRIVIAL: &str = "return 1";
const PARALLEL_1000: &str = "const r = await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('p' + i))); return r.length";
const SEQUENCE_1000: &str =
    "let n = 0; for (let i = 0; i < 1000; i++) { if (await agent('p' + i)) n++ } return n";

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn run_once(engine: &WorkflowEngine, source: &str) -> Result<Duration, String> {
    let script = Script::from_source(
        "bench.js".into(),
        "bench.js".into(),
        source.into(),
        Default::default(),
    )
    .map_err(|e| e.to_string())?;
    let config = RunConfig::new(Arc::new(SimBackend::new(
        SimRules::default(),
        Duration::ZERO,
        None,
    )));
    let start = Instant::now();
    let outcome = run_script(engine, &script, config, EventSink::silent());
    let took = start.elapsed();
    outcome.result.map_err(|e| e.to_string())?;
    Ok(took)
}

fn measure(engine: &WorkflowEngine, source: &str, n: u32) -> Result<Duration, String> {
    run_once(engine, source)?; // warm-up
    let runs = (0..n)
        .map(|_| run_once(engine, source))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(median(runs))
}

fn process_run(n: u32) -> Result<Duration, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("wasmflow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = dir.join("trivial.js");
    std::fs::write(&script, TRIVIAL).map_err(|e| e.to_string())?;
    let once = || -> Result<Duration, String> {
        let start = Instant::now();
        let out = std::process::Command::new(&exe)
            .args(["run", "--quiet"])
            .arg(&script)
            .output()
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(took)
    };
    once()?; // fills the engine cache
    let runs = (0..n).map(|_| once()).collect::<Result<Vec<_>, _>>()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(median(runs))
}

pub fn bench(args: BenchArgs) -> i32 {
    match bench_inner(&args) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: benchmark failed: {e}");
            exit::INTERNAL
        }
    }
}

fn bench_inner(args: &BenchArgs) -> Result<(), String> {
    let n = args.iterations;
    let t = Instant::now();
    let engine = WorkflowEngine::new().map_err(|e| format!("{e:#}"))?;
    let load = t.elapsed();
    let trivial = measure(&engine, TRIVIAL, n)?;
    let process = process_run(n.min(20))?;
    let par = measure(&engine, PARALLEL_1000, n.min(10))?;
    let seq = measure(&engine, SEQUENCE_1000, n.min(10))?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let figures = json!({
        "engine_load_ms": load.as_secs_f64() * 1e3,
        "trivial_run_warm_ms": trivial.as_secs_f64() * 1e3,
        "process_trivial_run_ms": process.as_secs_f64() * 1e3,
        "parallel_1000_agents_ms": par.as_secs_f64() * 1e3,
        "parallel_us_per_agent": us(par) / 1000.0,
        "sequence_1000_agents_ms": seq.as_secs_f64() * 1e3,
        "sequence_us_per_agent": us(seq) / 1000.0,
    });
    if args.json {
        println!("{figures:#}");
    } else {
        println!(
            "engine load (cache or compile)          {:>9.2} ms",
            load.as_secs_f64() * 1e3
        );
        println!(
            "warm instantiate + trivial run          {:>9.3} ms   (target <= 1 ms)",
            trivial.as_secs_f64() * 1e3
        );
        println!(
            "whole `wasmflow run` process, trivial   {:>9.2} ms   (target <= 30 ms)",
            process.as_secs_f64() * 1e3
        );
        println!(
            "1,000 zero-latency agents, parallel     {:>9.2} us/agent (target <= 20)",
            us(par) / 1000.0
        );
        println!(
            "1,000 zero-latency agents, sequence     {:>9.2} us/agent (target <= 20)",
            us(seq) / 1000.0
        );
        println!(
            "(median of {n} runs; parallel/sequence: median of {})",
            n.min(10)
        );
    }
    Ok(())
}
