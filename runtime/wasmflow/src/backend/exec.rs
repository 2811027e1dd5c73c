//! The `exec` backend: any command is an agent.
//!
//! For each live execution the command runs once (through `/bin/sh -c`),
//! gets the request as one JSON object on stdin, and answers on stdout. The
//! protocol is in `docs/exec-backend.md`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    AgentBackend, AgentFailure, AgentOutput, AgentReply, AgentRequest, AgentResult, BoxFuture,
    FailureKind, Usage,
};

/// Most stdout kept from one agent; past it the agent fails (its output
/// would not fit a reply anyway).
const MAX_STDOUT: usize = 16 << 20;
/// Tail of stderr quoted in a failure.
const STDERR_TAIL: usize = 2000;

/// Agents as any command: request JSON on stdin, reply on stdout (docs/exec-backend.md).
pub struct ExecBackend {
    command: String,
    timeout: Duration,
}

impl ExecBackend {
    /// `command` runs through `/bin/sh -c`; `timeout` bounds each execution.
    pub fn new(command: String, timeout: Duration) -> ExecBackend {
        ExecBackend { command, timeout }
    }
}

/// The JSON object the command reads on stdin.
pub fn request_json(request: &AgentRequest) -> Value {
    json!({
        "protocol": "wasmflow-exec/1",
        "id": request.id,
        "prompt": request.prompt,
        "prompt_with_feedback": request.prompt_with_feedback(),
        "options": request.options,
        "label": request.label,
        "phase": request.phase,
        "attempt": request.attempt,
        "model": request.model,
        "schema": request.schema.as_ref().map(|s| (*s.value).clone()),
        "feedback": request.feedback,
    })
}

/// Reads the command's stdout: a reply object, or plain text.
pub fn parse_reply(stdout: &str) -> AgentResult {
    let usage_of = |v: &Value| {
        let n = |k: &str| v["usage"][k].as_u64().unwrap_or(0);
        Usage {
            input: n("input"),
            output: n("output"),
            cache_read: n("cache_read"),
            cache_write: n("cache_write"),
            tool_uses: n("tool_uses"),
            ..Usage::default()
        }
    };
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(stdout.trim()) {
        let usage = usage_of(&v);
        if let Some(e) = v.get("error") {
            let reason = e
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| e.to_string());
            let kind = serde_json::from_value(v.get("kind").cloned().unwrap_or(Value::Null))
                .unwrap_or_default();
            return Err(AgentFailure {
                reason,
                usage,
                kind,
            });
        }
        if let Some(t) = v.get("text") {
            return match t.as_str() {
                Some(text) => Ok(AgentReply {
                    output: AgentOutput::Text(text.to_string()),
                    usage,
                }),
                None => Err(AgentFailure {
                    reason: "malformed reply: `text` must be a string".into(),
                    usage,
                    kind: FailureKind::Other,
                }),
            };
        }
        if let Some(j) = v.get("json") {
            return Ok(AgentReply {
                output: AgentOutput::Json(j.clone()),
                usage,
            });
        }
    }
    Ok(AgentReply {
        output: AgentOutput::Text(stdout.trim_end().to_string()),
        usage: Usage::default(),
    })
}

fn tail(bytes: &[u8]) -> String {
    super::stderr_tail(bytes, STDERR_TAIL)
}

async fn run_command(command: String, timeout: Duration, request: AgentRequest) -> AgentResult {
    let fail = |reason: String| {
        Err(AgentFailure {
            reason,
            usage: Usage::default(),
            kind: FailureKind::Other,
        })
    };
    let input = request_json(&request).to_string();
    let mut child = match tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .env("WASMFLOW_AGENT_ID", request.id.to_string())
        .env("WASMFLOW_AGENT_ATTEMPT", request.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start the exec command: {e}")),
    };
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return fail("the exec command has no stdio pipes".into());
    };
    let work = async {
        // A command that never reads stdin must not block us: write in the
        // background and ignore a broken pipe.
        let writer = async move {
            let _ = stdin.write_all(input.as_bytes()).await;
            let _ = stdin.shutdown().await;
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let reader = async {
            let mut limited = (&mut stdout).take(MAX_STDOUT as u64 + 1);
            limited.read_to_end(&mut out).await
        };
        let err_reader = stderr.read_to_end(&mut err);
        let ((), out_res, _) = tokio::join!(writer, reader, err_reader);
        let status = child.wait().await;
        (out_res, out, err, status)
    };
    let (out_res, out, err, status) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            return fail(format!(
                "the agent timed out after {timeout:?} (raise it with --agent-timeout)"
            ));
        }
    };
    if let Err(e) = out_res {
        return fail(format!("cannot read the exec command's output: {e}"));
    }
    if out.len() > MAX_STDOUT {
        return fail(format!(
            "the agent's output exceeds {} MiB",
            MAX_STDOUT >> 20
        ));
    }
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            let why = tail(&err);
            return fail(format!(
                "the exec command exited with {s}{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ));
        }
        Err(e) => return fail(format!("cannot wait for the exec command: {e}")),
    }
    match String::from_utf8(out) {
        Ok(text) => parse_reply(&text),
        Err(_) => fail("malformed reply: the agent's output is not UTF-8".into()),
    }
}

impl AgentBackend for ExecBackend {
    fn name(&self) -> &str {
        "exec"
    }

    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        Box::pin(run_command(self.command.clone(), self.timeout, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let r = parse_reply(r#"{"text": "hi", "usage": {"input": 3, "output": 1}}"#).unwrap();
        assert_eq!(r.output, AgentOutput::Text("hi".into()));
        assert_eq!(r.usage, Usage::new(3, 1));
        assert_eq!(
            parse_reply(r#"{"json": [1]}"#).unwrap().output,
            AgentOutput::Json(json!([1]))
        );
        assert_eq!(
            parse_reply("just text\n").unwrap().output,
            AgentOutput::Text("just text".into())
        );
        assert_eq!(
            parse_reply(r#"{"error": "quota"}"#).unwrap_err().reason,
            "quota"
        );
        assert!(
            parse_reply(r#"{"text": 5}"#)
                .unwrap_err()
                .reason
                .contains("malformed")
        );
        // A JSON object that is not a reply object is plain text.
        assert_eq!(
            parse_reply(r#"{"answer": 1}"#).unwrap().output,
            AgentOutput::Text(r#"{"answer": 1}"#.into())
        );
    }
}
