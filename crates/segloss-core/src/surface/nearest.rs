//! Exact nearest-neighbour distances between two voxel sets (surface distances), by a k-d tree over
//! the target set instead of an EDT over the whole bounding box.
//!
//! Surfaces are thin: two 128³ blobs have ~10⁵ surface voxels in a bounding box of ~10⁶ voxels, and
//! only the distances at the other surface's voxels are wanted. A query walks the tree with the usual
//! pruning (a subtree is skipped when the query's distance to its points' bounding box is at least the
//! best distance so far), starting from the previous query's nearest point as an upper bound (queries come
//! in tree order, so consecutive ones are close). Squared distances are `Σ ((a_k − b_k)·s_k)²` over
//! voxel indices `a`, `b` and the spacing `s`; on unit spacing they are exact integers, so the
//! distances equal the EDT's bit for bit.

use rayon::prelude::*;

/// Points per leaf.
const LEAF: usize = 8;

/// A static k-d tree: points in spacing units, reordered so that every subtree `[lo, hi)` with more
/// than [`LEAF`] points is split at `mid = (lo + hi) / 2` along the axis of its largest extent, the
/// points before `mid` at most and those after it at least `pts[mid]` along that axis. Every subtree (leaves included)
/// keeps the tight bounding box of its points at index `(lo + hi) / 2` of `bbox`.
pub(crate) struct KdTree {
    pts: Vec<[f64; 3]>,
    /// The spacing: the points are voxel indices, a difference `Δ` along axis `a` counts `Δ·s[a]`.
    s: [f64; 3],
    bbox: Vec<[[f64; 3]; 2]>,
}

impl KdTree {
    /// A tree over the voxels `pts` (indices) of a grid of spacing `s`.
    pub(crate) fn new(mut pts: Vec<[f64; 3]>, s: [f64; 3]) -> KdTree {
        let n = pts.len();
        let mut bbox = vec![[[0.0; 3]; 2]; n];
        build(&mut pts, &mut bbox, &s, 0);
        KdTree { pts, s, bbox }
    }

    /// Squared distance from `q` to the box of the subtree `[lo, hi)`.
    #[inline(always)]
    fn box_dist2(&self, q: &[f64; 3], lo: usize, hi: usize) -> f64 {
        let [bl, bh] = &self.bbox[(lo + hi) / 2];
        let mut d = 0.0;
        for a in 0..3 {
            let x = (bl[a] - q[a]).max(q[a] - bh[a]).max(0.0) * self.s[a];
            d += x * x;
        }
        d
    }

    /// The squared distance from `q` to the nearest point, if below `best`, with its index; else
    /// `(best, usize::MAX)`.
    #[inline]
    fn nearest(&self, q: &[f64; 3], best: f64, stack: &mut Vec<(u32, u32, f64)>) -> (f64, usize) {
        let mut best = (best, usize::MAX);
        let n = self.pts.len();
        if n == 0 {
            return best;
        }
        // Subtrees still to search, with the squared distance to their boxes.
        stack.clear();
        stack.push((0, n as u32, self.box_dist2(q, 0, n)));
        while let Some((lo, hi, bd)) = stack.pop() {
            if bd >= best.0 {
                continue;
            }
            let (lo, hi) = (lo as usize, hi as usize);
            if hi - lo <= LEAF {
                for (i, p) in self.pts[lo..hi].iter().enumerate() {
                    let d = dist2(p, q, &self.s);
                    if d < best.0 {
                        best = (d, lo + i);
                    }
                }
                continue;
            }
            let mid = (lo + hi) / 2;
            let d = dist2(&self.pts[mid], q, &self.s);
            if d < best.0 {
                best = (d, mid);
            }
            let (a, b) = ((lo, mid), (mid + 1, hi));
            let da = if a.0 < a.1 {
                self.box_dist2(q, a.0, a.1)
            } else {
                f64::INFINITY
            };
            let db = if b.0 < b.1 {
                self.box_dist2(q, b.0, b.1)
            } else {
                f64::INFINITY
            };
            // The nearer child last, so that it is searched first.
            let (first, second) = if da <= db {
                ((b, db), (a, da))
            } else {
                ((a, da), (b, db))
            };
            for ((x, y), dd) in [first, second] {
                if dd < best.0 {
                    stack.push((x as u32, y as u32, dd));
                }
            }
        }
        best
    }

    /// The tree's points, in tree order (nearby points are mostly next to each other).
    pub(crate) fn points(&self) -> &[[f64; 3]] {
        &self.pts
    }

    /// The distance from every query point (spacing units) to the nearest point of the tree, in the
    /// queries' order; `None` when the tree is empty.
    pub(crate) fn distances(&self, queries: &[[f64; 3]]) -> Option<Vec<f64>> {
        if self.pts.is_empty() {
            return None;
        }
        let mut out = vec![0f64; queries.len()];
        let chunk = 2048;
        let work = |(qs, os): (&[[f64; 3]], &mut [f64])| {
            // Upper bound from the previous query's nearest point.
            let mut prev = usize::MAX;
            let mut stack = Vec::with_capacity(64);
            for (q, o) in qs.iter().zip(os.iter_mut()) {
                let bound = if prev == usize::MAX {
                    f64::INFINITY
                } else {
                    // Slightly above, so that the same point is found again when it is the nearest.
                    dist2(&self.pts[prev], q, &self.s) * (1.0 + 1e-12) + 1e-300
                };
                let (d, i) = self.nearest(q, bound, &mut stack);
                let (d, i) = if i == usize::MAX {
                    (dist2(&self.pts[prev], q, &self.s), prev)
                } else {
                    (d, i)
                };
                prev = i;
                *o = d.sqrt();
            }
        };
        if queries.len() >= 2 * chunk {
            queries
                .par_chunks(chunk)
                .zip(out.par_chunks_mut(chunk))
                .for_each(work);
        } else {
            work((queries, &mut out));
        }
        Some(out)
    }
}

/// `Σ ((a_k − b_k)·s_k)²`: exact index differences, then one rounding per axis (as the brute force
/// and the EDT's sweeps compute it).
#[inline(always)]
fn dist2(a: &[f64; 3], b: &[f64; 3], s: &[f64; 3]) -> f64 {
    let (x, y, z) = (
        (a[0] - b[0]) * s[0],
        (a[1] - b[1]) * s[1],
        (a[2] - b[2]) * s[2],
    );
    x * x + y * y + z * z
}

/// Builds the implicit tree in place: split along the axis of largest extent at the median; every
/// subtree's bounding box at its middle index.
fn build(pts: &mut [[f64; 3]], bbox: &mut [[[f64; 3]; 2]], s: &[f64; 3], depth: usize) {
    let n = pts.len();
    if n == 0 {
        return;
    }
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for p in pts.iter() {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let mid = n / 2;
    bbox[mid] = [lo, hi];
    if n <= LEAF {
        return;
    }
    let ax = (0..3)
        .max_by(|&a, &b| ((hi[a] - lo[a]) * s[a]).total_cmp(&((hi[b] - lo[b]) * s[b])))
        .unwrap_or(0);
    pts.select_nth_unstable_by(mid, |a, b| a[ax].total_cmp(&b[ax]));
    let (left, rest) = pts.split_at_mut(mid);
    let (bl, brest) = bbox.split_at_mut(mid);
    let (right, br) = (&mut rest[1..], &mut brest[1..]);
    if n >= 1 << 14 && depth < 8 {
        rayon::join(
            || build(left, bl, s, depth + 1),
            || build(right, br, s, depth + 1),
        );
    } else {
        build(left, bl, s, depth + 1);
        build(right, br, s, depth + 1);
    }
}
