//! The report folder: `report.md`, `metrics.csv`, and the atomic writes behind every file.

use std::fmt::Write as _;
use std::path::Path;

use super::trainer::EpochRecord;
use crate::error::CliError;

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a reader
/// never sees a half-written file and a failure leaves the previous version in place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CliError::Internal(format!("{}: cannot write: {e}", path.display()))
        })
}

/// A file-name-safe version of a loss spec (`dice + bce` → `dice_plus_bce`).
pub fn slug(label: &str) -> String {
    let mut s = String::new();
    for c in label.trim().chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' => s.push(c),
            '+' => s.push_str("_plus_"),
            '-' => s.push_str("_minus_"),
            '*' => s.push('x'),
            _ => {
                if !s.ends_with('_') {
                    s.push('_')
                }
            }
        }
    }
    let s = s.replace("__", "_");
    let s = s.trim_matches('_').to_string();
    if s.is_empty() {
        "loss".into()
    } else {
        s
    }
}

/// What happened to one loss of a comparison.
#[derive(Debug, Clone)]
pub enum RunStatus {
    /// Trained to the end.
    Done {
        /// Per-epoch history.
        history: Vec<EpochRecord>,
        /// Wall seconds of the whole run (training and validation).
        wall_seconds: f64,
    },
    /// Failed with this message; the other losses went on.
    Failed(String),
    /// Not run: the loss names below are not in this build's catalogue.
    Skipped(Vec<String>),
}

/// One loss of a comparison.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The spec as given.
    pub label: String,
    /// The spec that was built.
    pub spec: String,
    /// A note on how it ran.
    pub note: Option<String>,
    /// What happened.
    pub status: RunStatus,
}

impl RunSummary {
    /// The history of a finished run.
    pub fn history(&self) -> Option<&[EpochRecord]> {
        match &self.status {
            RunStatus::Done { history, .. } => Some(history),
            _ => None,
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_default()
}

/// `metrics.csv`: one row per finished loss and epoch.
pub fn metrics_csv(runs: &[RunSummary]) -> String {
    let mut s = String::from(
        "loss,spec,epoch,train_loss,val_dice,val_iou,val_hd95,val_object_f1,val_object_precision,val_object_recall,val_tp,val_fp,val_fn,train_seconds,val_seconds\n",
    );
    for r in runs {
        let Some(h) = r.history() else { continue };
        for e in h {
            let _ = writeln!(
                s,
                "{},{},{},{:.6},{:.6},{:.6},{},{:.6},{:.6},{:.6},{},{},{},{:.3},{:.3}",
                csv_field(&r.label),
                csv_field(&r.spec),
                e.epoch,
                e.train_loss,
                e.val.dice,
                e.val.iou,
                opt(e.val.hd95, 4),
                e.val.objects.f1(),
                e.val.objects.precision(),
                e.val.objects.recall(),
                e.val.objects.tp,
                e.val.objects.fp,
                e.val.objects.fn_,
                e.train_seconds,
                e.val_seconds
            );
        }
    }
    s
}

/// Everything `report.md` says besides the runs.
#[derive(Debug, Clone)]
pub struct ReportContext {
    /// Title (`segloss compare` / `segloss train`).
    pub title: String,
    /// The command line.
    pub command: String,
    /// Setup lines (data, model, training).
    pub setup: Vec<String>,
    /// Losses still to run (the report is rewritten after every loss).
    pub pending: Vec<String>,
    /// Wall seconds so far.
    pub wall_seconds: f64,
    /// The files of the folder, with one line each.
    pub files: Vec<(String, String)>,
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The comparison of shape-aware and BCE runs on object F1, when both finished.
pub fn shape_vs_bce(runs: &[RunSummary]) -> Option<(String, f64, f64)> {
    let f1 = |label: &str| {
        runs.iter()
            .find(|r| r.label == label)
            .and_then(|r| r.history())
            .and_then(|h| h.last())
            .map(|e| e.val.objects.f1())
    };
    let shape = runs
        .iter()
        .find(|r| r.label.starts_with("shape_aware") && r.history().is_some())?;
    Some((shape.label.clone(), f1(&shape.label)?, f1("bce")?))
}

/// `report.md`.
pub fn report_md(ctx: &ReportContext, runs: &[RunSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", ctx.title);
    let _ = writeln!(s, "Command: `{}`\n", ctx.command);
    if !ctx.pending.is_empty() {
        let _ = writeln!(
            s,
            "**In progress** — still to run: {}. This report is rewritten after every loss.\n",
            ctx.pending.join("; ")
        );
    }
    let _ = writeln!(s, "## Setup\n");
    for l in &ctx.setup {
        let _ = writeln!(s, "- {l}");
    }
    let done: Vec<&RunSummary> = runs.iter().filter(|r| r.history().is_some()).collect();
    if !done.is_empty() {
        let epochs = done[0].history().map(|h| h.len()).unwrap_or(0);
        let _ = writeln!(s, "\n## Final validation metrics (after epoch {epochs})\n");
        let _ = writeln!(
            s,
            "| loss | Dice | IoU | HD95 (px) | object F1 | object precision | object recall | best object F1 (epoch) | train loss | s / epoch | wall s |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        let best_f1 = done
            .iter()
            .filter_map(|r| {
                r.history()
                    .and_then(|h| h.last())
                    .map(|e| e.val.objects.f1())
            })
            .fold(f64::NEG_INFINITY, f64::max);
        for r in &done {
            let h = r.history().expect("finished");
            let e = h.last().expect("at least one epoch");
            let (bi, be) = h
                .iter()
                .map(|e| (e.val.objects.f1(), e.epoch))
                .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a });
            let spe = h.iter().map(|e| e.train_seconds).sum::<f64>() / h.len() as f64;
            let wall = match &r.status {
                RunStatus::Done { wall_seconds, .. } => *wall_seconds,
                _ => 0.0,
            };
            let f1 = e.val.objects.f1();
            let f1s = if f1 == best_f1 {
                format!("**{f1:.3}**")
            } else {
                format!("{f1:.3}")
            };
            let _ = writeln!(
                s,
                "| `{}` | {:.3} | {:.3} | {} | {} | {:.3} | {:.3} | {:.3} ({}) | {:.4} | {:.1} | {:.0} |",
                md_cell(&r.label),
                e.val.dice,
                e.val.iou,
                e.val.hd95.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into()),
                f1s,
                e.val.objects.precision(),
                e.val.objects.recall(),
                bi,
                be,
                e.train_loss,
                spe,
                wall
            );
        }
        let _ = writeln!(
            s,
            "\nObject counts at the last epoch (true positives / false positives / false negatives):"
        );
        for r in &done {
            let e = r.history().and_then(|h| h.last()).expect("finished");
            let _ = writeln!(
                s,
                "- `{}`: {} / {} / {}",
                md_cell(&r.label),
                e.val.objects.tp,
                e.val.objects.fp,
                e.val.objects.fn_
            );
        }
        if let Some((label, shape, bce)) = shape_vs_bce(runs) {
            let verdict = if shape > bce {
                "beats"
            } else if shape == bce {
                "ties with"
            } else {
                "does NOT beat"
            };
            let _ = writeln!(
                s,
                "\n`{label}` {verdict} `bce` on object F1: {shape:.3} vs {bce:.3} ({:+.3}).",
                shape - bce
            );
        }
        let _ = writeln!(
            s,
            "\nDice and IoU count pixels: a prediction that fills the 2-pixel background lines between touching cells loses little Dice, but merges the cells and loses them in object F1. The U-Net weight map of the shape-aware loss weights exactly those lines up to 1 + w0 times more than the rest of the background."
        );
    }
    let notes: Vec<&RunSummary> = runs.iter().filter(|r| r.note.is_some()).collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for r in notes {
            let _ = writeln!(
                s,
                "- `{}`: {}",
                md_cell(&r.label),
                r.note.as_deref().unwrap_or("")
            );
        }
    }
    let skipped: Vec<&RunSummary> = runs
        .iter()
        .filter(|r| matches!(r.status, RunStatus::Skipped(_)))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(s, "\n## Skipped (not in this build's loss catalogue)\n");
        for r in skipped {
            if let RunStatus::Skipped(m) = &r.status {
                let _ = writeln!(
                    s,
                    "- `{}`: unknown loss name(s) {}",
                    md_cell(&r.label),
                    m.join(", ")
                );
            }
        }
        let _ = writeln!(s, "\nKnown losses: {}.", segloss::loss_names().join(", "));
    }
    let failed: Vec<&RunSummary> = runs
        .iter()
        .filter(|r| matches!(r.status, RunStatus::Failed(_)))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\n## Failed\n");
        for r in failed {
            if let RunStatus::Failed(m) = &r.status {
                let _ = writeln!(s, "- `{}`: {}", md_cell(&r.label), m);
            }
        }
    }
    let _ = writeln!(s, "\n## Files\n");
    for (f, d) in &ctx.files {
        let _ = writeln!(s, "- `{f}`: {d}");
    }
    let _ = writeln!(s, "\nTotal wall time: {:.0} s.", ctx.wall_seconds);
    s
}
