#!/usr/bin/env bash
# Scale check: a 512³ label volume through `segloss distmap` (and `eval` when available),
# and a 16×4×512×512 batch through `segloss loss dice`, with wall time and peak RSS.
# Usage: tools/bench/scale.sh [WORKDIR]   (Python with numpy: $PYTHON, else python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${1:-$(mktemp -d)}
mkdir -p "$W"
PY=${PYTHON:-python3}
BIN=target/release/segloss
[ -x "$BIN" ] || cargo build --release -p segloss-cli
"$PY" - "$W" <<'PY'
import sys, numpy as np
w = sys.argv[1]
rng = np.random.default_rng(0)
z, y, x = np.ogrid[:512, :512, :512]
vol = np.zeros((512, 512, 512), np.uint8)
for k in range(40):
    c = rng.uniform(40, 472, 3); r = rng.uniform(20, 60)
    vol[(z - c[0])**2 + (y - c[1])**2 + (x - c[2])**2 <= r * r] = 1 + k % 3
np.save(f"{w}/vol512.npy", vol)
pred = vol.copy(); pred[:, :, 1:] = vol[:, :, :-1]  # shifted by one voxel
np.save(f"{w}/pred512.npy", pred)
logits = rng.standard_normal((16, 4, 512, 512), dtype=np.float32)
np.save(f"{w}/logits.npy", logits)
np.save(f"{w}/labels.npy", rng.integers(0, 4, (16, 512, 512), dtype=np.uint8))
PY
t() { /usr/bin/time -f "%e s, peak RSS %M KiB" "$@"; }
echo "== distmap --kind edt 512³";    t "$BIN" distmap "$W/vol512.npy" -o "$W/edt.npy" --force
echo "== distmap --kind labels 512³"; t "$BIN" distmap "$W/vol512.npy" -o "$W/ml.npy" --kind labels --force
echo "== distmap --kind signed 512³"; t "$BIN" distmap "$W/vol512.npy" -o "$W/sg.npy" --kind signed --force
if "$BIN" eval --help >/dev/null 2>&1; then
  echo "== eval 512³ (3 classes, all metrics)"; t "$BIN" eval --pred "$W/pred512.npy" --target "$W/vol512.npy" -o "$W/eval.json" --force || true
  head -c 600 "$W/eval.json" 2>/dev/null; echo
fi
echo "== loss dice 16×4×512×512";    t "$BIN" loss "dice(activation=softmax)" --pred "$W/logits.npy" --target "$W/labels.npy"
echo "== loss dice + grad";          t "$BIN" loss "dice(activation=softmax)" --pred "$W/logits.npy" --target "$W/labels.npy" --grad "$W/g.npy" --force
"$PY" -c "import numpy as np; e=np.load('$W/edt.npy', mmap_mode='r'); print('edt max', float(e.max()), 'finite', bool(np.isfinite(e).all()))"
