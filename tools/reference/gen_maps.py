#!/usr/bin/env python3
"""Reference fixtures for segloss-core's maps (EDT, multi-label EDT, connected components, signed and
penalty maps, U-Net weight maps), written to tests/fixtures/maps/ as one .npz per case plus manifest.json.
The Rust tests (crates/segloss-core/tests/fixtures.rs) read them; they never run Python.

Generated with (exact versions):
    Python 3.11.7, numpy 2.4.6, scipy 1.17.1, edt 3.1.2, scikit-image 0.26.0

How to run (from the repository root; $PYTHON is a Python with those packages, e.g. a venv outside the repo):
    python3 -m venv ../venv-maps && ../venv-maps/bin/pip install numpy==2.4.6 scipy==1.17.1 edt==3.1.2 scikit-image==0.26.0
    "${PYTHON:-python3}" tools/reference/gen_maps.py

Metric fixtures (MONAI; needs torch, so they were made where torch is installed):
    python3 -m pip install monai==1.6.1   # there: Python 3.12.3, torch 2.11.0, numpy 2.5.2, scipy 1.18.1
    python3 tools/reference/gen_maps.py --metrics [OUT_DIR]
writes metrics.npz + metrics.json (default: tests/fixtures/maps/).

Oracles:
    edt        scipy.ndimage.distance_transform_edt(mask, sampling=spacing), also checked against
               edt.edt(mask, anisotropy=spacing, black_border=False)
    labels     edt.edt(labels, anisotropy=spacing, black_border=False)
    cc         scipy.ndimage.label(mask, structure=generate_binary_structure(ndim, 1 | ndim))
    signed     Kervadec et al.'s one_hot2dist: edt(~m)*~m - (edt(m) - 1)*m (zeros for an empty or full mask)
    penalty    Caliva et al.: (max D+ - D+)/max D+ inside, (max D- - D-)/max D- outside (0 for a side with max 0)
    weightmap  the straightforward U-Net recipe: one full-image scipy EDT per instance, the two smallest per
               pixel, w = w_c + w0*exp(-(d1+d2)^2/(2 sigma^2)) on background pixels (no cut-off)
    metrics    MONAI compute_dice / compute_iou (ignore_empty=False), get_confusion_matrix ->
               precision / recall / specificity, compute_hausdorff_distance (percentile None and 95),
               compute_average_surface_distance(symmetric=True), compute_surface_dice(use_subvoxels=False),
               all with include_background=True on one-hot maps and the case's spacing
"""
import json
import os
import sys

import numpy as np
import scipy
import scipy.ndimage as ndi

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "maps")
rng = np.random.default_rng(20240604)
manifest = []


def blobs(shape, sigma=1.5, frac=0.5):
    """A smooth random mask with about `frac` foreground."""
    x = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return (x > np.quantile(x, 1 - frac)).astype(np.uint8)


def voronoi(shape, seeds, bg_frac=0.15):
    """Touching labels 1..seeds (nearest seed), with some background blobs carved out."""
    seed_img = np.ones(shape, bool)
    idx = tuple(rng.integers(0, n, seeds) for n in shape)
    seed_img[idx] = False
    _, ind = ndi.distance_transform_edt(seed_img, return_indices=True)
    lab_of_seed = np.zeros(shape, np.int64)
    lab_of_seed[idx] = np.arange(1, seeds + 1)
    labels = lab_of_seed[tuple(ind)]
    if bg_frac > 0:
        labels[blobs(shape, 1.0, bg_frac) > 0] = 0
    return labels.astype(np.uint32)


def save(name, kind, arrays, **params):
    np.savez(os.path.join(OUT, name + ".npz"), **arrays)
    manifest.append(dict(name=name, kind=kind, file=name + ".npz", **params))


def edt_cases():
    for name, shape, spacing in [
        ("edt_1d", (37,), [0.5]),
        ("edt_2d", (24, 19), [1.0, 1.0]),
        ("edt_2d_aniso", (24, 19), [1.5, 0.7]),
        ("edt_3d_aniso", (7, 9, 11), [2.0, 1.0, 0.5]),
    ]:
        m = blobs(shape)
        d = ndi.distance_transform_edt(m, sampling=spacing)
        d2 = edt_pkg.edt(m, anisotropy=spacing[0] if len(spacing) == 1 else spacing, black_border=False)
        assert np.allclose(d, d2, atol=1e-5), name
        save(name, "edt", {"mask": m, "expected": d}, spacing=spacing)
    m = np.ones((5, 6), np.uint8)
    m[4, 5] = 0
    save("edt_single_background", "edt", {"mask": m, "expected": ndi.distance_transform_edt(m)}, spacing=None)


def multilabel_cases():
    for name, shape, seeds, spacing, bg in [
        ("labels_2d", (20, 23), 7, [1.0, 1.0], 0.15),
        ("labels_2d_aniso_nobg", (20, 23), 9, [0.8, 1.7], 0.0),
        ("labels_3d_aniso", (6, 8, 9), 6, [2.0, 1.0, 1.5], 0.15),
    ]:
        lab = voronoi(shape, seeds, bg)
        d = edt_pkg.edt(lab, anisotropy=spacing, black_border=False).astype(np.float64)
        save(name, "labels", {"labels": lab, "expected": d}, spacing=spacing)


def cc_cases():
    for name, shape in [("cc_2d", (20, 20)), ("cc_3d", (6, 7, 8))]:
        m = (rng.random(shape) < 0.45).astype(np.uint8)
        for conn in ("face", "full"):
            s = ndi.generate_binary_structure(len(shape), 1 if conn == "face" else len(shape))
            lab, k = ndi.label(m, structure=s)
            save(f"{name}_{conn}", "cc", {"mask": m, "expected": lab.astype(np.uint32)},
                 connectivity=conn, count=int(k))


def kervadec_signed(m, spacing):
    pos = m.astype(bool)
    if not pos.any() or pos.all():
        return np.zeros(m.shape)
    neg = ~pos
    return ndi.distance_transform_edt(neg, sampling=spacing) * neg - (
        ndi.distance_transform_edt(pos, sampling=spacing) - 1) * pos


def penalty(m, spacing):
    pos = m.astype(bool)
    out = np.zeros(m.shape)
    if pos.any() and not pos.all():
        dp = ndi.distance_transform_edt(pos, sampling=spacing)
        dn = ndi.distance_transform_edt(~pos, sampling=spacing)
        for side, d in ((pos, dp), (~pos, dn)):
            mx = d[side].max()
            if mx > 0:
                out[side] = (mx - d[side]) / mx
    return out


def distmap_cases():
    for name, shape, spacing in [("distmap_2d", (21, 18), [1.0, 1.0]),
                                 ("distmap_3d_aniso", (6, 9, 10), [2.0, 1.0, 0.5])]:
        m = blobs(shape, frac=0.35)
        save(name, "distmap", {"mask": m, "signed": kervadec_signed(m, spacing),
                               "penalty": penalty(m, spacing)}, spacing=spacing)


def weight_map_reference(instances, w0, sigma, balanced, spacing):
    """Straightforward U-Net weight map: one full-image EDT per instance."""
    fg = instances > 0
    n = instances.size
    if balanced:
        nf, nb = fg.sum(), (~fg).sum()
        wc = np.where(fg, n / (2.0 * max(nf, 1)), n / (2.0 * max(nb, 1)))
    else:
        wc = np.ones(instances.shape)
    ids = np.unique(instances[fg])
    if len(ids) < 2:
        return wc
    d = np.stack([ndi.distance_transform_edt(instances != i, sampling=spacing) for i in ids])
    d.sort(axis=0)
    return wc + w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2)) * (~fg)


def disks(shape, centers, radii):
    grid = np.indices(shape)
    lab = np.zeros(shape, np.uint32)
    for i, (c, r) in enumerate(zip(centers, radii), start=1):
        dist2 = sum((g - ci) ** 2 for g, ci in zip(grid, c))
        lab[(dist2 <= r * r) & (lab == 0)] = i
    return lab


def weightmap_cases():
    shape = (48, 40)
    # Touching instances: 2 and 3 overlap (3 fills what 2 left), 4 touches 1 edge to edge.
    inst = disks(shape, [(10, 10), (30, 12), (30, 20), (10, 19), (38, 33)], [5, 6, 6, 4, 4])
    # Instance ids need not be 1..K: use sparse ids.
    sparse = np.where(inst > 0, inst * 7 + 3, 0).astype(np.uint32)
    for name, w0, sigma, bal, sp in [
        ("weightmap_instances_touching", 10.0, 5.0, True, None),
        ("weightmap_instances_touching_none_aniso", 10.0, 3.0, False, [1.0, 1.3]),
    ]:
        w = weight_map_reference(inst, w0, sigma, bal, sp)
        save(name, "weightmap_instances", {"instances": sparse, "expected": w}, w0=w0, sigma=sigma,
             class_weight="balanced" if bal else "none", spacing=sp)
    # Binary masks: instances are the connected components (full connectivity).
    full2 = ndi.generate_binary_structure(2, 2)
    binary = (inst > 0).astype(np.uint8)
    lab, _ = ndi.label(binary, structure=full2)
    for name, m, lab_, w0, sigma, bal in [
        ("weightmap_binary_cells", binary, lab, 10.0, 5.0, True),
        ("weightmap_binary_cells_w0_5_sigma_2", binary, lab, 5.0, 2.0, False),
        ("weightmap_zero_instances", np.zeros(shape, np.uint8), np.zeros(shape, np.int32), 10.0, 5.0, True),
        ("weightmap_one_instance", (inst == 1).astype(np.uint8), (inst == 1).astype(np.int32), 10.0, 5.0, True),
    ]:
        w = weight_map_reference(lab_, w0, sigma, bal, None)
        save(name, "weightmap_binary", {"mask": m, "expected": w}, w0=w0, sigma=sigma,
             class_weight="balanced" if bal else "none", spacing=None, connectivity="full")
    # 3D, anisotropic.
    shape3 = (12, 14, 16)
    inst3 = disks(shape3, [(3, 4, 4), (8, 9, 10), (4, 10, 12)], [3, 4, 3])
    m3 = (inst3 > 0).astype(np.uint8)
    lab3, _ = ndi.label(m3, structure=ndi.generate_binary_structure(3, 3))
    sp3 = [2.0, 1.0, 1.0]
    save("weightmap_binary_3d_aniso", "weightmap_binary",
         {"mask": m3, "expected": weight_map_reference(lab3, 10.0, 4.0, True, sp3)},
         w0=10.0, sigma=4.0, class_weight="balanced", spacing=sp3, connectivity="full")


def metrics_cases(out_dir):
    """MONAI metrics per class on small label maps (one npz + one json)."""
    import monai
    import torch
    from monai.metrics import (compute_average_surface_distance, compute_dice, compute_hausdorff_distance,
                               compute_iou, compute_surface_dice, get_confusion_matrix)
    from monai.metrics.confusion_matrix import compute_confusion_matrix_metric

    def perturb(lab, k):
        out = lab.copy()
        for _ in range(k):
            c = tuple(rng.integers(0, n) for n in lab.shape)
            sl = tuple(slice(max(x - 2, 0), x + 2) for x in c)
            out[sl] = rng.integers(0, lab.max() + 1)
        return out

    cases = []
    arrays = {}
    specs = [
        ("m2d", voronoi((40, 36), 4, 0.35) % 4, [1.0, 1.5], 1.0),
        ("m2d_iso", voronoi((30, 30), 3, 0.3) % 3, [1.0, 1.0], 2.0),
        ("m3d", voronoi((12, 14, 16), 3, 0.3) % 3, [2.0, 1.0, 1.0], 1.5),
    ]
    for name, target, spacing, tol in specs:
        target = target.astype(np.uint8)
        pred = perturb(target, 12).astype(np.uint8)
        if name == "m2d":
            pred[pred == 3] = 0  # class 3: in the target only (one empty)
            classes = [1, 2, 3, 5]  # class 5: in neither (both empty)
        else:
            # Every label of either map, the background included as a class of its own.
            classes = sorted(set(np.unique(pred)) | set(np.unique(target)))
        n_cls = max(classes) + 1
        onehot = lambda a: torch.from_numpy(np.stack([a == c for c in range(n_cls)])[None].astype(np.float32))
        p, g = onehot(pred), onehot(target)
        kw = dict(include_background=True)
        res = dict(
            dice=compute_dice(p, g, ignore_empty=False, **kw),
            iou=compute_iou(p, g, ignore_empty=False, **kw),
            hd=compute_hausdorff_distance(p, g, spacing=spacing, **kw),
            hd95=compute_hausdorff_distance(p, g, percentile=95, spacing=spacing, **kw),
            assd=compute_average_surface_distance(p, g, symmetric=True, spacing=spacing, **kw),
            nsd=compute_surface_dice(p, g, class_thresholds=[tol] * n_cls, spacing=spacing,
                                     use_subvoxels=False, **kw),
        )
        cm = get_confusion_matrix(p, g, **kw)
        for key, mname in (("precision", "precision"), ("recall", "sensitivity"), ("specificity", "specificity")):
            res[key] = compute_confusion_matrix_metric(mname, cm)
        per_class = []
        for c in classes:
            row = {"class": int(c)}
            for key, v in res.items():
                x = float(v.reshape(-1)[c]) if c < v.numel() else float("nan")
                row[key] = x if np.isfinite(x) else None
            per_class.append(row)
        arrays[name + "_pred"] = pred
        arrays[name + "_target"] = target
        cases.append(dict(name=name, spacing=spacing, nsd_tolerance=tol, classes=[int(c) for c in classes],
                          expected=per_class))
    os.makedirs(out_dir, exist_ok=True)
    np.savez(os.path.join(out_dir, "metrics.npz"), **arrays)
    versions = dict(python=sys.version.split()[0], numpy=np.__version__, scipy=scipy.__version__,
                    monai=monai.__version__, torch=torch.__version__)
    with open(os.path.join(out_dir, "metrics.json"), "w") as fh:
        json.dump(dict(generator="tools/reference/gen_maps.py --metrics", versions=versions, cases=cases),
                  fh, indent=1)
    print(f"wrote {len(cases)} metric cases to {out_dir}")


def main():
    if "--metrics" in sys.argv:
        rest = [a for a in sys.argv[1:] if a != "--metrics"]
        metrics_cases(rest[0] if rest else OUT)
        return
    global edt_pkg
    import edt as edt_pkg
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if (f.endswith(".npz") and f != "metrics.npz") or f == "manifest.json":
            os.remove(os.path.join(OUT, f))
    edt_cases()
    multilabel_cases()
    cc_cases()
    distmap_cases()
    weightmap_cases()
    versions = dict(python=sys.version.split()[0], numpy=np.__version__, scipy=scipy.__version__,
                    edt=getattr(edt_pkg, "__version__", "3.1.2"))
    with open(os.path.join(OUT, "manifest.json"), "w") as fh:
        json.dump(dict(generator="tools/reference/gen_maps.py", versions=versions, cases=manifest), fh, indent=1)
    print(f"wrote {len(manifest)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
