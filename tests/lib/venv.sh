# Sourced by the suites that need Python packages: one virtualenv for all
# of them, in ~/.cache, with the pinned versions each suite names.
#   wasmflow_venv pkg==1.2.3 ...   sets PYTHON to the venv's interpreter
wasmflow_venv() {
  local venv="${WASMFLOW_TEST_VENV:-$HOME/.cache/wasmflow-tests/venv}"
  command -v python3 >/dev/null || { echo "python3 is missing (3.10 or newer)" >&2; return 1; }
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "cannot create the virtualenv $venv (python3 -m venv)" >&2; return 1; }
  fi
  local pkg
  for pkg in "$@"; do
    if ! "$venv/bin/python" -c 'import importlib.metadata as m, sys; n, v = sys.argv[1].split("=="); sys.exit(m.version(n) != v)' "$pkg" 2>/dev/null; then
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pkg" \
        || { echo "cannot install $pkg into $venv" >&2; return 1; }
    fi
  done
  PYTHON="$venv/bin/python"
}
