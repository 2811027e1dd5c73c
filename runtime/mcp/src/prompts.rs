//! Prompts: every saved and bundled workflow, with one optional `args`
//! text argument, so clients list them as slash commands
//! (`/deep-research <question>`). Getting one gives the model what it
//! needs to run it through the tools.

use std::path::Path;

use serde_json::{Value, json};
use wasmflow::script::catalog;

fn runnable(project: &Path, home: Option<&Path>) -> Vec<catalog::Entry> {
    catalog::entries(project, home)
        .into_iter()
        .filter(|e| !e.shadowed && e.error.is_none())
        .collect()
}

/// `prompts/list`.
pub fn list(project: &Path, home: Option<&Path>) -> Value {
    let prompts: Vec<Value> = runnable(project, home)
        .iter()
        .map(|e| {
            let mut description = e.description.clone().unwrap_or_else(|| format!("Run the {} workflow", e.name));
            if let Some(w) = &e.when_to_use {
                description.push_str(&format!(" (when to use: {w})"));
            }
            json!({
                "name": e.name,
                "title": format!("Run workflow {}", e.name),
                "description": description,
                "arguments": [{"name": "args", "description": "Text the workflow gets as args (e.g. the question)", "required": false}],
            })
        })
        .collect();
    json!({"prompts": prompts})
}

/// `prompts/get`: the message that has the model run the workflow.
pub fn get(
    project: &Path,
    home: Option<&Path>,
    name: &str,
    args: Option<&str>,
) -> Result<Value, String> {
    let entry = runnable(project, home)
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| format!("no workflow `{name}` (prompts/list lists them)"))?;
    let call = match args {
        Some(a) if !a.trim().is_empty() => json!({"name": entry.name, "args": a}),
        _ => json!({"name": entry.name}),
    };
    let phases = if entry.phases.is_empty() {
        String::new()
    } else {
        format!(" Its phases: {}.", entry.phases.join(" → "))
    };
    let text = format!(
        "Run the wasmflow workflow `{}`{}.{phases}\n\nCall the workflow_run tool with {call}. It returns a runId at once; the run goes on in the background. Check on it with workflow_status, then read the final answer with workflow_result (waitSeconds waits for the end). Report the result; if the run failed, say why (workflow_status lists failures).",
        entry.name,
        entry
            .description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
    );
    Ok(json!({
        "description": entry.description,
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
    }))
}
