//! `wasmflow build` and `wasmflow inspect`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::json;

use wasmflow::error::{InputError, RunError, exit};
use wasmflow::run::launch;
use wasmflow::run::spec::Target;
use wasmflow::sandbox::module::{ModuleInfo, contract};
use wasmflow::script::check::CheckOptions;
use wasmflow::script::saved;
use wasmflow::{Script, WorkflowEngine, build_module};

/// Flags of `wasmflow build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The script (.js) or the name of a saved workflow.
    pub script: String,
    /// Where to write the component (default: the script's name with .wasm,
    /// in the working directory).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Unknown `agent()` options and `meta` keys are errors.
    #[arg(long)]
    pub strict: bool,
    /// No summary line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Flags of `wasmflow inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A .wasm file: a workflow component, or anything to check.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn build(args: BuildArgs) -> i32 {
    match try_build(&args) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn try_build(args: &BuildArgs) -> Result<(), RunError> {
    let started = Instant::now();
    let cwd = std::env::current_dir()
        .map_err(|e| InputError::Invalid(format!("cannot read the working directory: {e}")))?;
    let saved = saved::search_dirs(&cwd, saved::home_dir().as_deref());
    let check = CheckOptions {
        strict: args.strict,
    };
    let target = launch::target_from_word(&args.script);
    let (path, script) = match launch::resolve_target(&target, &saved)? {
        Target::File { path } => {
            if wasmflow::sandbox::module::read_wasm(&path)?.is_some() {
                return Err(InputError::Invalid(format!(
                    "{} is already WebAssembly; build takes a script (.js)",
                    path.display()
                ))
                .into());
            }
            let script = Script::load(&path, check)?;
            (path, script)
        }
        resolved => {
            let name = resolved.describe();
            let bundled = wasmflow::script::bundled::find(&name).ok_or_else(|| {
                InputError::Invalid(format!(
                    "`{name}` is not a workflow `wasmflow build` can read"
                ))
            })?;
            (PathBuf::from(bundled.name), bundled.script(check)?)
        }
    };
    for w in &script.warnings {
        eprintln!(
            "warning: {}:{}:{}: {}",
            script.filename, w.line, w.column, w.message
        );
    }
    let output = match &args.output {
        Some(o) => o.clone(),
        None => PathBuf::from(format!(
            "{}.wasm",
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "workflow".into())
        )),
    };
    let engine = WorkflowEngine::new().map_err(RunError::Internal)?;
    let wasm = build_module(&engine, &script)?;
    write_atomically(&output, &wasm).map_err(|e| InputError::Output {
        what: "the component",
        path: output.clone(),
        reason: e.to_string(),
    })?;
    if !args.quiet {
        eprintln!(
            "built {} ({} bytes) from {} in {:.0} ms",
            output.display(),
            wasm.len(),
            script.filename,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

/// Temp file + rename: a reader never sees half a component.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workflow.wasm".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

pub fn inspect(args: InspectArgs) -> i32 {
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return exit::USAGE;
        }
    };
    let info = match contract::read_info(&bytes) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return exit::USAGE;
        }
    };
    let verdict = contract::check(&info).map_err(|e| e.to_string());
    if args.json {
        println!("{}", inspect_json(&info, &verdict));
    } else {
        print_text(&args.file, &info, &verdict);
    }
    exit::OK
}

fn inspect_json(info: &ModuleInfo, verdict: &Result<(), String>) -> serde_json::Value {
    let section = info.section.as_ref().map(|s| {
        json!({
            "wasmflow": s.wasmflow,
            "wit": s.wit,
            "filename": s.filename,
            "sha256": s.sha256,
            "meta": s.meta,
            "sourceBytes": s.source.len(),
        })
    });
    json!({
        "kind": info.kind,
        "size": info.size,
        "imports": info.imports,
        "exports": info.exports,
        "workflow": section,
        "sectionError": info.section_error,
        "sandboxed": verdict.is_ok(),
        "refusal": verdict.as_ref().err(),
    })
}

fn print_text(file: &Path, info: &ModuleInfo, verdict: &Result<(), String>) {
    println!("{}: {}, {} bytes", file.display(), info.kind, info.size);
    match &info.section {
        Some(s) => {
            println!(
                "built by wasmflow {} for {} from {} (sha256 {})",
                s.wasmflow,
                s.wit,
                s.filename,
                &s.sha256[..s.sha256.len().min(16)]
            );
            if let Some(meta) = &s.meta {
                let field = |k: &str| meta.get(k).and_then(|v| v.as_str()).unwrap_or("");
                println!("meta: {} — {}", field("name"), field("description"));
                for p in meta
                    .get("phases")
                    .and_then(|p| p.as_array())
                    .into_iter()
                    .flatten()
                {
                    let title = p.get("title").and_then(|t| t.as_str()).unwrap_or("?");
                    match p.get("model").and_then(|m| m.as_str()) {
                        Some(m) => println!("  phase: {title} (model {m})"),
                        None => println!("  phase: {title}"),
                    }
                }
            }
        }
        None => match &info.section_error {
            Some(e) => println!("wasmflow-workflow section: unreadable ({e})"),
            None => println!("no wasmflow-workflow section (not built by wasmflow build)"),
        },
    }
    println!("imports:");
    for i in &info.imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &info.exports {
        println!("  {e}");
    }
    match verdict {
        Ok(()) => println!(
            "sandbox: inside the contract (imports only wasmflow:workflow/*; no WASI, no memory import)"
        ),
        Err(why) => println!("sandbox: REFUSED: {why}"),
    }
}
