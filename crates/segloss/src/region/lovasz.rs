//! Lovász hinge and Lovász-Softmax losses (Berman et al. 2018), smp's definitions.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{activation, Tensor};

use crate::error::LossError;
use crate::input::{
    host_f32, prepare, Activation, Flat, InputRules, LossReduction, LossValue, Prepared,
};
use crate::loss::{no_weights, SegLoss};
use crate::region::{reduce_matrix, region_loss_methods, ALL_ACTIVATIONS};
use crate::spec::Args;
use crate::transfer::read;
use crate::Target;

/// Configuration to create a [Lovász loss](LovaszLoss).
#[derive(Config, Debug)]
pub struct LovaszLossConfig {
    /// One Lovász problem per image, averaged over the images (default: one problem for the
    /// whole batch).
    #[config(default = false)]
    pub per_image: bool,
    /// `Sigmoid` (default for masks and C = 1): the Lovász hinge on the logits; `Softmax`
    /// (default for label maps with C ≥ 2): the Lovász-Softmax; `None`: the Lovász-Softmax on
    /// given probabilities.
    pub activation: Option<Activation>,
    /// Target value / label whose pixels are left out of every Lovász problem.
    pub ignore_index: Option<i64>,
}

impl LovaszLossConfig {
    /// The keys of `lovasz` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] =
        &["per_image", "ignore_index", "activation", "reduction"];

    /// The configuration of a spec term `lovasz(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = LovaszLossConfig::new();
        if let Some(v) = a.boolean("per_image")? {
            c = c.with_per_image(v);
        }
        Ok(c.with_ignore_index(a.int("ignore_index")?)
            .with_activation(a.choice("activation")?))
    }
}

impl LovaszLossConfig {
    /// Initializes a [Lovász loss](LovaszLoss).
    pub fn init(&self) -> LovaszLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [Lovász loss](LovaszLoss) (every configuration is valid).
    pub fn try_init(&self) -> Result<LovaszLoss, LossError> {
        Ok(LovaszLoss {
            per_image: self.per_image,
            activation: self.activation,
            ignore_index: self.ignore_index,
        })
    }
}

/// The Lovász loss (Berman, Rannen Triki & Blaschko 2018, "The Lovász-Softmax loss: a tractable
/// surrogate for the optimization of the intersection-over-union measure in neural networks"),
/// as smp's `LovaszLoss`:
///
/// ```text
/// sigmoid (hinge):  e_i = 1 − x_i·(2y_i − 1),   ℓ = Σ_i relu(e_(i)) · g_i(y_(·))
/// softmax:          e_{c,i} = |y_{c,i} − p_{c,i}|,  ℓ = mean over the classes c present in the target
///                   of Σ_i e_{c,(i)} · g_i(y_{c,(·)})
/// g_i(y) = J_i − J_{i−1},  J_i = 1 − (Σy − Σ_{j≤i} y_j) / (Σy + Σ_{j≤i} (1 − y_j))
/// ```
///
/// with (·) the order of decreasing error: g is the gradient of the Lovász extension of the
/// Jaccard loss. The hinge takes the raw logits (no sigmoid anywhere); in sigmoid mode every
/// channel of every pixel is an element of one binary problem (smp's binary and multilabel
/// modes). The sort, the gathers and the cumulative sums are tensor operations, so the gradient
/// flows through the errors exactly as in PyTorch (the sort order carries no gradient).
///
/// Loss matrix: `[N, 1]` with `per_image = true` (one problem per image), else `[1, 1]`;
/// `mean` averages the images.
///
/// Range: [0, ∞) in sigmoid mode (the hinge grows with the logits' magnitude), [0, 1] in
/// softmax mode.
///
/// Edge cases: empty target (sigmoid) → `relu(max e) = relu(1 + max x)`, the hinge of the most
/// confident false positive; empty target (softmax) → only the classes present count, a group
/// with no class present scores 0; a class absent from the whole batch is skipped, not scored 0;
/// all-foreground targets → the hinge of the least confident true positive; soft labels → the
/// formulas as written with real-valued y; C = 1 with softmax → an error; `ignore_index` removes
/// the pixels before sorting (everywhere → 0).
///
/// Oracle: `segmentation_models_pytorch.losses.LovaszLoss(mode="binary" | "multiclass",
/// per_image, ignore_index)` (its Jaccard weights in the input's precision: smp casts them to
/// float32).
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::LovaszLossConfig;
///
/// let device = Device::flex().autodiff();
/// let logits = Tensor::<3>::from_floats([[[2.0, -1.0, 0.5], [-1.0, 1.0, 0.0]]], &device)
///     .require_grad();
/// let labels = Tensor::<2, Int>::from_ints([[0, 1, 1]], &device);
/// let v = LovaszLossConfig::new().init().forward(logits.clone(), labels, Reduction::Mean);
/// let g = logits.grad(&v.clone().backward()).unwrap();
/// assert_eq!(g.dims(), [1, 2, 3]);
/// let v = v.into_scalar::<f32>();
/// assert!(v > 0.0 && v < 1.0);
/// ```
#[derive(Module, Debug)]
pub struct LovaszLoss {
    /// One problem per image.
    pub per_image: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(LovaszLoss);

/// Row length up to which [`cumsum_rows`] takes one `cumsum`.
const CUMSUM_BLOCK: usize = 4096;

/// Cumulative sums along the rows of `t` `[rows, M]`, in blocks of [`CUMSUM_BLOCK`]: a cumsum
/// within each block plus the running total of the blocks before it. burn 0.22's `cumsum` on
/// wgpu returns wrong sums on rows of 100 000 elements (checked on Mesa's lavapipe; rows of
/// 32 768 are right), and the blocks also keep the f32 sums' rounding to that of a short row.
fn cumsum_rows(t: Tensor<2>) -> Tensor<2> {
    let [rows, m] = t.dims();
    if m <= CUMSUM_BLOCK {
        return t.cumsum(1);
    }
    let nb = m.div_ceil(CUMSUM_BLOCK);
    let padded = if nb * CUMSUM_BLOCK == m {
        t
    } else {
        let pad = t.clone().slice([0..rows, 0..1]).zeros_like();
        let pad = pad.repeat_dim(1, nb * CUMSUM_BLOCK - m);
        Tensor::cat(vec![t, pad], 1)
    };
    let within = padded.reshape([rows, nb, CUMSUM_BLOCK]).cumsum(2);
    let totals = within
        .clone()
        .slice([0..rows, 0..nb, CUMSUM_BLOCK - 1..CUMSUM_BLOCK]);
    // Exclusive running total of the blocks: the sum of every block before this one.
    let before = totals.clone().cumsum(1) - totals;
    (within + before)
        .reshape([rows, nb * CUMSUM_BLOCK])
        .slice([0..rows, 0..m])
}

/// The Lovász gradient of the Jaccard loss for sorted targets `gt` `[rows, M]`; `neg` is
/// `(1 − gt)` with ignored elements 0 (they come last in the order).
fn lovasz_grad(gt: Tensor<2>, neg: Tensor<2>) -> Tensor<2> {
    let [rows, m] = gt.dims();
    let gts = gt.clone().sum_dim(1);
    let inter = gts.clone() - cumsum_rows(gt);
    let union = gts + cumsum_rows(neg);
    let union = union.clone().mask_fill(union.equal_elem(0.0), 1.0);
    let jac = (inter / union).neg().add_scalar(1.0);
    if m == 1 {
        return jac;
    }
    let prev = Tensor::cat(
        vec![
            jac.clone().slice([0..rows, 0..1]).zeros_like(),
            jac.clone().slice([0..rows, 0..m - 1]),
        ],
        1,
    );
    jac - prev
}

/// Sorts each row of `errors` `[rows, M]` by decreasing error (ignored elements last) and returns
/// `Σ_i f(e_(i))·g_i` per row, `[rows, 1]`.
fn lovasz_rows(
    errors: Tensor<2>,
    gt: Tensor<2>,
    valid: Option<Tensor<2>>,
    hinge: bool,
) -> Tensor<2> {
    let key = errors.clone().detach();
    let (key, neg) = match &valid {
        Some(v) => (
            key.mask_fill(v.clone().equal_elem(0.0), f64::NEG_INFINITY),
            gt.clone().neg().add_scalar(1.0) * v.clone(),
        ),
        None => (key, gt.clone().neg().add_scalar(1.0)),
    };
    let (_, idx) = key.sort_descending_with_indices(1);
    let e = errors.gather(1, idx.clone());
    let e = if hinge { activation::relu(e) } else { e };
    let g = lovasz_grad(gt.gather(1, idx.clone()), neg.gather(1, idx.clone()));
    let contrib = match valid {
        Some(v) => e * g * v.gather(1, idx),
        None => e * g,
    };
    contrib.sum_dim(1)
}

impl LovaszLoss {
    /// Lovász hinge on the logits: `[R, 1]`.
    fn hinge(&self, p: &Prepared) -> Tensor<2> {
        let (n, c, s) = (p.n, p.c, p.s());
        let rows = if self.per_image { n } else { 1 };
        let m = n * c * s / rows;
        let x = p.x.clone().reshape([rows, m]);
        let y = p.y().reshape([rows, m]);
        let errors = (x * y.clone().mul_scalar(2.0).sub_scalar(1.0))
            .neg()
            .add_scalar(1.0);
        let valid = p
            .valid
            .clone()
            .map(|v| v.expand([n, c, s]).reshape([rows, m]));
        lovasz_rows(errors, y, valid, true)
    }

    /// Lovász-Softmax over the classes present: `[R, 1]`.
    fn softmax(&self, p: &Prepared) -> Tensor<2> {
        let (n, c, s) = (p.n, p.c, p.s());
        let probs = p.probs();
        let y = p.y();
        let valid = p.valid.clone().map(|v| v.expand([n, c, s]));
        // [G, C, M]: one group per image, or the whole batch.
        let (g, m) = if self.per_image { (n, s) } else { (1, n * s) };
        let group = |t: Tensor<3>| -> Tensor<2> {
            if self.per_image {
                t.reshape([g * c, m])
            } else {
                t.swap_dims(0, 1).reshape([c, m])
            }
        };
        let (probs, y) = (group(probs), group(y));
        let valid = valid.map(group);
        let errors = (y.clone() - probs).abs();
        let present = y
            .clone()
            .sum_dim(1)
            .greater_elem(0.0)
            .float()
            .reshape([g, c]);
        let present = present.cast(errors.dtype());
        let per_class = lovasz_rows(errors, y, valid, false).reshape([g, c]);
        let count = present.clone().sum_dim(1).clamp_min(1.0);
        (per_class * present).sum_dim(1) / count
    }
}

impl SegLoss for LovaszLoss {
    fn name(&self) -> &'static str {
        "lovasz"
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
            &InputRules {
                activation: self.activation,
                allowed: ALL_ACTIVATIONS,
                fallback: Activation::Sigmoid,
                ignore_index: self.ignore_index,
                loss: "lovasz",
            },
        )?;
        if let Some(v) = self.host(&p, reduction) {
            return Ok(v);
        }
        let m = match p.activation {
            Activation::Sigmoid => self.hinge(&p),
            _ => self.softmax(&p),
        };
        Ok(reduce_matrix(m, reduction))
    }
}

// ---------------------------------------------------------------------------------------------
// The fused CPU path: the Lovász problems solved on the host.
//
// The sort, the Jaccard steps and the coefficients are computed on a host copy of the logits;
// the loss enters the graph as `lin − detach(lin) + value` with `lin = Σ x ⊙ K`, where K is
// ∂loss/∂x (through the hinge, or through |y − p| and the softmax Jacobian). Value and gradient
// are those of the composed formula below (same f32 Jaccard steps, as smp's); only the order of
// tied errors may differ (the loss value does not depend on it). Used where the fused kernels
// apply, nothing is ignored and the loss is reduced; the composed path (a sort, gathers and
// cumulative sums of burn tensors) serves every other case.

/// `e` (finite values) in decreasing order, ties in increasing index order, as packed entries
/// `(key << 32) | (y << 31) | index`: `key` the complemented order-preserving bit pattern of the
/// error (decoded by [`unkey`]), `y` the element's hard target bit when `hard_y` is given (ties
/// then put y = 0 first; the loss value does not depend on the order of ties), index < 2^31.
/// With `positive_only`, the errors ≤ 0 are left out: in the hinge they come after every
/// positive error, add nothing to the loss and get no gradient (relu), so their order is moot.
///
/// One stable bucketing pass, linear in the value (about 32 elements per bucket, monotone, so the
/// buckets come in order), then each bucket, small enough for the cache, sorted on its own (in
/// parallel). On the 2-core development machine a 2^19-element row takes 10–15 ms this way,
/// against 12–13 ms for `sort_unstable` and for a four-pass LSD radix sort over the whole row,
/// which are bound by cache misses; carrying the target bit saves two gathers after the sort.
fn sort_desc(e: &[f32], hard_y: Option<&[f32]>, positive_only: bool) -> Vec<u64> {
    use rayon::prelude::*;
    let keep = |v: f32| !positive_only || v > 0.0;
    let m = e.iter().filter(|&&v| keep(v)).count();
    let key = |i: usize| {
        let b = e[i].to_bits();
        let asc = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
        let y = hard_y.map_or(0, |y| u64::from(y[i] == 1.0));
        (u64::from(!asc) << 32) | (y << 31) | i as u64
    };
    let (lo, hi) = e
        .iter()
        .filter(|&&v| keep(v))
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if m < 1 << 12 || hi <= lo {
        let mut v: Vec<u64> = (0..e.len()).filter(|&i| keep(e[i])).map(key).collect();
        v.sort_unstable();
        return v;
    }
    let nb = (m / 32).clamp(2, 1 << 16);
    // (hi − v)·scale is monotone in v under rounding: the buckets come in order of the value.
    let scale = ((nb - 1) as f64 / (f64::from(hi) - f64::from(lo))) as f32;
    let bucket = |v: f32| (((hi - v) * scale) as usize).min(nb - 1);
    let mut start = vec![0usize; nb + 1];
    for &v in e {
        if keep(v) {
            start[bucket(v) + 1] += 1;
        }
    }
    for b in 0..nb {
        start[b + 1] += start[b];
    }
    let mut at = start.clone();
    let mut out = vec![0u64; m];
    for (i, &v) in e.iter().enumerate() {
        if keep(v) {
            let b = bucket(v);
            out[at[b]] = key(i);
            at[b] += 1;
        }
    }
    let mut parts: Vec<&mut [u64]> = Vec::with_capacity(nb);
    let mut rest = &mut out[..];
    for b in 0..nb {
        let (head, tail) = rest.split_at_mut(start[b + 1] - start[b]);
        parts.push(head);
        rest = tail;
    }
    parts
        .into_par_iter()
        .with_min_len(256)
        .for_each(|p| p.sort_unstable());
    out
}

/// The error of a [`sort_desc`] entry.
fn unkey(p: u64) -> f32 {
    let asc = !((p >> 32) as u32);
    f32::from_bits(if asc >> 31 == 1 {
        asc & 0x7fff_ffff
    } else {
        !asc
    })
}

/// One Lovász problem on the host: its elements are the blocks `(n, c)` of `[N, C, S]` (each `S`
/// contiguous values), concatenated.
struct Problem {
    blocks: Vec<(usize, usize)>,
}

impl LovaszLoss {
    /// The reduced loss through the host path, or `None` where it does not apply.
    fn host(&self, p: &Prepared, reduction: LossReduction) -> Option<LossValue> {
        use rayon::prelude::*;
        if reduction == LossReduction::None || p.valid.is_some() || !crate::fused::applies(&p.x) {
            return None;
        }
        let (n, c, s) = (p.n, p.c, p.s());
        let x = host_f32(&p.x)?;
        let labels: Option<Vec<i64>> = match &p.labels {
            Some(l) => Some(
                read(l.clone())
                    .convert::<i64>()
                    .try_into_vec::<i64>()
                    .ok()?,
            ),
            None => None,
        };
        let mask = match labels {
            Some(_) => None,
            None => Some(host_f32(&p.y())?),
        };
        // The target of block (n, c), appended to `out`.
        let target_block = |ni: usize, ci: usize, out: &mut Vec<f32>| match (&labels, &mask) {
            (Some(l), _) => out.extend(l[ni * s..(ni + 1) * s].iter().map(|&v| {
                if v == ci as i64 {
                    1.0
                } else {
                    0.0
                }
            })),
            (_, Some(m)) => out.extend_from_slice(&m[(ni * c + ci) * s..][..s]),
            _ => unreachable!(),
        };
        let hinge = p.activation == Activation::Sigmoid;
        let probs: Vec<f32> = match p.activation {
            Activation::Softmax => {
                let mut pr = x.clone();
                let mut mx = vec![f32::NEG_INFINITY; s];
                let mut sum = vec![0f32; s];
                for ni in 0..n {
                    let img = &mut pr[ni * c * s..(ni + 1) * c * s];
                    mx.fill(f32::NEG_INFINITY);
                    sum.fill(0.0);
                    for row in img.chunks(s) {
                        for (m, &v) in mx.iter_mut().zip(row) {
                            *m = m.max(v);
                        }
                    }
                    for row in img.chunks_mut(s) {
                        for ((v, m), t) in row.iter_mut().zip(&mx).zip(sum.iter_mut()) {
                            *v = (*v - m).exp();
                            *t += *v;
                        }
                    }
                    for row in img.chunks_mut(s) {
                        for (v, t) in row.iter_mut().zip(&sum) {
                            *v /= t;
                        }
                    }
                }
                pr
            }
            _ => Vec::new(),
        };
        let pv: &[f32] = if p.activation == Activation::Softmax {
            &probs
        } else {
            &x
        };
        // The problems: per image (or one) over every element with the hinge; per (group,
        // class) otherwise.
        let groups = if self.per_image { n } else { 1 };
        let per = n / groups;
        let problems: Vec<Problem> = if hinge {
            (0..groups)
                .map(|gi| Problem {
                    blocks: (gi * per..(gi + 1) * per)
                        .flat_map(|ni| (0..c).map(move |ci| (ni, ci)))
                        .collect(),
                })
                .collect()
        } else {
            (0..groups)
                .flat_map(|gi| {
                    (0..c).map(move |ci| Problem {
                        blocks: (gi * per..(gi + 1) * per).map(|ni| (ni, ci)).collect(),
                    })
                })
                .collect()
        };
        // Per problem: Σ f(e)·g, whether its target has any foreground, and ∂/∂(its values).
        let solved: Vec<(f64, bool, Vec<f32>)> = problems
            .par_iter()
            .map(|pb| {
                let len = pb.blocks.len() * s;
                assert!(len < 1 << 31, "a Lovász problem of 2^31 elements or more");
                let mut yv = Vec::with_capacity(len);
                let mut vv = Vec::with_capacity(len);
                for &(ni, ci) in &pb.blocks {
                    target_block(ni, ci, &mut yv);
                    vv.extend_from_slice(&pv[(ni * c + ci) * s..][..s]);
                }
                let present = hinge || yv.iter().sum::<f32>() > 0.0;
                // Errors: the hinge 1 − x·(2y − 1) on logits; |y − p| on probabilities.
                let e: Vec<f32> = if hinge {
                    vv.iter()
                        .zip(&yv)
                        .map(|(&xv, &y)| 1.0 - xv * (2.0 * y - 1.0))
                        .collect()
                } else {
                    vv.iter().zip(&yv).map(|(&q, &y)| (y - q).abs()).collect()
                };
                // Hard targets ride in the sort (bit 31 of each entry): no gathers afterwards.
                let hard = yv.iter().all(|&y| y == 0.0 || y == 1.0);
                let sorted = sort_desc(&e, hard.then_some(&yv[..]), hinge);
                let mut v = 0f64;
                let mut d = vec![0f32; len];
                if present {
                    // The Jaccard steps g_i = J_i − J_(i−1) in f32, as smp (and `lovasz_grad`).
                    let gts: f32 = yv.iter().sum();
                    let (mut cy, mut cn, mut prev) = (0f32, 0f32, 0f32);
                    for &pk in &sorted {
                        let j = (pk & 0x7fff_ffff) as usize;
                        let yj = if hard { ((pk >> 31) & 1) as f32 } else { yv[j] };
                        cy += yj;
                        cn += 1.0 - yj;
                        let union = gts + cn;
                        let union = if union == 0.0 { 1.0 } else { union };
                        let jac = 1.0 - (gts - cy) / union;
                        let gi = jac - prev;
                        prev = jac;
                        let ej = unkey(pk);
                        if hinge {
                            if ej > 0.0 {
                                v += f64::from(ej) * f64::from(gi);
                                d[j] = -(2.0 * yj - 1.0) * gi;
                            }
                        } else {
                            v += f64::from(ej) * f64::from(gi);
                            // ∂|y − p|/∂p = sign(p − y) (0 where equal, as torch's abs).
                            let diff = if hard {
                                if ej == 0.0 {
                                    0.0
                                } else {
                                    1.0 - 2.0 * yj
                                }
                            } else {
                                vv[j] - yj
                            };
                            d[j] = if diff > 0.0 {
                                gi
                            } else if diff < 0.0 {
                                -gi
                            } else {
                                0.0
                            };
                        }
                    }
                }
                (v, present, d)
            })
            .collect();
        // Combine: a row's value is its problem's (hinge) or the mean over its present classes.
        let per_row = problems.len() / groups;
        let scale = match reduction {
            LossReduction::Sum => 1.0,
            _ => 1.0 / groups as f64, // mean of the [R, 1] matrix = batch_mean
        };
        let mut k = vec![0f32; n * c * s];
        let mut value = 0f64;
        for gi in 0..groups {
            let part = &solved[gi * per_row..(gi + 1) * per_row];
            let count = part.iter().filter(|t| t.1).count().max(1) as f64;
            let w = scale / count;
            for ((v, present, d), pb) in part.iter().zip(&problems[gi * per_row..]) {
                if !present {
                    continue;
                }
                value += v * w;
                for (b, &(ni, ci)) in pb.blocks.iter().enumerate() {
                    let dst = &mut k[(ni * c + ci) * s..][..s];
                    for (o, &dv) in dst.iter_mut().zip(&d[b * s..(b + 1) * s]) {
                        *o = dv * w as f32;
                    }
                }
            }
        }
        if p.activation == Activation::Softmax {
            // Through the softmax Jacobian: ∂/∂x_c = p_c (K_c − Σ_c' p_c' K_c').
            let mut dot = vec![0f32; s];
            for ni in 0..n {
                let kk = &mut k[ni * c * s..(ni + 1) * c * s];
                let pp = &probs[ni * c * s..(ni + 1) * c * s];
                dot.fill(0.0);
                for (kr, pr) in kk.chunks(s).zip(pp.chunks(s)) {
                    for ((t, &a), &b) in dot.iter_mut().zip(kr).zip(pr) {
                        *t += a * b;
                    }
                }
                for (kr, pr) in kk.chunks_mut(s).zip(pp.chunks(s)) {
                    for ((a, &b), &t) in kr.iter_mut().zip(pr).zip(&dot) {
                        *a = b * (*a - t);
                    }
                }
            }
        }
        let kt: Tensor<3> = crate::input::const_tensor_of(&p.x, k, [n, c, s]);
        Some(crate::region::host::linearised(p.x.clone(), kt, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed sort against a plain sort of (−e, index), with ties, both signs and zeros.
    #[test]
    fn sort_desc_matches_a_plain_sort() {
        for m in [1usize, 7, 5000, 70_000] {
            let e: Vec<f32> = (0..m as u64)
                .map(|i| {
                    let h = i.wrapping_mul(2_654_435_761) % 1_000_003;
                    ((h % 4001) as f32 - 2000.0) * 0.25 // many ties, -500..500
                })
                .collect();
            let y: Vec<f32> = (0..m).map(|i| (i % 3 == 0) as u8 as f32).collect();
            let mut want: Vec<usize> = (0..m).collect();
            want.sort_by(|&a, &b| e[b].total_cmp(&e[a]).then(a.cmp(&b)));
            let got = sort_desc(&e, None, false);
            let idx: Vec<usize> = got.iter().map(|&p| (p & 0x7fff_ffff) as usize).collect();
            assert_eq!(idx, want, "m = {m}");
            assert!(got.iter().zip(&idx).all(|(&p, &i)| unkey(p) == e[i]));
            // With the target bit: the same errors in the same order, the bit matching y.
            let got = sort_desc(&e, Some(&y), false);
            let mut prev = f32::INFINITY;
            for &p in &got {
                let i = (p & 0x7fff_ffff) as usize;
                assert_eq!(unkey(p), e[i]);
                assert_eq!((p >> 31) & 1, y[i] as u64);
                assert!(unkey(p) <= prev);
                prev = unkey(p);
            }
            // Positive errors only: the head of the full order.
            let pos = sort_desc(&e, None, true);
            let npos = e.iter().filter(|&&v| v > 0.0).count();
            assert_eq!(pos.len(), npos);
            let full = sort_desc(&e, None, false);
            assert_eq!(&pos[..], &full[..npos]);
        }
    }
}
