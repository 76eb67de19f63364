//! The fused CPU kernels on `f32` slices (no burn types): one pass over `[N, C, S]` logits for
//! the forward statistics, one for the gradient. Work is split into (sample, block of pixels)
//! tasks run by rayon, each on its own rows of the buffers it writes (split with safe slice
//! operations: [`block_rows`], `par_chunks_mut`); inner loops use 8-lane accumulators and the
//! branch-free functions of [`super::math`] so that they vectorise, and are compiled twice
//! (baseline and AVX2) with a run-time choice by `segloss_core::avx2_dispatch!`, whose
//! floating-point policy (no FMA: the same values on every machine) they follow.

use std::mem::MaybeUninit;

use rayon::prelude::*;
use segloss_core::avx2_dispatch;

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

/// A weighted-square op ([`wsq_sums`]): the target `y` and weights `w` of `[N, C, S]` logits
/// (`y` ignored when `signed`: see [`SIGN_FLAG`]) and the activation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wsq<'a> {
    /// The target `[N, C, S]`.
    pub(crate) y: &'a [f32],
    /// The weights `[N, C, S]` (carrying the target in their sign when `signed`).
    pub(crate) w: &'a [f32],
    /// The shape of the logits.
    pub(crate) dims: Dims,
    /// How logits become probabilities.
    pub(crate) act: Act,
    /// The target is the sign of `w` ([`SIGN_FLAG`]).
    pub(crate) signed: bool,
}

/// `y` and `w` of channel `c` of block `b` for the weighted-square kernels: borrowed, or split
/// from a signed weight into the scratch rows `yb`, `wb` (see [`SIGN_FLAG`]).
#[inline(always)]
fn wsq_rows<'a>(
    op: &Wsq<'a>,
    b: Block,
    c: usize,
    yb: &'a mut [f32],
    wb: &'a mut [f32],
) -> (&'a [f32], &'a [f32]) {
    let (base, len) = (b.at(c), b.len());
    let wr = &op.w[base..][..len];
    if !op.signed {
        return (&op.y[base..][..len], wr);
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
    /// The target of channel `c` over block `b` (`buf.len()` pixels): borrowed from a mask,
    /// written into `buf` from labels.
    #[inline(always)]
    fn row_ref<'b>(&'b self, b: Block, c: usize, buf: &'b mut [f32]) -> &'b [f32] {
        match self {
            Tgt::Mask(y) => &y[b.at(c)..][..buf.len()],
            Tgt::Labels(l) => {
                l.one_hot_row(b.label_at(), c, buf);
                buf
            }
        }
    }

    /// Writes the target of channel `c` over block `b` (`out.len()` pixels) into `out`.
    #[inline(always)]
    fn row(&self, b: Block, c: usize, out: &mut [f32]) {
        match self {
            Tgt::Mask(y) => out.copy_from_slice(&y[b.at(c)..][..out.len()]),
            Tgt::Labels(l) => l.one_hot_row(b.label_at(), c, out),
        }
    }
}

/// The shape `[N, C, S]` of a kernel's logits: samples, channels, pixels per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    /// Samples.
    pub(crate) n: usize,
    /// Channels (classes).
    pub(crate) nc: usize,
    /// Pixels per channel.
    pub(crate) s: usize,
}

impl Dims {
    /// Elements of the `[N, C, S]` array.
    pub(crate) fn numel(self) -> usize {
        self.n * self.nc * self.s
    }

    /// The tasks' blocks, sample by sample: [`Dims::sample_blocks`] of every sample.
    fn blocks(self) -> Vec<Block> {
        (0..self.n).flat_map(|n| self.sample_blocks(n)).collect()
    }

    /// The blocks of sample `n`: pixels cut into runs of [`BLOCK`] (the last one shorter), in
    /// order.
    fn sample_blocks(self, n: usize) -> impl Iterator<Item = Block> {
        (0..self.s).step_by(BLOCK).map(move |s0| Block {
            dims: self,
            n,
            s0,
            s1: (s0 + BLOCK).min(self.s),
        })
    }
}

/// One task's share of an `[N, C, S]` array: pixels `s0..s1` of sample `n`, in every channel.
#[derive(Debug, Clone, Copy)]
struct Block {
    dims: Dims,
    n: usize,
    s0: usize,
    s1: usize,
}

impl Block {
    /// Pixels of the block.
    #[inline(always)]
    fn len(self) -> usize {
        self.s1 - self.s0
    }

    /// Index of the block's first pixel of channel `c` in the `[N, C, S]` array.
    #[inline(always)]
    fn at(self, c: usize) -> usize {
        (self.n * self.dims.nc + c) * self.dims.s + self.s0
    }

    /// The block's part of channel `c` of an `[N, C, S]` array.
    #[inline(always)]
    fn row(self, x: &[f32], c: usize) -> &[f32] {
        &x[self.at(c)..][..self.len()]
    }

    /// Index of the block's first pixel in `[N, S]` labels.
    #[inline(always)]
    fn label_at(self) -> usize {
        self.n * self.dims.s + self.s0
    }
}

/// `buf` (`[N, C, S]`) cut into the tasks' parts: every block of [`Dims::blocks`], in that
/// order, with its `C` rows `buf[b.at(c)..][..b.len()]` — disjoint mutable borrows that cover
/// `buf`, so that the tasks run in parallel with no pointer shared between them.
fn block_rows<T>(buf: &mut [T], dims: Dims) -> Vec<(Block, Vec<&mut [T]>)> {
    assert_eq!(buf.len(), dims.numel(), "buffer of shape {dims:?}");
    let mut rows = buf.chunks_mut(dims.s.max(1));
    let mut parts = Vec::with_capacity(dims.n * dims.s.div_ceil(BLOCK));
    for n in 0..dims.n {
        // Channel c of sample n, cut like `sample_blocks(n)`: one piece per block.
        let mut pieces: Vec<_> = rows
            .by_ref()
            .take(dims.nc)
            .map(|row| row.chunks_mut(BLOCK))
            .collect();
        for b in dims.sample_blocks(n) {
            let block = pieces
                .iter_mut()
                .map(|p| p.next().expect("one piece of each row per block"))
                .collect();
            parts.push((b, block));
        }
    }
    parts
}

use uninit::{filled_by_tasks, Slot};

/// New buffers that the tasks initialise in full, without a zeroing pass first; a module of its
/// own so that only [`Slot::fill`] can mark a row written.
mod uninit {
    use std::mem::MaybeUninit;

    use super::{block_rows, Block, Dims};

    /// A task's row of a new output, not initialised until [`Slot::fill`] writes it (see
    /// [`filled_by_tasks`]).
    pub(super) struct Slot<'a> {
        dst: &'a mut [MaybeUninit<f32>],
        filled: bool,
    }

    impl Slot<'_> {
        /// Writes the whole row from `src` (which must have its length: checked).
        #[inline(always)]
        pub(super) fn fill(&mut self, src: &[f32]) {
            self.dst.write_copy_of_slice(src);
            self.filled = true;
        }
    }

    /// A new `[N, C, S]` buffer that `fill` initialises through the tasks' [`Slot`]s (the rows
    /// of every block of [`Dims::blocks`], as [`block_rows`] cuts them), each of which it must
    /// [`fill`](Slot::fill) (checked); returned with `fill`'s result.
    pub(super) fn filled_by_tasks<R>(
        dims: Dims,
        fill: impl FnOnce(&mut [(Block, Vec<Slot<'_>>)]) -> R,
    ) -> (R, Vec<f32>) {
        let len = dims.numel();
        let mut v = Vec::<f32>::with_capacity(len);
        let mut parts: Vec<(Block, Vec<Slot<'_>>)> =
            block_rows(&mut v.spare_capacity_mut()[..len], dims)
                .into_iter()
                .map(|(b, rows)| {
                    let slots = rows.into_iter().map(|dst| Slot { dst, filled: false });
                    (b, slots.collect())
                })
                .collect();
        let r = fill(&mut parts);
        let written: usize = parts
            .iter()
            .flat_map(|(_, slots)| slots)
            .filter(|slot| slot.filled)
            .map(|slot| slot.dst.len())
            .sum();
        assert_eq!(written, len, "every row of the output written");
        drop(parts);
        // SAFETY: the slots borrow disjoint parts of the first `len` slots of `v` (`block_rows`
        // split them from one `&mut`; `fill` can move them but not make new ones, and its
        // higher-ranked lifetime keeps out the slots of any other buffer); those marked filled
        // were written in full (only `Slot::fill`, which writes the whole row, marks them), and
        // they add up to `len` slots (asserted above): all `len` are initialised.
        unsafe { v.set_len(len) };
        (r, v)
    }
}

thread_local! {
    /// Per-thread scratch of the region kernels' tasks, reused from task to task.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// At least `len` floats of the thread's scratch (stale contents, not zeroed: every caller
/// writes each buffer in full before reading it), to hand back with [`give_scratch`]. Not a
/// closure-taking helper: a closure would not be compiled inside the `avx2_dispatch!` kernels
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

/// Per-sample sums over the (sample, pixel block) tasks, in parallel: `task(b)` gives the
/// `width` partial sums of block `b`; they are added in f64, in the order of [`Dims::blocks`],
/// and returned as `[N, width]` f32.
fn sample_sums(dims: Dims, width: usize, task: impl Fn(Block) -> Vec<f64> + Sync) -> Vec<f32> {
    let parts = dims
        .blocks()
        .into_par_iter()
        .map(|b| (b.n, task(b)))
        .collect();
    add_sample_parts(dims.n, width, parts)
}

/// [`sample_sums`] whose tasks also fill their rows of a new `[N, C, S]` buffer (`task(b, rows)`
/// must [`fill`](Slot::fill) every row: see [`filled_by_tasks`]), returned with the sums.
fn sample_sums_keep(
    dims: Dims,
    width: usize,
    task: impl Fn(Block, &mut [Slot<'_>]) -> Vec<f64> + Sync,
) -> (Vec<f32>, Vec<f32>) {
    filled_by_tasks(dims, |parts| {
        let sums = parts
            .par_iter_mut()
            .map(|(b, rows)| (b.n, task(*b, rows)))
            .collect();
        add_sample_parts(dims.n, width, sums)
    })
}

/// The tasks' partial sums `(sample, [width])` added in f64, in the order given: `[N, width]` f32.
fn add_sample_parts(n: usize, width: usize, parts: Vec<(usize, Vec<f64>)>) -> Vec<f32> {
    let mut out = vec![0f64; n * width];
    for (i, part) in parts {
        debug_assert_eq!(part.len(), width);
        for (o, v) in out[i * width..][..width].iter_mut().zip(part) {
            *o += v;
        }
    }
    out.into_iter().map(|v| v as f32).collect()
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

/// Probabilities `p` and complements `q` of block `b`, channel-major `[C][len]`, from the logits
/// `x` (probabilities at the exp's floor flushed to 0); with the softmax, `lse` receives the
/// channels' max and log-sum-exp (`[2·len]`).
#[inline(always)]
fn block_probs(x: &[f32], b: Block, act: Act, p: &mut [f32], q: &mut [f32], lse: &mut [f32]) {
    let (nc, len) = (b.dims.nc, b.len());
    match act {
        Act::Identity => {
            for c in 0..nc {
                let row = b.row(x, c);
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
                let row = b.row(x, c);
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
            lse.copy_from_slice(b.row(x, 0));
            for c in 1..nc {
                let row = b.row(x, c);
                for (m, &xi) in lse.iter_mut().zip(row) {
                    *m = m.max(xi);
                }
            }
            // p temporarily holds e^(x − max); q the running sum in its first row.
            let (sum, _) = q.split_at_mut(len);
            sum.fill(0.0);
            for c in 0..nc {
                let row = b.row(x, c);
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

/// A region-statistics op: the target of `[N, C, S]` logits, the activation, and whether the
/// cross-entropy is computed too (softmax, label targets; see [`region_sums`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region<'a> {
    /// A mask `[N, C, S]` or labels `[N, S]`.
    pub(crate) t: Tgt<'a>,
    /// The shape of the logits.
    pub(crate) dims: Dims,
    /// How logits become probabilities.
    pub(crate) act: Act,
    /// Also the cross-entropy ([`CE_FLAG`]).
    pub(crate) ce: bool,
}

impl Region<'_> {
    /// Rows of statistics per sample: `C`, or `C + 1` with the cross-entropy.
    fn rows(&self) -> usize {
        self.dims.nc + usize::from(self.ce)
    }
}

/// The statistics of block `b` (`[rows, NSTATS]`, see [`Region::rows`]), writing the
/// probabilities into `keep` (the block's rows of the kept `[N, C, S]` buffer) when given.
#[inline(always)]
fn region_task(x: &[f32], op: &Region<'_>, b: Block, keep: Option<&mut [Slot<'_>]>) -> Vec<f64> {
    let (nc, len) = (op.dims.nc, b.len());
    let mut out = vec![0f64; op.rows() * NSTATS];
    let mut scratch = take_scratch((2 * nc + 3) * len);
    {
        let (p, buf) = scratch[..(2 * nc + 3) * len].split_at_mut(nc * len);
        let (q, buf) = buf.split_at_mut(nc * len);
        let (lse, y) = buf.split_at_mut(2 * len);
        block_probs(x, b, op.act, p, q, lse);
        if let Some(keep) = keep {
            for (c, row) in keep.iter_mut().enumerate() {
                row.fill(&p[c * len..][..len]);
            }
        }
        for c in 0..nc {
            // A copy, not `row_ref`: with a borrowed mask row LLVM stopped vectorising
            // `row_stats` (scalar lanes on the stack, 2.5× slower; checked with perf).
            op.t.row(b, c, y);
            row_stats(
                &p[c * len..][..len],
                &q[c * len..][..len],
                y,
                &mut out[c * NSTATS..][..NSTATS],
            );
        }
        if let (true, Tgt::Labels(labels)) = (op.ce, op.t) {
            out[nc * NSTATS] = ce_block(x, labels, b, lse);
        }
    }
    give_scratch(scratch);
    out
}

/// Σ −ln p_label over block `b`, from the softmax's own max (`lse[..len]`) and log-sum
/// (`lse[len..]`): Σ (max − x_label) + ln Σ e^(x − max), as the CE kernel.
#[inline(always)]
fn ce_block(x: &[f32], labels: Labels<'_>, b: Block, lse: &[f32]) -> f64 {
    let len = lse.len() / 2;
    let mut lab = vec![0usize; len];
    labels.indices(b.label_at(), &mut lab);
    let (mx, lsum) = (&lse[..len], &lse[len..2 * len]);
    let xl: Vec<f32> = lab
        .iter()
        .enumerate()
        .map(|(i, &k)| x[b.at(k) + i])
        .collect();
    lane_sum!(mx => m, xl => v, lsum => ls; (m - v) + ls)
}

avx2_dispatch!(
    /// [`region_task`], with AVX2 where the CPU has it.
    fn region_task_mv(
        x: &[f32],
        op: &Region<'_>,
        b: Block,
        keep: Option<&mut [Slot<'_>]>,
    ) -> Vec<f64> = region_task
);

/// Region statistics `[N, C, 8]` (see [`row_stats`]) of `p = act(x)`, `q = 1 − p` (computed
/// without cancellation for the sigmoid) and the target, summed over the pixels. With `op.ce`
/// (softmax, label targets: Dice + CE in one pass) `[N, C + 1, 8]`, the extra row holding the
/// cross-entropy sum Σ −ln p_label in its first slot (zeros after).
pub(crate) fn region_sums(x: &[f32], op: &Region<'_>) -> Vec<f32> {
    sample_sums(op.dims, op.rows() * NSTATS, |b| {
        region_task_mv(x, op, b, None)
    })
}

/// [`region_sums`] that also returns the probabilities `p = act(x)` `[N, C, S]` it computed, for
/// a backward that reads them instead of evaluating the activation again
/// ([`region_sums_backward_in_place`]).
pub(crate) fn region_sums_keep(x: &[f32], op: &Region<'_>) -> (Vec<f32>, Vec<f32>) {
    sample_sums_keep(op.dims, op.rows() * NSTATS, |b, keep| {
        region_task_mv(x, op, b, Some(keep))
    })
}

/// The gradient of block `b`, written over its `rows` of the kept probabilities (see
/// [`region_sums_backward_in_place`]).
#[inline(always)]
fn region_backward_task(op: &Region<'_>, g: &[f32], b: Block, rows: &mut [&mut [f32]]) {
    let (nc, len, stat_rows) = (op.dims.nc, b.len(), op.rows());
    let mut scratch = take_scratch((3 * nc + 3) * len);
    {
        let (p, buf) = scratch[..(3 * nc + 3) * len].split_at_mut(nc * len);
        let (q, buf) = buf.split_at_mut(nc * len);
        let (a, buf) = buf.split_at_mut(nc * len);
        let (lse, y) = buf.split_at_mut(2 * len);
        // The forward's probabilities as they are (q = 1 − p, as PyTorch's sigmoid backward):
        // no activation evaluated again.
        for (c, row) in rows.iter().enumerate() {
            let pc = &mut p[c * len..][..len];
            pc.copy_from_slice(row);
            for (qi, &pi) in q[c * len..][..len].iter_mut().zip(pc.iter()) {
                *qi = 1.0 - pi;
            }
        }
        for c in 0..nc {
            let yr = op.t.row_ref(b, c, y);
            let gc = &g[(b.n * stat_rows + c) * NSTATS..][..NSTATS];
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
        act_jacobian(a, p, q, lse, nc, len, op.act);
        if op.ce && matches!(op.act, Act::Softmax) {
            // + g_ce · (p − onehot(label)), the cross-entropy's gradient on the logits.
            let gce = g[(b.n * stat_rows + nc) * NSTATS];
            for c in 0..nc {
                let yr = op.t.row_ref(b, c, y);
                for ((ai, &pi), &yi) in a[c * len..][..len]
                    .iter_mut()
                    .zip(&p[c * len..][..len])
                    .zip(yr)
                {
                    *ai += gce * (pi - yi);
                }
            }
        }
        for (c, row) in rows.iter_mut().enumerate() {
            row.copy_from_slice(&a[c * len..][..len]);
        }
    }
    give_scratch(scratch);
}

avx2_dispatch!(
    /// [`region_backward_task`], with AVX2 where the CPU has it.
    fn region_backward_task_mv(
        op: &Region<'_>,
        g: &[f32],
        b: Block,
        rows: &mut [&mut [f32]],
    ) = region_backward_task
);

/// Gradient `[N, C, S]` of `Σ g·stats` (g `[N, C, 8]`, or `[N, C + 1, 8]` with `op.ce`) with
/// respect to the logits, from the probabilities `p` `[N, C, S]` that [`region_sums_keep`]
/// returned, overwritten in place with the gradient (no activation evaluated, no new buffer).
pub(crate) fn region_sums_backward_in_place(p: &mut [f32], op: &Region<'_>, g: &[f32]) {
    // Each task reads, then overwrites, its own rows: the rows of one (sample, block).
    block_rows(p, op.dims)
        .into_par_iter()
        .for_each(|(b, mut rows)| region_backward_task_mv(op, g, b, &mut rows));
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

avx2_dispatch!(
    /// [`bce_row`], with AVX2 where the CPU has it.
    fn bce_row_mv(x: &[f32], y: &[f32], beta: f32, eps: f32) -> f64 = bce_row
);

/// Σ over each row of an `[R, S]` array, `row(start..end)` giving the sum of one block of a row
/// (blocks of at most `BLOCK`, in parallel), accumulated in f64: `[R]`.
fn row_sums(rows: usize, s: usize, row: impl Fn(std::ops::Range<usize>) -> f64 + Sync) -> Vec<f32> {
    let parts: Vec<(usize, f64)> = row_blocks(rows, s)
        .into_par_iter()
        .map(|b| (b.n, row(b.at(0)..b.at(0) + b.len())))
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

/// The blocks of the rows of an `[R, S]` array (as `[R, 1, S]`: a block's `n` is its row).
fn row_blocks(rows: usize, s: usize) -> Vec<Block> {
    Dims { n: rows, nc: 1, s }.blocks()
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

avx2_dispatch!(
    /// [`bce_row_keep`], with AVX2 where the CPU has it.
    fn bce_row_keep_mv(x: &[f32], y: &[f32], beta: f32, eps: f32, p: &mut [f32]) -> f64 =
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

avx2_dispatch!(
    /// [`bce_backward_row_in_place`], with AVX2 where the CPU has it.
    fn bce_backward_row_in_place_mv(y: &[f32], beta: f32, eps: f32, g: f32, p: &mut [f32]) =
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

/// Σ −ln softmax(x)_label over block `b`, writing the probabilities into `keep` (the block's
/// rows of the kept `[N, C, S]` buffer) when given.
#[inline(always)]
fn ce_task(x: &[f32], labels: Labels<'_>, b: Block, keep: Option<&mut [Slot<'_>]>) -> f64 {
    let (nc, len) = (b.dims.nc, b.len());
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    block_probs(x, b, Act::Softmax, &mut p, &mut q, &mut lse);
    if let Some(keep) = keep {
        for (c, row) in keep.iter_mut().enumerate() {
            row.fill(&p[c * len..][..len]);
        }
    }
    ce_block(x, labels, b, &lse)
}

avx2_dispatch!(
    /// [`ce_task`], with AVX2 where the CPU has it.
    fn ce_task_mv(x: &[f32], labels: Labels<'_>, b: Block, keep: Option<&mut [Slot<'_>]>) -> f64 =
        ce_task
);

/// Σ over pixels of −ln softmax(x)_label per sample: `[N]`.
pub(crate) fn ce_sums(x: &[f32], labels: Labels<'_>, dims: Dims) -> Vec<f32> {
    sample_sums(dims, 1, |b| vec![ce_task_mv(x, labels, b, None)])
}

/// [`ce_sums`] that also returns the softmax probabilities `[N, C, S]` it computed, for
/// [`ce_backward_in_place`].
pub(crate) fn ce_sums_keep(x: &[f32], labels: Labels<'_>, dims: Dims) -> (Vec<f32>, Vec<f32>) {
    sample_sums_keep(dims, 1, |b, keep| {
        vec![ce_task_mv(x, labels, b, Some(keep))]
    })
}

/// Gradient `[N, C, S]` of `Σ g[n]·ce_sums[n]`, `g[n]·(p − onehot(label))`, written in place over
/// the probabilities `p` that [`ce_sums_keep`] returned.
pub(crate) fn ce_backward_in_place(p: &mut [f32], labels: Labels<'_>, g: &[f32], dims: Dims) {
    // Each task overwrites its own rows: the rows of one (sample, block).
    block_rows(p, dims)
        .into_par_iter()
        .for_each(|(b, mut rows)| ce_backward_task_mv(labels, g[b.n], b, &mut rows));
}

/// `gn·(p − onehot(label))` over block `b`, in place over its `rows` of the probabilities.
#[inline(always)]
fn ce_backward_task(labels: Labels<'_>, gn: f32, b: Block, rows: &mut [&mut [f32]]) {
    let mut lab = vec![0usize; b.len()];
    labels.indices(b.label_at(), &mut lab);
    for (c, row) in rows.iter_mut().enumerate() {
        for (v, &k) in row.iter_mut().zip(&lab) {
            *v = gn * (*v - (k == c) as u32 as f32);
        }
    }
}

avx2_dispatch!(
    /// [`ce_backward_task`], with AVX2 where the CPU has it.
    fn ce_backward_task_mv(labels: Labels<'_>, gn: f32, b: Block, rows: &mut [&mut [f32]]) =
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

avx2_dispatch!(
    /// [`focal_sig_row`], with AVX2 where the CPU has it.
    fn focal_sig_row_mv(x: &[f32], y: &[f32], gamma: f32, alpha: f32) -> f64 = focal_sig_row
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

avx2_dispatch!(
    /// [`focal_sig_backward_row`], with AVX2 where the CPU has it.
    fn focal_sig_backward_row_mv(x: &[f32], y: &[f32], gamma: f32, alpha: f32, g: f32, dx: &mut [f32]) = focal_sig_backward_row
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

/// The softmax focal loss of block `b` per channel.
#[inline(always)]
fn focal_soft_task(x: &[f32], t: Tgt<'_>, gamma: f32, b: Block) -> Vec<f64> {
    let (nc, len) = (b.dims.nc, b.len());
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    let mut y = vec![0f32; len];
    block_probs(x, b, Act::Softmax, &mut p, &mut q, &mut lse);
    let mut out = vec![0f64; nc];
    for c in 0..nc {
        t.row(b, c, &mut y);
        let row = b.row(x, c);
        let pc = &p[c * len..][..len];
        let (mx, lsum, y) = (&lse[..len], &lse[len..2 * len], &y[..len]);
        out[c] = lane_sum!(row => xi, mx => m, lsum => ls, pc => pi, y => yi;
            focal_soft_elem((xi - m) - ls, pi, yi, gamma).0);
    }
    out
}

avx2_dispatch!(
    /// [`focal_soft_task`], with AVX2 where the CPU has it.
    fn focal_soft_task_mv(x: &[f32], t: Tgt<'_>, gamma: f32, b: Block) -> Vec<f64> =
        focal_soft_task
);

/// Σ over pixels of the softmax focal loss per (sample, class): `[N, C]`.
pub(crate) fn focal_softmax_sums(x: &[f32], t: Tgt<'_>, dims: Dims, gamma: f32) -> Vec<f32> {
    sample_sums(dims, dims.nc, |b| focal_soft_task_mv(x, t, gamma, b))
}

/// The gradient of block `b`, into its `out` rows.
#[inline(always)]
fn focal_soft_backward_task(
    x: &[f32],
    t: Tgt<'_>,
    g: &[f32],
    gamma: f32,
    b: Block,
    out: &mut [Slot<'_>],
) {
    let (nc, len) = (b.dims.nc, b.len());
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    let mut y = vec![0f32; len];
    block_probs(x, b, Act::Softmax, &mut p, &mut q, &mut lse);
    // q now holds b_c = g[n, c]·p_c·d loss_c/dp_c; dx_j = b_j − p_j·Σ_c b_c.
    let mut tot = vec![0f32; len];
    for c in 0..nc {
        t.row(b, c, &mut y);
        let gc = g[b.n * nc + c];
        let row = b.row(x, c);
        let (mx, lsum) = (&lse[..len], &lse[len..2 * len]);
        for ((((bc, &xi), (&m, &ls)), &pi), (&yi, tt)) in q[c * len..][..len]
            .iter_mut()
            .zip(row)
            .zip(mx.iter().zip(lsum))
            .zip(&p[c * len..][..len])
            .zip(y.iter().zip(tot.iter_mut()))
        {
            *bc = gc * focal_soft_elem((xi - m) - ls, pi, yi, gamma).1;
            *tt += *bc;
        }
    }
    for (c, row) in out.iter_mut().enumerate() {
        let (pc, bc) = (&mut p[c * len..][..len], &q[c * len..][..len]);
        for ((pi, &bi), &tt) in pc.iter_mut().zip(bc).zip(&tot) {
            *pi = bi - *pi * tt;
        }
        row.fill(pc);
    }
}

avx2_dispatch!(
    /// [`focal_soft_backward_task`], with AVX2 where the CPU has it.
    fn focal_soft_backward_task_mv(
        x: &[f32],
        t: Tgt<'_>,
        g: &[f32],
        gamma: f32,
        b: Block,
        out: &mut [Slot<'_>],
    ) = focal_soft_backward_task
);

/// Gradient `[N, C, S]` of `Σ g[n, c]·focal_softmax_sums[n, c]`.
pub(crate) fn focal_softmax_backward(
    x: &[f32],
    t: Tgt<'_>,
    g: &[f32],
    dims: Dims,
    gamma: f32,
) -> Vec<f32> {
    filled_by_tasks(dims, |parts| {
        parts.par_iter_mut().for_each(|(b, out)| {
            focal_soft_backward_task_mv(x, t, g, gamma, *b, out);
        })
    })
    .1
}

/// Σ over the pixels of block `b` of `w·(p − y)²` per channel (`p = act(x)`).
#[inline(always)]
fn wsq_task(x: &[f32], op: &Wsq<'_>, b: Block) -> Vec<f64> {
    let (nc, len) = (op.dims.nc, b.len());
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    let (mut yb, mut wb) = if op.signed {
        (vec![0f32; len], vec![0f32; len])
    } else {
        (Vec::new(), Vec::new())
    };
    block_probs(x, b, op.act, &mut p, &mut q, &mut lse);
    let mut out = vec![0f64; nc];
    for c in 0..nc {
        let (yr, wr) = wsq_rows(op, b, c, &mut yb, &mut wb);
        let (pc, qc) = (&p[c * len..][..len], &q[c * len..][..len]);
        out[c] = lane_sum!(pc => pi, qc => qi, yr => yi, wr => wi; {
            let r = (1.0 - yi) * pi - yi * qi;
            wi * r * r
        });
    }
    out
}

avx2_dispatch!(
    /// [`wsq_task`], with AVX2 where the CPU has it.
    fn wsq_task_mv(x: &[f32], op: &Wsq<'_>, b: Block) -> Vec<f64> = wsq_task
);

/// Σ over pixels of `w·(act(x) − y)²` per (sample, channel): `[N, C]` (Hausdorff-DT loss).
pub(crate) fn wsq_sums(x: &[f32], op: &Wsq<'_>) -> Vec<f32> {
    sample_sums(op.dims, op.dims.nc, |b| wsq_task_mv(x, op, b))
}

/// The gradient of block `b`, into its `out` rows.
#[inline(always)]
fn wsq_backward_task(x: &[f32], op: &Wsq<'_>, g: &[f32], b: Block, out: &mut [Slot<'_>]) {
    let (nc, len) = (op.dims.nc, b.len());
    let mut p = vec![0f32; nc * len];
    let mut q = vec![0f32; nc * len];
    let mut lse = vec![0f32; 2 * len];
    let mut a = vec![0f32; nc * len];
    let (mut yb, mut wb) = if op.signed {
        (vec![0f32; len], vec![0f32; len])
    } else {
        (Vec::new(), Vec::new())
    };
    block_probs(x, b, op.act, &mut p, &mut q, &mut lse);
    for c in 0..nc {
        let (yr, wr) = wsq_rows(op, b, c, &mut yb, &mut wb);
        let gc = 2.0 * g[b.n * nc + c];
        for ((ai, (&pi, &qi)), (&yi, &wi)) in a[c * len..][..len]
            .iter_mut()
            .zip(p[c * len..][..len].iter().zip(&q[c * len..][..len]))
            .zip(yr.iter().zip(wr))
        {
            *ai = gc * wi * ((1.0 - yi) * pi - yi * qi);
        }
    }
    act_jacobian(&mut a, &p, &q, &mut lse, nc, len, op.act);
    for (c, row) in out.iter_mut().enumerate() {
        row.fill(&a[c * len..][..len]);
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

avx2_dispatch!(
    /// [`wsq_backward_task`], with AVX2 where the CPU has it.
    fn wsq_backward_task_mv(x: &[f32], op: &Wsq<'_>, g: &[f32], b: Block, out: &mut [Slot<'_>]) =
        wsq_backward_task
);

/// Gradient `[N, C, S]` of `Σ g[n, c]·wsq_sums[n, c]`.
pub(crate) fn wsq_backward(x: &[f32], op: &Wsq<'_>, g: &[f32]) -> Vec<f32> {
    filled_by_tasks(op.dims, |parts| {
        parts.par_iter_mut().for_each(|(b, out)| {
            wsq_backward_task_mv(x, op, g, *b, out);
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

avx2_dispatch!(
    /// [`finite_block`], with AVX2 where the CPU has it.
    fn finite_block_mv(x: &[f32]) -> bool = finite_block
);

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

avx2_dispatch!(
    /// [`summary_block`], with AVX2 where the CPU has it.
    fn summary_block_mv(x: &[f32]) -> (bool, f32, f32) = summary_block
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

avx2_dispatch!(
    /// [`unit_block`], with AVX2 where the CPU has it.
    fn unit_block_mv(x: &[f32]) -> bool = unit_block
);

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

avx2_dispatch!(
    /// [`wbce_row`], with AVX2 where the CPU has it.
    fn wbce_row_mv(x: &[f32], y: &[f32], w: &[f32]) -> f64 = wbce_row
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

avx2_dispatch!(
    /// [`wbce_backward_row`], with AVX2 where the CPU has it.
    fn wbce_backward_row_mv(x: &[f32], y: &[f32], w: &[f32], g: f32, dx: &mut [f32]) = wbce_backward_row
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

avx2_dispatch!(
    /// [`wbce_row_grad_in_place`], with AVX2 where the CPU has it.
    fn wbce_row_grad_in_place_mv(x: &[f32], y: &[f32], wd: &mut [f32], scale: f32) -> (f64, bool) =
        wbce_row_grad_in_place
);

/// The shape-aware loss (U-Net-weighted BCE with logits) per (sample, channel) row, `[N·C]`,
/// with the map of each row computed from its own target (`y > 0.5`) inside the row's task:
/// the map, the loss and the derivative are one pass over data still in the core's cache, and
/// the target is read in place (no host copy of the batch, no `[N, C, S]` map tensor).
///
/// The sums come multiplied by `scale` (the reduction's 1/count). [`shape_aware_sums_keep`]
/// also returns, for each row, the derivative of its scaled sum,
/// `scale·w·((1 − y)·σ(x) − y·(1 − σ(x)))`, which the backward multiplies by the row's upstream
/// gradient ([`scale_rows_in_place`]); that gradient is 1 when the loss itself is differentiated,
/// and then the backward has nothing left to do.
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
) -> Vec<f32> {
    let op = ShapeAware::new(x, spatial, config, scale);
    let s = op.s;
    let sums = x
        .par_chunks(s)
        .zip(y.par_chunks(s))
        .map(|(xr, yr)| {
            let (v, bad, _) = op.row(xr, yr, &mut Vec::with_capacity(s).spare_capacity_mut()[..s]);
            (v, bad)
        })
        .collect();
    op.finish(sums)
}

/// [`shape_aware_sums`] and the derivatives `[N·C, S]` of its scaled row sums.
pub(crate) fn shape_aware_sums_keep(
    x: &[f32],
    y: &[f32],
    spatial: &[usize],
    config: &segloss_core::WeightMapConfig,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let op = ShapeAware::new(x, spatial, config, scale);
    let (s, len) = (op.s, x.len());
    // Every slot is written (the map, then the derivative over it): no zeroing.
    let mut d = Vec::<f32>::with_capacity(len);
    let rows: Vec<(f64, bool, usize)> = d.spare_capacity_mut()[..len]
        .par_chunks_mut(s)
        .zip(x.par_chunks(s).zip(y.par_chunks(s)))
        .map(|(slots, (xr, yr))| {
            let at = slots.as_ptr();
            let (v, bad, row) = op.row(xr, yr, slots);
            // The slots that `row` (safe code) returned as initialised floats.
            let init = if std::ptr::eq(row.as_ptr(), at.cast()) {
                row.len()
            } else {
                0
            };
            (v, bad, init)
        })
        .collect();
    let init: usize = rows.iter().map(|r| r.2).sum();
    assert_eq!(init, len, "every row initialised");
    // SAFETY: the chunks are disjoint parts of the first `len` slots of `d` (`par_chunks_mut`);
    // `op.row` returned each as a `&mut [f32]` — initialised floats, or safe code could not
    // have made it — starting at the chunk and `init` long (within the chunk: a longer one would
    // alias the next chunk), and the `init` lengths add up to `len` (asserted): all are
    // initialised.
    unsafe { d.set_len(len) };
    (
        op.finish(rows.into_iter().map(|(v, bad, _)| (v, bad)).collect()),
        d,
    )
}

/// The shared part of [`shape_aware_sums`] and [`shape_aware_sums_keep`].
struct ShapeAware<'a> {
    spatial: &'a [usize],
    config: segloss_core::WeightMapConfig,
    scale: f32,
    /// Pixels per row.
    s: usize,
    /// Fewer rows than threads: the map parallelises inside (stripes), and so must the pass;
    /// otherwise one map per task, each on its own thread.
    split: bool,
}

impl<'a> ShapeAware<'a> {
    fn new(
        x: &[f32],
        spatial: &'a [usize],
        config: &segloss_core::WeightMapConfig,
        scale: f32,
    ) -> Self {
        let s: usize = spatial.iter().product();
        let split = x.len() / s.max(1) < rayon::current_num_threads();
        let config = segloss_core::WeightMapConfig {
            parallel: split,
            ..*config
        };
        ShapeAware {
            spatial,
            config,
            scale,
            s,
            split,
        }
    }

    /// One row: its map written into `wd`, then the derivatives over it; returns the row's sum,
    /// whether some value was bad, and `wd` initialised.
    fn row<'w>(
        &self,
        xr: &[f32],
        yr: &[f32],
        wd: &'w mut [MaybeUninit<f32>],
    ) -> (f64, bool, &'w mut [f32]) {
        let mask: Vec<bool> = yr.iter().map(|&v| v > 0.5).collect();
        let wd = segloss_core::unet_weight_map_into_uninit::<f32>(
            &mask,
            self.spatial,
            None,
            &self.config,
            wd,
        )
        .expect("shape and parameters checked by the caller");
        let (v, bad) = if self.split {
            wd.par_chunks_mut(BLOCK)
                .zip(xr.par_chunks(BLOCK).zip(yr.par_chunks(BLOCK)))
                .map(|(d, (xb, yb))| wbce_row_grad_in_place_mv(xb, yb, d, self.scale))
                .reduce(|| (0.0, false), |a, b| (a.0 + b.0, a.1 | b.1))
        } else {
            wbce_row_grad_in_place_mv(xr, yr, wd, self.scale)
        };
        (v, bad, wd)
    }

    /// The scaled row sums and the checks' flag, from each row's (sum, bad).
    fn finish(&self, sums: Vec<(f64, bool)>) -> Vec<f32> {
        let ok = sums.iter().all(|&(_, bad)| !bad);
        sums.into_iter()
            .map(|(v, _)| (v * self.scale as f64) as f32)
            .chain([f32::from(u8::from(ok))])
            .collect()
    }
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
