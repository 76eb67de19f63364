//! # segloss — segmentation losses on burn tensors
//!
//! Every loss of the four families of Jadon's survey (distribution-, region-, boundary-based and
//! compound), matching the reference implementations (PyTorch, MONAI, segmentation_models_pytorch)
//! in value and gradient, on 1D, 2D and 3D data. The losses are written on burn 0.22 tensors
//! (`Tensor<D>`), so they run on every burn backend; gradients come from the device
//! (`Device::flex().autodiff()`).
//!
//! Conventions (`docs/conventions.md` in the repository):
//! - predictions are `[N, C, *spatial]` logits (or probabilities with `activation = none`);
//! - targets are a mask of the prediction's shape (`Tensor<D>`) or a label map of class indices
//!   `[N, 1, *spatial]` / `[N, *spatial]` (`Tensor<_, Int>`), see [`Target`];
//! - the activation defaults to softmax for label maps with C ≥ 2, else sigmoid.
//!
//! Speed: on burn's Flex (CPU) backend in `f32`, the hot losses (bce, ce, focal, dice, jaccard,
//! tversky, generalized_dice, their sums, hausdorff_dt) run fused kernels: one pass over the logits
//! for the forward statistics and one for the gradient, registered with burn's autodiff through a
//! backend extension. Elsewhere (GPU backends, `f64`, options the kernels do not cover) the same
//! formulas are composed from burn tensor operations; [`with_fused_kernels`] (one thread) and
//! [`set_fused_kernels`] (the whole process) switch the kernels off to compare. Both paths are
//! tested against the same PyTorch/MONAI fixtures.
//!
//! Each loss is a burn-style `XxxLossConfig` / `XxxLoss` pair with `forward(…, Reduction)`,
//! `forward_no_reduction` and a fallible `try_forward`; [`LossSpec`] builds any loss or weighted
//! sum of losses from a string such as `"0.5*focal(gamma=3) + 0.5*bce(pos_weight=2)"`.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use burn::nn::loss::Reduction;
//! use segloss::FocalLossConfig;
//!
//! let device = Device::flex().autodiff();
//! let logits = Tensor::<4>::from_floats([[[[2.0, -1.0]], [[0.5, 1.0]]]], &device).require_grad();
//! let labels = Tensor::<3, Int>::from_ints([[[0, 1]]], &device);
//! let loss = FocalLossConfig::new().init().forward(logits.clone(), labels, Reduction::Mean);
//! let grads = loss.backward();
//! assert_eq!(logits.grad(&grads).unwrap().dims(), [1, 2, 1, 2]);
//! ```
#![deny(missing_docs)]

pub mod boundary;
pub mod compound;
pub mod distribution;
mod error;
mod fused;
pub mod input;
mod loss;
pub mod region;
mod registry;
pub mod spec;
#[cfg(feature = "train-metrics")]
pub mod train_metrics;
mod transfer;

pub use boundary::boundary_loss::{BoundaryLoss, BoundaryLossConfig};
pub use boundary::cldice::{ClDiceLoss, ClDiceLossConfig};
pub use boundary::contour_ce::{ContourCeLoss, ContourCeLossConfig};
pub use boundary::distance_penalized_ce::{DistancePenalizedCeLoss, DistancePenalizedCeLossConfig};
pub use boundary::hausdorff_dt::{HausdorffDtLoss, HausdorffDtLossConfig};
pub use boundary::shape_aware::{ShapeAwareLoss, ShapeAwareLossConfig, UnetClassWeight};
pub use compound::combo::{ComboLoss, ComboLossConfig};
pub use compound::composite::{CompositeLoss, CompositeTerm};
pub use compound::exp_log::{ExpLogLoss, ExpLogLossConfig};
pub use distribution::balanced_bce::{BalancedBceLoss, BalancedBceLossConfig};
pub use distribution::bce::{BceLoss, BceLossConfig};
pub use distribution::ce::{CeLoss, CeLossConfig};
pub use distribution::focal::{FocalLoss, FocalLossConfig};
pub use distribution::weighted_ce::{WeightedCeLoss, WeightedCeLossConfig};
pub use error::LossError;
pub use fused::{fused_calls, fused_kernels, set_fused_kernels, with_fused_kernels};
pub use input::{
    set_value_checks, value_checks, Activation, Flat, LossReduction, LossValue, Target,
};
pub use loss::{DicePart, SegLoss, SumPart};
pub use region::dice::{DiceLoss, DiceLossConfig};
pub use region::generalized_dice::{GeneralizedDiceLoss, GeneralizedDiceLossConfig, WeightType};
pub use region::log_cosh_dice::{LogCoshDiceLoss, LogCoshDiceLossConfig};
pub use region::lovasz::{LovaszLoss, LovaszLossConfig};
pub use region::mcc::{MccLoss, MccLossConfig};
pub use region::sensitivity_specificity::{
    SensitivitySpecificityLoss, SensitivitySpecificityLossConfig,
};
pub use region::tversky::{
    FocalTverskyLoss, FocalTverskyLossConfig, TverskyLoss, TverskyLossConfig,
};
pub use registry::loss_names;
pub use spec::{LossSpec, SpecError};
pub use transfer::{transfers, Transfers};

/// burn's reduction enum, re-exported for convenience.
pub use burn::nn::loss::Reduction;

/// The repository README's Rust examples, compiled and run as doctests (`cargo test --doc`), so the
/// README cannot drift from the API. Only in doctest builds: a packaged crate does not carry the
/// workspace README.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
