//! `wasmflow list`: the saved workflows a name would find.

use clap::Args;
use serde_json::json;

use wasmflow::Script;
use wasmflow::error::exit;
use wasmflow::script::check::CheckOptions;
use wasmflow::script::saved;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn list(args: ListArgs) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read the working directory: {e}");
            return exit::USAGE;
        }
    };
    let dirs = saved::search_dirs(&cwd, saved::home_dir().as_deref());
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for (path, origin) in saved::all(&dirs) {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shadowed = !seen.insert(stem.clone());
        let row = match Script::load(&path, CheckOptions::default()) {
            Ok(script) => {
                let meta = script.meta.as_ref();
                json!({
                    "name": script.name(),
                    "description": meta.map(|m| m.description.clone()),
                    "phases": meta.map(|m| m.phases.iter().map(|p| p.title.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                    "origin": origin.as_str(),
                    "path": path.display().to_string(),
                    "shadowed": shadowed,
                })
            }
            Err(e) => json!({
                "name": stem, "error": e.to_string(), "origin": origin.as_str(),
                "path": path.display().to_string(), "shadowed": shadowed,
            }),
        };
        rows.push(row);
    }
    // Bundled workflows come last: a saved one of the same name wins.
    for b in wasmflow::script::bundled::BUNDLED {
        let shadowed = !seen.insert(b.name.to_string());
        let script = b.script(CheckOptions::default());
        let meta = script.as_ref().ok().and_then(|s| s.meta.clone());
        rows.push(json!({
            "name": b.name,
            "description": meta.as_ref().map(|m| m.description.clone()),
            "phases": meta.map(|m| m.phases.iter().map(|p| p.title.clone()).collect::<Vec<_>>()).unwrap_or_default(),
            "origin": "bundled",
            "path": serde_json::Value::Null,
            "shadowed": shadowed,
        }));
    }
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
        return exit::OK;
    }
    if rows.is_empty() {
        eprintln!(
            "no saved workflows: put scripts in .wasmflow/workflows/ (project) or ~/.config/wasmflow/workflows/ (user); .claude/workflows/ works too"
        );
        return exit::OK;
    }
    for r in rows {
        let name = r["name"].as_str().unwrap_or("?");
        let mut line = format!(
            "{name}  [{}] {}",
            r["origin"].as_str().unwrap_or(""),
            r["path"].as_str().unwrap_or("(inside wasmflow)")
        );
        if r["shadowed"] == true {
            line.push_str("  (shadowed by an earlier one of the same name)");
        }
        println!("{line}");
        match r.get("error") {
            Some(e) => println!("    cannot be run: {}", e.as_str().unwrap_or("")),
            None => {
                println!(
                    "    {}",
                    r["description"]
                        .as_str()
                        .unwrap_or("(no meta: no description)")
                );
                let phases: Vec<&str> = r["phases"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                    .unwrap_or_default();
                if !phases.is_empty() {
                    println!("    phases: {}", phases.join(" → "));
                }
            }
        }
    }
    exit::OK
}
