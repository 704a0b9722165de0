//! How a command ends: its exit code (78 when the operator must fix the configuration, 2
//! for a wrong command line, 3 when a running node refused, 69 when it was unreachable, 1
//! for any other failure), its one-line summary on stdout or its reason on stderr, and the
//! async runtime the commands that talk to a node run on. Shared by every command group.

use std::process::ExitCode;

/// Exit code for a configuration the operator must fix (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a command line that is wrong (clap's own, for its usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the running node answered a command with a refusal (its reason is
/// printed): sending the same again will not help.
pub const EXIT_REFUSED: u8 = 3;
/// Exit code when the running node could not be reached (sysexits' EX_UNAVAILABLE): it
/// may help to try again once it runs.
pub const EXIT_UNREACHABLE: u8 = 69;

/// Prints a command's one-line summary, or fails with the exit code `code` gives for its
/// error.
pub(crate) fn finish<E: std::fmt::Display>(
    result: Result<String, E>,
    code: impl FnOnce(&E) -> u8,
) -> ExitCode {
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(code(&e), &e),
    }
}

/// Prints `plusgate: {e}` on stderr and ends with `code`.
pub(crate) fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("plusgate: {e}");
    ExitCode::from(code)
}

/// A multi-threaded tokio runtime for the commands that talk to a running node.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
