from typing import Callable, Optional

import torch
from torch.nn.modules.loss import _Loss

class HausdorffDTLoss(_Loss):
    alpha: float
    include_background: bool
    to_onehot_y: bool
    sigmoid: bool
    softmax: bool
    other_act: Optional[Callable]
    batch: bool
    def __init__(self, alpha: float = 2.0, include_background: bool = False, to_onehot_y: bool = False,
                 sigmoid: bool = False, softmax: bool = False, other_act: Optional[Callable] = None,
                 reduction: str = "mean", batch: bool = False) -> None: ...
    def distance_field(self, img: torch.Tensor) -> torch.Tensor: ...
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

class UNetWeightedBCELoss(_Loss):
    w0: float
    sigma: float
    class_weights: str
    def __init__(self, w0: float = 10.0, sigma: float = 5.0, class_weights: str = "balanced",
                 reduction: str = "mean") -> None: ...
    def weight_map(self, target: torch.Tensor) -> torch.Tensor: ...
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
