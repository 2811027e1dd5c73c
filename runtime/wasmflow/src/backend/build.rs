//! Turning a run spec and the config into the run's backends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::AgentBackend;
use crate::backend::anthropic::{AnthropicBackend, AnthropicSettings};
use crate::backend::claude::ClaudeSettings;
use crate::backend::cli_agent::{CliAgentBackend, CliSettings};
use crate::backend::codex::Codex;
use crate::backend::exec::ExecBackend;
use crate::backend::http::HttpOptions;
use crate::backend::openai::{OpenAiBackend, OpenAiSettings};
use crate::backend::retry::RetryPolicy;
use crate::backend::router::{BACKENDS, Router};
use crate::backend::sim::{SimBackend, SimRules, SimTrace};
use crate::config::Config;
use crate::error::InputError;
use crate::limits::parse_duration;
use crate::run::launch::Notices;
use crate::run::spec::RunSpec;
use crate::sandbox::host::Routing;
use crate::script::Script;
use crate::tools::Toolbox;

/// Options that change what an agent may do with tools; an HTTP backend
/// has none to give.
const TOOL_OPTIONS: &[&str] = &[
    "isolation",
    "agentType",
    "disallowedTools",
    "bashCommandClamp",
];

/// Every backend a run on `name` may send agents to: `name`, and those the
/// `[models]` aliases the script names route to.
pub fn backend_names(
    name: &str,
    config: &Config,
    default_model: Option<&str>,
    script: &Script,
) -> Vec<String> {
    let routing = Routing::new(
        Arc::new(config.clone()),
        default_model.map(String::from),
        script,
    );
    let mut names = vec![name.to_string()];
    for m in routing.planned(script) {
        if let Some(b) = m.backend
            && !names.contains(&b)
        {
            names.push(b);
        }
    }
    names
}

/// What building a run's backends takes besides its name.
pub struct BuildContext<'a> {
    /// The run.
    pub spec: &'a RunSpec,
    /// The merged configuration.
    pub config: &'a Config,
    /// The script (its `[models]` aliases route agents).
    pub script: &'a Script,
    /// The default model alias.
    pub default_model: Option<&'a str>,
    /// Wall clock per agent.
    pub agent_timeout: Duration,
    /// Tools for the HTTP backends' agents.
    pub tools: Option<Arc<Toolbox>>,
    /// Where tool-using agents keep their transcripts.
    pub transcripts: crate::run::transcript::Transcripts,
}

/// The backend the run talks to: `name`'s, plus any that `[models]`
/// aliases the script names route to.
pub fn build(
    cx: &BuildContext<'_>,
    name: &str,
    notices: &mut Notices,
) -> Result<Arc<dyn AgentBackend>, InputError> {
    let (spec, config, script, default_model) = (cx.spec, cx.config, cx.script, cx.default_model);
    let tools = &cx.tools;
    if !BACKENDS.contains(&name) {
        return Err(InputError::Invalid(format!(
            "unknown backend `{name}`; available: {}",
            BACKENDS.join(", ")
        )));
    }
    if spec.backend.exec.is_some() && name != "exec" {
        return Err(InputError::Invalid(format!(
            "--exec goes with --backend exec, not with --backend {name}"
        )));
    }
    if name == "openai" && default_model.is_none() {
        return Err(InputError::Invalid(
            "the openai backend needs a model for agents that name none: set default_model in wasmflow.toml or pass --model (e.g. --model llama3.1:8b)".into(),
        ));
    }
    let names = backend_names(name, config, default_model, script);
    let mut backends: BTreeMap<String, Arc<dyn AgentBackend>> = BTreeMap::new();
    for n in &names {
        backends.insert(n.clone(), one(cx, n, n == name, notices)?);
    }
    for http in names.iter().filter(|n| *n == "anthropic" || *n == "openai") {
        if let Some(t) = tools.as_ref().filter(|t| !t.entries().is_empty()) {
            let mut servers: Vec<&str> =
                t.entries().iter().map(|e| e.info.server.as_str()).collect();
            servers.dedup();
            notices.note(format!(
                "wasmflow: agents on {http} may call {} from MCP server{} {}",
                crate::run::launch::plural(t.entries().len() as u64, "tool"),
                if servers.len() == 1 { "" } else { "s" },
                servers.join(", ")
            ));
            continue;
        }
        let uses_tools = TOOL_OPTIONS.iter().any(|o| script.source.contains(o));
        let text = format!(
            "the {http} backend's agents have no tools: they cannot read files, run commands or edit code; give them MCP servers ([mcp_servers] in wasmflow.toml, docs/tools.md) or route such work to the claude or exec backend"
        );
        if uses_tools {
            notices.warning(format!(
                "warning: {text} (this script sets {})",
                TOOL_OPTIONS
                    .iter()
                    .filter(|o| script.source.contains(*o))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else {
            notices.note(format!("wasmflow: note: {text}"));
        }
    }
    // Options a coding-agent CLI cannot honour: said once per run.
    for (backend, options) in [
        ("codex", crate::backend::codex::UNSUPPORTED_OPTIONS),
        ("gemini", crate::backend::gemini::UNSUPPORTED_OPTIONS),
        ("qwen", crate::backend::qwen::UNSUPPORTED_OPTIONS),
        ("opencode", crate::backend::opencode::UNSUPPORTED_OPTIONS),
    ] {
        let ignored: Vec<&str> = options
            .iter()
            .copied()
            .filter(|o| script.source.contains(o))
            .collect();
        if names.iter().any(|n| n == backend) && !ignored.is_empty() {
            notices.warning(format!(
                "warning: the {backend} backend has no equivalent of opts.{}: its agents run without it",
                ignored.join(", opts.")
            ));
        }
    }
    if names.len() == 1 {
        return Ok(backends.remove(name).expect("inserted above"));
    }
    Ok(Arc::new(Router::new(name.to_string(), backends)))
}

fn durations(config: &Config) -> Result<(Option<Duration>, Duration), InputError> {
    let parse = |key: &str, v: &Option<String>| -> Result<Option<Duration>, InputError> {
        v.as_deref()
            .map(|t| parse_duration(t).map_err(|e| InputError::Invalid(format!("{key}: {e}"))))
            .transpose()
    };
    Ok((
        parse("stall_timeout", &config.stall_timeout)?,
        parse("retry_base", &config.retry_base)?.unwrap_or(Duration::from_secs(1)),
    ))
}

fn one(
    cx: &BuildContext<'_>,
    name: &str,
    is_default: bool,
    notices: &mut Notices,
) -> Result<Arc<dyn AgentBackend>, InputError> {
    let (spec, config, agent_timeout) = (cx.spec, cx.config, cx.agent_timeout);
    let (tools, transcripts) = (cx.tools.clone(), &cx.transcripts);
    let (stall, retry_base) = durations(config)?;
    let stall = spec
        .backend
        .stall_timeout_ms
        .map(Duration::from_millis)
        .or(stall);
    let http = HttpOptions {
        timeout: agent_timeout,
        stall: stall.unwrap_or(Duration::from_secs(120)),
        retry: RetryPolicy {
            retries: spec.backend.retries.or(config.retries).unwrap_or(4),
            base: retry_base,
            ..RetryPolicy::default()
        },
    };
    Ok(match name {
        "exec" => {
            let command = spec.backend.exec.clone().or_else(|| config.exec.clone());
            let Some(command) = command.filter(|c| !c.trim().is_empty()) else {
                return Err(InputError::Invalid(
                    "the exec backend needs the command to run: --exec 'my-agent --flag' (or exec = \"…\" in wasmflow.toml)".into(),
                ));
            };
            Arc::new(ExecBackend::new(command, agent_timeout))
        }
        "claude" => {
            let cwd = std::env::current_dir().map_err(|e| {
                InputError::Invalid(format!("cannot read the working directory: {e}"))
            })?;
            let servers = crate::tools::servers::configured(
                config,
                &cwd,
                spec.backend.mcp_config.as_deref(),
            )?;
            let mcp_config = if servers.is_empty() {
                None
            } else {
                Some(Arc::new(
                    crate::tools::servers::ClaudeMcpConfig::write(&servers).map_err(|e| {
                        InputError::Invalid(format!(
                            "cannot write the MCP server list for Claude Code: {e}"
                        ))
                    })?,
                ))
            };
            // `[tools] deny` holds for Claude Code's agents too.
            let mut disallowed_tools = config.claude.disallowed_tools.clone();
            disallowed_tools.extend(config.tools.deny.iter().cloned());
            Arc::new(crate::backend::claude::backend(ClaudeSettings {
                command: config
                    .claude
                    .command
                    .clone()
                    .unwrap_or_else(|| "claude".into()),
                allowed_tools: config.claude.allowed_tools.clone(),
                disallowed_tools,
                timeout: agent_timeout,
                stall: stall.unwrap_or(Duration::from_secs(600)),
                cwd,
                mcp_config,
            }))
        }
        "codex" => {
            let c = &config.codex;
            cli(
                |cwd| Codex {
                    command: c.command.clone().unwrap_or_else(|| "codex".into()),
                    sandbox: c
                        .sandbox
                        .clone()
                        .unwrap_or_else(|| "workspace-write".into()),
                    skip_git_repo_check: c.skip_git_repo_check.unwrap_or(false),
                    cwd,
                },
                agent_timeout,
                stall,
            )?
        }
        "gemini" => {
            let g = &config.gemini;
            cli(
                |_| crate::backend::gemini::Gemini {
                    command: g.command.clone().unwrap_or_else(|| "gemini".into()),
                    approval_mode: g
                        .approval_mode
                        .clone()
                        .unwrap_or_else(|| "auto_edit".into()),
                    home: crate::script::saved::home_dir(),
                },
                agent_timeout,
                stall,
            )?
        }
        "qwen" => {
            let q = &config.qwen;
            cli(
                |_| crate::backend::qwen::Qwen {
                    command: q.command.clone().unwrap_or_else(|| "qwen".into()),
                    approval_mode: q
                        .approval_mode
                        .clone()
                        .unwrap_or_else(|| "auto-edit".into()),
                    home: crate::script::saved::home_dir(),
                },
                agent_timeout,
                stall,
            )?
        }
        "opencode" => {
            let mut data_dirs: Vec<std::path::PathBuf> = std::env::var_os("XDG_DATA_HOME")
                .filter(|d| !d.is_empty())
                .map(std::path::PathBuf::from)
                .into_iter()
                .collect();
            data_dirs.extend(crate::script::saved::home_dir().map(|h| h.join(".local/share")));
            let command = config
                .opencode
                .command
                .clone()
                .unwrap_or_else(|| "opencode".into());
            cli(
                |_| crate::backend::opencode::Opencode { command, data_dirs },
                agent_timeout,
                stall,
            )?
        }
        "anthropic" => Arc::new(
            AnthropicSettings::from_env(&config.anthropic, http)
                .map(|mut s| {
                    s.max_turns = config
                        .tools
                        .max_turns
                        .unwrap_or(crate::tools::DEFAULT_MAX_TURNS);
                    s
                })
                .and_then(AnthropicBackend::new)
                .map_err(InputError::Invalid)?
                .with_tools(tools, transcripts.clone()),
        ),
        "openai" => Arc::new(
            OpenAiSettings::from_env(&config.openai, http)
                .and_then(OpenAiBackend::new)
                .map_err(InputError::Invalid)?
                .with_tools(tools, transcripts.clone()),
        ),
        _ => sim(
            spec,
            is_default && spec.backend.name.is_none() && config.backend.is_none(),
            notices,
        )?,
    })
}

/// A coding-agent CLI backend in the working directory.
fn cli<T: crate::backend::cli_agent::CliTool>(
    tool: impl FnOnce(std::path::PathBuf) -> T,
    agent_timeout: Duration,
    stall: Option<Duration>,
) -> Result<Arc<dyn AgentBackend>, InputError> {
    let cwd = std::env::current_dir()
        .map_err(|e| InputError::Invalid(format!("cannot read the working directory: {e}")))?;
    Ok(Arc::new(CliAgentBackend::new(
        tool(cwd.clone()),
        CliSettings {
            timeout: agent_timeout,
            stall: stall.unwrap_or(Duration::from_secs(600)),
            cwd,
        },
    )))
}

fn sim(
    spec: &RunSpec,
    implicit: bool,
    notices: &mut Notices,
) -> Result<Arc<dyn AgentBackend>, InputError> {
    if implicit {
        notices.note(
            "wasmflow: no backend set: using the simulated backend (sim); agents are not real"
                .into(),
        );
    }
    let sim = &spec.backend.sim;
    let rules = match &sim.rules {
        Some(path) => SimRules::load(path).map_err(|reason| InputError::SimRules {
            path: path.clone(),
            reason,
        })?,
        None => SimRules::default(),
    };
    let trace = match &sim.trace {
        Some(path) => Some(SimTrace::create(path).map_err(|e| InputError::Output {
            what: "the sim trace",
            path: path.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    Ok(Arc::new(SimBackend::new(
        rules,
        Duration::from_millis(sim.latency_ms),
        trace,
    )))
}
