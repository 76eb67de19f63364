//! The U-Net weight map's two nearest instances on 3-D images, without crops: one separable pass per
//! axis over the whole volume, each voxel carrying its two nearest *distinct* instances.
//!
//! For every voxel the passes keep `(D1, L1, D2)`: the smallest squared distance `D1` to the sites
//! (instance voxels) seen so far, its instance `L1`, and the smallest squared distance `D2` to a site
//! of any other instance. This triple is all a later pass needs: the nearest site of a line position
//! `c'` whose instance is not `L` is the `D1` site of `c'` when `L1(c') ≠ L`, else its `D2` site. So
//! along a line, `D1(c) = min_c' D1(c') + w·(c − c')²` (a lower envelope of parabolas, with the
//! instances carried along), and `D2(c)` is the same envelope over the heights
//! `h_L(c') = L1(c') ≠ L ? D1(c') : D2(c')` with `L = L1(c)`, built once per run of positions with one
//! nearest instance. The first pass (along axis 0) starts from the sites themselves: a sweep each way
//! keeps the nearest site and the nearest site of another instance.
//!
//! Values above `B²` (the band, see [`super`]) are dropped at every pass: a partial sum above `B²`
//! only grows, and a voxel with `d2 > B` gets no border term. This keeps each envelope to the
//! positions within `B` of its run. The work is a few passes over the volume, whatever the number of
//! instances, their sizes or how many touch.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::element::Float;
use crate::grid::Grid;

/// A raw pointer shared by workers that write disjoint elements.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: only used to write elements no other worker touches (see the callers).
unsafe impl<T> Sync for Shared<T> {}
unsafe impl<T> Send for Shared<T> {}

/// One plane of the passes along axes 1 and 2: its index, its `D1`, `L1`, `D2` and output slots.
type PlaneItem<'a, F> = (
    usize,
    (
        ((&'a mut [f32], &'a mut [u32]), &'a mut [f32]),
        &'a mut [MaybeUninit<F>],
    ),
);

/// Scratch of one worker's lines.
#[derive(Default)]
struct Lines {
    g1: Vec<f32>,
    l1: Vec<u32>,
    g2: Vec<f32>,
    d1: Vec<f32>,
    lo: Vec<u32>,
    d2: Vec<f32>,
    p: Vec<usize>,
    h: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
}

impl Lines {
    fn resize(&mut self, n: usize) {
        for b in [&mut self.g1, &mut self.g2, &mut self.d1, &mut self.d2] {
            b.resize(n, f32::INFINITY);
        }
        self.l1.resize(n, 0);
        self.lo.resize(n, 0);
    }
}

/// The lower envelope of the parabolas `h[q] + w·(c − p[q])²` (sites `p` increasing, `h` finite),
/// evaluated at `c` in `[a, b)`: `emit(c, value, q)` with the minimising site `q`. `v`, `z` scratch.
#[inline]
#[allow(clippy::too_many_arguments)]
fn envelope(
    p: &[usize],
    h: &[f64],
    w: f64,
    a: usize,
    b: usize,
    v: &mut Vec<usize>,
    z: &mut Vec<f64>,
    mut emit: impl FnMut(usize, f64, usize),
) {
    let m = p.len();
    if m == 0 {
        return;
    }
    v.clear();
    z.clear();
    v.push(0);
    z.push(f64::NEG_INFINITY);
    z.push(f64::INFINITY);
    let key = |q: usize| h[q] + w * (p[q] as f64) * (p[q] as f64);
    for q in 1..m {
        let kq = key(q);
        loop {
            let t = *v.last().expect("never empty");
            // The parabolas of t and q cross at num / den (den > 0); q hides t when that is
            // left of where t starts (compared without dividing).
            let num = kq - key(t);
            let den = 2.0 * w * (p[q] - p[t]) as f64;
            let k = v.len() - 1;
            if num <= z[k] * den {
                v.pop();
                z.pop();
                continue;
            }
            v.push(q);
            z[k + 1] = num / den;
            z.push(f64::INFINITY);
            break;
        }
    }
    let mut k = 0;
    for c in a..b {
        let x = c as f64;
        while z[k + 1] < x {
            k += 1;
        }
        let q = v[k];
        let d = x - p[q] as f64;
        emit(c, h[q] + w * d * d, q);
    }
}

/// One line of a later pass: from `(g1, l1, g2)` (squared distances so far, `INF` for none) to the
/// line's `(d1, lo, d2)`, for squared steps `w`; values above `cap` dropped, sites farther than
/// `reach` positions from a run ignored (their values would be above `cap`).
fn line(s: &mut Lines, n: usize, w: f64, cap: f64, reach: usize) {
    let Lines {
        g1,
        l1,
        g2,
        d1,
        lo,
        d2,
        p,
        h,
        v,
        z,
    } = s;
    // D1 and its instance: the envelope of the finite D1 values.
    p.clear();
    h.clear();
    for (c, &x) in g1[..n].iter().enumerate() {
        if x != f32::INFINITY {
            p.push(c);
            h.push(x as f64);
        }
    }
    d1[..n].fill(f32::INFINITY);
    lo[..n].fill(0);
    d2[..n].fill(f32::INFINITY);
    if p.is_empty() {
        return;
    }
    envelope(p, h, w, 0, n, v, z, |c, val, q| {
        if val <= cap {
            d1[c] = val as f32;
            lo[c] = l1[p[q]];
        }
    });
    // D2 per run of one nearest instance L: the envelope of h_L over the run's reach.
    let mut a = 0;
    while a < n {
        let l = lo[a];
        let mut b = a + 1;
        while b < n && lo[b] == l {
            b += 1;
        }
        if l != 0 {
            p.clear();
            h.clear();
            for c in a.saturating_sub(reach)..(b + reach).min(n) {
                let x = if l1[c] != l { g1[c] } else { g2[c] };
                if x != f32::INFINITY {
                    p.push(c);
                    h.push(x as f64);
                }
            }
            envelope(p, h, w, a, b, v, z, |c, val, _| {
                if val <= cap {
                    d2[c] = val as f32;
                }
            });
        }
        a = b;
    }
}

/// [`super::nearest_two`] for 3-D label images (see the [module documentation](self)): the two
/// smallest squared distances of every voxel to distinct instances within `band`, handed plane by
/// plane (along axis 0) to `finish`.
pub(super) fn volume_nearest_two<F: Float>(
    labels: &[u32],
    g: &Grid,
    band: f64,
    parallel: bool,
    out: &mut [MaybeUninit<F>],
    finish: &(impl Fn(usize, &[f32], &[f32], &mut [MaybeUninit<F>], usize, &[[u32; 2]]) + Sync),
) {
    let [n0, n1, n2] = g.shape;
    let plane = n1 * n2;
    let n = labels.len();
    let cap = band * band;
    let capf = cap as f32;
    let w = [0, 1, 2].map(|a| g.spacing[a] * g.spacing[a]);
    let reach = [0, 1, 2].map(|a| ((band / g.spacing[a]).floor() as usize).min(g.shape[a]));
    let mut d1 = vec![f32::INFINITY; n];
    let mut l1 = vec![0u32; n];
    let mut d2 = vec![f32::INFINITY; n];

    // Pass along axis 0 from the sites: per row y, the columns of all x together.
    {
        let (pd1, pl1, pd2) = (
            Shared(d1.as_mut_ptr()),
            Shared(l1.as_mut_ptr()),
            Shared(d2.as_mut_ptr()),
        );
        let dist = |dz: usize| {
            let x = dz as f64 * g.spacing[0];
            let x2 = x * x;
            if x2 <= cap {
                x2 as f32
            } else {
                f32::INFINITY
            }
        };
        let table: Vec<f32> = (0..=n0).map(dist).collect();
        let row = |y: usize| {
            let (pd1, pl1, pd2) = (pd1, pl1, pd2);
            // Nearest site (position, instance) and nearest site of another instance, per column.
            let none = usize::MAX;
            let mut pa = vec![none; n2];
            let mut la = vec![0u32; n2];
            let mut pb = vec![none; n2];
            let gap = |p: usize, z: usize| {
                if p == none {
                    f32::INFINITY
                } else {
                    table[p.abs_diff(z)]
                }
            };
            for z in 0..n0 {
                let at = z * plane + y * n2;
                let lab = &labels[at..at + n2];
                for x in 0..n2 {
                    let l = lab[x];
                    if l != 0 {
                        if l != la[x] {
                            pb[x] = pa[x];
                            la[x] = l;
                        }
                        pa[x] = z;
                    }
                    // SAFETY: element `at + x` belongs to row y, written by this worker only.
                    unsafe {
                        *pd1.0.add(at + x) = gap(pa[x], z);
                        *pl1.0.add(at + x) = if pa[x] == none { 0 } else { la[x] };
                        *pd2.0.add(at + x) = gap(pb[x], z);
                    }
                }
            }
            pa.fill(none);
            pb.fill(none);
            la.fill(0);
            for z in (0..n0).rev() {
                let at = z * plane + y * n2;
                let lab = &labels[at..at + n2];
                for x in 0..n2 {
                    let l = lab[x];
                    if l != 0 {
                        if l != la[x] {
                            pb[x] = pa[x];
                            la[x] = l;
                        }
                        pa[x] = z;
                    }
                    if pa[x] == none {
                        continue;
                    }
                    // SAFETY: as above.
                    unsafe {
                        let (e1, el, e2) =
                            (pd1.0.add(at + x), pl1.0.add(at + x), pd2.0.add(at + x));
                        let (a1, al, a2) = (*e1, *el, *e2);
                        let (r1, rl, r2) = (gap(pa[x], z), la[x], gap(pb[x], z));
                        if r1 < a1 || al == 0 {
                            // The right site is the nearest.
                            let other = if al != rl { a1 } else { a2 };
                            *e1 = r1;
                            *el = rl;
                            *e2 = if r2 < other { r2 } else { other };
                        } else {
                            let other = if rl != al { r1 } else { r2 };
                            *e2 = if a2 < other { a2 } else { other };
                        }
                        if *e1 > capf {
                            *e1 = f32::INFINITY;
                            *el = 0;
                        }
                    }
                }
            }
        };
        if parallel && n >= 1 << 15 {
            (0..n1).into_par_iter().for_each(row);
        } else {
            (0..n1).for_each(row);
        }
    }

    // Along axes 1 and 2, plane by plane, each plane then finished.
    let dirty = vec![[0u32, n2 as u32]; n1];
    let per_plane = |s: &mut Lines, (z, (((pd1, pl1), pd2), o)): PlaneItem<'_, F>| {
        // Axis 1: the columns of the plane.
        s.resize(n1.max(n2));
        for x in 0..n2 {
            let mut any = false;
            for y in 0..n1 {
                let i = y * n2 + x;
                s.g1[y] = pd1[i];
                s.l1[y] = pl1[i];
                s.g2[y] = pd2[i];
                any |= pd1[i] != f32::INFINITY;
            }
            if !any {
                continue;
            }
            line(s, n1, w[1], cap, reach[1]);
            for y in 0..n1 {
                let i = y * n2 + x;
                pd1[i] = s.d1[y];
                pl1[i] = s.lo[y];
                pd2[i] = s.d2[y];
            }
        }
        // Axis 2: the rows, in place.
        for y in 0..n1 {
            let r = y * n2..(y + 1) * n2;
            if pd1[r.clone()].iter().all(|&v| v == f32::INFINITY) {
                continue;
            }
            s.g1[..n2].copy_from_slice(&pd1[r.clone()]);
            s.l1[..n2].copy_from_slice(&pl1[r.clone()]);
            s.g2[..n2].copy_from_slice(&pd2[r.clone()]);
            line(s, n2, w[2], cap, reach[2]);
            pd1[r.clone()].copy_from_slice(&s.d1[..n2]);
            pd2[r].copy_from_slice(&s.d2[..n2]);
        }
        finish(z * plane, pd1, pd2, o, n2, &dirty);
    };
    if parallel && n >= 1 << 15 {
        d1.par_chunks_mut(plane)
            .zip(l1.par_chunks_mut(plane))
            .zip(d2.par_chunks_mut(plane))
            .zip(out.par_chunks_mut(plane))
            .enumerate()
            .for_each_init(Lines::default, per_plane);
    } else {
        let mut s = Lines::default();
        let planes = d1
            .chunks_mut(plane)
            .zip(l1.chunks_mut(plane))
            .zip(d2.chunks_mut(plane))
            .zip(out.chunks_mut(plane));
        for item in planes.enumerate() {
            per_plane(&mut s, item);
        }
    }
}
