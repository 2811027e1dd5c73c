//! What every coding-agent CLI backend shares (`claude`, `codex`, …): one
//! process per try with the prompt on stdin, its stdout read line by line
//! (every line is progress, silence is a stall), a wall-clock timeout, the
//! session kept for a schema retry, and `isolation: 'worktree'` in a
//! detached git worktree under `.wasmflow/worktrees/` (removed after the
//! agent's last try when nothing changed, kept and reported when something
//! did). A tool says how to call it ([`CliTool`]) and how to read its stream
//! ([`StreamParser`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{
    AgentBackend, AgentFailure, AgentReply, AgentRequest, AgentResult, BoxFuture, FailureKind,
    PlannedModel, Usage,
};

/// Most stdout read from one process.
const MAX_STDOUT: u64 = 64 << 20;
/// Stderr quoted in a failure.
const STDERR_TAIL: usize = 2000;

/// How one coding-agent CLI is called.
pub trait CliTool: Send + Sync + 'static {
    /// The backend's name (`codex`).
    fn name(&self) -> &'static str;
    /// The executable.
    fn command(&self) -> &str;
    /// What to tell a user whose executable does not start.
    fn install_hint(&self) -> String;
    /// The arguments of one try; `resume` is the session of the agent's
    /// previous try when this one carries schema feedback.
    fn arguments(&self, request: &AgentRequest, resume: Option<&str>) -> Vec<String>;
    /// A reader for one try's stdout.
    fn parser(&self) -> Box<dyn StreamParser>;
    /// Whether a schema retry continues the previous try's session (else
    /// it is a fresh call carrying the feedback).
    fn resumes(&self) -> bool {
        true
    }
    /// Checks before any agent: the binary runs, the user is logged in,
    /// the models are ones the tool takes.
    fn preflight(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>>;
}

/// Reads one try's stdout, a line at a time.
pub trait StreamParser: Send {
    /// One line of output.
    fn line(&mut self, line: &str);
    /// The session to continue on a schema retry, once known.
    fn session(&self) -> Option<String>;
    /// Whether the stream held a final answer (or a final error).
    fn has_result(&self) -> bool;
    /// The agent's answer, or why there is none.
    fn outcome(&self) -> Result<AgentReply, AgentFailure>;
}

/// One line of a JSON-lines stream as a value; a line that is not JSON is
/// kept (the first few, cut short) for the failure message.
pub fn json_line(line: &str, stray: &mut Vec<String>) -> Option<serde_json::Value> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let parsed = serde_json::from_str(line).ok();
    if parsed.is_none() && stray.len() < 5 {
        stray.push(line.chars().take(300).collect());
    }
    parsed
}

/// Whether a CLI has credentials: one of `keys` set in the environment, a
/// credentials file in `creds`, or a settings file in `settings` that
/// names an auth type.
pub fn has_credentials(keys: &[&str], creds: &[PathBuf], settings: &[PathBuf]) -> bool {
    keys.iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
        || creds.iter().any(|p| p.is_file())
        || settings.iter().any(|p| {
            std::fs::read_to_string(p)
                .is_ok_and(|s| s.contains("selectedType") || s.contains("selectedAuthType"))
        })
}

/// Timeouts and where agents run.
#[derive(Debug, Clone)]
pub struct CliSettings {
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

/// Agents through a coding-agent CLI.
pub struct CliAgentBackend<T: CliTool> {
    tool: Arc<T>,
    settings: Arc<CliSettings>,
    state: Arc<Mutex<HashMap<u64, AgentState>>>,
}

impl<T: CliTool> CliAgentBackend<T> {
    /// A backend running `tool`.
    pub fn new(tool: T, settings: CliSettings) -> CliAgentBackend<T> {
        CliAgentBackend {
            tool: Arc::new(tool),
            settings: Arc::new(settings),
            state: Arc::new(Mutex::new(HashMap::new())),
        }
    }
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

/// Quota and auth failures, from a CLI's words (they report both as an
/// error result or on stderr, with no code of their own).
pub fn classify(text: &str) -> FailureKind {
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

/// A failure with no usage, classified by its words.
pub fn failure(reason: String) -> AgentFailure {
    classified(reason, Usage::default())
}

/// A failure the tool reported in words: quota and auth words count for
/// the circuit breaker.
pub fn classified(reason: String, usage: Usage) -> AgentFailure {
    AgentFailure {
        kind: classify(&reason),
        reason,
        usage,
    }
}

/// A stream that held no answer.
pub fn malformed(reason: String, usage: Usage) -> AgentFailure {
    AgentFailure {
        reason,
        usage,
        kind: FailureKind::Other,
    }
}

/// `reason`, with the lines the tool printed that were not JSON.
pub fn with_stray(reason: String, stray: &[String]) -> String {
    if stray.is_empty() {
        reason
    } else {
        format!("{reason} (it printed: {})", stray.join(" | "))
    }
}

/// Runs `program args` (the `name` CLI) and says whether it exited 0,
/// within 30 s; the error names the fix.
pub async fn probe(name: &str, program: &str, args: &[&str], hint: &str) -> Result<bool, String> {
    let found = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(30), found).await {
        Ok(Ok(status)) => Ok(status.success()),
        Ok(Err(e)) => Err(format!(
            "cannot run the {name} CLI (`{program}`): {e}; {hint}"
        )),
        Err(_) => Err(format!(
            "`{program} {}` did not answer within 30s",
            args.join(" ")
        )),
    }
}

fn tail(bytes: &[u8]) -> String {
    super::stderr_tail(bytes, STDERR_TAIL)
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

async fn run_try<T: CliTool>(
    tool: Arc<T>,
    settings: Arc<CliSettings>,
    state: Arc<Mutex<HashMap<u64, AgentState>>>,
    request: AgentRequest,
) -> AgentResult {
    let name = tool.name();
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
    let resume = session.filter(|_| tool.resumes() && !request.feedback.is_empty());
    let args = tool.arguments(&request, resume.as_deref());
    let input = stdin_prompt(&request, resume.is_some());
    let cwd = worktree
        .as_ref()
        .map(|w| w.workdir.clone())
        .unwrap_or_else(|| settings.cwd.clone());
    let mut child = tokio::process::Command::new(tool.command())
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
                "cannot start the {name} CLI (`{}`): {e}; {}",
                tool.command(),
                tool.install_hint()
            ))
        })?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(failure("the agent CLI has no stdio pipes".into()));
    };
    let stall = request.stall_timeout(settings.stall);
    let mut stream = tool.parser();
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
                            "stalled: the {name} CLI printed nothing for {stall:?} (raise it with stall_timeout in wasmflow.toml or opts.stallMs)"
                        ));
                    }
                    Ok(Err(e)) => return Err(format!("cannot read the {name} CLI's output: {e}")),
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
    if let Some(s) = stream.session()
        && let Ok(mut map) = state.lock()
    {
        map.entry(id).or_default().session = Some(s);
    }
    read.map_err(failure)?;
    let status = child
        .wait()
        .await
        .map_err(|e| failure(format!("cannot wait for the {name} CLI: {e}")))?;
    if !stream.has_result() && !status.success() {
        let why = tail(&err);
        return Err(failure(format!(
            "the {name} CLI exited with {status}{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    }
    stream.outcome()
}

impl<T: CliTool> AgentBackend for CliAgentBackend<T> {
    fn name(&self) -> &str {
        self.tool.name()
    }

    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        Box::pin(run_try(
            self.tool.clone(),
            self.settings.clone(),
            self.state.clone(),
            request,
        ))
    }

    fn check(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        self.tool.preflight(models)
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
