//! `wasmflow mcp`: the MCP server over stdio (crate `wasmflow-mcp`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use wasmflow::error::exit;
use wasmflow::run::spec::SimSpec;
use wasmflow_mcp::policy::Flags;

#[derive(Args, Debug)]
pub struct McpArgs {
    /// The project whose runs and saved workflows the server serves
    /// (default: the working directory, or the client's first root when
    /// that is `/` or your home).
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Backends a tool call may run on, comma-separated (overrides
    /// `[mcp] backends`; default: the configured backend, else sim).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub backends: Option<Vec<String>>,
    /// Most agents one run may start (overrides `[mcp] max_agents`;
    /// default 200).
    #[arg(long, value_name = "N")]
    pub max_agents: Option<u64>,
    /// Most one run may cost in USD (overrides `[mcp] max_cost_usd`;
    /// default 5).
    #[arg(long, value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// Most runs going at once in the project (overrides
    /// `[mcp] max_running_runs`; default 8).
    #[arg(long, value_name = "N")]
    pub max_running_runs: Option<u64>,
    /// Let runs on models without a price start (their cost is not capped).
    #[arg(long)]
    pub allow_unpriced: bool,
    /// sim backend: latency of each simulated agent (e.g. 2s).
    #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
    pub sim_latency: Option<Duration>,
    /// sim backend: a rules file scripting simulated replies.
    #[arg(long, value_name = "FILE")]
    pub sim_rules: Option<PathBuf>,
    /// Serve streamable HTTP at http://ADDR:PORT/mcp instead of stdio,
    /// behind a bearer token printed at start (or $WASMFLOW_MCP_TOKEN).
    /// Port 0 picks a free one.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Let --listen take an address other than loopback (anyone who can
    /// reach it and has the token drives your runs).
    #[arg(long, requires = "listen")]
    pub allow_remote: bool,
    /// With --listen: a further name clients reach the server by (checked
    /// against the Host header), e.g. myhost.lan:7777.
    #[arg(long, value_name = "HOST:PORT", requires = "listen")]
    pub public_host: Option<String>,
}

pub fn mcp(args: McpArgs) -> i32 {
    if let Some(b) = args
        .backends
        .iter()
        .flatten()
        .find(|b| !wasmflow::backend::router::BACKENDS.contains(&b.as_str()))
    {
        eprintln!(
            "error: --backends: unknown backend `{b}` (available: {})",
            wasmflow::backend::router::BACKENDS.join(", ")
        );
        return exit::USAGE;
    }
    let sim_rules = match &args.sim_rules {
        Some(p) => match std::path::absolute(p) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: --sim-rules {}: {e}", p.display());
                return exit::USAGE;
            }
        },
        None => None,
    };
    let options = wasmflow_mcp::Options {
        project: args.project,
        home: wasmflow::script::saved::home_dir(),
        flags: Flags {
            backends: args.backends,
            max_agents: args.max_agents,
            max_cost_usd: args.max_cost_usd,
            allow_unpriced: args.allow_unpriced,
            max_running_runs: args.max_running_runs,
        },
        sim: SimSpec {
            latency_ms: args.sim_latency.map_or(0, |d| d.as_millis() as u64),
            rules: sim_rules,
            trace: None,
        },
        spawn: crate::background::spawner(),
    };
    let runtime = match crate::background::server_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let served = match args.listen {
        None => runtime.block_on(wasmflow_mcp::serve_stdio(options)),
        Some(listen) => {
            if !listen.ip().is_loopback() && !args.allow_remote {
                eprintln!(
                    "error: --listen {listen} is not a loopback address: anyone who reaches it with the token drives your runs; pass --allow-remote to mean it, or listen on 127.0.0.1"
                );
                return exit::USAGE;
            }
            if !listen.ip().is_loopback() {
                eprintln!(
                    "wasmflow mcp: warning: listening on {listen}, beyond this machine; the token is all that guards it (plain HTTP: use it on networks you trust, or behind TLS)"
                );
            }
            let token = match std::env::var("WASMFLOW_MCP_TOKEN") {
                Ok(t) if t.len() >= 16 => t,
                Ok(_) => {
                    eprintln!("error: WASMFLOW_MCP_TOKEN must be at least 16 characters");
                    return exit::USAGE;
                }
                Err(_) => match wasmflow_serve::guard::new_token() {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("error: making a token: {e}");
                        return exit::INTERNAL;
                    }
                },
            };
            runtime.block_on(async {
                let bound = wasmflow_mcp::http::bind(listen, token, args.public_host.as_deref()).await?;
                eprintln!(
                    "wasmflow mcp: serving MCP at http://{}/mcp\nwasmflow mcp: token {}\nwasmflow mcp: clients send `Authorization: Bearer <token>`",
                    bound.addr,
                    bound.guard.token()
                );
                wasmflow_mcp::http::serve(bound, options).await
            })
        }
    };
    // Runs the server started go on in their own processes; nothing here
    // waits for them.
    runtime.shutdown_background();
    match served {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::INTERNAL
        }
    }
}
