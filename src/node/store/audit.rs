//! The audit chain as stored: its entries (`a`), their index by subject (`u`), this node's
//! signed checkpoints (`c`) and the latest checkpoint each peer handed over (`p`). The
//! privacy officer's reports over the same families are in [`super::reports`].
//!
//! Invariants kept here:
//! - entries are read in chain order (the key is the sequence number, big-endian);
//! - the subject index is complete before the ledger writes: a store written before the
//!   index existed has it built once, by [`Store::ensure_subject_index`];
//! - an index entry that points at a missing audit entry is [`StoreError::Corrupt`].

use super::keys::{
    key, queue_key, queue_prefix, AUDIT, BY_SUBJECT, CHECKPOINT, PEER_CHECKPOINT, SETTING,
    SUBJECT_INDEX_COMPLETE,
};
use super::{decode_at, RecordError, Store, StoreError};
use crate::core::audit::{AuditEntry, Checkpoint};
use crate::core::identity::CenterId;

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

    /// The latest checkpoint `peer` handed over.
    pub fn peer_checkpoint(&self, peer: &CenterId) -> Result<Option<Checkpoint>, StoreError> {
        self.get(PEER_CHECKPOINT, "peer checkpoint", peer.as_str())
    }
}
