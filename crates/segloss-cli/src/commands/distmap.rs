//! `segloss distmap IN -o OUT [--kind edt|labels|signed|penalty] [--spacing a,b[,c]] [--dtype f32|f64]`,
//! on one file or on every image of a folder (`segloss distmap DIR -o OUTDIR [--recursive]
//! [--format npy|tif|nii|nii-gz]`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::ArrayD;
use segloss_io::MapFloat;

use super::image::{
    core_err, map_file, parse_spacing, with_labels, with_mask, Dtype, Image, MapCompute, Spacing,
};
use crate::batch::{FolderRun, OutFormat};
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
    /// Input mask or label image (.npy, .png, .tif, .nii/.nii.gz), or a folder of them.
    pub input: PathBuf,
    /// Output file (.npy, .tif, .nii/.nii.gz), or the output folder when the input is a folder
    /// (created if missing; each map keeps its input's name and format, a PNG's becomes .tif).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Which map.
    #[arg(long, value_enum, default_value_t = Kind::Edt)]
    pub kind: Kind,
    /// Voxel spacing per axis, e.g. 1,1,2.5 (default: the NIfTI header's, else 1).
    #[arg(long, value_parser = parse_spacing)]
    pub spacing: Option<Spacing>,
    /// Element type of the written map.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Folder mode: also map the images of subfolders (mirrored under the output folder).
    #[arg(long)]
    pub recursive: bool,
    /// Folder mode: write every map in this format instead of its input's.
    #[arg(long, value_enum)]
    pub format: Option<OutFormat>,
    /// Overwrite existing outputs.
    #[arg(long)]
    pub force: bool,
    /// Print the time spent reading, computing and writing to stderr.
    #[arg(long)]
    pub timing: bool,
}

impl MapCompute for Kind {
    fn compute<F: segloss_core::Float + MapFloat>(
        &self,
        img: &Image,
    ) -> Result<ArrayD<F>, CliError> {
        let err = core_err(&img.path);
        let sp = img.spacing();
        match self {
            Kind::Edt => with_mask!(img, a => segloss_core::edt(a, sp).map_err(err)),
            Kind::Labels => {
                with_labels!(img.typed_labels()?, a => segloss_core::multilabel_edt(a, sp).map_err(err))
            }
            Kind::Signed => {
                with_mask!(img, a => segloss_core::signed_distance_map(a, sp).map_err(err))
            }
            Kind::Penalty => with_mask!(img, a => segloss_core::penalty_map(a, sp).map_err(err)),
        }
    }
}

/// Runs `segloss distmap`.
pub fn run(a: DistmapArgs) -> Result<(), CliError> {
    let spacing = a.spacing.as_ref();
    let one = |input: &std::path::Path, output: &std::path::Path| {
        map_file(input, output, spacing, a.dtype, a.force, &a.kind)
    };
    FolderRun {
        name: "segloss distmap",
        input: &a.input,
        output: &a.output,
        recursive: a.recursive,
        format: a.format,
        force: a.force,
        timing: a.timing,
    }
    .run(a.input.is_dir(), one)
}
