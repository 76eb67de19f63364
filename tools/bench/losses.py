#!/usr/bin/env python3
"""Side-by-side loss benchmark: segloss against its PyTorch / MONAI / smp peers.

One command, from the repository root (the venv lives outside the repo):

    cargo build --release -p segloss-cli
    "${PYTHON:-python3}" tools/bench/losses.py [--iters K] [--quick] [--only SUBSTR[,SUBSTR…]] [--pairs P]
        [--segloss PATH] [--device cpu|cuda] [--json tools/bench/results/losses-cpu.json]

`--device cuda` (a GPU machine, a CLI built with `--features cuda`: see tools/gpu/check.sh) runs the peers
on the GPU (timed with torch.cuda.synchronize()) and `segloss bench --device cuda`; the numpy/scipy recipes of
shape_aware are left out there, and peak memory is not measured.

($PYTHON: an interpreter with the packages of tools/reference/requirements.txt.)

For every case it times the Python peer in this process (torch.set_num_threads(2), float32, forward + backward
with x.requires_grad, 3 warm-ups, median of K) and runs `target/release/segloss bench SPEC --shape ...
--target ... --iters K --format json` with RAYON_NUM_THREADS=2 (same warm-up count, median of K), then
prints a markdown table.

Data. The targets are the exact ones `segloss bench` generates (its SplitMix64 generator and disc drawing
are replicated below, vectorised): `mask` = 12 discs of radius 5-9 per image plus 2 % flipped pixels,
`cells` = 50 such discs per image (touching/overlapping allowed), `labels` = uniform classes 0..C-1.
Logits are N(0, 1) in both (the same distribution; not the same numbers: burn's generator is not
replicated).

Peak memory. segloss: `peak_bytes` of its counting allocator over the timed iterations, minus the bytes live
when they start. Peer: one extra, untimed iteration (after the timed ones, x.grad cleared first) under
torch.profiler with profile_memory=True: the running sum of the CPU allocator's [memory] events gives the
peak of torch tensor bytes allocated during forward + backward (x.grad included); for the peers that work
in numpy / scipy (hausdorff_dt, the shape_aware recipes) tracemalloc's peak over the same iteration (numpy
reports its buffers to tracemalloc) is added, which is an upper bound of the combined peak. Process RSS is
not used: glibc keeps freed pages and the first call's lazy initialisation dominates it.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

THREADS = 2
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = str(THREADS)

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)
torch.set_num_interop_threads(THREADS)

import warnings  # noqa: E402

warnings.filterwarnings("ignore")
import monai  # noqa: E402
import monai.losses as ml  # noqa: E402
import segmentation_models_pytorch as smp  # noqa: E402
from segmentation_models_pytorch.losses import LovaszLoss  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
WARMUP = 3
SEED = 0

# ------------------------------------------------------------------------------------------------
# segloss bench's data generator (crates/segloss-cli/src/commands/bench.rs), replicated.

_M64 = (1 << 64) - 1
_GAMMA = np.uint64(0x9E3779B97F4A7C15)


class SplitMix64:
    """Rust's `Rng` in bench.rs. Draw k (0-based) is mix(state0 + (k+1)*gamma), so blocks vectorise."""

    def __init__(self, seed):
        self.state = np.uint64(seed & _M64)
        self.k = 0

    def next_block(self, count):
        with np.errstate(over="ignore"):
            ks = np.arange(self.k + 1, self.k + count + 1, dtype=np.uint64)
            z = self.state + ks * _GAMMA
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        self.k += count
        return z

    def unit_block(self, count):
        return (self.next_block(count) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _discs(images, h, w, count, rng):
    """bench.rs `cells` for 2D: `count` discs of radius 5 + 4u per image; u drawn as r, cy, cx, cz."""
    out = np.zeros((images, h, w), np.float32)
    u = rng.unit_block(images * count * 4).reshape(images, count, 4)
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    for b in range(images):
        for r_u, cy_u, cx_u, _cz_u in u[b]:
            r = 5.0 + 4.0 * r_u
            cy, cx = cy_u * h, cx_u * w
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2 + 0.0
            out[b][d2 <= r * r] = 1.0
    return out


def segloss_target(kind, shape, seed=SEED):
    """The target `segloss bench --target KIND --shape SHAPE --seed SEED` uses (2D shapes)."""
    n, c, h, w = shape
    rng = SplitMix64(seed ^ 0x5EED)
    if kind == "labels":
        return (rng.next_block(n * h * w) % np.uint64(c)).astype(np.int64).reshape(n, h, w)
    if kind == "cells":
        return _discs(n * c, h, w, 50, rng).reshape(n, c, h, w)
    m = _discs(n * c, h, w, 12, rng).reshape(-1)
    flip = rng.unit_block(m.size) < 0.02
    m[flip] = 1.0 - m[flip]
    return m.reshape(n, c, h, w)


# ------------------------------------------------------------------------------------------------
# The shape-aware recipe in Python: U-Net weight map per sample (w0 = 10, sigma = 5, balanced w_c,
# instances = full-connectivity components) then weighted BCE, recomputed at every step as segloss does.

W0, SIGMA, TOL = 10.0, 5.0, 5e-5
FULL2 = ndi.generate_binary_structure(2, 2)


def _class_weights(fg):
    n, nf = fg.size, int(fg.sum())
    return np.where(fg, n / (2.0 * max(nf, 1)), n / (2.0 * max(n - nf, 1)))


def weight_map_full(mask):
    """The common recipe (tools/reference/gen_maps.py's oracle): one full-image scipy EDT per instance,
    stacked and sorted."""
    lab, k = ndi.label(mask, structure=FULL2)
    wc = _class_weights(mask)
    if k < 2:
        return wc
    d = np.stack([ndi.distance_transform_edt(lab != i) for i in range(1, k + 1)])
    d.sort(axis=0)
    return wc + W0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * SIGMA**2)) * (~mask)


def weight_map_crops(mask):
    """The faster recipe: per-instance scipy EDT on the bounding box dilated by the band
    sigma*sqrt(2 ln(w0/5e-5)), keeping the two smallest distances per pixel."""
    lab, k = ndi.label(mask, structure=FULL2)
    wc = _class_weights(mask)
    if k < 2:
        return wc
    r = int(np.ceil(SIGMA * np.sqrt(2 * np.log(W0 / TOL))))
    d1 = np.full(mask.shape, np.inf)
    d2 = np.full(mask.shape, np.inf)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        box = tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, n in zip(sl, mask.shape))
        d = ndi.distance_transform_edt(lab[box] != i)
        a1, a2 = d1[box], d2[box]
        closer = d < a1
        a2[:] = np.where(closer, a1, np.minimum(a2, d))
        a1[:] = np.where(closer, d, a1)
    return wc + W0 * np.exp(-((d1 + d2) ** 2) / (2 * SIGMA**2)) * (~mask)


def shape_aware_peer(y, recipe):
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")

    def f(x):
        yn = y.detach().numpy() > 0.5
        w = np.empty(yn.shape, np.float32)
        for n in range(yn.shape[0]):
            for c in range(yn.shape[1]):
                w[n, c] = recipe(yn[n, c])
        return (bce(x, y) * torch.from_numpy(w)).mean()

    return f


# ------------------------------------------------------------------------------------------------
# Cases: (case, shape, target kind, segloss spec, peer label, peer factory(y) -> f(x), uses numpy, target)

BIN = (8, 1, 256, 256)
MC = (8, 4, 256, 256)


def _mask_mod(m):
    return lambda y: (lambda x: m(x, y))


def _labels_onehot_mod(m):
    return lambda t: (lambda x: m(x, t[:, None]))


def cases():
    lovasz_bin = LovaszLoss(mode="binary", per_image=False)
    lovasz_mc = LovaszLoss(mode="multiclass", per_image=False)
    ce = torch.nn.CrossEntropyLoss()
    return [
        # 8x1x256^2 logits, mask target
        ("bce", BIN, "mask", "bce", "torch BCEWithLogitsLoss()",
         _mask_mod(torch.nn.BCEWithLogitsLoss()), False, ("le", 1.0)),
        ("dice", BIN, "mask", "dice", "MONAI DiceLoss(sigmoid=True)",
         _mask_mod(ml.DiceLoss(sigmoid=True)), False, ("le", 1.0)),
        ("tversky", BIN, "mask", "tversky", "MONAI TverskyLoss(sigmoid=True)",
         _mask_mod(ml.TverskyLoss(sigmoid=True)), False, ("le", 1.0)),
        ("focal", BIN, "mask", "focal", "MONAI FocalLoss()",
         _mask_mod(ml.FocalLoss()), False, ("le", 1.0)),
        ("lovasz", BIN, "mask", "lovasz", "smp LovaszLoss('binary')",
         _mask_mod(lovasz_bin), False, ("le", 0.5)),
        ("generalized_dice", BIN, "mask", "generalized_dice", "MONAI GeneralizedDiceLoss(sigmoid=True)",
         _mask_mod(ml.GeneralizedDiceLoss(sigmoid=True)), False, ("le", 1.0)),
        ("hausdorff_dt", BIN, "mask", "hausdorff_dt", "MONAI HausdorffDTLoss(sigmoid=True)",
         _mask_mod(ml.HausdorffDTLoss(sigmoid=True)), True, ("le", 0.2)),
        ("shape_aware", BIN, "cells", "shape_aware", "U-Net map, scipy EDT per instance (full image) + weighted BCE",
         lambda y: shape_aware_peer(y, weight_map_full), True, None),
        ("shape_aware", BIN, "cells", "shape_aware", "U-Net map, scipy EDT per instance (band crops) + weighted BCE",
         lambda y: shape_aware_peer(y, weight_map_crops), True, None),
        # the reference of the shape_aware <= 3x bce target (same data as shape_aware)
        ("bce (cells target)", BIN, "cells", "bce", "torch BCEWithLogitsLoss()",
         _mask_mod(torch.nn.BCEWithLogitsLoss()), False, None),
        # 8x4x256^2 logits, label-map target
        ("ce", MC, "labels", "ce", "torch CrossEntropyLoss()",
         lambda t: (lambda x: ce(x, t)), False, ("le", 1.0)),
        ("dice", MC, "labels", "dice", "MONAI DiceLoss(softmax=True, to_onehot_y=True)",
         _labels_onehot_mod(ml.DiceLoss(softmax=True, to_onehot_y=True)), False, ("le", 1.0)),
        ("dice + ce", MC, "labels", "dice(activation=softmax) + ce", "MONAI DiceCELoss(softmax=True, to_onehot_y=True)",
         _labels_onehot_mod(ml.DiceCELoss(softmax=True, to_onehot_y=True)), False, ("le", 1.0)),
        ("focal", MC, "labels", "focal(activation=softmax)", "MONAI FocalLoss(use_softmax=True, to_onehot_y=True)",
         _labels_onehot_mod(ml.FocalLoss(use_softmax=True, to_onehot_y=True)), False, ("le", 1.0)),
        ("tversky", MC, "labels", "tversky", "MONAI TverskyLoss(softmax=True, to_onehot_y=True)",
         _labels_onehot_mod(ml.TverskyLoss(softmax=True, to_onehot_y=True)), False, ("le", 1.0)),
        ("lovasz", MC, "labels", "lovasz", "smp LovaszLoss('multiclass')",
         lambda t: (lambda x: lovasz_mc(x, t)), False, ("le", 0.5)),
        ("generalized_dice", MC, "labels", "generalized_dice",
         "MONAI GeneralizedDiceLoss(softmax=True, to_onehot_y=True)",
         _labels_onehot_mod(ml.GeneralizedDiceLoss(softmax=True, to_onehot_y=True)), False, ("le", 1.0)),
        ("hausdorff_dt", MC, "labels", "hausdorff_dt", "MONAI HausdorffDTLoss(softmax=True, to_onehot_y=True)",
         _labels_onehot_mod(ml.HausdorffDTLoss(softmax=True, to_onehot_y=True)), True, ("le", 0.2)),
    ]


# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_stderr():
    """Silences the profiler's C++ chatter on fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peer_peak_bytes(f, x, uses_numpy):
    from torch.profiler import ProfilerActivity, profile

    x.grad = None
    with quiet_stderr():
        if uses_numpy:
            tracemalloc.start()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            loss = f(x)
            loss.backward()
            del loss
        np_peak = 0
        if uses_numpy:
            _, np_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    x.grad = None
    return peak + np_peak


def time_peer(f, x, iters, warmup):
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def step():
        x.grad = None
        loss = f(x)
        loss.backward()
        sync()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), max(times)


DEVICE = "cpu"  # set by --device


def run_segloss(binary, spec, shape, kind, iters):
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
    cmd = [binary, "bench", spec, "--shape", ",".join(map(str, shape)), "--target", kind,
           "--iters", str(iters), "--format", "json", "--seed", str(SEED),
           "--device", "flex" if DEVICE == "cpu" else DEVICE]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": (res.stderr or res.stdout).strip().splitlines()[-1:] or ["exit %d" % res.returncode]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def paired_ratio(binary, iters, pairs):
    """The shape_aware / bce ratio measured in interleaved pairs: `segloss bench bce` then `segloss bench shape_aware`
    (8×1×256², cells), `pairs` times. The two table rows above are timed some 30 s apart, with the Python
    peers in between, and this VM's speed drifts by ±25 % over such spans; a ratio of two runs made one
    right after the other does not see that drift. Prints each pair and the median ratio."""
    rows = []
    for _ in range(pairs):
        b = run_segloss(binary, "bce", BIN, "cells", iters).get("median_ms")
        s = run_segloss(binary, "shape_aware", BIN, "cells", iters).get("median_ms")
        if b is None or s is None:
            print("paired ratio: a segloss run failed")
            return
        rows.append((b, s))
    ratios = [s / b for b, s in rows]
    med = statistics.median(ratios)
    print(f"segloss shape_aware / segloss bce, {pairs} interleaved pairs (iters {iters} each): "
          + ", ".join(f"{s:.2f}/{b:.2f} = {s / b:.2f}" for b, s in rows)
          + f"; median {med:.2f}× (target ≤ 3×: {'✓' if med <= 3 else '✗'})")
    return {"pairs": [{"bce_ms": b, "shape_aware_ms": s} for b, s in rows], "median_ratio": med}


def mib(b):
    return "n/a" if b is None else f"{b / 2**20:.1f} MiB"


def uptime_line():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        with open("/proc/loadavg") as fh:
            return "loadavg " + fh.read().strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20, help="timed iterations per side (default 20)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 iterations, 1 warm-up")
    ap.add_argument("--only", default=None,
                    help="run only cases whose name contains one of these comma-separated substrings")
    ap.add_argument("--pairs", type=int, default=5,
                    help="interleaved bce / shape_aware runs for the shape_aware / bce ratio (default 5; 0: none)")
    ap.add_argument("--json", default=None,
                    help="also write the run (environment, every row, the paired ratio) to this JSON file")
    ap.add_argument("--segloss", default=os.path.join(ROOT, "target", "release", "segloss"),
                    help="the segloss binary (default target/release/segloss)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where both sides run (default cpu; cuda needs a CLI built with --features cuda)")
    a = ap.parse_args()
    global DEVICE
    DEVICE = a.device
    dev = torch.device(a.device)
    iters, warmup = (2, 1) if a.quick else (a.iters, WARMUP)
    if not os.path.exists(a.segloss):
        sys.exit(f"{a.segloss} not found: cargo build --release -p segloss-cli")

    print(f"# segloss loss benchmark — {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
          f"threads: torch {torch.get_num_threads()} / RAYON_NUM_THREADS={THREADS}; "
          f"iters {iters} (warm-up {warmup} peer, 3 segloss)")
    print(f"torch {torch.__version__}, MONAI {monai.__version__}, smp {smp.__version__}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}")
    load_before = uptime_line()
    print(f"load before: {load_before}")
    sys.stdout.flush()
    paired = None

    rows = []
    seg = {}
    targets = {}
    for case, shape, kind, spec, peer, make, uses_numpy, target in cases():
        if a.only and not any(o in case for o in a.only.split(",")):
            continue
        if a.device != "cpu" and case == "shape_aware":
            continue  # the peer is a numpy/scipy recipe on host arrays
        if kind not in targets or targets[kind][0] != shape:
            targets[kind] = (shape, segloss_target(kind, shape))
        tgt = targets[kind][1]
        y = torch.from_numpy(tgt).to(dev)
        g = torch.Generator().manual_seed(SEED)
        x = torch.randn(shape, generator=g, dtype=torch.float32).to(dev).requires_grad_(True)
        f = make(y)
        p_med, _, _ = time_peer(f, x, iters, warmup)
        p_peak = peer_peak_bytes(f, x, uses_numpy) if a.device == "cpu" else None
        key = (spec, shape, kind)
        if key not in seg:
            seg[key] = run_segloss(a.segloss, spec, shape, kind, iters)
        s = seg[key]
        s_med = s.get("median_ms")
        ratio = None if s_med is None else s_med / p_med
        fg = float((tgt > 0).mean()) if kind != "labels" else None
        rows.append(dict(case=case, shape=shape, kind=kind, spec=spec, peer=peer, peer_ms=p_med, seg_ms=s_med,
                         ratio=ratio, peer_peak=p_peak, seg_peak=s.get("peak_bytes"), target=target,
                         error=s.get("error"), fg=fg))
        print(f"  {case:<20} {'x'.join(map(str, shape)):<12} {kind:<6} peer {p_med:9.2f} ms  segloss "
              f"{'ERR ' + str(s.get('error')) if s_med is None else f'{s_med:9.2f} ms'}", file=sys.stderr, flush=True)

    load_after = uptime_line()
    print(f"load after: {load_after}")
    fgs = {r["kind"]: r["fg"] for r in rows if r["fg"] is not None}
    if fgs:
        print("target foreground: " + ", ".join(f"{k} {v:.1%}" for k, v in fgs.items()) + "; labels uniform over C")
    print()
    print("| case | shape (target) | peer | peer ms | segloss ms | ratio | peer peak | segloss peak | target | met |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        t = r["target"]
        if r["ratio"] is None:
            met, ratio = "error", "—"
        else:
            ratio = f"{r['ratio']:.2f}×"
            met = "—" if t is None else ("✓" if r["ratio"] <= t[1] else "✗")
        mem = ""
        if r["seg_peak"] is not None and r["peer_peak"] is not None and t is not None:
            mem = " (mem ✓)" if r["seg_peak"] <= r["peer_peak"] else " (mem ✗)"
        seg_ms = "—" if r["seg_ms"] is None else f"{r['seg_ms']:.2f}"
        print(f"| {r['case']} | {'×'.join(map(str, r['shape']))} ({r['kind']}) | {r['peer']} | {r['peer_ms']:.2f} | "
              f"{seg_ms} | {ratio} | {mib(r['peer_peak'])} | {mib(r['seg_peak'])} | "
              f"{'—' if t is None else f'≤ {t[1]}×'} | {met}{mem} |")
    sa = seg.get(("shape_aware", BIN, "cells"), {}).get("median_ms")
    sb = seg.get(("bce", BIN, "cells"), {}).get("median_ms")
    if sa is not None and sb is not None:
        r = sa / sb
        print()
        print(f"segloss shape_aware / segloss bce (8×1×256², cells target, from the table): {sa:.2f} / {sb:.2f} ms = "
              f"{r:.2f}× (target ≤ 3×: {'✓' if r <= 3 else '✗'})")
        if a.pairs > 0:
            paired = paired_ratio(a.segloss, iters, a.pairs)
    for r in rows:
        if r["error"]:
            print(f"segloss error for {r['spec']!r} {r['shape']}: {r['error']}")
    if a.json:
        write_json(a.json, dict(
            script="tools/bench/losses.py", device=a.device,
            date=datetime.datetime.now().isoformat(timespec="seconds"),
            cpu=cpu_model(), cpus=os.cpu_count(), threads=THREADS, iters=iters, warmup_peer=warmup,
            gpu=torch.cuda.get_device_name(0) if a.device == "cuda" else None,
            versions=dict(segloss=segloss_version(a.segloss), torch=torch.__version__, monai=monai.__version__,
                          smp=smp.__version__, numpy=np.__version__, scipy=scipy.__version__,
                          python=platform.python_version()),
            load_before=load_before, load_after=load_after,
            rows=[{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for r in rows],
            shape_aware_over_bce_pairs=paired))
        print(f"wrote {a.json}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def segloss_version(binary):
    res = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return res.stdout.strip() or None


def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
