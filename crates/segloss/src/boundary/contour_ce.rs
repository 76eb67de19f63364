//! Contour-distance cross-entropy (Hayder et al. 2017): the survey's shape-aware loss.

use burn::config::Config;
use burn::module::Module;
use ndarray::{ArrayViewD, IxDyn};
use rayon::prelude::*;

use super::maps::host;
use crate::distribution::weighted_ce::weighted_ce_prepared;
use crate::error::LossError;
use crate::input::{const_tensor, prepare, Activation, Flat, InputRules, LossReduction, LossValue};
use crate::loss::{no_weights, pixel_loss_methods, SegLoss};
use crate::spec::Args;
use crate::Target;

/// Configuration to create a [contour CE loss](ContourCeLoss).
#[derive(Config, Debug)]
pub struct ContourCeLossConfig {
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`.
    pub activation: Option<Activation>,
}

impl ContourCeLossConfig {
    /// The keys of `contour_ce` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &["activation", "reduction"];

    /// The configuration of a spec term `contour_ce(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        Ok(ContourCeLossConfig::new().with_activation(a.choice("activation")?))
    }
}

impl ContourCeLossConfig {
    /// Initializes a [contour CE loss](ContourCeLoss).
    pub fn init(&self) -> ContourCeLoss {
        ContourCeLoss {
            activation: self.activation,
        }
    }

    /// [`init`](Self::init) in the fallible form every configuration has (this one cannot fail:
    /// every field value is valid).
    pub fn try_init(&self) -> Result<ContourCeLoss, LossError> {
        Ok(self.init())
    }
}

/// The survey's shape-aware loss (Hayder et al. 2017, "Boundary-aware instance segmentation";
/// Jadon 2020 §shape-aware loss): cross-entropy plus cross-entropy weighted by how far the
/// predicted contour lies from the true one,
///
/// ```text
/// L = mean(CE) + mean(E ⊙ CE) = mean((1 + E) ⊙ CE)
/// E(x) = distance from x to the nearest voxel of the target's surface, for x on the surface of
///        the thresholded prediction; 0 elsewhere
/// ```
///
/// Surfaces are those of [`segloss_core::surface()`], the one boundary definition of the library
/// (the surface metrics use it too): the foreground voxels that have a face neighbour in the
/// background or lie on the array's border (what a binary erosion with the face-connected
/// structuring element removes, voxels outside the array counting as background: scipy's
/// `binary_erosion` with `border_value=0`, MONAI's `get_mask_edges`). So a target touching the
/// array's edge has its surface there, and a full target channel has the array's border as its
/// surface. Distances are Euclidean in voxels. The prediction is thresholded at p > 0.5 per
/// channel (sigmoid / none), or by argmax over the classes (softmax; ties go to the lowest class,
/// as numpy's and PyTorch's argmax), where E(x) is the largest over the classes. A target channel
/// without foreground has E = 0: the loss is then plain cross-entropy there. E is a constant of
/// the graph (computed by `segloss-core` on a detached copy, one image per task in parallel).
///
/// Oracle: the formula with scipy's `binary_erosion` surfaces and `distance_transform_edt`,
/// differentiated by PyTorch (`tools/reference/gen_losses.py`, fixtures `contour_ce_*`).
#[derive(Module, Debug)]
pub struct ContourCeLoss {
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
}

pixel_loss_methods!(ContourCeLoss);

/// One C-order image of shape `spatial`.
fn image<'a>(m: &'a [bool], spatial: &[usize]) -> ArrayViewD<'a, bool> {
    ArrayViewD::from_shape(IxDyn(spatial), m).expect("contiguous image")
}

/// E for `k` images: predicted masks `pm`, target masks `tm` (`k·S` each, spatial shape
/// `spatial`).
pub(crate) fn contour_distance(
    pm: &[bool],
    tm: &[bool],
    spatial: &[usize],
) -> Result<Vec<f64>, LossError> {
    let s: usize = spatial.iter().product();
    let map_err = |e: segloss_core::CoreError| LossError::Map {
        what: "contour distance".into(),
        message: e.to_string(),
    };
    let mut out = vec![0.0f64; pm.len()];
    out.par_chunks_mut(s)
        .zip(pm.par_chunks(s).zip(tm.par_chunks(s)))
        .try_for_each(|(o, (p, t))| {
            if !t.iter().any(|&v| v) {
                return Ok(());
            }
            let tb = segloss_core::surface(&image(t, spatial)).map_err(map_err)?;
            let pb = segloss_core::surface(&image(p, spatial)).map_err(map_err)?;
            // Distances to the nearest target-surface voxel: the EDT of its complement.
            let off_tb = tb.mapv(|b| !b);
            let d: ndarray::ArrayD<f64> = segloss_core::edt(&off_tb, None).map_err(map_err)?;
            for ((dst, &on), v) in o.iter_mut().zip(pb.iter()).zip(d.iter()) {
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
                    // The first of equal maxima (numpy's and PyTorch's argmax).
                    let best = (1..c).fold(0, |best, k| {
                        if x[(b * c + k) * s + i] > x[(b * c + best) * s + i] {
                            k
                        } else {
                            best
                        }
                    });
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
