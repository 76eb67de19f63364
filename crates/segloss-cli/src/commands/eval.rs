//! `segloss eval --pred P --target T [--metrics dice,iou,…] [--classes 1,2] [--spacing a,b[,c]]
//! [--nsd-tolerance 1] [--format json|csv] [-o OUT] [--force] [--timing]`.
//!
//! Segmentation metrics (`docs/metrics.md`, MONAI's definitions, computed by
//! [`segloss_core::label_metrics`]) of a predicted label map against a target, on two files or on two
//! folders.
//!
//! - **Files.** JSON: `{"pred", "target", "spacing", "nsd_tolerance", "per_class": [{"class": 1,
//!   "dice": …, …, "pred_voxels", "target_voxels"}], "mean": {…}}`.
//! - **Folders.** Files are paired by name without the image extension (`.npy`, `.png`, `.tif`,
//!   `.tiff`, `.nii`, `.nii.gz`, case-insensitive), so `case1.nii.gz` pairs with `case1.png`; other
//!   files are ignored. JSON: `{"pred", "target", "nsd_tolerance", "cases": [{"name", "pred",
//!   "target", "spacing", "per_class": […]}], "mean": {…}, "per_class_mean": [{"class", "cases", …}],
//!   "errors": [{"name", "error"}], "unpaired": [{"name", "file", "missing_in"}]}`. Cases are
//!   evaluated in parallel (rayon) with a progress bar on stderr (drawn only when stderr is a
//!   terminal). A case that cannot be evaluated (unreadable file, shape or spacing mismatch,
//!   non-integer labels, a name present twice with different extensions) is listed under `errors`
//!   and on stderr, the others are still evaluated and reported, and the command then exits 2.
//!   Unpaired files are a warning (stderr and `unpaired`), not a failure.
//! - **CSV.** One row per (case, class): `case,class,<metrics…>,pred_voxels,target_voxels`; an
//!   undefined value is an empty field. The case of a single pair is the prediction's name without
//!   its extension.
//! - **Means.** `mean` averages every (case, class) row, per metric, leaving undefined values
//!   (`null`: a distance when exactly one mask is empty, a ratio with a zero denominator) out; a metric
//!   with no defined value has a `null` mean. `per_class_mean` does the same per class, over cases.
//! - **Spacing.** `--spacing` wins. Otherwise the NIfTI headers': when both files carry one they must
//!   agree (to 1e-6 relative), when only one does it is used, when neither does voxels are 1 apart.
//! - **Classes.** `--classes` (integers ≥ 0; a class absent from both maps follows the both-empty
//!   convention: dice 1, distances 0); default: every non-zero label present in either map.
//! - `-o OUT` writes the report through a temporary file in OUT's folder renamed into place; an
//!   existing OUT is refused (before any work) unless `--force`. `--timing` prints the time spent
//!   reading and computing metrics to stderr.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use rayon::prelude::*;
use segloss_core::{ClassMetrics, Voxel};
use segloss_io::{ArrayData, IoError};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::image::{check_output, parse_spacing, Image, Spacing};
use crate::batch::{progress_bar, stem_of};
use crate::error::CliError;

/// One metric of `docs/metrics.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// 2·|P∩G| / (|P| + |G|).
    Dice,
    /// |P∩G| / |P∪G|.
    Iou,
    /// TP / (TP + FP).
    Precision,
    /// TP / (TP + FN).
    Recall,
    /// TN / (TN + FP).
    Specificity,
    /// Hausdorff distance.
    Hd,
    /// 95th-percentile Hausdorff distance.
    Hd95,
    /// Average symmetric surface distance.
    Assd,
    /// Normalised surface Dice at `--nsd-tolerance`.
    Nsd,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 9] = [
        Metric::Dice,
        Metric::Iou,
        Metric::Precision,
        Metric::Recall,
        Metric::Specificity,
        Metric::Hd,
        Metric::Hd95,
        Metric::Assd,
        Metric::Nsd,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Dice => "dice",
            Metric::Iou => "iou",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::Specificity => "specificity",
            Metric::Hd => "hd",
            Metric::Hd95 => "hd95",
            Metric::Assd => "assd",
            Metric::Nsd => "nsd",
        }
    }

    /// The value of this metric (`None`: undefined).
    pub fn get(self, m: &ClassMetrics) -> Option<f64> {
        match self {
            Metric::Dice => Some(m.dice),
            Metric::Iou => Some(m.iou),
            Metric::Precision => m.precision,
            Metric::Recall => m.recall,
            Metric::Specificity => m.specificity,
            Metric::Hd => m.hd,
            Metric::Hd95 => m.hd95,
            Metric::Assd => m.assd,
            Metric::Nsd => Some(m.nsd),
        }
    }
}

/// A `--metrics` value: the metrics to report, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricList(pub Vec<Metric>);

fn allowed_metrics() -> String {
    Metric::ALL.map(Metric::name).join(", ")
}

/// Parses `--metrics dice,iou,…` (or `all`).
pub fn parse_metrics(s: &str) -> Result<MetricList, String> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim) {
        if t.eq_ignore_ascii_case("all") {
            for m in Metric::ALL {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            continue;
        }
        let Some(m) = Metric::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(t))
        else {
            return Err(format!(
                "unknown metric {t:?} in {s:?}: expected a comma-separated list of {} (or all)",
                allowed_metrics()
            ));
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(MetricList(out))
}

/// A `--classes` value: the labels to score, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassList(pub Vec<i64>);

/// Parses `--classes 1,2,…`: integers ≥ 0.
pub fn parse_classes(s: &str) -> Result<ClassList, String> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim) {
        match t.parse::<i64>() {
            Ok(c) if c >= 0 => {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            _ => {
                return Err(format!(
                    "invalid class {t:?} in {s:?}: expected comma-separated integer labels >= 0, e.g. 1,2"
                ))
            }
        }
    }
    Ok(ClassList(out))
}

/// Parses `--nsd-tolerance`: a finite number ≥ 0 (spacing units).
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "invalid NSD tolerance {s:?}: expected a finite number >= 0 (in spacing units), e.g. 1"
        )),
    }
}

/// Report format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// One JSON document.
    Json,
    /// One row per (case, class), with a header row.
    Csv,
}

/// Arguments of `segloss eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Predicted label map (.npy, .png, .tif/.tiff, .nii/.nii.gz), or a folder of them.
    #[arg(long)]
    pub pred: PathBuf,
    /// Ground-truth label map, or a folder of them (paired with --pred's files by name).
    #[arg(long)]
    pub target: PathBuf,
    /// Metrics to report: comma-separated from dice, iou, precision, recall, specificity, hd, hd95,
    /// assd, nsd (default: all).
    #[arg(long, value_parser = parse_metrics)]
    pub metrics: Option<MetricList>,
    /// Labels to score, e.g. 1,2 (default: every non-zero label present in either map).
    #[arg(long, value_parser = parse_classes, allow_hyphen_values = true)]
    pub classes: Option<ClassList>,
    /// Voxel spacing per axis, e.g. 1,1,2.5 (default: the NIfTI headers', else 1).
    #[arg(long, value_parser = parse_spacing, allow_hyphen_values = true)]
    pub spacing: Option<Spacing>,
    /// NSD tolerance, in spacing units.
    #[arg(long, value_parser = parse_tolerance, default_value = "1", allow_hyphen_values = true)]
    pub nsd_tolerance: f64,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
    /// Print the time spent reading files and computing metrics to stderr.
    #[arg(long)]
    pub timing: bool,
}

/// What every case is evaluated with.
struct Opts {
    classes: Option<Vec<i64>>,
    spacing: Option<Spacing>,
    tolerance: f64,
}

/// One evaluated pair of files.
struct CaseResult {
    spacing: Option<Vec<f64>>,
    rows: Vec<(i64, ClassMetrics)>,
    read_s: f64,
    metrics_s: f64,
}

/// The name of a case given by one file: its name without the image extension.
fn case_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    stem_of(&name).map(str::to_string).unwrap_or(name)
}

fn same_spacing(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(y.abs()))
}

/// Integer element types that label maps can be scored in without a conversion.
trait Label: Voxel + PartialOrd {
    fn from_i64(v: i64) -> Option<Self>;
    fn to_i64(self) -> i64;
}

macro_rules! label_int {
    ($($t:ty),*) => {$(
        impl Label for $t {
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn to_i64(self) -> i64 {
                i64::from(self)
            }
        }
    )*};
}
label_int!(u8, u16, u32, i8, i16, i32, i64);

/// `--classes` in the element type `T`; `None` when one of them does not fit in `T`.
fn classes_as<T: Label>(o: &Opts) -> Option<Option<Vec<T>>> {
    match &o.classes {
        Some(c) => c
            .iter()
            .map(|&x| T::from_i64(x))
            .collect::<Option<Vec<T>>>()
            .map(Some),
        None => Some(None),
    }
}

fn metrics_of<T: Label>(
    p: &ndarray::ArrayD<T>,
    t: &ndarray::ArrayD<T>,
    classes: Option<&[T]>,
    o: &Opts,
    spacing: Option<&[f64]>,
) -> Result<Vec<(i64, ClassMetrics)>, segloss_core::CoreError> {
    let rows = segloss_core::label_metrics(p, t, classes, spacing, o.tolerance)?;
    Ok(rows.into_iter().map(|(c, m)| (c.to_i64(), m)).collect())
}

/// Evaluates one pair of files.
fn eval_case(pred: &Path, target: &Path, o: &Opts) -> Result<CaseResult, CliError> {
    let t0 = Instant::now();
    let p = Image::read(pred, o.spacing.as_ref())?;
    let t = Image::read(target, o.spacing.as_ref())?;
    let (ps, ts) = (p.volume.shape(), t.volume.shape());
    if ps != ts {
        return Err(CliError::input(format!(
            "{} has shape {ps:?} but {} has shape {ts:?}: expected label maps of the same shape",
            pred.display(),
            target.display()
        )));
    }
    let spacing = match (p.spacing(), t.spacing()) {
        (Some(a), Some(b)) if o.spacing.is_none() && !same_spacing(a, b) => {
            return Err(CliError::input(format!(
                "{} has voxel spacing {a:?} but {} has {b:?}: expected the same spacing (or give --spacing)",
                pred.display(),
                target.display()
            )))
        }
        (Some(a), _) => Some(a.to_vec()),
        (None, b) => b.map(<[f64]>::to_vec),
    };
    let read_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let sp = spacing.as_deref();
    macro_rules! typed {
        ($($v:ident),*) => {
            match (&p.volume.data, &t.volume.data) {
                $((ArrayData::$v(a), ArrayData::$v(b)) => {
                    classes_as(o).map(|c| metrics_of(a, b, c.as_deref(), o, sp))
                })*
                _ => None,
            }
        };
    }
    let fast = typed!(U8, U16, U32, I8, I16, I32, I64);
    let rows = match fast {
        Some(r) => r,
        // Float, bool, u64 or mixed types, or a class out of the type's range: as i64 labels.
        None => {
            let (a, b) = (p.labels()?, t.labels()?);
            let c = o.classes.as_deref();
            metrics_of(&a, &b, c, o, sp)
        }
    }
    .map_err(|e| core_error(pred, target, e))?;
    Ok(CaseResult {
        spacing,
        rows,
        read_s,
        metrics_s: t1.elapsed().as_secs_f64(),
    })
}

fn core_error(pred: &Path, target: &Path, e: segloss_core::CoreError) -> CliError {
    CliError::input(format!("{} vs {}: {e}", pred.display(), target.display()))
}

/// The per-metric mean over some rows, undefined values left out.
fn mean_of<'a>(
    rows: impl Iterator<Item = &'a ClassMetrics> + Clone,
    metrics: &[Metric],
) -> Vec<(Metric, Option<f64>)> {
    metrics
        .iter()
        .map(|&m| {
            let (mut sum, mut n) = (0.0, 0usize);
            for r in rows.clone() {
                if let Some(v) = m.get(r) {
                    sum += v;
                    n += 1;
                }
            }
            (m, (n > 0).then(|| sum / n as f64))
        })
        .collect()
}

/// A JSON object of metric values, in order (serde_json's own map would sort the keys).
struct MetricMap {
    head: Vec<(&'static str, serde_json::Value)>,
    values: Vec<(Metric, Option<f64>)>,
    tail: Vec<(&'static str, serde_json::Value)>,
}

impl Serialize for MetricMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map =
            s.serialize_map(Some(self.head.len() + self.values.len() + self.tail.len()))?;
        for (k, v) in &self.head {
            map.serialize_entry(k, v)?;
        }
        for (m, v) in &self.values {
            map.serialize_entry(m.name(), v)?;
        }
        for (k, v) in &self.tail {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn class_row(c: i64, m: &ClassMetrics, metrics: &[Metric]) -> MetricMap {
    MetricMap {
        head: vec![("class", c.into())],
        values: metrics.iter().map(|&k| (k, k.get(m))).collect(),
        tail: vec![
            ("pred_voxels", m.pred_voxels.into()),
            ("target_voxels", m.target_voxels.into()),
        ],
    }
}

fn plain(values: Vec<(Metric, Option<f64>)>) -> MetricMap {
    MetricMap {
        head: Vec::new(),
        values,
        tail: Vec::new(),
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[derive(Serialize)]
struct SingleReport {
    pred: String,
    target: String,
    spacing: Option<Vec<f64>>,
    nsd_tolerance: f64,
    per_class: Vec<MetricMap>,
    mean: MetricMap,
}

#[derive(Serialize)]
struct CaseReport {
    name: String,
    pred: String,
    target: String,
    spacing: Option<Vec<f64>>,
    per_class: Vec<MetricMap>,
}

#[derive(Serialize)]
struct CaseError {
    name: String,
    error: String,
}

#[derive(Serialize)]
struct Unpaired {
    name: String,
    file: String,
    missing_in: String,
}

#[derive(Serialize)]
struct FolderReport {
    pred: String,
    target: String,
    nsd_tolerance: f64,
    cases: Vec<CaseReport>,
    mean: MetricMap,
    per_class_mean: Vec<MetricMap>,
    errors: Vec<CaseError>,
    unpaired: Vec<Unpaired>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(cases: &[(String, &[(i64, ClassMetrics)])], metrics: &[Metric]) -> String {
    let mut out = String::from("case,class");
    for m in metrics {
        out.push(',');
        out.push_str(m.name());
    }
    out.push_str(",pred_voxels,target_voxels\n");
    for (name, rows) in cases {
        for (c, m) in rows.iter() {
            let _ = write!(out, "{},{c}", csv_field(name));
            for k in metrics {
                out.push(',');
                if let Some(v) = k.get(m) {
                    let _ = write!(out, "{v}");
                }
            }
            let _ = writeln!(out, ",{},{}", m.pred_voxels, m.target_voxels);
        }
    }
    out
}

fn to_json<T: Serialize>(r: &T) -> Result<String, CliError> {
    let mut s = serde_json::to_string_pretty(r)
        .map_err(|e| CliError::Internal(format!("cannot serialise the report: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// Writes the report through a temporary file in the output's folder, renamed (or, without
/// `force`, hard-linked so that a file that appeared meanwhile is not replaced) into place.
fn write_report(path: &Path, text: &str, force: bool) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let werr = |detail: String| -> CliError {
        IoError::Write {
            path: path.to_path_buf(),
            detail,
        }
        .into()
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".segloss-eval-{}-{stamp}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(werr(e.to_string()));
    }
    let placed = if force {
        std::fs::rename(&tmp, path)
    } else {
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => std::fs::remove_file(&tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
                return Err(IoError::Exists {
                    path: path.to_path_buf(),
                }
                .into());
            }
            // No hard links on this file system: check, then rename.
            Err(_) if path.symlink_metadata().is_ok() => {
                let _ = std::fs::remove_file(&tmp);
                return Err(IoError::Exists {
                    path: path.to_path_buf(),
                }
                .into());
            }
            Err(_) => std::fs::rename(&tmp, path),
        }
    };
    placed.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        werr(e.to_string())
    })
}

fn emit(a: &EvalArgs, text: &str) -> Result<(), CliError> {
    match &a.output {
        Some(out) => write_report(out, text, a.force),
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(text.as_bytes())
                .and_then(|_| so.flush())
                .map_err(|e| CliError::Internal(format!("cannot write to stdout: {e}")))
        }
    }
}

/// Runs `segloss eval`.
pub fn run(a: EvalArgs) -> Result<(), CliError> {
    if let Some(out) = &a.output {
        check_output(out, a.force)?;
    }
    let metrics: Vec<Metric> = a
        .metrics
        .as_ref()
        .map(|m| m.0.clone())
        .unwrap_or_else(|| Metric::ALL.to_vec());
    let o = Opts {
        classes: a.classes.as_ref().map(|c| c.0.clone()),
        spacing: a.spacing.clone(),
        tolerance: a.nsd_tolerance,
    };
    let (pd, td) = (a.pred.is_dir(), a.target.is_dir());
    match (pd, td) {
        (false, false) => run_files(&a, &o, &metrics),
        (true, true) => run_folders(&a, &o, &metrics),
        _ => {
            let (dir, file) = if pd {
                (&a.pred, &a.target)
            } else {
                (&a.target, &a.pred)
            };
            Err(CliError::input(format!(
                "{} is a folder but {} is not: expected two files or two folders",
                dir.display(),
                file.display()
            )))
        }
    }
}

fn run_files(a: &EvalArgs, o: &Opts, metrics: &[Metric]) -> Result<(), CliError> {
    let r = eval_case(&a.pred, &a.target, o)?;
    if a.timing {
        eprintln!(
            "segloss eval: read {:.1} ms, metrics {:.1} ms",
            r.read_s * 1e3,
            r.metrics_s * 1e3
        );
    }
    let text = match a.format {
        Format::Json => to_json(&SingleReport {
            pred: path_str(&a.pred),
            target: path_str(&a.target),
            spacing: r.spacing.clone(),
            nsd_tolerance: o.tolerance,
            per_class: r
                .rows
                .iter()
                .map(|(c, m)| class_row(*c, m, metrics))
                .collect(),
            mean: plain(mean_of(r.rows.iter().map(|(_, m)| m), metrics)),
        })?,
        Format::Csv => csv(&[(case_name(&a.pred), &r.rows[..])], metrics),
    };
    emit(a, &text)
}

/// The image files of a folder by case name: the file, or why the name cannot be used.
type Listing = Vec<(String, Result<PathBuf, String>)>;

/// A case to evaluate: its name and its two files, or why it cannot be evaluated.
type Pair = (String, Result<(PathBuf, PathBuf), String>);

fn list_folder(dir: &Path) -> Result<Listing, CliError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::input(format!("cannot read folder {}: {e}", dir.display())))?;
    let mut found: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for e in entries {
        let e =
            e.map_err(|e| CliError::input(format!("cannot read folder {}: {e}", dir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            continue;
        }
        if let Some(stem) = stem_of(&name) {
            found.entry(stem.to_string()).or_default().push(path);
        }
    }
    Ok(found
        .into_iter()
        .map(|(stem, mut paths)| {
            paths.sort();
            let v = if paths.len() == 1 {
                Ok(paths.pop().expect("one path"))
            } else {
                Err(format!(
                    "{} files named {stem:?} in {}: {}; expected one per case",
                    paths.len(),
                    dir.display(),
                    paths
                        .iter()
                        .map(|p| p
                            .file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            };
            (stem, v)
        })
        .collect())
}

fn run_folders(a: &EvalArgs, o: &Opts, metrics: &[Metric]) -> Result<(), CliError> {
    let preds = list_folder(&a.pred)?;
    let targets = list_folder(&a.target)?;
    let tmap: std::collections::BTreeMap<&str, &Result<PathBuf, String>> =
        targets.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let pset: std::collections::BTreeSet<&str> = preds.iter().map(|(k, _)| k.as_str()).collect();

    let mut unpaired = Vec::new();
    let first_file = |r: &Result<PathBuf, String>, dir: &Path, stem: &str| match r {
        Ok(p) => path_str(p),
        Err(_) => path_str(&dir.join(stem)),
    };
    let mut pairs: Vec<Pair> = Vec::new();
    for (stem, p) in &preds {
        match tmap.get(stem.as_str()) {
            Some(t) => {
                let pair = match (p, t) {
                    (Ok(p), Ok(t)) => Ok((p.clone(), t.clone())),
                    (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                };
                pairs.push((stem.clone(), pair));
            }
            None => unpaired.push(Unpaired {
                name: stem.clone(),
                file: first_file(p, &a.pred, stem),
                missing_in: path_str(&a.target),
            }),
        }
    }
    for (stem, t) in &targets {
        if !pset.contains(stem.as_str()) {
            unpaired.push(Unpaired {
                name: stem.clone(),
                file: first_file(t, &a.target, stem),
                missing_in: path_str(&a.pred),
            });
        }
    }
    if pairs.is_empty() {
        return Err(CliError::input(format!(
            "no files of {} and {} pair up by name ({} and {} image files): expected files with the same name \
             (extensions .npy, .png, .tif, .tiff, .nii, .nii.gz aside) in both folders",
            a.pred.display(),
            a.target.display(),
            preds.len(),
            targets.len()
        )));
    }

    for u in &unpaired {
        eprintln!(
            "segloss: warning: {} has no counterpart in {} (skipped)",
            u.file, u.missing_in
        );
    }
    let bar = progress_bar(pairs.len(), "segloss eval", "cases");
    let t0 = Instant::now();
    let results: Vec<Result<CaseResult, String>> = pairs
        .par_iter()
        .map(|(_, pair)| {
            let r = match pair {
                Ok((p, t)) => eval_case(p, t, o).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();

    let mut cases = Vec::new();
    let mut errors = Vec::new();
    let mut ok: Vec<(String, &[(i64, ClassMetrics)])> = Vec::new();
    let (mut read_s, mut metrics_s) = (0.0, 0.0);
    for ((name, pair), r) in pairs.iter().zip(&results) {
        match r {
            Ok(r) => {
                let (p, t) = pair.as_ref().expect("evaluated cases have both files");
                read_s += r.read_s;
                metrics_s += r.metrics_s;
                cases.push(CaseReport {
                    name: name.clone(),
                    pred: path_str(p),
                    target: path_str(t),
                    spacing: r.spacing.clone(),
                    per_class: r
                        .rows
                        .iter()
                        .map(|(c, m)| class_row(*c, m, metrics))
                        .collect(),
                });
                ok.push((name.clone(), &r.rows[..]));
            }
            Err(e) => {
                eprintln!("segloss: case {name:?} failed: {e}");
                errors.push(CaseError {
                    name: name.clone(),
                    error: e.clone(),
                });
            }
        }
    }
    if a.timing {
        eprintln!(
            "segloss eval: {} cases in {:.1} ms; summed over cases: read {:.1} ms, metrics {:.1} ms",
            pairs.len(),
            wall * 1e3,
            read_s * 1e3,
            metrics_s * 1e3
        );
    }
    let text = match a.format {
        Format::Json => {
            let all = ok.iter().flat_map(|(_, rows)| rows.iter().map(|(_, m)| m));
            let mut classes: Vec<i64> = ok
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(|(c, _)| *c))
                .collect();
            classes.sort_unstable();
            classes.dedup();
            let per_class_mean = classes
                .iter()
                .map(|&c| {
                    let of_c = ok
                        .iter()
                        .flat_map(move |(_, rows)| rows.iter().filter(move |(k, _)| *k == c))
                        .map(|(_, m)| m);
                    let n = of_c.clone().count();
                    MetricMap {
                        head: vec![("class", c.into()), ("cases", n.into())],
                        values: mean_of(of_c, metrics),
                        tail: Vec::new(),
                    }
                })
                .collect();
            to_json(&FolderReport {
                pred: path_str(&a.pred),
                target: path_str(&a.target),
                nsd_tolerance: o.tolerance,
                cases,
                mean: plain(mean_of(all, metrics)),
                per_class_mean,
                errors: std::mem::take(&mut errors),
                unpaired,
            })?
        }
        Format::Csv => csv(&ok, metrics),
    };
    emit(a, &text)?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        return Err(CliError::input(format!(
            "{failed} of {} cases failed (listed above{}); the others were evaluated",
            pairs.len(),
            if a.format == Format::Json {
                " and under \"errors\" in the report"
            } else {
                ""
            }
        )));
    }
    Ok(())
}
