//! The training loop of one loss: Adam on the U-Net for a number of optimizer steps, with a
//! learning-rate warm-up, cosine decay and gradient-norm clipping; validation on whole images
//! every few steps; progress.
//!
//! # Stability
//! Losses whose per-pixel weights vary a lot from batch to batch (the U-Net weight map's class
//! term `N / (2·N_fg)` is large on a crop with a sliver of foreground, and its border term adds up
//! to `w0`) give occasional gradients many times larger than usual. With Adam such a step moves
//! the weights by several learning rates at once and inflates the second-moment estimate for
//! hundreds of steps after; a run can then fall from a good segmentation to a poor one. Two
//! guards apply to every loss alike:
//! - the global gradient norm is clipped at `--clip` ([`CLIP_FACTOR`] by default) times the
//!   running mean of the norms of the previous steps (after the first [`CLIP_START`] steps);
//! - the learning rate rises linearly over the first [`warmup_steps`] steps, then follows a
//!   cosine down to a tenth of it at the last step.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use burn_optim::{AdamConfig, GradientsParams};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;

use super::data::{CropSampler, Dataset};
use super::losses::LossChoice;
use super::metrics::{image_metrics, ImageMetrics, SetMetrics};
use super::synth::Sample;
use super::unet::UNet;
use crate::error::CliError;

/// Gradient norms above this multiple of the running mean are scaled down to it (the default of
/// `--clip`).
pub const CLIP_FACTOR: f64 = 2.0;
/// Steps before clipping starts (the running mean needs a few norms).
pub const CLIP_START: usize = 10;
/// Whole images up to this side are predicted in one piece; larger ones in overlapping tiles.
pub const WHOLE_MAX: usize = 1024;
/// Tile side of tiled prediction.
pub const TILE: usize = 512;
/// Overlap of neighbouring tiles.
pub const TILE_OVERLAP: usize = 64;

/// Warm-up steps for a run of `steps` steps: 5 % of them, at least 1 and at most 50.
pub fn warmup_steps(steps: usize) -> usize {
    (steps / 20).clamp(1, 50)
}

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Validate after every this many steps (and after the last).
    pub val_every: usize,
    /// Crops per step.
    pub batch: usize,
    /// Adam's peak learning rate.
    pub lr: f64,
    /// Seed of the crops, their order and the augmentation (the same for every loss).
    pub seed: u64,
    /// Random flips, quarter turns and intensity changes of the training crops.
    pub augment: bool,
    /// U-Net depth (whole images are padded to a multiple of 2^depth).
    pub depth: usize,
    /// Clip the global gradient norm at this multiple of the running mean of the previous
    /// norms; 0: no clipping.
    pub clip: f64,
}

impl TrainConfig {
    /// The learning rate of step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = warmup_steps(self.steps);
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let frac = (step - warm) as f64 / (self.steps - warm).max(1) as f64;
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()))
    }
}

/// The numbers of one validation.
#[derive(Debug, Clone)]
pub struct EvalRecord {
    /// Optimizer steps done.
    pub step: usize,
    /// Mean training loss over the steps since the previous validation.
    pub train_loss: f64,
    /// Validation metrics on the whole validation images.
    pub val: SetMetrics,
    /// Steps since the previous validation whose gradient was clipped.
    pub clipped: usize,
    /// Seconds spent training since the previous validation (steps only).
    pub train_seconds: f64,
    /// Seconds spent validating.
    pub val_seconds: f64,
}

/// What a finished run gives.
#[derive(Debug)]
pub struct RunOutcome {
    /// One record per validation.
    pub history: Vec<EvalRecord>,
    /// Final validation probabilities, one map per validation image.
    pub val_probs: Vec<Array2<f32>>,
    /// Final per-image validation metrics.
    pub val_images: Vec<ImageMetrics>,
    /// The trained model (the weights after the last step).
    pub model: UNet,
}

/// A progress bar that falls back to plain lines when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar of `total` steps named `prefix`.
    pub fn new(prefix: &str, total: u64) -> Self {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:28.cyan/blue}] {pos}/{len} steps {msg} ({elapsed}, ETA {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(prefix.to_string());
        Progress { bar }
    }

    /// Prints a line above the bar (or on stderr when there is no bar).
    pub fn line(&self, s: &str) {
        if self.bar.is_hidden() {
            eprintln!("{s}");
        } else {
            self.bar.println(s);
        }
    }

    fn step(&self, msg: String) {
        self.bar.set_message(msg);
        self.bar.inc(1);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn tensor4(data: Vec<f32>, n: usize, h: usize, w: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data, [n, 1, h, w]), device)
}

/// Index `i` of a mirrored extension of `0..n` (reflection without repeating the edge; `n` = 1
/// repeats the only element).
fn reflect(i: usize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let r = i % period;
    if r < n {
        r
    } else {
        period - r
    }
}

/// `image` extended by reflection to `h`×`w` (at least its own size).
fn pad_reflect(image: &Array2<f32>, h: usize, w: usize) -> Array2<f32> {
    let (ih, iw) = image.dim();
    Array2::from_shape_fn((h, w), |(y, x)| image[[reflect(y, ih), reflect(x, iw)]])
}

fn forward_probs(infer: &UNet, image: Array2<f32>, dev: &Device) -> Result<Array2<f32>, CliError> {
    let (h, w) = image.dim();
    let x = tensor4(image.into_raw_vec_and_offset().0, 1, h, w, dev);
    let v = sigmoid(infer.forward(x))
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| CliError::Internal(format!("reading predictions: {e:?}")))?;
    Ok(Array2::from_shape_vec((h, w), v).expect("one plane"))
}

/// Tile origins along an axis of length `n` (≥ `tile`): `tile` apart less `overlap`, the last
/// flush with the end.
fn origins(n: usize, tile: usize, overlap: usize) -> Vec<usize> {
    let stride = tile - overlap;
    let mut v = Vec::new();
    let mut o = 0;
    loop {
        if o + tile >= n {
            v.push(n - tile);
            break;
        }
        v.push(o);
        o += stride;
    }
    v.dedup();
    v
}

/// Foreground probabilities of a whole image: padded by reflection to a multiple of `unit`
/// (2^depth) and predicted in one piece when both sides are at most [`WHOLE_MAX`]; otherwise
/// predicted in [`TILE`]-sided tiles overlapping by [`TILE_OVERLAP`], blended with weights that
/// fall linearly to the tile edges.
pub fn predict_image(
    infer: &UNet,
    image: &Array2<f32>,
    unit: usize,
    dev: &Device,
) -> Result<Array2<f32>, CliError> {
    let (h, w) = image.dim();
    let up = |n: usize| n.div_ceil(unit) * unit;
    if h <= WHOLE_MAX && w <= WHOLE_MAX {
        let p = forward_probs(infer, pad_reflect(image, up(h), up(w)), dev)?;
        return Ok(p.slice(ndarray::s![..h, ..w]).to_owned());
    }
    let tile = up(TILE);
    let (ph, pw) = (up(h).max(tile), up(w).max(tile));
    let padded = pad_reflect(image, ph, pw);
    let ramp: Vec<f32> = (0..tile)
        .map(|i| {
            let d = i.min(tile - 1 - i) as f32 + 1.0;
            (d / TILE_OVERLAP as f32).min(1.0)
        })
        .collect();
    let mut acc = Array2::<f32>::zeros((ph, pw));
    let mut wsum = Array2::<f32>::zeros((ph, pw));
    for &y0 in &origins(ph, tile, TILE_OVERLAP) {
        for &x0 in &origins(pw, tile, TILE_OVERLAP) {
            let t = padded
                .slice(ndarray::s![y0..y0 + tile, x0..x0 + tile])
                .to_owned();
            let p = forward_probs(infer, t, dev)?;
            for y in 0..tile {
                for x in 0..tile {
                    let wgt = ramp[y] * ramp[x];
                    acc[[y0 + y, x0 + x]] += p[[y, x]] * wgt;
                    wsum[[y0 + y, x0 + x]] += wgt;
                }
            }
        }
    }
    Ok(Array2::from_shape_fn((h, w), |(y, x)| {
        acc[[y, x]] / wsum[[y, x]]
    }))
}

/// Foreground probabilities of `model` on every sample of `samples`, each predicted whole.
pub fn predict(
    model: &UNet,
    samples: &[Sample],
    depth: usize,
    device: &Device,
) -> Result<Vec<Array2<f32>>, CliError> {
    let infer = model.valid();
    let dev = device.clone().without_autodiff();
    samples
        .iter()
        .map(|s| predict_image(&infer, &s.image, 1 << depth, &dev))
        .collect()
}

/// Sums the squares of a module's gradients.
struct GradNorm<'a> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.parts.push(g.square().sum());
        }
    }
}

/// Multiplies a module's gradients by a factor.
struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads
                .register::<D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

fn grad_norm(model: &UNet, grads: &GradientsParams) -> f64 {
    let mut v = GradNorm {
        grads,
        parts: Vec::new(),
    };
    model.visit(&mut v);
    if v.parts.is_empty() {
        return 0.0;
    }
    let total = Tensor::cat(v.parts, 0).sum().into_scalar::<f32>() as f64;
    total.sqrt()
}

fn fmt_hd(h: Option<f64>) -> String {
    h.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into())
}

/// Probabilities, per-image metrics and set metrics of one validation.
type Validation = (Vec<Array2<f32>>, Vec<ImageMetrics>, SetMetrics);

/// Validation metrics of `model` on the whole validation images.
fn validate(
    model: &UNet,
    data: &Dataset,
    depth: usize,
    device: &Device,
) -> Result<Validation, CliError> {
    let probs = predict(model, &data.val, depth, device)?;
    let images: Vec<ImageMetrics> = probs
        .iter()
        .zip(&data.val)
        .map(|(p, s)| image_metrics(p, &s.mask, &s.instances))
        .collect();
    let val = SetMetrics::from_images(&images);
    Ok((probs, images, val))
}

/// Trains a copy of `init` with `choice` on `data`; `weights` are the training images' weight
/// maps when the loss takes them. `tag` names the run on the progress bar.
///
/// # Errors
/// A loss that becomes NaN or infinite (the run diverged), or an internal failure.
pub fn train_run(
    choice: &LossChoice,
    init: &UNet,
    data: &Dataset,
    weights: Option<&[Array2<f32>]>,
    cfg: &TrainConfig,
    device: &Device,
    tag: &str,
) -> Result<RunOutcome, CliError> {
    let crop = data.crop;
    let progress = Progress::new(tag, cfg.steps as u64);
    let mut model = init.clone();
    let mut optim = AdamConfig::new().init();
    let mut sampler = CropSampler::new(cfg.seed, cfg.augment);
    let every = cfg.val_every.max(1);
    let mut history = Vec::with_capacity(cfg.steps / every + 1);
    let mut last = None;
    let (mut loss_sum, mut n_since, mut clipped) = (0.0f64, 0usize, 0usize);
    let mut norm_mean = 0.0f64;
    let mut t0 = Instant::now();
    for step in 0..cfg.steps {
        let b = sampler.batch(&data.train, weights, cfg.batch.max(1), crop);
        let x = tensor4(b.images, b.n, crop, crop, device);
        let y = tensor4(b.masks, b.n, crop, crop, device);
        let w = b.weights.map(|w| tensor4(w, b.n, crop, crop, device));
        let logits = model.forward(x);
        let loss = choice
            .loss
            .try_forward(logits, y, w, segloss::LossReduction::Mean)
            .map_err(|e| CliError::Internal(format!("loss '{}': {e}", choice.label)))?
            .values;
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            progress.finish();
            return Err(CliError::Internal(format!(
                "loss '{}' became {value} at step {}: the run diverged",
                choice.label,
                step + 1
            )));
        }
        loss_sum += value;
        n_since += 1;
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = grad_norm(&model, &grads);
        let mut used = norm;
        if cfg.clip > 0.0 && step >= CLIP_START && norm > cfg.clip * norm_mean && norm.is_finite() {
            used = cfg.clip * norm_mean;
            model.visit(&mut GradScale {
                grads: &mut grads,
                factor: used / norm,
            });
            clipped += 1;
        }
        if used.is_finite() {
            // Running mean of the (clipped) norms: exact over the first 20 steps, then an
            // exponential average over about 20.
            let k = (step + 1).min(20) as f64;
            norm_mean += (used - norm_mean) / k;
        }
        model = optim.step(cfg.lr_at(step), model, grads);
        progress.step(format!("loss {value:.4}"));
        let done = step + 1;
        if done % every == 0 || done == cfg.steps {
            let train_seconds = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let (probs, images, val) = validate(&model, data, cfg.depth, device)?;
            let val_seconds = t1.elapsed().as_secs_f64();
            let rec = EvalRecord {
                step: done,
                train_loss: loss_sum / n_since.max(1) as f64,
                val,
                clipped,
                train_seconds,
                val_seconds,
            };
            progress.line(&format!(
                "{tag} step {done:>4}/{}  loss {:.4}  val Dice {:.3}  IoU {:.3}  HD95 {}  object F1 {:.3}  ({:.1} s + {:.1} s val{})",
                cfg.steps,
                rec.train_loss,
                val.dice,
                val.iou,
                fmt_hd(val.hd95),
                val.objects.f1(),
                train_seconds,
                val_seconds,
                if clipped > 0 { format!(", {clipped} clipped") } else { String::new() }
            ));
            history.push(rec);
            last = Some((probs, images));
            loss_sum = 0.0;
            n_since = 0;
            clipped = 0;
            t0 = Instant::now();
        }
    }
    progress.finish();
    let (val_probs, val_images) = last.unwrap_or_default();
    Ok(RunOutcome {
        history,
        val_probs,
        val_images,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_and_tiles() {
        let r: Vec<usize> = (0..9).map(|i| reflect(i, 4)).collect();
        assert_eq!(r, [0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(reflect(5, 1), 0);
        let a = Array2::from_shape_fn((3, 2), |(y, x)| (y * 2 + x) as f32);
        let p = pad_reflect(&a, 4, 4);
        assert_eq!(p.row(3).to_vec(), [2.0, 3.0, 2.0, 3.0]);
        assert_eq!(origins(1100, 512, 64), [0, 448, 588]);
        assert_eq!(origins(512, 512, 64), [0]);
    }

    #[test]
    fn learning_rate_warms_up_then_decays_to_a_tenth() {
        let cfg = TrainConfig {
            steps: 200,
            val_every: 10,
            batch: 1,
            lr: 1.0,
            seed: 0,
            augment: false,
            depth: 2,
            clip: 2.0,
        };
        assert_eq!(warmup_steps(200), 10);
        assert!((cfg.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(199) - 0.1).abs() < 0.01);
        assert!((1..200).all(|s| s < 10 || cfg.lr_at(s) <= cfg.lr_at(s - 1)));
    }
}
