//! `segloss weightmap IN -o OUT [--w0 10] [--sigma 5] [--class-weight balanced|none] [--instances]
//! [--connectivity face|full]`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::ArrayD;
use segloss_core::{ClassWeight, Connectivity, WeightMapConfig};

use super::image::{check_output, core_err, parse_spacing, write_map, Image, Spacing};
use crate::error::CliError;

/// `w_c` of the weight map.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ClassWeightArg {
    /// N / (2·N_k) for background and foreground.
    Balanced,
    /// 1 everywhere.
    None,
}

/// How mask voxels connect into instances.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ConnectivityArg {
    /// Shared faces (4 neighbours in 2D, 6 in 3D).
    Face,
    /// Faces, edges and corners (8 in 2D, 26 in 3D).
    Full,
}

/// Arguments of `segloss weightmap`.
#[derive(Args, Debug)]
pub struct WeightmapArgs {
    /// Binary mask (instances = connected components) or, with --instances, an instance-label image.
    pub input: PathBuf,
    /// Output (.npy, .tif, .nii/.nii.gz), float32.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Height of the border term.
    #[arg(long, default_value_t = 10.0)]
    pub w0: f64,
    /// Width of the border term (in spacing units).
    #[arg(long, default_value_t = 5.0)]
    pub sigma: f64,
    /// Class weight w_c.
    #[arg(long, value_enum, default_value_t = ClassWeightArg::Balanced)]
    pub class_weight: ClassWeightArg,
    /// The input is an instance-label image (each non-zero value one cell).
    #[arg(long)]
    pub instances: bool,
    /// Connectivity of the mask's components (ignored with --instances).
    #[arg(long, value_enum, default_value_t = ConnectivityArg::Full)]
    pub connectivity: ConnectivityArg,
    /// Voxel spacing per axis (default: the NIfTI header's, else 1).
    #[arg(long, value_parser = parse_spacing)]
    pub spacing: Option<Spacing>,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

/// Runs `segloss weightmap`.
pub fn run(a: WeightmapArgs) -> Result<(), CliError> {
    check_output(&a.output, a.force)?;
    let config = WeightMapConfig {
        w0: a.w0,
        sigma: a.sigma,
        class_weight: match a.class_weight {
            ClassWeightArg::Balanced => ClassWeight::Balanced,
            ClassWeightArg::None => ClassWeight::None,
        },
        connectivity: match a.connectivity {
            ConnectivityArg::Face => Connectivity::Face,
            ConnectivityArg::Full => Connectivity::Full,
        },
        ..WeightMapConfig::default()
    };
    config
        .validate()
        .map_err(|e| CliError::input(format!("--w0 {} --sigma {}: {e}", a.w0, a.sigma)))?;
    let img = Image::read(&a.input, a.spacing.as_ref())?;
    let err = core_err(&a.input);
    let map: ArrayD<f32> = if a.instances {
        segloss_core::unet_weight_map_from_instances(&img.labels()?, img.spacing(), &config)
            .map_err(err)?
    } else {
        segloss_core::unet_weight_map(&img.mask()?, img.spacing(), &config).map_err(err)?
    };
    write_map(&a.output, &map, &img, a.force)
}
