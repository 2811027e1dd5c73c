//! The `opencode` backend: each agent is an `opencode run --format json`.
//!
//! From opencode's source (anomalyco/opencode at 00f9806c,
//! `packages/opencode/src/cli/cmd/run.ts`): `opencode run [message..]`
//! reads piped stdin as the message when none is given, so the prompt goes
//! on stdin; `--model provider/model`; `--session ID` continues a session
//! (schema retries); `--format json` prints one event per line, each
//! `{type, timestamp, sessionID, …}`: `step_start`, `text` (`part.text`, a
//! finished text part), `reasoning`, `tool_use` (`part`), `step_finish`
//! (`part.tokens`: `input`, `output`, `reasoning`, `cache.read`,
//! `cache.write`), `error` (`error`, with `data.message` or `name`) and
//! `done` when the session goes idle. The answer is the last text part.
//! Permission requests in `run` are rejected unless `--auto` (or the hidden
//! `--yolo` / `--dangerously-skip-permissions`) is passed, which wasmflow
//! never does: agents act within opencode's configured permissions (edits
//! allowed by its defaults), the equivalent of `acceptEdits`.

use std::path::PathBuf;

use super::cli_agent::{self, CliTool, StreamParser};
use super::{AgentFailure, AgentOutput, AgentReply, AgentRequest, BoxFuture, PlannedModel, Usage};

/// `agent()` options opencode has no equivalent of.
pub const UNSUPPORTED_OPTIONS: &[&str] = &["disallowedTools", "bashCommandClamp"];

/// How opencode runs.
#[derive(Debug, Clone)]
pub struct Opencode {
    /// The executable.
    pub command: String,
    /// `$HOME` and `$XDG_DATA_HOME`, where opencode keeps its credentials.
    pub data_dirs: Vec<PathBuf>,
}

impl CliTool for Opencode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    fn command(&self) -> &str {
        &self.command
    }

    fn install_hint(&self) -> String {
        "install opencode (npm install -g opencode-ai) or set [opencode] command in wasmflow.toml"
            .into()
    }

    fn arguments(&self, request: &AgentRequest, resume: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into(), "--format".into(), "json".into()];
        if let Some(model) = &request.model {
            args.extend(["--model".into(), model.clone()]);
        }
        if let Some(agent) = request.option_str("agentType") {
            args.extend(["--agent".into(), agent.to_string()]);
        }
        if let Some(effort) = request.option_str("effort") {
            args.extend(["--variant".into(), effort.to_string()]);
        }
        if let Some(session) = resume {
            args.extend(["--session".into(), session.to_string()]);
        }
        args
    }

    fn parser(&self) -> Box<dyn StreamParser> {
        Box::new(OpencodeStream::default())
    }

    fn preflight(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let command = self.command.clone();
        let hint = self.install_hint();
        let dirs = self.data_dirs.clone();
        Box::pin(async move {
            cli_agent::probe("opencode", &command, &["--version"], &hint).await?;
            let creds: Vec<PathBuf> = dirs.iter().map(|d| d.join("opencode/auth.json")).collect();
            let signed_in = cli_agent::has_credentials(
                &[
                    "ANTHROPIC_API_KEY",
                    "OPENAI_API_KEY",
                    "GEMINI_API_KEY",
                    "OPENROUTER_API_KEY",
                    "GROQ_API_KEY",
                ],
                &creds,
                &[],
            );
            if !signed_in {
                return Err(format!(
                    "opencode has no credentials (no provider key in the environment, no opencode/auth.json): run `{command} auth login`"
                ));
            }
            if let Some(m) = models.iter().find(|m| !m.id.contains('/')) {
                return Err(format!(
                    "model `{}` ({}) is not in opencode's provider/model form (e.g. anthropic/claude-sonnet-4-5): map it under [models] in wasmflow.toml",
                    m.id, m.origin
                ));
            }
            Ok(())
        })
    }
}

/// What an `opencode run --format json` stream said.
#[derive(Debug, Default)]
pub struct OpencodeStream {
    session: Option<String>,
    text: Option<String>,
    usage: Usage,
    error: Option<String>,
    done: bool,
    stray: Vec<String>,
}

impl StreamParser for OpencodeStream {
    fn line(&mut self, line: &str) {
        let Some(v) = cli_agent::json_line(line, &mut self.stray) else {
            return;
        };
        if let Some(s) = v["sessionID"].as_str() {
            self.session = Some(s.to_string());
        }
        let part = &v["part"];
        match v["type"].as_str().unwrap_or("") {
            "text" => self.text = part["text"].as_str().map(String::from),
            "tool_use" => self.text = None,
            "step_finish" => {
                let t = &part["tokens"];
                let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
                self.usage.input += n(&t["input"]);
                self.usage.output += n(&t["output"]) + n(&t["reasoning"]);
                self.usage.cache_read += n(&t["cache"]["read"]);
                self.usage.cache_write += n(&t["cache"]["write"]);
            }
            "error" => {
                let e = &v["error"];
                let text = e["data"]["message"]
                    .as_str()
                    .or_else(|| e["name"].as_str())
                    .unwrap_or("error");
                self.error = Some(match &self.error {
                    Some(prev) => format!("{prev}; {text}"),
                    None => text.to_string(),
                });
            }
            "done" => self.done = true,
            _ => {}
        }
    }

    fn session(&self) -> Option<String> {
        self.session.clone()
    }

    fn has_result(&self) -> bool {
        self.done || self.error.is_some()
    }

    fn outcome(&self) -> Result<AgentReply, AgentFailure> {
        if let Some(e) = &self.error {
            return Err(cli_agent::classified(format!("opencode: {e}"), self.usage));
        }
        match (&self.text, self.done) {
            (Some(t), true) if !t.trim().is_empty() => Ok(AgentReply {
                output: AgentOutput::Text(t.clone()),
                usage: self.usage,
            }),
            (_, done) => {
                let reason = if done {
                    "malformed reply: opencode went idle without a text answer"
                } else {
                    "malformed reply: opencode ended without `done`"
                };
                Err(cli_agent::malformed(
                    cli_agent::with_stray(reason.into(), &self.stray),
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
    fn the_last_text_part_and_the_step_tokens() {
        let mut s = OpencodeStream::default();
        for line in [
            r#"{"type":"step_start","timestamp":1,"sessionID":"ses_1","part":{"type":"step-start"}}"#,
            r#"{"type":"text","timestamp":2,"sessionID":"ses_1","part":{"type":"text","text":"I will look."}}"#,
            r#"{"type":"tool_use","timestamp":3,"sessionID":"ses_1","part":{"type":"tool","tool":"read","state":{"status":"completed"}}}"#,
            r#"{"type":"step_finish","timestamp":4,"sessionID":"ses_1","part":{"type":"step-finish","tokens":{"input":100,"output":10,"reasoning":5,"cache":{"read":40,"write":2}},"cost":0.01}}"#,
            r#"{"type":"text","timestamp":5,"sessionID":"ses_1","part":{"type":"text","text":"The answer."}}"#,
            r#"{"type":"step_finish","timestamp":6,"sessionID":"ses_1","part":{"type":"step-finish","tokens":{"input":20,"output":3,"reasoning":0,"cache":{"read":0,"write":0}}}}"#,
            r#"{"type":"done","timestamp":7,"sessionID":"ses_1","reason":"idle","rejected":[]}"#,
        ] {
            s.line(line);
        }
        assert_eq!(s.session().as_deref(), Some("ses_1"));
        let r = s.outcome().unwrap();
        assert_eq!(r.output, AgentOutput::Text("The answer.".into()));
        assert_eq!(
            (
                r.usage.input,
                r.usage.output,
                r.usage.cache_read,
                r.usage.cache_write
            ),
            (120, 18, 40, 2)
        );
        let mut s = OpencodeStream::default();
        s.line(r#"{"type":"error","timestamp":1,"sessionID":"s","error":{"name":"APIError","data":{"message":"429 rate limit exceeded"}}}"#);
        assert_eq!(s.outcome().unwrap_err().kind, FailureKind::Quota);
    }
}
