//! Exact Euclidean distance transforms: binary, squared, with nearest-background indices, and multi-label.
//!
//! All of them take 1 to 3 axes, an optional per-axis voxel spacing, and return a map of the input's shape
//! in `f32` or `f64` (chosen by the caller's type annotation). The algorithm is the separable, linear-time
//! lower envelope of parabolas of Felzenszwalb & Huttenlocher (2012), one pass per axis, parallel over lines
//! (rayon's global pool; set `RAYON_NUM_THREADS` or use a `ThreadPool::install` to bound it).
//!
//! # Semantics
//! - [`edt`]: every foreground (non-zero) voxel gets its Euclidean distance, in spacing units, to the
//!   nearest background (zero) voxel; background voxels get 0. This is scipy's
//!   `ndimage.distance_transform_edt(mask, sampling=spacing)`.
//! - [`multilabel_edt`]: every labelled (non-zero) voxel gets the distance to the nearest voxel whose label
//!   differs from its own, background included; background voxels get 0. This is seung-lab's
//!   `edt.edt(labels, anisotropy=spacing, black_border=False)`.
//!
//! # No background at all
//! When the mask has no background voxel (multi-label: when one label fills the whole array) no voxel has
//! a finite distance. scipy then returns meaningless numbers (distances to a phantom voxel outside the
//! array) and `edt` returns infinity; neither is usable in a loss. **segloss returns 0 everywhere** in
//! this case (and [`feature_transform`] gives every voxel its own index), so the map stays finite and a
//! loss built on it contributes nothing. Detect the case with [`has_background`] when it needs handling.

use std::borrow::Cow;

use ndarray::{Array, ArrayBase, Data, Dimension};

use crate::element::{Float, Voxel};
use crate::error::{CoreError, Result};
use crate::grid::Grid;
use crate::kernel::{self, LineKind, NO_FEATURE};

/// The array's elements in C (row-major) order, borrowed when they already are.
pub(crate) fn c_order<T: Copy, S: Data<Elem = T>, D: Dimension>(
    a: &ArrayBase<S, D>,
) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// Wraps a C-order buffer into an array of the given dimension.
pub(crate) fn to_array<A, D: Dimension>(dim: D, data: Vec<A>) -> Result<Array<A, D>> {
    let shape = dim.slice().to_vec();
    Array::from_shape_vec(dim, data).map_err(|_| CoreError::Empty { shape })
}

/// Whether the mask has at least one background (zero) voxel, i.e. whether [`edt`] has finite distances
/// to report (see the module documentation for what happens otherwise).
///
/// ```
/// use ndarray::array;
/// assert!(segloss_core::has_background(&array![[true, false]]));
/// assert!(!segloss_core::has_background(&array![[1u8, 2]]));
/// ```
pub fn has_background<T: Voxel, S: Data<Elem = T>, D: Dimension>(mask: &ArrayBase<S, D>) -> bool {
    mask.iter().any(|v| !v.is_foreground())
}

pub(crate) fn edt_buffer<T: Voxel, F: Float>(
    mask: &[T],
    g: &Grid,
    squared: bool,
    feat: Option<&mut [u32]>,
) -> Vec<F> {
    let mut buf = vec![F::ZERO; g.len()];
    match feat {
        None => {
            kernel::binary_edt(&mut buf, g, (mask, false), squared, false);
            return buf;
        }
        Some(fe) => {
            kernel::row_pass_features(mask, &mut buf, fe, g);
            kernel::strided_passes::<T, F>(&mut buf, Some(&mut *fe), g, LineKind::Features, false);
        }
    }
    kernel::finish(&mut buf, squared);
    buf
}

fn edt_impl<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
    squared: bool,
) -> Result<Array<F, D>> {
    let g = Grid::new(mask.shape(), spacing)?;
    let data = c_order(mask);
    let buf = edt_buffer::<T, F>(&data, &g, squared, None);
    to_array(mask.raw_dim(), buf)
}

/// Exact Euclidean distance transform: each foreground (non-zero) voxel's distance to the nearest
/// background (zero) voxel, in units of `spacing` (one value per axis, default 1); 0 on the background.
///
/// Same as scipy's `distance_transform_edt(mask, sampling=spacing)`, except that a mask without any
/// background voxel gives 0 everywhere (see the [module documentation](mod@crate::edt)).
/// The output type `F` (`f32` or `f64`) follows the caller's annotation.
///
/// # Errors
/// [`CoreError`] for an empty array, more than 3 axes, or a spacing of the wrong length or with a value
/// that is not finite and > 0.
///
/// ```
/// use ndarray::{array, Array2};
/// use segloss_core::edt;
///
/// let mask = array![
///     [0, 1, 1, 1],
///     [0, 1, 1, 1],
///     [0, 0, 1, 1],
/// ];
/// let d: Array2<f64> = edt(&mask, None)?;
/// let r = f64::sqrt;
/// assert_eq!(d, array![
///     [0.0, 1.0, 2.0, r(8.0)],
///     [0.0, 1.0, r(2.0), r(5.0)],
///     [0.0, 0.0, 1.0, 2.0],
/// ]);
///
/// // Anisotropic voxels: rows 2 apart, columns 1 apart.
/// let d: Array2<f32> = edt(&array![[true, true], [false, true]], Some(&[2.0, 1.0]))?;
/// assert_eq!(d, array![[2.0, 5f32.sqrt()], [0.0, 1.0]]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn edt<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<Array<F, D>> {
    edt_impl(mask, spacing, false)
}

/// The square of [`edt`] (cheaper: no square roots), with the same semantics and errors.
///
/// ```
/// use ndarray::{array, Array1};
/// let d: Array1<f64> = segloss_core::edt_squared(&array![0u8, 1, 1, 1, 1, 0], None)?;
/// assert_eq!(d, array![0.0, 1.0, 4.0, 4.0, 1.0, 0.0]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn edt_squared<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<Array<F, D>> {
    edt_impl(mask, spacing, true)
}

/// [`edt`] together with the feature transform: for every voxel, the flat C-order index (into an array of
/// the mask's shape) of a nearest background voxel; a background voxel is its own nearest.
///
/// Among equally near background voxels any one may be returned (scipy may pick another). Without any
/// background voxel every voxel gets its own index and distance 0. Use [`unravel_index`] to turn an index
/// into coordinates.
///
/// # Errors
/// As [`edt`].
///
/// ```
/// use ndarray::{array, Array1};
/// let (d, idx): (Array1<f64>, _) = segloss_core::feature_transform(&array![0, 1, 1, 1, 1, 1], None)?;
/// assert_eq!(d, array![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
/// assert_eq!(idx, array![0, 0, 0, 0, 0, 0]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
#[allow(clippy::type_complexity)]
pub fn feature_transform<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<(Array<F, D>, Array<usize, D>)> {
    let g = Grid::new(mask.shape(), spacing)?;
    let data = c_order(mask);
    let mut feat = vec![NO_FEATURE; g.len()];
    let buf = edt_buffer::<T, F>(&data, &g, false, Some(&mut feat));
    let idx: Vec<usize> = feat
        .iter()
        .enumerate()
        .map(|(i, &f)| if f == NO_FEATURE { i } else { f as usize })
        .collect();
    Ok((
        to_array(mask.raw_dim(), buf)?,
        to_array(mask.raw_dim(), idx)?,
    ))
}

/// The coordinates of the flat C-order index `index` in an array of shape `shape`.
///
/// ```
/// assert_eq!(segloss_core::unravel_index(7, &[2, 3, 4]), vec![0, 1, 3]);
/// ```
pub fn unravel_index(mut index: usize, shape: &[usize]) -> Vec<usize> {
    let mut out = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        let n = shape[a].max(1);
        out[a] = index % n;
        index /= n;
    }
    out
}

pub(crate) fn multilabel_buffer<T: Voxel, F: Float>(
    labels: &[T],
    g: &Grid,
    squared: bool,
) -> Vec<F> {
    let mut buf = vec![F::ZERO; g.len()];
    kernel::multilabel_edt(&mut buf, labels, g, squared);
    buf
}

fn multilabel_impl<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    labels: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
    squared: bool,
) -> Result<Array<F, D>> {
    let g = Grid::new(labels.shape(), spacing)?;
    let data = c_order(labels);
    let buf = multilabel_buffer::<T, F>(&data, &g, squared);
    to_array(labels.raw_dim(), buf)
}

/// Multi-label EDT: each labelled (non-zero) voxel's distance to the nearest voxel with a different label,
/// background included; 0 on the background.
///
/// Same as seung-lab's `edt.edt(labels, anisotropy=spacing, black_border=False)`, except that an array
/// filled by a single label gives 0 everywhere (not infinity). With two labels {0, 1} it equals [`edt`].
///
/// # Errors
/// As [`edt`].
///
/// ```
/// use ndarray::{array, Array2};
/// let labels = array![
///     [1u16, 1, 2, 2],
///     [0, 1, 1, 1],
/// ];
/// let d: Array2<f64> = segloss_core::multilabel_edt(&labels, None)?;
/// assert_eq!(d, array![[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn multilabel_edt<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    labels: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<Array<F, D>> {
    multilabel_impl(labels, spacing, false)
}

/// The square of [`multilabel_edt`], with the same semantics and errors.
///
/// ```
/// use ndarray::{array, Array1};
/// let d: Array1<f32> = segloss_core::multilabel_edt_squared(&array![1, 1, 1, 2, 2, 0], None)?;
/// assert_eq!(d, array![9.0, 4.0, 1.0, 1.0, 1.0, 0.0]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn multilabel_edt_squared<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    labels: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<Array<F, D>> {
    multilabel_impl(labels, spacing, true)
}
