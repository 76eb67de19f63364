//! `segloss weightmap IN -o OUT [--w0 10] [--sigma 5] [--class-weight balanced|none] [--instances]
//! [--connectivity face|full] [--dtype f32|f64]`, on one file or on every image of a folder
//! (`segloss weightmap DIR -o OUTDIR [--recursive] [--format npy|tif|nii|nii-gz]`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::ArrayD;
use segloss_core::{ClassWeight, Connectivity, WeightMapConfig};

use segloss_io::MapFloat;

use super::image::{
    core_err, map_file, parse_spacing, with_labels, Dtype, Image, MapCompute, Spacing,
};
use crate::batch::{FolderRun, OutFormat};
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
    /// Binary mask (instances = connected components) or, with --instances, an instance-label
    /// image; or a folder of them.
    pub input: PathBuf,
    /// Output file (.npy, .tif, .nii/.nii.gz), or the output folder when the input is a folder
    /// (created if missing; each map keeps its input's name and format, a PNG's becomes .tif).
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

/// What one weight map is computed with.
struct WeightMap {
    config: WeightMapConfig,
    instances: bool,
}

impl MapCompute for WeightMap {
    fn compute<F: segloss_core::Float + MapFloat>(
        &self,
        img: &Image,
    ) -> Result<ArrayD<F>, CliError> {
        let err = core_err(&img.path);
        let sp = img.spacing();
        if self.instances {
            with_labels!(img.typed_labels()?, a => {
                segloss_core::unet_weight_map_from_instances(a, sp, &self.config).map_err(err)
            })
        } else {
            // As `bool`: the connected components scan `bool` masks a word at a time.
            segloss_core::unet_weight_map(&*img.mask()?, sp, &self.config).map_err(err)
        }
    }
}

/// Runs `segloss weightmap`.
pub fn run(a: WeightmapArgs) -> Result<(), CliError> {
    let folder = a.input.is_dir();
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
        // A folder runs one map per thread: splitting each map as well only adds work.
        parallel: !folder,
        ..WeightMapConfig::default()
    };
    config
        .validate()
        .map_err(|e| CliError::input(format!("--w0 {} --sigma {}: {e}", a.w0, a.sigma)))?;
    let job = WeightMap {
        config,
        instances: a.instances,
    };
    let spacing = a.spacing.as_ref();
    let one = |input: &std::path::Path, output: &std::path::Path| {
        map_file(input, output, spacing, a.dtype, a.force, &job)
    };
    FolderRun {
        name: "segloss weightmap",
        input: &a.input,
        output: &a.output,
        recursive: a.recursive,
        format: a.format,
        force: a.force,
        timing: a.timing,
    }
    .run(folder, one)
}
