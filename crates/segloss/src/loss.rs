//! The rank-erased interface every segloss loss implements, used by the spec grammar, composite
//! losses and the CLI.

use crate::error::LossError;
use crate::input::{Flat, LossReduction, LossValue, Target};

/// A segmentation loss applied to a prediction `[N, C, *spatial]`, a [`Target`] and, for losses
/// that take one, a per-pixel weight map.
///
/// This is the object-safe form used by [`LossSpec`](crate::LossSpec) and the CLI; each loss also
/// has burn-style inherent `forward` / `forward_no_reduction` methods on ranked tensors.
pub trait SegLoss: std::fmt::Debug + Send + Sync {
    /// The loss's name in the spec grammar (e.g. `"bce"`).
    fn name(&self) -> &'static str;

    /// Whether the loss needs a per-pixel weight map (`weighted_ce`).
    fn needs_weights(&self) -> bool {
        false
    }

    /// Computes the loss.
    ///
    /// `reduction = None` gives the per-element map (pixel-wise losses) or the `[N, C]` matrix
    /// (region losses); the other reductions give a `[1]` value.
    ///
    /// This is [`compute`](Self::compute) followed by one check of the result: a loss that
    /// comes out NaN or infinite from inputs that passed every check (finite predictions and
    /// weights, targets in range) is returned as [`LossError::NonFiniteLoss`], never silently.
    /// That happens only with parameters so large that f32 arithmetic overflows (for example
    /// `TverskyLossConfig::new().with_alpha(1e128)`; the spec grammar bounds every number at
    /// 1e12 for this reason).
    fn loss_value(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        let v = self.compute(pred, target, weights, reduction)?;
        check_finite_loss(self.name(), &v)?;
        Ok(v)
    }

    /// The part this loss can take in a fused weighted sum (see [`SumPart`]): a declared
    /// capability, read by [`CompositeLoss`](crate::CompositeLoss). `None`, the default: the loss
    /// is always computed on its own. Implementors outside segloss leave it at `None`.
    fn sum_part(&self) -> Option<SumPart> {
        None
    }

    /// The computation behind [`loss_value`](Self::loss_value), without its final finiteness
    /// check. Implementors provide this; callers use `loss_value` (compound losses call their
    /// terms' `compute` and check the sum once).
    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError>;
}

/// What a loss can contribute to a fused weighted sum.
///
/// A [`CompositeLoss`](crate::CompositeLoss) whose terms all declare a part (through
/// [`SegLoss::sum_part`]) and combine into a sum the CPU kernels compute in one pass — today one
/// Dice/Jaccard term plus softmax cross-entropy terms, MONAI's `DiceCELoss` — runs as that one
/// pass: one value check, one softmax forward and one backward for all terms. Any other sum,
/// backend or input computes the terms one by one; the value and gradient are the same either
/// way (tested). A loss declares a part only for the options the fused pass implements exactly.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SumPart {
    /// Softmax cross-entropy on label targets, without class weights, label smoothing or
    /// ignored label.
    SoftmaxCe,
    /// Dice or Jaccard statistics of softmax probabilities (activation softmax or resolved to
    /// it), power 1 or 2, hard statistics (`soft_label = false`), no ignored label.
    Dice(DicePart),
}

/// The parameters of a Dice / Jaccard term in a fused sum (see [`SumPart::Dice`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DicePart {
    /// The loss's spec name, for error messages (`dice`, `jaccard`).
    pub name: &'static str,
    /// The Jaccard form.
    pub jaccard: bool,
    /// Power 2 (`Σp²`, `Σy²`) instead of 1 in the denominator.
    pub squared: bool,
    /// The numerator's smoothing term.
    pub smooth_nr: f64,
    /// The denominator's smoothing term.
    pub smooth_dr: f64,
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// Statistics over the whole batch.
    pub batch: bool,
    /// Class weights, one per channel (or per kept channel).
    pub weight: Option<Vec<f64>>,
}

/// [`LossError::NonFiniteLoss`] if any value of a computed loss is NaN or infinite (one fused
/// pass on the CPU; a `[1]` read for reduced losses). Skipped with the other value checks
/// ([`set_value_checks`](crate::set_value_checks)).
pub(crate) fn check_finite_loss(name: &str, v: &LossValue) -> Result<(), LossError> {
    if !crate::value_checks() {
        return Ok(());
    }
    match crate::input::check_finite(&v.values, "loss") {
        Ok(()) => Ok(()),
        Err(_) => Err(LossError::NonFiniteLoss {
            loss: name.to_string(),
        }),
    }
}

/// `forward`, `forward_no_reduction` and `try_forward` for a pixel-wise loss without weight map.
macro_rules! pixel_loss_methods {
    ($ty:ty) => {
        impl $ty {
            /// Computes the loss and reduces it.
            ///
            /// `Reduction::Auto` behaves as `Reduction::Mean`.
            ///
            /// # Shapes
            ///
            /// - predictions: `[N, C, *spatial]` (1 to 3 spatial dims)
            /// - targets: a mask `[N, C, *spatial]` (`Tensor<D>`) or a label map `[N, 1, *spatial]` /
            ///   `[N, *spatial]` (`Tensor<D, Int>` or `Tensor<D-1, Int>`)
            /// - output: `[1]`
            ///
            /// # Panics
            ///
            /// On invalid input (see [`try_forward`](Self::try_forward) for the error list), with a
            /// message stating the expected and received values, as burn's own losses do.
            pub fn forward<const D: usize>(
                &self,
                predictions: burn::tensor::Tensor<D>,
                targets: impl Into<$crate::Target>,
                reduction: burn::nn::loss::Reduction,
            ) -> burn::tensor::Tensor<1> {
                $crate::error::or_panic(self.try_forward(predictions, targets, reduction.into()))
                    .values
            }

            /// Computes the loss without reduction: the per-element map, `[N, C', *spatial]`.
            ///
            /// # Panics
            ///
            /// On invalid input, as [`forward`](Self::forward).
            pub fn forward_no_reduction<const D: usize>(
                &self,
                predictions: burn::tensor::Tensor<D>,
                targets: impl Into<$crate::Target>,
            ) -> burn::tensor::Tensor<D> {
                let dims = predictions.dims();
                let v = $crate::error::or_panic(self.try_forward(
                    predictions,
                    targets,
                    $crate::LossReduction::None,
                ));
                let numel = v.shape.iter().product::<usize>();
                let mut shape = dims;
                shape[1] = numel / (dims.iter().product::<usize>() / dims[1]);
                v.values.reshape(shape)
            }

            /// Computes the loss, returning a typed error on invalid input: shape mismatch, empty
            /// tensors, non-finite predictions, labels outside `0..C` (other than `ignore_index`),
            /// mask values outside [0, 1], an activation the loss does not support.
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
pub(crate) use pixel_loss_methods;

/// Rejects a weight map given to a loss that takes none.
pub(crate) fn no_weights(name: &str, weights: &Option<Flat>) -> Result<(), LossError> {
    if weights.is_some() {
        return Err(LossError::param(
            "weights",
            "a weight map",
            format!("{name} takes no weight map (only weighted_ce and the compound sums containing it do)"),
        ));
    }
    Ok(())
}
