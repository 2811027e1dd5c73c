//! The integration suite: one binary, so the runtime links once.

mod fake_cli;
mod fake_http;
mod gateways;
mod gemini_backend;
mod support;

mod background;
mod bad_input;
mod bounds;
mod claude_backend;
mod cli_input;
mod codex_backend;
mod concurrency;
mod conformance;
mod contract_doc;
mod durable_runs;
mod engine_artifact;
mod examples;
mod exec_backend;
mod http_backends;
mod limits;
mod modules;
mod opencode_backend;
mod operator;
mod plugin_layout;
mod progress;
mod properties;
mod qwen_backend;
mod rough_edges;
mod routing;
mod run_spec;
mod script_results;
mod server_tools;
mod sim_backend;
mod steering;
