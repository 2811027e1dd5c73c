# Sourced by scripts/build-guest.sh: points rquickjs-sys at Debian's clang and
# wasi-libc instead of letting it download a wasi-sdk (no network here).
WASI_SDK="${WASI_SDK:-$PWD/target/wasi-sdk}"
if [ ! -x "$WASI_SDK/bin/clang" ]; then
  mkdir -p "$WASI_SDK/bin" "$WASI_SDK/share/wasi-sysroot/include" "$WASI_SDK/share/wasi-sysroot/lib"
  ln -sfn /usr/bin/clang-19 "$WASI_SDK/bin/clang"
  ln -sfn /usr/bin/llvm-ar-19 "$WASI_SDK/bin/ar"
  for t in wasm32-wasi wasm32-wasip1 wasm32-wasip2; do
    ln -sfn /usr/include/wasm32-wasi "$WASI_SDK/share/wasi-sysroot/include/$t"
    ln -sfn /usr/lib/wasm32-wasi "$WASI_SDK/share/wasi-sysroot/lib/$t"
  done
fi
export WASI_SDK
export LIBCLANG_PATH="${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}"
