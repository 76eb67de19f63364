//! Dice loss (Milletari et al. 2016) and Jaccard / IoU loss, MONAI's definitions.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue, Prepared};
use crate::loss::{no_weights, DicePart, SegLoss, SumPart};
use crate::region::host::host_region_loss;
use crate::region::host::{ix, one_minus_ratio_d, safe_ratio_f, Cell, RowFormula};
use crate::region::{
    check_smooth, check_weights, dice_stats_of, kept_class_weight_values, kept_class_weights,
    one_minus_ratio, reduce_matrix, region_loss_methods, safe_ratio, value_with_grad_of,
    ALL_ACTIVATIONS,
};
use crate::region::{with_overlap_keys, OverlapKeys};
use crate::spec::Args;
use crate::Target;

/// Configuration to create a [Dice loss](DiceLoss) (or, with `jaccard = true`, a Jaccard loss).
#[derive(Config, Debug)]
pub struct DiceLossConfig {
    /// Smoothing term added to the numerator, s_nr ≥ 0.
    #[config(default = 1e-5)]
    pub smooth_nr: f64,
    /// Smoothing term added to the denominator, s_dr ≥ 0.
    #[config(default = 1e-5)]
    pub smooth_dr: f64,
    /// The exponent k of the denominator sums `Σ p^k + Σ y^k`, in [1, 2]: 1 is the plain Dice
    /// loss, 2 the V-Net squared form (MONAI `squared_pred=True`; the source's γ).
    #[config(default = 1.0)]
    pub power: f64,
    /// Jaccard (IoU) loss instead of Dice.
    #[config(default = false)]
    pub jaccard: bool,
    /// Sum the statistics over the batch before the ratio ("batch Dice").
    #[config(default = false)]
    pub batch: bool,
    /// Whether channel 0 counts (ignored when C = 1).
    #[config(default = true)]
    pub include_background: bool,
    /// Per-class weights multiplying each class's loss before the reduction (C values, or C − 1
    /// with `include_background = false`). Ignored when one channel is kept (as MONAI).
    pub weight: Option<Vec<f64>>,
    /// MONAI's soft-label-correct true positives `TP = (P + Y − Σ|p − y|^k)/2` (identical to
    /// `Σ p·y` for hard targets).
    #[config(default = false)]
    pub soft_label: bool,
    /// `Sigmoid` (default for masks), `Softmax` (default for label maps with C ≥ 2) or `None`
    /// (probabilities).
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute to no statistic.
    pub ignore_index: Option<i64>,
}

impl DiceLossConfig {
    /// The keys of `dice` (and `log_cosh_dice`) in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "smooth_nr",
        "smooth_dr",
        "smooth",
        "power",
        "jaccard",
        "batch",
        "include_background",
        "weight",
        "soft_label",
        "ignore_index",
        "activation",
        "reduction",
    ];

    /// The keys of `jaccard`: those of `dice` without `jaccard`.
    pub(crate) const JACCARD_SPEC_KEYS: &'static [&'static str] = &[
        "smooth_nr",
        "smooth_dr",
        "smooth",
        "power",
        "batch",
        "include_background",
        "weight",
        "soft_label",
        "ignore_index",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `dice(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        Self::read_spec(a, true)
    }

    /// The configuration of a spec term `jaccard(…)`: `dice(…, jaccard=true)`.
    pub(crate) fn jaccard_from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        Ok(Self::read_spec(a, false)?.with_jaccard(true))
    }

    fn read_spec(a: &Args<'_>, jaccard_key: bool) -> Result<Self, LossError> {
        let mut c = DiceLossConfig::new();
        if let Some(v) = a.num("power", |v| (1.0..=2.0).contains(&v), "a number in [1, 2]")? {
            c = c.with_power(v);
        }
        if jaccard_key {
            if let Some(v) = a.boolean("jaccard")? {
                c = c.with_jaccard(v);
            }
        }
        let c = c.with_weight(a.weights("weight")?);
        Ok(with_overlap_keys!(c, OverlapKeys::read(a)?))
    }
}

impl DiceLossConfig {
    /// A Jaccard (IoU) loss configuration: `DiceLossConfig::new().with_jaccard(true)`.
    pub fn jaccard() -> Self {
        Self::new().with_jaccard(true)
    }

    /// Sets both smoothing terms (`smooth` in the spec grammar).
    pub fn with_smooth(self, smooth: f64) -> Self {
        self.with_smooth_nr(smooth).with_smooth_dr(smooth)
    }

    /// Initializes a [Dice loss](DiceLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> DiceLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes a [Dice loss](DiceLoss), checking the smoothing terms (finite, ≥ 0), the power
    /// (in [1, 2]: beyond 2 the ratio can exceed 1, below 1 the gradient at p = 0 is infinite)
    /// and the weights (finite, ≥ 0).
    pub fn try_init(&self) -> Result<DiceLoss, LossError> {
        check_smooth("smooth_nr", self.smooth_nr)?;
        check_smooth("smooth_dr", self.smooth_dr)?;
        if !(1.0..=2.0).contains(&self.power) {
            return Err(LossError::param(
                "power",
                self.power,
                "a number in [1, 2] (1 = Σp + Σy, 2 = V-Net squared Σp² + Σy²)",
            ));
        }
        check_weights(&self.weight)?;
        Ok(DiceLoss {
            smooth_nr: self.smooth_nr,
            smooth_dr: self.smooth_dr,
            power: self.power,
            jaccard: self.jaccard,
            batch: self.batch,
            include_background: self.include_background,
            weight: self.weight.clone(),
            soft_label: self.soft_label,
            activation: self.activation,
            ignore_index: self.ignore_index,
        })
    }
}

/// Dice loss (Milletari et al. 2016, "V-Net"; the source's Dice loss with smoothing and power γ)
/// and Jaccard loss, as MONAI's `DiceLoss`:
///
/// ```text
/// dice:     ℓ_{n,c} = 1 − (2·TP + s_nr) / (P + Y + s_dr)
/// jaccard:  ℓ_{n,c} = 1 − (2·TP + s_nr) / (2·(P + Y − TP) + s_dr)
/// TP = Σ p·y,  P = Σ p^k,  Y = Σ y^k     (k = power; soft_label: TP = (P + Y − Σ|p − y|^k)/2)
/// ```
///
/// with sums over the spatial axes of sample n and channel c (over the batch too with
/// `batch = true`), p the probabilities (after the activation, softmax over all C channels before
/// the background is dropped) and y the target (one-hot for label maps). The Jaccard form keeps
/// MONAI's factors 2, so its smoothing acts as s/2. Each class loss is multiplied by its weight.
///
/// Loss matrix: `[N, C']` (`[1, C']` with `batch = true`), C' = C or C − 1 without the
/// background; `mean` averages it (weights do not renormalise it), `sum` sums it.
///
/// Range: [0, 1] with equal smoothing terms (and power in [1, 2]).
///
/// Edge cases:
/// - empty target, empty prediction: `1 − s_nr/(Σp + s_dr)`: near 1 unless Σp ≪ s_dr (no
///   special case, as MONAI; smp zeroes classes absent from the target, we do not); exactly zero
///   probabilities (`activation = none`) give 0 with gradient s_nr/s_dr² on every pixel;
/// - empty target, non-empty prediction: close to 1;
/// - all-foreground target and prediction: close to 0;
/// - soft labels: `soft_label = true` gives the soft-label-correct TP (loss 0 at p = y);
/// - a class absent from the whole batch scores as an empty target (near 1 unless predicted empty);
/// - `batch = true` pools the statistics over the samples before the ratio;
/// - C = 1 with softmax: an error (softmax over one channel is constant); `include_background`
///   and `weight` are ignored when only one channel is kept;
/// - `ignore_index` on every pixel: every statistic is 0, the loss is `1 − s_nr/s_dr` (0 by
///   default); a zero denominator (s_dr = 0) scores as perfect agreement (0), never NaN.
///
/// Oracle: `monai.losses.DiceLoss(smooth_nr, smooth_dr, squared_pred = power == 2, jaccard,
/// batch, include_background, weight, soft_label, ignore_index)`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::DiceLossConfig;
///
/// let device = Device::flex().autodiff();
/// let logits = Tensor::<4>::from_floats([[[[1.0, -1.0], [-1.0, 1.0]]]], &device).require_grad();
/// let mask = Tensor::<4>::from_floats([[[[1.0, 0.0], [1.0, 1.0]]]], &device);
/// let loss = DiceLossConfig::new().with_smooth(1e-6).init();
/// let v = loss.forward(logits.clone(), mask, Reduction::Mean);
/// assert!((v.clone().into_scalar::<f32>() - 0.307576).abs() < 1e-5); // MONAI's own test case
/// let grads = v.backward();
/// assert_eq!(logits.grad(&grads).unwrap().dims(), [1, 1, 2, 2]);
/// ```
#[derive(Module, Debug)]
pub struct DiceLoss {
    /// s_nr.
    pub smooth_nr: f64,
    /// s_dr.
    pub smooth_dr: f64,
    /// k.
    pub power: f64,
    /// Jaccard form.
    pub jaccard: bool,
    /// Batch statistics.
    pub batch: bool,
    /// Whether channel 0 counts.
    pub include_background: bool,
    /// Class weights.
    #[module(skip)]
    pub weight: Option<Vec<f64>>,
    /// Soft-label TP.
    pub soft_label: bool,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(DiceLoss);

impl DiceLoss {
    pub(crate) fn rules(&self, loss: &'static str) -> InputRules {
        InputRules {
            activation: self.activation,
            allowed: ALL_ACTIVATIONS,
            fallback: Activation::Sigmoid,
            ignore_index: self.ignore_index,
            loss,
        }
    }

    /// The unweighted loss matrix `[R, C']`. Value from the cancellation-free forms
    /// dice `(E + s_dr − s_nr)/(P + Y + s_dr)`, jaccard `(2E + s_dr − s_nr)/(P + Y + E + s_dr)`
    /// (`E = P + Y − 2·TP`, see [`dice_stats_of`]); gradient from the ratios of the type's
    /// documentation (see [`value_with_grad_of`]).
    pub(crate) fn matrix(&self, p: &Prepared) -> Tensor<2> {
        let (py, e, tp) = dice_stats_of(
            p,
            self.include_background,
            self.power,
            self.soft_label,
            self.batch,
        );
        let off = self.smooth_dr - self.smooth_nr;
        let num = tp.clone().mul_scalar(2.0).add_scalar(self.smooth_nr);
        let (classic, precise) = if self.jaccard {
            let den = (py.clone() - tp).mul_scalar(2.0).add_scalar(self.smooth_dr);
            (
                one_minus_ratio(num, den),
                safe_ratio(
                    e.clone().mul_scalar(2.0).add_scalar(off),
                    (py + e).add_scalar(self.smooth_dr),
                ),
            )
        } else {
            let den = py.add_scalar(self.smooth_dr);
            (
                one_minus_ratio(num, den.clone()),
                safe_ratio(e.add_scalar(off), den),
            )
        };
        value_with_grad_of(classic, precise)
    }

    /// Multiplies a loss matrix by the class weights, if any.
    pub(crate) fn weighted(&self, p: &Prepared, m: Tensor<2>) -> Result<Tensor<2>, LossError> {
        Ok(match &self.weight {
            Some(w) => match kept_class_weights(p, w, self.include_background)? {
                Some(w) => m * w,
                None => m,
            },
            None => m,
        })
    }
}

impl SegLoss for DiceLoss {
    fn sum_part(&self) -> Option<SumPart> {
        let fusable = !self.soft_label
            && (self.power == 1.0 || self.power == 2.0)
            && self.ignore_index.is_none()
            && matches!(self.activation, None | Some(Activation::Softmax));
        fusable.then(|| {
            SumPart::Dice(DicePart {
                name: self.name(),
                jaccard: self.jaccard,
                squared: self.power == 2.0,
                smooth_nr: self.smooth_nr,
                smooth_dr: self.smooth_dr,
                include_background: self.include_background,
                batch: self.batch,
                weight: self.weight.clone(),
            })
        })
    }

    fn name(&self) -> &'static str {
        if self.jaccard {
            "jaccard"
        } else {
            "dice"
        }
    }

    fn compute(
        &self,
        pred: Flat,
        target: Target,
        weights: Option<Flat>,
        reduction: LossReduction,
    ) -> Result<LossValue, LossError> {
        no_weights(self.name(), &weights)?;
        let p = prepare(pred, target, &self.rules(self.name()))?;
        if !self.soft_label && (self.power == 1.0 || self.power == 2.0) {
            let w = match &self.weight {
                Some(w) => kept_class_weight_values(&p, w, self.include_background)?,
                None => None,
            };
            let f = DiceFormula {
                jaccard: self.jaccard,
                squared: self.power == 2.0,
                smooth_nr: self.smooth_nr,
                smooth_dr: self.smooth_dr,
            };
            let host = host_region_loss(
                &p,
                self.include_background,
                self.batch,
                reduction,
                w.as_deref(),
                &f,
            );
            if let Some(v) = host {
                return Ok(v);
            }
        }
        let m = self.weighted(&p, self.matrix(&p))?;
        Ok(reduce_matrix(m, reduction))
    }
}

/// The Dice / Jaccard formula of [`DiceLoss`] (power 1 or 2, hard statistics),
/// per cell: value from the cancellation-free forms, gradient from `1 − num/den`.
pub(crate) struct DiceFormula {
    pub jaccard: bool,
    pub squared: bool,
    pub smooth_nr: f64,
    pub smooth_dr: f64,
}

impl RowFormula for DiceFormula {
    fn outputs(&self, k: usize) -> usize {
        k
    }

    fn eval(&self, row: &[Cell], values: &mut [f64], grads: &mut [Cell]) {
        let k = row.len();
        let (snr, sdr) = (self.smooth_nr, self.smooth_dr);
        for (kk, a) in row.iter().enumerate() {
            let (py, e, ip, iy) = if self.squared {
                (a[ix::SP2] + a[ix::SY2], a[ix::R2], ix::SP2, ix::SY2)
            } else {
                (a[ix::SP] + a[ix::SY], a[ix::FP] + a[ix::FN], ix::SP, ix::SY)
            };
            let tp = a[ix::TP];
            let num = 2.0 * tp + snr;
            let g = &mut grads[kk * k + kk];
            if self.jaccard {
                values[kk] = safe_ratio_f(2.0 * e + sdr - snr, py + e + sdr);
                let (dn, dd) = one_minus_ratio_d(num, 2.0 * (py - tp) + sdr);
                g[ix::TP] = 2.0 * dn - 2.0 * dd;
                g[ip] = 2.0 * dd;
                g[iy] = 2.0 * dd;
            } else {
                let den = py + sdr;
                values[kk] = safe_ratio_f(e + sdr - snr, den);
                let (dn, dd) = one_minus_ratio_d(num, den);
                g[ix::TP] = 2.0 * dn;
                g[ip] = dd;
                g[iy] = dd;
            }
        }
    }
}
