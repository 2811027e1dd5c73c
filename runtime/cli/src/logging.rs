//! Logs on stderr: colour only on a terminal (and never with `NO_COLOR`),
//! one event per line whatever a message holds, so a log file or a pipe
//! reads line by line.

use std::io::{IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Installs the subscriber: level from `WASMFLOW_LOG` (default `warn`).
pub fn init() {
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(colour)
        .with_writer(OneLine)
        .init();
}

/// Writes each event to stderr with its inner line breaks escaped.
struct OneLine;

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLineWriter;
    fn make_writer(&'a self) -> OneLineWriter {
        OneLineWriter
    }
}

struct OneLineWriter;

impl Write for OneLineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole event ending in a newline.
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut line = Vec::with_capacity(buf.len() + 8);
        line.extend_from_slice(&escape_breaks(body));
        line.push(b'\n');
        std::io::stderr().lock().write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `\n` and `\r` inside a message, written as the two characters `\n`.
fn escape_breaks(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\r' if text.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\\n");
                i += 1;
            }
            b'\n' | b'\r' => out.extend_from_slice(b"\\n"),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn inner_breaks_are_escaped() {
        assert_eq!(
            super::escape_breaks(b"a\nb\r\nc\rd"),
            b"a\\nb\\nc\\nd".to_vec()
        );
    }
}
