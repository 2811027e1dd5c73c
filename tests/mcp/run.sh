#!/usr/bin/env bash
# `wasmflow mcp` driven by a real MCP client not written by us: the
# official MCP Python SDK (pinned), installed into the shared test venv
# when missing. Fails, never skips, when it cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/venv.sh
wasmflow_venv mcp==2.3.0
# The MCP Inspector's CLI, a second client not written by us, pinned with
# its dependencies in tests/mcp/node/package-lock.json (npm's cache in
# ~/.npm is shared with the other suites).
command -v node >/dev/null || { echo "mcp: node (>= 20) is missing" >&2; exit 1; }
inspector="$PWD/tests/mcp/node/node_modules/.bin/mcp-inspector"
if [ ! -x "$inspector" ]; then
  (cd tests/mcp/node && npm ci --no-audit --no-fund --loglevel=error) \
    || { echo "mcp: cannot install the MCP Inspector (npm ci in tests/mcp/node)" >&2; exit 1; }
fi
export WASMFLOW_MCP_INSPECTOR="$inspector"
[ -x target/debug/wasmflow ] || cargo build --locked -p wasmflow-cli
exec "$PYTHON" tests/mcp/run.py "$@"
