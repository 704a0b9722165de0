//! The audit export's format and its offline check: a node's audit chain as JSON Lines
//! for an auditor, with the node's signed checkpoints in place.
//!
//! ```text
//! {"checkpoint":{"node":"suwon","length":2,…}}      anchor (optional) of an export from seq 2
//! {"entry":{"seq":2,…,"prev":"…","hash":"…"}}
//! {"entry":{"seq":3,…}}
//! {"checkpoint":{"node":"suwon","length":4,"head":"<hash of entry 3>","at":"…","signature":"…"}}
//! {"entry":{"seq":4,…}}
//! {"checkpoint":{…,"length":5,…}}                   signed when the export was written
//! ```
//!
//! One line per audit entry from `--since` on, in order; each checkpoint the node stored is
//! placed right after the entry it ends at (entry `length − 1`), and one for exactly
//! `--since` entries may come first, as the anchor. A federated node closes the export with
//! a checkpoint signed at export time over the head after its last entry, so the export's end
//! is vouched for. Lines are compact JSON exactly as [`Line::to_json`] writes them (the
//! writer, which reads the store, is `cli::export`).
//!
//! [`Checker`] checks a file's lines against the signing keys in the federation directory:
//! every line parses and is byte for byte what plusgate writes; the entries are contiguous,
//! each links to the one before and matches its own hash ([`Verifier`]; an export that starts
//! after entry 0 is taken from its first entry's `prev`, which the first checkpoint then
//! vouches for); each checkpoint is by the same node, its signature verifies, it is at least
//! as long as the one before ([`Checkpoint::continues`]), sits right after the entry it ends
//! at and names that entry's hash as verified; and the last entry is covered by a checkpoint.
//!
//! What it cannot know: whether the node had entries after the export's last checkpoint when
//! the export was written. An export cut right after one of the node's stored checkpoints
//! looks like an export written at that time, so the summary names the last checkpoint's
//! length and time, to compare with a later checkpoint of the same node (a peer's copy, or the
//! next export). Likewise an export missing its first lines looks like one written with a
//! later `--since`; the summary names the first entry. And checkpoints are checked against
//! the key the given directory lists for their node: after the node's key changed, older
//! checkpoints need a directory of their time.
//!
//! Pure: the caller reads the file and hands over its lines.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::audit::{AuditEntry, Checkpoint, Verifier};
use crate::core::directory::Directory;
use crate::core::hex;
use crate::core::identity::CenterId;
use crate::core::keys::PublicKey;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Line {
    /// `{"entry": {…}}`: an audit entry.
    Entry(AuditEntry),
    /// `{"checkpoint": {…}}`: a checkpoint the node signed.
    Checkpoint(Checkpoint),
}

impl Line {
    /// The line as an export holds it: compact JSON, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("audit entries and checkpoints always serialize")
    }
}

/// Where in an export a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// An entry line.
    Entry {
        /// Line number, from 1.
        line: u64,
        /// The `seq` the line holds.
        seq: u64,
    },
    /// A checkpoint line.
    Checkpoint {
        /// Line number, from 1.
        line: u64,
        /// The `length` the line holds.
        length: u64,
    },
    /// A line that is neither (unreadable, not JSON, neither shape).
    Line {
        /// Line number, from 1.
        line: u64,
        /// The last entry before it, if any.
        after: Option<u64>,
    },
    /// The file as a whole.
    Whole,
}

impl Place {
    /// The line number, if the problem is on one line.
    pub fn line(&self) -> Option<u64> {
        match self {
            Place::Entry { line, .. }
            | Place::Checkpoint { line, .. }
            | Place::Line { line, .. } => Some(*line),
            Place::Whole => None,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Entry { line, seq } => write!(f, "line {line} (entry seq {seq})"),
            Place::Checkpoint { line, length } => {
                write!(f, "line {line} (checkpoint for {length} entries)")
            }
            Place::Line {
                line,
                after: Some(seq),
            } => write!(f, "line {line} (after entry seq {seq})"),
            Place::Line { line, after: None } => write!(f, "line {line}"),
            Place::Whole => f.write_str("the export"),
        }
    }
}

/// The first bad place of an export and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {problem}")]
pub struct ExportError {
    /// Where.
    pub place: Place,
    /// What.
    pub problem: String,
}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The node whose chain it is (the checkpoints' signer).
    pub node: String,
    /// The first entry's seq (with no entries: the length of the chain before the export).
    pub first_seq: u64,
    /// Entry lines.
    pub entries: u64,
    /// Checkpoint lines.
    pub checkpoints: u64,
    /// The chain length the last checkpoint vouches for (the last entry's seq + 1).
    pub length: u64,
    /// The head hash it vouches for.
    pub head: String,
    /// When the last checkpoint was signed.
    pub signed_at: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries == 0 {
            write!(
                f,
                "audit export ok: no entries after the first {}",
                self.length
            )?;
        } else {
            write!(
                f,
                "audit export ok: {} entries (seq {} to {})",
                self.entries,
                self.first_seq,
                self.length - 1
            )?;
        }
        write!(
            f,
            " of node {}, {} checkpoints; the last, signed at {}, vouches for {} entries with \
             head {}",
            self.node, self.checkpoints, self.signed_at, self.length, self.head
        )
    }
}

/// A checkpoint for more entries than the export holds at that point: truncation if only
/// checkpoints follow it, otherwise missing entries or a moved checkpoint.
struct Gap {
    line: u64,
    length: u64,
    /// The entries before the checkpoint end before this seq.
    next: u64,
}

/// Checks an export line by line (feed it every line, then [`Checker::finish`]); the
/// first bad place ends the check.
pub struct Checker<'d> {
    directory: &'d Directory,
    /// The node the checkpoints are by, and its key.
    signer: Option<(String, PublicKey)>,
    /// Checkpoints before the first entry.
    anchors: Vec<(u64, Checkpoint)>,
    /// After the first entry.
    chain: Option<Verifier>,
    first_seq: u64,
    entries: u64,
    checkpoints: u64,
    last_checkpoint: Option<(u64, Checkpoint)>,
    /// The first entry no checkpoint covers yet: line, seq.
    uncovered: Option<(u64, u64)>,
    gap: Option<Gap>,
}

impl<'d> Checker<'d> {
    /// A check against the node keys in `directory`.
    pub fn new(directory: &'d Directory) -> Checker<'d> {
        Checker {
            directory,
            signer: None,
            anchors: Vec::new(),
            chain: None,
            first_seq: 0,
            entries: 0,
            checkpoints: 0,
            last_checkpoint: None,
            uncovered: None,
            gap: None,
        }
    }

    /// The seq of the last entry checked so far.
    pub fn last_seq(&self) -> Option<u64> {
        self.chain.as_ref().map(|v| v.head().next_seq - 1)
    }

    /// Checks line number `line` (from 1), without its line end.
    pub fn line(&mut self, line: u64, bytes: &[u8]) -> Result<(), ExportError> {
        let parsed = parse(bytes);
        if let Some(gap) = &self.gap {
            // Only checkpoints may follow a checkpoint beyond the entries (the stored one
            // and the closing one for the same length), and only at the end.
            if let Ok(Line::Checkpoint(_)) = parsed {
                self.checkpoints += 1;
                return Ok(());
            }
            return Err(ExportError {
                place: Place::Checkpoint {
                    line: gap.line,
                    length: gap.length,
                },
                problem: format!(
                    "checkpoint signed for {} entries, but the entries before it end at seq {} \
                     (entries {} to {} missing, or the checkpoint was moved)",
                    gap.length,
                    gap.next - 1,
                    gap.next,
                    gap.length - 1
                ),
            });
        }
        let parsed = parsed.map_err(|problem| ExportError {
            place: Place::Line {
                line,
                after: self.last_seq(),
            },
            problem: problem.to_string(),
        })?;
        if serde_json::to_vec(&parsed).ok().as_deref() != Some(bytes) {
            return Err(ExportError {
                place: place_of(line, &parsed),
                problem: "is not byte for byte what plusgate writes (altered, or rewritten by \
                          another tool)"
                    .into(),
            });
        }
        match parsed {
            Line::Entry(entry) => self.entry(line, entry),
            Line::Checkpoint(checkpoint) => self.checkpoint(line, checkpoint),
        }
    }

    fn entry(&mut self, line: u64, entry: AuditEntry) -> Result<(), ExportError> {
        let bad = |problem: String| ExportError {
            place: Place::Entry {
                line,
                seq: entry.seq,
            },
            problem,
        };
        if self.chain.is_none() {
            let verifier = if entry.seq == 0 {
                Verifier::new()
            } else {
                let prev = hex::decode_array(&entry.prev)
                    .ok_or_else(|| bad("prev is not 64 hex digits".into()))?;
                Verifier::resume(entry.seq, prev)
            };
            for (anchor_line, anchor) in &self.anchors {
                if anchor.length != entry.seq {
                    return Err(bad(format!(
                        "the export's first entry should be seq {}, as the checkpoint on line \
                         {anchor_line} says (entries missing or moved)",
                        anchor.length
                    )));
                }
                if anchor.head != hex::encode(&verifier.head().hash) {
                    return Err(bad(format!(
                        "does not link to the checkpoint on line {anchor_line}: its prev is not \
                         the head that checkpoint signed"
                    )));
                }
            }
            self.first_seq = entry.seq;
            self.chain = Some(verifier);
        }
        let verifier = self.chain.as_mut().expect("set above");
        let expected = verifier.head().next_seq;
        if let Err(e) = verifier.push(&entry) {
            let mut problem = e.problem.to_owned();
            if entry.seq != expected {
                problem.push_str(&format!(", expected seq {expected}"));
            }
            return Err(bad(problem));
        }
        self.entries += 1;
        if self.uncovered.is_none() {
            self.uncovered = Some((line, entry.seq));
        }
        Ok(())
    }

    fn checkpoint(&mut self, line: u64, checkpoint: Checkpoint) -> Result<(), ExportError> {
        let bad = |problem: String| ExportError {
            place: Place::Checkpoint {
                line,
                length: checkpoint.length,
            },
            problem,
        };
        let key = match &self.signer {
            Some((node, key)) => {
                if checkpoint.node != *node {
                    return Err(bad(format!(
                        "is signed as node `{}`, but the export's earlier checkpoints are node \
                         `{node}`'s",
                        checkpoint.node
                    )));
                }
                key
            }
            None => {
                let id = CenterId::parse(&checkpoint.node)
                    .map_err(|e| bad(format!("names node `{}`: {e}", checkpoint.node)))?;
                let center = self.directory.center(&id).ok_or_else(|| {
                    bad(format!(
                        "names node `{}`, which the directory (version {}) does not list",
                        checkpoint.node, self.directory.version
                    ))
                })?;
                &self
                    .signer
                    .insert((checkpoint.node.clone(), center.signing_key.clone()))
                    .1
            }
        };
        // Hex of either case decodes to the same signature: only the one spelling plusgate
        // writes is accepted, so that no byte of a checkpoint line can change unnoticed.
        if checkpoint.signature.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad(
                "signature is not written in lower-case hexadecimal as plusgate writes it \
                 (altered)"
                    .into(),
            ));
        }
        if !checkpoint.verify(key) {
            return Err(bad(format!(
                "signature does not verify against node {}'s signing key in the directory",
                checkpoint.node
            )));
        }
        if let Some((earlier_line, earlier)) = &self.last_checkpoint {
            checkpoint
                .continues(earlier)
                .map_err(|e| bad(format!("{e} (the earlier one is on line {earlier_line})")))?;
        }
        self.checkpoints += 1;
        match &self.chain {
            None => self.anchors.push((line, checkpoint.clone())),
            Some(verifier) => {
                let head = verifier.head();
                let next = head.next_seq;
                if checkpoint.length == next {
                    if checkpoint.head != hex::encode(&head.hash) {
                        return Err(bad(format!(
                            "signs head {} for entry seq {}, but that entry as exported hashes \
                             to {} (the entries before it were rewritten, or the checkpoint is \
                             of another chain)",
                            checkpoint.head,
                            next - 1,
                            hex::encode(&head.hash)
                        )));
                    }
                    self.uncovered = None;
                } else if checkpoint.length < next {
                    return Err(bad(if checkpoint.length <= self.first_seq {
                        format!(
                            "comes after entry seq {}, but a checkpoint for {} entries belongs \
                             before the export's first entry (seq {}), if anywhere (moved)",
                            next - 1,
                            checkpoint.length,
                            self.first_seq
                        )
                    } else {
                        format!(
                            "belongs right after entry seq {}, but comes after entry seq {} \
                             (moved, or entries inserted before it)",
                            checkpoint.length - 1,
                            next - 1
                        )
                    }));
                } else {
                    self.gap = Some(Gap {
                        line,
                        length: checkpoint.length,
                        next,
                    });
                }
            }
        }
        self.last_checkpoint = Some((line, checkpoint));
        Ok(())
    }

    /// Checks the end of the export; on success, what it holds.
    pub fn finish(self) -> Result<Summary, ExportError> {
        if let Some(gap) = &self.gap {
            return Err(ExportError {
                place: Place::Checkpoint {
                    line: gap.line,
                    length: gap.length,
                },
                problem: format!(
                    "checkpoint signed for {} entries, export ends after {}: entries {} to {} \
                     are missing (truncated)",
                    gap.length,
                    gap.next - 1,
                    gap.next,
                    gap.length - 1
                ),
            });
        }
        let node = self.signer.map(|(node, _)| node).unwrap_or_default();
        match (self.chain, self.last_checkpoint) {
            (None, None) => Err(ExportError {
                place: Place::Whole,
                problem: "is empty: no entries and no checkpoints".into(),
            }),
            (None, Some((_, last))) => {
                // Only anchors: they must all be for the same length, there being no entries
                // between them.
                if let Some((line, longer)) = self
                    .anchors
                    .iter()
                    .find(|(_, a)| a.length != self.anchors[0].1.length)
                {
                    return Err(ExportError {
                        place: Place::Checkpoint {
                            line: *line,
                            length: longer.length,
                        },
                        problem: format!(
                            "checkpoint signed for {} entries, but the export holds no entries \
                             after the first {} (truncated)",
                            longer.length, self.anchors[0].1.length
                        ),
                    });
                }
                Ok(Summary {
                    node,
                    first_seq: last.length,
                    entries: 0,
                    checkpoints: self.checkpoints,
                    length: last.length,
                    head: last.head,
                    signed_at: last.at,
                })
            }
            (Some(verifier), last) => {
                if let Some((line, seq)) = self.uncovered {
                    let what = if seq == 0 {
                        "entries from seq 0 on are not covered by a signed checkpoint".to_owned()
                    } else {
                        format!(
                            "entries after {} are not covered by a signed checkpoint",
                            seq - 1
                        )
                    };
                    return Err(ExportError {
                        place: Place::Entry { line, seq },
                        problem: format!(
                            "{what} (the export ends at entry seq {} without one), so \
                             truncation cannot be ruled out",
                            verifier.head().next_seq - 1
                        ),
                    });
                }
                let (_, last) = last.expect("covered entries have a checkpoint");
                Ok(Summary {
                    node,
                    first_seq: self.first_seq,
                    entries: self.entries,
                    checkpoints: self.checkpoints,
                    length: last.length,
                    head: last.head,
                    signed_at: last.at,
                })
            }
        }
    }
}

fn place_of(line: u64, parsed: &Line) -> Place {
    match parsed {
        Line::Entry(e) => Place::Entry { line, seq: e.seq },
        Line::Checkpoint(c) => Place::Checkpoint {
            line,
            length: c.length,
        },
    }
}

/// Why a line is not an export line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// An empty line.
    #[error("empty line (an export has none)")]
    Empty,
    /// Not JSON, or neither an entry nor a checkpoint.
    #[error(
        "not an export line ({{\"entry\": …}} or {{\"checkpoint\": …}}): {what} at column {column}"
    )]
    NotALine {
        /// What the JSON parser said (without its line number: the line is ours to name).
        what: String,
        /// Where in the line.
        column: usize,
    },
}

fn parse(bytes: &[u8]) -> Result<Line, LineError> {
    if bytes.is_empty() {
        return Err(LineError::Empty);
    }
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json says "at line 1 column N": the line is ours to name.
        let text = e.to_string();
        let what = text.split(" at line ").next().unwrap_or(&text).to_owned();
        LineError::NotALine {
            what,
            column: e.column(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        let (authority, _) = crate::core::keys::SigningKey::generate().expect("key");
        let (node, _) = crate::core::keys::SigningKey::generate().expect("key");
        let unsigned = serde_json::json!({
            "version": 1,
            "issued_at": "2026-11-26T03:00:00Z",
            "centers": {"suwon": {
                "url": "https://127.0.0.1:7443",
                "node": "urn:plusgate:node:suwon",
                "signing_key": node.public_key().to_hex(),
                "agencies": {}
            }}
        });
        let signed = crate::core::directory::sign(unsigned.to_string().as_bytes(), &authority)
            .expect("sign");
        Directory::from_signed_bytes(&signed, &authority.public_key()).expect("directory")
    }

    #[test]
    fn a_line_that_is_not_an_export_line_is_named() {
        let directory = directory();
        for (bytes, needle) in [
            (&b""[..], "empty line"),
            (b"{\"entry\": 1", "not an export line"),
            (b"{\"note\": {}}", "not an export line"),
        ] {
            let err = Checker::new(&directory)
                .line(1, bytes)
                .expect_err("refused");
            assert_eq!(
                err.place,
                Place::Line {
                    line: 1,
                    after: None
                }
            );
            assert!(err.problem.contains(needle), "{err}");
        }
    }

    #[test]
    fn an_empty_export_is_refused() {
        let directory = directory();
        let err = Checker::new(&directory).finish().expect_err("empty");
        assert_eq!(err.place, Place::Whole);
    }
}
