//! Which MCP servers a run has: `[mcp_servers.NAME]` in the config and,
//! when the user opts in, a Claude Code `.mcp.json` (format:
//! <https://code.claude.com/docs/en/mcp#project-scope>; `${VAR}` and
//! `${VAR:-default}` expand in `command`, `args`, `env`, `url` and
//! `headers`, as Claude Code expands them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{Config, McpServerSection};
use crate::error::InputError;

/// How to reach one server.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// The executable.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its whole environment besides PATH and HOME.
        env: BTreeMap<String, String>,
        /// Where it starts (the project directory).
        cwd: PathBuf,
    },
    /// Streamable HTTP.
    Http {
        /// The endpoint.
        url: String,
        /// Sent with every request.
        headers: BTreeMap<String, String>,
    },
}

/// One configured server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// Its name (the `SERVER` of `mcp__SERVER__TOOL`).
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Where it was configured, for messages.
    pub origin: String,
}

/// The variables that hold the keys of wasmflow's own backends: a server
/// never gets them, even when a file asks for them by name.
pub fn backend_key_vars(config: &Config) -> Vec<String> {
    let mut vars = vec![
        "ANTHROPIC_API_KEY".to_string(),
        "OPENAI_API_KEY".to_string(),
    ];
    for section in [&config.anthropic, &config.openai] {
        if let Some(v) = &section.api_key_env {
            vars.push(v.clone());
        }
    }
    vars
}

/// Checks one `[mcp_servers.NAME]` table.
pub fn check_section(name: &str, s: &McpServerSection) -> Result<(), String> {
    check_name(name).map_err(|e| format!("mcp_servers.{name}: {e}"))?;
    match (&s.command, &s.url) {
        (Some(_), Some(_)) => Err(format!(
            "mcp_servers.{name}: set either `command` (a stdio server) or `url` (streamable HTTP), not both"
        )),
        (None, None) => Err(format!(
            "mcp_servers.{name}: set `command` (a stdio server) or `url` (streamable HTTP)"
        )),
        (Some(_), None) if !s.headers.is_empty() => Err(format!(
            "mcp_servers.{name}: `headers` go with `url`, not with `command`"
        )),
        (None, Some(_)) if !s.args.is_empty() || !s.env.is_empty() => Err(format!(
            "mcp_servers.{name}: `args` and `env` go with `command`, not with `url`"
        )),
        _ => Ok(()),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.contains("__")
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "`{name}` is not a usable server name (letters, digits, `-` and single `_`; tools are named mcp__NAME__TOOL)"
        ));
    }
    Ok(())
}

/// The servers a run in `cwd` has: `.mcp.json` entries first (the nearest
/// one above `cwd`, when the user config says `mcp_json = true`), then the
/// file `--mcp-config` names, then `[mcp_servers]`, a later one replacing
/// an earlier one of the same name.
pub fn configured(
    config: &Config,
    cwd: &Path,
    mcp_config: Option<&Path>,
) -> Result<Vec<ServerSpec>, InputError> {
    let keys = backend_key_vars(config);
    let env = |name: &str| std::env::var(name).ok();
    let mut servers: BTreeMap<String, ServerSpec> = BTreeMap::new();
    if config.mcp_json == Some(true)
        && let Some(file) = cwd
            .ancestors()
            .map(|d| d.join(".mcp.json"))
            .find(|p| p.is_file())
    {
        for s in read_mcp_json(&file, cwd, &keys, &env)? {
            servers.insert(s.name.clone(), s);
        }
    }
    if let Some(file) = mcp_config {
        if !file.is_file() {
            return Err(InputError::Invalid(format!(
                "--mcp-config {}: no such file",
                file.display()
            )));
        }
        for s in read_mcp_json(file, cwd, &keys, &env)? {
            servers.insert(s.name.clone(), s);
        }
    }
    for (name, section) in &config.mcp_servers {
        let origin = format!("[mcp_servers.{name}]");
        let bad = |reason: String| InputError::Invalid(format!("{origin}: {reason}"));
        let expand = |text: &str| expand(text, &keys, &env).map_err(bad);
        let transport = match (&section.command, &section.url) {
            (Some(command), _) => Transport::Stdio {
                command: expand(command)?,
                args: section
                    .args
                    .iter()
                    .map(|a| expand(a))
                    .collect::<Result<_, _>>()?,
                env: expand_map(&section.env, &expand)?,
                cwd: cwd.to_path_buf(),
            },
            (None, Some(url)) => Transport::Http {
                url: expand(url)?,
                headers: expand_map(&section.headers, &expand)?,
            },
            (None, None) => {
                return Err(bad("set `command` or `url`".into()));
            }
        };
        servers.insert(
            name.clone(),
            ServerSpec {
                name: name.clone(),
                transport,
                origin,
            },
        );
    }
    Ok(servers.into_values().collect())
}

fn expand_map(
    map: &BTreeMap<String, String>,
    expand: &dyn Fn(&str) -> Result<String, InputError>,
) -> Result<BTreeMap<String, String>, InputError> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), expand(v)?)))
        .collect()
}

/// Reads a Claude Code `.mcp.json`: `{"mcpServers": {NAME: {command, args,
/// env} | {type: "http", url, headers}}}`.
pub fn read_mcp_json(
    file: &Path,
    cwd: &Path,
    keys: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ServerSpec>, InputError> {
    let bad = |reason: String| InputError::Config {
        path: file.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(entries) = v.get("mcpServers").and_then(Value::as_object) else {
        return Err(bad("no `mcpServers` object".into()));
    };
    let mut out = Vec::new();
    for (name, entry) in entries {
        let at = |reason: String| bad(format!("mcpServers.{name}: {reason}"));
        check_name(name).map_err(at)?;
        let expand = |text: &str| expand(text, keys, env).map_err(at);
        let string = |key: &str| -> Result<Option<String>, InputError> {
            match entry.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => expand(s).map(Some),
                Some(_) => Err(at(format!("`{key}` must be a string"))),
            }
        };
        let strings = |key: &str| -> Result<BTreeMap<String, String>, InputError> {
            match entry.get(key) {
                None | Some(Value::Null) => Ok(BTreeMap::new()),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| match v.as_str() {
                        Some(s) => Ok((k.clone(), expand(s)?)),
                        None => Err(at(format!("`{key}.{k}` must be a string"))),
                    })
                    .collect(),
                Some(_) => Err(at(format!("`{key}` must be an object of strings"))),
            }
        };
        let kind =
            entry
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or(if entry.get("url").is_some() {
                    "http"
                } else {
                    "stdio"
                });
        let transport = match kind {
            "stdio" => {
                let command = string("command")?
                    .ok_or_else(|| at("a stdio server needs `command`".into()))?;
                let args = match entry.get("args") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .ok_or_else(|| at("`args` must be strings".into()))
                                .and_then(expand)
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(at("`args` must be an array of strings".into())),
                };
                Transport::Stdio {
                    command,
                    args,
                    env: strings("env")?,
                    cwd: cwd.to_path_buf(),
                }
            }
            "http" => Transport::Http {
                url: string("url")?.ok_or_else(|| at("an http server needs `url`".into()))?,
                headers: strings("headers")?,
            },
            other => {
                return Err(at(format!(
                    "transport `{other}` is not supported (wasmflow speaks stdio and streamable HTTP, `type: \"http\"`)"
                )));
            }
        };
        out.push(ServerSpec {
            name: name.clone(),
            transport,
            origin: file.display().to_string(),
        });
    }
    Ok(out)
}

/// `${VAR}` and `${VAR:-default}` in `text`; a variable that is unset and
/// has no default is an error, and so is one holding a backend's key.
pub fn expand(
    text: &str,
    keys: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{text}`: `${{` without a closing `}}`"));
        };
        let inner = &after[..end];
        let (var, default) = match inner.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (inner, None),
        };
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{inner}}}` is not a variable reference"));
        }
        if keys.iter().any(|k| k == var) {
            return Err(format!(
                "`${{{var}}}` is the API key of one of wasmflow's backends; MCP servers never get it"
            ));
        }
        match (env(var).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "`${{{var}}}` is not set (export it, or write `${{{var}:-default}}`)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The servers in Claude Code's `--mcp-config` format, in a file of the
/// user's alone (environment values may be secrets) that goes away with
/// the backend.
#[derive(Debug)]
pub struct ClaudeMcpConfig {
    /// Where it is.
    pub path: PathBuf,
}

impl ClaudeMcpConfig {
    /// Writes `servers` to a new file in the temporary directory.
    pub fn write(servers: &[ServerSpec]) -> std::io::Result<ClaudeMcpConfig> {
        use std::io::Write;
        let entries: serde_json::Map<String, Value> = servers
            .iter()
            .map(|s| {
                let entry = match &s.transport {
                    Transport::Stdio {
                        command, args, env, ..
                    } => serde_json::json!({"command": command, "args": args, "env": env}),
                    Transport::Http { url, headers } => {
                        serde_json::json!({"type": "http", "url": url, "headers": headers})
                    }
                };
                (s.name.clone(), entry)
            })
            .collect();
        let text = serde_json::json!({ "mcpServers": entries }).to_string();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("wasmflow-mcp-{}-{nonce}.json", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path)?.write_all(text.as_bytes())?;
        Ok(ClaudeMcpConfig { path })
    }
}

impl Drop for ClaudeMcpConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME_DIR" => Some("/home/me".into()),
            "OPENAI_API_KEY" => Some("sk-secret".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_expand_as_claude_code_does() {
        let keys = vec!["OPENAI_API_KEY".to_string()];
        assert_eq!(expand("${HOME_DIR}/x", &keys, &env).unwrap(), "/home/me/x");
        assert_eq!(expand("${NOPE:-d}", &keys, &env).unwrap(), "d");
        assert_eq!(expand("a${NOPE:-}b", &keys, &env).unwrap(), "ab");
        assert!(
            expand("${NOPE}", &keys, &env)
                .unwrap_err()
                .contains("not set")
        );
        assert!(
            expand("${OPENAI_API_KEY}", &keys, &env)
                .unwrap_err()
                .contains("never get it")
        );
        assert!(expand("${oops", &keys, &env).is_err());
        assert_eq!(expand("plain $HOME", &keys, &env).unwrap(), "plain $HOME");
    }

    #[test]
    fn mcp_json_entries() {
        let dir = std::env::temp_dir().join(format!("wasmflow-mcpjson-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(".mcp.json");
        std::fs::write(
            &file,
            r#"{"mcpServers": {
                "fs": {"command": "npx", "args": ["-y", "server", "${HOME_DIR}"], "env": {"A": "${NOPE:-1}"}},
                "web": {"type": "http", "url": "https://x/mcp", "headers": {"Authorization": "Bearer t"}}
            }}"#,
        )
        .unwrap();
        let got = read_mcp_json(&file, &dir, &[], &env).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].transport,
            Transport::Stdio {
                command: "npx".into(),
                args: vec!["-y".into(), "server".into(), "/home/me".into()],
                env: BTreeMap::from([("A".into(), "1".into())]),
                cwd: dir.clone(),
            }
        );
        assert!(matches!(&got[1].transport, Transport::Http { url, .. } if url == "https://x/mcp"));
        std::fs::write(
            &file,
            r#"{"mcpServers": {"s": {"type": "sse", "url": "u"}}}"#,
        )
        .unwrap();
        let e = read_mcp_json(&file, &dir, &[], &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sse") && e.contains("mcpServers.s"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sections_are_checked() {
        let s = |c: Option<&str>, u: Option<&str>| McpServerSection {
            command: c.map(String::from),
            url: u.map(String::from),
            ..McpServerSection::default()
        };
        assert!(check_section("fs", &s(Some("x"), None)).is_ok());
        assert!(check_section("fs", &s(Some("x"), Some("u"))).is_err());
        assert!(check_section("fs", &s(None, None)).is_err());
        assert!(check_section("a__b", &s(Some("x"), None)).is_err());
    }
}
