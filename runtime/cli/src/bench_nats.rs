//! `bench` figures of NATS dispatch (reported, not gated): an agent's
//! round trip through the broker and a worker against the in-process
//! backend, and 1,000 zero-latency agents over 1, 2 and 4 workers, with
//! Debian's `nats-server` on a free port. Skipped when it is not
//! installed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmflow::WorkflowEngine;
use wasmflow::backend::sim::{SimBackend, SimRules};
use wasmflow::backend::{AgentBackend, AgentRequest, AgentResult, BoxFuture};
use wasmflow_nats::broker::BrokerOptions;
use wasmflow_nats::dispatch::{Dispatch, DispatchOptions};

/// What was measured.
pub struct NatsFigures {
    /// One agent at a time through one worker: p50 and p99.
    pub round_trip: (Duration, Duration),
    /// The same agents on the in-process sim backend: p50 and p99.
    pub local: (Duration, Duration),
    /// 1,000 agents in parallel: (workers, wall time).
    pub parallel: Vec<(usize, Duration)>,
    /// The broker's resident memory at the end, kB.
    pub broker_rss_kb: u64,
    /// kill -9 of a worker mid-agent (lease 2 s) to that agent's result
    /// from another worker.
    pub failover: Duration,
    /// One agent whose 4 MB answer (under the default output cap) goes
    /// through the object store.
    pub big_result: Duration,
}

/// The lease the failover figure uses.
pub const FAILOVER_ACK_WAIT: &str = "2s";

const SEQUENCE_200: &str = "for (let i = 0; i < 200; i++) await agent('s' + i); return 1";

/// Times each try of the backend it wraps.
struct Timed {
    inner: Arc<dyn AgentBackend>,
    times: Arc<Mutex<Vec<Duration>>>,
}

impl AgentBackend for Timed {
    fn name(&self) -> &str {
        "timed"
    }

    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        let work = self.inner.run(request);
        let times = self.times.clone();
        Box::pin(async move {
            let t = Instant::now();
            let out = work.await;
            times.lock().unwrap().push(t.elapsed());
            out
        })
    }
}

fn percentiles(mut xs: Vec<Duration>) -> (Duration, Duration) {
    xs.sort();
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn figures(engine: &WorkflowEngine, n: u32) -> Result<Option<NatsFigures>, String> {
    let server = ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|s| {
            std::process::Command::new(s)
                .arg("--version")
                .output()
                .is_ok()
        });
    let Some(server) = server else {
        return Ok(None);
    };
    let dir = std::env::temp_dir().join(format!("wasmflow-bench-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut broker = Procs(vec![
        std::process::Command::new(server)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("store"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e}"))?,
    ]);
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("nats-server did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let held: Mutex<Vec<Dispatch>> = Mutex::new(Vec::new());
    let dispatched_to = |pool: &str| -> Arc<dyn AgentBackend> {
        let d = Dispatch::connect(DispatchOptions {
            broker: BrokerOptions {
                url: url.clone(),
                creds: None,
                name: "wasmflow bench".into(),
            },
            pool: pool.into(),
            pools: Default::default(),
            backend: "sim".into(),
            agent_timeout: Duration::from_secs(60),
        })
        .expect("the broker answers");
        d.bind_run(
            &wasmflow::run::run_dir::new_run_id().replace('-', "_"),
            None,
        )
        .expect("the run binds");
        let backend = d.backend();
        held.lock().unwrap().push(d);
        backend
    };
    let dispatched = || dispatched_to("bench");
    let worker = |pool: &str, name: &str, extra: &[&str]| {
        std::process::Command::new(&exe)
            .args(["worker", "--nats", &url, "--pool", pool, "--name", name])
            .args(extra)
            .current_dir(&dir)
            .env("HOME", &dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())
    };
    let mut parallel = Vec::new();
    let mut round_trip = (Duration::ZERO, Duration::ZERO);
    for workers in [1usize, 2, 4] {
        let _workers = Procs(
            (0..workers)
                .map(|i| worker("bench", &format!("bench-{i}"), &["--slots", "16"]))
                .collect::<Result<Vec<_>, _>>()?,
        );
        // The workers join the pool before the clock starts.
        crate::bench::run_once(engine, "await agent('warm'); return 1", dispatched())?;
        std::thread::sleep(Duration::from_millis(300));
        let took = crate::bench::measure(
            engine,
            crate::bench::PARALLEL_1000,
            n.clamp(1, 3),
            dispatched,
        )?;
        parallel.push((workers, took));
        if workers == 1 {
            let times = Arc::new(Mutex::new(Vec::new()));
            crate::bench::run_once(
                engine,
                SEQUENCE_200,
                Arc::new(Timed {
                    inner: dispatched(),
                    times: times.clone(),
                }),
            )?;
            round_trip = percentiles(times.lock().unwrap().clone());
        }
    }
    // A worker dies mid-agent; the next one starts at once: the agent's
    // result arrives about one lease later.
    let failover = {
        let mut doomed = Procs(vec![worker(
            "failover",
            "doomed",
            &[
                "--slots",
                "1",
                "--sim-latency",
                "600000",
                "--ack-wait",
                FAILOVER_ACK_WAIT,
            ],
        )?]);
        let backend = dispatched_to("failover");
        let killed = std::thread::scope(|scope| {
            let run = scope
                .spawn(|| crate::bench::run_once(engine, "await agent('long'); return 1", backend));
            std::thread::sleep(Duration::from_millis(1500));
            let _ = doomed.0[0].kill();
            let _ = doomed.0[0].wait();
            let killed = Instant::now();
            let next = worker("failover", "next", &[]);
            let done = run
                .join()
                .map_err(|_| "the failover run panicked".to_string());
            (killed.elapsed(), next, done)
        });
        let (took, next, done) = killed;
        let _next = Procs(vec![next?]);
        done??;
        took
    };
    let big_result = {
        let rules = dir.join("big.json");
        let big = "0123456789".repeat(400_000);
        std::fs::write(
            &rules,
            serde_json::json!({"default": {"reply": big}}).to_string(),
        )
        .map_err(|e| e.to_string())?;
        let _w = Procs(vec![worker(
            "big",
            "big",
            &["--sim-rules", rules.to_str().unwrap_or_default()],
        )?]);
        crate::bench::run_once(
            engine,
            "await agent('warm'); return 1",
            dispatched_to("big"),
        )
        .ok();
        let t = Instant::now();
        crate::bench::run_once(
            engine,
            "const r = await agent('big'); return r.length",
            dispatched_to("big"),
        )?;
        t.elapsed()
    };
    let times = Arc::new(Mutex::new(Vec::new()));
    crate::bench::run_once(
        engine,
        SEQUENCE_200,
        Arc::new(Timed {
            inner: Arc::new(SimBackend::new(SimRules::default(), Duration::ZERO, None)),
            times: times.clone(),
        }),
    )?;
    let local = percentiles(times.lock().unwrap().clone());
    let pid = broker.0[0].id();
    let broker_rss_kb = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    for d in held.into_inner().unwrap() {
        d.shutdown();
    }
    drop(
        broker
            .0
            .drain(..)
            .map(|mut c| {
                let _ = c.kill();
                c.wait()
            })
            .collect::<Vec<_>>(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Some(NatsFigures {
        round_trip,
        local,
        parallel,
        broker_rss_kb,
        failover,
        big_result,
    }))
}
