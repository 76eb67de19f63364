//! Boundary loss (Kervadec et al. 2019).

use burn::config::Config;
use burn::module::Module;

use super::maps::channel_maps;
use crate::error::LossError;
use crate::input::{prepare, reduce_map, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::Target;

/// Configuration to create a [boundary loss](BoundaryLoss).
#[derive(Config, Debug)]
pub struct BoundaryLossConfig {
    /// Whether channel 0 counts (default false; ignored when C = 1).
    #[config(default = false)]
    pub include_background: bool,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
}

impl BoundaryLossConfig {
    /// Initializes a [boundary loss](BoundaryLoss).
    pub fn init(&self) -> BoundaryLoss {
        BoundaryLoss {
            include_background: self.include_background,
            activation: self.activation,
        }
    }
}

/// Boundary loss (Kervadec et al. 2019, "Boundary loss for highly unbalanced segmentation"):
///
/// ```text
/// L = mean_{n, c ≥ c0, x}(p_c(x) · φ_c(x)),   φ = +EDT outside the object, −(EDT − 1) inside
/// ```
///
/// φ is the signed map of each target channel (`segloss_core::signed_distance_map`, Kervadec's
/// `one_hot2dist`), 0 for an empty or full channel, a constant of the graph. c0 = 1 unless
/// `include_background` or C = 1. The loss is negative when the prediction covers the object's
/// interior: it is meant to be added to a region loss (e.g. `dice + 0.01*boundary`), its minimum
/// is the prediction equal to the target.
///
/// Oracle: the formula, with scipy's EDT (`tools/reference/gen_losses.py`).
#[derive(Module, Debug)]
pub struct BoundaryLoss {
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

pixel_loss_methods!(BoundaryLoss);

impl SegLoss for BoundaryLoss {
    fn name(&self) -> &'static str {
        "boundary"
    }

    fn loss_value(
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
                ignore_index: None,
                loss: "boundary",
            },
        )?;
        let phi = channel_maps(&p, &p.y, "signed distance map", |m| {
            segloss_core::signed_distance_map(&m, None)
        })?;
        let map = super::drop_background(p.probs() * phi, p.c, self.include_background);
        Ok(reduce_map(&p, map, reduction))
    }
}
