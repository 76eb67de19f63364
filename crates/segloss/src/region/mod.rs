//! Region-based losses: overlap ratios computed from per-sample-per-class statistics (Dice,
//! Jaccard, generalized Dice, Tversky, focal Tversky, sensitivity–specificity, log-cosh Dice), the
//! Lovász extension of the Jaccard loss, and the Matthews correlation coefficient.
//!
//! Statistics per sample n and channel c are sums over the spatial axes (and over n too with
//! `batch = true`): `TP = Σ p·y`, `P = Σ p^k`, `Y = Σ y^k` (`docs/losses.md#region-statistics`). Ignored pixels
//! (`ignore_index`) are zeroed in both the probabilities and the target before any sum, so they
//! contribute to none of them.
//!
//! Every region loss first builds a loss matrix `[R, K]`: R = N (per-sample statistics) or 1
//! (`batch = true`, or a loss defined over the whole batch), K = the channels kept (C, or C − 1
//! without the background) or 1 for the losses that combine classes into one number. Then
//! - `mean` averages the matrix (MONAI's convention: over samples and classes),
//! - `sum` sums it,
//! - `batch_mean` sums it and divides by R,
//! - `none` returns it as it is.

pub mod dice;
pub mod generalized_dice;
pub(crate) mod host;
pub mod log_cosh_dice;
pub mod lovasz;
pub mod mcc;
pub mod sensitivity_specificity;
pub mod tversky;

use burn::tensor::Tensor;

use crate::error::LossError;
use crate::fused::Act;
use crate::input::{Activation, LossReduction, LossValue, Prepared};
use crate::spec::{Args, SpecError, NONNEG};

/// Every activation: region losses work on probabilities from any of them.
pub(crate) const ALL_ACTIVATIONS: &[Activation] =
    &[Activation::Sigmoid, Activation::Softmax, Activation::None];

/// `forward`, `forward_no_reduction` and `try_forward` for a loss whose unreduced value is a
/// `[R, K]` matrix (region and compound losses).
macro_rules! region_loss_methods {
    ($ty:ty) => {
        impl $ty {
            /// Computes the loss and reduces its loss matrix (see the type's documentation):
            /// `Mean` averages it, `Sum` sums it, `BatchMean` sums it and divides by its number
            /// of rows. `Reduction::Auto` behaves as `Reduction::Mean`.
            ///
            /// # Shapes
            ///
            /// - predictions: `[N, C, *spatial]` (1 to 3 spatial dims)
            /// - targets: a mask `[N, C, *spatial]` (`Tensor<D>`) or a label map `[N, 1, *spatial]` /
            ///   `[N, *spatial]` (`Tensor<D, Int>` or `Tensor<D-1, Int>`)
            /// - output: `[1]`
            ///
            /// # Panics
            ///
            /// On invalid input (see [`try_forward`](Self::try_forward) for the error list), with a
            /// message stating the expected and received values, as burn's own losses do.
            pub fn forward<const D: usize>(
                &self,
                predictions: burn::tensor::Tensor<D>,
                targets: impl Into<$crate::Target>,
                reduction: burn::nn::loss::Reduction,
            ) -> burn::tensor::Tensor<1> {
                $crate::error::or_panic(self.try_forward(predictions, targets, reduction.into()))
                    .values
            }

            /// Computes the loss without reduction: the loss matrix `[R, K]` described in the
            /// type's documentation (e.g. `[N, C']` per sample and kept class).
            ///
            /// # Panics
            ///
            /// On invalid input, as [`forward`](Self::forward).
            pub fn forward_no_reduction<const D: usize>(
                &self,
                predictions: burn::tensor::Tensor<D>,
                targets: impl Into<$crate::Target>,
            ) -> burn::tensor::Tensor<2> {
                $crate::error::or_panic(self.try_forward(
                    predictions,
                    targets,
                    $crate::LossReduction::None,
                ))
                .into_tensor::<2>()
            }

            /// Computes the loss, returning a typed error on invalid input: shape mismatch, empty
            /// tensors, non-finite predictions, labels outside `0..C` (other than `ignore_index`),
            /// mask values outside [0, 1], softmax on a single channel, an activation the loss
            /// does not support, class weights of the wrong length.
            pub fn try_forward<const D: usize>(
                &self,
                predictions: burn::tensor::Tensor<D>,
                targets: impl Into<$crate::Target>,
                reduction: $crate::LossReduction,
            ) -> Result<$crate::LossValue, $crate::LossError> {
                $crate::SegLoss::loss_value(
                    self,
                    $crate::Flat::from_tensor(predictions),
                    targets.into(),
                    None,
                    reduction,
                )
            }
        }
    };
}
pub(crate) use region_loss_methods;

/// Reduces a `[R, K]` loss matrix (see the module documentation).
pub(crate) fn reduce_matrix(m: Tensor<2>, reduction: LossReduction) -> LossValue {
    let [r, k] = m.dims();
    match reduction {
        LossReduction::Mean => LossValue::scalar(m.mean()),
        LossReduction::Sum => LossValue::scalar(m.sum()),
        LossReduction::BatchMean => LossValue::scalar(m.sum().div_scalar(r as f64)),
        LossReduction::None => LossValue {
            values: m.reshape([r * k]),
            shape: vec![r, k],
        },
    }
}

/// Probabilities `p`, their complements `q = 1 − p` and targets `y`, each `[N, C', S]`, ready for
/// region statistics: the activation is applied over all C channels, ignored pixels are zeroed
/// in all three, and channel 0 is dropped unless `include_background` (or C = 1, where there is
/// nothing else to keep — as MONAI).
///
/// `q` is computed without cancellation where it can be: `σ(−x)` in sigmoid mode (so a confident
/// prediction, p ≈ 1, keeps the precision of its tiny `1 − p`); `1 − p` otherwise.
pub(crate) fn region_inputs(
    p: &Prepared,
    include_background: bool,
) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
    let probs = p.probs();
    let q = match p.activation {
        Activation::Sigmoid => burn::tensor::activation::sigmoid(p.x.clone().neg()),
        _ => probs.clone().neg().add_scalar(1.0),
    };
    let probs = p.mask_valid(probs);
    let q = p.mask_valid(q);
    let y = p.y();
    if include_background || p.c == 1 {
        (probs, q, y)
    } else {
        let [n, c, s] = probs.dims();
        let keep = |t: Tensor<3>| t.slice([0..n, 1..c, 0..s]);
        (keep(probs), keep(q), keep(y))
    }
}

/// Sums `[N, C', S]` over the spatial axis, and over the batch when `batch`: `[R, C']`.
pub(crate) fn region_sum(t: Tensor<3>, batch: bool) -> Tensor<2> {
    let [n, c, _] = t.dims();
    let t = t.sum_dim(2);
    if batch {
        t.sum_dim(0).reshape([1, c])
    } else {
        t.reshape([n, c])
    }
}

/// `p − y` as `(1 − y)·p − y·q`: the same number for any y, and exact in the common case of a
/// hard target with a confident prediction (no cancellation of p against 1).
pub(crate) fn residual(probs: Tensor<3>, q: Tensor<3>, y: Tensor<3>) -> Tensor<3> {
    y.clone().neg().add_scalar(1.0) * probs - y * q
}

/// The Dice statistics `(P + Y, E, TP)`, each `[R, C']`, with `P = Σ p^k`, `Y = Σ y^k`
/// (k = `power`), the true positives TP and `E = P + Y − 2·TP` (the "disagreement") computed
/// without cancellation:
///
/// - `soft_label`: `TP = (P + Y − Σ|p − y|^k)/2` (MONAI's norm form), `E = Σ|p − y|^k`;
/// - k = 2: `TP = Σ p·y` (what MONAI's norm form reduces to), `E = Σ (p − y)²`;
/// - k = 1: `TP = Σ p·y`, `E = Σ [p·(1 − y) + (1 − p)·y]`;
/// - otherwise `TP = Σ p·y` and `E = P + Y − 2·TP` as written.
pub(crate) fn dice_stats(
    probs: Tensor<3>,
    q: Tensor<3>,
    y: Tensor<3>,
    power: f64,
    soft_label: bool,
    batch: bool,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let pow = |t: Tensor<3>| {
        if power == 1.0 {
            t
        } else if power == 2.0 {
            t.clone() * t
        } else {
            t.powf_scalar(power)
        }
    };
    let pk = region_sum(pow(probs.clone()), batch);
    let yk = region_sum(pow(y.clone()), batch);
    let py = pk.clone() + yk.clone();
    if soft_label {
        let e = region_sum(pow(residual(probs, q, y).abs()), batch);
        let tp = (py.clone() - e.clone()).div_scalar(2.0);
        return (py, e, tp);
    }
    let tp = region_sum(probs.clone() * y.clone(), batch);
    let e = if power == 2.0 {
        let d = residual(probs, q, y);
        region_sum(d.clone() * d, batch)
    } else if power == 1.0 {
        let ny = y.clone().neg().add_scalar(1.0);
        region_sum(probs * ny + q * y, batch)
    } else {
        py.clone() - tp.clone().mul_scalar(2.0)
    };
    (py, e, tp)
}

/// The fused kernel's region sums (see [`crate::fused`]) of the kept channels, each `[R, C']`:
/// `[Σp, Σp², Σy, Σy², Σp·y, Σp·(1−y), Σq·y, Σ((1−y)p − yq)²]`; `None` where the fused path does
/// not apply (another device, `f64`, ignored elements, kernels switched off).
pub(crate) fn fused_sums(
    p: &Prepared,
    include_background: bool,
    batch: bool,
) -> Option<[Tensor<2>; 8]> {
    let sums = raw_fused_sums(p)?;
    let [n, c, k] = sums.dims();
    let sums = if include_background || p.c == 1 {
        sums
    } else {
        sums.slice([0..n, 1..c, 0..k])
    };
    let sums = if batch { sums.sum_dim(0) } else { sums };
    let [r, cc, _] = sums.dims();
    Some(std::array::from_fn(|i| {
        sums.clone().slice([0..r, 0..cc, i..i + 1]).reshape([r, cc])
    }))
}

/// The fused kernel's region sums `[N, C, 8]` of all channels (see [`fused_sums`]); `None` where
/// the fused path does not apply.
pub(crate) fn raw_fused_sums(p: &Prepared) -> Option<Tensor<3>> {
    if p.valid.is_some() {
        return None;
    }
    let act = match p.activation {
        Activation::Sigmoid => Act::Sigmoid,
        Activation::Softmax => Act::Softmax,
        Activation::None => Act::Identity,
    };
    // Label targets go to the kernel as labels: no one-hot tensor is built.
    let mask = p.labels.is_none().then(|| p.y());
    crate::fused::region_sums(&p.x, mask.as_ref(), p.labels.as_ref(), act)
}

/// [`dice_stats`] of the kept channels: from the fused kernel where it applies (hard or soft
/// targets with `soft_label = false`, power 1 or 2), else composed.
pub(crate) fn dice_stats_of(
    p: &Prepared,
    include_background: bool,
    power: f64,
    soft_label: bool,
    batch: bool,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    if !soft_label && (power == 1.0 || power == 2.0) {
        if let Some(s) = fused_sums(p, include_background, batch) {
            let [sp, sp2, sy, sy2, tp, fp, fn_, r2] = s;
            return if power == 1.0 {
                (sp + sy, fp + fn_, tp)
            } else {
                (sp2 + sy2, r2, tp)
            };
        }
    }
    let (probs, q, y) = region_inputs(p, include_background);
    dice_stats(probs, q, y, power, soft_label, batch)
}

/// `1 − num/den` as written (the gradient form of [`value_with_grad_of`]), with 0 wherever `den`
/// is exactly 0.
pub(crate) fn one_minus_ratio<const D: usize>(num: Tensor<D>, den: Tensor<D>) -> Tensor<D> {
    let zero = den.clone().equal_elem(0.0);
    let den = den.mask_fill(zero.clone(), 1.0);
    let num = num.mask_fill(zero, 1.0);
    (num / den).neg().add_scalar(1.0)
}

/// `grad_form` in gradient, `value_form` in value: `grad_form + (value_form − grad_form)` with
/// the correction detached.
///
/// The region ratios are written two ways that are equal in exact arithmetic: `1 − num/den`
/// (MONAI's form, whose gradient never cancels but whose value loses all precision near 0 in
/// f32) and `(den − num)/den` with `den − num` summed from non-negative terms (precise in value,
/// but its gradient cancels near a loss of 1). Each loss takes the best of both.
pub(crate) fn value_with_grad_of<const D: usize>(
    grad_form: Tensor<D>,
    value_form: Tensor<D>,
) -> Tensor<D> {
    grad_form.clone() + (value_form - grad_form).detach()
}

/// `num/den`, with 0 wherever `den` is exactly 0 (only possible with a zero smoothing term in
/// the denominator and an empty class predicted empty: read as perfect agreement, loss 0).
pub(crate) fn safe_ratio<const D: usize>(num: Tensor<D>, den: Tensor<D>) -> Tensor<D> {
    let zero = den.clone().equal_elem(0.0);
    let den = den.mask_fill(zero.clone(), 1.0);
    let num = num.mask_fill(zero, 0.0);
    num / den
}

/// Class weights `[1, C']` for the kept channels, or `None` when only one channel is kept (a
/// weight is then ignored, as MONAI does).
///
/// `weight` has one entry per channel of the prediction (C); with `include_background = false`
/// (and C > 1) it may also have C − 1 entries, one per kept channel.
pub(crate) fn kept_class_weights(
    p: &Prepared,
    weight: &[f64],
    include_background: bool,
) -> Result<Option<Tensor<2>>, LossError> {
    Ok(
        kept_class_weight_values(p, weight, include_background)?.map(|w| {
            let k = w.len();
            crate::input::const_tensor(&p.x, w, [1, k])
        }),
    )
}

/// The values of [`kept_class_weights`].
pub(crate) fn kept_class_weight_values(
    p: &Prepared,
    weight: &[f64],
    include_background: bool,
) -> Result<Option<Vec<f64>>, LossError> {
    let drop_bg = !include_background && p.c > 1;
    let kept = if drop_bg { p.c - 1 } else { p.c };
    let w: Vec<f64> = if weight.len() == p.c {
        if drop_bg {
            weight[1..].to_vec()
        } else {
            weight.to_vec()
        }
    } else if drop_bg && weight.len() == kept {
        weight.to_vec()
    } else {
        let expected = if drop_bg {
            format!(
                "one weight per class: {} values for C = {} (or {} for the channels kept without the background)",
                p.c, p.c, kept
            )
        } else {
            format!("one weight per class: {} values for C = {}", p.c, p.c)
        };
        return Err(LossError::param("weight", format!("{weight:?}"), expected));
    };
    if let Some(bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(LossError::param(
            "weight",
            bad,
            "class weights must be finite and >= 0",
        ));
    }
    if kept == 1 {
        return Ok(None);
    }
    Ok(Some(w))
}

/// Checks a smoothing term.
/// Smoothing terms are at most 1e12: larger ones overflow `f32` arithmetic into NaN (found by the
/// spec fuzzer with `jaccard(smooth_nr=1e54)`), and no sensible smoothing comes near.
pub(crate) fn check_smooth(name: &str, v: f64) -> Result<(), LossError> {
    if v.is_finite() && (0.0..=1e12).contains(&v) {
        Ok(())
    } else {
        Err(LossError::param(name, v, "a number in [0, 1e12]"))
    }
}

/// Checks class weights given in a configuration.
pub(crate) fn check_weights(weight: &Option<Vec<f64>>) -> Result<(), LossError> {
    if let Some(w) = weight {
        if w.is_empty() {
            return Err(LossError::param("weight", "[]", "one weight per class"));
        }
        if let Some(bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(LossError::param("weight", bad, "finite class weights >= 0"));
        }
    }
    Ok(())
}

/// The spec keys the overlap losses share (dice, jaccard, generalized_dice, tversky,
/// focal_tversky), read once; [`with_overlap_keys`] applies them to a configuration.
pub(crate) struct OverlapKeys {
    pub smooth_nr: Option<f64>,
    pub smooth_dr: Option<f64>,
    pub batch: Option<bool>,
    pub include_background: Option<bool>,
    pub soft_label: Option<bool>,
    pub ignore_index: Option<i64>,
    pub activation: Option<Activation>,
}

impl OverlapKeys {
    /// Reads `smooth_nr`, `smooth_dr` (or `smooth` for both), `batch`, `include_background`,
    /// `soft_label`, `ignore_index` and `activation`.
    pub fn read(a: &Args<'_>) -> Result<Self, SpecError> {
        let (smooth_nr, smooth_dr) = spec_smoothing(a)?;
        Ok(OverlapKeys {
            smooth_nr,
            smooth_dr,
            batch: a.boolean("batch")?,
            include_background: a.boolean("include_background")?,
            soft_label: a.boolean("soft_label")?,
            ignore_index: a.int("ignore_index")?,
            activation: a.choice("activation")?,
        })
    }
}

/// `$config` with the [`OverlapKeys`] `$keys` applied through its `with_*` builders (every
/// overlap loss's configuration has the same seven).
macro_rules! with_overlap_keys {
    ($config:expr, $keys:expr) => {{
        let k: $crate::region::OverlapKeys = $keys;
        let mut c = $config;
        if let Some(v) = k.smooth_nr {
            c = c.with_smooth_nr(v);
        }
        if let Some(v) = k.smooth_dr {
            c = c.with_smooth_dr(v);
        }
        if let Some(v) = k.batch {
            c = c.with_batch(v);
        }
        if let Some(v) = k.include_background {
            c = c.with_include_background(v);
        }
        if let Some(v) = k.soft_label {
            c = c.with_soft_label(v);
        }
        c.with_ignore_index(k.ignore_index)
            .with_activation(k.activation)
    }};
}
pub(crate) use with_overlap_keys;

/// `smooth_nr` / `smooth_dr` from a spec term, with `smooth` setting both.
pub(crate) fn spec_smoothing(a: &Args<'_>) -> Result<(Option<f64>, Option<f64>), SpecError> {
    let nr = a.num("smooth_nr", NONNEG, "a number >= 0")?;
    let dr = a.num("smooth_dr", NONNEG, "a number >= 0")?;
    match a.num("smooth", NONNEG, "a number >= 0")? {
        None => Ok((nr, dr)),
        Some(s) => {
            if nr.is_some() || dr.is_some() {
                let pos = a
                    .term
                    .args
                    .iter()
                    .find(|x| x.key == "smooth")
                    .map_or(a.term.pos, |x| x.pos);
                return Err(a.err(
                    pos,
                    "smooth sets both smooth_nr and smooth_dr; give either smooth or smooth_nr / smooth_dr",
                ));
            }
            Ok((Some(s), Some(s)))
        }
    }
}
