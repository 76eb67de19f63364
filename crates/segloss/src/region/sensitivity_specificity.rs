//! Sensitivity–specificity loss (Brosch et al. 2015).

use burn::config::Config;
use burn::module::Module;

use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, SegLoss};
use crate::region::{
    reduce_matrix, region_inputs, region_loss_methods, region_sum, residual, ALL_ACTIVATIONS,
};
use crate::spec::{Args, POS, UNIT};
use crate::Target;

/// Configuration to create a [sensitivity–specificity loss](SensitivitySpecificityLoss).
#[derive(Config, Debug)]
pub struct SensitivitySpecificityLossConfig {
    /// The weight r ∈ [0, 1] of the sensitivity term (1 − r weighs the specificity term).
    #[config(default = 0.1)]
    pub r: f64,
    /// Smoothing term s > 0 added to both denominators.
    #[config(default = 1.0)]
    pub smooth: f64,
    /// Sum the statistics over the batch before the ratios.
    #[config(default = false)]
    pub batch: bool,
    /// Whether channel 0 counts (ignored when C = 1).
    #[config(default = true)]
    pub include_background: bool,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute to no statistic.
    pub ignore_index: Option<i64>,
}

impl SensitivitySpecificityLossConfig {
    /// The keys of `sensitivity_specificity` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "r",
        "smooth",
        "batch",
        "include_background",
        "ignore_index",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `sensitivity_specificity(…)` (the registry checks the
    /// keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = SensitivitySpecificityLossConfig::new();
        if let Some(v) = a.num("r", UNIT, "a number in [0, 1]")? {
            c = c.with_r(v);
        }
        if let Some(v) = a.num("smooth", POS, "a number > 0")? {
            c = c.with_smooth(v);
        }
        if let Some(v) = a.boolean("batch")? {
            c = c.with_batch(v);
        }
        if let Some(v) = a.boolean("include_background")? {
            c = c.with_include_background(v);
        }
        Ok(c.with_ignore_index(a.int("ignore_index")?)
            .with_activation(a.choice("activation")?))
    }
}

impl SensitivitySpecificityLossConfig {
    /// Initializes a [sensitivity–specificity loss](SensitivitySpecificityLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> SensitivitySpecificityLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [sensitivity–specificity loss](SensitivitySpecificityLoss), checking
    /// r ∈ [0, 1] and s > 0 (s = 0 would divide 0 by 0 for an empty or full class).
    pub fn try_init(&self) -> Result<SensitivitySpecificityLoss, LossError> {
        if !(0.0..=1.0).contains(&self.r) {
            return Err(LossError::param("r", self.r, "a number in [0, 1]"));
        }
        if !(self.smooth.is_finite() && self.smooth > 0.0) {
            return Err(LossError::param(
                "smooth",
                self.smooth,
                "a finite number > 0",
            ));
        }
        Ok(SensitivitySpecificityLoss {
            r: self.r,
            smooth: self.smooth,
            batch: self.batch,
            include_background: self.include_background,
            activation: self.activation,
            ignore_index: self.ignore_index,
        })
    }
}

/// Sensitivity–specificity loss (Brosch et al. 2015, "Deep convolutional encoder networks for
/// multiple sclerosis lesion segmentation"):
///
/// ```text
/// ℓ_{n,c} = r · Σ(y − p)²·y / (Σy + s)  +  (1 − r) · Σ(y − p)²·(1 − y) / (Σ(1 − y) + s)
/// ```
///
/// over the spatial axes of sample n and channel c (and the batch with `batch = true`): a
/// squared error on the foreground normalised by its size (sensitivity) plus one on the
/// background (specificity). Ignored pixels leave every sum, `Σ(1 − y)` included.
///
/// Loss matrix: `[N, C']` (`[1, C']` with `batch = true`); `mean` averages it.
///
/// Range: [0, 1).
///
/// Edge cases: empty target → only the specificity term, `(1 − r)·Σp²/(S + s)`, whatever the
/// prediction; all-foreground target → only the sensitivity term; soft labels → the formula
/// as written (both terms weigh the squared error by y and 1 − y); a class absent from the batch
/// → as an empty target; C = 1 with softmax → an error; `ignore_index` everywhere → 0.
///
/// Oracle: the formula (`docs/losses.md#sensitivity_specificity`; MONAI has no such loss, and nnU-Net-era implementations
/// differ in where the smoothing goes).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::SensitivitySpecificityLossConfig;
///
/// let device = Device::flex();
/// let probs = Tensor::<3>::from_floats([[[1.0, 0.0, 0.5, 0.5]]], &device);
/// let mask = Tensor::<3>::from_floats([[[1.0, 0.0, 1.0, 0.0]]], &device);
/// let loss = SensitivitySpecificityLossConfig::new()
///     .with_activation(Some(segloss::Activation::None))
///     .init();
/// // r·0.25/(2 + 1) + (1 − r)·0.25/(2 + 1)
/// let v = loss.forward(probs, mask, Reduction::Mean).into_scalar::<f32>();
/// assert!((v - 0.25 / 3.0).abs() < 1e-6);
/// ```
#[derive(Module, Debug)]
pub struct SensitivitySpecificityLoss {
    /// r.
    pub r: f64,
    /// s.
    pub smooth: f64,
    /// Batch statistics.
    pub batch: bool,
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(SensitivitySpecificityLoss);

impl SegLoss for SensitivitySpecificityLoss {
    fn name(&self) -> &'static str {
        "sensitivity_specificity"
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
                loss: "sensitivity_specificity",
            },
        )?;
        let (probs, q, y) = region_inputs(&p, self.include_background);
        let d = residual(probs, q, y.clone());
        let d2 = d.clone() * d;
        // 1 − y, zero at ignored pixels.
        let neg = p.mask_valid(y.clone().neg().add_scalar(1.0));
        let b = self.batch;
        let sens = region_sum(d2.clone() * y.clone(), b) / region_sum(y, b).add_scalar(self.smooth);
        let spec = region_sum(d2 * neg.clone(), b) / region_sum(neg, b).add_scalar(self.smooth);
        let m = sens.mul_scalar(self.r) + spec.mul_scalar(1.0 - self.r);
        Ok(reduce_matrix(m, reduction))
    }
}
