//! Estimates before a run: the script runs once on simulated agents (no
//! journal, nothing paid) and what it spawned is counted by phase and by
//! model, with tokens as assumed and cost at the configured prices.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::backend::sim::{SimBackend, SimRules, SimUsage};
use crate::run::events::EventSink;
use crate::run::summary::CostLine;
use crate::sandbox::driver::{Program, RunConfig, run_program};
use crate::sandbox::engine::WorkflowEngine;

/// What an estimate assumes of agents it cannot ask.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Assumptions {
    /// Input tokens per agent.
    pub input_tokens: u64,
    /// Output tokens per agent.
    pub output_tokens: u64,
}

impl Assumptions {
    /// From `[plan]`, else 4,000 in and 1,000 out.
    pub fn from_config(config: &crate::config::Config) -> Assumptions {
        Assumptions {
            input_tokens: config.plan.input_tokens.unwrap_or(4_000),
            output_tokens: config.plan.output_tokens.unwrap_or(1_000),
        }
    }
}

/// The outcome of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Agents the script started.
    pub agents: u64,
    /// Agents, tokens and cost by phase (`(none)` outside phases).
    pub by_phase: BTreeMap<String, CostLine>,
    /// Agents, tokens and cost by model id (`(none)` when no model
    /// applies).
    pub by_model: BTreeMap<String, CostLine>,
    /// Input tokens over all agents.
    pub input_tokens: u64,
    /// Output tokens over all agents.
    pub output_tokens: u64,
    /// USD at the configured prices; `None` when a model has no price.
    pub usd: Option<f64>,
    /// Agents whose model has no price.
    pub unpriced_agents: u64,
    /// How the dry run ended (`ok`, or why it stopped: then the counts
    /// cover only what ran until then).
    pub ended: String,
    /// What the figures assume.
    pub assumptions: Assumptions,
}

/// Runs `program` on simulated agents. `base` supplies args, budget, caps,
/// routing and prices; its backend and journal are replaced. With `rules`
/// the simulated agents answer as they say (their usage wins where they
/// set one), else every agent uses the assumed tokens.
pub fn estimate(
    engine: &WorkflowEngine,
    program: Program<'_>,
    mut base: RunConfig,
    rules: Option<SimRules>,
    assumptions: Assumptions,
) -> Estimate {
    let mut rules = rules.unwrap_or_default();
    if rules.default.usage.is_none() {
        rules.default.usage = Some(SimUsage {
            input: assumptions.input_tokens,
            output: assumptions.output_tokens,
            cache_read: 0,
            cache_write: 0,
        });
    }
    base.backend = Arc::new(SimBackend::new(rules, Duration::ZERO, None));
    base.durability = None;
    base.pause_on_signal = false;
    base.record = false;
    // Timers really wait: a dry run may not take long.
    base.limits.wall_clock = base.limits.wall_clock.min(Duration::from_secs(20));
    let outcome = run_program(engine, program, base, EventSink::silent());
    let ended = match &outcome.result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{}: {e}", e.status()),
    };
    Estimate {
        agents: outcome.stats.agents.spawned,
        by_phase: outcome.stats.cost.by_phase.clone(),
        by_model: outcome.stats.cost.by_model.clone(),
        input_tokens: outcome.stats.tokens.input,
        output_tokens: outcome.stats.tokens.output,
        usd: outcome.stats.cost.total_usd,
        unpriced_agents: outcome.stats.cost.unpriced_agents,
        ended,
        assumptions,
    }
}
