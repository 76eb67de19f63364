#!/usr/bin/env python3
"""In-process benchmark of the Python package `segloss` against its Python peers, same run, 2 threads.

One command, from the repository root, with an interpreter that has segloss (pip install
crates/segloss-py), numpy, scipy, edt, torch and MONAI:

    "${PYTHON:-python3}" tools/bench/python.py [--pairs K] [--json tools/bench/results/python-N.json]

Cases (the issue's targets in brackets; ratio = segloss time / peer time):
- edt_2d, edt_3d: `segloss.edt(mask, dtype=float32)` vs `edt.edt(mask, parallel=2)` (seung-lab edt, float32
  too) on smooth random masks (about half foreground) of 1024^2 and 128x256x256 [ratio <= 1/1.5].
- weight_map: `segloss.unet_weight_map(mask)` (w0 10, sigma 5, balanced class weights, instances = the
  8-connected components) vs the best numpy/scipy recipe: per instance a scipy EDT on the instance's bounding
  box dilated by the band sigma*sqrt(2 ln(w0/5e-5)) (beyond it the border term is below 5e-5), keeping the two
  smallest distances per pixel; a 512^2 mask of 100 discs of radius 5-9 [ratio <= 0.1].
- surface_metrics: hd + hd95 + assd + nsd of two 128^3 blobs (tools/bench/metrics.py's `blobs`), MONAI's
  four calls (`compute_hausdorff_distance`, with `percentile=95`, `compute_average_surface_distance(symmetric=
  True)`, `compute_surface_dice([1])`, one-hot [1, 2, 128^3] float tensors, include_background=False) vs the
  same four calls of `segloss.metrics` on the same tensors ("drop-in"; its cache of surface distances is
  emptied before each timed set of four calls, so they compute the distances once), and vs segloss's one-pass
  `compute_surface_metrics` ("one pass") [ratio <= 0.1].
- hausdorff_dt: `HausdorffDTLoss(sigmoid=True)` forward + backward on 8x1x256^2 float32 logits with the mask
  targets of tools/bench/losses.py (12 discs per image, 2 % flipped pixels), segloss.losses vs monai.losses
  [ratio <= 0.3].

Timing: the two sides alternate, one call each per pair, after 2 warm-up calls each; the figures are the
medians over K pairs (default 15) and the median of the per-pair ratios (robust to load that changes during
the run). `uptime` is recorded before and after. Threads: RAYON_NUM_THREADS=2, torch.set_num_threads(2),
OMP/MKL = 2, edt's parallel=2.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

THREADS = 2
os.environ["RAYON_NUM_THREADS"] = str(THREADS)
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = str(THREADS)

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics import blobs  # noqa: E402  (tools/bench/metrics.py: the 128^3 blobs)

WARMUP = 2


def uptime_line():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        with open("/proc/loadavg") as fh:
            return "loadavg " + fh.read().strip()


def paired(a, b, pairs):
    """Alternate a() and b(); medians of each and of the per-pair ratios a/b (ms)."""
    for _ in range(WARMUP):
        a()
        b()
    ta, tb = [], []
    for _ in range(pairs):
        s = time.perf_counter()
        a()
        ta.append(time.perf_counter() - s)
        s = time.perf_counter()
        b()
        tb.append(time.perf_counter() - s)
    ratios = [x / y for x, y in zip(ta, tb)]
    return dict(segloss_ms=statistics.median(ta) * 1e3, peer_ms=statistics.median(tb) * 1e3,
                segloss_best_ms=min(ta) * 1e3, peer_best_ms=min(tb) * 1e3,
                ratio_median=statistics.median(ratios), ratio_of_medians=statistics.median(ta) / statistics.median(tb))


def smooth_mask(shape, seed, frac=0.5, sigma=4.0):
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return x > np.quantile(x, 1 - frac)


def discs(h, w, count, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:h, :w]
    out = np.zeros((h, w), bool)
    for _ in range(count):
        r = 5 + 4 * rng.random()
        cy, cx = rng.random() * h, rng.random() * w
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return out


W0, SIGMA, TOL = 10.0, 5.0, 5e-5


def weight_map_recipe(mask):
    """The best numpy/scipy recipe: per-instance EDT on band-dilated bounding-box crops."""
    lab, k = ndi.label(mask, structure=ndi.generate_binary_structure(mask.ndim, mask.ndim))
    n, nf = mask.size, int(mask.sum())
    wc = np.where(mask, n / (2.0 * max(nf, 1)), n / (2.0 * max(n - nf, 1)))
    if k < 2:
        return wc
    r = int(np.ceil(SIGMA * np.sqrt(2 * np.log(W0 / TOL))))
    d1 = np.full(mask.shape, np.inf)
    d2 = np.full(mask.shape, np.inf)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        box = tuple(slice(max(s.start - r, 0), min(s.stop + r, m)) for s, m in zip(sl, mask.shape))
        d = ndi.distance_transform_edt(lab[box] != i)
        a1, a2 = d1[box], d2[box]
        closer = d < a1
        a2[:] = np.where(closer, a1, np.minimum(a2, d))
        a1[:] = np.where(closer, d, a1)
    return wc + W0 * np.exp(-((d1 + d2) ** 2) / (2 * SIGMA ** 2)) * (~mask)


def loss_mask_targets(n=8, h=256, w=256, seed=0):
    """tools/bench/losses.py's `mask` targets: 12 discs of radius 5-9 per image plus 2 % flipped pixels."""
    rng = np.random.default_rng(seed)
    out = np.stack([discs(h, w, 12, seed + i) for i in range(n)]).astype(np.float32)
    flip = rng.random(out.shape) < 0.02
    out[flip] = 1.0 - out[flip]
    return out[:, None]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--only", default=None, help="run the cases whose name contains this")
    ap.add_argument("--json", default=None, help="write the run to this JSON file")
    args = ap.parse_args()

    import edt
    import monai
    import torch
    from monai.losses import HausdorffDTLoss as MonaiHD
    from monai.metrics import (compute_average_surface_distance, compute_hausdorff_distance,
                               compute_surface_dice)

    import segloss
    import segloss.metrics as sm
    from segloss.losses import HausdorffDTLoss

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(THREADS)
    assert segloss.num_threads() == THREADS, segloss.num_threads()

    results = {}
    load_before = uptime_line()
    print(load_before, flush=True)

    def want(name):
        return args.only is None or args.only in name

    def report(name, r, target, extra=None):
        r = dict(r, target=target, meets=r["ratio_median"] <= target)
        if extra:
            r.update(extra)
        results[name] = r
        print(f"{name:28s} segloss {r['segloss_ms']:9.2f} ms  peer {r['peer_ms']:9.2f} ms  "
              f"ratio {r['ratio_median']:.3f} (target <= {target:.3g}) {'ok' if r['meets'] else 'MISSED'}",
              flush=True)

    for name, shape in (("edt_2d_1024^2", (1024, 1024)), ("edt_3d_128x256x256", (128, 256, 256))):
        if not want(name):
            continue
        m = smooth_mask(shape, 1)
        ours = segloss.edt(m, dtype=np.float32)
        theirs = edt.edt(m, parallel=THREADS)
        diff = float(np.abs(ours - theirs).max())
        r = paired(lambda: segloss.edt(m, dtype=np.float32), lambda: edt.edt(m, parallel=THREADS), args.pairs)
        report(name, r, 1 / 1.5, dict(peer="edt.edt(mask, parallel=2)", max_abs_diff=diff))

    if want("weight_map"):
        m = discs(512, 512, 100, 7)
        k = ndi.label(m, structure=np.ones((3, 3)))[1]
        ours = segloss.unet_weight_map(m, W0, SIGMA, instances=False, dtype=np.float64)
        diff = float(np.abs(ours - weight_map_recipe(m)).max())
        r = paired(lambda: segloss.unet_weight_map(m, W0, SIGMA, instances=False),
                   lambda: weight_map_recipe(m), args.pairs)
        report("unet_weight_map_512^2", r, 0.1,
               dict(peer="scipy EDT per instance on band-dilated bounding boxes", instances=k, max_abs_diff=diff))

    if want("surface"):
        p, t = blobs()

        def onehot(a):
            tt = torch.from_numpy(a.astype(np.int64))
            return torch.stack([tt == 0, tt == 1]).unsqueeze(0).float()

        yp, yt = onehot(p), onehot(t)

        def monai4():
            return (compute_hausdorff_distance(yp, yt), compute_hausdorff_distance(yp, yt, percentile=95),
                    compute_average_surface_distance(yp, yt, symmetric=True), compute_surface_dice(yp, yt, [1.0]))

        def seg4():
            # A new pair for every timed call: the distances cache (kept for the calls on one pair) is
            # emptied first, so the four calls compute the distances once, as on a user's new masks.
            sm._CACHE.clear()
            return (sm.compute_hausdorff_distance(yp, yt), sm.compute_hausdorff_distance(yp, yt, percentile=95),
                    sm.compute_average_surface_distance(yp, yt, symmetric=True), sm.compute_surface_dice(yp, yt, [1.0]))

        def seg1():
            return sm.compute_surface_metrics(yp, yt, [1.0])

        mv = [float(v) for v in monai4()]
        sv = [float(v) for v in seg4()]
        ov = seg1()
        values = dict(monai=mv, segloss_drop_in=sv, segloss_one_pass=[float(ov[k]) for k in ("hd", "hd95", "assd", "nsd")])
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = paired(seg4, monai4, args.pairs)
            report("surface_metrics_drop_in", r, 0.1, dict(peer="MONAI's four calls", values=values))
            r = paired(seg1, monai4, args.pairs)
            report("surface_metrics_one_pass", r, 0.1, dict(peer="MONAI's four calls", values=values))

    if want("hausdorff"):
        y = torch.from_numpy(loss_mask_targets())
        g = torch.Generator().manual_seed(0)
        x = torch.randn(y.shape, generator=g)
        ours_loss, their_loss = HausdorffDTLoss(sigmoid=True), MonaiHD(sigmoid=True)

        def step(loss):
            xi = x.clone().requires_grad_(True)
            v = loss(xi, y)
            v.backward()
            return v.item(), xi.grad

        (v1, g1), (v2, g2) = step(ours_loss), step(their_loss)
        r = paired(lambda: step(ours_loss), lambda: step(their_loss), args.pairs)
        report("hausdorff_dt_8x1x256^2", r, 0.3,
               dict(peer="monai.losses.HausdorffDTLoss(sigmoid=True)", loss=[v1, v2],
                    max_abs_grad_diff=float((g1 - g2).abs().max())))

    load_after = uptime_line()
    print(load_after)
    run = dict(
        command="python tools/bench/python.py " + " ".join(sys.argv[1:]),
        threads=THREADS, pairs=args.pairs, warmup=WARMUP,
        uptime_before=load_before, uptime_after=load_after,
        machine=dict(cpu=_cpu_model(), cores=os.cpu_count(), python=platform.python_version()),
        versions=dict(segloss=segloss.__version__, numpy=np.__version__, scipy=scipy.__version__,
                      edt=_dist_version("edt"), torch=torch.__version__, monai=monai.__version__),
        results=results,
    )
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(run, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, args.json)


def _dist_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
