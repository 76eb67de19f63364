//! The U-Net weight map's two nearest instances on 3-D images, without crops: one separable pass per
//! axis over the whole volume, each voxel carrying its two nearest *distinct* instances.
//!
//! For every voxel the passes keep `(D1, L1, D2)`: the smallest squared distance `D1` to the sites
//! (instance voxels) seen so far, its instance `L1`, and the smallest squared distance `D2` to a site
//! of any other instance. This triple is all a later pass needs: the nearest site of a line position
//! `c'` whose instance is not `L` is the `D1` site of `c'` when `L1(c') ≠ L`, else its `D2` site. So
//! along a line, `D1(c) = min_c' D1(c') + w·(c − c')²` (with the instance of the minimum carried
//! along), and `D2(c)` is the same minimum over the heights `h_L(c') = L1(c') ≠ L ? D1(c') : D2(c')`
//! with `L = L1(c)`, per run of positions with one nearest instance. The first pass (along axis 0)
//! starts from the sites themselves: a sweep each way keeps the nearest site and the nearest site of
//! another instance.
//!
//! Values above `B²` (the band, see [`super`]) are dropped at every pass: a partial sum above `B²`
//! only grows, and a voxel with `d2 > B` gets no border term. So only the sites within `B` of a
//! position matter, and the minima along a line are taken by brute force, 16 positions at a time
//! (vectorised, branch-free), over the sites near the block: those within `B`, and within `√u` for
//! a bound `u` no value of the block exceeds (the largest value of the block's own sites, each
//! position being a site of itself). On the last pass, `D1` only matters up to `(B/2)²` and `D2` up
//! to `(B − d1)²` on the background (else `d1 + d2 > B`), which narrows the sites further. Every value kept is the exact minimum; the work is a few passes over the volume,
//! whatever the number of instances, their sizes or how many touch.

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

/// Scratch of one worker's lines: a line's inputs `g1`, `l1`, `g2` and outputs `d1`, `lo`, `d2`.
#[derive(Default)]
struct Lines {
    g1: Vec<f32>,
    l1: Vec<u32>,
    g2: Vec<f32>,
    d1: Vec<f32>,
    lo: Vec<u32>,
    d2: Vec<f32>,
}

impl Lines {
    /// Room for lines of `n` positions (allocated once per worker).
    fn reserve(&mut self, n: usize) {
        if self.g1.len() >= n {
            return;
        }
        for b in [&mut self.g1, &mut self.g2, &mut self.d1, &mut self.d2] {
            b.resize(n, f32::INFINITY);
        }
        for b in [&mut self.l1, &mut self.lo] {
            b.resize(n, 0);
        }
    }
}

/// Positions of a line evaluated together (their minima stay in registers).
const BLOCK: usize = 16;

/// The band of a line pass: `cap = B²` and, on the last pass, the line's labels (0 on the
/// background), whose voxels only need `d1 ≤ B/2` and, on the background, `d2 ≤ B − d1`.
struct Band<'a> {
    band: f32,
    cap: f32,
    last: Option<&'a [u32]>,
}

/// The sites of the block `[c0, c1)` of a line of `n` positions whose value can be at most `u`
/// somewhere in the block, as a range of positions: those within `reach` positions of the block
/// and within `√(u/w)` (plus one for rounding), beyond which even a site at 0 is above `u` (the ones
/// kept above `u`, or `INF` for no site, only offer larger values; picking them out costs more
/// than the brute force spends on them).
#[inline(always)]
fn site_range((c0, c1, n): (usize, usize, usize), reach: usize, w: f32, u: f32) -> (usize, usize) {
    let reach = ((u / w).sqrt() as usize + 1).min(reach);
    (c0.saturating_sub(reach), (c1 + reach).min(n))
}

/// One line of a later pass: from `(g1, l1, g2)` (squared distances so far, `INF` for none) to the
/// line's `(d1, lo, d2)`, for steps `sp` (spacing units); `reach` positions cover the band.
///
/// Every value is a minimum over the line's sites, computed by brute force [`BLOCK`] positions at a
/// time over the sites within reach of the block: a site is left out when even at distance 0 from
/// the block its value would be above a bound that no kept value needs to exceed (the band's `B²`,
/// and the largest value the block's own sites give, each position being a site of itself), which
/// leaves every value at most the bound exact. `D1` takes the minimising site's instance; `D2`, per run of one
/// nearest instance `L`, the heights `h_L(c') = L1(c') ≠ L ? D1(c') : D2(c')`. On the last pass,
/// `D1` is capped at `(B/2)²` and `D2` at `(B − d1)²` for the block's smallest background `d1`:
/// beyond those, no border term.
fn line(s: &mut Lines, n: usize, sp: f64, band: &Band<'_>, reach: usize) {
    let Lines {
        g1,
        l1,
        g2,
        d1,
        lo,
        d2,
    } = s;
    let w = (sp * sp) as f32;
    let (g1, l1, g2) = (&g1[..n], &l1[..n], &g2[..n]);
    let (d1, lo, d2) = (&mut d1[..n], &mut lo[..n], &mut d2[..n]);
    let cap1 = if band.last.is_some() {
        band.cap / 4.0
    } else {
        band.cap
    };
    // D1 and its instance.
    let mut any = false;
    let mut c0 = 0;
    while c0 < n {
        let c1 = (c0 + BLOCK).min(n);
        let u = g1[c0..c1]
            .iter()
            .fold(0f32, |u, &x| if x > u { x } else { u })
            .min(cap1);
        let (s0, s1) = site_range((c0, c1, n), reach, w, u);
        let at = Positions {
            x0: c0 - s0,
            w,
            cap: cap1,
        };
        nearest_label(
            (&g1[s0..s1], &l1[s0..s1]),
            at,
            &mut d1[c0..c1],
            &mut lo[c0..c1],
        );
        any |= s1 > s0;
        c0 = c1;
    }
    d2.fill(f32::INFINITY);
    if !any {
        return;
    }
    // D2 per run [a, b) of one nearest instance L, a block at a time.
    let mut a = 0;
    while a < n {
        let l = lo[a];
        let mut b = a + 1;
        while b < n && lo[b] == l {
            b += 1;
        }
        let mut c0 = a;
        while l != 0 && c0 < b {
            let c1 = (c0 + BLOCK).min(b);
            let cap = match band.last {
                None => band.cap,
                Some(labels) => {
                    let near = (c0..c1)
                        .filter(|&c| labels[c] == 0)
                        .map(|c| d1[c])
                        .fold(f32::INFINITY, f32::min);
                    // No background voxel within B/2 (d1 is INF beyond): no border term here.
                    if near == f32::INFINITY {
                        c0 = c1;
                        continue;
                    }
                    let r = band.band - near.sqrt();
                    r * r
                }
            };
            let hl = |c: usize| if l1[c] != l { g1[c] } else { g2[c] };
            let u = (c0..c1)
                .map(hl)
                .fold(0f32, |u, x| if x > u { x } else { u })
                .min(cap);
            let (s0, s1) = site_range((c0, c1, n), reach, w, u);
            let sites = OtherSites {
                g1: &g1[s0..s1],
                l1: &l1[s0..s1],
                g2: &g2[s0..s1],
                l,
            };
            let at = Positions {
                x0: c0 - s0,
                w,
                cap,
            };
            nearest_other(sites, at, &mut d2[c0..c1]);
            c0 = c1;
        }
        a = b;
    }
}

/// The sites of [`nearest_other`]: site `k`'s height is `g1[k]` where its nearest instance
/// `l1[k]` is not `l`, else `g2[k]` (its distance to the nearest other instance).
#[derive(Clone, Copy)]
struct OtherSites<'a> {
    g1: &'a [f32],
    l1: &'a [u32],
    g2: &'a [f32],
    l: u32,
}

/// Where a block's minima are taken: the positions `x0 + i` (sites counted from 0), the squared
/// spacing `w` of the axis and the largest value kept, `cap`.
#[derive(Clone, Copy)]
struct Positions {
    x0: usize,
    w: f32,
    cap: f32,
}

avx2_dispatch!(
    /// [`nearest_other_impl`], with AVX2 where the CPU has it.
    fn nearest_other(sites: OtherSites<'_>, at: Positions, out: &mut [f32]) = nearest_other_impl
);

/// The smallest `h(k) + (x − k)²·w` over the sites `k` (positions from 0) with the heights
/// `h(k) = l1[k] ≠ l ? g1[k] : g2[k]`, at the at most [`BLOCK`] positions `x = x0 + i` of `out`
/// (`i` from 0), written where at most `cap` (the others left as they are): brute force over every
/// site, branch-free and vectorised; for the few sites near a block this costs less than an
/// envelope's serial steps.
#[inline(always)]
fn nearest_other_impl(sites: OtherSites<'_>, at: Positions, out: &mut [f32]) {
    // A block of at most 8 positions takes 8 lanes (half the work of 16).
    if out.len() > 8 {
        other_block::<BLOCK>(sites, at, out);
    } else {
        other_block::<8>(sites, at, out);
    }
}

/// [`nearest_other_impl`] on `N` lanes.
#[inline(always)]
fn other_block<const N: usize>(sites: OtherSites<'_>, at: Positions, out: &mut [f32]) {
    let OtherSites { g1, l1, g2, l } = sites;
    let Positions { x0, w, cap } = at;
    let len = out.len().min(N);
    // Positions as integers (exact in f32 below 2^24): exact differences, one rounding for `w`.
    let mut xl = [0f32; N];
    for (i, v) in xl.iter_mut().enumerate() {
        *v = (x0 + i) as f32;
    }
    let mut acc = [f32::INFINITY; N];
    let mut q = 0f32;
    for ((&a, &la), &b) in g1.iter().zip(l1).zip(g2) {
        let hq = if la != l { a } else { b };
        for i in 0..N {
            let d = xl[i] - q;
            let e = d * d * w + hq;
            acc[i] = if e < acc[i] { e } else { acc[i] };
        }
        q += 1.0;
    }
    for (o, &v) in out[..len].iter_mut().zip(&acc) {
        if v <= cap {
            *o = v;
        }
    }
}

avx2_dispatch!(
    /// [`nearest_label_impl`], with AVX2 where the CPU has it.
    fn nearest_label(
        sites: (&[f32], &[u32]),
        at: Positions,
        out: &mut [f32],
        lab: &mut [u32],
    ) = nearest_label_impl
);

/// As [`nearest_other`] with the heights `g` of the sites `(g, ls)`, and the minimising site's
/// label `ls[k]` into `lab`;
/// every position is written, those whose smallest value is above `cap` (or without any site)
/// with `INF` and label 0.
#[inline(always)]
fn nearest_label_impl(sites: (&[f32], &[u32]), at: Positions, out: &mut [f32], lab: &mut [u32]) {
    if out.len() > 8 {
        label_block::<BLOCK>(sites, at, out, lab);
    } else {
        label_block::<8>(sites, at, out, lab);
    }
}

/// [`nearest_label_impl`] on `N` lanes.
#[inline(always)]
fn label_block<const N: usize>(
    (g, ls): (&[f32], &[u32]),
    at: Positions,
    out: &mut [f32],
    lab: &mut [u32],
) {
    let Positions { x0, w, cap } = at;
    let len = out.len().min(N);
    let mut xl = [0f32; N];
    for (i, v) in xl.iter_mut().enumerate() {
        *v = (x0 + i) as f32;
    }
    let mut acc = [f32::INFINITY; N];
    let mut al = [0u32; N];
    let mut q = 0f32;
    for (&hq, &lq) in g.iter().zip(ls) {
        for i in 0..N {
            let d = xl[i] - q;
            let e = d * d * w + hq;
            let better = e < acc[i];
            acc[i] = if better { e } else { acc[i] };
            al[i] = if better { lq } else { al[i] };
        }
        q += 1.0;
    }
    for (((o, lb), &v), &l) in out[..len]
        .iter_mut()
        .zip(&mut lab[..len])
        .zip(&acc)
        .zip(&al)
    {
        let near = v <= cap;
        *o = if near { v } else { f32::INFINITY };
        *lb = if near { l } else { 0 };
    }
}

/// A position beyond any volume's extent: "no site yet" in a sweep.
const NONE: i32 = 1 << 28;

/// The state of the sweeps along axis 0 of one row of columns: per column, the position `pa` and
/// instance `la` (0: none) of the nearest site so far and the position `pb` of the nearest site of
/// another instance; `s` the spacing along the axis and `cap = B²`.
struct Sweep {
    pa: Vec<i32>,
    la: Vec<u32>,
    pb: Vec<i32>,
    s: f32,
    cap: f32,
}

/// `(k·s)²`, or `INF` above `cap`.
#[inline(always)]
fn dist(k: i32, s: f32, cap: f32) -> f32 {
    let d = k as f32 * s;
    let d2 = d * d;
    if d2 <= cap {
        d2
    } else {
        f32::INFINITY
    }
}

/// Takes the sites `lab` (instances, 0 for none) of the plane at `z` into the sweep's state
/// (branch-free); returns nothing, the state holds the new nearest sites.
#[inline(always)]
fn sweep_take(sw: &mut Sweep, lab: &[u32], z: i32) {
    let n = lab.len();
    let (pa, la, pb) = (&mut sw.pa[..n], &mut sw.la[..n], &mut sw.pb[..n]);
    for x in 0..n {
        let l = lab[x];
        let on = l != 0;
        let changed = on & (l != la[x]);
        pb[x] = if changed { pa[x] } else { pb[x] };
        pa[x] = if on { z } else { pa[x] };
        la[x] = if on { l } else { la[x] };
    }
}

avx2_dispatch!(
    /// [`sweep_down_impl`], with AVX2 where the CPU has it.
    fn sweep_down(sw: &mut Sweep, lab: &[u32], z: i32, o1: &mut [f32], ol: &mut [u32], o2: &mut [f32]) =
        sweep_down_impl
);

/// The downward sweep at plane `z`: takes its sites, then writes the nearest site above (or at) `z`
/// and the nearest one of another instance, as `(D1, L1, D2)` (`INF` and 0 beyond the cap).
#[inline(always)]
fn sweep_down_impl(
    sw: &mut Sweep,
    lab: &[u32],
    z: i32,
    o1: &mut [f32],
    ol: &mut [u32],
    o2: &mut [f32],
) {
    sweep_take(sw, lab, z);
    let n = lab.len();
    let (pa, la, pb) = (&sw.pa[..n], &sw.la[..n], &sw.pb[..n]);
    let (o1, ol, o2) = (&mut o1[..n], &mut ol[..n], &mut o2[..n]);
    let (s, cap) = (sw.s, sw.cap);
    for x in 0..n {
        let d1 = dist(z - pa[x], s, cap);
        o1[x] = d1;
        ol[x] = if d1 != f32::INFINITY { la[x] } else { 0 };
        o2[x] = dist(z - pb[x], s, cap);
    }
}

avx2_dispatch!(
    /// [`sweep_up_impl`], with AVX2 where the CPU has it.
    fn sweep_up(sw: &mut Sweep, lab: &[u32], z: i32, o1: &mut [f32], ol: &mut [u32], o2: &mut [f32]) =
        sweep_up_impl
);

/// The upward sweep at plane `z`: takes its sites, then merges the nearest sites below (or at) `z`
/// into the downward sweep's `(D1, L1, D2)` (branch-free): the nearer of the two nearest sites,
/// and for `D2` the nearest of the others whose instance differs from the new nearest one's.
#[inline(always)]
fn sweep_up_impl(
    sw: &mut Sweep,
    lab: &[u32],
    z: i32,
    o1: &mut [f32],
    ol: &mut [u32],
    o2: &mut [f32],
) {
    sweep_take(sw, lab, z);
    let n = lab.len();
    let (pa, la, pb) = (&sw.pa[..n], &sw.la[..n], &sw.pb[..n]);
    let (o1, ol, o2) = (&mut o1[..n], &mut ol[..n], &mut o2[..n]);
    let (s, cap) = (sw.s, sw.cap);
    let min = |a: f32, b: f32| if a < b { a } else { b };
    for x in 0..n {
        let r1 = dist(pa[x] - z, s, cap);
        let rl = if r1 != f32::INFINITY { la[x] } else { 0 };
        let r2 = dist(pb[x] - z, s, cap);
        let (a1, al, a2) = (o1[x], ol[x], o2[x]);
        let right = r1 < a1;
        let other_r = if al != rl { a1 } else { a2 };
        let other_a = if rl != al { r1 } else { r2 };
        o1[x] = if right { r1 } else { a1 };
        ol[x] = if right { rl } else { al };
        o2[x] = if right {
            min(r2, other_r)
        } else {
            min(a2, other_a)
        };
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
        let (s0, capf) = (g.spacing[0] as f32, cap as f32);
        let row = |y: usize| {
            let (pd1, pl1, pd2) = (pd1, pl1, pd2);
            // Per column: the nearest site's position and instance, and the position of the
            // nearest site of another instance (positions far outside the volume for none).
            let mut sw = Sweep {
                pa: vec![-NONE; n2],
                la: vec![0u32; n2],
                pb: vec![-NONE; n2],
                s: s0,
                cap: capf,
            };
            let slices = |z: usize| {
                let at = z * plane + y * n2;
                // SAFETY: the elements `at..at + n2` (row y of plane z) are written by this
                // worker only, and the three buffers are distinct.
                unsafe {
                    (
                        &labels[at..at + n2],
                        std::slice::from_raw_parts_mut(pd1.0.add(at), n2),
                        std::slice::from_raw_parts_mut(pl1.0.add(at), n2),
                        std::slice::from_raw_parts_mut(pd2.0.add(at), n2),
                    )
                }
            };
            for z in 0..n0 {
                let (lab, o1, ol, o2) = slices(z);
                sweep_down(&mut sw, lab, z as i32, o1, ol, o2);
            }
            sw.pa.fill(NONE);
            sw.pb.fill(NONE);
            sw.la.fill(0);
            for z in (0..n0).rev() {
                let (lab, o1, ol, o2) = slices(z);
                sweep_up(&mut sw, lab, z as i32, o1, ol, o2);
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
        s.reserve(n1.max(n2));
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
            let pass = Band {
                band: band as f32,
                cap: capf,
                last: None,
            };
            line(s, n1, g.spacing[1], &pass, reach[1]);
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
            let at = z * plane + y * n2;
            let pass = Band {
                band: band as f32,
                cap: capf,
                last: Some(&labels[at..at + n2]),
            };
            line(s, n2, g.spacing[2], &pass, reach[2]);
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
