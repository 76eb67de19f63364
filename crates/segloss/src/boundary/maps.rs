//! Maps of the target (and of the thresholded prediction) computed by `segloss-core` on detached
//! CPU copies, one per sample and channel in parallel, entering the graph as constants.

use burn::tensor::Tensor;
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

use crate::error::LossError;
use crate::input::{const_tensor, Prepared};
use crate::transfer::read;

/// Host copy of a tensor as f64 (detached).
pub(crate) fn host<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    read(t.clone().detach())
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default()
}

/// Applies `f` to each of the `k` boolean images of `masks` (`k·S` values, C order, spatial shape
/// `spatial`), in parallel, and returns the `k·S` results.
pub(crate) fn map_images<F: segloss_core::Float>(
    masks: &[bool],
    spatial: &[usize],
    what: &str,
    f: impl Fn(ArrayViewD<'_, bool>) -> segloss_core::Result<ArrayD<F>> + Sync,
) -> Result<Vec<F>, LossError> {
    fill_images(masks, spatial, what, |m, o| {
        let view = ArrayViewD::from_shape(IxDyn(spatial), m).expect("contiguous image");
        let r = f(view)?;
        // The maps are C-order: one slice copy (an element-wise walk over a dynamic-rank array
        // costs several times the map's own finishing pass).
        match r.as_slice() {
            Some(v) => o.copy_from_slice(v),
            None => o.iter_mut().zip(r.iter()).for_each(|(dst, v)| *dst = *v),
        }
        Ok(())
    })
}

/// [`map_images`] for maps written in place: `f` fills the result slice of each image, so no
/// per-image map is allocated and copied into the batch buffer.
pub(crate) fn fill_images<F: segloss_core::Float>(
    masks: &[bool],
    spatial: &[usize],
    what: &str,
    f: impl Fn(&[bool], &mut [F]) -> segloss_core::Result<()> + Sync,
) -> Result<Vec<F>, LossError> {
    let s: usize = spatial.iter().product::<usize>().max(1);
    // Zeroed, not uninitialised: `f` takes a `&mut [F]`.
    let mut out = vec![F::ZERO; masks.len()];
    out.par_chunks_mut(s)
        .zip(masks.par_chunks(s))
        .try_for_each(|(o, m)| {
            f(m, o).map_err(|e| LossError::Map {
                what: what.to_string(),
                message: e.to_string(),
            })
        })?;
    Ok(out)
}

/// `[N, C, S]` maps of the binarised channels (`value > 0.5`) of `t` as a constant tensor.
pub(crate) fn channel_maps(
    p: &Prepared,
    t: &Tensor<3>,
    what: &str,
    f: impl Fn(ArrayViewD<'_, bool>) -> segloss_core::Result<ArrayD<f64>> + Sync,
) -> Result<Tensor<3>, LossError> {
    let masks: Vec<bool> = host(t).into_iter().map(|v| v > 0.5).collect();
    let maps = map_images(&masks, &p.spatial, what, f)?;
    Ok(const_tensor(&p.x, maps, [p.n, p.c, p.s()]))
}

/// The binarised target channels `y > 0.5`, `[N, C, S]` flattened.
pub(crate) fn target_masks(p: &Prepared) -> Vec<bool> {
    crate::input::host_f32(&p.y())
        .unwrap_or_default()
        .into_iter()
        .map(|v| v > 0.5)
        .collect()
}
