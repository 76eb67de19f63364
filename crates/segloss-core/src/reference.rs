//! Brute-force versions of every map, for tests: slow (quadratic in the number of voxels), obviously
//! correct, and with the same semantics as the fast functions they are named after.
//!
//! Each takes a C-order slice and its shape (1 to 3 axes) and returns a C-order `Vec<f64>`; nothing is
//! checked, so they are for small, valid inputs only.

use crate::element::Voxel;
use crate::label::Connectivity;
use crate::weightmap::{ClassWeight, WeightMapConfig};

fn coords(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| crate::edt::unravel_index(i, shape))
        .collect()
}

fn dist2(a: &[usize], b: &[usize], spacing: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .zip(spacing)
        .map(|((&x, &y), &s)| {
            let d = (x as f64 - y as f64) * s;
            d * d
        })
        .sum()
}

fn spacing_or_ones(spacing: Option<&[f64]>, n: usize) -> Vec<f64> {
    spacing.map_or(vec![1.0; n], |s| s.to_vec())
}

/// Brute-force [`edt`](crate::edt()): per foreground voxel, the minimum distance over all background
/// voxels (0 everywhere without background).
pub fn edt_reference<T: Voxel>(mask: &[T], shape: &[usize], spacing: Option<&[f64]>) -> Vec<f64> {
    let sp = spacing_or_ones(spacing, shape.len());
    let c = coords(shape);
    let bg: Vec<usize> = (0..mask.len())
        .filter(|&i| !mask[i].is_foreground())
        .collect();
    (0..mask.len())
        .map(|i| {
            if !mask[i].is_foreground() || bg.is_empty() {
                0.0
            } else {
                bg.iter()
                    .map(|&j| dist2(&c[i], &c[j], &sp))
                    .fold(f64::INFINITY, f64::min)
                    .sqrt()
            }
        })
        .collect()
}

/// Brute-force [`multilabel_edt`](crate::multilabel_edt): per labelled voxel, the minimum distance over
/// all voxels of another label (0 everywhere when none exists).
pub fn multilabel_edt_reference<T: Voxel>(
    labels: &[T],
    shape: &[usize],
    spacing: Option<&[f64]>,
) -> Vec<f64> {
    let sp = spacing_or_ones(spacing, shape.len());
    let c = coords(shape);
    let d: Vec<f64> = (0..labels.len())
        .map(|i| {
            if !labels[i].is_foreground() {
                return 0.0;
            }
            (0..labels.len())
                .filter(|&j| !labels[j].same_label(labels[i]))
                .map(|j| dist2(&c[i], &c[j], &sp))
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
        .collect();
    d.into_iter()
        .map(|x| if x.is_finite() { x } else { 0.0 })
        .collect()
}

/// Brute-force [`connected_components`](crate::connected_components): flood fill from each unlabelled
/// foreground voxel in raster order. Returns the labels and their count.
pub fn connected_components_reference<T: Voxel>(
    mask: &[T],
    shape: &[usize],
    connectivity: Connectivity,
) -> (Vec<u32>, usize) {
    let c = coords(shape);
    let n = mask.len();
    let adjacent = |a: &[usize], b: &[usize]| {
        let diffs: Vec<usize> = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y)).collect();
        if diffs.iter().any(|&d| d > 1) {
            return false;
        }
        let nz = diffs.iter().filter(|&&d| d == 1).count();
        match connectivity {
            Connectivity::Face => nz == 1,
            Connectivity::Full => nz >= 1,
        }
    };
    let mut lab = vec![0u32; n];
    let mut k = 0;
    for s in 0..n {
        if !mask[s].is_foreground() || lab[s] != 0 {
            continue;
        }
        k += 1;
        lab[s] = k;
        let mut stack = vec![s];
        while let Some(i) = stack.pop() {
            for j in 0..n {
                if mask[j].is_foreground() && lab[j] == 0 && adjacent(&c[i], &c[j]) {
                    lab[j] = k;
                    stack.push(j);
                }
            }
        }
    }
    (lab, k as usize)
}

/// The exact U-Net weight map of an instance-label image (labels 1..=K, 0 background): one brute-force
/// distance map per instance, `d1`, `d2` the two smallest at each background voxel, no cut-off.
pub fn unet_weight_map_reference(
    instances: &[u32],
    shape: &[usize],
    spacing: Option<&[f64]>,
    config: &WeightMapConfig,
) -> Vec<f64> {
    let sp = spacing_or_ones(spacing, shape.len());
    let c = coords(shape);
    let n = instances.len();
    let k = instances.iter().copied().max().unwrap_or(0) as usize;
    let n_fg = instances.iter().filter(|&&l| l != 0).count();
    let n_bg = n - n_fg;
    let cw = |count: usize| match config.class_weight {
        ClassWeight::None => 1.0,
        ClassWeight::Balanced => n as f64 / (2.0 * count as f64),
    };
    (0..n)
        .map(|i| {
            if instances[i] != 0 {
                return cw(n_fg);
            }
            let mut wc = cw(n_bg);
            if k >= 2 {
                let mut d: Vec<f64> = (1..=k as u32)
                    .map(|l| {
                        (0..n)
                            .filter(|&j| instances[j] == l)
                            .map(|j| dist2(&c[i], &c[j], &sp))
                            .fold(f64::INFINITY, f64::min)
                            .sqrt()
                    })
                    .collect();
                d.sort_by(|a, b| a.total_cmp(b));
                if d[1].is_finite() {
                    let s = d[0] + d[1];
                    wc += config.w0 * (-(s * s) / (2.0 * config.sigma * config.sigma)).exp();
                }
            }
            wc
        })
        .collect()
}

/// Brute-force [`surface`](crate::surface()): a foreground voxel whose face neighbour is background or
/// outside the array.
pub fn surface_reference<T: Voxel>(mask: &[T], shape: &[usize]) -> Vec<bool> {
    let c = coords(shape);
    (0..mask.len())
        .map(|i| {
            if !mask[i].is_foreground() {
                return false;
            }
            (0..shape.len()).any(|a| {
                [-1isize, 1].iter().any(|&d| {
                    let x = c[i][a] as isize + d;
                    if x < 0 || x >= shape[a] as isize {
                        return true;
                    }
                    let mut q = c[i].clone();
                    q[a] = x as usize;
                    let j = q.iter().zip(shape).fold(0, |acc, (&v, &n)| acc * n + v);
                    !mask[j].is_foreground()
                })
            })
        })
        .collect()
}

/// Brute-force [`surface_distances`](crate::surface_distances): from every surface voxel of `from`
/// (C order) the minimum distance over the surface voxels of `to`; `None` when `to` has none.
pub fn surface_distances_reference<T: Voxel>(
    from: &[T],
    to: &[T],
    shape: &[usize],
    spacing: Option<&[f64]>,
) -> Option<Vec<f64>> {
    let sp = spacing_or_ones(spacing, shape.len());
    let c = coords(shape);
    let (ef, et) = (surface_reference(from, shape), surface_reference(to, shape));
    let targets: Vec<usize> = (0..et.len()).filter(|&j| et[j]).collect();
    if targets.is_empty() {
        return None;
    }
    Some(
        (0..ef.len())
            .filter(|&i| ef[i])
            .map(|i| {
                targets
                    .iter()
                    .map(|&j| dist2(&c[i], &c[j], &sp))
                    .fold(f64::INFINITY, f64::min)
                    .sqrt()
            })
            .collect(),
    )
}
