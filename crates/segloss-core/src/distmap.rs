//! Distance maps built on the EDT: two-sided, signed (boundary loss) and penalty (distance-penalised CE).
//!
//! All three come from one two-sided transform `D(x)`: the distance from `x` to the nearest voxel of the
//! *other* class (a foreground voxel's distance to the background, a background voxel's distance to the
//! foreground), in units of the spacing: `D = EDT(m) + EDT(¬m)` with scipy's EDT.
//!
//! A mask that is all background or all foreground has no boundary: every map is then 0 everywhere
//! (finite, and a loss built on it contributes nothing).
//!
//! # Algorithm
//! On 1-D and 2-D grids `D²` is one transform, not two: a foreground voxel needs only the EDT whose
//! targets are the background, a background voxel only the other, and along any line each of the two is
//! zero exactly on the other class. One sweep down and up every column gives each voxel's distance along
//! the column to the nearest change of class; each row then splits into segments of one class, bounded
//! by the zero sites of their neighbours of the other class, and gets one lower envelope of parabolas
//! per segment (Felzenszwalb & Huttenlocher 2012). Short segments take an outward scan that stops as
//! soon as the next column is farther than the best value found. The cost is that of one binary EDT.
//! 3-D grids run the two binary EDTs and add them.

use ndarray::{Array, ArrayBase, Data, Dimension};

use crate::edt::{c_order, to_array};
use crate::element::{Float, Voxel};
use crate::error::Result;
use crate::grid::Grid;
use crate::kernel;

/// Returns the foreground flags and `D` (see the module documentation).
fn two_sided<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<(Vec<bool>, Vec<F>)> {
    let g = Grid::new(mask.shape(), spacing)?;
    let data = c_order(mask);
    let fg: Vec<bool> = data.iter().map(|v| v.is_foreground()).collect();
    let mut d = vec![F::ZERO; g.len()];
    squared_into(&fg, &g, &mut d, false);
    for x in d.iter_mut() {
        *x = x.sqrt();
    }
    Ok((fg, d))
}

/// `D²` of the C-order mask `fg` on the grid `g` into `out`: one combined transform on 1-D and 2-D
/// grids, two binary EDTs (one per side) on 3-D ones.
fn squared_into<F: Float>(fg: &[bool], g: &Grid, out: &mut [F], serial: bool) {
    if g.shape[0] == 1 {
        kernel::two_sided_squared_plane(fg, g, out, serial);
        return;
    }
    let mut outside = vec![F::ZERO; g.len()];
    let (inside, outside) = (&mut *out, &mut outside);
    if serial {
        kernel::binary_edt(inside, g, (fg, false), true, true);
        kernel::binary_edt(outside, g, (fg, true), true, true);
    } else {
        rayon::join(
            || kernel::binary_edt(inside, g, (fg, false), true, false),
            || kernel::binary_edt(outside, g, (fg, true), true, false),
        );
    }
    // Each voxel is 0 in one of the two maps.
    for (a, b) in inside.iter_mut().zip(outside.iter()) {
        *a = *a + *b;
    }
}

/// The squared two-sided EDT `D²` (see [`two_sided_edt`]) of a C-order mask given as a slice, written
/// into `out`: the allocation-free form for a loss that computes one field per sample and channel.
/// With `serial`, the transform runs on the calling thread (for callers that already run one field per
/// worker).
///
/// # Errors
/// [`CoreError::ShapeMismatch`](crate::CoreError::ShapeMismatch) when `mask` or `out` does not hold
/// one value per voxel of `shape`; otherwise as [`edt`](crate::edt()).
///
/// ```
/// let mut d2 = [0f32; 6];
/// segloss_core::two_sided_edt_squared_into(&[false, false, false, true, true, false], &[6], None, &mut d2, false)?;
/// assert_eq!(d2, [9.0, 4.0, 1.0, 1.0, 1.0, 1.0]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn two_sided_edt_squared_into<F: Float>(
    mask: &[bool],
    shape: &[usize],
    spacing: Option<&[f64]>,
    out: &mut [F],
    serial: bool,
) -> Result<()> {
    let g = Grid::for_buffers(shape, spacing, &[mask.len(), out.len()])?;
    squared_into(mask, &g, out, serial);
    Ok(())
}

/// Two-sided EDT: every voxel's distance to the nearest voxel of the other class, i.e.
/// `EDT(mask) + EDT(!mask)` (the field of MONAI's `HausdorffDTLoss`); 0 everywhere when the mask is all
/// foreground or all background.
///
/// # Errors
/// As [`edt`](crate::edt()).
///
/// ```
/// use ndarray::{array, Array1};
/// let d: Array1<f64> = segloss_core::two_sided_edt(&array![0, 0, 0, 1, 1, 0], None)?;
/// assert_eq!(d, array![3.0, 2.0, 1.0, 1.0, 1.0, 1.0]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn two_sided_edt<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<Array<F, D>> {
    let (_, d) = two_sided::<F, T, S, D>(mask, spacing)?;
    to_array(mask.raw_dim(), d)
}

/// Signed distance map of the boundary loss (Kervadec et al. 2019):
///
/// `φ(x) = D(x)` outside the object (distance to the object), `φ(x) = −(D(x) − 1)` inside
/// (minus the distance to the background, plus one: the inner boundary voxels get 0 on a unit grid).
/// This is Kervadec's `one_hot2dist`: `edt(¬m)·¬m − (edt(m) − 1)·m`, spacing included. An empty or full
/// mask gives 0 everywhere (Kervadec's code gives 0 for an empty one).
///
/// # Errors
/// As [`edt`](crate::edt()).
///
/// ```
/// use ndarray::{array, Array1};
/// let phi: Array1<f64> = segloss_core::signed_distance_map(&array![0, 0, 1, 1, 1, 1, 1, 0], None)?;
/// assert_eq!(phi, array![2.0, 1.0, 0.0, -1.0, -2.0, -1.0, 0.0, 1.0]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn signed_distance_map<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<Array<F, D>> {
    let (fg, mut d) = two_sided::<F, T, S, D>(mask, spacing)?;
    let degenerate = fg.iter().all(|&f| f) || fg.iter().all(|&f| !f);
    if degenerate {
        d.fill(F::ZERO);
    } else {
        let one = F::from_f64(1.0);
        for (x, &f) in d.iter_mut().zip(&fg) {
            if f {
                *x = one - *x;
            }
        }
    }
    to_array(mask.raw_dim(), d)
}

/// Penalty map of the distance-penalised cross-entropy (Caliva et al. 2019), in [0, 1]:
///
/// `Φ(x) = (max D⁺ − D⁺(x)) / max D⁺` inside the object and `(max D⁻ − D⁻(x)) / max D⁻` outside, with
/// `D⁺` the distance of object voxels to the background, `D⁻` the distance of background voxels to the
/// object, and each maximum taken over its own side. A side whose maximum is 0 (an empty side) contributes
/// 0, so an empty or full mask gives 0 everywhere. Voxels next to the boundary get values near 1, the
/// farthest voxel of each side 0. The loss weighs its cross-entropy by `1 + Φ`.
///
/// # Errors
/// As [`edt`](crate::edt()).
///
/// ```
/// use ndarray::{array, Array1};
/// let phi: Array1<f64> = segloss_core::penalty_map(&array![0, 0, 0, 0, 1, 1, 1], None)?;
/// assert_eq!(phi, array![0.0, 0.25, 0.5, 0.75, 2.0 / 3.0, 1.0 / 3.0, 0.0]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn penalty_map<F: Float, T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<Array<F, D>> {
    let (fg, d) = two_sided::<f64, T, S, D>(mask, spacing)?;
    let mut max_in = 0f64;
    let mut max_out = 0f64;
    for (&x, &f) in d.iter().zip(&fg) {
        if f {
            max_in = max_in.max(x);
        } else {
            max_out = max_out.max(x);
        }
    }
    let out: Vec<F> = d
        .iter()
        .zip(&fg)
        .map(|(&x, &f)| {
            let m = if f { max_in } else { max_out };
            if m > 0.0 {
                F::from_f64((m - x) / m)
            } else {
                F::ZERO
            }
        })
        .collect();
    to_array(mask.raw_dim(), out)
}
