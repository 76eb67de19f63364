//! The formula step of the region losses on the fused path: the `[N, C, 8]` sums of the fused
//! kernel are read to the host once, the loss and its derivative with respect to every sum are
//! evaluated there in f64, and the result re-enters the graph as
//!
//! ```text
//! lin = Σ S ⊙ G          (G = ∂loss/∂S, a constant)
//! loss = (lin − detach(lin)) + value
//! ```
//!
//! whose value is exactly `value` and whose gradient with respect to the sums `S` is exactly `G`
//! (then the kernel's backward takes it to the logits). Five tensor operations instead of the
//! thirty-odd tiny ones (each with an autodiff node) of the composed formula, which took about
//! half the time of a fused Dice loss on 8×1×256² (issue #8's profile).
//!
//! Used where the fused kernels apply and the loss is reduced to a scalar; `reduction = none`,
//! ignored pixels, soft labels, other backends and f64 keep the composed formula, which the
//! tests compare against this one in value and gradient.

use burn::tensor::Tensor;

use crate::input::{const_tensor, host_f32, LossReduction, LossValue, Prepared};
use crate::region::raw_fused_sums;

/// One cell's region sums: `[Σp, Σp², Σy, Σy², TP = Σp·y, FP = Σp·(1−y), FN = Σq·y,
/// Σ((1−y)p − yq)²]`.
pub(crate) type Cell = [f64; 8];

/// Indices into a [`Cell`].
pub(crate) mod ix {
    pub const SP: usize = 0;
    pub const SP2: usize = 1;
    pub const SY: usize = 2;
    pub const SY2: usize = 3;
    pub const TP: usize = 4;
    pub const FP: usize = 5;
    pub const FN: usize = 6;
    pub const R2: usize = 7;
}

/// A region loss's formula on one row of statistics (the kept channels of one sample, or of the
/// whole batch): `row` has K cells; the formula writes its M outputs to `values` and, for each
/// output m and cell k, the derivative of output m with respect to the cell's sums to
/// `grads[m * K + k]` (zeroed beforehand).
pub(crate) trait RowFormula {
    /// Outputs per row (K for a per-class loss, 1 for a loss that combines the classes).
    fn outputs(&self, k: usize) -> usize;
    /// Evaluates the row.
    fn eval(&self, row: &[Cell], values: &mut [f64], grads: &mut [Cell]);
}

/// The reduced loss through the host formula step, or `None` where it does not apply (the
/// composed formula is used then): not reduced, ignored elements, fused kernels not applicable.
///
/// `output_weights` (length M) multiply the outputs before the reduction (the Dice loss's class
/// weights).
pub(crate) fn host_region_loss(
    p: &Prepared,
    include_background: bool,
    batch: bool,
    reduction: LossReduction,
    output_weights: Option<&[f64]>,
    f: &impl RowFormula,
) -> Option<LossValue> {
    if reduction == LossReduction::None || p.valid.is_some() {
        return None;
    }
    let s = raw_fused_sums(p)?;
    let raw = host_f32(&s)?;
    let layout = RegionLayout {
        n: p.n,
        c: p.c,
        rows: p.c,
        include_background,
        batch,
    };
    let step = host_step(&raw, &layout, reduction, output_weights, f);
    Some(finish(s, step.0, step.1))
}

/// The loss `value` with gradient `g` with respect to the sums `s`: `lin − detach(lin) + value`,
/// `lin = Σ s ⊙ g`.
pub(crate) fn finish(s: Tensor<3>, value: f64, g: Vec<f64>) -> LossValue {
    let g: Tensor<3> = const_tensor(&s, g, s.dims());
    linearised(s, g, value)
}

/// A scalar loss of value `value` whose gradient with respect to `t` is the constant `g`:
/// `lin − detach(lin) + value` with `lin = Σ t ⊙ g` (the host formula steps of the region and
/// Lovász losses).
pub(crate) fn linearised(t: Tensor<3>, g: Tensor<3>, value: f64) -> LossValue {
    let lin = (t * g).sum();
    let value: Tensor<1> = const_tensor(&lin, vec![value], [1]);
    LossValue::scalar(lin.clone() - lin.detach() + value)
}

/// The layout of host sums `[N, rows, 8]` for [`host_step`] and which of them a formula reads.
#[derive(Clone, Copy)]
pub(crate) struct RegionLayout {
    /// Samples.
    pub n: usize,
    /// Channels: the first `c` rows of each sample hold the channels' statistics.
    pub c: usize,
    /// Rows per sample (`c`, or `c + 1` with the cross-entropy row of the fused Dice + CE).
    pub rows: usize,
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// One row of statistics for the whole batch instead of one per sample.
    pub batch: bool,
}

/// The reduced value of a region formula on host sums `raw` (see [`RegionLayout`]) and its
/// derivative with respect to every sum (zero on the rows past `c` and on a dropped background).
pub(crate) fn host_step(
    raw: &[f32],
    layout: &RegionLayout,
    reduction: LossReduction,
    output_weights: Option<&[f64]>,
    f: &impl RowFormula,
) -> (f64, Vec<f64>) {
    let RegionLayout {
        n,
        c,
        rows,
        include_background,
        batch,
    } = *layout;
    let from = usize::from(!(include_background || c == 1));
    let k = c - from;
    let r = if batch { 1 } else { n };
    // The kept cells, summed over the batch when `batch`.
    let mut a = vec![[0.0f64; 8]; r * k];
    for i in 0..n {
        let ri = if batch { 0 } else { i };
        for kk in 0..k {
            let src = &raw[(i * rows + kk + from) * 8..][..8];
            let dst = &mut a[ri * k + kk];
            for j in 0..8 {
                dst[j] += f64::from(src[j]);
            }
        }
    }
    let m = f.outputs(k);
    if let Some(w) = output_weights {
        debug_assert_eq!(w.len(), m);
    }
    let scale = match reduction {
        LossReduction::Mean => 1.0 / (r * m) as f64,
        LossReduction::Sum => 1.0,
        LossReduction::BatchMean => 1.0 / r as f64,
        LossReduction::None => unreachable!("the host step serves reduced losses"),
    };
    let mut total = 0.0f64;
    let mut ga = vec![[0.0f64; 8]; r * k];
    let mut values = vec![0.0; m];
    let mut grads = vec![[0.0f64; 8]; m * k];
    for ri in 0..r {
        grads.iter_mut().for_each(|g| *g = [0.0; 8]);
        f.eval(&a[ri * k..(ri + 1) * k], &mut values, &mut grads);
        for mi in 0..m {
            let u = scale * output_weights.map_or(1.0, |w| w[mi]);
            total += u * values[mi];
            for kk in 0..k {
                let g = &grads[mi * k + kk];
                let dst = &mut ga[ri * k + kk];
                for j in 0..8 {
                    dst[j] += u * g[j];
                }
            }
        }
    }
    // ∂loss/∂S: each sample's cell takes its row's derivative; a dropped background gets 0.
    let mut gs = vec![0.0f64; n * rows * 8];
    for i in 0..n {
        let ri = if batch { 0 } else { i };
        for kk in 0..k {
            gs[(i * rows + kk + from) * 8..][..8].copy_from_slice(&ga[ri * k + kk]);
        }
    }
    (total, gs)
}

/// `1 − num/den` with its derivatives `(∂/∂num, ∂/∂den)`, and 0 (no gradient) where `den` is
/// exactly 0 — the composed formula's [`one_minus_ratio`](crate::region::one_minus_ratio).
pub(crate) fn one_minus_ratio_d(num: f64, den: f64) -> (f64, f64) {
    if den == 0.0 {
        (0.0, 0.0)
    } else {
        (-1.0 / den, num / (den * den))
    }
}

/// `num/den`, 0 where `den` is exactly 0 — [`safe_ratio`](crate::region::safe_ratio).
pub(crate) fn safe_ratio_f(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}
