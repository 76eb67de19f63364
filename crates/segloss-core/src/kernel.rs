//! The separable exact EDT kernels (Felzenszwalb & Huttenlocher 2012), on C-order buffers padded to 3 axes.
//!
//! Pass 1 runs along the contiguous last axis with two linear sweeps; passes 2 and 3 run along the strided
//! axes, a tile of [`TILE`] neighbouring lines at a time (gathered into a small transposed buffer, so that
//! every memory access of the big array reads or writes whole cache lines), each line through the lower
//! envelope of parabolas. Lines and tiles are independent and run in parallel with rayon.

use rayon::prelude::*;

use crate::element::{Float, Voxel};
use crate::grid::{Grid, SyncPtr};

/// Lines per tile of a strided pass.
const TILE: usize = 16;

/// Below this many voxels the passes run on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// The "no feature" index.
pub(crate) const NO_FEATURE: u32 = u32::MAX;

/// Distance between two lines of a gathered tile: one more than the line length, so that the lines of
/// a tile do not all map to the same cache set when `n` is a power of two.
#[inline(always)]
fn pitch(n: usize) -> usize {
    n + 1
}

/// Scratch space of one task.
pub(crate) struct Scratch {
    g: Vec<f64>,
    o: Vec<f64>,
    gf: Vec<u32>,
    of: Vec<u32>,
    v: Vec<u32>,
    z: Vec<Site>,
    seg: Vec<f64>,
    segout: Vec<f64>,
    arg: Vec<u32>,
}

impl Scratch {
    /// Scratch for single lines (no tiles) of up to `n` voxels.
    pub(crate) fn line(n: usize) -> Scratch {
        Scratch {
            g: vec![0.0; n + 1],
            o: vec![0.0; n + 1],
            gf: Vec::new(),
            of: Vec::new(),
            v: vec![0; n + 2],
            z: vec![[0.0; 3]; n + 2],
            seg: vec![0.0; n + 2],
            segout: vec![0.0; n + 2],
            arg: vec![0; n + 2],
        }
    }

    pub(crate) fn new(n: usize, features: bool) -> Scratch {
        Scratch {
            g: vec![0.0; TILE * pitch(n)],
            o: vec![0.0; TILE * pitch(n)],
            gf: if features {
                vec![0; TILE * pitch(n)]
            } else {
                Vec::new()
            },
            of: if features {
                vec![0; TILE * pitch(n)]
            } else {
                Vec::new()
            },
            v: vec![0; n + 2],
            z: vec![[0.0; 3]; n + 2],
            seg: vec![0.0; n + 2],
            segout: vec![0.0; n + 2],
            arg: vec![0; n + 2],
        }
    }
}

/// A site of the lower envelope: its position `x`, `h = f + x²` and `f`.
pub(crate) type Site = [f64; 3];

/// Lower envelope of the parabolas `(x − q·s)² + f[q]` over the finite `f[q]`, evaluated at every `x = p·s`.
///
/// Writes `out[p]` and, when `arg` is non-empty, the minimising `q` into `arg[p]` ([`NO_FEATURE`] when no `f`
/// is finite; `out` is then infinite). `v` and `z` need `f.len()` slots. Only the positions in
/// `window = (from, to)` are evaluated (all of them with `(0, usize::MAX)`).
///
/// Division-free: with `h(q) = f[q] + x_q²`, the breakpoint of sites `a < b` is
/// `(h(b) − h(a)) / (2(x_b − x_a))`, and both the "is the last site hidden" test and the sweep compare
/// breakpoints by cross-multiplying (exact on integer-valued grids).
#[inline]
pub(crate) fn envelope(
    f: &[f64],
    s: f64,
    out: &mut [f64],
    v: &mut [u32],
    z: &mut [Site],
    arg: &mut [u32],
    window: (usize, usize),
) {
    let n = f.len();
    envelope_at(f, 0, s, f64::MAX, &mut out[..n], v, z, arg, window);
}

/// [`envelope`] with the sites `f` at positions `offset..offset + f.len()` of a line of `out.len()`
/// positions (the positions outside hold no site), ignoring the sites with `f > cap` (then every
/// output that is at most `cap` is still exact; `f64::MAX` keeps every finite site). Returns `false`,
/// with `out` untouched, when no site is left and `cap` is below `f64::MAX`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn envelope_at(
    f: &[f64],
    offset: usize,
    s: f64,
    cap: f64,
    out: &mut [f64],
    v: &mut [u32],
    z: &mut [Site],
    arg: &mut [u32],
    window: (usize, usize),
) -> bool {
    let n = out.len();
    let z = &mut z[..f.len().max(1)];
    let v = &mut v[..f.len().max(1)];
    let want_arg = !arg.is_empty();
    // Number of sites on the envelope.
    let mut m = 0usize;
    // The last two sites (b on top of a) live in registers: reloading the site just stored would
    // stall on store forwarding (a 16-byte load of a freshly stored site), every site.
    let (mut xa, mut ha, mut xb, mut hb) = (0.0, 0.0, 0.0, 0.0);
    for (q, &fq) in f.iter().enumerate() {
        if fq > cap {
            continue;
        }
        let xq = (q + offset) as f64 * s;
        let hq = fq + xq * xq;
        // Pop the last site b while the one before it (a) and q hide it:
        // breakpoint(b, q) <= breakpoint(a, b).
        while m >= 2 && (hq - hb) * (xb - xa) <= (hb - ha) * (xq - xb) {
            m -= 1;
            (xb, hb) = (xa, ha);
            if m >= 2 {
                [xa, ha, _] = z[m - 2];
            }
        }
        z[m] = [xq, hq, fq];
        if want_arg {
            v[m] = (q + offset) as u32;
        }
        m += 1;
        (xa, ha, xb, hb) = (xb, hb, xq, hq);
    }
    if m == 0 {
        if cap < f64::MAX {
            return false;
        }
        out.fill(f64::INFINITY);
        if want_arg {
            arg[..n].fill(NO_FEATURE);
        }
        return true;
    }
    // Site k owns the positions p with breakpoint(k−1, k) < p·s ≤ breakpoint(k, k+1). Compact the sites
    // to those that own at least one position of the window, each with the end of its stretch, so
    // that the fill below advances at most one site per position, without branches.
    let (w0, w1) = (window.0.min(n), window.1.min(n));
    if w0 >= w1 {
        return true;
    }
    let mut cnt = 0usize;
    let mut prev = w0;
    let [mut xa, mut ha, mut fa] = z[0];
    let mut va = v[0];
    for k in 0..m {
        let end = if k + 1 < m {
            let [xb, hb, fb] = z[k + 1];
            let t = (hb - ha) / (2.0 * (xb - xa) * s);
            // First position p with p·s > breakpoint: floor(t) + 1, clamped to the window.
            let e = (t.clamp(-1.0, w1 as f64) + 1.0) as usize;
            let e = e.clamp(prev, w1);
            z[cnt] = [xa, fa, e as f64];
            if want_arg {
                v[cnt] = va;
            }
            (xa, ha, fa) = (xb, hb, fb);
            va = v[k + 1];
            e
        } else {
            z[cnt] = [xa, fa, w1 as f64];
            if want_arg {
                v[cnt] = va;
            }
            w1
        };
        cnt += (end > prev) as usize;
        prev = end;
    }
    let mut k = 0usize;
    for (p, o) in out.iter_mut().enumerate().take(w1).skip(w0) {
        let x = p as f64;
        k += (x >= z[k][2]) as usize;
        let [xs, fs, _] = z[k];
        let d = x * s - xs;
        *o = d * d + fs;
        if want_arg {
            arg[p] = v[k];
        }
    }
    true
}

/// [`envelope`] for a line whose zeros are target voxels (binary EDT): a zero site is lower than every
/// site beyond it, so the line splits into independent runs of non-zero values, each with its bounding
/// zeros; zeros themselves get 0 and cost nothing.
#[inline]
pub(crate) fn envelope_runs(
    f: &[f64],
    s: f64,
    out: &mut [f64],
    v: &mut [u32],
    z: &mut [Site],
    window: (usize, usize),
) {
    let n = f.len().min(window.1);
    let mut j = window.0;
    // Start at the beginning of the run that holds the window's first position.
    while j > 0 && j < n && f[j] != 0.0 && f[j - 1] != 0.0 {
        j -= 1;
    }
    let n_all = f.len();
    while j < n {
        if f[j] == 0.0 {
            out[j] = 0.0;
            j += 1;
            continue;
        }
        let mut e = j + 1;
        while e < n_all && f[e] != 0.0 {
            e += 1;
        }
        let lo = if j > 0 { j - 1 } else { j };
        let hi = if e < n_all { e + 1 } else { e };
        let w = (window.0.saturating_sub(lo), window.1.saturating_sub(lo));
        envelope(&f[lo..hi], s, &mut out[lo..hi], v, z, &mut [], w);
        j = e;
    }
}

/// Squared 1-D distance along one line to the nearest voxel where `target(j)` holds (infinite if none),
/// and the index (within the line) of that voxel in `feat`.
#[inline]
fn line_1d_feat<F: Float>(
    n: usize,
    s: f64,
    target: impl Fn(usize) -> bool,
    out: &mut [F],
    feat: &mut [u32],
) {
    let mut last: Option<usize> = None;
    for j in 0..n {
        if target(j) {
            last = Some(j);
        }
        match last {
            Some(l) => {
                out[j] = F::from_f64((j - l) as f64);
                feat[j] = l as u32;
            }
            None => {
                out[j] = F::INFINITY;
                feat[j] = NO_FEATURE;
            }
        }
    }
    let mut next: Option<usize> = None;
    let s2 = s * s;
    for j in (0..n).rev() {
        if out[j] == F::ZERO {
            next = Some(j);
            continue;
        }
        let mut d = out[j].to_f64();
        if let Some(nx) = next {
            let dn = (nx - j) as f64;
            if dn < d {
                d = dn;
                feat[j] = nx as u32;
            }
        }
        out[j] = F::from_f64(d * d * s2);
    }
}

/// A row of the feature-transform pass 1: (row index, ((distances, features), mask)).
type FeatRow<'a, F, T> = (usize, ((&'a mut [F], &'a mut [u32]), &'a [T]));

/// Pass 1 of the feature transform: squared distance along the last axis to the nearest background voxel
/// of `mask`, and the flat index of that voxel in `feat`.
pub(crate) fn row_pass_features<T: Voxel, F: Float>(
    mask: &[T],
    out: &mut [F],
    feat: &mut [u32],
    g: &Grid,
) {
    let n2 = g.shape[2];
    let s = g.spacing[2];
    let work = |(r, ((o, fe), m)): FeatRow<'_, F, T>| {
        line_1d_feat(n2, s, |j| !m[j].is_foreground(), o, fe);
        let base = (r * n2) as u32;
        for f in fe.iter_mut() {
            if *f != NO_FEATURE {
                *f += base;
            }
        }
    };
    if g.len() >= PAR_MIN {
        out.par_chunks_mut(n2)
            .zip(feat.par_chunks_mut(n2))
            .zip(mask.par_chunks(n2))
            .enumerate()
            .for_each(work);
    } else {
        out.chunks_mut(n2)
            .zip(feat.chunks_mut(n2))
            .zip(mask.chunks(n2))
            .enumerate()
            .for_each(work);
    }
}

/// Pass 1 of the multi-label EDT: squared distance along the last axis to the nearest voxel of another
/// label (0 on background).
pub(crate) fn row_pass_labels<T: Voxel, F: Float>(labels: &[T], out: &mut [F], g: &Grid) {
    let n2 = g.shape[2];
    let s2 = g.spacing[2] * g.spacing[2];
    let work = |(o, l): (&mut [F], &[T])| {
        let mut j = 0;
        while j < n2 {
            let lab = l[j];
            let mut e = j + 1;
            while e < n2 && l[e].same_label(lab) {
                e += 1;
            }
            if !lab.is_foreground() {
                o[j..e].fill(F::ZERO);
            } else {
                for (q, oq) in o.iter_mut().enumerate().take(e).skip(j) {
                    let dl = if j > 0 {
                        (q + 1 - j) as f64
                    } else {
                        f64::INFINITY
                    };
                    let dr = if e < n2 {
                        (e - q) as f64
                    } else {
                        f64::INFINITY
                    };
                    let d = dl.min(dr);
                    *oq = F::from_f64(d * d * s2);
                }
            }
            j = e;
        }
    };
    if g.len() >= PAR_MIN {
        out.par_chunks_mut(n2)
            .zip(labels.par_chunks(n2))
            .for_each(work);
    } else {
        out.chunks_mut(n2).zip(labels.chunks(n2)).for_each(work);
    }
}

/// What a strided pass does with each line.
#[derive(Clone, Copy)]
pub(crate) enum LineKind<'a, T> {
    /// The plain envelope (binary EDT).
    Plain,
    /// The envelope with feature indices carried along.
    Features,
    /// The envelope within runs of one label, the run's neighbours counting as distance 0 (multi-label EDT).
    Labels(&'a [T]),
}

/// Passes 2 and 3: the envelope along axis `axis` (0 or 1 of the padded grid) of every line of `buf`.
pub(crate) fn strided_pass<T: Voxel, F: Float>(
    buf: &mut [F],
    feat: Option<&mut [u32]>,
    g: &Grid,
    axis: usize,
    kind: LineKind<'_, T>,
    force_serial: bool,
) {
    let n = g.shape[axis];
    if n == 1 {
        return;
    }
    let st: usize = g.shape[axis + 1..].iter().product();
    let outer: usize = g.shape[..axis].iter().product();
    let s = g.spacing[axis];
    let blocks = st.div_ceil(TILE);
    let ntiles = outer * blocks;
    let with_feat = feat.is_some();
    let bp = SyncPtr(buf.as_mut_ptr());
    let fp = SyncPtr(feat.map_or(std::ptr::null_mut(), |f| f.as_mut_ptr()));
    let work = |sc: &mut Scratch, t: usize| {
        let o = t / blocks;
        let i0 = (t % blocks) * TILE;
        let w = TILE.min(st - i0);
        let base = o * n * st + i0;
        let pn = pitch(n);
        // SAFETY: tile t owns the voxels base + k·st + i (k < n, i < w); no two tiles share one.
        let (b, fe) = (bp, fp);
        unsafe {
            for k in 0..n {
                let row = b.0.add(base + k * st);
                for i in 0..w {
                    sc.g[i * pn + k] = (*row.add(i)).to_f64();
                }
                if with_feat {
                    let frow = fe.0.add(base + k * st);
                    for i in 0..w {
                        sc.gf[i * pn + k] = *frow.add(i);
                    }
                }
            }
        }
        for i in 0..w {
            let line = &sc.g[i * pn..i * pn + n];
            let out = &mut sc.o[i * pn..i * pn + n];
            match kind {
                LineKind::Plain => envelope_runs(line, s, out, &mut sc.v, &mut sc.z, (0, n)),
                LineKind::Features => {
                    envelope(line, s, out, &mut sc.v, &mut sc.z, &mut sc.arg[..n], (0, n));
                    let fin = &sc.gf[i * pn..i * pn + n];
                    let fout = &mut sc.of[i * pn..i * pn + n];
                    for (fo, &a) in fout.iter_mut().zip(&sc.arg[..n]) {
                        *fo = if a == NO_FEATURE {
                            NO_FEATURE
                        } else {
                            fin[a as usize]
                        };
                    }
                }
                LineKind::Labels(labels) => {
                    let lines = LineScratch {
                        seg: &mut sc.seg,
                        segout: &mut sc.segout,
                        v: &mut sc.v,
                        z: &mut sc.z,
                    };
                    label_line(labels, base + i, st, line, s, out, lines);
                }
            }
        }
        // SAFETY: as above.
        unsafe {
            for k in 0..n {
                let row = b.0.add(base + k * st);
                for i in 0..w {
                    *row.add(i) = F::from_f64(sc.o[i * pn + k]);
                }
                if with_feat {
                    let frow = fe.0.add(base + k * st);
                    for i in 0..w {
                        *frow.add(i) = sc.of[i * pn + k];
                    }
                }
            }
        }
    };
    if !force_serial && g.len() >= PAR_MIN && ntiles > 1 {
        (0..ntiles)
            .into_par_iter()
            .for_each_init(|| Scratch::new(n, with_feat), work);
    } else {
        let mut sc = Scratch::new(n, with_feat);
        for t in 0..ntiles {
            work(&mut sc, t);
        }
    }
}

/// The scratch slices of one multi-label line.
struct LineScratch<'a> {
    seg: &'a mut [f64],
    segout: &'a mut [f64],
    v: &'a mut [u32],
    z: &'a mut [Site],
}

/// One line of the multi-label pass: `labels[start + k·st]` are the line's labels, `f` its values.
#[inline]
fn label_line<T: Voxel>(
    labels: &[T],
    start: usize,
    st: usize,
    f: &[f64],
    s: f64,
    out: &mut [f64],
    sc: LineScratch<'_>,
) {
    let n = f.len();
    let lab = |k: usize| labels[start + k * st];
    let mut j = 0;
    while j < n {
        let l = lab(j);
        let mut e = j + 1;
        while e < n && lab(e).same_label(l) {
            e += 1;
        }
        if !l.is_foreground() {
            out[j..e].fill(0.0);
        } else {
            let lo = if j > 0 { j - 1 } else { j };
            let hi = if e < n { e + 1 } else { e };
            let m = hi - lo;
            sc.seg[..m].copy_from_slice(&f[lo..hi]);
            if j > 0 {
                sc.seg[0] = 0.0;
            }
            if e < n {
                sc.seg[m - 1] = 0.0;
            }
            envelope(
                &sc.seg[..m],
                s,
                &mut sc.segout[..m],
                sc.v,
                sc.z,
                &mut [],
                (0, m),
            );
            out[j..e].copy_from_slice(&sc.segout[j - lo..e - lo]);
        }
        j = e;
    }
}

/// Runs passes 2 and 3 (binary or multi-label).
pub(crate) fn strided_passes<T: Voxel, F: Float>(
    buf: &mut [F],
    mut feat: Option<&mut [u32]>,
    g: &Grid,
    kind: LineKind<'_, T>,
    force_serial: bool,
) {
    for axis in [1, 0] {
        strided_pass(buf, feat.as_deref_mut(), g, axis, kind, force_serial);
    }
}

/// Final map: square roots (unless `squared`), and 0 where no target exists at all (infinite values).
pub(crate) fn finish<F: Float>(buf: &mut [F], squared: bool) {
    let work = |x: &mut F| {
        if *x == F::INFINITY {
            *x = F::ZERO;
        } else if !squared {
            *x = x.sqrt();
        }
    };
    if buf.len() >= PAR_MIN {
        buf.par_chunks_mut(4096)
            .for_each(|c| c.iter_mut().for_each(work));
    } else {
        buf.iter_mut().for_each(work);
    }
}

/// Lanes per task of a vectorised sweep.
const SWEEP_LANES: usize = 2048;

/// Lanes per task of a vectorised sweep over `lanes` lanes: at most [`SWEEP_LANES`], and small enough
/// that every worker gets a few tasks (a 1024-wide image still sweeps on all threads).
fn sweep_chunk(lanes: usize, serial: bool) -> usize {
    if serial {
        return SWEEP_LANES;
    }
    let per = lanes.div_ceil(4 * rayon::current_num_threads());
    per.next_multiple_of(16).clamp(64, SWEEP_LANES)
}

/// Squared distance along axis `axis` (the outermost axis of length > 1; all axes before it have length 1)
/// to the nearest voxel where `is_target(flat index)` holds, by one forward and one backward linear sweep
/// over whole planes (each step is an elementwise operation on contiguous rows, so it vectorises).
fn sweep_pass<F: Float>(
    buf: &mut [F],
    g: &Grid,
    axis: usize,
    is_target: &(impl Fn(usize, usize) -> bool + Sync),
    lanes: (usize, usize),
    serial: bool,
) {
    let n = g.shape[axis];
    let st: usize = g.shape[axis + 1..].iter().product();
    let (lo, hi) = (lanes.0.min(st), lanes.1.min(st));
    if lo >= hi {
        return;
    }
    let s = g.spacing[axis];
    let one = F::from_f64(1.0);
    let bp = SyncPtr(buf.as_mut_ptr());
    let cl = sweep_chunk(hi - lo, serial);
    let chunks = (hi - lo).div_ceil(cl);
    let work = |next: &mut Vec<F>, c: usize| {
        let j0 = lo + c * cl;
        let w = cl.min(hi - j0);
        let b = bp;
        // SAFETY: task c owns the voxels k·st + j for j in j0..j0 + w, which no other task touches.
        let row = |k: usize| unsafe { std::slice::from_raw_parts_mut(b.0.add(k * st + j0), w) };
        for (j, x) in row(0).iter_mut().enumerate() {
            *x = if is_target(0, j0 + j) {
                F::ZERO
            } else {
                F::INFINITY
            };
        }
        for k in 1..n {
            let (p, r) = (row(k - 1), row(k));
            for (j, (x, &px)) in r.iter_mut().zip(p.iter()).enumerate() {
                *x = if is_target(k, j0 + j) {
                    F::ZERO
                } else {
                    px + one
                };
            }
        }
        next.clear();
        next.resize(w, F::INFINITY);
        for k in (0..n).rev() {
            let r = row(k);
            if s == 1.0 {
                // Exact in `F` (whole numbers), and no conversions in the loop.
                for (x, nx) in r.iter_mut().zip(next.iter_mut()) {
                    let c = *nx + one;
                    let d = if c < *x { c } else { *x };
                    *nx = d;
                    *x = d * d;
                }
                continue;
            }
            for (x, nx) in r.iter_mut().zip(next.iter_mut()) {
                let c = *nx + one;
                let d = if c < *x { c } else { *x };
                *nx = d;
                let ds = d.to_f64() * s;
                *x = F::from_f64(ds * ds);
            }
        }
    };
    if !serial && g.len() >= PAR_MIN && chunks > 1 {
        (0..chunks).into_par_iter().for_each_init(Vec::new, work);
    } else {
        let mut next = Vec::new();
        for c in 0..chunks {
            work(&mut next, c);
        }
    }
}

/// The envelope along the contiguous last axis of every row, in place; with `last`, also takes square
/// roots (unless `squared`) and maps "no target anywhere" (infinity) to 0.
fn contiguous_pass<F: Float>(buf: &mut [F], g: &Grid, last: bool, squared: bool, serial: bool) {
    let n = g.shape[2];
    let s = g.spacing[2];
    let work = |sc: &mut Scratch, row: &mut [F]| {
        for (d, x) in sc.g[..n].iter_mut().zip(row.iter()) {
            *d = x.to_f64();
        }
        envelope_runs(&sc.g[..n], s, &mut sc.o[..n], &mut sc.v, &mut sc.z, (0, n));
        for (x, &d) in row.iter_mut().zip(sc.o[..n].iter()) {
            *x = if !last {
                F::from_f64(d)
            } else if d == f64::INFINITY {
                F::ZERO
            } else if squared {
                F::from_f64(d)
            } else {
                F::from_f64(d.sqrt())
            };
        }
    };
    if !serial && g.len() >= PAR_MIN {
        buf.par_chunks_mut(n)
            .with_min_len(8)
            .for_each_init(|| Scratch::new(n, false), work);
    } else {
        let mut sc = Scratch::new(n, false);
        for row in buf.chunks_mut(n) {
            work(&mut sc, row);
        }
    }
}

/// The binary EDT (see [`crate::edt()`]) into `buf`, targets the voxels of `mask` whose
/// foreground-ness is `target`:
/// a linear sweep along the outermost axis, envelopes along the middle axis (tiled) and along the last
/// axis (contiguous), square roots fused into the last pass. On unit grids the envelopes are replaced by
/// the exact integer passes of [`crate::intpass`].
pub(crate) fn binary_edt<T: Voxel, F: Float>(
    buf: &mut [F],
    g: &Grid,
    (mask, target): (&[T], bool),
    squared: bool,
    serial: bool,
) {
    if crate::intpass::applies(g) {
        crate::intpass::binary_edt(buf, g, (mask, target), squared, serial);
        return;
    }
    let is_target = |i: usize| mask[i].is_foreground() == target;
    let first = (0..3).find(|&a| g.shape[a] > 1).unwrap_or(2);
    let st: usize = g.shape[first + 1..].iter().product();
    sweep_pass(
        buf,
        g,
        first,
        &|k, j| is_target(k * st + j),
        (0, st),
        serial,
    );
    if first == 0 && g.shape[1] > 1 {
        strided_pass::<bool, F>(buf, None, g, 1, LineKind::Plain, serial);
    }
    if first < 2 {
        contiguous_pass(buf, g, true, squared, serial);
    } else {
        finish(buf, squared);
    }
}

/// Multi-label pass along the outermost axis of length > 1, by linear sweeps over whole planes: the
/// squared distance to the nearest voxel of another label along that axis (0 on the background).
fn label_sweep_pass<T: Voxel, F: Float>(buf: &mut [F], labels: &[T], g: &Grid, axis: usize) {
    let n = g.shape[axis];
    let st: usize = g.shape[axis + 1..].iter().product();
    let s = g.spacing[axis];
    let one = F::from_f64(1.0);
    let bp = SyncPtr(buf.as_mut_ptr());
    let cl = sweep_chunk(st, false);
    let chunks = st.div_ceil(cl);
    let work = |next: &mut Vec<F>, c: usize| {
        let j0 = c * cl;
        let w = cl.min(st - j0);
        let b = bp;
        // SAFETY: task c owns the voxels k·st + j for j in j0..j0 + w, which no other task touches.
        let row = |k: usize| unsafe { std::slice::from_raw_parts_mut(b.0.add(k * st + j0), w) };
        let lab = |k: usize| &labels[k * st + j0..k * st + j0 + w];
        for (x, l) in row(0).iter_mut().zip(lab(0)) {
            *x = if l.is_foreground() {
                F::INFINITY
            } else {
                F::ZERO
            };
        }
        for k in 1..n {
            let (p, r) = (row(k - 1), row(k));
            let (lp, lr) = (lab(k - 1), lab(k));
            for j in 0..w {
                r[j] = if !lr[j].is_foreground() {
                    F::ZERO
                } else if !lr[j].same_label(lp[j]) {
                    one
                } else {
                    p[j] + one
                };
            }
        }
        next.clear();
        next.resize(w, F::INFINITY);
        for k in (0..n).rev() {
            let r = row(k);
            let lr = lab(k);
            let ln = if k + 1 < n { Some(lab(k + 1)) } else { None };
            for j in 0..w {
                let from_next = match ln {
                    Some(ln) if !lr[j].same_label(ln[j]) => one,
                    Some(_) => next[j] + one,
                    None => F::INFINITY,
                };
                let d = if from_next < r[j] { from_next } else { r[j] };
                next[j] = d;
                let ds = d.to_f64() * s;
                r[j] = F::from_f64(ds * ds);
            }
        }
    };
    if g.len() >= PAR_MIN && chunks > 1 {
        (0..chunks).into_par_iter().for_each_init(Vec::new, work);
    } else {
        let mut next = Vec::new();
        for c in 0..chunks {
            work(&mut next, c);
        }
    }
}

/// Multi-label envelope along the contiguous last axis, square roots (unless `squared`) and
/// "no other label anywhere" (infinity) to 0 fused in.
fn label_contiguous_pass<T: Voxel, F: Float>(buf: &mut [F], labels: &[T], g: &Grid, squared: bool) {
    let n = g.shape[2];
    let s = g.spacing[2];
    let work = |sc: &mut Scratch, (r, row): (usize, &mut [F])| {
        for (d, x) in sc.g[..n].iter_mut().zip(row.iter()) {
            *d = x.to_f64();
        }
        let lines = LineScratch {
            seg: &mut sc.seg,
            segout: &mut sc.segout,
            v: &mut sc.v,
            z: &mut sc.z,
        };
        label_line(labels, r * n, 1, &sc.g[..n], s, &mut sc.o[..n], lines);
        for (x, &d) in row.iter_mut().zip(sc.o[..n].iter()) {
            *x = if d == f64::INFINITY {
                F::ZERO
            } else if squared {
                F::from_f64(d)
            } else {
                F::from_f64(d.sqrt())
            };
        }
    };
    if g.len() >= PAR_MIN {
        buf.par_chunks_mut(n)
            .enumerate()
            .with_min_len(8)
            .for_each_init(|| Scratch::new(n, false), work);
    } else {
        let mut sc = Scratch::new(n, false);
        for r in buf.chunks_mut(n).enumerate() {
            work(&mut sc, r);
        }
    }
}

/// The multi-label EDT (see [`crate::multilabel_edt`]) into `buf`: a linear sweep along the outermost
/// axis, envelopes within label runs along the middle (tiled) and last (contiguous) axes.
pub(crate) fn multilabel_edt<T: Voxel, F: Float>(
    buf: &mut [F],
    labels: &[T],
    g: &Grid,
    squared: bool,
) {
    let first = (0..3).find(|&a| g.shape[a] > 1).unwrap_or(2);
    if first == 2 {
        row_pass_labels(labels, buf, g);
        finish(buf, squared);
        return;
    }
    label_sweep_pass(buf, labels, g, first);
    if first == 0 && g.shape[1] > 1 {
        strided_pass(buf, None, g, 1, LineKind::Labels(labels), false);
    }
    label_contiguous_pass(buf, labels, g, squared);
}

/// The column distance that stands for "no change of class in this direction": larger than any
/// distance in voxels, finite in `f32` (so that `0 · BIG` is 0), and its square stays finite in `f64`.
/// A column without any change of class ends up at about this value instead of infinity; the row pass
/// treats it as a site too far to matter (every voxel of a non-uniform mask has a finite distance).
const COLUMN_BIG: f64 = 1e30;

/// One step down a column sweep of [`two_sided_squared_plane`]: `r` (this row) is 1 where the class
/// changes from the row above, else the row above's distance `p` plus 1. A separate function, so that
/// its slices are known not to alias and the loop vectorises.
#[inline(never)]
fn column_down<F: Float>(r: &mut [F], p: &[F], a: &[bool], b: &[bool], one: F) {
    let n = r.len();
    let (p, a, b) = (&p[..n], &a[..n], &b[..n]);
    // Branch-free (the select of a load did not vectorise): a change of class caps the distance at 1;
    // no change caps it at 1 + BIG, which the running distance always undercuts when finite.
    let big = F::from_f64(COLUMN_BIG);
    for j in 0..n {
        let cap = one + F::from_f64((a[j] == b[j]) as u8 as f64) * big;
        let d = p[j] + one;
        r[j] = if d < cap { d } else { cap };
    }
}

/// One step up a column sweep: `next` becomes the distance to the nearest change of class below
/// this row, and `r` the smaller of the two directions.
#[inline(never)]
fn column_up<F: Float>(r: &mut [F], next: &mut [F], a: &[bool], b: &[bool], one: F) {
    let n = r.len();
    let (next, a, b) = (&mut next[..n], &a[..n], &b[..n]);
    let big = F::from_f64(COLUMN_BIG);
    for j in 0..n {
        let cap = one + F::from_f64((a[j] == b[j]) as u8 as f64) * big;
        let d = next[j] + one;
        let d = if d < cap { d } else { cap };
        next[j] = d;
        r[j] = if d < r[j] { d } else { r[j] };
    }
}

/// Segments of at most this many voxels take the brute-force minimum in [`two_sided_squared_plane`]
/// instead of the lower envelope (noisy masks are mostly such segments, and the envelope's setup
/// costs more than the few products).
const SHORT_SEGMENT: usize = 16;

/// The squared two-sided EDT of a 1-D or 2-D mask (`g.shape[0] == 1`) in one transform: every voxel's
/// squared distance to the nearest voxel of the other class, written into `out` (0 everywhere when the
/// mask is uniform).
///
/// A foreground voxel needs only the transform whose targets are the background, a background voxel only
/// the other one, and along any line the two transforms are zero exactly on the other class. So one
/// column sweep gives, for every voxel, the distance along the column to the nearest voxel of the other
/// class (a change of class is a target of the voxel's own transform), and each row splits into segments
/// of one class, each bounded by the zero sites of the neighbouring voxels of the other class: one lower
/// envelope per segment, the same work as one binary EDT instead of two.
pub(crate) fn two_sided_squared_plane<F: Float>(
    fg: &[bool],
    g: &Grid,
    out: &mut [F],
    serial: bool,
) {
    debug_assert_eq!(g.shape[0], 1);
    debug_assert_eq!(fg.len(), g.len());
    let (h, w) = (g.shape[1], g.shape[2]);
    let (sy, sx) = (g.spacing[1], g.spacing[2]);
    if fg.iter().all(|&v| v == fg[0]) {
        out.fill(F::ZERO);
        return;
    }
    let par = !serial && g.len() >= PAR_MIN;
    // Column pass: the distance, in voxels, to the nearest voxel of the other class in the column.
    let one = F::from_f64(1.0);
    let cl = if par { sweep_chunk(w, false) } else { w };
    let chunks = w.div_ceil(cl);
    let op = SyncPtr(out.as_mut_ptr());
    let column = |next: &mut Vec<F>, c: usize| {
        let j0 = c * cl;
        let n = cl.min(w - j0);
        let o = op;
        // SAFETY: task c owns the columns j0..j0 + n of every row, which no other task touches.
        let row = |k: usize| unsafe { std::slice::from_raw_parts_mut(o.0.add(k * w + j0), n) };
        let cls = |k: usize| &fg[k * w + j0..k * w + j0 + n];
        row(0).fill(F::INFINITY);
        for k in 1..h {
            column_down(row(k), row(k - 1), cls(k), cls(k - 1), one);
        }
        next.clear();
        next.resize(n, F::INFINITY);
        for k in (0..h.saturating_sub(1)).rev() {
            column_up(row(k), next, cls(k), cls(k + 1), one);
        }
    };
    if par && chunks > 1 {
        (0..chunks).into_par_iter().for_each_init(Vec::new, column);
    } else {
        let mut next = Vec::new();
        for c in 0..chunks {
            column(&mut next, c);
        }
    }
    // Row pass: per segment of one class, the envelope of its column distances and of the two bounding
    // zero sites.
    let rows = |sc: &mut Scratch, (k, row): (usize, &mut [F])| {
        let cls = &fg[k * w..(k + 1) * w];
        let f = &mut sc.g[..w];
        for (d, x) in f.iter_mut().zip(row.iter()) {
            let v = x.to_f64() * sy;
            *d = v * v;
        }
        let mut a = 0usize;
        while a < w {
            let c = cls[a];
            let mut b = a + 1;
            while b < w && cls[b] == c {
                b += 1;
            }
            // Sites lo..hi: the segment and its bounding zeros.
            let lo = a.saturating_sub(1);
            let hi = (b + 1).min(w);
            let seg = &mut sc.seg[..hi - lo];
            seg.copy_from_slice(&f[lo..hi]);
            if a > 0 {
                seg[0] = 0.0;
            }
            if b < w {
                seg[hi - lo - 1] = 0.0;
            }
            if b - a <= SHORT_SEGMENT {
                // Outward from p: a site r voxels away costs at least (r·sx)², so the scan stops
                // once that reaches the best value so far (at once when a column neighbour is of
                // the other class).
                for p in a..b {
                    let i = p - lo;
                    let mut m = seg[i];
                    let mut r = 1usize;
                    loop {
                        let d = r as f64 * sx;
                        let d = d * d;
                        if d >= m {
                            break;
                        }
                        let (left, right) = (i >= r, i + r < seg.len());
                        if !left && !right {
                            break;
                        }
                        if left {
                            m = m.min(seg[i - r] + d);
                        }
                        if right {
                            m = m.min(seg[i + r] + d);
                        }
                        r += 1;
                    }
                    sc.o[p] = m;
                }
            } else {
                envelope_at(
                    seg,
                    lo,
                    sx,
                    f64::MAX,
                    &mut sc.o[..w],
                    &mut sc.v,
                    &mut sc.z,
                    &mut [],
                    (a, b),
                );
            }
            a = b;
        }
        for (x, &d) in row.iter_mut().zip(sc.o[..w].iter()) {
            *x = F::from_f64(d);
        }
    };
    if par {
        out.par_chunks_mut(w)
            .enumerate()
            .with_min_len(8)
            .for_each_init(|| Scratch::line(w), rows);
    } else {
        let mut sc = Scratch::line(w);
        for kr in out.chunks_mut(w).enumerate() {
            rows(&mut sc, kr);
        }
    }
}
