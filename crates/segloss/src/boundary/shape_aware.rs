//! The source's shape-aware loss: cross-entropy weighted by the U-Net weight map of the target.

use burn::config::Config;
use burn::module::Module;
use segloss_core::{ClassWeight, Connectivity, WeightMapConfig};

use super::maps::{fill_images, target_masks};
use crate::distribution::weighted_ce::weighted_ce_prepared;
use crate::error::LossError;
use crate::input::{
    const_tensor, const_tensor_of, deferred_checks, host_f32, prepare_deferred, Activation, Flat,
    InputRules, LossReduction, LossValue,
};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::spec::{Args, SpecWord, NONNEG, POS};
use crate::transfer::read;
use crate::Target;

/// `w_c` of the U-Net weight map.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum UnetClassWeight {
    /// `N / (2·N_k)` for background and foreground, per sample and channel.
    Balanced,
    /// 1 everywhere.
    None,
}

/// Configuration to create a [shape-aware loss](ShapeAwareLoss).
#[derive(Config, Debug)]
pub struct ShapeAwareLossConfig {
    /// Height of the border term w0 (default 10).
    #[config(default = 10.0)]
    pub w0: f64,
    /// Width of the border term σ in pixels (default 5).
    #[config(default = 5.0)]
    pub sigma: f64,
    /// The class-weight term w_c (default balanced).
    #[config(default = "UnetClassWeight::Balanced")]
    pub class_weight: UnetClassWeight,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
}

impl SpecWord for UnetClassWeight {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("balanced", UnetClassWeight::Balanced),
        ("none", UnetClassWeight::None),
    ];
}

impl ShapeAwareLossConfig {
    /// The keys of `shape_aware` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] =
        &["w0", "sigma", "class_weight", "activation", "reduction"];

    /// The configuration of a spec term `shape_aware(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = ShapeAwareLossConfig::new().with_activation(a.choice("activation")?);
        if let Some(v) = a.num("w0", NONNEG, "a number >= 0")? {
            c = c.with_w0(v);
        }
        if let Some(v) = a.num("sigma", POS, "a number > 0")? {
            c = c.with_sigma(v);
        }
        if let Some(w) = a.choice("class_weight")? {
            c = c.with_class_weight(w);
        }
        Ok(c)
    }
}

impl ShapeAwareLossConfig {
    /// Initializes a [shape-aware loss](ShapeAwareLoss).
    ///
    /// # Panics
    ///
    /// If w0 < 0 or σ ≤ 0.
    pub fn init(&self) -> ShapeAwareLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes the loss, checking w0 ≥ 0 and σ > 0.
    pub fn try_init(&self) -> Result<ShapeAwareLoss, LossError> {
        if !(self.w0.is_finite() && self.w0 >= 0.0) {
            return Err(LossError::param("w0", self.w0, "a finite number >= 0"));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(LossError::param("sigma", self.sigma, "a finite number > 0"));
        }
        Ok(ShapeAwareLoss {
            w0: self.w0,
            sigma: self.sigma,
            class_weight: self.class_weight,
            activation: self.activation,
        })
    }
}

/// The source's shape-aware loss: cross-entropy weighted by the U-Net weight map of the target
/// (Ronneberger et al. 2015, "U-Net: convolutional networks for biomedical image segmentation"):
///
/// ```text
/// L = mean(W ⊙ CE),   W(x) = w_c(x) + w0·exp(−(d1(x) + d2(x))² / (2σ²))
/// ```
///
/// d1, d2 are the distances to the nearest and second-nearest instance; the instances are the
/// connected components (full connectivity) of each target channel (sigmoid) or of `label ≠ 0`
/// (softmax; pixels at `ignore_index` count as background); the border term applies to background
/// pixels only and vanishes with fewer than two instances. W is computed by `segloss-core` (exact
/// within 1e-4) per sample and channel, in parallel; it is a constant of the graph. On the CPU
/// backend in f32 with a sigmoid, each image is one fused task (its map from the target, then the
/// weighted BCE and its gradient in one pass over the image while the map is in cache); elsewhere
/// the map is computed on a detached host copy and enters the composed formula. To precompute W
/// once per sample in a data loader instead, use [`unet_weight_map`](segloss_core::unet_weight_map)
/// and [`WeightedCeLoss`](crate::WeightedCeLoss).
///
/// The data-loader path (compute W once per sample, not at every step):
///
/// ```
/// use burn::tensor::{Device, Tensor, TensorData};
/// use ndarray::{array, Array2};
/// use segloss::{Reduction, WeightedCeLossConfig};
/// use segloss_core::{unet_weight_map, WeightMapConfig};
///
/// // In the data loader, once per sample: two cells with one background pixel between them.
/// let mask = array![[1u8, 0, 1], [1, 0, 1]];
/// let w: Array2<f32> = unet_weight_map(&mask, None, &WeightMapConfig::default()).unwrap();
///
/// // In the training step:
/// let device = Device::flex();
/// let w = Tensor::<4>::from_data(TensorData::new(w.into_raw_vec_and_offset().0, [1, 1, 2, 3]), &device);
/// let y = Tensor::<4>::from_floats([[[[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]]], &device);
/// let logits = Tensor::<4>::zeros([1, 1, 2, 3], &device);
/// let v = WeightedCeLossConfig::new().init().forward(logits, y, w, Reduction::Mean);
/// assert!(v.into_scalar::<f32>() > std::f32::consts::LN_2); // the border pixels weigh more than 1
/// ```
///
/// Oracle: the U-Net map from scipy (`label` with full connectivity, one `distance_transform_edt`
/// per instance, no cut-off) times PyTorch's weighted BCE / CE and its autograd
/// (`tools/reference/gen_losses.py`, fixtures `shape_aware_*`), on the fused and the composed path.
#[derive(Module, Debug)]
pub struct ShapeAwareLoss {
    /// w0.
    pub w0: f64,
    /// σ.
    pub sigma: f64,
    /// w_c.
    #[module(skip)]
    pub class_weight: UnetClassWeight,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

pixel_loss_methods!(ShapeAwareLoss);

impl ShapeAwareLoss {
    fn config(&self) -> WeightMapConfig {
        WeightMapConfig {
            w0: self.w0,
            sigma: self.sigma,
            class_weight: match self.class_weight {
                UnetClassWeight::Balanced => ClassWeight::Balanced,
                UnetClassWeight::None => ClassWeight::None,
            },
            connectivity: Connectivity::Full,
            ..WeightMapConfig::default()
        }
    }
}

impl SegLoss for ShapeAwareLoss {
    fn name(&self) -> &'static str {
        "shape_aware"
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        no_weights(self.name(), &weights)?;
        // The value checks of a sigmoid prediction and its mask are made by the fused kernel on
        // its pass over the data (two fewer passes), or below before the composed path.
        let (p, checks_left) = prepare_deferred(
            pred,
            target,
            &InputRules::any_activation("shape_aware", self.activation),
        )?;
        let config = self.config();
        if p.activation == Activation::Sigmoid
            && p.valid.is_none()
            && reduction != LossReduction::None
        {
            // One task per image: its map, weighted BCE and derivative, read from the target in
            // place (the composed path below copies the target, builds an [N, C, S] map tensor
            // and reads it twice more).
            let scale = match reduction {
                LossReduction::Mean => 1.0 / p.valid_elements_from(0).max(1.0),
                LossReduction::BatchMean => 1.0 / p.n as f64,
                _ => 1.0,
            };
            if let Some((sums, ok)) =
                crate::fused::shape_aware_sums(&p.x, &p.y(), &p.spatial, &config, scale)
            {
                if checks_left && !ok {
                    // The precise error (which value, which check).
                    deferred_checks(&p)?;
                }
                return Ok(LossValue::scalar(sums.sum()));
            }
        }
        if checks_left {
            deferred_checks(&p)?;
        }
        let (masks, channels) = if p.activation == Activation::Softmax {
            // Foreground = any class but 0, per sample: read from the labels (no one-hot), or
            // from the background channel of a mask.
            let s = p.s();
            let fg: Vec<bool> = match &p.labels {
                Some(l) => read(l.clone())
                    .convert::<i64>()
                    .try_into_vec::<i64>()
                    .map_err(|e| LossError::Map {
                        what: "U-Net weight map".into(),
                        message: format!("{e:?}"),
                    })?
                    .into_iter()
                    .map(|v| v != 0)
                    .collect(),
                None => {
                    let y = host_f32(&p.y()).unwrap_or_default();
                    // An ignored pixel (its zeroed channels would read as foreground) is
                    // background, as with labels.
                    let valid = p.valid_px.as_ref().and_then(host_f32);
                    (0..p.n * s)
                        .map(|i| {
                            y[(i / s * p.c) * s + i % s] < 0.5
                                && valid.as_ref().is_none_or(|v| v[i] > 0.5)
                        })
                        .collect()
                }
            };
            (fg, 1)
        } else {
            (target_masks(&p), p.c)
        };
        // The maps in the prediction's precision (f32 maps for f32 predictions: no f64 copy and
        // cast of the whole batch); one image per task, each map split over the threads only
        // when there are fewer images than threads.
        let shape = [p.n, channels, p.s()];
        let config = WeightMapConfig {
            parallel: p.n * channels < rayon::current_num_threads(),
            ..config
        };
        let w = if p.x.dtype() == burn::tensor::DType::F64 {
            let maps = fill_images(&masks, &p.spatial, "U-Net weight map", |m, o| {
                segloss_core::unet_weight_map_into::<f64>(m, &p.spatial, None, &config, o)
            })?;
            const_tensor(&p.x, maps, shape)
        } else {
            let maps = fill_images(&masks, &p.spatial, "U-Net weight map", |m, o| {
                segloss_core::unet_weight_map_into::<f32>(m, &p.spatial, None, &config, o)
            })?;
            const_tensor_of(&p.x, maps, shape)
        };
        Ok(weighted_ce_prepared(&p, w, reduction))
    }
}
