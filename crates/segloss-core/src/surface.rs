//! Surfaces (boundary voxels) of masks and the distances between two surfaces, as MONAI computes them.
//!
//! The surface of a mask is the set of its voxels that a binary erosion with the face-connected
//! structuring element removes: a foreground voxel is on the surface when one of its face neighbours is
//! background or lies outside the array (scipy's `binary_erosion` with `border_value=0`, as in MONAI's
//! `get_mask_edges` with `use_subvoxels=False`). Surface distances are Euclidean, in spacing units, from
//! each surface voxel of one mask to the nearest surface voxel of the other (MONAI's
//! `get_surface_distance`: `distance_transform_edt(~edges_gt, sampling=spacing)[edges_pred]`), found by
//! a k-d tree over the other surface's voxels rather than an EDT of the whole array (the same values;
//! bit for bit on unit spacing).

use ndarray::{Array, ArrayBase, Data, Dimension};

use crate::edt::{c_order, to_array};
use crate::element::Voxel;
use crate::error::{CoreError, Result};
use crate::grid::Grid;

mod nearest;

/// `[lo, hi)` per padded axis.
pub(crate) type Box3 = [[usize; 2]; 3];

/// Whether padded axis `a` of `g` is a real axis (not one of the leading length-1 axes that pad the
/// grid to 3 axes).
#[inline]
fn real_axis(g: &Grid, a: usize) -> bool {
    !(g.shape[a] == 1 && g.ndim + a < 3)
}

/// The surface voxels (as in [`edges_in`]) of the mask `m` (C order over the box of shape `shape`,
/// 1 = foreground, 0 = background; voxels outside the box count as background), as voxel indices (box
/// coordinates offset by `origin`), in C order.
pub(crate) fn edge_points(
    m: &[u8],
    shape: [usize; 3],
    g: &Grid,
    origin: [usize; 3],
) -> Vec<[f64; 3]> {
    let [b0, b1, b2] = shape;
    let real = [real_axis(g, 0), real_axis(g, 1), real_axis(g, 2)];
    let mut out = Vec::new();
    let mut flag = vec![0u8; b2];
    let zero = vec![0u8; b2];
    let ones = vec![1u8; b2];
    for i0 in 0..b0 {
        for i1 in 0..b1 {
            let at = (i0 * b1 + i1) * b2;
            let row = &m[at..at + b2];
            if row.iter().all(|&v| v == 0) {
                continue;
            }
            // The face neighbours' rows along axes 0 and 1: background outside the box, and "no
            // background" (all ones) along a padding axis.
            let nb = |a: usize, d: isize| -> &[u8] {
                if !real[a] {
                    return &ones;
                }
                let (i, n) = if a == 0 { (i0, b0) } else { (i1, b1) };
                let j = i as isize + d;
                if j < 0 || j >= n as isize {
                    &zero
                } else {
                    let off = if a == 0 {
                        (j as usize * b1 + i1) * b2
                    } else {
                        (i0 * b1 + j as usize) * b2
                    };
                    &m[off..off + b2]
                }
            };
            let (u0, d0, u1, d1) = (nb(0, -1), nb(0, 1), nb(1, -1), nb(1, 1));
            // A voxel is inside when it and its face neighbours are all foreground (masks are 0/1).
            for x in 0..b2 {
                flag[x] = row[x] & u0[x] & d0[x] & u1[x] & d1[x];
            }
            if real[2] {
                // Along the rows: both neighbours (outside the box is background).
                let mut prev = 0u8;
                for x in 0..b2 {
                    let next = if x + 1 < b2 { row[x + 1] } else { 0 };
                    flag[x] &= prev & next;
                    prev = row[x];
                }
            }
            let c0 = (origin[0] + i0) as f64;
            let c1 = (origin[1] + i1) as f64;
            for (x, (&f, &v)) in flag.iter().zip(row).enumerate() {
                if v != 0 && f == 0 {
                    out.push([c0, c1, (origin[2] + x) as f64]);
                }
            }
        }
    }
    out
}

/// Distances between two point sets in both directions, in no particular order (each point of `a`
/// to the nearest of `b`, and each point of `b` to the nearest of `a`); `None` when either is empty.
/// Queries run in the other tree's order, so that consecutive queries are close.
pub(crate) fn mutual_distances(
    a: Vec<[f64; 3]>,
    b: Vec<[f64; 3]>,
    g: &Grid,
) -> Option<(Vec<f64>, Vec<f64>)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let s = g.spacing;
    let (ta, tb) = rayon::join(|| nearest::KdTree::new(a, s), || nearest::KdTree::new(b, s));
    let (ab, ba) = rayon::join(|| tb.distances(ta.points()), || ta.distances(tb.points()));
    Some((ab?, ba?))
}

/// Distances (spacing units) from every point of `from` to the nearest point of `to`, in `from`'s
/// order; `None` when `to` is empty.
pub(crate) fn point_distances(from: &[[f64; 3]], to: Vec<[f64; 3]>, g: &Grid) -> Option<Vec<f64>> {
    nearest::KdTree::new(to, g.spacing).distances(from)
}

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

/// Distances (spacing units) from every `from` voxel to the nearest `to` voxel, both C-order flags over
/// the box shape `shape`; `None` when `to` is empty.
pub(crate) fn distances_between(
    from: &[bool],
    to: &[bool],
    shape: [usize; 3],
    g: &Grid,
) -> Option<Vec<f64>> {
    let points = |flags: &[bool]| -> Vec<[f64; 3]> {
        let [_, b1, b2] = shape;
        flags
            .iter()
            .enumerate()
            .filter(|(_, &f)| f)
            .map(|(i, _)| {
                let (i0, i1, i2) = (i / (b1 * b2), i / b2 % b1, i % b2);
                [i0 as f64, i1 as f64, i2 as f64]
            })
            .collect()
    };
    point_distances(&points(from), points(to), g)
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
