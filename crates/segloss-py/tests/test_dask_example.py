"""examples/python/evaluate_dask.py on a 2-worker dask.distributed LocalCluster: its tables equal a serial
run's, for a folder mixing NumPy, NIfTI and TIFF volumes. Skipped where dask.distributed (or the readers
of the formats) is not installed."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "examples", "python", "evaluate_dask.py")


def write_cases(pred_dir, target_dir):
    rng = np.random.default_rng(5)
    os.makedirs(pred_dir)
    os.makedirs(target_dir)
    formats = ["npy", "npy"]
    try:
        import nibabel  # noqa: F401

        formats.append("nii.gz")
    except ImportError:
        pass
    try:
        import tifffile  # noqa: F401

        formats.append("tif")
    except ImportError:
        pass
    for i, fmt in enumerate(formats):
        target = np.zeros((18, 20, 16), np.uint8)
        target[3:12, 4:15, 2:10] = 1
        target[10:16, 2:9, 9:15] = 2
        pred = np.roll(target, shift=i % 3 - 1, axis=1)
        pred[rng.random(pred.shape) > 0.97] = 2
        if i == 1:
            pred[pred == 2] = 0  # a class in the target only
        for folder, vol in ((pred_dir, pred), (target_dir, target)):
            path = os.path.join(folder, f"case{i}.{fmt}")
            if fmt == "npy":
                np.save(path, vol)
            elif fmt == "tif":
                import tifffile

                tifffile.imwrite(path, vol)
            else:
                import nibabel

                nibabel.save(nibabel.Nifti1Image(vol, np.diag([1.5, 1.0, 2.0, 1.0])), path)
    return len(formats)


def read_tables(out):
    tables = {}
    for root, _, files in os.walk(out):
        for f in files:
            with open(os.path.join(root, f)) as fh:
                tables[os.path.relpath(os.path.join(root, f), out)] = fh.read()
    return tables


def test_dask_matches_serial(tmp_path):
    pytest.importorskip("dask.distributed")
    pred, target = str(tmp_path / "pred"), str(tmp_path / "target")
    n = write_cases(pred, target)
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    runs = {}
    for mode in ("serial", "dask"):
        out = str(tmp_path / mode)
        cmd = [sys.executable, SCRIPT, pred, target, "--out", out, "--nsd-tolerance", "1.5"]
        cmd += ["--serial"] if mode == "serial" else ["--workers", "2"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"{n} cases" in r.stdout
        runs[mode] = read_tables(out)
    assert runs["dask"] == runs["serial"]
    assert set(runs["serial"]) == {"summary.csv"} | {os.path.join("cases", f"case{i}.csv") for i in range(n)}
    summary = runs["serial"]["summary.csv"].splitlines()
    assert summary[0] == "label,cases,dice,iou,hd,hd95,assd,nsd"
    assert [line.split(",")[:2] for line in summary[1:]] == [["1", str(n)], ["2", str(n)]]
    # The case with class 2 missing from the prediction: Dice 0, distances inf.
    case1 = runs["serial"][os.path.join("cases", "case1.csv")].splitlines()
    assert case1[2].split(",")[:3] == ["2", "0", "0"] and case1[2].split(",")[3] == "inf"


def test_unpaired_cases_are_an_error(tmp_path):
    pred, target = tmp_path / "p", tmp_path / "t"
    pred.mkdir()
    target.mkdir()
    np.save(pred / "a.npy", np.zeros((3, 3)))
    np.save(target / "b.npy", np.zeros((3, 3)))
    r = subprocess.run([sys.executable, SCRIPT, str(pred), str(target), "--out", str(tmp_path / "o"), "--serial"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "cases without a prediction or a target: a, b" in r.stderr
