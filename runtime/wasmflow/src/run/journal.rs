//! The journal of a run: one JSON line per agent event, and what a resume
//! reads back from it.
//!
//! Lines are `started` (not synced: an agent in flight at a crash runs
//! again anyway), `result` and `failed`, written in batches, each batch
//! made durable with one `fdatasync` before the script sees any of it.
//! The `type` / `key` / `agentId` names follow Claude Code's workflow
//! journal; `key` is ours: `wf1:<content key>:<occurrence>`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backend::{AgentOutput, Usage};

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Record {
    /// An agent started live.
    Started {
        /// Its journal key (content and occurrence).
        key: String,
        /// Its id in that session.
        agent_id: u64,
        /// Its label.
        label: String,
        /// Its phase.
        phase: Option<String>,
        /// Its model alias.
        model: Option<String>,
        /// When (ms since the epoch).
        ts: u64,
    },
    /// An agent ended with an answer.
    Result {
        /// Its journal key.
        key: String,
        /// Its id in that session.
        agent_id: u64,
        /// Its label.
        label: String,
        /// Its phase.
        phase: Option<String>,
        /// Its model alias.
        model: Option<String>,
        /// `text` or `json`.
        kind: String,
        /// The answer (a string, or a JSON value).
        output: Value,
        /// Tokens over all tries.
        usage: Usage,
        /// USD, when priced.
        usd: Option<f64>,
        /// How long it ran.
        duration_ms: u64,
        /// When it ended.
        ts: u64,
    },
    /// An agent was abandoned on request (`wasmflow skip`); a resume runs
    /// it again.
    Skipped {
        /// Its journal key.
        key: String,
        /// Its id in that session.
        agent_id: u64,
        /// Its label.
        label: String,
        /// Who asked.
        by: String,
        /// When.
        ts: u64,
    },
    /// An agent failed terminally (run again on resume).
    Failed {
        /// Its journal key.
        key: String,
        /// Its id in that session.
        agent_id: u64,
        /// Its label.
        label: String,
        /// Why it failed.
        error: String,
        /// Tokens used.
        usage: Usage,
        /// When it ended.
        ts: u64,
    },
}

/// `wf1:<content key>:<occurrence>`: the same call made twice in a run is
/// two agents.
pub fn journal_key(
    prompt: &str,
    options: &Map<String, Value>,
    model: Option<&str>,
    occurrence: u32,
) -> String {
    key_of(&content_of(prompt, options, model), occurrence)
}

/// What identifies a call: the prompt, the resolved model (not the alias
/// the script wrote: a config change that routes an alias elsewhere is a
/// different agent) and the options that change the agent's work.
pub fn content_of(prompt: &str, options: &Map<String, Value>, model: Option<&str>) -> String {
    let mut opts = options.clone();
    opts.insert(
        "model".into(),
        model
            .map(|m| Value::String(m.into()))
            .unwrap_or(Value::Null),
    );
    crate::run::key::content_key(prompt, &opts)
}

/// The key of the `occurrence`-th call with this content.
pub fn key_of(content: &str, occurrence: u32) -> String {
    format!("wf1:{content}:{occurrence}")
}

/// What reading a journal found.
#[derive(Debug, Default)]
pub struct ReadJournal {
    /// The records that parsed, in file order.
    pub records: Vec<Record>,
    /// Lines that could not be read, with their line numbers.
    pub skipped: Vec<String>,
    /// Bytes up to the end of the last complete line: a torn tail after it
    /// is cut before appending.
    pub valid_len: u64,
}

/// Parses journal text; a torn or garbage line is skipped and named, every
/// other line kept.
pub fn parse(text: &[u8]) -> ReadJournal {
    let mut out = ReadJournal::default();
    let complete = match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    out.valid_len = complete as u64;
    if complete < text.len() {
        out.skipped.push(format!(
            "a torn last line ({} bytes, written when the run was killed)",
            text.len() - complete
        ));
    }
    for (i, line) in text[..complete].split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => out.records.push(r),
            Err(e) => out.skipped.push(format!("line {}: {e}", i + 1)),
        }
    }
    out
}

/// A finished agent a resume hands back instead of running it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// Its place in the original completion order.
    pub seq: usize,
    /// The answer.
    pub output: AgentOutput,
    /// Its tokens.
    pub usage: Usage,
    /// Its cost.
    pub usd: Option<f64>,
}

/// Finished agents by journal key. Failed ones are absent: they run again.
#[derive(Debug, Default)]
pub struct Replay {
    hits: HashMap<String, Cached>,
}

impl Replay {
    /// The answers a resume hands back, from a journal's records.
    pub fn from_records(records: &[Record]) -> Replay {
        let mut hits = HashMap::new();
        let mut seq = 0;
        for r in records {
            if let Record::Result {
                key,
                kind,
                output,
                usage,
                usd,
                ..
            } = r
            {
                let output = match (kind.as_str(), output) {
                    ("text", Value::String(s)) => AgentOutput::Text(s.clone()),
                    ("json", v) => AgentOutput::Json(v.clone()),
                    _ => continue,
                };
                hits.entry(key.clone()).or_insert(Cached {
                    seq,
                    output,
                    usage: *usage,
                    usd: *usd,
                });
                seq += 1;
            }
        }
        Replay { hits }
    }

    /// Results available.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    /// No answers to hand back.
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// Takes the cached result for `key`, if the journal has one.
    pub fn take(&mut self, key: &str) -> Option<Cached> {
        self.hits.remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(key: &str, text: &str) -> Record {
        Record::Result {
            key: key.into(),
            agent_id: 1,
            label: "l".into(),
            phase: None,
            model: None,
            kind: "text".into(),
            output: json!(text),
            usage: Usage::new(1, 2),
            usd: None,
            duration_ms: 3,
            ts: 4,
        }
    }

    #[test]
    fn lines_round_trip_with_claude_code_names() {
        let r = result("wf1:ab:0", "hi");
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains(r#""type":"result""#) && line.contains(r#""agentId":1"#));
        assert!(line.contains(r#""durationMs":3"#));
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);
    }

    #[test]
    fn torn_and_garbage_lines_are_skipped_the_rest_kept() {
        let a = serde_json::to_string(&result("k1", "a")).unwrap();
        let b = serde_json::to_string(&result("k2", "b")).unwrap();
        let text = format!("{a}\nnot json\n{b}\n{{\"type\":\"res");
        let read = parse(text.as_bytes());
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.skipped.len(), 2, "{:?}", read.skipped);
        assert_eq!(read.valid_len as usize, text.rfind('\n').unwrap() + 1);
        let mut replay = Replay::from_records(&read.records);
        assert_eq!(replay.take("k2").unwrap().seq, 1);
        assert!(replay.take("k2").is_none());
    }

    #[test]
    fn keys_use_the_resolved_model_and_occurrence() {
        let o = json!({"label": "x", "model": "haiku"});
        let o = o.as_object().unwrap();
        let a = journal_key("p", o, Some("m-1"), 0);
        assert_ne!(a, journal_key("p", o, Some("m-2"), 0));
        assert_ne!(a, journal_key("p", o, Some("m-1"), 1));
        let relabeled = json!({"label": "y", "model": "other-alias"});
        assert_eq!(
            a,
            journal_key("p", relabeled.as_object().unwrap(), Some("m-1"), 0)
        );
    }
}
