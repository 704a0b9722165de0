//! The audit chain as stored: its entries (`a`), their index by subject (`u`), this node's
//! signed checkpoints (`c`), the newest checkpoint held of each peer (`p`), the ones held
//! before it (`h`) and the evidence against a node whose checkpoints contradict each other
//! (`f`). The privacy officer's reports over the same families are in [`super::reports`].
//!
//! Of a peer's checkpoints, those held in turn, each extending the one before (its `prev`
//! names it, `core::audit::Prev`): the newest in `p`, and the newest
//! `ledger::PEER_HISTORY_MAX` of them in `h` (key peer, NUL, length), by which a checkpoint
//! shorter than the newest is judged (`core::audit::follow`). A contradiction is kept as
//! the pair of checkpoints (`f`: key node, NUL, the refused checkpoint's digest, so the same
//! one is kept once), at most `ledger::EVIDENCE_PER_PEER_MAX` per node.
//!
//! Invariants kept here:
//! - entries are read in chain order (the key is the sequence number, big-endian);
//! - the subject index is complete before the ledger writes: a store written before the
//!   index existed has it built once, by [`Store::ensure_subject_index`];
//! - an index entry that points at a missing audit entry is [`StoreError::Corrupt`].

use std::collections::BTreeMap;

use super::keys::{
    key, queue_key, queue_prefix, AUDIT, BY_SUBJECT, CHECKPOINT, PEER_CHECKPOINT, PEER_EVIDENCE,
    PEER_HISTORY, SETTING, SUBJECT_INDEX_COMPLETE,
};
use super::{decode_at, RecordError, Store, StoreError};
use crate::core::audit::{AuditEntry, Checkpoint, Evidence};
use crate::core::identity::CenterId;

/// The key of `peer`'s held checkpoint of `length` entries: peer, NUL, length (BE).
pub(super) fn history_key(peer: &CenterId, length: u64) -> Vec<u8> {
    queue_key(&queue_prefix(PEER_HISTORY, peer.as_str()), length)
}

/// The key of `evidence` against `peer`: peer, NUL, the refused checkpoint's digest.
pub(super) fn evidence_key(peer: &CenterId, evidence: &Evidence) -> Vec<u8> {
    let mut k = queue_prefix(PEER_EVIDENCE, peer.as_str());
    k.extend_from_slice(evidence.refused.digest().as_bytes());
    k
}

impl Store {
    /// The last audit entry, if any (the head of the chain).
    pub fn audit_head(&self) -> Result<Option<AuditEntry>, StoreError> {
        match self.db.scan_prefix([AUDIT]).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                decode_at("audit", &k, &v).map(Some)
            }
        }
    }

    /// Every audit entry in chain order.
    pub fn audit_entries(&self) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        self.db.scan_prefix([AUDIT]).map(|item| {
            let (k, v) = item?;
            decode_at("audit", &k, &v)
        })
    }

    /// The audit entries about `subject`, in chain order.
    pub fn audit_for_subject(
        &self,
        subject: &str,
    ) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        let prefix = queue_prefix(BY_SUBJECT, subject);
        let prefix_len = prefix.len();
        self.scan_prefix(prefix).map(move |item| {
            let (k, _) = item?;
            let seq: [u8; 8] = k[prefix_len..]
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    family: "subject index",
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body("key has no sequence number".into()),
                })?;
            let key = key(AUDIT, &seq);
            match self.db.get(&key)? {
                Some(v) => decode_at("audit", &key, &v),
                None => Err(StoreError::Corrupt {
                    family: "subject index",
                    key: format!("{:02x?}", &key[1..]),
                    source: RecordError::Body("points at a missing audit entry".into()),
                }),
            }
        })
    }

    /// Makes sure every audit entry is in the subject index: a store written before the
    /// index existed gets it built once, here, before the ledger starts writing.
    pub fn ensure_subject_index(&self) -> Result<usize, StoreError> {
        let done = key(SETTING, SUBJECT_INDEX_COMPLETE);
        if self.db.get(&done)?.is_some() {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for entry in self.audit_entries() {
            let entry = entry?;
            if !entry.subject.is_empty() {
                batch.insert(
                    queue_key(&queue_prefix(BY_SUBJECT, &entry.subject), entry.seq),
                    Vec::new(),
                );
                n += 1;
            }
        }
        batch.insert(done, Vec::new());
        self.db.apply_batch(batch)?;
        self.sync()?;
        Ok(n)
    }

    /// This node's own checkpoints, oldest first.
    pub fn checkpoints(&self) -> impl Iterator<Item = Result<Checkpoint, StoreError>> + '_ {
        self.db.scan_prefix([CHECKPOINT]).map(|item| {
            let (k, v) = item?;
            decode_at("checkpoint", &k, &v)
        })
    }

    /// This node's newest checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.db.scan_prefix([CHECKPOINT]).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                decode_at("checkpoint", &k, &v).map(Some)
            }
        }
    }

    /// This node's own checkpoint of `length` entries, if it holds one.
    pub fn own_checkpoint(&self, length: u64) -> Result<Option<Checkpoint>, StoreError> {
        let k = key(CHECKPOINT, &length.to_be_bytes());
        match self.db.get(&k)? {
            None => Ok(None),
            Some(v) => decode_at("checkpoint", &k, &v).map(Some),
        }
    }

    /// This node's own checkpoints of more than `length` entries, oldest first.
    pub fn checkpoints_after(
        &self,
        length: u64,
    ) -> impl Iterator<Item = Result<Checkpoint, StoreError>> + '_ {
        let from = key(CHECKPOINT, &length.saturating_add(1).to_be_bytes());
        self.db.range(from..key(CHECKPOINT + 1, &[])).map(|item| {
            let (k, v) = item?;
            decode_at("checkpoint", &k, &v)
        })
    }

    /// The newest checkpoint held of `peer` (the latest one it handed over that extends
    /// every one held before).
    pub fn peer_checkpoint(&self, peer: &CenterId) -> Result<Option<Checkpoint>, StoreError> {
        self.get(PEER_CHECKPOINT, "peer checkpoint", peer.as_str())
    }

    /// `peer`'s checkpoints held in turn, by length (the newest last).
    pub fn peer_history(&self, peer: &CenterId) -> Result<BTreeMap<u64, Checkpoint>, StoreError> {
        self.db
            .scan_prefix(queue_prefix(PEER_HISTORY, peer.as_str()))
            .map(|item| {
                let (k, v) = item?;
                let c: Checkpoint = decode_at("peer history", &k, &v)?;
                Ok((c.length, c))
            })
            .collect()
    }

    /// The newest checkpoint held of every peer, by center.
    pub fn peer_checkpoints(
        &self,
    ) -> impl Iterator<Item = Result<(String, Checkpoint), StoreError>> + '_ {
        self.db.scan_prefix([PEER_CHECKPOINT]).map(|item| {
            let (k, v) = item?;
            let c = decode_at("peer checkpoint", &k, &v)?;
            Ok((String::from_utf8_lossy(&k[1..]).into_owned(), c))
        })
    }

    /// The evidence kept against `peer`, in no particular order.
    pub fn peer_evidence(&self, peer: &CenterId) -> Result<Vec<Evidence>, StoreError> {
        self.db
            .scan_prefix(queue_prefix(PEER_EVIDENCE, peer.as_str()))
            .map(|item| {
                let (k, v) = item?;
                decode_at("peer evidence", &k, &v)
            })
            .collect()
    }
}
