//! Exact integer passes of the binary EDT on unit grids: a bounded, vectorised brute force instead of
//! the lower envelope.
//!
//! On a grid whose spacing is 1 on every axis, the values entering a pass along one axis are squared
//! distances, i.e. integers. The pass computes, for every position `p` of a line,
//! `m(p) = min_q G(q) + (p − q)²`. Scanning the offsets `r = |p − q|` outward from 0, the scan can stop
//! as soon as `r² ≥ m(p)`: every farther site costs at least `r²`. A block of [`LANES`] positions (or
//! of [`LANES`] neighbouring lines at one position) advances together, in `i32` arithmetic (exact),
//! until `r²` reaches the largest `m` of the block, so its cost is about the largest distance in the
//! block — a few steps on masks with small structures, where the envelope's setup and its branches
//! dominate. A block that is still undecided after [`REACH`] offsets is handed to the envelope of
//! [`crate::kernel`], so the worst case stays linear.

use rayon::prelude::*;

use crate::element::Float;
use crate::grid::{Grid, SyncPtr};
use crate::kernel::{envelope_runs, Site};

/// Positions (or lines) per block.
pub(crate) const LANES: usize = 8;

/// The largest offset scanned before a block falls back to the envelope.
pub(crate) const REACH: usize = 64;

/// Squared distances at or above this stand for "no target along this line" (infinity); adding
/// `REACH²` keeps them inside `i32`.
const FAR: i32 = 1 << 28;

/// A block's results when it needs the envelope.
const UNDECIDED: i32 = -1;

/// Below this many voxels the passes run on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// Whether the integer passes apply to `g`: spacing 1 on every axis, and every squared distance
/// below 2²⁴ (exact in `f32`, so the `f32` maps between passes and the `f32` square root are exact).
pub(crate) fn applies(g: &Grid) -> bool {
    let diag: u64 = g.shape.iter().map(|&n| ((n - 1) * (n - 1)) as u64).sum();
    g.spacing == [1.0; 3] && diag < 1 << 24
}

/// A value of a pass's input as an `i32` squared distance ([`FAR`] for infinity).
#[inline(always)]
fn to_int<F: Float>(x: F) -> i32 {
    let v = x.to_f64();
    if v < FAR as f64 {
        v as i32
    } else {
        FAR
    }
}

avx2_dispatch!(
    /// [`row_blocks_impl`], with AVX2 where the CPU has it.
    fn row_blocks(gi: &[i32], out: &mut [i32]) -> bool = row_blocks_impl
);

/// The brute force along one line whose positions are contiguous: `gi` holds the line's values with
/// [`REACH`] values of [`FAR`] before and `REACH + LANES` after; `out[p]` gets `m(p)` for every
/// position, or [`UNDECIDED`] for the positions of a block that needs the envelope. Returns whether
/// every block was decided.
#[inline(always)]
fn row_blocks_impl(gi: &[i32], out: &mut [i32]) -> bool {
    let w = out.len();
    assert!(gi.len() >= w + 2 * REACH + LANES);
    let mut all = true;
    for (b, o) in out.chunks_mut(LANES).enumerate() {
        let p0 = b * LANES;
        let c = &gi[p0..p0 + 2 * REACH + LANES];
        let mut m: [i32; LANES] = c[REACH..REACH + LANES].try_into().unwrap();
        // Positions past the end of the line decide nothing.
        for x in m.iter_mut().skip(o.len()) {
            *x = 0;
        }
        let mut r = 1usize;
        loop {
            let top = m.iter().fold(0, |a, &b| a.max(b));
            let rr = (r * r) as i32;
            if rr >= top {
                break;
            }
            if r > REACH {
                m = [UNDECIDED; LANES];
                all = false;
                break;
            }
            let lo: &[i32; LANES] = c[REACH - r..REACH - r + LANES].try_into().unwrap();
            let hi: &[i32; LANES] = c[REACH + r..REACH + r + LANES].try_into().unwrap();
            for l in 0..LANES {
                m[l] = m[l].min(lo[l].min(hi[l]) + rr);
            }
            r += 1;
        }
        o.copy_from_slice(&m[..o.len()]);
    }
    all
}

avx2_dispatch!(
    /// [`column_blocks_impl`], with AVX2 where the CPU has it.
    fn column_blocks(t: &[i32], n: usize, out: &mut [i32]) -> bool = column_blocks_impl
);

/// The brute force along [`LANES`] lines at once: `t[(REACH + k)·LANES + l]` is position `k` of line
/// `l` (`n` positions), with [`REACH`] rows of [`FAR`] before and after; `out[k·LANES + l]` gets
/// `m(k)` of line `l`, or [`UNDECIDED`] for the lanes of a position that needs the envelope. Returns
/// whether every position was decided.
#[inline(always)]
fn column_blocks_impl(t: &[i32], n: usize, out: &mut [i32]) -> bool {
    assert!(t.len() >= (n + 2 * REACH) * LANES && out.len() >= n * LANES);
    let row = |k: usize| -> &[i32; LANES] { t[k * LANES..(k + 1) * LANES].try_into().unwrap() };
    let mut all = true;
    for (k, o) in out[..n * LANES].chunks_exact_mut(LANES).enumerate() {
        let mut m = *row(REACH + k);
        let mut r = 1usize;
        loop {
            let top = m.iter().fold(0, |a, &b| a.max(b));
            let rr = (r * r) as i32;
            if rr >= top {
                break;
            }
            if r > REACH {
                m = [UNDECIDED; LANES];
                all = false;
                break;
            }
            let (lo, hi) = (row(REACH + k - r), row(REACH + k + r));
            for l in 0..LANES {
                m[l] = m[l].min(lo[l].min(hi[l]) + rr);
            }
            r += 1;
        }
        o.copy_from_slice(&m);
    }
    all
}

/// Scratch space of one task.
struct Scratch {
    gi: Vec<i32>,
    m: Vec<i32>,
    f: Vec<f64>,
    o: Vec<f64>,
    v: Vec<u32>,
    z: Vec<Site>,
}

impl Scratch {
    /// For lines of up to `n` positions (`lanes` lines at once).
    fn new(n: usize, lanes: usize) -> Scratch {
        Scratch {
            gi: vec![FAR; (n + 2 * REACH + LANES) * lanes],
            m: vec![0; n * lanes],
            f: vec![0.0; n],
            o: vec![0.0; n],
            v: vec![0; n + 2],
            z: vec![[0.0; 3]; n + 2],
        }
    }

    /// The envelope of one line (values `f[..n]`, filled by the caller) into `o[..n]`.
    fn envelope(&mut self, n: usize) {
        envelope_runs(
            &self.f[..n],
            1.0,
            &mut self.o[..n],
            &mut self.v,
            &mut self.z,
            (0, n),
        );
    }
}

/// The final value of a voxel from its squared distance `d2` (infinity: no target anywhere, 0).
#[inline(always)]
fn finish<F: Float>(d2: f64, squared: bool) -> F {
    if d2 == f64::INFINITY {
        F::ZERO
    } else if squared {
        F::from_f64(d2)
    } else {
        // Exact below 2²⁴ in `f32` too: its square root is then the correctly rounded one, as the
        // `f64` root rounded to `f32` is (double rounding is innocuous for square roots).
        F::from_f64(d2).sqrt()
    }
}

/// The last pass, along the contiguous last axis of every row of `buf` (squared distances in, the
/// map out: square roots unless `squared`, 0 where no target exists).
pub(crate) fn contiguous_pass<F: Float>(buf: &mut [F], g: &Grid, squared: bool, serial: bool) {
    let n = g.shape[2];
    let work = |sc: &mut Scratch, row: &mut [F]| {
        for (d, &x) in sc.gi[REACH..REACH + n].iter_mut().zip(row.iter()) {
            *d = to_int(x);
        }
        if !row_blocks(&sc.gi, &mut sc.m[..n]) {
            for (d, &x) in sc.f[..n].iter_mut().zip(row.iter()) {
                *d = x.to_f64();
            }
            sc.envelope(n);
            for (m, &o) in sc.m[..n].iter_mut().zip(&sc.o[..n]) {
                if *m == UNDECIDED {
                    *m = if o == f64::INFINITY { FAR } else { o as i32 };
                }
            }
        }
        for (x, &m) in row.iter_mut().zip(&sc.m[..n]) {
            let d2 = if m >= FAR { f64::INFINITY } else { m as f64 };
            *x = finish(d2, squared);
        }
    };
    if !serial && g.len() >= PAR_MIN {
        buf.par_chunks_mut(n)
            .with_min_len(8)
            .for_each_init(|| Scratch::new(n, 1), work);
    } else {
        let mut sc = Scratch::new(n, 1);
        for row in buf.chunks_mut(n) {
            work(&mut sc, row);
        }
    }
}

/// A middle pass, along axis 1 of the padded grid (squared distances in and out, infinity where a
/// line has no target), [`LANES`] neighbouring lines per task, read and written in place by rows.
pub(crate) fn strided_pass<F: Float>(buf: &mut [F], g: &Grid, serial: bool) {
    let n = g.shape[1];
    if n == 1 {
        return;
    }
    let st = g.shape[2];
    let blocks = st.div_ceil(LANES);
    let ntasks = g.shape[0] * blocks;
    let bp = SyncPtr(buf.as_mut_ptr());
    let work = |sc: &mut Scratch, t: usize| {
        let (o, i0) = (t / blocks, (t % blocks) * LANES);
        let w = LANES.min(st - i0);
        let base = o * n * st + i0;
        let b = bp;
        // SAFETY: task t owns the voxels base + k·st + i (k < n, i < w): the lanes i0..i0 + w of
        // plane o, which no other task touches; base + (n − 1)·st + w ≤ buf.len().
        let row = |k: usize| unsafe { std::slice::from_raw_parts_mut(b.0.add(base + k * st), w) };
        let mut any = false;
        for k in 0..n {
            let dst = &mut sc.gi[(REACH + k) * LANES..(REACH + k + 1) * LANES];
            for (d, &x) in dst.iter_mut().zip(row(k).iter()) {
                *d = to_int(x);
                any |= *d < FAR;
            }
            // Lanes past the last line: sites that are never nearest, positions decided at once.
            dst[w..].fill(0);
        }
        if !any {
            // No target on any of these lines: they stay infinite.
            return;
        }
        if !column_blocks(&sc.gi, n, &mut sc.m) {
            for l in 0..w {
                if !(0..n).any(|k| sc.m[k * LANES + l] == UNDECIDED) {
                    continue;
                }
                for k in 0..n {
                    sc.f[k] = row(k)[l].to_f64();
                }
                sc.envelope(n);
                for k in 0..n {
                    let m = &mut sc.m[k * LANES + l];
                    if *m == UNDECIDED {
                        let o = sc.o[k];
                        *m = if o == f64::INFINITY { FAR } else { o as i32 };
                    }
                }
            }
        }
        for k in 0..n {
            let ms = &sc.m[k * LANES..k * LANES + w];
            for (x, &m) in row(k).iter_mut().zip(ms) {
                *x = if m >= FAR {
                    F::INFINITY
                } else {
                    F::from_f64(m as f64)
                };
            }
        }
    };
    if !serial && g.len() >= PAR_MIN && ntasks > 1 {
        (0..ntasks)
            .into_par_iter()
            .with_min_len(4)
            .for_each_init(|| Scratch::new(n, LANES), work);
    } else {
        let mut sc = Scratch::new(n, LANES);
        for t in 0..ntasks {
            work(&mut sc, t);
        }
    }
}
