//! The tools' names, descriptions and input schemas, and the inputs as
//! types: an unknown property is refused when a call is read.

use serde::Deserialize;
use serde_json::{Value, json};

/// `workflow_run`: Claude Code's own `Workflow` tool input, plus `backend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunInput {
    pub script: Option<String>,
    pub name: Option<String>,
    pub script_path: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub args: Option<Value>,
    pub resume_from_run_id: Option<String>,
    pub backend: Option<String>,
}

/// `workflow_plan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanInput {
    pub script: Option<String>,
    pub name: Option<String>,
    pub script_path: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub args: Option<Value>,
    pub backend: Option<String>,
}

/// `workflow_status`, `workflow_stop`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunIdInput {
    pub run_id: String,
}

/// `workflow_result`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResultInput {
    pub run_id: String,
    pub wait_seconds: Option<u64>,
    pub offset: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// `workflow_agent`, `workflow_skip`, `workflow_retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentInput {
    pub run_id: String,
    /// A number, or a label only one agent has.
    pub agent: Value,
}

/// `workflow_list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// A field that is present is `Some`, even when it holds `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Reads a call's arguments as `T`, or says what is wrong with them.
pub fn read<T: for<'de> Deserialize<'de>>(tool: &str, args: Value) -> Result<T, String> {
    serde_json::from_value(args).map_err(|e| {
        format!("{tool}: bad input: {e}; the tool's input schema (tools/list) lists what it takes")
    })
}

/// Longest a `workflow_result` call waits.
pub const MAX_WAIT_SECONDS: u64 = 1800;

fn target_properties() -> serde_json::Map<String, Value> {
    props(json!({
        "script": {"type": "string", "description": "The workflow script (JavaScript; its contract is the wasmflow://contract resource). It is saved as .wasmflow/scripts/<sha256>.js in the project and that path is returned: edit it and pass scriptPath to iterate."},
        "name": {"type": "string", "description": "A saved or bundled workflow (workflow_list lists them)."},
        "scriptPath": {"type": "string", "description": "A .js script or .wasm compiled workflow inside the project, relative to it."},
        "args": {"description": "The value the script sees as `args`: any JSON. A string that starts with { or [ is read as JSON."},
        "backend": {"type": "string", "description": "The agent backend, among those the user allows (default: the first allowed). Every response names the one used."}
    }))
}

fn object(properties: serde_json::Map<String, Value>, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn props(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Every tool, as `tools/list` shows it.
pub fn list() -> Vec<Value> {
    let run_id =
        json!({"type": "string", "description": "The run's id (workflow_run returned it)."});
    let agent = json!({"type": ["integer", "string"], "description": "The agent's number, or a label only one agent has."});
    let mut run = target_properties();
    run.insert(
        "resumeFromRunId".into(),
        json!({"type": "string", "description": "Continue this run: agents it finished are not run again (not paid twice). Without script, name or scriptPath it runs the run's own script (as the file reads now); its args unless args is given."}),
    );
    let ro = json!({"readOnlyHint": true, "openWorldHint": false});
    let tool = |name: &str, title: &str, description: &str, schema: Value, annotations: Value| json!({"name": name, "title": title, "description": description, "inputSchema": schema, "annotations": annotations});
    vec![
        tool(
            "workflow_run",
            "Run a workflow",
            "Start a workflow script in the background and return at once with its runId (status async_launched). The script orchestrates many agents (fan-out, checks, votes, pipelines); only its final result comes back, through workflow_result. The script is checked first: a refused script is an error naming its line, and nothing starts.",
            object(run, &[]),
            json!({"readOnlyHint": false, "destructiveHint": false, "openWorldHint": true}),
        ),
        tool(
            "workflow_status",
            "Status of a run",
            "A run's state: status, phases with agent counts, running agents, tokens, cost, elapsed time, the last log lines and failures.",
            object(props(json!({"runId": run_id})), &["runId"]),
            ro.clone(),
        ),
        tool(
            "workflow_result",
            "Result of a run",
            "A finished run's result: {status, result, summary} when it fits; else pages of its JSON text ({total_bytes, offset, next_offset, data}: call again with offset = next_offset). waitSeconds waits for the run to end first (progress notifications keep the call alive).",
            object(
                props(json!({
                    "runId": run_id,
                    "waitSeconds": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "description": "Wait up to this long for the run to end."},
                    "offset": {"type": "integer", "minimum": 0, "description": "Byte offset into the result's JSON text (a next_offset a page gave)."},
                    "maxBytes": {"type": "integer", "minimum": 1, "description": "Largest page, bytes."}
                })),
                &["runId"],
            ),
            ro.clone(),
        ),
        tool(
            "workflow_stop",
            "Stop a run",
            "Pause a running run: no new agents start; running ones may finish. workflow_run with resumeFromRunId continues it without paying again for finished agents.",
            object(props(json!({"runId": run_id})), &["runId"]),
            json!({"readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false}),
        ),
        tool(
            "workflow_skip",
            "Skip an agent",
            "A running or queued agent of a running run ends now with null (the script goes on as if it had failed).",
            object(
                props(json!({"runId": run_id, "agent": agent})),
                &["runId", "agent"],
            ),
            json!({"readOnlyHint": false, "destructiveHint": true, "openWorldHint": false}),
        ),
        tool(
            "workflow_retry",
            "Retry an agent",
            "A running agent of a running run starts again (a failed one is retried by resuming the run).",
            object(
                props(json!({"runId": run_id, "agent": agent})),
                &["runId", "agent"],
            ),
            json!({"readOnlyHint": false, "destructiveHint": false, "openWorldHint": true}),
        ),
        tool(
            "workflow_agent",
            "One agent of a run",
            "One agent's record: prompt, options, model, tries, output, usage, cost, timing, failure.",
            object(
                props(json!({"runId": run_id, "agent": agent})),
                &["runId", "agent"],
            ),
            ro.clone(),
        ),
        tool(
            "workflow_list",
            "List workflows",
            "The saved and bundled workflows workflow_run's name finds, with their description, when to use them and phases.",
            object(serde_json::Map::new(), &[]),
            ro.clone(),
        ),
        tool(
            "workflow_plan",
            "Estimate a workflow",
            "What a run would start (agents by phase and model, tokens, cost), from a dry run on simulated agents. Nothing is sent to a backend.",
            object(target_properties(), &[]),
            ro,
        ),
    ]
}
