//! Boundary-based losses: losses that look at the shape of the target (and of the prediction)
//! through distance maps, weight maps and skeletons computed by `segloss-core`.

pub mod boundary_loss;
pub mod cldice;
pub mod contour_ce;
pub mod distance_penalized_ce;
pub mod hausdorff_dt;
pub(crate) mod maps;
pub mod shape_aware;

use burn::tensor::Tensor;

use crate::error::LossError;
use crate::loss::SegLoss;
use crate::registry::{Built, NONNEG, POS};
use crate::spec::Args;
use crate::{
    BoundaryLossConfig, ClDiceLossConfig, ContourCeLossConfig, DistancePenalizedCeLossConfig,
    HausdorffDtLossConfig, ShapeAwareLossConfig, UnetClassWeight,
};

/// The spec names of this family.
pub(crate) const NAMES: &[&str] = &[
    "shape_aware",
    "contour_ce",
    "hausdorff_dt",
    "boundary",
    "cldice",
    "distance_penalized_ce",
];

/// Drops channel 0 of `[N, C, S]` unless `include_background` or C = 1.
pub(crate) fn drop_background(t: Tensor<3>, c: usize, include_background: bool) -> Tensor<3> {
    if include_background || c == 1 {
        t
    } else {
        t.narrow(1, 1, c - 1)
    }
}

/// Builds a loss of this family from a spec term (`None`: not one of ours).
pub(crate) fn build(a: &mut Args<'_>) -> Result<Option<Built>, LossError> {
    let keys: &[&str] = match a.term.name.as_str() {
        "shape_aware" => &["w0", "sigma", "class_weight", "activation", "reduction"],
        "hausdorff_dt" => &[
            "alpha",
            "include_background",
            "batch",
            "activation",
            "reduction",
        ],
        "boundary" => &["include_background", "activation", "reduction"],
        "cldice" => &[
            "iter",
            "smooth",
            "include_background",
            "activation",
            "reduction",
        ],
        "distance_penalized_ce" | "contour_ce" => &["activation", "reduction"],
        _ => return Ok(None),
    };
    a.check_keys(keys)?;
    let reduction = a.reduction()?;
    let act = a.activation()?;
    let loss: Box<dyn SegLoss> = match a.term.name.as_str() {
        "shape_aware" => {
            let mut c = ShapeAwareLossConfig::new().with_activation(act);
            if let Some(v) = a.num("w0", NONNEG, "a number >= 0")? {
                c = c.with_w0(v);
            }
            if let Some(v) = a.num("sigma", POS, "a number > 0")? {
                c = c.with_sigma(v);
            }
            if let Some(w) = a.word("class_weight", &["balanced", "none"])? {
                c = c.with_class_weight(if w == "none" {
                    UnetClassWeight::None
                } else {
                    UnetClassWeight::Balanced
                });
            }
            Box::new(c.try_init()?)
        }
        "hausdorff_dt" => {
            let mut c = HausdorffDtLossConfig::new().with_activation(act);
            if let Some(v) = a.num("alpha", POS, "a number > 0")? {
                c = c.with_alpha(v);
            }
            if let Some(b) = a.boolean("include_background")? {
                c = c.with_include_background(b);
            }
            if let Some(b) = a.boolean("batch")? {
                c = c.with_batch(b);
            }
            Box::new(c.try_init()?)
        }
        "boundary" => {
            let mut c = BoundaryLossConfig::new().with_activation(act);
            if let Some(b) = a.boolean("include_background")? {
                c = c.with_include_background(b);
            }
            Box::new(c.init())
        }
        "cldice" => {
            let mut c = ClDiceLossConfig::new().with_activation(act);
            if let Some(v) = a.int("iter")? {
                if !(0..=100).contains(&v) {
                    return Err(LossError::param("iter", v, "an integer in 0..=100"));
                }
                c = c.with_iter(v as usize);
            }
            if let Some(v) = a.num("smooth", NONNEG, "a number >= 0")? {
                c = c.with_smooth(v);
            }
            if let Some(b) = a.boolean("include_background")? {
                c = c.with_include_background(b);
            }
            Box::new(c.try_init()?)
        }
        "distance_penalized_ce" => Box::new(
            DistancePenalizedCeLossConfig::new()
                .with_activation(act)
                .init(),
        ),
        "contour_ce" => Box::new(ContourCeLossConfig::new().with_activation(act).init()),
        _ => unreachable!("checked above"),
    };
    Ok(Some((loss, reduction)))
}
