#!/usr/bin/env bash
# A run's agents on workers over NATS JetStream, against Debian's
# nats-server (installed with apt when missing; fails, never skips, when
# it cannot be). Needs root (or CAP_NET_ADMIN) for the partition test's
# network namespace.
set -euo pipefail
cd "$(dirname "$0")/../.."
server="$(command -v nats-server || true)"
if [ -z "$server" ] && [ -x /usr/sbin/nats-server ]; then server=/usr/sbin/nats-server; fi
if [ -z "$server" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y nats-server >/dev/null \
    || { echo "nats: cannot install Debian's nats-server (apt-get install nats-server)" >&2; exit 1; }
  server="$(command -v nats-server || echo /usr/sbin/nats-server)"
fi
[ -x "$server" ] || { echo "nats: nats-server is missing" >&2; exit 1; }
# The partition test puts a worker in a network namespace.
if ! command -v ip >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y iproute2 >/dev/null \
    || { echo "nats: cannot install iproute2 (apt-get install iproute2)" >&2; exit 1; }
fi
"$server" --version >&2
export NATS_SERVER="$server"
exec cargo test --locked -p wasmflow-cli --test nats "$@"
