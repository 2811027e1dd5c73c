#!/usr/bin/env bash
# `wasmflow serve` over HTTP and in a real browser: Debian's chromium and
# chromium-driver (installed with apt when missing; no browser downloads)
# driven by Selenium (pinned, in the shared test venv). Fails, never skips,
# when it cannot install them.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  command -v chromium >/dev/null && command -v chromedriver >/dev/null \
    || { echo "dashboard: chromium and chromium-driver are missing (apt-get install chromium chromium-driver)" >&2; exit 1; }
fi
source tests/lib/venv.sh
wasmflow_venv selenium==4.51.0
[ -x target/debug/wasmflow ] || cargo build --locked -p wasmflow-cli
exec "$PYTHON" tests/dashboard/run.py "$@"
