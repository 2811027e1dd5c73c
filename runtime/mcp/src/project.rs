//! The project a server serves, and the only files tool input can reach in
//! it: scripts (`.js`) and compiled workflows (`.wasm`) inside it after
//! symlinks are resolved.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmflow::run::launch::Env;
use wasmflow::run::run_dir;

/// Largest inline script a call may send.
pub const MAX_SCRIPT_BYTES: usize = 1 << 20;

/// The project directory and where its runs live.
#[derive(Debug, Clone)]
pub struct Project {
    /// Canonical.
    pub root: PathBuf,
    /// What a run started here sees.
    pub env: Env,
}

impl Project {
    /// `root` made canonical; it must be a directory.
    pub fn new(root: &Path, home: Option<PathBuf>) -> Result<Project, String> {
        let root = root
            .canonicalize()
            .map_err(|e| format!("the project directory {}: {e}", root.display()))?;
        if !root.is_dir() {
            return Err(format!("the project {} is not a directory", root.display()));
        }
        Ok(Project {
            env: Env {
                runs_root: run_dir::runs_root(&root),
                home,
                cwd: root.clone(),
            },
            root,
        })
    }

    /// A file a call names by `scriptPath`: relative to the project (or
    /// absolute inside it), a `.js` or `.wasm` file once symlinks are
    /// resolved.
    pub fn script_path(&self, asked: &str) -> Result<PathBuf, String> {
        let joined = self.root.join(asked);
        if !lexically_inside(&joined, &self.root) {
            return Err(format!(
                "scriptPath `{asked}` leads outside the project ({}): only scripts inside it can run",
                self.root.display()
            ));
        }
        let real = joined.canonicalize().map_err(|e| {
            format!(
                "scriptPath `{asked}`: {e} (paths are relative to the project, {})",
                self.root.display()
            )
        })?;
        self.inside(&real, asked)?;
        Ok(real)
    }

    /// `path` (canonical) is a script file inside the project.
    pub fn inside(&self, real: &Path, asked: &str) -> Result<(), String> {
        if !real.starts_with(&self.root) {
            return Err(format!(
                "scriptPath `{asked}` leads outside the project ({}): only scripts inside it can run",
                self.root.display()
            ));
        }
        let ext = real.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "js" && ext != "wasm" {
            return Err(format!(
                "scriptPath `{asked}` is not a workflow: only .js scripts and .wasm compiled workflows run"
            ));
        }
        if !real.is_file() {
            return Err(format!("scriptPath `{asked}` is not a file"));
        }
        Ok(())
    }

    /// Writes an inline script to `.wasmflow/scripts/<sha256>.js` (the
    /// model iterates by editing it) and returns the path.
    pub fn keep_inline(&self, source: &str) -> Result<PathBuf, String> {
        if source.len() > MAX_SCRIPT_BYTES {
            return Err(format!(
                "the script is {} bytes, over the {MAX_SCRIPT_BYTES}-byte limit for inline scripts: split the work into saved workflows called with workflow(), or pass scriptPath",
                source.len()
            ));
        }
        let dir = self.root.join(".wasmflow/scripts");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let sha = wasmflow::run::key::sha256_hex(source.as_bytes());
        let path = dir.join(format!("{sha}.js"));
        if !path.is_file() {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{sha}.{}.{n}.tmp", std::process::id()));
            std::fs::write(&tmp, source)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(path)
    }
}

/// `path` with `.` and `..` worked out by name stays under `root` (the
/// check before the file system's, so a missing file outside says so).
fn lexically_inside(path: &Path, root: &Path) -> bool {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return false;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.starts_with(root)
}

/// A saved or bundled workflow's name: a plain word, never a path.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name `{name}` is not a workflow name (letters, digits, `-`, `_`, `.`; workflow_list lists them); use scriptPath for a file"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scripts_inside_the_project() {
        let base = std::env::temp_dir().join(format!("wf-mcp-project-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("p/sub")).unwrap();
        std::fs::write(base.join("p/sub/a.js"), "return 1").unwrap();
        std::fs::write(base.join("p/.env"), "KEY=secret").unwrap();
        std::fs::write(base.join("outside.js"), "return 2").unwrap();
        std::os::unix::fs::symlink(base.join("outside.js"), base.join("p/link.js")).unwrap();
        let p = Project::new(&base.join("p"), None).unwrap();
        assert!(p.script_path("sub/a.js").is_ok());
        assert!(
            p.script_path("../outside.js")
                .unwrap_err()
                .contains("outside the project")
        );
        assert!(
            p.script_path("link.js")
                .unwrap_err()
                .contains("outside the project")
        );
        assert!(
            p.script_path(".env")
                .unwrap_err()
                .contains("not a workflow")
        );
        assert!(
            p.script_path("/etc/passwd")
                .unwrap_err()
                .contains("outside")
        );
        assert!(check_name("deep-research").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("a/b").is_err());
        let kept = p.keep_inline("return 3").unwrap();
        assert!(kept.starts_with(&p.root) && kept.extension().unwrap() == "js");
        assert!(p.keep_inline(&"x".repeat(MAX_SCRIPT_BYTES + 1)).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
