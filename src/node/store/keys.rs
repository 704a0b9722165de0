//! The key layout: one family byte per kind of value (the table in the [module
//! doc](super)), and how each family's key is built.
//!
//! Invariants kept here:
//! - every key starts with its family's byte, so a family is one prefix scan and two
//!   families never share a key;
//! - a queue or index owner (an agency, center or consent id, a subject) is followed by a
//!   NUL, which none of them contains, so one owner's prefix is never a prefix of another's;
//! - sequence numbers and times are big-endian, so byte order is numeric order and a scan
//!   returns entries oldest first.

use crate::core::identity::{AgencyId, CenterId};
use crate::core::message::MessageId;

pub(super) const MESSAGE: u8 = b'm';
pub(super) const DELIVERY: u8 = b'd';
pub(super) const INBOX: u8 = b'i';
pub(super) const AUDIT: u8 = b'a';
pub(super) const OUTBOX: u8 = b'o';
pub(super) const RECEIPT: u8 = b'r';
pub(super) const SETTING: u8 = b's';
pub(super) const DIRECTORY_SEEN: &[u8] = b"directory";
pub(super) const DEAD: u8 = b'x';
pub(super) const CHECKPOINT: u8 = b'c';
pub(super) const PEER_CHECKPOINT: u8 = b'p';
pub(super) const CONSENT: u8 = b'k';
pub(super) const BY_SUBJECT: u8 = b'u';
pub(super) const RETENTION: u8 = b'e';
pub(super) const NOTICE: u8 = b'n';
pub(super) const WITHHELD_REPORT: u8 = b'w';
/// Pickup reports owed to a message's origin center (see [`super::records::Pickup`]).
pub(super) const PICKUP_REPORT: u8 = b'q';
pub(super) const PEER_EVIDENCE: u8 = b'f';
pub(super) const PEER_HISTORY: u8 = b'h';
/// Journal records of deferred writes, by group (see [`super::deferred`]).
pub(super) const JOURNAL: u8 = b'j';
/// Statistics per day and agency pair (see [`super::stats`]).
pub(super) const STATS: u8 = b't';
/// Pieces of a message record too large to store as one value (see [`super::pieces`]).
pub(super) const PIECE: u8 = b'b';

/// True for the families whose writes are deferred (see [`super::deferred`]): the delivery
/// state and every index, all of which the overlay shadows until they are folded in.
pub(super) fn is_deferred(family: u8) -> bool {
    matches!(
        family,
        DELIVERY | INBOX | OUTBOX | RETENTION | BY_SUBJECT | STATS
    )
}

/// True for the deferred families whose keys are written at most once and then perhaps
/// removed (each key holds a sequence number): a removal of such a key still in the newest
/// overlay generation cannot have a copy in the tree, so the overlay simply forgets it
/// instead of keeping a tombstone that every scan would step over.
pub(super) fn is_write_once(family: u8) -> bool {
    matches!(family, INBOX | OUTBOX | RETENTION | BY_SUBJECT)
}

/// Setting present once every audit entry is in the subject index.
pub(super) const SUBJECT_INDEX_COMPLETE: &[u8] = b"subject-index";

pub(super) fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

/// `family`, the queue owner (agency or center id), NUL. Ids never contain NUL, so one
/// owner's prefix is never a prefix of another's (`suwon/a` vs `suwon/ab`).
pub(super) fn queue_prefix(family: u8, owner: &str) -> Vec<u8> {
    let mut k = key(family, owner.as_bytes());
    k.push(0);
    k
}

pub(super) fn queue_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn retention_key(end: u64, seq: u64) -> Vec<u8> {
    queue_key(&key(RETENTION, &end.to_be_bytes()), seq)
}

pub(super) fn report_key(peer: &CenterId, id: &MessageId) -> Vec<u8> {
    let mut k = queue_prefix(WITHHELD_REPORT, peer.as_str());
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

/// `q`, the origin center, NUL, the message's key: one entry per (origin, message), so a
/// later report of the same message (its acknowledgement) replaces the earlier one.
pub(super) fn pickup_key(origin: &CenterId, id: &MessageId) -> Vec<u8> {
    let mut k = queue_prefix(PICKUP_REPORT, origin.as_str());
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

pub(super) fn inbox_key(recipient: &AgencyId, seq: u64) -> Vec<u8> {
    queue_key(&queue_prefix(INBOX, recipient.as_str()), seq)
}

pub(super) fn outbox_key(peer: &CenterId, seq: u64) -> Vec<u8> {
    queue_key(&queue_prefix(OUTBOX, peer.as_str()), seq)
}
