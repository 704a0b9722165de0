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

/// Who signs the checkpoint that closes an export, and when.
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
        let checkpoint = Checkpoint::sign(closing.key, closing.node, head, closing.at);
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
    #[error("{0} (the data directory can be read only while the node is stopped)")]
    Other(StoreError),
}

/// Opens a stopped node's store for reading; the error says when the node still runs.
pub fn open_store(data_dir: &Path) -> Result<Store, StoreOpenError> {
    if !data_dir.is_dir() {
        return Err(StoreOpenError::Missing(data_dir.to_owned()));
    }
    Store::open(data_dir).map_err(|e| {
        if e.to_string().contains("could not acquire lock") {
            StoreOpenError::Locked {
                path: data_dir.to_owned(),
                source: e,
            }
        } else {
            StoreOpenError::Other(e)
        }
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
    let result = write(
        store.audit_entries(),
        store.checkpoints(),
        since,
        closing,
        &mut buffered,
    )
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
mod tests {
    use super::*;

    const AT: &str = "2026-11-23T12:00:00Z";

    use crate::core::audit::test_event as event;

    /// A node's chain of ten entries, its stored checkpoints for 4 and 8 entries, its key,
    /// and a directory listing it (and `gangseo`, with another key).
    struct Node {
        key: SigningKey,
        other: SigningKey,
        entries: Vec<AuditEntry>,
        stored: Vec<Checkpoint>,
        directory: Directory,
    }

    fn node() -> Node {
        let key = SigningKey::generate().expect("key").0;
        let other = SigningKey::generate().expect("key").0;
        let mut head = Head::GENESIS;
        let mut entries = Vec::new();
        let mut stored = Vec::new();
        for n in 0..10 {
            entries.push(head.append(event(n)));
            if head.next_seq % 4 == 0 {
                let at = format!("2026-11-23T11:00:{n:02}Z");
                stored.push(Checkpoint::sign(&key, "suwon", &head, &at));
            }
        }
        let center = |name: &str, port: u16, key: &SigningKey| {
            serde_json::json!({
                "url": format!("https://127.0.0.1:{port}"),
                "node": format!("urn:plusgate:node:{name}"),
                "signing_key": key.public_key().to_hex(),
                "agencies": {}
            })
        };
        let unsigned = serde_json::json!({
            "version": 1,
            "issued_at": "2026-11-01T00:00:00Z",
            "centers": {"suwon": center("suwon", 7443, &key), "gangseo": center("gangseo", 7444, &other)}
        });
        let authority = SigningKey::generate().expect("key").0;
        let signed = crate::core::directory::sign(unsigned.to_string().as_bytes(), &authority)
            .expect("sign directory");
        let directory = Directory::from_signed_bytes(&signed, &authority.public_key())
            .expect("directory verifies");
        Node {
            key,
            other,
            entries,
            stored,
            directory,
        }
    }

    impl Node {
        /// The export from `since`, as lines without their newlines.
        fn export(&self, since: u64) -> Vec<String> {
            let mut out = Vec::new();
            let closing = Closing {
                key: &self.key,
                node: "suwon",
                at: AT,
            };
            write(
                self.entries.iter().cloned().map(Ok::<_, String>),
                self.stored.iter().cloned().map(Ok::<_, String>),
                since,
                Some(&closing),
                &mut out,
            )
            .expect("export");
            let text = String::from_utf8(out).expect("utf-8");
            assert!(text.ends_with('\n'));
            text.lines().map(str::to_owned).collect()
        }

        fn verify(&self, lines: &[String]) -> Result<Summary, ExportError> {
            let mut text = lines.join("\n");
            text.push('\n');
            verify(text.as_bytes(), &self.directory)
        }

        /// Asserts the export is refused at `line` (from 1) with `needle` in the problem.
        #[track_caller]
        fn refused(&self, lines: &[String], line: u64, needle: &str) -> ExportError {
            let err = self.verify(lines).expect_err("must be refused");
            assert_eq!(err.place.line(), Some(line), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
            err
        }

        /// The head after the first `length` entries.
        fn head(&self, length: usize) -> Head {
            if length == 0 {
                return Head::GENESIS;
            }
            Head::after(&self.entries[length - 1]).expect("entry")
        }
    }

    /// The good export from 0, line by line:
    /// 1–4 entries 0–3, 5 checkpoint(4), 6–9 entries 4–7, 10 checkpoint(8), 11–12 entries
    /// 8–9, 13 the closing checkpoint(10).
    #[test]
    fn a_good_export_verifies() {
        let node = node();
        let lines = node.export(0);
        assert_eq!(lines.len(), 13);
        assert!(lines[4].starts_with("{\"checkpoint\":{\"node\":\"suwon\",\"length\":4,"));
        assert!(lines[12].starts_with("{\"checkpoint\":{\"node\":\"suwon\",\"length\":10,"));
        assert!(lines[0].starts_with("{\"entry\":{\"seq\":0,"));
        let summary = node.verify(&lines).expect("verifies");
        assert_eq!(
            summary,
            Summary {
                node: "suwon".into(),
                first_seq: 0,
                entries: 10,
                checkpoints: 3,
                length: 10,
                head: node.entries[9].hash.clone(),
                signed_at: AT.into(),
            }
        );
        assert!(
            summary.to_string().starts_with(
                "audit export ok: 10 entries (seq 0 to 9) of node suwon, 3 checkpoints"
            ),
            "{summary}"
        );
        // Windows line ends do not matter.
        let crlf = lines.join("\r\n") + "\r\n";
        assert_eq!(verify(crlf.as_bytes(), &node.directory), Ok(summary));
    }

    #[test]
    fn the_writer_counts_and_places_what_it_writes() {
        let node = node();
        let mut out = Vec::new();
        let written = write(
            node.entries.iter().cloned().map(Ok::<_, String>),
            node.stored.iter().cloned().map(Ok::<_, String>),
            5,
            None,
            &mut out,
        )
        .expect("export");
        assert_eq!(
            written,
            Written {
                entries: 5,
                checkpoints: 1,
                since: 5,
                length: 10,
                closed: false
            }
        );
        // Without a closing checkpoint the end is not vouched for.
        let text = String::from_utf8(out).expect("utf-8");
        let err = verify(text.as_bytes(), &node.directory).expect_err("uncovered");
        assert_eq!(err.place, Place::Entry { line: 5, seq: 8 });
        assert!(
            err.problem
                .starts_with("entries after 7 are not covered by a signed checkpoint"),
            "{err}"
        );
    }

    #[test]
    fn an_export_from_a_later_entry_verifies_with_or_without_an_anchor() {
        let node = node();
        // From 4: the stored checkpoint for 4 entries comes first, as the anchor.
        let lines = node.export(4);
        assert!(lines[0].starts_with("{\"checkpoint\":{\"node\":\"suwon\",\"length\":4,"));
        assert!(lines[1].starts_with("{\"entry\":{\"seq\":4,"));
        let summary = node.verify(&lines).expect("verifies");
        assert_eq!((summary.first_seq, summary.entries), (4, 6));
        assert_eq!(summary.checkpoints, 3);

        // From 5: no anchor; the checkpoint for 8 entries vouches for entry 5's `prev`.
        let lines = node.export(5);
        assert!(lines[0].starts_with("{\"entry\":{\"seq\":5,"));
        let summary = node.verify(&lines).expect("verifies");
        assert_eq!(
            (summary.first_seq, summary.entries, summary.length),
            (5, 5, 10)
        );

        // From the end: only the closing checkpoint.
        let lines = node.export(10);
        assert_eq!(lines.len(), 1);
        let summary = node.verify(&lines).expect("verifies");
        assert_eq!((summary.entries, summary.length), (0, 10));
        assert!(summary
            .to_string()
            .contains("no entries after the first 10"));

        // Beyond the end: refused.
        let err = write(
            node.entries.iter().cloned().map(Ok::<_, String>),
            node.stored.iter().cloned().map(Ok::<_, String>),
            11,
            None,
            &mut Vec::new(),
        )
        .expect_err("beyond the end");
        assert!(matches!(
            err,
            WriteError::SinceBeyondEnd {
                since: 11,
                length: 10
            }
        ));

        // The first entry must be the one the anchor names, and link to its head.
        let mut lines = node.export(4);
        lines.remove(1);
        node.refused(
            &lines,
            2,
            "should be seq 4, as the checkpoint on line 1 says",
        );
        let mut lines = node.export(4);
        let forged = Checkpoint::sign(
            &node.key,
            "suwon",
            &Head {
                next_seq: 4,
                hash: [9; 32],
            },
            AT,
        );
        lines[0] = Line::Checkpoint(forged).to_json();
        node.refused(&lines, 2, "does not link to the checkpoint on line 1");
    }

    #[test]
    fn a_flipped_byte_anywhere_in_an_entry_or_checkpoint_is_named_at_its_line() {
        let node = node();
        let good = node.export(0);
        // Line 7 is entry 5, line 10 the checkpoint for 8 entries.
        for (index, line) in [(6, 7), (9, 10)] {
            for position in 0..good[index].len() {
                for mask in [0x01u8, 0x20] {
                    let mut bytes = good[index].clone().into_bytes();
                    bytes[position] ^= mask;
                    let mut text = good.join("\n").into_bytes();
                    let start: usize = good[..index].iter().map(|l| l.len() + 1).sum();
                    text[start..start + bytes.len()].copy_from_slice(&bytes);
                    text.push(b'\n');
                    let err = verify(text.as_slice(), &node.directory).expect_err("detected");
                    assert_eq!(
                        err.place.line(),
                        Some(line),
                        "byte {position} ^ {mask:#x}: {err}"
                    );
                }
            }
        }
        // A changed value names the entry and says what is wrong with it.
        let mut lines = good.clone();
        lines[6] = lines[6].replace("suwon/welfare", "suwon/welfarf");
        let err = node.refused(&lines, 7, "content does not match its hash (altered)");
        assert_eq!(err.place, Place::Entry { line: 7, seq: 5 });
        // A broken line is named as a line.
        let mut lines = good.clone();
        lines[6] = lines[6].replacen('"', "#", 3);
        let err = node.refused(&lines, 7, "not an export line");
        assert_eq!(
            err.place,
            Place::Line {
                line: 7,
                after: Some(4)
            }
        );
        // The same value written differently (a tool reformatted it) is not the export.
        let mut lines = good;
        lines[6] = lines[6].replacen(",", ", ", 1);
        node.refused(&lines, 7, "not byte for byte");
    }

    #[test]
    fn a_removed_entry_is_named() {
        let node = node();
        let mut lines = node.export(0);
        lines.remove(6); // entry 5
        let err = node.refused(&lines, 7, "out of order");
        assert_eq!(err.place, Place::Entry { line: 7, seq: 6 });
        assert!(err.problem.ends_with("expected seq 5"), "{err}");

        // The entry right before a checkpoint: the checkpoint now stands after entry 2.
        let mut lines = node.export(0);
        lines.remove(3); // entry 3
        let err = node.refused(&lines, 4, "entries 3 to 3 missing");
        assert_eq!(err.place, Place::Checkpoint { line: 4, length: 4 });

        // A removed checkpoint leaves a verifiable export (the next one covers more).
        let mut lines = node.export(0);
        lines.remove(4);
        assert_eq!(node.verify(&lines).expect("verifies").checkpoints, 2);
    }

    #[test]
    fn an_inserted_entry_is_named() {
        let node = node();
        // A copy of entry 5 after itself.
        let mut lines = node.export(0);
        lines.insert(7, lines[6].clone());
        let err = node.refused(&lines, 8, "out of order");
        assert_eq!(err.place, Place::Entry { line: 8, seq: 5 });

        // A forged entry that links to entry 5 and hashes right: the break is at the next
        // entry, whose seq and prev no longer fit.
        let mut head = node.head(6);
        let forged = head.append(event(99));
        let mut lines = node.export(0);
        lines.insert(7, Line::Entry(forged).to_json());
        let err = node.refused(&lines, 9, "out of order");
        assert_eq!(err.place, Place::Entry { line: 9, seq: 6 });
    }

    #[test]
    fn swapped_lines_are_named() {
        let node = node();
        let mut lines = node.export(0);
        lines.swap(5, 6); // entries 4 and 5
        let err = node.refused(&lines, 6, "out of order");
        assert_eq!(err.place, Place::Entry { line: 6, seq: 5 });
        assert!(err.problem.ends_with("expected seq 4"), "{err}");

        // A checkpoint swapped with the entry before it.
        let mut lines = node.export(0);
        lines.swap(3, 4);
        let err = node.refused(&lines, 4, "or the checkpoint was moved");
        assert_eq!(err.place, Place::Checkpoint { line: 4, length: 4 });

        // … and with the entry after it.
        let mut lines = node.export(0);
        lines.swap(4, 5);
        node.refused(
            &lines,
            6,
            "belongs right after entry seq 3, but comes after entry seq 4",
        );
    }

    #[test]
    fn a_truncated_tail_is_named() {
        let node = node();
        // The last two entries cut, the closing checkpoint kept.
        let mut lines = node.export(0);
        lines.drain(10..12);
        let err = node.refused(
            &lines,
            11,
            "checkpoint signed for 10 entries, export ends after 7: entries 8 to 9 are missing",
        );
        assert_eq!(
            err.place,
            Place::Checkpoint {
                line: 11,
                length: 10
            }
        );

        // The closing checkpoint cut too (and with it any proof of the end).
        let mut lines = node.export(0);
        lines.truncate(12);
        let err = node.refused(
            &lines,
            11,
            "entries after 7 are not covered by a signed checkpoint",
        );
        assert_eq!(err.place, Place::Entry { line: 11, seq: 8 });
        let mut lines = node.export(0);
        lines.truncate(11);
        node.refused(&lines, 11, "entries after 7 are not covered");

        // Cut right after a stored checkpoint, an export cannot tell it was longer: it
        // verifies, and the summary says how far it is vouched for, and since when.
        let mut lines = node.export(0);
        lines.truncate(10);
        let summary = node.verify(&lines).expect("looks like an older export");
        assert_eq!(summary.length, 8);
        assert_eq!(summary.signed_at, "2026-11-23T11:00:07Z");

        // Nothing left at all.
        let err = verify(&b""[..], &node.directory).expect_err("empty");
        assert_eq!(
            err.to_string(),
            "the export: is empty: no entries and no checkpoints"
        );
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_named() {
        let node = node();
        let mut lines = node.export(0);
        lines[4] =
            Line::Checkpoint(Checkpoint::sign(&node.other, "suwon", &node.head(4), AT)).to_json();
        let err = node.refused(
            &lines,
            5,
            "signature does not verify against node suwon's signing key in the directory",
        );
        assert_eq!(err.place, Place::Checkpoint { line: 5, length: 4 });

        // The closing one, too.
        let mut lines = node.export(0);
        lines[12] =
            Line::Checkpoint(Checkpoint::sign(&node.other, "suwon", &node.head(10), AT)).to_json();
        node.refused(&lines, 13, "signature does not verify");

        // Signed as another node of the directory, with that node's key: not this chain's.
        let mut lines = node.export(0);
        lines[9] =
            Line::Checkpoint(Checkpoint::sign(&node.other, "gangseo", &node.head(8), AT)).to_json();
        node.refused(&lines, 10, "is signed as node `gangseo`");

        // A node the directory does not list.
        let mut lines = node.export(0);
        let stranger = Checkpoint::sign(&node.key, "jeongeup", &node.head(4), AT);
        lines[4] = Line::Checkpoint(stranger).to_json();
        node.refused(
            &lines,
            5,
            "names node `jeongeup`, which the directory (version 1)",
        );
    }

    #[test]
    fn a_checkpoint_whose_head_does_not_match_is_named() {
        let node = node();
        let wrong = Head {
            next_seq: 4,
            hash: [7; 32],
        };
        let mut lines = node.export(0);
        lines[4] = Line::Checkpoint(Checkpoint::sign(&node.key, "suwon", &wrong, AT)).to_json();
        let err = node.refused(&lines, 5, "but that entry as exported hashes to");
        assert_eq!(err.place, Place::Checkpoint { line: 5, length: 4 });

        // Entries rewritten consistently from entry 2 on, without the node's key: every
        // entry links and hashes, but the first checkpoint after the rewrite no longer fits.
        let mut head = node.head(2);
        let mut lines = node.export(0);
        for (seq, index) in [(2, 2), (3, 3)] {
            let mut event = event(seq);
            event.to = "suwon/finance".into();
            lines[index] = Line::Entry(head.append(event)).to_json();
        }
        node.refused(&lines, 5, "signs head");
    }

    #[test]
    fn a_rolled_back_checkpoint_is_named() {
        let node = node();
        let mut lines = node.export(0);
        let old = lines[4].clone();
        lines.insert(12, old); // checkpoint(4) again after entry 9
        node.refused(&lines, 13, "rolled back");
        // The same checkpoint twice in a row is harmless.
        let mut lines = node.export(0);
        lines.insert(5, lines[4].clone());
        node.verify(&lines).expect("a repeated checkpoint");
    }

    #[test]
    fn the_writer_refuses_a_broken_chain_and_checkpoints_that_do_not_fit() {
        let node = node();
        let closing = Closing {
            key: &node.key,
            node: "suwon",
            at: AT,
        };
        let run = |entries: Vec<AuditEntry>, stored: Vec<Checkpoint>| {
            write(
                entries.into_iter().map(Ok::<_, String>),
                stored.into_iter().map(Ok::<_, String>),
                0,
                Some(&closing),
                &mut Vec::new(),
            )
        };
        let mut altered = node.entries.clone();
        altered[3].to = "suwon/finance".into();
        let err = run(altered, node.stored.clone()).expect_err("broken chain");
        assert!(
            matches!(err, WriteError::Chain(ChainError { seq: 3, .. })),
            "{err}"
        );

        let mut stored = node.stored.clone();
        stored[0] = Checkpoint::sign(
            &node.key,
            "suwon",
            &Head {
                next_seq: 4,
                hash: [1; 32],
            },
            AT,
        );
        let err = run(node.entries.clone(), stored).expect_err("rewritten");
        assert!(
            err.to_string().contains("rewritten after it was signed"),
            "{err}"
        );

        let err = run(node.entries[..6].to_vec(), node.stored.clone()).expect_err("cut");
        assert!(
            err.to_string()
                .contains("checkpoint for 8 entries, but its audit chain now has only 6"),
            "{err}"
        );

        let err = write(
            node.entries.iter().cloned().map(Ok),
            std::iter::once(Err("checksum mismatch")),
            0,
            None,
            &mut Vec::new(),
        )
        .expect_err("unreadable checkpoint");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn load_unverified_reads_a_directory_whose_signature_it_cannot_check() {
        let node = node();
        let folder = tempfile::tempdir().expect("tempdir");
        let path = folder.path().join("directory.json");
        let authority = SigningKey::generate().expect("key").0;
        let unsigned = serde_json::json!({
            "version": 2,
            "issued_at": "2026-11-01T00:00:00Z",
            "centers": {"suwon": {
                "url": "https://127.0.0.1:7443",
                "node": "urn:plusgate:node:suwon",
                "signing_key": node.key.public_key().to_hex(),
                "agencies": {}
            }}
        });
        let signed = crate::core::directory::sign(unsigned.to_string().as_bytes(), &authority)
            .expect("sign");
        std::fs::write(&path, &signed).expect("write");
        let checked = Directory::load(&path, &authority.public_key()).expect("verifies");
        assert_eq!(Directory::load_unverified(&path).expect("loads"), checked);

        // With another authority's signature `load` refuses it; `load_unverified` does not
        // look (which is why the CLI says so).
        let stranger = SigningKey::generate().expect("key").0;
        std::fs::write(
            &path,
            crate::core::directory::sign(unsigned.to_string().as_bytes(), &stranger).expect("sign"),
        )
        .expect("write");
        assert!(Directory::load(&path, &authority.public_key()).is_err());
        let unverified = Directory::load_unverified(&path).expect("loads");
        assert_eq!(unverified.version, 2);

        // Its content is still validated, and errors name the file.
        let invalid = String::from_utf8(
            crate::core::directory::sign(unsigned.to_string().as_bytes(), &stranger).expect("sign"),
        )
        .expect("utf-8")
        .replace("https://127.0.0.1:7443", "http://nowhere");
        std::fs::write(&path, invalid).expect("write");
        let err = Directory::load_unverified(&path).expect_err("invalid url");
        assert!(err.to_string().contains("directory.json"), "{err}");
        assert!(err.to_string().contains("centers.suwon.url"), "{err}");
        std::fs::write(&path, "{").expect("write");
        assert!(Directory::load_unverified(&path).is_err());
    }
}
