from typing import Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import losses as losses
from . import metrics as metrics

__version__: str

Spacing = Optional[Union[float, Sequence[float]]]
FloatDType = Union[type[np.float32], type[np.float64], np.dtype, str]

def edt(mask: npt.ArrayLike, spacing: Spacing = None, *, squared: bool = False,
        dtype: FloatDType = np.float64) -> npt.NDArray[np.floating]: ...
def signed_distance(mask: npt.ArrayLike, spacing: Spacing = None, *,
                    dtype: FloatDType = np.float64) -> npt.NDArray[np.floating]: ...
def multilabel_edt(labels: npt.ArrayLike, spacing: Spacing = None, *,
                   dtype: FloatDType = np.float32) -> npt.NDArray[np.floating]: ...
def connected_components(mask: npt.ArrayLike, connectivity: Union[Literal["face", "full"], int] = "full"
                         ) -> Tuple[npt.NDArray[np.uint32], int]: ...
def unet_weight_map(labels: npt.ArrayLike, w0: float = 10.0, sigma: float = 5.0,
                    class_weights: Literal["balanced", "none"] = "balanced", spacing: Spacing = None, *,
                    instances: Optional[bool] = None, connectivity: Literal["face", "full"] = "full",
                    dtype: FloatDType = np.float32) -> npt.NDArray[np.floating]: ...
def surface(mask: npt.ArrayLike) -> npt.NDArray[np.bool_]: ...
def num_threads() -> int: ...
