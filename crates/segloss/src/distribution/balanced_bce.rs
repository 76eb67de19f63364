//! Balanced binary cross-entropy (Xie & Tu 2015).

use burn::config::Config;
use burn::module::Module;

use crate::error::LossError;
use crate::input::{prepare, reduce_map, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::spec::Args;
use crate::Target;

/// Configuration to create a [balanced BCE loss](BalancedBceLoss).
#[derive(Config, Debug)]
pub struct BalancedBceLossConfig {
    /// `Sigmoid` (logits, the default) or `None` (probabilities).
    pub activation: Option<Activation>,
}

impl BalancedBceLossConfig {
    /// The keys of `balanced_bce` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &["activation", "reduction"];

    /// The configuration of a spec term `balanced_bce(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        Ok(BalancedBceLossConfig::new().with_activation(a.choice("activation")?))
    }
}

impl BalancedBceLossConfig {
    /// Initializes a [balanced BCE loss](BalancedBceLoss).
    pub fn init(&self) -> BalancedBceLoss {
        BalancedBceLoss {
            activation: self.activation,
        }
    }

    /// [`init`](Self::init) in the fallible form every configuration has (this one cannot fail:
    /// every field value is valid).
    pub fn try_init(&self) -> Result<BalancedBceLoss, LossError> {
        Ok(self.init())
    }
}

/// Balanced binary cross-entropy (Xie & Tu 2015, "Holistically-nested edge detection"; the
/// survey's balanced CE): both terms weighted by the class frequencies of the batch,
///
/// ```text
/// L = −[β·y·ln p + (1 − β)·(1 − y)·ln(1 − p)],   β = 1 − mean(y)
/// ```
///
/// β is computed over the whole batch target and is a constant (no gradient through it). An
/// all-background target gives β = 1 (only the positive term, which is 0), an all-foreground one
/// β = 0: the loss is then 0 — documented, finite. Logs as in [`BceLoss`](crate::BceLoss).
///
/// Oracle: the formula (`docs/losses.md#balanced_bce`), written in PyTorch in `tools/reference/`.
#[derive(Module, Debug)]
pub struct BalancedBceLoss {
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

pixel_loss_methods!(BalancedBceLoss);

impl SegLoss for BalancedBceLoss {
    fn name(&self) -> &'static str {
        "balanced_bce"
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
                ignore_index: None,
                loss: "balanced_bce",
            },
        )?;
        let beta = p
            .y()
            .detach()
            .mean()
            .neg()
            .add_scalar(1.0)
            .reshape([1, 1, 1]);
        let (lp, l1mp) = p.log_p_and_log_1mp();
        let pos = p.y() * lp * beta.clone();
        let neg = p.y().neg().add_scalar(1.0) * l1mp * beta.neg().add_scalar(1.0);
        Ok(reduce_map(&p, (pos + neg).neg(), reduction))
    }
}
