//! Training runs: what the choice of loss does to a real U-Net (`segloss train`, `segloss compare`).
//!
//! - [`synth`]: the deterministic synthetic cells; [`data`]: datasets, weight maps and batches;
//! - [`unet`]: the model; [`trainer`]: the training loop of one loss;
//! - [`metrics`]: Dice, IoU, HD95 and object-level F1;
//! - [`losses`]: loss specs → losses (with the shape-aware stand-in);
//! - [`report`], [`plot`]: `report.md`, `metrics.csv`, `curves.png`, `samples.png`.
//!
//! [`run_experiment`] ties them together: the same data, batch order, augmentation and initial
//! weights for every loss, and the report folder rewritten (atomically) after every loss, so
//! the results of finished losses survive a later loss failing.

pub mod data;
pub mod losses;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod synth;
pub mod trainer;
pub mod unet;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use clap::Args;
use ndarray::Array2;
use segloss_core::{ClassWeight, Connectivity, WeightMapConfig};

use crate::device::DeviceArg;
use crate::error::CliError;
use data::{DataSource, Dataset};
use losses::{LossChoice, Resolved};
use report::{write_atomic, ReportContext, RunStatus, RunSummary, SeedRun};
use synth::Sample;
use trainer::{train_run, RunOutcome, TrainConfig};
use unet::{UNet, UNetConfig};

/// `--percentiles LO,HI`: the intensity percentiles that map to 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles(pub f64, pub f64);

impl std::str::FromStr for Percentiles {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?}: expected two percentiles LO,HI with 0 <= LO < HI <= 100, e.g. 1,99.8")
        };
        let (a, b) = s.split_once(',').ok_or_else(bad)?;
        let a: f64 = a.trim().parse().map_err(|_| bad())?;
        let b: f64 = b.trim().parse().map_err(|_| bad())?;
        if (0.0..100.0).contains(&a) && a < b && b <= 100.0 {
            Ok(Percentiles(a, b))
        } else {
            Err(bad())
        }
    }
}

/// Options shared by `segloss train` and `segloss compare`.
#[derive(Args, Debug, Clone)]
pub struct RunOptions {
    /// `synthetic` (built-in cells, deterministic by --seed) or a folder: `images/` and `masks/`
    /// paired by file name (PNG, TIFF, NPY or NIfTI; 2D grey images of any size; 0/1 masks or
    /// instance labels), validated on `val/images/` + `val/masks/` when present, else on the last
    /// --val-fraction of the pairs by name.
    #[arg(long, default_value = "synthetic")]
    pub data: DataSource,
    /// Optimizer steps per loss (and seed) [default: 280; 64 with --quick].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Validate on the whole validation images every this many steps (and after the last)
    /// [default: a fourteenth of --steps; an eighth with --quick].
    #[arg(long)]
    pub val_every: Option<usize>,
    /// Train every loss with this many seeds (seed, seed + 1, …: initial weights, crops, their
    /// order and augmentation) and report mean ± standard deviation.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Side of the (square) training crops in pixels, a multiple of 2^depth [default: 64; 48
    /// with --quick]; synthetic images are generated at this size.
    #[arg(long)]
    pub size: Option<usize>,
    /// Seed of the data, the initial weights, the crops and the augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The report folder [default: runs/train-<loss> or runs/compare].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the results of an earlier run in the report folder.
    #[arg(long)]
    pub force: bool,
    /// Share of a folder's pairs (the last ones by name, at least one) that validate when it has
    /// no val/ folder.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Each folder image is scaled so that these intensity percentiles become 0 and 1.
    #[arg(long, default_value = "1,99.8")]
    pub percentiles: Percentiles,
    /// Synthetic training images [default: 160; 64 with --quick].
    #[arg(long)]
    pub train_images: Option<usize>,
    /// Synthetic validation images [default: 32; 12 with --quick].
    #[arg(long)]
    pub val_images: Option<usize>,
    /// Crops per training step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Adam's peak learning rate (linear warm-up over the first 5 % of the steps, then a cosine
    /// decay to a tenth of it) [default: 0.003; 0.01 with --quick].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Channels of the U-Net's first level (doubled at every level).
    #[arg(long, default_value_t = 8)]
    pub width: usize,
    /// Pooling levels of the U-Net.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// w0 of the U-Net weight maps fed to `weighted_ce` (and shown in samples.png).
    #[arg(long, default_value_t = 10.0)]
    pub w0: f64,
    /// σ of those weight maps, in pixels.
    #[arg(long, default_value_t = 5.0)]
    pub sigma: f64,
    /// Clip the global gradient norm at this multiple of the running mean of the previous
    /// steps' norms (guards against the rare huge gradients of strongly weighted losses); 0 turns
    /// clipping off.
    #[arg(long, default_value_t = trainer::CLIP_FACTOR)]
    pub clip: f64,
    /// No random flips, quarter turns and intensity changes of the training crops.
    #[arg(long)]
    pub no_augment: bool,
    /// Exit with an error (code 1) when a loss's final validation Dice (mean over the seeds)
    /// is below this value; a check for scripts and CI.
    #[arg(long)]
    pub min_dice: Option<f64>,
    /// Backend: `flex` (pure-Rust CPU), `wgpu` or `cuda` (the last two need a build with the
    /// cargo feature of that name, e.g. `cargo run --release --features cuda -- compare`).
    #[arg(long, value_enum, default_value_t = DeviceArg::Flex)]
    pub device: DeviceArg,
}

/// The training device (with autodiff) for `--device`.
///
/// # Errors
/// A backend this build was compiled without (exit code 2).
pub fn make_device(device: DeviceArg) -> Result<Device, CliError> {
    Ok(device.device()?.autodiff())
}

/// Sizes of a run after the defaults are applied.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Optimizer steps.
    pub steps: usize,
    /// Steps between validations.
    pub val_every: usize,
    /// Crop side.
    pub size: usize,
    /// Synthetic training images.
    pub train: usize,
    /// Synthetic validation images.
    pub val: usize,
    /// Peak learning rate.
    pub lr: f64,
}

impl RunOptions {
    /// The sizes, with the normal or the `--quick` defaults for what was not given.
    pub fn sizes(&self, quick: bool) -> Sizes {
        let (st, s, t, v, evals, lr) = if quick {
            (64, 48, 64, 12, 8, 1e-2)
        } else {
            (280, 64, 160, 32, 14, 3e-3)
        };
        let steps = self.steps.unwrap_or(st);
        Sizes {
            steps,
            val_every: self.val_every.unwrap_or(steps.div_ceil(evals).max(1)),
            size: self.size.unwrap_or(s),
            train: self.train_images.unwrap_or(t),
            val: self.val_images.unwrap_or(v),
            lr: self.lr.unwrap_or(lr),
        }
    }

    fn check(&self, z: &Sizes) -> Result<(), CliError> {
        let unit = 1usize << self.depth.min(16);
        let bad = |what: &str, v: String, exp: &str| {
            Err(CliError::input(format!("--{what} {v}: expected {exp}")))
        };
        if z.steps == 0 || z.steps > 10_000_000 {
            return bad("steps", z.steps.to_string(), "1 to 10000000");
        }
        if z.val_every == 0 {
            return bad("val-every", z.val_every.to_string(), "at least 1");
        }
        if self.repeats == 0 || self.repeats > 100 {
            return bad("repeats", self.repeats.to_string(), "1 to 100");
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad(
                "val-fraction",
                self.val_fraction.to_string(),
                "a number between 0 and 1",
            );
        }
        if !(self.clip.is_finite() && (self.clip == 0.0 || self.clip >= 1.0)) {
            return bad("clip", self.clip.to_string(), "0 (off) or a number >= 1");
        }
        if let Some(m) = self.min_dice {
            if !(0.0..=1.0).contains(&m) {
                return bad("min-dice", m.to_string(), "a number in [0, 1]");
            }
        }
        if self.depth == 0 || self.depth > 6 {
            return bad("depth", self.depth.to_string(), "1 to 6");
        }
        if z.size < unit || !z.size.is_multiple_of(unit) || z.size > 4096 {
            return bad(
                "size",
                z.size.to_string(),
                &format!("a multiple of 2^depth = {unit}, at most 4096"),
            );
        }
        if z.train == 0 || z.val == 0 {
            return bad(
                "train-images / --val-images",
                format!("{} / {}", z.train, z.val),
                "at least 1 each",
            );
        }
        if self.batch == 0 {
            return bad("batch", "0".into(), "at least 1");
        }
        if !(z.lr.is_finite() && z.lr > 0.0) {
            return bad("lr", z.lr.to_string(), "a number > 0");
        }
        if self.width == 0 || self.width > 256 {
            return bad("width", self.width.to_string(), "1 to 256");
        }
        self.weight_map()
            .validate()
            .map_err(|e| CliError::input(format!("--w0 / --sigma: {e}")))
    }

    /// The weight-map parameters of `--w0` / `--sigma` (balanced class weights, 8-connectivity).
    pub fn weight_map(&self) -> WeightMapConfig {
        WeightMapConfig {
            w0: self.w0,
            sigma: self.sigma,
            class_weight: ClassWeight::Balanced,
            connectivity: Connectivity::Full,
            ..WeightMapConfig::default()
        }
    }
}

/// How the report folder is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One loss: `model.bpk` in the folder.
    Single,
    /// Several: `checkpoints/<loss>.bpk`.
    Compare,
}

/// The files an earlier run leaves; their presence means the folder holds results.
const OUR_FILES: &[&str] = &[
    "report.md",
    "metrics.csv",
    "curves.png",
    "samples.png",
    "model.bpk",
];

fn prepare_out(out: &Path, force: bool) -> Result<(), CliError> {
    if out.exists() && !out.is_dir() {
        return Err(CliError::input(format!(
            "{}: exists and is not a folder; expected a report folder (--out)",
            out.display()
        )));
    }
    if !force {
        if let Some(f) = OUR_FILES.iter().find(|f| out.join(f).exists()) {
            return Err(CliError::input(format!(
                "{}: holds the results of an earlier run ({f}); pass --force to replace them or choose another --out",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::input(format!("{}: cannot create the folder: {e}", out.display())))
}

fn save_checkpoint(model: &UNet, path: &Path) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    model.clone().save_file(&tmp).map_err(|e| {
        CliError::Internal(format!(
            "{}: cannot save the checkpoint: {e:?}",
            path.display()
        ))
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CliError::Internal(format!(
            "{}: cannot save the checkpoint: {e}",
            path.display()
        ))
    })
}

/// One loss of an experiment: resolved, or skipped because this build lacks it.
pub type Planned = Resolved;

/// Everything an experiment needs besides the losses.
pub struct Experiment<'a> {
    /// Title of the report.
    pub title: &'a str,
    /// The command line, for the report.
    pub command: String,
    /// Options.
    pub opts: &'a RunOptions,
    /// Sizes after defaults.
    pub sizes: Sizes,
    /// The report folder.
    pub out: PathBuf,
    /// Folder layout.
    pub layout: Layout,
    /// A `--quick` smoke run (said in the report).
    pub quick: bool,
}

fn weight_title(c: &WeightMapConfig) -> String {
    format!("w0 = {}, σ = {}", c.w0, c.sigma)
}

fn choose_rows(data: &Dataset, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..data.val.len()).collect();
    // The most crowded validation images show merges best.
    idx.sort_by_key(|&i| (std::cmp::Reverse(data.val[i].num_instances()), i));
    idx.truncate(n);
    idx.sort();
    idx
}

/// The side of the square `samples.png` shows of each row: the whole image when the shown images
/// are square and equally sized, else the same centred crop of each (at most 256 pixels).
fn shown_side(data: &Dataset, rows: &[usize]) -> usize {
    rows.iter()
        .map(|&i| {
            let (h, w) = data.val[i].image.dim();
            h.min(w)
        })
        .min()
        .unwrap_or(1)
        .clamp(1, 256)
}

fn center_crop<T: Clone>(a: &Array2<T>, side: usize) -> Array2<T> {
    let (h, w) = a.dim();
    let (y0, x0) = ((h - side) / 2, (w - side) / 2);
    a.slice(ndarray::s![y0..y0 + side, x0..x0 + side])
        .to_owned()
}

fn crop_sample(s: &Sample, side: usize) -> Sample {
    Sample {
        name: s.name.clone(),
        image: center_crop(&s.image, side),
        instances: center_crop(&s.instances, side),
        mask: center_crop(&s.mask, side),
    }
}

struct Finished {
    label: String,
    /// The first seed's outcome (samples.png, the checkpoint).
    outcome: RunOutcome,
    /// Mean validation curve over the seeds.
    curve: Vec<plot::CurvePoint>,
}

fn mean_curve(runs: &[report::SeedRun]) -> Vec<plot::CurvePoint> {
    let n = runs.iter().map(|r| r.history.len()).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let k = runs.len() as f64;
            plot::CurvePoint {
                step: runs[0].history[i].step,
                dice: runs.iter().map(|r| r.history[i].val.dice).sum::<f64>() / k,
                f1: runs
                    .iter()
                    .map(|r| r.history[i].val.objects.f1())
                    .sum::<f64>()
                    / k,
            }
        })
        .collect()
}

/// Runs every planned loss on the same data from the same initial weights (one set per seed)
/// and writes the report folder after each one.
///
/// # Errors
/// Bad options or data (exit 2) before anything is trained; after training, an internal error
/// naming the losses that failed (the others' results are written), or the losses below
/// `--min-dice`.
pub fn run_experiment(exp: &Experiment<'_>, planned: Vec<Planned>) -> Result<(), CliError> {
    let start = Instant::now();
    let opts = exp.opts;
    let z = exp.sizes;
    opts.check(&z)?;
    let device = make_device(opts.device)?;
    let data = match &opts.data {
        DataSource::Synthetic => data::synthetic(z.train, z.val, z.size, opts.seed),
        DataSource::Folder(dir) => data::folder(
            dir,
            z.size,
            opts.val_fraction,
            (opts.percentiles.0, opts.percentiles.1),
        )?,
    };
    prepare_out(&exp.out, opts.force)?;
    eprintln!("data: {}", data.description);

    let ucfg = UNetConfig {
        in_channels: 1,
        width: opts.width,
        depth: opts.depth,
    };
    let seeds: Vec<u64> = (0..opts.repeats as u64)
        .map(|r| opts.seed.wrapping_add(r))
        .collect();
    let inits: Vec<UNet> = seeds
        .iter()
        .map(|&s| {
            device.seed(s);
            let init = ucfg.init(&device);
            // Materialise the lazily initialised weights now, so every loss starts from these.
            let _ = init.clone().into_record();
            init
        })
        .collect();
    let n_params = inits[0].num_params();

    // Weight maps: those the losses take (one set per parameter choice) and the shown ones.
    let mut map_sets: Vec<(WeightMapConfig, Vec<Array2<f32>>)> = Vec::new();
    for p in &planned {
        if let Resolved::Ready(LossChoice {
            weight_map: Some(c),
            ..
        }) = p
        {
            if !map_sets.iter().any(|(k, _)| k == c) {
                let t = Instant::now();
                let maps = data::weight_maps(&data.train, c)?;
                eprintln!(
                    "weight maps ({}) of {} training masks: {:.1} s",
                    weight_title(c),
                    maps.len(),
                    t.elapsed().as_secs_f64()
                );
                map_sets.push((*c, maps));
            }
        }
    }
    // The map samples.png shows: the shape-aware loss's, else the one fed to a loss, else
    // --w0 / --sigma.
    let ready = || {
        planned.iter().filter_map(|p| match p {
            Resolved::Ready(c) => Some(c),
            _ => None,
        })
    };
    let shown_cfg = ready()
        .find_map(|c| c.shape_map)
        .or_else(|| ready().find_map(|c| c.weight_map))
        .unwrap_or_else(|| opts.weight_map());
    let rows = choose_rows(&data, 3);
    let side = shown_side(&data, &rows);
    let row_samples: Vec<Sample> = rows
        .iter()
        .map(|&i| crop_sample(&data.val[i], side))
        .collect();
    let shown_maps = data::weight_maps(&row_samples, &shown_cfg)?;

    let cfg = TrainConfig {
        steps: z.steps,
        val_every: z.val_every,
        batch: opts.batch,
        lr: z.lr,
        seed: opts.seed,
        augment: !opts.no_augment,
        depth: opts.depth,
        clip: opts.clip,
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut setup = vec![
        format!("Data: {}.", data.description),
        format!(
            "Model: U-Net, width {}, depth {} ({} parameters), no batch norm; burn 0.22.1 on the {} backend ({} CPU threads available).",
            opts.width, opts.depth, n_params, opts.device, threads
        ),
        format!(
            "Training: {} optimizer steps of {} random {}×{} crops{}, Adam (peak lr {}, linear warm-up over {} steps, cosine decay to a tenth), {}; {}; the same initial weights, crops and augmentation for every loss.",
            z.steps,
            opts.batch,
            z.size,
            z.size,
            if cfg.augment { " with random flips, quarter turns and intensity scale ×[0.9, 1.1] and offset ±0.05" } else { "" },
            z.lr,
            trainer::warmup_steps(z.steps),
            if opts.clip > 0.0 {
                format!("global gradient norm clipped at {} × the running mean of the previous steps' norms", opts.clip)
            } else {
                "no gradient clipping".to_string()
            },
            if seeds.len() > 1 {
                format!("{} seeds ({}–{}) per loss, each with its own initial weights and crops", seeds.len(), seeds[0], seeds[seeds.len() - 1])
            } else {
                format!("seed {}", opts.seed)
            }
        ),
        format!(
            "Validation every {} steps and after the last, on the whole validation images (padded by reflection to a multiple of 2^depth = {}; images over {} pixels a side in {}-pixel tiles overlapping by {}, blended), prediction = sigmoid > 0.5: Dice and IoU (mean over images), HD95 in pixels (mean over the images where it is defined), object F1 = 2TP / (2TP + FP + FN) with the 8-connected components of the prediction matched one to one to the true cells at IoU ≥ 0.5, counts summed over the validation set.",
            z.val_every,
            1usize << opts.depth,
            trainer::WHOLE_MAX,
            trainer::TILE,
            trainer::TILE_OVERLAP
        ),
        "Training masks keep a background line between touching cells (as in the U-Net paper's data); a prediction that merges touching cells scores at most one match for the merged blob.".to_string(),
    ];
    if exp.quick {
        setup.insert(
            0,
            "**`--quick`**: a smoke test of the pipeline, much shorter than a comparison; run without `--quick` (and with `--repeats 3`) to compare losses.".to_string(),
        );
    }

    let labels: Vec<String> = planned
        .iter()
        .map(|p| match p {
            Resolved::Ready(c) => c.label.clone(),
            Resolved::Unavailable { label, .. } => label.clone(),
        })
        .collect();
    let mut summaries: Vec<RunSummary> = Vec::new();
    let mut finished: Vec<Finished> = Vec::new();
    let n_ready = planned
        .iter()
        .filter(|p| matches!(p, Resolved::Ready(_)))
        .count();
    let mut k = 0usize;
    for (i, p) in planned.into_iter().enumerate() {
        let choice = match p {
            Resolved::Unavailable { label, missing } => {
                eprintln!(
                    "skipping '{label}': this build has no loss named {}",
                    missing.join(", ")
                );
                summaries.push(RunSummary {
                    label: label.clone(),
                    spec: label,
                    note: None,
                    status: RunStatus::Skipped(missing),
                });
                continue;
            }
            Resolved::Ready(c) => c,
        };
        k += 1;
        if let Some(n) = &choice.note {
            eprintln!("note: {n}");
        }
        let maps = choice
            .weight_map
            .and_then(|c| map_sets.iter().find(|(k, _)| *k == c))
            .map(|(_, m)| m.as_slice());
        let mut seed_runs = Vec::new();
        let mut first: Option<RunOutcome> = None;
        let mut failure = None;
        for (r, (&seed, init)) in seeds.iter().zip(&inits).enumerate() {
            let tag = if seeds.len() > 1 {
                format!(
                    "[{k}/{n_ready}] {} seed {seed} ({}/{})",
                    choice.label,
                    r + 1,
                    seeds.len()
                )
            } else {
                format!("[{k}/{n_ready}] {}", choice.label)
            };
            let rcfg = TrainConfig {
                seed,
                ..cfg.clone()
            };
            let t = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                train_run(&choice, init, &data, maps, &rcfg, &device, &tag)
            }))
            .unwrap_or_else(|_| {
                Err(CliError::Internal(
                    "the run panicked (message above)".into(),
                ))
            });
            match result {
                Ok(outcome) => {
                    seed_runs.push(SeedRun {
                        seed,
                        history: outcome.history.clone(),
                        wall_seconds: t.elapsed().as_secs_f64(),
                    });
                    if first.is_none() {
                        first = Some(outcome);
                    }
                }
                Err(e) => {
                    eprintln!("'{}' (seed {seed}) failed: {e}", choice.label);
                    failure = Some(format!("seed {seed}: {e}"));
                    break;
                }
            }
        }
        let status = match (failure, first) {
            (None, Some(outcome)) => {
                let ck = match exp.layout {
                    Layout::Single => exp.out.join("model.bpk"),
                    Layout::Compare => {
                        let d = exp.out.join("checkpoints");
                        std::fs::create_dir_all(&d).map_err(|e| {
                            CliError::Internal(format!("{}: cannot create: {e}", d.display()))
                        })?;
                        d.join(format!("{}.bpk", report::slug(&choice.label)))
                    }
                };
                save_checkpoint(&outcome.model, &ck)?;
                finished.push(Finished {
                    label: choice.label.clone(),
                    outcome,
                    curve: mean_curve(&seed_runs),
                });
                RunStatus::Done(seed_runs)
            }
            (Some(e), _) => RunStatus::Failed(e),
            (None, None) => RunStatus::Failed("no run finished".into()),
        };
        summaries.push(RunSummary {
            label: choice.label.clone(),
            spec: choice.spec.clone(),
            note: choice.note.clone(),
            status,
        });
        let pending: Vec<String> = labels[i + 1..].to_vec();
        write_outputs(
            exp,
            &setup,
            &summaries,
            &finished,
            &pending,
            &rows,
            side,
            &row_samples,
            &shown_maps,
            &shown_cfg,
            start,
        )?;
    }
    if finished.is_empty()
        && summaries
            .iter()
            .all(|s| !matches!(s.status, RunStatus::Failed(_)))
    {
        // Nothing ran (all skipped): still leave a report saying so.
        write_outputs(
            exp,
            &setup,
            &summaries,
            &finished,
            &[],
            &rows,
            side,
            &row_samples,
            &shown_maps,
            &shown_cfg,
            start,
        )?;
    }
    print_summary(&summaries, &exp.out, start.elapsed().as_secs_f64());
    let failed: Vec<&str> = summaries
        .iter()
        .filter(|s| matches!(s.status, RunStatus::Failed(_)))
        .map(|s| s.label.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(CliError::Internal(format!(
            "{} of {} losses failed ({}); the others' results are in {}",
            failed.len(),
            summaries.len(),
            failed.join("; "),
            exp.out.display()
        )));
    }
    if finished.is_empty() {
        return Err(CliError::input(format!(
            "none of the losses is in this build's catalogue ({}); known losses: {}",
            labels.join("; "),
            segloss::loss_names().join(", ")
        )));
    }
    if let Some(min) = opts.min_dice {
        let low: Vec<String> = summaries
            .iter()
            .filter_map(|s| {
                let d = s.stat(|e| e.val.dice)?;
                (d.mean < min).then(|| format!("{} {:.3}", s.label, d.mean))
            })
            .collect();
        if !low.is_empty() {
            return Err(CliError::Internal(format!(
                "--min-dice {min}: final validation Dice below it: {}; the report is in {}",
                low.join(", "),
                exp.out.display()
            )));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    exp: &Experiment<'_>,
    setup: &[String],
    summaries: &[RunSummary],
    finished: &[Finished],
    pending: &[String],
    rows: &[usize],
    side: usize,
    row_samples: &[Sample],
    shown_maps: &[Array2<f32>],
    shown_cfg: &WeightMapConfig,
    start: Instant,
) -> Result<(), CliError> {
    let out = &exp.out;
    write_atomic(
        &out.join("metrics.csv"),
        report::metrics_csv(summaries).as_bytes(),
    )?;
    let curves: Vec<(String, Vec<plot::CurvePoint>)> = finished
        .iter()
        .map(|f| (f.label.clone(), f.curve.clone()))
        .collect();
    if !curves.is_empty() {
        plot::curves_png(&curves, &out.join("curves.png"))?;
        let row_refs: Vec<_> = row_samples.iter().collect();
        let map_refs: Vec<_> = shown_maps.iter().collect();
        let probs: Vec<Vec<Array2<f32>>> = finished
            .iter()
            .map(|f| {
                rows.iter()
                    .map(|&i| center_crop(&f.outcome.val_probs[i], side))
                    .collect()
            })
            .collect();
        let columns: Vec<plot::PredColumn<'_>> = finished
            .iter()
            .zip(&probs)
            .map(|(f, p)| plot::PredColumn {
                title: &f.label,
                probs: p.iter().collect(),
                metrics: rows.iter().map(|&i| &f.outcome.val_images[i]).collect(),
            })
            .collect();
        plot::samples_png(
            &row_refs,
            &map_refs,
            &weight_title(shown_cfg),
            &columns,
            &out.join("samples.png"),
        )?;
    }
    let mut files = vec![
        ("report.md".to_string(), "this report".to_string()),
        (
            "metrics.csv".to_string(),
            "one row per loss, seed and validation: training loss, validation metrics, clipped steps, seconds; `final` = 1 marks each run's last validation".to_string(),
        ),
        (
            "curves.png".to_string(),
            "validation Dice and object F1 against optimizer steps, one line per loss (mean over the seeds)".to_string(),
        ),
        (
            "samples.png".to_string(),
            "validation images (whole, or the same centred crop of each), truth, U-Net weight map and each loss's prediction (first seed); the F1 under each is the whole image's".to_string(),
        ),
    ];
    match exp.layout {
        Layout::Single => files.push((
            "model.bpk".into(),
            "the trained U-Net after the last step, first seed (burnpack; `Module::load_file`)"
                .into(),
        )),
        Layout::Compare => files.push((
            "checkpoints/<loss>.bpk".into(),
            "each loss's U-Net after the last step, first seed (burnpack; `Module::load_file`)"
                .into(),
        )),
    }
    let ctx = ReportContext {
        title: exp.title.to_string(),
        command: exp.command.clone(),
        setup: setup.to_vec(),
        pending: pending.to_vec(),
        wall_seconds: start.elapsed().as_secs_f64(),
        files,
    };
    write_atomic(
        &out.join("report.md"),
        report::report_md(&ctx, summaries).as_bytes(),
    )
}

fn print_summary(summaries: &[RunSummary], out: &Path, wall: f64) {
    let w = summaries
        .iter()
        .map(|s| s.label.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$} {:>6} {:>6} {:>7} {:>9} {:>9} {:>6}",
        "loss", "Dice", "IoU", "HD95", "object F1", "best F1", "seeds"
    );
    for s in summaries {
        match &s.status {
            RunStatus::Done(runs) => {
                let m = |f: &dyn Fn(&trainer::EvalRecord) -> f64| {
                    s.stat(f).map(|x| x.mean).unwrap_or(f64::NAN)
                };
                let hd: Vec<f64> = runs.iter().filter_map(|r| r.last().val.hd95).collect();
                let best =
                    runs.iter().map(|r| r.best_f1().0).sum::<f64>() / runs.len().max(1) as f64;
                println!(
                    "{:<w$} {:>6.3} {:>6.3} {:>7} {:>9.3} {:>9.3} {:>6}",
                    s.label,
                    m(&|e| e.val.dice),
                    m(&|e| e.val.iou),
                    if hd.is_empty() {
                        "n/a".to_string()
                    } else {
                        format!("{:.2}", hd.iter().sum::<f64>() / hd.len() as f64)
                    },
                    m(&|e| e.val.objects.f1()),
                    best,
                    runs.len()
                );
            }
            RunStatus::Failed(m) => println!("{:<w$} failed: {m}", s.label),
            RunStatus::Skipped(m) => {
                println!("{:<w$} skipped: no loss named {}", s.label, m.join(", "))
            }
        }
    }
    println!(
        "report: {} (total {:.0} s)",
        out.join("report.md").display(),
        wall
    );
}

/// The command line as typed (for the report).
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| {
            if a.contains([' ', ';', '*', '(', ')']) {
                format!("\"{a}\"")
            } else {
                a
            }
        })
        .collect();
    format!("segloss {}", args.join(" "))
}

/// Resolves the specs: an unknown name is an error when `strict`, else the spec is skipped.
///
/// # Errors
/// A malformed spec, a bad parameter, or (strict) a loss this build lacks: exit code 2.
pub fn plan(specs: &[String], opts: &RunOptions, strict: bool) -> Result<Vec<Planned>, CliError> {
    let names = segloss::loss_names();
    let mut out = Vec::new();
    for s in specs {
        let r = losses::resolve(s, &names, &opts.weight_map())?;
        if strict {
            if let Resolved::Unavailable { label, missing } = &r {
                return Err(CliError::input(format!(
                    "loss spec {label:?}: unknown loss {}; known losses: {}",
                    missing.join(", "),
                    names.join(", ")
                )));
            }
        }
        out.push(r);
    }
    Ok(out)
}
