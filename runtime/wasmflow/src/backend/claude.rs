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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::cli_agent::{self, CliAgentBackend, CliSettings, CliTool, StreamParser, classify};
use super::{
    AgentFailure, AgentOutput, AgentReply, AgentRequest, BoxFuture, FailureKind, PlannedModel,
    Usage,
};

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
    /// The configured MCP servers, as a `--mcp-config` file.
    pub mcp_config: Option<Arc<crate::tools::servers::ClaudeMcpConfig>>,
}

/// The Claude Code CLI as a [`CliTool`].
pub struct Claude {
    settings: ClaudeSettings,
}

/// Agents through the Claude Code CLI in print mode.
pub type ClaudeBackend = CliAgentBackend<Claude>;

/// The backend for `settings`.
pub fn backend(settings: ClaudeSettings) -> ClaudeBackend {
    let run = CliSettings {
        timeout: settings.timeout,
        stall: settings.stall,
        cwd: settings.cwd.clone(),
    };
    CliAgentBackend::new(Claude { settings }, run)
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
    if let Some(file) = &settings.mcp_config {
        flag("--mcp-config", &file.path.to_string_lossy());
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

/// Reads the `result` message of a stream (the last one wins).
#[derive(Debug, Default)]
pub struct StreamState {
    /// The tool that printed it, for messages (`claude` when unset; Qwen
    /// Code prints the same stream).
    pub tool: Option<&'static str>,
    /// The session id, for a schema retry with `--resume`.
    pub session: Option<String>,
    /// The final `result` event.
    pub result: Option<Value>,
    /// Lines that were not JSON, for the failure message.
    pub stray: Vec<String>,
    /// `tool_use` blocks in the agent's assistant messages.
    pub tool_uses: u64,
}

impl StreamState {
    /// A reader for `tool`'s stream.
    pub fn of(tool: &'static str) -> StreamState {
        StreamState {
            tool: Some(tool),
            ..StreamState::default()
        }
    }

    fn tool(&self) -> &'static str {
        self.tool.unwrap_or("claude")
    }
}

impl StreamParser for StreamState {
    /// Reads one stream-json line.
    fn line(&mut self, line: &str) {
        let Some(v) = cli_agent::json_line(line, &mut self.stray) else {
            return;
        };
        if let Some(s) = v["session_id"].as_str() {
            self.session = Some(s.to_string());
        }
        if v["type"] == "assistant"
            && let Some(blocks) = v["message"]["content"].as_array()
        {
            self.tool_uses += blocks.iter().filter(|b| b["type"] == "tool_use").count() as u64;
        }
        if v["type"] == "result" {
            self.result = Some(v);
        }
    }

    fn session(&self) -> Option<String> {
        self.session.clone()
    }

    fn has_result(&self) -> bool {
        self.result.is_some()
    }

    /// The agent's answer, or why there is none.
    fn outcome(&self) -> Result<AgentReply, AgentFailure> {
        let Some(r) = &self.result else {
            return Err(cli_agent::malformed(
                cli_agent::with_stray(
                    format!(
                        "malformed reply: the {} CLI ended without a `result` message",
                        self.tool()
                    ),
                    &self.stray,
                ),
                Usage::default(),
            ));
        };
        let u = &r["usage"];
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        let usage = Usage {
            input: n("input_tokens"),
            output: n("output_tokens"),
            cache_read: n("cache_read_input_tokens"),
            cache_write: n("cache_creation_input_tokens"),
            tool_uses: self.tool_uses,
            ..Usage::default()
        };
        // Qwen Code puts a failure's words in `error.message` instead.
        let text = r["result"]
            .as_str()
            .or_else(|| r["error"]["message"].as_str());
        let failed = r["is_error"].as_bool().unwrap_or(false)
            || r["subtype"].as_str().is_some_and(|s| s != "success");
        if failed {
            let subtype = r["subtype"].as_str().unwrap_or("error");
            let reason = match text {
                Some(t) if !t.trim().is_empty() => {
                    format!("{}: {subtype}: {}", self.tool(), t.trim())
                }
                _ => format!("{}: {subtype}", self.tool()),
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

impl CliTool for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn command(&self) -> &str {
        &self.settings.command
    }

    fn install_hint(&self) -> String {
        "install Claude Code (npm install -g @anthropic-ai/claude-code) or set [claude] command in wasmflow.toml".into()
    }

    fn arguments(&self, request: &AgentRequest, resume: Option<&str>) -> Vec<String> {
        arguments(&self.settings, request, resume)
    }

    fn parser(&self) -> Box<dyn StreamParser> {
        Box::new(StreamState::default())
    }

    fn preflight(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let command = self.settings.command.clone();
        let hint = self.install_hint();
        Box::pin(async move {
            cli_agent::probe("claude", &command, &["--version"], &hint).await?;
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
            mcp_config: None,
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
        // The configured MCP servers, in a file of Claude Code's format
        // (a variadic flag: followed by flags, never by a bare word).
        let servers = [crate::tools::servers::ServerSpec {
            name: "fs".into(),
            transport: crate::tools::servers::Transport::Stdio {
                command: "npx".into(),
                args: vec!["-y".into(), "server".into()],
                env: Default::default(),
                cwd: PathBuf::from("."),
            },
            origin: "test".into(),
        }];
        let file = Arc::new(crate::tools::servers::ClaudeMcpConfig::write(&servers).unwrap());
        let path = file.path.clone();
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["mcpServers"]["fs"]["command"], "npx");
        let with = ClaudeSettings {
            mcp_config: Some(file),
            ..settings
        };
        let args = arguments(&with, &r, None).join(" ");
        assert!(
            args.contains(&format!("--mcp-config {} --allowedTools", path.display())),
            "{args}"
        );
        drop(with);
        assert!(!path.exists(), "the file goes away with the backend");
    }

    #[test]
    fn results_and_failures() {
        let mut s = StreamState::default();
        s.line(r#"{"type":"system","subtype":"init","session_id":"abc"}"#);
        s.line("not json");
        s.line(r#"{"type":"assistant","message":{"content":[{"type":"text","text":"reading"},{"type":"tool_use","id":"t1","name":"Read","input":{}},{"type":"tool_use","id":"t2","name":"mcp__fs__read_file","input":{}}]},"session_id":"abc"}"#);
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
                cache_write: 1,
                tool_uses: 2,
                ..Usage::default()
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
