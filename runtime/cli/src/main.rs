//! The `wasmflow` command: argument parsing, terminal views and `bench`.
//! The work is in the library (`wasmflow`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use wasmflow::error::exit;

mod background;
mod bench;
mod bench_detach;
mod bench_mcp;
mod bench_nats;
mod bench_serve;
mod bench_tools;
mod list;
mod live;
mod logging;
mod mcp;
mod module;
mod plan;
mod report;
mod run;
mod runs;
mod save;
mod serve;
mod spec;
mod steer;
mod worker;

/// Run LLM workflow scripts in a WebAssembly sandbox.
#[derive(Parser)]
#[command(
    name = "wasmflow",
    version,
    about,
    propagate_version = true,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow (a script, a compiled .wasm, or a saved workflow's
    /// name); its result goes to stdout as JSON.
    Run(Box<RunArgs>),
    /// Show a workflow's meta and estimate its agents, tokens and cost from
    /// a dry run on simulated agents (takes every `run` flag).
    Plan(Box<RunArgs>),
    /// Compile a workflow script to a WebAssembly component of the
    /// wasmflow:workflow world (runs with `wasmflow run flow.wasm`, jco,
    /// wasmtime-py or any component host).
    Build(module::BuildArgs),
    /// What a .wasm file imports and exports, its meta and versions, and
    /// whether it is inside the sandbox contract.
    Inspect(module::InspectArgs),
    /// Run an earlier run again: finished agents come from its journal,
    /// the rest run live. `run` flags given here override the stored ones.
    Resume(runs::ResumeArgs),
    /// Ask a running run to pause (as Ctrl-C would), from another shell.
    Stop(runs::StopArgs),
    /// Wait until a run ends; print its result; exit with its exit code.
    Wait(background::WaitArgs),
    /// A run's progress lines (phases, failures, log() lines), with -f as
    /// they come.
    Logs(background::LogsArgs),
    /// A run's whole result, or a page of it (never truncated).
    Result(background::ResultArgs),
    /// Watch a run in another process: its live tree of phases and
    /// running agents (Ctrl-C leaves the run going).
    Attach(steer::AttachArgs),
    /// Abandon one agent of a running run: agent() resolves null; a
    /// resume runs it again.
    Skip(steer::SteerArgs),
    /// Abandon one running agent's try and start it again at once.
    Retry(steer::SteerArgs),
    /// The process of a detached run (started by `run --detach`).
    #[command(hide = true)]
    RunDetached(background::RunDetachedArgs),
    /// List runs (id, name, status, agents, tokens, cost, age); `runs prune`.
    Runs(runs::RunsArgs),
    /// One run: summary, failures by label, where its result is.
    Show(runs::ShowArgs),
    /// List saved and bundled workflows: name, description, phases, where
    /// found.
    List(list::ListArgs),
    /// Keep a script that worked (a run's, or a file) as a named workflow
    /// in .wasmflow/workflows/ (or, with --user, your own directory).
    Save(save::SaveArgs),
    /// Measure the engine: instantiate, process start, agent round trips.
    Bench(bench::BenchArgs),
    /// Serve MCP over stdio: any MCP client (Claude Code, Codex, Gemini
    /// CLI, Cursor...) starts, watches and reads runs of this project.
    Mcp(mcp::McpArgs),
    /// A local web app over the project's runs: live runs, agents, results,
    /// stop, resume, skip, retry.
    Serve(serve::ServeArgs),
    /// Run agents that `wasmflow run --dispatch` sends to a pool over NATS
    /// JetStream, on this machine's backend.
    Worker(worker::WorkerArgs),
}

/// Flags of `wasmflow run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The workflow: a script (.js), a compiled workflow (.wasm from
    /// `wasmflow build`) or the name of a saved workflow.
    pub script: String,
    /// Plain text for the script's `args` (as with `/name some text`).
    /// Flags may stand anywhere; words after `--` are text even when they
    /// start with `-`.
    #[arg(value_name = "TEXT")]
    pub text: Vec<String>,
    /// The value the script sees as `args`, as JSON (e.g. '{"n": 3}' or '"text"').
    #[arg(long, value_name = "JSON", conflicts_with = "args_file")]
    pub args: Option<String>,
    /// Read `args` from a JSON file.
    #[arg(long, value_name = "FILE")]
    pub args_file: Option<PathBuf>,
    /// Agent backend: `sim` (simulated agents, the default), `claude`
    /// (Claude Code CLI), `codex` (Codex CLI), `gemini` (Gemini CLI), `qwen` (Qwen Code), `opencode`, `anthropic` (Messages API), `openai` (Chat
    /// Completions: OpenAI, Ollama, vLLM, llama.cpp) or `exec`.
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
    /// exec backend: the command run once per agent (through /bin/sh -c);
    /// implies --backend exec. Protocol: docs/exec-backend.md.
    #[arg(long = "exec", value_name = "COMMAND")]
    pub exec_command: Option<String>,
    /// Wall-clock limit for one agent execution (e.g. 90s, 30m).
    /// (default 30m, or `agent_timeout` in the config)
    #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
    pub agent_timeout: Option<std::time::Duration>,
    /// An agent that shows no progress this long fails (claude: no output
    /// line; HTTP: no bytes). (default 10m for claude, 2m for HTTP, or
    /// `stall_timeout` in the config; opts.stallMs per agent)
    #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
    pub stall_timeout: Option<std::time::Duration>,
    /// HTTP backends: retries after 429, 5xx or a network error, with
    /// exponential backoff and jitter, honouring retry-after.
    /// (default 4, or `retries` in the config)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: Option<u32>,
    /// Run the agents on workers: nats://HOST:PORT[/POOL] (`[dispatch] url`
    /// in the config). The script runs here; start workers with
    /// `wasmflow worker --nats URL`.
    #[arg(long, value_name = "URL")]
    pub dispatch: Option<String>,
    /// MCP servers for the agents, from a file in Claude Code's `.mcp.json`
    /// format, besides `[mcp_servers]` in the config (docs/tools.md).
    #[arg(long, value_name = "FILE")]
    pub mcp_config: Option<std::path::PathBuf>,
    /// Agents running at once; excess agent() calls queue in call order.
    /// (default 16, or `concurrency` in the config)
    #[arg(long, value_name = "N",
          value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..=4096), |v| v as usize))]
    pub concurrency: Option<usize>,
    /// Agents spawned over the whole run; the next agent() throws.
    /// (default 1000, or `max_agents` in the config)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_agents: Option<u64>,
    /// Wasm fuel the script may burn between two waits (stops endless
    /// loops). (default 10000000000)
    #[arg(long, value_name = "FUEL", value_parser = clap::value_parser!(u64).range(1_000_000..))]
    pub cpu_limit: Option<u64>,
    /// Guest memory limit (e.g. 256M, 1G; a bare number is MiB). (default 512M)
    #[arg(long, value_name = "SIZE", value_parser = wasmflow::limits::parse_size)]
    pub memory_limit: Option<usize>,
    /// Largest agent() prompt (e.g. 512K); over it agent() throws. (default 1M)
    #[arg(long, value_name = "SIZE", value_parser = wasmflow::limits::parse_bytes)]
    pub max_prompt: Option<usize>,
    /// Largest agent() options object as JSON, schema included. (default 256K)
    #[arg(long, value_name = "SIZE", value_parser = wasmflow::limits::parse_bytes)]
    pub max_options: Option<usize>,
    /// Largest opts.schema as JSON. (default 64K)
    #[arg(long, value_name = "SIZE", value_parser = wasmflow::limits::parse_bytes)]
    pub max_schema: Option<usize>,
    /// Largest result of the script as JSON; over it the run ends (exit 3).
    /// (default 16M)
    #[arg(long, value_name = "SIZE", value_parser = wasmflow::limits::parse_bytes)]
    pub max_result: Option<usize>,
    /// Longest log()/console line; longer ones are cut, saying so. (default 16K)
    #[arg(long, value_name = "SIZE", value_parser = wasmflow::limits::parse_bytes)]
    pub max_log_line: Option<usize>,
    /// Log lines per second; more are dropped and counted. (default 200)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub log_rate: Option<u32>,
    /// Largest output of one agent; over it the agent fails (its whole
    /// output is kept in the run directory). (default 4M)
    #[arg(long, value_name = "SIZE", value_parser = wasmflow::limits::parse_bytes)]
    pub max_agent_output: Option<usize>,
    /// Wall-clock limit for the whole run (e.g. 90s, 30m, 12h). (default 12h)
    #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Output-token budget the script sees as `budget` (e.g. 500k); agent()
    /// throws WorkflowBudgetExceededError once it is spent.
    #[arg(long, value_name = "TOKENS", value_parser = wasmflow::limits::parse_tokens)]
    pub budget: Option<u64>,
    /// Tries for an agent whose reply must match opts.schema. (default 5)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub schema_tries: Option<u32>,
    /// Default model alias for agents that pick none and whose phase names
    /// none (else `default_model` in the config).
    #[arg(long, value_name = "ALIAS")]
    pub model: Option<String>,
    /// Stop spawning agents once they have cost this many USD; refuses to
    /// start when a model the run may use has no price in the config.
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub max_cost: Option<f64>,
    /// End the run after this many consecutive quota or auth failures
    /// (0: never). (default 3)
    #[arg(long, value_name = "N")]
    pub circuit_breaker: Option<u32>,
    /// How the guest is driven: `poll` (driver.start/deliver, the default)
    /// or `blocking` (runner.run, suspended in wait.await-next). Results are
    /// the same; the choice exists to test both.
    #[arg(long, value_name = "KIND", value_parser = parse_driver)]
    pub driver: Option<wasmflow::DriverKind>,
    /// Write every agent result, in the order the script got it, to FILE
    /// (JSON): the table tests/embed hosts replay.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Run in the background: check everything a run checks before its
    /// first agent, start it in a process of its own (it survives the
    /// terminal and this command) and print its id (`--json`: id, dir, pid).
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Start without asking, even when the estimate is over the
    /// confirmation threshold ([plan] confirm_agents / confirm_usd).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Unknown agent() options and meta keys are errors, not warnings.
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON summary object instead of the bare result.
    #[arg(long)]
    pub json: bool,
    /// Continue run ID (`.wasmflow/runs/ID`): agents its journal has
    /// finished are handed back, not run again; failed ones run again.
    #[arg(long, value_name = "ID")]
    pub resume: Option<String>,
    /// Do not journal the run (it cannot be resumed).
    #[arg(long)]
    pub no_journal: bool,
    /// After Ctrl-C or `wasmflow stop`: how long running agents may finish.
    /// (default 30s)
    #[arg(long, value_name = "DURATION", value_parser = wasmflow::limits::parse_duration)]
    pub grace: Option<std::time::Duration>,
    /// Write one JSON line per phase, agent and log event to FILE.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// No progress lines on stderr (warnings and errors still show).
    #[arg(long, short)]
    pub quiet: bool,
    /// `live`: a tree of phases and running agents redrawn in place (the
    /// default on a terminal); `plain`: phase changes, failures, log()
    /// lines and a tally at most every 5 s (the default otherwise);
    /// `agents`: one line per ended agent.
    #[arg(long, value_name = "MODE", value_parser = ["live", "plain", "agents"])]
    pub progress: Option<String>,
    /// sim backend: latency of every agent without a rule, in milliseconds.
    /// (default 0)
    #[arg(long, value_name = "MS")]
    pub sim_latency: Option<u64>,
    /// sim backend: a JSON rules file scripting agents' replies.
    #[arg(long, value_name = "FILE")]
    pub sim_rules: Option<PathBuf>,
    /// sim backend: append one JSON line per live agent execution to FILE.
    #[arg(long, value_name = "FILE")]
    pub sim_trace: Option<PathBuf>,
}

/// Parses `wasmflow run …` words (for `resume`, which rebuilds them).
pub fn parse_run(argv: Vec<String>) -> Result<RunArgs, clap::Error> {
    match Cli::try_parse_from(argv)?.command {
        Command::Run(args) => Ok(*args),
        _ => Err(clap::Error::raw(
            clap::error::ErrorKind::InvalidSubcommand,
            "expected `run`",
        )),
    }
}

/// Prints a command-line error; for an unknown `-`-word, also how to pass
/// it as text (clap suggests a similar flag instead when there is one).
pub fn print_usage_error(e: &clap::Error) {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let _ = e.print();
    if e.kind() != ErrorKind::UnknownArgument {
        return;
    }
    if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
        && !e.to_string().contains(&format!("'-- {arg}'"))
    {
        eprintln!("  tip: to pass '{arg}' as text, put it after `--`: '-- {arg}'");
    }
}

fn parse_driver(text: &str) -> Result<wasmflow::DriverKind, String> {
    match text {
        "poll" => Ok(wasmflow::DriverKind::Poll),
        "blocking" => Ok(wasmflow::DriverKind::Blocking),
        _ => Err(format!("`{text}` is not a driver: poll or blocking")),
    }
}

fn parse_usd(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("`{text}` is not an amount in USD (try 5 or 0.50)"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("`{text}` must be a positive amount"))
    }
}

fn main() {
    std::process::exit(cli_main());
}

fn cli_main() -> i32 {
    logging::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            print_usage_error(&e);
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
        }
    };
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Build(args) => module::build(args),
        Command::Plan(args) => plan::plan(*args),
        Command::Inspect(args) => module::inspect(args),
        Command::Resume(args) => runs::resume(args),
        Command::Stop(args) => runs::stop(args),
        Command::Wait(args) => background::wait(args),
        Command::Attach(args) => steer::attach(args),
        Command::Skip(args) => steer::skip(args),
        Command::Retry(args) => steer::retry(args),
        Command::Logs(args) => background::logs(args),
        Command::Result(args) => background::result(args),
        Command::RunDetached(args) => background::run_detached(args),
        Command::Runs(args) => runs::runs(args),
        Command::Show(args) => runs::show(args),
        Command::List(args) => list::list(args),
        Command::Save(args) => save::save(args),
        Command::Bench(args) => bench::bench(args),
        Command::Mcp(args) => mcp::mcp(args),
        Command::Serve(args) => serve::serve(args),
        Command::Worker(args) => worker::worker(args),
    }
}
