//! Boundary loss (Kervadec et al. 2019).

use burn::config::Config;
use burn::module::Module;

use super::maps::channel_maps;
use crate::error::LossError;
use crate::input::{prepare, reduce_map, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::spec::Args;
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
    /// The keys of `boundary` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] =
        &["include_background", "activation", "reduction"];

    /// The configuration of a spec term `boundary(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = BoundaryLossConfig::new().with_activation(a.choice("activation")?);
        if let Some(b) = a.boolean("include_background")? {
            c = c.with_include_background(b);
        }
        Ok(c)
    }
}

impl BoundaryLossConfig {
    /// Initializes a [boundary loss](BoundaryLoss).
    pub fn init(&self) -> BoundaryLoss {
        BoundaryLoss {
            include_background: self.include_background,
            activation: self.activation,
        }
    }

    /// [`init`](Self::init) in the fallible form every configuration has (this one cannot fail:
    /// every field value is valid).
    pub fn try_init(&self) -> Result<BoundaryLoss, LossError> {
        Ok(self.init())
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

impl BoundaryLoss {
    /// The boundary loss with a precomputed signed map φ `[N, C, *spatial]` (the data-loader path:
    /// compute φ once per sample with [`segloss_core::signed_distance_map`] instead of at every
    /// step), reduced as [`forward`](Self::forward).
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor, TensorData};
    /// use ndarray::{array, Array2};
    /// use segloss::{BoundaryLossConfig, Reduction};
    ///
    /// // In the data loader, once per sample:
    /// let mask = array![[0u8, 1, 1, 0], [0, 1, 1, 0]];
    /// let phi: Array2<f32> = segloss_core::signed_distance_map(&mask, None).unwrap();
    ///
    /// // In the training step:
    /// let device = Device::flex();
    /// let phi = Tensor::<4>::from_data(TensorData::new(phi.into_raw_vec_and_offset().0, [1, 1, 2, 4]), &device);
    /// let logits = Tensor::<4>::zeros([1, 1, 2, 4], &device);
    /// let loss = BoundaryLossConfig::new().init();
    /// let v = loss.forward_with_map(logits, phi, Reduction::Mean).into_scalar::<f32>();
    /// // p = 0.5 everywhere; φ = [1, 0, 0, 1] per row → mean 0.25
    /// assert!((v - 0.25).abs() < 1e-6);
    /// ```
    ///
    /// # Panics
    ///
    /// If the shapes differ or φ is not finite.
    pub fn forward_with_map<const D: usize>(
        &self,
        predictions: burn::tensor::Tensor<D>,
        phi: burn::tensor::Tensor<D>,
        reduction: burn::nn::loss::Reduction,
    ) -> burn::tensor::Tensor<1> {
        let pshape = predictions.dims().to_vec();
        let fshape = phi.dims().to_vec();
        if pshape != fshape {
            panic!(
                "{}",
                LossError::ShapeMismatch {
                    what: "signed map vs prediction".into(),
                    expected: pshape,
                    got: fshape,
                }
            );
        }
        crate::error::or_panic(crate::input::check_finite(&phi, "signed map"));
        // The target only fixes the shape here: an empty mask of the prediction's shape.
        let target = Target::mask(predictions.zeros_like());
        let p = crate::error::or_panic(prepare(
            Flat::from_tensor(predictions),
            target,
            &self.rules(),
        ));
        let phi = Flat::from_tensor(phi).values.reshape([p.n, p.c, p.s()]);
        let map = super::drop_background(p.probs() * phi, p.c, self.include_background);
        reduce_map(&p, map, reduction.into()).values
    }

    fn rules(&self) -> InputRules {
        InputRules::any_activation("boundary", self.activation)
    }
}

impl SegLoss for BoundaryLoss {
    fn name(&self) -> &'static str {
        "boundary"
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        no_weights(self.name(), &weights)?;
        let p = prepare(pred, target, &self.rules())?;
        let phi = channel_maps(&p, &p.y(), "signed distance map", |m| {
            segloss_core::signed_distance_map(&m, None)
        })?;
        let map = super::drop_background(p.probs() * phi, p.c, self.include_background);
        Ok(reduce_map(&p, map, reduction))
    }
}
