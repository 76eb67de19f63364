//! `segloss distmap IN -o OUT [--kind edt|labels|signed|penalty] [--spacing a,b[,c]]`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::ArrayD;

use super::image::{check_output, core_err, parse_spacing, write_map, Image, Spacing};
use crate::error::CliError;

/// Which map.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Kind {
    /// Each non-zero voxel: Euclidean distance to the nearest zero voxel (scipy distance_transform_edt).
    Edt,
    /// Each labelled voxel: distance to the nearest voxel of a different label (seung-lab edt).
    Labels,
    /// Boundary-loss signed map: +distance outside the object, −(distance to background − 1) inside.
    Signed,
    /// Distance-penalised CE map Φ ∈ [0, 1], 1 at the boundary.
    Penalty,
}

/// Arguments of `segloss distmap`.
#[derive(Args, Debug)]
pub struct DistmapArgs {
    /// Input mask or label image (.npy, .png, .tif, .nii/.nii.gz).
    pub input: PathBuf,
    /// Output (.npy, .tif, .nii/.nii.gz), float32.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Which map.
    #[arg(long, value_enum, default_value_t = Kind::Edt)]
    pub kind: Kind,
    /// Voxel spacing per axis, e.g. 1,1,2.5 (default: the NIfTI header's, else 1).
    #[arg(long, value_parser = parse_spacing)]
    pub spacing: Option<Spacing>,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

/// Runs `segloss distmap`.
pub fn run(a: DistmapArgs) -> Result<(), CliError> {
    check_output(&a.output, a.force)?;
    let img = Image::read(&a.input, a.spacing.as_ref())?;
    let err = core_err(&a.input);
    let sp = img.spacing();
    let map: ArrayD<f32> = match a.kind {
        Kind::Edt => segloss_core::edt(&img.mask()?, sp).map_err(err)?,
        Kind::Labels => segloss_core::multilabel_edt(&img.labels()?, sp).map_err(err)?,
        Kind::Signed => segloss_core::signed_distance_map(&img.mask()?, sp).map_err(err)?,
        Kind::Penalty => segloss_core::penalty_map(&img.mask()?, sp).map_err(err)?,
    };
    write_map(&a.output, &map, &img, a.force)
}
