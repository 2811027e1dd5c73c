//! The built-in simulated backend, for dry runs and tests.
//!
//! A reply is a pure function of (prompt, options, attempt): never of agent
//! ids or timing, so runs are reproducible and resumable. A rules file
//! scripts specific agents; `--sim-trace` records each live execution so
//! tests can assert concurrency and ordering without timing anything.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::{
    AgentBackend, AgentFailure, AgentOutput, AgentReply, AgentRequest, AgentResult, BoxFuture,
    FailureKind, Usage,
};
use crate::run::key::content_key;

/// A rules file: `{"rules": [...], "default": {...}}`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRules {
    #[serde(default)]
    /// Rules, first match wins.
    pub rules: Vec<SimRule>,
    #[serde(default)]
    /// What agents no rule matches get.
    pub default: SimBehaviour,
}

/// First matching rule wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRule {
    #[serde(rename = "match", default)]
    /// Which agents the rule is for.
    pub matcher: SimMatch,
    /// The reply (a string, or a JSON value).
    pub reply: Option<Value>,
    /// Fail the agent with this reason.
    pub error: Option<String>,
    /// With `error`: `quota` or `auth` failures feed the circuit breaker.
    #[serde(default)]
    pub error_kind: FailureKind,
    /// Reply with output that fails the call's schema.
    #[serde(default)]
    pub invalid: bool,
    /// The rule applies only to these tries (1-based); all when absent.
    pub attempts: Option<Vec<u32>>,
    /// How long the agent takes.
    pub latency_ms: Option<u64>,
    /// Tokens it reports.
    pub usage: Option<SimUsage>,
}

/// What a rule matches; every given field must match.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimMatch {
    /// Glob over `opts.label` (`*` any run, `?` one character).
    pub label: Option<String>,
    /// Substring of the prompt, or `/regex/` to match a regular expression.
    pub prompt: Option<String>,
    #[serde(skip)]
    regex: Option<regex::Regex>,
}

/// What happens when no rule matches.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimBehaviour {
    /// The reply.
    pub reply: Option<Value>,
    /// How long agents take.
    pub latency_ms: Option<u64>,
    /// Tokens they report.
    pub usage: Option<SimUsage>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
/// Tokens a simulated agent reports.
pub struct SimUsage {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    #[serde(default)]
    /// Cache-read input tokens.
    pub cache_read: u64,
    #[serde(default)]
    /// Cache-write input tokens.
    pub cache_write: u64,
}

impl SimRules {
    /// Reads and checks a rules file.
    pub fn load(path: &Path) -> Result<SimRules, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let rules: SimRules =
            serde_json::from_str(&text).map_err(|e| format!("not a valid rules file: {e}"))?;
        let mut rules = rules;
        for (i, rule) in rules.rules.iter_mut().enumerate() {
            let outcomes = [rule.reply.is_some(), rule.error.is_some(), rule.invalid];
            if outcomes.iter().filter(|b| **b).count() > 1 {
                return Err(format!(
                    "rule {i} has more than one of `reply`, `error` and `invalid`; keep one"
                ));
            }
            if let Some(p) = &rule.matcher.prompt
                && p.len() >= 2
                && p.starts_with('/')
                && p.ends_with('/')
            {
                let re = regex::Regex::new(&p[1..p.len() - 1]).map_err(|e| {
                    format!("rule {i}: match.prompt is not a valid regular expression: {e}")
                })?;
                rule.matcher.regex = Some(re);
            }
        }
        Ok(rules)
    }

    fn find(&self, request: &AgentRequest) -> Option<&SimRule> {
        self.rules.iter().find(|r| {
            r.attempts
                .as_ref()
                .is_none_or(|a| a.contains(&request.attempt))
                && r.matcher.matches(request)
        })
    }
}

impl SimMatch {
    fn matches(&self, request: &AgentRequest) -> bool {
        if let Some(glob) = &self.label
            && !glob_match(glob, request.label.as_deref().unwrap_or(""))
        {
            return false;
        }
        match (&self.regex, &self.prompt) {
            (Some(re), _) => re.is_match(&request.prompt),
            (None, Some(sub)) => request.prompt.contains(sub.as_str()),
            (None, None) => true,
        }
    }
}

/// `*` matches any run of characters, `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One line per live execution, written when it ends.
#[derive(Clone)]
pub struct SimTrace {
    out: Arc<Mutex<BufWriter<File>>>,
}

impl SimTrace {
    /// A trace file (created or truncated).
    pub fn create(path: &Path) -> std::io::Result<SimTrace> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(SimTrace {
            out: Arc::new(Mutex::new(BufWriter::new(file))),
        })
    }

    fn record(&self, request: &TracedCall, start: Duration, end: Duration, abandoned: bool) {
        let mut line = serde_json::json!({
            "key": request.key,
            "label": request.label,
            "phase": request.phase,
            "attempt": request.attempt,
            "start_us": start.as_micros() as u64,
            "end_us": end.as_micros() as u64,
        });
        if abandoned {
            line["abandoned"] = serde_json::Value::Bool(true);
        }
        if let Ok(mut out) = self.out.lock() {
            // A trace is a test aid: losing a line must not fail the agent.
            let _ = writeln!(out, "{line}").and_then(|_| out.flush());
        }
    }
}

/// Writes an execution's trace line when it is dropped unfinished (the
/// run skipped, retried or stopped it), so the trace shows every execution.
struct Unfinished {
    /// The trace, the call, the trace's epoch and base, and the start.
    trace: Option<(SimTrace, TracedCall, Instant, Duration, Duration)>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some((trace, call, epoch, base, start)) = self.trace.take() {
            trace.record(&call, base + start, base + epoch.elapsed(), true);
        }
    }
}

/// What a trace line says about the call.
struct TracedCall {
    key: String,
    label: Option<String>,
    phase: Option<String>,
    attempt: u32,
}

/// The simulated backend.
pub struct SimBackend {
    rules: SimRules,
    default_latency: Duration,
    trace: Option<SimTrace>,
    /// Schema replies fill every list with this many items (plan's
    /// "typical" dry run); `None`: one item, or `minItems`.
    list_items: Option<usize>,
    /// Trace times are relative to this instant; an absolute base from the
    /// wall clock keeps traces of separate processes comparable.
    epoch: Instant,
    epoch_unix_us: u64,
}

impl SimBackend {
    /// A backend answering by `rules`, after `default_latency` unless a rule says otherwise, tracing every execution to `trace`.
    pub fn new(rules: SimRules, default_latency: Duration, trace: Option<SimTrace>) -> SimBackend {
        let epoch_unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        SimBackend {
            rules,
            default_latency,
            trace,
            list_items: None,
            epoch: Instant::now(),
            epoch_unix_us,
        }
    }
}

impl SimBackend {
    /// Schema replies with `items` distinct items in every list.
    pub fn with_list_items(mut self, items: usize) -> SimBackend {
        self.list_items = Some(items);
        self
    }
}

/// The reply when no rule says otherwise: names the call's content, so
/// different calls get different answers and equal calls equal ones.
fn default_text(key: &str, prompt: &str) -> String {
    let excerpt: String = prompt.chars().take(60).collect();
    let more = if prompt.chars().count() > 60 {
        "…"
    } else {
        ""
    };
    format!("sim reply {}: {excerpt}{more}", &key[..12])
}

fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

impl AgentBackend for SimBackend {
    fn name(&self) -> &str {
        "sim"
    }

    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        let key = content_key(&request.prompt, &request.options);
        let rule = self.rules.find(&request);
        let latency = rule
            .and_then(|r| r.latency_ms)
            .or(self.rules.default.latency_ms)
            .map(Duration::from_millis)
            .unwrap_or(self.default_latency);
        let usage_override = rule.and_then(|r| r.usage).or(self.rules.default.usage);
        let input_tokens = estimate_tokens(&request.prompt);
        let kind = rule.map(|r| r.error_kind).unwrap_or_default();
        let schema = request.schema.as_ref().map(|s| s.value.clone());
        let outcome: Result<AgentOutput, String> = match rule {
            Some(SimRule { error: Some(e), .. }) => Err(e.clone()),
            Some(SimRule { reply: Some(v), .. }) => Ok(output_of(v)),
            Some(SimRule { invalid: true, .. }) => Ok(match &schema {
                Some(s) => AgentOutput::Json(crate::script::schema::invalid_sample(s)),
                None => AgentOutput::Text("(sim) invalid output".into()),
            }),
            _ => match (&self.rules.default.reply, &schema) {
                (Some(v), _) => Ok(output_of(v)),
                (None, Some(s)) => Ok(AgentOutput::Json(match self.list_items {
                    Some(n) => crate::script::schema::sample_lists(s, &key[..8], n),
                    None => crate::script::schema::sample(s, &key[..8]),
                })),
                (None, None) => Ok(AgentOutput::Text(default_text(&key, &request.prompt))),
            },
        };
        let usage = usage_override
            .map(|u| Usage {
                input: u.input,
                output: u.output,
                cache_read: u.cache_read,
                cache_write: u.cache_write,
                tool_uses: 0,
                ..Usage::default()
            })
            .unwrap_or_else(|| {
                Usage::new(
                    input_tokens,
                    match &outcome {
                        Ok(AgentOutput::Text(t)) => estimate_tokens(t),
                        Ok(AgentOutput::Json(v)) => estimate_tokens(&v.to_string()),
                        Err(_) => 0,
                    },
                )
            });
        let trace = self.trace.clone();
        let epoch = self.epoch;
        let base = Duration::from_micros(self.epoch_unix_us);
        let call = TracedCall {
            key,
            label: request.label.clone(),
            phase: request.phase.clone(),
            attempt: request.attempt,
        };
        Box::pin(async move {
            let start = epoch.elapsed();
            let mut unfinished = Unfinished { trace: None };
            if !latency.is_zero() {
                unfinished.trace = trace.clone().map(|t| {
                    (
                        t,
                        TracedCall {
                            key: call.key.clone(),
                            label: call.label.clone(),
                            phase: call.phase.clone(),
                            attempt: call.attempt,
                        },
                        epoch,
                        base,
                        start,
                    )
                });
                tokio::time::sleep(latency).await;
                unfinished.trace = None;
            }
            if let Some(trace) = trace {
                trace.record(&call, base + start, base + epoch.elapsed(), false);
            }
            match outcome {
                Ok(output) => Ok(AgentReply { output, usage }),
                Err(reason) => Err(AgentFailure {
                    reason,
                    usage,
                    kind,
                }),
            }
        })
    }
}

fn output_of(v: &Value) -> AgentOutput {
    match v {
        Value::String(s) => AgentOutput::Text(s.clone()),
        other => AgentOutput::Json(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("verify:*", "verify:route-3"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("verify:*", "scan:1"));
        assert!(glob_match("*:*:x", "a:b:c:x"));
        assert!(!glob_match("a", "ab"));
    }

    #[test]
    fn rules_reject_unknown_fields_and_contradictions() {
        let dir = std::env::temp_dir().join(format!("wf-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.json");
        std::fs::write(&p, r#"{"rules":[{"match":{"lable":"x"}}]}"#).unwrap();
        assert!(SimRules::load(&p).unwrap_err().contains("lable"));
        std::fs::write(&p, r#"{"rules":[{"reply":"a","error":"b"}]}"#).unwrap();
        assert!(SimRules::load(&p).unwrap_err().contains("more than one"));
        std::fs::write(&p, r#"{"rules":[{"match":{"prompt":"/a(/"}}]}"#).unwrap();
        assert!(
            SimRules::load(&p)
                .unwrap_err()
                .contains("regular expression")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
