//! Reading a workflow script and preparing it for the engine.
//!
//! The body runs as the body of an `async function` in strict mode (so
//! top-level `await` and `return` are legal), not as an ES module. The
//! wrapping keeps every line where the user wrote it, so positions in errors
//! are the user's own.

use std::path::{Path, PathBuf};

use crate::error::InputError;

/// Largest script accepted (the contract's limit).
pub const MAX_SCRIPT_BYTES: usize = 512 * 1024;

const PREFIX: &str = "(async function(){'use strict';";
const SUFFIX: &str = "\n})()";

/// A script read from disk, checked, and ready to compile.
#[derive(Debug, Clone)]
pub struct Script {
    pub path: PathBuf,
    /// The file name used in stack traces.
    pub filename: String,
    /// The user's source, unchanged.
    pub source: String,
    /// What the engine compiles.
    pub wrapped: String,
}

impl Script {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Script, InputError> {
        let bytes = std::fs::read(path).map_err(|e| InputError::ReadScript {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if bytes.len() > MAX_SCRIPT_BYTES {
            return Err(InputError::ScriptTooLarge {
                path: path.to_path_buf(),
                size: bytes.len(),
            });
        }
        let source = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            InputError::NotUtf8 {
                path: path.to_path_buf(),
                line,
                byte: at,
            }
        })?;
        let filename = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workflow.js".into());
        Ok(Script::from_source(path.to_path_buf(), filename, source))
    }

    /// Prepares in-memory source (tests, embedders).
    pub fn from_source(path: PathBuf, filename: String, source: String) -> Script {
        let wrapped = wrap(&source);
        Script {
            path,
            filename,
            source,
            wrapped,
        }
    }
}

/// Drops `export` from `export const meta` (blanked, so columns stay) and
/// wraps the body in an async strict-mode function on the same lines.
pub fn wrap(source: &str) -> String {
    let mut body = String::with_capacity(source.len() + PREFIX.len() + SUFFIX.len());
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    // A `#!` line would be a syntax error inside the function: blank it.
    let source_owned;
    let source = if source.starts_with("#!") {
        let end = source.find('\n').unwrap_or(source.len());
        source_owned = format!("{}{}", " ".repeat(end), &source[end..]);
        source_owned.as_str()
    } else {
        source
    };
    body.push_str(PREFIX);
    let mut done = false;
    for line in source.split_inclusive('\n') {
        if !done {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix("export")
                && rest.starts_with(char::is_whitespace)
                && rest.trim_start().starts_with("const meta")
            {
                let indent = line.len() - trimmed.len();
                body.push_str(&line[..indent]);
                body.push_str("      ");
                body.push_str(rest);
                done = true;
                continue;
            }
        }
        body.push_str(line);
    }
    body.push_str(SUFFIX);
    body
}

/// Finds `file:LINE:COL` for `filename` in a QuickJS stack trace.
pub fn line_in_stack(stack: &str, filename: &str) -> Option<(u32, u32)> {
    let needle = format!("{filename}:");
    let at = stack.find(&needle)? + needle.len();
    let rest = &stack[at..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let line = parts.next()?.parse().ok()?;
    let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    Some((line, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_lines_and_columns() {
        let src = "export const meta = { name: 'x' }\nconst a = 1\nreturn a\n";
        let w = wrap(src);
        assert!(w.starts_with(PREFIX));
        let lines: Vec<&str> = w.lines().collect();
        assert_eq!(
            lines[0],
            format!("{PREFIX}       const meta = {{ name: 'x' }}")
        );
        assert_eq!(lines[1], "const a = 1");
        assert_eq!(lines[2], "return a");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "})()");
    }

    #[test]
    fn only_the_meta_export_is_dropped() {
        let w = wrap("const s = 'export const meta'\nexport const other = 1\n");
        assert!(w.contains("export const other"));
    }

    #[test]
    fn shebang_is_blanked() {
        let w = wrap("#!/usr/bin/env wasmflow\nreturn 1\n");
        assert!(!w.contains("#!"));
        assert_eq!(w.lines().nth(1), Some("return 1"));
    }

    #[test]
    fn finds_lines_in_stacks() {
        assert_eq!(
            line_in_stack("    at <anonymous> (flow.js:40:11)\n", "flow.js"),
            Some((40, 11))
        );
        assert_eq!(line_in_stack("    at flow.js:3\n", "flow.js"), Some((3, 0)));
        assert_eq!(line_in_stack("    at other.js:3\n", "flow.js"), None);
    }
}
