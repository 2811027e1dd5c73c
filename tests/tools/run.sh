#!/usr/bin/env bash
# Agents with MCP tools on the HTTP backends against a real MCP server not
# written by us: @modelcontextprotocol/server-filesystem, pinned with its
# dependencies in tests/tools/node/package-lock.json (npm's cache in ~/.npm
# is shared with the other suites). Fails, never skips, when it cannot be
# installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v node >/dev/null || { echo "tools: node (>= 20) is missing" >&2; exit 1; }
server="$PWD/tests/tools/node/node_modules/.bin/mcp-server-filesystem"
if [ ! -x "$server" ]; then
  (cd tests/tools/node && npm ci --no-audit --no-fund --loglevel=error) \
    || { echo "tools: cannot install @modelcontextprotocol/server-filesystem (npm ci in tests/tools/node)" >&2; exit 1; }
fi
export WASMFLOW_FS_SERVER="$server"
exec cargo test --locked -p wasmflow-cli --test tools "$@"
