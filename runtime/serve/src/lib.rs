//! `wasmflow serve`: a local web app over a project's runs (docs/dashboard.md),
//! and the guard every wasmflow web server puts in front of its routes.
//!
//! The run directories are the source of truth: every page and API answer
//! is read from them, and every action is one of the library's control
//! operations. The page ships inside the binary (plain HTML, CSS and JS).

pub mod guard;

mod api;
mod resume;
mod view;

use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use wasmflow::run::launch::Env;
use wasmflow::run::run_dir::RunDir;

use crate::guard::Guard;

/// Starts the process of a run created detached (the embedding binary
/// knows how: `wasmflow run-detached ID`).
pub type Spawn = Arc<dyn Fn(&RunDir, &Env) -> Result<Child, String> + Send + Sync>;

/// What the server serves.
pub struct Options {
    /// The project, its home and where its runs are (`runs_root`, which
    /// `--runs-dir` sets).
    pub env: Env,
    /// Starts a resumed run's process.
    pub spawn: Spawn,
}

struct App {
    options: Options,
    cache: view::RunCache,
    guard: Arc<Guard>,
}

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Model output is shown as text, and no inline script runs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn index(
    State(app): State<Arc<App>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX);
    if q.contains_key("token") {
        r.headers_mut()
            .insert(header::SET_COOKIE, app.guard.cookie());
    }
    r
}

/// Headers on every answer.
async fn harden(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A bound listener, not yet serving.
pub struct Bound {
    listener: tokio::net::TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The checks, with the token.
    pub guard: Guard,
}

/// Binds `listen`.
pub async fn bind(listen: SocketAddr, token: String) -> std::io::Result<Bound> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok(Bound {
        listener,
        guard: Guard::new(addr, token),
        addr,
    })
}

/// Serves the dashboard until the process ends.
pub async fn serve(bound: Bound, options: Options) -> std::io::Result<()> {
    let guard = Arc::new(bound.guard);
    let app = Arc::new(App {
        options,
        cache: view::RunCache::default(),
        guard: guard.clone(),
    });
    let routes = Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/api/runs/{id}/agents", get(api::agents))
        .route("/api/runs/{id}/agents/{n}", get(api::agent))
        .route("/api/runs/{id}/agents/{n}/{action}", post(api::steer))
        .route("/api/runs/{id}/events", get(api::events))
        .route("/api/runs/{id}/result", get(api::result))
        .route("/api/runs/{id}/script", get(api::script))
        .route("/api/runs/{id}/{action}", post(api::run_action))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no such page") })
        .with_state(app)
        // The guard runs before routing and before any run is looked up.
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .layer(axum::middleware::from_fn(harden));
    axum::serve(bound.listener, routes).await
}
