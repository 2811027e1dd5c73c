//! `wasmflow show <id> --format md`: a readable report of a run.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use wasmflow::run::run_dir::RunInfo;

/// The run as Markdown: what ran, how it ended, agents, failures, tokens
/// and cost by phase and by model, the result.
pub fn markdown(info: &RunInfo, status: &str) -> String {
    let s = info.summary.clone().unwrap_or(Value::Null);
    let mut md = String::new();
    let _ = writeln!(md, "# {} — run {}\n", info.name, info.id);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| status | **{status}** |");
    let _ = writeln!(md, "| script | `{}` |", info.script_path.display());
    let _ = writeln!(md, "| args | `{}` |", cell(&info.args.to_string()));
    let _ = writeln!(md, "| sessions | {} |", info.sessions);
    if let Some(ms) = s["duration_ms"].as_u64() {
        let _ = writeln!(md, "| last session | {:.1} s |", ms as f64 / 1000.0);
    }
    let a = &s["agents"];
    let _ = writeln!(
        md,
        "| agents | {} spawned, {} done ({} from the journal), {} failed |",
        num(&a["spawned"]),
        num(&a["done"]),
        num(&a["cached"]),
        num(&a["failed"])
    );
    let t = &s["tokens"];
    let _ = writeln!(
        md,
        "| tokens | {} input, {} output, {} cache read, {} cache write |",
        num(&t["input"]),
        num(&t["output"]),
        num(&t["cache_read"]),
        num(&t["cache_write"])
    );
    let _ = writeln!(md, "| cost | {} |", usd(&s["cost"]["total_usd"]));
    if let Some(e) = s.get("error").filter(|e| !e.is_null()) {
        let _ = writeln!(md, "\n## Error\n\n{}", e["message"].as_str().unwrap_or(""));
    }

    // Failed agents per phase come from the per-agent records.
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    for agent in s["per_agent"].as_array().into_iter().flatten() {
        if agent["ok"] == false {
            *failed.entry(group(&agent["phase"])).or_default() += 1;
        }
    }
    let _ = writeln!(md, "\n## Phases\n");
    table(&mut md, "phase", &s["cost"]["by_phase"], Some(&failed));
    let _ = writeln!(md, "\n## Models\n");
    table(&mut md, "model", &s["cost"]["by_model"], None);

    let failures = s["failures"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(md, "\n## Failures\n");
    if failures.is_empty() {
        let _ = writeln!(md, "None.");
    }
    for f in failures {
        let _ = writeln!(
            md,
            "- **{}** (agent {}): {}",
            f["label"].as_str().unwrap_or("?"),
            num(&f["id"]),
            f["reason"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(md, "\n## Result\n");
    match &info.result {
        Some(r) => {
            let text = serde_json::to_string_pretty(r).unwrap_or_default();
            let _ = writeln!(md, "```json\n{text}\n```");
        }
        None => {
            let _ = writeln!(md, "No result ({status}).");
        }
    }
    md
}

fn table(md: &mut String, what: &str, lines: &Value, failed: Option<&BTreeMap<String, u64>>) {
    let Some(lines) = lines.as_object().filter(|l| !l.is_empty()) else {
        let _ = writeln!(md, "No agents.");
        return;
    };
    let fail_col = failed.map(|_| " failed |").unwrap_or("");
    let fail_sep = failed.map(|_| "---:|").unwrap_or("");
    let _ = writeln!(
        md,
        "| {what} | agents |{fail_col} input | output | cache read | cost |"
    );
    let _ = writeln!(md, "|---|---:|{fail_sep}---:|---:|---:|---:|");
    for (name, l) in lines {
        let fail_cell = failed
            .map(|f| format!(" {} |", f.get(name).copied().unwrap_or(0)))
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} |{fail_cell} {} | {} | {} | {} |",
            cell(name),
            num(&l["agents"]),
            num(&l["input"]),
            num(&l["output"]),
            num(&l["cache_read"]),
            usd(&l["usd"])
        );
    }
}

/// The name a group has in `by_phase`: the phase, or `(none)`.
fn group(phase: &Value) -> String {
    phase.as_str().unwrap_or("(none)").to_string()
}

fn num(v: &Value) -> String {
    v.as_u64()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "0".into())
}

fn usd(v: &Value) -> String {
    match v.as_f64() {
        Some(u) => format!("${u:.4}"),
        None => "unknown (unpriced)".into(),
    }
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
