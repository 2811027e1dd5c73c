#!/usr/bin/env bash
# Rebuilds the committed engine, runtime/wasmflow/assets/engine.wasm, from guest/.
#
#   scripts/build-guest.sh [OUTPUT]     (default: runtime/wasmflow/assets/engine.wasm)
#
# Needs Debian's clang-19, llvm-19, libclang-19-dev and wasi-libc (QuickJS is
# C) and the wasm32-wasip1 Rust target. The output is reproducible: the same
# toolchain and lockfile give the same bytes from any checkout directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-runtime/wasmflow/assets/engine.wasm}

for tool in clang-19 llvm-ar-19; do
  command -v "$tool" >/dev/null || { echo "build-guest: $tool is missing: apt-get install -y clang-19 llvm-19 libclang-19-dev wasi-libc" >&2; exit 1; }
done
[ -d /usr/lib/wasm32-wasi ] || { echo "build-guest: wasi-libc is missing: apt-get install -y wasi-libc" >&2; exit 1; }
rustup target add wasm32-wasip1 >/dev/null

# shellcheck source=scripts/wasi-sdk-env.sh
source scripts/wasi-sdk-env.sh
cargo_home=${CARGO_HOME:-$HOME/.cargo}
# No checkout or home path may reach the artifact. rquickjs-sys overrides
# CFLAGS with its --sysroot, so the per-target variable carries both.
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="--remap-path-prefix=$root=/wasmflow --remap-path-prefix=$cargo_home=/cargo"
export CFLAGS_wasm32_wasip1="--sysroot=$WASI_SDK/share/wasi-sysroot -ffile-prefix-map=$root=/wasmflow -ffile-prefix-map=$cargo_home=/cargo"
export SOURCE_DATE_EPOCH=0

cargo build --locked -p wasmflow-guest --target wasm32-wasip1 --release
# Built together with the runtime so wasmtime compiles once, with the same
# features as `cargo test`.
cargo build --locked --all-targets -p wasmflow -p wasmflow-cli -p wasmflow-engine-builder
target/debug/wasmflow-engine-builder target/wasm32-wasip1/release/wasmflow_guest.wasm "$out"
