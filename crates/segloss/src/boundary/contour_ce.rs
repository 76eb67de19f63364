//! Contour-distance cross-entropy (Hayder et al. 2017): the survey's shape-aware loss.

use burn::config::Config;
use burn::module::Module;
use ndarray::{ArrayViewD, IxDyn};
use rayon::prelude::*;

use super::maps::{host, inner_boundary};
use crate::distribution::weighted_ce::weighted_ce_prepared;
use crate::error::LossError;
use crate::input::{const_tensor, prepare, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::Target;

/// Configuration to create a [contour CE loss](ContourCeLoss).
#[derive(Config, Debug)]
pub struct ContourCeLossConfig {
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
}

impl ContourCeLossConfig {
    /// Initializes a [contour CE loss](ContourCeLoss).
    pub fn init(&self) -> ContourCeLoss {
        ContourCeLoss {
            activation: self.activation,
        }
    }
}

/// The survey's shape-aware loss (Hayder et al. 2017, "Boundary-aware instance segmentation";
/// Jadon 2020 §shape-aware loss): cross-entropy plus cross-entropy weighted by how far the
/// predicted contour lies from the true one,
///
/// ```text
/// L = mean(CE) + mean(E ⊙ CE) = mean((1 + E) ⊙ CE)
/// E(x) = distance from x to the nearest target-boundary voxel, for x on the boundary of the
///        thresholded prediction; 0 elsewhere
/// ```
///
/// Boundaries are inner boundaries (foreground voxels with a background face neighbour). The
/// prediction is thresholded at p > 0.5 per channel (sigmoid / none) or by argmax (softmax, where
/// E(x) is the largest over the classes). A target channel without boundary (empty or full) has
/// E = 0 there: the loss is then plain cross-entropy. E is a constant of the graph (computed by
/// `segloss-core` on a detached copy).
///
/// Oracle: the formula (no peer implements it); tested against a brute-force E.
#[derive(Module, Debug)]
pub struct ContourCeLoss {
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

pixel_loss_methods!(ContourCeLoss);

/// E for `k` images: predicted masks `pm`, target masks `tm` (`k·S` each).
pub(crate) fn contour_distance(
    pm: &[bool],
    tm: &[bool],
    spatial: &[usize],
) -> Result<Vec<f64>, LossError> {
    let s: usize = spatial.iter().product();
    let mut out = vec![0.0f64; pm.len()];
    out.par_chunks_mut(s)
        .zip(pm.par_chunks(s).zip(tm.par_chunks(s)))
        .try_for_each(|(o, (p, t))| {
            let tb = inner_boundary(t, spatial);
            if !tb.iter().any(|&b| b) {
                return Ok(());
            }
            let pb = inner_boundary(p, spatial);
            let not_tb: Vec<bool> = tb.iter().map(|b| !b).collect();
            let view = ArrayViewD::from_shape(IxDyn(spatial), &not_tb[..]).expect("image");
            let d: ndarray::ArrayD<f64> =
                segloss_core::edt(&view, None).map_err(|e| LossError::Map {
                    what: "contour distance".into(),
                    message: e.to_string(),
                })?;
            for ((dst, &on), v) in o.iter_mut().zip(&pb).zip(d.iter()) {
                if on {
                    *dst = *v;
                }
            }
            Ok::<(), LossError>(())
        })?;
    Ok(out)
}

impl SegLoss for ContourCeLoss {
    fn name(&self) -> &'static str {
        "contour_ce"
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
            &InputRules::any_activation("contour_ce", self.activation),
        )?;
        let (n, c, s) = (p.n, p.c, p.s());
        let tm: Vec<bool> = host(&p.y()).into_iter().map(|v| v > 0.5).collect();
        let pm: Vec<bool> = if p.activation == Activation::Softmax {
            let x = host(&p.x);
            let mut m = vec![false; n * c * s];
            for b in 0..n {
                for i in 0..s {
                    let best = (0..c)
                        .max_by(|&a, &k| x[(b * c + a) * s + i].total_cmp(&x[(b * c + k) * s + i]))
                        .unwrap_or(0);
                    m[(b * c + best) * s + i] = true;
                }
            }
            m
        } else {
            host(&p.probs()).into_iter().map(|v| v > 0.5).collect()
        };
        let e = contour_distance(&pm, &tm, &p.spatial)?;
        let w = if p.activation == Activation::Softmax {
            let mut w = vec![1.0f64; n * s];
            for b in 0..n {
                for k in 0..c {
                    for i in 0..s {
                        let v = 1.0 + e[(b * c + k) * s + i];
                        if v > w[b * s + i] {
                            w[b * s + i] = v;
                        }
                    }
                }
            }
            const_tensor(&p.x, w, [n, 1, s])
        } else {
            const_tensor(&p.x, e, [n, c, s]).add_scalar(1.0)
        };
        Ok(weighted_ce_prepared(&p, w, reduction))
    }
}
