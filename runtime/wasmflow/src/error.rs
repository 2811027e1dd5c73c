//! Errors, and the exit codes they map to.

use std::path::PathBuf;

use serde::Serialize;

/// Process exit codes (documented in README.md).
pub mod exit {
    /// The workflow finished and printed its result.
    pub const OK: i32 = 0;
    /// The script failed: it threw, had a syntax error, or deadlocked.
    pub const SCRIPT_ERROR: i32 = 1;
    /// Bad usage or bad input: flags, files, args, rules.
    pub const USAGE: i32 = 2;
    /// A limit ended the run: CPU, memory, wall clock, or the circuit breaker.
    pub const LIMIT: i32 = 3;
    /// The run was paused (Ctrl-C or `wasmflow stop`); it can be resumed.
    pub const PAUSED: i32 = 130;
    /// wasmflow itself failed (engine or I/O); a bug or a broken install.
    pub const INTERNAL: i32 = 70;
}

/// Input the user gave us that we cannot use.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The script file cannot be read.
    #[error("cannot read the script {path}: {reason}")]
    ReadScript {
        /// The script's path.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// The script is over the contract's size limit.
    #[error(
        "the script {path} is {size} bytes; scripts may be at most {} bytes (512 KiB): move data into args or agent prompts",
        crate::limits::MAX_SCRIPT_BYTES
    )]
    ScriptTooLarge {
        /// The script's path.
        path: PathBuf,
        /// Its size in bytes.
        size: usize,
    },
    /// The script holds no statement.
    #[error(
        "the script is empty: {path} holds no statement (only white space or comments); write the workflow, e.g. `return await agent('…')`"
    )]
    EmptyScript {
        /// The script's path.
        path: PathBuf,
    },
    /// The script is not UTF-8.
    #[error(
        "the script {path} is not UTF-8 text (invalid byte at offset {byte}, line {line}): save it as UTF-8"
    )]
    NotUtf8 {
        /// The script's path.
        path: PathBuf,
        /// Line of the first invalid byte (from 1).
        line: usize,
        /// Offset of the first invalid byte.
        byte: usize,
    },
    /// `--args` is not JSON.
    #[error("--args is not valid JSON ({reason}); quote a plain string as '\"text\"'")]
    ArgsJson {
        /// The parser's message.
        reason: String,
    },
    /// `--args-file` cannot be read.
    #[error("cannot read --args-file {path}: {reason}")]
    ArgsFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// `--args-file` is not JSON.
    #[error("--args-file {path} is not valid JSON: {reason}")]
    ArgsFileJson {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A config file is unreadable or wrong.
    #[error("config {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// A sim rules file is unreadable or wrong.
    #[error("sim rules {path}: {reason}")]
    SimRules {
        /// The rules file.
        path: PathBuf,
        /// What is wrong, naming the rule.
        reason: String,
    },
    /// An output file cannot be written.
    #[error("cannot write {what} {path}: {reason}")]
    Output {
        /// What the file is for (`the events file`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// Anything else, with a message that names the input and the fix.
    #[error("{0}")]
    Invalid(String),
}

/// A JavaScript error from the script, positioned in the user's file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScriptFailure {
    /// Error class (`TypeError`, `SyntaxError`, `Deadlock`, ...).
    pub name: String,
    /// The error message.
    pub message: String,
    /// The JavaScript stack, `at f (flow.js:40:5)` style.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Line in the user's script, when the stack names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

impl std::fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Which bound ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// A slice of script code used its whole fuel (`--cpu-limit`).
    Cpu,
    /// The guest reached `--memory-limit`.
    Memory,
    /// The run reached `--timeout`.
    WallClock,
    /// Consecutive quota or auth failures: the backend cannot serve agents.
    CircuitBreaker,
    /// The script's result is larger than `--max-result`.
    ResultSize,
    /// The script's result nests deeper than the host reads (128 levels).
    ResultDepth,
}

/// Why a run did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad input from the user (exit 2).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The script threw, did not compile, or deadlocked (exit 1).
    #[error("script failed: {0}")]
    Script(ScriptFailure),
    /// A limit ended the run (exit 3).
    #[error("{message}")]
    Limit {
        /// Which limit.
        kind: LimitKind,
        /// What happened and which flag raises the limit.
        message: String,
    },
    /// wasmflow itself failed: a bug or a broken install (exit 70).
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
    /// Ctrl-C or `wasmflow stop`: finished agents are journaled.
    #[error("{message}")]
    Paused {
        /// How to resume.
        message: String,
    },
}

impl RunError {
    /// The run status this error gives (`--json` and the events file).
    pub fn status(&self) -> &'static str {
        match self {
            RunError::Script(_) => "script_error",
            RunError::Limit { .. } => "limit",
            RunError::Input(_) => "bad_input",
            RunError::Internal(_) => "internal_error",
            RunError::Paused { .. } => "paused",
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Input(_) => exit::USAGE,
            RunError::Script(_) => exit::SCRIPT_ERROR,
            RunError::Limit { .. } => exit::LIMIT,
            RunError::Internal(_) => exit::INTERNAL,
            RunError::Paused { .. } => exit::PAUSED,
        }
    }
}

impl From<anyhow::Error> for RunError {
    fn from(e: anyhow::Error) -> Self {
        RunError::Internal(e)
    }
}
