//! Several backends in one run: a model alias may name its backend
//! (`[models] local = { backend = "openai", id = "llama3.1" }`), so one
//! phase runs on a local server while another runs on Claude Code.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::{
    AgentBackend, AgentFailure, AgentRequest, AgentResult, BoxFuture, FailureKind, PlannedModel,
    Usage,
};

/// Every backend name wasmflow knows.
pub const BACKENDS: &[&str] = &[
    "sim",
    "exec",
    "claude",
    "codex",
    "gemini",
    "qwen",
    "opencode",
    "anthropic",
    "openai",
];

/// Sends each agent to the backend its model routes to.
pub struct Router {
    default: String,
    backends: BTreeMap<String, Arc<dyn AgentBackend>>,
    /// Which backend ran each agent, for `finish`.
    ran_on: Mutex<HashMap<u64, String>>,
}

impl Router {
    /// `default` must be one of `backends`.
    pub fn new(default: String, backends: BTreeMap<String, Arc<dyn AgentBackend>>) -> Router {
        Router {
            default,
            backends,
            ran_on: Mutex::new(HashMap::new()),
        }
    }

    fn pick(&self, name: Option<&str>) -> Result<(&String, &Arc<dyn AgentBackend>), String> {
        let name = name.unwrap_or(&self.default);
        self.backends.get_key_value(name).ok_or_else(|| {
            format!(
                "this agent's model routes to the `{name}` backend, which this run did not set up (its model was chosen at run time; name it in meta.phases or opts.model literally so wasmflow prepares the backend)"
            )
        })
    }
}

impl AgentBackend for Router {
    fn name(&self) -> &str {
        &self.default
    }

    fn run(&self, request: AgentRequest) -> BoxFuture<'static, AgentResult> {
        match self.pick(request.backend.as_deref()) {
            Ok((name, backend)) => {
                if let Ok(mut m) = self.ran_on.lock() {
                    m.insert(request.id, name.clone());
                }
                backend.run(request)
            }
            Err(reason) => Box::pin(async move {
                Err(AgentFailure {
                    reason,
                    usage: Usage::default(),
                    kind: FailureKind::Other,
                })
            }),
        }
    }

    fn check(&self, models: Vec<PlannedModel>) -> BoxFuture<'static, Result<(), String>> {
        let mut by_backend: BTreeMap<String, Vec<PlannedModel>> = self
            .backends
            .keys()
            .map(|k| (k.clone(), Vec::new()))
            .collect();
        for m in models {
            let name = m.backend.clone().unwrap_or_else(|| self.default.clone());
            by_backend.entry(name).or_default().push(m);
        }
        let mut checks = Vec::new();
        for (name, models) in by_backend {
            match self.backends.get(&name) {
                Some(b) => checks.push((name, b.check(models))),
                None => {
                    let m = &models[0];
                    let reason = format!(
                        "model `{}` ({}) routes to the `{name}` backend, which is not set up",
                        m.alias, m.origin
                    );
                    return Box::pin(async move { Err(reason) });
                }
            }
        }
        Box::pin(async move {
            for (name, check) in checks {
                check.await.map_err(|e| format!("{name} backend: {e}"))?;
            }
            Ok(())
        })
    }

    fn finish(&self, id: u64) -> BoxFuture<'static, Vec<String>> {
        let name = self.ran_on.lock().ok().and_then(|mut m| m.remove(&id));
        match name.and_then(|n| self.backends.get(&n)) {
            Some(b) => b.finish(id),
            None => Box::pin(async { Vec::new() }),
        }
    }
}

/// Fails when a planned model is not among those a server lists (`None`:
/// the server does not list models, so nothing can be said).
pub fn check_listed(
    models: &[PlannedModel],
    listed: Option<&[String]>,
    server: &str,
) -> Result<(), String> {
    let Some(listed) = listed else {
        return Ok(());
    };
    let unknown: Vec<&PlannedModel> = models
        .iter()
        .filter(|m| !super::http::model_listed(listed, &m.id))
        .collect();
    let Some(first) = unknown.first() else {
        return Ok(());
    };
    let mut shown: Vec<&str> = listed.iter().map(String::as_str).take(15).collect();
    if listed.len() > shown.len() {
        shown.push("…");
    }
    Err(format!(
        "unknown model `{}` ({}){}: {server} does not serve it. It serves: {}. Fix the name, or map it under [models] in wasmflow.toml",
        first.alias,
        first.origin,
        if first.alias != first.id {
            format!(", model id `{}`", first.id)
        } else {
            String::new()
        },
        shown.join(", ")
    ))
}
