#!/usr/bin/env bash
# `wasmflow mcp` driven by a real MCP client not written by us: the
# official MCP Python SDK (pinned), installed into the shared test venv
# when missing. Fails, never skips, when it cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/venv.sh
wasmflow_venv mcp==2.3.0
[ -x target/debug/wasmflow ] || cargo build --locked -p wasmflow-cli
exec "$PYTHON" tests/mcp/run.py "$@"
