//! `segloss train` (placeholder until the training pipeline lands).

use clap::Args;

use crate::error::CliError;

/// Arguments of `segloss train`.
#[derive(Args, Debug)]
pub struct TrainArgs {}

/// Runs `segloss train`.
pub fn run(_a: TrainArgs) -> Result<(), CliError> {
    Err(CliError::Internal("`segloss train` is not implemented yet".into()))
}
