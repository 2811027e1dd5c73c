//! `wasmflow save`: keep a script that worked as a named workflow.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use wasmflow::Script;
use wasmflow::error::exit;
use wasmflow::script::check::CheckOptions;
use wasmflow::script::saved;

/// Flags of `wasmflow save`.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// A run id (the script that run ran is saved) or a script file.
    pub source: String,
    /// Save in the user's directory (~/.config/wasmflow/workflows) instead
    /// of the project's (.wasmflow/workflows).
    #[arg(long)]
    pub user: bool,
    /// The name to save it under (default: `meta.name`, else the file name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Replace a saved workflow of the same name.
    #[arg(long)]
    pub force: bool,
}

pub fn save(args: SaveArgs) -> i32 {
    match try_save(&args) {
        Ok(()) => exit::OK,
        Err(message) => {
            eprintln!("error: {message}");
            exit::USAGE
        }
    }
}

fn try_save(args: &SaveArgs) -> Result<(), String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    let (source, origin) = read_source(&args.source)?;
    let stem = origin
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Only a script that passes the checks is worth a name.
    let script = Script::from_source(
        origin.clone(),
        format!("{stem}.js"),
        source.clone(),
        CheckOptions::default(),
    )
    .map_err(|e| format!("{} cannot be saved: {e}", origin.display()))?;
    let name = args
        .name
        .clone()
        .or_else(|| script.meta.as_ref().map(|m| m.name.clone()))
        .unwrap_or(stem);
    let slug = saved::slug(&name);
    if slug.is_empty() {
        return Err(format!(
            "`{name}` has no letters or digits to name a file after; pass --name"
        ));
    }
    let dir = if args.user {
        saved::home_dir()
            .ok_or("--user needs $HOME")?
            .join(".config/wasmflow/workflows")
    } else {
        project_dir(&cwd)
    };
    refuse_symlinks(&dir)?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let target = dir.join(format!("{slug}.js"));
    match std::fs::symlink_metadata(&target) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "{} is a symbolic link; saving through it could write anywhere. Remove it first",
                target.display()
            ));
        }
        Ok(_) if std::fs::read_to_string(&target).is_ok_and(|t| t == source) => {
            eprintln!("{name} is already saved as {}", target.display());
            return Ok(());
        }
        Ok(_) if !args.force => {
            return Err(format!(
                "a workflow named {slug} is already saved at {}: pass --force to replace it, or --name to save under another name",
                target.display()
            ));
        }
        _ => {}
    }
    write_new(&dir, &target, source.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    eprintln!(
        "saved {name} as {}; run it with: wasmflow run {slug}",
        target.display()
    );
    Ok(())
}

/// The script of a run id, or of a file; and where it came from.
fn read_source(source: &str) -> Result<(String, PathBuf), String> {
    let path = Path::new(source);
    if path.is_file() {
        return read_script(path);
    }
    if source.ends_with(".js") || source.contains(std::path::MAIN_SEPARATOR) {
        return Err(format!("cannot read {source}: no such file"));
    }
    let (_, info) = crate::runs::open_run(source)
        .map_err(|e| format!("`{source}` is neither a script file nor a run id ({e})"))?;
    let script_path = &info.script_path;
    if !script_path.exists()
        && let Some(b) = wasmflow::script::bundled::find(&script_path.to_string_lossy())
    {
        return Ok((b.source.to_string(), PathBuf::from(b.name)));
    }
    let (text, origin) = read_script(script_path)?;
    let sha = wasmflow::run::key::sha256_hex(text.as_bytes());
    if !info.script_sha256.is_empty() && sha != info.script_sha256 {
        return Err(format!(
            "{} changed since run {} ran it: save the file itself (wasmflow save {}) if the new version is what you want",
            script_path.display(),
            info.id,
            script_path.display()
        ));
    }
    Ok((text, origin))
}

/// A script file, or the source inside a built component.
fn read_script(path: &Path) -> Result<(String, PathBuf), String> {
    if let Some(bytes) = wasmflow::sandbox::module::read_wasm(path).map_err(|e| e.to_string())? {
        let info = wasmflow::sandbox::module::contract::read_info(&bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let section = info.section.ok_or_else(|| {
            format!(
                "{} holds no script (no wasmflow-workflow section)",
                path.display()
            )
        })?;
        return Ok((section.source, PathBuf::from(section.filename)));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok((text, path.to_path_buf()))
}

/// The nearest `.wasmflow/workflows` up to the repository root, else the
/// working directory's.
fn project_dir(cwd: &Path) -> PathBuf {
    saved::search_dirs(cwd, None)
        .into_iter()
        .find(|d| d.path.ends_with(".wasmflow/workflows"))
        .map(|d| d.path)
        .unwrap_or_else(|| cwd.join(".wasmflow/workflows"))
}

/// The directory and its parent must be real directories: a link could
/// send the script anywhere.
fn refuse_symlinks(dir: &Path) -> Result<(), String> {
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        if std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "{} is a symbolic link; refusing to save through it",
                d.display()
            ));
        }
    }
    Ok(())
}

/// A new temp file (never an existing one, never through a link), then a
/// rename over the target.
fn write_new(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".save-{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|_| file.sync_all());
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, target)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}
