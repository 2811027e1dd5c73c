//! Structured output: `agent(prompt, { schema })`.
//!
//! Schemas are JSON Schema (draft 2020-12 by default; `$schema` selects
//! draft-07 and others). External `$ref`s are refused: resolving them would
//! let a script make the host read local files or fetch URLs and echo them
//! back in validation errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{Map, Value};

/// Refuses every reference outside the schema itself.
struct NoExternalRefs;

impl Retrieve for NoExternalRefs {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(
            format!("external $ref `{uri}` refused: schemas must be self-contained (use $defs)")
                .into(),
        )
    }
}

/// A compiled schema, shareable across agents.
#[derive(Clone)]
pub struct Schema {
    /// The schema as written.
    pub value: Arc<Value>,
    validator: Arc<Validator>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schema({})", self.value)
    }
}

impl Schema {
    /// Compiles a schema; external `$ref`s are refused.
    pub fn compile(value: &Value) -> Result<Schema, String> {
        let validator = jsonschema::options()
            .with_retriever(NoExternalRefs)
            .build(value)
            .map_err(|e| format!("opts.schema is not a valid JSON Schema: {e}"))?;
        Ok(Schema {
            value: Arc::new(value.clone()),
            validator: Arc::new(validator),
        })
    }

    /// Every violation, as `at /path: message` lines (at most 10).
    pub fn errors(&self, instance: &Value) -> Vec<String> {
        self.validator
            .iter_errors(instance)
            .take(10)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                format!("at {at}: {e}")
            })
            .collect()
    }
}

/// Compiled schemas by their JSON text: a fan-out compiles once.
#[derive(Default)]
pub struct SchemaCache {
    compiled: Mutex<HashMap<String, Schema>>,
}

impl SchemaCache {
    /// The compiled schema for `value`, from the cache.
    pub fn get(&self, value: &Value) -> Result<Schema, String> {
        let key = value.to_string();
        if let Some(s) = self.compiled.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(s);
        }
        let schema = Schema::compile(value)?;
        if let Ok(mut m) = self.compiled.lock()
            && m.len() < 1024
        {
            m.insert(key, schema.clone());
        }
        Ok(schema)
    }
}

/// Reads a text reply as JSON: the whole text, or a fenced ```json block.
pub fn parse_reply(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let start = t.find("```")?;
    let after = &t[start + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.find("```")?;
    serde_json::from_str(body[..end].trim()).ok()
}

/// The follow-up prompt after an invalid reply.
pub fn retry_prompt(original: &str, errors: &[String]) -> String {
    format!("{original}\n\n{}", feedback_prompt(errors))
}

/// What was wrong with the previous reply: the whole prompt of a retry
/// that continues the agent's session.
pub fn feedback_prompt(errors: &[String]) -> String {
    format!(
        "Your previous reply did not match the required JSON Schema:\n- {}\nReply again with only a JSON value that matches the schema.",
        errors.join("\n- ")
    )
}

/// Appended to the prompt of an agent whose backend has no structured
/// output of its own.
pub fn schema_instruction(schema: &Value) -> String {
    format!(
        "\n\nWhen you are done, reply with only a JSON value (no prose, no code fence) that matches this JSON Schema:\n{schema}"
    )
}

/// A value that satisfies common schemas (for the sim backend). `seed`
/// varies strings so different calls give different values.
pub fn sample(schema: &Value, seed: &str) -> Value {
    Sampler { list_items: None }.at(schema, seed, 0, 0)
}

/// [`sample`] with every array holding `items` items (within its
/// `minItems`/`maxItems`), each distinct: what a plan's "typical" dry run
/// assumes of lists a real agent fills.
pub fn sample_lists(schema: &Value, seed: &str, items: usize) -> Value {
    Sampler {
        list_items: Some(items),
    }
    .at(schema, seed, 0, 0)
}

struct Sampler {
    list_items: Option<usize>,
}

impl Sampler {
    /// `variant`: the item's index in its list, so siblings differ.
    fn at(&self, schema: &Value, seed: &str, depth: usize, variant: usize) -> Value {
        let Value::Object(s) = schema else {
            return Value::Null;
        };
        if depth > 16 {
            return Value::Null;
        }
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(Value::Array(options)) = s.get("enum")
            && !options.is_empty()
        {
            return options[variant % options.len()].clone();
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(options)) = s.get(key)
                && let Some(first) = options.first()
            {
                return self.at(first, seed, depth + 1, variant);
            }
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if s.contains_key("properties") => "object",
            _ if s.contains_key("items") => "array",
            _ => "string",
        };
        let int = |key: &str| s.get(key).and_then(Value::as_i64);
        match ty {
            "object" => {
                let mut out = Map::new();
                let props = s.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if let Some(props) = props {
                    for (k, sub) in props {
                        out.insert(
                            k.clone(),
                            self.at(sub, &format!("{seed}.{k}"), depth + 1, variant),
                        );
                    }
                }
                for k in required {
                    out.entry(k.to_string())
                        .or_insert_with(|| Value::String(format!("sim {seed}.{k}")));
                }
                Value::Object(out)
            }
            "array" => {
                let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
                let max = s
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .map_or(usize::MAX, |m| m as usize);
                let n = match self.list_items {
                    None => min.max(1),
                    Some(items) => items.clamp(min, max.max(min)),
                }
                .min(64);
                let items = s.get("items").cloned().unwrap_or(Value::Bool(true));
                Value::Array(
                    (0..n)
                        .map(|i| {
                            // Plain sim replies keep one shape per list.
                            let variant = if self.list_items.is_some() { i } else { 0 };
                            self.at(&items, &format!("{seed}[{i}]"), depth + 1, variant)
                        })
                        .collect(),
                )
            }
            "integer" => {
                let base = int("minimum").unwrap_or(0).max(0);
                let v = base.saturating_add(variant as i64);
                Value::from(match int("maximum") {
                    Some(m) if v > m => base,
                    _ => v,
                })
            }
            "number" => {
                let base = s.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
                let v = base + variant as f64;
                Value::from(match s.get("maximum").and_then(Value::as_f64) {
                    Some(m) if v > m => base,
                    _ => v,
                })
            }
            "boolean" => Value::Bool(variant.is_multiple_of(2)),
            "null" => Value::Null,
            _ => {
                let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
                let mut text = format!("sim {seed}");
                while text.chars().count() < min {
                    text.push('.');
                }
                if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                    text = text.chars().take(max as usize).collect();
                }
                Value::String(text)
            }
        }
    }
}

/// A value that fails `schema` (sim rules with `"invalid": true`).
pub fn invalid_sample(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => Value::from(12345),
        _ => Value::String("(sim) output that does not match the schema".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn external_refs_are_refused() {
        for r in ["file:///etc/passwd", "https://example.com/s.json"] {
            let schema = json!({"$ref": r});
            let e = Schema::compile(&schema).unwrap_err();
            assert!(e.contains("refused"), "{r}: {e}");
            assert!(!e.contains("root:"), "{e}");
        }
        // Without a base URI a relative reference cannot even be formed.
        assert!(Schema::compile(&json!({"$ref": "other.json"})).is_err());
    }

    #[test]
    fn internal_refs_and_drafts_work() {
        let s = Schema::compile(
            &json!({"$defs": {"n": {"type": "integer"}}, "type": "object",
            "properties": {"a": {"$ref": "#/$defs/n"}}, "required": ["a"]}),
        )
        .unwrap();
        assert!(s.errors(&json!({"a": 1})).is_empty());
        assert_eq!(s.errors(&json!({"a": "x"})).len(), 1);
        let d7 = Schema::compile(
            &json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}),
        )
        .unwrap();
        assert!(d7.errors(&json!("ok")).is_empty());
    }

    #[test]
    fn invalid_schemas_are_errors() {
        assert!(Schema::compile(&json!({"type": "no-such-type"})).is_err());
    }

    #[test]
    fn samples_satisfy_their_schemas() {
        let schema = json!({"type": "object", "required": ["files", "count", "kind"],
            "properties": {"files": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                           "count": {"type": "integer", "minimum": 3},
                           "kind": {"enum": ["a", "b"]}, "ok": {"type": "boolean"}}});
        let s = Schema::compile(&schema).unwrap();
        let v = sample(&schema, "k");
        assert!(s.errors(&v).is_empty(), "{v}");
        assert!(!s.errors(&invalid_sample(&schema)).is_empty());
    }

    #[test]
    fn list_samples_hold_distinct_items_within_their_bounds() {
        let schema = json!({"type": "object", "properties": {
            "angles": {"type": "array", "items": {"type": "string"}},
            "few": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 2},
            "many": {"type": "array", "items": {"enum": ["a", "b", "c", "d", "e", "f"]}, "minItems": 7}}});
        let s = Schema::compile(&schema).unwrap();
        let v = sample_lists(&schema, "k", 5);
        assert!(s.errors(&v).is_empty(), "{v}");
        assert_eq!(v["angles"].as_array().unwrap().len(), 5);
        assert_eq!(v["few"], json!([1, 2]));
        assert_eq!(v["many"].as_array().unwrap().len(), 7);
        let angles: std::collections::HashSet<String> = v["angles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(angles.len(), 5);
        // The plain sample is unchanged: one item per list.
        assert_eq!(sample(&schema, "k")["angles"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn replies_in_fences_parse() {
        assert_eq!(
            parse_reply("```json\n{\"a\": 1}\n```"),
            Some(json!({"a": 1}))
        );
        assert_eq!(parse_reply(" [1, 2] "), Some(json!([1, 2])));
        assert_eq!(parse_reply("no json here"), None);
    }
}
