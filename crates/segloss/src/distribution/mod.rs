//! Distribution-based losses: per-pixel cross-entropies and their weighted variants.

pub mod balanced_bce;
pub mod bce;
pub mod ce;
pub mod focal;
pub mod weighted_ce;

use crate::error::LossError;
use crate::loss::SegLoss;
use crate::registry::{Built, NONNEG, POS, UNIT, UNIT_OPEN};
use crate::spec::Args;
use crate::{
    BalancedBceLossConfig, BceLossConfig, CeLossConfig, FocalLossConfig, WeightedCeLossConfig,
};

/// The spec names of this family.
pub(crate) const NAMES: &[&str] = &["bce", "balanced_bce", "ce", "focal", "weighted_ce"];

/// Builds a loss of this family from a spec term (`None`: not one of ours).
pub(crate) fn build(a: &mut Args<'_>) -> Result<Option<Built>, LossError> {
    let name = a.term.name.clone();
    let keys: &[&str] = match name.as_str() {
        "bce" => &[
            "pos_weight",
            "label_smoothing",
            "ignore_index",
            "activation",
            "reduction",
        ],
        "balanced_bce" => &["activation", "reduction"],
        "ce" => &[
            "weight",
            "ignore_index",
            "label_smoothing",
            "activation",
            "reduction",
        ],
        "focal" => &[
            "gamma",
            "alpha",
            "weight",
            "activation",
            "ignore_index",
            "include_background",
            "reduction",
        ],
        "weighted_ce" => &["activation", "ignore_index", "reduction"],
        _ => return Ok(None),
    };
    a.check_keys(keys)?;
    let reduction = a.reduction()?;
    let loss: Box<dyn SegLoss> = match name.as_str() {
        "bce" => {
            let mut c = BceLossConfig::new();
            if let Some(v) = a.num("pos_weight", POS, "a number > 0")? {
                c = c.with_pos_weight(v);
            }
            if let Some(v) = a.num("label_smoothing", UNIT_OPEN, "a number in [0, 1)")? {
                c = c.with_label_smoothing(v);
            }
            c = c
                .with_ignore_index(a.int("ignore_index")?)
                .with_activation(a.activation()?);
            Box::new(c.try_init()?)
        }
        "balanced_bce" => Box::new(
            BalancedBceLossConfig::new()
                .with_activation(a.activation()?)
                .init(),
        ),
        "ce" => {
            if let Some(act) = a.activation()? {
                if act != crate::Activation::Softmax {
                    return Err(crate::LossError::param(
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
            Box::new(c.try_init()?)
        }
        "focal" => {
            let mut c = FocalLossConfig::new()
                .with_alpha(a.num("alpha", UNIT, "a number in [0, 1]")?)
                .with_weight(a.weights("weight")?)
                .with_activation(a.activation()?)
                .with_ignore_index(a.int("ignore_index")?);
            if let Some(b) = a.boolean("include_background")? {
                c = c.with_include_background(b);
            }
            if let Some(v) = a.num("gamma", NONNEG, "a number >= 0")? {
                c = c.with_gamma(v);
            }
            Box::new(c.try_init()?)
        }
        "weighted_ce" => Box::new(
            WeightedCeLossConfig::new()
                .with_activation(a.activation()?)
                .with_ignore_index(a.int("ignore_index")?)
                .init(),
        ),
        _ => unreachable!("checked above"),
    };
    Ok(Some((loss, reduction)))
}
