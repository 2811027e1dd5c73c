//! The `qwen` backend: each agent is a Qwen Code CLI run in headless mode
//! with streamed JSON output.
//!
//! From the CLI's source at QwenLM/qwen-code (`packages/cli/src/config/config.ts`
//! at 00233849 for the flags, `packages/cli/src/nonInteractive/types.ts` at
//! 139fb33e for the messages): `-p` runs headless and is appended to stdin
//! (the prompt goes on stdin, `-p` carries one space); `--output-format
//! stream-json` prints the same messages as Claude Code (`system` `init`,
//! `assistant`, `user`, and a final `result` with `subtype`, `is_error`,
//! `result`, `session_id` and `usage`: `input_tokens`, `output_tokens`,
//! `cache_read_input_tokens`, `cache_creation_input_tokens`), so the claude
//! backend's reader reads it. `--resume <sessionId>` continues a session
//! (schema retries). `--approval-mode auto-edit` (edit tools approved) is
//! always passed, never `yolo`.

use std::path::PathBuf;

use super::claude::StreamState;
use super::cli_agent::{self, CliTool, StreamParser};
use super::{AgentRequest, BoxFuture, PlannedModel};

/// `agent()` options Qwen Code has no equivalent of.
pub const UNSUPPORTED_OPTIONS: &[&str] =
    &["agentType", "disallowedTools", "bashCommandClamp", "effort"];

/// The approval modes a workflow agent may get (never `yolo` or `auto`,
/// whose classifier may approve commands).
pub const APPROVAL_MODES: &[&str] = &["auto-edit", "default", "plan"];

/// How Qwen Code runs.
#[derive(Debug, Clone)]
pub struct Qwen {
    /// The executable.
    pub command: String,
    /// `--approval-mode` (default `auto-edit`).
    pub approval_mode: String,
    /// `$HOME`, where the CLI keeps its sign-in.
    pub home: Option<PathBuf>,
}

impl CliTool for Qwen {
    fn name(&self) -> &'static str {
        "qwen"
    }

    fn command(&self) -> &str {
        &self.command
    }

    fn install_hint(&self) -> String {
        "install Qwen Code (npm install -g @qwen-code/qwen-code) or set [qwen] command in wasmflow.toml".into()
    }

    fn arguments(&self, request: &AgentRequest, resume: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--output-format".into(),
            "stream-json".into(),
            "--approval-mode".into(),
            self.approval_mode.clone(),
        ];
        if let Some(model) = &request.model {
            args.extend(["--model".into(), model.clone()]);
        }
        if let Some(session) = resume {
            args.extend(["--resume".into(), session.to_string()]);
        }
        args.extend(["-p".into(), " ".into()]);
        args
    }

    fn parser(&self) -> Box<dyn StreamParser> {
        Box::new(StreamState::of("qwen"))
    }

    fn preflight(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let command = self.command.clone();
        let hint = self.install_hint();
        let home = self.home.clone();
        Box::pin(async move {
            cli_agent::probe("qwen", &command, &["--version"], &hint).await?;
            let home = home.unwrap_or_default();
            let signed_in = cli_agent::has_credentials(
                &[
                    "OPENAI_API_KEY",
                    "DASHSCOPE_API_KEY",
                    "ANTHROPIC_API_KEY",
                    "GEMINI_API_KEY",
                ],
                &[home.join(".qwen/oauth_creds.json")],
                &[home.join(".qwen/settings.json")],
            );
            if !signed_in {
                return Err(
                    "qwen is not signed in (no API key in the environment, no ~/.qwen sign-in): run `qwen` once and sign in, or set OPENAI_API_KEY / DASHSCOPE_API_KEY".into(),
                );
            }
            if let Some(m) = models
                .iter()
                .find(|m| ["sonnet", "opus", "haiku"].contains(&m.id.as_str()))
            {
                return Err(format!(
                    "model `{}` ({}) is a Claude Code alias, which Qwen Code does not take: name a full model id, or route it to the claude backend under [models]",
                    m.id, m.origin
                ));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AgentOutput;

    #[test]
    fn argv_and_the_claude_shaped_stream() {
        let q = Qwen {
            command: "qwen".into(),
            approval_mode: "auto-edit".into(),
            home: None,
        };
        let r = AgentRequest {
            id: 1,
            prompt: "p".into(),
            options: Default::default(),
            label: None,
            phase: None,
            attempt: 1,
            priority: 0,
            model: Some("qwen3-coder-plus".into()),
            backend: None,
            schema: None,
            feedback: Vec::new(),
        };
        assert_eq!(
            q.arguments(&r, Some("s-1")).join(" "),
            "--output-format stream-json --approval-mode auto-edit --model qwen3-coder-plus --resume s-1 -p  "
        );
        let mut s = q.parser();
        s.line(r#"{"type":"system","subtype":"init","uuid":"u","session_id":"s-2","model":"qwen3-coder-plus"}"#);
        s.line(r#"{"type":"result","subtype":"success","uuid":"u","session_id":"s-2","is_error":false,"duration_ms":3,"duration_api_ms":2,"num_turns":1,"result":"ok","usage":{"input_tokens":5,"output_tokens":2},"permission_denials":[]}"#);
        assert_eq!(s.session().as_deref(), Some("s-2"));
        assert_eq!(s.outcome().unwrap().output, AgentOutput::Text("ok".into()));
        let mut s = q.parser();
        s.line(r#"{"type":"result","subtype":"error_during_execution","uuid":"u","session_id":"s","is_error":true,"duration_ms":1,"duration_api_ms":1,"num_turns":1,"usage":{"input_tokens":0,"output_tokens":0},"permission_denials":[]}"#);
        assert!(
            s.outcome()
                .unwrap_err()
                .reason
                .starts_with("qwen: error_during_execution")
        );
    }
}
