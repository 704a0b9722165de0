//! `plusgate audit verify|export`: a node's audit chain, checked end to end
//! (`verify --config`), written as an export (`export`), or an export checked offline
//! against the federation directory's node keys (`verify --file`). A stopped node's store
//! is read directly; a running node's (it holds the store's lock) through a backup taken
//! from it now and restored into a temporary folder (`cli::backup::snapshot`), so the chain
//! read is one consistent state of it. Writing and reading the
//! export file is [`crate::cli::export`]; the chain and export rules are `core`.
//!
//! `audit verify` exits 1 on any failure, naming the first bad entry or line; `audit export`
//! exits 78 for an unusable config or signing key, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::exit::{finish, EXIT_CONFIG, EXIT_FAILURE};
use crate::cli::backup::BackupCliError;
use crate::cli::export::{self, Closing, StoreOpenError, WriteError};
use crate::config::{Config, ConfigError};
use crate::core::audit::{ChainError, Verifier};
use crate::core::directory::{Directory, DirectoryError};
use crate::core::export::ExportError;
use crate::core::hex;
use crate::core::keys::{KeyError, PublicKey, SigningKey};
use crate::node::files::LoadError;
use crate::node::store::{Store, StoreError};

/// `plusgate audit …`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check a node's audit chain end to end (`--config`; a running node's through a backup
    /// taken from it now), or an audit export offline (`--file`, with the federation
    /// directory for the node's signing key); exit 1 naming the first bad entry or line.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["config", "file"])))]
    Verify {
        /// The node's config file (its data directory is read).
        #[arg(long)]
        config: Option<PathBuf>,
        /// With `--config`, for a running node: reach it at this URL (`https://IP:PORT`)
        /// instead of its configured listen address.
        #[arg(long, requires = "config")]
        url: Option<String>,
        /// An export written by `plusgate audit export`.
        #[arg(long, value_name = "EXPORT", requires = "directory")]
        file: Option<PathBuf>,
        /// The signed federation directory, for the signing keys of the nodes whose
        /// checkpoints the export holds.
        #[arg(long, value_name = "DIRECTORY_FILE", conflicts_with = "config")]
        directory: Option<PathBuf>,
        /// The federation authority's public key (64 hex characters): check the directory's
        /// own signature too. Without it the directory is taken as it is (and a note says so).
        #[arg(long, value_name = "HEX", conflicts_with = "config")]
        authority_key: Option<String>,
    },
    /// Write a node's audit chain as JSON Lines (a running node's through a backup taken
    /// from it now), with its signed checkpoints and, for a federated node, one signed now
    /// that vouches for the export's end.
    Export {
        /// The node's config file (its data directory is read).
        #[arg(long)]
        config: PathBuf,
        /// For a running node: reach it at this URL (`https://IP:PORT`) instead of its
        /// configured listen address.
        #[arg(long)]
        url: Option<String>,
        /// The export file to write (replaced atomically).
        #[arg(long, value_name = "EXPORT")]
        out: PathBuf,
        /// Export the entries from this sequence number on.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        since: u64,
    },
}

/// Why `plusgate audit …` failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Neither `--config` nor `--file` with `--directory` (clap already insists).
    #[error("give --config FILE, or --file EXPORT with --directory DIRECTORY_FILE")]
    NoSource,
    /// The node's config is unusable: the operator's to fix.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node's signing key (for the closing checkpoint) is unusable: the operator's to fix.
    #[error(transparent)]
    Key(LoadError<KeyError>),
    /// The data directory cannot be opened (not there, or damaged).
    #[error(transparent)]
    Store(#[from] StoreOpenError),
    /// The node runs, and a backup of it could not be taken to read.
    #[error("the node is running, and reading a backup of it failed: {0}")]
    Snapshot(#[source] Box<BackupCliError>),
    /// A stored audit entry cannot be read (damage).
    #[error("audit entry {seq}: unreadable: {source}")]
    Unreadable {
        /// The entry.
        seq: u64,
        /// The store's error.
        source: StoreError,
    },
    /// The stored chain is broken: altered, removed, inserted or reordered entries.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The export could not be written, or the chain or its checkpoints refused.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// `--authority-key` is not an Ed25519 public key.
    #[error("--authority-key is {0}")]
    AuthorityKey(#[source] KeyError),
    /// The directory to check the export's checkpoints against is unusable.
    #[error(transparent)]
    Directory(LoadError<DirectoryError>),
    /// The export file cannot be read.
    #[error("cannot read export {}: {source}", .path.display())]
    ReadExport {
        /// The export file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The export does not verify: altered, truncated, or not the node's.
    #[error("export {}: {source}", .path.display())]
    Export {
        /// The export file.
        path: PathBuf,
        /// The first bad place.
        source: ExportError,
    },
}

impl AuditError {
    /// `audit export`'s exit code: 78 for what the operator must fix in the configuration,
    /// 1 otherwise.
    fn export_exit_code(&self) -> u8 {
        match self {
            AuditError::Config(_) | AuditError::Key(_) => EXIT_CONFIG,
            AuditError::Snapshot(e) => e.exit_code(),
            _ => EXIT_FAILURE,
        }
    }

    /// `audit verify`'s exit code: 1 for a chain that does not verify, or the node's codes
    /// (69 unreachable, 3 refused) when a running node could not be read.
    fn verify_exit_code(&self) -> u8 {
        match self {
            AuditError::Snapshot(e) => e.exit_code(),
            _ => EXIT_FAILURE,
        }
    }
}

/// Runs `plusgate audit …`: prints the summary line, or fails naming why.
pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            config: Some(config),
            url,
            ..
        } => finish(
            verify_chain(&config, url.as_deref()),
            AuditError::verify_exit_code,
        ),
        AuditCommand::Verify {
            file: Some(file),
            directory: Some(directory),
            authority_key,
            ..
        } => finish(
            verify_export(&file, &directory, authority_key.as_deref()),
            |_| EXIT_FAILURE,
        ),
        AuditCommand::Verify { .. } => finish(Err(AuditError::NoSource), |_| EXIT_FAILURE),
        AuditCommand::Export {
            config,
            out,
            since,
            url,
        } => finish(
            write_export(&config, &out, since, url.as_deref()),
            AuditError::export_exit_code,
        ),
    }
}

/// `audit export`: the chain of the stopped node configured in `path`, from `since`, into
/// `out`, closed by a checkpoint signed now when the node is federated.
fn write_export(
    path: &Path,
    out: &Path,
    since: u64,
    url: Option<&str>,
) -> Result<String, AuditError> {
    let config = Config::load(path)?;
    let key = match &config.federation {
        Some(federation) => {
            Some(SigningKey::load(&federation.signing_key).map_err(AuditError::Key)?)
        }
        None => None,
    };
    let (store, _snapshot) = node_store(&config, url)?;
    // The node's clock, as configured: the closing checkpoint's time is on the same clock
    // as the chain it closes.
    let clock = crate::node::clock::SystemClock::shifted(config.clock.danger_offset);
    let now = crate::node::clock::Clock::now_rfc3339(&clock);
    let node = config.center.to_string();
    let closing = key.as_ref().map(|key| Closing {
        key,
        node: &node,
        at: &now,
    });
    let written = export::export_to_file(&store, since, closing.as_ref(), out)?;
    if !written.closed {
        eprintln!(
            "plusgate: note: node {node} is not federated (no [federation] signing key), so the \
             export ends without a checkpoint signed now; `audit verify --file` will report the \
             entries after its last stored checkpoint as not covered"
        );
    }
    let range = match written.entries {
        0 => format!("no audit entries (the chain has {})", written.length),
        n => format!(
            "{n} audit entries (seq {} to {})",
            written.since,
            written.since + n - 1
        ),
    };
    Ok(format!(
        "exported {range} and {} checkpoints of node {node} to {}",
        written.checkpoints,
        out.display()
    ))
}

/// `audit verify --file`: checks an export offline against the directory's node keys.
fn verify_export(
    file: &Path,
    directory: &Path,
    authority_key: Option<&str>,
) -> Result<String, AuditError> {
    let directory = match authority_key {
        Some(hex) => {
            let authority = PublicKey::from_hex(hex).map_err(AuditError::AuthorityKey)?;
            Directory::load(directory, &authority).map_err(AuditError::Directory)?
        }
        None => {
            let loaded = Directory::load_unverified(directory).map_err(AuditError::Directory)?;
            eprintln!(
                "plusgate: note: the signature of directory {} was not checked (give \
                 --authority-key to check it); the node keys in it are taken as they are",
                directory.display()
            );
            loaded
        }
    };
    let export = std::fs::File::open(file).map_err(|source| AuditError::ReadExport {
        path: file.to_owned(),
        source,
    })?;
    let summary =
        export::verify(std::io::BufReader::new(export), &directory).map_err(|source| {
            AuditError::Export {
                path: file.to_owned(),
                source,
            }
        })?;
    Ok(summary.to_string())
}

/// `audit verify --config`: walks the whole audit chain of the node configured in `path`.
fn verify_chain(path: &Path, url: Option<&str>) -> Result<String, AuditError> {
    let config = Config::load(path)?;
    let (store, _snapshot) = node_store(&config, url)?;
    let mut verifier = Verifier::new();
    let total = store.audit_head().ok().flatten().map(|last| last.seq + 1);
    let mut progress =
        crate::cli::progress::Progress::new("verifying the audit chain", total, "entries");
    for entry in store.audit_entries() {
        let entry = entry.map_err(|source| AuditError::Unreadable {
            seq: verifier.head().next_seq,
            source,
        })?;
        verifier.push(&entry)?;
        progress.set(verifier.head().next_seq);
    }
    progress.finish();
    let head = verifier.head();
    Ok(format!(
        "audit chain of node {} ok: {} entries, head {}",
        config.center,
        head.next_seq,
        hex::encode(&head.hash)
    ))
}

/// The store of the node configured in `config`: opened directly when the node is stopped,
/// else read through a backup taken from it now (at `url` if given; see
/// `cli::backup::snapshot`), whose temporary folder lives as long as the second value.
fn node_store(
    config: &Config,
    url: Option<&str>,
) -> Result<(Store, Option<crate::cli::backup::TempDir>), AuditError> {
    match export::open_store(&config.data_dir) {
        Ok(store) => Ok((store, None)),
        Err(StoreOpenError::Locked { .. }) => {
            let snapshot = crate::cli::exit::runtime()
                .map_err(|e| {
                    AuditError::Snapshot(Box::new(BackupCliError::Runtime(format!("{e:#}"))))
                })?
                .block_on(crate::cli::backup::snapshot(config, url))
                .map_err(|e| AuditError::Snapshot(Box::new(e)))?;
            Ok((snapshot.0, Some(snapshot.1)))
        }
        Err(e) => Err(e.into()),
    }
}
