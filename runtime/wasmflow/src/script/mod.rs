//! Reading a workflow script and preparing it for the engine.
//!
//! The body runs as the body of an `async function` in strict mode (so
//! top-level `await` and `return` are legal), not as an ES module. The
//! wrapping keeps every line where the user wrote it, so positions in errors
//! are the user's own.

pub mod bundled;
pub mod catalog;
pub mod check;
pub mod contradiction;
pub mod options;
pub mod saved;
pub mod schema;

use std::path::{Path, PathBuf};

use crate::error::{InputError, RunError, ScriptFailure};
use check::{Analysis, CheckOptions, Finding, Meta, Rejection};

pub use crate::limits::MAX_SCRIPT_BYTES;

/// `meta.name` as a file name: lower case, runs of anything but letters and
/// digits become one `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

const PREFIX: &str = "(async function(){'use strict';";
const SUFFIX: &str = "\n})()";
/// A child of `workflow()`: a function of its own `args`, whose `workflow`
/// throws (one level of nesting only).
const CHILD_PREFIX: &str = "(async function(args, workflow){'use strict';";
const CHILD_SUFFIX: &str = "\n})";

/// A script read from disk, checked, and ready to compile.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file name used in stack traces.
    pub filename: String,
    /// The user's source, unchanged.
    pub source: String,
    /// `meta`, when the script has one.
    pub meta: Option<Meta>,
    /// Findings that did not stop the script (shown on stderr).
    pub warnings: Vec<Finding>,
    /// Models named literally in `agent()` calls.
    pub literal_models: Vec<String>,
    /// What the engine compiles.
    pub wrapped: String,
    export_offset: Option<usize>,
}

impl Script {
    /// Reads `path` and runs the static checks.
    pub fn load(path: &Path, options: CheckOptions) -> Result<Script, RunError> {
        let source = read_source(path)?;
        let filename = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workflow.js".into());
        Script::from_source(path.to_path_buf(), filename, source, options)
    }

    /// Checks and prepares in-memory source (tests, embedders).
    pub fn from_source(
        path: PathBuf,
        filename: String,
        source: String,
        options: CheckOptions,
    ) -> Result<Script, RunError> {
        let Analysis {
            meta,
            export_offset,
            warnings,
            literal_models,
            empty,
        } = analyze_on_a_big_stack(&source, options)?;
        if empty {
            return Err(InputError::EmptyScript { path }.into());
        }
        let wrapped = wrap(&source, export_offset, PREFIX, SUFFIX);
        Ok(Script {
            path,
            filename,
            source,
            meta,
            warnings,
            literal_models,
            wrapped,
            export_offset,
        })
    }

    /// The first line holding `text` as a quoted string literal.
    pub fn line_of_literal(&self, text: &str) -> Option<usize> {
        let quoted = ['\'', '"', '`'].map(|q| format!("{q}{text}{q}"));
        self.source
            .lines()
            .position(|l| quoted.iter().any(|q| l.contains(q.as_str())))
            .map(|i| i + 1)
    }

    /// The name users know the workflow by: `meta.name`, else the file stem.
    pub fn name(&self) -> String {
        match &self.meta {
            Some(m) => m.name.clone(),
            None => self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.filename.clone()),
        }
    }

    /// The body wrapped as a child of `workflow()`.
    pub fn child_source(&self) -> String {
        wrap(&self.source, self.export_offset, CHILD_PREFIX, CHILD_SUFFIX)
    }
}

/// Reads a script file: size and encoding checks.
fn read_source(path: &Path) -> Result<String, InputError> {
    let meta = std::fs::metadata(path).map_err(|e| InputError::ReadScript {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if meta.len() > MAX_SCRIPT_BYTES as u64 {
        return Err(InputError::ScriptTooLarge {
            path: path.to_path_buf(),
            size: meta.len() as usize,
        });
    }
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
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        InputError::NotUtf8 {
            path: path.to_path_buf(),
            line,
            byte: at,
        }
    })
}

/// Stack for the static checks. oxc's parser and our AST walks recurse
/// once per nesting level; the `scripts` fuzz target (under ASan) overflowed
/// the 8 MiB main-thread stack with 2,400 nested arrays, and 10,000 did so
/// in a release build: an abort, not an error. Reserved, not committed:
/// only what a script's nesting uses is touched. Sized for the deepest
/// nesting a script under the size limit can hold.
const CHECK_STACK_BYTES: usize = 1 << 30;

/// [`check::analyze`] on its own thread with [`CHECK_STACK_BYTES`] of stack.
fn analyze_on_a_big_stack(source: &str, options: CheckOptions) -> Result<Analysis, RunError> {
    std::thread::scope(|scope| {
        let checks = std::thread::Builder::new()
            .name("wasmflow-check".into())
            .stack_size(CHECK_STACK_BYTES)
            .spawn_scoped(scope, || check::analyze(source, options))
            .map_err(|e| {
                RunError::Internal(anyhow::Error::new(e).context("starting the static checks"))
            })?;
        match checks.join() {
            Ok(result) => result.map_err(|r| RunError::Script(rejection_failure(r))),
            Err(_) => Err(RunError::Internal(anyhow::anyhow!(
                "the static checks panicked"
            ))),
        }
    })
}

/// A static-check rejection as a script failure (first finding's line).
pub fn rejection_failure(r: Rejection) -> ScriptFailure {
    let line = r.findings.first().map(|f| f.line);
    let message = match r.findings.as_slice() {
        [one] => one.message.clone(),
        many => many
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    };
    ScriptFailure {
        name: r.kind.to_string(),
        message,
        stack: None,
        line,
    }
}

/// Blanks the `export` keyword of `export const meta` (so columns stay) and
/// wraps the body on the same lines.
fn wrap(source: &str, export_offset: Option<usize>, prefix: &str, suffix: &str) -> String {
    let mut body = String::with_capacity(source.len() + prefix.len() + suffix.len());
    body.push_str(prefix);
    // A `#!` line is a syntax error inside a function: blank it, keeping
    // its length so columns stay where they were.
    let hashbang_end = if source.starts_with("#!") {
        source.find('\n').unwrap_or(source.len())
    } else {
        0
    };
    let blanked;
    let source = if hashbang_end > 0 {
        blanked = format!("{}{}", " ".repeat(hashbang_end), &source[hashbang_end..]);
        blanked.as_str()
    } else {
        source
    };
    match export_offset {
        Some(at) if source.get(at..at + 6) == Some("export") => {
            body.push_str(&source[..at]);
            body.push_str("      ");
            body.push_str(&source[at + 6..]);
        }
        _ => body.push_str(source),
    }
    body.push_str(suffix);
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

    fn script(src: &str) -> Script {
        Script::from_source(
            "f.js".into(),
            "f.js".into(),
            src.into(),
            CheckOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn wrap_keeps_lines_and_columns() {
        let w =
            script("export const meta = { name: 'x', description: 'd' }\nconst a = 1\nreturn a\n")
                .wrapped;
        let lines: Vec<&str> = w.lines().collect();
        assert_eq!(
            lines[0],
            format!("{PREFIX}       const meta = {{ name: 'x', description: 'd' }}")
        );
        assert_eq!(lines[1], "const a = 1");
        assert_eq!(lines[2], "return a");
        assert_eq!(lines[4], "})()");
    }

    #[test]
    fn only_the_meta_export_is_blanked() {
        let w = script(
            "export const meta = { name: 'x', description: 'd' }\nconst s = 'export const meta'\n",
        )
        .wrapped;
        assert!(w.contains("'export const meta'"));
    }

    #[test]
    fn a_hashbang_line_is_blanked() {
        let w = script("#!/usr/bin/env wasmflow\nreturn 1\n").wrapped;
        assert!(!w.contains("#!"));
        assert_eq!(w.lines().nth(1), Some("return 1"));
    }

    #[test]
    fn child_wrapping_takes_args_and_workflow() {
        let s = script("return args\n");
        assert!(s.child_source().starts_with(CHILD_PREFIX));
        assert!(s.child_source().ends_with("\n})"));
    }

    #[test]
    fn name_falls_back_to_the_file_stem() {
        let s = Script::from_source(
            "dir/sweep.js".into(),
            "sweep.js".into(),
            "return 1".into(),
            CheckOptions::default(),
        )
        .unwrap();
        assert_eq!(s.name(), "sweep");
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
