//! `plusgate-retention`: measures a node holding many retained messages — start-up time
//! (clean and after SIGKILL), memory, and sled's disk use and space amplification through
//! fill, acknowledgement and the retention purge. Like `plusgate-bench`, it starts nodes of
//! the `plusgate` executable next to its own, or of `--plusgate PATH`. The measurement
//! itself is in `retention/`.

use std::process::ExitCode;

use clap::Parser;

mod retention;

fn main() -> ExitCode {
    let args = retention::RetentionArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(retention::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // `{:#}` prints anyhow's whole chain of causes on one line.
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("plusgate-retention: {message}");
    ExitCode::FAILURE
}
