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
//! - [`Store::peer_statuses`] reads the newest checkpoint held of each peer (`p`) and the
//!   evidence kept (`f`): O(peers + evidence), both bounded.
//!
//! Architecture invariant: nothing here writes.

use super::keys::{key, AUDIT, CHECKPOINT, CONSENT, PEER_EVIDENCE};
use super::{decode_at, Store, StoreError};
use crate::core::audit::{AuditEntry, ChainError, Checkpoint, Evidence, Head, Verifier};
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

impl VerifiedFrom {
    /// Every starting point, as [`VerifiedFrom::as_str`] names them (the console has a
    /// label for each).
    pub const ALL: [VerifiedFrom; 2] = [VerifiedFrom::Genesis, VerifiedFrom::Checkpoint];

    /// Its name in the audit status (`verified_from`).
    pub fn as_str(self) -> &'static str {
        match self {
            VerifiedFrom::Genesis => "genesis",
            VerifiedFrom::Checkpoint => "checkpoint",
        }
    }
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

/// What this node holds of one node's checkpoints: the newest that extends every one
/// before, and the evidence kept against that node (two of its checkpoints that
/// contradict each other). A node that holds evidence against itself lists itself, without
/// a checkpoint held (it learned of it from a peer, see `node::peers`).
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// The node's center.
    pub center: String,
    /// The newest of its checkpoints held.
    pub held: Option<Checkpoint>,
    /// Contradictions found, oldest first.
    pub evidence: Vec<Evidence>,
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

    /// Every node this node holds checkpoints of or evidence against, by center.
    pub fn peer_statuses(&self) -> Result<Vec<PeerStatus>, StoreError> {
        let mut peers: std::collections::BTreeMap<String, PeerStatus> = Default::default();
        let status = |center: &str| PeerStatus {
            center: center.to_owned(),
            held: None,
            evidence: Vec::new(),
        };
        for held in self.peer_checkpoints() {
            let (center, c) = held?;
            peers
                .entry(center.clone())
                .or_insert_with(|| status(&center))
                .held = Some(c);
        }
        for item in self.db.scan_prefix([PEER_EVIDENCE]) {
            let (k, v) = item?;
            let evidence: Evidence = decode_at("peer evidence", &k, &v)?;
            let center = k[1..].split(|b| *b == 0).next().unwrap_or_default();
            let center = String::from_utf8_lossy(center).into_owned();
            peers
                .entry(center.clone())
                .or_insert_with(|| status(&center))
                .evidence
                .push(evidence);
        }
        let mut peers: Vec<PeerStatus> = peers.into_values().collect();
        for p in &mut peers {
            p.evidence.sort_by(|a, b| a.found_at.cmp(&b.found_at));
        }
        Ok(peers)
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
mod tests;
