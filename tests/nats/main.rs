//! A run's agents on workers over NATS JetStream, end to end: Debian's
//! `nats-server` (2.9, `NATS_SERVER` names it) on a free port of
//! 127.0.0.1 with a temporary store, `wasmflow worker` processes on the sim
//! backend, each keeping a ledger of the agents it ran (`--sim-trace`), and
//! `wasmflow run --dispatch` as the coordinator.
//!
//! Run by tests/nats/run.sh (not by a bare `cargo test`: it needs the
//! server, which that script installs).

#![allow(dead_code)]

#[path = "../all/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{run_in, temp_dir};

/// A `nats-server` with JetStream, stopped when dropped.
struct Broker {
    child: Child,
    addr: String,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    fn start(name: &str) -> Broker {
        Self::start_on(name, "127.0.0.1")
    }

    /// On `addr` (an address of this host, e.g. a veth's).
    fn start_on(name: &str, addr: &str) -> Broker {
        let dir = temp_dir(name);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Self::spawn(&dir, addr, port);
        Broker {
            child,
            addr: addr.to_string(),
            port,
            dir,
        }
    }

    fn spawn(dir: &Path, addr: &str, port: u16) -> Child {
        let server = std::env::var_os("NATS_SERVER")
            .map(PathBuf::from)
            .expect("NATS_SERVER names nats-server (run tests/nats/run.sh)");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("nats.log"))
            .unwrap();
        let child = Command::new(server)
            .args(["-a", addr, "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((addr, port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// kill -9, then a new server on the same port: on the same store, or
    /// on an empty one (`wipe`).
    fn crash_and_restart(&mut self, down: Duration, wipe: bool) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if wipe {
            std::fs::remove_dir_all(self.dir.join("store")).unwrap();
        }
        std::thread::sleep(down);
        self.child = Self::spawn(&self.dir, &self.addr, self.port);
    }

    fn url(&self) -> String {
        format!("nats://{}:{}", self.addr, self.port)
    }

    /// Publishes `payload` on `subject` over the plain NATS protocol (a
    /// JetStream stream stores it like any publish).
    fn publish(&self, subject: &str, payload: &[u8]) {
        let mut s = TcpStream::connect((self.addr.as_str(), self.port)).unwrap();
        let mut msg = format!(
            "CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n",
            payload.len()
        )
        .into_bytes();
        msg.extend_from_slice(payload);
        msg.extend_from_slice(b"\r\nPING\r\n");
        s.write_all(&msg).unwrap();
        let mut buf = [0u8; 512];
        let _ = std::io::Read::read(&mut s, &mut buf);
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `wasmflow worker` process, killed when dropped.
struct Worker {
    child: Child,
    ledger: PathBuf,
    log: PathBuf,
}

/// Waits (at most 20 s, a loaded CI machine starts processes slowly)
/// until `ready` holds.
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "waited 20 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Worker {
    fn start(broker: &Broker, dir: &Path, name: &str, extra: &[&str]) -> Worker {
        let ledger = dir.join(format!("ledger-{name}.jsonl"));
        let child = support::wasmflow()
            .current_dir(dir)
            .env("HOME", dir)
            .env("WASMFLOW_LOG", "info")
            .args(["worker", "--nats", &broker.url(), "--name", name])
            .arg("--sim-trace")
            .arg(&ledger)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .expect("the worker starts");
        Worker {
            child,
            ledger,
            log: dir.join(format!("{name}.log")),
        }
    }

    /// Agents it has started (its log says so at `info`).
    fn started(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches(": started agent ")
            .count()
    }

    /// The agents it ran to their end: label -> count.
    fn ran(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for line in std::fs::read_to_string(&self.ledger)
            .unwrap_or_default()
            .lines()
        {
            let v: Value = serde_json::from_str(line).unwrap();
            if v.get("abandoned").is_none() {
                *out.entry(v["label"].as_str().unwrap_or("").to_string())
                    .or_insert(0) += 1;
            }
        }
        out
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wasmflow run flow.js --dispatch` in `dir`, in the background.
fn coordinate(broker: &Broker, dir: &Path) -> Child {
    support::wasmflow()
        .current_dir(dir)
        .env("HOME", dir)
        .args([
            "run",
            "flow.js",
            "--json",
            "--quiet",
            "--dispatch",
            &broker.url(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGTERM, as a service manager stops a worker.
fn terminate(child: &Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

fn fan_out(n: usize) -> String {
    format!(
        "export const meta = {{ name: 'fan', description: 'agents in parallel' }}\n\
         const r = await parallel(Array.from({{ length: {n} }}, (_, i) => () => agent('item ' + i, {{ label: 'item-' + i }})))\n\
         return r"
    )
}

/// Agent ids in the run's record of finished agents, with how often each
/// appears.
fn journaled(dir: &Path, id: &str) -> BTreeMap<u64, u32> {
    let mut out = BTreeMap::new();
    let text = std::fs::read_to_string(dir.join(format!(".wasmflow/runs/{id}/agents.jsonl")))
        .unwrap_or_default();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        *out.entry(v["agentId"].as_u64().unwrap()).or_insert(0) += 1;
    }
    out
}

fn merged(workers: &[Worker]) -> BTreeMap<String, u32> {
    let mut all = BTreeMap::new();
    for w in workers {
        for (label, n) in w.ran() {
            *all.entry(label).or_insert(0) += n;
        }
    }
    all
}

#[test]
fn a_thousand_agents_over_1_2_and_4_workers_give_the_local_result() {
    let dir = temp_dir("nats-1000");
    std::fs::write(dir.join("flow.js"), fan_out(1000)).unwrap();
    let local = run_in(
        &dir,
        "flow.js",
        &["--json", "--quiet", "--max-agents", "2000"],
    );
    assert_eq!(local.code, 0, "{}", local.stderr);
    let expected = local.json()["result"].clone();
    assert_eq!(expected.as_array().unwrap().len(), 1000);
    for n in [1usize, 2, 4] {
        let broker = Broker::start(&format!("broker-{n}"));
        let run_dir = temp_dir(&format!("nats-1000-{n}"));
        std::fs::write(run_dir.join("flow.js"), fan_out(1000)).unwrap();
        let workers: Vec<Worker> = (0..n)
            .map(|i| Worker::start(&broker, &run_dir, &format!("w{i}"), &["--slots", "16"]))
            .collect();
        let out = run_in(
            &run_dir,
            "flow.js",
            &[
                "--json",
                "--quiet",
                "--max-agents",
                "2000",
                "--dispatch",
                &broker.url(),
            ],
        );
        assert_eq!(out.code, 0, "{n} workers: {}", out.stderr);
        let v = out.json();
        assert_eq!(v["result"], expected, "{n} workers give the local result");
        let id = v["run_id"].as_str().unwrap();
        let journal = journaled(&run_dir, id);
        assert_eq!(journal.len(), 1000);
        assert!(
            journal.values().all(|&c| c == 1),
            "every agent journaled once"
        );
        let ran = merged(&workers);
        assert_eq!(ran.len(), 1000, "{n} workers ran every agent");
        assert!(ran.values().all(|&c| c == 1), "none ran twice");
        if n > 1 {
            let busy = workers.iter().filter(|w| !w.ran().is_empty()).count();
            assert!(busy > 1, "the work was shared over {n} workers");
        }
    }
}

#[test]
fn a_killed_worker_costs_only_its_in_flight_agents() {
    let broker = Broker::start("broker-kill");
    let dir = temp_dir("nats-kill");
    std::fs::write(dir.join("flow.js"), fan_out(120)).unwrap();
    let slots = 8;
    let flags = ["--slots", "8", "--ack-wait", "2s", "--sim-latency", "300"];
    let mut doomed = Worker::start(&broker, &dir, "doomed", &flags);
    let survivor = Worker::start(&broker, &dir, "survivor", &flags);
    let coordinator = coordinate(&broker, &dir);
    // Once the doomed worker has finished some agents, kill -9 it mid-run.
    let deadline = Instant::now() + Duration::from_secs(20);
    while doomed.ran().len() < 8 {
        assert!(
            Instant::now() < deadline,
            "the doomed worker never ran agents"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Instant::now();
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    let out = coordinator.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["result"].as_array().unwrap();
    assert_eq!(results.len(), 120);
    assert!(
        results.iter().all(Value::is_string),
        "every agent finished elsewhere"
    );
    let id = v["run_id"].as_str().unwrap();
    let journal = journaled(&dir, id);
    assert_eq!(journal.len(), 120);
    assert!(
        journal.values().all(|&c| c == 1),
        "every agent journaled once"
    );
    let ran = merged(&[doomed, survivor]);
    assert_eq!(ran.len(), 120);
    let twice = ran.values().filter(|&&c| c > 1).count();
    assert!(
        twice <= slots,
        "at most the dead worker's {slots} in-flight agents ran twice, not {twice}"
    );
    // Its in-flight agents waited out their lease (2 s) at most once.
    assert!(killed.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_forged_result_is_ignored() {
    let broker = Broker::start("broker-forge");
    let dir = temp_dir("nats-forge");
    std::fs::write(
        dir.join("flow.js"),
        "export const meta = { name: 'one', description: 'one agent' }\nreturn await agent('the real one', { label: 'only' })\n",
    )
    .unwrap();
    let worker = Worker::start(&broker, &dir, "w", &["--sim-latency", "2500"]);
    let launched = support::cli_in(
        &dir,
        &[
            "run",
            "flow.js",
            "--detach",
            "--quiet",
            "--dispatch",
            &broker.url(),
        ],
    );
    assert_eq!(
        launched.status.code(),
        Some(0),
        "{}",
        support::text(&launched.stderr)
    );
    let id = support::text(&launched.stdout).trim().to_string();
    // While the real agent runs: a result for it without the run's secret.
    wait_until("the agent to start", || worker.started() == 1);
    let forged = serde_json::json!({
        "v": 1, "run": id, "agent": 1, "attempt": 1, "key": "k", "worker": "mallory",
        "output": {"text": "FORGED"}, "failure": null, "kind": null,
        "usage": {"input": 1, "output": 1}, "mac": "00".repeat(32),
    });
    broker.publish(
        &format!("wasmflow.result.{id}.1.1"),
        forged.to_string().as_bytes(),
    );
    let waited = support::cli_in(&dir, &["wait", &id, "--json"]);
    let text = support::text(&waited.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(v["status"], "ok", "{text}");
    let result = v["result"].as_str().unwrap_or_default().to_string();
    assert!(!result.contains("FORGED"), "{result}");
    assert!(!result.is_empty());
}

#[test]
fn a_worker_refuses_a_backend_it_does_not_have() {
    let broker = Broker::start("broker-refuse");
    let dir = temp_dir("nats-refuse");
    std::fs::write(
        dir.join("flow.js"),
        "export const meta = { name: 'one', description: 'one agent' }\nconst r = await agent('x', { label: 'needs-claude' })\nreturn r === null ? 'refused' : r\n",
    )
    .unwrap();
    let _worker = Worker::start(&broker, &dir, "simmy", &[]);
    let out = run_in(
        &dir,
        "flow.js",
        &[
            "--json",
            "--quiet",
            "--yes",
            "--backend",
            "claude",
            "--dispatch",
            &broker.url(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["result"], "refused");
    let reason = v["failures"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("worker simmy runs agents on `sim`; it has no `claude` backend"),
        "{reason}"
    );
}

#[test]
fn sigterm_finishes_running_agents_within_the_grace_and_hands_back_the_rest() {
    let broker = Broker::start("broker-term");
    let dir = temp_dir("nats-term");
    std::fs::write(dir.join("flow.js"), fan_out(12)).unwrap();
    // Agents of 1.5 s; the first worker gets SIGTERM while 4 run.
    let mut first = Worker::start(
        &broker,
        &dir,
        "first",
        &[
            "--slots",
            "4",
            "--sim-latency",
            "1500",
            "--grace",
            "5s",
            "--ack-wait",
            "3s",
        ],
    );
    let coordinator = coordinate(&broker, &dir);
    wait_until("4 agents to start", || first.started() == 4);
    terminate(&first.child);
    let status = first.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the worker stops cleanly");
    // Its 4 running agents finished within the grace; it took no more.
    assert_eq!(first.ran().len(), 4, "{:?}", first.ran());
    let second = Worker::start(
        &broker,
        &dir,
        "second",
        &["--slots", "8", "--sim-latency", "10"],
    );
    let out = coordinator.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["result"].as_array().unwrap().iter().all(Value::is_string));
    let ran = merged(&[first, second]);
    assert_eq!(ran.len(), 12);
    assert!(ran.values().all(|&c| c == 1), "none ran twice: {ran:?}");

    // A grace shorter than the agents: they are handed back at once (not
    // after their lease) and run elsewhere.
    let dir = temp_dir("nats-term-short");
    std::fs::write(dir.join("flow.js"), fan_out(4)).unwrap();
    let mut first = Worker::start(
        &broker,
        &dir,
        "first",
        &[
            "--slots",
            "4",
            "--sim-latency",
            "3000",
            "--grace",
            "200ms",
            "--ack-wait",
            "30s",
        ],
    );
    let coordinator = coordinate(&broker, &dir);
    wait_until("4 agents to start", || first.started() == 4);
    let stopped = Instant::now();
    terminate(&first.child);
    first.child.wait().unwrap();
    let second = Worker::start(&broker, &dir, "second", &["--slots", "8"]);
    let out = coordinator.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "handed back, not left to a 30 s lease: {:?}",
        stopped.elapsed()
    );
    assert!(first.ran().is_empty());
    assert_eq!(second.ran().len(), 4);
}

#[test]
fn stop_cancels_the_running_remote_agents() {
    let broker = Broker::start("broker-cancel");
    let dir = temp_dir("nats-cancel");
    std::fs::write(dir.join("flow.js"), fan_out(16)).unwrap();
    let flags = ["--slots", "8", "--sim-latency", "30000"];
    let a = Worker::start(&broker, &dir, "a", &flags);
    let b = Worker::start(&broker, &dir, "b", &flags);
    let launched = support::cli_in(
        &dir,
        &[
            "run",
            "flow.js",
            "--detach",
            "--quiet",
            "--dispatch",
            &broker.url(),
        ],
    );
    assert_eq!(
        launched.status.code(),
        Some(0),
        "{}",
        support::text(&launched.stderr)
    );
    let id = support::text(&launched.stdout).trim().to_string();
    // All 16 running on the two workers.
    wait_until("16 agents to start", || a.started() + b.started() == 16);
    // The first stop lets running agents finish within the grace; the
    // second abandons them, as a second Ctrl-C does.
    for _ in 0..2 {
        let stopped = support::cli_in(&dir, &["stop", &id, "--no-wait"]);
        assert_eq!(
            stopped.status.code(),
            Some(0),
            "{}",
            support::text(&stopped.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let t = Instant::now();
    let abandoned = |w: &Worker| {
        std::fs::read_to_string(&w.ledger)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"abandoned\":true"))
            .count()
    };
    while abandoned(&a) + abandoned(&b) < 16 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{} of 16 remote agents cancelled",
            abandoned(&a) + abandoned(&b)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(700),
        "16 remote agents cancelled {took:?} after the 300 ms wait"
    );
    assert!(
        a.ran().is_empty() && b.ran().is_empty(),
        "none ran to its end"
    );
}

#[test]
fn a_paused_worker_past_its_lease_sends_nothing() {
    let broker = Broker::start("broker-fence");
    let dir = temp_dir("nats-fence");
    std::fs::write(dir.join("flow.js"), fan_out(1)).unwrap();
    let mut paused = Worker::start(
        &broker,
        &dir,
        "paused",
        &["--slots", "1", "--ack-wait", "2s", "--sim-latency", "3000"],
    );
    let coordinator = coordinate(&broker, &dir);
    wait_until("the agent to start", || paused.started() == 1);
    let pid = paused.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Its lease lapses; the request goes to another worker.
    let other = Worker::start(&broker, &dir, "other", &["--sim-latency", "100"]);
    let t = Instant::now();
    while other.ran().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the request never moved"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = coordinator.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["run_id"].as_str().unwrap();
    assert_eq!(
        journaled(&dir, id).values().copied().collect::<Vec<_>>(),
        [1]
    );
    // Woken, the paused worker finds its lease gone and sends nothing.
    let log = dir.join("paused.log");
    let t = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("lease on agent 1 lapsed")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = paused.child.kill();
}

#[test]
fn a_request_that_exhausts_its_deliveries_ends_as_a_failed_agent() {
    let broker = Broker::start("broker-poison");
    let dir = temp_dir("nats-poison");
    std::fs::write(
        dir.join("flow.js"),
        "export const meta = { name: 'poison', description: 'an agent that kills its worker' }\n\
         const r = await agent('poison', { label: 'poison' })\n\
         return r === null ? 'failed' : r\n",
    )
    .unwrap();
    // Each worker that takes the request dies (the exec agent kills its
    // parent, the worker); a supervisor starts another; after 2 deliveries
    // the pool gives up.
    let flags = [
        "--backend",
        "exec",
        "--exec",
        "kill -9 $PPID",
        "--ack-wait",
        "1s",
        "--max-deliver",
        "2",
    ];
    let coordinator = support::wasmflow()
        .current_dir(&dir)
        .env("HOME", &dir)
        .args([
            "run",
            "flow.js",
            "--json",
            "--quiet",
            "--yes",
            "--backend",
            "exec",
        ])
        .args(["--dispatch", &broker.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut deaths = 0;
    let mut coordinator = Some(coordinator);
    let out = loop {
        let mut w = Worker::start(&broker, &dir, &format!("w{deaths}"), &flags);
        // Until this worker dies or the run ends.
        loop {
            if let Some(c) = coordinator.as_mut()
                && c.try_wait().unwrap().is_some()
            {
                break;
            }
            if w.child.try_wait().unwrap().is_some() {
                deaths += 1;
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "the run hangs");
            std::thread::sleep(Duration::from_millis(50));
        }
        if coordinator.as_mut().unwrap().try_wait().unwrap().is_some() {
            break coordinator.take().unwrap().wait_with_output().unwrap();
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"], "failed");
    let reason = v["failures"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("delivered 2 times without a result"),
        "{reason}"
    );
    assert_eq!(deaths, 2, "each delivery killed a worker");
}

#[test]
fn after_the_coordinator_dies_resume_uses_the_results_that_arrived_meanwhile() {
    let broker = Broker::start("broker-coordinator");
    let dir = temp_dir("nats-coordinator");
    std::fs::write(dir.join("flow.js"), fan_out(40)).unwrap();
    let flags = ["--slots", "8", "--sim-latency", "1000"];
    let a = Worker::start(&broker, &dir, "a", &flags);
    let b = Worker::start(&broker, &dir, "b", &flags);
    let mut coordinator = coordinate(&broker, &dir);
    // Mid-run: some agents journaled, 16 running on the workers.
    std::thread::sleep(Duration::from_millis(1500));
    wait_until("16 agents to start", || a.started() + b.started() >= 16);
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    // The running ones finish while no coordinator listens.
    std::thread::sleep(Duration::from_millis(2500));
    let id = support::only_run_id(&dir);
    let resumed = support::cli_in(&dir, &["resume", &id, "--json", "--quiet"]);
    let text = support::text(&resumed.stdout);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{text}{}",
        support::text(&resumed.stderr)
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    let results = v["result"].as_array().unwrap();
    assert_eq!(results.len(), 40);
    assert!(results.iter().all(Value::is_string));
    assert!(
        v["agents"]["cached"].as_u64().unwrap() > 0,
        "{}",
        v["agents"]
    );
    // Nothing ran twice: the results that arrived meanwhile were used.
    let ran = merged(&[a, b]);
    assert_eq!(ran.len(), 40);
    assert!(ran.values().all(|&c| c == 1), "ran twice: {ran:?}");
}

#[test]
fn the_run_completes_when_the_broker_restarts_on_its_store_or_an_empty_one() {
    for wipe in [false, true] {
        let what = if wipe { "empty" } else { "kept" };
        let mut broker = Broker::start(&format!("broker-crash-{what}"));
        let dir = temp_dir(&format!("nats-crash-{what}"));
        std::fs::write(dir.join("flow.js"), fan_out(24)).unwrap();
        // 8 slots for 24 agents of 1.5 s: when the broker dies, 8 run and
        // 16 wait in its store.
        let flags = ["--slots", "4", "--sim-latency", "1500", "--ack-wait", "4s"];
        let a = Worker::start(&broker, &dir, "a", &flags);
        let b = Worker::start(&broker, &dir, "b", &flags);
        let coordinator = coordinate(&broker, &dir);
        let deadline = Instant::now() + Duration::from_secs(20);
        while a.ran().len() + b.ran().len() < 2 {
            assert!(Instant::now() < deadline, "no agent ran");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker.crash_and_restart(Duration::from_millis(500), wipe);
        let out = coordinator.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{what} store: {stderr}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let results = v["result"].as_array().unwrap();
        assert_eq!(results.len(), 24);
        assert!(
            results.iter().all(Value::is_string),
            "{what} store: every agent finished: {stderr}"
        );
        let journal = journaled(&dir, v["run_id"].as_str().unwrap());
        assert_eq!(journal.len(), 24);
        assert!(journal.values().all(|&c| c == 1), "journaled once");
        if wipe {
            // The requests the empty broker lost were published again from
            // what the run still waited for.
            assert!(stderr.contains("published again"), "{stderr}");
        }
        let ran = merged(&[a, b]);
        assert_eq!(ran.len(), 24, "{what} store: {ran:?}");
    }
}

#[test]
fn models_go_to_their_pools_and_worker_ls_lists_the_fleet() {
    let broker = Broker::start("broker-pools");
    let dir = temp_dir("nats-pools");
    std::fs::write(
        dir.join("wasmflow.toml"),
        "[models]\nfast = { id = \"fast-1\", pool = \"cheap\" }\nbig = { id = \"big-1\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flow.js"),
        "export const meta = { name: 'pools', description: 'cheap fan-out, costly synthesis' }\n\
         const parts = await parallel(Array.from({ length: 6 }, (_, i) => () => agent('part ' + i, { label: 'part-' + i, model: 'fast' })))\n\
         return await agent('join ' + parts.length, { label: 'synthesis', model: 'big' })\n",
    )
    .unwrap();
    let cheap = Worker::start(&broker, &dir, "cheap-1", &["--pool", "cheap"]);
    let costly = Worker::start(&broker, &dir, "costly-1", &["--slots", "2"]);
    let out = run_in(
        &dir,
        "flow.js",
        &["--json", "--quiet", "--dispatch", &broker.url()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.json()["result"].is_string());
    let parts: BTreeMap<String, u32> = (0..6).map(|i| (format!("part-{i}"), 1)).collect();
    assert_eq!(cheap.ran(), parts, "the fan-out ran on pool cheap");
    assert_eq!(
        costly.ran(),
        BTreeMap::from([("synthesis".to_string(), 1)]),
        "the synthesis ran on the default pool"
    );
    // Both workers, with their pools, slots and what they finished (a
    // heartbeat every 5 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let ls = support::cli_in(&dir, &["worker", "ls", "--nats", &broker.url(), "--json"]);
        assert_eq!(ls.status.code(), Some(0), "{}", support::text(&ls.stderr));
        let rows: Vec<Value> = support::text(&ls.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let done: Vec<u64> = rows.iter().map(|r| r["done"].as_u64().unwrap()).collect();
        if done == [6, 1] || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let summary: Vec<(String, String, u64, u64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["pool"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
                r["slots"].as_u64().unwrap(),
                r["done"].as_u64().unwrap(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("cheap".into(), "cheap-1".into(), 4, 6, "running".into()),
            ("default".into(), "costly-1".into(), 2, 1, "running".into()),
        ]
    );
    let table = support::cli_in(
        &dir,
        &["worker", "ls", "--nats", &broker.url(), "--pool", "cheap"],
    );
    let text = support::text(&table.stdout);
    assert!(
        text.starts_with("POOL") && text.contains("cheap-1"),
        "{text}"
    );
    assert!(!text.contains("costly-1"), "{text}");
    // A worker stopped says so in its last heartbeat.
    terminate(&cheap.child);
    let mut cheap = cheap;
    cheap.child.wait().unwrap();
    let ls = support::cli_in(&dir, &["worker", "ls", "--nats", &broker.url(), "--json"]);
    let text = support::text(&ls.stdout);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("\"state\":\"stopped\""),
        "{text}"
    );
    // No server there: said so, not a bare timeout.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", dead.local_addr().unwrap());
    drop(dead);
    let ls = support::cli_in(&dir, &["worker", "ls", "--nats", &url]);
    assert_eq!(ls.status.code(), Some(2));
    let err = support::text(&ls.stderr);
    assert!(err.contains("cannot reach the NATS server"), "{err}");
}

#[test]
fn a_five_megabyte_result_goes_through_the_object_store() {
    let broker = Broker::start("broker-big");
    let dir = temp_dir("nats-big");
    let big: String = (0..500_000).map(|i| format!("{:09}\n", i)).collect();
    assert_eq!(big.len(), 5_000_000);
    std::fs::write(
        dir.join("rules.json"),
        serde_json::json!({"rules": [{"match": {"label": "big"}, "reply": big}]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("flow.js"),
        "export const meta = { name: 'big', description: 'one big answer' }\n\
         const r = await agent('write a lot', { label: 'big' })\n\
         return { length: r.length, head: r.slice(0, 20), tail: r.slice(-20) }\n",
    )
    .unwrap();
    let _worker = Worker::start(
        &broker,
        &dir,
        "w",
        &["--sim-rules", dir.join("rules.json").to_str().unwrap()],
    );
    let out = run_in(
        &dir,
        "flow.js",
        &[
            "--json",
            "--quiet",
            "--max-agent-output",
            "8388608",
            "--dispatch",
            &broker.url(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(
        v["result"],
        serde_json::json!({
            "length": 5_000_000,
            "head": "000000000\n000000001\n",
            "tail": "000499998\n000499999\n",
        })
    );
    // It went through the object store's stream.
    let store = broker
        .dir
        .join("store/jetstream/$G/streams/OBJ_wasmflow_results");
    assert!(store.exists(), "the object store was used");
}

/// A network namespace joined to this host by a veth pair: a second
/// host whose link can be cut. Removed when dropped.
struct Netns {
    name: String,
    host_link: String,
    host_addr: String,
}

impl Netns {
    fn create() -> Netns {
        let n = std::process::id() % 100_000;
        let name = format!("wf-part-{n}");
        let (host_link, inner_link) = (format!("wfh{n}"), format!("wfw{n}"));
        let net = format!("10.213.{}", n % 250);
        let netns = Netns {
            name: name.clone(),
            host_link: host_link.clone(),
            host_addr: format!("{net}.1"),
        };
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
                panic!("the partition test needs iproute2's `ip` (apt-get install iproute2): {e}")
            });
            assert!(
                out.status.success(),
                "ip {}: {} (the partition test needs root, or CAP_NET_ADMIN, to make a network namespace)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link",
            "add",
            &host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inner_link,
        ]);
        ip(&["link", "set", &inner_link, "netns", &name]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{net}.2/30"),
            "dev",
            &inner_link,
        ]);
        ip(&["-n", &name, "link", "set", &inner_link, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        netns
    }

    /// Cuts (`false`) or restores the link.
    fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        assert!(
            Command::new("ip")
                .args(["link", "set", &self.host_link, state])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn a_worker_cut_off_by_a_network_partition_sends_nothing_late() {
    let netns = Netns::create();
    let broker = Broker::start_on("broker-partition", &netns.host_addr);
    let dir = temp_dir("nats-partition");
    std::fs::write(dir.join("flow.js"), fan_out(1)).unwrap();
    // The worker on the other side of the link, in the namespace.
    let ledger = dir.join("ledger-island.jsonl");
    let mut island = Command::new("ip")
        .args(["netns", "exec", &netns.name])
        .arg(env!("CARGO_BIN_EXE_wasmflow"))
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("WASMFLOW_LOG", "info")
        .env("XDG_DATA_HOME", dir.join(".data"))
        .args(["worker", "--nats", &broker.url(), "--name", "island"])
        .args(["--slots", "1", "--ack-wait", "2s", "--sim-latency", "6000"])
        .arg("--sim-trace")
        .arg(&ledger)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("island.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.join("island.log")).unwrap_or_default();
    let t = Instant::now();
    while !log().contains("takes agents from pool") {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let coordinator = coordinate(&broker, &dir);
    wait_until("the island to start the agent", || {
        log().contains(": started agent 1 ")
    });
    // Cut mid-agent: its progress acks go nowhere, its lease lapses, and
    // the broker hands the request to a worker on this side.
    netns.link(false);
    let mainland = Worker::start(&broker, &dir, "mainland", &["--sim-latency", "100"]);
    let t = Instant::now();
    while mainland.ran().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the request never moved"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = coordinator.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        journaled(&dir, v["run_id"].as_str().unwrap())
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [1]
    );
    // The cut-off worker fenced itself: no result sent, none acked.
    let t = Instant::now();
    while !log().contains("lease on agent 1 lapsed") {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    netns.link(true);
    assert!(!stderr.contains("duplicate"), "{stderr}");
    let _ = island.kill();
    let _ = island.wait();
}

#[test]
fn a_request_over_the_message_limit_goes_through_the_object_store() {
    let broker = Broker::start("broker-big-request");
    let dir = temp_dir("nats-big-request");
    // Under the 1 MiB prompt cap, but twice the message limit once JSON
    // escapes its quotes; the marker at its end shows it arrived whole.
    std::fs::write(
        dir.join("rules.json"),
        serde_json::json!({"rules": [{"match": {"prompt": "END-MARKER"}, "reply": "got it all"}]})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("flow.js"),
        "export const meta = { name: 'big-ask', description: 'one big question' }\n\
         return await agent('\"'.repeat(1000000) + 'END-MARKER', { label: 'big' })\n",
    )
    .unwrap();
    let _worker = Worker::start(
        &broker,
        &dir,
        "w",
        &["--sim-rules", dir.join("rules.json").to_str().unwrap()],
    );
    let out = run_in(
        &dir,
        "flow.js",
        &["--json", "--quiet", "--dispatch", &broker.url()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["result"], "got it all");
}
