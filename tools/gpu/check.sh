#!/usr/bin/env bash
# The CUDA check, for a machine with one NVIDIA GPU (CUDA toolkit and driver installed, a Python with
# the packages of tools/reference/requirements.txt and a CUDA build of torch):
#
#   1. builds the release CLI and the loss fixture tests with `--features cuda`;
#   2. runs the fixture suite (distribution, region, boundary, peer cases: values and gradients against
#      PyTorch / MONAI / smp) on the GPU (SEGLOSS_TEST_DEVICE=cuda);
#   3. runs tools/bench/losses.py --device cuda: `segloss bench --device cuda` beside the PyTorch / MONAI /
#      smp losses on the GPU, the shapes and losses of the CPU table (8x1x256^2 masks, 8x4x256^2 labels),
#      and prints one table of ratios (segloss time / peer time; target for bce, ce, dice, dice + ce,
#      focal, tversky: <= 1.0).
#
#   tools/gpu/check.sh [OUT_DIR]      # results in OUT_DIR (default target/gpu-check): log, JSON
#
# $PYTHON: the interpreter (default python3). $CARGO_TARGET_DIR is honoured. Budget: about 8 minutes on
# one H100 with 16 cores, most of it the two builds (the release CLI, then the test binaries in release
# so that the fixture suite and the build share compiled dependencies).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-target/gpu-check}"
mkdir -p "$out"
python="${PYTHON:-python3}"
target_dir="${CARGO_TARGET_DIR:-target}"
start=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

stamp "nvidia-smi"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

stamp "build: release CLI with --features cuda"
cargo build --release --locked -p segloss-cli --features cuda 2>&1 | tail -3

stamp "fixture suite on cuda"
SEGLOSS_TEST_DEVICE=cuda cargo test --release --locked -p segloss --features cuda \
  --test distribution --test region --test boundary --test peer_cases 2>&1 | tee "$out/fixtures.log" \
  | grep -E "^test result|FAILED|panicked" || true
if grep -q "FAILED\|panicked" "$out/fixtures.log"; then
  echo "fixture suite: FAILED on cuda (see $out/fixtures.log)"
  fixtures=1
else
  fixtures=0
fi

stamp "loss benchmark on cuda"
"$python" tools/bench/losses.py --device cuda --pairs 0 --segloss "$target_dir/release/segloss" \
  --json "$out/losses-cuda.json" 2>/dev/null | tee "$out/losses.md"

stamp "done"
exit "$fixtures"
