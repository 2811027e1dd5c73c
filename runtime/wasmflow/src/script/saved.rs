//! Saved workflows: scripts found by name.
//!
//! Project directories come first, nearest the working directory (up to the
//! repository root), then the user's; Claude Code's `.claude/workflows/`
//! directories are searched too, so existing saved workflows run as they are.

use std::path::{Path, PathBuf};

/// Where a directory of saved workflows comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `.wasmflow/workflows` of the project.
    Project,
    /// The user's directory.
    User,
}

impl Origin {
    /// `project` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Project => "project",
            Origin::User => "user",
        }
    }
}

/// A directory that may hold saved workflows, in lookup order.
#[derive(Debug, Clone)]
pub struct SearchDir {
    /// The directory.
    pub path: PathBuf,
    /// Project or user.
    pub origin: Origin,
}

pub use crate::script::slug;

/// The lookup order from `cwd` with home directory `home`.
pub fn search_dirs(cwd: &Path, home: Option<&Path>) -> Vec<SearchDir> {
    let mut project_dirs: Vec<PathBuf> = Vec::new();
    // Between the working directory and the repository root; outside a
    // repository, only the working directory.
    let ancestors: Vec<&Path> = cwd.ancestors().collect();
    let root = ancestors.iter().position(|d| d.join(".git").exists());
    let upto = root.map(|i| i + 1).unwrap_or(1);
    for dir in &ancestors[..upto] {
        project_dirs.push(dir.to_path_buf());
    }
    // Every workflows directory counts, nearest first, so a name is found
    // wherever it is saved: a nearer directory hides only its own names.
    let mut dirs = Vec::new();
    for dir in &project_dirs {
        for sub in [".wasmflow/workflows", ".claude/workflows"] {
            let d = dir.join(sub);
            if d.is_dir() {
                dirs.push(SearchDir {
                    path: d,
                    origin: Origin::Project,
                });
            }
        }
    }
    if let Some(home) = home {
        for sub in [".config/wasmflow/workflows", ".claude/workflows"] {
            let d = home.join(sub);
            if d.is_dir() && !dirs.iter().any(|s| s.path == d) {
                dirs.push(SearchDir {
                    path: d,
                    origin: Origin::User,
                });
            }
        }
    }
    dirs
}

/// `$HOME`.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Finds the saved workflow `name` (or its slug) in `dirs`.
pub fn find(name: &str, dirs: &[SearchDir]) -> Option<PathBuf> {
    let file = format!("{}.js", slug(name));
    if file == ".js" {
        return None;
    }
    dirs.iter()
        .map(|d| d.path.join(&file))
        .find(|p| p.is_file())
}

/// Every `.js` file in `dirs`, in lookup order (shadowed names included).
pub fn all(dirs: &[SearchDir]) -> Vec<(PathBuf, Origin)> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d.path) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "js") && p.is_file())
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (f, d.origin)));
    }
    out
}

/// A message listing where `name` was looked for.
pub fn not_found(name: &str, dirs: &[SearchDir]) -> String {
    let looked: Vec<String> = dirs.iter().map(|d| d.path.display().to_string()).collect();
    let bundled: Vec<&str> = crate::script::bundled::BUNDLED
        .iter()
        .map(|b| b.name)
        .collect();
    let bundled = format!("; bundled: {}", bundled.join(", "));
    if looked.is_empty() {
        format!(
            "no saved workflow named '{name}': no workflow directory exists (.wasmflow/workflows/, ~/.config/wasmflow/workflows/, .claude/workflows/, ~/.claude/workflows/){bundled}"
        )
    } else {
        format!(
            "no saved workflow named '{name}' ({}.js) in {}{bundled}",
            slug(name),
            looked.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Audit Routes"), "audit-routes");
        assert_eq!(slug("  deep--research!! v2 "), "deep-research-v2");
        assert_eq!(slug("***"), "");
    }

    #[test]
    fn project_before_user_and_nearest_first() {
        let base = std::env::temp_dir().join(format!("wf-saved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let repo = base.join("repo");
        let sub = repo.join("a/b");
        let home = base.join("home");
        for d in [
            repo.join(".git"),
            repo.join(".wasmflow/workflows"),
            repo.join("a/.wasmflow/workflows"),
            sub.clone(),
            home.join(".config/wasmflow/workflows"),
            home.join(".claude/workflows"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(repo.join(".wasmflow/workflows/x.js"), "return 'root'").unwrap();
        std::fs::write(repo.join("a/.wasmflow/workflows/x.js"), "return 'near'").unwrap();
        std::fs::write(home.join(".claude/workflows/y.js"), "return 'cc'").unwrap();
        let dirs = search_dirs(&sub, Some(&home));
        assert_eq!(dirs[0].path, repo.join("a/.wasmflow/workflows"));
        assert_eq!(dirs[0].origin, Origin::Project);
        assert_eq!(
            find("X", &dirs).unwrap(),
            repo.join("a/.wasmflow/workflows/x.js")
        );
        assert_eq!(
            find("y", &dirs).unwrap(),
            home.join(".claude/workflows/y.js")
        );
        assert!(find("z", &dirs).is_none());
        assert!(not_found("z", &dirs).contains("z.js"));
        let _ = std::fs::remove_dir_all(&base);
    }
}
