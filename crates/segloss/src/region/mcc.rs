//! Matthews-correlation-coefficient loss (Abhishek & Hamarneh 2021), smp's definition.

use burn::config::Config;
use burn::module::Module;

use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, SegLoss};
use crate::region::{reduce_matrix, region_inputs, region_loss_methods, ALL_ACTIVATIONS};
use crate::spec::{Args, POS};
use crate::Target;

/// Configuration to create an [MCC loss](MccLoss).
#[derive(Config, Debug)]
pub struct MccLossConfig {
    /// ε > 0 added to each of TP, TN, FP, FN.
    #[config(default = 1e-5)]
    pub eps: f64,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`
    /// (probabilities, as smp takes them).
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute to no count.
    pub ignore_index: Option<i64>,
}

impl MccLossConfig {
    /// The keys of `mcc` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] =
        &["eps", "ignore_index", "activation", "reduction"];

    /// The configuration of a spec term `mcc(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = MccLossConfig::new();
        if let Some(v) = a.num("eps", POS, "a number > 0")? {
            c = c.with_eps(v);
        }
        Ok(c.with_ignore_index(a.int("ignore_index")?)
            .with_activation(a.choice("activation")?))
    }
}

impl MccLossConfig {
    /// Initializes an [MCC loss](MccLoss).
    ///
    /// # Panics
    ///
    /// If ε is not a finite number > 0.
    pub fn init(&self) -> MccLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes an [MCC loss](MccLoss), checking ε > 0.
    pub fn try_init(&self) -> Result<MccLoss, LossError> {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(LossError::param("eps", self.eps, "a finite number > 0"));
        }
        Ok(MccLoss {
            eps: self.eps,
            activation: self.activation,
            ignore_index: self.ignore_index,
        })
    }
}

/// Matthews-correlation-coefficient loss (Abhishek & Hamarneh 2021, "Matthews correlation
/// coefficient loss for deep convolutional networks: application to skin lesion segmentation"),
/// as smp's `MCCLoss`:
///
/// ```text
/// ℓ = 1 − (TP·TN − FP·FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN))
/// TP = Σ p·y + ε,  TN = Σ (1 − p)(1 − y) + ε,  FP = Σ p·(1 − y) + ε,  FN = Σ (1 − p)·y + ε
/// ```
///
/// with soft counts summed over the whole batch and every channel at once. The square root is
/// taken as `sqrt((TP + FP)(TP + FN))·sqrt((TN + FP)(TN + FN))`, so large volumes do not
/// overflow f32.
///
/// Loss matrix: `[1, 1]`.
///
/// Range: [0, 2] (0 perfect, 1 uncorrelated, 2 inverted).
///
/// Edge cases: the counts are over the whole batch, so a single empty sample changes nothing
/// special; an empty target (whole batch) with an empty prediction → TP, FP, FN are ε alone and
/// the loss is 0.5 (no correlation can be measured), with a non-empty prediction → close to 1;
/// all-foreground target and prediction → 0.5 as well (smp's own test); all-background
/// prediction of an all-foreground target → 1.5; soft labels → the soft counts as written;
/// C = 1 with softmax → an error; `ignore_index` everywhere → every count is ε, MCC = 0 and the
/// loss is 1.
///
/// Oracle: `segmentation_models_pytorch.losses.MCCLoss(eps)` (smp applies no activation: the
/// sigmoid cases give it `sigmoid(x)`).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::{Activation, MccLossConfig};
///
/// let device = Device::flex();
/// let p = Tensor::<3>::from_floats([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], &device);
/// let loss = MccLossConfig::new().with_activation(Some(Activation::None)).init();
/// let perfect = loss.forward(p.clone(), p.clone(), Reduction::Mean).into_scalar::<f32>();
/// let inverted = loss.forward(p.clone(), p.neg().add_scalar(1.0), Reduction::Mean);
/// assert!(perfect.abs() < 1e-5);
/// assert!((inverted.into_scalar::<f32>() - 2.0).abs() < 1e-5);
/// ```
#[derive(Module, Debug)]
pub struct MccLoss {
    /// ε.
    pub eps: f64,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(MccLoss);

impl SegLoss for MccLoss {
    fn name(&self) -> &'static str {
        "mcc"
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
                loss: "mcc",
            },
        )?;
        let (probs, q, y) = region_inputs(&p, true);
        let ny = p.mask_valid(y.clone().neg().add_scalar(1.0));
        let e = self.eps;
        let tp = (probs.clone() * y.clone()).sum().add_scalar(e);
        let tn = (q.clone() * ny.clone()).sum().add_scalar(e);
        let fp = (probs * ny).sum().add_scalar(e);
        let fn_ = (q * y).sum().add_scalar(e);
        let num = tp.clone() * tn.clone() - fp.clone() * fn_.clone();
        let den = ((tp.clone() + fp.clone()) * (tp + fn_.clone())).sqrt()
            * ((tn.clone() + fp) * (tn + fn_)).sqrt();
        let m = (num / den).neg().add_scalar(1.0).reshape([1, 1]);
        Ok(reduce_matrix(m, reduction))
    }
}
