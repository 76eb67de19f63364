//! `segloss compare`: trains the same U-Net with several losses and reports what each loss does.

use std::path::PathBuf;

use clap::Args;

use crate::error::CliError;
use crate::train::{self, losses::DEFAULT_LOSSES, Experiment, Layout, RunOptions};

/// Arguments of `segloss compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Loss specs separated by ';' [default: "bce; dice; dice + bce; focal;
    /// tversky(alpha=0.3,beta=0.7); lovasz; shape_aware", those this build has].
    #[arg(long)]
    pub losses: Option<String>,
    /// A small, fast run of the same pipeline (CI smoke test): fewer, smaller images and fewer
    /// steps.
    #[arg(long)]
    pub quick: bool,
    /// Options shared with `segloss train`.
    #[command(flatten)]
    pub opts: RunOptions,
}

/// Runs `segloss compare`: the same data, seed and initial weights for every loss; writes
/// `report.md`, `metrics.csv`, `curves.png`, `samples.png` and `checkpoints/` to the report
/// folder (default `runs/compare`), rewritten after every loss.
///
/// With the default list, losses this build does not have are skipped and listed in the report;
/// an unknown loss in `--losses` is an error (exit code 2).
pub fn run(a: CompareArgs) -> Result<(), CliError> {
    let (specs, strict) = match &a.losses {
        Some(s) => {
            let specs: Vec<String> = s
                .split(';')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
            if specs.is_empty() {
                return Err(CliError::input(format!(
                    "--losses {s:?}: expected loss specs separated by ';', e.g. \"bce; dice; 0.5*dice + 0.5*bce\""
                )));
            }
            (specs, true)
        }
        None => (
            DEFAULT_LOSSES.iter().map(|s| s.to_string()).collect(),
            false,
        ),
    };
    let planned = train::plan(&specs, &a.opts, strict)?;
    let out = a
        .opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join("compare"));
    let exp = Experiment {
        title: "segloss compare",
        command: train::command_line(),
        opts: &a.opts,
        sizes: a.opts.sizes(a.quick),
        out,
        quick: a.quick,
        layout: Layout::Compare,
    };
    train::run_experiment(&exp, planned)
}
