//! Input handling shared by every loss (`docs/conventions.md`): activations, the target forms,
//! one-hot encoding, `ignore_index`, validation and reductions.
//!
//! Every loss flattens its input to `[N, C, S]` (S = the product of the 1–3 spatial sizes), so
//! one implementation serves 1D, 2D and 3D data; pixel-wise results are reshaped back.

use burn::config::Config;
use burn::nn::loss::Reduction;
use burn::tensor::{activation, Float, Int, Tensor};

use crate::error::LossError;
use crate::spec::SpecWord;
use crate::transfer::{note_upload, read, read_scalar};

/// How a loss turns raw predictions into probabilities.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Logistic sigmoid on each channel independently (binary / multi-label).
    Sigmoid,
    /// Softmax over the channel axis (multi-class).
    Softmax,
    /// The predictions already are probabilities in [0, 1].
    None,
}

impl Activation {
    /// The name used in the spec grammar.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
            Activation::None => "none",
        }
    }
}

impl SpecWord for Activation {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("sigmoid", Activation::Sigmoid),
        ("softmax", Activation::Softmax),
        ("none", Activation::None),
    ];
}

/// The target of a loss: a mask of the prediction's shape or a label map of class indices.
///
/// - `Target::mask(t)` / `Tensor<D>` → a mask `[N, C, *spatial]` (binary, multi-label, one-hot or
///   soft values in [0, 1]).
/// - `Target::labels(t)` / `Tensor<D, Int>` → a label map `[N, 1, *spatial]` or `[N, *spatial]` of
///   class indices, one-hot encoded to C channels inside the loss.
#[derive(Debug, Clone)]
pub struct Target {
    kind: TargetKind,
    shape: Vec<usize>,
}

#[derive(Debug, Clone)]
enum TargetKind {
    Mask(Tensor<1>),
    Labels(Tensor<1, Int>),
}

impl Target {
    /// A mask target of the prediction's shape.
    pub fn mask<const D: usize>(t: Tensor<D>) -> Self {
        let f = Flat::from_tensor(t);
        Target {
            kind: TargetKind::Mask(f.values),
            shape: f.shape,
        }
    }

    /// A label-map target of class indices, `[N, 1, *spatial]` or `[N, *spatial]`.
    pub fn labels<const D: usize>(t: Tensor<D, Int>) -> Self {
        let shape = t.dims().to_vec();
        let n = shape.iter().product::<usize>();
        // burn cannot reshape an empty tensor: keep a placeholder; `prepare` reports `Empty`.
        let values = if n == 0 {
            Tensor::zeros([1], &t.device())
        } else {
            t.reshape([n])
        };
        Target {
            kind: TargetKind::Labels(values),
            shape,
        }
    }

    /// A mask target from flat values and its logical shape (rank-erased callers: the CLI).
    ///
    /// # Panics
    ///
    /// If the shape's element count differs from the number of values.
    pub fn mask_flat(values: Tensor<1>, shape: Vec<usize>) -> Self {
        assert_eq!(
            values.dims()[0],
            shape.iter().product::<usize>().max(1),
            "mask values vs shape"
        );
        Target {
            kind: TargetKind::Mask(values),
            shape,
        }
    }

    /// A label-map target from flat class indices and its logical shape.
    ///
    /// # Panics
    ///
    /// If the shape's element count differs from the number of values.
    pub fn labels_flat(values: Tensor<1, Int>, shape: Vec<usize>) -> Self {
        assert_eq!(
            values.dims()[0],
            shape.iter().product::<usize>().max(1),
            "labels vs shape"
        );
        Target {
            kind: TargetKind::Labels(values),
            shape,
        }
    }

    /// The target's shape as given.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Whether this is a label map (class indices) rather than a mask.
    pub fn is_labels(&self) -> bool {
        matches!(self.kind, TargetKind::Labels(_))
    }
}

impl<const D: usize> From<Tensor<D>> for Target {
    fn from(t: Tensor<D>) -> Self {
        Target::mask(t)
    }
}

impl<const D: usize> From<Tensor<D, Int>> for Target {
    fn from(t: Tensor<D, Int>) -> Self {
        Target::labels(t)
    }
}

/// A reduction over the per-element (or per-sample-per-class) losses, including `None`.
///
/// burn's [`Reduction`] has no "none" variant (that is `forward_no_reduction`); the spec grammar
/// and the CLI need one, so segloss uses this enum internally and converts from burn's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReduction {
    /// The mean (each loss documents its denominator).
    Mean,
    /// The plain sum.
    Sum,
    /// The sum divided by the batch size N.
    BatchMean,
    /// No reduction: the per-element map (pixel-wise losses) or the `[N, C]` matrix (region losses).
    None,
}

impl LossReduction {
    /// The name used in the spec grammar.
    pub fn name(self) -> &'static str {
        match self {
            LossReduction::Mean => "mean",
            LossReduction::Sum => "sum",
            LossReduction::BatchMean => "batch_mean",
            LossReduction::None => "none",
        }
    }
}

impl SpecWord for LossReduction {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("mean", LossReduction::Mean),
        ("sum", LossReduction::Sum),
        ("batch_mean", LossReduction::BatchMean),
        ("none", LossReduction::None),
    ];
}

impl From<Reduction> for LossReduction {
    fn from(r: Reduction) -> Self {
        match r {
            Reduction::Mean | Reduction::Auto => LossReduction::Mean,
            Reduction::Sum => LossReduction::Sum,
            Reduction::BatchMean => LossReduction::BatchMean,
        }
    }
}

/// A rank-erased float tensor: flat values and the shape they stand for.
///
/// Used for loss values (`[1]` for a reduced loss, the per-element map or the `[N, C]` matrix for
/// `reduction = none`) and for inputs whose rank is only known at run time (the spec and the CLI).
#[derive(Debug, Clone)]
pub struct Flat {
    /// The values, flattened (C order).
    pub values: Tensor<1>,
    /// The logical shape of `values`.
    pub shape: Vec<usize>,
}

/// A loss value (see [`Flat`]).
pub type LossValue = Flat;

impl Flat {
    /// A scalar loss.
    pub fn scalar(v: Tensor<1>) -> Self {
        Flat {
            values: v,
            shape: vec![1],
        }
    }

    /// Flattens a tensor of any rank.
    ///
    /// An empty tensor keeps its shape (with a 0) and a one-element placeholder, since burn cannot
    /// reshape it; every loss reports it as [`LossError::Empty`].
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Self {
        let shape = t.dims().to_vec();
        let n = shape.iter().product::<usize>();
        let values = if n == 0 {
            Tensor::zeros([1], &t.device())
        } else {
            t.reshape([n])
        };
        Flat { values, shape }
    }

    /// Reshapes to a tensor of rank `D` (panics if the rank differs: an internal invariant).
    pub fn into_tensor<const D: usize>(self) -> Tensor<D> {
        let shape: [usize; D] =
            self.shape.clone().try_into().unwrap_or_else(|_| {
                panic!("loss value of shape {:?} is not of rank {D}", self.shape)
            });
        self.values.reshape(shape)
    }
}

/// What a loss accepts: its activation setting and which activations make sense for it.
#[derive(Debug, Clone)]
pub(crate) struct InputRules {
    /// The configured activation (`None` = the default of `docs/conventions.md#activations`).
    pub activation: Option<Activation>,
    /// Activations the loss supports.
    pub allowed: &'static [Activation],
    /// The activation used when none is configured and the default rule picks one not allowed.
    pub fallback: Activation,
    /// `ignore_index`, if configured.
    pub ignore_index: Option<i64>,
    /// The loss's name, for messages.
    pub loss: &'static str,
}

impl InputRules {
    /// The rules of a loss that works on probabilities from any activation and has no
    /// `ignore_index` (the boundary losses).
    pub fn any_activation(loss: &'static str, activation: Option<Activation>) -> Self {
        InputRules {
            activation,
            allowed: &[Activation::Sigmoid, Activation::Softmax, Activation::None],
            fallback: Activation::Sigmoid,
            ignore_index: None,
            loss,
        }
    }
}

/// The validated, flattened input of a loss.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub n: usize,
    pub c: usize,
    pub spatial: Vec<usize>,
    /// Raw predictions `[N, C, S]`.
    pub x: Tensor<3>,
    /// The resolved activation.
    pub activation: Activation,
    /// The target as `[N, C, S]` floats (one-hot for label maps, built on first use by
    /// [`y`](Self::y): the fused kernels read the labels directly); zero where ignored.
    y: std::sync::OnceLock<Tensor<3>>,
    /// Class indices `[N, S]` for label-map targets (ignored pixels set to 0).
    pub labels: Option<Tensor<2, Int>>,
    /// 1 where the element counts and 0 where it is ignored; `None` if nothing is ignored.
    /// `[N, 1, S]` for label maps (a pixel is ignored); `[N, C, S]` for masks (an element is).
    pub valid: Option<Tensor<3>>,
    /// `[N, 1, S]`: 1 where every channel of the pixel counts (per-pixel losses).
    pub valid_px: Option<Tensor<3>>,
    /// Number of counted pixel positions (pixels of `valid_px`).
    pub n_valid: usize,
    /// Number of counted elements of `[N, C, S]`.
    pub n_valid_el: usize,
}

impl Prepared {
    /// The target as `[N, C, S]` floats: the mask, or the one-hot encoding of the labels (zero at
    /// ignored pixels), built once on first use.
    pub fn y(&self) -> Tensor<3> {
        self.y
            .get_or_init(|| {
                let l2 = self
                    .labels
                    .as_ref()
                    .expect("a label target when y is not set");
                let mut y: Tensor<3> = l2
                    .clone()
                    .one_hot_fill::<3>(self.c, 1.0, 0.0, 1)
                    .float()
                    .cast(self.x.dtype());
                if let Some(v) = &self.valid {
                    y = y * v.clone();
                }
                y
            })
            .clone()
    }

    /// N·S.
    pub fn pixels(&self) -> usize {
        self.n * self.spatial.iter().product::<usize>()
    }

    /// S.
    pub fn s(&self) -> usize {
        self.spatial.iter().product()
    }

    /// `ln p` and `ln(1 − p)` for the sigmoid/none activations, `[N, C, S]`, stable:
    /// from logits with log-sigmoid; from probabilities with ln clamped at −100 (as PyTorch).
    pub fn log_p_and_log_1mp(&self) -> (Tensor<3>, Tensor<3>) {
        match self.activation {
            Activation::None => {
                // max(ln p, −100) as PyTorch, written as ln(max(p, e^−100)) so that p = 0 gives a
                // zero gradient instead of 0·∞ = NaN.
                const FLOOR: f64 = 3.720_075_976_020_836e-44; // e^-100
                let p = self.x.clone();
                let lp = p.clone().clamp_min(FLOOR).log().clamp_min(-100.0);
                let l1mp = p
                    .neg()
                    .add_scalar(1.0)
                    .clamp_min(FLOOR)
                    .log()
                    .clamp_min(-100.0);
                (lp, l1mp)
            }
            _ => {
                let ls = activation::log_sigmoid(self.x.clone());
                // ln(1 − σ(x)) = ln σ(−x) = ln σ(x) − x
                let l1mp = ls.clone() - self.x.clone();
                (ls, l1mp)
            }
        }
    }

    /// `ln p` over the channel axis for the softmax activation, `[N, C, S]`.
    pub fn log_softmax(&self) -> Tensor<3> {
        activation::log_softmax(self.x.clone(), 1)
    }

    /// Probabilities `[N, C, S]` for the resolved activation.
    ///
    /// The sigmoid is taken as `exp(ln σ(x))`: the same values as `σ(x)`, but its gradient is
    /// `σ(x)·σ(−x)` with `σ(−x)` computed directly, where the usual `σ(x)·(1 − σ(x))` loses
    /// the small factor `1 − σ(x)` to rounding once `σ(x)` is close to 1 (in f32, a relative
    /// error of about 1e-3 at x = 10).
    pub fn probs(&self) -> Tensor<3> {
        match self.activation {
            Activation::Sigmoid => activation::log_sigmoid(self.x.clone()).exp(),
            Activation::Softmax => activation::softmax(self.x.clone(), 1),
            Activation::None => self.x.clone(),
        }
    }

    /// Multiplies a `[N, C, S]` or `[N, 1, S]` tensor by the matching valid mask (if any).
    pub fn mask_valid(&self, t: Tensor<3>) -> Tensor<3> {
        let per_pixel = t.dims()[1] == 1 && self.c != 1;
        match (&self.valid, &self.valid_px) {
            (Some(_), Some(px)) if per_pixel => t * px.clone(),
            (Some(v), _) => t * v.clone(),
            _ => t,
        }
    }

    /// Number of counted elements in channels `from..C` (`from = 0`: all).
    pub fn valid_elements_from(&self, from: usize) -> f64 {
        match &self.valid {
            None => ((self.c - from) * self.n * self.s()) as f64,
            Some(v) if v.dims()[1] == 1 => ((self.c - from) * self.n_valid) as f64,
            Some(_) if from == 0 => self.n_valid_el as f64,
            Some(v) => read_scalar(v.clone().narrow(1, from, self.c - from).sum()),
        }
    }
}

/// A detached host copy of a float tensor as `f32` (`None` if the data cannot be read).
pub(crate) fn host_f32<const D: usize>(t: &Tensor<D>) -> Option<Vec<f32>> {
    read(t.clone().detach())
        .convert::<f32>()
        .try_into_vec::<f32>()
        .ok()
}

/// A constant tensor on `like`'s device with `like`'s float dtype, from values of any element
/// type (converted only if it differs from that dtype).
pub(crate) fn const_tensor_of<E: burn::tensor::Element, const D: usize, const D2: usize>(
    like: &Tensor<D2>,
    data: Vec<E>,
    shape: [usize; D],
) -> Tensor<D> {
    note_upload(data.len());
    Tensor::from_data(
        burn::tensor::TensorData::new(data, shape),
        (&like.device(), like.dtype()),
    )
}

/// A constant tensor on `like`'s device with `like`'s float dtype.
pub(crate) fn const_tensor<const D: usize, const D2: usize>(
    like: &Tensor<D2>,
    data: Vec<f64>,
    shape: [usize; D],
) -> Tensor<D> {
    const_tensor_of(like, data, shape)
}

static VALUE_CHECKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the value checks of every loss on (the default) or off, process-wide.
///
/// With checks on, each call verifies that predictions and weights are finite, that mask targets
/// lie in [0, 1] and that labels lie in `0..C` (or equal `ignore_index`): a few reductions and
/// device-to-host reads per call. A training loop whose data are already validated may turn them
/// off; shape checks always stay on. With checks off, invalid values give meaningless (possibly
/// NaN) losses instead of errors.
pub fn set_value_checks(enabled: bool) {
    VALUE_CHECKS.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// Whether value checks are on (see [`set_value_checks`]).
pub fn value_checks() -> bool {
    VALUE_CHECKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// (all finite, min, max) of a float tensor: one fused pass on the CPU (which reports 0 and 1
/// as the range when every value lies in [0, 1]), elsewhere the reductions read as one triple.
/// With `range = false` only finiteness is computed (the range is reported as (0, 1)).
fn summary<const D: usize>(t: &Tensor<D>, range: bool) -> (bool, f64, f64) {
    if let Some(s) = crate::fused::float_summary(t, range) {
        return s;
    }
    let finite = t.clone().is_finite().all().float().cast(t.dtype());
    let parts = if range {
        vec![finite, t.clone().min(), t.clone().max()]
    } else {
        vec![finite]
    };
    let v = read(Tensor::cat(parts, 0))
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default();
    match v[..] {
        [f, lo, hi] => (f != 0.0, lo, hi),
        [f] => (f != 0.0, 0.0, 1.0),
        _ => (false, f64::NAN, f64::NAN),
    }
}

/// (min, max) of a float tensor for a [0, 1] range check (see [`summary`]).
fn min_max<const D: usize>(t: &Tensor<D>) -> (f64, f64) {
    let (_, lo, hi) = summary(t, true);
    (lo, hi)
}

/// Checks that every value of a float tensor is finite.
pub(crate) fn check_finite<const D: usize>(t: &Tensor<D>, what: &str) -> Result<(), LossError> {
    if summary(t, false).0 {
        Ok(())
    } else {
        Err(LossError::NonFinite {
            what: what.to_string(),
        })
    }
}

/// Resolves the activation (`docs/conventions.md#activations`): softmax for label maps with C ≥ 2, else sigmoid.
fn resolve_activation(
    rules: &InputRules,
    is_labels: bool,
    c: usize,
) -> Result<Activation, LossError> {
    let act = match rules.activation {
        Some(a) => a,
        None => {
            let auto = if is_labels && c >= 2 {
                Activation::Softmax
            } else {
                Activation::Sigmoid
            };
            if rules.allowed.contains(&auto) {
                auto
            } else {
                rules.fallback
            }
        }
    };
    if !rules.allowed.contains(&act) {
        let names: Vec<_> = rules.allowed.iter().map(|a| a.name()).collect();
        return Err(LossError::param(
            "activation",
            act.name(),
            format!("{} supports activation = {}", rules.loss, names.join(" | ")),
        ));
    }
    if act == Activation::Softmax && c < 2 {
        return Err(LossError::param(
            "activation",
            "softmax",
            format!(
                "softmax over C = {c} channel is constant 1; use sigmoid for a single-channel prediction"
            ),
        ));
    }
    Ok(act)
}

fn ignore_note(ignore: Option<i64>) -> String {
    match ignore {
        Some(i) => format!(" or the ignore_index {i}"),
        None => String::new(),
    }
}

/// Validates and flattens a prediction `[N, C, *spatial]` and its target.
pub(crate) fn prepare(
    pred: Flat,
    target: Target,
    rules: &InputRules,
) -> Result<Prepared, LossError> {
    prepare_with(pred, target, rules, false).map(|(p, _)| p)
}

/// [`prepare`] that leaves the value checks of a sigmoid prediction and its mask target (finite
/// prediction; finite target in [0, 1]) to the caller, whose kernel reads every value anyway:
/// `true` in the result when they are left, to be done by [`deferred_checks`] (with the same
/// errors) unless the kernel found every value valid.
pub(crate) fn prepare_deferred(
    pred: Flat,
    target: Target,
    rules: &InputRules,
) -> Result<(Prepared, bool), LossError> {
    prepare_with(pred, target, rules, true)
}

/// The checks [`prepare_deferred`] left: the same errors `prepare` gives.
pub(crate) fn deferred_checks(p: &Prepared) -> Result<(), LossError> {
    check_finite(&p.x, "prediction")?;
    let y = p.y();
    let (lo, hi) = match crate::fused::float_summary(&y, true) {
        Some((false, _, _)) => {
            return Err(LossError::NonFinite {
                what: "target".into(),
            })
        }
        Some((true, lo, hi)) => (lo, hi),
        None => {
            check_finite(&y, "target")?;
            min_max(&y)
        }
    };
    if lo < 0.0 || hi > 1.0 {
        return Err(LossError::TargetOutOfRange {
            value: if lo < 0.0 { lo } else { hi },
            ignore: ignore_note(None),
        });
    }
    Ok(())
}

fn prepare_with(
    pred: Flat,
    target: Target,
    rules: &InputRules,
    defer: bool,
) -> Result<(Prepared, bool), LossError> {
    let pshape = pred.shape.clone();
    let pred = pred.values;
    let rank = pshape.len();
    if !(3..=5).contains(&rank) {
        return Err(LossError::BadShape {
            what: "prediction".into(),
            got: pshape,
            expected: "[N, C, *spatial] with 1 to 3 spatial dims".into(),
        });
    }
    if pshape.contains(&0) {
        return Err(LossError::Empty {
            what: "prediction".into(),
            shape: pshape,
        });
    }
    let (n, c) = (pshape[0], pshape[1]);
    let spatial = pshape[2..].to_vec();
    let s: usize = spatial.iter().product();
    let is_labels = target.is_labels();
    // Left to the caller: a sigmoid prediction with a mask target and no ignore value.
    let deferred = defer
        && value_checks()
        && !is_labels
        && rules.ignore_index.is_none()
        && matches!(
            resolve_activation(rules, is_labels, c),
            Ok(Activation::Sigmoid)
        );
    let checks = value_checks() && !deferred;
    if checks {
        check_finite(&pred, "prediction")?;
    }
    let x: Tensor<3> = pred.reshape([n, c, s]);

    let activation = resolve_activation(rules, is_labels, c)?;
    if checks && activation == Activation::None {
        let (lo, hi) = min_max(&x);
        if lo < 0.0 || hi > 1.0 {
            let v = if lo < 0.0 { lo } else { hi };
            return Err(LossError::param(
                "activation",
                "none",
                format!("activation=none needs probabilities in [0, 1]; the prediction has {v}"),
            ));
        }
    }

    let tshape = target.shape.clone();
    match target.kind {
        TargetKind::Mask(t) => {
            if tshape != pshape {
                return Err(LossError::ShapeMismatch {
                    what: "mask target vs prediction".into(),
                    expected: pshape,
                    got: tshape,
                });
            }
            // Without an ignore value, one pass (or one read) gives finiteness and the range.
            let mut range = None;
            if checks {
                match rules.ignore_index {
                    None => match summary(&t, true) {
                        (false, _, _) => {
                            return Err(LossError::NonFinite {
                                what: "target".into(),
                            })
                        }
                        (true, lo, hi) => range = Some((lo, hi)),
                    },
                    Some(_) => check_finite(&t, "target")?,
                }
            }
            let t3: Tensor<3> = t.reshape([n, c, s]);
            let (y, valid, valid_px, n_valid, n_valid_el) = match rules.ignore_index {
                Some(ii) => {
                    let ign = t3.clone().equal_elem(ii as f64);
                    let n_ign = read_scalar::<i64, 1, Int>(ign.clone().int().sum()) as usize;
                    // An element is ignored where it carries the ignore value; a pixel (for
                    // per-pixel losses) when any of its channels does.
                    let ign_px = ign.clone().int().sum_dim(1).greater_elem(0);
                    let y = t3.mask_fill(ign.clone(), 0.0);
                    let valid = ign.bool_not().float().cast(x.dtype());
                    let valid_px = ign_px.bool_not().float().cast(x.dtype());
                    let nv = read_scalar::<f64, 1, Float>(valid_px.clone().sum()) as usize;
                    if n_ign > 0 {
                        (y, Some(valid), Some(valid_px), nv, n * c * s - n_ign)
                    } else {
                        (y, None, None, n * s, n * c * s)
                    }
                }
                None => (t3, None, None, n * s, n * c * s),
            };
            let (lo, hi) = match (checks, range) {
                (false, _) => (0.0, 1.0),
                (true, Some(r)) => r,
                (true, None) => min_max(&y),
            };
            if lo < 0.0 || hi > 1.0 {
                return Err(LossError::TargetOutOfRange {
                    value: if lo < 0.0 { lo } else { hi },
                    ignore: ignore_note(rules.ignore_index),
                });
            }
            Ok((
                Prepared {
                    n,
                    c,
                    spatial,
                    x,
                    activation,
                    y: std::sync::OnceLock::from(y),
                    labels: None,
                    valid,
                    valid_px,
                    n_valid,
                    n_valid_el,
                },
                deferred,
            ))
        }
        TargetKind::Labels(l) => {
            let ok_shape = (tshape.len() == rank
                && tshape[0] == n
                && tshape[1] == 1
                && tshape[2..] == spatial[..])
                || (tshape.len() == rank - 1 && tshape[0] == n && tshape[1..] == spatial[..]);
            if !ok_shape {
                let mut one = pshape.clone();
                one[1] = 1;
                return Err(LossError::BadShape {
                    what: "label-map target".into(),
                    got: tshape,
                    expected: format!(
                        "{one:?} or {:?} for a prediction of shape {pshape:?}",
                        [&[n][..], &spatial[..]].concat()
                    ),
                });
            }
            let l2: Tensor<2, Int> = l.reshape([n, s]);
            let (l2, valid, n_valid) = match rules.ignore_index {
                Some(ii) => {
                    let ign = l2.clone().equal_elem(ii);
                    let nign = read_scalar::<i64, 1, Int>(ign.clone().int().sum()) as usize;
                    let l2 = l2.mask_fill(ign.clone(), 0);
                    let valid: Tensor<3> =
                        ign.bool_not().float().cast(x.dtype()).reshape([n, 1, s]);
                    let valid = if nign > 0 { Some(valid) } else { None };
                    (l2, valid, n * s - nign)
                }
                None => (l2, None, n * s),
            };
            let in_range = |lo: f64, hi: f64| lo >= 0.0 && hi < c as f64;
            let (lo, hi) = match (checks, crate::fused::int_range(&x, &l2)) {
                (false, _) => (0, 0),
                (true, Some((lo, hi))) if in_range(lo, hi) => (0, 0),
                // Exact values for the message (or no fused path).
                (true, _) => {
                    let pair = Tensor::cat(vec![l2.clone().min(), l2.clone().max()], 0);
                    let v = read(pair)
                        .convert::<i64>()
                        .try_into_vec::<i64>()
                        .unwrap_or_else(|_| vec![-1; 2]);
                    (v[0], v[1])
                }
            };
            if lo < 0 || hi >= c as i64 {
                return Err(LossError::LabelOutOfRange {
                    label: if lo < 0 { lo } else { hi },
                    num_classes: c,
                    ignore: ignore_note(rules.ignore_index),
                });
            }
            Ok((
                Prepared {
                    n,
                    c,
                    spatial,
                    x,
                    activation,
                    y: std::sync::OnceLock::new(),
                    labels: Some(l2),
                    valid_px: valid.clone(),
                    valid,
                    n_valid,
                    n_valid_el: n_valid * c,
                },
                false,
            ))
        }
    }
}

/// Reduces the total `sum` (shape `[1]`) of a loss over `count` counted elements: `Mean` divides
/// by `count` (at least 1), `Sum` keeps it, `BatchMean` divides by N. Not for `None`.
pub(crate) fn reduce_sums(
    p: &Prepared,
    sum: Tensor<1>,
    count: f64,
    reduction: LossReduction,
) -> LossValue {
    debug_assert!(reduction != LossReduction::None);
    match reduction {
        LossReduction::Sum | LossReduction::None => LossValue::scalar(sum),
        LossReduction::Mean => LossValue::scalar(sum.div_scalar(count.max(1.0))),
        LossReduction::BatchMean => LossValue::scalar(sum.div_scalar(p.n as f64)),
    }
}

/// Reduces a pixel-wise loss map `[N, C', S]` (already zero where ignored): `Mean` divides by the
/// number of counted elements (C' = C, the last C' channels, or 1 = per pixel), `Sum` is the plain
/// sum, `BatchMean` divides the sum by N, `None` returns the map reshaped to `[N, C', *spatial]`.
pub(crate) fn reduce_map(p: &Prepared, map: Tensor<3>, reduction: LossReduction) -> LossValue {
    let cc = map.dims()[1];
    match reduction {
        LossReduction::Mean => {
            let denom = if cc == 1 && p.c != 1 {
                p.n_valid as f64
            } else {
                p.valid_elements_from(p.c - cc)
            }
            .max(1.0);
            LossValue::scalar(map.sum().div_scalar(denom))
        }
        LossReduction::Sum => LossValue::scalar(map.sum()),
        LossReduction::BatchMean => LossValue::scalar(map.sum().div_scalar(p.n as f64)),
        LossReduction::None => {
            let mut shape = vec![p.n, cc];
            shape.extend_from_slice(&p.spatial);
            let numel = shape.iter().product::<usize>();
            LossValue {
                values: map.reshape([numel]),
                shape,
            }
        }
    }
}

/// Validates a per-pixel weight map against a prepared input and returns it as `[N, 1 or C, S]`.
///
/// Accepted shapes: `[N, 1, *spatial]`, `[N, *spatial]` and (when `allow_channels`) `[N, C, *spatial]`.
pub(crate) fn prepare_weights(
    p: &Prepared,
    w: Flat,
    allow_channels: bool,
) -> Result<Tensor<3>, LossError> {
    let wshape = w.shape.clone();
    let w = w.values;
    let s = p.s();
    let n = p.n;
    let sp = &p.spatial[..];
    let channels = if wshape.len() == sp.len() + 2 && wshape[0] == n && wshape[2..] == *sp {
        if wshape[1] == 1 || (allow_channels && wshape[1] == p.c) {
            Some(wshape[1])
        } else {
            None
        }
    } else if wshape.len() == sp.len() + 1 && wshape[0] == n && wshape[1..] == *sp {
        Some(1)
    } else {
        None
    };
    let Some(cw) = channels else {
        let mut one = vec![n, 1];
        one.extend_from_slice(sp);
        let mut expected = format!("{one:?} or {:?}", [&[n][..], sp].concat());
        if allow_channels {
            let mut full = vec![n, p.c];
            full.extend_from_slice(sp);
            expected.push_str(&format!(" or {full:?}"));
        }
        return Err(LossError::BadShape {
            what: "weight map".into(),
            got: wshape,
            expected,
        });
    };
    if !value_checks() {
        return Ok(w.reshape([n, cw, s]));
    }
    check_finite(&w, "weight map")?;
    let w3: Tensor<3> = w.reshape([n, cw, s]);
    let lo: f64 = read_scalar(w3.clone().min());
    if lo < 0.0 {
        return Err(LossError::NegativeWeight {
            what: "weight map".into(),
            value: lo,
        });
    }
    Ok(w3)
}

/// Validates a per-class weight vector against C and returns it as a `[1, C, 1]` tensor.
pub(crate) fn class_weights(
    p: &Prepared,
    weight: &[f64],
    name: &str,
) -> Result<Tensor<3>, LossError> {
    class_weights_n(p, weight, p.c, name)
}

/// Validates a per-class weight vector against `count` kept channels, as a `[1, count, 1]` tensor.
pub(crate) fn class_weights_n(
    p: &Prepared,
    weight: &[f64],
    count: usize,
    name: &str,
) -> Result<Tensor<3>, LossError> {
    if weight.len() != count {
        return Err(LossError::param(
            name,
            format!("{weight:?}"),
            format!(
                "one weight per counted class: {count} values (C = {}{})",
                p.c,
                if count < p.c {
                    ", background excluded"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Some(bad) = weight.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(LossError::param(
            name,
            bad,
            "class weights must be finite and >= 0",
        ));
    }
    Ok(const_tensor(&p.x, weight.to_vec(), [1, count, 1]))
}
