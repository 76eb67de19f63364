//! `segloss`: segmentation losses, distance maps, weight maps and metrics on files.
//!
//! Exit codes: 0 success, 2 bad input or usage (one line naming the file, the value and what was
//! expected), 1 an internal error. No panic reaches the user.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod alloc;
mod batch;
mod commands;
mod device;
mod error;
mod train;

use error::CliError;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// Segmentation losses, distance transforms, weight maps and metrics.
#[derive(Parser, Debug)]
#[command(name = "segloss", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compute a loss (and optionally its gradient) on prediction/target arrays.
    Loss(commands::loss::LossArgs),
    /// Time a loss's forward + backward on random data (median / min / max ms, peak memory).
    Bench(commands::bench::BenchArgs),
    /// Distance maps: exact EDT, multi-label EDT, signed and penalty maps.
    Distmap(commands::distmap::DistmapArgs),
    /// U-Net weight maps (Ronneberger et al. 2015) from a mask or an instance-label image.
    Weightmap(commands::weightmap::WeightmapArgs),
    /// Segmentation metrics (Dice, IoU, precision, recall, HD, HD95, ASSD, NSD) on files or folders.
    Eval(commands::eval::EvalArgs),
    /// Train a small U-Net with one loss on synthetic or folder data.
    Train(commands::train::TrainArgs),
    /// Train the same U-Net with several losses and report what each loss does.
    Compare(commands::compare::CompareArgs),
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Loss(a) => commands::loss::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Distmap(a) => commands::distmap::run(a),
        Command::Weightmap(a) => commands::weightmap::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Compare(a) => commands::compare::run(a),
    }
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help, --version
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // Usage errors: one line, exit 2 (clap's own rendering spans several lines).
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("segloss: {first} (see 'segloss --help')");
            return ExitCode::from(2);
        }
    };
    // A panic is an internal error: report it in one line, never as a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("segloss: internal error: {msg}{loc}");
    }));
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("segloss: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(_) => ExitCode::from(1),
    }
}
