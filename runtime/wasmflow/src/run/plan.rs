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

/// Agents a dry run started with one item per list, and with
/// [`Estimate::list_items`] items per list.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct AgentRange {
    /// One item in every list a simulated agent returns.
    pub min: u64,
    /// `list_items` items in every list.
    pub typical: u64,
}

/// What one dry run counted.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Agents the script started.
    pub agents: u64,
    /// Agents, tokens and cost by phase (`(none)` outside phases).
    pub by_phase: BTreeMap<String, CostLine>,
    /// Agents, tokens and cost by model id (`the default model` when the
    /// dry run's backend routes none).
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
}

/// The outcome of the two dry runs: the low figures (one item per list, as
/// `run --backend sim` answers) at the top level, the typical ones under
/// `typical`.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Agents in the low and the typical case.
    pub agents: AgentRange,
    /// Items per list in the typical case (`[plan] list_items`).
    pub list_items: u64,
    /// Phases whose agents grow with the lists' length.
    pub fan_out: Vec<String>,
    /// The low case, by phase.
    pub by_phase: BTreeMap<String, CostLine>,
    /// The low case, by model.
    pub by_model: BTreeMap<String, CostLine>,
    /// The low case's input tokens.
    pub input_tokens: u64,
    /// The low case's output tokens.
    pub output_tokens: u64,
    /// The low case's USD; `None` when a model has no price.
    pub usd: Option<f64>,
    /// The low case's agents without a price.
    pub unpriced_agents: u64,
    /// How the low dry run ended.
    pub ended: String,
    /// The typical case.
    pub typical: Figures,
    /// What the figures assume.
    pub assumptions: Assumptions,
}

impl Estimate {
    /// Why a run of this estimate should be agreed to first (its typical
    /// case is over `[plan]` confirm_agents or confirm_usd), naming the
    /// figures; `None` when it is within both.
    pub fn over_thresholds(&self, plan: &crate::config::PlanSection, name: &str) -> Option<String> {
        let max_agents = plan.confirm_agents.unwrap_or(50);
        let max_usd = plan.confirm_usd.unwrap_or(5.0);
        // The typical case: lists as long as real agents tend to make them.
        let typical = &self.typical;
        let over_agents = typical.agents > max_agents;
        let over_usd = typical.usd.is_some_and(|u| u > max_usd);
        if !over_agents && !over_usd {
            return None;
        }
        let cost = match typical.usd {
            Some(u) => format!("about ${u:.2}"),
            None => "an unknown cost (unpriced models)".into(),
        };
        Some(format!(
            "{name} would start about {} agents ({cost}; {} input / {} output tokens as assumed), over the confirmation threshold of {max_agents} agents or ${max_usd:.2} ([plan] confirm_agents / confirm_usd)",
            typical.agents, typical.input_tokens, typical.output_tokens
        ))
    }
}

/// Key of agents without a model in `by_model`.
pub const NO_MODEL: &str = "the default model";

/// Runs `program` twice on simulated agents: lists of one item, and lists
/// of `list_items`. `base` makes the run's settings (args, budget, caps,
/// routing, prices); its backend and journal are replaced. With `rules`
/// the simulated agents answer as they say (their usage wins where they
/// set one), else every agent uses the assumed tokens.
pub fn estimate(
    engine: &WorkflowEngine,
    program: Program<'_>,
    base: impl Fn() -> RunConfig,
    rules: Option<SimRules>,
    assumptions: Assumptions,
    list_items: u64,
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
    let low = dry_run(
        engine,
        program,
        base(),
        SimBackend::new(rules.clone(), Duration::ZERO, None),
    );
    let typical = dry_run(
        engine,
        program,
        base(),
        SimBackend::new(rules, Duration::ZERO, None).with_list_items(list_items as usize),
    );
    let fan_out = typical
        .by_phase
        .iter()
        .filter(|(phase, line)| low.by_phase.get(*phase).map_or(0, |l| l.agents) < line.agents)
        .map(|(phase, _)| phase.clone())
        .collect();
    Estimate {
        agents: AgentRange {
            min: low.agents,
            typical: typical.agents,
        },
        list_items,
        fan_out,
        by_phase: low.by_phase,
        by_model: low.by_model,
        input_tokens: low.input_tokens,
        output_tokens: low.output_tokens,
        usd: low.usd,
        unpriced_agents: low.unpriced_agents,
        ended: low.ended,
        typical,
        assumptions,
    }
}

fn dry_run(
    engine: &WorkflowEngine,
    program: Program<'_>,
    mut config: RunConfig,
    sim: SimBackend,
) -> Figures {
    config.backend = Arc::new(sim);
    config.durability = None;
    config.pause_on_signal = false;
    config.record = false;
    config.preflight_done = true;
    // Timers really wait: a dry run may not take long.
    config.limits.wall_clock = config.limits.wall_clock.min(Duration::from_secs(20));
    let outcome = run_program(engine, program, config, EventSink::silent());
    let ended = match &outcome.result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{}: {e}", e.status()),
    };
    let mut by_model = outcome.stats.cost.by_model.clone();
    if let Some(line) = by_model.remove("(none)") {
        by_model.insert(NO_MODEL.to_string(), line);
    }
    Figures {
        agents: outcome.stats.agents.spawned,
        by_phase: outcome.stats.cost.by_phase.clone(),
        by_model,
        input_tokens: outcome.stats.tokens.input,
        output_tokens: outcome.stats.tokens.output,
        usd: outcome.stats.cost.total_usd,
        unpriced_agents: outcome.stats.cost.unpriced_agents,
        ended,
    }
}
