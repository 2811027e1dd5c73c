//! wasmflow's local web servers. `guard`: the token, `Host` and `Origin`
//! checks each of them puts in front (the dashboard, `wasmflow mcp --listen`).

pub mod guard;
