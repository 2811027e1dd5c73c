//! What a model driving the server may choose: the user's `[mcp]` section
//! (`~/.config/wasmflow/config.toml`) and the `wasmflow mcp` flags set it;
//! the project's `wasmflow.toml` may only lower it. Tool input picks
//! within it and never outside.

use std::path::Path;

use serde::Serialize;
use wasmflow::config::{Config, McpSection};

/// Defaults when nothing configures them.
const MAX_AGENTS: u64 = 200;
const MAX_COST_USD: f64 = 5.0;
const MAX_RUNNING_RUNS: u64 = 8;

/// The limits in force for one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Backends a call may name; the first is used when it names none.
    pub backends: Vec<String>,
    /// Most agents a run may start.
    pub max_agents: u64,
    /// Most a run may cost, USD.
    pub max_cost_usd: f64,
    /// Runs on models without a price may start.
    pub allow_unpriced: bool,
    /// Most runs going at once in the project.
    pub max_running_runs: u64,
    /// Settings the project's file makes that name a command, a URL or
    /// a key variable, as (backend, key): a model can edit project files,
    /// so a run on such a backend is refused.
    #[serde(skip)]
    pub project_sets: Vec<(&'static str, &'static str)>,
}

/// The `wasmflow mcp` flags: the user's own choice, so they may raise.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--backends`.
    pub backends: Option<Vec<String>>,
    /// `--max-agents`.
    pub max_agents: Option<u64>,
    /// `--max-cost-usd`.
    pub max_cost_usd: Option<f64>,
    /// `--allow-unpriced`.
    pub allow_unpriced: bool,
    /// `--max-running-runs`.
    pub max_running_runs: Option<u64>,
}

impl Policy {
    /// The policy for a project: user config and flags, lowered by the
    /// project's file.
    pub fn load(project: &Path, home: Option<&Path>, flags: &Flags) -> Result<Policy, String> {
        let user = match home.map(|h| h.join(".config/wasmflow/config.toml")) {
            Some(path) if path.is_file() => Config::read(&path).map_err(|e| e.to_string())?,
            _ => Config::default(),
        };
        let project_file = project
            .ancestors()
            .map(|d| d.join("wasmflow.toml"))
            .find(|p| p.is_file());
        let project_config = match &project_file {
            Some(path) => Some(Config::read(path).map_err(|e| e.to_string())?),
            None => None,
        };
        let mut policy = Policy::from_user(&user, flags);
        if let Some(p) = &project_config {
            policy.lower(&p.mcp);
            policy.project_sets = commands_and_urls(p);
        }
        Ok(policy)
    }

    fn from_user(user: &Config, flags: &Flags) -> Policy {
        let mcp = &user.mcp;
        let backends = flags
            .backends
            .clone()
            .or_else(|| mcp.backends.clone())
            .unwrap_or_else(|| vec![user.backend.clone().unwrap_or_else(|| "sim".into())]);
        Policy {
            backends,
            max_agents: flags.max_agents.or(mcp.max_agents).unwrap_or(MAX_AGENTS),
            max_cost_usd: flags
                .max_cost_usd
                .or(mcp.max_cost_usd)
                .unwrap_or(MAX_COST_USD),
            allow_unpriced: flags.allow_unpriced || mcp.allow_unpriced.unwrap_or(false),
            max_running_runs: flags
                .max_running_runs
                .or(mcp.max_running_runs)
                .unwrap_or(MAX_RUNNING_RUNS),
            project_sets: Vec::new(),
        }
    }

    /// A project's `[mcp]`: each setting can only make the policy stricter.
    fn lower(&mut self, project: &McpSection) {
        if let Some(allowed) = &project.backends {
            self.backends.retain(|b| allowed.contains(b));
        }
        if let Some(n) = project.max_agents {
            self.max_agents = self.max_agents.min(n);
        }
        if let Some(usd) = project.max_cost_usd {
            self.max_cost_usd = self.max_cost_usd.min(usd);
        }
        if project.allow_unpriced == Some(false) {
            self.allow_unpriced = false;
        }
        if let Some(n) = project.max_running_runs {
            self.max_running_runs = self.max_running_runs.min(n);
        }
    }

    /// The backend a call runs on: the one it names if allowed, else the
    /// first allowed.
    pub fn backend(&self, asked: Option<&str>) -> Result<String, String> {
        let how = "the user can allow more in ~/.config/wasmflow/config.toml, e.g. [mcp] backends = [\"sim\", \"claude\"], or with `wasmflow mcp --backends`";
        match asked {
            Some(b) if self.backends.iter().any(|x| x == b) => Ok(b.to_string()),
            Some(b) => Err(format!(
                "backend `{b}` is not allowed here (allowed: {}); {how}",
                self.allowed()
            )),
            None => self.backends.first().cloned().ok_or_else(|| {
                format!("no backend is allowed (the project's [mcp] backends leaves none); {how}")
            }),
        }
    }

    /// Refuses a run whose agents may go to a backend outside the policy,
    /// or to one the project's file points at a command or URL of its own.
    pub fn check_backends(&self, used: &[String]) -> Result<(), String> {
        for b in used {
            if !self.backends.contains(b) {
                return Err(format!(
                    "this run would send agents to the `{b}` backend (a [models] alias routes there), which is not allowed here (allowed: {}); the user can allow it in ~/.config/wasmflow/config.toml [mcp] backends",
                    self.allowed()
                ));
            }
            let sets =
                |owner: &&str| *owner == b || *owner == "all" || (*owner == "*" && b != "sim");
            if let Some((_, key)) = self.project_sets.iter().find(|(owner, _)| sets(owner)) {
                return Err(format!(
                    "the project's wasmflow.toml sets `{key}`, and runs started by a model take commands, URLs, key variables, prices and confirmation thresholds only from the user's config (a model can edit project files): move `{key}` to ~/.config/wasmflow/config.toml to run on `{b}` through MCP"
                ));
            }
        }
        Ok(())
    }

    fn allowed(&self) -> String {
        if self.backends.is_empty() {
            "none".into()
        } else {
            self.backends.join(", ")
        }
    }
}

/// What a config file sets that would choose a command line, a URL or an
/// environment variable for a backend (`*`: any backend that costs money,
/// for prices and confirmation thresholds; `all`: any backend at all).
fn commands_and_urls(c: &Config) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if c.exec.is_some() {
        out.push(("exec", "exec"));
    }
    if c.claude.command.is_some() {
        out.push(("claude", "claude.command"));
    }
    if c.anthropic.base_url.is_some() {
        out.push(("anthropic", "anthropic.base_url"));
    }
    if c.anthropic.api_key_env.is_some() {
        out.push(("anthropic", "anthropic.api_key_env"));
    }
    if c.openai.base_url.is_some() {
        out.push(("openai", "openai.base_url"));
    }
    if c.openai.api_key_env.is_some() {
        out.push(("openai", "openai.api_key_env"));
    }
    for (backend, key, command) in [
        ("codex", "codex.command", &c.codex.command),
        ("gemini", "gemini.command", &c.gemini.command),
        ("qwen", "qwen.command", &c.qwen.command),
        ("opencode", "opencode.command", &c.opencode.command),
    ] {
        if command.is_some() {
            out.push((backend, key));
        }
    }
    // Server tools cost money per use (searches) and reach the web.
    let a = &c.anthropic;
    if a.server_tools.is_some()
        || a.allowed_server_tools.is_some()
        || a.web_search_max_uses.is_some()
        || a.web_fetch_max_uses.is_some()
    {
        out.push(("anthropic", "anthropic server tools"));
    }
    if c.dispatch.url.is_some() || c.dispatch.creds.is_some() {
        // Prompts would leave the machine, whatever the backend.
        out.push(("all", "[dispatch]"));
    }
    // MCP servers are command lines and URLs too, for any real backend's
    // agents; `[tools]` may only narrow what the user's config offers.
    if !c.mcp_servers.is_empty() {
        out.push(("*", "mcp_servers"));
    }
    let t = &c.tools;
    if t.allow.is_some()
        || t.max_turns.is_some()
        || t.call_timeout.is_some()
        || t.max_result_bytes.is_some()
    {
        out.push(("*", "[tools] (other than deny)"));
    }
    // What caps and confirms spending: any backend that costs money.
    if !c.prices.is_empty() {
        out.push(("*", "prices"));
    }
    let p = &c.plan;
    if p.confirm_agents.is_some()
        || p.confirm_usd.is_some()
        || p.input_tokens.is_some()
        || p.output_tokens.is_some()
        || p.list_items.is_some()
    {
        out.push(("*", "[plan]"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(toml_text: &str) -> Config {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_project_only_lowers() {
        let mut p = Policy::from_user(
            &user("backend = \"claude\"\n[mcp]\nmax_agents = 50\nmax_cost_usd = 2.0\n"),
            &Flags::default(),
        );
        assert_eq!(p.backends, ["claude"]);
        p.lower(&McpSection {
            backends: Some(vec!["sim".into(), "exec".into()]),
            max_agents: Some(10_000),
            max_cost_usd: Some(1.0),
            allow_unpriced: Some(true),
            max_running_runs: Some(100),
        });
        assert!(p.backends.is_empty());
        assert_eq!(p.max_agents, 50);
        assert_eq!(p.max_cost_usd, 1.0);
        assert!(!p.allow_unpriced);
        assert_eq!(p.max_running_runs, MAX_RUNNING_RUNS);
        assert!(p.backend(None).unwrap_err().contains("no backend"));
    }

    #[test]
    fn project_servers_and_tool_caps_stay_out_of_model_runs() {
        let mut p = Policy::from_user(
            &user("backend = \"openai\"\n[mcp]\nbackends = [\"openai\", \"sim\"]\n"),
            &Flags::default(),
        );
        p.project_sets = commands_and_urls(&user(
            "[mcp_servers.fs]\ncommand = \"npx\"\n[tools]\ndeny = [\"*write*\"]\n",
        ));
        let e = p.check_backends(&["openai".into()]).unwrap_err();
        assert!(e.contains("`mcp_servers`"), "{e}");
        assert!(p.check_backends(&["sim".into()]).is_ok());
        // A denial only narrows: allowed.
        p.project_sets = commands_and_urls(&user("[tools]\ndeny = [\"*write*\"]\n"));
        assert!(p.check_backends(&["openai".into()]).is_ok());
        p.project_sets = commands_and_urls(&user("[tools]\nmax_turns = 500\n"));
        assert!(p.check_backends(&["openai".into()]).is_err());
    }

    #[test]
    fn defaults_and_flags() {
        let p = Policy::from_user(&Config::default(), &Flags::default());
        assert_eq!(p.backends, ["sim"]);
        assert_eq!(p.backend(None).unwrap(), "sim");
        assert!(p.backend(Some("exec")).unwrap_err().contains("not allowed"));
        let p = Policy::from_user(
            &Config::default(),
            &Flags {
                max_agents: Some(5000),
                ..Flags::default()
            },
        );
        assert_eq!(p.max_agents, 5000);
    }
}
