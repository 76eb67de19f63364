//! What `distmap` and `weightmap` share: reading a 1–3D image with its spacing, parsing
//! `--spacing`, handing its voxels to the kernels in their own type (no intermediate copies for
//! `bool`/`u8` masks and integer label images), writing the map in the asked element type next to
//! nothing half-written, and timing each step.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use ndarray::ArrayD;
use segloss_io::{ArrayData, MapFloat, Volume, WriteOptions};

use crate::error::CliError;

/// A `--spacing a,b[,c]` value.
#[derive(Debug, Clone, PartialEq)]
pub struct Spacing(pub Vec<f64>);

/// Parses `--spacing a,b[,c]`: finite numbers > 0.
pub fn parse_spacing(s: &str) -> Result<Spacing, String> {
    s.split(',')
        .map(|t| {
            let t = t.trim();
            match t.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                _ => Err(format!(
                    "invalid spacing value {t:?} in {s:?}: expected comma-separated numbers > 0, e.g. 1,1,2.5"
                )),
            }
        })
        .collect::<Result<Vec<f64>, String>>()
        .map(Spacing)
}

/// The element type of a written map (`--dtype`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Dtype {
    /// 32-bit floats (the default: half the bytes to write and read back).
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

/// An input image: its voxels, its spacing (from `--spacing` or the file's header) and the volume
/// it came from (to copy the geometry on write).
pub struct Image {
    /// The file.
    pub path: PathBuf,
    /// The volume as read.
    pub volume: Volume,
    /// The spacing to use, one value per axis (`None`: isotropic 1).
    pub spacing: Option<Vec<f64>>,
}

/// Integer label images the kernels take as they are (other element types are converted to
/// `i64` labels first).
pub enum Labels<'a> {
    /// `bool` voxels.
    Bool(&'a ArrayD<bool>),
    /// `u8` voxels.
    U8(&'a ArrayD<u8>),
    /// `u16` voxels.
    U16(&'a ArrayD<u16>),
    /// `u32` voxels.
    U32(&'a ArrayD<u32>),
    /// `i32` voxels.
    I32(&'a ArrayD<i32>),
    /// Anything else, as `i64` labels.
    I64(Cow<'a, ArrayD<i64>>),
}

/// Applies `$body` to the array inside any [`Labels`] variant, bound to `$a`.
macro_rules! with_labels {
    ($labels:expr, $a:ident => $body:expr) => {
        match $labels {
            $crate::commands::image::Labels::Bool($a) => $body,
            $crate::commands::image::Labels::U8($a) => $body,
            $crate::commands::image::Labels::U16($a) => $body,
            $crate::commands::image::Labels::U32($a) => $body,
            $crate::commands::image::Labels::I32($a) => $body,
            $crate::commands::image::Labels::I64(a) => {
                let $a = &*a;
                $body
            }
        }
    };
}
pub(crate) use with_labels;

/// Applies `$body` to the voxels of `$img` (an [`Image`]) as a mask (non-zero = foreground), bound
/// to `$a`: `bool` and integer images as they are (no converted copy), float images through
/// [`Image::mask`] (which refuses NaN). Returns early with its error.
macro_rules! with_mask {
    ($img:expr, $a:ident => $body:expr) => {
        match &$img.volume.data {
            segloss_io::ArrayData::Bool($a) => $body,
            segloss_io::ArrayData::U8($a) => $body,
            segloss_io::ArrayData::U16($a) => $body,
            segloss_io::ArrayData::U32($a) => $body,
            segloss_io::ArrayData::U64($a) => $body,
            segloss_io::ArrayData::I8($a) => $body,
            segloss_io::ArrayData::I16($a) => $body,
            segloss_io::ArrayData::I32($a) => $body,
            segloss_io::ArrayData::I64($a) => $body,
            _ => {
                let m = $img.mask()?;
                let $a = &*m;
                $body
            }
        }
    };
}
pub(crate) use with_mask;

impl Image {
    /// Reads a 1–3D image; `spacing` overrides the header's.
    pub fn read(path: &Path, spacing: Option<&Spacing>) -> Result<Image, CliError> {
        let volume = segloss_io::read(path)?;
        let shape = volume.shape().to_vec();
        if shape.is_empty() || shape.len() > 3 {
            return Err(CliError::input(format!(
                "{}: array of shape {shape:?}: expected a 1D, 2D or 3D image",
                path.display()
            )));
        }
        if shape.contains(&0) {
            return Err(CliError::input(format!(
                "{}: empty image of shape {shape:?}: expected at least one voxel",
                path.display()
            )));
        }
        let spacing = match spacing {
            Some(s) => Some(s.0.clone()),
            None => volume.spacing.clone(),
        };
        if let Some(s) = &spacing {
            if s.len() != shape.len() {
                return Err(CliError::input(format!(
                    "{}: spacing {s:?} has {} values for a {}D image of shape {shape:?}",
                    path.display(),
                    s.len(),
                    shape.len()
                )));
            }
        }
        Ok(Image {
            path: path.to_path_buf(),
            volume,
            spacing,
        })
    }

    /// The voxels as `i64` labels (an error naming the file for non-integral values).
    pub fn labels(&self) -> Result<ArrayD<i64>, CliError> {
        self.volume
            .data
            .to_labels()
            .map_err(|e| CliError::input(format!("{}: {e}", self.path.display())))
    }

    /// The voxels as integer labels in their own type where the kernels take it (no copy), else
    /// as [`Image::labels`]: floats only when every value is a whole number.
    pub fn typed_labels(&self) -> Result<Labels<'_>, CliError> {
        Ok(match &self.volume.data {
            ArrayData::Bool(a) => Labels::Bool(a),
            ArrayData::U8(a) => Labels::U8(a),
            ArrayData::U16(a) => Labels::U16(a),
            ArrayData::U32(a) => Labels::U32(a),
            ArrayData::I32(a) => Labels::I32(a),
            ArrayData::I64(a) => Labels::I64(Cow::Borrowed(a)),
            _ => Labels::I64(Cow::Owned(self.labels()?)),
        })
    }

    /// The voxels as a foreground mask (non-zero = foreground; NaN is an error): a `bool` image
    /// as it is, any other converted in one pass.
    pub fn mask(&self) -> Result<Cow<'_, ArrayD<bool>>, CliError> {
        let nan = |i: usize| {
            CliError::input(format!(
                "{}: NaN at flat index {i}: expected a mask (0 = background, non-zero = foreground)",
                self.path.display()
            ))
        };
        macro_rules! nonzero {
            ($a:expr) => {
                Cow::Owned($a.mapv(|x| x != 0))
            };
        }
        macro_rules! float {
            ($a:expr) => {{
                if $a.iter().any(|x| x.is_nan()) {
                    let i = $a.iter().position(|x| x.is_nan()).unwrap_or(0);
                    return Err(nan(i));
                }
                Cow::Owned($a.mapv(|x| x != 0.0))
            }};
        }
        Ok(match &self.volume.data {
            ArrayData::Bool(a) => Cow::Borrowed(a),
            ArrayData::U8(a) => nonzero!(a),
            ArrayData::U16(a) => nonzero!(a),
            ArrayData::U32(a) => nonzero!(a),
            ArrayData::U64(a) => nonzero!(a),
            ArrayData::I8(a) => nonzero!(a),
            ArrayData::I16(a) => nonzero!(a),
            ArrayData::I32(a) => nonzero!(a),
            ArrayData::I64(a) => nonzero!(a),
            ArrayData::F32(a) => float!(a),
            ArrayData::F64(a) => float!(a),
        })
    }

    /// The spacing as a slice.
    pub fn spacing(&self) -> Option<&[f64]> {
        self.spacing.as_deref()
    }
}

/// Refuses an existing output before any work is done (the write itself is atomic too).
pub fn check_output(path: &Path, force: bool) -> Result<(), CliError> {
    segloss_io::check_output(path, WriteOptions { force })?;
    Ok(())
}

/// [`check_output`] by `stat` calls alone (no probe file): for one map, whose own write follows
/// at once and checks the folder again.
pub fn check_output_quick(path: &Path, force: bool) -> Result<(), CliError> {
    segloss_io::check_output_quick(path, WriteOptions { force })?;
    Ok(())
}

/// Writes a map in its own element type, copying the input's geometry.
pub fn write_map<F: MapFloat>(
    path: &Path,
    map: &ArrayD<F>,
    like: &Image,
    force: bool,
) -> Result<(), CliError> {
    segloss_io::write_map(path, map, Some(&like.volume), WriteOptions { force })?;
    Ok(())
}

/// Turns a core error into a bad-input error naming the file.
pub fn core_err(path: &Path) -> impl Fn(segloss_core::CoreError) -> CliError + '_ {
    move |e| CliError::input(format!("{}: {e}", path.display()))
}

/// Where the time of one file went (`--timing`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timing {
    /// Reading and decoding the input.
    pub read: Duration,
    /// Computing the map.
    pub compute: Duration,
    /// Writing the output.
    pub write: Duration,
}

impl std::ops::AddAssign for Timing {
    fn add_assign(&mut self, o: Timing) {
        self.read += o.read;
        self.compute += o.compute;
        self.write += o.write;
    }
}

impl Timing {
    /// `read X ms, compute Y ms, write Z ms`.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "read {:.2} ms, compute {:.2} ms, write {:.2} ms",
            ms(self.read),
            ms(self.compute),
            ms(self.write)
        )
    }
}

/// Reads `input`, computes a map of it with `compute` (in `f32` or `f64`, as `dtype` asks) and
/// writes it to `output` (refused if it exists, unless `force`), timing each step.
pub fn map_file<C: MapCompute>(
    input: &Path,
    output: &Path,
    spacing: Option<&Spacing>,
    dtype: Dtype,
    force: bool,
    compute: &C,
) -> Result<Timing, CliError> {
    let t0 = Instant::now();
    let img = Image::read(input, spacing)?;
    let t1 = Instant::now();
    let mut t = Timing {
        read: t1 - t0,
        ..Timing::default()
    };
    match dtype {
        Dtype::F32 => {
            let map = compute.compute::<f32>(&img)?;
            let t2 = Instant::now();
            write_map(output, &map, &img, force)?;
            t.compute = t2 - t1;
            t.write = t2.elapsed();
        }
        Dtype::F64 => {
            let map = compute.compute::<f64>(&img)?;
            let t2 = Instant::now();
            write_map(output, &map, &img, force)?;
            t.compute = t2 - t1;
            t.write = t2.elapsed();
        }
    }
    Ok(t)
}

/// A map computed from one image, in `f32` or `f64`.
pub trait MapCompute: Sync {
    /// The map of `img`.
    fn compute<F: segloss_core::Float + MapFloat>(
        &self,
        img: &Image,
    ) -> Result<ArrayD<F>, CliError>;
}
