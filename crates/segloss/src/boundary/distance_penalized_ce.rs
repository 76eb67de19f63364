//! Distance-penalised cross-entropy (Caliva et al. 2019).

use burn::config::Config;
use burn::module::Module;

use super::maps::channel_maps;
use crate::distribution::weighted_ce::weighted_ce_prepared;
use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::spec::Args;
use crate::Target;

/// Configuration to create a [distance-penalised CE loss](DistancePenalizedCeLoss).
#[derive(Config, Debug)]
pub struct DistancePenalizedCeLossConfig {
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
}

impl DistancePenalizedCeLossConfig {
    /// The keys of `distance_penalized_ce` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &["activation", "reduction"];

    /// The configuration of a spec term `distance_penalized_ce(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        Ok(DistancePenalizedCeLossConfig::new().with_activation(a.choice("activation")?))
    }
}

impl DistancePenalizedCeLossConfig {
    /// Initializes a [distance-penalised CE loss](DistancePenalizedCeLoss).
    pub fn init(&self) -> DistancePenalizedCeLoss {
        DistancePenalizedCeLoss {
            activation: self.activation,
        }
    }

    /// [`init`](Self::init) in the fallible form every configuration has (this one cannot fail:
    /// every field value is valid).
    pub fn try_init(&self) -> Result<DistancePenalizedCeLoss, LossError> {
        Ok(self.init())
    }
}

/// Distance-penalised cross-entropy (Caliva et al. 2019, "Distance map loss penalty term for
/// semantic segmentation"): cross-entropy weighted by `1 + Φ`, Φ ∈ [0, 1] the penalty map of the
/// target (1 at the boundary, falling to 0 at the farthest voxel of each side; `docs/maps.md`):
///
/// ```text
/// sigmoid:  mean_{n,c,x}((1 + Φ_c) ⊙ BCE)
/// softmax:  mean_{n,x}((1 + Φ_t(x)) ⊙ CE),   t(x) the true class, Φ_k the map of one-hot channel k
/// ```
///
/// Φ is computed per sample and channel by `segloss-core` on a detached copy (no gradient). An
/// empty or full target channel has Φ = 0: the loss is then plain cross-entropy.
///
/// Oracle: the formula with scipy's EDT (`tools/reference/gen_losses.py`).
#[derive(Module, Debug)]
pub struct DistancePenalizedCeLoss {
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

pixel_loss_methods!(DistancePenalizedCeLoss);

impl SegLoss for DistancePenalizedCeLoss {
    fn name(&self) -> &'static str {
        "distance_penalized_ce"
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
            &InputRules::any_activation("distance_penalized_ce", self.activation),
        )?;
        let phi = channel_maps(&p, &p.y(), "penalty map", |m| {
            segloss_core::penalty_map(&m, None)
        })?;
        let w = if p.activation == Activation::Softmax {
            (phi * p.y()).sum_dim(1).add_scalar(1.0)
        } else {
            phi.add_scalar(1.0)
        };
        Ok(weighted_ce_prepared(&p, w, reduction))
    }
}
