//! Connected components of a mask, in 1 to 3 dimensions, with face or full connectivity.
//!
//! Two raster passes with union-find over provisional labels (path halving, the smaller label wins), so
//! the cost is linear in the number of voxels. Components are numbered 1..=K in the raster (C) order of
//! their first voxel, as `scipy.ndimage.label` and `skimage.measure.label` number them.

use ndarray::{Array, ArrayBase, Data, Dimension};
use rayon::prelude::*;

use crate::edt::{c_order, to_array};
use crate::element::Voxel;
use crate::error::Result;
use crate::grid::Grid;

/// Which neighbours are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Connectivity {
    /// Voxels sharing a face: 4 neighbours in 2D, 6 in 3D (scipy's default structure).
    Face,
    /// Voxels sharing a face, an edge or a corner: 8 neighbours in 2D, 26 in 3D.
    #[default]
    Full,
}

impl std::str::FromStr for Connectivity {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "face" => Ok(Connectivity::Face),
            "full" => Ok(Connectivity::Full),
            other => Err(format!(
                "unknown connectivity {other:?}: expected face or full"
            )),
        }
    }
}

/// The neighbour offsets `(d0, d1, d2)` that precede a voxel in raster order.
fn backward_offsets(c: Connectivity) -> Vec<[isize; 3]> {
    let mut v = Vec::new();
    for d0 in -1..=1isize {
        for d1 in -1..=1isize {
            for d2 in -1..=1isize {
                let before = (d0, d1, d2) < (0, 0, 0);
                let nz = (d0 != 0) as u8 + (d1 != 0) as u8 + (d2 != 0) as u8;
                let ok = match c {
                    Connectivity::Face => nz == 1,
                    Connectivity::Full => nz >= 1,
                };
                if before && ok {
                    v.push([d0, d1, d2]);
                }
            }
        }
    }
    v
}

#[inline]
fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
}

#[inline]
fn union(parent: &mut [u32], a: u32, b: u32) -> u32 {
    let ra = find(parent, a);
    let rb = find(parent, b);
    if ra < rb {
        parent[rb as usize] = ra;
        ra
    } else {
        parent[ra as usize] = rb;
        rb
    }
}

/// First pass in 2D (`n0 == 1`): provisional labels with a decision tree over the already-scanned
/// neighbours (for full connectivity, a labelled north neighbour is already joined with the north-west,
/// west and north-east ones, so its label is taken without a union).
fn scan_2d<T: Voxel>(
    mask: &[T],
    n1: usize,
    n2: usize,
    conn: Connectivity,
    lab: &mut [u32],
    parent: &mut Vec<u32>,
) {
    let new_label = |parent: &mut Vec<u32>| {
        let l = parent.len() as u32;
        parent.push(l);
        l
    };
    for i1 in 0..n1 {
        let row = i1 * n2;
        for i2 in 0..n2 {
            let idx = row + i2;
            if !mask[idx].is_foreground() {
                continue;
            }
            let w = if i2 > 0 { lab[idx - 1] } else { 0 };
            let (nw, n, ne) = if i1 > 0 {
                let up = idx - n2;
                (
                    if i2 > 0 { lab[up - 1] } else { 0 },
                    lab[up],
                    if i2 + 1 < n2 { lab[up + 1] } else { 0 },
                )
            } else {
                (0, 0, 0)
            };
            lab[idx] = match conn {
                Connectivity::Face => match (w, n) {
                    (0, 0) => new_label(parent),
                    (0, x) | (x, 0) => x,
                    (a, b) if a == b => a,
                    (a, b) => union(parent, a, b),
                },
                Connectivity::Full => {
                    if n != 0 {
                        n
                    } else {
                        let left = if w != 0 { w } else { nw };
                        match (left, ne) {
                            (0, 0) => new_label(parent),
                            (0, x) | (x, 0) => x,
                            (a, b) if a == b => a,
                            (a, b) => union(parent, a, b),
                        }
                    }
                }
            };
        }
    }
}

/// First pass on a padded grid (any number of axes): provisional labels and their union-find forest.
fn scan<T: Voxel>(
    mask: &[T],
    g: &Grid,
    conn: Connectivity,
    lab: &mut [u32],
    parent: &mut Vec<u32>,
) {
    let [n0, n1, n2] = g.shape;
    if n0 == 1 {
        scan_2d(mask, n1, n2, conn, lab, parent);
        return;
    }
    // Offsets restricted to the axes that exist; boundaries are checked per voxel.
    let offs: Vec<[isize; 3]> = backward_offsets(conn)
        .into_iter()
        .filter(|o| (0..3).all(|a| o[a] == 0 || g.shape[a] > 1))
        .collect();
    let s0 = (n1 * n2) as isize;
    let s1 = n2 as isize;
    for i0 in 0..n0 {
        for i1 in 0..n1 {
            let row = i0 * n1 * n2 + i1 * n2;
            let interior01 = i0 > 0 && ((i1 > 0 && i1 + 1 < n1) || n1 == 1);
            for i2 in 0..n2 {
                let idx = row + i2;
                if !mask[idx].is_foreground() {
                    continue;
                }
                let mut cur = 0u32;
                let interior = interior01 && ((i2 > 0 && i2 + 1 < n2) || n2 == 1);
                for o in &offs {
                    if !interior {
                        let j0 = i0 as isize + o[0];
                        let j1 = i1 as isize + o[1];
                        let j2 = i2 as isize + o[2];
                        if j0 < 0 || j1 < 0 || j2 < 0 || j1 >= n1 as isize || j2 >= n2 as isize {
                            continue;
                        }
                    }
                    let nb = (idx as isize + o[0] * s0 + o[1] * s1 + o[2]) as usize;
                    let l = lab[nb];
                    if l == 0 {
                        continue;
                    }
                    if cur == 0 {
                        cur = l;
                    } else if l != cur {
                        cur = union(parent, cur, l);
                    }
                }
                if cur == 0 {
                    cur = parent.len() as u32;
                    parent.push(cur);
                }
                lab[idx] = cur;
            }
        }
    }
}

/// Labels a C-order mask on a padded grid; returns the labels and K.
///
/// The outermost axis is cut into one stripe per worker; each stripe is scanned on its own (its
/// provisional labels offset past the previous stripes'), the components that cross a stripe border
/// are joined, and the final relabelling runs in parallel. Provisional labels grow in raster order and
/// unions keep the smaller label as the root, so a component's root is the label of its first voxel
/// and numbering the roots in increasing order numbers the components in raster order.
pub(crate) fn label_buffer<T: Voxel>(
    mask: &[T],
    g: &Grid,
    conn: Connectivity,
) -> (Vec<u32>, usize) {
    let [_, n1, n2] = g.shape;
    let ax = if g.shape[0] > 1 { 0 } else { 1 };
    let len_ax = g.shape[ax];
    let plane: usize = g.shape[ax + 1..].iter().product();
    let stripes = if g.len() >= 1 << 16 {
        rayon::current_num_threads().clamp(1, len_ax)
    } else {
        1
    };
    let rows_per = len_ax.div_ceil(stripes);
    let chunk = rows_per * plane;
    let mut lab = vec![0u32; g.len()];
    let scan_stripe = |(l, m): (&mut [u32], &[T])| {
        let rows = l.len() / plane;
        let shape = if ax == 0 {
            [rows, n1, n2]
        } else {
            [1, rows, n2]
        };
        let sub = Grid { shape, ..*g };
        let mut parent = vec![0u32];
        scan(m, &sub, conn, l, &mut parent);
        parent
    };
    let locals: Vec<Vec<u32>> = if stripes > 1 {
        lab.par_chunks_mut(chunk)
            .zip(mask.par_chunks(chunk))
            .map(scan_stripe)
            .collect()
    } else {
        vec![scan_stripe((&mut lab[..], mask))]
    };
    // One forest over all stripes.
    let mut offsets = Vec::with_capacity(locals.len());
    let mut parent: Vec<u32> = vec![0];
    for p in &locals {
        let off = parent.len() as u32 - 1;
        offsets.push(off);
        parent.extend(p[1..].iter().map(|&x| x + off));
    }
    // Join across the stripe borders: the first row (plane) of a stripe with the last of the previous.
    let within: Vec<[isize; 2]> = match conn {
        Connectivity::Face => vec![[0, 0]],
        Connectivity::Full => (-1..=1)
            .flat_map(|a| (-1..=1).map(move |b| [a, b]))
            .collect(),
    };
    // The plane's own axes: (n1, n2) in 3D, (1, n2) in 2D.
    let (p1, p2) = if ax == 0 { (n1, n2) } else { (1, n2) };
    for s in 1..locals.len() {
        let start = s * chunk;
        for i1 in 0..p1 {
            for i2 in 0..p2 {
                let l = lab[start + i1 * p2 + i2];
                if l == 0 {
                    continue;
                }
                let gl = l + offsets[s];
                for d in &within {
                    let (j1, j2) = (i1 as isize + d[0], i2 as isize + d[1]);
                    if j1 < 0 || j2 < 0 || j1 >= p1 as isize || j2 >= p2 as isize {
                        continue;
                    }
                    let m = lab[start - plane + j1 as usize * p2 + j2 as usize];
                    if m != 0 {
                        union(&mut parent, gl, m + offsets[s - 1]);
                    }
                }
            }
        }
    }
    // Number the roots in increasing order (= raster order of the components' first voxels).
    let mut final_of = vec![0u32; parent.len()];
    let mut k = 0u32;
    for l in 1..parent.len() as u32 {
        let r = find(&mut parent, l);
        if r == l {
            k += 1;
            final_of[l as usize] = k;
        } else {
            final_of[l as usize] = final_of[r as usize];
        }
    }
    let relabel = |(s, l): (usize, &mut [u32])| {
        let off = offsets[s];
        for x in l.iter_mut() {
            if *x != 0 {
                *x = final_of[(*x + off) as usize];
            }
        }
    };
    if stripes > 1 {
        lab.par_chunks_mut(chunk).enumerate().for_each(relabel);
    } else {
        relabel((0, &mut lab[..]));
    }
    (lab, k as usize)
}

/// Connected components of the foreground (non-zero voxels) of a 1-, 2- or 3-D mask.
///
/// Returns the label image (0 on the background, components numbered 1..=K in the raster order of their
/// first voxel, as `scipy.ndimage.label`) and K.
///
/// # Errors
/// [`CoreError`](crate::CoreError) for an empty array or more than 3 axes.
///
/// ```
/// use ndarray::array;
/// use segloss_core::{connected_components, Connectivity};
///
/// let mask = array![
///     [1, 0, 0, 1],
///     [0, 1, 0, 1],
///     [0, 0, 0, 0],
/// ];
/// let (labels, k) = connected_components(&mask, Connectivity::Face)?;
/// assert_eq!(k, 3);
/// assert_eq!(labels, array![[1, 0, 0, 2], [0, 3, 0, 2], [0, 0, 0, 0]]);
///
/// let (labels, k) = connected_components(&mask, Connectivity::Full)?;
/// assert_eq!(k, 2);
/// assert_eq!(labels, array![[1, 0, 0, 2], [0, 1, 0, 2], [0, 0, 0, 0]]);
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn connected_components<T: Voxel, S: Data<Elem = T>, D: Dimension>(
    mask: &ArrayBase<S, D>,
    connectivity: Connectivity,
) -> Result<(Array<u32, D>, usize)> {
    let g = Grid::new(mask.shape(), None)?;
    let data = c_order(mask);
    let (lab, k) = label_buffer(&data, &g, connectivity);
    Ok((to_array(mask.raw_dim(), lab)?, k))
}

/// Renumbers the distinct non-zero values of a label image 1..=K in raster order of first appearance
/// (instances need not be connected); returns the new labels and K.
pub(crate) fn relabel_buffer<T: Voxel>(labels: &[T]) -> Result<(Vec<u32>, usize)> {
    use std::collections::HashMap;
    let mut map: HashMap<u64, u32> = HashMap::new();
    let mut out = vec![0u32; labels.len()];
    let mut last_key = 0u64;
    let mut last_val = 0u32;
    for (o, &v) in out.iter_mut().zip(labels) {
        if !v.is_foreground() {
            continue;
        }
        let key = v.label_key();
        if key != last_key || last_val == 0 {
            let n = map.len() as u32 + 1;
            last_val = *map.entry(key).or_insert(n);
            last_key = key;
        }
        *o = last_val;
    }
    Ok((out, map.len()))
}

/// Renumbers the distinct non-zero values of an instance-label image 1..=K, in the raster order of their
/// first voxel; returns the new labels and K. Instances need not be connected.
///
/// # Errors
/// [`CoreError`](crate::CoreError) for an empty array or more than 3 axes.
///
/// ```
/// use ndarray::array;
/// let (l, k) = segloss_core::relabel_sequential(&array![[0, 7, 7], [3, 0, 7]])?;
/// assert_eq!((l, k), (array![[0, 1, 1], [2, 0, 1]], 2));
/// # Ok::<(), segloss_core::CoreError>(())
/// ```
pub fn relabel_sequential<T: Voxel, S: Data<Elem = T>, D: Dimension>(
    labels: &ArrayBase<S, D>,
) -> Result<(Array<u32, D>, usize)> {
    Grid::new(labels.shape(), None)?;
    let data = c_order(labels);
    let (lab, k) = relabel_buffer(&data)?;
    Ok((to_array(labels.raw_dim(), lab)?, k))
}
