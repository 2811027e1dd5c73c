//! `wasmflow worker`: runs agents that `wasmflow run --dispatch` sends to
//! a pool over NATS, on this machine's backend.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use wasmflow::error::exit;
use wasmflow::run::spec::{BackendSpec, RunSpec, SimSpec};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub command: Option<WorkerCommand>,
    /// The broker: nats://HOST:PORT (or tls://).
    #[arg(long, value_name = "URL", required = true)]
    pub nats: Option<String>,
    /// The pool to take agents from.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Agents run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: u32,
    /// A request's lease: not extended for this long (the worker died or
    /// hangs), it goes to another worker.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = wasmflow::limits::parse_duration)]
    pub ack_wait: Duration,
    /// On SIGTERM or Ctrl-C: how long running agents may take to finish
    /// before they are handed back to the pool.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = wasmflow::limits::parse_duration)]
    pub grace: Duration,
    /// This worker's name in results and logs (default: host and pid).
    #[arg(long)]
    pub name: Option<String>,
    /// A NATS credentials file (else NATS_TOKEN, or NATS_USER and
    /// NATS_PASSWORD, from the environment).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// Deliveries of one request before the pool gives up on it and the run
    /// fails that agent (set by the first worker of a pool).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub max_deliver: i64,
    /// Model ids this worker runs, comma-separated (default: any).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// The backend agents run on here (default: the config's, else sim).
    #[arg(long)]
    pub backend: Option<String>,
    /// The exec backend's command.
    #[arg(long = "exec", value_name = "COMMAND")]
    pub exec_command: Option<String>,
    /// Wall-clock limit for one agent here.
    #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
    pub agent_timeout: Option<Duration>,
    /// An agent that shows no progress this long fails.
    #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
    pub stall_timeout: Option<Duration>,
    /// HTTP backends: retries after 429, 5xx or a network error.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// sim backend: latency of every agent without a rule, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub sim_latency: Option<u64>,
    /// sim backend: a JSON rules file scripting agents' replies.
    #[arg(long, value_name = "FILE")]
    pub sim_rules: Option<PathBuf>,
    /// sim backend: append one JSON line per live agent execution to FILE.
    #[arg(long, value_name = "FILE")]
    pub sim_trace: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum WorkerCommand {
    /// List the workers the broker heard from in the last hour, by pool:
    /// slots, busy, agents done, last heartbeat.
    Ls(LsArgs),
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// The broker: nats://HOST:PORT (or tls://).
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// Only this pool's workers.
    #[arg(long)]
    pub pool: Option<String>,
    /// A NATS credentials file.
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// One JSON object per worker, one per line.
    #[arg(long)]
    pub json: bool,
}

pub fn worker(args: WorkerArgs) -> i32 {
    if let Some(WorkerCommand::Ls(ls)) = args.command {
        return match list(ls) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                exit::USAGE
            }
        };
    }
    match run(args) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

fn list(args: LsArgs) -> Result<(), String> {
    let (url, pool) = wasmflow_nats::broker::split_pool(&args.nats)?;
    let pool = args
        .pool
        .clone()
        .or_else(|| (args.nats.trim_end_matches('/').matches('/').count() > 2).then_some(pool));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let seen = runtime.block_on(wasmflow_nats::fleet::workers(
        &wasmflow_nats::broker::BrokerOptions {
            url,
            creds: args.nats_creds.clone(),
            name: "wasmflow worker ls".into(),
        },
        pool.as_deref(),
    ))?;
    if args.json {
        for s in &seen {
            let mut v = serde_json::to_value(&s.beat).map_err(|e| e.to_string())?;
            v["state"] = s.state().into();
            v["age_ms"] = s.age_ms.into();
            println!("{v}");
        }
        return Ok(());
    }
    if seen.is_empty() {
        println!(
            "no worker has sent a heartbeat to this broker{} in the last hour (start one: wasmflow worker --nats URL)",
            pool.map(|p| format!(" for pool `{p}`")).unwrap_or_default()
        );
        return Ok(());
    }
    let rows: Vec<[String; 9]> = seen
        .iter()
        .map(|s| {
            [
                s.beat.pool.clone(),
                s.beat.name.clone(),
                s.state().to_string(),
                s.beat.slots.to_string(),
                s.beat.busy.to_string(),
                s.beat.done.to_string(),
                s.beat.backend.clone(),
                s.beat
                    .models
                    .as_ref()
                    .map(|m| m.join(","))
                    .unwrap_or_else(|| "any".into()),
                format!("{:.1}s ago", s.age_ms as f64 / 1000.0),
            ]
        })
        .collect();
    let head = [
        "POOL",
        "WORKER",
        "STATE",
        "SLOTS",
        "BUSY",
        "DONE",
        "BACKEND",
        "MODELS",
        "HEARTBEAT",
    ];
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(head.to_vec()));
    for r in &rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
    Ok(())
}

fn run(args: WorkerArgs) -> Result<(), String> {
    let nats = args.nats.clone().unwrap_or_default();
    let (url, pool) = wasmflow_nats::broker::split_pool(&nats)?;
    let pool = if nats.trim_end_matches('/').matches('/').count() > 2 {
        pool
    } else {
        args.pool.clone()
    };
    let env = wasmflow::run::launch::Env::from_process().map_err(|e| e.to_string())?;
    wasmflow::config::refuse_if_disabled(&env.cwd, env.home.as_deref())
        .map_err(|e| e.to_string())?;
    let (config, _) =
        wasmflow::config::Config::load(&env.cwd, env.home.as_deref()).map_err(|e| e.to_string())?;
    let name = args
        .backend
        .clone()
        .or(config.backend.clone())
        .unwrap_or_else(|| "sim".into());
    let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
    let mut spec = RunSpec::new(wasmflow::run::spec::Target::inline(
        "worker.js",
        "return 1".into(),
    ));
    spec.backend = BackendSpec {
        name: Some(name.clone()),
        exec: args.exec_command.clone(),
        agent_timeout_ms: args.agent_timeout.map(ms),
        stall_timeout_ms: args.stall_timeout.map(ms),
        retries: args.retries,
        sim: SimSpec {
            latency_ms: args.sim_latency.unwrap_or(0),
            rules: args.sim_rules.clone(),
            trace: args.sim_trace.clone(),
        },
        ..BackendSpec::default()
    };
    let agent_timeout = args.agent_timeout.unwrap_or(Duration::from_secs(30 * 60));
    let script = wasmflow::Script::from_source(
        "worker.js".into(),
        "worker.js".into(),
        "return 1".into(),
        Default::default(),
    )
    .map_err(|e| e.to_string())?;
    let cx = wasmflow::backend::build::BuildContext {
        spec: &spec,
        config: &config,
        script: &script,
        // Requests name their model; routing happened on the coordinator.
        default_model: Some(config.default_model.as_deref().unwrap_or("")),
        agent_timeout,
        tools: None,
        transcripts: Default::default(),
    };
    let mut notices = wasmflow::run::launch::Notices::default();
    let backend =
        wasmflow::backend::build::build(&cx, &name, &mut notices).map_err(|e| e.to_string())?;
    for n in notices.take() {
        if n.warning {
            eprintln!("{}", n.text);
        }
    }
    let worker_name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let options = wasmflow_nats::worker::WorkerOptions {
        broker: wasmflow_nats::broker::BrokerOptions {
            url,
            creds: args.nats_creds.clone(),
            name: format!("wasmflow worker {worker_name}"),
        },
        pool,
        slots: args.slots as usize,
        ack_wait: args.ack_wait,
        grace: args.grace,
        name: worker_name,
        backend_name: name,
        models: args.models.clone(),
        max_deliver: args.max_deliver,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    runtime.block_on(async move {
        backend.check(Vec::new()).await?;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            eprintln!(
                "wasmflow worker: stopping: no new agents; running ones finish or are handed back"
            );
            let _ = stop_tx.send(true);
        });
        wasmflow_nats::worker::run(options, backend, stop).await
    })
}
