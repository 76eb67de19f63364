#!/usr/bin/env python3
"""File-to-file benchmark of `segloss distmap` / `segloss weightmap` against the Python peers.

Both sides go from a file on disk to a file on disk, in the same run, with 2 threads:

- segloss: the whole process (`subprocess.run` of the binary, start-up included), `RAYON_NUM_THREADS=2`;
- Python: `np.load` / `tifffile.imread`, the map, `np.save` (float32), timed inside one warm interpreter
  (its start-up and imports are not counted).

Cases:

1. distmap 2D 1024^2 (smoothed noise, half foreground, uint8 .npy) vs `edt.edt(parallel=2)`;
2. distmap 3D 128x256x256 (same kind of mask) vs `edt.edt(parallel=2)`;
3. weightmap on a real 2-D nuclei mask (TIFF, given by --nuclei) vs the crop recipe (per-instance EDT on
   bounding boxes dilated by the band, two smallest distances, balanced class weights, w0=10, sigma=5);
4. a folder of --folder-count masks of 512^2 with ~100 cells each (uint8 .npy): `segloss weightmap DIR -o OUT`
   (one process) vs a Python loop running the crop recipe file to file;
5. weightmap 3D 64x256x256 instance labels with ~200 touching nuclei (uint16 .npy, --instances) vs the crop
   recipe on the label image.

Times are the best of --repeats runs (peer and segloss interleaved) in ms, with the medians; in-process rows
come from `segloss ... --timing` (compute only) and the peer's kernel alone. The load average is recorded
before and after every case. Writes a JSON file (--json) and prints a table.

    PYTHON=python3 tools/bench/files.py --segloss target/release/segloss --nuclei mask.tif --json out.json
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
import edt as edt_pkg  # noqa: E402
import numpy as np  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402
import tifffile  # noqa: E402

THREADS = 2
W0, SIGMA, TOL = 10.0, 5.0, 5e-5
BAND = SIGMA * np.sqrt(2 * np.log(W0 / TOL))


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def blobs(rng, shape, sigma):
    x = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return x > np.median(x)


def cells(rng, shape, n, rmin=6, rmax=13):
    """~n random disks, some touching or overlapping (overlaps merge into one connected component)."""
    yy, xx = np.indices(shape)
    m = np.zeros(shape, bool)
    for _ in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(rmin, rmax)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


def nuclei3d(rng, shape, n, radius=9.0):
    """n touching nuclei: voxels within `radius` of a random seed, each labelled by its nearest seed."""
    seeds = np.ones(shape, bool)
    idx = tuple(rng.integers(0, s, n) for s in shape)
    seeds[idx] = False
    d, ind = ndi.distance_transform_edt(seeds, return_indices=True)
    lab = np.zeros(shape, np.uint16)
    lab[idx] = np.arange(1, n + 1, dtype=np.uint16)
    out = lab[tuple(ind)]
    out[d > radius] = 0
    return out


def class_weights(fg):
    n, nf = fg.size, int(fg.sum())
    return np.where(fg, n / (2.0 * max(nf, 1)), n / (2.0 * max(n - nf, 1)))


def weight_crops(lab, k):
    """The crop recipe: per-instance EDT on bounding boxes dilated by the band, two smallest distances."""
    fg = lab > 0
    wc = class_weights(fg)
    if k < 2:
        return wc
    r = int(np.ceil(BAND))
    d1 = np.full(lab.shape, np.inf)
    d2 = np.full(lab.shape, np.inf)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        box = tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, n in zip(sl, lab.shape))
        d = ndi.distance_transform_edt(lab[box] != i)
        a1, a2 = d1[box], d2[box]
        closer = d < a1
        a2[:] = np.where(closer, a1, np.minimum(a2, d))
        a1[:] = np.where(closer, d, a1)
    return wc + W0 * np.exp(-((d1 + d2) ** 2) / (2 * SIGMA**2)) * (~fg)


def recipe_mask(inp, out):
    m = tifffile.imread(inp) if inp.endswith((".tif", ".tiff")) else np.load(inp)
    m = m != 0
    lab, k = ndi.label(m, structure=ndi.generate_binary_structure(m.ndim, m.ndim))
    np.save(out, weight_crops(lab, k).astype(np.float32))


def recipe_instances(inp, out):
    lab = np.load(inp)
    np.save(out, weight_crops(lab, int(lab.max())).astype(np.float32))


def peer_edt(inp, out):
    np.save(out, edt_pkg.edt(np.load(inp), black_border=False, parallel=THREADS))


def timed(f):
    s = time.perf_counter()
    f()
    return (time.perf_counter() - s) * 1e3


def run_segloss(args, env):
    s = time.perf_counter()
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    t = (time.perf_counter() - s) * 1e3
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    compute = None
    for line in r.stderr.splitlines():
        if "compute" in line:
            compute = float(line.split("compute ")[1].split(" ms")[0])
    return t, compute


def case(name, repeats, peer, ours, peer_kernel=None, target=None, larger_is_better=True):
    """Interleaved runs of the peer and segloss; returns a result row."""
    load_before = loadavg()
    tp, ts, tc, tk = [], [], [], []
    for _ in range(repeats):
        tp.append(timed(peer))
        t, c = ours()
        ts.append(t)
        if c is not None:
            tc.append(c)
        if peer_kernel is not None:
            tk.append(timed(peer_kernel))
    row = {
        "case": name,
        "segloss_ms_best": min(ts),
        "segloss_ms_median": statistics.median(ts),
        "peer_ms_best": min(tp),
        "peer_ms_median": statistics.median(tp),
        "ratio_segloss_over_peer_best": min(ts) / min(tp),
        "speedup_best": min(tp) / min(ts),
        "speedup_median": statistics.median(tp) / statistics.median(ts),
        "segloss_compute_ms_best": min(tc) if tc else None,
        "peer_kernel_ms_best": min(tk) if tk else None,
        "load_before": load_before,
        "load_after": loadavg(),
        "repeats": repeats,
    }
    if target is not None:
        row["target"] = target
    print(f"{name:58} segloss {row['segloss_ms_best']:9.1f} ms  peer {row['peer_ms_best']:9.1f} ms  "
          f"segloss/peer {row['ratio_segloss_over_peer_best']:.3f}  speed-up {row['speedup_best']:.1f}x  "
          f"(medians {row['speedup_median']:.1f}x; load {load_before} -> {row['load_after']})", flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segloss", required=True, help="the segloss binary (a release build)")
    ap.add_argument("--nuclei", required=True, help="a 2-D nuclei mask (TIFF or .npy)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--folder-count", type=int, default=200)
    ap.add_argument("--cases", default="d2,d3,nuclei,folder,w3d", help="comma-separated subset")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    which = set(a.cases.split(","))
    rng = np.random.default_rng(a.seed)
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
    seg = os.path.abspath(a.segloss)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda *n: os.path.join(tmp, *n)  # noqa: E731
        if "d2" in which:
            np.save(p("d2.npy"), blobs(rng, (1024, 1024), 4).astype(np.uint8))
            m = np.load(p("d2.npy"))
            rows.append(case(
                "distmap 2D 1024^2 (.npy -> .npy f32)", a.repeats,
                lambda: peer_edt(p("d2.npy"), p("d2_peer.npy")),
                lambda: run_segloss([seg, "distmap", p("d2.npy"), "-o", p("d2_out.npy"), "--force",
                                     "--timing"], env),
                lambda: edt_pkg.edt(m, black_border=False, parallel=THREADS),
                target="segloss/peer <= 0.5"))
            got, want = np.load(p("d2_out.npy")), np.load(p("d2_peer.npy"))
            rows[-1]["max_abs_diff"] = float(np.abs(got - want).max())
        if "d3" in which:
            np.save(p("d3.npy"), blobs(rng, (128, 256, 256), 3).astype(np.uint8))
            m = np.load(p("d3.npy"))
            rows.append(case(
                "distmap 3D 128x256x256 (.npy -> .npy f32)", a.repeats,
                lambda: peer_edt(p("d3.npy"), p("d3_peer.npy")),
                lambda: run_segloss([seg, "distmap", p("d3.npy"), "-o", p("d3_out.npy"), "--force",
                                     "--timing"], env),
                lambda: edt_pkg.edt(m, black_border=False, parallel=THREADS),
                target="segloss/peer <= 0.7"))
            got, want = np.load(p("d3_out.npy")), np.load(p("d3_peer.npy"))
            rows[-1]["max_abs_diff"] = float(np.abs(got - want).max())
        if "nuclei" in which:
            nuc = os.path.abspath(a.nuclei)
            rows.append(case(
                "weightmap real nuclei mask (.tif -> .npy f32)", a.repeats,
                lambda: recipe_mask(nuc, p("n_peer.npy")),
                lambda: run_segloss([seg, "weightmap", nuc, "-o", p("n_out.npy"), "--force", "--timing"],
                                    env),
                target="speed-up >= 10"))
            got, want = np.load(p("n_out.npy")), np.load(p("n_peer.npy"))
            rows[-1]["max_abs_diff"] = float(np.abs(got - want).max())
            rows[-1]["input_shape"] = list(want.shape)
        if "folder" in which:
            os.makedirs(p("masks"))
            for i in range(a.folder_count):
                np.save(p("masks", f"m{i:03d}.npy"), cells(rng, (512, 512), 112).astype(np.uint8))
            names = sorted(os.listdir(p("masks")))

            def loop():
                os.makedirs(p("peer_out"), exist_ok=True)
                for n in names:
                    recipe_mask(p("masks", n), p("peer_out", n))

            rows.append(case(
                f"weightmap folder of {a.folder_count} masks 512^2 (~100 cells, .npy)", max(1, a.repeats // 2),
                loop,
                lambda: run_segloss([seg, "weightmap", p("masks"), "-o", p("seg_out"), "--force", "--timing"],
                                    env),
                target="speed-up >= 20"))
            diff = max(float(np.abs(np.load(p("seg_out", n)) - np.load(p("peer_out", n))).max()) for n in names)
            rows[-1]["max_abs_diff"] = diff
        if "w3d" in which:
            lab = nuclei3d(rng, (64, 256, 256), 200)
            np.save(p("w3.npy"), lab)
            rows.append(case(
                "weightmap 3D 64x256x256, ~200 touching nuclei (--instances)", max(1, a.repeats // 2),
                lambda: recipe_instances(p("w3.npy"), p("w3_peer.npy")),
                lambda: run_segloss([seg, "weightmap", p("w3.npy"), "--instances", "-o", p("w3_out.npy"),
                                     "--force", "--timing"], env),
                target="speed-up >= 40"))
            got, want = np.load(p("w3_out.npy")), np.load(p("w3_peer.npy"))
            rows[-1]["max_abs_diff"] = float(np.abs(got - want).max())
            rows[-1]["instances"] = int(len(np.unique(lab)) - 1)
    result = {
        "script": "tools/bench/files.py",
        "threads": THREADS,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
