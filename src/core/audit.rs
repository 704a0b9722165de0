//! The tamper-evident audit log: a hash chain of entries, each carrying the SHA-256 of the
//! previous one, so removing, inserting, reordering or altering an entry breaks every hash
//! after it.
//!
//! ```text
//! hash(n) = SHA-256( hash(n-1) || canonical JSON of entry n without its `hash` )
//! hash(-1) = 32 zero bytes
//! ```
//!
//! A federated node signs the chain's length and head at checkpoints, which chain too and
//! by which its peers catch a log that goes back or forks: see [`checkpoint`].
//!
//! Architecture invariant: this module is pure (no I/O, no clock). The ledger is the only
//! writer of the chain; it appends entries in the same atomic write as the change they record.

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::core::hex;

pub mod checkpoint;

pub use checkpoint::{
    follow, Checkpoint, Contradiction, Divergence, Evidence, Followed, Link, Prev,
};

/// What happened.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A message was accepted and put into its recipient's inbox.
    Accepted,
    /// The recipient leased (pulled) the message: a disclosure of its content.
    Leased,
    /// The recipient acknowledged the message.
    Acked,
    /// Another center's node handed the message over and this node took it into the
    /// recipient's inbox (actor: that node; detail: the receipt this node signed).
    Received,
    /// The recipient's center returned a signed receipt for a forwarded message (actor: that
    /// node; detail: its receipt signature).
    Delivered,
    /// A message for another center left the outbox undelivered (detail: why).
    DeadLettered,
    /// An operator put a dead-lettered message back into its outbox.
    Requeued,
    /// The collecting agency registered a consent (`consent_id`; no message).
    ConsentRegistered,
    /// A consent was withdrawn (detail: the stated reason).
    ConsentWithdrawn,
    /// A privacy officer looked at a subject's record (detail: which report).
    Queried,
    /// A message was refused because no consent covers it (detail: the condition that
    /// failed, as `<problem-type>: <explanation>`). Written at the origin (the agency's push)
    /// and at the destination (another node's hand-over).
    Refused,
    /// A message was held back because its consent was withdrawn before it was pulled: taken
    /// out of its inbox or outbox, its payload erased (detail: the withdrawal).
    Withheld,
    /// A message's payload was erased because the retention period of its consent ended
    /// (metadata, receipts and audit entries stay).
    Purged,
    /// A consent (or a change of its status) arrived from another center's node with a
    /// message or a withdrawal notice (actor: that node; detail: the status it brought).
    ConsentReceived,
    /// The node of a forwarded message's recipient reported, signed, that the recipient
    /// first pulled it or acknowledged it, and this node recorded that on the message's
    /// delivery (actor: that node; detail: the times it reported and its signature).
    PickupReported,
}

impl Action {
    /// Every action, in declaration order: what the console's label catalogue must cover
    /// (a unit test keeps the list whole).
    pub const ALL: [Action; 15] = [
        Action::Accepted,
        Action::Leased,
        Action::Acked,
        Action::Received,
        Action::Delivered,
        Action::DeadLettered,
        Action::Requeued,
        Action::ConsentRegistered,
        Action::ConsentWithdrawn,
        Action::Queried,
        Action::Refused,
        Action::Withheld,
        Action::Purged,
        Action::ConsentReceived,
        Action::PickupReported,
    ];
}

/// One entry of the chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 0.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who acted: the SAN URI of the verified certificate.
    pub actor: String,
    /// What happened.
    pub action: Action,
    /// The message concerned: its id as its sender wrote it, which with `from` names it
    /// (see `message::MessageId`).
    pub message_id: String,
    /// Sending agency.
    pub from: String,
    /// Recipient agency.
    pub to: String,
    /// Pseudonymous subject.
    pub subject: String,
    /// Consent the message travels under: its id ...
    pub consent_id: String,
    /// ... and its collecting agency (see `consent::ConsentKey`), on every message entry
    /// written since consents were scoped by collector. Absent on consent events (their
    /// `from` is the collector) and on older entries, which hash as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_by: Option<String>,
    /// What else matters for this action (a receipt signature, a dead-letter reason).
    /// Absent when empty, so entries of actions without detail hash as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Hash of the previous entry (hex).
    pub prev: String,
    /// Hash of this entry (hex).
    pub hash: String,
}

/// Longest [`AuditEntry::detail`], and longest stored reason (a dead-letter reason, a
/// delivery's last error, an erasure's reason), in bytes.
///
/// Invariant, kept by [`Head::append`] for details and by the ledger (through
/// [`bound_detail`]) for the reasons in delivery and message records: no stored text of
/// this kind is longer. Such texts come from outside (a peer node's answer, an agency's
/// stated withdrawal reason); a bound keeps a chatty or hostile peer from filling the audit
/// chain, which is kept for years and cannot be edited, and limits what personal data a
/// reason could ever carry. 2000 is the longest withdrawal reason the API accepts, so a
/// stated reason is never cut.
pub const DETAIL_BYTES_MAX: usize = 2000;

/// `text` cut to at most [`DETAIL_BYTES_MAX`] bytes on a character boundary, ending with
/// `…` when it was cut.
pub fn bound_detail(mut text: String) -> String {
    if text.len() <= DETAIL_BYTES_MAX {
        return text;
    }
    const MARK: &str = "…";
    let mut end = DETAIL_BYTES_MAX - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

/// The fields of an entry that the ledger supplies; the chain adds `seq`, `prev`, `hash`.
#[derive(Debug, Clone)]
pub struct Event {
    /// When.
    pub at: String,
    /// Who (SAN URI).
    pub actor: String,
    /// What.
    pub action: Action,
    /// Message id.
    pub message_id: String,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Consent id.
    pub consent_id: String,
    /// Consent's collector (see [`AuditEntry::consent_by`]).
    pub consent_by: Option<String>,
    /// Detail (see [`AuditEntry::detail`]).
    pub detail: Option<String>,
}

/// The head of a chain: what the next entry links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Sequence number the next entry gets.
    pub next_seq: u64,
    /// Hash of the last entry (zeros for an empty chain).
    pub hash: [u8; 32],
}

impl Head {
    /// The head of an empty chain.
    pub const GENESIS: Head = Head {
        next_seq: 0,
        hash: [0; 32],
    };

    /// The head after `entry`, checking that the entry's content matches its own hash (a
    /// cheap guard at start; the whole chain is checked by [`verify`]).
    pub fn after(entry: &AuditEntry) -> Result<Head, ChainError> {
        let bad = |problem| ChainError {
            seq: entry.seq,
            problem,
        };
        let prev = hex::decode_array(&entry.prev).ok_or(bad("prev is not 64 hex digits"))?;
        let hash = entry_hash(&prev, entry);
        if entry.hash != hex::encode(&hash) {
            return Err(bad("content does not match its hash (altered)"));
        }
        Ok(Head {
            next_seq: entry.seq + 1,
            hash,
        })
    }

    /// Appends `event` after this head, returning the entry and advancing the head.
    pub fn append(&mut self, event: Event) -> AuditEntry {
        let mut entry = AuditEntry {
            seq: self.next_seq,
            at: event.at,
            actor: event.actor,
            action: event.action,
            message_id: event.message_id,
            from: event.from,
            to: event.to,
            subject: event.subject,
            consent_id: event.consent_id,
            consent_by: event.consent_by,
            detail: event.detail.map(bound_detail),
            prev: hex::encode(&self.hash),
            hash: String::new(),
        };
        let hash = entry_hash(&self.hash, &entry);
        entry.hash = hex::encode(&hash);
        self.next_seq += 1;
        self.hash = hash;
        entry
    }
}

/// A break in the chain at entry `seq`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {problem}")]
pub struct ChainError {
    /// The first bad entry.
    pub seq: u64,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Checks a chain entry by entry, from its first entry, without holding it in memory.
#[derive(Debug, Clone)]
pub struct Verifier {
    head: Head,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// A verifier expecting entry 0.
    pub fn new() -> Verifier {
        Verifier {
            head: Head::GENESIS,
        }
    }

    /// Checks the next entry; the error names the first bad one.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainError> {
        let bad = |problem| ChainError {
            seq: self.head.next_seq,
            problem,
        };
        if entry.seq != self.head.next_seq {
            return Err(bad(
                "sequence number out of order (entry missing, inserted or moved)",
            ));
        }
        if entry.prev != hex::encode(&self.head.hash) {
            return Err(bad("does not link to the previous entry"));
        }
        let hash = entry_hash(&self.head.hash, entry);
        if entry.hash != hex::encode(&hash) {
            return Err(bad("content does not match its hash (altered)"));
        }
        self.head = Head {
            next_seq: self.head.next_seq + 1,
            hash,
        };
        Ok(())
    }

    /// The head after the entries pushed so far.
    pub fn head(&self) -> &Head {
        &self.head
    }
}

impl Verifier {
    /// A verifier that continues a chain whose entries before `next_seq` it has not seen,
    /// trusting that the last of them hashed to `hash` (an export that starts later than
    /// entry 0: a signed checkpoint must then vouch for what follows).
    pub fn resume(next_seq: u64, hash: [u8; 32]) -> Verifier {
        Verifier {
            head: Head { next_seq, hash },
        }
    }
}

/// Verifies a whole chain from its first entry; returns its head.
pub fn verify<I: IntoIterator<Item = AuditEntry>>(entries: I) -> Result<Head, ChainError> {
    let mut verifier = Verifier::new();
    for entry in entries {
        verifier.push(&entry)?;
    }
    Ok(verifier.head)
}

fn entry_hash(prev: &[u8; 32], entry: &AuditEntry) -> [u8; 32] {
    let unhashed = AuditEntry {
        hash: String::new(),
        ..entry.clone()
    };
    let mut ctx = Context::new(&SHA256);
    ctx.update(prev);
    ctx.update(&serde_json::to_vec(&unhashed).expect("audit entries always serialize"));
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The `n`-th event of a test chain (an `accepted` of message `m-n`).
#[cfg(test)]
pub(crate) fn test_event(n: u64) -> Event {
    Event {
        at: format!("2026-11-23T10:00:{n:02}Z"),
        actor: "urn:plusgate:agency:suwon:employment".into(),
        action: Action::Accepted,
        message_id: format!("m-{n}"),
        from: "suwon/employment".into(),
        to: "suwon/welfare".into(),
        subject: "ps-0123456789abcdef".into(),
        consent_id: "cns-1".into(),
        consent_by: Some("suwon/employment".into()),
        detail: None,
    }
}

#[cfg(test)]
mod tests;
