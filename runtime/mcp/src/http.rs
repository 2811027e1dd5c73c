//! `wasmflow mcp --listen ADDR`: the same server over streamable HTTP at
//! `/mcp`, behind the guard the dashboard uses (bearer token, `Host` and
//! `Origin` checks).

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use wasmflow_serve::guard::{self, Guard};

use crate::{Options, Server};

/// A bound listener, not yet serving: the caller can say where it is.
pub struct Bound {
    listener: tokio::net::TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The checks, with the token.
    pub guard: Guard,
}

/// Binds `listen`; `host` is a further name `Host` may carry (for an
/// address other than loopback).
pub async fn bind(listen: SocketAddr, token: String, host: Option<&str>) -> anyhow::Result<Bound> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let mut guard = Guard::new(addr, token);
    if let Some(h) = host {
        guard = guard.allow_host(h);
    }
    Ok(Bound {
        listener,
        addr,
        guard,
    })
}

/// Serves MCP at `/mcp` until the process ends.
pub async fn serve(bound: Bound, options: Options) -> anyhow::Result<()> {
    let server = Server::new(options);
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    // The guard checks Host and Origin; a big script is refused by the
    // tool with its reason rather than by the transport.
    config.max_request_body_bytes = 16 << 20;
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service).layer(
        axum::middleware::from_fn_with_state(Arc::new(bound.guard), guard::check),
    );
    axum::serve(bound.listener, app)
        .await
        .map_err(|e| anyhow::anyhow!("serving MCP over HTTP: {e}"))
}
