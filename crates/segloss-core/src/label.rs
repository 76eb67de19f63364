//! Connected components of a mask, in 1 to 3 dimensions, with face or full connectivity.
//!
//! Two raster passes with union-find over provisional labels (path halving, the smaller label wins), so
//! the cost is linear in the number of voxels. Components are numbered 1..=K in the raster (C) order of
//! their first voxel, as `scipy.ndimage.label` and `skimage.measure.label` number them.

use ndarray::{Array, ArrayBase, Data, Dimension};

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

/// Labels a C-order mask on a padded grid; returns the labels and K.
pub(crate) fn label_buffer<T: Voxel>(
    mask: &[T],
    g: &Grid,
    conn: Connectivity,
) -> (Vec<u32>, usize) {
    let [n0, n1, n2] = g.shape;
    let mut lab = vec![0u32; g.len()];
    let mut parent: Vec<u32> = vec![0];
    if n0 == 1 {
        scan_2d(mask, n1, n2, conn, &mut lab, &mut parent);
        return resolve(lab, parent);
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
            let interior01 = (i0 > 0 || n0 == 1) && ((i1 > 0 && i1 + 1 < n1) || n1 == 1);
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
                        cur = union(&mut parent, cur, l);
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
    resolve(lab, parent)
}

/// Second pass: final labels in order of first appearance of each root.
fn resolve(mut lab: Vec<u32>, mut parent: Vec<u32>) -> (Vec<u32>, usize) {
    let mut final_of = vec![0u32; parent.len()];
    let mut k = 0u32;
    for l in lab.iter_mut() {
        if *l == 0 {
            continue;
        }
        let r = find(&mut parent, *l);
        if final_of[r as usize] == 0 {
            k += 1;
            final_of[r as usize] = k;
        }
        *l = final_of[r as usize];
    }
    (lab, k as usize)
}

/// Connected components of the foreground (non-zero voxels) of a 1-, 2- or 3-D mask.
///
/// Returns the label image (0 on the background, components numbered 1..=K in the raster order of their
/// first voxel, as `scipy.ndimage.label`) and K.
///
/// # Errors
/// [`CoreError`] for an empty array or more than 3 axes.
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
/// [`CoreError`] for an empty array or more than 3 axes.
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
