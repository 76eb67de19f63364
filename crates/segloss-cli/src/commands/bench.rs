//! `segloss bench SPEC --shape N,C,H,W[,D] [--target mask|labels|cells] [--device flex|wgpu|cuda]
//! [--iters K] [--format json|text]`: times forward + backward in-process on random data.

use std::time::Instant;

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::{Args, ValueEnum};
use segloss::{Flat, LossReduction, LossSpec, SegLoss, Target};

use crate::alloc;
use crate::device::DeviceArg;
use crate::error::CliError;

/// Which target to generate.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TargetKind {
    /// A random binary mask of the prediction's shape (12 discs of radius 5–9 per image plus 2 % flipped pixels: ~5 % foreground on 256²; tools/bench/losses.py reproduces it exactly).
    Mask,
    /// A random label map [N, *spatial] of classes 0..C.
    Labels,
    /// ~50 disc-shaped cells per image, some touching (the shape-aware loss's setting).
    Cells,
}

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// `{"median_ms": …, "min_ms": …, "max_ms": …, "peak_bytes": …}`.
    Json,
    /// One line.
    Text,
}

/// Arguments of `segloss bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The loss spec.
    pub spec: String,
    /// Prediction shape N,C,H,W[,D].
    #[arg(long, default_value = "8,1,256,256")]
    pub shape: String,
    /// The target to generate.
    #[arg(long, value_enum, default_value_t = TargetKind::Mask)]
    pub target: TargetKind,
    /// The backend: flex (CPU), wgpu or cuda (the last two need the cargo feature of that name).
    #[arg(long, value_enum, default_value_t = DeviceArg::Flex)]
    pub device: DeviceArg,
    /// Timed iterations (after 3 warm-up iterations).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Random seed of the data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the value checks (NaN, label range) as a training loop with validated data may.
    #[arg(long)]
    pub no_checks: bool,
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Discs on each image: `count` cells of radius 5–9, placed at random (touching allowed).
fn cells(n: usize, spatial: &[usize], count: usize, rng: &mut Rng) -> Vec<f32> {
    let s: usize = spatial.iter().product();
    let mut out = vec![0f32; n * s];
    let (h, w) = (spatial[0], spatial[1]);
    let depth = spatial.get(2).copied().unwrap_or(1);
    for b in 0..n {
        for _ in 0..count {
            let r = 5.0 + 4.0 * rng.unit();
            let (cy, cx, cz) = (
                rng.unit() * h as f64,
                rng.unit() * w as f64,
                rng.unit() * depth as f64,
            );
            for y in 0..h {
                for x in 0..w {
                    for z in 0..depth {
                        let dz = if depth > 1 { z as f64 - cz } else { 0.0 };
                        let d2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) + dz * dz;
                        if d2 <= r * r {
                            out[b * s + (y * w + x) * depth + z] = 1.0;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Runs `segloss bench`.
pub fn run(a: BenchArgs) -> Result<(), CliError> {
    let shape: Vec<usize> = a
        .shape
        .split(',')
        .map(|t| t.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| CliError::input(format!("--shape {:?}: expected N,C,H,W[,D]", a.shape)))?;
    if !(4..=5).contains(&shape.len()) || shape.contains(&0) {
        return Err(CliError::input(format!(
            "--shape {:?}: expected N,C,H,W or N,C,H,W,D with sizes > 0",
            a.shape
        )));
    }
    if a.iters == 0 {
        return Err(CliError::input("--iters 0: expected at least 1"));
    }
    let loss = LossSpec::parse(&a.spec)
        .map_err(|e| CliError::input(e.to_string()))?
        .build()?;
    if loss.needs_weights() {
        return Err(CliError::input(format!(
            "'{}' needs a weight map; bench shape_aware instead (it computes the U-Net map itself)",
            a.spec
        )));
    }
    segloss::set_value_checks(!a.no_checks);
    let base = a.device.device()?;
    let ad = base.clone().autodiff();
    base.seed(a.seed);
    let (n, c) = (shape[0], shape[1]);
    let spatial = &shape[2..];
    let s: usize = spatial.iter().product();
    let numel = n * c * s;
    let mut rng = Rng(a.seed ^ 0x5EED);
    let x: Tensor<1> = Tensor::random([numel], Distribution::Normal(0.0, 1.0), &ad);
    let target = match a.target {
        TargetKind::Labels => {
            let v: Vec<i64> = (0..n * s).map(|_| (rng.next() % c as u64) as i64).collect();
            let t: Tensor<1, Int> = Tensor::from_data(TensorData::new(v, [n * s]), &ad);
            let mut tshape = vec![n];
            tshape.extend_from_slice(spatial);
            Target::labels_flat(t, tshape)
        }
        TargetKind::Mask | TargetKind::Cells => {
            let per_image = if a.target == TargetKind::Cells {
                cells(n * c, spatial, 50, &mut rng)
            } else {
                // 12 discs per image, then 2 % of the pixels flipped
                let mut m = cells(n * c, spatial, 12, &mut rng);
                for v in m.iter_mut() {
                    if rng.unit() < 0.02 {
                        *v = 1.0 - *v;
                    }
                }
                m
            };
            let t: Tensor<1> = Tensor::from_data(TensorData::new(per_image, [numel]), &ad);
            Target::mask_flat(t, shape.clone())
        }
    };
    let step = || -> Result<(), CliError> {
        let p = Flat {
            values: x.clone().require_grad(),
            shape: shape.clone(),
        };
        let v = loss.loss_value(p, target.clone(), None, LossReduction::Mean)?;
        let grads = v.values.backward();
        drop(grads);
        ad.sync()
            .map_err(|e| CliError::Internal(format!("device sync: {e:?}")))?;
        Ok(())
    };
    for _ in 0..3 {
        step()?;
    }
    let base_bytes = alloc::reset_peak();
    let mut times = Vec::with_capacity(a.iters);
    for _ in 0..a.iters {
        let t0 = Instant::now();
        step()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let peak = alloc::peak().saturating_sub(base_bytes);
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        0.5 * (times[times.len() / 2 - 1] + times[times.len() / 2])
    };
    let (min, max) = (times[0], times[times.len() - 1]);
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "spec": a.spec, "shape": shape, "device": a.device.to_string(),
                "iters": a.iters, "value_checks": !a.no_checks, "median_ms": median, "min_ms": min, "max_ms": max, "peak_bytes": peak
            })
        ),
        Format::Text => println!(
            "{}  {:?}  median {median:.3} ms  (min {min:.3}, max {max:.3})  peak +{:.1} MiB",
            a.spec,
            shape,
            peak as f64 / (1 << 20) as f64
        ),
    }
    Ok(())
}
