//! Surfaces (boundary voxels) of masks and the distances between two surfaces, as MONAI computes them.
//!
//! The surface of a mask is the set of its voxels that a binary erosion with the face-connected
//! structuring element removes: a foreground voxel is on the surface when one of its face neighbours is
//! background or lies outside the array (scipy's `binary_erosion` with `border_value=0`, as in MONAI's
//! `get_mask_edges` with `use_subvoxels=False`). Surface distances are Euclidean, in spacing units, from
//! each surface voxel of one mask to the nearest surface voxel of the other (MONAI's
//! `get_surface_distance`: `distance_transform_edt(~edges_gt, sampling=spacing)[edges_pred]`).

use ndarray::{Array, ArrayBase, Data, Dimension};

use crate::edt::{c_order, to_array};
use crate::element::Voxel;
use crate::error::{CoreError, Result};
use crate::grid::Grid;
use crate::kernel;

/// `[lo, hi)` per padded axis.
pub(crate) type Box3 = [[usize; 2]; 3];

/// Surface flags of the foreground `fg(flat index)` inside `b` (voxels outside `b` count as background),
/// C order over `b`.
pub(crate) fn edges_in(g: &Grid, b: &Box3, fg: impl Fn(usize) -> bool) -> Vec<bool> {
    let [_, n1, n2] = g.shape;
    let shape = [b[0][1] - b[0][0], b[1][1] - b[1][0], b[2][1] - b[2][0]];
    let mut out = Vec::with_capacity(shape.iter().product());
    for i0 in b[0][0]..b[0][1] {
        for i1 in b[1][0]..b[1][1] {
            for i2 in b[2][0]..b[2][1] {
                let idx = (i0 * n1 + i1) * n2 + i2;
                if !fg(idx) {
                    out.push(false);
                    continue;
                }
                let mut edge = false;
                // Face neighbours along the axes that exist (length > 1 in the whole array).
                for (a, (i, lo, hi, stride)) in [
                    (i0, b[0][0], b[0][1], n1 * n2),
                    (i1, b[1][0], b[1][1], n2),
                    (i2, b[2][0], b[2][1], 1),
                ]
                .into_iter()
                .enumerate()
                {
                    if g.shape[a] == 1 && g.ndim + a < 3 {
                        // A padding axis: no neighbours.
                        continue;
                    }
                    if i == lo || !fg(idx - stride) || i + 1 == hi || !fg(idx + stride) {
                        edge = true;
                        break;
                    }
                }
                out.push(edge);
            }
        }
    }
    out
}

/// The bounding box of the voxels where `fg` holds, `None` when there is none.
pub(crate) fn bbox(g: &Grid, fg: impl Fn(usize) -> bool) -> Option<Box3> {
    let [n0, n1, n2] = g.shape;
    let mut b = [[usize::MAX, 0]; 3];
    let mut any = false;
    for i0 in 0..n0 {
        for i1 in 0..n1 {
            let row = (i0 * n1 + i1) * n2;
            let mut first = None;
            let mut last = 0;
            for i2 in 0..n2 {
                if fg(row + i2) {
                    if first.is_none() {
                        first = Some(i2);
                    }
                    last = i2;
                }
            }
            if let Some(f) = first {
                any = true;
                b[0] = [b[0][0].min(i0), b[0][1].max(i0 + 1)];
                b[1] = [b[1][0].min(i1), b[1][1].max(i1 + 1)];
                b[2] = [b[2][0].min(f), b[2][1].max(last + 1)];
            }
        }
    }
    any.then_some(b)
}

/// Distances (spacing units) from every `from` voxel to the nearest `to` voxel, both C-order flags over
/// the box shape `shape`; `None` when `to` is empty.
pub(crate) fn distances_between(
    from: &[bool],
    to: &[bool],
    shape: [usize; 3],
    g: &Grid,
) -> Option<Vec<f64>> {
    if !to.iter().any(|&t| t) {
        return None;
    }
    let cg = Grid {
        shape,
        spacing: g.spacing,
        ndim: g.ndim,
    };
    let mut buf = vec![0f64; from.len()];
    kernel::binary_edt(&mut buf, &cg, |i| to[i], false, false);
    Some(
        from.iter()
            .zip(&buf)
            .filter(|(&f, _)| f)
            .map(|(_, &d)| d)
            .collect(),
    )
}

/// The surface of a mask (see the [module documentation](self)): `true` on the foreground voxels that
/// have a background face neighbour or touch the array's border.
///
/// # Errors
/// [`CoreError`] for an empty array or more than 3 axes.
///
/// ```
/// use ndarray::array;
/// let m = array![
///     [0, 0, 0, 0, 0],
///     [0, 1, 1, 1, 0],
///     [0, 1, 1, 1, 0],
///     [0, 1, 1, 1, 0],
///     [0, 0, 0, 0, 0],
/// ];
/// let s = segloss_core::surface(&m)?;
/// assert!(s[[1, 1]] && s[[1, 2]] && !s[[2, 2]] && !s[[0, 0]]);
/// assert_eq!(s.iter().filter(|&&e| e).count(), 8);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn surface<T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
) -> Result<Array<bool, D>> {
    let g = Grid::new(mask.shape(), None)?;
    let data = c_order(mask);
    let fg = |i: usize| data[i].is_foreground();
    let full = [[0, g.shape[0]], [0, g.shape[1]], [0, g.shape[2]]];
    to_array(mask.raw_dim(), edges_in(&g, &full, fg))
}

/// Surface distances from `from` to `to` (see the [module documentation](self)): for every surface
/// voxel of `from`, in C order, the distance in spacing units to the nearest surface voxel of `to`.
/// `None` when `to` has no surface voxel (it is empty); an empty `from` gives an empty list.
///
/// # Errors
/// [`CoreError`] for empty arrays, more than 3 axes, a bad spacing, or arrays of different shapes.
///
/// ```
/// use ndarray::array;
/// let a = array![[1, 1, 0, 0, 0]];
/// let b = array![[0, 0, 0, 0, 1]];
/// // a's surface: both of its voxels (they touch the array's border); b's: its one voxel.
/// let d = segloss_core::surface_distances(&a, &b, Some(&[1.0, 0.5]))?.unwrap();
/// assert_eq!(d, vec![2.0, 1.5]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn surface_distances<T: Voxel, S: Data<Elem = T>, D: Dimension>(
    from: &ArrayBase<S, D>,
    to: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
) -> Result<Option<Vec<f64>>> {
    if from.shape() != to.shape() {
        return Err(CoreError::ShapeMismatch {
            left: from.shape().to_vec(),
            right: to.shape().to_vec(),
        });
    }
    let g = Grid::new(from.shape(), spacing)?;
    let (a, b) = (c_order(from), c_order(to));
    let full = [[0, g.shape[0]], [0, g.shape[1]], [0, g.shape[2]]];
    let ea = edges_in(&g, &full, |i| a[i].is_foreground());
    let eb = edges_in(&g, &full, |i| b[i].is_foreground());
    Ok(distances_between(&ea, &eb, g.shape, &g))
}
