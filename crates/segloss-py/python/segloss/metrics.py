"""Drop-in replacements for ``monai.metrics``' functional metrics, computed by segloss-core.

``compute_dice``, ``compute_iou``, ``compute_hausdorff_distance``, ``compute_average_surface_distance`` and
``compute_surface_dice`` take MONAI 1.x's arguments, names and defaults and return the same ``[B, C]``
values, empty masks included:

- Dice / IoU with ``ignore_empty=True``: NaN where the target channel is empty; with ``False``: 1 when
  both are empty, 0 when only the target is.
- Hausdorff distance and average surface distance: NaN when both masks are empty, ``inf`` when exactly
  one is (NaN for a percentile Hausdorff distance).
- Surface Dice: NaN when both masks are empty, 0 when exactly one is.

Inputs are one-hot ``[B, C, *spatial]`` arrays (1 to 3 spatial axes) as NumPy arrays or torch tensors;
the result is of the input's kind (a ``float32`` NumPy array, or a ``torch.float`` tensor on
``y_pred``'s device). torch is only imported when a tensor is given. As in MONAI, the surface metrics
take a voxel as foreground when it equals 1 (or is ``True``); Dice and IoU use the values.

Surfaces and distances (see ``segloss.surface``): the surface of a mask is the set of its voxels that a
face-connected binary erosion removes; ``d(P->G)`` are the Euclidean distances (spacing units) from each
surface voxel of the prediction to the nearest surface voxel of the target.

- Hausdorff: ``max(max d(P->G), max d(G->P))`` (``directed``: ``max d(P->G)``); with ``percentile=q`` the
  q-th percentile of each direction (linear interpolation), then the larger.
- Average surface distance: ``mean d(P->G)`` (``symmetric``: the mean over both directions together).
- Surface Dice at tolerance t: ``(#{d(P->G) <= t} + #{d(G->P) <= t}) / (|d(P->G)| + |d(G->P)|)``.

The distances are rounded to float32 and the percentiles interpolated in float32, as MONAI does; the
sorted distances of the last 8 mask pairs are kept (keyed by the masks' contents and the spacing), so
asking for several of these metrics on the same masks computes the distances once.
``compute_surface_metrics`` (not in MONAI) computes the Hausdorff distance, HD95, the symmetric average
surface distance and the surface Dice of each pair in one pass of the native kernel (its HD95 is
interpolated in float64: it can differ from MONAI's in the sixth significant digit).

``distance_metric="chessboard"``/``"taxicab"``, ``use_subvoxels=True`` and Dice's ``per_component=True``
are delegated to MONAI itself (which must then be installed).
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from . import _native

__all__ = [
    "compute_surface_metrics",
    "compute_dice",
    "compute_iou",
    "compute_hausdorff_distance",
    "compute_average_surface_distance",
    "compute_surface_dice",
]


def _is_tensor(x) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "detach")


def _numpy(x) -> np.ndarray:
    if _is_tensor(x):
        x = x.detach()
        if x.dtype.is_floating_point and x.dtype not in _torch_np_floats():
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _torch_np_floats():
    import torch

    return (torch.float32, torch.float64, torch.float16)


def _result(values: np.ndarray, like):
    """``values`` (float32, ``[B, C]``) as the kind of ``like``."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if _is_tensor(like):
        import torch

        return torch.from_numpy(values).to(like.device)
    return values


def _monai(name: str, *args, **kwargs):
    try:
        import torch
        from monai import metrics
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise NotImplementedError(
            f"{name} with these options is computed by MONAI, which is not installed ({e})"
        ) from None
    conv = [torch.as_tensor(a) if isinstance(a, np.ndarray) else a for a in args]
    out = getattr(metrics, name)(*conv, **kwargs)
    return out if _is_tensor(args[0]) else out.cpu().numpy()


def _ignore_background(p: np.ndarray, g: np.ndarray):
    g = g[:, 1:] if g.shape[1] > 1 else g
    p = p[:, 1:] if p.shape[1] > 1 else p
    return p, g


def _ignore_mask(y: np.ndarray, ignore_index):
    """MONAI's ``create_ignore_mask``: ``[B, 1, *spatial]``, 1 = valid, or ``None``."""
    if ignore_index is None:
        return None
    if y.shape[1] == 1:
        return (y != ignore_index).astype(np.float32)
    if 0 <= ignore_index < y.shape[1]:
        return 1.0 - y[:, ignore_index:ignore_index + 1].astype(np.float32)
    return (y.sum(axis=1, keepdims=True) > 0).astype(np.float32)


def _prepare_spacing(spacing, batch_size: int, img_dim: int):
    """MONAI's ``prepare_spacing``: one spacing (``None`` or a list of floats) per batch item."""
    def one(s):
        if s is None:
            return None
        if isinstance(s, (int, float, np.integer, np.floating)):
            return [float(s)] * img_dim
        s = [float(v) for v in np.asarray(s, dtype=np.float64).reshape(-1)]
        if len(s) == 1:
            return s * img_dim
        if len(s) != img_dim:
            raise ValueError(f"spacing {s} has {len(s)} values for a {img_dim}D image: expected {img_dim}")
        return s

    if spacing is None or isinstance(spacing, (int, float, np.integer, np.floating)):
        return [one(spacing)] * batch_size
    if isinstance(spacing, (Sequence, np.ndarray)):
        items = list(spacing)
        if any(not isinstance(s, type(items[0])) for s in items):
            raise ValueError(f"if `spacing` is a sequence, its elements should be of same type, got {spacing}.")
        if isinstance(items[0], (Sequence, np.ndarray)):
            if len(items) != batch_size:
                raise ValueError(
                    "if `spacing` is a sequence of sequences, "
                    f"the outer sequence should have same length as batch size ({batch_size}), got {spacing}."
                )
            return [one(s) for s in items]
        if len(items) != img_dim:
            raise ValueError(
                "if `spacing` is a sequence of elements, "
                f"it should have same length as image dimension ({img_dim}), got {spacing}."
            )
        return [one(items)] * batch_size
    raise ValueError(f"`spacing` should either be a number or a sequence of numbers, got {spacing}.")


def _binary(x: np.ndarray) -> np.ndarray:
    """MONAI's ``get_mask_edges`` foreground: the value itself for bool, ``== 1`` otherwise."""
    return x if x.dtype == np.bool_ else (x == 1)


def _pair(y_pred, y, include_background: bool):
    p, g = _numpy(y_pred), _numpy(y)
    if not include_background:
        p, g = _ignore_background(p, g)
    if g.shape != p.shape:
        raise ValueError(f"y_pred and y should have same shapes, got {tuple(p.shape)} and {tuple(g.shape)}.")
    if p.ndim < 3 or p.ndim > 5:
        raise ValueError(
            f"y_pred of shape {tuple(p.shape)}: expected [B, C, *spatial] with 1 to 3 spatial dims"
        )
    return p, g


def _channel(p: np.ndarray, g: np.ndarray):
    return np.ascontiguousarray(_binary(p)), np.ascontiguousarray(_binary(g))


def _quantile(s: np.ndarray, percentile: float) -> float:
    """``torch.quantile(s, percentile / 100)`` of sorted float32 distances as MONAI computes it: the rank
    and the linear interpolation in float32 (NaN when the values are all inf)."""
    if s.size == 0:
        return math.nan
    rank = np.float32(percentile / 100) * np.float32(s.size - 1)
    lo = int(np.floor(rank))
    hi = min(int(np.ceil(rank)), s.size - 1)
    w = np.float32(rank - np.float32(lo))
    a, b = s[lo], s[hi]
    with np.errstate(invalid="ignore"):
        return float(a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (np.float32(1) - w))


def compute_hausdorff_distance(
    y_pred,
    y,
    include_background: bool = False,
    distance_metric: str = "euclidean",
    percentile: float | None = None,
    directed: bool = False,
    spacing=None,
    ignore_index: int | None = None,
):
    """Hausdorff distance per batch item and class, as ``monai.metrics.compute_hausdorff_distance``.

    ``hd = max(max d(P->G), max d(G->P))`` (``directed``: ``max d(P->G)``); with ``percentile=q``, the q-th
    percentile of each direction (linear interpolation), then the larger. NaN when both masks are empty,
    ``inf`` when one is (NaN with a percentile). Returns ``[B, C]``.
    """
    if distance_metric != "euclidean":
        return _monai("compute_hausdorff_distance", y_pred, y, include_background, distance_metric,
                      percentile, directed, spacing, ignore_index)
    if percentile and not 0 <= percentile <= 100:
        raise ValueError(f"percentile should be a value between 0 and 100, get {percentile}.")
    p, g = _pair(y_pred, y, include_background)
    b_n, c_n = p.shape[:2]
    spacings = _prepare_spacing(spacing, b_n, p.ndim - 2)
    offset = 0 if include_background else 1
    out = np.empty((b_n, c_n), np.float32)
    for b, c in np.ndindex(b_n, c_n):
        if ignore_index is not None and c + offset == ignore_index:
            out[b, c] = math.nan
            continue
        d_pg, d_gp = _sorted_distances(p[b, c], g[b, c], spacings[b])
        dirs = [d_pg] if directed else [d_pg, d_gp]
        vals = [(_quantile(d, percentile) if percentile else (float(d[-1]) if d.size else math.nan))
                for d in dirs]
        out[b, c] = math.nan if any(math.isnan(v) for v in vals) else max(vals)
    return _result(out, y_pred)


# The sorted surface distances of the last few mask pairs, keyed by their contents: a script that asks
# for several metrics of the same pair (Hausdorff, HD95, ASD, surface Dice) computes them once.
_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()


def _crop(pb: np.ndarray, gb: np.ndarray):
    """Both masks cropped to the bounding box of their union (the surfaces and distances are the same:
    outside the box both are background), or ``None`` when both are empty."""
    union = pb | gb
    box = []
    for ax in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != ax)
        nz = np.flatnonzero(union.any(axis=other)) if other else np.flatnonzero(union)
        if nz.size == 0:
            return None
        box.append(slice(int(nz[0]), int(nz[-1]) + 1))
    box = tuple(box)
    return np.ascontiguousarray(pb[box]), np.ascontiguousarray(gb[box])


def _sorted_distances(p: np.ndarray, g: np.ndarray, spacing):
    """MONAI's surface distances ``(d(P->G), d(G->P))`` of one channel, float32 and sorted; when one mask
    is empty, MONAI's ``inf`` at every surface voxel of the other (both directions); nothing when both
    are empty."""
    pb, gb = _binary(p), _binary(g)
    cropped = _crop(pb, gb)
    if cropped is None:
        empty = np.empty(0, np.float32)
        return empty, empty
    pb, gb = cropped
    h = hashlib.blake2b(digest_size=16)
    h.update(np.packbits(pb).data)
    h.update(b"|")
    h.update(np.packbits(gb).data)
    key = (pb.shape, None if spacing is None else tuple(spacing), h.digest())
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    d_pg, d_gp = _native.surface_distances(pb, gb, spacing)
    if d_pg is None or d_gp is None:
        n = int(_native.surface(pb).sum()) + int(_native.surface(gb).sum())
        d_pg = d_gp = np.full(n, np.inf, np.float32)
    else:
        d_pg, d_gp = np.sort(d_pg.astype(np.float32)), np.sort(d_gp.astype(np.float32))
    d_pg.flags.writeable = False
    d_gp.flags.writeable = False
    with _CACHE_LOCK:
        _CACHE[key] = (d_pg, d_gp)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return d_pg, d_gp


def compute_surface_metrics(y_pred, y, class_thresholds=None, include_background: bool = False,
                            spacing=None) -> dict:
    """``hd``, ``hd95``, ``assd`` (symmetric) and ``nsd`` per batch item and class in one pass (segloss's
    own; not in MONAI): the values of ``compute_hausdorff_distance`` (``percentile`` None and 95),
    ``compute_average_surface_distance(symmetric=True)`` and ``compute_surface_dice`` with the same
    arguments. ``class_thresholds``: one surface-Dice tolerance per class (default 1 each).

    Returns a dict of four ``[B, C]`` arrays (or tensors), as the input's kind.
    """
    p, g = _pair(y_pred, y, include_background)
    b_n, c_n = p.shape[:2]
    thresholds = [1.0] * c_n if class_thresholds is None else [float(t) for t in class_thresholds]
    if len(thresholds) != c_n:
        raise ValueError(
            f"number of classes ({c_n}) does not match number of class thresholds ({len(thresholds)})."
        )
    if not all(math.isfinite(t) and t >= 0 for t in thresholds):
        raise ValueError("All class thresholds need to be finite and >= 0.")
    spacings = _prepare_spacing(spacing, b_n, p.ndim - 2)
    out = {k: np.empty((b_n, c_n), np.float32) for k in ("hd", "hd95", "assd", "nsd")}
    for b, c in np.ndindex(b_n, c_n):
        pb, gb = _channel(p[b, c], g[b, c])
        n_p, n_g, hd, hd95, assd, nsd = _native.binary_surface_metrics(pb, gb, spacings[b], thresholds[c])
        if n_p == 0 and n_g == 0:
            vals = (math.nan,) * 4
        elif n_p == 0 or n_g == 0:
            vals = (math.inf, math.nan, math.inf, 0.0)
        else:
            vals = (hd, hd95, assd, nsd)
        for k, v in zip(("hd", "hd95", "assd", "nsd"), vals):
            out[k][b, c] = v
    return {k: _result(v, y_pred) for k, v in out.items()}


def compute_average_surface_distance(
    y_pred,
    y,
    include_background: bool = False,
    symmetric: bool = False,
    distance_metric: str = "euclidean",
    spacing=None,
    ignore_index: int | None = None,
):
    """Average surface distance per batch item and class, as
    ``monai.metrics.compute_average_surface_distance``.

    ``mean d(P->G)``; ``symmetric``: the mean of ``d(P->G)`` and ``d(G->P)`` together. NaN when both
    masks are empty, ``inf`` when one is. Returns ``[B, C]``.
    """
    if distance_metric != "euclidean":
        return _monai("compute_average_surface_distance", y_pred, y, include_background, symmetric,
                      distance_metric, spacing, ignore_index)
    p, g = _pair(y_pred, y, include_background)
    b_n, c_n = p.shape[:2]
    spacings = _prepare_spacing(spacing, b_n, p.ndim - 2)
    out = np.empty((b_n, c_n), np.float32)
    for b, c in np.ndindex(b_n, c_n):
        d_pg, d_gp = _sorted_distances(p[b, c], g[b, c], spacings[b])
        n = d_pg.size + (d_gp.size if symmetric else 0)
        total = float(d_pg.sum(dtype=np.float64)) + (float(d_gp.sum(dtype=np.float64)) if symmetric else 0.0)
        out[b, c] = math.nan if n == 0 else total / n
    return _result(out, y_pred)


def compute_surface_dice(
    y_pred,
    y,
    class_thresholds: list[float],
    include_background: bool = False,
    distance_metric: str = "euclidean",
    spacing=None,
    use_subvoxels: bool = False,
    ignore_index: int | None = None,
):
    """Normalised surface Dice per batch item and class, as ``monai.metrics.compute_surface_dice``.

    ``(#{d(P->G) <= t_c} + #{d(G->P) <= t_c}) / (|d(P->G)| + |d(G->P)|)`` with ``t_c`` the class's
    threshold. NaN when both masks are empty, 0 when one is. Returns ``[B, C]``.
    """
    if distance_metric != "euclidean" or use_subvoxels:
        return _monai("compute_surface_dice", y_pred, y, class_thresholds, include_background,
                      distance_metric, spacing, use_subvoxels, ignore_index)
    p, g = _numpy(y_pred), _numpy(y)
    mask = _ignore_mask(g, ignore_index)
    if mask is not None:
        p, g = p * mask, g * mask
    if not include_background:
        p, g = _ignore_background(p, g)
    if p.ndim not in (4, 5) or g.ndim not in (4, 5):
        raise ValueError("y_pred and y should be one-hot encoded: [B,C,H,W] or [B,C,H,W,D].")
    if p.shape != g.shape:
        raise ValueError(
            f"y_pred and y should have same shape, but instead, shapes are {tuple(p.shape)} (y_pred) "
            f"and {tuple(g.shape)} (y)."
        )
    b_n, c_n = p.shape[:2]
    thresholds = list(class_thresholds)
    if c_n != len(thresholds):
        raise ValueError(
            f"number of classes ({c_n}) does not match number of class thresholds ({len(thresholds)})."
        )
    if any(~np.isfinite(thresholds)):
        raise ValueError("All class thresholds need to be finite.")
    if any(np.array(thresholds) < 0):
        raise ValueError("All class thresholds need to be >= 0.")
    spacings = _prepare_spacing(spacing, b_n, p.ndim - 2)
    out = np.empty((b_n, c_n), np.float32)
    for b, c in np.ndindex(b_n, c_n):
        d_pg, d_gp = _sorted_distances(p[b, c], g[b, c], spacings[b])
        n = d_pg.size + d_gp.size
        # MONAI compares float32 distances with the threshold as float32.
        t = np.float32(thresholds[c])
        close = np.searchsorted(d_pg, t, side="right") + np.searchsorted(d_gp, t, side="right")
        out[b, c] = math.nan if n == 0 else close / n
    return _result(out, y_pred)


def _overlap_channels(y_pred, y, include_background: bool, num_classes, ignore_index):
    """(intersection, target sum, prediction sum) per ``[B, C]``, as MONAI's DiceHelper selects them."""
    p, g = _numpy(y_pred), _numpy(y)
    n_ch = p.shape[1] if num_classes is None else num_classes
    mask = _ignore_mask(g, ignore_index)
    first = 0 if include_background else 1
    chans = range(first, n_ch) if n_ch > 1 else [1]
    inter, t_sum, p_sum = [], [], []
    for c in chans:
        xp = (p[:, 0] == c) if p.shape[1] == 1 else (p[:, c] != 0)
        x = (g[:, 0] == c) if g.shape[1] == 1 else g[:, c]
        if mask is not None:
            m = mask[:, 0]
            xp = xp & (m != 0)
            x = x * m
        axes = tuple(range(1, xp.ndim))
        x = x.astype(np.float32) if x.dtype != np.float64 else x
        inter.append(np.where(xp, x, 0).sum(axis=axes, dtype=np.float64))
        t_sum.append(x.sum(axis=axes, dtype=np.float64))
        p_sum.append(xp.sum(axis=axes, dtype=np.float64))
    return np.stack(inter, 1), np.stack(t_sum, 1), np.stack(p_sum, 1)


def compute_dice(
    y_pred,
    y,
    include_background: bool = True,
    ignore_empty: bool = True,
    num_classes: int | None = None,
    per_component: bool = False,
    ignore_index: int | None = None,
):
    """Dice per batch item and class, as ``monai.metrics.compute_dice``.

    ``2 |P & G| / (|P| + |G|)``; where the target is empty: NaN (``ignore_empty``), else 1 when the
    prediction is empty too and 0 otherwise. ``y_pred`` and ``y`` are one-hot ``[B, C, ...]`` or label maps
    ``[B, 1, ...]`` with ``num_classes``. Returns ``[B, C]`` (``[B, C-1]`` without the background).
    """
    if per_component:
        return _monai("compute_dice", y_pred, y, include_background, ignore_empty, num_classes,
                      per_component, ignore_index)
    inter, t_sum, p_sum = _overlap_channels(y_pred, y, include_background, num_classes, ignore_index)
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = 2.0 * inter / (t_sum + p_sum)
    empty = np.where(p_sum + t_sum <= 0, 1.0, 0.0)
    out = np.where(t_sum > 0, dice, math.nan if ignore_empty else empty)
    return _result(out, y_pred)


def compute_iou(y_pred, y, include_background: bool = True, ignore_empty: bool = True,
                ignore_index: int | None = None):
    """Intersection over union per batch item and class, as ``monai.metrics.compute_iou``.

    ``|P & G| / |P | G|``; where the target is empty: NaN (``ignore_empty``), else 1 when the prediction
    is empty too and 0 otherwise. Returns ``[B, C]``.
    """
    p, g = _numpy(y_pred), _numpy(y)
    original = g
    if not include_background:
        p, g = _ignore_background(p, g)
    if g.shape != p.shape:
        raise ValueError(f"y_pred and y should have same shapes, got {tuple(p.shape)} and {tuple(g.shape)}.")
    p = p.astype(np.float64) if p.dtype != np.float64 else p
    g = g.astype(np.float64) if g.dtype != np.float64 else g
    n_total = p.shape[1] + (0 if include_background else 1)
    if ignore_index is not None and 0 <= ignore_index < n_total:
        ch = ignore_index if include_background else ignore_index - 1
        if 0 <= ch < p.shape[1]:
            p, g = p.copy(), g.copy()
            p[:, ch] = 0
            g[:, ch] = 0
    else:
        mask = _ignore_mask(original if ignore_index is not None else g, ignore_index)
        if mask is not None:
            p, g = p * mask, g * mask
    axes = tuple(range(2, p.ndim))
    inter = (g * p).sum(axis=axes)
    y_o = g.sum(axis=axes)
    union = y_o + p.sum(axis=axes) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    if ignore_empty:
        out = np.where(y_o > 0, iou, math.nan)
    else:
        out = np.where(union > 0, iou, 1.0)
    return _result(out, y_pred)
