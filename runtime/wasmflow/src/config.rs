//! Configuration files: `wasmflow.toml` in the working directory or its
//! nearest ancestor (project), then `~/.config/wasmflow/config.toml` (user).
//! Project settings win over user ones key by key; command-line flags win
//! over both. Secrets never live here: backends read them from the
//! environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::InputError;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    #[serde(default)]
    /// USD per million cache-read tokens.
    pub cache_read: f64,
    #[serde(default)]
    /// USD per million cache-write tokens.
    pub cache_write: f64,
    #[serde(default = "web_search_price")]
    /// USD per 1,000 web searches (Anthropic's server tool; default 10).
    pub web_search_per_1000: f64,
}

/// Anthropic's price of web searches, USD per 1,000, as of 2026-11.
pub const WEB_SEARCH_PER_1000: f64 = 10.0;

fn web_search_price() -> f64 {
    WEB_SEARCH_PER_1000
}

impl Price {
    /// Cost of `input` and `output` tokens, in USD.
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        self.cost_of(crate::backend::Usage::new(input, output))
    }

    /// Cost of a usage, cache reads and writes included, in USD.
    pub fn cost_of(&self, u: crate::backend::Usage) -> f64 {
        (u.input as f64 * self.input
            + u.output as f64 * self.output
            + u.cache_read as f64 * self.cache_read
            + u.cache_write as f64 * self.cache_write)
            / 1e6
            + u.web_searches as f64 * self.web_search_per_1000 / 1e3
    }
}

/// The aliases every run knows, for the `claude` and `anthropic` backends:
/// alias, model id, and list price (USD per million tokens: input, output,
/// cache read, cache write — 5-minute writes), from Anthropic's models
/// overview and pricing pages as of 2026-11. `[models]` and `[prices]` in
/// the config override each.
pub const BUILTIN_MODELS: &[(&str, &str, Price)] = &[
    (
        "haiku",
        "claude-haiku-4-5",
        Price {
            input: 1.0,
            output: 5.0,
            cache_read: 0.10,
            cache_write: 1.25,
            web_search_per_1000: WEB_SEARCH_PER_1000,
        },
    ),
    (
        "sonnet",
        "claude-sonnet-4-6",
        Price {
            input: 3.0,
            output: 15.0,
            cache_read: 0.30,
            cache_write: 3.75,
            web_search_per_1000: WEB_SEARCH_PER_1000,
        },
    ),
    (
        "opus",
        "claude-opus-4-6",
        Price {
            input: 5.0,
            output: 25.0,
            cache_read: 0.50,
            cache_write: 6.25,
            web_search_per_1000: WEB_SEARCH_PER_1000,
        },
    ),
];

/// An entry of `[models]`: `fast = "claude-haiku-4-5"`, or
/// `local = { backend = "openai", id = "llama3.1:8b" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ModelSpec {
    /// A model id on the run's backend.
    Id(String),
    /// A model on a named backend.
    Routed(RoutedModel),
}

/// A model alias that also names its backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutedModel {
    /// The model id.
    pub id: String,
    /// The backend it runs on.
    pub backend: Option<String>,
    /// With `--dispatch`: the worker pool its agents go to (else the
    /// run's pool), so cheap fan-out and costly synthesis can run on
    /// different fleets.
    pub pool: Option<String>,
}

/// Where an alias leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    /// The model id the alias stands for.
    pub id: String,
    /// `None`: the run's default backend.
    pub backend: Option<String>,
}

/// `[anthropic]` and `[openai]`: where the server is. Keys come only from
/// the environment; `api_key_env` names the variable when it is not the
/// usual one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// The API base URL.
    pub base_url: Option<String>,
    /// The environment variable that holds the key.
    pub api_key_env: Option<String>,
    /// `max_tokens` of each request (anthropic; default 16384).
    pub max_tokens: Option<u32>,
    /// Anthropic server tools every agent gets (`web_search`, `web_fetch`,
    /// `code_execution`).
    pub server_tools: Option<Vec<String>>,
    /// The server tools `opts.tools` may turn on (default: all three).
    pub allowed_server_tools: Option<Vec<String>>,
    /// Most searches per request (default 5).
    pub web_search_max_uses: Option<u32>,
    /// Most fetches per request (default 10).
    pub web_fetch_max_uses: Option<u32>,
}

impl HttpSection {
    /// `over`'s settings win.
    fn overlay(self, over: HttpSection) -> HttpSection {
        HttpSection {
            base_url: over.base_url.or(self.base_url),
            api_key_env: over.api_key_env.or(self.api_key_env),
            max_tokens: over.max_tokens.or(self.max_tokens),
            server_tools: over.server_tools.or(self.server_tools),
            allowed_server_tools: over.allowed_server_tools.or(self.allowed_server_tools),
            web_search_max_uses: over.web_search_max_uses.or(self.web_search_max_uses),
            web_fetch_max_uses: over.web_fetch_max_uses.or(self.web_fetch_max_uses),
        }
    }
}

/// `[claude]`: how the Claude Code CLI runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaudeSection {
    /// The executable (default `claude`, found on PATH).
    pub command: Option<String>,
    /// `--allowedTools`, for every agent.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// `--disallowedTools`, for every agent (plus `opts.disallowedTools`).
    #[serde(default)]
    pub disallowed_tools: Vec<String>,
}

/// `[plan]`: what estimates assume, and when `run` asks first.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// Input tokens an agent is assumed to read (default 4,000).
    pub input_tokens: Option<u64>,
    /// Output tokens an agent is assumed to write (default 1,000).
    pub output_tokens: Option<u64>,
    /// `run` asks (or, without a terminal, refuses without `--yes`) when
    /// the estimate is over this many agents (default 50).
    pub confirm_agents: Option<u64>,
    /// ... or over this many USD (default 5).
    pub confirm_usd: Option<f64>,
    /// Items a simulated agent puts in each list of a schema reply in the
    /// estimate's typical case (default 5; the low case puts one).
    pub list_items: Option<u64>,
}

/// `[codex]`: the Codex CLI backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodexSection {
    /// The executable (default `codex`).
    pub command: Option<String>,
    /// `--sandbox` for every agent: `workspace-write` (default) or
    /// `read-only`; never a bypass.
    pub sandbox: Option<String>,
    /// Run outside a git work tree (`--skip-git-repo-check`).
    pub skip_git_repo_check: Option<bool>,
}

/// `[gemini]`: the Gemini CLI backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeminiSection {
    /// The executable (default `gemini`).
    pub command: Option<String>,
    /// `--approval-mode` for every agent: `auto_edit` (default),
    /// `default` or `plan`; never `yolo`.
    pub approval_mode: Option<String>,
}

/// `[qwen]`: the Qwen Code backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QwenSection {
    /// The executable (default `qwen`).
    pub command: Option<String>,
    /// `--approval-mode` for every agent: `auto-edit` (default), `default`
    /// or `plan`; never `yolo` or `auto`.
    pub approval_mode: Option<String>,
}

/// `[opencode]`: the opencode backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpencodeSection {
    /// The executable (default `opencode`).
    pub command: Option<String>,
}

/// `[mcp]`: what a model driving `wasmflow mcp` may choose. Read from the
/// user's config (and `wasmflow mcp` flags); a project file may only lower
/// it. The server applies it; the library only parses it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSection {
    /// Backends a tool call may run on (default: the configured default
    /// backend, else `sim`).
    pub backends: Option<Vec<String>>,
    /// Most agents one run may start (default 200).
    pub max_agents: Option<u64>,
    /// Most one run may cost, USD (default 5).
    pub max_cost_usd: Option<f64>,
    /// Runs whose models have no price may start (default false).
    pub allow_unpriced: Option<bool>,
    /// Most runs going at once in the project (default 8).
    pub max_running_runs: Option<u64>,
}

/// `[mcp_servers.NAME]`: an MCP server whose tools agents on the HTTP
/// backends may call (and that the `claude` backend passes to Claude Code).
/// Either a command (stdio) or a URL (streamable HTTP).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerSection {
    /// The executable, found on PATH (stdio servers).
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Variables the server gets on top of PATH and HOME (its only
    /// environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The server's endpoint (streamable HTTP servers).
    pub url: Option<String>,
    /// Headers sent with every request to `url` (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `[tools]`: which MCP tools agents are offered, and the bounds of an
/// agent's tool loop on the HTTP backends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsSection {
    /// Globs over `mcp__SERVER__TOOL`: only matching tools are offered
    /// (default: all).
    pub allow: Option<Vec<String>>,
    /// Globs over `mcp__SERVER__TOOL`: never offered.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Model replies an agent may take (default 25); `opts.maxTurns` may
    /// lower it, never raise it.
    pub max_turns: Option<u32>,
    /// Longest one tool call may take, e.g. "2m" (default 120s).
    pub call_timeout: Option<String>,
    /// A tool result longer than this many bytes is cut, with a note to the
    /// model (default 102400).
    pub max_result_bytes: Option<usize>,
}

/// `[dispatch]`: where `run` sends agents by default (workers over NATS).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSection {
    /// `nats://HOST:PORT[/POOL]` (or `tls://`).
    pub url: Option<String>,
    /// A NATS `.creds` file.
    pub creds: Option<PathBuf>,
}

/// One configuration file, or several merged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `true`: every command that would start agents refuses (managed
    /// machines). Any file saying `true` wins over one saying `false`.
    pub disable: Option<bool>,
    /// Default backend (`sim`, `exec`, `claude`, `anthropic`, `openai`).
    pub backend: Option<String>,
    /// The exec backend's command.
    pub exec: Option<String>,
    /// Model for agents that pick none and whose phase names none.
    pub default_model: Option<String>,
    /// Default `--concurrency`.
    pub concurrency: Option<usize>,
    /// Default `--max-agents`.
    pub max_agents: Option<u64>,
    /// e.g. "30m".
    pub agent_timeout: Option<String>,
    /// An agent that shows no progress this long fails, e.g. "5m".
    pub stall_timeout: Option<String>,
    /// Retries of a request after 429, 5xx or a network error.
    pub retries: Option<u32>,
    /// First backoff delay before jitter, doubled per retry, e.g. "1s".
    pub retry_base: Option<String>,
    /// Model aliases: `fast = "claude-haiku-…"`, or a table naming the
    /// backend too.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSpec>,
    /// Prices by model id (or alias).
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    #[serde(default)]
    /// `[anthropic]` settings.
    pub anthropic: HttpSection,
    #[serde(default)]
    /// `[openai]` settings.
    pub openai: HttpSection,
    #[serde(default)]
    /// `[claude]` settings.
    pub claude: ClaudeSection,
    #[serde(default)]
    /// `[plan]` settings.
    pub plan: PlanSection,
    #[serde(default)]
    /// `[codex]` settings.
    pub codex: CodexSection,
    #[serde(default)]
    /// `[gemini]` settings.
    pub gemini: GeminiSection,
    #[serde(default)]
    /// `[qwen]` settings.
    pub qwen: QwenSection,
    #[serde(default)]
    /// `[opencode]` settings.
    pub opencode: OpencodeSection,
    #[serde(default)]
    /// `[mcp]` settings (never merged: see [`McpSection`]).
    pub mcp: McpSection,
    #[serde(default)]
    /// `[mcp_servers.NAME]`: MCP servers whose tools agents may use.
    pub mcp_servers: BTreeMap<String, McpServerSection>,
    /// Also read the project's Claude Code `.mcp.json` (user config only:
    /// a project cannot opt itself in).
    pub mcp_json: Option<bool>,
    #[serde(default)]
    /// `[tools]` settings.
    pub tools: ToolsSection,
    #[serde(default)]
    /// `[dispatch]` settings.
    pub dispatch: DispatchSection,
}

impl Config {
    /// Reads the project and user files that exist; returns the merged
    /// config and the files read.
    pub fn load(cwd: &Path, home: Option<&Path>) -> Result<(Config, Vec<PathBuf>), InputError> {
        let mut files = Vec::new();
        let mut config = Config::default();
        if let Some(home) = home {
            let user = home.join(".config/wasmflow/config.toml");
            if user.is_file() {
                config = Config::read(&user)?;
                files.push(user);
            }
        }
        if let Some(project) = cwd
            .ancestors()
            .map(|d| d.join("wasmflow.toml"))
            .find(|p| p.is_file())
        {
            let read = Config::read(&project)?;
            if read.mcp_json.is_some() {
                return Err(InputError::Config {
                    path: project,
                    reason: "mcp_json: only the user config (~/.config/wasmflow/config.toml) may opt in to reading .mcp.json files".into(),
                });
            }
            config = config.overlay(read);
            files.push(project);
        }
        Ok((config, files))
    }

    /// Reads one config file; unknown keys are errors naming it.
    pub fn read(path: &Path) -> Result<Config, InputError> {
        let bad = |reason: String| InputError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let config: Config = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (model, p) in &config.prices {
            let all = [
                p.input,
                p.output,
                p.cache_read,
                p.cache_write,
                p.web_search_per_1000,
            ];
            if all.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(bad(format!(
                    "prices.\"{model}\": prices must be non-negative numbers"
                )));
            }
        }
        for (key, value) in [
            ("agent_timeout", &config.agent_timeout),
            ("stall_timeout", &config.stall_timeout),
            ("retry_base", &config.retry_base),
        ] {
            if let Some(t) = value {
                crate::limits::parse_duration(t).map_err(|e| bad(format!("{key}: {e}")))?;
            }
        }
        for (alias, spec) in &config.models {
            if let ModelSpec::Routed(RoutedModel {
                backend: Some(b), ..
            }) = spec
                && !crate::backend::router::BACKENDS.contains(&b.as_str())
            {
                return Err(bad(format!(
                    "models.{alias}: unknown backend `{b}` (available: {})",
                    crate::backend::router::BACKENDS.join(", ")
                )));
            }
        }
        for (alias, spec) in &config.models {
            if let ModelSpec::Routed(RoutedModel {
                pool: Some(pool), ..
            }) = spec
                && (pool.is_empty()
                    || pool.len() > 64
                    || !pool
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            {
                return Err(bad(format!(
                    "models.{alias}.pool: `{pool}` must be 1-64 letters, digits, `-` or `_` (it names a NATS subject)"
                )));
            }
        }
        if let Some(b) = &config.backend
            && !crate::backend::router::BACKENDS.contains(&b.as_str())
        {
            return Err(bad(format!(
                "backend: unknown backend `{b}` (available: {})",
                crate::backend::router::BACKENDS.join(", ")
            )));
        }
        if let Some(mode) = &config.codex.sandbox
            && !crate::backend::codex::SANDBOXES.contains(&mode.as_str())
        {
            return Err(bad(format!(
                "codex.sandbox: `{mode}` is not a mode workflow agents may get (use {}; a bypass is never passed)",
                crate::backend::codex::SANDBOXES.join(" or ")
            )));
        }
        if let Some(mode) = &config.gemini.approval_mode
            && !crate::backend::gemini::APPROVAL_MODES.contains(&mode.as_str())
        {
            return Err(bad(format!(
                "gemini.approval_mode: `{mode}` is not a mode workflow agents may get (use {}; yolo is never passed)",
                crate::backend::gemini::APPROVAL_MODES.join(", ")
            )));
        }
        if let Some(mode) = &config.qwen.approval_mode
            && !crate::backend::qwen::APPROVAL_MODES.contains(&mode.as_str())
        {
            return Err(bad(format!(
                "qwen.approval_mode: `{mode}` is not a mode workflow agents may get (use {}; yolo and auto are never passed)",
                crate::backend::qwen::APPROVAL_MODES.join(", ")
            )));
        }
        let o = &config.openai;
        if o.server_tools.is_some()
            || o.allowed_server_tools.is_some()
            || o.web_search_max_uses.is_some()
            || o.web_fetch_max_uses.is_some()
        {
            return Err(bad(
                "openai: server tools are Anthropic's (set them in [anthropic]); give openai agents tools with [mcp_servers]".into(),
            ));
        }
        for (key, list) in [
            ("anthropic.server_tools", &config.anthropic.server_tools),
            (
                "anthropic.allowed_server_tools",
                &config.anthropic.allowed_server_tools,
            ),
        ] {
            for t in list.iter().flatten() {
                if !crate::backend::anthropic::SERVER_TOOLS.contains(&t.as_str()) {
                    return Err(bad(format!(
                        "{key}: `{t}` is not a server tool (use {})",
                        crate::backend::anthropic::SERVER_TOOLS.join(", ")
                    )));
                }
            }
        }
        for (name, server) in &config.mcp_servers {
            crate::tools::servers::check_section(name, server).map_err(&bad)?;
        }
        if let Some(t) = &config.tools.call_timeout {
            crate::limits::parse_duration(t)
                .map_err(|e| bad(format!("tools.call_timeout: {e}")))?;
        }
        if config.tools.max_turns == Some(0) || config.tools.max_result_bytes == Some(0) {
            return Err(bad(
                "tools.max_turns and tools.max_result_bytes must be at least 1".into(),
            ));
        }
        if config.concurrency == Some(0) || config.max_agents == Some(0) {
            return Err(bad("concurrency and max_agents must be at least 1".into()));
        }
        Ok(config)
    }

    /// `over`'s settings win; tables merge key by key.
    fn overlay(mut self, over: Config) -> Config {
        self.disable = match (self.disable, over.disable) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (mine, theirs) => theirs.or(mine),
        };
        self.backend = over.backend.or(self.backend);
        self.exec = over.exec.or(self.exec);
        self.default_model = over.default_model.or(self.default_model);
        self.concurrency = over.concurrency.or(self.concurrency);
        self.max_agents = over.max_agents.or(self.max_agents);
        self.agent_timeout = over.agent_timeout.or(self.agent_timeout);
        self.stall_timeout = over.stall_timeout.or(self.stall_timeout);
        self.retries = over.retries.or(self.retries);
        self.retry_base = over.retry_base.or(self.retry_base);
        self.models.extend(over.models);
        self.prices.extend(over.prices);
        self.anthropic = self.anthropic.overlay(over.anthropic);
        self.openai = self.openai.overlay(over.openai);
        self.plan = PlanSection {
            input_tokens: over.plan.input_tokens.or(self.plan.input_tokens),
            output_tokens: over.plan.output_tokens.or(self.plan.output_tokens),
            confirm_agents: over.plan.confirm_agents.or(self.plan.confirm_agents),
            confirm_usd: over.plan.confirm_usd.or(self.plan.confirm_usd),
            list_items: over.plan.list_items.or(self.plan.list_items),
        };
        self.codex = CodexSection {
            command: over.codex.command.or(self.codex.command),
            sandbox: over.codex.sandbox.or(self.codex.sandbox),
            skip_git_repo_check: over
                .codex
                .skip_git_repo_check
                .or(self.codex.skip_git_repo_check),
        };
        self.gemini = GeminiSection {
            command: over.gemini.command.or(self.gemini.command),
            approval_mode: over.gemini.approval_mode.or(self.gemini.approval_mode),
        };
        self.qwen = QwenSection {
            command: over.qwen.command.or(self.qwen.command),
            approval_mode: over.qwen.approval_mode.or(self.qwen.approval_mode),
        };
        self.opencode = OpencodeSection {
            command: over.opencode.command.or(self.opencode.command),
        };
        self.mcp_servers.extend(over.mcp_servers);
        self.dispatch = DispatchSection {
            url: over.dispatch.url.or(self.dispatch.url),
            creds: over.dispatch.creds.or(self.dispatch.creds),
        };
        self.tools = ToolsSection {
            allow: over.tools.allow.or(self.tools.allow),
            // Denials add up: a project cannot lift the user's.
            deny: [self.tools.deny, over.tools.deny].concat(),
            max_turns: over.tools.max_turns.or(self.tools.max_turns),
            call_timeout: over.tools.call_timeout.or(self.tools.call_timeout),
            max_result_bytes: over.tools.max_result_bytes.or(self.tools.max_result_bytes),
        };
        // `[mcp]` bounds what a model may do: the server reads each file's
        // on its own, so a project file cannot raise the user's.
        self.claude = ClaudeSection {
            command: over.claude.command.or(self.claude.command),
            allowed_tools: if over.claude.allowed_tools.is_empty() {
                self.claude.allowed_tools
            } else {
                over.claude.allowed_tools
            },
            disallowed_tools: if over.claude.disallowed_tools.is_empty() {
                self.claude.disallowed_tools
            } else {
                over.claude.disallowed_tools
            },
        };
        self
    }

    /// Where an alias leads: `[models]`, else the built-in aliases, else
    /// the name is a model id itself.
    pub fn route(&self, alias: &str) -> ModelRoute {
        match self.models.get(alias) {
            Some(ModelSpec::Id(id)) => ModelRoute {
                id: id.clone(),
                backend: None,
            },
            Some(ModelSpec::Routed(r)) => ModelRoute {
                id: r.id.clone(),
                backend: r.backend.clone(),
            },
            None => ModelRoute {
                id: BUILTIN_MODELS
                    .iter()
                    .find(|(a, _, _)| *a == alias)
                    .map(|(_, id, _)| id.to_string())
                    .unwrap_or_else(|| alias.to_string()),
                backend: None,
            },
        }
    }

    /// The model id an alias stands for (an unknown name is an id itself).
    pub fn model_id(&self, alias: &str) -> String {
        self.route(alias).id
    }

    /// Whether `name` is an alias (configured or built in).
    pub fn is_alias(&self, name: &str) -> bool {
        self.models.contains_key(name) || BUILTIN_MODELS.iter().any(|(a, _, _)| *a == name)
    }

    /// Worker pools by model id, from `[models]` entries that name one.
    /// Two aliases of one id naming different pools is an error.
    pub fn pools(&self) -> Result<BTreeMap<String, String>, String> {
        let mut pools: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (alias, spec) in &self.models {
            let ModelSpec::Routed(RoutedModel {
                id,
                pool: Some(pool),
                ..
            }) = spec
            else {
                continue;
            };
            if let Some((other, earlier)) = pools.get(id)
                && earlier != pool
            {
                return Err(format!(
                    "[models] `{other}` and `{alias}` are both model `{id}` but name different pools (`{earlier}`, `{pool}`): give one model one pool"
                ));
            }
            pools.insert(id.clone(), (alias.clone(), pool.clone()));
        }
        Ok(pools
            .into_iter()
            .map(|(id, (_, pool))| (id, pool))
            .collect())
    }

    /// Every alias, configured then built in, with where it leads.
    pub fn aliases(&self) -> Vec<(String, ModelRoute)> {
        let mut all: Vec<(String, ModelRoute)> = self
            .models
            .keys()
            .map(|a| (a.clone(), self.route(a)))
            .collect();
        for (a, _, _) in BUILTIN_MODELS {
            if !self.models.contains_key(*a) {
                all.push((a.to_string(), self.route(a)));
            }
        }
        all
    }

    /// The price of a model, by its id or by an alias that names it; the
    /// built-in list prices last.
    pub fn price(&self, model_id: &str) -> Option<Price> {
        self.prices
            .get(model_id)
            .copied()
            .or_else(|| {
                self.models
                    .keys()
                    .filter(|alias| self.route(alias).id == model_id)
                    .find_map(|alias| self.prices.get(alias).copied())
            })
            .or_else(|| {
                BUILTIN_MODELS
                    .iter()
                    .find(|(_, id, _)| *id == model_id)
                    .map(|(_, _, p)| *p)
            })
    }
}

/// Managed machines: `WASMFLOW_DISABLE=1`, or `disable = true` in a config
/// file, and nothing starts agents.
pub fn refuse_if_disabled(cwd: &Path, home: Option<&Path>) -> Result<(), InputError> {
    if let Ok(v) = std::env::var("WASMFLOW_DISABLE")
        && !v.is_empty()
        && v != "0"
        && !v.eq_ignore_ascii_case("false")
    {
        return Err(InputError::Invalid(
            "wasmflow is disabled on this machine (WASMFLOW_DISABLE is set): no workflow runs and no agent starts; ask whoever manages it, or unset WASMFLOW_DISABLE".into(),
        ));
    }
    let (_, files) = Config::load(cwd, home)?;
    for file in files {
        if Config::read(&file)?.disable == Some(true) {
            return Err(InputError::Invalid(format!(
                "wasmflow is disabled by `disable = true` in {}: no workflow runs and no agent starts",
                file.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_overrides_user_key_by_key() {
        let base = std::env::temp_dir().join(format!("wf-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let home = base.join("home");
        let project = base.join("proj/sub");
        std::fs::create_dir_all(home.join(".config/wasmflow")).unwrap();
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            home.join(".config/wasmflow/config.toml"),
            "default_model = \"haiku\"\nconcurrency = 8\n[models]\nhaiku = \"h-1\"\n[prices.h-1]\ninput = 1\noutput = 5\n",
        )
        .unwrap();
        std::fs::write(
            base.join("proj/wasmflow.toml"),
            "concurrency = 4\n[models]\nopus = \"o-1\"\n",
        )
        .unwrap();
        let (c, files) = Config::load(&project, Some(&home)).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(c.concurrency, Some(4));
        assert_eq!(c.default_model.as_deref(), Some("haiku"));
        assert_eq!(c.model_id("haiku"), "h-1");
        assert_eq!(c.model_id("opus"), "o-1");
        assert_eq!(c.model_id("other"), "other");
        assert_eq!(c.price("h-1").unwrap().cost(1_000_000, 200_000), 2.0);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn models_name_their_worker_pools() {
        let parse = |text: &str| toml::from_str::<Config>(text).unwrap();
        let c = parse(
            "[models]\nfast = { id = \"h-1\", pool = \"haiku-pool\" }\nbig = { id = \"o-1\", backend = \"claude\" }\nquick = { id = \"h-1\", pool = \"haiku-pool\" }\n",
        );
        assert_eq!(
            c.pools().unwrap().into_iter().collect::<Vec<_>>(),
            vec![("h-1".to_string(), "haiku-pool".to_string())]
        );
        let e = parse(
            "[models]\nfast = { id = \"h-1\", pool = \"a\" }\nquick = { id = \"h-1\", pool = \"b\" }\n",
        )
        .pools()
        .unwrap_err();
        assert!(e.contains("`fast` and `quick`") && e.contains("h-1"), "{e}");
    }

    #[test]
    fn bad_files_name_the_problem() {
        let dir = std::env::temp_dir().join(format!("wf-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("wasmflow.toml");
        for (text, expected) in [
            ("concurency = 4\n", "concurency"),
            ("[prices.x]\ninput = -1\noutput = 1\n", "non-negative"),
            ("agent_timeout = \"soon\"\n", "agent_timeout"),
            ("concurrency = \"many\"\n", "concurrency"),
            (
                "[models]\nfast = { id = \"h\", pool = \"a.b\" }\n",
                "models.fast.pool",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Config::read(&p).unwrap_err().to_string();
            assert!(
                e.contains(expected) && e.contains("wasmflow.toml"),
                "{text}: {e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
