//! Weighted sums of losses: [`LossSpec::build`] and the [`CompositeLoss`] it builds.

use burn::tensor::Tensor;

use super::fusion::{fused_sum, FusionTerm};
use crate::error::LossError;
use crate::input::{Flat, LossReduction, LossValue, Target};
use crate::loss::SegLoss;
use crate::registry;
use crate::spec::{Args, LossSpec};

impl LossSpec {
    /// Builds the loss: every name, key and value is checked against the catalogue.
    pub fn build(&self) -> Result<CompositeLoss, LossError> {
        let mut terms = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            let (loss, reduction) = registry::build(&Args::new(&self.source, t))?;
            terms.push(CompositeTerm {
                weight: t.weight,
                loss,
                reduction,
            });
        }
        if terms.len() > 1
            && terms
                .iter()
                .any(|t| t.reduction == Some(LossReduction::None))
        {
            return Err(LossError::param(
                "reduction",
                "none",
                "reduction=none is only allowed in a single-term spec",
            ));
        }
        Ok(CompositeLoss {
            spec: self.source.clone(),
            terms,
        })
    }
}

/// One weighted term of a [`CompositeLoss`].
#[derive(Debug)]
pub struct CompositeTerm {
    /// The term's weight (sign included).
    pub weight: f64,
    /// The loss.
    pub loss: Box<dyn SegLoss>,
    /// The term's own reduction (`None`: the one the composite is called with).
    pub reduction: Option<LossReduction>,
}

/// A weighted sum of losses, built from a [`LossSpec`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use segloss::{LossSpec, LossReduction};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::from_floats([[[[0.0, 2.0], [-2.0, 0.0]]]], &device);
/// let mask = Tensor::<4>::from_floats([[[[0.0, 1.0], [0.0, 1.0]]]], &device);
/// let loss = LossSpec::parse("0.5*bce + 0.5*bce(pos_weight=1)").unwrap().build().unwrap();
/// let v = loss.forward(logits, mask, None).into_scalar::<f32>();
/// assert!((v - 0.41003).abs() < 1e-4);
/// ```
#[derive(Debug)]
pub struct CompositeLoss {
    /// The spec it was built from.
    pub spec: String,
    /// The terms.
    pub terms: Vec<CompositeTerm>,
}

impl CompositeLoss {
    /// Whether any term needs a weight map.
    pub fn needs_weights(&self) -> bool {
        self.terms.iter().any(|t| t.loss.needs_weights())
    }

    /// Computes the loss (each term with its own reduction, `mean` by default).
    ///
    /// # Panics
    ///
    /// On invalid input, with the message of the [`LossError`]; see [`try_forward`](Self::try_forward).
    pub fn forward<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
        weights: Option<Tensor<D>>,
    ) -> Tensor<1> {
        crate::error::or_panic(self.try_forward(predictions, targets, weights, LossReduction::Mean))
            .values
    }

    /// Computes the loss, returning a typed error on invalid input.
    pub fn try_forward<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
        weights: Option<Tensor<D>>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        self.loss_value(
            Flat::from_tensor(predictions),
            targets.into(),
            weights.map(Flat::from_tensor),
            reduction,
        )
    }
}

impl SegLoss for CompositeLoss {
    fn name(&self) -> &'static str {
        "composite"
    }

    fn needs_weights(&self) -> bool {
        CompositeLoss::needs_weights(self)
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        if weights.is_some() && !self.needs_weights() {
            return Err(LossError::param(
                "weights",
                "a weight map",
                format!(
                    "'{}' takes no weight map (only weighted_ce does)",
                    self.spec
                ),
            ));
        }
        let parts = self
            .terms
            .iter()
            .map(|t| FusionTerm {
                weight: t.weight,
                part: t.loss.sum_part(),
                reduction: t.reduction.unwrap_or(reduction),
            })
            .collect();
        if let Some(v) = fused_sum(parts, &pred, &target)? {
            return Ok(v);
        }
        let mut total: Option<LossValue> = None;
        for t in &self.terms {
            let red = t.reduction.unwrap_or(reduction);
            if self.terms.len() > 1 && red == LossReduction::None {
                return Err(LossError::param(
                    "reduction",
                    "none",
                    "reduction=none is only allowed in a single-term spec",
                ));
            }
            let w = if t.loss.needs_weights() {
                weights.clone()
            } else {
                None
            };
            let v = t.loss.compute(pred.clone(), target.clone(), w, red)?;
            let v = if t.weight == 1.0 {
                v
            } else {
                LossValue {
                    values: v.values.mul_scalar(t.weight),
                    shape: v.shape,
                }
            };
            total = Some(match total {
                None => v,
                Some(acc) => LossValue {
                    values: acc.values + v.values,
                    shape: acc.shape,
                },
            });
        }
        Ok(total.expect("a spec has at least one term"))
    }
}
