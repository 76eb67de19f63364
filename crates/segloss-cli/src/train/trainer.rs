//! The training loop of one loss: Adam on the U-Net, validation after every epoch, progress.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use burn_optim::{AdamConfig, GradientsParams};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;

use super::data::{batch, Dataset};
use super::losses::LossChoice;
use super::metrics::{image_metrics, ImageMetrics, SetMetrics};
use super::synth::Rng;
use super::unet::UNet;
use crate::error::CliError;

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per step.
    pub batch: usize,
    /// Adam's learning rate at the start; it follows a cosine down to a tenth of it at the end.
    pub lr: f64,
    /// Seed of the batch order and the augmentation (the same for every loss).
    pub seed: u64,
    /// Random flips and quarter turns of the training samples.
    pub augment: bool,
}

/// One epoch's numbers.
#[derive(Debug, Clone)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Validation metrics after the epoch.
    pub val: SetMetrics,
    /// Seconds spent training (steps only).
    pub train_seconds: f64,
    /// Seconds spent validating.
    pub val_seconds: f64,
}

/// What a finished run gives.
#[derive(Debug)]
pub struct RunOutcome {
    /// Per-epoch history.
    pub history: Vec<EpochRecord>,
    /// Final validation probabilities, one map per validation sample.
    pub val_probs: Vec<Array2<f32>>,
    /// Final per-image validation metrics.
    pub val_images: Vec<ImageMetrics>,
    /// The trained model.
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

fn tensor4(data: Vec<f32>, n: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data, [n, 1, size, size]), device)
}

/// Foreground probabilities of `model` on every validation sample, in batches of `batch`.
pub fn predict(
    model: &UNet,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Array2<f32>>, CliError> {
    let infer = model.valid();
    let dev = device.clone().without_autodiff();
    let size = data.size;
    let mut out = Vec::with_capacity(data.val.len());
    let idx: Vec<usize> = (0..data.val.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let b = batch(&data.val, None, chunk, None);
        let x = tensor4(b.images, b.n, size, &dev);
        let p = sigmoid(infer.forward(x));
        let v = p
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| CliError::Internal(format!("reading predictions: {e:?}")))?;
        for (k, _) in chunk.iter().enumerate() {
            let plane = v[k * size * size..(k + 1) * size * size].to_vec();
            out.push(Array2::from_shape_vec((size, size), plane).expect("a square plane"));
        }
    }
    Ok(out)
}

fn fmt_hd(h: Option<f64>) -> String {
    h.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into())
}

/// Trains a copy of `init` with `choice` on `data`; `weights` are the training samples' weight
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
    let size = data.size;
    let n = data.train.len();
    let steps_per_epoch = n.div_ceil(cfg.batch.max(1));
    let total = (steps_per_epoch * cfg.epochs) as u64;
    let progress = Progress::new(tag, total);
    let mut model = init.clone();
    let mut optim = AdamConfig::new().init();
    let mut history = Vec::with_capacity(cfg.epochs);
    let mut step = 0usize;
    let total_steps = (steps_per_epoch * cfg.epochs).max(1);
    let mut last_probs = Vec::new();
    let mut last_images = Vec::new();
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        // The same order and augmentation for every loss: they depend on the seed and epoch only.
        let mut rng = Rng::stream(cfg.seed, 1_000 + epoch as u64);
        let order = rng.permutation(n);
        let mut loss_sum = 0.0f64;
        for chunk in order.chunks(cfg.batch.max(1)) {
            let b = batch(
                &data.train,
                weights,
                chunk,
                if cfg.augment { Some(&mut rng) } else { None },
            );
            let x = tensor4(b.images, b.n, size, device);
            let y = tensor4(b.masks, b.n, size, device);
            let w = b.weights.map(|w| tensor4(w, b.n, size, device));
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
                    "loss '{}' became {value} at epoch {epoch}: the run diverged",
                    choice.label
                )));
            }
            loss_sum += value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let frac = step as f64 / total_steps as f64;
            let lr = cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()));
            model = optim.step(lr, model, grads);
            step += 1;
            progress.step(format!("epoch {epoch}/{} loss {value:.4}", cfg.epochs));
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let probs = predict(&model, data, cfg.batch.max(8), device)?;
        let images: Vec<ImageMetrics> = probs
            .iter()
            .zip(&data.val)
            .map(|(p, s)| image_metrics(p, &s.mask, &s.instances))
            .collect();
        let val = SetMetrics::from_images(&images);
        let val_seconds = t1.elapsed().as_secs_f64();
        let rec = EpochRecord {
            epoch,
            train_loss: loss_sum / steps_per_epoch.max(1) as f64,
            val,
            train_seconds,
            val_seconds,
        };
        progress.line(&format!(
            "{tag} epoch {epoch:>2}/{}  loss {:.4}  val Dice {:.3}  IoU {:.3}  HD95 {}  object F1 {:.3}  ({:.1} s + {:.1} s val)",
            cfg.epochs,
            rec.train_loss,
            val.dice,
            val.iou,
            fmt_hd(val.hd95),
            val.objects.f1(),
            train_seconds,
            val_seconds
        ));
        history.push(rec);
        last_probs = probs;
        last_images = images;
    }
    progress.finish();
    Ok(RunOutcome {
        history,
        val_probs: last_probs,
        val_images: last_images,
        model,
    })
}
