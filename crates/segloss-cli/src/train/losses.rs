//! Turning loss specs into losses for a training run, with the shape-aware stand-in.
//!
//! A spec is built with [`segloss::LossSpec`]. Losses that take a weight map (`weighted_ce`) get
//! the U-Net weight map of each training mask, computed once before training. While the library
//! has no `shape_aware` loss, a `shape_aware(w0=…, sigma=…, class_weight=…)` term is run as
//! exactly what it is defined to be: `weighted_ce` with the U-Net weight map of the target
//! (`docs/losses.md#shape_aware`), the maps precomputed with those parameters. As soon as
//! [`segloss::loss_names`] lists `shape_aware`, the library's loss is used instead.

use segloss::spec::{SpecTerm, SpecValue};
use segloss::{CompositeLoss, LossSpec};
use segloss_core::{ClassWeight, WeightMapConfig};

use crate::error::CliError;

/// The losses `segloss compare` runs by default, in this order. Tversky runs with α = 0.3 (false
/// positives) and β = 0.7 (false negatives), the setting of Salehi et al. (2017): with its
/// defaults α = β = 0.5 it is the Dice loss and would only repeat that run.
pub const DEFAULT_LOSSES: &[&str] = &[
    "bce",
    "dice",
    "dice + bce",
    "focal",
    "tversky(alpha=0.3,beta=0.7)",
    "lovasz",
    "shape_aware",
];

/// A loss ready for training.
#[derive(Debug)]
pub struct LossChoice {
    /// The spec as the user gave it (trimmed): the run's name.
    pub label: String,
    /// The spec that was built (differs from `label` for the shape-aware stand-in).
    pub spec: String,
    /// The loss.
    pub loss: CompositeLoss,
    /// The weight-map parameters, when the loss takes a precomputed weight map.
    pub weight_map: Option<WeightMapConfig>,
    /// A note for the report (what stood in for what).
    pub note: Option<String>,
    /// The U-Net weight-map parameters of the spec's `shape_aware` term, if it has one (what
    /// `samples.png` shows).
    pub shape_map: Option<WeightMapConfig>,
}

/// What became of a spec.
#[derive(Debug)]
pub enum Resolved {
    /// Ready to train.
    Ready(LossChoice),
    /// Names losses this build of segloss does not have (yet).
    Unavailable {
        /// The spec.
        label: String,
        /// The unknown names.
        missing: Vec<String>,
    },
}

fn term_text(t: &SpecTerm, name: &str, skip: &[&str]) -> String {
    let args: Vec<String> = t
        .args
        .iter()
        .filter(|a| !skip.contains(&a.key.as_str()))
        .map(|a| format!("{}={}", a.key, a.value))
        .collect();
    let weight = if t.weight == 1.0 {
        String::new()
    } else {
        format!("{}*", t.weight)
    };
    if args.is_empty() {
        format!("{weight}{name}")
    } else {
        format!("{weight}{name}({})", args.join(","))
    }
}

fn bad(label: &str, key: &str, v: &SpecValue, expected: &str) -> CliError {
    CliError::input(format!(
        "loss spec {label:?}: invalid {key} = {v}: expected {expected}"
    ))
}

/// The weight-map parameters of a `shape_aware` term (docs/losses.md: w0 10, σ 5, balanced).
fn shape_aware_params(
    label: &str,
    t: &SpecTerm,
    base: &WeightMapConfig,
) -> Result<WeightMapConfig, CliError> {
    let mut c = WeightMapConfig {
        w0: 10.0,
        sigma: 5.0,
        class_weight: ClassWeight::Balanced,
        ..*base
    };
    for a in &t.args {
        match (a.key.as_str(), &a.value) {
            ("w0", SpecValue::Number(v)) if v.is_finite() && *v >= 0.0 => c.w0 = *v,
            ("w0", v) => return Err(bad(label, "w0", v, "a number >= 0")),
            ("sigma", SpecValue::Number(v)) if v.is_finite() && *v > 0.0 => c.sigma = *v,
            ("sigma", v) => return Err(bad(label, "sigma", v, "a number > 0")),
            ("class_weight", SpecValue::Word(w)) if w == "balanced" => {
                c.class_weight = ClassWeight::Balanced
            }
            ("class_weight", SpecValue::Word(w)) if w == "none" => {
                c.class_weight = ClassWeight::None
            }
            ("class_weight", v) => return Err(bad(label, "class_weight", v, "balanced | none")),
            _ => {}
        }
    }
    Ok(c)
}

/// Resolves one spec against the losses this build has (`available`, from
/// [`segloss::loss_names`]); `weight_map` gives the parameters of the maps fed to losses that take
/// one (`weighted_ce`).
///
/// # Errors
/// A malformed spec or a bad parameter value (exit code 2).
pub fn resolve(
    label: &str,
    available: &[&str],
    weight_map: &WeightMapConfig,
) -> Result<Resolved, CliError> {
    let label = label.trim().to_string();
    let spec = LossSpec::parse(&label).map_err(|e| CliError::input(e.to_string()))?;
    let has_shape_aware = available.contains(&"shape_aware");
    let mut missing = Vec::new();
    for t in &spec.terms {
        let stand_in = t.name == "shape_aware" && available.contains(&"weighted_ce");
        if !available.contains(&t.name.as_str()) && !stand_in && !missing.contains(&t.name) {
            missing.push(t.name.clone());
        }
    }
    if !missing.is_empty() {
        return Ok(Resolved::Unavailable { label, missing });
    }
    let shape_map = match spec.terms.iter().find(|t| t.name == "shape_aware") {
        Some(t) => Some(shape_aware_params(&label, t, weight_map)?),
        None => None,
    };
    let uses_stand_in = !has_shape_aware && shape_map.is_some();
    if !uses_stand_in {
        let loss = spec.build()?;
        let map = loss.needs_weights().then_some(*weight_map);
        return Ok(Resolved::Ready(LossChoice {
            label: label.clone(),
            spec: label,
            loss,
            weight_map: map,
            note: None,
            shape_map,
        }));
    }
    // The stand-in: shape_aware terms become weighted_ce fed with precomputed U-Net maps.
    let mut params: Option<WeightMapConfig> = None;
    let mut texts = Vec::new();
    for t in &spec.terms {
        if t.name == "shape_aware" {
            let p = shape_aware_params(&label, t, weight_map)?;
            if params.is_some_and(|q| q != p) {
                return Err(CliError::input(format!(
                    "loss spec {label:?}: the shape_aware terms must share w0, sigma and class_weight"
                )));
            }
            params = Some(p);
            texts.push(term_text(
                t,
                "weighted_ce",
                &["w0", "sigma", "class_weight"],
            ));
        } else if t.name == "weighted_ce" {
            return Err(CliError::input(format!(
                "loss spec {label:?}: weighted_ce and shape_aware in one spec would need two weight maps"
            )));
        } else {
            texts.push(term_text(t, &t.name, &[]));
        }
    }
    let built = texts.join(" + ");
    let loss = LossSpec::parse(&built)
        .map_err(|e| CliError::Internal(format!("stand-in spec {built:?}: {e}")))?
        .build()?;
    let p = params.expect("at least one shape_aware term");
    let cw = match p.class_weight {
        ClassWeight::Balanced => "balanced",
        ClassWeight::None => "none",
    };
    Ok(Resolved::Ready(LossChoice {
        note: Some(format!(
            "this segloss has no `shape_aware` loss yet, so `{label}` ran as `{built}` with the U-Net weight map of each training mask (w0 = {}, σ = {}, class weight {cw}, 8-connected instances), which is the shape-aware loss's definition",
            p.w0, p.sigma
        )),
        label,
        spec: built,
        loss,
        weight_map: Some(p),
        shape_map: Some(p),
    }))
}
