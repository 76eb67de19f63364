//! Training data: the built-in synthetic cells or a folder of `images/` and `masks/`, their U-Net
//! weight maps, and batches with random flips and rotations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{s, Array2, ArrayView2, Ix2};
use segloss_core::{connected_components, unet_weight_map, Connectivity, WeightMapConfig};

use super::synth::{separate_instances, synth_dataset, Rng, Sample};
use crate::error::CliError;

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The built-in generator ([`super::synth`]).
    Synthetic,
    /// A folder with `images/` and `masks/`, files paired by name.
    Folder(PathBuf),
}

impl std::str::FromStr for DataSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "synthetic" {
            Ok(DataSource::Synthetic)
        } else if s.is_empty() {
            Err("expected 'synthetic' or a folder with images/ and masks/".into())
        } else {
            Ok(DataSource::Folder(PathBuf::from(s)))
        }
    }
}

/// A training and a validation set of equally sized square samples.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training samples.
    pub train: Vec<Sample>,
    /// Validation samples.
    pub val: Vec<Sample>,
    /// Side of every sample.
    pub size: usize,
    /// One line saying where the data came from.
    pub description: String,
}

/// The synthetic dataset: `n_train` and `n_val` images of side `size` from `seed` (training and
/// validation from independent streams).
pub fn synthetic(n_train: usize, n_val: usize, size: usize, seed: u64) -> Dataset {
    let train = synth_dataset(n_train, size, seed, 1, "train");
    let val = synth_dataset(n_val, size, seed, 2, "val");
    let cells = |v: &[Sample]| v.iter().map(Sample::num_instances).sum::<usize>();
    let description = format!(
        "synthetic cells, seed {seed}: {n_train} training images ({} cells) and {n_val} validation images ({} cells) of {size}×{size} pixels",
        cells(&train),
        cells(&val)
    );
    Dataset {
        train,
        val,
        size,
        description,
    }
}

/// Strips the known image extensions (`.nii.gz` included) from a file name.
fn stem(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    [".nii.gz", ".png", ".tif", ".tiff", ".npy", ".nii"]
        .iter()
        .find(|e| lower.ends_with(*e))
        .map(|e| &name[..name.len() - e.len()])
}

fn list(dir: &Path) -> Result<BTreeMap<String, PathBuf>, CliError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| CliError::input(format!("{}: cannot read the folder: {e}", dir.display())))?;
    let mut out = BTreeMap::new();
    for entry in rd {
        let entry = entry.map_err(|e| {
            CliError::input(format!("{}: cannot read the folder: {e}", dir.display()))
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if let Some(s) = stem(&name) {
            out.insert(s.to_string(), entry.path());
        }
    }
    Ok(out)
}

fn read_2d_f32(path: &Path) -> Result<Array2<f32>, CliError> {
    let v = segloss_io::read(path)?;
    let a = v.data.to_f32();
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>().map_err(|_| {
        CliError::input(format!(
            "{}: shape {shape:?}; expected a 2D grey image [H, W]",
            path.display()
        ))
    })
}

fn read_labels(path: &Path) -> Result<Array2<u32>, CliError> {
    let v = segloss_io::read(path)?;
    let a = v.data.to_labels()?;
    let shape = a.shape().to_vec();
    let a = a.into_dimensionality::<Ix2>().map_err(|_| {
        CliError::input(format!(
            "{}: shape {shape:?}; expected a 2D mask [H, W]",
            path.display()
        ))
    })?;
    let mut out = Array2::<u32>::zeros(a.dim());
    for (o, &l) in out.iter_mut().zip(a.iter()) {
        if l < 0 || l > u32::MAX as i64 {
            return Err(CliError::input(format!(
                "{}: label {l}; expected 0 (background) and positive labels",
                path.display()
            )));
        }
        *o = l as u32;
    }
    Ok(out)
}

/// One image and its mask as a [`Sample`]: the image scaled to [0, 1] by its minimum and
/// maximum; a 0/1 mask is the training mask as it is and its instances are its connected
/// components (8-connectivity); a mask with more labels is an instance-label image, made into a
/// training mask with background lines between touching instances as for the synthetic data.
fn folder_sample(name: &str, image: Array2<f32>, labels: Array2<u32>) -> Sample {
    let (lo, hi) = image
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let range = if hi > lo { hi - lo } else { 1.0 };
    let image = image.mapv(|v| (v - lo) / range);
    let max = labels.iter().copied().max().unwrap_or(0);
    let (mask, instances) = if max <= 1 {
        let (cc, _) =
            connected_components(&labels, Connectivity::Full).expect("a non-empty 2D mask");
        (labels.mapv(|l| (l > 0) as u8 as f32), cc)
    } else {
        separate_instances(&labels, 1)
    };
    Sample {
        name: name.to_string(),
        image,
        instances,
        mask,
    }
}

/// Cuts a sample into non-overlapping `size`×`size` tiles (row-major; the remainder at the right
/// and bottom edges is dropped).
fn tiles(s: &Sample, size: usize) -> Vec<Sample> {
    let (h, w) = s.image.dim();
    let mut out = Vec::new();
    for ty in 0..h / size {
        for tx in 0..w / size {
            let sl = s![ty * size..(ty + 1) * size, tx * size..(tx + 1) * size];
            let inst = s.instances.slice(sl).to_owned();
            let (inst, _) = segloss_core::relabel_sequential(&inst).expect("a non-empty tile");
            let name = if h == size && w == size {
                s.name.clone()
            } else {
                format!("{}-{ty}-{tx}", s.name)
            };
            out.push(Sample {
                name,
                image: s.image.slice(sl).to_owned(),
                instances: inst,
                mask: s.mask.slice(sl).to_owned(),
            });
        }
    }
    out
}

/// A folder dataset: `dir/images/` and `dir/masks/`, files paired by name without extension
/// (`.png`, `.tif`, `.tiff`, `.npy`, `.nii`, `.nii.gz`), 2D grey images of any size of at least
/// `size`×`size`, cut into `size`×`size` tiles. The last fifth of the pairs (by name, at least
/// one) is the validation set.
pub fn folder(dir: &Path, size: usize) -> Result<Dataset, CliError> {
    let images = list(&dir.join("images"))?;
    let masks = list(&dir.join("masks"))?;
    let mut pairs = Vec::new();
    for (name, ip) in &images {
        match masks.get(name) {
            Some(mp) => pairs.push((name.clone(), ip.clone(), mp.clone())),
            None => {
                return Err(CliError::input(format!(
                    "{}: no mask named '{name}' in {}",
                    ip.display(),
                    dir.join("masks").display()
                )))
            }
        }
    }
    if pairs.len() < 2 {
        return Err(CliError::input(format!(
            "{}: {} image/mask pair(s); expected at least 2 (one for training, one for validation)",
            dir.display(),
            pairs.len()
        )));
    }
    let n_val = (pairs.len() as f64 * 0.2).round().max(1.0) as usize;
    let split = pairs.len() - n_val;
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (i, (name, ip, mp)) in pairs.iter().enumerate() {
        let image = read_2d_f32(ip)?;
        let labels = read_labels(mp)?;
        if image.dim() != labels.dim() {
            return Err(CliError::input(format!(
                "{}: image shape {:?} but mask shape {:?} in {}",
                ip.display(),
                image.shape(),
                labels.shape(),
                mp.display()
            )));
        }
        if image.nrows() < size || image.ncols() < size {
            return Err(CliError::input(format!(
                "{}: shape {:?}; expected at least {size}×{size} (--size)",
                ip.display(),
                image.shape()
            )));
        }
        let t = tiles(&folder_sample(name, image, labels), size);
        if i < split {
            train.extend(t);
        } else {
            val.extend(t);
        }
    }
    let description = format!(
        "folder {}: {} image/mask pairs, {} training and {} validation tiles of {size}×{size} pixels",
        dir.display(),
        pairs.len(),
        train.len(),
        val.len()
    );
    Ok(Dataset {
        train,
        val,
        size,
        description,
    })
}

/// The U-Net weight map of every sample's mask (instances: its 8-connected components).
pub fn weight_maps(
    samples: &[Sample],
    config: &WeightMapConfig,
) -> Result<Vec<Array2<f32>>, CliError> {
    samples
        .iter()
        .map(|s| {
            unet_weight_map::<f32, _, _, _>(&s.mask, None, config)
                .map_err(|e| CliError::input(format!("weight map of {}: {e}", s.name)))
        })
        .collect()
}

/// One of the 8 flips and quarter turns of a square array.
fn dihedral(a: ArrayView2<'_, f32>, t: u8) -> ArrayView2<'_, f32> {
    let mut v = a;
    if t & 4 != 0 {
        v = v.reversed_axes();
    }
    if t & 2 != 0 {
        v.invert_axis(ndarray::Axis(0));
    }
    if t & 1 != 0 {
        v.invert_axis(ndarray::Axis(1));
    }
    v
}

/// A batch as flat `[N, 1, H, W]` buffers.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Number of samples.
    pub n: usize,
    /// Images.
    pub images: Vec<f32>,
    /// Masks.
    pub masks: Vec<f32>,
    /// Weight maps, when asked for.
    pub weights: Option<Vec<f32>>,
}

/// The samples `idx` of `samples` (with their weight maps when given), each flipped / turned by a
/// transform drawn from `rng` when given.
pub fn batch(
    samples: &[Sample],
    weights: Option<&[Array2<f32>]>,
    idx: &[usize],
    mut rng: Option<&mut Rng>,
) -> Batch {
    let per = samples.first().map(|s| s.image.len()).unwrap_or(0);
    let mut images = Vec::with_capacity(idx.len() * per);
    let mut masks = Vec::with_capacity(idx.len() * per);
    let mut wbuf = weights.map(|_| Vec::with_capacity(idx.len() * per));
    for &i in idx {
        let t = rng.as_deref_mut().map(|r| r.below(8) as u8).unwrap_or(0);
        let s = &samples[i];
        images.extend(dihedral(s.image.view(), t).iter());
        masks.extend(dihedral(s.mask.view(), t).iter());
        if let (Some(wb), Some(w)) = (wbuf.as_mut(), weights) {
            wb.extend(dihedral(w[i].view(), t).iter());
        }
    }
    Batch {
        n: idx.len(),
        images,
        masks,
        weights: wbuf,
    }
}
