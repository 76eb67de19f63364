"""segloss: fast distance maps, U-Net weight maps, MONAI-compatible metrics and map-based losses.

The maps are computed by segloss-core (Rust, multi-threaded with rayon; the GIL is released while it
works). Inputs are NumPy arrays (or anything ``numpy.asarray`` accepts) of any bool, integer or float
dtype, in C or Fortran order, with 1 to 3 spatial axes; ``spacing`` is ``None`` (1 per axis), a number
or one number > 0 per axis. Bad input raises ``ValueError`` (values, shapes) or ``TypeError`` (dtypes)
with a one-line message naming the argument, the value and what was expected.

Submodules: :mod:`segloss.metrics` (drop-ins for ``monai.metrics``) and :mod:`segloss.losses`
(PyTorch losses; needs torch).

The number of threads is rayon's: all cores, or ``RAYON_NUM_THREADS`` when it is set before the first
call.
"""
from __future__ import annotations

import numpy as np

from . import _native
from ._arrays import as_array, out_dtype, spacing_list

__version__ = _native.__version__

__all__ = [
    "edt",
    "signed_distance",
    "multilabel_edt",
    "connected_components",
    "unet_weight_map",
    "surface",
    "num_threads",
    "metrics",
    "losses",
]


def edt(mask, spacing=None, *, squared=False, dtype=np.float64):
    """Euclidean distance transform of a mask.

    For every foreground voxel ``x`` (non-zero), ``d(x) = min over background voxels y of
    sqrt(sum_i (s_i (x_i - y_i))^2)`` with ``s`` the spacing; 0 on the background. Same as
    ``scipy.ndimage.distance_transform_edt(mask != 0, sampling=spacing)``, except that a mask without
    any background voxel gives 0 everywhere.

    Args:
        mask: 1-3D array, non-zero = foreground (NaN is an error).
        spacing: ``None``, a number, or one number > 0 per axis.
        squared: return ``d(x)^2`` (no square roots).
        dtype: ``numpy.float64`` (default, as scipy) or ``numpy.float32`` (as ``edt.edt``).

    Returns:
        An array of ``mask``'s shape.
    """
    m = as_array(mask, "mask")
    return _native.edt(m, spacing_list(spacing, m.ndim, "mask"), out_dtype(dtype, np.float64), squared)


def signed_distance(mask, spacing=None, *, dtype=np.float64):
    """Signed distance map of the boundary loss (Kervadec et al.'s ``one_hot2dist``).

    ``phi(x) = edt(~m)(x)`` outside the object and ``phi(x) = -(edt(m)(x) - 1)`` inside, so the inner
    boundary voxels get 0 on a unit grid; an empty or full mask gives 0 everywhere.

    Args:
        mask: 1-3D array, non-zero = foreground.
        spacing: ``None``, a number, or one number > 0 per axis.
        dtype: ``numpy.float64`` (default) or ``numpy.float32``.
    """
    m = as_array(mask, "mask")
    return _native.signed_distance(m, spacing_list(spacing, m.ndim, "mask"), out_dtype(dtype, np.float64))


def multilabel_edt(labels, spacing=None, *, dtype=np.float32):
    """Multi-label Euclidean distance transform.

    For every labelled voxel ``x`` (non-zero), the distance (in spacing units) to the nearest voxel
    whose label differs from ``labels[x]`` (background included); 0 on the background. Same as
    ``edt.edt(labels, anisotropy=spacing, black_border=False)``, except that an array filled by a single
    label gives 0 everywhere. With labels {0, 1} it equals :func:`edt`.

    Args:
        labels: 1-3D array of integer labels (float arrays must hold integers).
        spacing: ``None``, a number, or one number > 0 per axis.
        dtype: ``numpy.float32`` (default, as ``edt.edt``) or ``numpy.float64``.
    """
    a = as_array(labels, "labels")
    return _native.multilabel_edt(a, spacing_list(spacing, a.ndim, "labels"), out_dtype(dtype, np.float32))


def connected_components(mask, connectivity="full"):
    """Connected components of a mask.

    Components are numbered 1..K in the raster (C) order of their first voxel, as
    ``scipy.ndimage.label`` numbers them.

    Args:
        mask: 1-3D array, non-zero = foreground.
        connectivity: ``"full"`` (8 neighbours in 2D, 26 in 3D; default) or ``"face"`` (4 / 6, scipy's
            default structure). The integers 1 (face) and ``mask.ndim`` (full) are accepted too.

    Returns:
        ``(labels, K)``: a ``uint32`` array of ``mask``'s shape and the number of components.
    """
    m = as_array(mask, "mask")
    if isinstance(connectivity, (int, np.integer)) and not isinstance(connectivity, bool):
        if connectivity == 1:
            connectivity = "face"
        elif connectivity == max(m.ndim, 1):
            connectivity = "full"
        else:
            raise ValueError(
                f"connectivity {connectivity}: expected face or full (1 or {max(m.ndim, 1)} for a {m.ndim}D mask)"
            )
    return _native.connected_components(m, str(connectivity))


def unet_weight_map(labels, w0=10.0, sigma=5.0, class_weights="balanced", spacing=None, *,
                    instances=None, connectivity="full", dtype=np.float32):
    """U-Net weight map (Ronneberger et al. 2015).

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))``, the second term on background voxels
    only, with ``d1``, ``d2`` the distances (spacing units) from ``x`` to the nearest and second-nearest
    instance (0 with fewer than two instances). ``w_c`` is the class weight: ``"balanced"`` gives
    ``N / (2 N_k)`` for the voxel's class k in {background, foreground} (``N`` the image's size, ``N_k``
    the class's voxel count; 0.5 for an image with one class), ``"none"`` gives 1. Exact within 5e-5.

    Args:
        labels: 1-3D mask or instance-label image.
        w0: height of the border term, >= 0.
        sigma: width of the border term in spacing units, > 0.
        class_weights: ``"balanced"`` or ``"none"``.
        spacing: ``None``, a number, or one number > 0 per axis.
        instances: ``True``: every distinct non-zero value is one instance; ``False``: a binary mask whose
            connected components (``connectivity``) are the instances; ``None`` (default): the former
            when ``labels`` holds more than one distinct non-zero value, else the latter.
        connectivity: ``"full"`` (default) or ``"face"``, for a binary mask.
        dtype: ``numpy.float32`` (default) or ``numpy.float64``.
    """
    a = as_array(labels, "labels")
    return _native.unet_weight_map(
        a, float(w0), float(sigma), str(class_weights), spacing_list(spacing, a.ndim, "labels"),
        instances, str(connectivity), out_dtype(dtype, np.float32),
    )


def surface(mask):
    """The surface voxels of a mask: the foreground voxels that a binary erosion with the face-connected
    structuring element removes (outside the array counts as background), as MONAI's ``get_mask_edges``.

    Returns a bool array of ``mask``'s shape.
    """
    return _native.surface(as_array(mask, "mask"))


def num_threads() -> int:
    """The number of threads segloss's kernels run on."""
    return _native.num_threads()


def __getattr__(name):
    # Submodules on first use: `segloss.metrics`, `segloss.losses` (torch stays optional).
    if name in ("metrics", "losses"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'segloss' has no attribute {name!r}")
