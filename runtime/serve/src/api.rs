//! The JSON API (docs/dashboard.md): the page uses it, and so can scripts.
//! Every handler reads the run directory; actions are the library's
//! control operations, the ones the CLI uses.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use wasmflow::run::control::{self, Op};
use wasmflow::run::run_dir::{self, RunDir, RunInfo};
use wasmflow::run::state::EventFollower;

use crate::{App, view};

/// An error as the API answers it: a status and `{"error": message}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into())
}

type ApiResult = Result<Response, ApiError>;

/// Runs `f` on the blocking pool: run directories are read with std I/O.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
}

/// The run `id` (its id checked first: no traversal).
fn open(app: &App, id: &str) -> Result<(RunDir, RunInfo), ApiError> {
    run_dir::check_id(id).map_err(bad)?;
    let dir = RunDir::open(&app.options.env.runs_root, id)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e))?;
    let info = dir
        .read_info()
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e))?;
    Ok((dir, info))
}

fn agent_number(n: &str) -> Result<u64, ApiError> {
    n.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad(format!("`{n}` is not an agent number")))
}

pub async fn runs(State(app): State<Arc<App>>) -> ApiResult {
    let rows = blocking(move || Ok(app.cache.list(&app.options.env.runs_root))).await?;
    Ok(Json(json!({"runs": rows})).into_response())
}

pub async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let v = blocking(move || {
        let (dir, info) = open(&app, &id)?;
        view::run(&dir, &info).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))
    })
    .await?;
    Ok(Json(v).into_response())
}

pub async fn agents(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let rows = blocking(move || {
        let (dir, _) = open(&app, &id)?;
        Ok(view::agents(&dir.path))
    })
    .await?;
    Ok(Json(json!({"agents": rows})).into_response())
}

pub async fn agent(
    State(app): State<Arc<App>>,
    Path((id, n)): Path<(String, String)>,
) -> ApiResult {
    let v = blocking(move || {
        let n = agent_number(&n)?;
        let (dir, _) = open(&app, &id)?;
        match control::agent_record(&dir, n) {
            Ok(record) => Ok(record),
            // A running agent has no record yet: what its events say.
            Err(e) => view::agents(&dir.path)
                .into_iter()
                .find(|a| a.id == n)
                .map(|a| json!({"row": a, "note": "running: its full record is written when it ends"}))
                .ok_or(ApiError(StatusCode::NOT_FOUND, e)),
        }
    })
    .await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub struct ResultQuery {
    download: Option<String>,
}

pub async fn result(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<ResultQuery>,
) -> ApiResult {
    let id2 = id.clone();
    let bytes = blocking(move || {
        let (dir, info) = open(&app, &id2)?;
        dir.read_result().map_err(|_| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("run {id2} has no result (status: {})", dir.status(&info)),
            )
        })
    })
    .await?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    if q.download.is_some() {
        let disposition = format!("attachment; filename=\"{id}-result.json\"");
        if let Ok(v) = disposition.parse() {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}

pub async fn script(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let text = blocking(move || {
        let (dir, info) = open(&app, &id)?;
        dir.kept_script(&info.script_sha256)
            .or_else(|| std::fs::read_to_string(&info.script_path).ok())
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("run {id} kept no script")))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /api/runs/{id}/events`: every event so far, then each as it is
/// written, as Server-Sent Events (`data:` one JSON event); the stream
/// ends with an `end` event once the run has ended and all is sent.
pub async fn events(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let (dir, _) = {
        let (app, id) = (app.clone(), id.clone());
        blocking(move || open(&app, &id)).await?
    };
    let dir = Arc::new(dir);
    let follower = Arc::new(std::sync::Mutex::new(EventFollower::new(&dir.path)));
    struct Tail {
        dir: Arc<RunDir>,
        follower: Arc<std::sync::Mutex<EventFollower>>,
        pending: std::collections::VecDeque<Value>,
        done: bool,
    }
    let tail = Tail {
        dir,
        follower,
        pending: Default::default(),
        done: false,
    };
    let stream = futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(e) = t.pending.pop_front() {
                return Some((Ok::<_, Infallible>(Event::default().data(e.to_string())), t));
            }
            if t.done {
                return None;
            }
            // Read the status first: events written before the run ended
            // are then all in the file by the read that follows.
            let (dir, follower) = (t.dir.clone(), t.follower.clone());
            let (ended, new) = tokio::task::spawn_blocking(move || {
                let ended = dir
                    .read_info()
                    .map(|i| !matches!(dir.status(&i).as_str(), "running" | "starting"))
                    .unwrap_or(true);
                let new = follower
                    .lock()
                    .map(|mut f| f.read_new())
                    .unwrap_or_default();
                (ended, new)
            })
            .await
            .unwrap_or((true, Vec::new()));
            t.pending.extend(new);
            if ended && t.pending.is_empty() {
                t.done = true;
                return Some((Ok(Event::default().event("end").data("{}")), t));
            }
            if t.pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub async fn stop(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let v = blocking(move || {
        let (dir, info) = open(&app, &id)?;
        if !dir.is_locked() {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("run {id} is not running (status: {})", dir.status(&info)),
            ));
        }
        dir.request_stop()
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(json!({"run_id": id, "message": "asked to pause: no new agents start; running ones may finish"}))
    })
    .await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    /// The person agreed to a run that spends money.
    #[serde(default)]
    confirm: bool,
}

pub async fn resume(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Option<Json<ResumeBody>>,
) -> ApiResult {
    let confirm = body.map(|b| b.0.confirm).unwrap_or(false);
    let v = blocking(move || {
        open(&app, &id)?;
        crate::resume::resume(&app.options, &id, confirm)
    })
    .await?;
    Ok(Json(v).into_response())
}

pub async fn steer(
    State(app): State<Arc<App>>,
    Path((id, n, action)): Path<(String, String, String)>,
) -> ApiResult {
    let op = match action.as_str() {
        "skip" => Op::Skip,
        "retry" => Op::Retry,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no action `{other}`: skip or retry"),
            ));
        }
    };
    let v = blocking(move || {
        let n = agent_number(&n)?;
        let (dir, _) = open(&app, &id)?;
        control::ask(&dir, op, n)
            .map(|message| json!({"run_id": id, "agent": n, "message": message}))
            .map_err(|e| ApiError(StatusCode::CONFLICT, e))
    })
    .await?;
    Ok(Json(v).into_response())
}

/// `POST /api/runs/{id}/stop|resume`.
pub async fn run_action(
    state: State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<ResumeBody>>,
) -> ApiResult {
    match action.as_str() {
        "stop" => stop(state, Path(id)).await,
        "resume" => resume(state, Path(id), body).await,
        other => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no action `{other}`: stop or resume"),
        )),
    }
}

pub(crate) fn error(status: StatusCode, m: String) -> ApiError {
    ApiError(status, m)
}
