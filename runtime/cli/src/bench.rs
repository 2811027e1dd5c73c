//! `wasmflow bench`: the figures in docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use std::path::Path;

use wasmflow::backend::http::HttpOptions;
use wasmflow::backend::openai::{OpenAiBackend, OpenAiSettings};
use wasmflow::backend::retry::RetryPolicy;
use wasmflow::backend::sim::{SimBackend, SimRules};
use wasmflow::backend::{AgentBackend, AgentRequest, AgentResult, BoxFuture};
use wasmflow::error::exit;
use wasmflow::run::journal::Replay;
use wasmflow::run::run_dir::{self, RunDir};
use wasmflow::sandbox::driver::Durability;
use wasmflow::{
    DriverKind, EventSink, Program, RunConfig, Script, WorkflowEngine, WorkflowModule,
    build_module, run_program, run_script,
};

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
pub(crate) const PARALLEL_1000: &str = "const r = await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('p' + i))); return r.length";
const SEQUENCE_1000: &str =
    "let n = 0; for (let i = 0; i < 1000; i++) { if (await agent('p' + i)) n++ } return n";

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn sim() -> Arc<dyn AgentBackend> {
    Arc::new(SimBackend::new(SimRules::default(), Duration::ZERO, None))
}

/// Runs a 1,000-agent script journaled in a fresh run directory; `sync`
/// says whether each batch is fdatasync'd.
fn durable_once(engine: &WorkflowEngine, root: &Path, sync: bool) -> Result<Duration, String> {
    let script = Script::from_source(
        "bench.js".into(),
        "bench.js".into(),
        PARALLEL_1000.into(),
        Default::default(),
    )
    .map_err(|e| e.to_string())?;
    let dir = RunDir::create(root, &run_dir::new_run_id()).map_err(|e| e.to_string())?;
    let mut config = RunConfig::new(sim());
    config.durability = Some(Durability {
        dir: Arc::new(dir),
        replay: Replay::default(),
        valid_len: 0,
        sync,
        grace: Duration::ZERO,
    });
    let start = Instant::now();
    let outcome = run_script(engine, &script, config, EventSink::silent());
    let took = start.elapsed();
    outcome.result.map_err(|e| e.to_string())?;
    Ok(took)
}

/// Records when the first live agent starts.
struct FirstCall {
    inner: Arc<dyn AgentBackend>,
    at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl AgentBackend for FirstCall {
    fn name(&self) -> &str {
        "first-call"
    }
    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        if let Ok(mut at) = self.at.lock()
            && at.is_none()
        {
            *at = Some(Instant::now());
        }
        self.inner.run(request)
    }
}

/// A run whose journal holds 1,000 results, resumed with a script that
/// makes those calls and then one new one: the time from opening the run
/// to that first live agent.
fn resume_once(engine: &WorkflowEngine, root: &Path) -> Result<Duration, String> {
    let id = run_dir::new_run_id();
    let dir = Arc::new(RunDir::create(root, &id).map_err(|e| e.to_string())?);
    let first = Script::from_source(
        "bench.js".into(),
        "bench.js".into(),
        PARALLEL_1000.into(),
        Default::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut config = RunConfig::new(sim());
    config.durability = Some(Durability {
        dir: dir.clone(),
        replay: Replay::default(),
        valid_len: 0,
        sync: true,
        grace: Duration::ZERO,
    });
    run_script(engine, &first, config, EventSink::silent())
        .result
        .map_err(|e| e.to_string())?;
    drop(dir);
    let then = format!(
        "{}\n",
        PARALLEL_1000.replace("return r.length", "return await agent('after ' + r.length)")
    );
    let at = Arc::new(std::sync::Mutex::new(None));
    let start = Instant::now();
    let dir = RunDir::open(root, &id)?;
    let read = dir.read_journal()?;
    let script = Script::from_source(
        "bench.js".into(),
        "bench.js".into(),
        then,
        Default::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut config = RunConfig::new(Arc::new(FirstCall {
        inner: sim(),
        at: at.clone(),
    }));
    config.limits.max_agents = 2000;
    config.durability = Some(Durability {
        dir: Arc::new(dir),
        replay: Replay::from_records(&read.records),
        valid_len: read.valid_len,
        sync: true,
        grace: Duration::ZERO,
    });
    let outcome = run_script(engine, &script, config, EventSink::silent());
    outcome.result.map_err(|e| e.to_string())?;
    if outcome.stats.agents.cached != 1000 {
        return Err(format!(
            "{} cached, expected 1000",
            outcome.stats.agents.cached
        ));
    }
    let first_live = at
        .lock()
        .map_err(|_| "lock".to_string())?
        .ok_or("no live agent ran")?;
    Ok(first_live - start)
}

pub(crate) fn run_once(
    engine: &WorkflowEngine,
    source: &str,
    backend: Arc<dyn AgentBackend>,
) -> Result<Duration, String> {
    run_driven(engine, source, backend, DriverKind::Poll)
}

fn run_driven(
    engine: &WorkflowEngine,
    source: &str,
    backend: Arc<dyn AgentBackend>,
    driver: DriverKind,
) -> Result<Duration, String> {
    run_with(engine, source, backend, driver, false)
}

/// `live`: the live progress view draws (into a sink) as on a terminal.
fn run_with(
    engine: &WorkflowEngine,
    source: &str,
    backend: Arc<dyn AgentBackend>,
    driver: DriverKind,
    live: bool,
) -> Result<Duration, String> {
    let script = bench_script(source)?;
    let mut config = RunConfig::new(backend);
    config.default_model = Some("bench-model".into());
    config.driver = driver;
    let events = if live {
        EventSink::silent().with_live(Box::new(crate::live::LiveView::new(
            "bench",
            &[],
            Box::new(std::io::sink()),
            120,
        )))
    } else {
        EventSink::silent()
    };
    let start = Instant::now();
    let outcome = run_program(engine, Program::Script(&script), config, events);
    let took = start.elapsed();
    outcome.result.map_err(|e| e.to_string())?;
    Ok(took)
}

fn bench_script(source: &str) -> Result<Script, String> {
    Script::from_source(
        "bench.js".into(),
        "bench.js".into(),
        source.into(),
        Default::default(),
    )
    .map_err(|e| e.to_string())
}

/// Compiled modules: build time and size, load from disk without and
/// with the native-code cache, and a trivial run of a loaded module.
struct ModuleFigures {
    build: Duration,
    size: usize,
    load_cold: Duration,
    load_warm: Duration,
    trivial_run: Duration,
}

fn module_figures(engine: &WorkflowEngine, n: u32) -> Result<ModuleFigures, String> {
    let script = bench_script(PARALLEL_1000)?;
    build_module(engine, &script).map_err(|e| e.to_string())?; // warm-up
    let builds = (0..n)
        .map(|_| {
            let start = Instant::now();
            build_module(engine, &script)
                .map(|_| start.elapsed())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dir = std::env::temp_dir().join(format!("wasmflow-bench-mod-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // A private cache: the cold load compiles, the warm one deserialises.
    let (cached, _) =
        WorkflowEngine::with_cache_dir(Some(&dir.join("cache"))).map_err(|e| format!("{e:#}"))?;
    let trivial = bench_script(TRIVIAL)?;
    let wasm = build_module(&cached, &trivial).map_err(|e| e.to_string())?;
    let path = dir.join("trivial.wasm");
    std::fs::write(&path, &wasm).map_err(|e| e.to_string())?;
    let load = || -> Result<(WorkflowModule, Duration), String> {
        let start = Instant::now();
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        let module = WorkflowModule::load(&cached, &path, &bytes, Default::default())
            .map_err(|e| e.to_string())?;
        Ok((module, start.elapsed()))
    };
    let (_, load_cold) = load()?;
    let warm = (0..n.min(10))
        .map(|_| load().map(|(_, d)| d))
        .collect::<Result<Vec<_>, _>>()?;
    let (module, _) = load()?;
    let runs = (0..n)
        .map(|_| {
            let start = Instant::now();
            let outcome = run_program(
                &cached,
                Program::Module(&module),
                RunConfig::new(sim()),
                EventSink::silent(),
            );
            outcome
                .result
                .map(|_| start.elapsed())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ModuleFigures {
        build: median(builds),
        size: wasm.len(),
        load_cold,
        load_warm: median(warm),
        trivial_run: median(runs),
    })
}

pub(crate) fn measure(
    engine: &WorkflowEngine,
    source: &str,
    n: u32,
    backend: impl Fn() -> Arc<dyn AgentBackend>,
) -> Result<Duration, String> {
    run_once(engine, source, backend())?; // warm-up
    let runs = (0..n)
        .map(|_| run_once(engine, source, backend()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(median(runs))
}

/// A keep-alive HTTP/1.1 server on 127.0.0.1 answering every request with
/// the same streamed Chat Completions reply: what is left is wasmflow's
/// own cost per HTTP agent (request, SSE parsing, accounting).
fn chat_server() -> Result<String, String> {
    const BODY: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n"
    );
    chat_server_with(|_| BODY)
}

/// [`chat_server`] answering each request with the stream `reply(body)`
/// gives.
pub(crate) fn chat_server_with(reply: fn(&[u8]) -> &'static str) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/v1",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut out = stream.try_clone()?;
                let mut reader = BufReader::new(stream);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    loop {
                        line.clear();
                        reader.read_line(&mut line)?;
                        if line.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body)?;
                    let events = reply(&body);
                    out.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{events}",
                            events.len()
                        )
                        .as_bytes(),
                    )?;
                }
            });
        }
    });
    Ok(url)
}

pub(crate) fn openai(url: &str) -> Result<Arc<dyn AgentBackend>, String> {
    let settings = OpenAiSettings {
        base_url: url.to_string(),
        api_key: None,
        max_tokens: None,
        http: HttpOptions {
            timeout: Duration::from_secs(60),
            stall: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        },
    };
    Ok(Arc::new(OpenAiBackend::new(settings)?))
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
    let trivial = measure(&engine, TRIVIAL, n, sim)?;
    let process = process_run(n.min(20))?;
    let par = measure(&engine, PARALLEL_1000, n.min(10), sim)?;
    let seq = measure(&engine, SEQUENCE_1000, n.min(10), sim)?;
    let blocking = |source: &str| -> Result<Duration, String> {
        run_driven(&engine, source, sim(), DriverKind::Blocking)?;
        let runs = (0..n.min(10))
            .map(|_| run_driven(&engine, source, sim(), DriverKind::Blocking))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(median(runs))
    };
    let par_blocking = blocking(PARALLEL_1000)?;
    let live = {
        run_with(&engine, PARALLEL_1000, sim(), DriverKind::Poll, true)?;
        let runs = (0..n.min(10))
            .map(|_| run_with(&engine, PARALLEL_1000, sim(), DriverKind::Poll, true))
            .collect::<Result<Vec<_>, _>>()?;
        median(runs)
    };
    let seq_blocking = blocking(SEQUENCE_1000)?;
    let modules = module_figures(&engine, n.min(20))?;
    let root = std::env::temp_dir().join(format!("wasmflow-bench-runs-{}", std::process::id()));
    let runs = n.min(10);
    let durable = median(
        (0..runs)
            .map(|_| durable_once(&engine, &root, true))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let journal_only = median(
        (0..runs)
            .map(|_| durable_once(&engine, &root, false))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let resume = median(
        (0..runs)
            .map(|_| resume_once(&engine, &root))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let _ = std::fs::remove_dir_all(&root);
    let url = chat_server()?;
    openai(&url)?; // the client builds
    let http_par = measure(&engine, PARALLEL_1000, n.min(5), || {
        openai(&url).expect("the client built once already")
    })?;
    let detach = crate::bench_detach::figures(n.min(10))?;
    let mcp = crate::bench_mcp::figures(n.min(20))?;
    let dash = crate::bench_serve::figures(n.min(20))?;
    let tools = crate::bench_tools::figures(&engine, n.min(20))?;
    let nats = crate::bench_nats::figures(&engine, n)?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let figures = json!({
        "detach_launch_to_id_ms": detach.launch.as_secs_f64() * 1e3,
        "wait_latency_after_end_ms": detach.wait_latency_ms,
        "detached_rss_idle_kb": detach.rss_idle_kb,
        "detached_rss_16_agents_kb": detach.rss_16_agents_kb,
        "mcp_workflow_run_to_launched_ms": mcp.run_call.as_secs_f64() * 1e3,
        "mcp_server_rss_20_runs_kb": mcp.rss_20_runs_kb,
        "serve_run_1000_agents_ms": dash.run_ms,
        "serve_run_1000_agents_bytes": dash.run_bytes,
        "serve_agents_1000_ms": dash.agents_ms,
        "serve_agents_1000_bytes": dash.agents_bytes,
        "serve_rss_20_runs_kb": dash.rss_20_runs_kb,
        "tools_server_start_ms": tools.start.as_secs_f64() * 1e3,
        "tools_call_p50_us": us(tools.call_p50),
        "tools_call_p99_us": us(tools.call_p99),
        "tools_loop_1000_agents_us_per_agent": us(tools.loop_1000) / 1000.0,
        "nats": nats.as_ref().map(|f| json!({
            "round_trip_p50_us": us(f.round_trip.0),
            "round_trip_p99_us": us(f.round_trip.1),
            "local_p50_us": us(f.local.0),
            "local_p99_us": us(f.local.1),
            "parallel_1000_ms": f.parallel.iter().map(|(w, d)| json!({"workers": w, "ms": d.as_secs_f64() * 1e3})).collect::<Vec<_>>(),
            "broker_rss_kb": f.broker_rss_kb,
            "failover_ms": f.failover.as_secs_f64() * 1e3,
            "big_result_4mb_ms": f.big_result.as_secs_f64() * 1e3,
        })),
        "engine_load_ms": load.as_secs_f64() * 1e3,
        "trivial_run_warm_ms": trivial.as_secs_f64() * 1e3,
        "process_trivial_run_ms": process.as_secs_f64() * 1e3,
        "parallel_1000_agents_ms": par.as_secs_f64() * 1e3,
        "parallel_us_per_agent": us(par) / 1000.0,
        "sequence_1000_agents_ms": seq.as_secs_f64() * 1e3,
        "sequence_us_per_agent": us(seq) / 1000.0,
        "durable_parallel_us_per_agent": us(durable) / 1000.0,
        "journal_no_fsync_parallel_us_per_agent": us(journal_only) / 1000.0,
        "resume_1000_cached_to_first_live_agent_ms": resume.as_secs_f64() * 1e3,
        "openai_local_parallel_1000_agents_ms": http_par.as_secs_f64() * 1e3,
        "openai_local_us_per_agent": us(http_par) / 1000.0,
        "blocking_parallel_us_per_agent": us(par_blocking) / 1000.0,
        "live_progress_parallel_us_per_agent": us(live) / 1000.0,
        "blocking_sequence_us_per_agent": us(seq_blocking) / 1000.0,
        "module_build_ms": modules.build.as_secs_f64() * 1e3,
        "module_bytes": modules.size,
        "module_load_cold_ms": modules.load_cold.as_secs_f64() * 1e3,
        "module_load_warm_ms": modules.load_warm.as_secs_f64() * 1e3,
        "module_trivial_run_ms": modules.trivial_run.as_secs_f64() * 1e3,
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
            "1,000 agents, parallel, journaled+fsync {:>9.2} us/agent",
            us(durable) / 1000.0
        );
        println!(
            "1,000 agents, parallel, journal no sync {:>9.2} us/agent",
            us(journal_only) / 1000.0
        );
        println!(
            "resume: 1,000 cached to 1st live agent  {:>9.2} ms   (target <= 50 ms)",
            resume.as_secs_f64() * 1e3
        );
        println!(
            "1,000 agents, openai backend, local SSE  {:>9.2} us/agent (16 at once)",
            us(http_par) / 1000.0
        );
        println!(
            "1,000 agents, blocking driver, parallel {:>9.2} us/agent",
            us(par_blocking) / 1000.0
        );
        println!(
            "1,000 agents, blocking driver, sequence {:>9.2} us/agent",
            us(seq_blocking) / 1000.0
        );
        println!(
            "1,000 agents, parallel, live progress   {:>9.2} us/agent",
            us(live) / 1000.0
        );
        println!(
            "wasmflow build (engine cached)          {:>9.2} ms   (target <= 100 ms)",
            modules.build.as_secs_f64() * 1e3
        );
        println!(
            "component size                          {:>9} bytes (target <= 1.5 MB)",
            modules.size
        );
        println!(
            "load a component from disk, compiling   {:>9.2} ms",
            modules.load_cold.as_secs_f64() * 1e3
        );
        println!(
            "load a component from disk, cached      {:>9.2} ms",
            modules.load_warm.as_secs_f64() * 1e3
        );
        println!(
            "trivial run of a loaded component       {:>9.3} ms",
            modules.trivial_run.as_secs_f64() * 1e3
        );
        println!(
            "run --detach, launch to id              {:>9.2} ms   (target <= 100 ms)",
            detach.launch.as_secs_f64() * 1e3
        );
        println!(
            "wait returns after the run's end        {:>9.1} ms",
            detach.wait_latency_ms
        );
        println!(
            "detached run resident memory            {:>9} kB idle, {} kB with 16 agents",
            detach.rss_idle_kb, detach.rss_16_agents_kb
        );
        println!(
            "mcp workflow_run to async_launched      {:>9.2} ms   (target <= 150 ms, sim)",
            mcp.run_call.as_secs_f64() * 1e3
        );
        println!(
            "mcp server resident memory, 20 runs     {:>9} kB",
            mcp.rss_20_runs_kb
        );
        println!(
            "serve: a 1,000-agent run's state        {:>9.2} ms, {} bytes",
            dash.run_ms, dash.run_bytes
        );
        println!(
            "serve: its agents table                 {:>9.2} ms, {} bytes",
            dash.agents_ms, dash.agents_bytes
        );
        println!(
            "serve resident memory, 20 runs listed   {:>9} kB",
            dash.rss_20_runs_kb
        );
        println!(
            "mcp client: start `wasmflow mcp`, list  {:>9.2} ms",
            tools.start.as_secs_f64() * 1e3
        );
        println!(
            "mcp client: one tool call, p50 / p99    {:>9.1} us / {:.1} us",
            us(tools.call_p50),
            us(tools.call_p99)
        );
        println!(
            "1,000 openai agents, 1 tool call each   {:>9.2} us/agent (two turns, in-process tool)",
            us(tools.loop_1000) / 1000.0
        );
        match &nats {
            None => println!(
                "nats dispatch                           not measured: nats-server not found"
            ),
            Some(f) => {
                println!(
                    "nats: one agent's round trip, p50/p99   {:>9.1} us / {:.1} us (in-process: {:.1} / {:.1})",
                    us(f.round_trip.0),
                    us(f.round_trip.1),
                    us(f.local.0),
                    us(f.local.1)
                );
                for (w, d) in &f.parallel {
                    println!(
                        "nats: 1,000 agents over {w} worker(s)      {:>9.2} ms",
                        d.as_secs_f64() * 1e3
                    );
                }
                println!(
                    "nats-server resident memory             {:>9} kB",
                    f.broker_rss_kb
                );
                println!(
                    "nats: worker killed -> agent done elsewhere {:>6.0} ms (lease {})",
                    f.failover.as_secs_f64() * 1e3,
                    crate::bench_nats::FAILOVER_ACK_WAIT
                );
                println!(
                    "nats: one 4 MB result (object store)    {:>9.1} ms",
                    f.big_result.as_secs_f64() * 1e3
                );
            }
        }
        println!(
            "(median of {n} runs; parallel/sequence: median of {}; openai: of {})",
            n.min(10),
            n.min(5)
        );
    }
    Ok(())
}
