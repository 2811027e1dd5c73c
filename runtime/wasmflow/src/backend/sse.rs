//! Server-sent events, as both HTTP backends stream them: `event:` and
//! `data:` lines, an empty line ending each event (WHATWG HTML §9.2).

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `event:` (empty when the server sent none).
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// Turns arbitrary chunks of bytes into events.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

/// A line longer than this is not SSE from a model API.
const MAX_LINE: usize = 32 << 20;

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&line, &mut out)?;
            } else {
                if self.line.len() >= MAX_LINE {
                    return Err(format!(
                        "an event-stream line exceeds {} MiB",
                        MAX_LINE >> 20
                    ));
                }
                self.line.push(b);
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.current));
            } else {
                self.current = SseEvent::default();
            }
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let text =
            std::str::from_utf8(line).map_err(|_| "the event stream is not UTF-8".to_string())?;
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text, ""),
        };
        match field {
            "event" => self.current.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunks() {
        let mut p = SseParser::default();
        let stream = b"event: ping\ndata: {}\n\n: comment\r\nevent: delta\r\ndata: a\r\ndata: b\r\n\r\ndata: [DONE]\n\n";
        let mut events = Vec::new();
        for chunk in stream.chunks(3) {
            events.extend(p.push(chunk).unwrap());
        }
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "ping".into(),
                    data: "{}".into()
                },
                SseEvent {
                    event: "delta".into(),
                    data: "a\nb".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "[DONE]".into()
                },
            ]
        );
        assert!(p.push(&[0xff, b'\n']).is_err());
    }
}
