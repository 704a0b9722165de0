//! Read-only queries behind the privacy officer's reports (`api::privacy`): every consent,
//! audit entries from a position on, and the audit chain's status (length, head, whether it
//! verifies, the last signed checkpoint).
//!
//! Costs, on the one sled tree:
//! - [`Store::consents`] is one prefix scan over `k`: every consent record is read and its
//!   checksum verified, so a consent report costs O(consents registered here).
//! - [`Store::audit_entries_from`] is a range scan over `a`; the refusal report walks the
//!   whole chain (O(audit entries), about 1.5–2 µs of decoding per entry in a release build),
//!   since refusals have no index of their own.
//! - [`Store::audit_status`] reads the newest signed checkpoint, the entry it names, and
//!   checks only the entries after it: O(entries since the last checkpoint), at most about
//!   `checkpoint_every` on a federated node. Without a usable checkpoint (a standalone node,
//!   or one whose signature fails) it checks the whole chain from genesis.
//!
//! Architecture invariant: nothing here writes.

use super::keys::{key, AUDIT, CHECKPOINT, CONSENT};
use super::{decode_at, Store, StoreError};
use crate::core::audit::{AuditEntry, ChainError, Checkpoint, Head, Verifier};
use crate::core::consent::ConsentRecord;
use crate::core::hex;
use crate::core::keys::PublicKey;

/// Where a chain check started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedFrom {
    /// From entry 0.
    Genesis,
    /// From the end of the newest checkpoint whose signature verifies (the entries before it
    /// are vouched for by that signature).
    Checkpoint,
}

/// The audit chain as [`Store::audit_status`] found it.
#[derive(Debug, Clone)]
pub struct ChainStatus {
    /// Entries in the chain (up to the bound asked for).
    pub length: u64,
    /// Hash of the last entry (hex; 64 zeros for an empty chain).
    pub head: String,
    /// Where the check started.
    pub verified_from: VerifiedFrom,
    /// How many entries were hashed and linked in this check.
    pub entries_checked: u64,
    /// The first break found, if any: the chain does not verify.
    pub problem: Option<ChainProblem>,
    /// The newest checkpoint covering no more than `length` entries, and whether its
    /// signature verifies against the key given (`None`: no key to check it with).
    pub checkpoint: Option<(Checkpoint, Option<bool>)>,
}

/// Where and how a stored audit chain is broken. The store's contents were altered or lost
/// (outside the ledger: someone with access to the data directory, or damage); checking
/// again finds the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainProblem {
    /// An entry is out of order, does not link, or does not match its hash.
    #[error(transparent)]
    Break(#[from] ChainError),
    /// The chain ends before the length the ledger reports durable.
    #[error("audit entry {seq}: missing (the chain ends before its length {length})")]
    Short {
        /// The first missing entry.
        seq: u64,
        /// The length checked.
        length: u64,
    },
    /// The entry a signed checkpoint ends at is not there.
    #[error("audit entry {seq}: missing, but checkpoint of {length} entries covers it")]
    CheckpointEntryMissing {
        /// The entry.
        seq: u64,
        /// The checkpoint's length.
        length: u64,
    },
    /// The entry a signed checkpoint ends at does not hash to the head it signed.
    #[error("audit entry {seq}: does not match the head signed in checkpoint of {length} entries")]
    CheckpointMismatch {
        /// The entry.
        seq: u64,
        /// The checkpoint's length.
        length: u64,
    },
}

impl ChainStatus {
    /// True if no break was found.
    pub fn verified(&self) -> bool {
        self.problem.is_none()
    }
}

impl Store {
    /// Every registered consent, in id order.
    pub fn consents(&self) -> impl Iterator<Item = Result<ConsentRecord, StoreError>> + '_ {
        self.db.scan_prefix([CONSENT]).map(|item| {
            let (k, v) = item?;
            decode_at("consent", &k, &v)
        })
    }

    /// The audit entries from sequence number `from` on, in chain order.
    pub fn audit_entries_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        self.db
            .range(key(AUDIT, &from.to_be_bytes())..key(AUDIT + 1, &[]))
            .map(|item| {
                let (k, v) = item?;
                decode_at("audit", &k, &v)
            })
    }

    /// One audit entry.
    pub fn audit_entry(&self, seq: u64) -> Result<Option<AuditEntry>, StoreError> {
        let k = key(AUDIT, &seq.to_be_bytes());
        match self.db.get(&k)? {
            None => Ok(None),
            Some(v) => decode_at("audit", &k, &v).map(Some),
        }
    }

    /// The newest own checkpoint that covers at most `length` entries.
    fn checkpoint_within(&self, length: u64) -> Result<Option<Checkpoint>, StoreError> {
        let end = key(CHECKPOINT, &length.saturating_add(1).to_be_bytes());
        match self.db.range(key(CHECKPOINT, &[])..end).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                decode_at("checkpoint", &k, &v).map(Some)
            }
        }
    }

    /// Checks the first `length` audit entries (the caller passes the ledger's durable
    /// length, so nothing a crash could still undo is reported). Starts after the newest
    /// checkpoint whose signature verifies against `key` and whose head is the stored
    /// entry's hash, unless `from_genesis` or there is none; then from entry 0.
    pub fn audit_status(
        &self,
        length: u64,
        key: Option<&PublicKey>,
        from_genesis: bool,
    ) -> Result<ChainStatus, StoreError> {
        let checkpoint = self
            .checkpoint_within(length)?
            .map(|c| {
                let valid = key.map(|k| c.verify(k));
                (c, valid)
            })
            .filter(|(c, _)| c.length > 0);
        let mut status = ChainStatus {
            length,
            head: hex::encode(&Head::GENESIS.hash),
            verified_from: VerifiedFrom::Genesis,
            entries_checked: 0,
            problem: None,
            checkpoint: checkpoint.clone(),
        };
        let mut verifier = Verifier::new();
        if let Some((c, Some(true))) = &checkpoint {
            if !from_genesis {
                match self.anchor(c)? {
                    Ok(head) => {
                        verifier = Verifier::resume(head.next_seq, head.hash);
                        status.verified_from = VerifiedFrom::Checkpoint;
                    }
                    Err(problem) => {
                        status.problem = Some(problem);
                        return Ok(status);
                    }
                }
            }
        }
        for entry in self.audit_entries_from(verifier.head().next_seq) {
            let entry = entry?;
            if entry.seq >= length {
                break;
            }
            if let Err(e) = verifier.push(&entry) {
                status.problem = Some(e.into());
                return Ok(status);
            }
            status.entries_checked += 1;
        }
        let head = verifier.head();
        if head.next_seq < length {
            status.problem = Some(ChainProblem::Short {
                seq: head.next_seq,
                length,
            });
            return Ok(status);
        }
        status.head = hex::encode(&head.hash);
        // Checked from genesis: does a checkpoint not known to be forged name the head the
        // chain had at its length?
        if let Some((c, None | Some(true))) = &checkpoint {
            if status.verified_from == VerifiedFrom::Genesis {
                if let Err(problem) = self.anchor(c)? {
                    status.problem = Some(problem);
                }
            }
        }
        Ok(status)
    }

    /// The head a checkpoint vouches for, checked against the stored entry it names.
    fn anchor(&self, c: &Checkpoint) -> Result<Result<Head, ChainProblem>, StoreError> {
        let last = c.length - 1;
        let Some(entry) = self.audit_entry(last)? else {
            return Ok(Err(ChainProblem::CheckpointEntryMissing {
                seq: last,
                length: c.length,
            }));
        };
        let head = match Head::after(&entry) {
            Ok(head) => head,
            Err(e) => return Ok(Err(e.into())),
        };
        if hex::encode(&head.hash) != c.head || entry.seq != last {
            return Ok(Err(ChainProblem::CheckpointMismatch {
                seq: last,
                length: c.length,
            }));
        }
        Ok(Ok(head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::audit::{test_event, Action};
    use crate::core::keys::SigningKey;
    use crate::node::store::WriteSet;

    /// A store with a chain of `n` entries and a checkpoint signed every `every` entries.
    fn chain(n: u64, every: u64, key: &SigningKey) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let mut head = Head::GENESIS;
        let mut writes = WriteSet::new();
        for i in 0..n {
            let mut event = test_event(i % 60);
            if i % 7 == 3 {
                event.action = Action::Refused;
                event.detail = Some("urn:plusgate:problem:no-consent: none covers it".into());
            }
            writes.put_audit(&head.append(event));
            if (i + 1) % every == 0 {
                writes.put_checkpoint(&Checkpoint::sign(key, "suwon", &head, "t"));
            }
            if writes.len() > 10_000 {
                store.apply(std::mem::take(&mut writes)).expect("apply");
            }
        }
        store.apply(writes).expect("apply");
        (dir, store)
    }

    fn key() -> SigningKey {
        SigningKey::generate().expect("key").0
    }

    #[test]
    fn an_honest_chain_verifies_from_its_last_checkpoint_or_from_genesis() {
        let key = key();
        let (_dir, store) = chain(25, 10, &key);
        let public = key.public_key();
        let quick = store
            .audit_status(25, Some(&public), false)
            .expect("status");
        assert!(quick.verified(), "{quick:?}");
        assert_eq!(quick.verified_from, VerifiedFrom::Checkpoint);
        assert_eq!(quick.entries_checked, 5);
        let (c, valid) = quick.checkpoint.clone().expect("checkpoint");
        assert_eq!((c.length, valid), (20, Some(true)));
        let full = store.audit_status(25, Some(&public), true).expect("status");
        assert!(full.verified(), "{full:?}");
        assert_eq!(full.verified_from, VerifiedFrom::Genesis);
        assert_eq!(full.entries_checked, 25);
        assert_eq!(full.head, quick.head);
        // A shorter bound (the durable length) ignores later entries and checkpoints.
        let earlier = store
            .audit_status(15, Some(&public), false)
            .expect("status");
        assert_eq!(earlier.checkpoint.expect("checkpoint").0.length, 10);
        assert_eq!(earlier.entries_checked, 5);
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_not_trusted_and_the_chain_is_checked_whole() {
        let (_dir, store) = chain(25, 10, &key());
        let status = store
            .audit_status(25, Some(&key().public_key()), false)
            .expect("status");
        assert!(status.verified());
        assert_eq!(status.verified_from, VerifiedFrom::Genesis);
        assert_eq!(status.checkpoint.expect("checkpoint").1, Some(false));
    }

    #[test]
    fn an_altered_entry_after_the_checkpoint_or_a_missing_one_is_named() {
        let key = key();
        let (_dir, store) = chain(25, 10, &key);
        let mut bad = store.audit_entry(22).expect("read").expect("entry");
        bad.to = "suwon/finance".into();
        let mut writes = WriteSet::new();
        writes.put_audit(&bad);
        store.apply(writes).expect("apply");
        let status = store
            .audit_status(25, Some(&key.public_key()), false)
            .expect("status");
        assert_eq!(
            status.problem.as_ref().map(ToString::to_string).as_deref(),
            Some("audit entry 22: content does not match its hash (altered)")
        );
        assert!(matches!(status.problem, Some(ChainProblem::Break(_))));
        let status = store
            .audit_status(30, Some(&key.public_key()), false)
            .expect("status");
        assert!(status.problem.is_some());
    }

    #[test]
    fn an_entry_altered_under_the_checkpoint_is_found_by_the_checkpoint_or_from_genesis() {
        let key = key();
        let (_dir, store) = chain(25, 10, &key);
        let mut bad = store.audit_entry(19).expect("read").expect("entry");
        bad.actor = "someone else".into();
        let mut writes = WriteSet::new();
        writes.put_audit(&bad);
        store.apply(writes).expect("apply");
        for from_genesis in [false, true] {
            let status = store
                .audit_status(25, Some(&key.public_key()), from_genesis)
                .expect("status");
            assert!(
                status
                    .problem
                    .as_ref()
                    .is_some_and(|p| p.to_string().starts_with("audit entry 19")),
                "{status:?}"
            );
        }
    }

    /// Not a check: the numbers for ARCHITECTURE.md (`cargo test --release -- --ignored
    /// --nocapture audit_status_cost`).
    #[test]
    #[ignore]
    fn audit_status_cost_on_a_chain_of_100k_entries() {
        let key = key();
        let (_dir, store) = chain(100_999, 1000, &key);
        let public = key.public_key();
        for from_genesis in [false, true] {
            let started = std::time::Instant::now();
            let status = store
                .audit_status(100_999, Some(&public), from_genesis)
                .expect("status");
            assert!(status.verified());
            println!(
                "audit_status(from_genesis: {from_genesis}): {} entries checked in {:?}",
                status.entries_checked,
                started.elapsed()
            );
        }
        let started = std::time::Instant::now();
        let refused = store
            .audit_entries_from(0)
            .filter(|e| e.as_ref().is_ok_and(|e| e.action == Action::Refused))
            .count();
        println!(
            "scan of 100,999 entries for refusals: {refused} found in {:?}",
            started.elapsed()
        );
    }
}
