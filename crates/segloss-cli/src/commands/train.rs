//! `segloss train`: trains the small U-Net with one loss and writes a report folder.

use std::path::PathBuf;

use clap::Args;

use crate::error::CliError;
use crate::train::{self, Experiment, Layout, RunOptions};

/// Arguments of `segloss train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The loss spec, e.g. `dice`, `0.5*dice + 0.5*bce`, `shape_aware(w0=10,sigma=5)`.
    #[arg(long)]
    pub loss: String,
    /// Options shared with `segloss compare`.
    #[command(flatten)]
    pub opts: RunOptions,
}

/// Runs `segloss train`: training loss and validation Dice, IoU, HD95 and object F1 every
/// `--val-every` steps on the terminal; `report.md`, `metrics.csv`, `curves.png`,
/// `samples.png` and the checkpoint `model.bpk` in the report folder (default
/// `runs/train-<loss>`).
pub fn run(a: TrainArgs) -> Result<(), CliError> {
    let planned = train::plan(std::slice::from_ref(&a.loss), &a.opts, true)?;
    let out = a.opts.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!("train-{}", train::report::slug(&a.loss)))
    });
    let exp = Experiment {
        title: "segloss train",
        command: train::command_line(),
        opts: &a.opts,
        sizes: a.opts.sizes(false),
        out,
        quick: false,
        layout: Layout::Single,
    };
    train::run_experiment(&exp, planned)
}
