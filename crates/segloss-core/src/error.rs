//! The crate's error type.

use thiserror::Error;

/// Everything that can be wrong with the input of a `segloss-core` function.
///
/// No function of this crate panics on bad input: it returns one of these instead, with the offending
/// value and what was expected in the message.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// The array has no element (one of its axes has length 0).
    #[error("empty input: the array of shape {shape:?} has no element")]
    Empty {
        /// The shape received.
        shape: Vec<usize>,
    },
    /// The array has a number of dimensions the function does not support.
    #[error("unsupported number of dimensions: got {got} (shape {shape:?}), expected {expected}")]
    Dimensions {
        /// The number of dimensions received.
        got: usize,
        /// The shape received.
        shape: Vec<usize>,
        /// What is supported, in words (e.g. `"1 to 3"`).
        expected: &'static str,
    },
    /// The spacing slice does not have one value per axis.
    #[error("spacing has {got} values, expected {expected} (one per axis)")]
    SpacingLength {
        /// The number of spacing values received.
        got: usize,
        /// The number of axes of the array.
        expected: usize,
    },
    /// A spacing value is not a finite positive number.
    #[error("spacing[{axis}] = {value} is not a finite number > 0")]
    BadSpacing {
        /// The axis whose spacing is wrong.
        axis: usize,
        /// The value received.
        value: f64,
    },
    /// A numeric parameter is out of its allowed range.
    #[error("invalid parameter {name} = {value}: expected {expected}")]
    BadParameter {
        /// The parameter's name.
        name: &'static str,
        /// The value received.
        value: f64,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// Two arrays that must have the same shape do not.
    #[error("shape mismatch: {left:?} vs {right:?}")]
    ShapeMismatch {
        /// The first shape.
        left: Vec<usize>,
        /// The second shape.
        right: Vec<usize>,
    },
    /// The array is too large to be indexed by this crate's 32-bit labels or indices.
    #[error("too large: {what} ({count}) exceeds {max}")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// The count reached.
        count: usize,
        /// The largest supported count.
        max: usize,
    },
}

/// `Result` with [`CoreError`].
pub type Result<T> = std::result::Result<T, CoreError>;
