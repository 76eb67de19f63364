"""Map-based segmentation losses for PyTorch, their maps computed by segloss-core.

The distance and weight maps are computed in Rust from the detached tensors (they carry no gradient,
as in MONAI); everything else runs in torch autograd on the input's device. Needs torch.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
from torch.nn.modules.loss import _Loss

from . import _native

__all__ = ["HausdorffDTLoss", "UNetWeightedBCELoss"]


def _two_sided_fields(masks: np.ndarray) -> np.ndarray:
    """For each item of ``masks`` (bool ``[N, *spatial]``), ``edt(m) + edt(~m)`` as float32 (MONAI's
    ``distance_field``: 0 for an empty or full mask)."""
    out = np.zeros(masks.shape, np.float32)
    for i in range(masks.shape[0]):
        m = masks[i]
        if m.any() and not m.all():
            out[i] = _native.two_sided_edt(m, None, True)
    return out


def _reduce(f: torch.Tensor, reduction: str, ndim: int) -> torch.Tensor:
    if reduction == "mean":
        return torch.mean(f)
    if reduction == "sum":
        return torch.sum(f)
    if reduction == "none":
        return f.view(list(f.shape[0:2]) + [1] * (ndim - 2))
    raise ValueError(f'Unsupported reduction: {reduction}, available options are ["mean", "sum", "none"].')


class HausdorffDTLoss(_Loss):
    """Hausdorff loss based on distance transforms (Karimi & Salcudean 2019), as
    ``monai.losses.HausdorffDTLoss`` (same arguments, values and gradients).

    Per channel: ``mean((p - g)^2 * (d_p^alpha + d_g^alpha))`` over the spatial axes (and the batch with
    ``batch=True``), with ``d_p``, ``d_g`` the two-sided distance fields ``edt(m) + edt(~m)`` of
    ``p > 0.5`` and ``g > 0.5`` (0 for an empty or full mask), then the reduction.
    """

    def __init__(
        self,
        alpha: float = 2.0,
        include_background: bool = False,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Callable | None = None,
        reduction: str = "mean",
        batch: bool = False,
    ) -> None:
        super().__init__(reduction=str(getattr(reduction, "value", reduction)))
        if other_act is not None and not callable(other_act):
            raise TypeError(f"other_act must be None or callable but is {type(other_act).__name__}.")
        if int(sigmoid) + int(softmax) > 1:
            raise ValueError("Incompatible values: more than 1 of [sigmoid=True, softmax=True] are True.")
        self.alpha = alpha
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.other_act = other_act
        self.batch = batch

    def distance_field(self, img: torch.Tensor) -> torch.Tensor:
        """The two-sided distance field of ``img > 0.5`` per batch item (``img``: ``[B, 1, *spatial]``)."""
        masks = (img.detach() > 0.5).cpu().numpy()
        b = masks.shape[0]
        fields = _two_sided_fields(masks.reshape((b,) + masks.shape[2:]))
        return torch.from_numpy(fields.reshape(masks.shape)).to(img.device)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4 and input.dim() != 5:
            raise ValueError("Only 2D (NCHW) and 3D (NCHWD) supported")
        if self.sigmoid:
            input = torch.sigmoid(input)
        n_pred_ch = input.shape[1]
        if self.softmax:
            if n_pred_ch == 1:
                warnings.warn("single channel prediction, `softmax=True` ignored.", stacklevel=2)
            else:
                input = torch.softmax(input, 1)
        if self.other_act is not None:
            input = self.other_act(input)
        if self.to_onehot_y:
            if n_pred_ch == 1:
                warnings.warn("single channel prediction, `to_onehot_y=True` ignored.", stacklevel=2)
            else:
                target = _one_hot(target, n_pred_ch)
        if not self.include_background:
            if n_pred_ch == 1:
                warnings.warn("single channel prediction, `include_background=False` ignored.", stacklevel=2)
            else:
                target = target[:, 1:]
                input = input[:, 1:]
        if target.shape != input.shape:
            raise AssertionError(f"ground truth has different shape ({target.shape}) from input ({input.shape})")
        # All channels' maps in one pass over the detached tensors.
        b, c = input.shape[:2]
        spatial = tuple(input.shape[2:])
        masks = torch.cat([(input.detach() > 0.5), (target.detach() > 0.5)], 1).cpu().numpy()
        fields = _two_sided_fields(masks.reshape((b * 2 * c,) + spatial)).reshape((b, 2 * c) + spatial)
        fields = torch.from_numpy(fields).to(input.device)
        pred_dt, target_dt = fields[:, :c], fields[:, c:]
        distance = pred_dt ** self.alpha + target_dt ** self.alpha
        running_f = (input - target) ** 2 * distance
        reduce_axis = list(range(2, input.dim()))
        if self.batch:
            reduce_axis = [0] + reduce_axis
        f = running_f.mean(dim=reduce_axis, keepdim=True)
        return _reduce(f, self.reduction, input.dim())


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """MONAI's ``one_hot`` of ``[B, 1, *spatial]`` labels."""
    shape = list(labels.shape)
    shape[1] = num_classes
    out = torch.zeros(shape, dtype=torch.float, device=labels.device)
    return out.scatter_(1, labels.long(), 1)


class UNetWeightedBCELoss(_Loss):
    """Binary cross-entropy from logits weighted by the U-Net weight map of the target (the shape-aware
    loss of segloss's Rust crate).

    ``loss = mean over voxels of w(x) * BCEWithLogits(input(x), target(x))``, where ``w`` is the U-Net
    weight map ``w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` of the mask ``target > 0.5`` of each
    sample and channel (its connected components are the instances; see ``segloss.unet_weight_map``),
    recomputed in Rust on every call. ``reduction``: ``"mean"`` (default), ``"sum"`` or ``"none"`` (the
    weighted per-voxel terms).
    """

    def __init__(self, w0: float = 10.0, sigma: float = 5.0, class_weights: str = "balanced",
                 reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f'Unsupported reduction: {reduction}, available options are ["mean", "sum", "none"].')
        # Checks the parameters once, with the same messages as the NumPy API.
        _native.unet_weight_map(np.zeros((1, 1), bool), float(w0), float(sigma), str(class_weights))
        self.w0, self.sigma, self.class_weights = float(w0), float(sigma), str(class_weights)

    def weight_map(self, target: torch.Tensor) -> torch.Tensor:
        """The weight maps of ``target > 0.5`` (``[B, C, *spatial]``), float32 on the target's device."""
        masks = (target.detach() > 0.5).cpu().numpy()
        b, c = masks.shape[:2]
        flat = masks.reshape((b * c,) + masks.shape[2:])
        w = np.empty(flat.shape, np.float32)
        for i in range(flat.shape[0]):
            w[i] = _native.unet_weight_map(flat[i], self.w0, self.sigma, self.class_weights, None, False)
        return torch.from_numpy(w.reshape(masks.shape)).to(target.device)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() < 3 or input.dim() > 5:
            raise ValueError(f"input of shape {tuple(input.shape)}: expected [B, C, *spatial] with 1 to 3 spatial dims")
        if target.shape != input.shape:
            raise ValueError(f"target has shape {tuple(target.shape)} but input has {tuple(input.shape)}: "
                             "expected the same shape")
        w = self.weight_map(target).to(input.dtype)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(input, target.to(input.dtype), reduction="none")
        terms = w * bce
        if self.reduction == "mean":
            return terms.mean()
        if self.reduction == "sum":
            return terms.sum()
        return terms
