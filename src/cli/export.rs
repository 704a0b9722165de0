//! Writing audit exports (`plusgate audit export`) from a stopped node's store, and reading
//! one for the offline check (`plusgate audit verify --file`). The format and the check are
//! [`crate::core::export`]; this is the store and file handling around them.
//!
//! An export is written through a temporary file and a rename, so the file named is either
//! the complete export or not there. The writer refuses a broken chain and stored
//! checkpoints that do not fit it: the node's key must not vouch for them.

use std::fmt;
use std::io::{BufRead, Write};
use std::iter::Peekable;
use std::path::{Path, PathBuf};

use crate::core::audit::{AuditEntry, ChainError, Checkpoint, Head, Verifier};
use crate::core::directory::Directory;
use crate::core::export::{Checker, ExportError, Line, Place, Summary};
use crate::core::hex;
use crate::core::keys::SigningKey;
use crate::node::store::{Store, StoreError};

// ---------------------------------------------------------------------------------------
// Writing

/// Who signs the checkpoint that closes an export, and when. It is signed unchained
/// ([`Checkpoint::sign_unchained`]): a statement about the stopped node's chain for this
/// export, not one of the node's issued checkpoints, which a peer would otherwise see
/// contradicted by the node's next one (both would follow the same predecessor).
#[derive(Debug)]
pub struct Closing<'a> {
    /// The node's signing key.
    pub key: &'a SigningKey,
    /// The node's center.
    pub node: &'a str,
    /// Now (RFC 3339, UTC).
    pub at: &'a str,
}

/// What [`write()`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Entry lines.
    pub entries: u64,
    /// Checkpoint lines, the closing one included.
    pub checkpoints: u64,
    /// The first exported entry (`--since`).
    pub since: u64,
    /// Entries in the node's whole chain.
    pub length: u64,
    /// Whether a closing checkpoint was signed.
    pub closed: bool,
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store could not be read.
    #[error("{0}")]
    Read(String),
    /// The chain on disk is broken: the node's key must not vouch for it.
    #[error(
        "{0}; not exporting a broken chain, which the closing checkpoint would vouch for \
         (`plusgate audit verify --config` shows the same)"
    )]
    Chain(ChainError),
    /// A stored checkpoint does not fit the chain on disk.
    #[error("{0}")]
    Checkpoint(String),
    /// `--since` is beyond the chain's end.
    #[error("--since {since} is beyond the end of the audit chain, which has {length} entries")]
    SinceBeyondEnd {
        /// The `--since` given.
        since: u64,
        /// Entries in the chain.
        length: u64,
    },
    /// The export file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Writes the export of a chain: `entries` from entry 0 (those before `since` are read and
/// checked, not written), `checkpoints` in order of length, then, given `closing`, a
/// checkpoint signed now over the head after the last entry. Refuses a broken chain and
/// stored checkpoints that do not match it.
pub fn write<E: fmt::Display>(
    entries: impl IntoIterator<Item = Result<AuditEntry, E>>,
    checkpoints: impl IntoIterator<Item = Result<Checkpoint, E>>,
    since: u64,
    closing: Option<&Closing<'_>>,
    out: &mut impl Write,
) -> Result<Written, WriteError> {
    let io = |source| WriteError::Io {
        path: PathBuf::from("the export"),
        source,
    };
    let mut checkpoints = checkpoints.into_iter().peekable();
    let mut verifier = Verifier::new();
    let mut written = Written {
        entries: 0,
        checkpoints: 0,
        since,
        length: 0,
        closed: false,
    };
    place_checkpoints(&mut checkpoints, verifier.head(), &mut written, out)?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            WriteError::Read(format!(
                "audit entry {}: unreadable: {e}",
                verifier.head().next_seq
            ))
        })?;
        verifier.push(&entry).map_err(WriteError::Chain)?;
        if entry.seq >= since {
            writeln!(out, "{}", Line::Entry(entry).to_json()).map_err(io)?;
            written.entries += 1;
        }
        place_checkpoints(&mut checkpoints, verifier.head(), &mut written, out)?;
    }
    let head = verifier.head();
    if let Some(beyond) = checkpoints.next() {
        let beyond = beyond.map_err(|e| WriteError::Read(format!("stored checkpoint: {e}")))?;
        return Err(WriteError::Checkpoint(format!(
            "the node signed a checkpoint for {} entries, but its audit chain now has only {}: \
             entries were removed after it was signed",
            beyond.length, head.next_seq
        )));
    }
    if since > head.next_seq {
        return Err(WriteError::SinceBeyondEnd {
            since,
            length: head.next_seq,
        });
    }
    if let Some(closing) = closing {
        let checkpoint = Checkpoint::sign_unchained(closing.key, closing.node, head, closing.at);
        writeln!(out, "{}", Line::Checkpoint(checkpoint).to_json()).map_err(io)?;
        written.checkpoints += 1;
        written.closed = true;
    }
    written.length = head.next_seq;
    Ok(written)
}

/// Writes the stored checkpoints that end at `head` (checking they name its hash), if they
/// are for at least `since` entries.
fn place_checkpoints<E: fmt::Display>(
    checkpoints: &mut Peekable<impl Iterator<Item = Result<Checkpoint, E>>>,
    head: &Head,
    written: &mut Written,
    out: &mut impl Write,
) -> Result<(), WriteError> {
    while checkpoints
        .peek()
        .is_some_and(|c| c.as_ref().map_or(true, |c| c.length <= head.next_seq))
    {
        let Some(checkpoint) = checkpoints.next() else {
            break;
        };
        let checkpoint =
            checkpoint.map_err(|e| WriteError::Read(format!("stored checkpoint: {e}")))?;
        if checkpoint.length != head.next_seq {
            return Err(WriteError::Checkpoint(format!(
                "stored checkpoint for {} entries comes after the one for {} (out of order)",
                checkpoint.length, head.next_seq
            )));
        }
        if checkpoint.head != hex::encode(&head.hash) {
            return Err(WriteError::Checkpoint(format!(
                "the node signed a checkpoint for {} entries with head {}, but its audit chain \
                 now hashes to {} there: the chain was rewritten after it was signed",
                checkpoint.length,
                checkpoint.head,
                hex::encode(&head.hash)
            )));
        }
        if checkpoint.length >= written.since {
            writeln!(out, "{}", Line::Checkpoint(checkpoint).to_json()).map_err(|source| {
                WriteError::Io {
                    path: PathBuf::from("the export"),
                    source,
                }
            })?;
            written.checkpoints += 1;
        }
    }
    Ok(())
}

/// Why a stopped node's store could not be opened for reading. The operator's to fix: a
/// wrong config, or a node still running (stop it, then try again).
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// The data directory is not there.
    #[error("data directory {} does not exist (has the node ever run?)", .0.display())]
    Missing(PathBuf),
    /// Another process (the node) holds the store's lock.
    #[error(
        "data directory {} is locked by another process: is the node still running? sled lets \
         one process at a time open it, so stop the node first ({source})",
        .path.display()
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The store's error.
        source: StoreError,
    },
    /// The store could not be opened otherwise.
    #[error("{0}")]
    Other(StoreError),
}

/// Opens a stopped node's store for reading; the error says when the node still runs.
pub fn open_store(data_dir: &Path) -> Result<Store, StoreOpenError> {
    if !data_dir.is_dir() {
        return Err(StoreOpenError::Missing(data_dir.to_owned()));
    }
    Store::open(data_dir).map_err(|e| match e {
        StoreError::InUse { .. } => StoreOpenError::Locked {
            path: data_dir.to_owned(),
            source: e,
        },
        e => StoreOpenError::Other(e),
    })
}

/// Writes the export of `store` to `out` through a temporary file next to it and a rename,
/// so `out` is either the complete export or not there (or the previous one).
pub fn export_to_file(
    store: &Store,
    since: u64,
    closing: Option<&Closing<'_>>,
    out: &Path,
) -> Result<Written, WriteError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteError::Io { path, source }
    };
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut buffered = std::io::BufWriter::new(file);
    let total = store.audit_head().ok().flatten().map(|last| last.seq + 1);
    let mut progress =
        crate::cli::progress::Progress::new("exporting the audit chain", total, "entries");
    let mut seen = 0u64;
    let entries = store.audit_entries().inspect(|_| {
        seen += 1;
        progress.set(seen);
    });
    let result = write(entries, store.checkpoints(), since, closing, &mut buffered)
        .map_err(|e| match e {
            WriteError::Io { source, .. } => io(&tmp)(source),
            other => other,
        })
        .and_then(|written| {
            let file = buffered
                .into_inner()
                .map_err(|e| io(&tmp)(e.into_error()))?;
            file.sync_all().map_err(io(&tmp))?;
            Ok(written)
        });
    match result {
        Ok(written) => {
            std::fs::rename(&tmp, out).map_err(io(out))?;
            // Make the rename itself durable; best effort (not every platform opens folders).
            let folder = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if let Ok(folder) = std::fs::File::open(folder) {
                let _ = folder.sync_all();
            }
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading

/// Reads an export line by line and checks it against the node signing keys in `directory`
/// ([`Checker`]); the error names the first bad place.
pub fn verify(mut lines: impl BufRead, directory: &Directory) -> Result<Summary, ExportError> {
    let mut check = Checker::new(directory);
    let mut number = 0;
    let mut buf = Vec::new();
    loop {
        number += 1;
        buf.clear();
        let read = lines.read_until(b'\n', &mut buf).map_err(|e| ExportError {
            place: Place::Line {
                line: number,
                after: check.last_seq(),
            },
            problem: format!("cannot read: {e}"),
        })?;
        if read == 0 {
            break;
        }
        let mut line = buf.as_slice();
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        check.line(number, line)?;
    }
    check.finish()
}

#[cfg(test)]
mod tests;
