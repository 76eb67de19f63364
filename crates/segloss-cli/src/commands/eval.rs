//! `segloss eval` (placeholder until the metrics command lands).

use clap::Args;

use crate::error::CliError;

/// Arguments of `segloss eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {}

/// Runs `segloss eval`.
pub fn run(_a: EvalArgs) -> Result<(), CliError> {
    Err(CliError::Internal("`segloss eval` is not implemented yet".into()))
}
