//! The `plusgate` binary: logging set-up, then the command line (see `plusgate::cli`).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: the push path allocates many small JSON values, and
/// glibc spent about a quarter of the node's CPU in `malloc_consolidate` under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
