//! Soft-skeleton clDice loss (Shit et al. 2021), MONAI's definition.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, SegLoss};
use crate::spec::{Args, NONNEG};
use crate::Target;

/// Configuration to create a [clDice loss](ClDiceLoss).
#[derive(Config, Debug)]
pub struct ClDiceLossConfig {
    /// Number of soft-skeleton iterations (default 3).
    #[config(default = 3)]
    pub iter: usize,
    /// Smoothing added to the numerators and denominators of topology precision and sensitivity.
    #[config(default = 1.0)]
    pub smooth: f64,
    /// Whether channel 0 counts (default true).
    #[config(default = true)]
    pub include_background: bool,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
}

impl ClDiceLossConfig {
    /// The keys of `cldice` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "iter",
        "smooth",
        "include_background",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `cldice(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = ClDiceLossConfig::new().with_activation(a.choice("activation")?);
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
        Ok(c)
    }
}

impl ClDiceLossConfig {
    /// Initializes a [clDice loss](ClDiceLoss).
    ///
    /// # Panics
    ///
    /// If `smooth` is negative or not finite.
    pub fn init(&self) -> ClDiceLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes the loss, checking `smooth` ≥ 0.
    pub fn try_init(&self) -> Result<ClDiceLoss, LossError> {
        if !(self.smooth.is_finite() && self.smooth >= 0.0) {
            return Err(LossError::param(
                "smooth",
                self.smooth,
                "a finite number >= 0",
            ));
        }
        Ok(ClDiceLoss {
            iter: self.iter,
            smooth: self.smooth,
            include_background: self.include_background,
            activation: self.activation,
        })
    }
}

/// clDice (Shit et al. 2021, "clDice — a novel topology-preserving loss function for tubular
/// structure segmentation") with the differentiable soft skeleton:
///
/// ```text
/// Tprec = (Σ S(p)·y + s) / (Σ S(p) + s),   Tsens = (Σ S(y)·p + s) / (Σ S(y) + s)
/// L_n = 1 − 2·Tprec·Tsens / (Tprec + Tsens + 1e-4)
/// ```
///
/// S is the soft skeleton: `relu(img − open(img))` refined `iter` times on successive soft erosions,
/// erosion = min-pooling along each axis (3-long windows), dilation = 3×3(×3) max-pooling, all
/// written with tensor ops so the loss is differentiable on every backend. Sums run over the kept
/// channels and space together, per sample; `none` gives `[N]`.
///
/// Oracle: `monai.losses.SoftclDiceLoss` (1.6: `forward(input, target)`; smooth_nr = smooth_dr = s).
#[derive(Module, Debug)]
pub struct ClDiceLoss {
    /// Skeleton iterations.
    pub iter: usize,
    /// Smoothing s.
    pub smooth: f64,
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

impl ClDiceLoss {
    /// Computes the loss and reduces it over the batch (`Reduction::Auto` = mean).
    ///
    /// # Shapes
    ///
    /// - predictions: `[N, C, *spatial]`; targets: a mask of that shape or a label map
    /// - output: `[1]`
    ///
    /// # Panics
    ///
    /// On invalid input (see [`SegLoss::loss_value`] for the errors).
    pub fn forward<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
        reduction: burn::nn::loss::Reduction,
    ) -> Tensor<1> {
        crate::error::or_panic(self.loss_value(
            Flat::from_tensor(predictions),
            targets.into(),
            None,
            reduction.into(),
        ))
        .values
    }

    /// The per-sample losses, `[N]`.
    ///
    /// # Panics
    ///
    /// On invalid input.
    pub fn forward_no_reduction<const D: usize>(
        &self,
        predictions: Tensor<D>,
        targets: impl Into<Target>,
    ) -> Tensor<1> {
        crate::error::or_panic(self.loss_value(
            Flat::from_tensor(predictions),
            targets.into(),
            None,
            LossReduction::None,
        ))
        .values
    }
}

/// Max (or min) over a 3-long window along `axis` of a tensor of logical shape `shape`; the edge
/// is replicated, which for max/min equals padding with ∓∞.
fn pool_axis(t: Tensor<1>, shape: &[usize], axis: usize, max: bool) -> Tensor<1> {
    let len = shape[axis];
    if len < 2 {
        return t;
    }
    let before: usize = shape[..axis].iter().product();
    let after: usize = shape[axis + 1..].iter().product();
    let numel = before * len * after;
    let t3: Tensor<3> = t.reshape([before, len, after]);
    let prev = Tensor::cat(
        vec![t3.clone().narrow(1, 0, 1), t3.clone().narrow(1, 0, len - 1)],
        1,
    );
    let next = Tensor::cat(
        vec![
            t3.clone().narrow(1, 1, len - 1),
            t3.clone().narrow(1, len - 1, 1),
        ],
        1,
    );
    let r = if max {
        t3.max_pair(prev).max_pair(next)
    } else {
        t3.min_pair(prev).min_pair(next)
    };
    r.reshape([numel])
}

fn soft_erode(t: Tensor<1>, shape: &[usize]) -> Tensor<1> {
    let mut out: Option<Tensor<1>> = None;
    for axis in 2..shape.len() {
        let e = pool_axis(t.clone(), shape, axis, false);
        out = Some(match out {
            None => e,
            Some(o) => o.min_pair(e),
        });
    }
    out.unwrap_or(t)
}

fn soft_dilate(t: Tensor<1>, shape: &[usize]) -> Tensor<1> {
    (2..shape.len()).fold(t, |acc, axis| pool_axis(acc, shape, axis, true))
}

fn soft_open(t: Tensor<1>, shape: &[usize]) -> Tensor<1> {
    soft_dilate(soft_erode(t, shape), shape)
}

/// The soft skeleton of MONAI's `soft_skel`.
fn soft_skel(img: Tensor<1>, shape: &[usize], iter: usize) -> Tensor<1> {
    let mut img = img;
    let mut skel = burn::tensor::activation::relu(img.clone() - soft_open(img.clone(), shape));
    for _ in 0..iter {
        img = soft_erode(img, shape);
        let delta = burn::tensor::activation::relu(img.clone() - soft_open(img.clone(), shape));
        skel = skel.clone() + burn::tensor::activation::relu(delta.clone() - skel * delta);
    }
    skel
}

impl SegLoss for ClDiceLoss {
    fn name(&self) -> &'static str {
        "cldice"
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
            &InputRules::any_activation("cldice", self.activation),
        )?;
        let probs = super::drop_background(p.probs(), p.c, self.include_background);
        let y = super::drop_background(p.y(), p.c, self.include_background);
        let cc = probs.dims()[1];
        let mut shape = vec![p.n, cc];
        shape.extend_from_slice(&p.spatial);
        let numel = p.n * cc * p.s();
        let skel_p = soft_skel(probs.clone().reshape([numel]), &shape, self.iter);
        let skel_y = soft_skel(y.clone().reshape([numel]), &shape, self.iter);
        let per_n =
            |t: Tensor<1>| -> Tensor<1> { t.reshape([p.n, cc * p.s()]).sum_dim(1).reshape([p.n]) };
        let yf = y.reshape([numel]);
        let pf = probs.reshape([numel]);
        let s = self.smooth;
        let tprec = (per_n(skel_p.clone() * yf).add_scalar(s)) / per_n(skel_p).add_scalar(s);
        let tsens = (per_n(skel_y.clone() * pf).add_scalar(s)) / per_n(skel_y).add_scalar(s);
        let loss =
            (tprec.clone() * tsens.clone()).mul_scalar(2.0) / (tprec + tsens).add_scalar(1e-4);
        let loss = loss.neg().add_scalar(1.0);
        Ok(match reduction {
            LossReduction::Mean => LossValue::scalar(loss.mean()),
            LossReduction::Sum => LossValue::scalar(loss.sum()),
            LossReduction::BatchMean => LossValue::scalar(loss.sum().div_scalar(p.n as f64)),
            LossReduction::None => LossValue {
                values: loss,
                shape: vec![p.n],
            },
        })
    }
}
