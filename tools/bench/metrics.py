#!/usr/bin/env python3
"""Side-by-side benchmark of the surface-distance metrics `segloss eval` against MONAI's four
calls and one combined pass built on seung-lab `edt`, on two overlapping 128^3 blobs, 2 threads.

One command, from the repository root (the Python environment lives outside the repository):

    cargo build --release -p segloss-cli
    "${PYTHON:-python3}" tools/bench/metrics.py [--repeats K] [--segloss PATH] [--edt-python PATH]

($PYTHON: an interpreter with torch and MONAI.)

- MONAI (this process, torch.set_num_threads(2)): `compute_hausdorff_distance`, the same with
  `percentile=95`, `compute_average_surface_distance(symmetric=True)` and `compute_surface_dice`
  (`use_subvoxels=False`, tolerance 1), each on one-hot `[1, 2, 128, 128, 128]` tensors with
  `include_background=False`, timed separately; their sum is "MONAI, four calls".
- edt pass (an interpreter that has `edt`, by default the one running this script, running this file
  with `--edt-worker`): MONAI's recipe done once for all four metrics — crop to the union's bounding
  box with a margin of 1, surfaces = mask XOR binary_erosion(mask) (scipy), `edt.edt(~surface,
  parallel=2)` of each surface, distances gathered at the other surface, then hd, hd95 (numpy linear
  percentile), assd and nsd.
- segloss: `segloss eval --pred P.npy --target T.npy --classes 1 --timing` with RAYON_NUM_THREADS=2.
  "whole command" is the wall time of the process (start, reading both .npy files, all nine metrics,
  JSON out); "in-process" is the metric computation it reports on stderr (`--timing`).
- `--core`: instead of the CLI (whose build needs the burn crates), segloss-core's own runner,
  `cargo test --release -p segloss-core --test bench_metrics -- --ignored` (`label_metrics` for
  class 1, all nine metrics, the same call `segloss eval` makes; best of K calls in one process after
  one warm-up call), with RAYON_NUM_THREADS=2 and 1. There is no "whole command" time then.

Every time is the best of K runs after one warm-up (the best, not the median: on a shared machine the
other processes only ever add time). The four distance values of the three are
printed too, as a check that they computed the same thing.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

THREADS = 2
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = str(THREADS)

import numpy as np  # noqa: E402

SHAPE = (128, 128, 128)
TOL = 1.0


def best_ms(f, repeats):
    f()
    ts = []
    out = None
    for _ in range(repeats):
        s = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - s)
    return min(ts) * 1e3, out


def blobs():
    """Two overlapping irregular blobs: spheres of radius ~38 with smoothed-noise boundaries, centres
    7 voxels apart (Dice ~0.8)."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(6)
    z, y, x = np.indices(SHAPE, dtype=np.float32)

    def blob(c, r):
        noise = ndi.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), 6)
        noise *= 6.0 / noise.std()
        d = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
        return (d < r + noise).astype(np.uint8)

    return blob((64, 62, 63), 38), blob((60, 66, 66), 37)


def edt_pass(pred, target, tol=TOL, threads=THREADS):
    """hd, hd95, assd and nsd in one pass built on seung-lab edt (MONAI's surfaces and percentiles)."""
    import edt
    from scipy.ndimage import binary_erosion

    p, t = pred.astype(bool), target.astype(bool)
    union = p | t
    box = []
    for ax in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != ax)
        nz = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(nz[0] - 1, 0), min(nz[-1] + 2, union.shape[ax])))
    p, t = p[tuple(box)], t[tuple(box)]
    ep = p ^ binary_erosion(p)
    et = t ^ binary_erosion(t)
    dt_t = edt.edt(np.ascontiguousarray(~et), parallel=threads)
    dt_p = edt.edt(np.ascontiguousarray(~ep), parallel=threads)
    d_pt = dt_t[ep].astype(np.float64)
    d_tp = dt_p[et].astype(np.float64)
    both = np.concatenate([d_pt, d_tp])
    return {
        "hd": float(max(d_pt.max(), d_tp.max())),
        "hd95": float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))),
        "assd": float(both.mean()),
        "nsd": float((both <= tol).sum() / both.size),
    }


def edt_worker(args):
    pred, target = np.load(args.pred), np.load(args.target)
    ms, vals = best_ms(lambda: edt_pass(pred, target), args.repeats)
    print(json.dumps({"ms": ms, "values": vals}))


def monai_calls(pred, target, repeats):
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(THREADS)

    def onehot(a):
        t = torch.from_numpy(a.astype(np.int64))
        return torch.stack([t == 0, t == 1]).unsqueeze(0).float()

    yp, yt = onehot(pred), onehot(target)
    calls = {
        "compute_hausdorff_distance": lambda: compute_hausdorff_distance(yp, yt),
        "compute_hausdorff_distance(percentile=95)": lambda: compute_hausdorff_distance(
            yp, yt, percentile=95
        ),
        "compute_average_surface_distance(symmetric=True)": lambda: compute_average_surface_distance(
            yp, yt, symmetric=True
        ),
        "compute_surface_dice(tolerance 1)": lambda: compute_surface_dice(yp, yt, [TOL]),
    }
    keys = ["hd", "hd95", "assd", "nsd"]
    out = {}
    for (name, f), key in zip(calls.items(), keys):
        ms, v = best_ms(f, repeats)
        out[name] = (ms, key, float(v.reshape(-1)[0]))
    return out


def segloss_run(exe, p, t, repeats, threads=THREADS):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [exe, "eval", "--pred", p, "--target", t, "--classes", "1", "--timing"]
    walls, inproc, report = [], [], None
    for i in range(repeats + 1):
        s = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - s
        if r.returncode != 0:
            sys.exit(f"segloss eval failed: {r.stderr.strip()}")
        m = re.search(r"metrics ([0-9.]+) ms", r.stderr)
        if i > 0:
            walls.append(wall * 1e3)
            inproc.append(float(m.group(1)))
        report = json.loads(r.stdout)
    return min(walls), min(inproc), report["per_class"][0]


def core_run(p, t, repeats, threads=THREADS, exe=None):
    """segloss-core's label_metrics in-process (tests/bench_metrics.rs), best of `repeats`; `exe`: an
    already built runner (e.g. of an older commit) instead of `cargo test`."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.json")
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), SEGLOSS_BENCH_PRED=p,
                   SEGLOSS_BENCH_TARGET=t, SEGLOSS_BENCH_REPEATS=str(repeats),
                   SEGLOSS_BENCH_TOL=str(TOL), SEGLOSS_BENCH_OUT=out)
        cmd = ["cargo", "test", "--release", "-q", "-p", "segloss-core", "--test", "bench_metrics",
               "--", "--ignored"]
        if exe:
            cmd = [exe, "--ignored"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"bench_metrics failed: {r.stderr.strip()[-2000:]}")
        with open(out) as f:
            res = json.load(f)
    return res["ms"], res["values"], res["first_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--segloss", default="target/release/segloss")
    ap.add_argument("--edt-python", default=sys.executable,
                    help="an interpreter with numpy, scipy and edt (default: this one)")
    ap.add_argument("--core", action="store_true",
                    help="time segloss-core's label_metrics (cargo test runner) instead of segloss eval")
    ap.add_argument("--core-bin", action="append", default=[],
                    help="with --core: also time this prebuilt bench_metrics runner (repeatable), "
                         "e.g. one built from an older commit, in the same run")
    ap.add_argument("--json", default=None, help="also write the run (environment and every time) to this JSON file")
    ap.add_argument("--edt-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pred", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.edt_worker:
        return edt_worker(args)

    load = lambda: open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"
    load_before = load()
    pred, target = blobs()
    with tempfile.TemporaryDirectory() as d:
        p, t = os.path.join(d, "pred.npy"), os.path.join(d, "target.npy")
        np.save(p, pred)
        np.save(t, target)
        extra = []
        if args.core:
            inproc, ours, first = core_run(p, t, args.repeats)
            inproc1, _, _ = core_run(p, t, args.repeats, threads=1)
            wall = wall1 = float("nan")
            for exe in args.core_bin:
                ms2, _, _ = core_run(p, t, args.repeats, exe=exe)
                ms1, _, _ = core_run(p, t, args.repeats, threads=1, exe=exe)
                extra.append((exe, ms2, ms1))
        else:
            wall, inproc, ours = segloss_run(args.segloss, p, t, args.repeats)
            wall1, inproc1, _ = segloss_run(args.segloss, p, t, args.repeats, threads=1)
        r = subprocess.run(
            [args.edt_python, __file__, "--edt-worker", "--pred", p, "--target", t,
             "--repeats", str(args.repeats)],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            sys.exit(f"edt worker failed: {r.stderr.strip()}")
        edt_res = json.loads(r.stdout)
    monai = monai_calls(pred, target, args.repeats)
    monai_total = sum(v[0] for v in monai.values())
    edt_ms = edt_res["ms"]

    inter = int((pred & target).sum())
    dice = 2 * inter / (int(pred.sum()) + int(target.sum()))
    print(f"two blobs {SHAPE}: {int(pred.sum())} and {int(target.sum())} voxels, Dice {dice:.3f}; "
          f"{THREADS} threads, best of {args.repeats}\n")
    print("| what | ms | segloss in-process / this | segloss whole command / this | target |")
    print("|---|---:|---:|---:|---|")
    for name, (ms, _, _) in monai.items():
        print(f"| MONAI {name} | {ms:.1f} | | | |")
    x = lambda v: "n/a" if v != v else f"{v:.3f}x"  # noqa: E731 (NaN: no whole-command time)
    print(f"| **MONAI, four calls** | {monai_total:.1f} | {inproc / monai_total:.3f}x "
          f"| {x(wall / monai_total)} | <= 0.15x |")
    print(f"| **edt-based combined pass** | {edt_ms:.1f} | {inproc / edt_ms:.3f}x "
          f"| {x(wall / edt_ms)} | <= 0.5x |")
    what = "segloss-core label_metrics (--core)" if args.core else "segloss eval, in-process"
    print(f"| {what} (all 9 metrics) | {inproc:.1f} | | | |")
    for exe, ms2, ms1 in extra:
        print(f"| {exe} (2 threads / 1 thread) | {ms2:.1f} / {ms1:.1f} | {ms2 / edt_ms:.3f}x vs edt | | |")
    if args.core:
        print(f"| segloss-core label_metrics, first call of the process (cold) | {first:.1f} | | | |")
        print(f"| segloss-core label_metrics, 1 thread | {inproc1:.1f} | | | |")
    else:
        print(f"| segloss eval, whole command (start, read 2 x .npy, JSON) | {wall:.1f} | | | |")
        print(f"| segloss eval, 1 thread: in-process / whole command | {inproc1:.1f} / {wall1:.1f} "
              f"| | | |")
    print(f"\nload average before / after: {' '.join(load_before)} / {' '.join(load())}")
    print("\n| metric | MONAI | edt pass | segloss |")
    print("|---|---:|---:|---:|")
    for _, (_, key, v) in monai.items():
        print(f"| {key} | {v:.6f} | {edt_res['values'][key]:.6f} | {ours[key]:.6f} |")
    if args.json:
        import datetime
        import platform
        import monai as monai_pkg
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
                   platform.machine()) if os.path.exists("/proc/cpuinfo") else platform.machine()
        out = dict(script="tools/bench/metrics.py", date=datetime.datetime.now().isoformat(timespec="seconds"),
                   cpu=cpu, cpus=os.cpu_count(), threads=THREADS, repeats=args.repeats, shape=list(SHAPE),
                   versions=dict(monai=monai_pkg.__version__, numpy=np.__version__,
                                 python=platform.python_version()),
                   load_before=load_before, load_after=load(),
                   monai_ms={k: v[0] for k, v in monai.items()}, monai_total_ms=monai_total, edt_pass_ms=edt_ms,
                   segloss_in_process_ms=inproc, segloss_whole_command_ms=None if wall != wall else wall,
                   segloss_in_process_1thread_ms=inproc1,
                   ratio_vs_monai=inproc / monai_total, ratio_vs_edt_pass=inproc / edt_ms,
                   values=dict(monai={key: v for _, (_, key, v) in monai.items()}, edt=edt_res["values"],
                               segloss=ours))
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
            fh.write("\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
