#!/usr/bin/env python3
"""Reference fixtures (values and gradients) for the segloss losses.

Usage:  python tools/reference/gen_losses.py [distribution|region|boundary|all] [--check]

Writes tests/fixtures/losses/<family>.json (format: tools/reference/README.md).
Inputs are drawn from a numpy generator seeded by crc32(case name), rounded to float32, stored,
and the oracle is evaluated in float64 torch on exactly the stored numbers.
Where an oracle library casts to float32 internally (MONAI FocalLoss calls `.float()`), its
module-level functions are called in float64 and the library's own module is run as a cross-check.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)

import monai  # noqa: E402
import segmentation_models_pytorch as smp  # noqa: E402
from monai.networks import one_hot as monai_one_hot  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "losses")
GENERATOR = "tools/reference/gen_losses.py"

VERSIONS = {
    "torch": torch.__version__.split("+")[0],
    "monai": monai.__version__,
    "smp": smp.__version__,
    "numpy": np.__version__,
}


# ----------------------------------------------------------------------------- inputs

def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def f32(a) -> np.ndarray:
    """Round to float32, return as float64 (the stored, exact values)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def logits(rng, shape, scale=2.0):
    return f32(rng.normal(0.0, scale, size=shape))


def saturated_logits(rng, shape, frac=0.35):
    x = rng.normal(0.0, 2.0, size=shape)
    sel = rng.random(size=shape) < frac
    sign = np.where(rng.random(size=shape) < 0.5, -1.0, 1.0)
    x = np.where(sel, sign * 1e4, x)
    return f32(x)


def probs(rng, shape, lo=0.02, hi=0.98):
    return f32(rng.uniform(lo, hi, size=shape))


def binary_mask(rng, shape, p=0.4):
    return (rng.random(size=shape) < p).astype(np.float64)


def soft_mask(rng, shape):
    return f32(rng.uniform(0.0, 1.0, size=shape))


def labels(rng, shape, c):
    return rng.integers(0, c, size=shape).astype(np.int64)


def with_ignored(rng, lab, value, frac=0.2):
    lab = lab.copy()
    sel = rng.random(size=lab.shape) < frac
    lab[sel] = value
    return lab


def onehot_np(lab, c):
    """[N,1,*sp] or [N,*sp] label map -> [N,C,*sp] float one-hot (labels must be valid)."""
    if lab.ndim >= 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    oh = np.eye(c)[lab]  # [N,*sp,C]
    return np.moveaxis(oh, -1, 1).astype(np.float64)


def T(a, dtype=torch.float64):
    return torch.tensor(np.asarray(a), dtype=dtype)


def flat(a) -> list:
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return [int(v) for v in a.reshape(-1)]
    return [float(v) for v in a.reshape(-1)]


def arr(a) -> dict:
    a = np.asarray(a)
    return {"shape": list(a.shape), "data": flat(a)}


# ----------------------------------------------------------------------------- case collection

class Family:
    def __init__(self, name: str):
        self.name = name
        self.cases: list[dict] = []
        self.names: set[str] = set()

    def add(self, name, spec, oracle, pred, target, kind, fn, reduction="mean", weights=None,
            value_shape=None, check=None, grad=True):
        """fn(x: torch f64 tensor requiring grad) -> loss tensor (scalar, or the 'none' map).

        value_shape: reshape the 'none' output to this shape before storing (e.g. MONAI's [N,C,1,1] -> [N,C]).
        check: optional callable(value_tensor) run for cross-checks (raises on mismatch).
        """
        assert name not in self.names, name
        assert kind in ("mask", "labels")
        self.names.add(name)
        x = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
        out = fn(x)
        if check is not None:
            if not torch.is_tensor(out):
                raise RuntimeError(f"{name}: oracle returned {out!r}")
            check(out.detach())
        if reduction == "none":
            total = out.sum()
        else:
            assert out.dim() == 0, (name, out.shape)
            total = out
        x.grad = None
        total.backward()
        g = x.grad
        if g is None:
            g = torch.zeros_like(x)
        g = g.detach().numpy()
        v = out.detach().numpy()
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(g))):
            raise RuntimeError(f"{name}: non-finite value or gradient")
        if reduction == "none":
            if value_shape is not None:
                v = v.reshape(value_shape)
            value = arr(v)
        else:
            value = float(v)
        tgt = np.asarray(target)
        case = {
            "name": name,
            "spec": spec,
            "oracle": oracle,
            "pred": arr(pred),
            "target": {"shape": list(tgt.shape), "kind": kind, "data": flat(tgt)},
            "weights": None if weights is None else arr(weights),
            "reduction": reduction,
            "value": value,
            "grad": arr(g),
        }
        self.cases.append(case)
        return case

    def write(self):
        os.makedirs(OUT_DIR, exist_ok=True)
        path = os.path.join(OUT_DIR, f"{self.name}.json")
        head = json.dumps({"generator": GENERATOR, "versions": VERSIONS})
        lines = [head[:-1] + ', "cases": [']
        for i, c in enumerate(self.cases):
            lines.append(json.dumps(c, separators=(",", ":")) + ("," if i + 1 < len(self.cases) else ""))
        lines.append("]}")
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        # round trip
        with open(path) as fh:
            json.load(fh)
        size = os.path.getsize(path)
        print(f"wrote {path}: {len(self.cases)} cases, {size / 1024:.0f} KiB")


def close(a, b, rtol=1e-5, atol=1e-6, what=""):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=atol):
        raise AssertionError(f"cross-check failed {what}: {a} vs {b}")


def reduce(l, reduction, denom=None):
    if reduction == "none":
        return l
    if reduction == "sum":
        return l.sum()
    return l.sum() / denom if denom is not None else l.mean()


def red_spec(reduction):
    return "" if reduction == "mean" else f"reduction={reduction}"


def spec_of(name, *args):
    args = [a for a in args if a]
    return f"{name}({','.join(args)})" if args else name


def fmt_num(v):
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(fmt_num(u) for u in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def kv(key, v):
    return f"{key}={fmt_num(v)}"


# ============================================================================= distribution

def bce_torch(x, y, *, pos_weight=None, smoothing=0.0, ignore_index=None, activation="sigmoid", reduction="mean"):
    """docs/losses.md bce: -[b*y'*ln p + (1-y')*ln(1-p)], y' smoothed; ignore_index excluded from sum and denominator."""
    y = T(y)
    keep = None
    if ignore_index is not None:
        keep = (y != ignore_index).to(torch.float64)
        y = torch.where(keep > 0, y, torch.zeros_like(y))
    if smoothing:
        y = y * (1 - smoothing) + (1 - y) * smoothing
    pw = None if pos_weight is None else torch.tensor(float(pos_weight))
    if activation == "sigmoid":
        if keep is None:
            return torch.nn.BCEWithLogitsLoss(pos_weight=pw, reduction=reduction)(x, y)
        l = torch.nn.BCEWithLogitsLoss(pos_weight=pw, reduction="none")(x, y)
    else:
        if pw is None:
            if keep is None:
                return torch.nn.BCELoss(reduction=reduction)(x, y)
            l = torch.nn.BCELoss(reduction="none")(x, y)
        else:
            lp = torch.clamp(torch.log(x), min=-100.0)
            l1p = torch.clamp(torch.log(1 - x), min=-100.0)
            l = -(pw * y * lp + (1 - y) * l1p)
    if keep is None:
        return reduce(l, reduction)
    l = l * keep
    return reduce(l, reduction, keep.sum())


def gen_bce(fam: Family):
    S2, S3, S1 = [2, 1, 4, 5], [2, 1, 3, 3, 4], [2, 3, 8]
    # plain, pos_weight, smoothing across 2D/3D
    for dim, shp in (("2d", S2), ("3d", S3)):
        for opt, kw, spec_args, orc in (
            ("", {}, [], "torch.nn.BCEWithLogitsLoss()"),
            ("_pos_weight", {"pos_weight": 3}, [kv("pos_weight", 3)],
             "torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.))"),
            ("_label_smoothing", {"smoothing": 0.1}, [kv("label_smoothing", 0.1)],
             "torch.nn.BCEWithLogitsLoss()(x, y*(1-0.1) + (1-y)*0.1)"),
        ):
            name = f"bce_{dim}{opt}"
            r = rng_for(name)
            x, y = logits(r, shp), binary_mask(r, shp)
            fam.add(name, spec_of("bce", *spec_args), orc, x, y, "mask",
                    lambda t, y=y, kw=kw: bce_torch(t, y, **kw))
    # 1 spatial dim, multichannel
    name = "bce_1d_c3"
    r = rng_for(name)
    x, y = logits(r, S1), binary_mask(r, S1)
    fam.add(name, "bce", "torch.nn.BCEWithLogitsLoss()", x, y, "mask", lambda t, y=y: bce_torch(t, y))
    name = "bce_2d_c3_pos_weight"
    shp = [2, 3, 3, 4]
    r = rng_for(name)
    x, y = logits(r, shp), binary_mask(r, shp)
    fam.add(name, "bce(pos_weight=3)", "torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.))", x, y, "mask",
            lambda t, y=y: bce_torch(t, y, pos_weight=3))
    name = "bce_3d_c3_label_smoothing_pos_weight"
    shp = [1, 3, 3, 3, 4]
    r = rng_for(name)
    x, y = logits(r, shp), binary_mask(r, shp)
    fam.add(name, "bce(pos_weight=0.5,label_smoothing=0.2)",
            "torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(0.5))(x, y*(1-0.2) + (1-y)*0.2)", x, y, "mask",
            lambda t, y=y: bce_torch(t, y, pos_weight=0.5, smoothing=0.2))
    # soft targets
    for dim, shp in (("2d", S2), ("3d", S3)):
        name = f"bce_{dim}_soft_target"
        r = rng_for(name)
        x, y = logits(r, shp), soft_mask(r, shp)
        fam.add(name, "bce", "torch.nn.BCEWithLogitsLoss() on soft targets", x, y, "mask",
                lambda t, y=y: bce_torch(t, y))
    # ignore_index
    for name, shp, kw, spec_args in (
        ("bce_2d_ignore_index", S2, {}, []),
        ("bce_3d_ignore_index", S3, {}, []),
        ("bce_2d_c3_ignore_index_pos_weight_label_smoothing", [2, 3, 3, 4], {"pos_weight": 3, "smoothing": 0.1},
         [kv("pos_weight", 3), kv("label_smoothing", 0.1)]),
    ):
        r = rng_for(name)
        x = logits(r, shp)
        y = binary_mask(r, shp)
        y[r.random(size=shp) < 0.2] = 255.0
        fam.add(name, spec_of("bce", *spec_args, "ignore_index=255"),
                "keep=(y!=255); l=BCEWithLogitsLoss(reduction='none', pos_weight)(x, smooth(where(keep,y,0))); "
                "sum(l*keep)/sum(keep)  (docs/conventions.md convention; smp SoftBCEWithLogitsLoss divides by all elements)",
                x, y, "mask", lambda t, y=y, kw=kw: bce_torch(t, y, ignore_index=255, **kw))
    name = "bce_2d_ignore_index_reduction_none"
    r = rng_for(name)
    x = logits(r, S2)
    y = binary_mask(r, S2)
    y[r.random(size=S2) < 0.2] = 255.0
    fam.add(name, "bce(ignore_index=255,reduction=none)",
            "BCEWithLogitsLoss(reduction='none')(x, where(keep,y,0)) * keep", x, y, "mask",
            lambda t, y=y: bce_torch(t, y, ignore_index=255, reduction="none"), reduction="none")
    # probabilities (activation=none)
    for name, shp, kw, spec_args, orc in (
        ("bce_2d_probs", S2, {}, [], "torch.nn.BCELoss()"),
        ("bce_3d_probs", S3, {}, [], "torch.nn.BCELoss()"),
        ("bce_2d_c3_probs_soft_target", [2, 3, 3, 4], {}, [], "torch.nn.BCELoss() on soft targets"),
        ("bce_2d_probs_pos_weight", S2, {"pos_weight": 3}, [kv("pos_weight", 3)],
         "-(3*y*clamp(log p,-100) + (1-y)*clamp(log(1-p),-100)).mean()"),
        ("bce_2d_probs_label_smoothing", S2, {"smoothing": 0.1}, [kv("label_smoothing", 0.1)],
         "torch.nn.BCELoss()(p, y*(1-0.1)+(1-y)*0.1)"),
    ):
        r = rng_for(name)
        p = probs(r, shp)
        y = soft_mask(r, shp) if "soft" in name else binary_mask(r, shp)
        fam.add(name, spec_of("bce", "activation=none", *spec_args), orc, p, y, "mask",
                lambda t, y=y, kw=kw: bce_torch(t, y, activation="none", **kw))
    name = "bce_2d_probs_near_extremes"
    r = rng_for(name)
    p = probs(r, S2)
    y = binary_mask(r, S2)
    flat_p = p.reshape(-1)
    ext = [1e-6, 1 - 1e-6, 1e-7, 1 - 1e-7, 0.5]
    for i in range(0, flat_p.size, 3):
        flat_p[i] = ext[(i // 3) % len(ext)]
    p = f32(flat_p.reshape(S2))
    fam.add(name, "bce(activation=none)", "torch.nn.BCELoss() with probabilities near 0 and 1 (clamp not active)",
            p, y, "mask", lambda t, y=y: bce_torch(t, y, activation="none"))
    # reductions
    for red in ("sum", "none"):
        for dim, shp in (("2d", S2), ("3d", S3)):
            name = f"bce_{dim}_pos_weight_reduction_{red}"
            r = rng_for(name)
            x, y = logits(r, shp), binary_mask(r, shp)
            fam.add(name, spec_of("bce", kv("pos_weight", 3), red_spec(red)),
                    f"torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.), reduction='{red}')", x, y, "mask",
                    lambda t, y=y, red=red: bce_torch(t, y, pos_weight=3, reduction=red), reduction=red)
    name = "bce_2d_probs_reduction_sum"
    r = rng_for(name)
    p, y = probs(r, S2), binary_mask(r, S2)
    fam.add(name, "bce(activation=none,reduction=sum)", "torch.nn.BCELoss(reduction='sum')", p, y, "mask",
            lambda t, y=y: bce_torch(t, y, activation="none", reduction="sum"), reduction="sum")
    # saturated logits
    for name, shp, kw, spec_args in (
        ("bce_2d_saturated", S2, {}, []),
        ("bce_2d_c3_saturated_pos_weight", [2, 3, 3, 4], {"pos_weight": 3}, [kv("pos_weight", 3)]),
        ("bce_3d_saturated_label_smoothing", S3, {"smoothing": 0.1}, [kv("label_smoothing", 0.1)]),
    ):
        r = rng_for(name)
        x, y = saturated_logits(r, shp), binary_mask(r, shp)
        fam.add(name, spec_of("bce", *spec_args),
                "torch.nn.BCEWithLogitsLoss(...) with logits of +-1e4 mixed in", x, y, "mask",
                lambda t, y=y, kw=kw: bce_torch(t, y, **kw))
    name = "bce_2d_saturated_reduction_none"
    r = rng_for(name)
    x, y = saturated_logits(r, S2), binary_mask(r, S2)
    fam.add(name, "bce(reduction=none)", "torch.nn.BCEWithLogitsLoss(reduction='none'), logits +-1e4 mixed in",
            x, y, "mask", lambda t, y=y: bce_torch(t, y, reduction="none"), reduction="none")


def balanced_bce_torch(x, y, activation="sigmoid", reduction="mean"):
    y = T(y)
    beta = (1 - y.mean()).detach()
    if activation == "sigmoid":
        lp, l1p = F.logsigmoid(x), F.logsigmoid(-x)
    else:
        lp, l1p = torch.clamp(torch.log(x), min=-100.0), torch.clamp(torch.log(1 - x), min=-100.0)
    l = -(beta * y * lp + (1 - beta) * (1 - y) * l1p)
    return reduce(l, reduction)


def gen_balanced_bce(fam: Family):
    orc = ("beta=1-y.mean() (constant); -(beta*y*F.logsigmoid(x) + (1-beta)*(1-y)*F.logsigmoid(-x))")
    orc_p = "beta=1-y.mean() (constant); -(beta*y*log p + (1-beta)*(1-y)*log(1-p)), logs clamped at -100"
    for name, shp, act, red, mk in (
        ("balanced_bce_2d", [2, 1, 4, 5], "sigmoid", "mean", binary_mask),
        ("balanced_bce_3d", [2, 1, 3, 3, 4], "sigmoid", "mean", binary_mask),
        ("balanced_bce_1d_c3", [2, 3, 8], "sigmoid", "mean", binary_mask),
        ("balanced_bce_2d_c3_sparse", [2, 3, 3, 4], "sigmoid", "mean", lambda r, s: binary_mask(r, s, 0.1)),
        ("balanced_bce_2d_soft_target", [2, 1, 4, 5], "sigmoid", "mean", soft_mask),
        ("balanced_bce_2d_probs", [2, 1, 4, 5], "none", "mean", binary_mask),
        ("balanced_bce_3d_probs", [2, 1, 3, 3, 4], "none", "mean", binary_mask),
        ("balanced_bce_2d_reduction_sum", [2, 1, 4, 5], "sigmoid", "sum", binary_mask),
        ("balanced_bce_3d_reduction_none", [2, 1, 3, 3, 4], "sigmoid", "none", binary_mask),
        ("balanced_bce_2d_saturated", [2, 1, 4, 5], "sigmoid", "mean", binary_mask),
    ):
        r = rng_for(name)
        if act == "none":
            x = probs(r, shp)
        elif "saturated" in name:
            x = saturated_logits(r, shp)
        else:
            x = logits(r, shp)
        y = mk(r, shp)
        fam.add(name, spec_of("balanced_bce", "activation=none" if act == "none" else "", red_spec(red)),
                (orc if act == "sigmoid" else orc_p) + f"; reduction {red}", x, y, "mask",
                lambda t, y=y, act=act, red=red: balanced_bce_torch(t, y, act, red), reduction=red)


def ce_torch(x, lab, *, weight=None, ignore_index=None, smoothing=0.0, reduction="mean"):
    lab = T(lab, torch.long)
    if lab.dim() == x.dim():
        lab = lab[:, 0]
    kw = {"reduction": reduction, "label_smoothing": smoothing}
    if weight is not None:
        kw["weight"] = torch.tensor(weight, dtype=torch.float64)
    if ignore_index is not None:
        kw["ignore_index"] = ignore_index
    return torch.nn.CrossEntropyLoss(**kw)(x, lab)


def ce_oracle_str(weight=None, ignore_index=None, smoothing=0.0, reduction="mean"):
    a = []
    if weight is not None:
        a.append(f"weight=torch.tensor({weight})")
    if ignore_index is not None:
        a.append(f"ignore_index={ignore_index}")
    if smoothing:
        a.append(f"label_smoothing={smoothing}")
    if reduction != "mean":
        a.append(f"reduction='{reduction}'")
    return f"torch.nn.CrossEntropyLoss({', '.join(a)})(x, labels with the channel axis squeezed)"


def gen_ce(fam: Family):
    cases = [
        # name, pred shape, label shape, C, kwargs
        ("ce_2d_c3_labels_n1hw", [2, 3, 3, 4], [2, 1, 3, 4], 3, {}),
        ("ce_2d_c3_labels_nhw", [2, 3, 3, 4], [2, 3, 4], 3, {}),
        ("ce_2d_c4_labels_nhw", [2, 4, 3, 4], [2, 3, 4], 4, {}),
        ("ce_3d_c3", [2, 3, 2, 3, 3], [2, 1, 2, 3, 3], 3, {}),
        ("ce_3d_c4_labels_ndhw", [1, 4, 2, 3, 4], [1, 2, 3, 4], 4, {}),
        ("ce_1d_c3", [2, 3, 8], [2, 8], 3, {}),
        ("ce_2d_c3_weight", [2, 3, 3, 4], [2, 1, 3, 4], 3, {"weight": [0.2, 1.0, 2.5]}),
        ("ce_3d_c4_weight", [1, 4, 2, 3, 4], [1, 1, 2, 3, 4], 4, {"weight": [0.5, 1.0, 3.0, 0.25]}),
        ("ce_2d_c3_ignore_index_255", [2, 3, 3, 4], [2, 1, 3, 4], 3, {"ignore_index": 255}),
        ("ce_2d_c4_ignore_index_neg100", [2, 4, 3, 4], [2, 3, 4], 4, {"ignore_index": -100}),
        ("ce_3d_c3_ignore_index_255", [2, 3, 2, 3, 3], [2, 2, 3, 3], 3, {"ignore_index": 255}),
        ("ce_2d_c3_label_smoothing", [2, 3, 3, 4], [2, 1, 3, 4], 3, {"smoothing": 0.1}),
        ("ce_3d_c4_label_smoothing", [1, 4, 2, 3, 4], [1, 2, 3, 4], 4, {"smoothing": 0.1}),
        ("ce_2d_c3_weight_ignore_index", [2, 3, 3, 4], [2, 1, 3, 4], 3,
         {"weight": [0.2, 1.0, 2.5], "ignore_index": 255}),
        ("ce_2d_c3_weight_label_smoothing", [2, 3, 3, 4], [2, 1, 3, 4], 3,
         {"weight": [0.2, 1.0, 2.5], "smoothing": 0.1}),
        ("ce_2d_c4_weight_ignore_index_label_smoothing", [2, 4, 3, 4], [2, 1, 3, 4], 4,
         {"weight": [0.5, 1.0, 3.0, 0.25], "ignore_index": 255, "smoothing": 0.1}),
        ("ce_3d_c3_weight_ignore_index_label_smoothing", [2, 3, 2, 3, 3], [2, 2, 3, 3], 3,
         {"weight": [2.0, 0.5, 1.0], "ignore_index": -100, "smoothing": 0.2}),
        ("ce_2d_c3_reduction_sum", [2, 3, 3, 4], [2, 1, 3, 4], 3, {"reduction": "sum"}),
        ("ce_2d_c3_weight_ignore_index_reduction_sum", [2, 3, 3, 4], [2, 1, 3, 4], 3,
         {"weight": [0.2, 1.0, 2.5], "ignore_index": 255, "reduction": "sum"}),
        ("ce_2d_c3_reduction_none", [2, 3, 3, 4], [2, 1, 3, 4], 3, {"reduction": "none"}),
        ("ce_3d_c4_weight_ignore_index_label_smoothing_reduction_none", [1, 4, 2, 3, 4], [1, 2, 3, 4], 4,
         {"weight": [0.5, 1.0, 3.0, 0.25], "ignore_index": 255, "smoothing": 0.1, "reduction": "none"}),
        ("ce_2d_c3_saturated", [2, 3, 3, 4], [2, 1, 3, 4], 3, {}),
        ("ce_3d_c4_saturated_weight_label_smoothing", [1, 4, 2, 3, 4], [1, 2, 3, 4], 4,
         {"weight": [0.5, 1.0, 3.0, 0.25], "smoothing": 0.1}),
    ]
    for name, pshape, lshape, c, kw in cases:
        r = rng_for(name)
        x = saturated_logits(r, pshape) if "saturated" in name else logits(r, pshape)
        lab = labels(r, lshape, c)
        if "ignore_index" in kw:
            lab = with_ignored(r, lab, kw["ignore_index"])
        red = kw.get("reduction", "mean")
        args = []
        if "weight" in kw:
            args.append(kv("weight", kw["weight"]))
        if "ignore_index" in kw:
            args.append(kv("ignore_index", kw["ignore_index"]))
        if kw.get("smoothing"):
            args.append(kv("label_smoothing", kw["smoothing"]))
        args.append(red_spec(red))
        fam.add(name, spec_of("ce", *args), ce_oracle_str(kw.get("weight"), kw.get("ignore_index"),
                                                           kw.get("smoothing", 0.0), red),
                x, lab, "labels", lambda t, lab=lab, kw=kw: ce_torch(t, lab, **kw), reduction=red)
    # soft (class-probability) targets
    for name, shp in (("ce_2d_c3_soft_target", [2, 3, 3, 4]), ("ce_3d_c4_soft_target", [1, 4, 2, 3, 4])):
        r = rng_for(name)
        x = logits(r, shp)
        q = r.uniform(0.0, 1.0, size=shp)
        q = q / q.sum(axis=1, keepdims=True)
        q = f32(q)
        fam.add(name, "ce(activation=softmax)",
                "torch.nn.CrossEntropyLoss()(x, q) with class-probability target q (rows sum to 1 up to f32 rounding)",
                x, q, "mask", lambda t, q=q: torch.nn.CrossEntropyLoss()(t, T(q)))


def monai_focal_f64(x, target, *, to_onehot_y=False, include_background=True, gamma=2.0, alpha=None,
                    weight=None, use_softmax=False, reduction="mean", plain_sum=True):
    """MONAI 1.6 FocalLoss.forward, re-run in float64 (the module casts to float32).

    reduction='sum': plain_sum=True gives the plain sum of docs/losses.md; False reproduces MONAI (mean over spatial, then sum).
    """
    from monai.losses.focal_loss import sigmoid_focal_loss, softmax_focal_loss
    n = x.shape[1]
    t = target
    if to_onehot_y and n > 1:
        t = monai_one_hot(t, num_classes=n, dtype=torch.float64)
    if not include_background and n > 1:
        t = t[:, 1:]
        x = x[:, 1:]
    alpha_arg = alpha
    if use_softmax:
        if not include_background and isinstance(alpha, (float, int)):
            alpha_arg = None
        loss = softmax_focal_loss(x, t, gamma, alpha_arg)
    else:
        loss = sigmoid_focal_loss(x, t, gamma, alpha_arg)
    if weight is not None:
        cw = torch.as_tensor(weight, dtype=loss.dtype)
        if cw.ndim == 0:
            loss = loss * cw
        else:
            loss = loss * cw.view([1, loss.shape[1]] + [1] * (loss.ndim - 2))
    if reduction == "sum":
        if plain_sum:
            return loss.sum()
        return loss.mean(dim=list(range(2, loss.ndim))).sum()
    if reduction == "mean":
        return loss.mean()
    return loss


def gen_focal(fam: Family):
    from monai.losses import FocalLoss
    cases = [
        # name, pred shape, target form ('mask' | 'labels' + label shape), kwargs, spec args
        ("focal_sigmoid_2d_c1", [2, 1, 4, 5], ("mask",), {}, []),
        ("focal_sigmoid_3d_c1", [2, 1, 3, 3, 4], ("mask",), {}, []),
        ("focal_sigmoid_1d_c3", [2, 3, 8], ("mask",), {}, []),
        ("focal_sigmoid_2d_c3", [2, 3, 3, 4], ("mask",), {}, []),
        ("focal_sigmoid_3d_c3", [1, 3, 3, 3, 4], ("mask",), {}, []),
        ("focal_sigmoid_2d_c1_gamma0", [2, 1, 4, 5], ("mask",), {"gamma": 0.0}, [kv("gamma", 0.0)]),
        ("focal_sigmoid_2d_c3_gamma3.5", [2, 3, 3, 4], ("mask",), {"gamma": 3.5}, [kv("gamma", 3.5)]),
        ("focal_sigmoid_3d_c1_gamma3.5", [2, 1, 3, 3, 4], ("mask",), {"gamma": 3.5}, [kv("gamma", 3.5)]),
        ("focal_sigmoid_2d_c1_alpha", [2, 1, 4, 5], ("mask",), {"alpha": 0.25}, [kv("alpha", 0.25)]),
        ("focal_sigmoid_3d_c3_alpha", [1, 3, 3, 3, 4], ("mask",), {"alpha": 0.25}, [kv("alpha", 0.25)]),
        ("focal_sigmoid_2d_c3_weight", [2, 3, 3, 4], ("mask",), {"weight": [0.5, 1.0, 2.0]},
         [kv("weight", [0.5, 1.0, 2.0])]),
        ("focal_sigmoid_2d_c3_alpha_weight_gamma3", [2, 3, 3, 4], ("mask",),
         {"alpha": 0.25, "weight": [0.5, 1.0, 2.0], "gamma": 3.0},
         [kv("gamma", 3.0), kv("alpha", 0.25), kv("weight", [0.5, 1.0, 2.0])]),
        ("focal_sigmoid_2d_c3_soft_target", [2, 3, 3, 4], ("soft",), {}, []),
        ("focal_sigmoid_2d_c3_labels", [2, 3, 3, 4], ("labels", [2, 1, 3, 4]), {"to_onehot_y": True},
         ["activation=sigmoid"]),
        ("focal_sigmoid_2d_c3_exclude_background", [2, 3, 3, 4], ("mask",), {"include_background": False},
         ["include_background=false"]),
        ("focal_sigmoid_2d_c3_reduction_sum", [2, 3, 3, 4], ("mask",), {"reduction": "sum"}, []),
        ("focal_sigmoid_3d_c1_alpha_reduction_sum", [2, 1, 3, 3, 4], ("mask",),
         {"reduction": "sum", "alpha": 0.25}, [kv("alpha", 0.25)]),
        ("focal_sigmoid_2d_c3_reduction_none", [2, 3, 3, 4], ("mask",), {"reduction": "none"}, []),
        ("focal_sigmoid_2d_c3_weight_reduction_none", [2, 3, 3, 4], ("mask",),
         {"reduction": "none", "weight": [0.5, 1.0, 2.0]}, [kv("weight", [0.5, 1.0, 2.0])]),
        ("focal_softmax_2d_c3", [2, 3, 3, 4], ("labels", [2, 1, 3, 4]), {"use_softmax": True, "to_onehot_y": True},
         ["activation=softmax"]),
        ("focal_softmax_2d_c4_labels_nhw", [2, 4, 3, 4], ("labels", [2, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True}, ["activation=softmax"]),
        ("focal_softmax_3d_c4", [1, 4, 2, 3, 4], ("labels", [1, 1, 2, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True}, ["activation=softmax"]),
        ("focal_softmax_1d_c3_gamma0", [2, 3, 8], ("labels", [2, 1, 8]),
         {"use_softmax": True, "to_onehot_y": True, "gamma": 0.0}, ["activation=softmax", kv("gamma", 0.0)]),
        ("focal_softmax_2d_c3_gamma3.5", [2, 3, 3, 4], ("labels", [2, 1, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True, "gamma": 3.5}, ["activation=softmax", kv("gamma", 3.5)]),
        ("focal_softmax_2d_c3_alpha", [2, 3, 3, 4], ("labels", [2, 1, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True, "alpha": 0.25}, ["activation=softmax", kv("alpha", 0.25)]),
        ("focal_softmax_2d_c3_weight", [2, 3, 3, 4], ("labels", [2, 1, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True, "weight": [0.5, 1.0, 2.0]},
         ["activation=softmax", kv("weight", [0.5, 1.0, 2.0])]),
        ("focal_softmax_3d_c3_alpha_weight", [2, 3, 2, 3, 3], ("labels", [2, 1, 2, 3, 3]),
         {"use_softmax": True, "to_onehot_y": True, "alpha": 0.75, "weight": [2.0, 0.5, 1.0]},
         ["activation=softmax", kv("alpha", 0.75), kv("weight", [2.0, 0.5, 1.0])]),
        ("focal_softmax_2d_c3_reduction_sum", [2, 3, 3, 4], ("labels", [2, 1, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True, "reduction": "sum"}, ["activation=softmax"]),
        ("focal_softmax_2d_c3_alpha_reduction_none", [2, 3, 3, 4], ("labels", [2, 1, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True, "alpha": 0.25, "reduction": "none"},
         ["activation=softmax", kv("alpha", 0.25)]),
        ("focal_sigmoid_2d_c3_saturated", [2, 3, 3, 4], ("mask",), {}, []),
        ("focal_sigmoid_3d_c1_saturated_alpha_gamma3.5", [2, 1, 3, 3, 4], ("mask",),
         {"alpha": 0.25, "gamma": 3.5}, [kv("gamma", 3.5), kv("alpha", 0.25)]),
        ("focal_softmax_2d_c3_saturated", [2, 3, 3, 4], ("labels", [2, 1, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True}, ["activation=softmax"]),
        ("focal_softmax_3d_c4_saturated_alpha", [1, 4, 2, 3, 4], ("labels", [1, 1, 2, 3, 4]),
         {"use_softmax": True, "to_onehot_y": True, "alpha": 0.25}, ["activation=softmax", kv("alpha", 0.25)]),
    ]
    for name, shp, tform, kw, sargs in cases:
        r = rng_for(name)
        x = saturated_logits(r, shp) if "saturated" in name else logits(r, shp)
        c = shp[1]
        if tform[0] == "labels":
            lab = labels(r, tform[1], c)
            tgt_store, kind = lab, "labels"
            lab_m = lab if len(tform[1]) == len(shp) else lab[:, None]
            tgt_t = T(lab_m, torch.long)
        else:
            y = soft_mask(r, shp) if tform[0] == "soft" else binary_mask(r, shp)
            tgt_store, kind = y, "mask"
            tgt_t = T(y)
        red = kw.get("reduction", "mean")
        mkw = {k: v for k, v in kw.items()}
        ctor = {k: v for k, v in mkw.items()}
        oracle = f"monai.losses.FocalLoss({', '.join(f'{k}={v!r}' for k, v in ctor.items())})"
        if red == "sum":
            oracle += (" -- value is the PLAIN sum of the reduction='none' tensor (docs/losses.md#focal); MONAI's own 'sum' "
                       "takes the spatial mean first")
        oracle += " [evaluated in float64 via monai.losses.focal_loss.{sigmoid,softmax}_focal_loss]"

        def check(v, kw=kw, x=x, tgt_t=tgt_t, red=red):
            m = FocalLoss(**kw)
            xt = torch.tensor(x, dtype=torch.float32)
            mv = m(xt, tgt_t)
            if red == "sum":
                ref = monai_focal_f64(T(x), tgt_t, plain_sum=False, **kw)
            else:
                ref = v
            close(mv.double(), ref, rtol=2e-5, atol=2e-5 * max(1.0, float(ref.abs().max())), what=name)

        fam.add(name, spec_of("focal", *sargs, red_spec(red)), oracle, x, tgt_store, kind,
                lambda t, tgt_t=tgt_t, kw=kw: monai_focal_f64(t, tgt_t, **kw), reduction=red, check=check)


def gen_weighted_ce(fam: Family):
    # sigmoid mode
    for name, shp, wshape, red in (
        ("weighted_ce_sigmoid_2d_c1", [2, 1, 4, 5], [2, 1, 4, 5], "mean"),
        ("weighted_ce_sigmoid_2d_c3_w_broadcast", [2, 3, 3, 4], [2, 1, 3, 4], "mean"),
        ("weighted_ce_sigmoid_2d_c3_w_full", [2, 3, 3, 4], [2, 3, 3, 4], "mean"),
        ("weighted_ce_sigmoid_3d_c1", [2, 1, 3, 3, 4], [2, 1, 3, 3, 4], "mean"),
        ("weighted_ce_sigmoid_3d_c3_w_broadcast", [1, 3, 3, 3, 4], [1, 1, 3, 3, 4], "mean"),
        ("weighted_ce_sigmoid_1d_c3_w_broadcast", [2, 3, 8], [2, 1, 8], "mean"),
        ("weighted_ce_sigmoid_2d_c3_w_broadcast_reduction_sum", [2, 3, 3, 4], [2, 1, 3, 4], "sum"),
        ("weighted_ce_sigmoid_2d_c3_w_broadcast_reduction_none", [2, 3, 3, 4], [2, 1, 3, 4], "none"),
        ("weighted_ce_sigmoid_2d_c1_saturated", [2, 1, 4, 5], [2, 1, 4, 5], "mean"),
    ):
        r = rng_for(name)
        x = saturated_logits(r, shp) if "saturated" in name else logits(r, shp)
        y = binary_mask(r, shp)
        w = f32(r.uniform(0.5, 5.0, size=wshape))
        fam.add(name, spec_of("weighted_ce", red_spec(red)),
                f"(torch.nn.BCEWithLogitsLoss(reduction='none')(x, y) * W)" +
                {"mean": ".mean()", "sum": ".sum()", "none": ""}[red] + " (W broadcast over C)",
                x, y, "mask",
                lambda t, y=y, w=w, red=red: reduce(
                    torch.nn.BCEWithLogitsLoss(reduction="none")(t, T(y)) * T(w), red),
                reduction=red, weights=w)
    # softmax mode on label maps
    for name, shp, lshape, wshape, red in (
        ("weighted_ce_softmax_2d_c3_w_n1hw", [2, 3, 3, 4], [2, 1, 3, 4], [2, 1, 3, 4], "mean"),
        ("weighted_ce_softmax_2d_c4_w_nhw", [2, 4, 3, 4], [2, 3, 4], [2, 3, 4], "mean"),
        ("weighted_ce_softmax_2d_c3_labels_nhw_w_n1hw", [2, 3, 3, 4], [2, 3, 4], [2, 1, 3, 4], "mean"),
        ("weighted_ce_softmax_3d_c3", [2, 3, 2, 3, 3], [2, 1, 2, 3, 3], [2, 1, 2, 3, 3], "mean"),
        ("weighted_ce_softmax_1d_c3", [2, 3, 8], [2, 8], [2, 8], "mean"),
        ("weighted_ce_softmax_2d_c3_reduction_sum", [2, 3, 3, 4], [2, 1, 3, 4], [2, 1, 3, 4], "sum"),
        ("weighted_ce_softmax_3d_c4_reduction_none", [1, 4, 2, 3, 4], [1, 2, 3, 4], [1, 1, 2, 3, 4], "none"),
    ):
        r = rng_for(name)
        x = logits(r, shp)
        lab = labels(r, lshape, shp[1])
        w = f32(r.uniform(0.5, 5.0, size=wshape))

        def fn(t, lab=lab, w=w, red=red):
            lt = T(lab, torch.long)
            if lt.dim() == t.dim():
                lt = lt[:, 0]
            wt = T(w)
            if wt.dim() == t.dim():
                wt = wt[:, 0]
            return reduce(F.cross_entropy(t, lt, reduction="none") * wt, red)

        fam.add(name, spec_of("weighted_ce", red_spec(red)),
                "(torch.nn.CrossEntropyLoss(reduction='none')(x, labels) * W)" +
                {"mean": ".mean()", "sum": ".sum()", "none": ""}[red] +
                " (per-pixel CE, W with the channel axis squeezed; 'none' has shape [N,*spatial])",
                x, lab, "labels", fn, reduction=red, weights=w)


def build_distribution():
    fam = Family("distribution")
    gen_bce(fam)
    gen_balanced_bce(fam)
    gen_ce(fam)
    gen_focal(fam)
    gen_weighted_ce(fam)
    return fam


# ============================================================================= region / compound

def act_kwargs(activation):
    return {"sigmoid": {"sigmoid": True}, "softmax": {"softmax": True}, "none": {}}[activation]


def default_activation(kind, c):
    return "softmax" if kind == "labels" and c >= 2 else "sigmoid"


def act_spec(activation, kind, c):
    return "" if activation == default_activation(kind, c) else f"activation={activation}"


def make_target(r, tform, shp):
    """tform: ('mask',) | ('soft',) | ('labels', label_shape) | ('empty',) | ('full',) ...
    returns (stored target, kind, torch target for MONAI/torch in [N,1,*] or [N,C,*] layout, one-hot/mask np [N,C,*])."""
    c = shp[1]
    t = tform[0]
    if t == "labels":
        lshape = tform[1]
        lab = labels(r, lshape, c)
        if len(tform) > 2:
            lab = tform[2](r, lab)
        lab_m = lab if len(lshape) == len(shp) else lab[:, None]
        return lab, "labels", T(lab_m, torch.long)
    if t == "mask":
        y = binary_mask(r, shp, tform[1] if len(tform) > 1 else 0.4)
    elif t == "soft":
        y = soft_mask(r, shp)
    elif t == "empty":
        y = np.zeros(shp)
    elif t == "full":
        y = np.ones(shp)
    else:
        raise ValueError(t)
    return y, "mask", T(y)


def make_pred(r, pform, shp):
    if pform == "logits":
        return logits(r, shp)
    if pform == "probs":
        return probs(r, shp)
    if pform == "neg_logits":  # confidently empty prediction
        return f32(r.normal(-9.0, 1.0, size=shp))
    if pform == "pos_logits":  # confidently full prediction
        return f32(r.normal(9.0, 1.0, size=shp))
    if pform == "zero_probs":
        return np.zeros(shp)
    if pform == "saturated":
        return saturated_logits(r, shp)
    raise ValueError(pform)


def none_shape(out, n, c_eff, batch):
    return [c_eff] if batch else [n, c_eff]


def add_monai_region(fam, name, loss_name, spec_args, ctor_name, ctor, shp, pform, tform, activation=None,
                     reduction="mean", fn_builder=None, value_shape_fn=None, check=None, oracle=None):
    r = rng_for(name)
    x = make_pred(r, pform, shp)
    tgt, kind, tgt_t = make_target(r, tform, shp)
    c = shp[1]
    if activation is None:
        activation = "none" if pform in ("probs", "zero_probs") else default_activation(kind, c)
    kw = dict(ctor)
    kw.update(act_kwargs(activation))
    if kind == "labels":
        kw["to_onehot_y"] = True
    if reduction != "mean":
        kw["reduction"] = reduction
    spec = spec_of(loss_name, act_spec(activation, kind, c), *spec_args, red_spec(reduction))
    if oracle is None:
        oracle = f"{ctor_name}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
    fn = fn_builder(kw, tgt_t) if fn_builder else (lambda t, kw=kw, tgt_t=tgt_t: getattr(monai.losses, ctor_name.split('.')[-1])(**kw)(t, tgt_t))
    vs = None
    if reduction == "none":
        c_eff = c if kw.get("include_background", True) or c == 1 else c - 1
        vs = value_shape_fn(shp[0], c_eff, kw) if value_shape_fn else ([c_eff] if kw.get("batch") else [shp[0], c_eff])
    chk = (lambda v, kw=kw, x=x, tgt_t=tgt_t: check(v, kw, x, tgt_t)) if check else None
    fam.add(name, spec, oracle, x, tgt, kind, fn, reduction=reduction, value_shape=vs, check=chk)


C3_2D = [2, 3, 3, 4]
C1_2D = [2, 1, 4, 5]
C1_3D = [2, 1, 3, 3, 4]
C3_3D = [1, 3, 2, 3, 4]
C4_3D = [1, 4, 2, 3, 3]
C3_1D = [2, 3, 8]
L3_2D = ("labels", [2, 1, 3, 4])
L3_2D_NHW = ("labels", [2, 3, 4])
L3_3D = ("labels", [1, 1, 2, 3, 4])
L4_3D_NDHW = ("labels", [1, 2, 3, 3])
L3_1D = ("labels", [2, 1, 8])


def drop_class(cls, sample=0):
    def f(r, lab):
        lab = lab.copy()
        s = lab[sample]
        s[s == cls] = (cls + 1) % 3
        return lab
    return f


def gen_dice(fam: Family):
    D = "monai.losses.DiceLoss"
    cases = [
        # name, spec args, ctor, shape, pred form, target form, activation, reduction
        ("dice_sigmoid_2d_c1", [], {}, C1_2D, "logits", ("mask",), None, "mean"),
        ("dice_sigmoid_3d_c1", [], {}, C1_3D, "logits", ("mask",), None, "mean"),
        ("dice_sigmoid_2d_c3", [], {}, C3_2D, "logits", ("mask",), None, "mean"),
        ("dice_sigmoid_1d_c3", [], {}, C3_1D, "logits", ("mask",), None, "mean"),
        ("dice_softmax_2d_c3_labels", [], {}, C3_2D, "logits", L3_2D, None, "mean"),
        ("dice_softmax_3d_c3_labels", [], {}, C3_3D, "logits", L3_3D, None, "mean"),
        ("dice_softmax_3d_c4_labels_ndhw", [], {}, C4_3D, "logits", L4_3D_NDHW, None, "mean"),
        ("dice_softmax_1d_c3_labels", [], {}, C3_1D, "logits", L3_1D, None, "mean"),
        ("dice_sigmoid_2d_c3_labels", [], {}, C3_2D, "logits", L3_2D, "sigmoid", "mean"),
        ("dice_probs_2d_c1", [], {}, C1_2D, "probs", ("mask",), None, "mean"),
        ("dice_softmax_2d_c3_exclude_background", ["include_background=false"], {"include_background": False},
         C3_2D, "logits", L3_2D, None, "mean"),
        ("dice_sigmoid_3d_c3_exclude_background", ["include_background=false"], {"include_background": False},
         C3_3D, "logits", ("mask",), None, "mean"),
        ("dice_sigmoid_2d_c1_batch", ["batch=true"], {"batch": True}, C1_2D, "logits", ("mask",), None, "mean"),
        ("dice_softmax_2d_c3_batch", ["batch=true"], {"batch": True}, C3_2D, "logits", L3_2D, None, "mean"),
        ("dice_softmax_3d_c4_batch_exclude_background", ["include_background=false", "batch=true"],
         {"batch": True, "include_background": False}, C4_3D, "logits", L4_3D_NDHW, None, "mean"),
        ("dice_sigmoid_2d_c1_power2", ["power=2"], {"squared_pred": True}, C1_2D, "logits", ("mask",), None, "mean"),
        ("dice_softmax_3d_c3_power2", ["power=2"], {"squared_pred": True}, C3_3D, "logits", L3_3D, None, "mean"),
        ("dice_sigmoid_2d_c3_jaccard", ["jaccard=true"], {"jaccard": True}, C3_2D, "logits", ("mask",), None, "mean"),
        ("dice_softmax_2d_c3_power2_jaccard", ["power=2", "jaccard=true"], {"squared_pred": True, "jaccard": True},
         C3_2D, "logits", L3_2D, None, "mean"),
        ("dice_sigmoid_2d_c1_smooth_nr0_dr1e-3", ["smooth_nr=0", "smooth_dr=0.001"],
         {"smooth_nr": 0.0, "smooth_dr": 1e-3}, C1_2D, "logits", ("mask",), None, "mean"),
        ("dice_softmax_2d_c3_smooth1", ["smooth=1"], {"smooth_nr": 1.0, "smooth_dr": 1.0},
         C3_2D, "logits", L3_2D, None, "mean"),
        ("dice_sigmoid_2d_c3_soft_target", [], {}, C3_2D, "logits", ("soft",), None, "mean"),
        ("dice_sigmoid_2d_c3_soft_target_soft_label", ["soft_label=true"], {"soft_label": True},
         C3_2D, "logits", ("soft",), None, "mean"),
        ("dice_probs_3d_c1_soft_target_soft_label", ["soft_label=true"], {"soft_label": True},
         C1_3D, "probs", ("soft",), None, "mean"),
        ("dice_sigmoid_2d_c1_soft_target_soft_label_power2", ["power=2", "soft_label=true"],
         {"soft_label": True, "squared_pred": True}, C1_2D, "logits", ("soft",), None, "mean"),
        ("dice_softmax_2d_c3_weight", ["weight=[0.5,1,2]"], {"weight": [0.5, 1.0, 2.0]},
         C3_2D, "logits", L3_2D, None, "mean"),
        ("dice_sigmoid_3d_c3_weight_batch", ["batch=true", "weight=[2,1,0.25]"], {"weight": [2.0, 1.0, 0.25], "batch": True},
         C3_3D, "logits", ("mask",), None, "mean"),
        ("dice_softmax_2d_c3_ignore_index", ["ignore_index=255"], {"ignore_index": 255},
         C3_2D, "logits", ("labels", [2, 1, 3, 4], lambda r, lab: with_ignored(r, lab, 255)), None, "mean"),
        ("dice_softmax_2d_c3_reduction_sum", [], {}, C3_2D, "logits", L3_2D, None, "sum"),
        ("dice_softmax_2d_c3_reduction_none", [], {}, C3_2D, "logits", L3_2D, None, "none"),
        ("dice_sigmoid_2d_c3_exclude_background_reduction_none", ["include_background=false"],
         {"include_background": False}, C3_2D, "logits", ("mask",), None, "none"),
        ("dice_softmax_3d_c4_weight_reduction_none", ["weight=[0.5,1,2,4]"], {"weight": [0.5, 1.0, 2.0, 4.0]},
         C4_3D, "logits", L4_3D_NDHW, None, "none"),
        # edge cases
        ("dice_sigmoid_2d_c1_empty_target_empty_pred", [], {}, C1_2D, "neg_logits", ("empty",), None, "mean"),
        ("dice_probs_2d_c1_empty_target_zero_pred", [], {}, C1_2D, "zero_probs", ("empty",), None, "mean"),
        ("dice_sigmoid_2d_c1_empty_target_full_pred", [], {}, C1_2D, "pos_logits", ("empty",), None, "mean"),
        ("dice_sigmoid_2d_c1_empty_target_batch", ["batch=true"], {"batch": True}, C1_2D, "logits", ("empty",),
         None, "mean"),
        ("dice_sigmoid_2d_c1_full_target", [], {}, C1_2D, "logits", ("full",), None, "mean"),
        ("dice_sigmoid_3d_c1_full_target_full_pred", [], {}, C1_3D, "pos_logits", ("full",), None, "mean"),
        ("dice_softmax_2d_c3_n1", [], {}, [1, 3, 4, 5], "logits", ("labels", [1, 1, 4, 5]), None, "mean"),
        ("dice_softmax_2d_c3_class_absent", [], {}, C3_2D, "logits", ("labels", [2, 1, 3, 4], drop_class(2)),
         None, "mean"),
        ("dice_sigmoid_2d_c1_saturated", [], {}, C1_2D, "saturated", ("mask",), None, "mean"),
    ]
    for name, sargs, ctor, shp, pf, tf, act, red in cases:
        add_monai_region(fam, name, "dice", sargs, D, ctor, shp, pf, tf, activation=act, reduction=red)
    for name, sargs, ctor, shp, pf, tf, act, red in (
        ("jaccard_sigmoid_2d_c1", [], {"jaccard": True}, C1_2D, "logits", ("mask",), None, "mean"),
        ("jaccard_softmax_3d_c3_labels", [], {"jaccard": True}, C3_3D, "logits", L3_3D, None, "mean"),
        ("jaccard_softmax_2d_c3_batch_exclude_background", ["include_background=false", "batch=true"],
         {"jaccard": True, "batch": True, "include_background": False}, C3_2D, "logits", L3_2D, None, "mean"),
        ("jaccard_sigmoid_2d_c3_power2_reduction_none", ["power=2"], {"jaccard": True, "squared_pred": True},
         C3_2D, "logits", ("mask",), None, "none"),
    ):
        add_monai_region(fam, name, "jaccard", sargs, D, ctor, shp, pf, tf, activation=act, reduction=red)


def gdl_f64(x, tgt_t, *, sigmoid=False, softmax=False, to_onehot_y=False, include_background=True, w_type="square",
            batch=False, smooth_nr=1e-5, smooth_dr=1e-5, soft_label=False, reduction="mean"):
    """MONAI 1.6 GeneralizedDiceLoss.forward in float64 (MONAI computes the class weights from ground_o.float())."""
    from monai.losses.utils import compute_tp_fp_fn
    inp = x
    if sigmoid:
        inp = torch.sigmoid(inp)
    n = inp.shape[1]
    if softmax and n > 1:
        inp = torch.softmax(inp, 1)
    t = tgt_t
    if to_onehot_y and n > 1:
        t = monai_one_hot(t, num_classes=n, dtype=torch.float64)
    if not include_background and n > 1:
        t, inp = t[:, 1:], inp[:, 1:]
    axes = list(range(2, inp.dim()))
    if batch:
        axes = [0] + axes
    tp, fp, fn = compute_tp_fp_fn(inp, t, axes, 1, soft_label)
    denominator = 2 * (tp + 0.5 * fp + 0.5 * fn)
    ground_o = torch.sum(t, axes)
    w = {"simple": lambda g: torch.reciprocal(g), "square": lambda g: torch.reciprocal(g * g),
         "uniform": lambda g: torch.ones_like(g)}[w_type](ground_o)
    infs = torch.isinf(w)
    if batch:
        w[infs] = 0.0
        w = w + infs * torch.max(w)
    else:
        w[infs] = 0.0
        w = w + infs * torch.max(w, dim=1)[0].unsqueeze(dim=1)
    d = 0 if batch else 1
    numer = 2.0 * (tp * w).sum(d, keepdim=True) + smooth_nr
    denom = (denominator * w).sum(d, keepdim=True) + smooth_dr
    f = 1.0 - numer / denom
    return reduce(f, reduction)


def gen_generalized_dice(fam: Family):
    from monai.losses import GeneralizedDiceLoss

    def builder(kw, tgt_t):
        return lambda t: gdl_f64(t, tgt_t, **kw)

    def check(v, kw, x, tgt_t):
        mv = GeneralizedDiceLoss(**kw)(T(x), tgt_t)
        close(mv.reshape(v.shape), v, rtol=1e-6, atol=1e-7, what="GeneralizedDiceLoss")

    O = "monai.losses.GeneralizedDiceLoss"
    cases = [
        ("generalized_dice_sigmoid_2d_c3", [], {}, C3_2D, "logits", ("mask",), None, "mean"),
        ("generalized_dice_softmax_2d_c3_labels", [], {}, C3_2D, "logits", L3_2D, None, "mean"),
        ("generalized_dice_softmax_3d_c4_labels_ndhw", [], {}, C4_3D, "logits", L4_3D_NDHW, None, "mean"),
        ("generalized_dice_softmax_2d_c3_simple", ["w_type=simple"], {"w_type": "simple"},
         C3_2D, "logits", L3_2D, None, "mean"),
        ("generalized_dice_softmax_2d_c3_uniform", ["w_type=uniform"], {"w_type": "uniform"},
         C3_2D, "logits", L3_2D, None, "mean"),
        ("generalized_dice_softmax_2d_c3_batch", ["batch=true"], {"batch": True}, C3_2D, "logits", L3_2D, None,
         "mean"),
        ("generalized_dice_softmax_2d_c3_class_absent", [], {}, C3_2D, "logits",
         ("labels", [2, 1, 3, 4], drop_class(2)), None, "mean"),
        ("generalized_dice_softmax_2d_c3_class_absent_simple", ["w_type=simple"], {"w_type": "simple"}, C3_2D,
         "logits", ("labels", [2, 1, 3, 4], drop_class(1, sample=1)), None, "mean"),
        ("generalized_dice_softmax_2d_c3_class_absent_batch", ["batch=true"], {"batch": True}, C3_2D, "logits",
         ("labels", [2, 1, 3, 4], drop_class(2)), None, "mean"),
        ("generalized_dice_sigmoid_3d_c3_exclude_background", ["include_background=false"],
         {"include_background": False}, C3_3D, "logits", ("mask",), None, "mean"),
        ("generalized_dice_probs_2d_c3_smooth", ["smooth_nr=0.001", "smooth_dr=0.01"],
         {"smooth_nr": 1e-3, "smooth_dr": 1e-2}, C3_2D, "probs", ("mask",), None, "mean"),
        ("generalized_dice_sigmoid_2d_c1_empty_target", [], {}, C1_2D, "logits", ("empty",), None, "mean"),
        ("generalized_dice_softmax_2d_c3_reduction_sum", [], {}, C3_2D, "logits", L3_2D, None, "sum"),
        ("generalized_dice_softmax_3d_c3_reduction_none", [], {}, [2, 3, 2, 2, 3], "logits",
         ("labels", [2, 1, 2, 2, 3]), None, "none"),
    ]
    for name, sargs, ctor, shp, pf, tf, act, red in cases:
        add_monai_region(fam, name, "generalized_dice", sargs, O, ctor, shp, pf, tf, activation=act, reduction=red,
                         fn_builder=builder, check=check,
                         value_shape_fn=lambda n, c, kw: [1] if kw.get("batch") else [n, 1],
                         oracle=None)
    for c in fam.cases:
        if c["name"].startswith("generalized_dice") and "[float64" not in c["oracle"]:
            c["oracle"] += (" [re-run in float64: MONAI computes the class weights from ground_o.float(); "
                            "'none' ([N,1,1,1] in MONAI) stored as [N,1]]")


def gen_tversky(fam: Family):
    O = "monai.losses.TverskyLoss"
    cases = [
        ("tversky_sigmoid_2d_c1", [], {}, C1_2D, "logits", ("mask",), None, "mean"),
        ("tversky_sigmoid_2d_c1_alpha0.3_beta0.7", ["alpha=0.3", "beta=0.7"], {"alpha": 0.3, "beta": 0.7},
         C1_2D, "logits", ("mask",), None, "mean"),
        ("tversky_sigmoid_3d_c3_alpha0.7_beta0.3", ["alpha=0.7", "beta=0.3"], {"alpha": 0.7, "beta": 0.3},
         C3_3D, "logits", ("mask",), None, "mean"),
        ("tversky_softmax_2d_c3_labels", [], {}, C3_2D, "logits", L3_2D, None, "mean"),
        ("tversky_softmax_3d_c4_labels_ndhw_alpha0.3_beta0.7", ["alpha=0.3", "beta=0.7"], {"alpha": 0.3, "beta": 0.7},
         C4_3D, "logits", L4_3D_NDHW, None, "mean"),
        ("tversky_softmax_2d_c3_batch", ["alpha=0.3", "beta=0.7", "batch=true"],
         {"alpha": 0.3, "beta": 0.7, "batch": True}, C3_2D, "logits", L3_2D, None, "mean"),
        ("tversky_softmax_2d_c3_exclude_background", ["include_background=false"], {"include_background": False},
         C3_2D, "logits", L3_2D, None, "mean"),
        ("tversky_sigmoid_1d_c3_smooth", ["smooth_nr=0", "smooth_dr=0.001"], {"smooth_nr": 0.0, "smooth_dr": 1e-3},
         C3_1D, "logits", ("mask",), None, "mean"),
        ("tversky_sigmoid_2d_c3_reduction_sum", [], {}, C3_2D, "logits", ("mask",), None, "sum"),
        ("tversky_softmax_2d_c3_reduction_none", ["alpha=0.3", "beta=0.7"], {"alpha": 0.3, "beta": 0.7},
         C3_2D, "logits", L3_2D, None, "none"),
        ("tversky_sigmoid_2d_c1_empty_target", [], {}, C1_2D, "logits", ("empty",), None, "mean"),
    ]
    for name, sargs, ctor, shp, pf, tf, act, red in cases:
        add_monai_region(fam, name, "tversky", sargs, O, ctor, shp, pf, tf, activation=act, reduction=red)


def tversky_none(kw, tgt_t):
    k = dict(kw)
    k["reduction"] = "none"
    return lambda t: monai.losses.TverskyLoss(**k)(t, tgt_t)


def gen_focal_tversky(fam: Family):
    def builder(gamma, red):
        def b(kw, tgt_t):
            base = tversky_none(kw, tgt_t)
            return lambda t: reduce(base(t) ** gamma, red)
        return b
    cases = [
        ("focal_tversky_sigmoid_2d_c1", [], {}, 0.75, C1_2D, "logits", ("mask",), "mean"),
        ("focal_tversky_sigmoid_3d_c1", [], {}, 0.75, C1_3D, "logits", ("mask",), "mean"),
        ("focal_tversky_softmax_2d_c3_labels", [], {}, 0.75, C3_2D, "logits", L3_2D, "mean"),
        ("focal_tversky_softmax_3d_c4_gamma2", ["gamma=2"], {}, 2.0, C4_3D, "logits", L4_3D_NDHW, "mean"),
        ("focal_tversky_sigmoid_2d_c3_alpha0.5_beta0.5_gamma1.5", ["alpha=0.5", "beta=0.5", "gamma=1.5"], {}, 1.5,
         C3_2D, "logits", ("mask",), "mean"),
        ("focal_tversky_softmax_2d_c3_batch_exclude_background", ["include_background=false", "batch=true"],
         {"batch": True, "include_background": False}, 0.75, C3_2D, "logits", L3_2D, "mean"),
        ("focal_tversky_softmax_2d_c3_reduction_sum", [], {}, 0.75, C3_2D, "logits", L3_2D, "sum"),
        ("focal_tversky_sigmoid_2d_c3_reduction_none", [], {}, 0.75, C3_2D, "logits", ("mask",), "none"),
    ]
    for name, sargs, ctor, gamma, shp, pf, tf, red in cases:
        ctor = dict(ctor)
        a = 0.5 if "alpha=0.5" in sargs else 0.3
        b = 0.5 if "beta=0.5" in sargs else 0.7
        ctor.update({"alpha": a, "beta": b})
        add_monai_region(fam, name, "focal_tversky", sargs, "monai.losses.TverskyLoss", ctor, shp, pf, tf,
                         reduction=red, fn_builder=builder(gamma, red),
                         oracle=f"monai.losses.TverskyLoss(alpha={a}, beta={b}, reduction='none', ...)(x, y) ** {gamma}, "
                                f"then {red} (tversky loss per (n, c); formula of docs/losses.md)")


def region_probs(t, activation):
    if activation == "sigmoid":
        return torch.sigmoid(t)
    if activation == "softmax":
        return torch.softmax(t, 1)
    return t


def region_target(tgt_t, c):
    """torch target -> float [N,C,*] (label maps one-hot encoded)"""
    if tgt_t.dtype == torch.long:
        return monai_one_hot(tgt_t, num_classes=c, dtype=torch.float64)
    return tgt_t


def gen_sens_spec(fam: Family):
    def mk(act, r_, s, red, include_background=True, batch=False):
        def b(kw, tgt_t):
            def fn(t):
                p = region_probs(t, act)
                y = region_target(tgt_t, t.shape[1])
                if not include_background and p.shape[1] > 1:
                    p, y = p[:, 1:], y[:, 1:]
                ax = list(range(2, p.dim()))
                if batch:
                    ax = [0] + ax
                d2 = (y - p) ** 2
                sens = (d2 * y).sum(ax) / (y.sum(ax) + s)
                spec = (d2 * (1 - y)).sum(ax) / ((1 - y).sum(ax) + s)
                return reduce(r_ * sens + (1 - r_) * spec, red)
            return fn
        return b
    cases = [
        ("sensitivity_specificity_sigmoid_2d_c1", [], "sigmoid", 0.1, 1.0, C1_2D, "logits", ("mask",), "mean", {}),
        ("sensitivity_specificity_sigmoid_3d_c1", [], "sigmoid", 0.1, 1.0, C1_3D, "logits", ("mask",), "mean", {}),
        ("sensitivity_specificity_softmax_2d_c3_labels", [], "softmax", 0.1, 1.0, C3_2D, "logits", L3_2D, "mean", {}),
        ("sensitivity_specificity_softmax_3d_c4_r0.3_smooth1e-5", ["r=0.3", "smooth=1e-05"], "softmax", 0.3, 1e-5,
         C4_3D, "logits", L4_3D_NDHW, "mean", {}),
        ("sensitivity_specificity_probs_2d_c3", [], "none", 0.1, 1.0, C3_2D, "probs", ("mask",), "mean", {}),
        ("sensitivity_specificity_sigmoid_2d_c3_soft_target", [], "sigmoid", 0.1, 1.0, C3_2D, "logits", ("soft",),
         "mean", {}),
        ("sensitivity_specificity_sigmoid_2d_c1_empty_target", [], "sigmoid", 0.1, 1.0, C1_2D, "logits", ("empty",),
         "mean", {}),
        ("sensitivity_specificity_softmax_2d_c3_reduction_sum", [], "softmax", 0.1, 1.0, C3_2D, "logits", L3_2D,
         "sum", {}),
        ("sensitivity_specificity_sigmoid_2d_c3_reduction_none", [], "sigmoid", 0.1, 1.0, C3_2D, "logits", ("mask",),
         "none", {}),
    ]
    for name, sargs, act, r_, s, shp, pf, tf, red, extra in cases:
        add_monai_region(fam, name, "sensitivity_specificity", sargs, "formula", {}, shp, pf, tf, activation=act,
                         reduction=red, fn_builder=mk(act, r_, s, red),
                         oracle=f"per (n,c): r*sum((y-p)^2*y)/(sum(y)+s) + (1-r)*sum((y-p)^2*(1-y))/(sum(1-y)+s), "
                                f"r={r_}, s={s}, p={act}(x); then {red} over (n,c)")


def gen_log_cosh_dice(fam: Family):
    def builder(red):
        def b(kw, tgt_t):
            k = dict(kw)
            k["reduction"] = "none"
            dl = monai.losses.DiceLoss(**k)
            return lambda t: reduce(torch.log(torch.cosh(dl(t, tgt_t).flatten(0 if k.get("batch") else 1 - 1)
                                                         .reshape(-1))), red)
        return b
    cases = [
        ("log_cosh_dice_sigmoid_2d_c1", [], {}, C1_2D, "logits", ("mask",), "mean"),
        ("log_cosh_dice_softmax_3d_c3_labels", [], {}, C3_3D, "logits", L3_3D, "mean"),
        ("log_cosh_dice_softmax_2d_c3_batch_exclude_background", ["include_background=false", "batch=true"],
         {"batch": True, "include_background": False}, C3_2D, "logits", L3_2D, "mean"),
        ("log_cosh_dice_sigmoid_2d_c3_power2_smooth1", ["smooth=1", "power=2"],
         {"squared_pred": True, "smooth_nr": 1.0, "smooth_dr": 1.0}, C3_2D, "logits", ("mask",), "mean"),
        ("log_cosh_dice_softmax_2d_c3_reduction_sum", [], {}, C3_2D, "logits", L3_2D, "sum"),
    ]
    for name, sargs, ctor, shp, pf, tf, red in cases:
        add_monai_region(fam, name, "log_cosh_dice", sargs, "monai.losses.DiceLoss", ctor, shp, pf, tf,
                         reduction=red, fn_builder=builder(red),
                         oracle=f"log(cosh(monai.losses.DiceLoss({ctor}, reduction='none', sigmoid/softmax/to_onehot_y "
                                f"as the spec) per (n,c))), then {red}")
    # reduction none
    name = "log_cosh_dice_sigmoid_2d_c3_reduction_none"
    r = rng_for(name)
    x, y = logits(r, C3_2D), binary_mask(r, C3_2D)
    fam.add(name, "log_cosh_dice(reduction=none)",
            "log(cosh(monai.losses.DiceLoss(sigmoid=True, reduction='none')(x, y))) stored as [N,C]", x, y, "mask",
            lambda t, y=y: torch.log(torch.cosh(monai.losses.DiceLoss(sigmoid=True, reduction="none")(t, T(y)))),
            reduction="none", value_shape=[2, 3])


def log1m_softmax(t):
    """ln(1 - softmax(t)_c) = logsumexp_{k != c} t_k - logsumexp_k t_k, exactly."""
    c = t.shape[1]
    lse = torch.logsumexp(t, 1, keepdim=True)
    outs = []
    for k in range(c):
        others = torch.cat([t[:, :k], t[:, k + 1:]], 1)
        outs.append(torch.logsumexp(others, 1, keepdim=True))
    return torch.cat(outs, 1) - lse


def log_probs(t, activation):
    if activation == "sigmoid":
        return F.logsigmoid(t), F.logsigmoid(-t)
    if activation == "softmax":
        return torch.log_softmax(t, 1), log1m_softmax(t)
    return torch.log(t), torch.log(1 - t)


def gen_combo(fam: Family):
    def mk(act, alpha, beta, s):
        def b(kw, tgt_t):
            def fn(t):
                p = region_probs(t, act)
                lp, l1p = log_probs(t, act)
                y = region_target(tgt_t, t.shape[1])
                wce = -(beta * y * lp + (1 - beta) * (1 - y) * l1p).mean()
                ax = [0] + list(range(2, p.dim()))
                dsc = (2 * (p * y).sum(ax) + s) / (p.sum(ax) + y.sum(ax) + s)
                return alpha * wce - (1 - alpha) * dsc.sum()
            return fn
        return b
    cases = [
        ("combo_sigmoid_2d_c1", [], "sigmoid", 0.5, 0.5, 1.0, C1_2D, "logits", ("mask",)),
        ("combo_sigmoid_3d_c1_alpha0.3_beta0.7", ["alpha=0.3", "beta=0.7"], "sigmoid", 0.3, 0.7, 1.0, C1_3D,
         "logits", ("mask",)),
        ("combo_sigmoid_2d_c3", [], "sigmoid", 0.5, 0.5, 1.0, C3_2D, "logits", ("mask",)),
        ("combo_softmax_2d_c3_labels", [], "softmax", 0.5, 0.5, 1.0, C3_2D, "logits", L3_2D),
        ("combo_softmax_3d_c4_alpha0.7_beta0.4_smooth1e-5", ["alpha=0.7", "beta=0.4", "smooth=1e-05"], "softmax",
         0.7, 0.4, 1e-5, C4_3D, "logits", L4_3D_NDHW),
        ("combo_probs_2d_c1", [], "none", 0.5, 0.5, 1.0, C1_2D, "probs", ("mask",)),
        ("combo_sigmoid_2d_c1_empty_target", [], "sigmoid", 0.5, 0.5, 1.0, C1_2D, "logits", ("empty",)),
        ("combo_sigmoid_2d_c1_saturated", [], "sigmoid", 0.5, 0.5, 1.0, C1_2D, "saturated", ("mask",)),
    ]
    for name, sargs, act, alpha, beta, s, shp, pf, tf in cases:
        add_monai_region(fam, name, "combo", sargs, "formula", {}, shp, pf, tf, activation=act,
                         fn_builder=mk(act, alpha, beta, s),
                         oracle=f"alpha*wCE - (1-alpha)*sum_c DSC_c; wCE = -mean(beta*y*ln p + (1-beta)*(1-y)*ln(1-p)) over "
                                f"all N*C*S elements (ln p, ln(1-p) from logits: logsigmoid / log_softmax and "
                                f"logsumexp_(k!=c) - logsumexp); DSC_c = (2*sum p*y + s)/(sum p + sum y + s) summed over "
                                f"batch and space; alpha={alpha}, beta={beta}, s={s}, activation={act}")


def gen_exp_log(fam: Family):
    def mk(act, w_dice, w_ce, gamma, s):
        def b(kw, tgt_t):
            def fn(t):
                c = t.shape[1]
                if act == "sigmoid":
                    assert c == 1
                    p1 = torch.sigmoid(t)
                    p = torch.cat([1 - p1, p1], 1)
                    lp = torch.cat([F.logsigmoid(-t), F.logsigmoid(t)], 1)
                    y1 = tgt_t
                    y = torch.cat([1 - y1, y1], 1)
                else:
                    p = torch.softmax(t, 1)
                    lp = torch.log_softmax(t, 1)
                    y = region_target(tgt_t, c)
                ax = [0] + list(range(2, p.dim()))
                dsc = (2 * (p * y).sum(ax) + s) / (p.sum(ax) + y.sum(ax) + s)
                l_dice = ((-torch.log(dsc)) ** gamma).mean()
                f = y.sum(ax)  # class pixel counts (over the batch)
                wl = (f.sum() / f) ** 0.5  # classes with f=0 never selected
                wl = torch.where(torch.isfinite(wl), wl, torch.zeros_like(wl))
                nll = -(lp * y).sum(1)  # -ln p_l per pixel
                wpix = (y * wl.view([1, -1] + [1] * (p.dim() - 2))).sum(1)
                l_ce = (wpix * torch.clamp(nll, min=1e-7) ** gamma).mean()
                return w_dice * l_dice + w_ce * l_ce
            return fn
        return b
    cases = [
        ("exp_log_sigmoid_2d_c1", [], "sigmoid", 0.8, 0.2, 0.3, 1.0, C1_2D, ("mask",)),
        ("exp_log_sigmoid_3d_c1", [], "sigmoid", 0.8, 0.2, 0.3, 1.0, C1_3D, ("mask",)),
        ("exp_log_softmax_2d_c3_labels", [], "softmax", 0.8, 0.2, 0.3, 1.0, C3_2D, L3_2D),
        ("exp_log_softmax_3d_c4_labels_ndhw", [], "softmax", 0.8, 0.2, 0.3, 1.0, C4_3D, L4_3D_NDHW),
        ("exp_log_softmax_2d_c3_class_absent_gamma1", ["w_dice=0.5", "w_ce=0.5", "gamma=1"], "softmax", 0.5, 0.5, 1.0,
         1.0, C3_2D, ("labels", [2, 1, 3, 4], lambda r, lab: np.where(lab == 2, 1, lab))),
    ]
    for name, sargs, act, wd, wc, g, s, shp, tf in cases:
        add_monai_region(fam, name, "exp_log", sargs, "formula", {}, shp, "logits", tf, activation=act,
                         fn_builder=mk(act, wd, wc, g, s),
                         oracle=f"w_dice*mean_c[(-ln DSC_c)^gamma] + w_ce*mean_x[w_l*max(-ln p_l,1e-7)^gamma]; "
                                f"DSC_c=(2*sum p*y+s)/(sum p+sum y+s) over batch and space; w_l=(sum_k f_k/f_l)^0.5, f_k = "
                                f"pixel count of class k over the batch; mean_x over N*S pixels; "
                                f"{'sigmoid: classes {1-p, p}' if act == 'sigmoid' else 'softmax'}; "
                                f"w_dice={wd}, w_ce={wc}, gamma={g}, s={s}")


def _lovasz_grad_f64(gt_sorted):
    """smp's _lovasz_grad with .double() instead of .float() (smp casts the Jaccard weights to float32)."""
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.double().cumsum(0)
    union = gts + (1 - gt_sorted).double().cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def smp_lovasz_f64(t, tgt_t, **kw):
    import segmentation_models_pytorch.losses.lovasz as L
    orig = L._lovasz_grad
    L._lovasz_grad = _lovasz_grad_f64
    try:
        return L.LovaszLoss(**kw)(t, tgt_t)
    finally:
        L._lovasz_grad = orig


def gen_lovasz(fam: Family):
    from segmentation_models_pytorch.losses import LovaszLoss
    cases = [
        # name, spec args, mode, per_image, ignore, shape, target form
        ("lovasz_binary_2d", [], "binary", False, None, C1_2D, ("mask",)),
        ("lovasz_binary_3d", [], "binary", False, None, C1_3D, ("mask",)),
        ("lovasz_binary_2d_per_image", ["per_image=true"], "binary", True, None, C1_2D, ("mask",)),
        ("lovasz_binary_2d_ignore_index", ["ignore_index=255"], "binary", False, 255, C1_2D, ("mask_ign",)),
        ("lovasz_binary_3d_per_image_ignore_index", ["per_image=true", "ignore_index=255"], "binary", True, 255,
         C1_3D, ("mask_ign",)),
        ("lovasz_binary_2d_empty_target", [], "binary", False, None, C1_2D, ("empty",)),
        ("lovasz_binary_2d_sample_empty_per_image", ["per_image=true"], "binary", True, None, C1_2D,
         ("mask_empty0",)),
        ("lovasz_multiclass_2d_c3", [], "multiclass", False, None, C3_2D, ("labels", [2, 3, 4])),
        ("lovasz_multiclass_2d_c3_labels_n1hw", [], "multiclass", False, None, C3_2D, ("labels", [2, 1, 3, 4])),
        ("lovasz_multiclass_3d_c4", [], "multiclass", False, None, C4_3D, ("labels", [1, 2, 3, 3])),
        ("lovasz_multiclass_2d_c3_per_image", ["per_image=true"], "multiclass", True, None, C3_2D,
         ("labels", [2, 3, 4])),
        ("lovasz_multiclass_2d_c3_ignore_index", ["ignore_index=255"], "multiclass", False, 255, C3_2D,
         ("labels", [2, 3, 4], lambda r, lab: with_ignored(r, lab, 255))),
        ("lovasz_multiclass_2d_c3_class_absent_per_image", ["per_image=true"], "multiclass", True, None, C3_2D,
         ("labels", [2, 3, 4], drop_class(2))),
        ("lovasz_multiclass_2d_c3_class0_absent", [], "multiclass", False, None, C3_2D,
         ("labels", [2, 3, 4], lambda r, lab: np.where(lab == 0, 1, lab))),
    ]
    for name, sargs, mode, per_image, ign, shp, tf in cases:
        r = rng_for(name)
        x = logits(r, shp)
        if tf[0] == "labels":
            lab = labels(r, tf[1], shp[1])
            if len(tf) > 2:
                lab = tf[2](r, lab)
            tgt, kind = lab, "labels"
            tgt_t = T(lab, torch.long)
        else:
            if tf[0] == "empty":
                y = np.zeros(shp)
            else:
                y = binary_mask(r, shp)
                if tf[0] == "mask_ign":
                    y[r.random(size=shp) < 0.2] = 255.0
                if tf[0] == "mask_empty0":
                    y[0] = 0.0
            tgt, kind = y, "mask"
            tgt_t = T(y)
        kw = {"mode": mode, "per_image": per_image, "ignore_index": ign}
        fam.add(name, spec_of("lovasz", *sargs),
                f"segmentation_models_pytorch.losses.LovaszLoss(mode='{mode}', per_image={per_image}, "
                f"ignore_index={ign})(x, y) [re-run in float64: smp casts the Lovasz gradient weights to float32]" + (" (binary: Lovasz hinge on the raw logits)" if mode == "binary"
                                                else " (multiclass: softmax, classes present in the target)"),
                x, tgt, kind, lambda t, kw=kw, tgt_t=tgt_t: smp_lovasz_f64(t, tgt_t, **kw),
                check=lambda v, kw=kw, x=x, tgt_t=tgt_t: close(
                    LovaszLoss(**kw)(torch.tensor(x, dtype=torch.float32), tgt_t).double(), v, rtol=1e-5, atol=1e-5,
                    what="smp LovaszLoss f32"))


def gen_mcc(fam: Family):
    from segmentation_models_pytorch.losses import MCCLoss
    cases = [
        ("mcc_probs_2d_c1", ["activation=none"], "none", 1e-5, C1_2D, ("mask",)),
        ("mcc_probs_3d_c1", ["activation=none"], "none", 1e-5, C1_3D, ("mask",)),
        ("mcc_sigmoid_2d_c1", [], "sigmoid", 1e-5, C1_2D, ("mask",)),
        ("mcc_sigmoid_3d_c1_eps1e-3", ["eps=0.001"], "sigmoid", 1e-3, C1_3D, ("mask",)),
        ("mcc_sigmoid_2d_c3", [], "sigmoid", 1e-5, C3_2D, ("mask",)),
        ("mcc_sigmoid_2d_c1_soft_target", [], "sigmoid", 1e-5, C1_2D, ("soft",)),
        ("mcc_sigmoid_2d_c1_empty_target", [], "sigmoid", 1e-5, C1_2D, ("empty",)),
    ]
    for name, sargs, act, eps, shp, tf in cases:
        r = rng_for(name)
        x = probs(r, shp) if act == "none" else logits(r, shp)
        y, kind, tgt_t = make_target(r, tf, shp)
        fam.add(name, spec_of("mcc", *sargs),
                f"segmentation_models_pytorch.losses.MCCLoss(eps={eps})({'x' if act == 'none' else 'torch.sigmoid(x)'}, y)"
                " (smp applies no activation; sums over the whole batch and all channels)",
                x, y, kind,
                lambda t, act=act, eps=eps, tgt_t=tgt_t: MCCLoss(eps=eps)(t if act == "none" else torch.sigmoid(t), tgt_t))


def gen_sums(fam: Family):
    from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss
    # DiceCELoss, softmax
    for name, shp, tf, ld, lc, extra, spec in (
        ("sum_dice_ce_softmax_2d_c3", C3_2D, L3_2D, 0.7, 0.3, {}, "0.7*dice(activation=softmax) + 0.3*ce"),
        ("sum_dice_ce_softmax_3d_c4", C4_3D, ("labels", [1, 1, 2, 3, 3]), 0.7, 0.3, {},
         "0.7*dice(activation=softmax) + 0.3*ce"),
        ("sum_dice_ce_softmax_2d_c3_exclude_background", C3_2D, L3_2D, 1.0, 1.0, {"include_background": False},
         "dice(include_background=false) + ce"),
        ("sum_dice_ce_softmax_2d_c3_batch_power2", C3_2D, L3_2D, 0.5, 2.0, {"batch": True, "squared_pred": True},
         "0.5*dice(power=2,batch=true) + 2*ce"),
    ):
        r = rng_for(name)
        x = logits(r, shp)
        lab = labels(r, tf[1], shp[1])
        tgt_t = T(lab, torch.long)
        kw = dict(to_onehot_y=True, softmax=True, lambda_dice=ld, lambda_ce=lc, **extra)

        def fn(t, kw=kw, tgt_t=tgt_t):
            return DiceCELoss(**kw)(t, tgt_t)
        fam.add(name, spec, f"monai.losses.DiceCELoss({', '.join(f'{k}={v!r}' for k, v in kw.items())})",
                x, lab, "labels", fn)
    # DiceCELoss, sigmoid C=1 (CE part is BCEWithLogits)
    for name, shp, ld, lc, spec in (
        ("sum_dice_bce_sigmoid_2d_c1", C1_2D, 1.0, 1.0, "dice + bce"),
        ("sum_dice_bce_sigmoid_3d_c1", C1_3D, 0.6, 0.4, "0.6*dice + 0.4*bce"),
    ):
        r = rng_for(name)
        x, y = logits(r, shp), binary_mask(r, shp)
        kw = dict(sigmoid=True, lambda_dice=ld, lambda_ce=lc)
        fam.add(name, spec, f"monai.losses.DiceCELoss({', '.join(f'{k}={v!r}' for k, v in kw.items())}) "
                            "(C=1: the CE part is BCEWithLogitsLoss)",
                x, y, "mask", lambda t, kw=kw, y=y: DiceCELoss(**kw)(t, T(y)))
    # DiceFocalLoss: the focal part is ALWAYS sigmoid focal (MONAI does not pass use_softmax)
    for name, shp, tf, kw, spec in (
        ("sum_dice_focal_sigmoid_2d_c3", C3_2D, ("mask",), dict(sigmoid=True), "dice + focal"),
        ("sum_dice_focal_sigmoid_3d_c1_gamma3_lambda0.5", C1_3D, ("mask",),
         dict(sigmoid=True, gamma=3.0, lambda_focal=0.5), "dice + 0.5*focal(gamma=3)"),
        ("sum_dice_focal_softmax_2d_c3_labels", C3_2D, L3_2D, dict(softmax=True, to_onehot_y=True),
         "dice(activation=softmax) + focal(activation=sigmoid)"),
        ("sum_dice_focal_softmax_3d_c4_labels_alpha", C4_3D, ("labels", [1, 1, 2, 3, 3]),
         dict(softmax=True, to_onehot_y=True, alpha=0.25, lambda_dice=0.3, lambda_focal=0.7),
         "0.3*dice(activation=softmax) + 0.7*focal(activation=sigmoid,alpha=0.25)"),
        ("sum_dice_focal_softmax_2d_c3_weight", C3_2D, L3_2D,
         dict(softmax=True, to_onehot_y=True, weight=[0.5, 1.0, 2.0]),
         "dice(activation=softmax,weight=[0.5,1,2]) + focal(activation=sigmoid,weight=[0.5,1,2])"),
    ):
        r = rng_for(name)
        x = logits(r, shp)
        y, kind, tgt_t = make_target(r, tf, shp)

        def fn(t, kw=kw, tgt_t=tgt_t):
            dkw = {k: v for k, v in kw.items() if k in ("sigmoid", "softmax", "to_onehot_y", "weight")}
            d = DiceLoss(**dkw)(t, tgt_t)
            yy = region_target(tgt_t, t.shape[1])
            fcl = monai_focal_f64(t, yy, gamma=kw.get("gamma", 2.0), alpha=kw.get("alpha"), weight=kw.get("weight"))
            return kw.get("lambda_dice", 1.0) * d + kw.get("lambda_focal", 1.0) * fcl

        def check(v, kw=kw, x=x, tgt_t=tgt_t):
            mv = DiceFocalLoss(**kw)(T(x), tgt_t)
            close(mv, v, rtol=2e-5, atol=2e-6, what="DiceFocalLoss")
        fam.add(name, spec, f"monai.losses.DiceFocalLoss({', '.join(f'{k}={v!r}' for k, v in kw.items())}) "
                            "[focal part re-run in float64; MONAI's FocalLoss casts to float32]",
                x, y, kind, fn, check=check)
    # a difference and a bare sum of two formula losses
    name = "sum_tversky_minus_mcc_sigmoid_2d_c1"
    r = rng_for(name)
    x, y = logits(r, C1_2D), binary_mask(r, C1_2D)
    from segmentation_models_pytorch.losses import MCCLoss
    fam.add(name, "tversky(alpha=0.3,beta=0.7) - 0.25*mcc",
            "monai.losses.TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7)(x, y) - 0.25*smp MCCLoss()(sigmoid(x), y)",
            x, y, "mask",
            lambda t, y=y: monai.losses.TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7)(t, T(y))
            - 0.25 * MCCLoss()(torch.sigmoid(t), T(y)))


def build_region():
    fam = Family("region")
    gen_dice(fam)
    gen_generalized_dice(fam)
    gen_tversky(fam)
    gen_focal_tversky(fam)
    gen_sens_spec(fam)
    gen_log_cosh_dice(fam)
    gen_lovasz(fam)
    gen_mcc(fam)
    gen_combo(fam)
    gen_exp_log(fam)
    gen_sums(fam)
    return fam


# ============================================================================= boundary

def blob_mask(r, sp, nblobs=(1, 3)):
    """A binary image made of 1-2 random boxes (so that distance maps are meaningful)."""
    m = np.zeros(sp)
    for _ in range(r.integers(nblobs[0], nblobs[1])):
        lo = [int(r.integers(0, max(1, s - 1))) for s in sp]
        hi = [int(min(s, l + r.integers(1, max(2, s // 2 + 2)))) for l, s in zip(lo, sp)]
        m[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1.0
    return m


def blob_masks(r, shp):
    """[N,C,*sp] of blob images (each (n, c) independent)."""
    out = np.zeros(shp)
    for n in range(shp[0]):
        for c in range(shp[1]):
            out[n, c] = blob_mask(r, shp[2:])
    return out


def blob_labels(r, lshape, c):
    """[N,1,*sp] or [N,*sp] label map: background 0 with boxes of classes 1..c-1 painted on."""
    sp = lshape[2:] if len(lshape) >= 3 and lshape[1] == 1 else lshape[1:]
    lab = np.zeros([lshape[0]] + list(sp), dtype=np.int64)
    for n in range(lshape[0]):
        for k in range(1, c):
            lab[n][blob_mask(r, sp, (1, 2)) > 0] = k
    return lab.reshape(lshape)


def edt(m):
    from scipy.ndimage import distance_transform_edt
    return distance_transform_edt(m)


def two_sided(m):
    """MONAI HausdorffDTLoss.distance_field for one image: EDT(m)+EDT(!m), 0 if m is empty or full."""
    m = np.asarray(m) > 0.5
    if m.any() and not m.all():
        return edt(m) + edt(~m)
    return np.zeros(m.shape)


def signed_map(m):
    """Kervadec one_hot2dist: edt(!m)*!m - (edt(m)-1)*m; 0 for an empty or full mask."""
    m = np.asarray(m) > 0.5
    if not m.any() or m.all():
        return np.zeros(m.shape)
    return edt(~m) * (~m) - (edt(m) - 1) * m


def penalty_map(m):
    """Caliva penalty map: (max D+ - D+)/max D+ inside, (max D- - D-)/max D- outside; a side with max 0 gives 0."""
    m = np.asarray(m) > 0.5
    if not m.any() or m.all():
        return np.zeros(m.shape)
    dp, dm = edt(m), edt(~m)
    out = np.zeros(m.shape)
    mp, mm = dp[m].max(), dm[~m].max()
    if mp > 0:
        out[m] = (mp - dp[m]) / mp
    if mm > 0:
        out[~m] = (mm - dm[~m]) / mm
    return out


def per_image(fn, y):
    """apply fn to every [*sp] image of a [N,C,*sp] array"""
    out = np.zeros(y.shape)
    for n in range(y.shape[0]):
        for c in range(y.shape[1]):
            out[n, c] = fn(y[n, c])
    return out


def target_onehot_np(tgt, kind, shp):
    if kind == "labels":
        return onehot_np(tgt, shp[1])
    return np.asarray(tgt, dtype=np.float64)


def boundary_target(r, tform, shp):
    c = shp[1]
    if tform[0] == "labels":
        lab = blob_labels(r, tform[1], c)
        lab_m = lab if len(tform[1]) == len(shp) else lab[:, None]
        return lab, "labels", T(lab_m, torch.long)
    if tform[0] == "empty":
        y = np.zeros(shp)
    elif tform[0] == "full":
        y = np.ones(shp)
    else:
        y = blob_masks(r, shp)
    return y, "mask", T(y)


def hausdorff_f64(x, tgt_t, *, sigmoid=False, softmax=False, to_onehot_y=False, include_background=False, alpha=2.0,
                  batch=False, reduction="mean"):
    """MONAI 1.6 HausdorffDTLoss.forward in float64 (MONAI casts the distance fields to float32)."""
    p = x
    if sigmoid:
        p = torch.sigmoid(p)
    n = p.shape[1]
    if softmax and n > 1:
        p = torch.softmax(p, 1)
    t = tgt_t
    if to_onehot_y and n > 1:
        t = monai_one_hot(t, num_classes=n, dtype=torch.float64)
    if not include_background and n > 1:
        t, p = t[:, 1:], p[:, 1:]
    pn = p.detach().numpy()
    tn = t.detach().numpy().astype(np.float64)
    fp = T(per_image(two_sided, pn))
    ft = T(per_image(two_sided, tn))
    ax = list(range(2, p.dim()))
    if batch:
        ax = [0] + ax
    f = ((p - t) ** 2 * (fp ** alpha + ft ** alpha)).mean(dim=ax)
    if reduction == "none":
        return f
    return reduce(f, reduction)


def gen_hausdorff(fam: Family):
    from monai.losses import HausdorffDTLoss
    S2, S3 = [2, 1, 6, 7], [1, 1, 4, 5, 5]
    cases = [
        # name, spec args, ctor, shape, target form, activation, reduction
        ("hausdorff_dt_sigmoid_2d_c1", [], {}, S2, ("mask",), "sigmoid", "mean"),
        ("hausdorff_dt_sigmoid_3d_c1", [], {}, S3, ("mask",), "sigmoid", "mean"),
        ("hausdorff_dt_sigmoid_2d_c2_include_background", ["include_background=true"], {"include_background": True},
         [2, 2, 5, 6], ("mask",), "sigmoid", "mean"),
        ("hausdorff_dt_sigmoid_2d_c2_exclude_background", [], {}, [2, 2, 5, 6], ("mask",), "sigmoid", "mean"),
        ("hausdorff_dt_softmax_2d_c3_labels", [], {}, [2, 3, 5, 6], ("labels", [2, 1, 5, 6]), "softmax", "mean"),
        ("hausdorff_dt_softmax_2d_c3_include_background", ["include_background=true"], {"include_background": True},
         [2, 3, 5, 6], ("labels", [2, 5, 6]), "softmax", "mean"),
        ("hausdorff_dt_softmax_3d_c3_alpha1", ["alpha=1"], {"alpha": 1.0}, [1, 3, 3, 4, 5], ("labels", [1, 1, 3, 4, 5]),
         "softmax", "mean"),
        ("hausdorff_dt_sigmoid_2d_c1_alpha3_batch", ["alpha=3", "batch=true"], {"alpha": 3.0, "batch": True}, S2,
         ("mask",), "sigmoid", "mean"),
        ("hausdorff_dt_sigmoid_2d_c1_empty_target", [], {}, S2, ("empty",), "sigmoid", "mean"),
        ("hausdorff_dt_softmax_2d_c3_reduction_sum", [], {}, [2, 3, 5, 6], ("labels", [2, 1, 5, 6]), "softmax", "sum"),
        ("hausdorff_dt_softmax_2d_c3_include_background_reduction_none", ["include_background=true"],
         {"include_background": True}, [2, 3, 5, 6], ("labels", [2, 1, 5, 6]), "softmax", "none"),
    ]
    for name, sargs, ctor, shp, tf, act, red in cases:
        r = rng_for(name)
        x = logits(r, shp)
        tgt, kind, tgt_t = boundary_target(r, tf, shp)
        kw = dict(ctor)
        kw.update(act_kwargs(act))
        if kind == "labels":
            kw["to_onehot_y"] = True
        if red != "mean":
            kw["reduction"] = red
        c_eff = shp[1] if (kw.get("include_background") or shp[1] == 1) else shp[1] - 1
        vs = [shp[0], c_eff] if red == "none" else None

        def check(v, kw=kw, x=x, tgt_t=tgt_t, vs=vs):
            mv = HausdorffDTLoss(**kw)(T(x), tgt_t)
            close(mv.reshape(v.shape), v, rtol=1e-5, atol=1e-6, what="HausdorffDTLoss")
        fam.add(name, spec_of("hausdorff_dt", act_spec(act, kind, shp[1]), *sargs, red_spec(red)),
                f"monai.losses.HausdorffDTLoss({', '.join(f'{k}={v!r}' for k, v in kw.items())}) "
                "[re-run in float64 with scipy EDT: MONAI casts the distance fields to float32; none stored as [N,C]]",
                x, tgt, kind, lambda t, kw=kw, tgt_t=tgt_t: hausdorff_f64(t, tgt_t, **kw), reduction=red,
                value_shape=vs, check=check)


def gen_cldice(fam: Family):
    from monai.losses import SoftclDiceLoss
    cases = [
        ("cldice_sigmoid_2d_c1", [], {}, [2, 1, 7, 8], ("mask",), "sigmoid", "mean"),
        ("cldice_sigmoid_3d_c1", [], {}, [1, 1, 4, 5, 6], ("mask",), "sigmoid", "mean"),
        ("cldice_sigmoid_2d_c1_iter5", ["iter=5"], {"iter_": 5}, [2, 1, 7, 8], ("mask",), "sigmoid", "mean"),
        ("cldice_sigmoid_2d_c1_iter0", ["iter=0"], {"iter_": 0}, [2, 1, 6, 7], ("mask",), "sigmoid", "mean"),
        ("cldice_probs_2d_c1", [], {}, [2, 1, 6, 7], ("mask",), "none", "mean"),
        ("cldice_softmax_2d_c3_labels", [], {}, [2, 3, 5, 6], ("labels", [2, 1, 5, 6]), "softmax", "mean"),
        ("cldice_softmax_2d_c3_exclude_background", ["include_background=false"], {"include_background": False},
         [2, 3, 5, 6], ("labels", [2, 5, 6]), "softmax", "mean"),
        ("cldice_sigmoid_2d_c1_reduction_sum", [], {}, [2, 1, 6, 7], ("mask",), "sigmoid", "sum"),
        ("cldice_sigmoid_2d_c1_reduction_none", [], {}, [2, 1, 6, 7], ("mask",), "sigmoid", "none"),
    ]
    for name, sargs, ctor, shp, tf, act, red in cases:
        r = rng_for(name)
        x = probs(r, shp) if act == "none" else logits(r, shp)
        tgt, kind, tgt_t = boundary_target(r, tf, shp)
        kw = dict(ctor)
        kw.update(act_kwargs(act))
        if kind == "labels":
            kw["to_onehot_y"] = True
        if red != "mean":
            kw["reduction"] = red
        fam.add(name, spec_of("cldice", act_spec(act, kind, shp[1]), *sargs, red_spec(red)),
                f"monai.losses.SoftclDiceLoss({', '.join(f'{k}={v!r}' for k, v in kw.items())})(input, target) "
                "(sums over channels AND space per sample; 'none' is per sample, shape [N])",
                x, tgt, kind, lambda t, kw=kw, tgt_t=tgt_t: SoftclDiceLoss(**kw)(t, tgt_t), reduction=red)


def gen_boundary_loss(fam: Family):
    cases = [
        ("boundary_sigmoid_2d_c1", [], [2, 1, 6, 7], ("mask",), "sigmoid", False),
        ("boundary_sigmoid_3d_c1", [], [1, 1, 4, 5, 5], ("mask",), "sigmoid", False),
        ("boundary_sigmoid_2d_c3_exclude_background", [], [2, 3, 5, 6], ("mask",), "sigmoid", False),
        ("boundary_sigmoid_2d_c3_include_background", ["include_background=true"], [2, 3, 5, 6], ("mask",), "sigmoid",
         True),
        ("boundary_softmax_2d_c3_labels", [], [2, 3, 5, 6], ("labels", [2, 1, 5, 6]), "softmax", False),
        ("boundary_softmax_3d_c3_labels_include_background", ["include_background=true"], [1, 3, 3, 4, 5],
         ("labels", [1, 3, 4, 5]), "softmax", True),
        ("boundary_probs_2d_c1", [], [2, 1, 6, 7], ("mask",), "none", False),
        ("boundary_sigmoid_2d_c1_empty_target", [], [2, 1, 6, 7], ("empty",), "sigmoid", False),
    ]
    for name, sargs, shp, tf, act, incl in cases:
        r = rng_for(name)
        x = probs(r, shp) if act == "none" else logits(r, shp)
        tgt, kind, _ = boundary_target(r, tf, shp)
        y = target_onehot_np(tgt, kind, shp)
        phi = per_image(signed_map, y)
        c0 = 0 if (incl or shp[1] == 1) else 1

        def fn(t, act=act, phi=phi, c0=c0):
            p = region_probs(t, act)
            return (p[:, c0:] * T(phi[:, c0:])).mean()
        fam.add(name, spec_of("boundary", act_spec(act, kind, shp[1]), *sargs),
                "mean over (n, c >= c0, space) of p*phi, phi = scipy: edt(!y)*!y - (edt(y)-1)*y per image and channel "
                "(0 for an empty or full channel); c0 = 0 if include_background or C == 1 else 1",
                x, tgt, kind, fn)


def gen_distance_penalized_ce(fam: Family):
    cases = [
        ("distance_penalized_ce_sigmoid_2d_c1", [2, 1, 6, 7], ("mask",), "mean"),
        ("distance_penalized_ce_sigmoid_3d_c1", [1, 1, 4, 5, 5], ("mask",), "mean"),
        ("distance_penalized_ce_sigmoid_2d_c3", [2, 3, 5, 6], ("mask",), "mean"),
        ("distance_penalized_ce_softmax_2d_c2_labels", [2, 2, 6, 7], ("labels", [2, 1, 6, 7]), "mean"),
        ("distance_penalized_ce_softmax_3d_c2_labels", [1, 2, 4, 5, 5], ("labels", [1, 4, 5, 5]), "mean"),
        ("distance_penalized_ce_softmax_2d_c3_per_class_map", [2, 3, 5, 6], ("labels", [2, 1, 5, 6]), "mean"),
        ("distance_penalized_ce_sigmoid_2d_c1_empty_target", [2, 1, 6, 7], ("empty",), "mean"),
        ("distance_penalized_ce_sigmoid_2d_c1_reduction_sum", [2, 1, 6, 7], ("mask",), "sum"),
        ("distance_penalized_ce_softmax_2d_c2_reduction_none", [2, 2, 6, 7], ("labels", [2, 1, 6, 7]), "none"),
    ]
    for name, shp, tf, red in cases:
        r = rng_for(name)
        x = logits(r, shp)
        tgt, kind, tgt_t = boundary_target(r, tf, shp)
        y = target_onehot_np(tgt, kind, shp)
        phi = per_image(penalty_map, y)
        if kind == "labels":
            def fn(t, y=y, phi=phi, red=red):
                w = (T(y) * (1 + T(phi))).sum(1)  # 1 + Phi_{true class}(x)
                ce = -(torch.log_softmax(t, 1) * T(y)).sum(1)
                return reduce(w * ce, red)
            orc = ("per pixel (1 + Phi_t(x)) * CE(x), Phi_k = penalty map (scipy EDT) of the one-hot channel k of the "
                   "sample, t the true class; mean over N*S (for C = 2, Phi_0 = Phi_1)")
        else:
            def fn(t, y=y, phi=phi, red=red):
                return reduce((1 + T(phi)) * F.binary_cross_entropy_with_logits(t, T(y), reduction="none"), red)
            orc = ("(1 + Phi) * BCEWithLogits(reduction='none'), Phi = penalty map (scipy EDT) per image and channel; "
                   "mean over N*C*S")
        fam.add(name, spec_of("distance_penalized_ce", red_spec(red)), orc + f"; reduction {red}", x, tgt, kind, fn,
                reduction=red)


# ----------------------------------------------------------------------------- shape_aware (U-Net weight map)

def full_structure(ndim):
    from scipy.ndimage import generate_binary_structure
    return generate_binary_structure(ndim, ndim)


def cell_mask(r, sp, ncells=(3, 7), side=(2, 4)):
    """A binary image of a few small boxes ("cells"), some touching or merging, most apart."""
    m = np.zeros(sp)
    for _ in range(int(r.integers(ncells[0], ncells[1]))):
        lo = [int(r.integers(0, s)) for s in sp]
        hi = [min(s, a + int(r.integers(side[0], side[1]))) for a, s in zip(lo, sp)]
        m[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1.0
    return m


def cell_labels(r, lshape, c):
    """[N,1,*sp] or [N,*sp] label map: background 0 with cells of random classes 1..c-1 painted on."""
    sp = lshape[2:] if len(lshape) >= 3 and lshape[1] == 1 else lshape[1:]
    lab = np.zeros([lshape[0]] + list(sp), dtype=np.int64)
    for n in range(lshape[0]):
        for _ in range(int(r.integers(3, 7))):
            box = cell_mask(r, sp, (1, 2)) > 0
            lab[n][box] = int(r.integers(1, c))
    return lab.reshape(lshape)


def unet_weight_map(fg, w0, sigma, balanced):
    """The U-Net weight map of one binary image, straight from the definition (Ronneberger et al. 2015): the
    instances are the connected components of fg (scipy.ndimage.label, full connectivity); one full-image scipy
    EDT per instance, the two smallest per pixel; w = w_c + w0*exp(-(d1+d2)^2/(2 sigma^2)) on background pixels
    (no cut-off), no border term with fewer than two instances; w_c = N/(2 N_k) per class (0.5 everywhere for a
    single class) or 1."""
    from scipy.ndimage import label as nd_label
    fg = np.asarray(fg) > 0.5
    n = fg.size
    if balanced:
        nf, nb = int(fg.sum()), int((~fg).sum())
        wc = np.where(fg, n / (2.0 * max(nf, 1)), n / (2.0 * max(nb, 1)))
    else:
        wc = np.ones(fg.shape)
    inst, k = nd_label(fg, structure=full_structure(fg.ndim))
    if k < 2:
        return wc
    d = np.stack([edt(inst != i) for i in range(1, k + 1)])
    d.sort(axis=0)
    return wc + w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma ** 2)) * (~fg)


def bce_map(t, y, act):
    """Per-element BCE of logits (sigmoid) or probabilities (none, torch's log clamp at -100)."""
    if act == "none":
        return F.binary_cross_entropy(t, T(y), reduction="none")
    return F.binary_cross_entropy_with_logits(t, T(y), reduction="none")


def reduce_batch(l, red, n):
    return l.sum() / n if red == "batch_mean" else reduce(l, red)


def gen_shape_aware(fam: Family):
    S2, S3 = [2, 1, 12, 13], [1, 1, 5, 7, 8]
    cases = [
        # name, spec args, (w0, sigma, balanced), shape, target form, activation, reduction, prediction form
        ("shape_aware_sigmoid_2d_c1", [], (10.0, 5.0, True), S2, ("cells",), "sigmoid", "mean", "logits"),
        ("shape_aware_sigmoid_2d_c1_w0_5_sigma_2", ["w0=5", "sigma=2"], (5.0, 2.0, True), [2, 1, 16, 15],
         ("cells",), "sigmoid", "mean", "logits"),
        ("shape_aware_sigmoid_2d_c1_sigma_1.5_class_weight_none", ["sigma=1.5", "class_weight=none"],
         (10.0, 1.5, False), S2, ("cells",), "sigmoid", "mean", "logits"),
        ("shape_aware_sigmoid_2d_c3", [], (10.0, 5.0, True), [2, 3, 9, 10], ("cells",), "sigmoid", "mean", "logits"),
        ("shape_aware_sigmoid_3d_c1", [], (10.0, 5.0, True), S3, ("cells",), "sigmoid", "mean", "logits"),
        ("shape_aware_sigmoid_3d_c2_w0_3_sigma_2_class_weight_none", ["w0=3", "sigma=2", "class_weight=none"],
         (3.0, 2.0, False), [2, 2, 4, 6, 7], ("cells",), "sigmoid", "mean", "logits"),
        ("shape_aware_sigmoid_2d_c1_w0_0", ["w0=0"], (0.0, 5.0, True), S2, ("cells",), "sigmoid", "mean", "logits"),
        ("shape_aware_sigmoid_2d_c1_soft_target", [], (10.0, 5.0, True), S2, ("soft_cells",), "sigmoid", "mean",
         "logits"),
        ("shape_aware_sigmoid_2d_c1_saturated", [], (10.0, 5.0, True), S2, ("cells",), "sigmoid", "mean",
         "saturated"),
        ("shape_aware_sigmoid_2d_c1_one_cell", [], (10.0, 5.0, True), S2, ("one_cell",), "sigmoid", "mean",
         "logits"),
        ("shape_aware_sigmoid_2d_c1_empty_target", [], (10.0, 5.0, True), S2, ("empty",), "sigmoid", "mean",
         "logits"),
        ("shape_aware_sigmoid_2d_c1_full_target", [], (10.0, 5.0, True), S2, ("full",), "sigmoid", "mean",
         "logits"),
        ("shape_aware_sigmoid_2d_c1_reduction_sum", [], (10.0, 5.0, True), S2, ("cells",), "sigmoid", "sum",
         "logits"),
        ("shape_aware_sigmoid_2d_c3_reduction_batch_mean", [], (10.0, 5.0, True), [2, 3, 9, 10], ("cells",),
         "sigmoid", "batch_mean", "logits"),
        ("shape_aware_sigmoid_2d_c1_reduction_none", [], (10.0, 5.0, True), S2, ("cells",), "sigmoid", "none",
         "logits"),
        ("shape_aware_probs_2d_c1", [], (10.0, 5.0, True), S2, ("cells",), "none", "mean", "probs"),
        ("shape_aware_softmax_2d_c3_labels", [], (10.0, 5.0, True), [2, 3, 12, 13], ("labels", [2, 1, 12, 13]),
         "softmax", "mean", "logits"),
        ("shape_aware_softmax_2d_c4_labels_nhw_w0_8_sigma_3", ["w0=8", "sigma=3"], (8.0, 3.0, True),
         [2, 4, 11, 12], ("labels", [2, 11, 12]), "softmax", "mean", "logits"),
        ("shape_aware_softmax_3d_c3_labels_class_weight_none", ["class_weight=none"], (10.0, 5.0, False),
         [1, 3, 5, 6, 7], ("labels", [1, 5, 6, 7]), "softmax", "mean", "logits"),
        ("shape_aware_softmax_2d_c3_onehot_mask", [], (10.0, 5.0, True), [2, 3, 10, 11], ("onehot",), "softmax",
         "mean", "logits"),
        ("shape_aware_softmax_2d_c3_labels_reduction_sum", [], (10.0, 5.0, True), [2, 3, 10, 11],
         ("labels", [2, 1, 10, 11]), "softmax", "sum", "logits"),
        ("shape_aware_softmax_2d_c3_labels_reduction_none", [], (10.0, 5.0, True), [2, 3, 10, 11],
         ("labels", [2, 1, 10, 11]), "softmax", "none", "logits"),
    ]
    for name, sargs, (w0, sigma, balanced), shp, tf, act, red, pform in cases:
        r = rng_for(name)
        x = make_pred(r, pform, shp)
        sp = shp[2:]
        if tf[0] == "labels":
            tgt = cell_labels(r, tf[1], shp[1])
            kind = "labels"
            lab = tgt if len(tf[1]) == len(shp) - 1 else tgt[:, 0]
            y = onehot_np(lab, shp[1])
        elif tf[0] == "onehot":
            lab = cell_labels(r, [shp[0]] + sp, shp[1])
            tgt = y = onehot_np(lab, shp[1])
            kind = "mask"
        else:
            kind = "mask"
            if tf[0] == "cells":
                tgt = np.stack([np.stack([cell_mask(r, sp) for _ in range(shp[1])]) for _ in range(shp[0])])
            elif tf[0] == "soft_cells":
                m = np.stack([np.stack([cell_mask(r, sp) for _ in range(shp[1])]) for _ in range(shp[0])])
                # soft values on both sides of 0.5: the map sees m, the BCE the soft values
                tgt = f32(np.where(m > 0, r.uniform(0.55, 1.0, size=shp), r.uniform(0.0, 0.45, size=shp)))
            elif tf[0] == "one_cell":
                tgt = np.zeros(shp)
                tgt[..., 3:7, 4:8] = 1.0
            elif tf[0] == "empty":
                tgt = np.zeros(shp)
            elif tf[0] == "full":
                tgt = np.ones(shp)
            else:
                raise ValueError(tf)
            y = tgt
        spec = spec_of("shape_aware", act_spec(act, kind, shp[1]), *sargs, red_spec(red))
        cw = "balanced" if balanced else "none"
        if act == "softmax":
            # one map per sample, from the foreground label != 0 (the background channel < 0.5)
            w = np.stack([unet_weight_map(y[n, 0] < 0.5, w0, sigma, balanced) for n in range(shp[0])])

            def fn(t, y=y, w=w, red=red, n=shp[0]):
                ce = -(torch.log_softmax(t, 1) * T(y)).sum(1)
                return reduce_batch(ce * T(w), red, n)
            orc = (f"(torch CE(reduction='none') * W){'' if red == 'none' else '.' + red + '()'}, W [N,*spatial] = U-Net "
                   f"map (w0={fmt_num(w0)}, sigma={fmt_num(sigma)}, class_weight={cw}) of label != 0 per sample: scipy "
                   "label (full connectivity), one scipy EDT per instance, border term on background pixels; "
                   "'none' has shape [N,*spatial]; mean over N*S")
        else:
            w = per_image(lambda m: unet_weight_map(m, w0, sigma, balanced), y)

            def fn(t, y=y, w=w, red=red, act=act, n=shp[0]):
                return reduce_batch(bce_map(t, y, act) * T(w), red, n)
            orc = (f"({'BCELoss' if act == 'none' else 'BCEWithLogitsLoss'}(reduction='none') * W)"
                   f"{'' if red == 'none' else '.' + red + '()'}, W = U-Net map (w0={fmt_num(w0)}, "
                   f"sigma={fmt_num(sigma)}, class_weight={cw}) of target > 0.5 per image and channel: scipy label "
                   "(full connectivity), one scipy EDT per instance, border term on background pixels")
        fam.add(name, spec, orc.replace(".batch_mean()", ".sum()/N"), x, tgt, kind, fn, reduction=red)


# ----------------------------------------------------------------------------- contour_ce

def surface(m):
    """The boundary every segloss loss and metric uses: foreground voxels that a binary erosion with the
    face-connected structuring element removes, voxels outside the array counting as background
    (scipy binary_erosion with border_value=0, as MONAI's get_mask_edges)."""
    from scipy.ndimage import binary_erosion, generate_binary_structure
    m = np.asarray(m) > 0.5
    return m & ~binary_erosion(m, structure=generate_binary_structure(m.ndim, 1), border_value=0)


def contour_distance(pm, tm):
    """E: on the surface of the predicted mask pm, the scipy EDT distance to the nearest surface voxel of the target
    mask tm; 0 elsewhere, and 0 everywhere when the target has no surface (it is empty)."""
    tb, pb = surface(tm), surface(pm)
    e = np.where(pb, edt(~tb), 0.0) if tb.any() else np.zeros(np.shape(pm))
    check_contour_distance(pm, tm, pb, tb, e)
    return e


def check_contour_distance(pm, tm, pb, tb, e):
    """Cross-checks: the surfaces against MONAI's get_mask_edges (binary_erosion(m) ^ m), E against the brute-force
    distances between the two surfaces' voxels."""
    from monai.metrics.utils import get_mask_edges
    pm, tm = np.asarray(pm) > 0.5, np.asarray(tm) > 0.5
    if pm.any() and tm.any():
        ep, et = get_mask_edges(pm, tm, crop=False)
        if not (np.array_equal(ep, pb) and np.array_equal(et, tb)):
            raise AssertionError("cross-check failed: surface vs monai get_mask_edges")
    want = np.zeros(pm.shape)
    tp = np.argwhere(tb)
    if len(tp):
        for idx in np.argwhere(pb):
            want[tuple(idx)] = np.sqrt(((tp - idx) ** 2).sum(axis=1).min())
    close(e, want, rtol=0, atol=1e-12, what="contour distance vs brute force")


def away_from_threshold(x, at, gap=1e-3):
    """Moves values within gap of the threshold to at +- gap (the thresholded mask must not depend on rounding or
    on a finite-difference step)."""
    x = np.asarray(x, dtype=np.float64)
    d = x - at
    return f32(np.where(np.abs(d) < gap, at + np.where(d < 0, -gap, gap), x))


def clear_argmax(x, gap=1e-3):
    """Raises the largest logit of every pixel whose two largest are within gap (a unique, stable argmax)."""
    x = np.asarray(x, dtype=np.float64).copy()
    s = np.sort(x, axis=1)
    tight = (s[:, -1] - s[:, -2]) < gap
    am = np.argmax(x, axis=1)
    oh = np.moveaxis(np.eye(x.shape[1])[am], -1, 1) > 0
    x = np.where(oh & tight[:, None], x + 2 * gap, x)
    return f32(x)


def contour_pred(r, y, act):
    """Predictions near the target: the target shifted by one pixel along the last axis, blurred by noise."""
    base = np.roll(y, 1, axis=-1) * 2.0 - 1.0
    if act == "none":
        return away_from_threshold(np.clip(0.5 + 0.3 * base + r.uniform(-0.35, 0.35, size=y.shape), 0.02, 0.98), 0.5)
    x = f32(2.5 * base + r.normal(0.0, 1.5, size=y.shape))
    return clear_argmax(x) if act == "softmax" else away_from_threshold(x, 0.0)


def gen_contour_ce(fam: Family):
    S2, S3 = [2, 1, 9, 10], [1, 1, 5, 6, 7]
    cases = [
        # name, spec args, shape, target form, activation, reduction
        ("contour_ce_sigmoid_2d_c1", [], S2, ("mask",), "sigmoid", "mean"),
        ("contour_ce_sigmoid_3d_c1", [], S3, ("mask",), "sigmoid", "mean"),
        ("contour_ce_sigmoid_2d_c3", [], [2, 3, 8, 9], ("mask",), "sigmoid", "mean"),
        ("contour_ce_sigmoid_3d_c2", [], [2, 2, 4, 5, 6], ("mask",), "sigmoid", "mean"),
        ("contour_ce_sigmoid_2d_c1_edge_target", [], S2, ("edge",), "sigmoid", "mean"),
        ("contour_ce_sigmoid_2d_c1_full_target", [], S2, ("full",), "sigmoid", "mean"),
        ("contour_ce_sigmoid_2d_c1_empty_target", [], S2, ("empty",), "sigmoid", "mean"),
        ("contour_ce_sigmoid_2d_c1_noise", [], S2, ("mask",), "sigmoid", "mean"),
        ("contour_ce_probs_2d_c1", [], S2, ("mask",), "none", "mean"),
        ("contour_ce_sigmoid_2d_c1_reduction_sum", [], S2, ("mask",), "sigmoid", "sum"),
        ("contour_ce_sigmoid_2d_c3_reduction_batch_mean", [], [2, 3, 8, 9], ("mask",), "sigmoid", "batch_mean"),
        ("contour_ce_sigmoid_2d_c1_reduction_none", [], S2, ("mask",), "sigmoid", "none"),
        ("contour_ce_softmax_2d_c3_labels", [], [2, 3, 9, 10], ("labels", [2, 1, 9, 10]), "softmax", "mean"),
        ("contour_ce_softmax_3d_c3_labels", [], [1, 3, 4, 5, 6], ("labels", [1, 4, 5, 6]), "softmax", "mean"),
        ("contour_ce_softmax_2d_c4_labels_nhw", [], [2, 4, 8, 9], ("labels", [2, 8, 9]), "softmax", "mean"),
        ("contour_ce_softmax_2d_c3_onehot_mask", [], [2, 3, 8, 9], ("onehot",), "softmax", "mean"),
        ("contour_ce_softmax_2d_c3_labels_reduction_sum", [], [2, 3, 8, 9], ("labels", [2, 1, 8, 9]), "softmax",
         "sum"),
        ("contour_ce_softmax_2d_c3_labels_reduction_none", [], [2, 3, 8, 9], ("labels", [2, 1, 8, 9]), "softmax",
         "none"),
    ]
    for name, sargs, shp, tf, act, red in cases:
        r = rng_for(name)
        c, sp = shp[1], shp[2:]
        if tf[0] in ("labels", "onehot"):
            lshape = tf[1] if tf[0] == "labels" else [shp[0]] + sp
            lab = blob_labels(r, lshape, c)
            lab_n = lab if len(lshape) == len(shp) - 1 else lab[:, 0]
            y = onehot_np(lab_n, c)
            tgt, kind = (lab, "labels") if tf[0] == "labels" else (y, "mask")
        else:
            kind = "mask"
            if tf[0] == "edge":
                # boxes cut by the array's edge: their surface runs along the border
                y = np.zeros(shp)
                y[0, ..., : sp[-2] // 2, :] = 1.0
                y[1, ..., 2:, sp[-1] - 4:] = 1.0
            else:
                y, _, _ = boundary_target(r, tf, shp)
            tgt = y
        if "noise" in name:
            x = away_from_threshold(logits(r, shp), 0.0)
        else:
            x = contour_pred(r, y, act)
        spec = spec_of("contour_ce", act_spec(act, kind, c), *sargs, red_spec(red))
        if act == "softmax":
            am = np.argmax(x, axis=1)  # ties: the lowest class (none occur: clear_argmax)
            pm = np.moveaxis(np.eye(c)[am], -1, 1)
            e = np.zeros(y.shape)
            for n in range(shp[0]):
                for k in range(c):
                    e[n, k] = contour_distance(pm[n, k], y[n, k])
            w = 1.0 + e.max(axis=1)

            def fn(t, y=y, w=w, red=red, n=shp[0]):
                ce = -(torch.log_softmax(t, 1) * T(y)).sum(1)
                return reduce_batch(ce * T(w), red, n)
            orc = ("(torch CE(reduction='none') * W), W = 1 + max over classes k of E_k, E_k = on the surface of "
                   "(argmax_c x == k) the scipy EDT distance to the surface of target class k (0 if the class is absent), "
                   "surface = m & ~binary_erosion(m, face structure, border_value=0); 'none' has shape [N,*spatial]")
        else:
            pm = (x > 0.0) if act == "sigmoid" else (x > 0.5)
            e = np.zeros(y.shape)
            for n in range(shp[0]):
                for k in range(c):
                    e[n, k] = contour_distance(pm[n, k], y[n, k])
            w = 1.0 + e

            def fn(t, y=y, w=w, red=red, act=act, n=shp[0]):
                return reduce_batch(bce_map(t, y, act) * T(w), red, n)
            orc = (f"({'BCELoss' if act == 'none' else 'BCEWithLogitsLoss'}(reduction='none') * (1 + E)), E = on the "
                   "surface of the predicted mask (p > 0.5) the scipy EDT distance to the target's surface (0 for an "
                   "empty target), per image and channel; surface = m & ~binary_erosion(m, face structure, "
                   "border_value=0)")
        orc += f"; reduction {red.replace('batch_mean', 'sum/N')}"
        fam.add(name, spec, orc, x, tgt, kind, fn, reduction=red)


def build_boundary():
    fam = Family("boundary")
    gen_hausdorff(fam)
    gen_cldice(fam)
    gen_boundary_loss(fam)
    gen_distance_penalized_ce(fam)
    gen_shape_aware(fam)
    gen_contour_ce(fam)
    return fam


FAMILIES = {"distribution": build_distribution, "region": build_region, "boundary": build_boundary}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("family", nargs="*", default=["all"], help="|".join(list(FAMILIES) + ["all"]))
    a = ap.parse_args()
    fams = list(FAMILIES) if "all" in a.family else a.family
    for f in fams:
        if f not in FAMILIES:
            sys.exit(f"unknown family {f}; one of {list(FAMILIES)}")
        FAMILIES[f]().write()


if __name__ == "__main__":
    main()
