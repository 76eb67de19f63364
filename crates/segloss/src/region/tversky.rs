//! Tversky loss (Salehi et al. 2017), MONAI's definition, and the focal Tversky loss (Abraham &
//! Khan 2019).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue, Prepared};
use crate::loss::{no_weights, SegLoss};
use crate::region::host::host_region_loss;
use crate::region::host::{ix, one_minus_ratio_d, safe_ratio_f, Cell, RowFormula};
use crate::region::{
    check_smooth, fused_sums, one_minus_ratio, reduce_matrix, region_inputs, region_loss_methods,
    region_sum, residual, safe_ratio, value_with_grad_of, ALL_ACTIVATIONS,
};
use crate::region::{with_overlap_keys, OverlapKeys};
use crate::spec::{Args, NONNEG, POS};
use crate::Target;

/// Configuration to create a [Tversky loss](TverskyLoss).
#[derive(Config, Debug)]
pub struct TverskyLossConfig {
    /// Weight of the false positives, α ≥ 0.
    #[config(default = 0.5)]
    pub alpha: f64,
    /// Weight of the false negatives, β ≥ 0.
    #[config(default = 0.5)]
    pub beta: f64,
    /// Smoothing term added to the numerator, s_nr ≥ 0.
    #[config(default = 1e-5)]
    pub smooth_nr: f64,
    /// Smoothing term added to the denominator, s_dr ≥ 0.
    #[config(default = 1e-5)]
    pub smooth_dr: f64,
    /// Sum the statistics over the batch before the ratio.
    #[config(default = false)]
    pub batch: bool,
    /// Whether channel 0 counts (ignored when C = 1).
    #[config(default = true)]
    pub include_background: bool,
    /// MONAI's soft-label-correct statistics: `TP = (Σp + Σy − Σ|p − y|)/2`, `FP = Σp − TP`,
    /// `FN = Σy − TP` (identical for hard targets).
    #[config(default = false)]
    pub soft_label: bool,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute to no statistic.
    pub ignore_index: Option<i64>,
}

fn check_ab(alpha: f64, beta: f64) -> Result<(), LossError> {
    for (n, v) in [("alpha", alpha), ("beta", beta)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(LossError::param(n, v, "a finite number >= 0"));
        }
    }
    Ok(())
}

impl TverskyLossConfig {
    /// The keys of `tversky` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "alpha",
        "beta",
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

    /// The configuration of a spec term `tversky(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = TverskyLossConfig::new();
        if let Some(v) = a.num("alpha", NONNEG, "a number >= 0")? {
            c = c.with_alpha(v);
        }
        if let Some(v) = a.num("beta", NONNEG, "a number >= 0")? {
            c = c.with_beta(v);
        }
        Ok(with_overlap_keys!(c, OverlapKeys::read(a)?))
    }
}

impl TverskyLossConfig {
    /// Sets both smoothing terms (`smooth` in the spec grammar).
    pub fn with_smooth(self, smooth: f64) -> Self {
        self.with_smooth_nr(smooth).with_smooth_dr(smooth)
    }

    /// Initializes a [Tversky loss](TverskyLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> TverskyLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [Tversky loss](TverskyLoss), checking α, β ≥ 0 and the smoothing terms.
    pub fn try_init(&self) -> Result<TverskyLoss, LossError> {
        check_ab(self.alpha, self.beta)?;
        check_smooth("smooth_nr", self.smooth_nr)?;
        check_smooth("smooth_dr", self.smooth_dr)?;
        Ok(TverskyLoss {
            alpha: self.alpha,
            beta: self.beta,
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

/// Tversky loss (Salehi et al. 2017, "Tversky loss function for image segmentation using 3D
/// fully convolutional deep networks"), as MONAI's `TverskyLoss`:
///
/// ```text
/// ℓ_{n,c} = 1 − (TP + s_nr) / (TP + α·FP + β·FN + s_dr)
/// TP = Σ p·y,  FP = Σ p·(1 − y),  FN = Σ (1 − p)·y
/// ```
///
/// over the spatial axes of sample n and channel c (and the batch with `batch = true`). α = β =
/// 0.5 is the Dice loss; β > α penalises false negatives more (recall-oriented).
///
/// Loss matrix: `[N, C']` (`[1, C']` with `batch = true`); `mean` averages it.
///
/// Range: [0, 1] with equal smoothing terms.
///
/// Edge cases: empty target with empty prediction → `1 − s_nr/(α·Σp + s_dr)` (near 1 unless Σp
/// ≪ s_dr); empty target with a non-empty prediction → near 1; all-foreground target predicted
/// → near 0; soft labels → `soft_label = true`; a class absent from the batch → as an empty
/// target; C = 1 with softmax → an error; `ignore_index` everywhere → `1 − s_nr/s_dr`; a zero
/// denominator (s_dr = 0) → 0, never NaN.
///
/// Oracle: `monai.losses.TverskyLoss(alpha, beta, smooth_nr, smooth_dr, batch,
/// include_background, soft_label)`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::TverskyLossConfig;
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::from_floats([[[[1.0, -1.0], [-1.0, 1.0]]]], &device);
/// let mask = Tensor::<4>::from_floats([[[[1.0, 0.0], [1.0, 1.0]]]], &device);
/// let loss = TverskyLossConfig::new().with_alpha(0.3).with_beta(0.7).with_smooth(1e-6).init();
/// let v = loss.forward(logits, mask, Reduction::Mean).into_scalar::<f32>();
/// assert!((v - 0.3589).abs() < 1e-4); // MONAI's own test case
/// ```
#[derive(Module, Debug)]
pub struct TverskyLoss {
    /// α.
    pub alpha: f64,
    /// β.
    pub beta: f64,
    /// s_nr.
    pub smooth_nr: f64,
    /// s_dr.
    pub smooth_dr: f64,
    /// Batch statistics.
    pub batch: bool,
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// Soft-label statistics.
    pub soft_label: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(TverskyLoss);

impl TverskyLoss {
    fn rules(&self, loss: &'static str) -> InputRules {
        InputRules {
            activation: self.activation,
            allowed: ALL_ACTIVATIONS,
            fallback: Activation::Sigmoid,
            ignore_index: self.ignore_index,
            loss,
        }
    }

    /// The loss matrix `[R, C']`: value from `(α·FP + β·FN + s_dr − s_nr)/(TP + α·FP + β·FN +
    /// s_dr)` (the same number as `1 − ratio`, without its cancellation near a perfect
    /// prediction), gradient from `1 − ratio` (see [`value_with_grad_of`]).
    fn matrix(&self, p: &Prepared) -> Tensor<2> {
        let b = self.batch;
        let fused = if self.soft_label {
            None
        } else {
            fused_sums(p, self.include_background, b)
        };
        let (tp, fp, fn_) = if let Some([_, _, _, _, tp, fp, fn_, _]) = fused {
            (tp, fp, fn_)
        } else if self.soft_label {
            let (probs, q, y) = region_inputs(p, self.include_background);
            let pk = region_sum(probs.clone(), b);
            let yk = region_sum(y.clone(), b);
            let e = region_sum(residual(probs, q, y).abs(), b);
            let tp = (pk.clone() + yk.clone() - e).div_scalar(2.0);
            (tp.clone(), pk - tp.clone(), yk - tp)
        } else {
            let (probs, q, y) = region_inputs(p, self.include_background);
            let tp = region_sum(probs.clone() * y.clone(), b);
            let fp = region_sum(probs * y.clone().neg().add_scalar(1.0), b);
            let fn_ = region_sum(q * y, b);
            (tp, fp, fn_)
        };
        let miss = fp.mul_scalar(self.alpha) + fn_.mul_scalar(self.beta);
        let den = (tp.clone() + miss.clone()).add_scalar(self.smooth_dr);
        value_with_grad_of(
            one_minus_ratio(tp.add_scalar(self.smooth_nr), den.clone()),
            safe_ratio(miss.add_scalar(self.smooth_dr - self.smooth_nr), den),
        )
    }
}

impl SegLoss for TverskyLoss {
    fn name(&self) -> &'static str {
        "tversky"
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        no_weights(self.name(), &weights)?;
        let p = prepare(pred, target, &self.rules("tversky"))?;
        if !self.soft_label {
            let f = TverskyFormula {
                alpha: self.alpha,
                beta: self.beta,
                smooth_nr: self.smooth_nr,
                smooth_dr: self.smooth_dr,
            };
            if let Some(v) =
                host_region_loss(&p, self.include_background, self.batch, reduction, None, &f)
            {
                return Ok(v);
            }
        }
        Ok(reduce_matrix(self.matrix(&p), reduction))
    }
}

/// Configuration to create a [focal Tversky loss](FocalTverskyLoss).
#[derive(Config, Debug)]
pub struct FocalTverskyLossConfig {
    /// Weight of the false positives, α ≥ 0.
    #[config(default = 0.3)]
    pub alpha: f64,
    /// Weight of the false negatives, β ≥ 0.
    #[config(default = 0.7)]
    pub beta: f64,
    /// The exponent γ > 0 applied to each class's Tversky loss (Abraham & Khan's 1/γ', γ' = 4/3).
    #[config(default = 0.75)]
    pub gamma: f64,
    /// Smoothing term added to the numerator, s_nr ≥ 0.
    #[config(default = 1e-5)]
    pub smooth_nr: f64,
    /// Smoothing term added to the denominator, s_dr ≥ 0.
    #[config(default = 1e-5)]
    pub smooth_dr: f64,
    /// Sum the statistics over the batch before the ratio.
    #[config(default = false)]
    pub batch: bool,
    /// Whether channel 0 counts (ignored when C = 1).
    #[config(default = true)]
    pub include_background: bool,
    /// Soft-label statistics (see [`TverskyLossConfig::soft_label`]).
    #[config(default = false)]
    pub soft_label: bool,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute to no statistic.
    pub ignore_index: Option<i64>,
}

impl FocalTverskyLossConfig {
    /// The keys of `focal_tversky` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "alpha",
        "beta",
        "gamma",
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

    /// The configuration of a spec term `focal_tversky(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = FocalTverskyLossConfig::new();
        if let Some(v) = a.num("alpha", NONNEG, "a number >= 0")? {
            c = c.with_alpha(v);
        }
        if let Some(v) = a.num("beta", NONNEG, "a number >= 0")? {
            c = c.with_beta(v);
        }
        if let Some(v) = a.num("gamma", POS, "a number > 0")? {
            c = c.with_gamma(v);
        }
        Ok(with_overlap_keys!(c, OverlapKeys::read(a)?))
    }
}

impl FocalTverskyLossConfig {
    /// Sets both smoothing terms (`smooth` in the spec grammar).
    pub fn with_smooth(self, smooth: f64) -> Self {
        self.with_smooth_nr(smooth).with_smooth_dr(smooth)
    }

    /// Initializes a [focal Tversky loss](FocalTverskyLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> FocalTverskyLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [focal Tversky loss](FocalTverskyLoss), checking α, β ≥ 0, γ > 0 and the
    /// smoothing terms.
    pub fn try_init(&self) -> Result<FocalTverskyLoss, LossError> {
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(LossError::param("gamma", self.gamma, "a finite number > 0"));
        }
        let tversky = TverskyLossConfig::new()
            .with_alpha(self.alpha)
            .with_beta(self.beta)
            .with_smooth_nr(self.smooth_nr)
            .with_smooth_dr(self.smooth_dr)
            .with_batch(self.batch)
            .with_include_background(self.include_background)
            .with_soft_label(self.soft_label)
            .with_activation(self.activation)
            .with_ignore_index(self.ignore_index)
            .try_init()?;
        Ok(FocalTverskyLoss {
            tversky,
            gamma: self.gamma,
        })
    }
}

/// Focal Tversky loss (Abraham & Khan 2019, "A novel focal Tversky loss function with improved
/// attention U-Net for lesion segmentation"):
///
/// ```text
/// ℓ_{n,c} = (tversky_{n,c})^γ
/// ```
///
/// with `tversky_{n,c}` the [Tversky loss](TverskyLoss) of sample n and class c (defaults α = 0.3,
/// β = 0.7, γ = 0.75, the paper's 1/γ' with γ' = 4/3). The base is clamped at 1e-30 before the
/// power, so a perfect prediction gives a finite (zero) gradient for γ < 1.
///
/// Loss matrix: `[N, C']` (`[1, C']` with `batch = true`); `mean` averages it.
///
/// Range: [0, 1] with equal smoothing terms. Edge cases as [`TverskyLoss`].
///
/// Oracle: `monai.losses.TverskyLoss(alpha, beta, reduction="none")(x, y) ** gamma`, then the
/// reduction (the formula of `docs/losses.md#focal_tversky`).
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::FocalTverskyLossConfig;
///
/// let device = Device::flex();
/// let logits = Tensor::<3>::from_floats([[[2.0, -1.0, 0.0], [-2.0, 1.0, 0.5]]], &device);
/// let labels = Tensor::<2, Int>::from_ints([[0, 1, 1]], &device);
/// let loss = FocalTverskyLossConfig::new().init();
/// let m = loss.forward_no_reduction(logits, labels);
/// assert_eq!(m.dims(), [1, 2]);
/// ```
#[derive(Module, Debug)]
pub struct FocalTverskyLoss {
    /// The Tversky loss of each class.
    pub tversky: TverskyLoss,
    /// γ.
    pub gamma: f64,
}

region_loss_methods!(FocalTverskyLoss);

impl SegLoss for FocalTverskyLoss {
    fn name(&self) -> &'static str {
        "focal_tversky"
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        no_weights(self.name(), &weights)?;
        let p = prepare(pred, target, &self.tversky.rules("focal_tversky"))?;
        let m = self.tversky.matrix(&p);
        let m = if self.gamma == 1.0 {
            m
        } else {
            m.clamp_min(1e-30).powf_scalar(self.gamma)
        };
        Ok(reduce_matrix(m, reduction))
    }
}

/// The Tversky formula of [`TverskyLoss`] (hard statistics), per cell.
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
