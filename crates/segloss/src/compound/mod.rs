//! Compound losses: fixed combinations of a distribution term and a region term (Combo,
//! exponential-logarithmic), and weighted sums of any losses written in the spec grammar
//! (`0.7*dice + 0.3*ce`, [`CompositeLoss`](composite::CompositeLoss), built by
//! [`LossSpec::build`](crate::LossSpec::build)), with the sums the CPU kernels fuse
//! ([`SumPart`](crate::SumPart)).
//!
//! Combo and exp_log are defined over the whole batch: their loss matrix is `[1, 1]`, so every
//! reduction gives the loss itself (`none` gives it as `[1, 1]`).

pub mod combo;
pub mod composite;
pub mod exp_log;
mod fusion;

use burn::tensor::Tensor;

use crate::input::{Activation, Prepared};

/// `ln Σ_k exp(x_k)` over `dim` (kept), stable (shifted by the detached maximum).
pub(crate) fn logsumexp(x: Tensor<3>, dim: usize) -> Tensor<3> {
    let m = x.clone().max_dim(dim).detach();
    (x - m.clone()).exp().sum_dim(dim).log() + m
}

/// `ln(1 − softmax(x)_c)` over the channel axis of `[N, C, S]` (C ≥ 2), computed exactly as
/// `logsumexp_{k≠c} x_k − logsumexp_k x_k` (no rounding of p near 1).
pub(crate) fn log1m_softmax(x: Tensor<3>) -> Tensor<3> {
    let [n, c, s] = x.dims();
    let lse = logsumexp(x.clone(), 1);
    let parts: Vec<Tensor<3>> = (0..c)
        .map(|k| {
            let others = if k == 0 {
                x.clone().slice([0..n, 1..c, 0..s])
            } else if k == c - 1 {
                x.clone().slice([0..n, 0..c - 1, 0..s])
            } else {
                Tensor::cat(
                    vec![
                        x.clone().slice([0..n, 0..k, 0..s]),
                        x.clone().slice([0..n, k + 1..c, 0..s]),
                    ],
                    1,
                )
            };
            logsumexp(others, 1)
        })
        .collect();
    Tensor::cat(parts, 1) - lse
}

/// `max(ln p, −100)` (PyTorch's BCELoss clamp) for probabilities, with a finite gradient
/// everywhere: below p = 1e-30 the value is the clamped log and the gradient 0 (instead of the
/// NaN of `0·∞` that the clamp's backward would give at p = 0).
pub(crate) fn ln_clamped(p: Tensor<3>) -> Tensor<3> {
    let tiny = p.clone().lower_elem(1e-30);
    let exact = p.clone().detach().log().clamp_min(-100.0);
    p.mask_fill(tiny.clone(), 1.0).log().mask_where(tiny, exact)
}

/// `(ln p, ln(1 − p))` `[N, C, S]` for the resolved activation, from the logits without
/// rounding: sigmoid with log-sigmoid, softmax with log-softmax and [`log1m_softmax`];
/// probabilities (`none`) with [`ln_clamped`].
pub(crate) fn log_probs(p: &Prepared) -> (Tensor<3>, Tensor<3>) {
    match p.activation {
        Activation::Softmax => (p.log_softmax(), log1m_softmax(p.x.clone())),
        Activation::Sigmoid => {
            let ls = burn::tensor::activation::log_sigmoid(p.x.clone());
            (ls.clone(), ls - p.x.clone())
        }
        Activation::None => (
            ln_clamped(p.x.clone()),
            ln_clamped(p.x.clone().neg().add_scalar(1.0)),
        ),
    }
}
