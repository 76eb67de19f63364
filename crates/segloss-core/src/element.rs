//! The element traits: what an input voxel can be ([`Voxel`]) and what an output map can be ([`Float`]).

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Sub};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A voxel of a mask or a label image.
///
/// A voxel is *foreground* (or *labelled*) when it is non-zero (`true` for `bool`), as in scipy and numpy;
/// for floats, NaN counts as non-zero. Two voxels have the *same label* when they are equal (two NaNs are
/// one label). Implemented for `bool`, every primitive integer type, `f32` and `f64`.
pub trait Voxel: Copy + Send + Sync {
    /// `true` for a non-zero value (foreground / labelled), `false` for zero (background).
    fn is_foreground(self) -> bool;
    /// Whether `self` and `other` are the same label.
    fn same_label(self, other: Self) -> bool;
    /// A 64-bit key that identifies the label (equal labels give equal keys, different labels different keys).
    fn label_key(self) -> u64;
    /// The slice as bytes that are 0 or 1, for word-at-a-time scans (`bool` only).
    #[doc(hidden)]
    #[inline(always)]
    fn as_bits(s: &[Self]) -> Option<&[u8]>
    where
        Self: Sized,
    {
        let _ = s;
        None
    }
}

impl Voxel for bool {
    #[inline(always)]
    fn as_bits(s: &[bool]) -> Option<&[u8]> {
        // SAFETY: a bool is one byte holding 0 or 1, a valid u8; same length and lifetime.
        Some(unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len()) })
    }

    #[inline(always)]
    fn is_foreground(self) -> bool {
        self
    }
    #[inline(always)]
    fn same_label(self, other: Self) -> bool {
        self == other
    }
    #[inline(always)]
    fn label_key(self) -> u64 {
        self as u64
    }
}

macro_rules! voxel_int {
    ($($t:ty),*) => {$(
        impl Voxel for $t {
            #[inline(always)]
            fn is_foreground(self) -> bool {
                self != 0
            }
            #[inline(always)]
            fn same_label(self, other: Self) -> bool {
                self == other
            }
            #[inline(always)]
            fn label_key(self) -> u64 {
                self as u64
            }
        }
    )*};
}
voxel_int!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

macro_rules! voxel_float {
    ($($t:ty),*) => {$(
        impl Voxel for $t {
            #[inline(always)]
            fn is_foreground(self) -> bool {
                self != 0.0
            }
            #[inline(always)]
            fn same_label(self, other: Self) -> bool {
                self == other || (self.is_nan() && other.is_nan())
            }
            #[inline(always)]
            fn label_key(self) -> u64 {
                if self.is_nan() {
                    u64::MAX
                } else if self == 0.0 {
                    0
                } else {
                    self.to_bits() as u64
                }
            }
        }
    )*};
}
voxel_float!(f32, f64);

/// The floating-point type of an output map: `f32` or `f64` (sealed).
///
/// Distances are computed in `f64` inside each line and stored in `F` between passes, so `f32` maps of
/// integer-spaced grids are exact up to squared distances of 2^24.
pub trait Float:
    sealed::Sealed
    + Copy
    + Send
    + Sync
    + PartialOrd
    + Debug
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + 'static
{
    /// Positive infinity.
    const INFINITY: Self;
    /// Zero.
    const ZERO: Self;
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64`.
    fn to_f64(self) -> f64;
    /// The square root.
    fn sqrt(self) -> Self;
}

impl Float for f32 {
    const INFINITY: Self = f32::INFINITY;
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Float for f64 {
    const INFINITY: Self = f64::INFINITY;
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}
