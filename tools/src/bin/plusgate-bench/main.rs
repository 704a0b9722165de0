//! `plusgate-bench`: the load generator (formerly `plusgate bench`), kept out of the
//! production binary. It starts nodes of the `plusgate` executable next to its own (build
//! it with `cargo build --release`), or of `--plusgate PATH`. The bench itself is in
//! `bench/`.

use std::process::ExitCode;

use clap::Parser;

mod bench;

fn main() -> ExitCode {
    let args = bench::BenchArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(bench::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // `{:#}` prints anyhow's whole chain of causes on one line.
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("plusgate-bench: {message}");
    ExitCode::FAILURE
}
