#!/usr/bin/env python3
"""Side-by-side benchmark of segloss-core's maps against scipy, seung-lab `edt` and the Python U-Net
weight-map recipes, on the same inputs, in one run, with 2 threads. Run it through run.sh.

Cases (issue 4): binary EDT 2D 1024^2 and 3D 128x256x256 (about half foreground), multi-label EDT 2048^2
with ~2000 touching labels, U-Net weight map 512^2 with ~100 cells (w0=10, sigma=5, balanced).
Times are the best of REPEATS runs, in milliseconds.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
import edt as edt_pkg  # noqa: E402
import numpy as np  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402

THREADS = 2
REPEATS = int(os.environ.get("REPEATS", "5"))
rng = np.random.default_rng(7)


def best(f, repeats=REPEATS):
    t = float("inf")
    out = None
    for _ in range(repeats):
        s = time.perf_counter()
        out = f()
        t = min(t, time.perf_counter() - s)
    return t * 1e3, out


def blobs(shape, sigma):
    x = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return x > np.median(x)


def voronoi(shape, seeds):
    img = np.ones(shape, bool)
    idx = tuple(rng.integers(0, n, seeds) for n in shape)
    img[idx] = False
    _, ind = ndi.distance_transform_edt(img, return_indices=True)
    lab = np.zeros(shape, np.uint32)
    lab[idx] = np.arange(1, seeds + 1, dtype=np.uint32)
    return lab[tuple(ind)]


def cells(shape, n, rmin=6, rmax=13):
    """~n random disks, some touching or overlapping (overlaps merge into one connected component)."""
    yy, xx = np.indices(shape)
    m = np.zeros(shape, bool)
    for _ in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(rmin, rmax)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


W0, SIGMA, TOL = 10.0, 5.0, 5e-5
FULL = ndi.generate_binary_structure(2, 2)


def class_weights(fg):
    n, nf = fg.size, fg.sum()
    return np.where(fg, n / (2.0 * max(nf, 1)), n / (2.0 * max(n - nf, 1)))


def weight_full(mask):
    """(b) The common recipe: one full-image EDT per instance, stacked and sorted."""
    lab, k = ndi.label(mask, structure=FULL)
    wc = class_weights(mask)
    if k < 2:
        return wc
    d = np.stack([ndi.distance_transform_edt(lab != i) for i in range(1, k + 1)])
    d.sort(axis=0)
    return wc + W0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * SIGMA**2)) * (~mask)


def weight_crops(mask):
    """(a) The fastest Python recipe: per-instance EDT on bounding boxes dilated by the band, keeping the
    two smallest distances per pixel."""
    lab, k = ndi.label(mask, structure=FULL)
    wc = class_weights(mask)
    if k < 2:
        return wc
    band = SIGMA * np.sqrt(2 * np.log(W0 / TOL))
    r = int(np.ceil(band))
    d1 = np.full(mask.shape, np.inf)
    d2 = np.full(mask.shape, np.inf)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        box = tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, n in zip(sl, mask.shape))
        d = ndi.distance_transform_edt(lab[box] != i)
        a1, a2 = d1[box], d2[box]
        closer = d < a1
        a2[:] = np.where(closer, a1, np.minimum(a2, d))
        a1[:] = np.where(closer, d, a1)
    w = wc + W0 * np.exp(-((d1 + d2) ** 2) / (2 * SIGMA**2)) * (~mask)
    return w


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main():
    binary = sys.argv[1]
    print(f"load average before: {loadavg()}", flush=True)
    keep = os.environ.get("BENCH_KEEP")  # a folder to keep the inputs in (for profiling the Rust side)
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = keep or tmpd
        os.makedirs(tmp, exist_ok=True)
        m2 = blobs((1024, 1024), 4)
        m3 = blobs((128, 256, 256), 3)
        l2 = voronoi((2048, 2048), 2000)
        c = cells((512, 512), 112)
        k = ndi.label(c, structure=FULL)[1]
        for name, a in [("edt2d", m2), ("edt3d", m3), ("labels2d", l2), ("cells", c)]:
            np.save(os.path.join(tmp, name + ".npy"), a.astype(np.uint8) if a.dtype == bool else a)
        rows = []
        print(f"inputs: 2D {m2.shape} fg {m2.mean():.2f}; 3D {m3.shape} fg {m3.mean():.2f}; "
              f"labels {l2.shape} with {len(np.unique(l2))} labels; cells {c.shape} with {k} instances "
              f"(fg {c.mean():.2f})", flush=True)

        t_sc2, ref2 = best(lambda: ndi.distance_transform_edt(m2))
        t_ed2, _ = best(lambda: edt_pkg.edt(m2, black_border=False, parallel=THREADS))
        t_sc3, _ = best(lambda: ndi.distance_transform_edt(m3), max(1, REPEATS // 2))
        t_ed3, _ = best(lambda: edt_pkg.edt(m3, black_border=False, parallel=THREADS))
        t_edl, _ = best(lambda: edt_pkg.edt(l2, black_border=False, parallel=THREADS))
        t_wa, wa = best(lambda: weight_crops(c))
        t_wb, wb = best(lambda: weight_full(c), 1)
        np.save(os.path.join(tmp, "cells_weight_reference.npy"), wb)
        print(f"(a) vs (b) max |diff| = {np.abs(wa - wb).max():.2e}", flush=True)

        env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
        res = subprocess.run([binary, tmp, "10"], env=env, check=True, capture_output=True, text=True)
        rs = json.loads(res.stdout.strip().splitlines()[-1])
        env1 = dict(os.environ, RAYON_NUM_THREADS="1")
        res1 = subprocess.run([binary, tmp, "10"], env=env1, check=True, capture_output=True, text=True)
        rs1 = json.loads(res1.stdout.strip().splitlines()[-1])
        print(f"segloss weight map max |diff| vs (b): {rs['weightmap_max_abs_err']:.2e} "
              f"(rayon threads: {rs['threads']})")
        # Optional: another build (e.g. of an older commit) on the same inputs, in the same run.
        other = os.environ.get("OTHER_BINARY")
        if other:
            ro = json.loads(subprocess.run([other, tmp, "10"], env=env, check=True, capture_output=True,
                                           text=True).stdout.strip().splitlines()[-1])
            ro1 = json.loads(subprocess.run([other, tmp, "10"], env=env1, check=True, capture_output=True,
                                            text=True).stdout.strip().splitlines()[-1])
            print(f"OTHER_BINARY {other}: " + ", ".join(
                f"{k} {ro[k]:.2f} ms ({ro1[k]:.2f} ms 1 thread)" for k in ("edt2d", "edt3d", "labels2d", "weightmap")))
            print(f"OTHER_BINARY weight map vs (a): {t_wa / ro['weightmap']:.1f}x")

    rows = [
        ("binary EDT 2D 1024^2", rs["edt2d"], [("scipy", t_sc2, 5.0), ("edt.edt(parallel=2)", t_ed2, 1.0)]),
        ("binary EDT 3D 128x256x256", rs["edt3d"], [("scipy", t_sc3, 5.0), ("edt.edt(parallel=2)", t_ed3, 1.0)]),
        ("multi-label EDT 2048^2, ~2000 labels", rs["labels2d"], [("edt.edt(parallel=2)", t_edl, 1.0)]),
        ("U-Net weight map 512^2, ~100 cells", rs["weightmap"],
         [("(a) per-instance EDT on crops", t_wa, 10.0), ("(b) full-image EDT per instance", t_wb, 200.0)]),
    ]
    print()
    print(f"{'case':40} {'segloss ms':>11} {'peer':32} {'peer ms':>10} {'speed-up':>9} {'target':>7}  ok")
    for case, ours, peers in rows:
        for peer, t, target in peers:
            ratio = t / ours
            print(f"{case:40} {ours:11.2f} {peer:32} {t:10.2f} {ratio:8.1f}x {target:6.0f}x  "
                  f"{'yes' if ratio >= target else 'NO'}")
            case = ""
    print()
    print(f"load average after: {loadavg()}")
    print("segloss with 1 thread (ms): " + ", ".join(f"{k} {rs1[k]:.2f}" for k in
                                                     ("edt2d", "edt3d", "labels2d", "weightmap")))


if __name__ == "__main__":
    main()
