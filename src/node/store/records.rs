//! The values the store keeps, as the rest of the node sees them: a message as accepted
//! ([`MessageRecord`], with its payload plain or sealed), its delivery state
//! ([`DeliveryRecord`], [`DeliveryState`], [`Lifecycle`]), why a payload was erased
//! ([`Erasure`]), a pickup report owed to another center ([`Pickup`]), the newest directory
//! loaded ([`DirectorySeen`]), and a queue entry as a scan returns it ([`QueueEntry`]). How they are laid out in bytes is [`super::record`].
//!
//! Invariants kept here:
//! - a message record is written once and changed only to erase its payload, which keeps
//!   every other field (a privacy officer's disclosure history still reads its items);
//! - the mutable part of a message's life is a separate, small [`DeliveryRecord`], so a lease
//!   or an ack never rewrites the payload;
//! - a field a record may lack has a serde default and is left out when empty, so a record
//!   written before the field existed still decodes.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::keys::{key, MESSAGE};
use super::record;
use crate::core::identity::CenterId;
use crate::core::message::MessageId;
use crate::core::vault::{Binding, DataKeys, Sealed, VaultError};

/// A message as accepted. Written once; changed only to erase its payload (withdrawal of its
/// consent, end of retention), which keeps every other field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Message id.
    pub id: String,
    /// True when the sender chose the id (the record is then also its idempotency record).
    pub sender_chose_id: bool,
    /// Sending agency (from its certificate).
    pub from: String,
    /// Recipient agency.
    pub to: String,
    /// Message type.
    #[serde(rename = "type")]
    pub message_type: String,
    /// Payload schema version.
    pub version: u32,
    /// Pseudonymous subject reference.
    pub subject: String,
    /// Consent the message travels under: its id ...
    pub consent_id: String,
    /// ... and its collecting agency (see `consent::ConsentKey`). Absent in records taken
    /// before consents were scoped by collector (see [`super::Store::consent_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_by: Option<String>,
    /// The payload as canonical JSON, kept raw: written and served without re-encoding.
    /// Absent when it is stored sealed (see `sealed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<RawValue>>,
    /// The payload sealed under the node's data key (see `vault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
    /// Fingerprint of the request (see `ledger::Submission`): an identical retry has the same.
    pub body_sha256: String,
    /// When the node accepted it (RFC 3339, UTC).
    pub accepted_at: String,
    /// The purpose of the transfer (what the consent check used): the payload's own, or for
    /// a status its referral's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The data items the payload carries (field names, see `consent::items_of`): what the
    /// consent check and a privacy officer's disclosure history use, kept after erasure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// When and why the payload was erased; the record keeps everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<Erasure>,
    /// The sequence number of the audit entry that took the message: its queue position.
    /// With `peer`, what its delivery record starts as, so a push writes no delivery record
    /// (see [`super::Store::delivery`]). Absent in records written before it existed, which
    /// all have a delivery record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// For a message to another center: that center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<CenterId>,
}

/// The erasure of a message's payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Erasure {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Why: the consent's withdrawal or the end of its retention period.
    pub reason: String,
}

impl MessageRecord {
    /// The payload in plain JSON: opened with `keys` if it is stored sealed. A sealed
    /// payload on a node without keys, or one that does not open, is an error (the record
    /// is then not served).
    pub fn open(&self, keys: Option<&DataKeys>) -> Result<Box<RawValue>, VaultError> {
        match (&self.payload, &self.sealed, keys) {
            (Some(plain), _, _) => Ok(plain.clone()),
            (None, Some(sealed), Some(keys)) => {
                let binding = Binding {
                    id: &self.id,
                    from: &self.from,
                    to: &self.to,
                    subject: &self.subject,
                };
                let bytes = keys.open(&binding, sealed)?;
                let text = String::from_utf8(bytes).map_err(|_| VaultError::Damaged)?;
                RawValue::from_string(text).map_err(|_| VaultError::Damaged)
            }
            (None, Some(sealed), None) => Err(VaultError::UnknownKey(sealed.key.clone())),
            (None, None, _) => Err(VaultError::Damaged),
        }
    }

    /// Encodes the record for [`WriteSet::put_message`](super::WriteSet::put_message).
    /// Separate from the write so that the (comparatively expensive) encoding of the payload
    /// can run on the caller's thread, in parallel, rather than on the single writer's.
    pub fn encode(&self) -> EncodedMessage {
        EncodedMessage {
            key: key(MESSAGE, self.id.as_bytes()),
            bytes: record::encode(self),
        }
    }
}

/// A message record encoded and ready to store.
#[derive(Debug, Clone)]
pub struct EncodedMessage {
    pub(super) key: Vec<u8>,
    pub(super) bytes: Vec<u8>,
}

impl EncodedMessage {
    /// Bytes the encoded record holds (what it costs in memory until it is written).
    pub fn len(&self) -> usize {
        self.key.len() + self.bytes.len()
    }

    /// Never true: a record has at least its header. (For `len`'s sake.)
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record with its `seq` and `consent_by` set: known only to the writer (the queue
    /// position, and which agency's consent the cited id turned out to be), after the
    /// (expensive) encoding ran on the caller's thread. The record must have been encoded
    /// without either.
    ///
    /// A record's body is a JSON object, so the fields go right after its opening brace
    /// (JSON field order carries no meaning); the checksum is then computed anew.
    pub fn stamped(mut self, seq: u64, consent_by: &str) -> EncodedMessage {
        let collector = serde_json::to_string(consent_by).expect("strings always serialize");
        let field = format!("\"seq\":{seq},\"consent_by\":{collector},");
        let at = record::BODY_START + 1;
        debug_assert_eq!(self.bytes.get(at - 1), Some(&b'{'));
        self.bytes.splice(at..at, field.bytes());
        record::reseal(&mut self.bytes);
        self
    }
}

/// Where a message is in its delivery, as this node knows it.
///
/// A message for an agency at this center goes `accepted → pulled → acked`; one for another
/// center goes `accepted → (forwarded) → delivered`, or ends `dead-lettered`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Durable, in the recipient's inbox or in the outbox to its center.
    Accepted,
    /// Sent to the recipient's center at least once without a receipt yet (the last attempt
    /// failed); still in the outbox, retried with backoff.
    Forwarded,
    /// The recipient's center returned a signed receipt: it holds the message durably.
    Delivered,
    /// Not delivered within its time to live, refused by the recipient's center, or dropped
    /// by an operator: out of the outbox, kept with the reason.
    DeadLettered,
    /// Pulled at least once, not yet acknowledged.
    Pulled,
    /// Acknowledged by the recipient: gone from the inbox for good.
    Acked,
    /// Held back before the recipient pulled it, because its consent was withdrawn (or its
    /// retention ended): out of its inbox or outbox, payload erased, kept with the reason.
    Withheld,
}

impl DeliveryState {
    /// True while the message waits in an outbox.
    pub fn in_outbox(self) -> bool {
        matches!(self, DeliveryState::Accepted | DeliveryState::Forwarded)
    }
}

/// The latest lifecycle status the recipient of a referral reported for it (from the
/// `referral-status` messages that answer it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lifecycle {
    /// `requested`, `accepted`, `declined`, `in-progress`, `on-hold`, `completed`, `cancelled`.
    pub status: String,
    /// When the recipient says it changed (the status message's `changed_at`).
    pub changed_at: String,
    /// The `referral-status` message that reported it.
    pub message_id: String,
    /// The outcome code, when `status` is `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The `changed_at` of the first status that took the referral on (`core::stats`):
    /// its time to acceptance has been counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_on_at: Option<String>,
    /// The `changed_at` of its first `completed`: its time to completion has been counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

/// The mutable part of a message's life, kept apart from the (larger) message record so a
/// lease or an ack rewrites a few dozen bytes, not the payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryRecord {
    /// Position in the recipient's inbox: the sequence number of the `accepted` audit entry.
    pub seq: u64,
    /// Current state.
    pub state: DeliveryState,
    /// First time the recipient pulled it.
    pub first_pulled_at: Option<String>,
    /// How many times it was leased.
    pub lease_count: u32,
    /// When the recipient acknowledged it.
    pub acked_at: Option<String>,
    /// For a message to another center: that center (the outbox it waits in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<CenterId>,
    /// Forwarding attempts that got no receipt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts: u32,
    /// What went wrong last (forwarding) or why it was dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the recipient's center signed its receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// For a referral: the latest status its recipient reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// When an operator last put it back into its outbox: its time to live counts from
    /// then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeued_at: Option<String>,
    /// When and why it was withheld (see [`DeliveryState::Withheld`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Erasure>,
}

impl DeliveryRecord {
    /// A fresh record for a message just accepted at queue position `seq`.
    pub fn new(seq: u64, peer: Option<CenterId>) -> DeliveryRecord {
        DeliveryRecord {
            seq,
            state: DeliveryState::Accepted,
            first_pulled_at: None,
            lease_count: 0,
            acked_at: None,
            peer,
            failed_attempts: 0,
            last_error: None,
            delivered_at: None,
            lifecycle: None,
            requeued_at: None,
            withheld: None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A pickup report waiting to go to a message's origin center (`q`): what this node will
/// sign and send there (`wire::PickupReport`), kept unsigned so the writer thread does no
/// signing; the forwarder signs it when it carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pickup {
    /// The message's digest (its fingerprint, which the origin's receipt names).
    pub digest: String,
    /// When its recipient here first pulled it (or acknowledged it, if it never pulled it).
    pub first_pulled_at: String,
    /// When its recipient acknowledged it, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<String>,
}

/// The newest federation directory this node has ever loaded: an older one is refused
/// (rollback protection), as is a different one with the same version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectorySeen {
    /// Its version.
    pub version: u64,
    /// SHA-256 of the signed file (hex).
    pub digest: String,
}

/// A queue entry (inbox or outbox) as scanned: the order key and the message it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Sequence number (acceptance order).
    pub seq: u64,
    /// The message.
    pub id: MessageId,
}
