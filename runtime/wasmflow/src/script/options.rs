//! The options of `agent(prompt, opts)`: which exist, their types, and what
//! happens to ones we do not know.

use serde_json::{Map, Value};

/// Every option Claude Code's `agent()` accepts (docs/workflow-api.md; a
/// test keeps that page naming each).
pub const KNOWN: &[&str] = &[
    "label",
    "phase",
    "schema",
    "model",
    "effort",
    "agentType",
    "isolation",
    "disallowedTools",
    "bashCommandClamp",
    "stallMs",
    // A wasmflow extension: the HTTP backends' tool loop (Claude Code's
    // own agents take their turn limit from Claude Code).
    "maxTurns",
    // A wasmflow extension: Anthropic server tools for this agent.
    "tools",
];

const EFFORTS: &[&str] = &["low", "medium", "high", "xhigh", "max"];

/// Checks the types of known options; returns the unknown option names.
pub fn check(options: &Map<String, Value>) -> Result<Vec<String>, String> {
    let mut unknown = Vec::new();
    for (key, value) in options {
        let ok = match key.as_str() {
            "label" | "phase" | "model" | "agentType" => value.is_string() || value.is_null(),
            "schema" => value.is_object() || value.is_boolean(),
            "effort" => value.is_null() || value.as_str().is_some_and(|e| EFFORTS.contains(&e)),
            "isolation" => value.is_null() || value.as_str() == Some("worktree"),
            "disallowedTools" => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            "bashCommandClamp" => value.is_number() || value.is_boolean() || value.is_string(),
            "stallMs" => value.as_f64().is_some_and(|n| n > 0.0),
            "maxTurns" => value.as_u64().is_some_and(|n| n >= 1),
            "tools" => value.as_array().is_some_and(|a| {
                a.iter().all(|t| {
                    t.as_str()
                        .is_some_and(|t| crate::backend::anthropic::SERVER_TOOLS.contains(&t))
                })
            }),
            _ => {
                unknown.push(key.clone());
                true
            }
        };
        if !ok {
            return Err(format!("agent(): {}", expected(key, value)));
        }
    }
    Ok(unknown)
}

fn expected(key: &str, value: &Value) -> String {
    let what = match key {
        "schema" => "a JSON Schema object".to_string(),
        "effort" => format!("one of {}", EFFORTS.join(", ")),
        "isolation" => "'worktree'".to_string(),
        "disallowedTools" => "an array of tool names".to_string(),
        "stallMs" => "a positive number of milliseconds".to_string(),
        "maxTurns" => "a whole number of model replies, at least 1".to_string(),
        "tools" => format!(
            "a list of server tools ({})",
            crate::backend::anthropic::SERVER_TOOLS.join(", ")
        ),
        "bashCommandClamp" => "a number, boolean or string".to_string(),
        _ => "a string".to_string(),
    };
    format!("opts.{key} must be {what}, got {value}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn known_options_are_type_checked() {
        assert!(check(&opts(json!({"label": "a", "effort": "high", "disallowedTools": ["Bash"], "stallMs": 5000}))).unwrap().is_empty());
        assert!(
            check(&opts(json!({"effort": "extreme"})))
                .unwrap_err()
                .contains("opts.effort")
        );
        assert!(
            check(&opts(json!({"label": 3})))
                .unwrap_err()
                .contains("opts.label must be a string")
        );
        assert!(check(&opts(json!({"isolation": "container"}))).is_err());
    }

    #[test]
    fn unknown_options_are_returned() {
        assert_eq!(
            check(&opts(json!({"temperature": 0.2, "label": "x"}))).unwrap(),
            ["temperature"]
        );
    }
}
