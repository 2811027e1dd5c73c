//! Schemas no agent could ever satisfy, found before any agent is paid.
//!
//! Claude Code pre-checks `opts.schema`: a required key that
//! `additionalProperties: false` forbids, `minimum > maximum`,
//! `minItems > maxItems`, an empty `enum`, a `const` outside its own
//! `enum`… make `agent()` throw instead of asking an agent five times. The
//! check only reports what is certain: a contradiction inside an optional
//! property or in the items of a list that may be empty does not make the
//! whole schema unsatisfiable, so it is not reported.

use serde_json::{Map, Value};

/// Why `schema` can never be satisfied, naming where (a JSON pointer into
/// the schema); `None` when it may be.
pub fn contradiction(schema: &Value) -> Option<String> {
    find(schema, "", 0)
}

/// Why `schema` is not an object schema, as Claude Code's structured output
/// requires; `None` when it is (or may be).
pub fn not_an_object(schema: &Value) -> Option<String> {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    if types.contains(&"object") {
        return None;
    }
    Some(format!(
        "opts.schema describes {} at the top, but structured output is an object: wrap the value, e.g. {{ type: 'object', properties: {{ value: <your schema> }}, required: ['value'] }}",
        types
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(" or ")
    ))
}

fn find(schema: &Value, path: &str, depth: usize) -> Option<String> {
    let Value::Object(s) = schema else {
        return match schema {
            Value::Bool(false) => Some(format!("{} is `false`: nothing matches it", at(path))),
            _ => None,
        };
    };
    if depth > 64 {
        return None;
    }
    if let Some(found) = here(s, path) {
        return Some(found);
    }
    // Required properties must be present: their schemas must hold.
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = s.get("properties").and_then(Value::as_object)
        && only(s, &["object"])
    {
        for key in &required {
            if let Some(sub) = props.get(*key)
                && let Some(found) = find(
                    sub,
                    &format!("{path}/properties/{}", escape(key)),
                    depth + 1,
                )
            {
                return Some(found);
            }
        }
    }
    // A list that must hold an item: that item's schema must hold.
    let min_items = s.get("minItems").and_then(Value::as_u64).unwrap_or(0);
    if min_items > 0
        && only(s, &["array"])
        && let Some(items @ Value::Object(_)) = s.get("items")
        && let Some(found) = find(items, &format!("{path}/items"), depth + 1)
    {
        return Some(found);
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        for (i, sub) in all.iter().enumerate() {
            if let Some(found) = find(sub, &format!("{path}/allOf/{i}"), depth + 1) {
                return Some(found);
            }
        }
    }
    None
}

/// Whether `type` restricts values to `kinds` alone: keywords of one kind
/// (bounds of numbers, of lists, …) only bind values of that kind, so only
/// then can they contradict.
fn only(s: &Map<String, Value>, kinds: &[&str]) -> bool {
    match s.get("type") {
        Some(Value::String(t)) => kinds.contains(&t.as_str()),
        Some(Value::Array(ts)) => {
            !ts.is_empty()
                && ts
                    .iter()
                    .all(|t| t.as_str().is_some_and(|t| kinds.contains(&t)))
        }
        _ => false,
    }
}

/// Contradictions among one schema object's own keywords.
fn here(s: &Map<String, Value>, path: &str) -> Option<String> {
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let count = |k: &str| s.get(k).and_then(Value::as_u64);
    if let Some(Value::Array(options)) = s.get("enum") {
        if options.is_empty() {
            return Some(format!(
                "{}: `enum` is empty, so no value matches",
                at(path)
            ));
        }
        if let Some(c) = s.get("const")
            && !options.contains(c)
        {
            return Some(format!(
                "{}: `const` {c} is not one of its own `enum` values",
                at(path)
            ));
        }
    }
    // Numbers: the lowest allowed value above the highest.
    let low = match (num("minimum"), num("exclusiveMinimum")) {
        (Some(m), Some(x)) if x >= m => Some((x, true)),
        (Some(m), _) => Some((m, false)),
        (None, Some(x)) => Some((x, true)),
        (None, None) => None,
    };
    let high = match (num("maximum"), num("exclusiveMaximum")) {
        (Some(m), Some(x)) if x <= m => Some((x, true)),
        (Some(m), _) => Some((m, false)),
        (None, Some(x)) => Some((x, true)),
        (None, None) => None,
    };
    if let (Some((lo, lo_ex)), Some((hi, hi_ex))) = (low, high)
        && only(s, &["integer", "number"])
        && (lo > hi || (lo == hi && (lo_ex || hi_ex)))
    {
        let name = |ex: bool, min: bool| match (ex, min) {
            (true, true) => "exclusiveMinimum",
            (false, true) => "minimum",
            (true, false) => "exclusiveMaximum",
            (false, false) => "maximum",
        };
        return Some(format!(
            "{}: {} {lo} and {} {hi} leave no number",
            at(path),
            name(lo_ex, true),
            name(hi_ex, false)
        ));
    }
    for (min, max, kind) in [
        ("minItems", "maxItems", "array"),
        ("minLength", "maxLength", "string"),
        ("minProperties", "maxProperties", "object"),
    ] {
        if let (Some(lo), Some(hi)) = (count(min), count(max))
            && only(s, &[kind])
            && lo > hi
        {
            return Some(format!("{}: {min} {lo} > {max} {hi}", at(path)));
        }
    }
    if !only(s, &["object"]) {
        return None;
    }
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let props = s.get("properties").and_then(Value::as_object);
    let patterns = s
        .get("patternProperties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    for key in &required {
        match props.and_then(|p| p.get(*key)) {
            Some(Value::Bool(false)) => {
                return Some(format!(
                    "{}: required key `{key}` has the schema `false`",
                    at(path)
                ));
            }
            Some(_) => {}
            None if s.get("additionalProperties") == Some(&Value::Bool(false)) && !patterns => {
                return Some(format!(
                    "{}: required key `{key}` is not among `properties`, and `additionalProperties: false` forbids it",
                    at(path)
                ));
            }
            None => {}
        }
    }
    if let Some(max) = count("maxProperties") {
        let mut distinct = required.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() as u64 > max {
            return Some(format!(
                "{}: {} required keys but maxProperties {max}",
                at(path),
                distinct.len()
            ));
        }
    }
    None
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the schema".to_string()
    } else {
        format!("at {path}")
    }
}

/// A key as a JSON-pointer token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_contradiction_is_named_with_its_path() {
        let cases = [
            (
                json!({"type": "object", "required": ["x"], "properties": {"a": {}}, "additionalProperties": false}),
                "required key `x`",
            ),
            (
                json!({"type": "integer", "minimum": 5, "maximum": 3}),
                "minimum 5 and maximum 3",
            ),
            (
                json!({"type": "number", "exclusiveMinimum": 2, "maximum": 2}),
                "exclusiveMinimum 2",
            ),
            (
                json!({"type": "array", "minItems": 4, "maxItems": 2}),
                "minItems 4 > maxItems 2",
            ),
            (json!({"enum": []}), "`enum` is empty"),
            (
                json!({"const": "c", "enum": ["a", "b"]}),
                "not one of its own `enum`",
            ),
            (
                json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 9, "maximum": 1}}}),
                "at /properties/n",
            ),
            (
                json!({"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 3, "maxLength": 1}}),
                "at /items",
            ),
            (
                json!({"allOf": [{"type": "object"}, {"enum": []}]}),
                "at /allOf/1",
            ),
            (
                json!({"type": ["integer", "number"], "exclusiveMaximum": 1, "minimum": 1}),
                "leave no number",
            ),
        ];
        for (schema, needle) in cases {
            let found = contradiction(&schema).unwrap_or_else(|| panic!("missed: {schema}"));
            assert!(found.contains(needle), "{schema}: {found}");
        }
    }

    #[test]
    fn what_may_hold_is_not_reported() {
        for schema in [
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 9, "maximum": 1}}}),
            json!({"type": "array", "items": {"enum": []}}),
            json!({"type": "integer", "minimum": 3, "maximum": 3}),
            json!({"type": "object", "required": ["x"], "patternProperties": {"^x": {}}, "additionalProperties": false}),
            json!({"anyOf": [{"enum": []}, {"type": "string"}]}),
            json!({"const": "a", "enum": ["a"]}),
            // Bounds bind only their own kind of value: a string passes.
            json!({"minimum": 5, "maximum": 4}),
            json!({"type": ["integer", "string"], "minimum": 5, "maximum": 4}),
            json!({"required": ["x"], "additionalProperties": false}),
        ] {
            assert_eq!(contradiction(&schema), None, "{schema}");
        }
    }

    #[test]
    fn only_object_schemas_are_structured_output() {
        assert!(
            not_an_object(&json!({"type": "string"}))
                .unwrap()
                .contains("wrap")
        );
        assert!(not_an_object(&json!({"type": ["array", "null"]})).is_some());
        assert!(not_an_object(&json!({"type": "object"})).is_none());
        assert!(not_an_object(&json!({"type": ["object", "null"]})).is_none());
        assert!(not_an_object(&json!({"properties": {}})).is_none());
    }
}
