//! `wasmflow plan`, and the question `run` asks before an expensive run.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::json;

use wasmflow::Script;
use wasmflow::config::Config;
use wasmflow::error::{InputError, RunError, exit};
use wasmflow::run::launch::{self, Env};
use wasmflow::run::plan::Estimate;

use crate::RunArgs;

pub fn plan(args: RunArgs) -> i32 {
    match try_plan(&args) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn try_plan(args: &RunArgs) -> Result<(), RunError> {
    let env = Env::from_process()?;
    let spec = crate::spec::from_args(args)?;
    let prepared = launch::prepare(spec, &env)?;
    let estimate = prepared.estimate()?;
    let script = &prepared.script;
    if args.json {
        let meta = script.meta.as_ref().map(|m| m.raw.clone());
        println!(
            "{:#}",
            json!({ "name": script.name(), "meta": meta, "estimate": estimate })
        );
    } else {
        print!("{}", describe(script, &estimate, args.sim_rules.is_some()));
    }
    Ok(())
}

/// Over the threshold: ask on a terminal, refuse elsewhere.
pub fn confirm(estimate: &Estimate, file_config: &Config, script: &Script) -> Result<(), RunError> {
    let Some(summary) = estimate.over_thresholds(&file_config.plan, &script.name()) else {
        return Ok(());
    };
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprint!("{}", describe(script, estimate, false));
        eprint!("{summary}.\nStart it? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(());
        }
        return Err(InputError::Invalid("not started: the run was declined".into()).into());
    }
    Err(InputError::Invalid(format!(
        "{summary}; not started without a terminal to ask on: pass --yes to run it (see `wasmflow plan` for the estimate)"
    ))
    .into())
}

/// Meta, the estimate, and what it assumes, as text.
pub fn describe(script: &Script, e: &Estimate, rules: bool) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    match &script.meta {
        Some(m) => {
            line(format!("{} — {}", m.name, m.description));
            if let Some(w) = &m.when_to_use {
                line(format!("when to use: {w}"));
            }
            if !m.phases.is_empty() {
                line("phases:".into());
            }
            for p in &m.phases {
                let mut text = format!("  {}", p.title);
                if let Some(d) = &p.detail {
                    text.push_str(&format!(" — {d}"));
                }
                if let Some(model) = &p.model {
                    text.push_str(&format!(" [model {model}]"));
                }
                line(text);
            }
        }
        None => line(format!("{} (no meta)", script.name())),
    }
    line("estimate, from a dry run on simulated agents (nothing was sent to a backend):".into());
    let t = &e.typical;
    let range = |low: u64, typical: u64| {
        if low == typical {
            low.to_string()
        } else {
            format!("{low} – {typical}")
        }
    };
    line(format!(
        "  agents     {} (1 / {} items per list)",
        range(e.agents.min, e.agents.typical),
        e.list_items
    ));
    let phases = t
        .by_phase
        .iter()
        .map(|(k, v)| {
            let low = e.by_phase.get(k).map_or(0, |l| l.agents);
            match v.usd {
                Some(u) => format!("{k} {} (${u:.4})", range(low, v.agents)),
                None => format!("{k} {}", range(low, v.agents)),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    line(format!("  by phase   {phases}"));
    if !e.fan_out.is_empty() {
        line(format!("  fans out   {}", e.fan_out.join(", ")));
    }
    let models = t
        .by_model
        .iter()
        .map(|(k, v)| {
            let low = e.by_model.get(k).map_or(0, |l| l.agents);
            format!("{k} {}", range(low, v.agents))
        })
        .collect::<Vec<_>>()
        .join(", ");
    line(format!("  by model   {models}"));
    line(format!(
        "  tokens     {} – {} input / {} – {} output",
        e.input_tokens, t.input_tokens, e.output_tokens, t.output_tokens
    ));
    line(match (e.usd, t.usd) {
        (Some(low), Some(high)) => {
            format!("  cost       ${low:.4} – ${high:.4} at the configured prices")
        }
        _ => format!(
            "  cost       unknown: {} agents use models without a price ([prices] in wasmflow.toml)",
            t.unpriced_agents
        ),
    });
    line("assumptions:".into());
    if rules {
        line("  - agents answer and report usage as the --sim-rules file says; where it sets no usage, as below".into());
    }
    line(format!(
        "  - every agent reads {} input tokens and writes {} output tokens ([plan] input_tokens / output_tokens)",
        e.assumptions.input_tokens, e.assumptions.output_tokens
    ));
    line(format!(
        "  - simulated agents answer every call, with schema-valid replies holding 1 item per list (low) or {} distinct items (typical, [plan] list_items): loops and branches that depend on real answers may start more or fewer agents",
        e.list_items
    ));
    line("  - models as a real run routes them: opts.model, the phase's model, --model / default_model".into());
    if e.ended != "ok" {
        line(format!(
            "  - the dry run stopped early ({}): the counts cover what ran until then",
            e.ended
        ));
    }
    out
}
