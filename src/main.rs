//! The `plusgate` binary: logging set-up, then the command line (see `plusgate::cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Logs go to stderr; stdout carries what scripts read (the bound address, summaries).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLUSGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    plusgate::cli::run(plusgate::cli::Cli::parse())
}
