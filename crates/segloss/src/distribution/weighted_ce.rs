//! Cross-entropy weighted by a per-pixel weight map (the form the U-Net / shape-aware losses take).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::distribution::ce::{reduce_pixel_map, softmax_ce_map};
use crate::error::LossError;
use crate::input::{
    prepare, prepare_weights, reduce_map, Activation, Flat, InputRules, LossReduction, LossValue,
};
use crate::loss::SegLoss;
use crate::spec::Args;
use crate::Target;

/// Configuration to create a [weighted cross-entropy loss](WeightedCeLoss).
#[derive(Config, Debug)]
pub struct WeightedCeLossConfig {
    /// `Sigmoid` (default for masks: BCE per element), `Softmax` (default for label maps with
    /// C ≥ 2: CE per pixel) or `None` (probabilities, BCE per element).
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute nothing and leave the mean's denominator.
    pub ignore_index: Option<i64>,
}

impl WeightedCeLossConfig {
    /// The keys of `weighted_ce` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] =
        &["activation", "ignore_index", "reduction"];

    /// The configuration of a spec term `weighted_ce(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        Ok(WeightedCeLossConfig::new()
            .with_activation(a.choice("activation")?)
            .with_ignore_index(a.int("ignore_index")?))
    }
}

impl WeightedCeLossConfig {
    /// Initializes a [weighted CE loss](WeightedCeLoss).
    pub fn init(&self) -> WeightedCeLoss {
        WeightedCeLoss {
            activation: self.activation,
            ignore_index: self.ignore_index,
        }
    }

    /// [`init`](Self::init) in the fallible form every configuration has (this one cannot fail:
    /// every field value is valid).
    pub fn try_init(&self) -> Result<WeightedCeLoss, LossError> {
        Ok(self.init())
    }
}

/// Cross-entropy weighted by a per-pixel weight map W (Ronneberger et al. 2015: the U-Net weight
/// map; the source's shape-aware loss is this with W from [`segloss_core`]'s weight map):
///
/// ```text
/// sigmoid:  mean(W ⊙ BCE(x, y))   over N·C·S elements (W broadcasts over the channels)
/// softmax:  mean(W ⊙ CE(x, y))    over N·S pixels, CE = −Σ_c y_c·ln softmax(x)_c
/// ```
///
/// W is `[N, 1, *spatial]`, `[N, *spatial]` or (sigmoid mode) `[N, C, *spatial]`; it must be finite
/// and ≥ 0. It is a constant: no gradient flows into it.
///
/// Oracle: `(torch.nn.BCEWithLogitsLoss(reduction="none")(x, y) * W).mean()` and the same with
/// `CrossEntropyLoss(reduction="none")`.
#[derive(Module, Debug)]
pub struct WeightedCeLoss {
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

impl WeightedCeLoss {
    /// Computes the loss and reduces it.
    ///
    /// # Shapes
    ///
    /// - predictions: `[N, C, *spatial]`
    /// - targets: a mask `[N, C, *spatial]` or a label map `[N, 1, *spatial]` / `[N, *spatial]`
    /// - weights: `[N, 1, *spatial]` or `[N, C, *spatial]`
    /// - output: `[1]`
    ///
    /// # Panics
    ///
    /// On invalid input (see [`try_forward`](Self::try_forward)).
    pub fn forward<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
        weights: Tensor<D>,
        reduction: burn::nn::loss::Reduction,
    ) -> Tensor<1> {
        crate::error::or_panic(self.try_forward(predictions, targets, weights, reduction.into()))
            .values
    }

    /// The per-element (sigmoid) or per-pixel (softmax, `C' = 1`) weighted loss map,
    /// `[N, C', *spatial]`.
    ///
    /// # Panics
    ///
    /// On invalid input, as [`forward`](Self::forward).
    pub fn forward_no_reduction<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
        weights: Tensor<D>,
    ) -> Tensor<D> {
        let mut dims = predictions.dims();
        let v = crate::error::or_panic(self.try_forward(
            predictions,
            targets,
            weights,
            LossReduction::None,
        ));
        let numel: usize = v.shape.iter().product();
        dims[1] = numel / (dims.iter().product::<usize>() / dims[1]);
        v.values.reshape(dims)
    }

    /// Computes the loss, returning a typed error on invalid input (shapes, non-finite or negative
    /// weights, and the errors of every loss).
    pub fn try_forward<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
        weights: Tensor<D>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        self.loss_value(
            Flat::from_tensor(predictions),
            targets.into(),
            Some(Flat::from_tensor(weights)),
            reduction,
        )
    }
}

impl SegLoss for WeightedCeLoss {
    fn name(&self) -> &'static str {
        "weighted_ce"
    }

    fn needs_weights(&self) -> bool {
        true
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        let Some(weights) = weights else {
            return Err(LossError::param(
                "weights",
                "none",
                "weighted_ce needs a per-pixel weight map (--weights W)",
            ));
        };
        let p = prepare(
            pred,
            target,
            &InputRules {
                activation: self.activation,
                allowed: &[Activation::Sigmoid, Activation::Softmax, Activation::None],
                fallback: Activation::Sigmoid,
                ignore_index: self.ignore_index,
                loss: "weighted_ce",
            },
        )?;
        let softmax = p.activation == Activation::Softmax;
        let w = prepare_weights(&p, weights, !softmax)?;
        Ok(weighted_ce_prepared(&p, w, reduction))
    }
}

/// `mean(W ⊙ CE)` on a prepared input: W `[N, 1 or C, S]` (sigmoid/none: BCE per element, mean over
/// N·C·S) or `[N, 1, S]` (softmax: CE per pixel, mean over N·S). Shared with the boundary losses.
pub(crate) fn weighted_ce_prepared(
    p: &crate::input::Prepared,
    w: Tensor<3>,
    reduction: LossReduction,
) -> LossValue {
    if p.activation == Activation::Softmax {
        let (map, _) = softmax_ce_map(p, None, 0.0).expect("no class weights, no error");
        let denom = crate::input::const_tensor(&p.x, vec![p.n_valid as f64], [1]);
        reduce_pixel_map(p, map * w, denom, reduction)
    } else {
        if p.activation == Activation::Sigmoid
            && p.valid.is_none()
            && reduction != LossReduction::None
        {
            if let Some(sums) = crate::fused::wbce_sums(&p.x, &p.y(), &w) {
                let count = p.valid_elements_from(0);
                return crate::input::reduce_sums(p, sums.sum(), count, reduction);
            }
        }
        let (lp, l1mp) = p.log_p_and_log_1mp();
        let y = p.y();
        let bce = (y.clone() * lp + y.neg().add_scalar(1.0) * l1mp).neg();
        reduce_map(p, p.mask_valid(bce * w), reduction)
    }
}
