//! The `plusgate` binary: logging set-up, then the command line (see `plusgate::cli`).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: the push path allocates many small JSON values, and
/// glibc spent about a quarter of the node's CPU in `malloc_consolidate` under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Logs go to stderr; stdout carries what scripts read (the bound address, summaries).
    if let Err(e) = plusgate::cli::logging::init() {
        eprintln!("plusgate: {e}");
        return ExitCode::from(plusgate::cli::EXIT_CONFIG);
    }
    plusgate::cli::run(plusgate::cli::Cli::parse())
}
