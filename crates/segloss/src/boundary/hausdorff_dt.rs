//! Hausdorff-distance loss from distance transforms (Karimi & Salcudean 2019), MONAI's definition.

use burn::config::Config;
use burn::module::Module;

use rayon::prelude::*;

use super::maps::channel_maps;
use crate::error::LossError;
use crate::fused::Act;
use crate::input::{
    const_tensor_of, host_f32, prepare, Activation, Flat, InputRules, LossReduction, LossValue,
    Prepared,
};
use crate::loss::{no_weights, SegLoss};
use crate::region::{reduce_matrix, region_loss_methods};
use crate::spec::{Args, POS};
use crate::transfer::read;
use crate::Target;

/// Configuration to create a [Hausdorff-DT loss](HausdorffDtLoss).
#[derive(Config, Debug)]
pub struct HausdorffDtLossConfig {
    /// Exponent α of the distance fields (default 2).
    #[config(default = 2.0)]
    pub alpha: f64,
    /// Whether channel 0 counts (default false; ignored when C = 1).
    #[config(default = false)]
    pub include_background: bool,
    /// Average over the batch as well before the reduction (`none` then gives `[1, C']`).
    #[config(default = false)]
    pub batch: bool,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
}

impl HausdorffDtLossConfig {
    /// The keys of `hausdorff_dt` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "alpha",
        "include_background",
        "batch",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `hausdorff_dt(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = HausdorffDtLossConfig::new().with_activation(a.choice("activation")?);
        if let Some(v) = a.num("alpha", POS, "a number > 0")? {
            c = c.with_alpha(v);
        }
        if let Some(b) = a.boolean("include_background")? {
            c = c.with_include_background(b);
        }
        if let Some(b) = a.boolean("batch")? {
            c = c.with_batch(b);
        }
        Ok(c)
    }
}

impl HausdorffDtLossConfig {
    /// Initializes a [Hausdorff-DT loss](HausdorffDtLoss).
    ///
    /// # Panics
    ///
    /// If α is not a finite number > 0.
    pub fn init(&self) -> HausdorffDtLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes the loss, checking α > 0.
    pub fn try_init(&self) -> Result<HausdorffDtLoss, LossError> {
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(LossError::param("alpha", self.alpha, "a finite number > 0"));
        }
        Ok(HausdorffDtLoss {
            alpha: self.alpha,
            include_background: self.include_background,
            batch: self.batch,
            activation: self.activation,
        })
    }
}

/// Hausdorff-distance loss from distance transforms (Karimi & Salcudean 2019, "Reducing the
/// Hausdorff distance in medical image segmentation with convolutional neural networks"):
///
/// ```text
/// f(n, c) = mean_x[(p − y)² ⊙ (F_p^α + F_y^α)],   F_m = EDT(m) + EDT(¬m)
/// ```
///
/// with `F_p` the two-sided distance field of the thresholded prediction (`p > 0.5`, strictly) and
/// `F_y` that of the target, per sample and channel, 0 for an empty or full mask. The fields are
/// exact EDTs from `segloss-core` on a detached CPU copy: no gradient flows through them. An empty
/// target with an empty prediction gives 0; an empty target with a non-empty prediction is
/// weighted by `F_p` only.
///
/// `mean` / `sum` reduce the `[N, C']` matrix (`[1, C']` with `batch = true`).
///
/// Oracle: `monai.losses.HausdorffDTLoss(alpha, include_background, batch)` (MONAI casts the fields
/// to float32; ours keep the input's precision).
#[derive(Module, Debug)]
pub struct HausdorffDtLoss {
    /// α.
    pub alpha: f64,
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// Batch mean.
    pub batch: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

region_loss_methods!(HausdorffDtLoss);

/// `act(x) > 0.5` for every element of the logits `[N, C, S]` (MONAI thresholds the activated
/// prediction at 0.5), in parallel over samples; the probabilities are computed as the fused kernels
/// compute them (`1 / (1 + e^−x)`; `e^(x_c − max) / Σ e^(x_k − max)`).
fn predicted_masks(x: &[f32], c: usize, s: usize, act: Activation) -> Vec<bool> {
    let mut pred = vec![false; x.len()];
    pred.par_chunks_mut(c * s)
        .zip(x.par_chunks(c * s))
        .for_each(|(pm, xs)| match act {
            Activation::None => {
                for (m, &v) in pm.iter_mut().zip(xs) {
                    *m = v > 0.5;
                }
            }
            Activation::Sigmoid => {
                for (m, &v) in pm.iter_mut().zip(xs) {
                    *m = 1.0 / (1.0 + (-v).exp()) > 0.5;
                }
            }
            Activation::Softmax => {
                // Only the largest channel of a pixel can exceed 1/2.
                for j in 0..s {
                    let (mut best, mut mx) = (0usize, f32::NEG_INFINITY);
                    for k in 0..c {
                        let v = xs[k * s + j];
                        if v > mx {
                            (best, mx) = (k, v);
                        }
                    }
                    let sum: f32 = (0..c).map(|k| (xs[k * s + j] - mx).exp()).sum();
                    pm[best * s + j] = 1.0 / sum > 0.5;
                }
            }
        });
    pred
}

impl HausdorffDtLoss {
    /// The fused-kernel path: both fields and `w = F_p^α + F_y^α` on the host in one pass per
    /// image, then one kernel for Σ w·(p − y)² per (sample, channel) and its gradient.
    fn fused(&self, p: &Prepared, reduction: LossReduction) -> Result<LossValue, LossError> {
        let act = match p.activation {
            Activation::Sigmoid => Act::Sigmoid,
            Activation::Softmax => Act::Softmax,
            Activation::None => Act::Identity,
        };
        // Host copies in f32 (what the fused path runs in): the logits, and the labels where
        // there are labels (no one-hot anywhere: the kernel reads y from the sign of w).
        let xs = host_f32(&p.x).unwrap_or_default();
        let (a, s, c) = (self.alpha, p.s(), p.c);
        let labels: Option<Vec<i64>> = match &p.labels {
            Some(l) => read(l.clone()).convert::<i64>().try_into_vec::<i64>().ok(),
            None => None,
        };
        let ys = match labels {
            Some(_) => Vec::new(),
            None => host_f32(&p.y()).unwrap_or_default(),
        };
        let pred = predicted_masks(&xs, c, s, p.activation);
        drop(xs);
        // One field per (sample, channel) and worker; the transform itself runs on the worker's
        // thread unless there is a single field.
        let serial = p.n * p.c > 1;
        let mut w = vec![0f32; pred.len()];
        w.par_chunks_mut(s)
            .zip(pred.par_chunks(s))
            .enumerate()
            .try_for_each_init(
                || (vec![false; s], vec![0f32; s]),
                |(mask, d2), (k, (w, pr))| {
                    let (n, ch) = (k / c, k % c);
                    for side in 0..2 {
                        if side == 0 {
                            mask.copy_from_slice(pr);
                        } else if let Some(l) = &labels {
                            for (m, &v) in mask.iter_mut().zip(&l[n * s..(n + 1) * s]) {
                                *m = v == ch as i64;
                            }
                        } else {
                            for (m, &v) in mask.iter_mut().zip(&ys[k * s..(k + 1) * s]) {
                                *m = v > 0.5;
                            }
                        }
                        segloss_core::two_sided_edt_squared_into(
                            mask, &p.spatial, None, d2, serial,
                        )
                        .map_err(|e| LossError::Map {
                            what: "distance field".into(),
                            message: e.to_string(),
                        })?;
                        // F^α = (F²)^(α/2); α = 2 (the default) is the squared field itself.
                        if a == 2.0 {
                            for (wi, &q) in w.iter_mut().zip(d2.iter()) {
                                *wi += q;
                            }
                        } else {
                            let h = (a / 2.0) as f32;
                            for (wi, &q) in w.iter_mut().zip(d2.iter()) {
                                *wi += q.powf(h);
                            }
                        }
                    }
                    if let Some(l) = &labels {
                        // y = 1 where the label is this channel: carried by the sign of w.
                        for (wi, &v) in w.iter_mut().zip(&l[n * s..(n + 1) * s]) {
                            if v == ch as i64 {
                                *wi = -*wi;
                            }
                        }
                    }
                    Ok::<(), LossError>(())
                },
            )?;
        let w = const_tensor_of(&p.x, w, [p.n, p.c, s]);
        let y = labels.is_none().then(|| p.y());
        let Some(sums) = crate::fused::wsq_sums(&p.x, y.as_ref(), &w, act) else {
            unreachable!("checked by the caller");
        };
        let sums = if self.include_background || p.c == 1 {
            sums
        } else {
            sums.narrow(1, 1, p.c - 1)
        };
        let cc = sums.dims()[1];
        let f = if self.batch {
            sums.sum_dim(0).div_scalar((p.n * s) as f64)
        } else {
            sums.div_scalar(s as f64)
        };
        debug_assert_eq!(f.dims()[1], cc);
        Ok(reduce_matrix(f, reduction))
    }
}

impl SegLoss for HausdorffDtLoss {
    fn name(&self) -> &'static str {
        "hausdorff_dt"
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
            &InputRules::any_activation("hausdorff_dt", self.activation),
        )?;
        if p.valid.is_none() && crate::fused::applies(&p.x) {
            return self.fused(&p, reduction);
        }
        let probs = p.probs();
        let field = |m: ndarray::ArrayViewD<'_, bool>| segloss_core::two_sided_edt(&m, None);
        let fp = channel_maps(&p, &probs, "distance field", field)?;
        let fy = channel_maps(&p, &p.y(), "distance field", field)?;
        let a = self.alpha;
        let w = if a == 2.0 {
            fp.clone() * fp + fy.clone() * fy
        } else {
            fp.powf_scalar(a) + fy.powf_scalar(a)
        };
        let err = (probs - p.y()).powi_scalar(2) * w;
        let err = super::drop_background(err, p.c, self.include_background);
        let cc = err.dims()[1];
        let f: burn::tensor::Tensor<2> = if self.batch {
            err.swap_dims(0, 1)
                .reshape([cc, p.n * p.s()])
                .mean_dim(1)
                .reshape([1, cc])
        } else {
            err.mean_dim(2).reshape([p.n, cc])
        };
        Ok(reduce_matrix(f, reduction))
    }
}
