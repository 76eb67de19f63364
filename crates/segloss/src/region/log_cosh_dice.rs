//! Log-cosh Dice loss (Jadon 2020).

use burn::config::Config;
use burn::module::Module;

use crate::error::LossError;
use crate::input::{prepare, Flat, LossReduction, LossValue};
use crate::loss::{no_weights, SegLoss};
use crate::region::dice::{DiceLoss, DiceLossConfig};
use crate::region::{reduce_matrix, region_loss_methods};
use crate::spec::Args;
use crate::Target;

/// Configuration to create a [log-cosh Dice loss](LogCoshDiceLoss): the options of the Dice loss
/// it is built on.
#[derive(Config, Debug)]
pub struct LogCoshDiceLossConfig {
    /// The Dice loss of each class (smoothing, power, jaccard, batch, include_background, weight,
    /// soft_label, activation, ignore_index).
    #[config(default = "DiceLossConfig::new()")]
    pub dice: DiceLossConfig,
}

impl LogCoshDiceLossConfig {
    /// The keys of `log_cosh_dice` in the spec grammar: those of `dice`.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = DiceLossConfig::SPEC_KEYS;

    /// The configuration of a spec term `log_cosh_dice(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        Ok(LogCoshDiceLossConfig::new().with_dice(DiceLossConfig::from_spec(a)?))
    }
}

impl LogCoshDiceLossConfig {
    /// Initializes a [log-cosh Dice loss](LogCoshDiceLoss).
    ///
    /// # Panics
    ///
    /// If a Dice parameter is out of range (see [`DiceLossConfig::try_init`]).
    pub fn init(&self) -> LogCoshDiceLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [log-cosh Dice loss](LogCoshDiceLoss), checking the Dice parameters.
    pub fn try_init(&self) -> Result<LogCoshDiceLoss, LossError> {
        Ok(LogCoshDiceLoss {
            dice: self.dice.try_init()?,
        })
    }
}

/// Log-cosh Dice loss (Jadon 2020, "A survey of loss functions for semantic segmentation"):
///
/// ```text
/// ℓ_{n,c} = w_c · ln(cosh(dice_{n,c}))
/// ```
///
/// with `dice_{n,c}` the unweighted [Dice loss](DiceLoss) of sample n and class c (all its
/// options apply: smoothing, power, jaccard, batch, include_background, soft_label,
/// ignore_index) and w_c the optional class weight, applied after the log-cosh (it weighs the
/// class's final loss, as for every other region loss). ln cosh is smooth and flat at 0, so the
/// gradient fades as the Dice loss approaches 0.
///
/// Loss matrix: `[N, C']` (`[1, C']` with `batch = true`); `mean` averages it.
///
/// Range: [0, ln cosh 1 ≈ 0.4338] with equal smoothing terms. Edge cases as [`DiceLoss`] (an
/// empty target with an empty prediction gives ln cosh of a value near 1).
///
/// Oracle: `log(cosh(monai.losses.DiceLoss(reduction="none")(x, y)))`, then the reduction.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::{DiceLossConfig, LogCoshDiceLossConfig};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::from_floats([[[[1.0, -1.0], [-1.0, 1.0]]]], &device);
/// let mask = Tensor::<4>::from_floats([[[[1.0, 0.0], [1.0, 1.0]]]], &device);
/// let dice = DiceLossConfig::new().with_smooth(1e-6);
/// let loss = LogCoshDiceLossConfig::new().with_dice(dice).init();
/// let v = loss.forward(logits, mask, Reduction::Mean).into_scalar::<f32>();
/// assert!((v - 0.307576f32.cosh().ln()).abs() < 1e-5);
/// ```
#[derive(Module, Debug)]
pub struct LogCoshDiceLoss {
    /// The Dice loss of each class.
    pub dice: DiceLoss,
}

region_loss_methods!(LogCoshDiceLoss);

impl SegLoss for LogCoshDiceLoss {
    fn name(&self) -> &'static str {
        "log_cosh_dice"
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        no_weights(self.name(), &weights)?;
        let p = prepare(pred, target, &self.dice.rules("log_cosh_dice"))?;
        let m = self.dice.matrix(&p).cosh().log();
        let m = self.dice.weighted(&p, m)?;
        Ok(reduce_matrix(m, reduction))
    }
}
