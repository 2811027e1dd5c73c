//! Agent transcripts: the turns, tool calls and results of each agent
//! that used tools, kept in the run directory (`transcripts/<id>.jsonl`,
//! one JSON object per line) for `wasmflow show <run> --agent N` and the
//! dashboard. Bounded: each text at most [`MAX_TEXT`] bytes, each agent's
//! file at most [`MAX_FILE`].

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::run::run_dir::RunDir;

/// Longest text kept of one prompt, reply, tool input or result.
pub const MAX_TEXT: usize = 8 << 10;
/// Most bytes one agent's transcript grows to.
pub const MAX_FILE: u64 = 2 << 20;

/// Where a run's transcripts go; nowhere until the run directory is known
/// (a run without a journal keeps none).
#[derive(Clone, Default)]
pub struct Transcripts(Arc<Mutex<Option<cap_std::fs::Dir>>>);

impl Transcripts {
    /// Sends transcripts to `dir`'s `transcripts/` folder (made when the
    /// first agent with tools starts).
    pub fn attach(&self, dir: &RunDir) -> std::io::Result<()> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir.handle()?);
        Ok(())
    }

    /// A writer for one try of one agent.
    pub fn agent(&self, id: u64, attempt: u32) -> Transcript {
        let file = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|d| RunDir::subdir_of(d, "transcripts").ok())
            .and_then(|d| RunDir::append_in(&d, &format!("{id}.jsonl")).ok());
        let written = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Transcript {
            file,
            attempt,
            written,
        }
    }
}

/// One agent's transcript, appended to as it goes.
pub struct Transcript {
    file: Option<std::fs::File>,
    attempt: u32,
    written: u64,
}

impl Transcript {
    /// A transcript that keeps nothing.
    pub fn none() -> Transcript {
        Transcript {
            file: None,
            attempt: 0,
            written: 0,
        }
    }

    /// Appends one entry (`kind` plus `fields`), with the try and time.
    pub fn record(&mut self, kind: &str, mut fields: Value) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        fields["kind"] = json!(kind);
        fields["attempt"] = json!(self.attempt);
        fields["ts"] = json!(crate::run::run_dir::now_ms());
        let mut line = fields.to_string();
        line.push('\n');
        if self.written + line.len() as u64 > MAX_FILE {
            let note = format!(
                "{}\n",
                json!({"kind": "truncated", "attempt": self.attempt, "text": format!("the transcript reached its {MAX_FILE}-byte bound; later turns are not kept")})
            );
            let _ = file.write_all(note.as_bytes());
            self.file = None;
            return;
        }
        if file.write_all(line.as_bytes()).is_ok() {
            self.written += line.len() as u64;
        }
    }
}

impl Transcript {
    /// The model's reply of one turn.
    pub fn reply(&mut self, turn: u32, text: &str, usage: crate::backend::Usage) {
        self.record(
            "assistant",
            json!({"turn": turn, "text": bounded(text), "usage": usage}),
        );
    }

    /// One turn's tool calls and what each gave back.
    pub fn calls(
        &mut self,
        turn: u32,
        calls: &[crate::tools::ToolCall],
        results: &[crate::tools::ToolOutput],
    ) {
        for (call, out) in calls.iter().zip(results) {
            self.record(
                "tool_call",
                json!({"turn": turn, "id": call.id, "name": call.name, "input": bounded(&call.arguments)}),
            );
            self.record(
                "tool_result",
                json!({"turn": turn, "id": call.id, "name": call.name, "is_error": out.is_error, "text": bounded(&out.text)}),
            );
        }
    }

    /// How the try ended.
    pub fn end(&mut self, result: &crate::backend::AgentResult) {
        match result {
            Ok(reply) => self.record("end", json!({"ok": true, "usage": reply.usage})),
            Err(f) => self.record(
                "end",
                json!({"ok": false, "reason": bounded(&f.reason), "usage": f.usage}),
            ),
        }
    }
}

/// `text`, at most [`MAX_TEXT`] bytes, cut on a character boundary with a
/// note of the whole length.
pub fn bounded(text: &str) -> Value {
    if text.len() <= MAX_TEXT {
        return json!(text);
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    json!(format!("{}… [{} bytes in all]", &text[..end], text.len()))
}

/// An agent's transcript entries, oldest first (empty when it kept none).
pub fn read(dir: &RunDir, agent: u64) -> Vec<Value> {
    let Ok(mut f) = dir.open_file(&format!("transcripts/{agent}.jsonl")) else {
        return Vec::new();
    };
    let mut bytes = Vec::new();
    if std::io::Read::read_to_end(&mut f, &mut bytes).is_err() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_texts_and_files() {
        let long = "é".repeat(MAX_TEXT);
        let b = bounded(&long);
        let b = b.as_str().unwrap();
        assert!(b.len() < MAX_TEXT + 40 && b.ends_with(&format!("[{} bytes in all]", long.len())));
        let root = std::env::temp_dir().join(format!("wasmflow-transcript-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = RunDir::create(&root, "r1").unwrap();
        let t = Transcripts::default();
        // Before the run directory is known: nothing kept, nothing fails.
        t.agent(1, 1).record("assistant", json!({"text": "lost"}));
        t.attach(&dir).unwrap();
        let mut w = t.agent(1, 2);
        w.record("assistant", json!({"text": "hello"}));
        w.record("tool_call", json!({"name": "mcp__fs__read_file"}));
        let entries = read(&dir, 1);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["kind"], "assistant");
        assert_eq!(entries[1]["attempt"], 2);
        let mut big = t.agent(2, 1);
        for _ in 0..(MAX_FILE / MAX_TEXT as u64 + 2) {
            big.record(
                "tool_result",
                json!({"text": bounded(&"x".repeat(MAX_TEXT))}),
            );
        }
        let entries = read(&dir, 2);
        assert_eq!(entries.last().unwrap()["kind"], "truncated");
        let size = std::fs::metadata(dir.path.join("transcripts/2.jsonl"))
            .unwrap()
            .len();
        assert!(size <= MAX_FILE + 200, "{size}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
