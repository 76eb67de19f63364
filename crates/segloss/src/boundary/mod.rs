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
use crate::input::{LossReduction, LossValue};
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

/// Reduces a per-sample-per-class matrix `[N', C']`.
pub(crate) fn reduce_matrix(m: Tensor<3>, reduction: LossReduction) -> LossValue {
    let [n, c, _] = m.dims();
    match reduction {
        LossReduction::Mean => LossValue::scalar(m.mean()),
        LossReduction::Sum => LossValue::scalar(m.sum()),
        LossReduction::BatchMean => LossValue::scalar(m.sum().div_scalar(n as f64)),
        LossReduction::None => LossValue {
            values: m.reshape([n * c]),
            shape: vec![n, c],
        },
    }
}

/// `forward`, `forward_no_reduction` (→ `[N, C']`) and `try_forward` for a loss whose
/// unreduced form is a per-sample-per-class matrix.
macro_rules! matrix_loss_methods {
    ($ty:ty) => {
        impl $ty {
            /// Computes the loss and reduces the `[N, C']` matrix (`Reduction::Auto` = mean).
            ///
            /// # Shapes
            ///
            /// - predictions: `[N, C, *spatial]`; targets: a mask of that shape or a label map
            ///   `[N, 1, *spatial]` / `[N, *spatial]`
            /// - output: `[1]`
            ///
            /// # Panics
            ///
            /// On invalid input (see [`try_forward`](Self::try_forward)).
            pub fn forward<const D: usize>(
                &self,
                predictions: burn::tensor::Tensor<D>,
                targets: impl Into<$crate::Target>,
                reduction: burn::nn::loss::Reduction,
            ) -> burn::tensor::Tensor<1> {
                $crate::error::or_panic(self.try_forward(predictions, targets, reduction.into()))
                    .values
            }

            /// The per-sample-per-class losses `[N, C']` (C' = channels kept).
            ///
            /// # Panics
            ///
            /// On invalid input.
            pub fn forward_no_reduction<const D: usize>(
                &self,
                predictions: burn::tensor::Tensor<D>,
                targets: impl Into<$crate::Target>,
            ) -> burn::tensor::Tensor<2> {
                let v = $crate::error::or_panic(self.try_forward(
                    predictions,
                    targets,
                    $crate::LossReduction::None,
                ));
                v.values.reshape([v.shape[0], v.shape[1]])
            }

            /// Computes the loss, returning a typed error on invalid input.
            pub fn try_forward<const D: usize>(
                &self,
                predictions: burn::tensor::Tensor<D>,
                targets: impl Into<$crate::Target>,
                reduction: $crate::LossReduction,
            ) -> Result<$crate::LossValue, $crate::LossError> {
                $crate::SegLoss::loss_value(
                    self,
                    $crate::Flat::from_tensor(predictions),
                    targets.into(),
                    None,
                    reduction,
                )
            }
        }
    };
}
pub(crate) use matrix_loss_methods;

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
