//! What can go wrong in the harness's fallible steps.

use std::path::PathBuf;
use std::time::Duration;

use hyper::StatusCode;
use plusgate::dev::devinit::DevInitError;
use plusgate::dev::manifest::ManifestError;
use plusgate::node::client::ClientError;

/// A harness step that failed. Each message carries its cause on the same line (there is
/// no `source` chain), so printing it once says everything.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `plusgate` executable is not where it was looked for: most likely not built
    /// yet, which `build` (a cargo command) does.
    #[error("there is no plusgate executable at {}; build it with `{build}`", path.display())]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
        /// The cargo command that builds it there.
        build: String,
    },
    /// A file, folder or process operation failed (the machine's fault, usually).
    #[error("{what}: {error}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The operating system's answer.
        error: std::io::Error,
    },
    /// `dev-init` refused or failed.
    #[error("creating the dev federation: {0}")]
    DevInit(DevInitError),
    /// The federation's manifest lacks what was asked for (an unknown center, agency or
    /// example: the caller's mistake).
    #[error("{0}")]
    Manifest(ManifestError),
    /// No run of free consecutive loopback ports was found.
    #[error("found no {count} free consecutive ports on 127.0.0.1 in {first}..{end}")]
    NoFreePorts {
        /// How many were needed.
        count: u16,
        /// The range searched.
        first: u16,
        /// Its end (exclusive).
        end: u16,
    },
    /// A node did not print its listening line (it exited, or hangs before binding).
    #[error(
        "node {args:?} did not print its listening line within {timeout:?} ({exit}); its log \
         ends with:\n{log_tail}"
    )]
    NotListening {
        /// Its command line.
        args: Vec<String>,
        /// How long it was given.
        timeout: Duration,
        /// How it ended.
        exit: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A node did not exit within `timeout` of SIGTERM, and was killed.
    #[error("killed: no exit within {timeout:?} of SIGTERM")]
    StopTimeout {
        /// How long it was given.
        timeout: Duration,
    },
    /// The node is not running (never started, or stopped or killed already).
    #[error("the node is not running")]
    NotRunning,
    /// A request got no answer (connection, TLS or timeout).
    #[error("{what}: {error}")]
    Client {
        /// What the request was for.
        what: String,
        /// How it failed.
        error: ClientError,
    },
    /// The node answered, but not with the status hoped for.
    #[error("{what}: the node answered {status}: {body}")]
    Refused {
        /// What the request was for.
        what: String,
        /// The answer's status.
        status: StatusCode,
        /// The answer's body (shortened).
        body: String,
    },
}

impl From<DevInitError> for Error {
    fn from(e: DevInitError) -> Error {
        Error::DevInit(e)
    }
}

impl From<ManifestError> for Error {
    fn from(e: ManifestError) -> Error {
        Error::Manifest(e)
    }
}

/// Maps an I/O error to [`Error::Io`] saying what was being done.
pub(crate) fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |error| Error::Io {
        what: what.to_string(),
        error,
    }
}

/// Maps a client error to [`Error::Client`] saying what the request was for.
pub(crate) fn client(what: impl std::fmt::Display) -> impl FnOnce(ClientError) -> Error {
    move |error| Error::Client {
        what: what.to_string(),
        error,
    }
}

/// At most `chars_max` characters of `text`, with `…` when shortened.
pub(crate) fn truncate(text: &str, chars_max: usize) -> String {
    match text.char_indices().nth(chars_max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
