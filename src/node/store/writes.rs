//! [`WriteSet`]: the writes of one ledger group, queued by family and applied at once by
//! [`Store::apply`](super::Store::apply).
//!
//! Invariants kept here:
//! - a write set is one sled batch on the one tree, so its writes become visible together or
//!   not at all; writes to a deferred family (see [`super::deferred`]) travel in that batch
//!   as the group's journal record, so they too exist exactly when the rest does;
//! - no value it writes is larger than [`pieces::PIECE_BYTES`]: a large message record is
//!   split into pieces (see [`super::pieces`]);
//! - every value except a queue or index entry (which only points at a message, or is empty)
//!   goes through [`record::encode`], so it is versioned and checksummed;
//! - an audit entry about a subject and its subject-index entry are always written together.

use super::consents::{consent_key, notice_key};
use super::deferred::Op;
use super::keys::is_deferred;
use super::keys::{
    inbox_key, key, outbox_key, pickup_key, queue_key, queue_prefix, report_key, retention_key,
    AUDIT, BY_SUBJECT, CHECKPOINT, DEAD, DELIVERY, DIRECTORY_SEEN, PEER_CHECKPOINT, RECEIPT,
    SETTING,
};
use super::pieces;
use super::record;
use super::records::{DeliveryRecord, DirectorySeen, EncodedMessage, Erasure, Pickup};
use crate::core::audit::{AuditEntry, Checkpoint, Evidence};
use crate::core::consent::{ConsentKey, ConsentRecord};
use crate::core::identity::{AgencyId, CenterId};
use crate::core::message::MessageId;
use crate::core::wire::Receipt;

/// A set of writes applied atomically by [`Store::apply`](super::Store::apply).
#[derive(Default)]
pub struct WriteSet {
    /// Writes to primary families, in order.
    pub(super) primary_ops: Vec<Op>,
    /// Writes to deferred families, in order.
    pub(super) deferred: Vec<Op>,
    /// Messages whose stored pieces are to be dropped (their record was rewritten small).
    pub(super) drop_pieces: Vec<Vec<u8>>,
    len: usize,
    /// Writes that go into sled's tree now (primary writes and pieces).
    primary: usize,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> WriteSet {
        WriteSet::default()
    }
    /// Number of writes queued.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Writes that go into sled's tree in this group itself: primary records and pieces
    /// (deferred writes go in as one journal record; see [`super::deferred`]).
    pub fn primary_len(&self) -> usize {
        self.primary
    }
    /// Stores an encoded message record (in pieces if it is large).
    pub fn put_message(&mut self, message: EncodedMessage) {
        let id = message.key[1..].to_vec();
        let (value, pieces) = pieces::split(&id, message.bytes);
        self.put(message.key, value);
        for (k, v) in pieces {
            self.put(k, v);
        }
    }
    /// Rewrites a message record that may have been stored in pieces (an erasure): the old
    /// pieces go.
    pub fn replace_message(&mut self, message: EncodedMessage) {
        self.drop_pieces.push(message.key[1..].to_vec());
        self.put_message(message);
    }
    /// Stores a delivery record.
    pub fn put_delivery(&mut self, id: &MessageId, record: &DeliveryRecord) {
        self.put(
            key(DELIVERY, id.as_str().as_bytes()),
            record::encode(record),
        );
    }
    /// Puts a message into `recipient`'s inbox at position `seq`.
    pub fn put_inbox(&mut self, recipient: &AgencyId, seq: u64, id: &MessageId) {
        self.put(inbox_key(recipient, seq), id.as_str().as_bytes().to_vec());
    }
    /// Removes an inbox entry.
    pub fn remove_inbox(&mut self, recipient: &AgencyId, seq: u64) {
        self.remove(inbox_key(recipient, seq));
    }
    /// Puts a message into the outbox to `peer` at position `seq`.
    pub fn put_outbox(&mut self, peer: &CenterId, seq: u64, id: &MessageId) {
        self.put(outbox_key(peer, seq), id.as_str().as_bytes().to_vec());
    }
    /// Removes an outbox entry.
    pub fn remove_outbox(&mut self, peer: &CenterId, seq: u64) {
        self.remove(outbox_key(peer, seq));
    }
    /// Stores the receipt a peer signed for message `id`, which this node forwarded (the
    /// receipt names the id as sent, without its sender).
    pub fn put_receipt(&mut self, id: &MessageId, receipt: &Receipt) {
        self.put(
            key(RECEIPT, id.as_str().as_bytes()),
            record::encode(receipt),
        );
    }
    /// Marks a message dead-lettered (an index for operators).
    pub fn put_dead_letter(&mut self, id: &MessageId) {
        self.put(key(DEAD, id.as_str().as_bytes()), Vec::new());
    }
    /// Unmarks a dead-lettered message (requeued).
    pub fn remove_dead_letter(&mut self, id: &MessageId) {
        self.remove(key(DEAD, id.as_str().as_bytes()));
    }
    /// Stores a checkpoint this node signed of its own chain.
    pub fn put_checkpoint(&mut self, checkpoint: &Checkpoint) {
        self.put(
            key(CHECKPOINT, &checkpoint.length.to_be_bytes()),
            record::encode(checkpoint),
        );
    }
    /// Stores the latest checkpoint a peer handed over (already verified).
    pub fn put_peer_checkpoint(&mut self, peer: &CenterId, checkpoint: &Checkpoint) {
        self.put(
            key(PEER_CHECKPOINT, peer.as_str().as_bytes()),
            record::encode(checkpoint),
        );
    }
    /// Keeps two of `peer`'s checkpoints that contradict each other (see `audit`).
    pub fn put_peer_evidence(&mut self, peer: &CenterId, evidence: &Evidence) {
        self.put(
            super::audit::evidence_key(peer, evidence),
            record::encode(evidence),
        );
    }
    /// Adds a checkpoint to those held of `peer` (see `audit`).
    pub fn put_peer_history(&mut self, peer: &CenterId, checkpoint: &Checkpoint) {
        let k = super::audit::history_key(peer, checkpoint.length);
        self.put(k, record::encode(checkpoint));
    }
    /// Lets `peer`'s held checkpoint of `length` entries go.
    pub fn remove_peer_history(&mut self, peer: &CenterId, length: u64) {
        self.remove(super::audit::history_key(peer, length));
    }
    /// Stores a consent (registered or changed).
    pub fn put_consent(&mut self, consent: &ConsentRecord) {
        self.put(consent_key(&consent.key()), record::encode(consent));
    }
    /// Schedules the purge of message `id`'s payload at `end` (unix seconds).
    pub fn put_retention(&mut self, end: u64, seq: u64, id: &MessageId) {
        self.put(retention_key(end, seq), id.as_str().as_bytes().to_vec());
    }
    /// Drops a scheduled purge (done).
    pub fn remove_retention(&mut self, end: u64, seq: u64) {
        self.remove(retention_key(end, seq));
    }
    /// Notes that center `peer` is to be told of consent `consent_id`'s current state.
    pub fn put_notice(&mut self, peer: &CenterId, consent: &ConsentKey) {
        self.put(notice_key(peer, consent), Vec::new());
    }
    /// `peer` was told.
    pub fn remove_notice(&mut self, peer: &CenterId, consent: &ConsentKey) {
        self.remove(notice_key(peer, consent));
    }
    /// Notes that center `peer`, where message `id` came from, is to be told it was
    /// withheld here.
    pub fn put_withheld_report(&mut self, peer: &CenterId, id: &MessageId, why: &Erasure) {
        self.put(report_key(peer, id), record::encode(why));
    }
    /// `peer` was told.
    pub fn remove_withheld_report(&mut self, peer: &CenterId, id: &MessageId) {
        self.remove(report_key(peer, id));
    }
    /// Notes that center `origin`, where message `id` came from, is to be told that its
    /// recipient here pulled it (or acknowledged it): replaces what was noted before.
    pub fn put_pickup_report(&mut self, origin: &CenterId, id: &MessageId, pickup: &Pickup) {
        self.put(pickup_key(origin, id), record::encode(pickup));
    }
    /// `origin` took (or refused for good) the report of message `id`.
    pub fn remove_pickup_report(&mut self, origin: &CenterId, id: &MessageId) {
        self.remove(pickup_key(origin, id));
    }
    /// Records the newest directory loaded.
    pub fn put_directory_seen(&mut self, seen: &DirectorySeen) {
        self.put(key(SETTING, DIRECTORY_SEEN), record::encode(seen));
    }
    /// Appends an audit entry, and indexes it by subject (for a privacy officer's "who
    /// received what about this person").
    pub fn put_audit(&mut self, entry: &AuditEntry) {
        self.put(key(AUDIT, &entry.seq.to_be_bytes()), record::encode(entry));
        if !entry.subject.is_empty() {
            self.put(
                queue_key(&queue_prefix(BY_SUBJECT, &entry.subject), entry.seq),
                Vec::new(),
            );
        }
    }
    pub(super) fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        debug_assert!(
            v.len() <= pieces::PIECE_BYTES,
            "values stay below the blob threshold"
        );
        self.len += 1;
        if is_deferred(k[0]) {
            self.deferred.push((k, Some(v)));
        } else {
            self.primary += 1;
            self.primary_ops.push((k, Some(v)));
        }
    }
    fn remove(&mut self, k: Vec<u8>) {
        self.len += 1;
        if is_deferred(k[0]) {
            self.deferred.push((k, None));
        } else {
            self.primary += 1;
            self.primary_ops.push((k, None));
        }
    }
}
