//! Segmentation metrics per class: overlap (Dice, IoU, precision, recall, specificity) and surface
//! distances (Hausdorff, HD95, ASSD, NSD), compatible with MONAI.
//!
//! Surface voxels and distances are those of [`crate::surface`](mod@crate::surface). For one class with prediction surface
//! `P`, target surface `G`, `d(P→G)` the distances from `P` to `G` and `d(G→P)` the other way:
//! - `hd` = max(max d(P→G), max d(G→P)) (MONAI `compute_hausdorff_distance`);
//! - `hd95` = max(p95 d(P→G), p95 d(G→P)), percentiles with numpy's linear interpolation
//!   (`compute_hausdorff_distance(percentile=95)`);
//! - `assd` = mean of d(P→G) and d(G→P) together (`compute_average_surface_distance(symmetric=True)`);
//! - `nsd` = (#{d(P→G) ≤ τ} + #{d(G→P) ≤ τ}) / (|P| + |G|) (`compute_surface_dice`,
//!   `use_subvoxels=False`, tolerance τ).
//!
//! Empty cases (docs/metrics.md): both masks empty → dice = iou = nsd = 1 and distances 0; exactly one empty →
//! dice = iou = nsd = 0 and distances undefined (`None`). Precision, recall and specificity are `None`
//! when their denominator is 0, except that precision and recall are 1 when both masks are empty.
//! Each class costs one pass over the arrays, one over the bounding box of its two masks (the surfaces),
//! and nearest-neighbour searches between the two surfaces (a k-d tree per surface, both directions at
//! once) instead of two EDTs on the bounding box: only the distances at the surface voxels are needed.
//! The distances are the EDT's (bit for bit on unit spacing).

use ndarray::{ArrayBase, Data, Dimension};

use crate::edt::c_order;
use crate::element::Voxel;
use crate::error::{CoreError, Result};
use crate::grid::Grid;
use crate::surface::{edge_points, mutual_distances};
use rayon::prelude::*;

/// The metrics of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassMetrics {
    /// 2·|P∩G| / (|P| + |G|).
    pub dice: f64,
    /// |P∩G| / |P∪G|.
    pub iou: f64,
    /// TP / (TP + FP).
    pub precision: Option<f64>,
    /// TP / (TP + FN) (sensitivity).
    pub recall: Option<f64>,
    /// TN / (TN + FP).
    pub specificity: Option<f64>,
    /// Hausdorff distance (spacing units).
    pub hd: Option<f64>,
    /// 95th-percentile Hausdorff distance.
    pub hd95: Option<f64>,
    /// Average symmetric surface distance.
    pub assd: Option<f64>,
    /// Normalised surface Dice at the tolerance.
    pub nsd: f64,
    /// Voxels of the class in the prediction.
    pub pred_voxels: usize,
    /// Voxels of the class in the target.
    pub target_voxels: usize,
}

/// numpy's `percentile(x, q)` (linear interpolation) of a non-empty sorted slice.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Per plane (index `i0` of the padded grid): `(tp, np, nt)` and the bounding box of the union.
type PlaneCount = ([usize; 3], [[usize; 2]; 3]);

/// Counts and the union's bounding box over the planes `planes` of `g`.
fn count_planes(
    g: &Grid,
    planes: std::ops::Range<usize>,
    pred: impl Fn(usize) -> bool,
    target: impl Fn(usize) -> bool,
) -> PlaneCount {
    let [_, n1, n2] = g.shape;
    let mut c = [0usize; 3];
    let mut b = [[usize::MAX, 0]; 3];
    for i0 in planes {
        for i1 in 0..n1 {
            let row = (i0 * n1 + i1) * n2;
            let (mut first, mut last) = (usize::MAX, 0);
            for i2 in 0..n2 {
                let (p, t) = (pred(row + i2), target(row + i2));
                c[0] += (p && t) as usize;
                c[1] += p as usize;
                c[2] += t as usize;
                if p || t {
                    first = first.min(i2);
                    last = i2;
                }
            }
            if first != usize::MAX {
                b[0] = [b[0][0].min(i0), b[0][1].max(i0 + 1)];
                b[1] = [b[1][0].min(i1), b[1][1].max(i1 + 1)];
                b[2] = [b[2][0].min(first), b[2][1].max(last + 1)];
            }
        }
    }
    (c, b)
}

/// `fg` over the box `b` of `g` as bytes (C order over the box).
fn box_mask(g: &Grid, b: &[[usize; 2]; 3], fg: impl Fn(usize) -> bool + Sync) -> Vec<u8> {
    let [_, n1, n2] = g.shape;
    let shape = [b[0][1] - b[0][0], b[1][1] - b[1][0], b[2][1] - b[2][0]];
    let mut out = vec![0u8; shape.iter().product()];
    out.par_chunks_mut(shape[2])
        .enumerate()
        .with_min_len(64)
        .for_each(|(r, row)| {
            let (i0, i1) = (r / shape[1] + b[0][0], r % shape[1] + b[1][0]);
            let at = (i0 * n1 + i1) * n2 + b[2][0];
            for (x, o) in row.iter_mut().enumerate() {
                *o = u8::from(fg(at + x));
            }
        });
    out
}

/// The metrics of one class given membership tests for prediction and target.
fn class_metrics(
    g: &Grid,
    pred: impl Fn(usize) -> bool + Copy + Sync,
    target: impl Fn(usize) -> bool + Copy + Sync,
    nsd_tolerance: f64,
) -> ClassMetrics {
    let n = g.len();
    // One pass for the counts and the bounding box of the union (planes in parallel).
    let n0 = g.shape[0];
    let merge = |(a, x): PlaneCount, (b, y): PlaneCount| -> PlaneCount {
        let mut bb = x;
        for d in 0..3 {
            bb[d] = [x[d][0].min(y[d][0]), x[d][1].max(y[d][1])];
        }
        ([a[0] + b[0], a[1] + b[1], a[2] + b[2]], bb)
    };
    let ([tp, np, nt], b) = if n >= 1 << 16 && n0 > 1 {
        (0..n0)
            .into_par_iter()
            .map(|i0| count_planes(g, i0..i0 + 1, pred, target))
            .reduce(|| ([0; 3], [[usize::MAX, 0]; 3]), merge)
    } else {
        count_planes(g, 0..n0, pred, target)
    };
    let (fp, fnn) = (np - tp, nt - tp);
    let tn = n - tp - fp - fnn;
    let both_empty = np == 0 && nt == 0;
    let mut m = ClassMetrics {
        dice: if both_empty {
            1.0
        } else {
            2.0 * tp as f64 / (np + nt) as f64
        },
        iou: if both_empty {
            1.0
        } else {
            tp as f64 / (np + nt - tp) as f64
        },
        precision: if both_empty { Some(1.0) } else { ratio(tp, np) },
        recall: if both_empty { Some(1.0) } else { ratio(tp, nt) },
        specificity: ratio(tn, tn + fp),
        hd: None,
        hd95: None,
        assd: None,
        nsd: 0.0,
        pred_voxels: np,
        target_voxels: nt,
    };
    if both_empty {
        m.hd = Some(0.0);
        m.hd95 = Some(0.0);
        m.assd = Some(0.0);
        m.nsd = 1.0;
        return m;
    }
    if np == 0 || nt == 0 {
        return m;
    }
    if b[0][0] >= b[0][1] {
        return m;
    }
    // Surfaces inside the union's box (outside it both masks are background), as points, and the
    // distances from each surface to the other (both directions at once).
    let shape = [b[0][1] - b[0][0], b[1][1] - b[1][0], b[2][1] - b[2][0]];
    let origin = [b[0][0], b[1][0], b[2][0]];
    let (ep, et) = rayon::join(
        || edge_points(&box_mask(g, &b, pred), shape, g, origin),
        || edge_points(&box_mask(g, &b, target), shape, g, origin),
    );
    let Some((mut d_pt, mut d_tp)) = mutual_distances(ep, et, g) else {
        return m;
    };
    d_pt.sort_by(f64::total_cmp);
    d_tp.sort_by(f64::total_cmp);
    let (max_pt, max_tp) = (d_pt[d_pt.len() - 1], d_tp[d_tp.len() - 1]);
    m.hd = Some(max_pt.max(max_tp));
    m.hd95 = Some(percentile(&d_pt, 95.0).max(percentile(&d_tp, 95.0)));
    let total = d_pt.len() + d_tp.len();
    m.assd = Some((d_pt.iter().sum::<f64>() + d_tp.iter().sum::<f64>()) / total as f64);
    let close = d_pt.iter().filter(|&&d| d <= nsd_tolerance).count()
        + d_tp.iter().filter(|&&d| d <= nsd_tolerance).count();
    m.nsd = close as f64 / total as f64;
    m
}

fn check_pair(a: &[usize], b: &[usize], spacing: Option<&[f64]>, tol: f64) -> Result<Grid> {
    if a != b {
        return Err(CoreError::ShapeMismatch {
            left: a.to_vec(),
            right: b.to_vec(),
        });
    }
    if !(tol.is_finite() && tol >= 0.0) {
        return Err(CoreError::BadParameter {
            name: "nsd_tolerance",
            value: tol,
            expected: "a finite number >= 0",
        });
    }
    Grid::new(a, spacing)
}

/// Metrics of a binary prediction against a binary target (non-zero is foreground), 1 to 3 axes, with
/// voxel spacing and the NSD tolerance in spacing units. See the [module documentation](self).
///
/// # Errors
/// [`CoreError`] for different shapes, empty arrays, more than 3 axes, a bad spacing or a negative
/// tolerance.
///
/// ```
/// use ndarray::array;
/// let pred = array![[0, 1, 1, 0], [0, 1, 1, 0]];
/// let target = array![[0, 0, 1, 1], [0, 0, 1, 1]];
/// let m = segloss_core::binary_metrics(&pred, &target, None, 1.0)?;
/// assert_eq!(m.dice, 0.5);
/// assert_eq!(m.iou, 1.0 / 3.0);
/// assert_eq!(m.hd, Some(1.0));
/// assert_eq!(m.nsd, 1.0);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn binary_metrics<T: Voxel, S: Data<Elem = T>, D: Dimension>(
    pred: &ArrayBase<S, D>,
    target: &ArrayBase<S, D>,
    spacing: Option<&[f64]>,
    nsd_tolerance: f64,
) -> Result<ClassMetrics> {
    let g = check_pair(pred.shape(), target.shape(), spacing, nsd_tolerance)?;
    let (p, t) = (c_order(pred), c_order(target));
    Ok(class_metrics(
        &g,
        |i| p[i].is_foreground(),
        |i| t[i].is_foreground(),
        nsd_tolerance,
    ))
}

/// Metrics per class of two label maps. `classes`: the labels to score (default: every non-zero label
/// present in either map, in increasing order). Returns `(class, metrics)` pairs.
///
/// # Errors
/// As [`binary_metrics`].
///
/// ```
/// use ndarray::array;
/// let pred = array![[0u8, 1, 1, 2], [0, 1, 2, 2]];
/// let target = array![[0u8, 1, 1, 2], [0, 1, 1, 2]];
/// let per_class = segloss_core::label_metrics(&pred, &target, None, None, 1.0)?;
/// assert_eq!(per_class.len(), 2);
/// assert_eq!(per_class[0].0, 1);
/// assert!((per_class[0].1.dice - 6.0 / 7.0).abs() < 1e-12);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn label_metrics<T, S, D>(
    pred: &ArrayBase<S, D>,
    target: &ArrayBase<S, D>,
    classes: Option<&[T]>,
    spacing: Option<&[f64]>,
    nsd_tolerance: f64,
) -> Result<Vec<(T, ClassMetrics)>>
where
    T: Voxel + PartialOrd,
    S: Data<Elem = T>,
    D: Dimension,
{
    let g = check_pair(pred.shape(), target.shape(), spacing, nsd_tolerance)?;
    let (p, t) = (c_order(pred), c_order(target));
    let classes: Vec<T> = match classes {
        Some(c) => c.to_vec(),
        None => {
            let mut seen: Vec<T> = Vec::new();
            let mut keys = std::collections::HashSet::new();
            for &v in p.iter().chain(t.iter()) {
                if v.is_foreground() && keys.insert(v.label_key()) {
                    seen.push(v);
                }
            }
            seen.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            seen
        }
    };
    Ok(classes
        .into_iter()
        .map(|c| {
            let m = class_metrics(
                &g,
                |i| p[i].same_label(c),
                |i| t[i].same_label(c),
                nsd_tolerance,
            );
            (c, m)
        })
        .collect())
}
