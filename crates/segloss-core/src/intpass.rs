//! Exact integer passes of the binary EDT on unit grids: a bounded, vectorised brute force instead of
//! the lower envelope.
//!
//! On a grid whose spacing is 1 on every axis, the values entering a pass along one axis are squared
//! distances, i.e. integers. The pass computes, for every position `p` of a line,
//! `m(p) = min_q G(q) + (p − q)²`. Scanning the offsets `r = |p − q|` outward from 0, the scan can stop
//! as soon as `r² ≥ m(p)`: every farther site costs at least `r²`. A block of [`LANES`] positions (or
//! of [`LINES`] neighbouring lines at one position) advances together, in `f32` arithmetic (exact on
//! these integers), until `r²` reaches the largest `m` of the block, so its cost is about the largest
//! distance in the block — a few steps on masks with small structures, where the envelope's setup and
//! its branches dominate. A block that is still undecided after [`REACH`] offsets is handed to the
//! envelope of [`crate::kernel`], so the worst case stays linear.
//!
//! A 3-D volume is transformed plane by plane first (the plane stays in cache), then along axis 0:
//! two passes over the volume's memory instead of four.

use rayon::prelude::*;

use crate::element::{Float, Voxel};
use crate::grid::{Grid, SyncPtr};
use crate::kernel::{envelope_runs, finish as finish_all, Site};

/// Positions per block of a pass along the contiguous axis.
pub(crate) const LANES: usize = 8;

/// Lines per block of a pass along a strided axis (two cache lines of `f32` per row).
pub(crate) const LINES: usize = 16;

/// The largest offset scanned before a block falls back to the envelope.
pub(crate) const REACH: usize = 64;

/// A block's results when it needs the envelope.
const UNDECIDED: f32 = -1.0;

/// Below this many voxels the passes run on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// Whether the integer passes apply to `g`: spacing 1 on every axis, and every squared distance
/// below 2²⁴, so that it and every sum that can be a minimum are exact in `f32` (a sum above 2²⁴
/// may round, but never below 2²⁴, so it never displaces an exact smaller value).
pub(crate) fn applies(g: &Grid) -> bool {
    let diag: u64 = g.shape.iter().map(|&n| ((n - 1) * (n - 1)) as u64).sum();
    g.spacing == [1.0; 3] && diag < 1 << 24
}

/// A pass's input value as `f32` (exact: an integer below 2²⁴, or infinity).
#[inline(always)]
fn to_f32<F: Float>(x: F) -> f32 {
    x.to_f64() as f32
}

avx2_dispatch!(
    /// [`row_blocks_impl`], with AVX2 where the CPU has it.
    fn row_blocks(gi: &[f32], out: &mut [f32]) -> bool = row_blocks_impl
);

/// The largest of `m` (infinity if any is).
#[inline(always)]
fn top<const N: usize>(m: &[f32; N]) -> f32 {
    m.iter().fold(0.0, |a: f32, &b| if b > a { b } else { a })
}

/// The brute force along one line whose positions are contiguous: `gi` holds the line's values with
/// [`REACH`] infinities before and `REACH + LANES` after; `out[p]` gets `m(p)` for every position, or
/// [`UNDECIDED`] for the positions of a block that needs the envelope. Returns whether every block
/// was decided.
#[inline(always)]
fn row_blocks_impl(gi: &[f32], out: &mut [f32]) -> bool {
    let w = out.len();
    assert!(gi.len() >= w + 2 * REACH + LANES);
    let mut all = true;
    for (b, o) in out.chunks_mut(LANES).enumerate() {
        let p0 = b * LANES;
        let c = &gi[p0..p0 + 2 * REACH + LANES];
        let mut m: [f32; LANES] = c[REACH..REACH + LANES].try_into().unwrap();
        // Positions past the end of the line decide nothing.
        for x in m.iter_mut().skip(o.len()) {
            *x = 0.0;
        }
        // Two offsets per test of the bound (the test's reduction costs as much as an offset).
        let mut r = 1usize;
        loop {
            if (r * r) as f32 >= top(&m) {
                break;
            }
            if r + 1 > REACH {
                m = [UNDECIDED; LANES];
                all = false;
                break;
            }
            for r in [r, r + 1] {
                let rr = (r * r) as f32;
                let lo: &[f32; LANES] = c[REACH - r..REACH - r + LANES].try_into().unwrap();
                let hi: &[f32; LANES] = c[REACH + r..REACH + r + LANES].try_into().unwrap();
                for l in 0..LANES {
                    let q = if lo[l] < hi[l] { lo[l] } else { hi[l] } + rr;
                    m[l] = if q < m[l] { q } else { m[l] };
                }
            }
            r += 2;
        }
        if let Ok(o) = <&mut [f32; LANES]>::try_from(&mut *o) {
            *o = m;
        } else {
            let k = o.len();
            o.copy_from_slice(&m[..k]);
        }
    }
    all
}

avx2_dispatch!(
    /// [`column_blocks_impl`], with AVX2 where the CPU has it.
    fn column_blocks(t: &[f32], n: usize, out: &mut [f32]) -> bool = column_blocks_impl
);

/// The brute force along [`LINES`] lines at once: `t[(REACH + k)·LINES + l]` is position `k` of line
/// `l` (`n` positions), with [`REACH`] rows of infinities before and after; `out[k·LINES + l]` gets
/// `m(k)` of line `l`, or [`UNDECIDED`] for the lanes of a position that needs the envelope. Returns
/// whether every position was decided.
#[inline(always)]
fn column_blocks_impl(t: &[f32], n: usize, out: &mut [f32]) -> bool {
    assert!(t.len() >= (n + 2 * REACH) * LINES && out.len() >= n * LINES);
    let row = |k: usize| -> &[f32; LINES] { t[k * LINES..(k + 1) * LINES].try_into().unwrap() };
    let mut all = true;
    for (k, o) in out[..n * LINES].chunks_exact_mut(LINES).enumerate() {
        let mut m = *row(REACH + k);
        let mut r = 1usize;
        loop {
            if (r * r) as f32 >= top(&m) {
                break;
            }
            if r + 1 > REACH {
                m = [UNDECIDED; LINES];
                all = false;
                break;
            }
            for r in [r, r + 1] {
                let rr = (r * r) as f32;
                let (lo, hi) = (row(REACH + k - r), row(REACH + k + r));
                for l in 0..LINES {
                    let q = if lo[l] < hi[l] { lo[l] } else { hi[l] } + rr;
                    m[l] = if q < m[l] { q } else { m[l] };
                }
            }
            r += 2;
        }
        let o: &mut [f32; LINES] = o.try_into().unwrap();
        *o = m;
    }
    all
}

/// Scratch space of one task.
struct Scratch {
    gi: Vec<f32>,
    m: Vec<f32>,
    f: Vec<f64>,
    o: Vec<f64>,
    v: Vec<u32>,
    z: Vec<Site>,
}

impl Scratch {
    /// For lines of up to `n` positions (`lanes` lines at once).
    fn new(n: usize, lanes: usize) -> Scratch {
        Scratch {
            gi: vec![f32::INFINITY; (n + 2 * REACH + LANES) * lanes],
            m: vec![0.0; n * lanes],
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

/// What a pass writes.
#[derive(Clone, Copy)]
pub(crate) enum Out {
    /// Squared distances, infinity where a line has no target (a pass before the last).
    Squared,
    /// The map: square roots unless `squared`, 0 where no target exists (the last pass).
    Map {
        /// Keep the squared distances.
        squared: bool,
    },
}

impl Out {
    /// The value written for the exact squared distance `m` (infinity for none).
    #[inline(always)]
    fn value<F: Float>(self, m: f32) -> F {
        let v = F::from_f64(m as f64);
        match self {
            Out::Squared => v,
            Out::Map { squared } => {
                if v == F::INFINITY {
                    F::ZERO
                } else if squared {
                    v
                } else {
                    // `m` is exact, so the `f32` root is the correctly rounded one, as the `f64`
                    // root rounded to `f32` is (double rounding is innocuous for square roots).
                    v.sqrt()
                }
            }
        }
    }
}

/// The binary EDT (see [`crate::edt()`]) of a grid where [`applies`] holds into `buf`, targets the
/// voxels of `mask` whose foreground-ness is `target`. A 1-D or 2-D grid takes a sweep down and up
/// its columns and the pass along its rows; a 3-D one the same in each plane (the plane stays in
/// cache), then the pass along axis 0, which writes the map.
pub(crate) fn binary_edt<T: Voxel, F: Float>(
    buf: &mut [F],
    g: &Grid,
    (mask, target): (&[T], bool),
    squared: bool,
    serial: bool,
) {
    let map = Out::Map { squared };
    let [n0, n1, n2] = g.shape;
    let plane = n1 * n2;
    // A 1-D grid is one column of n2 rows of one voxel.
    let (rows, width) = if n1 == 1 { (n2, 1) } else { (n1, n2) };
    let at = SyncPtr(buf.as_mut_ptr());
    if n0 == 1 {
        let par = !serial && g.len() >= PAR_MIN;
        let cl = if par {
            width
                .div_ceil(4 * rayon::current_num_threads())
                .next_multiple_of(16)
                .max(64)
        } else {
            width
        };
        let sweep = |next: &mut Vec<F>, c: usize| {
            let j0 = c * cl;
            let lanes = Lanes {
                base: 0,
                rows,
                width,
                j0,
                w: cl.min(width - j0),
            };
            // SAFETY: task c owns the columns j0..j0 + w of every row, which no other task
            // touches, and `buf` holds rows · width voxels.
            unsafe { column_sweep(mask, target, at, lanes, next) };
        };
        let chunks = width.div_ceil(cl);
        if par && chunks > 1 {
            (0..chunks).into_par_iter().for_each_init(Vec::new, sweep);
        } else {
            let mut next = Vec::new();
            for c in 0..chunks {
                sweep(&mut next, c);
            }
        }
        if n1 == 1 {
            finish_all(buf, squared);
        } else {
            contiguous_pass(buf, g, map, serial);
        }
        return;
    }
    let one = |(sc, next): &mut (Scratch, Vec<F>), z: usize| {
        let lanes = Lanes {
            base: z * plane,
            rows,
            width,
            j0: 0,
            w: width,
        };
        // SAFETY: task z owns plane z, which no other task touches; `buf` holds n0 planes.
        unsafe { column_sweep(mask, target, at, lanes, next) };
        if n1 > 1 && n2 > 1 {
            // SAFETY: as above.
            let p = unsafe { std::slice::from_raw_parts_mut(at.0.add(z * plane), plane) };
            contiguous_rows(p, n2, Out::Squared, sc);
        }
    };
    let init = || (Scratch::new(n2, 1), Vec::new());
    if !serial && g.len() >= PAR_MIN {
        (0..n0).into_par_iter().for_each_init(init, one);
    } else {
        let mut sc = init();
        for z in 0..n0 {
            one(&mut sc, z);
        }
    }
    strided_pass(buf, g, 0, map, serial);
}

/// The first row of a column sweep: 0 on the targets, infinity elsewhere.
#[inline(never)]
fn first_row<T: Voxel, F: Float>(r: &mut [F], lab: &[T], target: bool) {
    for (x, m) in r.iter_mut().zip(lab) {
        *x = if m.is_foreground() == target {
            F::ZERO
        } else {
            F::INFINITY
        };
    }
}

/// One step down a column sweep: 0 on the targets, else the row above's distance plus 1. A
/// function of its own, so that its slices are known not to alias and the loop vectorises.
#[inline(never)]
fn step_down<T: Voxel, F: Float>(r: &mut [F], p: &[F], lab: &[T], target: bool, one: F) {
    for ((x, &px), m) in r.iter_mut().zip(p).zip(lab) {
        *x = if m.is_foreground() == target {
            F::ZERO
        } else {
            px + one
        };
    }
}

/// One step up a column sweep: `next` becomes the distance to the nearest target below or at this
/// row (the smaller of the two directions), and the row its square.
#[inline(never)]
fn step_up<F: Float>(r: &mut [F], next: &mut [F], one: F) {
    for (x, nx) in r.iter_mut().zip(next.iter_mut()) {
        let c = *nx + one;
        let d = if c < *x { c } else { *x };
        *nx = d;
        *x = d * d;
    }
}

/// The lanes `j0..j0 + w` of the plane of `rows` rows of `width` voxels that starts at voxel `base`.
#[derive(Clone, Copy)]
struct Lanes {
    base: usize,
    rows: usize,
    width: usize,
    j0: usize,
    w: usize,
}

/// Squared distance along the columns of `lanes` to the nearest target voxel (whose
/// foreground-ness in `mask` is `target`; infinity for none), by one sweep down and one up over
/// whole rows (elementwise on contiguous slices: vectorised).
///
/// # Safety
/// `out` must point to a buffer of at least `mask.len()` values, of which the caller's task owns the
/// voxels of `lanes` (no other thread reads or writes them during the call).
unsafe fn column_sweep<T: Voxel, F: Float>(
    mask: &[T],
    target: bool,
    out: SyncPtr<F>,
    lanes: Lanes,
    next: &mut Vec<F>,
) {
    let Lanes {
        base,
        rows,
        width,
        j0,
        w,
    } = lanes;
    let one = F::from_f64(1.0);
    let at = |k: usize| base + k * width + j0;
    let lab = |k: usize| &mask[at(k)..at(k) + w];
    // SAFETY: rows of `lanes` (see the function's contract), in bounds as `lab` checks.
    let row = |k: usize| unsafe { std::slice::from_raw_parts_mut(out.0.add(at(k)), lab(k).len()) };
    first_row(row(0), lab(0), target);
    for k in 1..rows {
        step_down(row(k), row(k - 1), lab(k), target, one);
    }
    next.clear();
    next.resize(w, F::INFINITY);
    for k in (0..rows).rev() {
        step_up(row(k), next, one);
    }
}

/// [`contiguous_pass`] on the rows of `buf` (of `n` positions each), on the calling thread.
fn contiguous_rows<F: Float>(buf: &mut [F], n: usize, out: Out, sc: &mut Scratch) {
    for row in buf.chunks_mut(n) {
        contiguous_row(row, out, sc);
    }
}

/// The pass along one contiguous row.
#[inline]
fn contiguous_row<F: Float>(row: &mut [F], out: Out, sc: &mut Scratch) {
    let n = row.len();
    for (d, &x) in sc.gi[REACH..REACH + n].iter_mut().zip(row.iter()) {
        *d = to_f32(x);
    }
    if !row_blocks(&sc.gi, &mut sc.m[..n]) {
        for (d, &x) in sc.f[..n].iter_mut().zip(row.iter()) {
            *d = x.to_f64();
        }
        sc.envelope(n);
        for (m, &o) in sc.m[..n].iter_mut().zip(&sc.o[..n]) {
            if *m == UNDECIDED {
                *m = o as f32;
            }
        }
    }
    for (x, &m) in row.iter_mut().zip(&sc.m[..n]) {
        *x = out.value(m);
    }
}

/// The pass along the contiguous last axis of every row of `buf` (squared distances in).
fn contiguous_pass<F: Float>(buf: &mut [F], g: &Grid, out: Out, serial: bool) {
    let n = g.shape[2];
    let work = |sc: &mut Scratch, row: &mut [F]| contiguous_row(row, out, sc);
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

/// The pass along axis 0 or 1 of the padded grid (squared distances in), [`LINES`] neighbouring
/// lines per task, read and written in place by rows.
fn strided_pass<F: Float>(buf: &mut [F], g: &Grid, axis: usize, out: Out, serial: bool) {
    let n = g.shape[axis];
    let st: usize = g.shape[axis + 1..].iter().product();
    let blocks = st.div_ceil(LINES);
    let ntasks = g.shape[..axis].iter().product::<usize>() * blocks;
    let bp = SyncPtr(buf.as_mut_ptr());
    let work = |sc: &mut Scratch, t: usize| {
        let (o, i0) = (t / blocks, (t % blocks) * LINES);
        let w = LINES.min(st - i0);
        let base = o * n * st + i0;
        let b = bp;
        // SAFETY: task t owns the voxels base + k·st + i (k < n, i < w): the lanes i0..i0 + w of
        // the lines of block o, which no other task touches; base + (n − 1)·st + w ≤ buf.len().
        let row = |k: usize| unsafe { std::slice::from_raw_parts_mut(b.0.add(base + k * st), w) };
        for k in 0..n {
            let dst = &mut sc.gi[(REACH + k) * LINES..(REACH + k + 1) * LINES];
            if w == LINES {
                let src: &[F; LINES] = (&*row(k)).try_into().unwrap();
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = to_f32(x);
                }
            } else {
                for (d, &x) in dst.iter_mut().zip(row(k).iter()) {
                    *d = to_f32(x);
                }
                // Lanes past the last line: sites that are never nearest, positions decided at
                // once.
                dst[w..].fill(0.0);
            }
        }
        let lines = &sc.gi[REACH * LINES..(REACH + n) * LINES];
        if !lines.iter().any(|&x| x < f32::INFINITY) {
            // No target on any of these lines.
            for k in 0..n {
                for x in row(k).iter_mut() {
                    *x = out.value(f32::INFINITY);
                }
            }
            return;
        }
        if !column_blocks(&sc.gi, n, &mut sc.m) {
            for l in 0..w {
                if !(0..n).any(|k| sc.m[k * LINES + l] == UNDECIDED) {
                    continue;
                }
                for k in 0..n {
                    sc.f[k] = row(k)[l].to_f64();
                }
                sc.envelope(n);
                for k in 0..n {
                    let m = &mut sc.m[k * LINES + l];
                    if *m == UNDECIDED {
                        *m = sc.o[k] as f32;
                    }
                }
            }
        }
        for k in 0..n {
            let ms = &sc.m[k * LINES..(k + 1) * LINES];
            if w == LINES {
                let dst: &mut [F; LINES] = row(k).try_into().unwrap();
                for (x, &m) in dst.iter_mut().zip(ms) {
                    *x = out.value(m);
                }
            } else {
                for (x, &m) in row(k).iter_mut().zip(ms) {
                    *x = out.value(m);
                }
            }
        }
    };
    if !serial && g.len() >= PAR_MIN && ntasks > 1 {
        (0..ntasks)
            .into_par_iter()
            .with_min_len(4)
            .for_each_init(|| Scratch::new(n, LINES), work);
    } else {
        let mut sc = Scratch::new(n, LINES);
        for t in 0..ntasks {
            work(&mut sc, t);
        }
    }
}
