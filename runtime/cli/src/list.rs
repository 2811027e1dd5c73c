//! `wasmflow list`: the saved workflows a name would find.

use clap::Args;
use serde_json::json;

use wasmflow::error::exit;
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
    let rows: Vec<serde_json::Value> =
        wasmflow::script::catalog::entries(&cwd, saved::home_dir().as_deref())
            .iter()
            .map(|e| json!(e))
            .collect();
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
