//! The loss catalogue behind the spec grammar: one entry per name, in catalogue order. Each loss
//! keeps its keys (`SPEC_KEYS`) and their reading (`from_spec`) beside its configuration; this
//! module only lists them, checks a term's keys and reduction, and reports unknown names.

use crate::boundary::boundary_loss::BoundaryLossConfig;
use crate::boundary::cldice::ClDiceLossConfig;
use crate::boundary::contour_ce::ContourCeLossConfig;
use crate::boundary::distance_penalized_ce::DistancePenalizedCeLossConfig;
use crate::boundary::hausdorff_dt::HausdorffDtLossConfig;
use crate::boundary::shape_aware::ShapeAwareLossConfig;
use crate::compound::combo::ComboLossConfig;
use crate::compound::exp_log::ExpLogLossConfig;
use crate::distribution::balanced_bce::BalancedBceLossConfig;
use crate::distribution::bce::BceLossConfig;
use crate::distribution::ce::CeLossConfig;
use crate::distribution::focal::FocalLossConfig;
use crate::distribution::weighted_ce::WeightedCeLossConfig;
use crate::error::LossError;
use crate::input::LossReduction;
use crate::loss::SegLoss;
use crate::region::dice::DiceLossConfig;
use crate::region::generalized_dice::GeneralizedDiceLossConfig;
use crate::region::log_cosh_dice::LogCoshDiceLossConfig;
use crate::region::lovasz::LovaszLossConfig;
use crate::region::mcc::MccLossConfig;
use crate::region::sensitivity_specificity::SensitivitySpecificityLossConfig;
use crate::region::tversky::{FocalTverskyLossConfig, TverskyLossConfig};
use crate::spec::Args;

/// One loss of the catalogue.
struct Entry {
    /// The name in the spec grammar.
    name: &'static str,
    /// Every key the term takes (`reduction` included).
    keys: &'static [&'static str],
    /// Reads the term's arguments and builds the loss.
    build: fn(&Args<'_>) -> Result<Box<dyn SegLoss>, LossError>,
}

/// The entry of a loss whose configuration is read by `$config::from_spec` (or `$read`), with
/// the keys `$config::SPEC_KEYS` (or `$keys`), and validated by its `try_init`.
macro_rules! entry {
    ($name:literal, $config:ident) => {
        entry!($name, $config, $config::SPEC_KEYS, from_spec)
    };
    ($name:literal, $config:ident, $keys:expr, $read:ident) => {
        Entry {
            name: $name,
            keys: $keys,
            build: |a| Ok(Box::new($config::$read(a)?.try_init()?)),
        }
    };
}

/// The catalogue: distribution-, region-, boundary-based and compound losses.
const CATALOGUE: &[Entry] = &[
    entry!("bce", BceLossConfig),
    entry!("balanced_bce", BalancedBceLossConfig),
    entry!("ce", CeLossConfig),
    entry!("focal", FocalLossConfig),
    entry!("weighted_ce", WeightedCeLossConfig),
    entry!("dice", DiceLossConfig),
    entry!(
        "jaccard",
        DiceLossConfig,
        DiceLossConfig::JACCARD_SPEC_KEYS,
        jaccard_from_spec
    ),
    entry!("generalized_dice", GeneralizedDiceLossConfig),
    entry!("tversky", TverskyLossConfig),
    entry!("focal_tversky", FocalTverskyLossConfig),
    entry!("sensitivity_specificity", SensitivitySpecificityLossConfig),
    entry!("log_cosh_dice", LogCoshDiceLossConfig),
    entry!("lovasz", LovaszLossConfig),
    entry!("mcc", MccLossConfig),
    entry!("shape_aware", ShapeAwareLossConfig),
    entry!("contour_ce", ContourCeLossConfig),
    entry!("hausdorff_dt", HausdorffDtLossConfig),
    entry!("boundary", BoundaryLossConfig),
    entry!("cldice", ClDiceLossConfig),
    entry!("distance_penalized_ce", DistancePenalizedCeLossConfig),
    entry!("combo", ComboLossConfig),
    entry!("exp_log", ExpLogLossConfig),
];

/// Every loss name the spec grammar knows, in catalogue order.
pub fn loss_names() -> Vec<&'static str> {
    CATALOGUE.iter().map(|e| e.name).collect()
}

/// Builds the loss of one spec term, and returns it with the term's own reduction.
pub(crate) fn build(a: &Args<'_>) -> Result<(Box<dyn SegLoss>, Option<LossReduction>), LossError> {
    let Some(entry) = CATALOGUE.iter().find(|e| e.name == a.term.name) else {
        return Err(a
            .err(
                a.term.pos,
                format!(
                    "unknown loss '{}'; known losses: {}",
                    a.term.name,
                    loss_names().join(", ")
                ),
            )
            .into());
    };
    a.check_keys(entry.keys)?;
    let reduction = a.choice("reduction")?;
    let loss = (entry.build)(a)?;
    Ok((loss, reduction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LossSpec;

    /// A term without arguments builds the loss of its configuration's defaults (the spec adds
    /// no defaults of its own), and every catalogue name is covered here.
    #[test]
    fn a_bare_term_builds_the_configuration_defaults() {
        let defaults: Vec<(&str, Box<dyn SegLoss>)> = vec![
            ("bce", Box::new(BceLossConfig::new().init())),
            (
                "balanced_bce",
                Box::new(BalancedBceLossConfig::new().init()),
            ),
            ("ce", Box::new(CeLossConfig::new().init())),
            ("focal", Box::new(FocalLossConfig::new().init())),
            ("weighted_ce", Box::new(WeightedCeLossConfig::new().init())),
            ("dice", Box::new(DiceLossConfig::new().init())),
            (
                "jaccard",
                Box::new(DiceLossConfig::new().with_jaccard(true).init()),
            ),
            (
                "generalized_dice",
                Box::new(GeneralizedDiceLossConfig::new().init()),
            ),
            ("tversky", Box::new(TverskyLossConfig::new().init())),
            (
                "focal_tversky",
                Box::new(FocalTverskyLossConfig::new().init()),
            ),
            (
                "sensitivity_specificity",
                Box::new(SensitivitySpecificityLossConfig::new().init()),
            ),
            (
                "log_cosh_dice",
                Box::new(LogCoshDiceLossConfig::new().init()),
            ),
            ("lovasz", Box::new(LovaszLossConfig::new().init())),
            ("mcc", Box::new(MccLossConfig::new().init())),
            ("shape_aware", Box::new(ShapeAwareLossConfig::new().init())),
            ("contour_ce", Box::new(ContourCeLossConfig::new().init())),
            (
                "hausdorff_dt",
                Box::new(HausdorffDtLossConfig::new().init()),
            ),
            ("boundary", Box::new(BoundaryLossConfig::new().init())),
            ("cldice", Box::new(ClDiceLossConfig::new().init())),
            (
                "distance_penalized_ce",
                Box::new(DistancePenalizedCeLossConfig::new().init()),
            ),
            ("combo", Box::new(ComboLossConfig::new().init())),
            ("exp_log", Box::new(ExpLogLossConfig::new().init())),
        ];
        let names: Vec<&str> = defaults.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, loss_names());
        for (name, want) in &defaults {
            let built = LossSpec::parse(name).unwrap().build().unwrap();
            assert_eq!(
                format!("{:?}", built.terms[0].loss),
                format!("{want:?}"),
                "{name}"
            );
        }
    }

    /// Given values reach the configuration (a key per family, and a focal Tversky default that
    /// differs from Tversky's).
    #[test]
    fn given_values_reach_the_configuration() {
        for (spec, want) in [
            (
                "focal_tversky(gamma=2)",
                format!("{:?}", FocalTverskyLossConfig::new().with_gamma(2.0).init()),
            ),
            (
                "tversky(alpha=0.2, smooth=0.5, batch=true)",
                format!(
                    "{:?}",
                    TverskyLossConfig::new()
                        .with_alpha(0.2)
                        .with_smooth_nr(0.5)
                        .with_smooth_dr(0.5)
                        .with_batch(true)
                        .init()
                ),
            ),
            (
                "generalized_dice(w_type=simple, include_background=false)",
                format!(
                    "{:?}",
                    GeneralizedDiceLossConfig::new()
                        .with_w_type(crate::WeightType::Simple)
                        .with_include_background(false)
                        .init()
                ),
            ),
            (
                "shape_aware(class_weight=none, w0=3)",
                format!(
                    "{:?}",
                    ShapeAwareLossConfig::new()
                        .with_class_weight(crate::UnetClassWeight::None)
                        .with_w0(3.0)
                        .init()
                ),
            ),
        ] {
            let built = LossSpec::parse(spec).unwrap().build().unwrap();
            assert_eq!(format!("{:?}", built.terms[0].loss), want, "{spec}");
        }
    }
}
