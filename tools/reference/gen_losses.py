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
    """DESIGN bce: -[b*y'*ln p + (1-y')*ln(1-p)], y' smoothed; ignore_index excluded from sum and denominator."""
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
                "sum(l*keep)/sum(keep)  (DESIGN convention; smp SoftBCEWithLogitsLoss divides by all elements)",
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

    reduction='sum': plain_sum=True gives DESIGN's plain sum; False reproduces MONAI (mean over spatial, then sum).
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
            oracle += (" -- value is the PLAIN sum of the reduction='none' tensor (DESIGN); MONAI's own 'sum' "
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


FAMILIES = {"distribution": build_distribution}


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
