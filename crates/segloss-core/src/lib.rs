//! # segloss-core
//!
//! The maps that segmentation losses and metrics are built on, with no ML framework: exact Euclidean
//! distance transforms (binary, squared, feature transform, multi-label, two-sided), signed and penalty
//! distance maps, connected components, U-Net weight maps, surfaces and the MONAI-compatible metrics
//! (Dice, IoU, precision, recall, specificity, HD, HD95, ASSD, NSD). Everything works on `ndarray` arrays of
//! 1 to 3 axes with an optional per-axis voxel spacing, returns `f32` or `f64` maps as the caller's type
//! annotation asks, runs in parallel with rayon, and reports bad input as a [`CoreError`] instead of
//! panicking.
//!
//! ```
//! use ndarray::{array, Array2};
//! use segloss_core::{edt, signed_distance_map, unet_weight_map, WeightMapConfig};
//!
//! let mask = array![[false, true, true, true], [false, true, true, true]];
//! let d: Array2<f32> = edt(&mask, Some(&[1.0, 0.5]))?;
//! assert_eq!(d.row(0).to_vec(), vec![0.0, 0.5, 1.0, 1.5]);
//!
//! let phi: Array2<f64> = signed_distance_map(&mask, None)?;
//! assert_eq!(phi[[0, 0]], 1.0);
//! assert_eq!(phi[[0, 3]], -2.0);
//!
//! let w: Array2<f32> = unet_weight_map(&mask, None, &WeightMapConfig::default())?;
//! assert_eq!(w.shape(), &[2, 4]);
//! # Ok::<(), segloss_core::CoreError>(())
//! ```
//!
//! Inputs are any `&ArrayBase` (owned arrays or views, any memory layout) whose elements implement
//! [`Voxel`] (`bool`, every integer type, `f32`, `f64`; non-zero is foreground). The spacing is
//! `Option<&[f64]>`, one finite value > 0 per axis.
#![deny(missing_docs)]

/// Defines `$name`, which runs `$imp` (an `#[inline(always)]` function, so that its body is
/// compiled inside each version) compiled for AVX2 when the CPU has it (chosen at run time; 8 lanes
/// instead of SSE2's 4) and for the x86-64 baseline otherwise; other architectures get `$imp`
/// alone. Shared by the weight map of this crate and the fused loss kernels of `segloss`.
///
/// ```text
/// avx2_dispatch!(
///     /// `row_sum_impl`, with AVX2 where the CPU has it.
///     pub(crate) fn row_sum(x: &[f32]) -> f64 = row_sum_impl
/// );
/// ```
///
/// # Floating-point policy: AVX2 only, no FMA
///
/// Both versions evaluate the same IEEE operations in the same order, so they return the same
/// bits, and so does every machine: a loss, a gradient or a map does not depend on the CPU it was
/// computed on. FMA is not enabled: Rust never contracts `a * b + c` on its own, so the `fma`
/// target feature would change no instruction of code without `mul_add` (the fused kernels
/// measured the same with and without it), and code that calls `mul_add` inside `$imp` would
/// round differently in the two versions — a libm call in the baseline, one rounding in the AVX2
/// one. Keep `mul_add` out of dispatched code; a kernel that needs FMA for speed should be
/// measured against this policy first and then given its own, documented, dispatch.
///
/// Closures inside `$imp` are functions of their own, compiled without the AVX2 feature: hot
/// loops take helper functions marked `#[inline(always)]`, or macros, instead.
#[doc(hidden)]
#[macro_export]
macro_rules! avx2_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $imp:ident) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if ::std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: `avx2` only requires the AVX2 feature, which this CPU was just
                    // detected to have; its arguments are the caller's, unchanged.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

pub mod distmap;
pub mod edt;
mod element;
mod error;
#[doc(hidden)]
pub mod fastmath;
mod grid;
mod intpass;
mod kernel;
pub mod label;
pub mod metrics;
pub mod reference;
pub mod surface;
pub mod weightmap;

pub use distmap::{penalty_map, signed_distance_map, two_sided_edt, two_sided_edt_squared_into};
pub use edt::{
    edt, edt_squared, feature_transform, has_background, multilabel_edt, multilabel_edt_squared,
    unravel_index,
};
pub use element::{Float, Voxel};
pub use error::{CoreError, Result};
pub use label::{connected_components, relabel_sequential, Connectivity};
pub use metrics::{binary_metrics, label_metrics, ClassMetrics};
pub use surface::{surface, surface_distances};
pub use weightmap::{
    unet_weight_map, unet_weight_map_from_instances, unet_weight_map_into,
    unet_weight_map_into_uninit, ClassWeight, WeightMapConfig,
};
