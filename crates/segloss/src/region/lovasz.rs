//! Lovász hinge and Lovász-Softmax losses (Berman et al. 2018), smp's definitions.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{activation, Tensor};

use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue, Prepared};
use crate::loss::{no_weights, SegLoss};
use crate::region::{reduce_matrix, region_loss_methods, ALL_ACTIVATIONS};
use crate::Target;

/// Configuration to create a [Lovász loss](LovaszLoss).
#[derive(Config, Debug)]
pub struct LovaszLossConfig {
    /// One Lovász problem per image, averaged over the images (default: one problem for the
    /// whole batch).
    #[config(default = false)]
    pub per_image: bool,
    /// `Sigmoid` (default for masks and C = 1): the Lovász hinge on the logits; `Softmax`
    /// (default for label maps with C ≥ 2): the Lovász-Softmax; `None`: the Lovász-Softmax on
    /// given probabilities.
    pub activation: Option<Activation>,
    /// Target value / label whose pixels are left out of every Lovász problem.
    pub ignore_index: Option<i64>,
}

impl LovaszLossConfig {
    /// Initializes a [Lovász loss](LovaszLoss).
    pub fn init(&self) -> LovaszLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [Lovász loss](LovaszLoss) (every configuration is valid).
    pub fn try_init(&self) -> Result<LovaszLoss, LossError> {
        Ok(LovaszLoss {
            per_image: self.per_image,
            activation: self.activation,
            ignore_index: self.ignore_index,
        })
    }
}

/// The Lovász loss (Berman, Rannen Triki & Blaschko 2018, "The Lovász-Softmax loss: a tractable
/// surrogate for the optimization of the intersection-over-union measure in neural networks"),
/// as smp's `LovaszLoss`:
///
/// ```text
/// sigmoid (hinge):  e_i = 1 − x_i·(2y_i − 1),   ℓ = Σ_i relu(e_(i)) · g_i(y_(·))
/// softmax:          e_{c,i} = |y_{c,i} − p_{c,i}|,  ℓ = mean over the classes c present in the target
///                   of Σ_i e_{c,(i)} · g_i(y_{c,(·)})
/// g_i(y) = J_i − J_{i−1},  J_i = 1 − (Σy − Σ_{j≤i} y_j) / (Σy + Σ_{j≤i} (1 − y_j))
/// ```
///
/// with (·) the order of decreasing error: g is the gradient of the Lovász extension of the
/// Jaccard loss. The hinge takes the raw logits (no sigmoid anywhere); in sigmoid mode every
/// channel of every pixel is an element of one binary problem (smp's binary and multilabel
/// modes). The sort, the gathers and the cumulative sums are tensor operations, so the gradient
/// flows through the errors exactly as in PyTorch (the sort order carries no gradient).
///
/// Loss matrix: `[N, 1]` with `per_image = true` (one problem per image), else `[1, 1]`;
/// `mean` averages the images.
///
/// Range: [0, ∞) in sigmoid mode (the hinge grows with the logits' magnitude), [0, 1] in
/// softmax mode.
///
/// Edge cases: empty target (sigmoid) → `relu(max e) = relu(1 + max x)`, the hinge of the most
/// confident false positive; empty target (softmax) → only the classes present count, a group
/// with no class present scores 0; a class absent from the whole batch is skipped, not scored 0;
/// all-foreground targets → the hinge of the least confident true positive; soft labels → the
/// formulas as written with real-valued y; C = 1 with softmax → an error; `ignore_index` removes
/// the pixels before sorting (everywhere → 0).
///
/// Oracle: `segmentation_models_pytorch.losses.LovaszLoss(mode="binary" | "multiclass",
/// per_image, ignore_index)` (its Jaccard weights in the input's precision: smp casts them to
/// float32).
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::LovaszLossConfig;
///
/// let device = Device::flex().autodiff();
/// let logits = Tensor::<3>::from_floats([[[2.0, -1.0, 0.5], [-1.0, 1.0, 0.0]]], &device)
///     .require_grad();
/// let labels = Tensor::<2, Int>::from_ints([[0, 1, 1]], &device);
/// let v = LovaszLossConfig::new().init().forward(logits.clone(), labels, Reduction::Mean);
/// let g = logits.grad(&v.clone().backward()).unwrap();
/// assert_eq!(g.dims(), [1, 2, 3]);
/// let v = v.into_scalar::<f32>();
/// assert!(v > 0.0 && v < 1.0);
/// ```
#[derive(Module, Debug)]
pub struct LovaszLoss {
    /// One problem per image.
    pub per_image: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(LovaszLoss);

/// The Lovász gradient of the Jaccard loss for sorted targets `gt` `[rows, M]`; `neg` is
/// `(1 − gt)` with ignored elements 0 (they come last in the order).
fn lovasz_grad(gt: Tensor<2>, neg: Tensor<2>) -> Tensor<2> {
    let [rows, m] = gt.dims();
    let gts = gt.clone().sum_dim(1);
    let inter = gts.clone() - gt.cumsum(1);
    let union = gts + neg.cumsum(1);
    let union = union.clone().mask_fill(union.equal_elem(0.0), 1.0);
    let jac = (inter / union).neg().add_scalar(1.0);
    if m == 1 {
        return jac;
    }
    let prev = Tensor::cat(
        vec![
            jac.clone().slice([0..rows, 0..1]).zeros_like(),
            jac.clone().slice([0..rows, 0..m - 1]),
        ],
        1,
    );
    jac - prev
}

/// Sorts each row of `errors` `[rows, M]` by decreasing error (ignored elements last) and returns
/// `Σ_i f(e_(i))·g_i` per row, `[rows, 1]`.
fn lovasz_rows(
    errors: Tensor<2>,
    gt: Tensor<2>,
    valid: Option<Tensor<2>>,
    hinge: bool,
) -> Tensor<2> {
    let key = errors.clone().detach();
    let (key, neg) = match &valid {
        Some(v) => (
            key.mask_fill(v.clone().equal_elem(0.0), f64::NEG_INFINITY),
            gt.clone().neg().add_scalar(1.0) * v.clone(),
        ),
        None => (key, gt.clone().neg().add_scalar(1.0)),
    };
    let (_, idx) = key.sort_descending_with_indices(1);
    let e = errors.gather(1, idx.clone());
    let e = if hinge { activation::relu(e) } else { e };
    let g = lovasz_grad(gt.gather(1, idx.clone()), neg.gather(1, idx.clone()));
    let contrib = match valid {
        Some(v) => e * g * v.gather(1, idx),
        None => e * g,
    };
    contrib.sum_dim(1)
}

impl LovaszLoss {
    /// Lovász hinge on the logits: `[R, 1]`.
    fn hinge(&self, p: &Prepared) -> Tensor<2> {
        let (n, c, s) = (p.n, p.c, p.s());
        let rows = if self.per_image { n } else { 1 };
        let m = n * c * s / rows;
        let x = p.x.clone().reshape([rows, m]);
        let y = p.y().reshape([rows, m]);
        let errors = (x * y.clone().mul_scalar(2.0).sub_scalar(1.0))
            .neg()
            .add_scalar(1.0);
        let valid = p
            .valid
            .clone()
            .map(|v| v.expand([n, c, s]).reshape([rows, m]));
        lovasz_rows(errors, y, valid, true)
    }

    /// Lovász-Softmax over the classes present: `[R, 1]`.
    fn softmax(&self, p: &Prepared) -> Tensor<2> {
        let (n, c, s) = (p.n, p.c, p.s());
        let probs = p.probs();
        let y = p.y();
        let valid = p.valid.clone().map(|v| v.expand([n, c, s]));
        // [G, C, M]: one group per image, or the whole batch.
        let (g, m) = if self.per_image { (n, s) } else { (1, n * s) };
        let group = |t: Tensor<3>| -> Tensor<2> {
            if self.per_image {
                t.reshape([g * c, m])
            } else {
                t.swap_dims(0, 1).reshape([c, m])
            }
        };
        let (probs, y) = (group(probs), group(y));
        let valid = valid.map(group);
        let errors = (y.clone() - probs).abs();
        let present = y
            .clone()
            .sum_dim(1)
            .greater_elem(0.0)
            .float()
            .reshape([g, c]);
        let present = present.cast(errors.dtype());
        let per_class = lovasz_rows(errors, y, valid, false).reshape([g, c]);
        let count = present.clone().sum_dim(1).clamp_min(1.0);
        (per_class * present).sum_dim(1) / count
    }
}

impl SegLoss for LovaszLoss {
    fn name(&self) -> &'static str {
        "lovasz"
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
            &InputRules {
                activation: self.activation,
                allowed: ALL_ACTIVATIONS,
                fallback: Activation::Sigmoid,
                ignore_index: self.ignore_index,
                loss: "lovasz",
            },
        )?;
        let m = match p.activation {
            Activation::Sigmoid => self.hinge(&p),
            _ => self.softmax(&p),
        };
        Ok(reduce_matrix(m, reduction))
    }
}
