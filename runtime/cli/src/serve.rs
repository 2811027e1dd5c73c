//! `wasmflow serve`: the dashboard (crate `wasmflow-serve`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use wasmflow::error::exit;
use wasmflow::run::launch::Env;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 7777, conflicts_with = "listen")]
    pub port: u16,
    /// Address and port to listen on instead; other than loopback only
    /// with --allow-remote.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Let --listen take an address other than loopback.
    #[arg(long, requires = "listen")]
    pub allow_remote: bool,
    /// The runs to serve (default: the project's, .wasmflow/runs).
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Open the page in a browser.
    #[arg(long)]
    pub open: bool,
}

pub fn serve(args: ServeArgs) -> i32 {
    let listen = args
        .listen
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port));
    if !listen.ip().is_loopback() {
        if !args.allow_remote {
            eprintln!(
                "error: --listen {listen} is not a loopback address: anyone who reaches it with the token can stop and resume your runs; pass --allow-remote to mean it"
            );
            return exit::USAGE;
        }
        eprintln!(
            "wasmflow serve: warning: listening on {listen}, beyond this machine; the token is all that guards it (plain HTTP)"
        );
    }
    let env = match Env::from_process() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let runs_root = match &args.runs_dir {
        Some(d) => env.cwd.join(d),
        None => env.runs_root.clone(),
    };
    let token = match wasmflow_serve::guard::new_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: making a token: {e}");
            return exit::INTERNAL;
        }
    };
    let options = wasmflow_serve::Options {
        env: Env { runs_root, ..env },
        spawn: crate::background::spawner(),
    };
    let runtime = match crate::background::server_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let served = runtime.block_on(async {
        let bound = match wasmflow_serve::bind(listen, token).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!(
                    "error: cannot listen on {listen}: {e}{}",
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        " (another program has it: pass --port 0 for a free one)"
                    } else {
                        ""
                    }
                );
                return Err(exit::USAGE);
            }
        };
        let url = format!("http://{}/?token={}", bound.addr, bound.guard.token());
        println!("{url}");
        eprintln!("wasmflow serve: the dashboard is at {url} (Ctrl-C stops it; runs go on)");
        if args.open {
            let _ = std::process::Command::new("xdg-open")
                .arg(&url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
        wasmflow_serve::serve(bound, options).await.map_err(|e| {
            eprintln!("error: serving: {e}");
            exit::INTERNAL
        })
    });
    runtime.shutdown_background();
    match served {
        Ok(()) => exit::OK,
        Err(code) => code,
    }
}
