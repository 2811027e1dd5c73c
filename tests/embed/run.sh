#!/usr/bin/env bash
# Compiled workflows in other hosts: installs jco (npm) and wasmtime-py
# (PyPI, into the shared test venv) at pinned versions when missing, then runs tests/embed/run.py,
# which checks that the CLI, Node and Python hosts give identical results.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v node >/dev/null || { echo "embed: node (>= 20) is missing" >&2; exit 1; }
command -v python3 >/dev/null || { echo "embed: python3 is missing" >&2; exit 1; }
if [ ! -x tests/embed/node/node_modules/.bin/jco ]; then
  (cd tests/embed/node && npm ci --no-audit --no-fund --loglevel=error)
fi
source tests/lib/venv.sh
wasmflow_venv wasmtime==50.0.1
[ -x target/debug/wasmflow ] || cargo build --locked -p wasmflow-cli
exec "$PYTHON" tests/embed/run.py "$@"
