#!/usr/bin/env bash
# CI for the Python package (crates/segloss-py): builds and installs the wheel with pip into a fresh
# venv (maturin is fetched by pip as the PEP 517 build backend), installs the test-only dependencies
# and runs the pytest suite: the NumPy API against the committed fixtures and scipy / edt, MONAI's own
# metric test cases on NumPy input, and the Dask example on a 2-worker LocalCluster.
#
#   .ci/python.sh          # numpy, scipy, edt, dask[distributed], tifffile, nibabel, pytest
#   .ci/python.sh --torch  # also torch + MONAI: the parity tests against MONAI (values and gradients);
#                          # the PyPI torch wheel brings about 2.5 GB of CUDA packages
#
# $PYTHON: the interpreter that creates the venv (default python3, >= 3.9). The venv lives under the
# cargo target dir ($CARGO_TARGET_DIR or target/), which also holds the wheel's Rust build.
set -euo pipefail
cd "$(dirname "$0")/.."
with_torch=0
for a in "$@"; do
  case "$a" in
    --torch) with_torch=1 ;;
    *) echo "usage: .ci/python.sh [--torch]" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-python3}"
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
target_dir="$(cd "$target_dir" && pwd)"
venv="$target_dir/ci-python-venv"
export CARGO_TARGET_DIR="$target_dir"
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== python: venv ($("$python" --version 2>&1)) in $venv"
rm -rf "$venv"
"$python" -m venv "$venv"
py="$venv/bin/python"

echo "== python: pip install crates/segloss-py (builds the wheel)"
"$py" -m pip install -q ./crates/segloss-py

echo "== python: test dependencies"
deps=(pytest numpy scipy edt "dask[distributed]" tifffile nibabel)
if [ "$with_torch" = 1 ]; then
  deps+=(torch monai)
fi
"$py" -m pip install -q "${deps[@]}"

echo "== python: pytest"
# Run from a folder outside the package sources, so that `import segloss` is the installed wheel.
set +e
(cd crates/segloss-py/tests && "$py" -m pytest -q -p no:cacheprovider .)
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: expected the suite of crates/segloss-py/tests" >&2
  exit 1
fi
exit "$rc"
