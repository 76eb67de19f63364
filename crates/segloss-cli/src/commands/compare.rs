//! `segloss compare` (placeholder until the training pipeline lands).

use clap::Args;

use crate::error::CliError;

/// Arguments of `segloss compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {}

/// Runs `segloss compare`.
pub fn run(_a: CompareArgs) -> Result<(), CliError> {
    Err(CliError::Internal("`segloss compare` is not implemented yet".into()))
}
