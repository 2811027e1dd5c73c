//! Resume from the dashboard: a detached run, never inside `serve`, with
//! backend settings and caps from the current configuration.

use serde_json::{Value, json};
use wasmflow::run::launch;

use crate::Options;
use crate::api::{ApiError, error};
use axum::http::StatusCode;

pub fn resume(options: &Options, id: &str, confirm: bool) -> Result<Value, ApiError> {
    let refuse = |e: String| error(StatusCode::CONFLICT, e);
    let spec = launch::continue_spec(&options.env, id).map_err(|e| refuse(e.to_string()))?;
    let prepared = launch::prepare(spec, &options.env).map_err(|e| refuse(e.to_string()))?;
    let backend = prepared.backend_name.clone();
    let costs = prepared.backends_used().iter().any(|b| b != "sim");
    if costs && !confirm {
        return Err(error(
            StatusCode::PRECONDITION_REQUIRED,
            format!(
                "resuming run {id} starts agents on `{backend}`, which costs money: confirm it (send {{\"confirm\": true}})"
            ),
        ));
    }
    let (dir, _notices) = prepared
        .create_detached()
        .map_err(|e| refuse(e.to_string()))?;
    let child = (options.spawn)(&dir, &options.env).map_err(refuse)?;
    // Reaped on a thread of its own: serve never waits for a run.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(
        json!({"run_id": id, "backend": backend, "message": format!("resumed on {backend} in the background")}),
    )
}
