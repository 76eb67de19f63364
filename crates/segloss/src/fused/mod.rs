//! Fused forward/backward kernels for the hot losses on burn's Flex (CPU) backend, through burn's
//! backend-extension API: one pass over the logits computes a loss's statistics, one pass its
//! gradient, instead of a dozen composed tensor operations (8–15× slower than PyTorch on the CPU).
//!
//! - [`region_sums`]: the per-(sample, class) sums every overlap loss needs (Σp, Σp², Σy, Σy²,
//!   TP = Σp·y, FP = Σp·(1−y), FN = Σq·y, Σ((1−y)p − yq)²) for sigmoid, softmax or identity
//!   activations, mask or label targets: Dice, Jaccard, Tversky and generalised Dice compose their
//!   formulas on this tiny `[N, C, 8]` tensor with ordinary (differentiable) burn operations.
//! - [`bce_sums`]: Σ over pixels of BCE-with-logits per (sample, channel).
//! - [`ce_sums`]: Σ over pixels of softmax cross-entropy with label targets, per sample.
//!
//! - [`focal_sums`]: sigmoid and softmax focal loss (MONAI) per (sample, channel).
//! - [`wsq_sums`]: Σ w·(p − y)² per (sample, channel), the Hausdorff-DT loss with its fields.
//! - [`float_summary`], [`int_range`]: the value checks (finite, [0, 1], 0 ≤ label < C) in one pass.
//!
//! Not covered (composed instead): pixels actually ignored through `ignore_index`, `reduction =
//! none`, `soft_label`, Dice `power` other than 1 or 2, class weights or label smoothing in `ce`,
//! `activation = none` in bce/focal.
//!
//! Each returns `None` where the fused path does not apply (another device, `f64`, or fused
//! kernels switched off with [`set_fused_kernels`] or [`with_fused_kernels`]); the caller then
//! composes the same formula from burn operations, which also runs on every other backend. Both
//! paths are tested against the same fixtures and against each other. Targets are constants: no
//! gradient flows into them, as with every segloss loss.

mod kernels;
mod math;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{
    backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex,
    TensorMetadata,
};
use burn::tensor::{DType, Int, Tensor, TensorData};
use segloss_core::WeightMapConfig;

pub(crate) use kernels::Act;
use kernels::{Dims, Labels, Region, Tgt, Wsq, CE_FLAG, NSTATS, SIGN_FLAG};

static FUSED: AtomicBool = AtomicBool::new(true);

thread_local! {
    /// This thread's choice made by [`with_fused_kernels`] (`None`: the process-wide one).
    static FUSED_HERE: Cell<Option<bool>> = const { Cell::new(None) };
    /// Fused kernels chosen on this thread (see [`fused_calls`]).
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

/// How many times a fused kernel was chosen on the calling thread (for tests that check which
/// path ran; other threads' losses do not count).
#[doc(hidden)]
pub fn fused_calls() -> usize {
    CALLS.get()
}

/// Turns the fused CPU kernels on (the default) or off, process-wide: the default of every thread
/// not inside [`with_fused_kernels`]. Off, every loss composes its formula from burn tensor
/// operations (as it always does on GPU backends and in `f64`); values agree to float precision.
/// Meant for benchmarking the two paths in a whole program; code that runs beside other work (a
/// test among parallel tests) uses [`with_fused_kernels`], which affects only its own thread.
pub fn set_fused_kernels(enabled: bool) {
    FUSED.store(enabled, Ordering::Relaxed);
}

/// Runs `f` with the fused CPU kernels on or off for the losses computed on the calling thread,
/// whatever the process-wide setting ([`set_fused_kernels`]) and without changing it for any
/// other thread. The previous choice comes back when `f` returns or panics; an inner call
/// overrides an outer one. The path is chosen when a loss is computed (the forward); the
/// backward of a graph follows the path of its forward, wherever it runs.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use segloss::{with_fused_kernels, LossSpec};
///
/// let device = Device::flex();
/// let x = Tensor::<4>::from_floats([[[[2.0, -1.0, 0.5]]]], &device);
/// let y = Tensor::<4>::from_floats([[[[1.0, 0.0, 0.0]]]], &device);
/// let loss = LossSpec::parse("bce").unwrap().build().unwrap();
/// let fused: f32 = loss.forward(x.clone(), y.clone(), None).into_scalar();
/// let composed: f32 = with_fused_kernels(false, || {
///     assert!(!segloss::fused_kernels());
///     loss.forward(x, y, None).into_scalar()
/// });
/// assert!((fused - composed).abs() <= 1e-6 * composed);
/// assert!(segloss::fused_kernels());
/// ```
pub fn with_fused_kernels<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    /// Puts the previous choice back on drop (also while unwinding).
    struct Restore(Option<bool>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FUSED_HERE.set(self.0);
        }
    }
    let _restore = Restore(FUSED_HERE.replace(Some(enabled)));
    f()
}

/// Whether the fused kernels are on for the calling thread: its [`with_fused_kernels`] choice,
/// else the process-wide [`set_fused_kernels`] setting.
pub fn fused_kernels() -> bool {
    FUSED_HERE
        .get()
        .unwrap_or_else(|| FUSED.load(Ordering::Relaxed))
}

/// Whether the fused kernels can run on `x`: on, Flex (with or without autodiff), `f32`.
pub(crate) fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    if !fused_kernels() || x.dtype() != DType::F32 {
        return false;
    }
    let flex = match x.device().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(a) => matches!(**a, DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    };
    if flex {
        CALLS.set(CALLS.get() + 1);
    }
    flex
}

/// [`applies`] without counting a fused call (for the value checks).
pub(crate) fn applies_quiet<const D: usize>(x: &Tensor<D>) -> bool {
    fused_kernels()
        && x.dtype() == DType::F32
        && match x.device().as_dispatch() {
            DispatchDevice::Flex(_) => true,
            DispatchDevice::Autodiff(a) => matches!(**a, DispatchDevice::Flex(_)),
            #[allow(unreachable_patterns)]
            _ => false,
        }
}

/// The extension: forward kernels, routed by burn's dispatch to Flex or to the autodiff wrapper
/// below (which records the backward).
#[backend_extension(Autodiff, Flex)]
pub trait FusedLossOps: Backend {
    /// `[N, C, S]` predictions, `[N, C, S]` mask → `[N, C, 8]` region sums.
    fn fused_region_sums(x: FloatTensor<Self>, y: FloatTensor<Self>, act: u32)
        -> FloatTensor<Self>;
    /// `[N, C, S]` predictions, `[N, S]` labels → `[N, C, 8]` region sums.
    fn fused_region_sums_labels(
        x: FloatTensor<Self>,
        labels: IntTensor<Self>,
        act: u32,
    ) -> FloatTensor<Self>;
    /// `[N, C, S]` logits, `[N, C, S]` mask → `[N, C]` BCE sums.
    fn fused_bce_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        beta: f32,
        eps: f32,
    ) -> FloatTensor<Self>;
    /// `[N, C, S]` logits, `[N, S]` labels → `[N]` CE sums.
    fn fused_ce_sums(x: FloatTensor<Self>, labels: IntTensor<Self>) -> FloatTensor<Self>;
    /// `[N, C, S]` logits, `[N, C, S]` mask → `[N, C]` sigmoid focal sums (α < 0: no α).
    fn fused_focal_sigmoid_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        gamma: f32,
        alpha: f32,
    ) -> FloatTensor<Self>;
    /// `[N, C, S]` logits, `[N, C, S]` mask → `[N, C]` softmax focal sums.
    fn fused_focal_softmax_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        gamma: f32,
    ) -> FloatTensor<Self>;
    /// Any float tensor → `[3]`: (1 if every value is finite else 0, min, max); with
    /// `range = false` min and max are not computed (±∞).
    fn fused_float_summary(x: FloatTensor<Self>, range: bool) -> FloatTensor<Self>;
    /// Any integer tensor → `[2]` (as floats): min, max.
    fn fused_int_range(x: IntTensor<Self>) -> FloatTensor<Self>;
    /// `[N, C, S]` logits, mask and weights → `[N, C]` weighted BCE sums.
    fn fused_wbce_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `[N, C, S]` predictions, mask and weights → `[N, C]` sums of `w·(act(x) − y)²`.
    fn fused_wsq_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
        act: u32,
    ) -> FloatTensor<Self>;
    /// `[N, C, S]` logits, `[N, C, S]` mask → `[N·C + 1]`: the sums of the U-Net-weighted BCE
    /// times `scale`, the map of each row computed from its target (`spatial`: the shape of S),
    /// then 1 if every logit is finite and every target in [0, 1], else 0.
    fn fused_shape_aware_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        spatial: Vec<usize>,
        config: WeightMapConfig,
        scale: f32,
    ) -> FloatTensor<Self>;
    /// `[N, C, S]` logits, `[N, S]` labels → `[N, C]` softmax focal sums.
    fn fused_focal_softmax_sums_labels(
        x: FloatTensor<Self>,
        labels: IntTensor<Self>,
        gamma: f32,
    ) -> FloatTensor<Self>;
}

/// The backward kernels (not part of the dispatch: called from the autodiff wrapper only).
pub trait FusedLossGrads: Backend {
    /// `fused_region_sums` that also returns the probabilities `act(x)` `[N, C, S]` it computed
    /// (kept for the backward; `x` itself when the activation is the identity).
    fn fused_region_sums_keep(
        x: FloatTensor<Self>,
        t: TgtPrim<Self>,
        act: u32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Gradient of `Σ g·region_sums` with respect to the logits, from the probabilities `p` that
    /// [`fused_region_sums_keep`](Self::fused_region_sums_keep) returned.
    fn fused_region_sums_grad(
        p: FloatTensor<Self>,
        t: TgtPrim<Self>,
        act: u32,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `fused_bce_sums` that also returns `σ(x)` `[N, C, S]`.
    fn fused_bce_sums_keep(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        beta: f32,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Gradient of `Σ g·bce_sums`, from the `p = σ(x)` that
    /// [`fused_bce_sums_keep`](Self::fused_bce_sums_keep) returned.
    fn fused_bce_sums_grad(
        p: FloatTensor<Self>,
        y: FloatTensor<Self>,
        beta: f32,
        eps: f32,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `fused_ce_sums` that also returns the softmax probabilities `[N, C, S]` it computed.
    fn fused_ce_sums_keep(
        x: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Gradient of `Σ g·ce_sums`, from the probabilities `p` that
    /// [`fused_ce_sums_keep`](Self::fused_ce_sums_keep) returned.
    fn fused_ce_sums_grad(
        p: FloatTensor<Self>,
        labels: IntTensor<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Gradient of `Σ g·focal_sigmoid_sums`.
    fn fused_focal_sigmoid_grad(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        gamma: f32,
        alpha: f32,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `fused_shape_aware_sums` that also returns the derivatives `[N, C, S]` of each row's sum.
    fn fused_shape_aware_sums_keep(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        spatial: Vec<usize>,
        config: WeightMapConfig,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `g[row]·d[row]` for the `[N, C, S]` derivatives `d` and the upstream gradient `g` of the
    /// `[N·C + 1]` output (in place when `d` is not shared; `d` itself when every `g[row]` is 1).
    fn fused_scale_rows_grad(d: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Gradient of `Σ g·wbce_sums`.
    fn fused_wbce_grad(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Gradient of `Σ g·wsq_sums`.
    fn fused_wsq_grad(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
        act: u32,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Gradient of `Σ g·focal_softmax_sums`.
    fn fused_focal_softmax_grad(
        x: FloatTensor<Self>,
        t: TgtPrim<Self>,
        gamma: f32,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// A target primitive kept for the backward pass.
#[derive(Debug, Clone)]
pub enum TgtPrim<B: Backend> {
    /// `[N, C, S]` float mask.
    Mask(FloatTensor<B>),
    /// `[N, S]` labels.
    Labels(IntTensor<B>),
}

// ---------------------------------------------------------------------------------------------
// Flex: host slices.

fn f32_vec(t: &FlexTensor) -> Vec<f32> {
    match t.as_slice::<f32>() {
        Some(s) => s.to_vec(),
        None => t
            .to_contiguous()
            .as_slice::<f32>()
            .expect("f32 tensor")
            .to_vec(),
    }
}

fn with_f32<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    match t.as_slice::<f32>() {
        Some(s) => f(s),
        None => f(t.to_contiguous().as_slice::<f32>().expect("f32 tensor")),
    }
}

/// Runs `f` on the labels, borrowed when they are contiguous `i64` or `i32` (else converted).
fn with_labels<R>(t: &FlexTensor, f: impl FnOnce(Labels<'_>) -> R) -> R {
    if let Some(s) = t.as_slice::<i64>() {
        return f(Labels::I64(s));
    }
    if let Some(s) = t.as_slice::<i32>() {
        return f(Labels::I32(s));
    }
    let data = t.clone().into_data().convert::<i64>();
    f(Labels::I64(
        &data.try_into_vec::<i64>().expect("integer labels"),
    ))
}

/// `t` itself when it owns a contiguous f32 buffer, else a contiguous copy: a backward that
/// turns the forward's kept probabilities into the gradient in place (their buffer is the
/// backward's only use of them) writes into the result.
fn owned_f32(t: FlexTensor) -> FlexTensor {
    if t.is_unique() && t.as_slice::<f32>().is_some() {
        t
    } else {
        out(f32_vec(&t), t.shape().to_vec())
    }
}

fn dims3(t: &FlexTensor) -> (usize, usize, usize) {
    let d = t.shape();
    (d[0], d[1], d[2])
}

/// The kernels' [`Dims`] of an `[N, C, S]` tensor.
fn kdims(t: &FlexTensor) -> Dims {
    let (n, nc, s) = dims3(t);
    Dims { n, nc, s }
}

/// The region op of an activation code (with [`CE_FLAG`]) on `[N, C, S]` logits.
fn region_op(t: Tgt<'_>, dims: Dims, act: u32) -> Region<'_> {
    Region {
        t,
        dims,
        act: Act::from_code(act),
        ce: act & CE_FLAG != 0,
    }
}

/// The weighted-square op of an activation code (with [`SIGN_FLAG`]) on `[N, C, S]` logits.
fn wsq_op<'a>(y: &'a [f32], w: &'a [f32], dims: Dims, act: u32) -> Wsq<'a> {
    Wsq {
        y,
        w,
        dims,
        act: Act::from_code(act),
        signed: act & SIGN_FLAG != 0,
    }
}

fn out(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn with_tgt<R>(t: &TgtPrim<Flex>, f: impl FnOnce(Tgt<'_>) -> R) -> R {
    match t {
        TgtPrim::Mask(y) => with_f32(y, |y| f(Tgt::Mask(y))),
        TgtPrim::Labels(l) => with_labels(l, |l| f(Tgt::Labels(l))),
    }
}

fn flex_region(x: FlexTensor, t: TgtPrim<Flex>, act: u32) -> FlexTensor {
    let (n, c, _) = dims3(&x);
    let ce = act & CE_FLAG != 0;
    let v = with_f32(&x, |xs| {
        with_tgt(&t, |t| {
            kernels::region_sums(xs, &region_op(t, kdims(&x), act))
        })
    });
    out(v, vec![n, c + usize::from(ce), NSTATS])
}

impl FusedLossOps for Flex {
    fn fused_shape_aware_sums(
        x: FlexTensor,
        y: FlexTensor,
        spatial: Vec<usize>,
        config: WeightMapConfig,
        scale: f32,
    ) -> FlexTensor {
        let (n, c, _) = dims3(&x);
        let v = with_f32(&x, |xs| {
            with_f32(&y, |ys| {
                kernels::shape_aware_sums(xs, ys, &spatial, &config, scale)
            })
        });
        out(v, vec![n * c + 1])
    }

    fn fused_wbce_sums(x: FlexTensor, y: FlexTensor, w: FlexTensor) -> FlexTensor {
        let (n, c, s) = dims3(&x);
        let v = with_f32(&x, |xs| {
            with_f32(&y, |ys| {
                with_f32(&w, |ws| kernels::wbce_sums(xs, ys, ws, n * c, s))
            })
        });
        out(v, vec![n, c])
    }

    fn fused_float_summary(x: FlexTensor, range: bool) -> FlexTensor {
        let v = with_f32(&x, |x| kernels::float_summary(x, range));
        out(v.to_vec(), vec![3])
    }

    fn fused_int_range(x: FlexTensor) -> FlexTensor {
        let (lo, hi) = with_labels(&x, kernels::int_range);
        out(vec![lo as f32, hi as f32], vec![2])
    }

    fn fused_region_sums(x: FlexTensor, y: FlexTensor, act: u32) -> FlexTensor {
        flex_region(x, TgtPrim::Mask(y), act)
    }

    fn fused_region_sums_labels(x: FlexTensor, labels: FlexTensor, act: u32) -> FlexTensor {
        flex_region(x, TgtPrim::Labels(labels), act)
    }

    fn fused_bce_sums(x: FlexTensor, y: FlexTensor, beta: f32, eps: f32) -> FlexTensor {
        let (n, c, s) = dims3(&x);
        let v = with_f32(&x, |xs| {
            with_f32(&y, |ys| kernels::bce_sums(xs, ys, n * c, s, beta, eps))
        });
        out(v, vec![n, c])
    }

    fn fused_ce_sums(x: FlexTensor, labels: FlexTensor) -> FlexTensor {
        let (n, _, _) = dims3(&x);
        let v = with_f32(&x, |xs| {
            with_labels(&labels, |l| kernels::ce_sums(xs, l, kdims(&x)))
        });
        out(v, vec![n])
    }

    fn fused_focal_sigmoid_sums(
        x: FlexTensor,
        y: FlexTensor,
        gamma: f32,
        alpha: f32,
    ) -> FlexTensor {
        let (n, c, s) = dims3(&x);
        let v = with_f32(&x, |xs| {
            with_f32(&y, |ys| {
                kernels::focal_sigmoid_sums(xs, ys, n * c, s, gamma, alpha)
            })
        });
        out(v, vec![n, c])
    }

    fn fused_wsq_sums(x: FlexTensor, y: FlexTensor, w: FlexTensor, act: u32) -> FlexTensor {
        let (n, c, _) = dims3(&x);
        let v = with_f32(&x, |xs| {
            with_f32(&y, |ys| {
                with_f32(&w, |ws| {
                    kernels::wsq_sums(xs, &wsq_op(ys, ws, kdims(&x), act))
                })
            })
        });
        out(v, vec![n, c])
    }

    fn fused_focal_softmax_sums(x: FlexTensor, y: FlexTensor, gamma: f32) -> FlexTensor {
        flex_focal_softmax(x, TgtPrim::Mask(y), gamma)
    }

    fn fused_focal_softmax_sums_labels(
        x: FlexTensor,
        labels: FlexTensor,
        gamma: f32,
    ) -> FlexTensor {
        flex_focal_softmax(x, TgtPrim::Labels(labels), gamma)
    }
}

fn flex_focal_softmax(x: FlexTensor, t: TgtPrim<Flex>, gamma: f32) -> FlexTensor {
    let (n, c, _) = dims3(&x);
    let v = with_f32(&x, |xs| {
        with_tgt(&t, |t| kernels::focal_softmax_sums(xs, t, kdims(&x), gamma))
    });
    out(v, vec![n, c])
}

impl FusedLossGrads for Flex {
    fn fused_wbce_grad(x: FlexTensor, y: FlexTensor, w: FlexTensor, g: FlexTensor) -> FlexTensor {
        let (n, c, s) = dims3(&x);
        let g = f32_vec(&g);
        let v = with_f32(&x, |xs| {
            with_f32(&y, |ys| {
                with_f32(&w, |ws| kernels::wbce_backward(xs, ys, ws, &g, s))
            })
        });
        out(v, vec![n, c, s])
    }

    fn fused_region_sums_keep(
        x: FlexTensor,
        t: TgtPrim<Flex>,
        act: u32,
    ) -> (FlexTensor, FlexTensor) {
        let (n, c, s) = dims3(&x);
        let ce = act & CE_FLAG != 0;
        if Act::from_code(act) == Act::Identity {
            let sums = flex_region(x.clone(), t, act);
            return (sums, x);
        }
        let (v, p) = with_f32(&x, |xs| {
            with_tgt(&t, |t| {
                kernels::region_sums_keep(xs, &region_op(t, kdims(&x), act))
            })
        });
        (
            out(v, vec![n, c + usize::from(ce), NSTATS]),
            out(p, vec![n, c, s]),
        )
    }

    fn fused_region_sums_grad(
        p: FlexTensor,
        t: TgtPrim<Flex>,
        act: u32,
        g: FlexTensor,
    ) -> FlexTensor {
        let dims = kdims(&p);
        let g = f32_vec(&g);
        let mut p = owned_f32(p);
        let buf = p
            .try_storage_mut::<f32>()
            .expect("a fresh contiguous f32 buffer");
        with_tgt(&t, |t| {
            kernels::region_sums_backward_in_place(buf, &region_op(t, dims, act), &g)
        });
        p
    }

    fn fused_shape_aware_sums_keep(
        x: FlexTensor,
        y: FlexTensor,
        spatial: Vec<usize>,
        config: WeightMapConfig,
        scale: f32,
    ) -> (FlexTensor, FlexTensor) {
        let (n, c, s) = dims3(&x);
        let (v, d) = with_f32(&x, |xs| {
            with_f32(&y, |ys| {
                kernels::shape_aware_sums_keep(xs, ys, &spatial, &config, scale)
            })
        });
        (out(v, vec![n * c + 1]), out(d, vec![n, c, s]))
    }

    fn fused_scale_rows_grad(d: FlexTensor, g: FlexTensor) -> FlexTensor {
        let (n, c, s) = dims3(&d);
        // The row gradients (the last value, the checks' flag, has none).
        let g = f32_vec(&g)[..n * c].to_vec();
        // The loss differentiated directly: the kept derivatives are the gradient.
        if g.iter().all(|&v| v == 1.0) {
            return d;
        }
        let mut d = owned_f32(d);
        let buf = d
            .try_storage_mut::<f32>()
            .expect("a fresh contiguous f32 buffer");
        kernels::scale_rows_in_place(buf, &g, s);
        d
    }

    fn fused_bce_sums_keep(
        x: FlexTensor,
        y: FlexTensor,
        beta: f32,
        eps: f32,
    ) -> (FlexTensor, FlexTensor) {
        let (n, c, s) = dims3(&x);
        let (v, p) = with_f32(&x, |xs| {
            with_f32(&y, |ys| kernels::bce_sums_keep(xs, ys, n * c, s, beta, eps))
        });
        (out(v, vec![n, c]), out(p, vec![n, c, s]))
    }

    fn fused_bce_sums_grad(
        p: FlexTensor,
        y: FlexTensor,
        beta: f32,
        eps: f32,
        g: FlexTensor,
    ) -> FlexTensor {
        let (_, _, s) = dims3(&p);
        let g = f32_vec(&g);
        let mut p = owned_f32(p);
        let buf = p
            .try_storage_mut::<f32>()
            .expect("a fresh contiguous f32 buffer");
        with_f32(&y, |ys| {
            kernels::bce_backward_in_place(buf, ys, &g, s, beta, eps)
        });
        p
    }

    fn fused_ce_sums_keep(x: FlexTensor, labels: FlexTensor) -> (FlexTensor, FlexTensor) {
        let (n, c, s) = dims3(&x);
        let (v, p) = with_f32(&x, |xs| {
            with_labels(&labels, |l| kernels::ce_sums_keep(xs, l, kdims(&x)))
        });
        (out(v, vec![n]), out(p, vec![n, c, s]))
    }

    fn fused_ce_sums_grad(p: FlexTensor, labels: FlexTensor, g: FlexTensor) -> FlexTensor {
        let dims = kdims(&p);
        let g = f32_vec(&g);
        let mut p = owned_f32(p);
        let buf = p
            .try_storage_mut::<f32>()
            .expect("a fresh contiguous f32 buffer");
        with_labels(&labels, |l| kernels::ce_backward_in_place(buf, l, &g, dims));
        p
    }

    fn fused_focal_sigmoid_grad(
        x: FlexTensor,
        y: FlexTensor,
        gamma: f32,
        alpha: f32,
        g: FlexTensor,
    ) -> FlexTensor {
        let (n, c, s) = dims3(&x);
        let g = f32_vec(&g);
        let v = with_f32(&x, |xs| {
            with_f32(&y, |ys| {
                kernels::focal_sigmoid_backward(xs, ys, &g, s, gamma, alpha)
            })
        });
        out(v, vec![n, c, s])
    }

    fn fused_wsq_grad(
        x: FlexTensor,
        y: FlexTensor,
        w: FlexTensor,
        act: u32,
        g: FlexTensor,
    ) -> FlexTensor {
        let (n, c, s) = dims3(&x);
        let g = f32_vec(&g);
        let v = with_f32(&x, |xs| {
            with_f32(&y, |ys| {
                with_f32(&w, |ws| {
                    kernels::wsq_backward(xs, &wsq_op(ys, ws, kdims(&x), act), &g)
                })
            })
        });
        out(v, vec![n, c, s])
    }

    fn fused_focal_softmax_grad(
        x: FlexTensor,
        t: TgtPrim<Flex>,
        gamma: f32,
        g: FlexTensor,
    ) -> FlexTensor {
        let (n, c, s) = dims3(&x);
        let g = f32_vec(&g);
        let v = with_f32(&x, |xs| {
            with_tgt(&t, |t| {
                kernels::focal_softmax_backward(xs, t, &g, kdims(&x), gamma)
            })
        });
        out(v, vec![n, c, s])
    }
}

// ---------------------------------------------------------------------------------------------
// Autodiff: the forward of the inner backend plus a recorded backward.

/// The recorded backward of every fused op: `grad(state, g)` turns the upstream gradient `g`
/// into the gradient of the op's input, from what the forward kept (`state`: the logits, or the
/// probabilities or derivatives it computed from them, with the op's other operands). The ops
/// differ only in `grad` and in the state's type.
struct FusedBackward<B: Backend, S> {
    grad: fn(S, FloatTensor<B>) -> FloatTensor<B>,
}

impl<B: Backend, S> std::fmt::Debug for FusedBackward<B, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedBackward").finish_non_exhaustive()
    }
}

impl<B, S> Backward<B, 1> for FusedBackward<B, S>
where
    B: Backend,
    S: Clone + Send + std::fmt::Debug + 'static,
{
    type State = S;

    fn backward(self, ops: Ops<S, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (grad, state) = (self.grad, ops.state);
        unary::<B, _>(ops.parents, ops.node, grads, |g| grad(state, g));
    }
}

/// The gradient of an op from its kept state `(kept tensor, extra)` and the upstream gradient.
type Grad<B, E> = fn((FloatTensor<B>, E), FloatTensor<B>) -> FloatTensor<B>;

/// The backward of both softmax focal ops (mask or label targets).
fn focal_softmax_grad<B: FusedLossGrads>(
    (x, (t, gamma)): (FloatTensor<B>, (TgtPrim<B>, f32)),
    g: FloatTensor<B>,
) -> FloatTensor<B> {
    B::fused_focal_softmax_grad(x, t, gamma, g)
}

fn focal_softmax_forward<B: FusedLossOps>(
    x: FloatTensor<B>,
    t: TgtPrim<B>,
    gamma: f32,
) -> FloatTensor<B> {
    match t {
        TgtPrim::Mask(y) => B::fused_focal_softmax_sums(x, y, gamma),
        TgtPrim::Labels(l) => B::fused_focal_softmax_sums_labels(x, l, gamma),
    }
}

fn region_forward<B: FusedLossOps>(x: FloatTensor<B>, t: TgtPrim<B>, act: u32) -> FloatTensor<B> {
    match t {
        TgtPrim::Mask(y) => B::fused_region_sums(x, y, act),
        TgtPrim::Labels(l) => B::fused_region_sums_labels(x, l, act),
    }
}

/// Runs `plain(x, extra)` on the inner backend, or, when `x` is tracked, `keep(x, extra)`, which
/// also returns the probabilities it computed, and records the backward `grad` with the state
/// `(probabilities, extra)`: the backward then evaluates no activation (an exp and a division
/// per element were half of its time) and writes the gradient over the probabilities in place.
fn keep_ad<B, C, E>(
    grad: Grad<B, E>,
    x: FloatTensor<Autodiff<B, C>>,
    extra: E,
    keep: impl FnOnce(FloatTensor<B>, E) -> (FloatTensor<B>, FloatTensor<B>),
    plain: impl FnOnce(FloatTensor<B>, E) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: FusedLossOps + FusedLossGrads,
    C: CheckpointStrategy,
    E: Clone + Send + std::fmt::Debug + 'static,
{
    let (xp, node) = x.into_parts();
    match (FusedBackward { grad })
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (o, p) = keep(xp, extra.clone());
            prep.finish((p, extra), o)
        }
        OpsKind::UnTracked(prep) => prep.finish(plain(xp, extra)),
    }
}

/// The region sums through [`keep_ad`].
fn region_ad<B, C>(
    x: FloatTensor<Autodiff<B, C>>,
    t: TgtPrim<B>,
    act: u32,
) -> FloatTensor<Autodiff<B, C>>
where
    B: FusedLossOps + FusedLossGrads,
    C: CheckpointStrategy,
{
    keep_ad::<B, C, _>(
        // The state holds the probabilities of the forward, not the logits.
        |(p, (t, act)), g| B::fused_region_sums_grad(p, t, act, g),
        x,
        (t, act),
        |x, (t, act)| B::fused_region_sums_keep(x, t, act),
        |x, (t, act)| region_forward::<B>(x, t, act),
    )
}

/// Runs `forward(x, extra)` on the inner backend and, when `x` is tracked, records the backward
/// `grad` with the state `(x, extra)`: [`keep_ad`] with the logits as the kept tensor.
fn ad_op<B, C, E>(
    grad: Grad<B, E>,
    x: FloatTensor<Autodiff<B, C>>,
    extra: E,
    forward: impl Fn(FloatTensor<B>, E) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: FusedLossOps + FusedLossGrads,
    C: CheckpointStrategy,
    E: Clone + Send + std::fmt::Debug + 'static,
{
    keep_ad::<B, C, E>(grad, x, extra, |x, e| (forward(x.clone(), e), x), &forward)
}

impl<B, C> FusedLossOps for Autodiff<B, C>
where
    B: FusedLossOps + FusedLossGrads,
    C: CheckpointStrategy,
{
    fn fused_wbce_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (y, w) = (y.into_primitive(), w.into_primitive());
        ad_op::<B, C, _>(
            |(x, (y, w)), g| B::fused_wbce_grad(x, y, w, g),
            x,
            (y, w),
            |x, (y, w)| B::fused_wbce_sums(x, y, w),
        )
    }

    fn fused_shape_aware_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        spatial: Vec<usize>,
        config: WeightMapConfig,
        scale: f32,
    ) -> FloatTensor<Self> {
        let y = y.into_primitive();
        let y2 = y.clone();
        let sp = spatial.clone();
        // The kept derivatives are the backward's whole state (not x, y or the map).
        keep_ad::<B, C, _>(
            |(d, ()), g| B::fused_scale_rows_grad(d, g),
            x,
            (),
            move |x, ()| B::fused_shape_aware_sums_keep(x, y, spatial, config, scale),
            move |x, ()| B::fused_shape_aware_sums(x, y2, sp, config, scale),
        )
    }

    fn fused_float_summary(x: FloatTensor<Self>, range: bool) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_float_summary(x.into_primitive(), range))
    }

    fn fused_int_range(x: IntTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_int_range(x))
    }

    fn fused_region_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        act: u32,
    ) -> FloatTensor<Self> {
        region_ad::<B, C>(x, TgtPrim::Mask(y.into_primitive()), act)
    }

    fn fused_region_sums_labels(
        x: FloatTensor<Self>,
        labels: IntTensor<Self>,
        act: u32,
    ) -> FloatTensor<Self> {
        region_ad::<B, C>(x, TgtPrim::Labels(labels), act)
    }

    fn fused_bce_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        beta: f32,
        eps: f32,
    ) -> FloatTensor<Self> {
        let y = y.into_primitive();
        keep_ad::<B, C, _>(
            // The state holds σ(x) from the forward, not the logits.
            |(p, (y, beta, eps)), g| B::fused_bce_sums_grad(p, y, beta, eps, g),
            x,
            (y, beta, eps),
            |x, (y, beta, eps)| B::fused_bce_sums_keep(x, y, beta, eps),
            |x, (y, beta, eps)| B::fused_bce_sums(x, y, beta, eps),
        )
    }

    fn fused_ce_sums(x: FloatTensor<Self>, labels: IntTensor<Self>) -> FloatTensor<Self> {
        keep_ad::<B, C, _>(
            // The state holds the softmax probabilities of the forward, not the logits.
            |(p, labels), g| B::fused_ce_sums_grad(p, labels, g),
            x,
            labels,
            |x, labels| B::fused_ce_sums_keep(x, labels),
            |x, labels| B::fused_ce_sums(x, labels),
        )
    }

    fn fused_focal_sigmoid_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        gamma: f32,
        alpha: f32,
    ) -> FloatTensor<Self> {
        let y = y.into_primitive();
        ad_op::<B, C, _>(
            |(x, (y, gamma, alpha)), g| B::fused_focal_sigmoid_grad(x, y, gamma, alpha, g),
            x,
            (y, gamma, alpha),
            |x, (y, gamma, alpha)| B::fused_focal_sigmoid_sums(x, y, gamma, alpha),
        )
    }

    fn fused_wsq_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        w: FloatTensor<Self>,
        act: u32,
    ) -> FloatTensor<Self> {
        let (y, w) = (y.into_primitive(), w.into_primitive());
        ad_op::<B, C, _>(
            |(x, (y, w, act)), g| B::fused_wsq_grad(x, y, w, act, g),
            x,
            (y, w, act),
            |x, (y, w, act)| B::fused_wsq_sums(x, y, w, act),
        )
    }

    fn fused_focal_softmax_sums(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        gamma: f32,
    ) -> FloatTensor<Self> {
        let t = TgtPrim::Mask(y.into_primitive());
        ad_op::<B, C, _>(focal_softmax_grad::<B>, x, (t, gamma), |x, (t, gamma)| {
            focal_softmax_forward::<B>(x, t, gamma)
        })
    }

    fn fused_focal_softmax_sums_labels(
        x: FloatTensor<Self>,
        labels: IntTensor<Self>,
        gamma: f32,
    ) -> FloatTensor<Self> {
        ad_op::<B, C, _>(
            focal_softmax_grad::<B>,
            x,
            (TgtPrim::Labels(labels), gamma),
            |x, (t, gamma)| focal_softmax_forward::<B>(x, t, gamma),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor-level entry points.

/// Region sums `[N, C, 8]` of `act(x)` (`x` `[N, C, S]`) against a mask `[N, C, S]` or labels
/// `[N, S]`; `None` where the fused path does not apply.
pub(crate) fn region_sums(
    x: &Tensor<3>,
    mask: Option<&Tensor<3>>,
    labels: Option<&Tensor<2, Int>>,
    act: Act,
) -> Option<Tensor<3>> {
    if !applies(x) {
        return None;
    }
    let xd = x.clone().into_dispatch();
    let o = match (labels, mask) {
        (Some(l), _) => <Dispatch as FusedLossOps>::fused_region_sums_labels(
            xd,
            l.clone().into_dispatch(),
            act.code(),
        ),
        (None, Some(y)) if y.dtype() == DType::F32 => {
            <Dispatch as FusedLossOps>::fused_region_sums(xd, y.clone().into_dispatch(), act.code())
        }
        _ => return None,
    };
    Some(Tensor::from_dispatch(o))
}

/// Region sums and the cross-entropy in one pass (softmax, label targets): `[N, C + 1, 8]`, the
/// last row `[Σ −ln p_label, 0, …]` per sample; `None` where the fused path does not apply.
pub(crate) fn region_ce_sums(x: &Tensor<3>, labels: &Tensor<2, Int>) -> Option<Tensor<3>> {
    if !applies(x) {
        return None;
    }
    let o = <Dispatch as FusedLossOps>::fused_region_sums_labels(
        x.clone().into_dispatch(),
        labels.clone().into_dispatch(),
        Act::Softmax.code() | CE_FLAG,
    );
    Some(Tensor::from_dispatch(o))
}

/// Σ over pixels of BCE-with-logits (`pos_weight` β, label smoothing ε) per (sample, channel):
/// `[N, C]`; `None` where the fused path does not apply.
pub(crate) fn bce_sums(x: &Tensor<3>, y: &Tensor<3>, beta: f64, eps: f64) -> Option<Tensor<2>> {
    if !applies(x) || y.dtype() != DType::F32 {
        return None;
    }
    let o = <Dispatch as FusedLossOps>::fused_bce_sums(
        x.clone().into_dispatch(),
        y.clone().into_dispatch(),
        beta as f32,
        eps as f32,
    );
    Some(Tensor::from_dispatch(o))
}

/// Σ over pixels of softmax cross-entropy per sample, `[N]`; `None` where the fused path does
/// not apply.
pub(crate) fn ce_sums(x: &Tensor<3>, labels: &Tensor<2, Int>) -> Option<Tensor<1>> {
    if !applies(x) {
        return None;
    }
    let o = <Dispatch as FusedLossOps>::fused_ce_sums(
        x.clone().into_dispatch(),
        labels.clone().into_dispatch(),
    );
    Some(Tensor::from_dispatch(o))
}

/// Σ over pixels of the focal loss per (sample, channel), `[N, C]`: sigmoid (mask target, α
/// inside the kernel; α = None → no α) or softmax (mask or labels; α and class weights are
/// per-channel factors the caller applies to the sums). `None` where the fused path does not apply.
pub(crate) fn focal_sums(
    x: &Tensor<3>,
    mask: Option<&Tensor<3>>,
    labels: Option<&Tensor<2, Int>>,
    act: Act,
    gamma: f64,
    alpha: Option<f64>,
) -> Option<Tensor<2>> {
    if !applies(x) || mask.is_some_and(|m| m.dtype() != DType::F32) {
        return None;
    }
    let xd = x.clone().into_dispatch();
    let g = gamma as f32;
    let o = match (act, labels) {
        (Act::Sigmoid, None) => <Dispatch as FusedLossOps>::fused_focal_sigmoid_sums(
            xd,
            mask?.clone().into_dispatch(),
            g,
            alpha.map_or(-1.0, |a| a as f32),
        ),
        (Act::Softmax, Some(l)) => <Dispatch as FusedLossOps>::fused_focal_softmax_sums_labels(
            xd,
            l.clone().into_dispatch(),
            g,
        ),
        (Act::Softmax, None) => <Dispatch as FusedLossOps>::fused_focal_softmax_sums(
            xd,
            mask?.clone().into_dispatch(),
            g,
        ),
        (Act::Identity, _) | (Act::Sigmoid, Some(_)) => return None,
    };
    Some(Tensor::from_dispatch(o))
}

/// Σ over pixels of `w·(act(x) − y)²` per (sample, channel), `[N, C]` (`w` a constant weight
/// map); `None` where the fused path does not apply. `y = None` means a one-hot target carried by
/// the sign of `w` (`w < 0` where `y = 1`; see [`kernels::SIGN_FLAG`]).
pub(crate) fn wsq_sums(
    x: &Tensor<3>,
    y: Option<&Tensor<3>>,
    w: &Tensor<3>,
    act: Act,
) -> Option<Tensor<2>> {
    if !applies(x) || w.dtype() != DType::F32 || y.is_some_and(|y| y.dtype() != DType::F32) {
        return None;
    }
    let (y, code) = match y {
        Some(y) => (y, act.code()),
        None => (w, act.code() | SIGN_FLAG),
    };
    let o = <Dispatch as FusedLossOps>::fused_wsq_sums(
        x.clone().into_dispatch(),
        y.clone().into_dispatch(),
        w.clone().into_dispatch(),
        code,
    );
    Some(Tensor::from_dispatch(o))
}

/// `(all finite, min, max)` of a float tensor in one fused pass (min/max only with `range`, and
/// reported as 0 and 1 when every value lies in [0, 1]: the range checks compare them with those
/// bounds); `None` where the fused path does not apply. Used by the value checks.
pub(crate) fn float_summary<const D: usize>(
    x: &Tensor<D>,
    range: bool,
) -> Option<(bool, f64, f64)> {
    if !applies_quiet(x) {
        return None;
    }
    let o: Tensor<1> = Tensor::from_dispatch(<Dispatch as FusedLossOps>::fused_float_summary(
        x.clone().into_dispatch(),
        range,
    ));
    let v = o.into_data().convert::<f64>().try_into_vec::<f64>().ok()?;
    Some((v[0] == 1.0, v[1], v[2]))
}

/// `(min, max)` of integer labels in one fused pass (exact for |label| < 2^24, enough to decide
/// `0 ≤ label < C`); `None` where the fused path does not apply.
pub(crate) fn int_range<const D: usize>(
    like: &Tensor<3>,
    l: &Tensor<D, Int>,
) -> Option<(f64, f64)> {
    if !applies_quiet(like) {
        return None;
    }
    let o: Tensor<1> = Tensor::from_dispatch(<Dispatch as FusedLossOps>::fused_int_range(
        l.clone().into_dispatch(),
    ));
    let v = o.into_data().convert::<f64>().try_into_vec::<f64>().ok()?;
    Some((v[0], v[1]))
}

/// Σ over pixels of `w·BCE-with-logits` per (sample, channel), `[N, C]` (`w` a constant weight map
/// of the logits' shape); `None` where the fused path does not apply.
pub(crate) fn wbce_sums(x: &Tensor<3>, y: &Tensor<3>, w: &Tensor<3>) -> Option<Tensor<2>> {
    if !applies(x) || y.dtype() != DType::F32 || w.dtype() != DType::F32 || w.dims() != x.dims() {
        return None;
    }
    let o = <Dispatch as FusedLossOps>::fused_wbce_sums(
        x.clone().into_dispatch(),
        y.clone().into_dispatch(),
        w.clone().into_dispatch(),
    );
    Some(Tensor::from_dispatch(o))
}

/// Sums `[N·C]` of the shape-aware loss (U-Net-weighted BCE with logits, the map of each row
/// computed from `y > 0.5`) for logits `x` and a mask `y` `[N, C, S]`, S of shape `spatial`,
/// multiplied by `scale` (the reduction's 1/count: their sum is then the loss, whose gradient
/// needs no pass of its own), and whether every logit was finite and every target in [0, 1];
/// `None` where the fused path does not apply, or where `spatial` or `config` is invalid (the
/// composed path then reports the error).
pub(crate) fn shape_aware_sums(
    x: &Tensor<3>,
    y: &Tensor<3>,
    spatial: &[usize],
    config: &WeightMapConfig,
    scale: f64,
) -> Option<(Tensor<1>, bool)> {
    let valid = config.validate().is_ok()
        && (1..=3).contains(&spatial.len())
        && spatial.iter().all(|&d| d > 0)
        && spatial.iter().product::<usize>() == x.dims()[2];
    if !valid || y.dtype() != DType::F32 || y.dims() != x.dims() || !applies(x) {
        return None;
    }
    let o = <Dispatch as FusedLossOps>::fused_shape_aware_sums(
        x.clone().into_dispatch(),
        y.clone().into_dispatch(),
        spatial.to_vec(),
        *config,
        scale as f32,
    );
    let o: Tensor<1> = Tensor::from_dispatch(o);
    let rows = x.dims()[0] * x.dims()[1];
    let ok = o.clone().detach().narrow(0, rows, 1).into_scalar::<f32>() == 1.0;
    Some((o.narrow(0, 0, rows), ok))
}
