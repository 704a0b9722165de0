//! The anchor: a copy of the newest checkpoint this node issued, kept in a small file of
//! its own (`<data_dir>/audit-anchor`) beside sled's files, and the start-up check that the
//! audit chain still extends it.
//!
//! Deleting the newest entries of the chain together with their checkpoints leaves a store
//! that is consistent in itself: its last entry matches its own hash and its newest
//! checkpoint is covered. The anchor is not in sled, so an edit of the store does not take
//! it along; at start the ledger refuses a chain that does not reach the anchored
//! checkpoint, or a store that no longer holds it ([`AnchorError::Unextended`]). Whoever
//! also deletes the anchor is left to the node's peers, which hold its checkpoints and
//! refuse a later one that does not extend them (`core::audit::checkpoint`).
//!
//! Invariants enforced here:
//! - the anchor never runs ahead of the store: it is written after the group that holds
//!   its checkpoint is durable, and before that checkpoint is published (so before any peer
//!   can see it); a crash in between leaves an older anchor, which the store extends;
//! - it is written whole or not at all: a temporary file, fsynced, renamed over the old
//!   one, then the folder fsynced; it is a versioned, checksummed record (`store::record`)
//!   and its signature is checked against this node's key when read;
//! - it is written once per checkpoint (every `checkpoint_every` entries, or on the
//!   checkpoint timer), so its two fsyncs are rare next to the ledger's one per group.
//!
//! The file lives inside the data directory on purpose: a backup of the folder carries
//! the anchor of its own time, so restoring one starts (its peers then report the entries
//! it lacks as a rollback, which is the truth).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::watch;

use super::CheckpointPolicy;
use crate::core::audit::{Checkpoint, Head};
use crate::core::hex;
use crate::node::store::{record, RecordError, Store, StoreError};

/// The anchor's file name, in the data directory.
pub const ANCHOR_FILE: &str = "audit-anchor";

/// Where this node keeps its newest issued checkpoint outside the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    path: PathBuf,
}

/// Why the ledger will not start on this store: the anchor is unusable, or the chain does
/// not extend the newest checkpoint this node issued. The operator's to look at; starting
/// again finds the same.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The anchor file exists but cannot be read, or cannot be written.
    #[error("audit anchor {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is damaged (checksum, format).
    #[error(
        "audit anchor {}: {source}; it holds the newest checkpoint this node signed, so the \
         node cannot check its audit log against it. Restore the data directory from a \
         backup, or compare the file with the peers' copies of this node's checkpoints",
        .path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: RecordError,
    },
    /// The checkpoint in the file is not this node's (another center, or a signature that
    /// does not verify against this node's key).
    #[error(
        "audit anchor {}: holds a checkpoint of node {node} that this node's signing key \
         did not sign (a file from another node, or forged)",
        .path.display()
    )]
    NotOurs {
        /// The file.
        path: PathBuf,
        /// The checkpoint's `node`.
        node: String,
    },
    /// The audit chain does not extend the newest checkpoint this node issued.
    #[error("{0}")]
    Unextended(Box<Unextended>),
}

/// The newest checkpoint this node issued, and what the store holds instead of what it
/// covers: entries or checkpoints were removed or altered after it was signed.
#[derive(Debug)]
pub struct Unextended {
    /// The checkpoint (from the anchor or, newer, from the store).
    pub checkpoint: Checkpoint,
    /// Where it was found.
    pub source: PathBuf,
    /// Entries in the chain.
    pub chain_len: u64,
    /// Hash of the chain's entry `checkpoint.length - 1`, if there is one.
    pub entry_hash: Option<String>,
    /// Length of the store's newest own checkpoint, if any.
    pub stored: Option<u64>,
}

impl std::fmt::Display for Unextended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.checkpoint;
        write!(
            f,
            "the audit log does not extend the newest checkpoint this node signed: {} \
             entries with head {}, signed at {} (in {}); ",
            c.length,
            c.head,
            c.at,
            self.source.display()
        )?;
        match &self.entry_hash {
            None => write!(f, "the chain has only {} entries", self.chain_len)?,
            Some(h) if *h != c.head => write!(
                f,
                "entry {} of the chain hashes to {h}, not to the head signed",
                c.length - 1
            )?,
            Some(_) => match self.stored {
                Some(n) => write!(
                    f,
                    "the store no longer holds that checkpoint (its newest covers {n} entries)"
                )?,
                None => write!(f, "the store holds no checkpoint")?,
            },
        }
        write!(
            f,
            ". Entries or checkpoints were removed or altered after they were signed, and \
             peers may hold that checkpoint. Do not run the node on this data: \
             restore the data directory (the whole folder, {ANCHOR_FILE} included) from a \
             backup taken after {}, or keep it as evidence and investigate (`plusgate audit \
             verify --config FILE` checks what is left)",
            c.at
        )
    }
}

impl Anchor {
    /// The anchor of the store in `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Anchor {
        Anchor {
            path: data_dir.join(ANCHOR_FILE),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The anchored checkpoint, if the file exists; checked against `policy`'s key.
    fn read(&self, policy: &CheckpointPolicy) -> Result<Option<Checkpoint>, AnchorError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io(source)),
        };
        let c: Checkpoint = record::decode(&bytes).map_err(|source| AnchorError::Damaged {
            path: self.path.clone(),
            source,
        })?;
        if c.node != policy.node.as_str() || !c.verify(&policy.key.public_key()) {
            return Err(AnchorError::NotOurs {
                path: self.path.clone(),
                node: c.node,
            });
        }
        Ok(Some(c))
    }

    /// Replaces the anchored checkpoint, atomically and durably.
    fn write(&self, c: &Checkpoint) -> Result<(), AnchorError> {
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&record::encode(c))?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            match self.path.parent() {
                Some(dir) => File::open(dir)?.sync_all(),
                None => Ok(()),
            }
        };
        write().map_err(|source| self.io(source))
    }

    fn io(&self, source: std::io::Error) -> AnchorError {
        AnchorError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Checks, before the ledger writes anything, that the chain (whose head is `head`)
/// extends the newest checkpoint this node issued: the anchored one, or a newer one in the
/// store (a crash can leave the anchor one checkpoint behind, never ahead). The store must
/// hold the anchored checkpoint itself, and the chain's entry at that checkpoint's end must
/// hash to its head. Then the anchor is brought up to the newest (a store from before
/// anchors, or after such a crash). Returns the store's newest checkpoint.
pub(super) fn check_at_start(
    store: &Store,
    head: &Head,
    policy: &CheckpointPolicy,
) -> Result<Option<Checkpoint>, super::StartError> {
    let stored = store.latest_checkpoint()?;
    let anchored = policy.anchor.read(policy)?;
    let unextended = |checkpoint: &Checkpoint, source: &Path, entry_hash| {
        AnchorError::Unextended(Box::new(Unextended {
            checkpoint: checkpoint.clone(),
            source: source.to_owned(),
            chain_len: head.next_seq,
            entry_hash,
            stored: stored.as_ref().map(|c| c.length),
        }))
    };
    let store_source = PathBuf::from("the store");
    let mut newest = None;
    if let Some(a) = &anchored {
        let entry_hash = entry_hash(store, a.length)?;
        let held = store.own_checkpoint(a.length)?;
        if entry_hash.as_deref() != Some(a.head.as_str()) || held.as_ref() != Some(a) {
            return Err(unextended(a, policy.anchor.path(), entry_hash).into());
        }
        newest = Some(a.clone());
    }
    if let Some(s) = &stored {
        if newest.as_ref().is_none_or(|n| s.length > n.length) {
            let entry_hash = entry_hash(store, s.length)?;
            if entry_hash.as_deref() != Some(s.head.as_str()) {
                return Err(unextended(s, &store_source, entry_hash).into());
            }
            tracing::info!(length = s.length, anchor = %policy.anchor.path().display(),
                "anchoring the newest audit checkpoint outside the store");
            policy.anchor.write(s)?;
        }
    }
    Ok(stored)
}

/// The hash of the chain's entry `length - 1`, as its content hashes (hex); `None` if the
/// chain has no such entry.
fn entry_hash(store: &Store, length: u64) -> Result<Option<String>, StoreError> {
    let Some(seq) = length.checked_sub(1) else {
        return Ok(Some(hex::encode(&Head::GENESIS.hash)));
    };
    Ok(store
        .audit_entry(seq)?
        .filter(|e| e.seq == seq)
        .map(|e| match Head::after(&e) {
            Ok(h) => hex::encode(&h.hash),
            Err(e) => format!("nothing valid ({e})"),
        }))
}

/// The ledger's newest durable checkpoint, published to the rest of the node (batches and
/// answers carry it) after it is anchored. Its methods are named after
/// `watch::Sender`'s, which it wraps, so the group commit reads the same with or without
/// an anchor.
pub(super) struct Issued {
    tx: watch::Sender<Option<Checkpoint>>,
    anchor: Option<Anchor>,
}

impl Issued {
    /// Publishes through `tx`, anchoring each checkpoint in `anchor` first.
    pub(super) fn new(tx: watch::Sender<Option<Checkpoint>>, anchor: Option<Anchor>) -> Issued {
        Issued { tx, anchor }
    }

    /// Anchors `checkpoint` (durable in the store by now), then publishes it. A failed
    /// anchor write is logged and the checkpoint published all the same: the anchor then
    /// lags, which the next start accepts (the store holds the newer one); only the
    /// protection against deleting this checkpoint with its entries is lost until the next.
    pub(super) fn send_replace(&self, checkpoint: Option<Checkpoint>) {
        if let (Some(anchor), Some(c)) = (&self.anchor, &checkpoint) {
            if let Err(e) = anchor.write(c) {
                tracing::error!(error = %e, length = c.length,
                    "could not anchor the newest audit checkpoint outside the store");
            }
        }
        self.tx.send_replace(checkpoint);
    }

    /// The newest durable checkpoint.
    pub(super) fn borrow(&self) -> watch::Ref<'_, Option<Checkpoint>> {
        self.tx.borrow()
    }
}

#[cfg(test)]
mod tests;
