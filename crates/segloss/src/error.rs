//! The typed error every fallible segloss entry point returns.

use thiserror::Error;

/// What was wrong with the input of a loss, a spec string or a configuration.
///
/// Every message names the offending value and what was expected, so the CLI can print it verbatim.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum LossError {
    /// Two tensors that must agree in shape do not.
    #[error("shape mismatch: {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Which tensors were compared.
        what: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape received.
        got: Vec<usize>,
    },
    /// A tensor has a rank or layout the loss does not accept.
    #[error("bad shape for {what}: {got:?}; expected {expected}")]
    BadShape {
        /// Which tensor.
        what: String,
        /// The shape received.
        got: Vec<usize>,
        /// A description of the accepted layouts.
        expected: String,
    },
    /// A tensor has no elements.
    #[error("empty input: {what} has shape {shape:?}; expected at least one element")]
    Empty {
        /// Which tensor.
        what: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A prediction or weight is NaN or infinite.
    #[error("non-finite value in {what}: expected every value to be finite")]
    NonFinite {
        /// Which tensor.
        what: String,
    },
    /// A loss came out NaN or infinite although its inputs passed every check: its parameters
    /// overflow f32 arithmetic on these inputs (a huge weight, smoothing term or exponent).
    #[error("the {loss} loss is not finite (NaN or infinite) although every input is finite: its parameters overflow f32 arithmetic on these inputs; expected smaller weights, smoothing terms or exponents")]
    NonFiniteLoss {
        /// The loss's name in the spec grammar.
        loss: String,
    },
    /// A class label is outside `0..num_classes` (and is not the ignore index).
    #[error("label {label} out of range in target: expected 0..{num_classes} (C = {num_classes}){ignore}")]
    LabelOutOfRange {
        /// The offending label.
        label: i64,
        /// The number of classes (channels of the prediction).
        num_classes: usize,
        /// A note about the ignore index, if any.
        ignore: String,
    },
    /// A soft target (mask) value is outside [0, 1].
    #[error("target value {value} out of range: expected a mask with values in [0, 1]{ignore}")]
    TargetOutOfRange {
        /// The offending value.
        value: f64,
        /// A note about the ignore index, if any.
        ignore: String,
    },
    /// A weight is negative.
    #[error("negative value {value} in {what}: expected weights >= 0")]
    NegativeWeight {
        /// Which tensor.
        what: String,
        /// The offending value.
        value: f64,
    },
    /// A configuration value is outside its allowed range or inconsistent with the input.
    #[error("invalid {name} = {value}: {expected}")]
    InvalidParameter {
        /// The parameter name as used in the spec grammar.
        name: String,
        /// The value received.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// A distance or weight map could not be computed from the target.
    #[error("cannot compute the {what} of the target: {message}")]
    Map {
        /// Which map.
        what: String,
        /// Why.
        message: String,
    },
    /// A loss-spec string could not be parsed.
    #[error("{0}")]
    Spec(#[from] crate::spec::SpecError),
}

impl LossError {
    /// Shorthand for [`LossError::InvalidParameter`].
    pub fn param(name: &str, value: impl ToString, expected: impl ToString) -> Self {
        LossError::InvalidParameter {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
}

/// Unwraps a result on the training hot path the way burn does: a panic whose message states
/// the expected and received values.
pub(crate) fn or_panic<T>(r: Result<T, LossError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}
