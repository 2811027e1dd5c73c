//! Resources: the script contract (`wasmflow://contract`, embedded at build
//! time) and each run's status and result
//! (`wasmflow://runs/{id}/status`, `wasmflow://runs/{id}/result`).

use serde_json::{Value, json};

use crate::project::Project;
use crate::read;

/// docs/workflow-api.md, as the binary was built with it.
pub const CONTRACT: &str = include_str!("../../../docs/workflow-api.md");
pub const CONTRACT_URI: &str = "wasmflow://contract";

/// `resources/list`.
pub fn list() -> Value {
    json!({"resources": [{
        "uri": CONTRACT_URI,
        "name": "contract",
        "title": "The wasmflow workflow script contract",
        "description": "How to write a workflow script: globals, agent() options, caps, what throws, resume rules, determinism, examples. Read it before writing a script for workflow_run.",
        "mimeType": "text/markdown",
    }]})
}

/// `resources/templates/list`.
pub fn templates() -> Value {
    json!({"resourceTemplates": [
        {"uriTemplate": "wasmflow://runs/{runId}/status", "name": "run-status", "title": "A run's status",
         "description": "What workflow_status returns for the run.", "mimeType": "application/json"},
        {"uriTemplate": "wasmflow://runs/{runId}/result", "name": "run-result", "title": "A run's result",
         "description": "The run's result as JSON (the whole of it, however big).", "mimeType": "application/json"},
    ]})
}

/// `resources/read` of `uri`: its text and MIME type.
pub fn read(project: &Project, uri: &str) -> Result<(String, &'static str), String> {
    if uri == CONTRACT_URI {
        return Ok((CONTRACT.to_string(), "text/markdown"));
    }
    let rest = uri.strip_prefix("wasmflow://runs/").ok_or_else(|| {
        format!("no resource {uri}: resources/list and resources/templates/list say what there is")
    })?;
    let (id, what) = rest
        .split_once('/')
        .ok_or_else(|| format!("no resource {uri}: run resources end in /status or /result"))?;
    match what {
        "status" => read::status(project, id).map(|v| (v.to_string(), "application/json")),
        "result" => {
            let (dir, info) = read::open(project, id)?;
            let bytes = dir
                .read_result()
                .map_err(|_| format!("run {id} has no result (status: {})", dir.status(&info)))?;
            String::from_utf8(bytes)
                .map(|t| (t, "application/json"))
                .map_err(|e| format!("result.json of run {id} is not UTF-8: {e}"))
        }
        _ => Err(format!(
            "no resource {uri}: run resources end in /status or /result"
        )),
    }
}
