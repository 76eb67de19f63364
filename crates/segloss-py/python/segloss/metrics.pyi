from typing import Dict, List, Optional, Sequence, TypeVar, Union

import numpy as np

T = TypeVar("T")  # numpy.ndarray or torch.Tensor: the result is of y_pred's kind
SpacingArg = Optional[Union[int, float, np.ndarray, Sequence[Union[int, float, np.ndarray, Sequence[Union[int, float]]]]]]

def compute_dice(y_pred: T, y: T, include_background: bool = True, ignore_empty: bool = True,
                 num_classes: Optional[int] = None, per_component: bool = False,
                 ignore_index: Optional[int] = None) -> T: ...
def compute_iou(y_pred: T, y: T, include_background: bool = True, ignore_empty: bool = True,
                ignore_index: Optional[int] = None) -> T: ...
def compute_hausdorff_distance(y_pred: T, y: T, include_background: bool = False,
                               distance_metric: str = "euclidean", percentile: Optional[float] = None,
                               directed: bool = False, spacing: SpacingArg = None,
                               ignore_index: Optional[int] = None) -> T: ...
def compute_average_surface_distance(y_pred: T, y: T, include_background: bool = False, symmetric: bool = False,
                                     distance_metric: str = "euclidean", spacing: SpacingArg = None,
                                     ignore_index: Optional[int] = None) -> T: ...
def compute_surface_dice(y_pred: T, y: T, class_thresholds: List[float], include_background: bool = False,
                         distance_metric: str = "euclidean", spacing: SpacingArg = None,
                         use_subvoxels: bool = False, ignore_index: Optional[int] = None) -> T: ...
def compute_surface_metrics(y_pred: T, y: T, class_thresholds: Optional[Sequence[float]] = None,
                            include_background: bool = False, spacing: SpacingArg = None) -> Dict[str, T]: ...
