//! Boundary-based losses: losses that look at the shape of the target (and of the prediction)
//! through distance maps, weight maps and skeletons computed by `segloss-core`.

pub mod boundary_loss;
pub mod cldice;
pub mod contour_ce;
pub mod distance_penalized_ce;
pub mod hausdorff_dt;
pub(crate) mod maps;
pub mod shape_aware;

use burn::tensor::Tensor;

/// Drops channel 0 of `[N, C, S]` unless `include_background` or C = 1.
pub(crate) fn drop_background(t: Tensor<3>, c: usize, include_background: bool) -> Tensor<3> {
    if include_background || c == 1 {
        t
    } else {
        t.narrow(1, 1, c - 1)
    }
}
