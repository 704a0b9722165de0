//! What center nodes say to each other: batches of messages and the signed receipts that
//! answer them. No I/O here; `outbox` sends batches, `api` receives them.
//!
//! ```text
//!  node A (outbox to B)                          node B
//!  POST /federation/v1/batches {"messages": […]} ─▶ validate each again, from scratch
//!                                                   ledger: message + inbox + audit
//!                                                   (one atomic, fsynced write), then sign
//!       ◀─ 200 {"results": [{"id", "receipt"} | {"id", "refused"}]}
//!  verify each receipt against B's key in the signed directory,
//!  ledger: delivered + receipt + audit
//! ```
//!
//! A receipt is B's Ed25519 signature over the message id, the message's digest (the
//! idempotency fingerprint both nodes compute from the canonical message, see
//! `ledger::Submission`), B's center id and the time B took the message. It proves to A (and
//! to anyone holding the directory) that B held exactly that message from that time on.
//!
//! Both carry the sender's resp. receiver's latest signed checkpoint of its audit chain, and
//! each node holds the newest checkpoint of each peer that extends the ones before
//! (`ledger::Ledger::peer_checkpoints`), so a node whose log is rolled back, cut back or
//! rewritten is caught by every peer it talks to (`node::peers`). A checkpoint names its
//! predecessor (`audit::Prev`); to link a newest checkpoint to the one held, the holder
//! needs the checkpoints in between. So each side says how far it holds the other's
//! (`holds`), and the other sends its checkpoints after that (`links`):
//!
//! ```text
//!  A ── batch {checkpoint: A's newest, holds: length of B's newest that A holds,
//!              links: A's checkpoints after the length B said it holds (last answer)} ─▶ B
//!  A ◀─ answer {checkpoint: B's newest, holds: length of A's newest that B holds,
//!               links: B's checkpoints after the batch's `holds`} ── B
//! ```
//!
//! The answer's links are exact; a batch's are as of B's previous answer, so after a
//! restart A's first batch carries none, and B links A's newest one batch later. Each side
//! also sends the evidence it keeps against the other (`evidence`: two of the other's own
//! checkpoints that contradict each other), which the other checks against its own key and
//! keeps: a node whose log was cut back learns it from its peers.
//!
//! The loop closes the other way with **pickup reports**: when an agency at B first pulls,
//! and then acknowledges, a message A handed over, B signs what happened (the message's key
//! and digest, B's center, when it was first pulled, when it was acknowledged) and a later
//! batch from B to A carries it (`pickups`). A checks the signature against B's key in the
//! directory and that it holds B's receipt for exactly that message, and answers each report
//! (`BatchResult::pickups`): taken, or refused for good with the reason; a report left out of
//! the answer is sent again.
//!
//! Architecture invariant: a receipt is signed only for a message already durable at the
//! receiving node; a retried hand-over gets the original receipt (the same facts signed
//! again: Ed25519 signatures are deterministic).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::audit::{Checkpoint, Evidence};
use crate::core::identity::CenterId;
use crate::core::keys::{PublicKey, SigningKey};

/// The endpoint nodes POST batches to.
pub const BATCHES_PATH: &str = "/federation/v1/batches";

/// Where a node restored from a backup asks another for what it delivered since.
pub const RESEND_PATH: &str = "/federation/v1/resend";

/// How far before the backup a restored node asks its peers to go back: what they
/// delivered before that is in the backup; more is harmless (the restored node keeps one
/// copy of each message), so the margin covers clocks that disagree.
pub const RESEND_MARGIN_S: i64 = 3600;

/// A node restored from a backup taken at `backup_taken_at` asks a peer to send again
/// what it delivered to it since (its receipts are in the peer's store, the messages no
/// longer in the restored one), and to tell it again of the consents that changed since.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// When the backup was taken (RFC 3339, the restored node's clock).
    pub backup_taken_at: String,
}

/// What the peer queued again for the restored node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResendAnswer {
    /// Messages put back into its outbox for the restored node.
    pub messages: u64,
    /// Consents it will tell the restored node of again.
    pub consents: u64,
}

/// Most messages in one batch a node accepts.
pub const BATCH_LEN_MAX: usize = 1000;

/// Most checkpoints a batch or an answer carries as `links` (a node signs one every
/// `checkpoint_every` entries or `checkpoint_interval_s`: a peer unheard of for longer
/// catches up over several batches).
pub const LINKS_MAX: usize = 256;

/// Most pieces of evidence a batch or an answer carries against the other node.
pub const EVIDENCE_MAX: usize = 4;

/// Most pickup reports a batch carries (more wait for the next batch).
pub const PICKUPS_MAX: usize = 1000;

/// Domain separation for receipt signatures (never valid as any other signed statement).
const RECEIPT_CONTEXT: &[u8] = b"plusgate receipt v1";

/// Domain separation for pickup report signatures (never valid as a receipt, a checkpoint
/// or any other signed statement).
const PICKUP_CONTEXT: &[u8] = b"plusgate pickup v1";

/// A batch of messages handed from one node to another.
///
/// The sender builds a `Batch` of [`WireMessage`]s and [`PickupReport`]s. The receiver parses
/// a `Batch<Value, Value>`: the batch's shape is checked whole (a bad one is refused whole),
/// each message and each report on its own (a bad one is refused alone, with the reason,
/// and the rest are taken).
///
/// Unknown members are refused (`deny_unknown_fields`), so a node that predates a member
/// answers a batch carrying it with 400: the sender leaves out what is new (`pickups`) when
/// its peer refuses it (`forwarder::round`), and the answer carries a new member only when
/// the batch did.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch<M = WireMessage, R = PickupReport> {
    /// In outbox order: the receiver takes them into inboxes in this order.
    pub messages: Vec<M>,
    /// The consents the messages cite, and consents whose withdrawal this center is to be
    /// told, in their current state. The receiver takes them in before the messages, so a
    /// message is checked against the consent as the sender knows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consents: Vec<WireConsent>,
    /// Messages the receiving node handed over earlier that the sending node withheld from
    /// their recipient since (their consent was withdrawn before anyone pulled them), so the
    /// sender's status can say so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<WithheldReport>,
    /// Messages the receiving node handed over earlier that an agency at the sending node
    /// has since pulled or acknowledged, signed by the sending node; at most
    /// [`PICKUPS_MAX`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pickups: Vec<R>,
    /// The sending node's latest checkpoint of its audit chain, for the receiver to keep.
    /// Absent when the sender has none (`null` is refused, as it always was).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub checkpoint: Option<Checkpoint>,
    /// The sending node's checkpoints after the newest one the receiver said it holds (in
    /// its last answer) and before `checkpoint`, oldest first, at most [`LINKS_MAX`]: what
    /// the receiver needs to link `checkpoint` to the one it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Checkpoint>,
    /// The length of the newest of the receiver's checkpoints that the sender holds, so
    /// the answer carries the receiver's checkpoints after it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub holds: Option<u64>,
    /// Evidence the sender keeps against the receiver (two of the receiver's own
    /// checkpoints that contradict each other), at most [`EVIDENCE_MAX`]: so a node whose
    /// log was cut back or rewritten learns it from its peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

/// An optional member that, when present, must hold a value (not `null`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A consent as it travels between nodes: the document as registered, its status, and its
/// collector's node's signed word on that state. The receiver derives everything else from
/// the document itself, and believes a status only as the attestation states it
/// (`consent::attestation`); `status` and `history` are the sender's view, for the record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireConsent {
    /// The consent document (`consent.v1.json`).
    pub document: Box<RawValue>,
    /// `granted` or `withdrawn`.
    pub status: crate::core::consent::ConsentStatus,
    /// Its status changes, oldest first.
    pub history: Vec<crate::core::consent::StatusChange>,
    /// Signed by the node of the collecting agency's center: what the receiver goes by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<crate::core::consent::attestation::Attestation>,
}

impl WireConsent {
    /// The wire form of a kept consent, with the attestation it travels under.
    pub fn of(
        c: &crate::core::consent::ConsentRecord,
        attestation: crate::core::consent::attestation::Attestation,
    ) -> WireConsent {
        WireConsent {
            document: c.document.clone(),
            status: c.status,
            history: c.history.clone(),
            attestation: Some(attestation),
        }
    }
}

/// A message the reporting node took over and then withheld from its recipient.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WithheldReport {
    /// The message (handed over by the node the report goes to).
    pub id: String,
    /// When it was withheld.
    pub at: String,
    /// Why.
    pub reason: String,
}

/// One message as it travels between nodes: the envelope, the sender (fixed by the origin
/// node from the agency's certificate) and the origin's digest. The sender sends the
/// payload as the canonical JSON it stored (`P` = `Box<RawValue>`); the receiver parses it
/// as a `Value` (`P` = `Value`), to validate it again.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireMessage<P = Box<RawValue>> {
    /// Message id.
    pub id: String,
    /// Sending agency (at the origin node's center).
    pub from: String,
    /// Recipient agency (at the receiving node's center).
    pub to: String,
    /// Message type.
    #[serde(rename = "type")]
    pub message_type: String,
    /// Payload schema version.
    pub version: u32,
    /// Pseudonymous subject.
    pub subject: String,
    /// Consent id, ...
    pub consent_id: String,
    /// ... and its collecting agency, when that is not `from` (see `consent::ConsentKey`).
    /// Absent from nodes that predate it: the receiver then finds the consent as for an
    /// agency that named no collector (`consent::resolve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_collected_by: Option<String>,
    /// Payload (canonical JSON).
    pub payload: P,
    /// When the origin accepted it.
    pub accepted_at: String,
    /// The origin's fingerprint of the message; the receiver computes its own and refuses
    /// the message if they differ.
    pub digest: String,
}

/// The answer to a batch: one result per message, in the batch's order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchResult {
    /// Results.
    pub results: Vec<ItemResult>,
    /// The receiving node's latest checkpoint of its audit chain, for the sender to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// The receiving node's checkpoints after the batch's `holds` and before `checkpoint`,
    /// oldest first, at most [`LINKS_MAX`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Checkpoint>,
    /// The length of the newest of the sender's checkpoints that the receiver holds (before
    /// this batch's): the next batch's `links` start after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<u64>,
    /// Evidence the receiver keeps against the sender, at most [`EVIDENCE_MAX`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// What became of the batch's pickup reports: one for each report taken or refused for
    /// good; a report without one is sent again later. Absent when the batch carried none,
    /// so a sender that predates reports never sees the member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pickups: Vec<PickupResult>,
}

/// What became of one message of a batch.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemResult {
    /// The message id.
    pub id: String,
    /// The receipt, when the receiving node holds the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// Why the receiving node will never take this message (retrying does not help).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A signed statement by a receiving node that it holds a message durably.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The message id.
    pub message_id: String,
    /// The message's digest (hex SHA-256 fingerprint).
    pub digest: String,
    /// The receiving node's center.
    pub node: CenterId,
    /// When the receiving node took the message (RFC 3339, UTC).
    pub received_at: String,
    /// Ed25519 signature (hex) by the receiving node's signing key.
    pub signature: String,
}

impl Receipt {
    /// Signs a receipt as `node` with `key`.
    pub fn sign(
        key: &SigningKey,
        node: &CenterId,
        message_id: &str,
        digest: &str,
        received_at: &str,
    ) -> Receipt {
        let signature = key.sign(&signed_bytes(message_id, digest, node, received_at));
        Receipt {
            message_id: message_id.to_owned(),
            digest: digest.to_owned(),
            node: node.clone(),
            received_at: received_at.to_owned(),
            signature: crate::core::hex::encode(&signature),
        }
    }

    /// True if the signature is `key`'s over this receipt's fields.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Some(signature) = crate::core::hex::decode(&self.signature) else {
            return false;
        };
        key.verify(
            &signed_bytes(
                &self.message_id,
                &self.digest,
                &self.node,
                &self.received_at,
            ),
            &signature,
        )
    }

    /// Checks a receipt returned for a message this node forwarded: it must be `peer`'s,
    /// for this message and digest, and signed with `peer`'s key from the directory.
    pub fn check(
        &self,
        peer: &CenterId,
        key: &PublicKey,
        message_id: &str,
        digest: &str,
    ) -> Result<(), ReceiptError> {
        if &self.node != peer {
            return Err(ReceiptError::OtherNode {
                named: self.node.clone(),
                asked: peer.clone(),
            });
        }
        if self.message_id != message_id {
            return Err(ReceiptError::OtherMessage {
                named: self.message_id.clone(),
                sent: message_id.to_owned(),
            });
        }
        if self.digest != digest {
            return Err(ReceiptError::OtherDigest {
                named: self.digest.clone(),
                sent: digest.to_owned(),
            });
        }
        if !self.verify(key) {
            return Err(ReceiptError::BadSignature { peer: peer.clone() });
        }
        Ok(())
    }
}

/// A signed statement by the node of a message's recipient that the recipient pulled it
/// (and perhaps acknowledged it): what closes the loop at the message's origin, which
/// otherwise only knows that it delivered the message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PickupReport {
    /// The message's key, `<from>/<id>` (`message::MessageId`): its sender is an agency of
    /// the node the report goes to.
    pub message_id: String,
    /// The message's digest (hex SHA-256 fingerprint), as the origin's receipt names it.
    pub digest: String,
    /// The reporting node's center: the recipient's.
    pub node: CenterId,
    /// When the recipient first pulled it (RFC 3339, the reporting node's clock).
    pub first_pulled_at: String,
    /// When the recipient acknowledged it, once it has.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub acked_at: Option<String>,
    /// Ed25519 signature (hex) by the reporting node's signing key.
    pub signature: String,
}

impl PickupReport {
    /// Signs a report as `node` with `key`.
    pub fn sign(
        key: &SigningKey,
        node: &CenterId,
        message_id: &str,
        digest: &str,
        first_pulled_at: &str,
        acked_at: Option<&str>,
    ) -> PickupReport {
        let bytes = pickup_bytes(message_id, digest, node, first_pulled_at, acked_at);
        PickupReport {
            message_id: message_id.to_owned(),
            digest: digest.to_owned(),
            node: node.clone(),
            first_pulled_at: first_pulled_at.to_owned(),
            acked_at: acked_at.map(str::to_owned),
            signature: crate::core::hex::encode(&key.sign(&bytes)),
        }
    }

    /// True if the signature is `key`'s over this report's fields.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Some(signature) = crate::core::hex::decode(&self.signature) else {
            return false;
        };
        let bytes = pickup_bytes(
            &self.message_id,
            &self.digest,
            &self.node,
            &self.first_pulled_at,
            self.acked_at.as_deref(),
        );
        key.verify(&bytes, &signature)
    }

    /// Checks a report `sender` handed over: it must be `sender`'s own, its times RFC 3339,
    /// and signed with `key`, `sender`'s key from the directory. (Whether the message went
    /// to `sender` is the origin's store's to say.)
    pub fn check(&self, sender: &CenterId, key: &PublicKey) -> Result<(), PickupError> {
        if &self.node != sender {
            return Err(PickupError::OtherNode {
                named: self.node.clone(),
                sender: sender.clone(),
            });
        }
        let times = std::iter::once(("first_pulled_at", Some(&self.first_pulled_at)))
            .chain(std::iter::once(("acked_at", self.acked_at.as_ref())));
        for (field, value) in times {
            if let Some(value) = value {
                if crate::core::time::parse(value).is_none() {
                    return Err(PickupError::NotATime {
                        field,
                        value: value.chars().take(40).collect(),
                    });
                }
            }
        }
        if !self.verify(key) {
            return Err(PickupError::BadSignature {
                node: sender.clone(),
            });
        }
        Ok(())
    }
}

/// Why a pickup report proves nothing by itself. The reporting node is at fault (or
/// someone between the nodes); the report is refused for good, and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickupError {
    /// It names another node than the one that sent it: a node reports only for its own
    /// agencies (and never relays).
    #[error("the report names node {named}, but {sender} sent it")]
    OtherNode {
        /// The node the report names.
        named: CenterId,
        /// The node that sent it.
        sender: CenterId,
    },
    /// A time that is not RFC 3339.
    #[error("{field} {value:?} is not an RFC 3339 time")]
    NotATime {
        /// Which field.
        field: &'static str,
        /// Its beginning.
        value: String,
    },
    /// The signature is not the node's (per the directory).
    #[error("the report's signature does not verify against {node}'s key in the directory")]
    BadSignature {
        /// The node that sent it.
        node: CenterId,
    },
}

/// What became of one pickup report of a batch: taken (`refused` absent), or refused for
/// good with the reason. Either way the reporting node drops it from its queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PickupResult {
    /// The report's `message_id`, as far as it could be read.
    pub message_id: String,
    /// Why the report will never be taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Why a receipt does not prove what it should. The receiving node is at fault (or someone
/// between the nodes); the message stays in the outbox and is sent again, and the peer
/// answers a resend with its original receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Signed by another node than the one the batch went to.
    #[error("receipt names node {named}, but {asked} was asked")]
    OtherNode {
        /// The node the receipt names.
        named: CenterId,
        /// The node the batch went to.
        asked: CenterId,
    },
    /// For another message.
    #[error("receipt is for message {named}, not {sent}")]
    OtherMessage {
        /// The message id the receipt names.
        named: String,
        /// The message sent.
        sent: String,
    },
    /// For other content than this node sent.
    #[error("receipt digest {named} differs from the message's {sent}")]
    OtherDigest {
        /// The digest the receipt names.
        named: String,
        /// The digest of the message sent.
        sent: String,
    },
    /// The signature is not the peer's (per the directory).
    #[error("receipt signature does not verify against {peer}'s key in the directory")]
    BadSignature {
        /// The node the batch went to.
        peer: CenterId,
    },
}

/// The bytes a receipt signature covers: a context string and each field, length-prefixed
/// so that no two different receipts share the same bytes.
fn signed_bytes(message_id: &str, digest: &str, node: &CenterId, received_at: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for field in [
        RECEIPT_CONTEXT,
        message_id.as_bytes(),
        digest.as_bytes(),
        node.as_str().as_bytes(),
        received_at.as_bytes(),
    ] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// The bytes a pickup report's signature covers: a context string and each field,
/// length-prefixed, with a presence byte before `acked_at`, so that no two different reports
/// share the same bytes (an empty acknowledgement time is not an absent one).
fn pickup_bytes(
    message_id: &str,
    digest: &str,
    node: &CenterId,
    first_pulled_at: &str,
    acked_at: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    let acked: &[u8] = if acked_at.is_some() { &[1] } else { &[0] };
    for field in [
        PICKUP_CONTEXT,
        message_id.as_bytes(),
        digest.as_bytes(),
        node.as_str().as_bytes(),
        first_pulled_at.as_bytes(),
        acked,
        acked_at.unwrap_or_default().as_bytes(),
    ] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

#[cfg(test)]
mod tests;
