//! The fused CPU kernels on `f32` slices (no burn types): one pass over `[N, C, S]` logits for
//! the forward statistics, one for the gradient. Work is split into (sample, block of pixels)
//! tasks run by rayon; inner loops use 8-lane accumulators and the branch-free functions of
//! [`super::math`] so that they vectorise, and are compiled twice (baseline and AVX2+FMA) with a
//! run-time choice.

use rayon::prelude::*;

use super::math::{exp, ln, sigmoid_pair};

/// Pixels per task.
const BLOCK: usize = 2048;
/// Lanes of the accumulators.
const L: usize = 8;

/// Number of region statistics per (sample, class); see [`region_sums`].
pub(crate) const NSTATS: usize = 8;

/// How logits become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// Values are probabilities already.
    Identity,
    /// Per element.
    Sigmoid,
    /// Over the channel axis.
    Softmax,
}

impl Act {
    pub(crate) fn code(self) -> u32 {
        match self {
            Act::Identity => 0,
            Act::Sigmoid => 1,
            Act::Softmax => 2,
        }
    }

    pub(crate) fn from_code(c: u32) -> Act {
        match c & !(CE_FLAG | SIGN_FLAG) {
            0 => Act::Identity,
            1 => Act::Sigmoid,
            _ => Act::Softmax,
        }
    }
}

/// Added to an activation code: the region kernels also compute the cross-entropy (softmax,
/// label targets; see [`region_sums`]).
pub(crate) const CE_FLAG: u32 = 0x100;

/// Added to an activation code of the weighted-square kernels ([`wsq_sums`]): the target is one-hot
/// and carried by the sign of the weight (`w < 0` where `y = 1`, the weight being `|w|`), so that a
/// label target needs no `[N, C, S]` one-hot tensor; the `y` operand is then ignored. A zero weight
/// loses its sign, which is harmless: its term and gradient are 0 whatever `y` is.
pub(crate) const SIGN_FLAG: u32 = 0x200;

/// `y` and `w` of one row of the weighted-square kernels: borrowed, or split from a signed weight
/// into the scratch rows `yb`, `wb` (see [`SIGN_FLAG`]).
#[inline(always)]
fn wsq_rows<'a>(
    y: &'a [f32],
    w: &'a [f32],
    signed: bool,
    base: usize,
    len: usize,
    yb: &'a mut [f32],
    wb: &'a mut [f32],
) -> (&'a [f32], &'a [f32]) {
    let wr = &w[base..][..len];
    if !signed {
        return (&y[base..][..len], wr);
    }
    let (yb, wb) = (&mut yb[..len], &mut wb[..len]);
    for i in 0..len {
        yb[i] = if wr[i] < 0.0 { 1.0 } else { 0.0 };
        wb[i] = wr[i].abs();
    }
    (yb, wb)
}

/// Class labels `[N, S]`, borrowed in the integer type the backend stores.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Labels<'a> {
    I64(&'a [i64]),
    I32(&'a [i32]),
}

impl Labels<'_> {
    /// Writes `label == c` for the labels `start..start + out.len()` into `out`.
    #[inline(always)]
    fn one_hot_row(self, start: usize, c: usize, out: &mut [f32]) {
        let len = out.len();
        match self {
            Labels::I64(l) => {
                for (o, &v) in out.iter_mut().zip(&l[start..start + len]) {
                    *o = (v == c as i64) as u32 as f32;
                }
            }
            Labels::I32(l) => {
                for (o, &v) in out.iter_mut().zip(&l[start..start + len]) {
                    *o = (v as i64 == c as i64) as u32 as f32;
                }
            }
        }
    }

    /// The labels `start..start + out.len()` as indices.
    #[inline(always)]
    fn indices(self, start: usize, out: &mut [usize]) {
        let len = out.len();
        match self {
            Labels::I64(l) => {
                for (o, &v) in out.iter_mut().zip(&l[start..start + len]) {
                    *o = v as usize;
                }
            }
            Labels::I32(l) => {
                for (o, &v) in out.iter_mut().zip(&l[start..start + len]) {
                    *o = v as usize;
                }
            }
        }
    }
}

/// The target: a float mask `[N, C, S]` or class labels `[N, S]` (one-hot inside the kernel).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tgt<'a> {
    Mask(&'a [f32]),
    Labels(Labels<'a>),
}

impl Tgt<'_> {
    /// `y[n, c, s0..s0 + buf.len()]`: borrowed from a mask, written into `buf` from labels.
    #[inline(always)]
    fn row_ref<'b>(
        &'b self,
        n: usize,
        c: usize,
        nc: usize,
        s: usize,
        s0: usize,
        buf: &'b mut [f32],
    ) -> &'b [f32] {
        match self {
            Tgt::Mask(y) => &y[(n * nc + c) * s + s0..][..buf.len()],
            Tgt::Labels(l) => {
                l.one_hot_row(n * s + s0, c, buf);
                buf
            }
        }
    }

    /// Writes `y[n, c, s0..s0 + out.len()]` into `out`.
    #[inline(always)]
    fn row(&self, n: usize, c: usize, nc: usize, s: usize, s0: usize, out: &mut [f32]) {
        match self {
            Tgt::Mask(y) => {
                let base = (n * nc + c) * s + s0;
                out.copy_from_slice(&y[base..base + out.len()]);
            }
            Tgt::Labels(l) => l.one_hot_row(n * s + s0, c, out),
        }
    }
}

/// A pointer the tasks write disjoint ranges through.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes a range of the output no other task writes (see the callers).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// # Safety
    /// `start + src.len()` within the allocation and the range written by this rayon task only.
    #[inline(always)]
    unsafe fn write(self, start: usize, src: &[f32]) {
        std::ptr::copy_nonoverlapping(src.as_ptr(), self.0.add(start), src.len());
    }

    /// # Safety
    /// `start + len` within the allocation, initialised, and a range no other task accesses
    /// while the slice lives.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }

    /// # Safety
    /// `start + dst.len()` within the allocation, initialised, and a range no other task
    /// accesses while this one runs.
    #[inline(always)]
    unsafe fn read(self, start: usize, dst: &mut [f32]) {
        std::ptr::copy_nonoverlapping(self.0.add(start), dst.as_mut_ptr(), dst.len());
    }
}

/// A new buffer of `len` floats that `fill` initialises in full through the pointer it is given
/// (every caller's tasks write disjoint ranges that together cover it), returned with `fill`'s
/// result; no zeroing pass first.
fn filled_by_tasks<R>(len: usize, fill: impl FnOnce(Out) -> R) -> (R, Vec<f32>) {
    let mut v = Vec::<f32>::with_capacity(len);
    let r = fill(Out(v.as_mut_ptr()));
    // SAFETY: `fill` wrote all `len` elements (see the callers: all rows of each (sample, block)).
    unsafe { v.set_len(len) };
    (r, v)
}

thread_local! {
    /// Per-thread scratch of the region kernels' tasks, reused from task to task.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// At least `len` floats of the thread's scratch (stale contents, not zeroed: every caller
/// writes each buffer in full before reading it), to hand back with [`give_scratch`]. Not a
/// closure-taking helper: a closure would not be compiled inside the `multiversion!` kernels
/// (it lost AVX2 and became 4× slower).
#[inline(always)]
fn take_scratch(len: usize) -> Vec<f32> {
    let mut v = SCRATCH.with(|cell| cell.take());
    if v.len() < len {
        v.resize(len, 0.0);
    }
    v
}

/// Returns a buffer from [`take_scratch`] to the thread.
#[inline(always)]
fn give_scratch(v: Vec<f32>) {
    SCRATCH.with(|cell| cell.replace(v));
}

/// Per-sample sums over the (sample, pixel block) tasks, in parallel: `task(i, s0, s1)` gives
/// the `width` partial sums of sample `i` over pixels `s0..s1`; they are added in f64 and
/// returned as `[N, width]` f32.
fn sample_sums(
    n: usize,
    s: usize,
    width: usize,
    task: impl Fn(usize, usize, usize) -> Vec<f64> + Sync,
) -> Vec<f32> {
    let parts: Vec<(usize, Vec<f64>)> = tasks(n, s)
        .into_par_iter()
        .map(|(i, s0, s1)| (i, task(i, s0, s1)))
        .collect();
    let mut out = vec![0f64; n * width];
    for (i, part) in parts {
        debug_assert_eq!(part.len(), width);
        for (o, v) in out[i * width..][..width].iter_mut().zip(part) {
            *o += v;
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

fn tasks(n: usize, s: usize) -> Vec<(usize, usize, usize)> {
    let mut t = Vec::new();
    for i in 0..n {
        let mut s0 = 0;
        while s0 < s {
            let s1 = (s0 + BLOCK).min(s);
            t.push((i, s0, s1));
            s0 = s1;
        }
    }
    t
}

/// Compiles `$body` (a call of an `#[inline(always)]` function) for AVX2+FMA and for the
/// baseline, choosing at run time.
macro_rules! multiversion {
    ($name:ident, fn($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty, $imp:ident) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features just detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

/// 0 for a probability at the floor of the clamped exp (e^−87 ≈ 1.6e−38: logits ~90 apart), as
/// PyTorch's sigmoid and softmax give: with no smoothing, a class absent from both the prediction
/// and the target must read 0/0 → Dice loss 0, not (1.6e−38)/(1.6e−38) → 1 (found by the fused
/// test with `jaccard(smooth=0)` on saturated logits).
#[inline(always)]
fn flush_tiny(v: f32) -> f32 {
    if v < 2e-38 {
        0.0
    } else {
        v
    }
}

/// Probabilities `p` and complements `q` of one block, channel-major `[C][len]`, from the logits
/// `x` of sample `n`, pixels `s0..s0 + len` (probabilities at the exp's floor flushed to 0).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_probs(
    x: &[f32],
    n: usize,
    nc: usize,
    s: usize,
    s0: usize,
    len: usize,
    act: Act,
    p: &mut [f32],
    q: &mut [f32],
    lse: &mut [f32],
) {
    match act {
        Act::Identity => {
            for c in 0..nc {
                let row = &x[(n * nc + c) * s + s0..][..len];
                for ((pi, qi), &xi) in p[c * len..][..len]
                    .iter_mut()
                    .zip(&mut q[c * len..][..len])
                    .zip(row)
                {
                    *pi = xi;
                    *qi = 1.0 - xi;
                }
            }
        }
        Act::Sigmoid => {
            for c in 0..nc {
                let row = &x[(n * nc + c) * s + s0..][..len];
                for ((pi, qi), &xi) in p[c * len..][..len]
                    .iter_mut()
                    .zip(&mut q[c * len..][..len])
                    .zip(row)
                {
                    let (a, b, _) = sigmoid_pair(xi);
                    *pi = flush_tiny(a);
                    *qi = flush_tiny(b);
                }
            }
        }
        Act::Softmax => {
            // lse[..len] = the max m over the channels, lse[len..2·len] = ln Σ e^(x − m): kept
            // apart so that ln p = (x − m) − ln Σ has no cancellation at large logits.
            let (lse, lsum) = lse.split_at_mut(len);
            let lsum = &mut lsum[..len];
            lse.copy_from_slice(&x[n * nc * s + s0..][..len]);
            for c in 1..nc {
                let row = &x[(n * nc + c) * s + s0..][..len];
                for (m, &xi) in lse.iter_mut().zip(row) {
                    *m = m.max(xi);
                }
            }
            // p temporarily holds e^(x − max); q the running sum in its first row.
            let (sum, _) = q.split_at_mut(len);
            sum.fill(0.0);
            for c in 0..nc {
                let row = &x[(n * nc + c) * s + s0..][..len];
                for ((pi, si), (&xi, &m)) in p[c * len..][..len]
                    .iter_mut()
                    .zip(sum.iter_mut())
                    .zip(row.iter().zip(lse.iter()))
                {
                    let e = exp(xi - m);
                    *pi = e;
                    *si += e;
                }
            }
            for (l, &sm) in lsum.iter_mut().zip(sum.iter()) {
                *l = ln(sm);
            }
            let inv: Vec<f32> = sum.iter().map(|&v| 1.0 / v).collect();
            for c in 0..nc {
                for (pi, &iv) in p[c * len..][..len].iter_mut().zip(&inv) {
                    *pi = flush_tiny(*pi * iv);
                }
            }
            for c in 0..nc {
                let (pc, qc) = (&p[c * len..][..len], &mut q[c * len..][..len]);
                for (qi, &pi) in qc.iter_mut().zip(pc) {
                    *qi = 1.0 - pi;
                }
            }
        }
    }
}

/// `Σ body` over the elements of equally long `f32` slices, zipped (`slice => value` binds each
/// element), with 8 f32 lanes and an f64 total. A macro, not a function taking a closure (a closure
/// is its own function, without the caller's AVX2 features), and over fixed-size chunks so that no
/// bounds check stops the vectoriser.
macro_rules! lane_sum {
    ($first:ident => $fv:ident $(, $s:ident => $v:ident)* ; $body:expr) => {{
        let len = $first.len();
        let $first = &$first[..len];
        $( let $s = &$s[..len]; )*
        let mut acc = [0f32; L];
        let chunks = len / L;
        for k in 0..chunks {
            let $first: &[f32; L] = $first[k * L..k * L + L].try_into().unwrap();
            $( let $s: &[f32; L] = $s[k * L..k * L + L].try_into().unwrap(); )*
            let mut v = [0f32; L];
            for l in 0..L {
                let $fv = $first[l];
                $( let $v = $s[l]; )*
                v[l] = $body;
            }
            for l in 0..L {
                acc[l] += v[l];
            }
        }
        let mut tail = 0f64;
        for i in chunks * L..len {
            let $fv = $first[i];
            $( let $v = $s[i]; )*
            tail += ($body) as f64;
        }
        acc.iter().map(|&v| v as f64).sum::<f64>() + tail
    }};
}

/// The 8 statistics of one row: Σp, Σp², Σy, Σy², Σp·y, Σp·(1−y), Σq·y, Σ((1−y)·p − y·q)².
#[inline(always)]
fn row_stats(p: &[f32], q: &[f32], y: &[f32], out: &mut [f64]) {
    // One 8-lane accumulator per statistic, each a separate array updated lane by lane, so that
    // LLVM keeps them in vector registers (an `[[f32; L]; 8]` scratch transposed into them was
    // compiled to scalar inserts and stack spills: 2.4× the time of the backward kernel).
    let (mut a0, mut a1, mut a2, mut a3) = ([0f32; L], [0f32; L], [0f32; L], [0f32; L]);
    let (mut a4, mut a5, mut a6, mut a7) = ([0f32; L], [0f32; L], [0f32; L], [0f32; L]);
    let (pc, qc, yc) = (p.chunks_exact(L), q.chunks_exact(L), y.chunks_exact(L));
    let (pr, qr, yr) = (pc.remainder(), qc.remainder(), yc.remainder());
    for ((pk, qk), yk) in pc.zip(qc).zip(yc) {
        let (pk, qk, yk): (&[f32; L], &[f32; L], &[f32; L]) = (
            pk.try_into().unwrap(),
            qk.try_into().unwrap(),
            yk.try_into().unwrap(),
        );
        for l in 0..L {
            let (pi, qi, yi) = (pk[l], qk[l], yk[l]);
            let ny = 1.0 - yi;
            let r = ny * pi - yi * qi;
            a0[l] += pi;
            a1[l] += pi * pi;
            a2[l] += yi;
            a3[l] += yi * yi;
            a4[l] += pi * yi;
            a5[l] += pi * ny;
            a6[l] += qi * yi;
            a7[l] += r * r;
        }
    }
    let acc = [a0, a1, a2, a3, a4, a5, a6, a7];
    let mut tail = [0f64; NSTATS];
    for i in 0..pr.len() {
        let (pi, qi, yi) = (pr[i] as f64, qr[i] as f64, yr[i] as f64);
        let ny = 1.0 - yi;
        let r = ny * pi - yi * qi;
        let v = [pi, pi * pi, yi, yi * yi, pi * yi, pi * ny, qi * yi, r * r];
        for k in 0..NSTATS {
            tail[k] += v[k];
        }
    }
    for ((o, a), t) in out.iter_mut().zip(acc.iter()).zip(tail) {
        *o += a.iter().map(|&v| v as f64).sum::<f64>() + t;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn region_task(
    x: &[f32],
    t: Tgt<'_>,
    nc: usize,
    s: usize,
    act: Act,
    ce: bool,
    keep: Option<Out>,
    n: usize,
    s0: usize,
    s1: usize,
) -> Vec<f64> {
    let len = s1 - s0;
    let mut out = vec![0f64; (nc + usize::from(ce)) * NSTATS];
    let mut scratch = take_scratch((2 * nc + 3) * len);
    {
        let (p, buf) = scratch[..(2 * nc + 3) * len].split_at_mut(nc * len);
        let (q, buf) = buf.split_at_mut(nc * len);
        let (lse, y) = buf.split_at_mut(2 * len);
        block_probs(x, n, nc, s, s0, len, act, p, q, lse);
        if let Some(kp) = keep {
            for c in 0..nc {
                // SAFETY: rows (n, c), pixels s0..s1 belong to this rayon task only.
                unsafe { kp.write((n * nc + c) * s + s0, &p[c * len..][..len]) };
            }
        }
        for c in 0..nc {
            // A copy, not `row_ref`: with a borrowed mask row LLVM stopped vectorising
            // `row_stats` (scalar lanes on the stack, 2.5× slower; checked with perf).
            t.row(n, c, nc, s, s0, y);
            row_stats(
                &p[c * len..][..len],
                &q[c * len..][..len],
                y,
                &mut out[c * NSTATS..][..NSTATS],
            );
        }
        if let (true, Tgt::Labels(labels)) = (ce, t) {
            out[nc * NSTATS] = ce_block(x, labels, n, nc, s, s0, lse);
        }
    }
    give_scratch(scratch);
    out
}

/// Σ −ln p_label over one block, from the softmax's own max (`lse[..len]`) and log-sum
/// (`lse[len..]`): Σ (max − x_label) + ln Σ e^(x − max), as the CE kernel.
#[inline(always)]
fn ce_block(
    x: &[f32],
    labels: Labels<'_>,
    n: usize,
    nc: usize,
    s: usize,
    s0: usize,
    lse: &[f32],
) -> f64 {
    let len = lse.len() / 2;
    let mut lab = vec![0usize; len];
    labels.indices(n * s + s0, &mut lab);
    let (mx, lsum) = (&lse[..len], &lse[len..2 * len]);
    let xl: Vec<f32> = lab
        .iter()
        .enumerate()
        .map(|(i, &k)| x[(n * nc + k) * s + s0 + i])
        .collect();
    lane_sum!(mx => m, xl => v, lsum => ls; (m - v) + ls)
}

multiversion!(
    region_task_mv,
    fn(
        x: &[f32],
        t: Tgt<'_>,
        nc: usize,
        s: usize,
        act: Act,
        ce: bool,
        keep: Option<Out>,
        n: usize,
        s0: usize,
        s1: usize,
    ) -> Vec<f64>,
    region_task
);

/// Region statistics `[N, C, 8]` (see [`row_stats`]) of `p = act(x)`, `q = 1 − p` (computed
/// without cancellation for the sigmoid) and the target, summed over the pixels. With `ce`
/// (softmax, label targets: Dice + CE in one pass) `[N, C + 1, 8]`, the extra row holding the
/// cross-entropy sum Σ −ln p_label in its first slot (zeros after).
pub(crate) fn region_sums(
    x: &[f32],
    t: Tgt<'_>,
    n: usize,
    nc: usize,
    s: usize,
    act: Act,
    ce: bool,
) -> Vec<f32> {
    region_sums_into(x, t, n, nc, s, act, ce, None)
}

/// [`region_sums`], writing the probabilities into `keep` when given.
#[allow(clippy::too_many_arguments)]
fn region_sums_into(
    x: &[f32],
    t: Tgt<'_>,
    n: usize,
    nc: usize,
    s: usize,
    act: Act,
    ce: bool,
    keep: Option<Out>,
) -> Vec<f32> {
    let rows = nc + usize::from(ce);
    sample_sums(n, s, rows * NSTATS, |i, s0, s1| {
        region_task_mv(x, t, nc, s, act, ce, keep, i, s0, s1)
    })
}

/// [`region_sums`] that also returns the probabilities `p = act(x)` `[N, C, S]` it computed, for
/// a backward that reads them instead of evaluating the activation again
/// ([`region_sums_backward_in_place`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn region_sums_keep(
    x: &[f32],
    t: Tgt<'_>,
    n: usize,
    nc: usize,
    s: usize,
    act: Act,
    ce: bool,
) -> (Vec<f32>, Vec<f32>) {
    filled_by_tasks(n * nc * s, |kp| {
        region_sums_into(x, t, n, nc, s, act, ce, Some(kp))
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn region_backward_task(
    probs: Out,
    t: Tgt<'_>,
    g: &[f32],
    nc: usize,
    s: usize,
    act: Act,
    ce: bool,
    n: usize,
    s0: usize,
    s1: usize,
    out: Out,
) {
    let len = s1 - s0;
    let rows = nc + usize::from(ce);
    let mut scratch = take_scratch((3 * nc + 3) * len);
    {
        let (p, buf) = scratch[..(3 * nc + 3) * len].split_at_mut(nc * len);
        let (q, buf) = buf.split_at_mut(nc * len);
        let (a, buf) = buf.split_at_mut(nc * len);
        let (lse, y) = buf.split_at_mut(2 * len);
        // The forward's probabilities as they are (q = 1 − p, as PyTorch's sigmoid backward):
        // no activation evaluated again.
        for c in 0..nc {
            let pc = &mut p[c * len..][..len];
            // SAFETY: rows (n, c), pixels s0..s1 belong to this rayon task only.
            unsafe { probs.read((n * nc + c) * s + s0, pc) };
            for (qi, &pi) in q[c * len..][..len].iter_mut().zip(pc.iter()) {
                *qi = 1.0 - pi;
            }
        }
        for c in 0..nc {
            let yr = t.row_ref(n, c, nc, s, s0, y);
            let gc = &g[(n * rows + c) * NSTATS..][..NSTATS];
            let (g0, g1, g4, g5, g6, g7) = (gc[0], 2.0 * gc[1], gc[4], gc[5], gc[6], 2.0 * gc[7]);
            for (((ai, &pi), &qi), &yi) in a[c * len..][..len]
                .iter_mut()
                .zip(&p[c * len..][..len])
                .zip(&q[c * len..][..len])
                .zip(yr)
            {
                let ny = 1.0 - yi;
                let r = ny * pi - yi * qi;
                *ai = g0 + g1 * pi + g4 * yi + g5 * ny - g6 * yi + g7 * r;
            }
        }
        act_jacobian(a, p, q, lse, nc, len, act);
        if ce && matches!(act, Act::Softmax) {
            // + g_ce · (p − onehot(label)), the cross-entropy's gradient on the logits.
            let gce = g[(n * rows + nc) * NSTATS];
            for c in 0..nc {
                let yr = t.row_ref(n, c, nc, s, s0, y);
                for ((ai, &pi), &yi) in a[c * len..][..len]
                    .iter_mut()
                    .zip(&p[c * len..][..len])
                    .zip(yr)
                {
                    *ai += gce * (pi - yi);
                }
            }
        }
        for c in 0..nc {
            // SAFETY: rows (n, c), pixels s0..s1 belong to this rayon task only.
            unsafe { out.write((n * nc + c) * s + s0, &a[c * len..][..len]) };
        }
    }
    give_scratch(scratch);
}

multiversion!(
    region_backward_task_mv,
    fn(
        probs: Out,
        t: Tgt<'_>,
        g: &[f32],
        nc: usize,
        s: usize,
        act: Act,
        ce: bool,
        n: usize,
        s0: usize,
        s1: usize,
        out: Out,
    ) -> (),
    region_backward_task
);

/// Gradient `[N, C, S]` of `Σ g·stats` (g `[N, C, 8]`, or `[N, C + 1, 8]` with `ce`) with
/// respect to the logits, from the probabilities `p` `[N, C, S]` that [`region_sums_keep`]
/// returned, overwritten in place with the gradient (no activation evaluated, no allocation).
#[allow(clippy::too_many_arguments)]
pub(crate) fn region_sums_backward_in_place(
    p: &mut [f32],
    t: Tgt<'_>,
    g: &[f32],
    n: usize,
    nc: usize,
    s: usize,
    act: Act,
    ce: bool,
) {
    assert_eq!(p.len(), n * nc * s);
    // Each task reads, then overwrites, only its own rows (all rows of one (sample, block)); no
    // reference to the whole buffer is alive meanwhile.
    let buf = Out(p.as_mut_ptr());
    tasks(n, s).into_par_iter().for_each(|(i, s0, s1)| {
        region_backward_task_mv(buf, t, g, nc, s, act, ce, i, s0, s1, buf);
    });
}

/// BCE with logits of one row: Σ β·y'·softplus(−x) + (1 − y')·softplus(x), y' = y(1 − 2ε) + ε.
#[inline(always)]
fn bce_row(x: &[f32], y: &[f32], beta: f32, eps: f32) -> f64 {
    let y = &y[..x.len()];
    lane_sum!(x => xi, y => yr; {
        let yi = yr * (1.0 - 2.0 * eps) + eps;
        let (_, _, l1p) = sigmoid_pair(xi);
        let sp_neg = (-xi).max(0.0) + l1p;
        let sp_pos = xi.max(0.0) + l1p;
        beta * yi * sp_neg + (1.0 - yi) * sp_pos
    })
}

multiversion!(
    bce_row_mv,
    fn(x: &[f32], y: &[f32], beta: f32, eps: f32) -> f64,
    bce_row
);

/// Σ over each row of an `[R, S]` array, `row(start..end)` giving the sum of one block of a row
/// (blocks of at most `BLOCK`, in parallel), accumulated in f64: `[R]`.
fn row_sums(rows: usize, s: usize, row: impl Fn(std::ops::Range<usize>) -> f64 + Sync) -> Vec<f32> {
    let parts: Vec<(usize, f64)> = row_tasks(rows, s)
        .into_par_iter()
        .map(|(r, s0, s1)| (r, row(r * s + s0..r * s + s1)))
        .collect();
    let mut out = vec![0f64; rows];
    for (r, v) in parts {
        out[r] += v;
    }
    out.into_iter().map(|v| v as f32).collect()
}

/// A gradient of `len` elements of an `[R, S]` array, written in parallel blocks:
/// `row(start..end, r, dx)` fills the part `start..end` (within row `r`).
fn rows_backward(
    len: usize,
    s: usize,
    row: impl Fn(std::ops::Range<usize>, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut dx = vec![0f32; len];
    dx.par_chunks_mut(BLOCK).enumerate().for_each(|(k, d)| {
        // A block may span two rows when S is not a multiple of BLOCK.
        row_pieces(k * BLOCK, d.len(), s, |i, r, lo, hi| {
            row(i, r, &mut d[lo..hi])
        });
    });
    dx
}

/// Row blocks `(row, s0, s1)` of an `[R, S]` array.
fn row_tasks(rows: usize, s: usize) -> Vec<(usize, usize, usize)> {
    tasks(rows, s)
}

/// Σ over pixels of the BCE-with-logits per (sample, channel): `[N, C]`.
pub(crate) fn bce_sums(
    x: &[f32],
    y: &[f32],
    rows: usize,
    s: usize,
    beta: f32,
    eps: f32,
) -> Vec<f32> {
    row_sums(rows, s, |r| bce_row_mv(&x[r.clone()], &y[r], beta, eps))
}

/// `(σ(x), β·y'·softplus(−x) + (1 − y')·softplus(x))` of one element (a function, not a
/// closure: a closure would be compiled without the caller's AVX2 features).
#[inline(always)]
fn bce_term(xi: f32, yr: f32, beta: f32, eps: f32) -> (f32, f32) {
    let yi = yr * (1.0 - 2.0 * eps) + eps;
    let (pi, _, l1p) = sigmoid_pair(xi);
    let sp_neg = (-xi).max(0.0) + l1p;
    let sp_pos = xi.max(0.0) + l1p;
    (pi, beta * yi * sp_neg + (1.0 - yi) * sp_pos)
}

/// [`bce_row`] that also writes `σ(x)` into `p` (for [`bce_backward_in_place`]). Written out
/// over 8-lane chunks like [`lane_sum!`], with the store in the same pass.
#[inline(always)]
fn bce_row_keep(x: &[f32], y: &[f32], beta: f32, eps: f32, p: &mut [f32]) -> f64 {
    let len = x.len();
    let (y, p) = (&y[..len], &mut p[..len]);
    let mut acc = [0f32; L];
    let chunks = len / L;
    for k in 0..chunks {
        let xk: &[f32; L] = x[k * L..k * L + L].try_into().unwrap();
        let yk: &[f32; L] = y[k * L..k * L + L].try_into().unwrap();
        let pk: &mut [f32; L] = (&mut p[k * L..k * L + L]).try_into().unwrap();
        for l in 0..L {
            let (pi, v) = bce_term(xk[l], yk[l], beta, eps);
            pk[l] = pi;
            acc[l] += v;
        }
    }
    let mut tail = 0f64;
    for i in chunks * L..len {
        let (pi, v) = bce_term(x[i], y[i], beta, eps);
        p[i] = pi;
        tail += v as f64;
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail
}

multiversion!(
    bce_row_keep_mv,
    fn(x: &[f32], y: &[f32], beta: f32, eps: f32, p: &mut [f32]) -> f64,
    bce_row_keep
);

/// [`bce_sums`] that also returns `σ(x)` `[N, C, S]`, for [`bce_backward_in_place`].
pub(crate) fn bce_sums_keep(
    x: &[f32],
    y: &[f32],
    rows: usize,
    s: usize,
    beta: f32,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut p = vec![0f32; x.len()];
    let parts: Vec<Vec<(usize, f64)>> = p
        .par_chunks_mut(BLOCK)
        .enumerate()
        .map(|(k, d)| {
            let mut v = Vec::with_capacity(2);
            row_pieces(k * BLOCK, d.len(), s, |i, r, lo, hi| {
                v.push((
                    r,
                    bce_row_keep_mv(&x[i.clone()], &y[i], beta, eps, &mut d[lo..hi]),
                ));
            });
            v
        })
        .collect();
    let mut out = vec![0f64; rows];
    for (r, v) in parts.into_iter().flatten() {
        out[r] += v;
    }
    (out.into_iter().map(|v| v as f32).collect(), p)
}

/// Calls `f(global range, row, local start, local end)` for the parts of the block
/// `start..start + len` of an `[R, S]` array that lie in one row each.
#[inline(always)]
fn row_pieces(
    start: usize,
    len: usize,
    s: usize,
    mut f: impl FnMut(std::ops::Range<usize>, usize, usize, usize),
) {
    let mut i = 0;
    while i < len {
        let r = (start + i) / s;
        let end = ((r + 1) * s - start).min(len);
        f(start + i..start + end, r, i, end);
        i = end;
    }
}

#[inline(always)]
fn bce_backward_row_in_place(y: &[f32], beta: f32, eps: f32, g: f32, p: &mut [f32]) {
    for (d, &yi) in p.iter_mut().zip(y) {
        let yi = yi * (1.0 - 2.0 * eps) + eps;
        let pi = *d;
        // q = 1 − p, as PyTorch's BCE-with-logits backward.
        *d = g * ((1.0 - yi) * pi - beta * yi * (1.0 - pi));
    }
}

multiversion!(
    bce_backward_row_in_place_mv,
    fn(y: &[f32], beta: f32, eps: f32, g: f32, p: &mut [f32]) -> (),
    bce_backward_row_in_place
);

/// Gradient `[N, C, S]` of `Σ g[n, c]·bce_sums[n, c]`, written over `p = σ(x)` from
/// [`bce_sums_keep`].
pub(crate) fn bce_backward_in_place(
    p: &mut [f32],
    y: &[f32],
    g: &[f32],
    s: usize,
    beta: f32,
    eps: f32,
) {
    p.par_chunks_mut(BLOCK).enumerate().for_each(|(k, d)| {
        row_pieces(k * BLOCK, d.len(), s, |i, r, lo, hi| {
            bce_backward_row_in_place_mv(&y[i], beta, eps, g[r], &mut d[lo..hi]);
        });
    });
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn ce_task(
    x: &[f32],
    labels: Labels<'_>,
    nc: usize,
    s: usize,
    keep: Option<Out>,
    n: usize,
    s0: usize,
    s1: usize,
) -> f64 {
    let len = s1 - s0;
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    block_lse(x, n, nc, s, s0, len, &mut p, &mut q, &mut lse);
    if let Some(kp) = keep {
        for c in 0..nc {
            // SAFETY: rows (n, c), pixels s0..s1 belong to this rayon task only.
            unsafe { kp.write((n * nc + c) * s + s0, &p[c * len..][..len]) };
        }
    }
    ce_block(x, labels, n, nc, s, s0, &lse)
}

/// Log-sum-exp over the channels of one block (`p`, `q` as scratch).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_lse(
    x: &[f32],
    n: usize,
    nc: usize,
    s: usize,
    s0: usize,
    len: usize,
    p: &mut [f32],
    q: &mut [f32],
    lse: &mut [f32],
) {
    block_probs(x, n, nc, s, s0, len, Act::Softmax, p, q, lse);
}

multiversion!(
    ce_task_mv,
    fn(
        x: &[f32],
        labels: Labels<'_>,
        nc: usize,
        s: usize,
        keep: Option<Out>,
        n: usize,
        s0: usize,
        s1: usize,
    ) -> f64,
    ce_task
);

/// Σ over pixels of −ln softmax(x)_label per sample: `[N]`.
pub(crate) fn ce_sums(x: &[f32], labels: Labels<'_>, n: usize, nc: usize, s: usize) -> Vec<f32> {
    sample_sums(n, s, 1, |i, s0, s1| {
        vec![ce_task_mv(x, labels, nc, s, None, i, s0, s1)]
    })
}

/// [`ce_sums`] that also returns the softmax probabilities `[N, C, S]` it computed, for
/// [`ce_backward_in_place`].
pub(crate) fn ce_sums_keep(
    x: &[f32],
    labels: Labels<'_>,
    n: usize,
    nc: usize,
    s: usize,
) -> (Vec<f32>, Vec<f32>) {
    filled_by_tasks(n * nc * s, |kp| {
        sample_sums(n, s, 1, |i, s0, s1| {
            vec![ce_task_mv(x, labels, nc, s, Some(kp), i, s0, s1)]
        })
    })
}

/// Gradient `[N, C, S]` of `Σ g[n]·ce_sums[n]`, `g[n]·(p − onehot(label))`, written in place over
/// the probabilities `p` that [`ce_sums_keep`] returned.
pub(crate) fn ce_backward_in_place(
    p: &mut [f32],
    labels: Labels<'_>,
    g: &[f32],
    n: usize,
    nc: usize,
    s: usize,
) {
    assert_eq!(p.len(), n * nc * s);
    let buf = Out(p.as_mut_ptr());
    tasks(n, s).into_par_iter().for_each(|(i, s0, s1)| {
        ce_backward_task_mv(buf, labels, g[i], nc, s, i, s0, s1);
    });
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn ce_backward_task(
    buf: Out,
    labels: Labels<'_>,
    gn: f32,
    nc: usize,
    s: usize,
    n: usize,
    s0: usize,
    s1: usize,
) {
    let len = s1 - s0;
    let mut lab = vec![0usize; len];
    labels.indices(n * s + s0, &mut lab);
    for c in 0..nc {
        // SAFETY: rows (n, c), pixels s0..s1 belong to this rayon task only, and no reference to the
        // whole buffer is alive meanwhile.
        let row = unsafe { buf.slice_mut((n * nc + c) * s + s0, len) };
        for (v, &k) in row.iter_mut().zip(&lab) {
            *v = gn * (*v - (k == c) as u32 as f32);
        }
    }
}

multiversion!(
    ce_backward_task_mv,
    fn(
        buf: Out,
        labels: Labels<'_>,
        gn: f32,
        nc: usize,
        s: usize,
        n: usize,
        s0: usize,
        s1: usize,
    ) -> (),
    ce_backward_task
);

/// Sigmoid focal loss of one element (MONAI): `α_t·σ(z)^γ·ce`, `ce = (1−y)x + softplus(−x)`,
/// `z = −x(2y − 1)`, `α_t = α·y + (1 − α)(1 − y)` (1 without α); returns (loss, d loss/dx).
#[inline(always)]
fn focal_sig_elem(xi: f32, yi: f32, gamma: f32, alpha: f32) -> (f32, f32) {
    let (p, q, l1p) = sigmoid_pair(xi);
    let ce = (1.0 - yi) * xi + (-xi).max(0.0) + l1p;
    let z = -xi * (2.0 * yi - 1.0);
    let (_, sz_neg, l1pz) = sigmoid_pair(z);
    let log_sz = -((-z).max(0.0) + l1pz);
    let m = exp(gamma * log_sz);
    let at = if alpha >= 0.0 {
        alpha * yi + (1.0 - alpha) * (1.0 - yi)
    } else {
        1.0
    };
    let d = at * m * (-gamma * (2.0 * yi - 1.0) * sz_neg * ce + (1.0 - yi) * p - yi * q);
    (at * m * ce, d)
}

/// [`focal_sig_elem`] for a target `y ∈ {0, 1}`: then `z = ±x`, so the second sigmoid, its
/// logarithm and σ(−z) are the first one's (`σ(z) = y·σ(−x) + (1 − y)·σ(x)`, `ln σ(z) =
/// −(max(u, 0) + ln(1 + e^−|x|))` with `u = x(2y − 1)`): one exp, one division and one
/// logarithm fewer per element, the same values.
#[inline(always)]
fn focal_sig_elem_binary(xi: f32, yi: f32, gamma: f32, alpha: f32) -> (f32, f32) {
    let (p, q, l1p) = sigmoid_pair(xi);
    let ny = 1.0 - yi;
    let ce = ny * xi + (-xi).max(0.0) + l1p;
    let u = xi * (2.0 * yi - 1.0);
    let sz_neg = yi * p + ny * q;
    let m = exp(-gamma * (u.max(0.0) + l1p));
    let at = if alpha >= 0.0 {
        alpha * yi + (1.0 - alpha) * ny
    } else {
        1.0
    };
    let d = at * m * (-gamma * (2.0 * yi - 1.0) * sz_neg * ce + ny * p - yi * q);
    (at * m * ce, d)
}

/// Whether every target value of a row is exactly 0 or 1 (one vectorised pass).
#[inline(always)]
fn binary_row(y: &[f32]) -> bool {
    y.iter()
        .fold(true, |all, &v| all & ((v == 0.0) | (v == 1.0)))
}

#[inline(always)]
fn focal_sig_row(x: &[f32], y: &[f32], gamma: f32, alpha: f32) -> f64 {
    let y = &y[..x.len()];
    if binary_row(y) {
        return lane_sum!(x => xi, y => yi; focal_sig_elem_binary(xi, yi, gamma, alpha).0);
    }
    lane_sum!(x => xi, y => yi; focal_sig_elem(xi, yi, gamma, alpha).0)
}

multiversion!(
    focal_sig_row_mv,
    fn(x: &[f32], y: &[f32], gamma: f32, alpha: f32) -> f64,
    focal_sig_row
);

/// Σ over pixels of the sigmoid focal loss per (sample, channel) row: `[N·C]` (α < 0: no α).
pub(crate) fn focal_sigmoid_sums(
    x: &[f32],
    y: &[f32],
    rows: usize,
    s: usize,
    gamma: f32,
    alpha: f32,
) -> Vec<f32> {
    row_sums(rows, s, |r| {
        focal_sig_row_mv(&x[r.clone()], &y[r], gamma, alpha)
    })
}

#[inline(always)]
fn focal_sig_backward_row(x: &[f32], y: &[f32], gamma: f32, alpha: f32, g: f32, dx: &mut [f32]) {
    if binary_row(&y[..x.len()]) {
        for ((d, &xi), &yi) in dx.iter_mut().zip(x).zip(y) {
            *d = g * focal_sig_elem_binary(xi, yi, gamma, alpha).1;
        }
        return;
    }
    for ((d, &xi), &yi) in dx.iter_mut().zip(x).zip(y) {
        *d = g * focal_sig_elem(xi, yi, gamma, alpha).1;
    }
}

multiversion!(
    focal_sig_backward_row_mv,
    fn(x: &[f32], y: &[f32], gamma: f32, alpha: f32, g: f32, dx: &mut [f32]) -> (),
    focal_sig_backward_row
);

/// Gradient `[N, C, S]` of `Σ g[row]·focal_sigmoid_sums[row]`.
pub(crate) fn focal_sigmoid_backward(
    x: &[f32],
    y: &[f32],
    g: &[f32],
    s: usize,
    gamma: f32,
    alpha: f32,
) -> Vec<f32> {
    rows_backward(x.len(), s, |i, r, d| {
        focal_sig_backward_row_mv(&x[i.clone()], &y[i], gamma, alpha, g[r], d)
    })
}

/// Softmax focal loss of one element (MONAI): `−y·(1 − p)^γ·ln p`, `ln p = (x − m) − ln Σ`, with
/// `(1 − p)` clamped at 1e−30 as the composed path; returns (loss, p·d loss/dp).
#[inline(always)]
fn focal_soft_elem(lp: f32, p: f32, yi: f32, gamma: f32) -> (f32, f32) {
    let base = (1.0 - p).max(1e-30);
    let lb = ln(base);
    let m = exp(gamma * lb);
    let m1 = exp((gamma - 1.0) * lb);
    let loss = -yi * m * lp;
    // p·d/dp [−y(1 − p)^γ ln p] = −y[(1 − p)^γ − γ(1 − p)^(γ−1)·p·ln p]
    let b = -yi * (m - gamma * m1 * p * lp);
    (loss, b)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn focal_soft_task(
    x: &[f32],
    t: Tgt<'_>,
    nc: usize,
    s: usize,
    gamma: f32,
    n: usize,
    s0: usize,
    s1: usize,
) -> Vec<f64> {
    let len = s1 - s0;
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    let mut y = vec![0f32; len];
    block_probs(x, n, nc, s, s0, len, Act::Softmax, &mut p, &mut q, &mut lse);
    let mut out = vec![0f64; nc];
    for c in 0..nc {
        t.row(n, c, nc, s, s0, &mut y);
        let row = &x[(n * nc + c) * s + s0..][..len];
        let pc = &p[c * len..][..len];
        let (mx, lsum, y) = (&lse[..len], &lse[len..2 * len], &y[..len]);
        out[c] = lane_sum!(row => xi, mx => m, lsum => ls, pc => pi, y => yi;
            focal_soft_elem((xi - m) - ls, pi, yi, gamma).0);
    }
    out
}

multiversion!(
    focal_soft_task_mv,
    fn(
        x: &[f32],
        t: Tgt<'_>,
        nc: usize,
        s: usize,
        gamma: f32,
        n: usize,
        s0: usize,
        s1: usize,
    ) -> Vec<f64>,
    focal_soft_task
);

/// Σ over pixels of the softmax focal loss per (sample, class): `[N, C]`.
pub(crate) fn focal_softmax_sums(
    x: &[f32],
    t: Tgt<'_>,
    n: usize,
    nc: usize,
    s: usize,
    gamma: f32,
) -> Vec<f32> {
    sample_sums(n, s, nc, |i, s0, s1| {
        focal_soft_task_mv(x, t, nc, s, gamma, i, s0, s1)
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn focal_soft_backward_task(
    x: &[f32],
    t: Tgt<'_>,
    g: &[f32],
    nc: usize,
    s: usize,
    gamma: f32,
    n: usize,
    s0: usize,
    s1: usize,
    out: Out,
) {
    let len = s1 - s0;
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    let mut y = vec![0f32; len];
    block_probs(x, n, nc, s, s0, len, Act::Softmax, &mut p, &mut q, &mut lse);
    // q now holds b_c = g[n, c]·p_c·d loss_c/dp_c; dx_j = b_j − p_j·Σ_c b_c.
    let mut tot = vec![0f32; len];
    for c in 0..nc {
        t.row(n, c, nc, s, s0, &mut y);
        let gc = g[n * nc + c];
        let row = &x[(n * nc + c) * s + s0..][..len];
        let (mx, lsum) = (&lse[..len], &lse[len..2 * len]);
        for ((((b, &xi), (&m, &ls)), &pi), (&yi, tt)) in q[c * len..][..len]
            .iter_mut()
            .zip(row)
            .zip(mx.iter().zip(lsum))
            .zip(&p[c * len..][..len])
            .zip(y.iter().zip(tot.iter_mut()))
        {
            *b = gc * focal_soft_elem((xi - m) - ls, pi, yi, gamma).1;
            *tt += *b;
        }
    }
    for c in 0..nc {
        let (pc, bc) = (&mut p[c * len..][..len], &q[c * len..][..len]);
        for ((pi, &b), &tt) in pc.iter_mut().zip(bc).zip(&tot) {
            *pi = b - *pi * tt;
        }
        // SAFETY: rows (n, c), pixels s0..s1 belong to this rayon task only.
        unsafe { out.write((n * nc + c) * s + s0, pc) };
    }
}

multiversion!(
    focal_soft_backward_task_mv,
    fn(
        x: &[f32],
        t: Tgt<'_>,
        g: &[f32],
        nc: usize,
        s: usize,
        gamma: f32,
        n: usize,
        s0: usize,
        s1: usize,
        out: Out,
    ) -> (),
    focal_soft_backward_task
);

/// Gradient `[N, C, S]` of `Σ g[n, c]·focal_softmax_sums[n, c]`.
pub(crate) fn focal_softmax_backward(
    x: &[f32],
    t: Tgt<'_>,
    g: &[f32],
    n: usize,
    nc: usize,
    s: usize,
    gamma: f32,
) -> Vec<f32> {
    // Every element is written by exactly one task (all rows of each (sample, block)).
    filled_by_tasks(n * nc * s, |out| {
        tasks(n, s).into_par_iter().for_each(|(i, s0, s1)| {
            focal_soft_backward_task_mv(x, t, g, nc, s, gamma, i, s0, s1, out);
        })
    })
    .1
}

/// Σ over the pixels of one block of `w·(p − y)²` per channel (`p = act(x)`), added to `out[c]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn wsq_task(
    x: &[f32],
    y: &[f32],
    w: &[f32],
    nc: usize,
    s: usize,
    act: Act,
    signed: bool,
    n: usize,
    s0: usize,
    s1: usize,
) -> Vec<f64> {
    let len = s1 - s0;
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    let (mut yb, mut wb) = if signed {
        (vec![0f32; len], vec![0f32; len])
    } else {
        (Vec::new(), Vec::new())
    };
    block_probs(x, n, nc, s, s0, len, act, &mut p, &mut q, &mut lse);
    let mut out = vec![0f64; nc];
    for c in 0..nc {
        let base = (n * nc + c) * s + s0;
        let (yr, wr) = wsq_rows(y, w, signed, base, len, &mut yb, &mut wb);
        let (pc, qc) = (&p[c * len..][..len], &q[c * len..][..len]);
        out[c] = lane_sum!(pc => pi, qc => qi, yr => yi, wr => wi; {
            let r = (1.0 - yi) * pi - yi * qi;
            wi * r * r
        });
    }
    out
}

multiversion!(
    wsq_task_mv,
    fn(
        x: &[f32],
        y: &[f32],
        w: &[f32],
        nc: usize,
        s: usize,
        act: Act,
        signed: bool,
        n: usize,
        s0: usize,
        s1: usize,
    ) -> Vec<f64>,
    wsq_task
);

/// Σ over pixels of `w·(act(x) − y)²` per (sample, channel): `[N, C]` (Hausdorff-DT loss).
#[allow(clippy::too_many_arguments)]
pub(crate) fn wsq_sums(
    x: &[f32],
    y: &[f32],
    w: &[f32],
    n: usize,
    nc: usize,
    s: usize,
    act: Act,
    signed: bool,
) -> Vec<f32> {
    sample_sums(n, s, nc, |i, s0, s1| {
        wsq_task_mv(x, y, w, nc, s, act, signed, i, s0, s1)
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn wsq_backward_task(
    x: &[f32],
    y: &[f32],
    w: &[f32],
    g: &[f32],
    nc: usize,
    s: usize,
    act: Act,
    signed: bool,
    n: usize,
    s0: usize,
    s1: usize,
    out: Out,
) {
    let len = s1 - s0;
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    let mut a = vec![0f32; nc * len];
    let (mut yb, mut wb) = if signed {
        (vec![0f32; len], vec![0f32; len])
    } else {
        (Vec::new(), Vec::new())
    };
    block_probs(x, n, nc, s, s0, len, act, &mut p, &mut q, &mut lse);
    for c in 0..nc {
        let base = (n * nc + c) * s + s0;
        let (yr, wr) = wsq_rows(y, w, signed, base, len, &mut yb, &mut wb);
        let gc = 2.0 * g[n * nc + c];
        for ((ai, (&pi, &qi)), (&yi, &wi)) in a[c * len..][..len]
            .iter_mut()
            .zip(p[c * len..][..len].iter().zip(&q[c * len..][..len]))
            .zip(yr.iter().zip(wr))
        {
            *ai = gc * wi * ((1.0 - yi) * pi - yi * qi);
        }
    }
    act_jacobian(&mut a, &p, &q, &mut lse, nc, len, act);
    for c in 0..nc {
        // SAFETY: rows (n, c), pixels s0..s1 belong to this rayon task only.
        unsafe { out.write((n * nc + c) * s + s0, &a[c * len..][..len]) };
    }
}

/// Turns `a = dL/dp` (channel-major `[C][len]`) into `dL/dx` in place.
#[inline(always)]
fn act_jacobian(
    a: &mut [f32],
    p: &[f32],
    q: &[f32],
    dot: &mut [f32],
    nc: usize,
    len: usize,
    act: Act,
) {
    match act {
        Act::Identity => {}
        Act::Sigmoid => {
            for ((ai, &pi), &qi) in a.iter_mut().zip(p).zip(q) {
                *ai *= pi * qi;
            }
        }
        Act::Softmax => {
            let dot = &mut dot[..len];
            dot.fill(0.0);
            for c in 0..nc {
                for ((d, &ai), &pi) in dot
                    .iter_mut()
                    .zip(&a[c * len..][..len])
                    .zip(&p[c * len..][..len])
                {
                    *d += ai * pi;
                }
            }
            for c in 0..nc {
                for ((ai, &pi), &d) in a[c * len..][..len]
                    .iter_mut()
                    .zip(&p[c * len..][..len])
                    .zip(dot.iter())
                {
                    *ai = pi * (*ai - d);
                }
            }
        }
    }
}

multiversion!(
    wsq_backward_task_mv,
    fn(
        x: &[f32],
        y: &[f32],
        w: &[f32],
        g: &[f32],
        nc: usize,
        s: usize,
        act: Act,
        signed: bool,
        n: usize,
        s0: usize,
        s1: usize,
        out: Out,
    ) -> (),
    wsq_backward_task
);

/// Gradient `[N, C, S]` of `Σ g[n, c]·wsq_sums[n, c]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn wsq_backward(
    x: &[f32],
    y: &[f32],
    w: &[f32],
    g: &[f32],
    n: usize,
    nc: usize,
    s: usize,
    act: Act,
    signed: bool,
) -> Vec<f32> {
    // Every element is written by exactly one task (all rows of each (sample, block)).
    filled_by_tasks(n * nc * s, |out| {
        tasks(n, s).into_par_iter().for_each(|(i, s0, s1)| {
            wsq_backward_task_mv(x, y, w, g, nc, s, act, signed, i, s0, s1, out);
        })
    })
    .1
}

/// `[1 if every value is finite else 0, lo, hi]`; with `range = false` only the finiteness is
/// computed (`lo`, `hi` are then ±∞); with `range`, `lo`/`hi` are the exact extremes when some value lies
/// outside [0, 1] and the bounds 0 and 1 otherwise (enough for the range checks, the only use).
pub(crate) fn float_summary(x: &[f32], range: bool) -> [f32; 3] {
    x.par_chunks(1 << 16)
        .map(|c| {
            if range {
                // Nearly always every value lies in [0, 1]: one cheap pass says so, and the
                // bounds stand for the extremes (all the callers compare them with 0 and 1).
                // Otherwise the exact finiteness and extremes, for the error message.
                if unit_block_mv(c) {
                    return [1.0, 0.0, 1.0];
                }
                let (finite, lo, hi) = summary_block_mv(c);
                [finite as u32 as f32, lo, hi]
            } else {
                [
                    finite_block_mv(c) as u32 as f32,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                ]
            }
        })
        .reduce(
            || [1.0, f32::INFINITY, f32::NEG_INFINITY],
            |a, b| [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2])],
        )
}

/// Whether every value is finite: Σ (v − v) is 0 for finite values and NaN otherwise.
#[inline(always)]
fn finite_block(x: &[f32]) -> bool {
    let mut acc = [0f32; L];
    let chunks = x.chunks_exact(L);
    let rest = chunks.remainder();
    for k in chunks {
        let k: &[f32; L] = k.try_into().unwrap();
        for l in 0..L {
            let v = k[l];
            #[allow(clippy::eq_op)]
            {
                acc[l] += v - v;
            }
        }
    }
    acc.iter().all(|&a| a == 0.0) && rest.iter().all(|v| v.is_finite())
}

multiversion!(finite_block_mv, fn(x: &[f32]) -> bool, finite_block);

/// (every value finite, min, max of the non-NaN values) in one pass: Σ (v − v) for finiteness
/// and comparison-select extremes (plain `vminps`/`vmaxps`; `f32::min`'s NaN handling costs a
/// compare and a blend more per vector).
#[inline(always)]
fn summary_block(x: &[f32]) -> (bool, f32, f32) {
    let mut acc = [0f32; L];
    let mut lo = [f32::INFINITY; L];
    let mut hi = [f32::NEG_INFINITY; L];
    let chunks = x.chunks_exact(L);
    let rest = chunks.remainder();
    for k in chunks {
        let k: &[f32; L] = k.try_into().unwrap();
        for l in 0..L {
            let v = k[l];
            #[allow(clippy::eq_op)]
            {
                acc[l] += v - v;
            }
            lo[l] = if v < lo[l] { v } else { lo[l] };
            hi[l] = if v > hi[l] { v } else { hi[l] };
        }
    }
    let mut out = (
        acc.iter().all(|&a| a == 0.0),
        f32::INFINITY,
        f32::NEG_INFINITY,
    );
    for l in 0..L {
        out = (out.0, out.1.min(lo[l]), out.2.max(hi[l]));
    }
    for &v in rest {
        out = (out.0 && v.is_finite(), out.1.min(v), out.2.max(v));
    }
    out
}

multiversion!(
    summary_block_mv,
    fn(x: &[f32]) -> (bool, f32, f32),
    summary_block
);

/// Whether every value lies in [0, 1] (NaN does not).
#[inline(always)]
fn unit_block(x: &[f32]) -> bool {
    let mut bad = [0u32; L];
    let chunks = x.chunks_exact(L);
    let rest = chunks.remainder();
    for k in chunks {
        let k: &[f32; L] = k.try_into().unwrap();
        for l in 0..L {
            let v = k[l];
            // Non-short-circuit `&`: two compares and a mask, branch-free (NaN fails both).
            #[allow(clippy::manual_range_contains)]
            {
                bad[l] |= u32::from(!((v >= 0.0) & (v <= 1.0)));
            }
        }
    }
    bad.iter().all(|&b| b == 0) && rest.iter().all(|&v| (0.0..=1.0).contains(&v))
}

multiversion!(unit_block_mv, fn(x: &[f32]) -> bool, unit_block);

/// (min, max) of integer labels.
pub(crate) fn int_range(l: Labels<'_>) -> (i64, i64) {
    fn range<T: Copy + Into<i64> + Sync>(l: &[T]) -> (i64, i64) {
        l.par_chunks(1 << 16)
            .map(|c| {
                c.iter().fold((i64::MAX, i64::MIN), |(a, b), &v| {
                    let v: i64 = v.into();
                    (a.min(v), b.max(v))
                })
            })
            .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)))
    }
    match l {
        Labels::I64(l) => range(l),
        Labels::I32(l) => range(l),
    }
}

/// Weighted BCE with logits of one row: Σ w·[y·softplus(−x) + (1 − y)·softplus(x)].
#[inline(always)]
fn wbce_row(x: &[f32], y: &[f32], w: &[f32]) -> f64 {
    // An element-wise loop (which the loop vectoriser handles) into the thread's scratch row (no
    // allocation and zeroing per row), then the sum.
    let mut scratch = take_scratch(x.len());
    let b = &mut scratch[..x.len()];
    for (((o, &xi), &yi), &wi) in b.iter_mut().zip(x).zip(y).zip(w) {
        let (_, _, l1p) = sigmoid_pair(xi);
        *o = wi * (yi * ((-xi).max(0.0) + l1p) + (1.0 - yi) * (xi.max(0.0) + l1p));
    }
    let b = &*b;
    let sum = lane_sum!(b => v; v);
    give_scratch(scratch);
    sum
}

multiversion!(
    wbce_row_mv,
    fn(x: &[f32], y: &[f32], w: &[f32]) -> f64,
    wbce_row
);

/// Σ over pixels of the weighted BCE-with-logits per (sample, channel) row: `[N·C]`.
pub(crate) fn wbce_sums(x: &[f32], y: &[f32], w: &[f32], rows: usize, s: usize) -> Vec<f32> {
    row_sums(rows, s, |r| {
        wbce_row_mv(&x[r.clone()], &y[r.clone()], &w[r])
    })
}

#[inline(always)]
fn wbce_backward_row(x: &[f32], y: &[f32], w: &[f32], g: f32, dx: &mut [f32]) {
    for (((d, &xi), &yi), &wi) in dx.iter_mut().zip(x).zip(y).zip(w) {
        let (p, q, _) = sigmoid_pair(xi);
        *d = g * wi * ((1.0 - yi) * p - yi * q);
    }
}

multiversion!(
    wbce_backward_row_mv,
    fn(x: &[f32], y: &[f32], w: &[f32], g: f32, dx: &mut [f32]) -> (),
    wbce_backward_row
);

/// Gradient `[N, C, S]` of `Σ g[row]·wbce_sums[row]`.
pub(crate) fn wbce_backward(x: &[f32], y: &[f32], w: &[f32], g: &[f32], s: usize) -> Vec<f32> {
    rows_backward(x.len(), s, |i, r, d| {
        wbce_backward_row_mv(&x[i.clone()], &y[i.clone()], &w[i], g[r], d)
    })
}

/// `(w·bce(x, y), w·((1 − y)·σ(x) − y·(1 − σ(x))))` of one element: the weighted BCE with logits
/// and its derivative (a function, not a closure, for the caller's target features).
#[inline(always)]
fn wbce_term(xi: f32, yi: f32, wi: f32, scale: f32) -> (f32, f32) {
    let (p, q, l1p) = sigmoid_pair(xi);
    let v = wi * (yi * ((-xi).max(0.0) + l1p) + (1.0 - yi) * (xi.max(0.0) + l1p));
    (v, scale * wi * ((1.0 - yi) * p - yi * q))
}

/// Σ w·bce(x, y) of one row, where `wd` holds the weights `w` on entry and the derivatives
/// `scale·w·((1 − y)·σ(x) − y·(1 − σ(x)))` on return (the weight map becomes the gradient in
/// place).
#[inline(always)]
fn wbce_row_grad_in_place(x: &[f32], y: &[f32], wd: &mut [f32], scale: f32) -> (f64, bool) {
    let len = x.len();
    let (y, wd) = (&y[..len], &mut wd[..len]);
    let mut acc = [0f32; L];
    // The value checks on the way (branch-free): a non-finite logit or a target outside [0, 1]
    // (NaN fails both comparisons).
    let mut bad = [0u32; L];
    let chunks = len / L;
    for k in 0..chunks {
        let xk: &[f32; L] = x[k * L..k * L + L].try_into().unwrap();
        let yk: &[f32; L] = y[k * L..k * L + L].try_into().unwrap();
        let dk: &mut [f32; L] = (&mut wd[k * L..k * L + L]).try_into().unwrap();
        for l in 0..L {
            let (v, d) = wbce_term(xk[l], yk[l], dk[l], scale);
            dk[l] = d;
            acc[l] += v;
            // Negated comparisons on purpose: NaN must count as bad.
            #[allow(clippy::manual_range_contains, clippy::neg_cmp_op_on_partial_ord)]
            {
                bad[l] |= u32::from(!(xk[l].abs() < f32::INFINITY))
                    | u32::from(!((yk[l] >= 0.0) & (yk[l] <= 1.0)));
            }
        }
    }
    let mut tail = 0f64;
    let mut tail_bad = false;
    for i in chunks * L..len {
        let (v, d) = wbce_term(x[i], y[i], wd[i], scale);
        wd[i] = d;
        tail += v as f64;
        tail_bad |= !x[i].is_finite() || !(0.0..=1.0).contains(&y[i]);
    }
    (
        acc.iter().map(|&v| v as f64).sum::<f64>() + tail,
        tail_bad || bad.iter().any(|&b| b != 0),
    )
}

multiversion!(
    wbce_row_grad_in_place_mv,
    fn(x: &[f32], y: &[f32], wd: &mut [f32], scale: f32) -> (f64, bool),
    wbce_row_grad_in_place
);

/// The shape-aware loss (U-Net-weighted BCE with logits) per (sample, channel) row, `[N·C]`,
/// with the map of each row computed from its own target (`y > 0.5`) inside the row's task:
/// the map, the loss and the derivative are one pass over data still in the core's cache, and
/// the target is read in place (no host copy of the batch, no `[N, C, S]` map tensor).
///
/// The sums come multiplied by `scale` (the reduction's 1/count), and with `keep` each row of it
/// receives the derivative of the scaled sum, `scale·w·((1 − y)·σ(x) − y·(1 − σ(x)))`, which the
/// backward multiplies by the row's upstream gradient ([`scale_rows_in_place`]); that gradient is
/// 1 when the loss itself is differentiated, and then the backward has nothing left to do.
///
/// One more value follows the `[N·C]` sums: 1 when every logit is finite and every target in
/// [0, 1] (the value checks, made on the way), else 0.
///
/// `spatial` and `config` must be valid (checked by the caller).
pub(crate) fn shape_aware_sums(
    x: &[f32],
    y: &[f32],
    spatial: &[usize],
    config: &segloss_core::WeightMapConfig,
    scale: f32,
    keep: Option<&mut [std::mem::MaybeUninit<f32>]>,
) -> Vec<f32> {
    let s: usize = spatial.iter().product();
    let rows = x.len() / s.max(1);
    // Fewer rows than threads: the map parallelises inside (stripes), and so must the pass;
    // otherwise one map per task, each on its own thread.
    let split = rows < rayon::current_num_threads();
    let config = segloss_core::WeightMapConfig {
        parallel: split,
        ..*config
    };
    let row = |xr: &[f32], yr: &[f32], wd: &mut [std::mem::MaybeUninit<f32>]| -> (f64, bool) {
        let mask: Vec<bool> = yr.iter().map(|&v| v > 0.5).collect();
        let wd =
            segloss_core::unet_weight_map_into_uninit::<f32>(&mask, spatial, None, &config, wd)
                .expect("shape and parameters checked by the caller");
        if split {
            wd.par_chunks_mut(BLOCK)
                .zip(xr.par_chunks(BLOCK).zip(yr.par_chunks(BLOCK)))
                .map(|(d, (xb, yb))| wbce_row_grad_in_place_mv(xb, yb, d, scale))
                .reduce(|| (0.0, false), |a, b| (a.0 + b.0, a.1 | b.1))
        } else {
            wbce_row_grad_in_place_mv(xr, yr, wd, scale)
        }
    };
    let sums: Vec<(f64, bool)> = match keep {
        Some(keep) => keep
            .par_chunks_mut(s)
            .zip(x.par_chunks(s).zip(y.par_chunks(s)))
            .map(|(wd, (xr, yr))| row(xr, yr, wd))
            .collect(),
        None => x
            .par_chunks(s)
            .zip(y.par_chunks(s))
            .map(|(xr, yr)| row(xr, yr, &mut Vec::with_capacity(s).spare_capacity_mut()[..s]))
            .collect(),
    };
    let ok = sums.iter().all(|&(_, bad)| !bad);
    sums.into_iter()
        .map(|(v, _)| (v * scale as f64) as f32)
        .chain([f32::from(u8::from(ok))])
        .collect()
}

/// `d[row] ← g[row]·d[row]` over an `[R, S]` array, in parallel blocks: the backward of
/// [`shape_aware_sums`] from the derivatives it kept.
pub(crate) fn scale_rows_in_place(d: &mut [f32], g: &[f32], s: usize) {
    d.par_chunks_mut(BLOCK).enumerate().for_each(|(k, b)| {
        row_pieces(k * BLOCK, b.len(), s, |_, r, lo, hi| {
            let g = g[r];
            b[lo..hi].iter_mut().for_each(|v| *v *= g);
        });
    });
}
