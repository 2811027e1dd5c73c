//! The `claude` backend: one Claude Code CLI process per try, in print mode
//! with streaming JSON output, so every message it prints is progress and
//! silence is a stall.
//!
//! Flags, as the CLI reference documents them
//! (<https://code.claude.com/docs/en/cli-reference>): `-p` (print mode,
//! prompt on stdin), `--output-format stream-json` (which needs
//! `--verbose` in print mode), `--permission-mode acceptEdits`, `--model`,
//! `--effort` (`opts.effort`), `--agent` (`opts.agentType`), `--resume`
//! (a schema retry continues the session instead of paying the preamble
//! again), `--allowedTools` / `--disallowedTools` (config, plus
//! `opts.disallowedTools`). The stream's last line is the `result`
//! message (<https://code.claude.com/docs/en/headless>): `result`,
//! `is_error`, `subtype`, `session_id`, `usage`.
//!
//! `isolation: 'worktree'` runs the agent in its own detached git worktree
//! under `.wasmflow/worktrees/`; after the agent's last try it is removed
//! when nothing changed, kept and reported when something did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{
    AgentBackend, AgentFailure, AgentOutput, AgentReply, AgentRequest, AgentResult, BoxFuture,
    FailureKind, PlannedModel, Usage,
};

/// Most stdout read from one process.
const MAX_STDOUT: u64 = 64 << 20;
/// Stderr quoted in a failure.
const STDERR_TAIL: usize = 2000;

/// How the CLI runs.
#[derive(Debug, Clone)]
pub struct ClaudeSettings {
    /// The executable, found on PATH unless it has a slash.
    pub command: String,
    /// `--allowedTools` for every agent.
    pub allowed_tools: Vec<String>,
    /// `--disallowedTools` for every agent.
    pub disallowed_tools: Vec<String>,
    /// Wall clock per try.
    pub timeout: Duration,
    /// Longest silence (no line on stdout) before the try is abandoned.
    pub stall: Duration,
    /// Where agents run (worktrees come from its repository).
    pub cwd: PathBuf,
}

/// What an agent keeps between its tries.
#[derive(Debug, Default)]
struct AgentState {
    session: Option<String>,
    worktree: Option<Worktree>,
}

#[derive(Debug, Clone)]
struct Worktree {
    repo: PathBuf,
    path: PathBuf,
    /// Where the agent runs: the same subdirectory as `cwd` in the repo.
    workdir: PathBuf,
    base: String,
}

/// Agents through the Claude Code CLI in print mode.
pub struct ClaudeBackend {
    settings: Arc<ClaudeSettings>,
    state: Arc<Mutex<HashMap<u64, AgentState>>>,
}

impl ClaudeBackend {
    /// A backend running `settings.command`.
    pub fn new(settings: ClaudeSettings) -> ClaudeBackend {
        ClaudeBackend {
            settings: Arc::new(settings),
            state: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// The CLI's arguments for one try (the prompt goes on stdin).
pub fn arguments(
    settings: &ClaudeSettings,
    request: &AgentRequest,
    resume: Option<&str>,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut flag = |name: &str, value: &str| {
        args.push(name.to_string());
        args.push(value.to_string());
    };
    if let Some(model) = &request.model {
        flag("--model", model);
    }
    if let Some(effort) = request.option_str("effort") {
        flag("--effort", effort);
    }
    if let Some(agent) = request.option_str("agentType") {
        flag("--agent", agent);
    }
    if let Some(session) = resume {
        flag("--resume", session);
    }
    // Each tool is its own argument: patterns such as `Bash(git log:*)`
    // hold spaces. The lists come last; nothing positional follows.
    if !settings.allowed_tools.is_empty() {
        args.push("--allowedTools".into());
        args.extend(settings.allowed_tools.iter().cloned());
    }
    let mut denied = settings.disallowed_tools.clone();
    match request.options.get("disallowedTools") {
        Some(Value::Array(tools)) => {
            denied.extend(tools.iter().filter_map(Value::as_str).map(String::from))
        }
        Some(Value::String(tools)) => denied.extend(
            tools
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from),
        ),
        _ => {}
    }
    if !denied.is_empty() {
        args.push("--disallowedTools".into());
        args.extend(denied);
    }
    args
}

/// The prompt for one try: a continued session only needs the schema
/// errors; a fresh one needs everything.
pub fn stdin_prompt(request: &AgentRequest, resuming: bool) -> String {
    if resuming && !request.feedback.is_empty() {
        return crate::script::schema::feedback_prompt(&request.feedback);
    }
    let mut prompt = request.prompt_with_feedback();
    if let Some(schema) = &request.schema {
        prompt.push_str(&crate::script::schema::schema_instruction(&schema.value));
    }
    prompt
}

/// Quota and auth failures, from the CLI's words (it reports both as an
/// error result or on stderr, with no code of their own).
fn classify(text: &str) -> FailureKind {
    let t = text.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if any(&[
        "rate limit",
        "rate_limit",
        "usage limit",
        "quota",
        "credit balance",
        "429",
    ]) {
        FailureKind::Quota
    } else if any(&[
        "invalid api key",
        "authentication",
        "/login",
        "not logged in",
        "401",
        "unauthorized",
        "oauth",
    ]) {
        FailureKind::Auth
    } else {
        FailureKind::Other
    }
}

/// Reads the `result` message of a stream (the last one wins).
#[derive(Debug, Default)]
pub struct StreamState {
    /// The session id, for a schema retry with `--resume`.
    pub session: Option<String>,
    /// The final `result` event.
    pub result: Option<Value>,
    /// Lines that were not JSON, for the failure message.
    pub stray: Vec<String>,
}

impl StreamState {
    /// Reads one stream-json line.
    pub fn line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            if self.stray.len() < 5 {
                self.stray.push(line.chars().take(300).collect());
            }
            return;
        };
        if let Some(s) = v["session_id"].as_str() {
            self.session = Some(s.to_string());
        }
        if v["type"] == "result" {
            self.result = Some(v);
        }
    }

    /// The agent's answer, or why there is none.
    pub fn outcome(&self) -> Result<AgentReply, AgentFailure> {
        let Some(r) = &self.result else {
            let mut reason =
                "malformed reply: the claude CLI ended without a `result` message".to_string();
            if !self.stray.is_empty() {
                reason.push_str(&format!(" (it printed: {})", self.stray.join(" | ")));
            }
            return Err(AgentFailure {
                reason,
                usage: Usage::default(),
                kind: FailureKind::Other,
            });
        };
        let u = &r["usage"];
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        let usage = Usage {
            input: n("input_tokens"),
            output: n("output_tokens"),
            cache_read: n("cache_read_input_tokens"),
            cache_write: n("cache_creation_input_tokens"),
        };
        let text = r["result"].as_str();
        let failed = r["is_error"].as_bool().unwrap_or(false)
            || r["subtype"].as_str().is_some_and(|s| s != "success");
        if failed {
            let subtype = r["subtype"].as_str().unwrap_or("error");
            let reason = match text {
                Some(t) if !t.trim().is_empty() => format!("claude: {subtype}: {}", t.trim()),
                _ => format!("claude: {subtype}"),
            };
            return Err(AgentFailure {
                kind: classify(&reason),
                reason,
                usage,
            });
        }
        match text {
            Some(t) => Ok(AgentReply {
                output: AgentOutput::Text(t.to_string()),
                usage,
            }),
            None => Err(AgentFailure {
                reason: "malformed reply: the `result` message has no `result` text".into(),
                usage,
                kind: FailureKind::Other,
            }),
        }
    }
}

fn tail(bytes: &[u8]) -> String {
    super::stderr_tail(bytes, STDERR_TAIL)
}

fn failure(reason: String) -> AgentFailure {
    AgentFailure {
        kind: classify(&reason),
        reason,
        usage: Usage::default(),
    }
}

async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn add_worktree(cwd: &Path, id: u64) -> Result<Worktree, String> {
    let repo = git(cwd, &["rev-parse", "--show-toplevel"])
        .await
        .map_err(|_| {
            format!(
                "isolation: 'worktree' needs a git repository, and {} is not inside one",
                cwd.display()
            )
        })?;
    let repo = PathBuf::from(repo);
    let prefix = git(cwd, &["rev-parse", "--show-prefix"]).await?;
    let base = git(&repo, &["rev-parse", "HEAD"])
        .await
        .map_err(|e| format!("isolation: 'worktree' needs a commit to start from: {e}"))?;
    let root = repo.join(".wasmflow/worktrees");
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    // Keeps the worktrees out of the repository's own status.
    let ignore = root.join(".gitignore");
    if !ignore.exists() {
        let _ = std::fs::write(&ignore, "*\n");
    }
    let path = root.join(format!("agent-{}-{id}", std::process::id()));
    let path_text = path.to_string_lossy().into_owned();
    git(&repo, &["worktree", "add", "--detach", &path_text, &base]).await?;
    Ok(Worktree {
        workdir: path.join(prefix),
        repo,
        path,
        base,
    })
}

/// Removes an unchanged worktree; describes a changed one.
async fn release_worktree(w: Worktree) -> Option<String> {
    let status = git(&w.path, &["status", "--porcelain"]).await;
    let head = git(&w.path, &["rev-parse", "HEAD"]).await;
    match (status, head) {
        (Ok(status), Ok(head)) if status.is_empty() && head == w.base => {
            let path = w.path.to_string_lossy().into_owned();
            match git(&w.repo, &["worktree", "remove", "--force", &path]).await {
                Ok(_) => None,
                Err(e) => Some(format!(
                    "worktree {} is unchanged but could not be removed: {e}",
                    w.path.display()
                )),
            }
        }
        (Ok(status), Ok(head)) => {
            let changed = status.lines().count();
            let commits = if head == w.base {
                String::new()
            } else {
                format!(", new commits up to {}", &head[..head.len().min(12)])
            };
            Some(format!(
                "worktree kept with changes: {} ({changed} changed path{}{commits}; based on {})",
                w.path.display(),
                if changed == 1 { "" } else { "s" },
                &w.base[..w.base.len().min(12)]
            ))
        }
        (Err(e), _) | (_, Err(e)) => Some(format!(
            "worktree kept: {} (could not tell whether it changed: {e})",
            w.path.display()
        )),
    }
}

async fn run_try(
    settings: Arc<ClaudeSettings>,
    state: Arc<Mutex<HashMap<u64, AgentState>>>,
    request: AgentRequest,
) -> AgentResult {
    let id = request.id;
    let (session, worktree) = {
        let map = state
            .lock()
            .map_err(|_| failure("internal: state lock".into()))?;
        let s = map.get(&id);
        (
            s.and_then(|s| s.session.clone()),
            s.and_then(|s| s.worktree.clone()),
        )
    };
    let worktree = match worktree {
        Some(w) => Some(w),
        None if request.option_str("isolation") == Some("worktree") => {
            let w = add_worktree(&settings.cwd, id).await.map_err(failure)?;
            if let Ok(mut map) = state.lock() {
                map.entry(id).or_default().worktree = Some(w.clone());
            }
            Some(w)
        }
        None => None,
    };
    let resume = session.filter(|_| !request.feedback.is_empty());
    let args = arguments(&settings, &request, resume.as_deref());
    let input = stdin_prompt(&request, resume.is_some());
    let cwd = worktree
        .as_ref()
        .map(|w| w.workdir.clone())
        .unwrap_or_else(|| settings.cwd.clone());
    let mut child = tokio::process::Command::new(&settings.command)
        .args(&args)
        .current_dir(&cwd)
        .env("WASMFLOW_AGENT_ID", id.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            failure(format!(
                "cannot start the claude CLI (`{}`): {e}; install Claude Code or set [claude] command in wasmflow.toml",
                settings.command
            ))
        })?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(failure("the claude CLI has no stdio pipes".into()));
    };
    let stall = request.stall_timeout(settings.stall);
    let mut stream = StreamState::default();
    let mut err = Vec::new();
    let work = async {
        let writer = async move {
            let _ = stdin.write_all(input.as_bytes()).await;
            let _ = stdin.shutdown().await;
            Ok::<(), String>(())
        };
        let reader = async {
            let mut lines = BufReader::new(stdout.take(MAX_STDOUT));
            let mut line = Vec::new();
            loop {
                line.clear();
                match tokio::time::timeout(stall, lines.read_until(b'\n', &mut line)).await {
                    Err(_) => {
                        return Err(format!(
                            "stalled: the claude CLI printed nothing for {stall:?} (raise it with stall_timeout in wasmflow.toml or opts.stallMs)"
                        ));
                    }
                    Ok(Err(e)) => return Err(format!("cannot read the claude CLI's output: {e}")),
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(_)) => stream.line(&String::from_utf8_lossy(&line)),
                }
            }
        };
        let err_reader = async {
            let _ = (&mut stderr).take(1 << 20).read_to_end(&mut err).await;
            Ok(())
        };
        // A stall ends the try at once: the process (killed on drop) may
        // still hold stderr open.
        tokio::try_join!(writer, reader, err_reader).map(|_| ())
    };
    let read = match tokio::time::timeout(settings.timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            return Err(failure(format!(
                "the agent timed out after {:?} (raise it with --agent-timeout)",
                settings.timeout
            )));
        }
    };
    if let Some(s) = &stream.session
        && let Ok(mut map) = state.lock()
    {
        map.entry(id).or_default().session = Some(s.clone());
    }
    read.map_err(failure)?;
    let status = child
        .wait()
        .await
        .map_err(|e| failure(format!("cannot wait for the claude CLI: {e}")))?;
    if stream.result.is_none() && !status.success() {
        let why = tail(&err);
        return Err(failure(format!(
            "the claude CLI exited with {status}{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    }
    stream.outcome()
}

impl AgentBackend for ClaudeBackend {
    fn name(&self) -> &str {
        "claude"
    }

    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        Box::pin(run_try(self.settings.clone(), self.state.clone(), request))
    }

    fn check(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let settings = self.settings.clone();
        Box::pin(async move {
            let found = tokio::process::Command::new(&settings.command)
                .arg("--version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status();
            match tokio::time::timeout(Duration::from_secs(30), found).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(format!(
                        "cannot run the claude CLI (`{}`): {e}; install Claude Code (npm install -g @anthropic-ai/claude-code) or set [claude] command in wasmflow.toml",
                        settings.command
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "`{} --version` did not answer within 30s",
                        settings.command
                    ));
                }
            }
            // The CLI takes its own aliases and full `claude-…` ids; any
            // other name is a typo that would fail every agent.
            const CLI_ALIASES: &[&str] = &["default", "sonnet", "opus", "haiku", "opusplan"];
            if let Some(m) = models.iter().find(|m| {
                let base = m.id.split('[').next().unwrap_or(&m.id);
                !(m.id.starts_with("claude-") || CLI_ALIASES.contains(&base))
            }) {
                return Err(format!(
                    "unknown model `{}` ({}){}: the claude CLI takes `sonnet`, `opus`, `haiku` or a full `claude-…` model id; map other names under [models] in wasmflow.toml",
                    m.alias,
                    m.origin,
                    if m.alias != m.id {
                        format!(", model id `{}`", m.id)
                    } else {
                        String::new()
                    }
                ));
            }
            Ok(())
        })
    }

    fn finish(&self, id: u64) -> BoxFuture<'static, Vec<String>> {
        let taken = self.state.lock().ok().and_then(|mut m| m.remove(&id));
        Box::pin(async move {
            match taken.and_then(|s| s.worktree) {
                Some(w) => release_worktree(w).await.into_iter().collect(),
                None => Vec::new(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(options: Value) -> AgentRequest {
        AgentRequest {
            id: 1,
            prompt: "p".into(),
            options: options.as_object().cloned().unwrap_or_default(),
            label: None,
            phase: None,
            attempt: 1,
            priority: 0,
            model: Some("claude-haiku-4-5".into()),
            backend: None,
            schema: None,
            feedback: Vec::new(),
        }
    }

    #[test]
    fn flags_follow_the_options() {
        let settings = ClaudeSettings {
            command: "claude".into(),
            allowed_tools: vec!["Read".into(), "Bash(git log:*)".into()],
            disallowed_tools: vec!["WebFetch".into()],
            timeout: Duration::from_secs(1),
            stall: Duration::from_secs(1),
            cwd: PathBuf::from("."),
        };
        let r = request(serde_json::json!({
            "effort": "low", "agentType": "reviewer", "disallowedTools": ["Bash(rm:*)"]
        }));
        let args = arguments(&settings, &r, Some("s-1"));
        assert_eq!(
            args.join(" "),
            "-p --output-format stream-json --verbose --permission-mode acceptEdits \
             --model claude-haiku-4-5 --effort low --agent reviewer --resume s-1 \
             --allowedTools Read Bash(git log:*) --disallowedTools WebFetch Bash(rm:*)"
        );
    }

    #[test]
    fn results_and_failures() {
        let mut s = StreamState::default();
        s.line(r#"{"type":"system","subtype":"init","session_id":"abc"}"#);
        s.line("not json");
        s.line(r#"{"type":"result","subtype":"success","is_error":false,"result":"hi","session_id":"abc","usage":{"input_tokens":3,"output_tokens":2,"cache_read_input_tokens":7,"cache_creation_input_tokens":1}}"#);
        assert_eq!(s.session.as_deref(), Some("abc"));
        let r = s.outcome().unwrap();
        assert_eq!(r.output, AgentOutput::Text("hi".into()));
        assert_eq!(
            r.usage,
            Usage {
                input: 3,
                output: 2,
                cache_read: 7,
                cache_write: 1
            }
        );
        let mut s = StreamState::default();
        s.line(r#"{"type":"result","subtype":"success","is_error":true,"result":"Claude AI usage limit reached"}"#);
        assert_eq!(s.outcome().unwrap_err().kind, FailureKind::Quota);
        let mut s = StreamState::default();
        s.line(r#"{"type":"result","subtype":"success","is_error":true,"result":"Invalid API key · Please run /login"}"#);
        assert_eq!(s.outcome().unwrap_err().kind, FailureKind::Auth);
        let s = StreamState::default();
        assert!(
            s.outcome()
                .unwrap_err()
                .reason
                .contains("without a `result`")
        );
    }
}
