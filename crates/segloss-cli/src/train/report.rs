//! The report folder: `report.md`, `metrics.csv`, and the atomic writes behind every file.

use std::fmt::Write as _;
use std::path::Path;

use super::trainer::EvalRecord;
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

/// One seed's run of a loss.
#[derive(Debug, Clone)]
pub struct SeedRun {
    /// The seed (initial weights, crops, their order and augmentation).
    pub seed: u64,
    /// One record per validation.
    pub history: Vec<EvalRecord>,
    /// Wall seconds of the run (training and validation).
    pub wall_seconds: f64,
}

impl SeedRun {
    /// The last validation.
    pub fn last(&self) -> &EvalRecord {
        self.history.last().expect("at least one validation")
    }

    /// The best object F1 and the step it was reached at (the first such step).
    pub fn best_f1(&self) -> (f64, usize) {
        self.history
            .iter()
            .map(|e| (e.val.objects.f1(), e.step))
            .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// How far the final object F1 lies below the best one.
    pub fn drop_from_best(&self) -> f64 {
        self.best_f1().0 - self.last().val.objects.f1()
    }
}

/// A run whose final object F1 lies more than this below its best is flagged as a collapse.
pub const COLLAPSE_DROP: f64 = 0.05;

/// What happened to one loss of a comparison.
#[derive(Debug, Clone)]
pub enum RunStatus {
    /// Trained to the end, once per seed.
    Done(Vec<SeedRun>),
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
    /// The seed runs of a finished loss.
    pub fn runs(&self) -> Option<&[SeedRun]> {
        match &self.status {
            RunStatus::Done(r) if !r.is_empty() => Some(r),
            _ => None,
        }
    }

    /// Mean and (sample) standard deviation of a final metric over the seeds.
    pub fn stat(&self, f: impl Fn(&EvalRecord) -> f64) -> Option<Stat> {
        self.runs()
            .map(|r| Stat::of(&r.iter().map(|s| f(s.last())).collect::<Vec<_>>()))
    }
}

/// Mean and sample standard deviation (0 for one value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 with one value.
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl Stat {
    /// The statistics of `v` (non-empty).
    pub fn of(v: &[f64]) -> Stat {
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n.max(1) as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Stat { mean, std, n }
    }

    fn show(&self, digits: usize) -> String {
        if self.n > 1 {
            format!("{:.digits$} ± {:.digits$}", self.mean, self.std)
        } else {
            format!("{:.digits$}", self.mean)
        }
    }
}

/// How two losses compare on a metric: a difference is stated only when the means differ by more
/// than the sum of the two standard deviations, and only with at least two seeds each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first is higher beyond the spread.
    Better,
    /// The first is lower beyond the spread.
    Worse,
    /// The difference is within the spread.
    WithinSpread,
    /// One seed: no spread to compare with.
    OneSeed,
}

/// Compares `a` with `b` (higher is better).
pub fn verdict(a: &Stat, b: &Stat) -> Verdict {
    if a.n < 2 || b.n < 2 {
        return Verdict::OneSeed;
    }
    let d = a.mean - b.mean;
    if d.abs() <= a.std + b.std {
        Verdict::WithinSpread
    } else if d > 0.0 {
        Verdict::Better
    } else {
        Verdict::Worse
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

/// `metrics.csv`: one row per finished loss, seed and validation; `final` is 1 on each run's
/// last validation (the one the report's table and the checkpoint are from).
pub fn metrics_csv(runs: &[RunSummary]) -> String {
    let mut s = String::from(
        "loss,spec,repeat,seed,step,final,train_loss,val_dice,val_iou,val_hd95,val_object_f1,val_object_precision,val_object_recall,val_tp,val_fp,val_fn,clipped_steps,train_seconds,val_seconds\n",
    );
    for r in runs {
        let Some(seeds) = r.runs() else { continue };
        for (k, run) in seeds.iter().enumerate() {
            for (i, e) in run.history.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{:.6},{:.6},{:.6},{},{:.6},{:.6},{:.6},{},{},{},{},{:.3},{:.3}",
                    csv_field(&r.label),
                    csv_field(&r.spec),
                    k + 1,
                    run.seed,
                    e.step,
                    (i + 1 == run.history.len()) as u8,
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
                    e.clipped,
                    e.train_seconds,
                    e.val_seconds
                );
            }
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

/// The shape-aware loss's and BCE's final object F1 over the seeds, when both finished.
pub fn shape_vs_bce(runs: &[RunSummary]) -> Option<(String, Stat, Stat)> {
    let f1 = |e: &EvalRecord| e.val.objects.f1();
    let shape = runs
        .iter()
        .find(|r| r.label.starts_with("shape_aware") && r.runs().is_some())?;
    let bce = runs.iter().find(|r| r.label == "bce")?;
    Some((shape.label.clone(), shape.stat(f1)?, bce.stat(f1)?))
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
    let done: Vec<&RunSummary> = runs.iter().filter(|r| r.runs().is_some()).collect();
    if !done.is_empty() {
        let first = &done[0].runs().expect("finished")[0];
        let steps = first.last().step;
        let n = done[0].runs().map(|r| r.len()).unwrap_or(1);
        let over = if n > 1 {
            format!(", mean ± standard deviation over {n} seeds")
        } else {
            ", one seed".to_string()
        };
        let _ = writeln!(
            s,
            "\n## Final validation metrics (after step {steps}{over})\n"
        );
        let _ = writeln!(
            s,
            "| loss | Dice | IoU | HD95 (px) | object F1 | object precision | object recall | best object F1 (step) | train loss | s / 100 steps | wall s |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        let f1 = |e: &EvalRecord| e.val.objects.f1();
        let top = done
            .iter()
            .filter_map(|r| r.stat(f1))
            .fold(f64::NEG_INFINITY, |a, st| a.max(st.mean));
        for r in &done {
            let seeds = r.runs().expect("finished");
            let st = |f: &dyn Fn(&EvalRecord) -> f64| r.stat(f).expect("finished");
            let hd: Vec<f64> = seeds.iter().filter_map(|x| x.last().val.hd95).collect();
            let hd = if hd.is_empty() {
                "n/a".to_string()
            } else {
                Stat::of(&hd).show(2)
            };
            let f = st(&f1);
            let fs = if f.mean == top {
                format!("**{}**", f.show(3))
            } else {
                f.show(3)
            };
            let best = if seeds.len() == 1 {
                let (b, at) = seeds[0].best_f1();
                format!("{b:.3} ({at})")
            } else {
                Stat::of(&seeds.iter().map(|x| x.best_f1().0).collect::<Vec<_>>()).show(3)
            };
            let train_s: f64 = seeds
                .iter()
                .flat_map(|x| x.history.iter().map(|e| e.train_seconds))
                .sum();
            let n_steps: usize = seeds.iter().map(|x| x.last().step).sum();
            let wall: f64 = seeds.iter().map(|x| x.wall_seconds).sum::<f64>() / seeds.len() as f64;
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} |",
                md_cell(&r.label),
                st(&|e| e.val.dice).show(3),
                st(&|e| e.val.iou).show(3),
                hd,
                fs,
                st(&|e| e.val.objects.precision()).show(3),
                st(&|e| e.val.objects.recall()).show(3),
                best,
                st(&|e| e.train_loss).show(4),
                100.0 * train_s / n_steps.max(1) as f64,
                wall
            );
        }
        let _ = writeln!(
            s,
            "\nObject counts at the last step (true positives / false positives / false negatives{}):",
            if n > 1 { ", per seed" } else { "" }
        );
        for r in &done {
            let c: Vec<String> = r
                .runs()
                .expect("finished")
                .iter()
                .map(|x| {
                    let o = x.last().val.objects;
                    format!("{} / {} / {}", o.tp, o.fp, o.fn_)
                })
                .collect();
            let _ = writeln!(s, "- `{}`: {}", md_cell(&r.label), c.join("; "));
        }
        let _ = writeln!(s, "\n## Conclusions\n");
        if let Some((label, shape, bce)) = shape_vs_bce(runs) {
            let d = shape.mean - bce.mean;
            let text = match verdict(&shape, &bce) {
                Verdict::Better => format!(
                    "`{label}` beats `bce` on object F1 beyond the seed-to-seed spread: {} vs {} ({d:+.3}, more than the sum of the standard deviations, {:.3}).",
                    shape.show(3), bce.show(3), shape.std + bce.std
                ),
                Verdict::Worse => format!(
                    "`{label}` does NOT beat `bce` on object F1: it is lower beyond the seed-to-seed spread, {} vs {} ({d:+.3}; sum of the standard deviations {:.3}).",
                    shape.show(3), bce.show(3), shape.std + bce.std
                ),
                Verdict::WithinSpread => format!(
                    "`{label}` and `bce` do not differ on object F1 beyond the seed-to-seed spread: {} vs {} ({d:+.3}, within the sum of the standard deviations, {:.3}).",
                    shape.show(3), bce.show(3), shape.std + bce.std
                ),
                Verdict::OneSeed => format!(
                    "`{label}` vs `bce` on object F1: {:.3} vs {:.3} ({d:+.3}) from one seed; one seed gives no spread to judge the difference by, so no winner is stated (run with `--repeats 3`).",
                    shape.mean, bce.mean
                ),
            };
            let _ = writeln!(s, "- {text}");
        }
        if n > 1 {
            let stats: Vec<(&str, Stat)> = done
                .iter()
                .filter_map(|r| r.stat(f1).map(|st| (r.label.as_str(), st)))
                .collect();
            if let Some((bl, bs)) = stats
                .iter()
                .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean))
                .copied()
            {
                let tied: Vec<String> = stats
                    .iter()
                    .filter(|(l, st)| *l != bl && verdict(&bs, st) == Verdict::WithinSpread)
                    .map(|(l, _)| format!("`{}`", md_cell(l)))
                    .collect();
                let _ = writeln!(
                    s,
                    "- Highest mean object F1: `{}` ({}); {}",
                    md_cell(bl),
                    bs.show(3),
                    if tied.is_empty() {
                        "every other loss is lower beyond the spread.".to_string()
                    } else {
                        format!("within the spread of it: {}.", tied.join(", "))
                    }
                );
            }
        }
        let collapsed: Vec<String> = done
            .iter()
            .flat_map(|r| {
                r.runs()
                    .expect("finished")
                    .iter()
                    .filter(|x| x.drop_from_best() > COLLAPSE_DROP)
                    .map(|x| {
                        let (b, at) = x.best_f1();
                        format!(
                            "`{}` (seed {}): object F1 {:.3} at the end, {:.3} at its best (step {at})",
                            md_cell(&r.label),
                            x.seed,
                            x.last().val.objects.f1(),
                            b
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if collapsed.is_empty() {
            let _ = writeln!(
                s,
                "- No run ended more than {COLLAPSE_DROP} below its best object F1."
            );
        } else {
            let _ = writeln!(
                s,
                "- **Collapse**: these runs ended more than {COLLAPSE_DROP} below their best object F1: {}.",
                collapsed.join("; ")
            );
        }
        let _ = writeln!(
            s,
            "- The checkpoints hold the weights after the last step (step {steps}) of the first seed ({}); the table gives the last validation of every seed, not the best one.",
            first.seed
        );
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
