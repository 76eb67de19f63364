//! Binary cross-entropy with positive weight, label smoothing and `ignore_index`.

use burn::config::Config;
use burn::module::Module;

use crate::error::LossError;
use crate::input::{
    prepare, reduce_map, reduce_sums, Activation, Flat, InputRules, LossReduction, LossValue,
};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::spec::{Args, POS, UNIT_OPEN};
use crate::Target;

/// Configuration to create a [binary cross-entropy loss](BceLoss).
#[derive(Config, Debug)]
pub struct BceLossConfig {
    /// Weight β of the positive term (the source's β): β > 1 penalises false negatives more,
    /// β < 1 false positives. PyTorch's `pos_weight`.
    #[config(default = 1.0)]
    pub pos_weight: f64,
    /// Label smoothing s in [0, 1): the target becomes y' = y(1 − s) + (1 − y)s.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Target value whose elements contribute nothing and leave every mean's denominator.
    pub ignore_index: Option<i64>,
    /// `Sigmoid` (logits, the default) or `None` (probabilities).
    pub activation: Option<Activation>,
}

impl BceLossConfig {
    /// The keys of `bce` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "pos_weight",
        "label_smoothing",
        "ignore_index",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `bce(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = BceLossConfig::new();
        if let Some(v) = a.num("pos_weight", POS, "a number > 0")? {
            c = c.with_pos_weight(v);
        }
        if let Some(v) = a.num("label_smoothing", UNIT_OPEN, "a number in [0, 1)")? {
            c = c.with_label_smoothing(v);
        }
        Ok(c.with_ignore_index(a.int("ignore_index")?)
            .with_activation(a.choice("activation")?))
    }
}

impl BceLossConfig {
    /// Initializes a [BCE loss](BceLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> BceLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [BCE loss](BceLoss), checking that `pos_weight` is finite and > 0 and
    /// `label_smoothing` is in [0, 1).
    pub fn try_init(&self) -> Result<BceLoss, LossError> {
        if !(self.pos_weight.is_finite() && self.pos_weight > 0.0) {
            return Err(LossError::param(
                "pos_weight",
                self.pos_weight,
                "a finite number > 0",
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(LossError::param(
                "label_smoothing",
                self.label_smoothing,
                "a number in [0, 1)",
            ));
        }
        Ok(BceLoss {
            pos_weight: self.pos_weight,
            label_smoothing: self.label_smoothing,
            ignore_index: self.ignore_index,
            activation: self.activation,
        })
    }
}

/// Binary cross-entropy, the source's first loss and its weighted variant:
///
/// ```text
/// L(x) = −[β·y·ln p + (1 − y)·ln(1 − p)],   p = σ(x)
/// ```
///
/// computed from the logits with log-sigmoid (`ln p = ln σ(x)`, `ln(1 − p) = ln σ(x) − x`), never
/// from a rounded probability, so values and gradients stay finite for logits of ±1e4. With
/// `activation = none` the input is a probability and the logs are clamped at −100, as PyTorch's
/// `BCELoss`. Each channel is an independent binary problem; a label-map target is one-hot encoded.
///
/// Oracle: `torch.nn.BCEWithLogitsLoss(pos_weight=β)` (and `BCELoss`). `ignore_index` follows the
/// PyTorch `CrossEntropyLoss` convention: ignored elements leave the mean's denominator
/// (smp's `SoftBCEWithLogitsLoss` divides by all elements; we do not). When every element is
/// ignored the mean is 0.
///
/// `mean` averages over all N·C·S counted elements.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::BceLossConfig;
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::from_floats([[[[0.0, 2.0], [-2.0, 0.0]]]], &device);
/// let mask = Tensor::<4>::from_floats([[[[0.0, 1.0], [0.0, 1.0]]]], &device);
/// let loss = BceLossConfig::new().init().forward(logits, mask, Reduction::Mean);
/// let v = loss.into_scalar::<f32>();
/// // (2·ln 2 + 2·ln(1 + e^-2)) / 4
/// assert!((v - 0.41003).abs() < 1e-4);
/// ```
#[derive(Module, Debug)]
pub struct BceLoss {
    /// β, the weight of the positive term.
    pub pos_weight: f64,
    /// Label smoothing s.
    pub label_smoothing: f64,
    /// Ignored target value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

pixel_loss_methods!(BceLoss);

impl SegLoss for BceLoss {
    fn name(&self) -> &'static str {
        "bce"
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
                allowed: &[Activation::Sigmoid, Activation::None],
                fallback: Activation::Sigmoid,
                ignore_index: self.ignore_index,
                loss: "bce",
            },
        )?;
        if p.activation == Activation::Sigmoid
            && p.valid.is_none()
            && reduction != LossReduction::None
        {
            if let Some(sums) =
                crate::fused::bce_sums(&p.x, &p.y(), self.pos_weight, self.label_smoothing)
            {
                let elements = p.valid_elements_from(0);
                return Ok(reduce_sums(&p, sums.sum(), elements, reduction));
            }
        }
        let s = self.label_smoothing;
        let y = if s > 0.0 {
            p.y().mul_scalar(1.0 - 2.0 * s).add_scalar(s)
        } else {
            p.y()
        };
        let beta = self.pos_weight;
        let map = match p.activation {
            Activation::None => {
                let (lp, l1mp) = p.log_p_and_log_1mp();
                let pos = if beta == 1.0 {
                    y.clone() * lp
                } else {
                    y.clone().mul_scalar(beta) * lp
                };
                (pos + y.neg().add_scalar(1.0) * l1mp).neg()
            }
            _ => {
                // −[β y ln σ(x) + (1 − y)(ln σ(x) − x)] = (1 − y)·x − (1 + (β − 1)·y)·ln σ(x)
                let ls = burn::tensor::activation::log_sigmoid(p.x.clone());
                let coef = if beta == 1.0 {
                    None
                } else {
                    Some(y.clone().mul_scalar(beta - 1.0).add_scalar(1.0))
                };
                let lin = y.neg().add_scalar(1.0) * p.x.clone();
                match coef {
                    Some(c) => lin - c * ls,
                    None => lin - ls,
                }
            }
        };
        Ok(reduce_map(&p, p.mask_valid(map), reduction))
    }
}
