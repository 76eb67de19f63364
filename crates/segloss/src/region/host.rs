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
    let step = host_step(
        &raw,
        p.n,
        p.c,
        p.c,
        include_background,
        batch,
        reduction,
        output_weights,
        f,
    );
    Some(finish(s, step.0, step.1))
}

/// The loss `value` with gradient `g` with respect to the sums `s`: `lin − detach(lin) + value`,
/// `lin = Σ s ⊙ g`.
fn finish(s: Tensor<3>, value: f64, g: Vec<f64>) -> LossValue {
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

/// The reduced value of a region formula on host sums `raw` (`[N, rows, 8]`, the first `c` rows
/// the channels' statistics) and its derivative with respect to every sum (zero on the rows past
/// `c` and on a dropped background).
#[allow(clippy::too_many_arguments)]
fn host_step(
    raw: &[f32],
    n: usize,
    c: usize,
    rows: usize,
    include_background: bool,
    batch: bool,
    reduction: LossReduction,
    output_weights: Option<&[f64]>,
    f: &impl RowFormula,
) -> (f64, Vec<f64>) {
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

/// `w_dice · dice + w_ce · ce` (MONAI's `DiceCELoss`) in one fused pass over softmax logits with
/// label targets: the region kernel with the cross-entropy row (see
/// [`crate::fused::region_ce_sums`]), the Dice formula on the host, the CE sum reduced as the CE
/// loss does (mean over the N·S pixels, sum, or sum/N). `None` where it does not apply.
#[allow(clippy::too_many_arguments)]
pub(crate) fn host_dice_ce(
    p: &Prepared,
    dice: &crate::DiceLoss,
    w_dice: f64,
    w_ce: f64,
    reduction: LossReduction,
    output_weights: Option<&[f64]>,
) -> Option<LossValue> {
    if reduction == LossReduction::None
        || p.valid.is_some()
        || p.activation != crate::Activation::Softmax
        || dice.soft_label
        || !(dice.power == 1.0 || dice.power == 2.0)
    {
        return None;
    }
    let labels = p.labels.as_ref()?;
    let s = crate::fused::region_ce_sums(&p.x, labels)?;
    let raw = host_f32(&s)?;
    let (n, c) = (p.n, p.c);
    let f = DiceFormula {
        jaccard: dice.jaccard,
        squared: dice.power == 2.0,
        smooth_nr: dice.smooth_nr,
        smooth_dr: dice.smooth_dr,
    };
    let (dv, mut g) = host_step(
        &raw,
        n,
        c,
        c + 1,
        dice.include_background,
        dice.batch,
        reduction,
        output_weights,
        &f,
    );
    g.iter_mut().for_each(|v| *v *= w_dice);
    let ce_scale = match reduction {
        LossReduction::Mean => 1.0 / (n * p.s()).max(1) as f64,
        LossReduction::BatchMean => 1.0 / n as f64,
        _ => 1.0,
    };
    let mut ce = 0.0f64;
    for i in 0..n {
        let at = (i * (c + 1) + c) * 8;
        ce += f64::from(raw[at]);
        g[at] = w_ce * ce_scale;
    }
    Some(finish(s, w_dice * dv + w_ce * ce * ce_scale, g))
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

/// The Dice / Jaccard formula of [`DiceLoss`](crate::DiceLoss) (power 1 or 2, hard statistics),
/// per cell: value from the cancellation-free forms, gradient from `1 − num/den`.
pub(crate) struct DiceFormula {
    pub jaccard: bool,
    pub squared: bool,
    pub smooth_nr: f64,
    pub smooth_dr: f64,
}

impl RowFormula for DiceFormula {
    fn outputs(&self, k: usize) -> usize {
        k
    }

    fn eval(&self, row: &[Cell], values: &mut [f64], grads: &mut [Cell]) {
        let k = row.len();
        let (snr, sdr) = (self.smooth_nr, self.smooth_dr);
        for (kk, a) in row.iter().enumerate() {
            let (py, e, ip, iy) = if self.squared {
                (a[ix::SP2] + a[ix::SY2], a[ix::R2], ix::SP2, ix::SY2)
            } else {
                (a[ix::SP] + a[ix::SY], a[ix::FP] + a[ix::FN], ix::SP, ix::SY)
            };
            let tp = a[ix::TP];
            let num = 2.0 * tp + snr;
            let g = &mut grads[kk * k + kk];
            if self.jaccard {
                values[kk] = safe_ratio_f(2.0 * e + sdr - snr, py + e + sdr);
                let (dn, dd) = one_minus_ratio_d(num, 2.0 * (py - tp) + sdr);
                g[ix::TP] = 2.0 * dn - 2.0 * dd;
                g[ip] = 2.0 * dd;
                g[iy] = 2.0 * dd;
            } else {
                let den = py + sdr;
                values[kk] = safe_ratio_f(e + sdr - snr, den);
                let (dn, dd) = one_minus_ratio_d(num, den);
                g[ix::TP] = 2.0 * dn;
                g[ip] = dd;
                g[iy] = dd;
            }
        }
    }
}

/// The Tversky formula of [`TverskyLoss`](crate::TverskyLoss) (hard statistics), per cell.
pub(crate) struct TverskyFormula {
    pub alpha: f64,
    pub beta: f64,
    pub smooth_nr: f64,
    pub smooth_dr: f64,
}

impl RowFormula for TverskyFormula {
    fn outputs(&self, k: usize) -> usize {
        k
    }

    fn eval(&self, row: &[Cell], values: &mut [f64], grads: &mut [Cell]) {
        let k = row.len();
        for (kk, a) in row.iter().enumerate() {
            let miss = self.alpha * a[ix::FP] + self.beta * a[ix::FN];
            let den = a[ix::TP] + miss + self.smooth_dr;
            values[kk] = safe_ratio_f(miss + self.smooth_dr - self.smooth_nr, den);
            let (dn, dd) = one_minus_ratio_d(a[ix::TP] + self.smooth_nr, den);
            let g = &mut grads[kk * k + kk];
            g[ix::TP] = dn + dd;
            g[ix::FP] = self.alpha * dd;
            g[ix::FN] = self.beta * dd;
        }
    }
}

/// The generalised Dice formula of [`GeneralizedDiceLoss`](crate::GeneralizedDiceLoss) (hard
/// statistics): one output per row. The class weights are computed in f32 from the f32 target
/// sums, as the composed formula (and MONAI) do, and carry no gradient.
pub(crate) struct GeneralizedDiceFormula {
    pub w_type: crate::WeightType,
    pub smooth_nr: f64,
    pub smooth_dr: f64,
}

impl RowFormula for GeneralizedDiceFormula {
    fn outputs(&self, _k: usize) -> usize {
        1
    }

    fn eval(&self, row: &[Cell], values: &mut [f64], grads: &mut [Cell]) {
        use crate::WeightType;
        let w32: Vec<f32> = row
            .iter()
            .map(|a| {
                let g = a[ix::SY] as f32;
                match self.w_type {
                    WeightType::Square => (g * g).recip(),
                    WeightType::Simple => g.recip(),
                    WeightType::Uniform => 1.0,
                }
            })
            .collect();
        // Infinite weights (a class absent from the row) take the row's largest finite weight.
        let max = w32
            .iter()
            .map(|w| if w.is_finite() { *w } else { 0.0 })
            .fold(0.0f32, f32::max);
        let w: Vec<f64> = w32
            .iter()
            .map(|x| f64::from(if x.is_finite() { *x } else { max }))
            .collect();
        let (mut tp, mut py, mut e) = (0.0, 0.0, 0.0);
        for (a, wk) in row.iter().zip(&w) {
            tp += wk * a[ix::TP];
            py += wk * (a[ix::SP] + a[ix::SY]);
            e += wk * (a[ix::FP] + a[ix::FN]);
        }
        let num = 2.0 * tp + self.smooth_nr;
        let den = py + self.smooth_dr;
        values[0] = safe_ratio_f(e + self.smooth_dr - self.smooth_nr, den);
        let (dn, dd) = one_minus_ratio_d(num, den);
        for (g, wk) in grads.iter_mut().zip(&w) {
            g[ix::TP] = 2.0 * wk * dn;
            g[ix::SP] = wk * dd;
            g[ix::SY] = wk * dd;
        }
    }
}
