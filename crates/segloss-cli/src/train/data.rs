//! Training data: the built-in synthetic cells or a folder of images and masks, their U-Net
//! weight maps, intensity normalisation, and training batches of random crops with flips, quarter
//! turns and a mild intensity change.
//!
//! # Folders
//! `DIR/images/` and `DIR/masks/` hold 2D grey images and their masks, paired by file name without
//! the extension (`.png`, `.tif`, `.tiff`, `.npy`, `.nii`, `.nii.gz`; singleton axes such as a
//! NIfTI slice's `[H, W, 1]` are dropped). When `DIR/val/images/` and `DIR/val/masks/` exist they
//! are the validation set and every pair of `DIR/images/` trains; otherwise the last
//! `--val-fraction` of the pairs (by name, at least one) validates. Images of any size at least
//! `--size` pixels on each side; masks are 0/1 masks or instance-label images.
//!
//! # Normalisation
//! Every folder image is scaled by its own percentiles, `(x − p_lo) / (p_hi − p_lo)` with
//! `p_lo`, `p_hi` the 1st and 99.8th percentiles by default (as csbdeep and stardist do), without
//! clipping; so 8- and 16-bit images, floats and scanner units all arrive on the same scale.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{s, Array2, ArrayView2, Axis, Ix2};
use segloss_core::{connected_components, unet_weight_map, Connectivity, WeightMapConfig};

use super::synth::{separate_instances, synth_dataset, Rng, Sample};
use crate::error::CliError;

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The built-in generator ([`super::synth`]).
    Synthetic,
    /// A folder with `images/` and `masks/` (and optionally `val/images/`, `val/masks/`).
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

/// Training and validation images (whole, of any size of at least `crop` on each side).
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training images; batches are random `crop`×`crop` crops of them.
    pub train: Vec<Sample>,
    /// Validation images, predicted whole.
    pub val: Vec<Sample>,
    /// Side of the training crops.
    pub crop: usize,
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
        crop: size,
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
    let rd = std::fs::read_dir(dir).map_err(|e| {
        CliError::input(format!(
            "{}: cannot read the folder ({e}); expected a data folder with images/ and masks/",
            dir.display()
        ))
    })?;
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

/// Drops axes of length 1 beyond the first two (`[H, W, 1]` NIfTI slices, `[1, H, W]` stacks).
fn squeeze<T: Clone>(a: ndarray::ArrayD<T>) -> ndarray::ArrayD<T> {
    let mut a = a;
    while a.ndim() > 2 {
        match (0..a.ndim()).rev().find(|&i| a.shape()[i] == 1) {
            Some(i) => a = a.remove_axis(Axis(i)),
            None => break,
        }
    }
    a
}

fn read_image(path: &Path) -> Result<Array2<f32>, CliError> {
    let v = segloss_io::read(path)?;
    let a = squeeze(v.data.to_f32());
    let shape = a.shape().to_vec();
    let a = a.into_dimensionality::<Ix2>().map_err(|_| {
        CliError::input(format!(
            "{}: shape {shape:?}; expected a 2D grey image [H, W]",
            path.display()
        ))
    })?;
    if let Some(v) = a.iter().find(|v| !v.is_finite()) {
        return Err(CliError::input(format!(
            "{}: value {v}; expected finite intensities",
            path.display()
        )));
    }
    Ok(a)
}

fn read_labels(path: &Path) -> Result<Array2<u32>, CliError> {
    let v = segloss_io::read(path)?;
    let a = squeeze(v.data.to_labels()?);
    let shape = a.shape().to_vec();
    let a = a.into_dimensionality::<Ix2>().map_err(|_| {
        let what = if shape.len() == 3 && matches!(shape[2], 3 | 4) {
            "an RGB(A) image"
        } else {
            "not 2D"
        };
        CliError::input(format!(
            "{}: shape {shape:?} ({what}); expected a single-channel 2D mask [H, W] of 0/1 or instance labels",
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

/// The `q`-th percentile (0..=100) of `values` with linear interpolation (numpy's default).
pub fn percentile(values: &mut [f32], q: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let pos = q / 100.0 * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (_, &mut a, _) = values.select_nth_unstable_by(lo, |x, y| x.total_cmp(y));
    let b = if hi == lo {
        a
    } else {
        // The smallest value above position `lo` is the minimum of the upper part.
        values[lo + 1..]
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min)
    };
    a + (b - a) * (pos - lo as f64) as f32
}

/// `(x − p_lo) / (p_hi − p_lo)` with the image's own `lo`-th and `hi`-th percentiles (no clipping;
/// a constant image becomes 0).
pub fn normalize_percentiles(image: &Array2<f32>, lo: f64, hi: f64) -> Array2<f32> {
    let mut v: Vec<f32> = image.iter().copied().collect();
    let a = percentile(&mut v, lo);
    let b = percentile(&mut v, hi);
    let range = b - a;
    if range > 0.0 && range.is_finite() {
        image.mapv(|x| (x - a) / range)
    } else {
        image.mapv(|x| x - a)
    }
}

/// One image and its mask as a [`Sample`]: a 0/1 mask is the training mask as it is and its
/// instances are its connected components (8-connectivity); a mask with more labels is an
/// instance-label image, made into a training mask with background lines between touching
/// instances as for the synthetic data.
fn folder_sample(name: &str, image: Array2<f32>, labels: Array2<u32>) -> Sample {
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

type Pair = (String, PathBuf, PathBuf);

fn pairs_of(images: &Path, masks: &Path) -> Result<Vec<Pair>, CliError> {
    let im = list(images)?;
    let ma = list(masks)?;
    let mut pairs = Vec::new();
    for (name, ip) in &im {
        match ma.get(name) {
            Some(mp) => pairs.push((name.clone(), ip.clone(), mp.clone())),
            None => {
                return Err(CliError::input(format!(
                    "{}: no mask named '{name}' in {}; expected one mask per image, paired by name",
                    ip.display(),
                    masks.display()
                )))
            }
        }
    }
    if let Some((name, mp)) = ma.iter().find(|(n, _)| !im.contains_key(*n)) {
        return Err(CliError::input(format!(
            "{}: no image named '{name}' in {}; expected one image per mask, paired by name",
            mp.display(),
            images.display()
        )));
    }
    Ok(pairs)
}

fn load_pair(
    (name, ip, mp): &Pair,
    crop: usize,
    percentiles: (f64, f64),
) -> Result<Sample, CliError> {
    let image = read_image(ip)?;
    let labels = read_labels(mp)?;
    if image.dim() != labels.dim() {
        return Err(CliError::input(format!(
            "{}: mask shape {:?} but its image {} has shape {:?}; expected the same shape",
            mp.display(),
            labels.shape(),
            ip.display(),
            image.shape()
        )));
    }
    if image.nrows() < crop || image.ncols() < crop {
        return Err(CliError::input(format!(
            "{}: shape {:?}; expected at least {crop}×{crop} (--size)",
            ip.display(),
            image.shape()
        )));
    }
    let image = normalize_percentiles(&image, percentiles.0, percentiles.1);
    Ok(folder_sample(name, image, labels))
}

/// A folder dataset (see the [module docs](self)): `crop` is the side of the training crops,
/// `val_fraction` the share of `images/` that validates when there is no `val/`, `percentiles`
/// the normalisation's lower and upper percentiles.
pub fn folder(
    dir: &Path,
    crop: usize,
    val_fraction: f64,
    percentiles: (f64, f64),
) -> Result<Dataset, CliError> {
    if !dir.is_dir() {
        return Err(CliError::input(format!(
            "{}: not a folder; expected 'synthetic' or a folder with images/ and masks/",
            dir.display()
        )));
    }
    let pairs = pairs_of(&dir.join("images"), &dir.join("masks"))?;
    let val_dir = dir.join("val");
    let has_val = val_dir.join("images").is_dir() || val_dir.join("masks").is_dir();
    let (train_pairs, val_pairs) = if has_val {
        let vp = pairs_of(&val_dir.join("images"), &val_dir.join("masks"))?;
        if pairs.is_empty() || vp.is_empty() {
            let empty = if pairs.is_empty() {
                dir.join("images")
            } else {
                val_dir.join("images")
            };
            return Err(CliError::input(format!(
                "{}: no image/mask pairs; expected at least one training pair in images/ + masks/ and one validation pair in val/images/ + val/masks/",
                empty.display()
            )));
        }
        (pairs, vp)
    } else {
        match pairs.len() {
            0 => {
                return Err(CliError::input(format!(
                    "{}: no image/mask pairs (.png, .tif, .tiff, .npy, .nii, .nii.gz, paired by name with masks/); expected at least 2",
                    dir.join("images").display()
                )))
            }
            1 => {
                return Err(CliError::input(format!(
                    "{}: the only image/mask pair; expected at least 2 (training and validation), or a validation pair in val/images/ + val/masks/",
                    pairs[0].1.display()
                )))
            }
            _ => {}
        }
        let n_val =
            ((pairs.len() as f64 * val_fraction).round() as usize).clamp(1, pairs.len() - 1);
        let mut train = pairs;
        let val = train.split_off(train.len() - n_val);
        (train, val)
    };
    let train = train_pairs
        .iter()
        .map(|p| load_pair(p, crop, percentiles))
        .collect::<Result<Vec<_>, _>>()?;
    let val = val_pairs
        .iter()
        .map(|p| load_pair(p, 1, percentiles))
        .collect::<Result<Vec<_>, _>>()?;
    let px = |v: &[Sample]| v.iter().map(|s| s.image.len()).sum::<usize>();
    let cells = |v: &[Sample]| v.iter().map(Sample::num_instances).sum::<usize>();
    let shapes = |v: &[Sample]| {
        let mut d: Vec<String> = v
            .iter()
            .map(|s| format!("{}×{}", s.image.nrows(), s.image.ncols()))
            .collect();
        d.dedup();
        d.join(", ")
    };
    let description = format!(
        "folder {}: {} training images ({} px, {} cells; {}) and {} validation images ({} px, {} cells; {}){}, each image's intensity percentiles {} and {} scaled to 0 and 1",
        dir.display(),
        train.len(),
        px(&train),
        cells(&train),
        shapes(&train),
        val.len(),
        px(&val),
        cells(&val),
        shapes(&val),
        if has_val { " from val/" } else { "" },
        percentiles.0,
        percentiles.1
    );
    Ok(Dataset {
        train,
        val,
        crop,
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
        v.invert_axis(Axis(0));
    }
    if t & 1 != 0 {
        v.invert_axis(Axis(1));
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

/// Draws training batches: each crop from the next image of a shuffled pass over the training
/// images (a new order every pass), at a random position, with (when augmenting) one of the 8
/// flips and quarter turns and an intensity `x·a + b`, a ∈ [0.9, 1.1], b ∈ [−0.05, 0.05]. All
/// of it comes from the seed, so every loss sees the same batches.
pub struct CropSampler {
    rng: Rng,
    order: Vec<usize>,
    next: usize,
    augment: bool,
}

impl CropSampler {
    /// A sampler for the seed.
    pub fn new(seed: u64, augment: bool) -> Self {
        CropSampler {
            rng: Rng::stream(seed, 1_000),
            order: Vec::new(),
            next: 0,
            augment,
        }
    }

    /// The next batch of `n` crops of side `crop` from `samples` (with their weight maps when
    /// given).
    pub fn batch(
        &mut self,
        samples: &[Sample],
        weights: Option<&[Array2<f32>]>,
        n: usize,
        crop: usize,
    ) -> Batch {
        let per = crop * crop;
        let mut images = Vec::with_capacity(n * per);
        let mut masks = Vec::with_capacity(n * per);
        let mut wbuf = weights.map(|_| Vec::with_capacity(n * per));
        for _ in 0..n {
            if self.next >= self.order.len() {
                self.order = self.rng.permutation(samples.len());
                self.next = 0;
            }
            let i = self.order[self.next];
            self.next += 1;
            let s = &samples[i];
            let (h, w) = s.image.dim();
            let y0 = self.rng.below(h - crop + 1);
            let x0 = self.rng.below(w - crop + 1);
            let (t, a, b) = if self.augment {
                let t = self.rng.below(8) as u8;
                let a = self.rng.range(0.9, 1.1) as f32;
                let b = self.rng.range(-0.05, 0.05) as f32;
                (t, a, b)
            } else {
                (0, 1.0, 0.0)
            };
            let sl = s![y0..y0 + crop, x0..x0 + crop];
            images.extend(dihedral(s.image.slice(sl), t).iter().map(|&v| v * a + b));
            masks.extend(dihedral(s.mask.slice(sl), t).iter());
            if let (Some(wb), Some(wm)) = (wbuf.as_mut(), weights) {
                wb.extend(dihedral(wm[i].slice(sl), t).iter());
            }
        }
        Batch {
            n,
            images,
            masks,
            weights: wbuf,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_as_numpy() {
        // numpy.percentile(np.arange(1, 11), [1, 99.8, 50]) = [1.09, 9.982, 5.5]
        let mut v: Vec<f32> = (1..=10).rev().map(|x| x as f32).collect();
        assert!((percentile(&mut v, 1.0) - 1.09).abs() < 1e-5);
        assert!((percentile(&mut v, 99.8) - 9.982).abs() < 1e-5);
        assert!((percentile(&mut v, 50.0) - 5.5).abs() < 1e-5);
        assert_eq!(percentile(&mut v, 100.0), 10.0);
        assert_eq!(percentile(&mut v, 0.0), 1.0);
    }

    #[test]
    fn normalisation_maps_the_percentiles_to_0_and_1() {
        let img = Array2::from_shape_fn((20, 50), |(y, x)| (y * 50 + x) as f32 * 7.0 + 100.0);
        let n = normalize_percentiles(&img, 1.0, 99.8);
        let mut v: Vec<f32> = n.iter().copied().collect();
        assert!(percentile(&mut v, 1.0).abs() < 1e-4);
        assert!((percentile(&mut v, 99.8) - 1.0).abs() < 1e-4);
        // A constant image is all zeros, never NaN.
        let c = normalize_percentiles(&Array2::from_elem((4, 4), 5.0), 1.0, 99.8);
        assert!(c.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn crops_are_deterministic_and_inside_the_images() {
        let s = Sample {
            name: "a".into(),
            image: Array2::from_shape_fn((40, 70), |(y, x)| (y * 70 + x) as f32),
            instances: Array2::zeros((40, 70)),
            mask: Array2::from_shape_fn((40, 70), |(y, x)| ((y + x) % 2) as f32),
        };
        let samples = vec![s];
        let a = CropSampler::new(3, true).batch(&samples, None, 4, 16);
        let b = CropSampler::new(3, true).batch(&samples, None, 4, 16);
        assert_eq!(a.images, b.images);
        assert_eq!(a.images.len(), 4 * 256);
        let c = CropSampler::new(3, false).batch(&samples, None, 4, 16);
        // Without augmentation a crop is a window of the image: consecutive values along x.
        for k in 0..4 {
            let w = &c.images[k * 256..(k + 1) * 256];
            assert!(w.windows(2).take(15).all(|p| p[1] - p[0] == 1.0));
            assert!(w[0] >= 0.0 && w[255] < 2800.0);
        }
    }
}
