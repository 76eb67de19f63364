#!/usr/bin/env python3
"""Evaluate a folder of predicted segmentations against a folder of targets on a Dask cluster.

Predictions and targets are label volumes (NIfTI .nii/.nii.gz, NumPy .npy, TIFF .tif/.tiff) paired by
name (the file name without its extension). Each case is scored per class with segloss.metrics (Dice,
IoU, Hausdorff distance, HD95, average symmetric surface distance, normalised surface Dice) by one task on
the cluster: the workers read the files themselves, only the table rows travel back.

    python evaluate_dask.py PRED_DIR TARGET_DIR --out RESULTS_DIR            # a LocalCluster
    python evaluate_dask.py PRED_DIR TARGET_DIR --out RESULTS_DIR --scheduler tcp://host:8786
    python evaluate_dask.py PRED_DIR TARGET_DIR --out RESULTS_DIR --serial   # no Dask, same tables

Writes RESULTS_DIR/cases/<case>.csv (one row per class) and RESULTS_DIR/summary.csv (per class: the
number of cases, then the mean of each metric over the cases where it is finite). The voxel spacing is
the NIfTI header's (1 for NPY and TIFF) unless --spacing is given. Classes: --classes, else every
non-zero label found in either volume of a case.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections import defaultdict

import numpy as np

METRICS = ["dice", "iou", "hd", "hd95", "assd", "nsd"]
EXTENSIONS = (".nii.gz", ".nii", ".npy", ".tiff", ".tif")


def case_name(filename: str):
    """The case name of a volume file, or None for other files."""
    low = filename.lower()
    for ext in EXTENSIONS:
        if low.endswith(ext):
            return filename[: -len(ext)]
    return None


def read_volume(path: str):
    """(labels, spacing or None) of a volume file."""
    low = path.lower()
    if low.endswith(".npy"):
        return np.load(path), None
    if low.endswith((".tif", ".tiff")):
        import tifffile

        return tifffile.imread(path), None
    import nibabel

    img = nibabel.load(path)
    data = np.asanyarray(img.dataobj)
    return data, [float(z) for z in img.header.get_zooms()[: data.ndim]]


def pair_cases(pred_dir: str, target_dir: str):
    """[(case, pred_path, target_path)] sorted by case; an error for unpaired or duplicate names."""
    def index(folder):
        found = {}
        for f in sorted(os.listdir(folder)):
            name = case_name(f)
            if name is None:
                continue
            if name in found:
                raise SystemExit(f"{folder}: two files for case {name!r}: {found[name]} and {f}")
            found[name] = f
        return found

    preds, targets = index(pred_dir), index(target_dir)
    missing = sorted(set(preds) ^ set(targets))
    if missing:
        raise SystemExit(f"cases without a prediction or a target: {', '.join(missing)}")
    if not preds:
        raise SystemExit(f"no volumes (.nii, .nii.gz, .npy, .tif, .tiff) in {pred_dir}")
    return [(n, os.path.join(pred_dir, preds[n]), os.path.join(target_dir, targets[n])) for n in sorted(preds)]


def evaluate_case(case: str, pred_path: str, target_path: str, classes=None, spacing=None, tolerance=1.0):
    """The rows (dicts) of one case: one per class."""
    import segloss.metrics as sm

    pred, sp_p = read_volume(pred_path)
    target, sp_t = read_volume(target_path)
    if pred.shape != target.shape:
        raise ValueError(f"{case}: prediction of shape {pred.shape} but target of shape {target.shape}")
    sp = spacing if spacing is not None else (sp_t or sp_p)
    labels = classes if classes is not None else sorted(
        int(v) for v in set(np.unique(pred).tolist()) | set(np.unique(target).tolist()) if v != 0)
    if not labels:
        return []
    p = np.stack([pred == c for c in labels])[None]
    g = np.stack([target == c for c in labels])[None]
    kw = dict(include_background=True, spacing=sp)
    values = dict(
        dice=sm.compute_dice(p, g, include_background=True, ignore_empty=False),
        iou=sm.compute_iou(p, g, include_background=True, ignore_empty=False),
        hd=sm.compute_hausdorff_distance(p, g, **kw),
        hd95=sm.compute_hausdorff_distance(p, g, percentile=95, **kw),
        assd=sm.compute_average_surface_distance(p, g, symmetric=True, **kw),
        nsd=sm.compute_surface_dice(p, g, [tolerance] * len(labels), **kw),
    )
    return [dict(case=case, label=c, **{m: float(values[m][0, i]) for m in METRICS}) for i, c in enumerate(labels)]


def summarise(rows):
    """Per class: the number of cases and the mean of each metric over its finite values."""
    by_label = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r)
    out = []
    for label in sorted(by_label):
        rs = by_label[label]
        s = dict(label=label, cases=len(rs))
        for m in METRICS:
            vals = [r[m] for r in rs if math.isfinite(r[m])]
            s[m] = sum(vals) / len(vals) if vals else math.nan
        out.append(s)
    return out


def fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def write_csv(path, rows, columns):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([fmt(r[c]) for c in columns])
    os.replace(tmp, path)


def run(args) -> int:
    cases = pair_cases(args.pred_dir, args.target_dir)
    classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    spacing = [float(s) for s in args.spacing.split(",")] if args.spacing else None
    opts = dict(classes=classes, spacing=spacing, tolerance=args.nsd_tolerance)
    if args.serial:
        results = [evaluate_case(*c, **opts) for c in cases]
    else:
        from dask.distributed import Client, LocalCluster

        if args.scheduler:
            client, cluster = Client(args.scheduler), None
        else:
            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        try:
            futures = [client.submit(evaluate_case, *c, **opts, key=f"case-{c[0]}", pure=False) for c in cases]
            results = client.gather(futures)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    os.makedirs(os.path.join(args.out, "cases"), exist_ok=True)
    all_rows = []
    for (case, _, _), rows in zip(cases, results):
        write_csv(os.path.join(args.out, "cases", f"{case}.csv"), rows, ["label"] + METRICS)
        all_rows.extend(rows)
    summary = summarise(all_rows)
    write_csv(os.path.join(args.out, "summary.csv"), summary, ["label", "cases"] + METRICS)
    print(f"{len(cases)} cases -> {args.out}")
    print("label,cases," + ",".join(METRICS))
    for s in summary:
        print(",".join(fmt(s[c]) for c in ["label", "cases"] + METRICS))
    return 0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pred_dir")
    ap.add_argument("target_dir")
    ap.add_argument("--out", required=True, help="folder for cases/<case>.csv and summary.csv")
    ap.add_argument("--scheduler", help="address of a running Dask scheduler (default: a LocalCluster)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default 2)")
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--serial", action="store_true", help="evaluate in this process, without Dask")
    ap.add_argument("--classes", help="comma-separated labels to score (default: every non-zero label found)")
    ap.add_argument("--spacing", help="comma-separated voxel spacing (default: the NIfTI header's, else 1)")
    ap.add_argument("--nsd-tolerance", type=float, default=1.0, help="surface Dice tolerance (spacing units)")
    return ap.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse_args()))
