//! What `distmap`, `weightmap` (and later `eval`) share: reading a 1–3D image with its spacing,
//! parsing `--spacing`, and writing the result next to nothing half-written.

use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use segloss_io::{Volume, WriteOptions};

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

    /// The voxels as integer labels (an error naming the file for non-integral values).
    pub fn labels(&self) -> Result<ArrayD<i64>, CliError> {
        self.volume
            .data
            .to_labels()
            .map_err(|e| CliError::input(format!("{}: {e}", self.path.display())))
    }

    /// The voxels as a foreground mask (non-zero = foreground; NaN is an error).
    pub fn mask(&self) -> Result<ArrayD<bool>, CliError> {
        let v = self.volume.data.to_f64();
        if let Some((i, _)) = v.iter().enumerate().find(|(_, x)| x.is_nan()) {
            return Err(CliError::input(format!(
                "{}: NaN at flat index {i}: expected a mask (0 = background, non-zero = foreground)",
                self.path.display()
            )));
        }
        Ok(v.mapv(|x| x != 0.0))
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

/// Writes a float32 map, copying the input's geometry.
pub fn write_map(
    path: &Path,
    map: &ArrayD<f32>,
    like: &Image,
    force: bool,
) -> Result<(), CliError> {
    segloss_io::write(path, map, Some(&like.volume), WriteOptions { force })?;
    Ok(())
}

/// Turns a core error into a bad-input error naming the file.
pub fn core_err(path: &Path) -> impl Fn(segloss_core::CoreError) -> CliError + '_ {
    move |e| CliError::input(format!("{}: {e}", path.display()))
}
