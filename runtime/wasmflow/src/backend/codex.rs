//! The `codex` backend: each agent is an OpenAI Codex CLI session,
//! `codex exec --json` with the prompt on stdin.
//!
//! From the CLI's source at openai/codex (`codex-rs/exec/src/cli.rs` and
//! `codex-rs/exec/src/exec_events.rs`, read at commit 08a1f30c):
//! `codex exec [OPTIONS] [PROMPT]` reads the prompt from stdin when it is
//! `-`; `--json` prints one JSON event per line: `thread.started`
//! (`thread_id`), `turn.started`, `item.started|updated|completed` (an
//! `item` with `id` and `type`: `agent_message` with `text`, `reasoning`,
//! `command_execution`, `file_change`, `mcp_tool_call`, `web_search`,
//! `todo_list`, `error`), `turn.completed` (`usage`: `input_tokens`,
//! `cached_input_tokens`, `output_tokens`), `turn.failed` (`error.message`)
//! and `error` (`message`). The answer is the last `agent_message`.
//! `input_tokens` includes the cached ones, so input = input − cached and
//! cache read = cached. `codex exec [OPTIONS] resume <THREAD_ID> -`
//! continues a thread (a schema retry sends only the errors).
//! `--sandbox workspace-write` is the approval mode workflow agents get
//! (edits in the work tree, like Claude Code's `acceptEdits`); the bypass
//! (`--dangerously-bypass-approvals-and-sandbox`) is never passed, and
//! `danger-full-access` is refused in the config. Codex refuses to run
//! outside a git work tree unless `--skip-git-repo-check`: wasmflow checks
//! before the first agent and passes that flag only when
//! `[codex] skip_git_repo_check = true`. `opts.effort` becomes
//! `-c model_reasoning_effort=…`.

use super::cli_agent::{self, CliTool, StreamParser};
use super::{AgentFailure, AgentOutput, AgentReply, AgentRequest, BoxFuture, PlannedModel, Usage};

/// How codex runs.
#[derive(Debug, Clone)]
pub struct Codex {
    /// The executable.
    pub command: String,
    /// `--sandbox`: `workspace-write` (default) or `read-only`.
    pub sandbox: String,
    /// Pass `--skip-git-repo-check` (run outside a git work tree).
    pub skip_git_repo_check: bool,
    /// Where agents run.
    pub cwd: std::path::PathBuf,
}

/// `agent()` options codex has no equivalent of (warned once per run).
pub const UNSUPPORTED_OPTIONS: &[&str] = &["agentType", "disallowedTools", "bashCommandClamp"];

/// The sandbox modes a workflow agent may get (never `danger-full-access`).
pub const SANDBOXES: &[&str] = &["workspace-write", "read-only"];

impl CliTool for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn command(&self) -> &str {
        &self.command
    }

    fn install_hint(&self) -> String {
        "install the Codex CLI (npm install -g @openai/codex) or set [codex] command in wasmflow.toml".into()
    }

    fn arguments(&self, request: &AgentRequest, resume: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "exec".into(),
            "--json".into(),
            "--sandbox".into(),
            self.sandbox.clone(),
        ];
        if let Some(model) = &request.model {
            args.extend(["--model".into(), model.clone()]);
        }
        if let Some(effort) = request.option_str("effort") {
            args.extend(["-c".into(), format!("model_reasoning_effort={effort}")]);
        }
        if self.skip_git_repo_check {
            args.push("--skip-git-repo-check".into());
        }
        if let Some(thread) = resume {
            args.extend(["resume".into(), thread.to_string()]);
        }
        args.push("-".into());
        args
    }

    fn parser(&self) -> Box<dyn StreamParser> {
        Box::new(CodexStream::default())
    }

    fn preflight(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let command = self.command.clone();
        let hint = self.install_hint();
        let cwd = self.cwd.clone();
        let skip = self.skip_git_repo_check;
        Box::pin(async move {
            cli_agent::probe("codex", &command, &["--version"], &hint).await?;
            if !cli_agent::probe("codex", &command, &["login", "status"], &hint).await? {
                return Err(format!(
                    "codex is not logged in (`{command} login status` failed): run `{command} login`, or set OPENAI_API_KEY and `{command} login --with-api-key`"
                ));
            }
            if !skip && !in_git_work_tree(&cwd).await {
                return Err(format!(
                    "codex runs agents inside a git work tree, and {} is not in one: run `git init` there, or set [codex] skip_git_repo_check = true in wasmflow.toml",
                    cwd.display()
                ));
            }
            if let Some(m) = models.iter().find(|m| {
                m.id.starts_with("claude") || ["sonnet", "opus", "haiku"].contains(&m.id.as_str())
            }) {
                return Err(format!(
                    "model `{}` ({}) is a Claude model, and the codex backend runs OpenAI models: route it to the claude backend under [models], or name an OpenAI model",
                    m.id, m.origin
                ));
            }
            Ok(())
        })
    }
}

async fn in_git_work_tree(cwd: &std::path::Path) -> bool {
    tokio::process::Command::new("git")
        .arg("-C")
        .arg(cwd)
        .args(["rev-parse", "--is-inside-work-tree"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"true"))
}

/// What a `codex exec --json` stream said.
#[derive(Debug, Default)]
pub struct CodexStream {
    thread: Option<String>,
    message: Option<String>,
    usage: Usage,
    completed: bool,
    error: Option<String>,
    stray: Vec<String>,
}

impl StreamParser for CodexStream {
    fn line(&mut self, line: &str) {
        let Some(v) = cli_agent::json_line(line, &mut self.stray) else {
            return;
        };
        match v["type"].as_str().unwrap_or("") {
            "thread.started" => self.thread = v["thread_id"].as_str().map(String::from),
            "item.completed" if v["item"]["type"] == "agent_message" => {
                self.message = v["item"]["text"].as_str().map(String::from);
            }
            "turn.completed" => {
                let u = &v["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                let cached = n("cached_input_tokens");
                self.usage.input += n("input_tokens").saturating_sub(cached);
                self.usage.cache_read += cached;
                self.usage.output += n("output_tokens");
                self.completed = true;
            }
            "turn.failed" => self.error = v["error"]["message"].as_str().map(String::from),
            "error" => self.error = v["message"].as_str().map(String::from),
            _ => {}
        }
    }

    fn session(&self) -> Option<String> {
        self.thread.clone()
    }

    fn has_result(&self) -> bool {
        self.completed || self.error.is_some()
    }

    fn outcome(&self) -> Result<AgentReply, AgentFailure> {
        if let Some(e) = &self.error {
            return Err(cli_agent::classified(format!("codex: {e}"), self.usage));
        }
        match (&self.message, self.completed) {
            (Some(text), true) => Ok(AgentReply {
                output: AgentOutput::Text(text.clone()),
                usage: self.usage,
            }),
            (None, true) => Err(cli_agent::malformed(
                "malformed reply: codex finished its turn without an agent message".into(),
                self.usage,
            )),
            (_, false) => Err(cli_agent::malformed(
                cli_agent::with_stray(
                    "malformed reply: codex ended without `turn.completed`".into(),
                    &self.stray,
                ),
                self.usage,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FailureKind;

    #[test]
    fn the_last_agent_message_and_usage_without_the_cached_input() {
        let mut s = CodexStream::default();
        for line in [
            r#"{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}"#,
            r#"{"type":"turn.started"}"#,
            r#"{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Looking**"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"a\n","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"first"}}"#,
            r#"{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"final answer"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}"#,
        ] {
            s.line(line);
        }
        assert_eq!(
            s.session().as_deref(),
            Some("0199a213-81c0-7800-8aa1-bbab2a035a53")
        );
        let r = s.outcome().unwrap();
        assert_eq!(r.output, AgentOutput::Text("final answer".into()));
        assert_eq!(r.usage.input, 315);
        assert_eq!(r.usage.cache_read, 24448);
        assert_eq!(r.usage.output, 122);
        let mut s = CodexStream::default();
        s.line(r#"{"type":"turn.failed","error":{"message":"You've hit your usage limit. Upgrade to Pro"}}"#);
        assert_eq!(s.outcome().unwrap_err().kind, FailureKind::Quota);
        let mut s = CodexStream::default();
        s.line(r#"{"type":"error","message":"unexpected status 401 Unauthorized"}"#);
        assert_eq!(s.outcome().unwrap_err().kind, FailureKind::Auth);
        assert!(
            CodexStream::default()
                .outcome()
                .unwrap_err()
                .reason
                .contains("turn.completed")
        );
    }

    #[test]
    fn argv_has_the_sandbox_and_no_bypass() {
        let codex = Codex {
            command: "codex".into(),
            sandbox: "workspace-write".into(),
            skip_git_repo_check: false,
            cwd: ".".into(),
        };
        let mut r = AgentRequest {
            id: 1,
            prompt: "p".into(),
            options: serde_json::json!({"effort": "low"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            label: None,
            phase: None,
            attempt: 1,
            priority: 0,
            model: Some("gpt-5.1-codex".into()),
            backend: None,
            schema: None,
            feedback: Vec::new(),
        };
        assert_eq!(
            codex.arguments(&r, None).join(" "),
            "exec --json --sandbox workspace-write --model gpt-5.1-codex -c model_reasoning_effort=low -"
        );
        r.options.clear();
        assert_eq!(
            codex.arguments(&r, Some("t-1")).join(" "),
            "exec --json --sandbox workspace-write --model gpt-5.1-codex resume t-1 -"
        );
        assert!(
            !codex
                .arguments(&r, None)
                .iter()
                .any(|a| a.contains("dangerously") || a.contains("full-access"))
        );
    }
}
