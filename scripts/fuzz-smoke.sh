#!/usr/bin/env bash
# Builds the cargo-fuzz targets (fuzz/) and runs each briefly: a smoke test
# that they build and find nothing in FUZZ_SECONDS (default 20) each. Long
# campaigns: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -O <target> in fuzz/.
# cargo-fuzz needs unstable flags; the pinned toolchain takes them with
# RUSTC_BOOTSTRAP=1 (no nightly can be fetched here). No sanitizer: the
# oracles' assertions and Rust's own checks are the detectors, and an ASan
# build of wasmtime would double CI time.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
secs="${FUZZ_SECONDS:-20}"
for target in host_interface round_trip scripts loader; do
  log="target/smoke-$target.log"
  mkdir -p target
  echo "== fuzz $target (${secs}s)"
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -O "$target" -- \
      -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed: see fuzz/$log and fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -a -E '^(stat::number_of_executed_units|stat::new_units_added)|DONE' "$log" | tail -n 3
done
