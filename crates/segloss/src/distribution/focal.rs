//! Focal loss (Lin et al. 2017), MONAI's definition, sigmoid and softmax modes.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{activation, Tensor};

use crate::fused::Act;

use crate::error::LossError;
use crate::input::{
    class_weights_n, const_tensor, prepare, reduce_map, reduce_sums, Activation, Flat, InputRules,
    LossReduction, LossValue, Prepared,
};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::spec::{Args, NONNEG, UNIT};
use crate::Target;

/// Configuration to create a [focal loss](FocalLoss).
#[derive(Config, Debug)]
pub struct FocalLossConfig {
    /// Focusing parameter γ ≥ 0 (0 gives plain cross-entropy).
    #[config(default = 2.0)]
    pub gamma: f64,
    /// Balancing factor α ∈ [0, 1]: sigmoid mode weighs positives by α and negatives by 1 − α;
    /// softmax mode weighs the background class (channel 0) by 1 − α and the others by α.
    pub alpha: Option<f64>,
    /// Per-class weights (one per channel), multiplying each channel's loss. Ignored when C = 1
    /// (as MONAI).
    pub weight: Option<Vec<f64>>,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`
    /// (probabilities, binary form).
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute nothing and leave the mean's denominator.
    pub ignore_index: Option<i64>,
    /// Whether channel 0 (the background) counts; when false (and C > 1) it is left out of the
    /// loss and of the mean, and `weight` has C − 1 entries.
    #[config(default = true)]
    pub include_background: bool,
}

impl FocalLossConfig {
    /// The keys of `focal` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "gamma",
        "alpha",
        "weight",
        "activation",
        "ignore_index",
        "include_background",
        "reduction",
    ];

    /// The configuration of a spec term `focal(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = FocalLossConfig::new()
            .with_alpha(a.num("alpha", UNIT, "a number in [0, 1]")?)
            .with_weight(a.weights("weight")?)
            .with_activation(a.choice("activation")?)
            .with_ignore_index(a.int("ignore_index")?);
        if let Some(b) = a.boolean("include_background")? {
            c = c.with_include_background(b);
        }
        if let Some(v) = a.num("gamma", NONNEG, "a number >= 0")? {
            c = c.with_gamma(v);
        }
        Ok(c)
    }
}

impl FocalLossConfig {
    /// Initializes a [focal loss](FocalLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> FocalLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [focal loss](FocalLoss), checking γ ≥ 0, α ∈ [0, 1], weights ≥ 0.
    pub fn try_init(&self) -> Result<FocalLoss, LossError> {
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(LossError::param(
                "gamma",
                self.gamma,
                "a finite number >= 0",
            ));
        }
        if let Some(a) = self.alpha {
            if !(0.0..=1.0).contains(&a) {
                return Err(LossError::param("alpha", a, "a number in [0, 1]"));
            }
        }
        if let Some(w) = &self.weight {
            if let Some(bad) = w.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(LossError::param("weight", bad, "finite class weights >= 0"));
            }
        }
        Ok(FocalLoss {
            gamma: self.gamma,
            alpha: self.alpha,
            weight: self.weight.clone(),
            activation: self.activation,
            ignore_index: self.ignore_index,
            include_background: self.include_background,
        })
    }
}

/// Focal loss (Lin et al. 2017, "Focal loss for dense object detection"), as MONAI's `FocalLoss`:
///
/// ```text
/// sigmoid:  ℓ = α_t·(1 − p_t)^γ·BCE(x, y),   (1 − p_t)^γ = exp(γ·ln σ(−x·(2y − 1)))
///           α_t = α·y + (1 − α)·(1 − y)
/// softmax:  ℓ_c = −α_c·(1 − p_c)^γ·y_c·ln p_c,   ln p = log_softmax(x),  α = [1 − α, α, α, …]
/// ```
///
/// then multiplied by the class weight of its channel. The modulating factor is built in log
/// space in sigmoid mode, so logits of ±1e4 give finite values and gradients. The loss tensor is
/// `[N, C, *spatial]` in both modes (zeros at the non-true classes in softmax mode), and `mean`
/// averages over all of its N·C·S elements, as MONAI. `sum` is the plain sum (MONAI's `sum` first
/// averages over the spatial axes: a quirk we do not copy).
///
/// `include_background = false` drops channel 0 from the loss (as MONAI). In softmax mode MONAI
/// drops it *before* the softmax (a softmax over the remaining C − 1 channels) and silently
/// ignores a scalar α; segloss keeps the softmax over all C classes (the probabilities the
/// network actually outputs) and keeps α — a documented difference.
///
/// Oracle: `monai.losses.FocalLoss(gamma, alpha, weight, use_softmax, include_background)`.
#[derive(Module, Debug)]
pub struct FocalLoss {
    /// γ.
    pub gamma: f64,
    /// α.
    #[module(skip)]
    pub alpha: Option<f64>,
    /// Class weights.
    #[module(skip)]
    pub weight: Option<Vec<f64>>,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
    /// Whether channel 0 counts.
    pub include_background: bool,
}

pixel_loss_methods!(FocalLoss);

impl FocalLoss {
    /// The fused-kernel path (see [`crate::fused`]): per-(sample, channel) sums, then the same
    /// channel selection, class weights (and softmax α) and mean denominator as the composed map.
    fn fused(
        &self,
        p: &Prepared,
        reduction: LossReduction,
    ) -> Result<Option<LossValue>, LossError> {
        let act = match p.activation {
            Activation::Sigmoid => Act::Sigmoid,
            Activation::Softmax => Act::Softmax,
            Activation::None => return Ok(None),
        };
        let sig_alpha = if act == Act::Sigmoid {
            self.alpha
        } else {
            None
        };
        // Softmax with label targets reads the labels: no one-hot tensor is built.
        let labels = p.labels.as_ref().filter(|_| act == Act::Softmax);
        let mask = labels.is_none().then(|| p.y());
        let Some(mut sums) =
            crate::fused::focal_sums(&p.x, mask.as_ref(), labels, act, self.gamma, sig_alpha)
        else {
            return Ok(None);
        };
        if act == Act::Softmax {
            if let Some(a) = self.alpha {
                let mut fac = vec![a; p.c];
                fac[0] = 1.0 - a;
                sums = sums * const_tensor(&p.x, fac, [1, p.c]);
            }
        }
        let mut kept = p.c;
        if !self.include_background && p.c > 1 {
            kept = p.c - 1;
            sums = sums.narrow(1, 1, kept);
        }
        if let Some(w) = &self.weight {
            if p.c != 1 {
                let w: Tensor<3> = class_weights_n(p, w, kept, "weight")?;
                sums = sums * w.reshape([1, kept]);
            }
        }
        let count = if kept == 1 && p.c != 1 {
            p.n_valid as f64
        } else {
            p.valid_elements_from(p.c - kept)
        };
        Ok(Some(reduce_sums(p, sums.sum(), count, reduction)))
    }
}

impl SegLoss for FocalLoss {
    fn name(&self) -> &'static str {
        "focal"
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
                allowed: &[Activation::Sigmoid, Activation::Softmax, Activation::None],
                fallback: Activation::Sigmoid,
                ignore_index: self.ignore_index,
                loss: "focal",
            },
        )?;
        if p.valid.is_none() && reduction != LossReduction::None {
            if let Some(v) = self.fused(&p, reduction)? {
                return Ok(v);
            }
        }
        let g = self.gamma;
        let y = p.y();
        let mut map = match p.activation {
            Activation::Softmax => {
                let lsm = p.log_softmax();
                let mut l = (y * lsm.clone()).neg();
                if g != 0.0 {
                    // Clamped so that the gradient of (1 − p)^γ stays finite at p = 1 for γ < 1.
                    let base = lsm.exp().neg().add_scalar(1.0).clamp_min(1e-30);
                    l = l * base.powf_scalar(g);
                }
                if let Some(a) = self.alpha {
                    let mut fac = vec![a; p.c];
                    fac[0] = 1.0 - a;
                    l = l * const_tensor(&p.x, fac, [1, p.c, 1]);
                }
                l
            }
            act => {
                let (ce, modulating) = if act == Activation::None {
                    let (lp, l1mp) = p.log_p_and_log_1mp();
                    let ce = (y.clone() * lp + y.clone().neg().add_scalar(1.0) * l1mp).neg();
                    // 1 − p_t = y(1 − p) + (1 − y)p
                    let one_m_pt = y.clone() * p.x.clone().neg().add_scalar(1.0)
                        + y.clone().neg().add_scalar(1.0) * p.x.clone();
                    (ce, one_m_pt.clamp_min(1e-30).powf_scalar(g))
                } else {
                    let ls = activation::log_sigmoid(p.x.clone());
                    let ce = y.clone().neg().add_scalar(1.0) * p.x.clone() - ls;
                    let inv = activation::log_sigmoid(
                        (p.x.clone() * y.clone().mul_scalar(2.0).sub_scalar(1.0)).neg(),
                    );
                    (ce, inv.mul_scalar(g).exp())
                };
                let mut l = if g != 0.0 { ce * modulating } else { ce };
                if let Some(a) = self.alpha {
                    let at = y.clone().mul_scalar(2.0 * a - 1.0).add_scalar(1.0 - a);
                    l = l * at;
                }
                l
            }
        };
        map = p.mask_valid(map);
        let mut kept = p.c;
        if !self.include_background && p.c > 1 {
            kept = p.c - 1;
            map = map.narrow(1, 1, kept);
        }
        if let Some(w) = &self.weight {
            if p.c != 1 {
                map = map * class_weights_n(&p, w, kept, "weight")?;
            }
        }
        Ok(reduce_map(&p, map, reduction))
    }
}
