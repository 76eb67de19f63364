//! The U-Net weight map's two nearest instances on images of one plane (1-D and 2-D), without crops.
//!
//! Instances are given as runs of voxels along the rows (from a run-based labelling of the binary mask,
//! or from the runs of an instance-label image). For every instance `i`, the squared distances along
//! the rows (axis 1) to it are computed over its bounding box only; outside the box they follow from
//! each column's first and last instance row. Each row `r` on which `i` can take part in a border term
//! with a neighbour `j` then gets the lower envelope of the parabolas `g(c') + ((c − c')·s)²` over the
//! instance's columns `c'` with `g(c') ≤ B²`, evaluated only over the background columns of the
//! hull of the lenses ([`Lens::columns`]) of `i` with its neighbours, each value offered as one of
//! the two smallest. For instances at most [`BRUTE_W`] columns wide (cells) the envelope is not built:
//! each such column takes the minimum over all the box's columns directly ([`offer_brute`]),
//! which costs more operations but vectorises, where the envelope is a chain of dependent,
//! branching steps (1.25× faster maps on 256² images with 50 cells).
//!
//! Why the lenses suffice: where `d1 + d2 ≤ B` with nearest instance `a` and second `b`, the voxel
//! lies in the lens of `a` with `b` and of `b` with `a`, so both distances (each at most `B`, hence
//! exact) are offered, and any other offered value is a distance to a third instance, so at least
//! `d2`. Elsewhere every offered value is a true distance or larger, so the sum of the two smallest
//! stays above `B` and the voxel gets no border term, as the cut-off asks.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{split_rows, BBox};
use crate::element::{Float, Voxel};
use crate::grid::Grid;
use crate::label::Connectivity;

/// The instances of a one-plane image as runs along the rows.
pub(super) struct Runs {
    /// Number of instances.
    pub k: usize,
    /// Bounding boxes of instances 1..=k (index 0 unused).
    pub boxes: Vec<BBox>,
    /// Number of foreground voxels.
    pub n_fg: usize,
    /// Instance `l`'s runs are `runs[start[l]..start[l + 1]]`.
    start: Vec<u32>,
    /// `(row, first column, end column)`.
    runs: Vec<[u32; 3]>,
    /// All runs in raster order; row `r`'s are `raster[row_at[r]..row_at[r + 1]]`.
    raster: Vec<[u32; 3]>,
    row_at: Vec<u32>,
}

impl Runs {
    /// Groups runs `(row, start, end)` with their instance ids (1..=k) by instance, with boxes.
    fn from_runs(k: usize, rows: usize, runs: &[[u32; 3]], id: &[u32]) -> Runs {
        let mut row_at = vec![0u32; rows + 1];
        for run in runs {
            row_at[run[0] as usize + 1] += 1;
        }
        for r in 1..row_at.len() {
            row_at[r] += row_at[r - 1];
        }
        let mut start = vec![0u32; k + 2];
        for &l in id {
            start[l as usize + 1] += 1;
        }
        for l in 1..start.len() {
            start[l] += start[l - 1];
        }
        let mut next = start.clone();
        let mut grouped = vec![[0u32; 3]; runs.len()];
        let mut boxes: Vec<BBox> = vec![[[usize::MAX, 0]; 3]; k + 1];
        let mut n_fg = 0usize;
        for (&run, &l) in runs.iter().zip(id) {
            grouped[next[l as usize] as usize] = run;
            next[l as usize] += 1;
            let [r, s, e] = run.map(|x| x as usize);
            n_fg += e - s;
            let b = &mut boxes[l as usize];
            b[0] = [0, 1];
            b[1] = [b[1][0].min(r), b[1][1].max(r + 1)];
            b[2] = [b[2][0].min(s), b[2][1].max(e)];
        }
        Runs {
            k,
            boxes,
            n_fg,
            start,
            runs: grouped,
            raster: runs.to_vec(),
            row_at,
        }
    }

    fn of(&self, l: usize) -> &[[u32; 3]] {
        &self.runs[self.start[l] as usize..self.start[l + 1] as usize]
    }

    /// The runs of row `r` (all instances), in column order.
    fn row(&self, r: usize) -> &[[u32; 3]] {
        &self.raster[self.row_at[r] as usize..self.row_at[r + 1] as usize]
    }
}

/// Connected components of a one-plane mask from its runs of foreground voxels along the rows: runs of
/// consecutive rows that touch (overlap, or also meet at a corner with full connectivity) are joined
/// by union-find; components are numbered in raster order of their first voxel.
pub(super) fn label_runs<T: Voxel>(mask: &[T], g: &Grid, conn: Connectivity) -> Runs {
    let [_, n1, n2] = g.shape;
    let reach = usize::from(conn == Connectivity::Full);
    let mut runs: Vec<[u32; 3]> = Vec::new();
    let mut parent: Vec<u32> = Vec::new();
    let find = |parent: &mut [u32], mut x: u32| {
        while parent[x as usize] != x {
            let p = parent[parent[x as usize] as usize];
            parent[x as usize] = p;
            x = p;
        }
        x
    };
    let mut prev = 0..0;
    for r in 0..n1 {
        let row = &mask[r * n2..(r + 1) * n2];
        let first = runs.len();
        let mut j = 0;
        let mut p = prev.start;
        let bits = T::as_bits(row);
        while j < n2 {
            if let Some(b) = bits {
                j = next_byte(b, j, true);
            } else {
                // Skip background, 16 voxels at a time where possible.
                while j + 16 <= n2
                    && row[j..j + 16]
                        .iter()
                        .fold(0u8, |a, v| a | u8::from(v.is_foreground()))
                        == 0
                {
                    j += 16;
                }
                while j < n2 && !row[j].is_foreground() {
                    j += 1;
                }
            }
            if j >= n2 {
                break;
            }
            let s = j;
            if let Some(b) = bits {
                j = next_byte(b, j, false);
            } else {
                while j < n2 && row[j].is_foreground() {
                    j += 1;
                }
            }
            let me = runs.len() as u32;
            runs.push([r as u32, s as u32, j as u32]);
            parent.push(me);
            // Runs [ps, pe) of the previous row touching [s, j): ps < j + reach and pe + reach > s.
            while p < prev.end && (runs[p][2] as usize) + reach <= s {
                p += 1;
            }
            let mut q = p;
            while q < prev.end && (runs[q][1] as usize) < j + reach {
                let (a, b) = (find(&mut parent, me), find(&mut parent, q as u32));
                if a != b {
                    // The smaller root wins, so a component's root is its first run.
                    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                    parent[hi as usize] = lo;
                }
                q += 1;
            }
            // The last touching run may touch the next run of this row too.
            p = q.saturating_sub(1).max(p);
        }
        prev = first..runs.len();
    }
    let mut id = vec![0u32; runs.len()];
    let mut k = 0usize;
    for x in 0..runs.len() {
        let root = find(&mut parent, x as u32) as usize;
        if root == x {
            k += 1;
            id[x] = k as u32;
        } else {
            id[x] = id[root];
        }
    }
    Runs::from_runs(k, n1, &runs, &id)
}

/// The first index `≥ j` of a byte that is 1 (`set`) or 0 (`!set`) in bytes that are 0 or 1, or
/// `b.len()`: eight bytes at a time.
#[inline]
fn next_byte(b: &[u8], mut j: usize, set: bool) -> usize {
    let flip = if set { 0 } else { 0x0101_0101_0101_0101u64 };
    while j + 8 <= b.len() {
        let w = u64::from_le_bytes(b[j..j + 8].try_into().unwrap()) ^ flip;
        if w != 0 {
            return j + (w.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while j < b.len() && (b[j] != 0) != set {
        j += 1;
    }
    j
}

/// The runs of the instances 1..=k of a one-plane label image.
pub(super) fn label_image_runs(labels: &[u32], k: usize, g: &Grid) -> Runs {
    let [_, n1, n2] = g.shape;
    let mut runs: Vec<[u32; 3]> = Vec::new();
    let mut id: Vec<u32> = Vec::new();
    for r in 0..n1 {
        let row = &labels[r * n2..(r + 1) * n2];
        let mut j = 0;
        while j < n2 {
            let l = row[j];
            let mut e = j + 1;
            while e < n2 && row[e] == l {
                e += 1;
            }
            if l != 0 {
                runs.push([r as u32, j as u32, e as u32]);
                id.push(l);
            }
            j = e;
        }
    }
    Runs::from_runs(k, n1, &runs, &id)
}

/// The instances whose boxes are at most `band` apart (spacing units), as adjacency lists over the
/// 0-based instance indices; instances without a voxel (empty boxes) have none.
fn neighbours(boxes: &[BBox], g: &Grid, band: f64) -> Vec<Vec<u32>> {
    let mut nb: Vec<Vec<u32>> = vec![Vec::new(); boxes.len()];
    for (i, j) in super::near_pairs(boxes, g, band) {
        nb[i].push(j as u32);
        nb[j].push(i as u32);
    }
    nb
}

/// `max(a, b)` for values that are never NaN: one `maxsd` (`f64::max` also handles NaN).
#[inline(always)]
fn max2(a: f64, b: f64) -> f64 {
    if a > b {
        a
    } else {
        b
    }
}

/// `min(a, b)` for values that are never NaN.
#[inline(always)]
fn min2(a: f64, b: f64) -> f64 {
    if a < b {
        a
    } else {
        b
    }
}

/// `⌊x⌋` for finite `x` (without SSE4.1's `roundsd`, `f64::floor` is a library call).
#[inline]
fn floor_i64(x: f64) -> i64 {
    let t = x as i64;
    t - ((t as f64) > x) as i64
}

/// Row distance (in rows) from row `r` to the rows `[lo, hi)`.
#[inline]
fn row_gap(r: usize, lo: usize, hi: usize) -> usize {
    if r < lo {
        lo - r
    } else if r >= hi {
        r + 1 - hi
    } else {
        0
    }
}

/// Column reaches of the lens conditions on one row (see [`Lens::columns`]), tabulated by the row gaps.
struct Lens {
    band: f64,
    s1: f64,
    s2: f64,
    /// Largest row gap `k` with `k·s1 ≤ B`.
    kmax: usize,
    /// `√(B² − (t·s1)²)/s2` for `t = k_i + k_j ≤ kmax`.
    pair: Vec<f64>,
    /// `√((B − k_j·s1)² − (k_i·s1)²)/s2` at `k_i·(kmax + 1) + k_j`, when `kmax` is small.
    side: Vec<f64>,
}

impl Lens {
    /// `max_gap`: the largest sum of two row gaps that can occur (twice the number of rows); the
    /// tables stop there, so a huge band (σ large) costs no more than the image.
    fn new(band: f64, s1: f64, s2: f64, max_gap: usize) -> Lens {
        let kmax = ((band / s1).floor() as usize).min(max_gap);
        let root = |x: f64| x.max(0.0).sqrt() / s2;
        let pair = (0..=kmax)
            .map(|t| root(band * band - (t as f64 * s1).powi(2)))
            .collect();
        let side = if kmax <= 128 {
            let mut v = vec![0.0; (kmax + 1) * (kmax + 1)];
            for ki in 0..=kmax {
                for kj in 0..=kmax - ki {
                    let (a, b) = (ki as f64 * s1, kj as f64 * s1);
                    v[ki * (kmax + 1) + kj] = root((band - b) * (band - b) - a * a);
                }
            }
            v
        } else {
            Vec::new()
        };
        Lens {
            band,
            s1,
            s2,
            kmax,
            pair,
            side,
        }
    }

    #[inline]
    fn side(&self, ki: usize, kj: usize) -> f64 {
        if self.side.is_empty() {
            let (a, b) = (ki as f64 * self.s1, kj as f64 * self.s1);
            ((self.band - b) * (self.band - b) - a * a).max(0.0).sqrt() / self.s2
        } else {
            self.side[ki * (self.kmax + 1) + kj]
        }
    }

    /// The columns `c` of row `r` where instance `i` can take part in a border term with instance `j`
    /// (first and last columns `ci`, `cj` of their boxes, as `f64`, converted once per instance; row
    /// gaps `ki`, `kj` from `r`): a superset of `{c : d_i + d_j ≤ B}` from the
    /// box distances `e_i ≤ d_i`, `e_j ≤ d_j` (`e = √(dy² + dx²)`, `dy` the row distance to the box,
    /// `dx` the column distance): `e_i ≤ B − dy_j`, `e_j ≤ B − dy_i` and, as
    /// `e_i + e_j ≥ √((dy_i + dy_j)² + (dx_i + dx_j)²)`, `dx_i + dx_j ≤ √(B² − (dy_i + dy_j)²)`.
    /// As `[lo, hi]` in columns (real numbers); `None` when empty.
    #[inline]
    fn columns(&self, ci: [f64; 2], cj: [f64; 2], ki: usize, kj: usize) -> Option<(f64, f64)> {
        if ki + kj > self.kmax {
            return None;
        }
        let rr = self.pair[ki + kj];
        let ri = self.side(ki, kj);
        let rj = self.side(kj, ki);
        let [i0, i1] = ci;
        let [j0, j1] = cj;
        // dx_i + dx_j ≥ (i0 − c) + (j0 − c) and ≥ (c − i1) + (c − j1).
        let lo = max2(max2((i0 + j0 - rr) * 0.5, i0 - ri), j0 - rj);
        let hi = min2(min2((i1 + j1 + rr) * 0.5, i1 + ri), j1 + rj);
        (lo <= hi).then_some((lo, hi))
    }
}

/// [`super::nearest_two`] for images of one plane (see the [module documentation](self)).
pub(super) fn plane_nearest_two<F: Float>(
    inst: &Runs,
    g: &Grid,
    band: f64,
    parallel: bool,
    out: &mut [MaybeUninit<F>],
    finish: &(impl Fn(usize, &[f32], &[f32], &mut [MaybeUninit<F>], usize, &[[u32; 2]]) + Sync),
) {
    let boxes = &inst.boxes[1..];
    let [_, n1, n2] = g.shape;
    let (s1, s2) = (g.spacing[1], g.spacing[2]);
    let nb = neighbours(boxes, g, band);
    // Per instance, its neighbours with the rows where dy_i + dy_j ≤ B can hold (the pair bound along
    // the rows: dy_i + dy_j ≥ (i0 − r) + (j0 − r) and ≥ (r − i1) + (r − j1)), and the hull of those rows.
    let rb = band / s1;
    let pairs: Vec<Vec<(u32, usize, usize)>> = boxes
        .iter()
        .zip(&nb)
        .map(|(bi, js)| {
            js.iter()
                .filter_map(|&j| {
                    let bj = &boxes[j as usize];
                    let a = ((bi[1][0] + bj[1][0]) as f64 - rb) / 2.0;
                    let b = ((bi[1][1] - 1 + bj[1][1] - 1) as f64 + rb) / 2.0;
                    let lo = (-floor_i64(-a)).max(0) as usize;
                    let hi = ((floor_i64(b) + 1).max(0) as usize).min(n1);
                    (lo < hi).then_some((j, lo, hi))
                })
                .collect()
        })
        .collect();
    let rows: Vec<(usize, usize)> = pairs
        .iter()
        .map(|ps| {
            ps.iter().fold((usize::MAX, 0), |(lo, hi), &(_, a, b)| {
                (lo.min(a), hi.max(b))
            })
        })
        .collect();
    let cb = band / s2;
    let spans: Vec<(usize, usize, f64)> = rows
        .iter()
        .zip(boxes)
        .filter(|((lo, hi), _)| lo < hi)
        .map(|(&(lo, hi), b)| {
            let w = (b[2][1] - b[2][0]) as f64;
            (lo, hi, (hi - lo) as f64 * (2.0 * w + cb))
        })
        .collect();
    let total: f64 = spans.iter().map(|s| s.2).sum();
    let threads = rayon::current_num_threads().max(1);
    // A few stripes per worker, so that a worker that falls behind (a busy machine) is helped out by
    // the others; an instance across a stripe border redoes only its column distances.
    let stripes = if total < (1 << 15) as f64 || threads == 1 || !parallel {
        1
    } else {
        (4 * threads).min(n1 / 16).max(threads.min(n1))
    };
    let mut cuts = vec![0usize];
    split_rows(&spans, n2, 0, n1, stripes, &mut cuts);
    cuts.dedup();
    let lens = Lens::new(band, s1, s2, 2 * n1);
    // Each box's first and last columns as f64, for the lenses.
    let colf: Vec<[f64; 2]> = boxes
        .iter()
        .map(|b| [b[2][0] as f64, b[2][1].saturating_sub(1) as f64])
        .collect();
    let cap = band * band;
    let work = |(si, o): (usize, &mut [MaybeUninit<F>])| {
        let (r0, r1) = (cuts[si], cuts[si + 1]);
        // The two smallest squared distances, in buffers kept by the worker thread from call to
        // call, which hold infinity everywhere between calls: each row's touched columns
        // `dirty[r]` are reset after `finish` (one fill per row, not two small fills per window).
        let (mut d1, mut d2) = SCRATCH.with(|c| std::mem::take(&mut *c.borrow_mut()));
        if d1.len() < o.len() {
            d1.resize(o.len(), f32::INFINITY);
            d2.resize(o.len(), f32::INFINITY);
        }
        let mut dirty = vec![[u32::MAX, 0u32]; r1 - r0];
        let mut sc = PlaneScratch::default();
        for (i, bi) in boxes.iter().enumerate() {
            let (lo, hi) = rows[i];
            let (lo, hi) = (lo.max(r0), hi.min(r1));
            if lo >= hi {
                continue;
            }
            sc.columns(inst.of(i + 1), bi, s1);
            // Narrow instances (cells): every window column takes the minimum over all the box's
            // columns, vectorised over the window, instead of building the row's envelope.
            let brute = bi[2][1] - bi[2][0] <= BRUTE_W;
            for r in lo..hi {
                let ki = row_gap(r, bi[1][0], bi[1][1]);
                if ki > lens.kmax {
                    continue;
                }
                // The hull of the lenses on this row: between two lenses there is mostly the
                // instance itself (its own voxels, which are not offered), so one window costs
                // less than sorting and merging them.
                let (mut wa, mut wb) = (f64::INFINITY, f64::NEG_INFINITY);
                for &(j, a, b) in &pairs[i] {
                    if r >= a && r < b {
                        let bj = &boxes[j as usize];
                        let kj = row_gap(r, bj[1][0], bj[1][1]);
                        if let Some((a, b)) = lens.columns(colf[i], colf[j as usize], ki, kj) {
                            wa = min2(wa, a);
                            wb = max2(wb, b);
                        }
                    }
                }
                if wa > wb {
                    continue;
                }
                let at = (r - r0) * n2;
                let ea = (-floor_i64(-(wa - 1e-9))).max(0) as usize;
                let eb = ((floor_i64(wb + 1e-9) + 1).max(0) as usize).min(n2);
                if ea >= eb {
                    continue;
                }
                let has_sites = if brute {
                    sc.row(r, bi, cap as f32)
                } else {
                    sc.envelope(r, bi, cap, s2)
                };
                if !has_sites {
                    continue;
                }
                let dr = &mut dirty[r - r0];
                *dr = [dr[0].min(ea as u32), dr[1].max(eb as u32)];
                // Offered to the background voxels only (the border term's): the window
                // between the row's runs of foreground (a quarter of the window's voxels on
                // touching cells).
                let fg = inst.row(r);
                let mut t = fg.partition_point(|run| run[2] as usize <= ea);
                let mut a = ea;
                while a < eb {
                    let (gap_end, next) = match fg.get(t) {
                        Some(run) if (run[1] as usize) < eb => (run[1] as usize, run[2] as usize),
                        _ => (eb, eb),
                    };
                    if gap_end > a {
                        let (x1, x2) =
                            (&mut d1[at + a..at + gap_end], &mut d2[at + a..at + gap_end]);
                        if brute {
                            sc.offer_brute(bi[2][0], s2, a, x1, x2);
                        } else {
                            sc.offer(bi[2][0], s2, a, x1, x2);
                        }
                    }
                    a = a.max(next);
                    t += 1;
                }
            }
        }
        finish(r0 * n2, &d1[..o.len()], &d2[..o.len()], o, n2, &dirty);
        if d1.len() <= KEEP {
            for (r, &[lo, hi]) in dirty.iter().enumerate() {
                if lo < hi {
                    let (lo, hi) = (r * n2 + lo as usize, r * n2 + hi as usize);
                    d1[lo..hi].fill(f32::INFINITY);
                    d2[lo..hi].fill(f32::INFINITY);
                }
            }
            SCRATCH.with(|c| *c.borrow_mut() = (d1, d2));
        }
    };
    let mut pieces = Vec::with_capacity(cuts.len() - 1);
    let mut rest = out;
    for w in cuts.windows(2) {
        let (head, tail) = rest.split_at_mut((w[1] - w[0]) * n2);
        pieces.push(head);
        rest = tail;
    }
    pieces.into_par_iter().enumerate().for_each(work);
}

/// Largest pair of distance buffers (voxels each) a worker thread keeps for the next call.
const KEEP: usize = 1 << 20;

thread_local! {
    /// The distance buffers of [`plane_nearest_two`] kept by each thread (infinity everywhere).
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// Per-worker scratch of [`plane_nearest_two`]: one instance's row distances and one row's envelope.
struct PlaneScratch {
    /// Squared distances along the columns to the instance over its bounding box (C order), built
    /// only when some column has a gap (not `solid`).
    g: Vec<f32>,
    /// Per column of the box: the first and last row holding the instance (far away when none),
    /// and the number of its voxels.
    top: Vec<f32>,
    bot: Vec<f32>,
    count: Vec<u32>,
    /// Whether every column's voxels are contiguous (then `g` is not built).
    solid: bool,
    /// `q·s2` for the box's columns `q` (for `s2 = qs_s2`), for [`PlaneScratch::offer_brute`].
    qs: Vec<f32>,
    qs_s2: f32,
    /// `s1²`.
    s1s: f32,
    /// One row of squared row distances outside the box.
    grow: Vec<f32>,
    /// The current row's envelope: its sites' positions and `f + x²`, their values, and their number.
    zxh: Vec<[f64; 2]>,
    zf: Vec<f64>,
    /// The sites that own a column, in order, each with the end of its columns (from the box's first
    /// column; the last one's is `i64::MAX`), its column and its value: `(end, q, f)`.
    ce: Vec<(i64, f32, f32)>,
    m: usize,
}

impl Default for PlaneScratch {
    fn default() -> Self {
        PlaneScratch {
            g: Vec::new(),
            top: Vec::new(),
            bot: Vec::new(),
            count: Vec::new(),
            solid: false,
            qs: Vec::new(),
            qs_s2: 0.0,
            s1s: 1.0,
            grow: Vec::new(),
            zxh: Vec::new(),
            zf: Vec::new(),
            ce: Vec::new(),
            m: 0,
        }
    }
}

/// Widest instance box (columns) whose rows are evaluated by brute force over the box's columns
/// ([`PlaneScratch::offer_brute`]) rather than through an envelope: the window × sites
/// evaluations, vectorised, cost less than the envelope's serial steps for boxes this narrow.
const BRUTE_W: usize = 64;

/// Columns of a window evaluated together by [`offer_brute`] (their minima stay in registers).
const BLOCK: usize = 16;

/// The window `d1.len()` columns from `x0` (columns from the box's first, an integer): each column
/// `x` offers `min_q ((x − q)·s2)² + g[q]` over the box's columns `q` as one of the two smallest
/// `(d1, d2)`.
#[inline(always)]
fn offer_brute(g: &[f32], qs: &[f32], x0: f32, s2: f32, d1: &mut [f32], d2: &mut [f32]) {
    let n = d1.len();
    let mut start = 0;
    while start < n {
        // A last piece of at most 8 columns takes an 8-lane block (half the work of a 16-lane one).
        if n - start > 8 {
            offer_block::<BLOCK>(g, qs, x0, s2, start, d1, d2);
            start += BLOCK;
        } else {
            offer_block::<8>(g, qs, x0, s2, start, d1, d2);
            start += 8;
        }
    }
}

/// The `N` columns of [`offer_brute`] from `start` (fewer at the end of the window).
#[inline(always)]
fn offer_block<const N: usize>(
    g: &[f32],
    qs: &[f32],
    x0: f32,
    s2: f32,
    start: usize,
    d1: &mut [f32],
    d2: &mut [f32],
) {
    let len = (d1.len() - start).min(N);
    // The lanes' positions `x·s2`; each site subtracts its own `q·s2` (`qs`): per site and lane a
    // subtraction, a multiplication, an addition and a minimum (exact for unit spacing: integers).
    let xs = (x0 + start as f32) * s2;
    let mut xl = [0f32; N];
    for (l, v) in xl.iter_mut().enumerate() {
        *v = xs + l as f32 * s2;
    }
    let mut acc = [f32::INFINITY; N];
    for (&qk, &gk) in qs.iter().zip(g) {
        for l in 0..N {
            let d = xl[l] - qk;
            let e = d * d + gk;
            acc[l] = if e < acc[l] { e } else { acc[l] };
        }
    }
    let (x1, x2) = (&mut d1[start..start + len], &mut d2[start..start + len]);
    for ((a1, a2), &v) in x1.iter_mut().zip(x2.iter_mut()).zip(&acc[..len]) {
        // Top-2 insertion: d1' = min(d1, v), d2' = min(d2, max(d1, v)).
        let (lo, hi) = if v < *a1 { (v, *a1) } else { (*a1, v) };
        *a1 = lo;
        *a2 = if hi < *a2 { hi } else { *a2 };
    }
}

avx2_dispatch!(
    /// [`offer_brute`], with AVX2 where the CPU has it.
    fn offer_brute_mv(g: &[f32], qs: &[f32], x0: f32, s2: f32, d1: &mut [f32], d2: &mut [f32]) =
        offer_brute
);

impl PlaneScratch {
    /// The squared distances along the rows (axis 1) to the instance with the runs `runs` over its
    /// box `b`, and each column's first and last instance row.
    fn columns(&mut self, runs: &[[u32; 3]], b: &BBox, s1: f64) {
        let (r0, r1) = (b[1][0], b[1][1]);
        let (c0, c1) = (b[2][0], b[2][1]);
        let (h, w) = (r1 - r0, c1 - c0);
        self.s1s = (s1 * s1) as f32;
        self.top.clear();
        self.top.resize(w, f32::INFINITY);
        self.bot.clear();
        self.bot.resize(w, f32::NEG_INFINITY);
        self.count.clear();
        self.count.resize(w, 0);
        // First and last rows per column (runs come in raster order), and voxels per column.
        for &[r, s, e] in runs {
            let (s, e) = (s as usize - c0, e as usize - c0);
            let ri = r as f32;
            for ((t, bo), n) in self.top[s..e]
                .iter_mut()
                .zip(&mut self.bot[s..e])
                .zip(&mut self.count[s..e])
            {
                *t = (*t).min(ri);
                *bo = ri;
                *n += 1;
            }
        }
        // Columns without gaps (every column of a convex instance, such as a cell): the distance
        // along a column is `max(top − r, r − bottom, 0)` rows, no sweeps needed.
        self.solid = self
            .top
            .iter()
            .zip(&self.bot)
            .zip(&self.count)
            .all(|((&t, &bo), &n)| n == 0 || bo - t + 1.0 == n as f32);
        if self.solid {
            return;
        }
        self.g.clear();
        self.g.resize(h * w, f32::INFINITY);
        let gb = &mut self.g[..];
        // The instance's voxels at 0, then forward and backward sweeps of row counts, then counts
        // to squared distances.
        for &[r, s, e] in runs {
            let (r, s, e) = (r as usize, s as usize - c0, e as usize - c0);
            gb[(r - r0) * w + s..(r - r0) * w + e].fill(0.0);
        }
        for i in 1..h {
            let (prev, cur) = gb.split_at_mut(i * w);
            for (x, &px) in cur[..w].iter_mut().zip(&prev[(i - 1) * w..]) {
                let d = px + 1.0;
                *x = if d < *x { d } else { *x };
            }
        }
        for i in (0..h.saturating_sub(1)).rev() {
            let (cur, next) = gb.split_at_mut((i + 1) * w);
            for (x, &nx) in cur[i * w..].iter_mut().zip(&next[..w]) {
                let d = nx + 1.0;
                *x = if d < *x { d } else { *x };
            }
        }
        let _ = c1;
        let s = self.s1s;
        for x in gb.iter_mut() {
            *x = *x * *x * s;
        }
    }

    /// The squared distances `g(q)` along the columns `q` of the box from row `r` to the
    /// instance, into `self.grow`; `false` (and nothing written) when the row is farther than
    /// `cap` from the box.
    fn row(&mut self, r: usize, b: &BBox, cap: f32) -> bool {
        let (r0, r1) = (b[1][0], b[1][1]);
        let w = b[2][1] - b[2][0];
        self.grow.clear();
        if r >= r0 && r < r1 && !self.solid {
            self.grow
                .extend_from_slice(&self.g[(r - r0) * w..(r - r0 + 1) * w]);
            return true;
        }
        let dr = row_gap(r, r0, r1) as f32;
        if dr * dr * self.s1s > cap {
            return false;
        }
        // In f32 (exact for row indices below 2^24; an empty column's ±∞ gives +∞), which
        // vectorises where i64 maxima do not.
        let ri = r as f32;
        let s = self.s1s;
        self.grow
            .extend(self.top.iter().zip(&self.bot).map(|(&t, &bo)| {
                let d = (t - ri).max(ri - bo).max(0.0);
                d * d * s
            }));
        true
    }

    /// The lower envelope of the parabolas `(x − x_q)² + g(q)` of row `r` (x in spacing units from the
    /// box's first column) over the instance's columns `q` with `g(q) ≤ cap`, for
    /// [`PlaneScratch::offer`]. `false` when there is no such column.
    fn envelope(&mut self, r: usize, b: &BBox, cap: f64, s2: f64) -> bool {
        self.m = 0;
        let w = b[2][1] - b[2][0];
        let capf = cap as f32;
        if !self.row(r, b, capf) {
            return false;
        }
        let grow = &self.grow[..];
        self.zxh.resize(w, [0.0; 2]);
        self.zf.resize(w, 0.0);
        let (zxh, zf) = (&mut self.zxh[..w], &mut self.zf[..w]);
        let mut m = 0usize;
        // The last two sites (b on top of a) live in registers: reloading the site just stored would
        // stall on store forwarding, every site (as in `kernel::envelope_at`).
        let (mut xa, mut ha, mut xb, mut hb) = (0.0, 0.0, 0.0, 0.0);
        for (q, &f) in grow.iter().enumerate() {
            if f > capf {
                continue;
            }
            let fq = f as f64;
            let xq = (q as u32) as f64 * s2;
            let hq = fq + xq * xq;
            // Pop the last site b while the one before it (a) and q hide it.
            while m >= 2 && (hq - hb) * (xb - xa) <= (hb - ha) * (xq - xb) {
                m -= 1;
                (xb, hb) = (xa, ha);
                if m >= 2 {
                    [xa, ha] = zxh[m - 2];
                }
            }
            zxh[m] = [xq, hq];
            zf[m] = fq;
            m += 1;
            (xa, ha, xb, hb) = (xb, hb, xq, hq);
        }
        self.m = m;
        // Each site's stretch of columns, once per envelope: site k owns the columns in
        // (t[k − 1], t[k]], t[k] its breakpoint with the next site; sites owning none are dropped,
        // so `offer` advances at most one site per column.
        self.ce.clear();
        let mut prev = i64::MIN;
        for k in 0..m {
            let end = if k + 1 < m {
                let [xa, ha] = zxh[k];
                let [xb, hb] = zxh[k + 1];
                floor_i64((hb - ha) / (2.0 * (xb - xa) * s2)) + 1
            } else {
                i64::MAX
            };
            if end > prev {
                self.ce.push((end, (zxh[k][0] / s2) as f32, zf[k] as f32));
                prev = end;
            }
        }
        m > 0
    }

    /// [`PlaneScratch::offer`] from the row's values of [`PlaneScratch::row`] (every column of the
    /// box is a site: a value above the cap only offers a larger true distance, and a branch-free
    /// loop over every column costs less than picking them out): each column of the
    /// window takes the smallest `((x − q)·s2)² + g(q)` over all of them (the same values as the
    /// envelope's), [`BLOCK`] columns at a time held in registers, branch-free and vectorised.
    fn offer_brute(&mut self, c0: usize, s2: f64, ea: usize, d1: &mut [f32], d2: &mut [f32]) {
        let x0 = (ea as i64 - c0 as i64) as f32;
        if self.qs.len() != self.grow.len() || self.qs_s2 != s2 as f32 {
            let s2f = s2 as f32;
            self.qs.clear();
            self.qs.extend((0..self.grow.len()).map(|q| q as f32 * s2f));
            self.qs_s2 = s2f;
        }
        offer_brute_mv(&self.grow, &self.qs, x0, s2 as f32, d1, d2);
    }

    /// Evaluates the current envelope at the columns `ea..ea + d1.len()` (the box starting at column
    /// `c0`) and offers each value at most the cap as one of the two smallest `(d1, d2)`.
    fn offer(&self, c0: usize, s2: f64, ea: usize, d1: &mut [f32], d2: &mut [f32]) {
        let ce = &self.ce[..];
        let base = ea as i64 - c0 as i64;
        let s2f = s2 as f32;
        // The site owning the window's first column; then one step at most per column (branch-free).
        let mut k = ce.partition_point(|c| c.0 <= base);
        for (p, (x1, x2)) in d1.iter_mut().zip(d2.iter_mut()).enumerate() {
            let x = base + p as i64;
            k += (x >= ce[k].0) as usize;
            let (_, q, f) = ce[k];
            let d = (x as f32 - q) * s2f;
            let v = d * d + f;
            // Top-2 insertion: d1' = min(d1, v), d2' = min(d2, max(d1, v)).
            let (lo, hi) = if v < *x1 { (v, *x1) } else { (*x1, v) };
            *x1 = lo;
            *x2 = if hi < *x2 { hi } else { *x2 };
        }
    }
}
