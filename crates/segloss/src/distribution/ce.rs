//! Softmax cross-entropy with class weights, `ignore_index` and label smoothing.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::LossError;
use crate::input::{
    class_weights, prepare, reduce_sums, Activation, Flat, InputRules, LossReduction, LossValue,
    Prepared,
};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss, SumPart};
use crate::spec::{Args, UNIT_OPEN};
use crate::Target;

/// Configuration to create a [cross-entropy loss](CeLoss).
#[derive(Config, Debug)]
pub struct CeLossConfig {
    /// Per-class weights w_c (one per channel).
    pub weight: Option<Vec<f64>>,
    /// Label whose pixels contribute nothing and leave the mean's denominator.
    pub ignore_index: Option<i64>,
    /// Label smoothing ε in [0, 1): the target becomes (1 − ε)·y + ε/C.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
}

impl CeLossConfig {
    /// The keys of `ce` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "weight",
        "ignore_index",
        "label_smoothing",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `ce(…)` (the registry checks the keys). `activation`
    /// is accepted for uniformity with the other losses, and only as `softmax`.
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        if let Some(act) = a.choice::<Activation>("activation")? {
            if act != Activation::Softmax {
                return Err(LossError::param(
                    "activation",
                    act.name(),
                    "ce is a softmax cross-entropy: activation = softmax; use bce for sigmoid",
                ));
            }
        }
        let mut c = CeLossConfig::new()
            .with_weight(a.weights("weight")?)
            .with_ignore_index(a.int("ignore_index")?);
        if let Some(v) = a.num("label_smoothing", UNIT_OPEN, "a number in [0, 1)")? {
            c = c.with_label_smoothing(v);
        }
        Ok(c)
    }
}

impl CeLossConfig {
    /// Initializes a [CE loss](CeLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> CeLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [CE loss](CeLoss), checking `label_smoothing` ∈ [0, 1) and weights ≥ 0.
    pub fn try_init(&self) -> Result<CeLoss, LossError> {
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(LossError::param(
                "label_smoothing",
                self.label_smoothing,
                "a number in [0, 1)",
            ));
        }
        if let Some(w) = &self.weight {
            if let Some(bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(LossError::param("weight", bad, "finite class weights >= 0"));
            }
        }
        Ok(CeLoss {
            weight: self.weight.clone(),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
        })
    }
}

/// Softmax cross-entropy over the channel axis (multi-class segmentation):
///
/// ```text
/// ℓ(x) = (1 − ε)·w_y·(−ln p_y) + (ε/C)·Σ_c w_c·(−ln p_c),   ln p = log_softmax(x)
/// mean = Σ_x ℓ(x) / Σ_x w_y(x)        (Σ over counted pixels; w = 1 without class weights)
/// ```
///
/// exactly PyTorch's `torch.nn.CrossEntropyLoss(weight, ignore_index, label_smoothing)`, including
/// its weighted mean. A mask target holds class probabilities `[N, C, *spatial]` (one-hot or soft):
/// `ℓ = −Σ_c w_c·y'_c·ln p_c` with y' = (1 − ε)y + ε/C, and the mean is over all N·S pixels (as
/// PyTorch does for probability targets). When every pixel is ignored the mean is 0 (PyTorch: NaN).
///
/// The activation is always softmax; C must be ≥ 2.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::CeLossConfig;
///
/// let device = Device::flex();
/// // N = 1, C = 2, 1×2 pixels; the labels are [N, H, W].
/// let logits = Tensor::<4>::from_floats([[[[0.0, 1.0]], [[0.0, -1.0]]]], &device);
/// let labels = Tensor::<3, Int>::from_ints([[[0, 1]]], &device);
/// let v = CeLossConfig::new().init().forward(logits, labels, Reduction::Mean).into_scalar::<f32>();
/// // (ln 2 + ln(1 + e^2)) / 2
/// assert!((v - 1.410038).abs() < 1e-4);
/// ```
#[derive(Module, Debug)]
pub struct CeLoss {
    /// Per-class weights.
    #[module(skip)]
    pub weight: Option<Vec<f64>>,
    /// Ignored label.
    #[module(skip)]
    pub ignore_index: Option<i64>,
    /// Label smoothing ε.
    pub label_smoothing: f64,
}

pixel_loss_methods!(CeLoss);

/// Per-pixel softmax CE `[N, 1, S]` (zero at ignored pixels) and the mean's denominator.
pub(crate) fn softmax_ce_map(
    p: &Prepared,
    weight: Option<&[f64]>,
    label_smoothing: f64,
) -> Result<(Tensor<3>, Tensor<1>), LossError> {
    let lsm = p.log_softmax();
    let w = match weight {
        Some(w) => Some(class_weights(p, w, "weight")?),
        None => None,
    };
    let c = p.c as f64;
    let eps = label_smoothing;
    let wl = match &w {
        Some(w) => lsm.clone() * w.clone(),
        None => lsm.clone(),
    };
    if p.labels.is_some() {
        // y is one-hot and already zero at ignored pixels.
        let nll = (wl.clone() * p.y()).sum_dim(1).neg();
        let mut map = if eps > 0.0 {
            let smooth = p.mask_valid(wl.sum_dim(1).neg());
            nll.mul_scalar(1.0 - eps) + smooth.mul_scalar(eps / c)
        } else {
            nll
        };
        map = p.mask_valid(map);
        let denom = match &w {
            Some(w) => (p.y() * w.clone()).sum(),
            None => p.y().sum(),
        };
        Ok((map, denom))
    } else {
        let y = if eps > 0.0 {
            p.y().mul_scalar(1.0 - eps).add_scalar(eps / c)
        } else {
            p.y()
        };
        let map = p.mask_valid((wl * y).sum_dim(1).neg());
        let denom = p
            .y()
            .sum_dim(1)
            .greater_elem(-1.0)
            .float()
            .cast(p.x.dtype());
        let denom = p.mask_valid(denom).sum();
        Ok((map, denom))
    }
}

/// Reduces a per-pixel map `[N, 1, S]` with an explicit mean denominator (shape `[N, *spatial]`
/// for `none`, as PyTorch).
pub(crate) fn reduce_pixel_map(
    p: &Prepared,
    map: Tensor<3>,
    denom: Tensor<1>,
    reduction: LossReduction,
) -> LossValue {
    match reduction {
        LossReduction::Mean => LossValue::scalar(map.sum() / denom.clamp_min(1e-12)),
        LossReduction::Sum => LossValue::scalar(map.sum()),
        LossReduction::BatchMean => LossValue::scalar(map.sum().div_scalar(p.n as f64)),
        LossReduction::None => {
            let mut shape = vec![p.n];
            shape.extend_from_slice(&p.spatial);
            LossValue {
                values: map.reshape([p.pixels()]),
                shape,
            }
        }
    }
}

impl SegLoss for CeLoss {
    fn sum_part(&self) -> Option<SumPart> {
        let plain =
            self.weight.is_none() && self.label_smoothing == 0.0 && self.ignore_index.is_none();
        plain.then_some(SumPart::SoftmaxCe)
    }

    fn name(&self) -> &'static str {
        "ce"
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
                activation: Some(Activation::Softmax),
                allowed: &[Activation::Softmax],
                fallback: Activation::Softmax,
                ignore_index: self.ignore_index,
                loss: "ce",
            },
        )?;
        if let (Some(labels), None, None, true, false) = (
            &p.labels,
            &self.weight,
            &p.valid,
            self.label_smoothing == 0.0,
            reduction == LossReduction::None,
        ) {
            if let Some(sums) = crate::fused::ce_sums(&p.x, labels) {
                let pixels = p.n_valid as f64;
                return Ok(reduce_sums(&p, sums.sum(), pixels, reduction));
            }
        }
        let (map, denom) = softmax_ce_map(&p, self.weight.as_deref(), self.label_smoothing)?;
        Ok(reduce_pixel_map(&p, map, denom, reduction))
    }
}
