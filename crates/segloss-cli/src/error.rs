//! CLI errors and their exit codes.

use std::fmt;

/// An error the CLI reports: bad input / usage (exit 2) or an internal error (exit 1).
#[derive(Debug)]
pub enum CliError {
    /// Bad input or usage: exit code 2.
    Input(String),
    /// A bug or an environment failure: exit code 1.
    Internal(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Internal(_) => 1,
        }
    }

    /// A bad-input error.
    pub fn input(msg: impl Into<String>) -> Self {
        CliError::Input(msg.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) => write!(f, "{m}"),
            CliError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl From<segloss::LossError> for CliError {
    fn from(e: segloss::LossError) -> Self {
        CliError::Input(e.to_string())
    }
}

impl From<segloss_io::IoError> for CliError {
    fn from(e: segloss_io::IoError) -> Self {
        CliError::Input(e.to_string())
    }
}
