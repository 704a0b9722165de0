//! Which `plusgate` executable runs, and running a command to its end with a time bound.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io, Error};

/// The `plusgate` executable the harness runs.
#[derive(Debug, Clone)]
pub struct Plusgate {
    path: PathBuf,
}

impl Plusgate {
    /// The executable at `path` (not checked here: spawning it says if it is missing).
    pub fn at(path: impl Into<PathBuf>) -> Plusgate {
        Plusgate { path: path.into() }
    }

    /// The `plusgate` cargo built into the running executable's target directory: next to
    /// it (`target/release/plusgate-bench` → `target/release/plusgate`), or one folder up
    /// from an integration test's `deps/` (`target/debug/deps/node-…` →
    /// `target/debug/plusgate`, which is cargo's `CARGO_BIN_EXE_plusgate`). Fails naming
    /// the cargo command that builds it when it is not there.
    pub fn in_target_dir() -> Result<Plusgate, Error> {
        let exe = std::env::current_exe().map_err(io("finding the running executable"))?;
        let mut dir = exe.parent().unwrap_or_else(|| Path::new("."));
        if dir.file_name().is_some_and(|name| name == "deps") {
            dir = dir.parent().unwrap_or(dir);
        }
        let path = dir.join(format!("plusgate{}", std::env::consts::EXE_SUFFIX));
        if path.is_file() {
            return Ok(Plusgate { path });
        }
        let build = match dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => "cargo build".to_owned(),
            Some("release") => "cargo build --release".to_owned(),
            Some(profile) => format!("cargo build --profile {profile}"),
        };
        Err(Error::MissingBinary { path, build })
    }

    /// The executable's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command running the executable.
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }

    /// Runs `plusgate args…` in `cwd` and waits for it to exit, at most `timeout` (after
    /// which it is killed and the caller panics).
    pub fn run_to_exit(&self, args: &[&str], cwd: &Path, timeout: Duration) -> Finished {
        let mut command = self.command();
        command.args(args).current_dir(cwd);
        run_command_to_exit(command, timeout)
    }
}

/// What a command that ran to its end printed.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Runs `command` without standard input, collecting its output, and waits for it to
/// exit, at most `timeout` (after which it is killed and the caller panics).
pub fn run_command_to_exit(mut command: Command, timeout: Duration) -> Finished {
    let out = tempfile::tempdir().expect("temporary folder");
    let file = |name: &str| std::fs::File::create(out.path().join(name)).expect("output file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let status = wait_with_timeout(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not exit within {timeout:?}")
    });
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
    Finished {
        status,
        stdout: read("stdout"),
        stderr: read("stderr"),
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        // `try_wait` fails only for a child reaped elsewhere, which `&mut Child` rules out.
        if let Some(status) = child.try_wait().expect("poll our own child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (`TERM`, `HUP`, …) to process `pid`. std has no such call and the
/// workspace forbids `unsafe`, so this asks kill(1).
pub(crate) fn signal(pid: u32, signal: &str) -> Result<(), Error> {
    let what = || format!("kill -{signal} {pid}");
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io(what()))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Io {
            what: what(),
            error: std::io::Error::other(status.to_string()),
        })
    }
}
