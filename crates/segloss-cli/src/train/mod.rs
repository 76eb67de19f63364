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

use crate::error::CliError;
use data::{DataSource, Dataset};
use losses::{LossChoice, Resolved};
use report::{write_atomic, ReportContext, RunStatus, RunSummary};
use trainer::{train_run, RunOutcome, TrainConfig};
use unet::{UNet, UNetConfig};

/// Options shared by `segloss train` and `segloss compare`.
#[derive(Args, Debug, Clone)]
pub struct RunOptions {
    /// `synthetic` (built-in cells, deterministic by --seed) or a folder with `images/` and
    /// `masks/` (paired by name; PNG, TIFF, NPY or NIfTI; 2D; cut into --size tiles).
    #[arg(long, default_value = "synthetic")]
    pub data: DataSource,
    /// Passes over the training set [default: 14; 8 with --quick].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Side of the (square) images in pixels, a multiple of 2^depth [default: 64; 48 with --quick].
    #[arg(long)]
    pub size: Option<usize>,
    /// Seed of the data, the initial weights, the batch order and the augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The report folder [default: runs/train-<loss> or runs/compare].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the results of an earlier run in the report folder.
    #[arg(long)]
    pub force: bool,
    /// Synthetic training images [default: 160; 64 with --quick].
    #[arg(long)]
    pub train_images: Option<usize>,
    /// Synthetic validation images [default: 32; 12 with --quick].
    #[arg(long)]
    pub val_images: Option<usize>,
    /// Images per training step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Adam's learning rate (cosine decay to a tenth of it).
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
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
    /// No random flips and quarter turns of the training images.
    #[arg(long)]
    pub no_augment: bool,
    /// Backend: `flex` (pure-Rust CPU), `wgpu` or `cuda` (the last two need a build with the
    /// cargo feature of that name, e.g. `cargo run --release --features cuda -- compare`).
    #[arg(long, default_value = "flex")]
    pub device: String,
}

#[allow(dead_code)] // unused when both GPU features are on
fn missing_feature(name: &str) -> CliError {
    CliError::input(format!(
        "--device {name}: this segloss was built without the '{name}' cargo feature; rebuild with `--features {name}`"
    ))
}

/// The training device (with autodiff) for `--device`.
///
/// # Errors
/// An unknown name, or a backend this build was compiled without (exit code 2).
pub fn make_device(name: &str) -> Result<Device, CliError> {
    let base = match name {
        "flex" => Device::flex(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(burn::tensor::DeviceIndex::Default),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => return Err(missing_feature(name)),
        #[cfg(not(feature = "cuda"))]
        "cuda" => return Err(missing_feature(name)),
        other => {
            return Err(CliError::input(format!(
                "--device {other}: expected flex, wgpu or cuda"
            )))
        }
    };
    Ok(base.autodiff())
}

/// Sizes of a run after the defaults are applied.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Epochs.
    pub epochs: usize,
    /// Image side.
    pub size: usize,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
}

impl RunOptions {
    /// The sizes, with the normal or the `--quick` defaults for what was not given.
    pub fn sizes(&self, quick: bool) -> Sizes {
        let (e, s, t, v) = if quick {
            (8, 48, 64, 12)
        } else {
            (14, 64, 160, 32)
        };
        Sizes {
            epochs: self.epochs.unwrap_or(e),
            size: self.size.unwrap_or(s),
            train: self.train_images.unwrap_or(t),
            val: self.val_images.unwrap_or(v),
        }
    }

    fn check(&self, z: &Sizes) -> Result<(), CliError> {
        let unit = 1usize << self.depth.min(16);
        let bad = |what: &str, v: String, exp: &str| {
            Err(CliError::input(format!("--{what} {v}: expected {exp}")))
        };
        if z.epochs == 0 {
            return bad("epochs", z.epochs.to_string(), "at least 1");
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
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "a number > 0");
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

struct Finished {
    label: String,
    outcome: RunOutcome,
}

/// Runs every planned loss on the same data from the same initial weights and writes the report
/// folder after each one.
///
/// # Errors
/// Bad options or data (exit 2) before anything is trained; after training, an internal error
/// naming the losses that failed (the others' results are written).
pub fn run_experiment(exp: &Experiment<'_>, planned: Vec<Planned>) -> Result<(), CliError> {
    let start = Instant::now();
    let opts = exp.opts;
    let z = exp.sizes;
    opts.check(&z)?;
    let device = make_device(&opts.device)?;
    prepare_out(&exp.out, opts.force)?;

    let data = match &opts.data {
        DataSource::Synthetic => data::synthetic(z.train, z.val, z.size, opts.seed),
        DataSource::Folder(dir) => data::folder(dir, z.size)?,
    };
    eprintln!("data: {}", data.description);

    device.seed(opts.seed);
    let ucfg = UNetConfig {
        in_channels: 1,
        width: opts.width,
        depth: opts.depth,
    };
    let init = ucfg.init(&device);
    // Materialise the lazily initialised weights now, so every loss starts from these.
    let _ = init.clone().into_record();
    let n_params = init.num_params();

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
    let row_samples: Vec<_> = rows.iter().map(|&i| data.val[i].clone()).collect();
    let shown_maps = data::weight_maps(&row_samples, &shown_cfg)?;

    let cfg = TrainConfig {
        epochs: z.epochs,
        batch: opts.batch,
        lr: opts.lr,
        seed: opts.seed,
        augment: !opts.no_augment,
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let setup = vec![
        format!("Data: {}.", data.description),
        format!(
            "Model: U-Net, width {}, depth {} ({} parameters), no batch norm; burn 0.22.1 on the {} backend ({} CPU threads available).",
            opts.width, opts.depth, n_params, opts.device, threads
        ),
        format!(
            "Training: {} epochs of {} steps, batch {}, Adam (lr {} with cosine decay to a tenth){}; the same data, batch order, augmentation and initial weights (seed {}) for every loss.",
            z.epochs,
            data.train.len().div_ceil(opts.batch),
            opts.batch,
            opts.lr,
            if cfg.augment { ", random flips and quarter turns" } else { "" },
            opts.seed
        ),
        "Validation after every epoch, prediction = sigmoid > 0.5: Dice and IoU (mean over images), HD95 in pixels (mean over the images where it is defined), object F1 = 2TP / (2TP + FP + FN) with the 8-connected components of the prediction matched one to one to the true cells at IoU ≥ 0.5, counts summed over the validation set.".to_string(),
        "Training masks keep a background line between touching cells (as in the U-Net paper's data); a prediction that merges touching cells scores at most one match for the merged blob.".to_string(),
    ];
    let mut setup = setup;
    if exp.quick {
        setup.insert(
            0,
            "**`--quick`**: a smoke test of the pipeline, far too short for the losses to converge (some may still predict no foreground at all); run without `--quick` to compare losses.".to_string(),
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
        let tag = format!("[{k}/{n_ready}] {}", choice.label);
        let maps = choice
            .weight_map
            .and_then(|c| map_sets.iter().find(|(k, _)| *k == c))
            .map(|(_, m)| m.as_slice());
        let t = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train_run(&choice, &init, &data, maps, &cfg, &device, &tag)
        }))
        .unwrap_or_else(|_| {
            Err(CliError::Internal(
                "the run panicked (message above)".into(),
            ))
        });
        let wall = t.elapsed().as_secs_f64();
        let status = match result {
            Ok(outcome) => {
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
                let st = RunStatus::Done {
                    history: outcome.history.clone(),
                    wall_seconds: wall,
                };
                finished.push(Finished {
                    label: choice.label.clone(),
                    outcome,
                });
                st
            }
            Err(e) => {
                eprintln!("'{}' failed: {e}", choice.label);
                RunStatus::Failed(e.to_string())
            }
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
            &data,
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
            &data,
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
    data: &Dataset,
    shown_maps: &[Array2<f32>],
    shown_cfg: &WeightMapConfig,
    start: Instant,
) -> Result<(), CliError> {
    let out = &exp.out;
    write_atomic(
        &out.join("metrics.csv"),
        report::metrics_csv(summaries).as_bytes(),
    )?;
    let curves: Vec<(String, Vec<trainer::EpochRecord>)> = finished
        .iter()
        .map(|f| (f.label.clone(), f.outcome.history.clone()))
        .collect();
    if !curves.is_empty() {
        plot::curves_png(&curves, &out.join("curves.png"))?;
        let row_refs: Vec<_> = rows.iter().map(|&i| &data.val[i]).collect();
        let map_refs: Vec<_> = shown_maps.iter().collect();
        let columns: Vec<plot::PredColumn<'_>> = finished
            .iter()
            .map(|f| plot::PredColumn {
                title: &f.label,
                probs: rows.iter().map(|&i| &f.outcome.val_probs[i]).collect(),
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
            "one row per loss and epoch: training loss, validation metrics, seconds".to_string(),
        ),
        (
            "curves.png".to_string(),
            "validation Dice and object F1 per epoch, one line per loss".to_string(),
        ),
        (
            "samples.png".to_string(),
            "validation images, truth, U-Net weight map and each loss's prediction".to_string(),
        ),
    ];
    match exp.layout {
        Layout::Single => files.push((
            "model.bpk".into(),
            "the trained U-Net (burnpack; `Module::load_file`)".into(),
        )),
        Layout::Compare => files.push((
            "checkpoints/<loss>.bpk".into(),
            "each loss's trained U-Net (burnpack; `Module::load_file`)".into(),
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
        "{:<w$} {:>6} {:>6} {:>7} {:>9} {:>8}",
        "loss", "Dice", "IoU", "HD95", "object F1", "s/epoch"
    );
    for s in summaries {
        match &s.status {
            RunStatus::Done { history, .. } => {
                let e = history.last().expect("at least one epoch");
                let spe =
                    history.iter().map(|e| e.train_seconds).sum::<f64>() / history.len() as f64;
                println!(
                    "{:<w$} {:>6.3} {:>6.3} {:>7} {:>9.3} {:>8.1}",
                    s.label,
                    e.val.dice,
                    e.val.iou,
                    e.val
                        .hd95
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or_else(|| "n/a".into()),
                    e.val.objects.f1(),
                    spe
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
