//! The loss catalogue behind the spec grammar: every family registers its names, keys and checks
//! in its own module (`distribution::build`, …); this module dispatches and reports unknown names.

use crate::error::LossError;
use crate::input::LossReduction;
use crate::loss::SegLoss;
use crate::spec::Args;

/// A built loss and its term's own reduction.
pub(crate) type Built = (Box<dyn SegLoss>, Option<LossReduction>);

/// A number > 0.
pub(crate) const POS: fn(f64) -> bool = |v| v.is_finite() && v > 0.0;
/// A number >= 0.
pub(crate) const NONNEG: fn(f64) -> bool = |v| v.is_finite() && v >= 0.0;
/// A number in [0, 1).
pub(crate) const UNIT_OPEN: fn(f64) -> bool = |v| (0.0..1.0).contains(&v);
/// A number in [0, 1].
pub(crate) const UNIT: fn(f64) -> bool = |v| (0.0..=1.0).contains(&v);

/// Every loss name the spec grammar knows, in catalogue order.
pub fn loss_names() -> Vec<&'static str> {
    [
        crate::distribution::NAMES,
        crate::region::NAMES,
        crate::boundary::NAMES,
        crate::compound::NAMES,
    ]
    .concat()
}

/// Builds the loss of one spec term.
pub(crate) fn build(a: &mut Args<'_>) -> Result<Built, LossError> {
    if let Some(b) = crate::distribution::build(a)? {
        return Ok(b);
    }
    if let Some(b) = crate::region::build(a)? {
        return Ok(b);
    }
    if let Some(b) = crate::boundary::build(a)? {
        return Ok(b);
    }
    if let Some(b) = crate::compound::build(a)? {
        return Ok(b);
    }
    Err(a.err(
        a.term.pos,
        format!(
            "unknown loss '{}'; known losses: {}",
            a.term.name,
            loss_names().join(", ")
        ),
    ))
}
