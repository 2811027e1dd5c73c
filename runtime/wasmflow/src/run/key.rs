//! Content keys: what identifies an agent call independently of when it ran.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Options that never change what an agent does, so they stay out of the key.
const PRESENTATION_ONLY: &[&str] = &["label", "phase", "stallMs"];

/// Hex SHA-256 over the prompt and the options that change the agent's work.
/// `serde_json::Map` is sorted, so the key does not depend on key order.
pub fn content_key(prompt: &str, options: &Map<String, Value>) -> String {
    let relevant: Map<String, Value> = options
        .iter()
        .filter(|(k, _)| !PRESENTATION_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut h = Sha256::new();
    h.update((prompt.len() as u64).to_le_bytes());
    h.update(prompt.as_bytes());
    h.update(Value::Object(relevant).to_string().as_bytes());
    hex(&h.finalize())
}

/// Hex SHA-256 of some bytes (script hashes in run.json).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_and_phase_do_not_change_the_key() {
        let a = content_key(
            "p",
            &opts(json!({"model": "haiku", "label": "a", "phase": "x"})),
        );
        let b = content_key("p", &opts(json!({"phase": "y", "model": "haiku"})));
        assert_eq!(a, b);
    }

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn prompt_and_work_options_do() {
        let base = content_key("p", &opts(json!({"model": "haiku"})));
        assert_ne!(base, content_key("q", &opts(json!({"model": "haiku"}))));
        assert_ne!(base, content_key("p", &opts(json!({"model": "opus"}))));
    }
}
