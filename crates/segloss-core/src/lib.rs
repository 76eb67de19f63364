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

/// Defines `$name`, which runs `$imp` (an `#[inline(always)]` function) compiled for AVX2 when the
/// CPU has it (chosen at run time; 8 lanes instead of SSE2's 4) and for the x86-64 baseline
/// otherwise. AVX2 only, not FMA: the same IEEE operations either way, so the same values on every
/// machine.
macro_rules! avx2_dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $imp:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports the feature just detected.
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
