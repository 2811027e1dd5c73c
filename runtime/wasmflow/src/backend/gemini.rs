//! The `gemini` backend: each agent is a Gemini CLI run in headless mode
//! with streamed JSON output.
//!
//! From the CLI's source at google-gemini/gemini-cli commit 04fbf507
//! (`packages/cli/src/config/config.ts` for the flags,
//! `packages/core/src/output/types.ts` for the events): `-p/--prompt` runs
//! headless and is appended to what stdin holds, so the prompt goes on
//! stdin and `-p` carries a single space; `--output-format stream-json`
//! prints one event per line: `init` (`session_id`, `model`), `message`
//! (`role`, `content`, `delta` for streamed pieces), `tool_use`,
//! `tool_result`, `error` (`severity`, `message`) and `result` (`status`
//! `success` or `error`, `error.message`, `stats` with `input_tokens`,
//! `output_tokens`, and the input split into `cached` and `input`). The
//! answer is the assistant's text after the last tool result.
//! `--approval-mode auto_edit` (edit tools approved, like Claude Code's
//! `acceptEdits`) is always passed, never `yolo`. `--resume` takes only
//! `latest` or a list index there, which concurrent agents cannot use
//! safely, so a schema retry is a fresh call with the feedback.

use std::path::PathBuf;

use super::cli_agent::{self, CliTool, StreamParser};
use super::{AgentFailure, AgentOutput, AgentReply, AgentRequest, BoxFuture, PlannedModel, Usage};

/// `agent()` options the Gemini CLI has no equivalent of.
pub const UNSUPPORTED_OPTIONS: &[&str] =
    &["agentType", "disallowedTools", "bashCommandClamp", "effort"];

/// The approval modes a workflow agent may get (never `yolo`).
pub const APPROVAL_MODES: &[&str] = &["auto_edit", "default", "plan"];

/// How the Gemini CLI runs.
#[derive(Debug, Clone)]
pub struct Gemini {
    /// The executable.
    pub command: String,
    /// `--approval-mode` (default `auto_edit`).
    pub approval_mode: String,
    /// `$HOME`, where the CLI keeps its sign-in.
    pub home: Option<PathBuf>,
}

impl CliTool for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn command(&self) -> &str {
        &self.command
    }

    fn install_hint(&self) -> String {
        "install the Gemini CLI (npm install -g @google/gemini-cli) or set [gemini] command in wasmflow.toml".into()
    }

    fn arguments(&self, request: &AgentRequest, _resume: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--output-format".into(),
            "stream-json".into(),
            "--approval-mode".into(),
            self.approval_mode.clone(),
        ];
        if let Some(model) = &request.model {
            args.extend(["--model".into(), model.clone()]);
        }
        // Headless; the prompt itself is on stdin (an argument is capped
        // at 128 KiB by the kernel).
        args.extend(["-p".into(), " ".into()]);
        args
    }

    fn parser(&self) -> Box<dyn StreamParser> {
        Box::new(GeminiStream::default())
    }

    fn resumes(&self) -> bool {
        false
    }

    fn preflight(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let command = self.command.clone();
        let hint = self.install_hint();
        let home = self.home.clone();
        Box::pin(async move {
            cli_agent::probe("gemini", &command, &["--version"], &hint).await?;
            let home = home.unwrap_or_default();
            let signed_in = cli_agent::has_credentials(
                &[
                    "GEMINI_API_KEY",
                    "GOOGLE_API_KEY",
                    "GOOGLE_GENAI_USE_VERTEXAI",
                ],
                &[home.join(".gemini/oauth_creds.json")],
                &[home.join(".gemini/settings.json")],
            );
            if !signed_in {
                return Err(
                    "gemini is not signed in (no GEMINI_API_KEY or GOOGLE_API_KEY, no ~/.gemini sign-in): run `gemini` once and sign in, or set GEMINI_API_KEY".into(),
                );
            }
            if let Some(m) = models.iter().find(|m| {
                m.id.starts_with("claude")
                    || m.id.starts_with("gpt-")
                    || ["sonnet", "opus", "haiku"].contains(&m.id.as_str())
            }) {
                return Err(format!(
                    "model `{}` ({}) is not a Gemini model: route it to its own backend under [models], or name a Gemini model",
                    m.id, m.origin
                ));
            }
            Ok(())
        })
    }
}

/// What a `--output-format stream-json` run said.
#[derive(Debug, Default)]
pub struct GeminiStream {
    session: Option<String>,
    text: String,
    usage: Usage,
    result: Option<Result<(), String>>,
    error: Option<String>,
    stray: Vec<String>,
}

impl StreamParser for GeminiStream {
    fn line(&mut self, line: &str) {
        let Some(v) = cli_agent::json_line(line, &mut self.stray) else {
            return;
        };
        match v["type"].as_str().unwrap_or("") {
            "init" => self.session = v["session_id"].as_str().map(String::from),
            "message" if v["role"] == "assistant" => {
                let piece = v["content"].as_str().unwrap_or("");
                if v["delta"] == true {
                    self.text.push_str(piece);
                } else {
                    self.text = piece.to_string();
                }
            }
            // Text before a tool call is narration; the answer comes after.
            "tool_use" | "tool_result" => self.text.clear(),
            "error" if v["severity"] == "error" => {
                self.error = v["message"].as_str().map(String::from);
            }
            "result" => {
                let s = &v["stats"];
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                let cached = n("cached");
                self.usage = Usage {
                    input: if s.get("input").is_some() {
                        n("input")
                    } else {
                        n("input_tokens").saturating_sub(cached)
                    },
                    output: n("output_tokens"),
                    cache_read: cached,
                    cache_write: 0,
                    tool_uses: 0,
                    ..Usage::default()
                };
                self.result = Some(if v["status"] == "success" {
                    Ok(())
                } else {
                    Err(v["error"]["message"]
                        .as_str()
                        .unwrap_or("the run failed")
                        .to_string())
                });
            }
            _ => {}
        }
    }

    fn session(&self) -> Option<String> {
        self.session.clone()
    }

    fn has_result(&self) -> bool {
        self.result.is_some()
    }

    fn outcome(&self) -> Result<AgentReply, AgentFailure> {
        match &self.result {
            Some(Ok(())) if !self.text.trim().is_empty() => Ok(AgentReply {
                output: AgentOutput::Text(self.text.clone()),
                usage: self.usage,
            }),
            Some(Ok(())) => Err(cli_agent::malformed(
                "malformed reply: gemini finished without an answer".into(),
                self.usage,
            )),
            Some(Err(e)) => Err(cli_agent::classified(format!("gemini: {e}"), self.usage)),
            None => {
                let reason = match &self.error {
                    Some(e) => format!("gemini: {e}"),
                    None => "malformed reply: gemini ended without a `result` event".into(),
                };
                Err(cli_agent::classified(
                    cli_agent::with_stray(reason, &self.stray),
                    self.usage,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FailureKind;

    #[test]
    fn streamed_text_after_the_last_tool_and_the_stats() {
        let mut s = GeminiStream::default();
        for line in [
            r#"{"type":"init","timestamp":"2026-11-29T10:00:00.000Z","session_id":"s-1","model":"gemini-2.5-pro"}"#,
            r#"{"type":"message","timestamp":"t","role":"user","content":"hi"}"#,
            r#"{"type":"message","timestamp":"t","role":"assistant","content":"Let me look.","delta":true}"#,
            r#"{"type":"tool_use","timestamp":"t","tool_name":"read_file","tool_id":"1","parameters":{}}"#,
            r#"{"type":"tool_result","timestamp":"t","tool_id":"1","status":"success","output":"x"}"#,
            r#"{"type":"message","timestamp":"t","role":"assistant","content":"The answer ","delta":true}"#,
            r#"{"type":"message","timestamp":"t","role":"assistant","content":"is 42.","delta":true}"#,
            r#"{"type":"result","timestamp":"t","status":"success","stats":{"total_tokens":130,"input_tokens":100,"output_tokens":30,"cached":60,"input":40,"duration_ms":5,"tool_calls":1}}"#,
        ] {
            s.line(line);
        }
        let r = s.outcome().unwrap();
        assert_eq!(r.output, AgentOutput::Text("The answer is 42.".into()));
        assert_eq!(
            (r.usage.input, r.usage.cache_read, r.usage.output),
            (40, 60, 30)
        );
        let mut s = GeminiStream::default();
        s.line(r#"{"type":"result","timestamp":"t","status":"error","error":{"type":"quota","message":"Quota exceeded for quota metric"}}"#);
        assert_eq!(s.outcome().unwrap_err().kind, FailureKind::Quota);
        assert!(
            GeminiStream::default()
                .outcome()
                .unwrap_err()
                .reason
                .contains("`result`")
        );
    }
}
