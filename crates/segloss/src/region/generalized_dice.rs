//! Generalized Dice loss (Sudre et al. 2017), MONAI's definition.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, SegLoss};
use crate::region::host::host_region_loss;
use crate::region::host::{ix, one_minus_ratio_d, safe_ratio_f, Cell, RowFormula};
use crate::region::{
    check_smooth, dice_stats, fused_sums, one_minus_ratio, reduce_matrix, region_inputs,
    region_loss_methods, region_sum, safe_ratio, value_with_grad_of, ALL_ACTIVATIONS,
};
use crate::region::{with_overlap_keys, OverlapKeys};
use crate::spec::{Args, SpecWord};
use crate::Target;

/// How the generalized Dice loss weighs the classes, from the target volume `Y_c = Σ y_c`.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// `w_c = 1/Y_c²` (Sudre et al.; the default).
    Square,
    /// `w_c = 1/Y_c`.
    Simple,
    /// `w_c = 1`.
    Uniform,
}

/// Configuration to create a [generalized Dice loss](GeneralizedDiceLoss).
#[derive(Config, Debug)]
pub struct GeneralizedDiceLossConfig {
    /// The class weighting.
    #[config(default = "WeightType::Square")]
    pub w_type: WeightType,
    /// Smoothing term added to the numerator, s_nr ≥ 0.
    #[config(default = 1e-5)]
    pub smooth_nr: f64,
    /// Smoothing term added to the denominator, s_dr ≥ 0.
    #[config(default = 1e-5)]
    pub smooth_dr: f64,
    /// Sum the statistics (and the class volumes behind the weights) over the batch.
    #[config(default = false)]
    pub batch: bool,
    /// Whether channel 0 counts (ignored when C = 1).
    #[config(default = true)]
    pub include_background: bool,
    /// MONAI's soft-label-correct true positives (see [`DiceLossConfig`](crate::DiceLossConfig)).
    #[config(default = false)]
    pub soft_label: bool,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute to no statistic.
    pub ignore_index: Option<i64>,
}

impl SpecWord for WeightType {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("square", WeightType::Square),
        ("simple", WeightType::Simple),
        ("uniform", WeightType::Uniform),
    ];
}

impl GeneralizedDiceLossConfig {
    /// The keys of `generalized_dice` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "w_type",
        "smooth_nr",
        "smooth_dr",
        "smooth",
        "batch",
        "include_background",
        "soft_label",
        "ignore_index",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `generalized_dice(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = GeneralizedDiceLossConfig::new();
        if let Some(w) = a.choice("w_type")? {
            c = c.with_w_type(w);
        }
        Ok(with_overlap_keys!(c, OverlapKeys::read(a)?))
    }
}

impl GeneralizedDiceLossConfig {
    /// Sets both smoothing terms (`smooth` in the spec grammar).
    pub fn with_smooth(self, smooth: f64) -> Self {
        self.with_smooth_nr(smooth).with_smooth_dr(smooth)
    }

    /// Initializes a [generalized Dice loss](GeneralizedDiceLoss).
    ///
    /// # Panics
    ///
    /// If a smoothing term is negative or not finite.
    pub fn init(&self) -> GeneralizedDiceLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [generalized Dice loss](GeneralizedDiceLoss), checking the smoothing terms.
    pub fn try_init(&self) -> Result<GeneralizedDiceLoss, LossError> {
        check_smooth("smooth_nr", self.smooth_nr)?;
        check_smooth("smooth_dr", self.smooth_dr)?;
        Ok(GeneralizedDiceLoss {
            w_type: self.w_type,
            smooth_nr: self.smooth_nr,
            smooth_dr: self.smooth_dr,
            batch: self.batch,
            include_background: self.include_background,
            soft_label: self.soft_label,
            activation: self.activation,
            ignore_index: self.ignore_index,
        })
    }
}

/// Generalized Dice loss (Sudre et al. 2017, "Generalised Dice overlap as a deep learning loss
/// function for highly unbalanced segmentations"), as MONAI's `GeneralizedDiceLoss`:
///
/// ```text
/// ℓ_n = 1 − (2·Σ_c w_c·TP_c + s_nr) / (Σ_c w_c·(P_c + Y_c) + s_dr)
/// w_c = 1/Y_c² (square) | 1/Y_c (simple) | 1 (uniform),   Y_c = Σ y_c,  P_c = Σ p_c,  TP_c = Σ p_c·y_c
/// ```
///
/// per sample n (one number for the whole batch with `batch = true`). A class absent from the
/// target has an infinite weight; as MONAI, it takes the largest finite weight of the sample (of
/// the batch with `batch = true`) instead; when every class is absent all weights are 0 and the
/// loss is `1 − s_nr/s_dr` (0 by default). The weights depend on the target only and carry no
/// gradient.
///
/// Loss matrix: `[N, 1]` (`[1, 1]` with `batch = true`); `mean` averages over the samples.
///
/// Range: [0, 1] with equal smoothing terms.
///
/// Edge cases: empty target → 0 (all weights 0, see above) whatever the prediction; a class
/// absent from a sample or the whole batch → the weight replacement above; all-foreground C = 1
/// target → the Dice loss of that channel; soft labels → `soft_label = true` for the
/// soft-label-correct TP; C = 1 with softmax → an error; `ignore_index` everywhere → 0; a zero
/// denominator (only with s_dr = 0) → 0, never NaN.
///
/// Oracle: `monai.losses.GeneralizedDiceLoss(w_type, smooth_nr, smooth_dr, batch,
/// include_background, soft_label)` (weights in the input's precision: MONAI computes them in
/// float32).
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::{GeneralizedDiceLossConfig, WeightType};
///
/// let device = Device::flex();
/// // MONAI's test: softmax, w_type simple, no smoothing → 0.250023
/// let logits = Tensor::<3>::from_floats([[[0.0, 10.0, 10.0, 10.0], [10.0, 0.0, 0.0, 0.0]]], &device);
/// let labels = Tensor::<3, Int>::from_ints([[[1, 1, 0, 0]]], &device);
/// let loss = GeneralizedDiceLossConfig::new()
///     .with_w_type(WeightType::Simple)
///     .with_smooth(0.0)
///     .init();
/// let v = loss.forward(logits, labels, Reduction::Mean).into_scalar::<f32>();
/// assert!((v - 0.250023).abs() < 1e-5);
/// ```
#[derive(Module, Debug)]
pub struct GeneralizedDiceLoss {
    /// Class weighting.
    #[module(skip)]
    pub w_type: WeightType,
    /// s_nr.
    pub smooth_nr: f64,
    /// s_dr.
    pub smooth_dr: f64,
    /// Batch statistics.
    pub batch: bool,
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// Soft-label TP.
    pub soft_label: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(GeneralizedDiceLoss);

impl SegLoss for GeneralizedDiceLoss {
    fn name(&self) -> &'static str {
        "generalized_dice"
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        no_weights(self.name(), &weights)?;
        let p = prepare(
            pred,
            target,
            &InputRules {
                activation: self.activation,
                allowed: ALL_ACTIVATIONS,
                fallback: Activation::Sigmoid,
                ignore_index: self.ignore_index,
                loss: "generalized_dice",
            },
        )?;
        if !self.soft_label {
            let f = GeneralizedDiceFormula {
                w_type: self.w_type,
                smooth_nr: self.smooth_nr,
                smooth_dr: self.smooth_dr,
            };
            if let Some(v) =
                host_region_loss(&p, self.include_background, self.batch, reduction, None, &f)
            {
                return Ok(v);
            }
        }
        // Y, P + Y, E = P + Y − 2·TP (without cancellation) and TP, [R, C'].
        let fused = if self.soft_label {
            None
        } else {
            fused_sums(&p, self.include_background, self.batch)
        };
        let (ground, py, e, tp) = match fused {
            Some([sp, _, sy, _, tp, fp, fn_, _]) => (sy.clone().detach(), sp + sy, fp + fn_, tp),
            None => {
                let (probs, q, y) = region_inputs(&p, self.include_background);
                let ground = region_sum(y.clone(), self.batch).detach();
                let (py, e, tp) = dice_stats(probs, q, y, 1.0, self.soft_label, self.batch);
                (ground, py, e, tp)
            }
        };
        let w: Tensor<2> = match self.w_type {
            WeightType::Square => (ground.clone() * ground).recip(),
            WeightType::Simple => ground.recip(),
            WeightType::Uniform => ground.ones_like(),
        };
        let inf = w.clone().is_finite().bool_not();
        let w0 = w.mask_fill(inf.clone(), 0.0);
        let max = w0.clone().max_dim(1);
        let w = w0.clone().mask_where(inf, max.expand(w0.dims()));
        let [r, _] = w.dims();
        let num = (tp * w.clone())
            .sum_dim(1)
            .mul_scalar(2.0)
            .add_scalar(self.smooth_nr);
        let den = (py * w.clone()).sum_dim(1).add_scalar(self.smooth_dr);
        // The same value as (Σ w·E + s_dr − s_nr)/(Σ w·(P + Y) + s_dr), without cancellation.
        let dis = (e * w)
            .sum_dim(1)
            .add_scalar(self.smooth_dr - self.smooth_nr);
        let m = value_with_grad_of(one_minus_ratio(num, den.clone()), safe_ratio(dis, den));
        let m = m.reshape([r, 1]);
        Ok(reduce_matrix(m, reduction))
    }
}

/// The generalised Dice formula of [`GeneralizedDiceLoss`] (hard
/// statistics): one output per row. The class weights are computed in f32 from the f32 target
/// sums, as the composed formula (and MONAI) do, and carry no gradient.
pub(crate) struct GeneralizedDiceFormula {
    pub w_type: WeightType,
    pub smooth_nr: f64,
    pub smooth_dr: f64,
}

impl RowFormula for GeneralizedDiceFormula {
    fn outputs(&self, _k: usize) -> usize {
        1
    }

    fn eval(&self, row: &[Cell], values: &mut [f64], grads: &mut [Cell]) {
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
