//! The workflows a name finds: saved ones (project, user, `.claude`) and
//! the bundled ones, with their meta. `wasmflow list`, the MCP server's
//! `workflow_list` and its prompts read this one list.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::script::check::CheckOptions;
use crate::script::{Script, bundled, saved};

/// One workflow a name would find.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The name `run` takes (the file's stem, or the bundled name).
    pub name: String,
    /// `meta.description`.
    pub description: Option<String>,
    /// `meta.whenToUse`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when_to_use: Option<String>,
    /// Phase titles, in order.
    pub phases: Vec<String>,
    /// `project`, `user`, `claude` or `bundled`.
    pub origin: &'static str,
    /// The file; `None` for a bundled workflow.
    pub path: Option<PathBuf>,
    /// An earlier entry has the same name, so a name never finds this one.
    pub shadowed: bool,
    /// Why it cannot run (its script is refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn entry(name: String, script: Result<Script, String>) -> Entry {
    let (meta, error) = match script {
        Ok(s) => (s.meta, None),
        Err(e) => (None, Some(e)),
    };
    Entry {
        name,
        description: meta.as_ref().map(|m| m.description.clone()),
        when_to_use: meta.as_ref().and_then(|m| m.when_to_use.clone()),
        phases: meta
            .map(|m| m.phases.into_iter().map(|p| p.title).collect())
            .unwrap_or_default(),
        origin: "bundled",
        path: None,
        shadowed: false,
        error,
    }
}

/// Saved workflows in search order, then the bundled ones.
pub fn entries(cwd: &Path, home: Option<&Path>) -> Vec<Entry> {
    let dirs = saved::search_dirs(cwd, home);
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for (path, origin) in saved::all(&dirs) {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let script = Script::load(&path, CheckOptions::default()).map_err(|e| e.to_string());
        let name = script.as_ref().map_or(stem.clone(), |s| s.name());
        let mut e = entry(name, script);
        e.shadowed = !seen.insert(stem);
        e.origin = origin.as_str();
        e.path = Some(path);
        rows.push(e);
    }
    // A saved workflow of the same name wins over a bundled one.
    for b in bundled::BUNDLED {
        let mut e = entry(
            b.name.to_string(),
            b.script(CheckOptions::default()).map_err(|e| e.to_string()),
        );
        e.shadowed = !seen.insert(b.name.to_string());
        rows.push(e);
    }
    rows
}
