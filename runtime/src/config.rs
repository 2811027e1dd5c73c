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
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
}

impl Price {
    /// Cost of `input` and `output` tokens, in USD.
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input + output as f64 * self.output) / 1e6
    }
}

/// One configuration file, or several merged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default backend (`sim`, `exec`).
    pub backend: Option<String>,
    /// The exec backend's command.
    pub exec: Option<String>,
    /// Model for agents that pick none and whose phase names none.
    pub default_model: Option<String>,
    pub concurrency: Option<usize>,
    pub max_agents: Option<u64>,
    /// e.g. "30m".
    pub agent_timeout: Option<String>,
    /// Model aliases: `haiku = "claude-haiku-…"`.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
    /// Prices by model id (or alias).
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
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
            config = config.overlay(Config::read(&project)?);
            files.push(project);
        }
        Ok((config, files))
    }

    pub fn read(path: &Path) -> Result<Config, InputError> {
        let bad = |reason: String| InputError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let config: Config = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (model, p) in &config.prices {
            let all = [p.input, p.output, p.cache_read, p.cache_write];
            if all.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(bad(format!(
                    "prices.\"{model}\": prices must be non-negative numbers"
                )));
            }
        }
        if let Some(t) = &config.agent_timeout {
            crate::limits::parse_duration(t).map_err(|e| bad(format!("agent_timeout: {e}")))?;
        }
        if config.concurrency == Some(0) || config.max_agents == Some(0) {
            return Err(bad("concurrency and max_agents must be at least 1".into()));
        }
        Ok(config)
    }

    /// `over`'s settings win; tables merge key by key.
    fn overlay(mut self, over: Config) -> Config {
        self.backend = over.backend.or(self.backend);
        self.exec = over.exec.or(self.exec);
        self.default_model = over.default_model.or(self.default_model);
        self.concurrency = over.concurrency.or(self.concurrency);
        self.max_agents = over.max_agents.or(self.max_agents);
        self.agent_timeout = over.agent_timeout.or(self.agent_timeout);
        self.models.extend(over.models);
        self.prices.extend(over.prices);
        self
    }

    /// The model id an alias stands for (an unknown name is an id itself).
    pub fn model_id(&self, alias: &str) -> String {
        self.models
            .get(alias)
            .cloned()
            .unwrap_or_else(|| alias.to_string())
    }

    /// The price of a model, by its id or by the alias that names it.
    pub fn price(&self, model_id: &str) -> Option<Price> {
        self.prices.get(model_id).copied().or_else(|| {
            self.models
                .iter()
                .find(|(_, id)| id.as_str() == model_id)
                .and_then(|(alias, _)| self.prices.get(alias).copied())
        })
    }
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
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Config::read(&p).unwrap_err().to_string();
            assert!(
                e.contains(expected) && e.contains("wasmflow.toml"),
                "{text}: {e}"
            );
        }
    }
}
