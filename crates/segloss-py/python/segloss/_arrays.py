"""Argument normalisation shared by the NumPy API and the metrics (not public)."""
from __future__ import annotations

import numbers

import numpy as np

# dtypes the native module reads directly (native byte order).
_NATIVE = {np.dtype(t) for t in (bool, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
                                  np.uint64, np.int64, np.float32, np.float64)}


def as_array(x, name: str) -> np.ndarray:
    """`x` as a NumPy array the native module can read without a copy when possible.

    Any integer, bool or float dtype is accepted (non-native byte order and float16 are converted);
    anything else raises ``TypeError``.
    """
    if not isinstance(x, np.ndarray):
        if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
            x = x.detach().cpu().numpy()
        else:
            x = np.asarray(x)
    dt = x.dtype
    if dt in _NATIVE:
        return x
    if dt.kind in "biuf":
        if dt.kind == "f" and dt.itemsize < 4:
            return x.astype(np.float32)
        if dt.kind == "f" and dt.itemsize > 8:
            return x.astype(np.float64)
        return x.astype(dt.newbyteorder("="))
    raise TypeError(f"{name}: unsupported dtype {dt}: expected bool, an integer or a float dtype")


def spacing_list(spacing, ndim: int, name: str):
    """`None`, a number (isotropic) or one number per axis, as a list of floats (or `None`)."""
    if spacing is None:
        return None
    if isinstance(spacing, numbers.Real):
        return [float(spacing)] * ndim
    try:
        values = [float(s) for s in np.asarray(spacing, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError):
        raise TypeError(f"{name}: spacing {spacing!r}: expected a number or a sequence of numbers > 0") from None
    return values


def out_dtype(dtype, default) -> bool:
    """Whether the requested output dtype is float64 (`True`) or float32 (`False`)."""
    dt = np.dtype(default if dtype is None else dtype)
    if dt == np.float64:
        return True
    if dt == np.float32:
        return False
    raise TypeError(f"dtype {dt}: expected float32 or float64")
