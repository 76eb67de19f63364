//! Shape and spacing checks shared by every entry point, and the padded 3-D view the kernels work on.

use crate::error::{CoreError, Result};

/// A C-order grid of 1 to 3 axes, padded with leading axes of length 1 to exactly 3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Grid {
    /// The padded shape `[n0, n1, n2]`.
    pub shape: [usize; 3],
    /// The padded spacing (1 for the padding axes).
    pub spacing: [f64; 3],
    /// The number of real axes (1 to 3).
    pub ndim: usize,
}

impl Grid {
    /// The grid of `shape` (see [`Grid::new`]) for a caller's flat buffers, each of which must hold
    /// one value per voxel: [`CoreError::ShapeMismatch`] naming the first that does not.
    pub(crate) fn for_buffers(
        shape: &[usize],
        spacing: Option<&[f64]>,
        lens: &[usize],
    ) -> Result<Grid> {
        let g = Grid::new(shape, spacing)?;
        match lens.iter().find(|&&len| len != g.len()) {
            Some(&len) => Err(CoreError::ShapeMismatch {
                left: vec![len],
                right: shape.to_vec(),
            }),
            None => Ok(g),
        }
    }

    /// Checks `shape` (1 to 3 axes, no empty axis) and `spacing` (one finite value > 0 per axis).
    pub fn new(shape: &[usize], spacing: Option<&[f64]>) -> Result<Grid> {
        Self::with_dims(shape, spacing, 1, "1 to 3")
    }

    /// As [`Grid::new`] with a lower bound on the number of axes.
    pub fn with_dims(
        shape: &[usize],
        spacing: Option<&[f64]>,
        min_dims: usize,
        expected: &'static str,
    ) -> Result<Grid> {
        let ndim = shape.len();
        if ndim < min_dims || ndim > 3 {
            return Err(CoreError::Dimensions {
                got: ndim,
                shape: shape.to_vec(),
                expected,
            });
        }
        if shape.contains(&0) {
            return Err(CoreError::Empty {
                shape: shape.to_vec(),
            });
        }
        let total = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
        match total {
            Some(t) if t < u32::MAX as usize => {}
            _ => {
                return Err(CoreError::TooLarge {
                    what: "number of voxels",
                    count: total.unwrap_or(usize::MAX),
                    max: u32::MAX as usize - 1,
                })
            }
        }
        let sp = check_spacing(spacing, ndim)?;
        let mut g = Grid {
            shape: [1; 3],
            spacing: [1.0; 3],
            ndim,
        };
        for a in 0..ndim {
            g.shape[3 - ndim + a] = shape[a];
            g.spacing[3 - ndim + a] = sp[a];
        }
        Ok(g)
    }

    /// The number of voxels.
    pub fn len(&self) -> usize {
        self.shape[0] * self.shape[1] * self.shape[2]
    }
}

/// Checks a spacing slice: `None` is all ones; otherwise one finite value > 0 per axis.
pub(crate) fn check_spacing(spacing: Option<&[f64]>, ndim: usize) -> Result<Vec<f64>> {
    match spacing {
        None => Ok(vec![1.0; ndim]),
        Some(s) => {
            if s.len() != ndim {
                return Err(CoreError::SpacingLength {
                    got: s.len(),
                    expected: ndim,
                });
            }
            for (axis, &value) in s.iter().enumerate() {
                if !(value.is_finite() && value > 0.0) {
                    return Err(CoreError::BadSpacing { axis, value });
                }
            }
            Ok(s.to_vec())
        }
    }
}

/// A raw pointer that may be shared between the threads of a parallel pass.
///
/// Every use writes disjoint index sets from different tasks (see each `unsafe` block).
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub *mut T);
// SAFETY: the pointer is only dereferenced at indices that no other task touches at the same time.
unsafe impl<T: Send> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SyncPtr<T> {}
