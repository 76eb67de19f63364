//! Combo loss (Taghanaki et al. 2019).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::compound::log_probs;
use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, SegLoss};
use crate::region::{reduce_matrix, region_loss_methods, ALL_ACTIVATIONS};
use crate::spec::{Args, NONNEG, UNIT};
use crate::Target;

/// Configuration to create a [Combo loss](ComboLoss).
#[derive(Config, Debug)]
pub struct ComboLossConfig {
    /// α ∈ [0, 1]: the weight of the cross-entropy term (1 − α weighs the Dice term).
    #[config(default = 0.5)]
    pub alpha: f64,
    /// β ∈ [0, 1]: the weight of the positive term inside the cross-entropy (1 − β weighs the
    /// negative term); β > 0.5 penalises false negatives more.
    #[config(default = 0.5)]
    pub beta: f64,
    /// Smoothing term s ≥ 0 of the Dice coefficients.
    #[config(default = 1.0)]
    pub smooth: f64,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute to neither term.
    pub ignore_index: Option<i64>,
}

impl ComboLossConfig {
    /// The keys of `combo` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "alpha",
        "beta",
        "smooth",
        "ignore_index",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `combo(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = ComboLossConfig::new();
        if let Some(v) = a.num("alpha", UNIT, "a number in [0, 1]")? {
            c = c.with_alpha(v);
        }
        if let Some(v) = a.num("beta", UNIT, "a number in [0, 1]")? {
            c = c.with_beta(v);
        }
        if let Some(v) = a.num("smooth", NONNEG, "a number >= 0")? {
            c = c.with_smooth(v);
        }
        Ok(c.with_ignore_index(a.int("ignore_index")?)
            .with_activation(a.choice("activation")?))
    }
}

impl ComboLossConfig {
    /// Initializes a [Combo loss](ComboLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> ComboLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [Combo loss](ComboLoss), checking α, β ∈ [0, 1] and s ≥ 0.
    pub fn try_init(&self) -> Result<ComboLoss, LossError> {
        for (n, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(LossError::param(n, v, "a number in [0, 1]"));
            }
        }
        if !(self.smooth.is_finite() && self.smooth >= 0.0) {
            return Err(LossError::param(
                "smooth",
                self.smooth,
                "a finite number >= 0",
            ));
        }
        Ok(ComboLoss {
            alpha: self.alpha,
            beta: self.beta,
            smooth: self.smooth,
            activation: self.activation,
            ignore_index: self.ignore_index,
        })
    }
}

/// Combo loss (Taghanaki et al. 2019, "Combo loss: handling input and output imbalance in
/// multi-organ segmentation"):
///
/// ```text
/// ℓ = α·wCE − (1 − α)·Σ_c DSC_c
/// wCE   = −mean(β·y·ln p + (1 − β)·(1 − y)·ln(1 − p))        over all N·C·S elements
/// DSC_c = (2·Σ p·y + s) / (Σ p + Σ y + s)                      over the batch and the space
/// ```
///
/// `ln p` and `ln(1 − p)` come from the logits without rounding: log-sigmoid, or log-softmax and
/// `ln(1 − p_c) = logsumexp_{k≠c} x_k − logsumexp_k x_k`; with `activation = none` the logs are
/// clamped at −100 (as PyTorch's BCELoss; the gradient is 0 below p = 1e-30, never NaN). The
/// paper clips p to [ε, 1 − ε]; we do not.
///
/// Loss matrix: `[1, 1]` (the loss is defined over the batch: every reduction gives it).
///
/// Range: [−(1 − α)·C, ∞): the value is negative near a perfect prediction, where it reaches
/// −(1 − α)·C.
///
/// Edge cases: an empty target → DSC = s/(Σp + s) for that class (1 if the prediction is empty
/// too); a class absent from the batch → the same; all-foreground target → only the positive CE
/// term; soft labels → the formulas as written; C = 1 with softmax → an error; with s = 0 a class
/// empty in both target and prediction has DSC = 1 (0/0 is read as perfect agreement), never NaN;
/// `ignore_index` removes pixels from both terms (the CE mean divides by the C·(valid pixels)).
///
/// Oracle: the formula (`docs/losses.md#combo`).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::ComboLossConfig;
///
/// let device = Device::flex();
/// let logits = Tensor::<3>::from_floats([[[20.0, -20.0, 20.0]]], &device);
/// let mask = Tensor::<3>::from_floats([[[1.0, 0.0, 1.0]]], &device);
/// let v = ComboLossConfig::new().init().forward(logits, mask, Reduction::Mean);
/// // near-perfect: wCE ≈ 0, DSC ≈ 1 → −(1 − α)·C = −0.5
/// assert!((v.into_scalar::<f32>() + 0.5).abs() < 1e-5);
/// ```
#[derive(Module, Debug)]
pub struct ComboLoss {
    /// α.
    pub alpha: f64,
    /// β.
    pub beta: f64,
    /// s.
    pub smooth: f64,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(ComboLoss);

/// `(2·Σp·y + s)/(Σp + Σy + s)` per channel over the batch and the space, `[C]` as `[1, C]`;
/// 1 where the denominator is 0.
pub(crate) fn batch_dsc(probs: Tensor<3>, y: Tensor<3>, s: f64) -> Tensor<2> {
    let c = probs.dims()[1];
    let sum = |t: Tensor<3>| t.sum_dim(2).sum_dim(0).reshape([1, c]);
    let num = sum(probs.clone() * y.clone()).mul_scalar(2.0).add_scalar(s);
    let den = (sum(probs) + sum(y)).add_scalar(s);
    let zero = den.clone().equal_elem(0.0);
    num.mask_fill(zero.clone(), 1.0) / den.mask_fill(zero, 1.0)
}

impl SegLoss for ComboLoss {
    fn name(&self) -> &'static str {
        "combo"
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
                loss: "combo",
            },
        )?;
        let probs = p.mask_valid(p.probs());
        let y = p.y();
        let (lp, l1p) = log_probs(&p);
        let b = self.beta;
        let ce = (y.clone().mul_scalar(b) * lp
            + y.clone().neg().add_scalar(1.0).mul_scalar(1.0 - b) * l1p)
            .neg();
        let count = (p.c * p.n_valid).max(1) as f64;
        let wce = p.mask_valid(ce).sum().div_scalar(count);
        let dsc = batch_dsc(probs, y, self.smooth).sum_dim(1).reshape([1]);
        let v = wce.mul_scalar(self.alpha) - dsc.mul_scalar(1.0 - self.alpha);
        Ok(reduce_matrix(v.reshape([1, 1]), reduction))
    }
}
