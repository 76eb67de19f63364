#!/usr/bin/env bash
# Side-by-side benchmark of segloss-core's maps against scipy / edt / the Python U-Net weight-map recipes.
# One command from the repository root:  bash tools/bench/maps/run.sh
# Python: $PYTHON if set, else a venv made in $VENV
# (default ~/.cache/segloss-bench-venv) with numpy, scipy and edt from PyPI.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p segloss-core --example bench_maps
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  VENV="${VENV:-$HOME/.cache/segloss-bench-venv}"
  [[ -x "$VENV/bin/python" ]] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q numpy scipy edt; }
  PY="$VENV/bin/python"
fi
exec "$PY" tools/bench/maps/bench.py "$CARGO_TARGET_DIR/release/examples/bench_maps"
