//! Exponential-logarithmic loss (Wong et al. 2018).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::compound::combo::batch_dsc;
use crate::compound::{ln_clamped, log_probs};
use crate::error::LossError;
use crate::input::{prepare, Activation, Flat, InputRules, LossReduction, LossValue, Prepared};
use crate::loss::{no_weights, SegLoss};
use crate::region::{reduce_matrix, region_loss_methods, ALL_ACTIVATIONS};
use crate::spec::{Args, NONNEG, POS};
use crate::Target;

/// Configuration to create an [exponential-logarithmic loss](ExpLogLoss).
#[derive(Config, Debug)]
pub struct ExpLogLossConfig {
    /// Weight of the Dice term, ≥ 0.
    #[config(default = 0.8)]
    pub w_dice: f64,
    /// Weight of the cross-entropy term, ≥ 0.
    #[config(default = 0.2)]
    pub w_ce: f64,
    /// The exponent γ > 0 of both logarithmic terms.
    #[config(default = 0.3)]
    pub gamma: f64,
    /// Smoothing term s > 0 of the Dice coefficients (it keeps −ln DSC finite).
    #[config(default = 1.0)]
    pub smooth: f64,
    /// `Sigmoid` (default for masks; C = 1 only: the classes are {1 − p, p}), `Softmax`
    /// (default for label maps with C ≥ 2) or `None` (probabilities: {1 − p, p} for C = 1, the
    /// class probabilities for C ≥ 2).
    pub activation: Option<Activation>,
    /// Target value / label whose pixels contribute to neither term.
    pub ignore_index: Option<i64>,
}

impl ExpLogLossConfig {
    /// The keys of `exp_log` in the spec grammar.
    pub(crate) const SPEC_KEYS: &'static [&'static str] = &[
        "w_dice",
        "w_ce",
        "gamma",
        "smooth",
        "ignore_index",
        "activation",
        "reduction",
    ];

    /// The configuration of a spec term `exp_log(…)` (the registry checks the keys).
    pub(crate) fn from_spec(a: &Args<'_>) -> Result<Self, LossError> {
        let mut c = ExpLogLossConfig::new();
        if let Some(v) = a.num("w_dice", NONNEG, "a number >= 0")? {
            c = c.with_w_dice(v);
        }
        if let Some(v) = a.num("w_ce", NONNEG, "a number >= 0")? {
            c = c.with_w_ce(v);
        }
        if let Some(v) = a.num("gamma", POS, "a number > 0")? {
            c = c.with_gamma(v);
        }
        if let Some(v) = a.num("smooth", POS, "a number > 0")? {
            c = c.with_smooth(v);
        }
        Ok(c.with_ignore_index(a.int("ignore_index")?)
            .with_activation(a.choice("activation")?))
    }
}

impl ExpLogLossConfig {
    /// Initializes an [exponential-logarithmic loss](ExpLogLoss).
    ///
    /// # Panics
    ///
    /// If a parameter is out of range (see [`try_init`](Self::try_init)).
    pub fn init(&self) -> ExpLogLoss {
        crate::error::or_panic(self.try_init())
    }

    /// Initializes an [exponential-logarithmic loss](ExpLogLoss), checking the weights (≥ 0),
    /// γ > 0 and s > 0.
    pub fn try_init(&self) -> Result<ExpLogLoss, LossError> {
        for (n, v) in [("w_dice", self.w_dice), ("w_ce", self.w_ce)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(LossError::param(n, v, "a finite number >= 0"));
            }
        }
        for (n, v) in [("gamma", self.gamma), ("smooth", self.smooth)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(LossError::param(n, v, "a finite number > 0"));
            }
        }
        Ok(ExpLogLoss {
            w_dice: self.w_dice,
            w_ce: self.w_ce,
            gamma: self.gamma,
            smooth: self.smooth,
            activation: self.activation,
            ignore_index: self.ignore_index,
        })
    }
}

/// Exponential-logarithmic loss (Wong et al. 2018, "3D segmentation with exponential logarithmic
/// loss for highly unbalanced object sizes"):
///
/// ```text
/// ℓ = w_dice · mean_k[(−ln DSC_k)^γ] + w_ce · mean_x[w_l · max(−ln p_l, 1e-7)^γ]
/// DSC_k = (2·Σ p_k·y_k + s) / (Σ p_k + Σ y_k + s)            over the batch and the space
/// w_l   = (Σ_k f_k / f_l)^0.5,   f_k = Σ y_k (the class's pixel count over the batch)
/// ```
///
/// with l the true class at pixel x (for soft targets, `−ln p_l` is the cross-entropy
/// `−Σ_k y_k ln p_k` and `w_l = Σ_k y_k w_k`), the pixel mean over the N·S (valid) pixels, and
/// the classes k: the C softmax channels, or {1 − p, p} in sigmoid mode (C = 1). The class
/// frequencies are batch-wide and carry no gradient; `−ln DSC_k` is clamped at 1e-30 before the
/// power so that a perfect prediction gives zero (not NaN) gradient for γ < 1.
///
/// Loss matrix: `[1, 1]` (the loss is defined over the batch: every reduction gives it).
///
/// Range: [0, ∞).
///
/// Edge cases: an empty target (sigmoid) → only the background class has pixels; its weight is
/// 1, the foreground DSC is s/(Σp + s); a class absent from the batch never occurs as l (weight
/// irrelevant) but its Dice term still counts; all-foreground targets → the mirror image; soft
/// labels → the soft forms above; C = 1 with softmax → an error; sigmoid with C > 1 → an error
/// (the two-class form needs one channel; use softmax); `ignore_index` everywhere → the CE term is
/// 0 and each DSC is 1 for an empty prediction.
///
/// Oracle: the formula (`docs/losses.md#exp_log`; batch-summed DSC and batch-wide class frequencies).
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use burn::nn::loss::Reduction;
/// use segloss::ExpLogLossConfig;
///
/// let device = Device::flex();
/// let logits = Tensor::<3>::from_floats([[[2.0, -1.0, 0.0], [-2.0, 1.0, 3.0]]], &device);
/// let labels = Tensor::<2, Int>::from_ints([[0, 1, 1]], &device);
/// let v = ExpLogLossConfig::new().init().forward(logits, labels, Reduction::Mean);
/// assert!(v.into_scalar::<f32>() > 0.0);
/// ```
#[derive(Module, Debug)]
pub struct ExpLogLoss {
    /// Weight of the Dice term.
    pub w_dice: f64,
    /// Weight of the cross-entropy term.
    pub w_ce: f64,
    /// γ.
    pub gamma: f64,
    /// s.
    pub smooth: f64,
    /// Configured activation.
    #[module(skip)]
    pub activation: Option<Activation>,
    /// Ignored value.
    #[module(skip)]
    pub ignore_index: Option<i64>,
}

region_loss_methods!(ExpLogLoss);

impl ExpLogLoss {
    /// Probabilities, log-probabilities and targets over the classes k, `[N, K, S]`.
    fn classes(&self, p: &Prepared) -> Result<(Tensor<3>, Tensor<3>, Tensor<3>), LossError> {
        let two = |a: Tensor<3>, b: Tensor<3>| Tensor::cat(vec![a, b], 1);
        Ok(match p.activation {
            Activation::Softmax => (p.probs(), p.log_softmax(), p.y()),
            Activation::None if p.c > 1 => (p.x.clone(), ln_clamped(p.x.clone()), p.y()),
            act => {
                if p.c != 1 {
                    return Err(LossError::param(
                        "activation",
                        act.name(),
                        format!(
                            "exp_log in sigmoid mode takes C = 1 (the classes are {{1 − p, p}}), got C = {}; use activation=softmax for C ≥ 2",
                            p.c
                        ),
                    ));
                }
                let (lp1, lp0) = log_probs(p);
                let p1 = p.probs();
                let y1 = p.y();
                (
                    two(p1.clone().neg().add_scalar(1.0), p1),
                    two(lp0, lp1),
                    two(p.mask_valid(y1.clone().neg().add_scalar(1.0)), y1),
                )
            }
        })
    }
}

impl SegLoss for ExpLogLoss {
    fn name(&self) -> &'static str {
        "exp_log"
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
                loss: "exp_log",
            },
        )?;
        let (probs, lp, y) = self.classes(&p)?;
        let probs = p.mask_valid(probs);
        let g = self.gamma;
        let pow = |t: Tensor<3>| if g == 1.0 { t } else { t.powf_scalar(g) };

        let dsc = batch_dsc(probs, y.clone(), self.smooth);
        let nl = dsc.log().neg();
        let nl = if g == 1.0 {
            nl
        } else {
            nl.clamp_min(1e-30).powf_scalar(g)
        };
        let l_dice = nl.mean();

        let f = y.clone().detach().sum_dim(2).sum_dim(0); // [1, K, 1]
        let total = f.clone().sum_dim(1);
        let w = (total / f).sqrt();
        let w = w.clone().mask_fill(w.is_finite().bool_not(), 0.0);
        let w_pix = (y.clone() * w).sum_dim(1); // [N, 1, S]
        let nll = (lp * y).sum_dim(1).neg();
        let term = p.mask_valid(w_pix * pow(nll.clamp_min(1e-7)));
        let l_ce = term.sum().div_scalar(p.n_valid.max(1) as f64);
        let v = l_dice.mul_scalar(self.w_dice) + l_ce.mul_scalar(self.w_ce);
        Ok(reduce_matrix(v.reshape([1, 1]), reduction))
    }
}
