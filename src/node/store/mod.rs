//! The node's durable state, behind an interface of our own so that sled can later be
//! replaced by a replicated engine without touching the rest of the node.
//!
//! Layout: one sled tree, key families separated by a one-byte prefix. One tree because a
//! sled `Batch` is atomic within a tree, which is exactly the guarantee a push needs (message,
//! delivery state, inbox entry and audit entry land together or not at all), and it is far
//! cheaper than sled's cross-tree transactions.
//!
//! | prefix | key                                  | value                 |
//! |--------|--------------------------------------|-----------------------|
//! | `m`    | message id                           | [`MessageRecord`]     |
//! | `d`    | message id                           | [`DeliveryRecord`]    |
//! | `i`    | recipient agency, `0x00`, seq (BE)   | message id            |
//! | `a`    | audit seq (BE)                       | [`AuditEntry`]        |
//! | `o`    | peer center, `0x00`, seq (BE)        | message id            |
//! | `r`    | message id                           | [`Receipt`]           |
//! | `s`    | setting name                         | e.g. [`DirectorySeen`]|
//! | `x`    | message id                           | empty: dead-lettered  |
//! | `c`    | chain length (BE)                    | own [`Checkpoint`]    |
//! | `p`    | peer center                          | its latest [`Checkpoint`] |
//! | `k`    | consent id                           | [`ConsentRecord`]     |
//! | `u`    | subject, `0x00`, audit seq (BE)      | empty: index of `a` by subject |
//! | `g`    | consent id, `0x00`, seq (BE)         | message id: messages under a consent |
//! | `e`    | retention end (unix s, BE), seq (BE) | message id: payloads to purge, by when |
//! | `n`    | peer center, `0x00`, consent id      | empty: a consent change to tell that center |
//! | `w`    | peer center, `0x00`, message id      | [`Erasure`]: tell that (origin) center its message was withheld here |
//!
//! `i` and `o` are queues: a message for an agency at this center waits in its recipient's
//! inbox (`i`), a message for another center in that center's outbox (`o`), both ordered by
//! the sequence number of the audit entry that put it there.
//!
//! Every value except queue entries (which only point at a message) is a versioned,
//! checksummed [`record`], verified on read.
//!
//! Durability: [`Store::apply`] makes a write set visible atomically but not durable;
//! [`Store::sync`] makes everything applied so far durable. sled's own `flush` ends in
//! `sync_file_range` on Linux, which does not persist file metadata (e.g. the file's new
//! length), so `sync` follows it with an explicit `fsync` of sled's data file. Values stay
//! below sled's blob threshold (the body limit in `config` is capped for that), so no part of
//! a commit lives in a separate blob file that this fsync would miss.
//!
//! Architecture invariant: only this module knows sled exists.

pub mod record;
pub mod reports;

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::audit::{AuditEntry, Checkpoint};
use crate::core::consent::ConsentRecord;
use crate::core::identity::{AgencyId, CenterId};
use crate::core::message::MessageId;
use crate::core::vault::{DataKeys, Sealed, VaultError};
use crate::core::wire::Receipt;

pub use record::RecordError;

/// sled's segment size. Its blob threshold is a quarter of this (2 MiB), above the largest
/// accepted body ([`crate::config::BODY_BYTES_MAX_LIMIT`]) plus record overhead.
const SEGMENT_BYTES: usize = 8 << 20;

/// sled's page cache. Bounded so a node's memory stays predictable on small hardware; the
/// working set (recent messages, inbox heads, the audit tail) is far smaller.
const CACHE_BYTES: u64 = 256 << 20;

const MESSAGE: u8 = b'm';
const DELIVERY: u8 = b'd';
const INBOX: u8 = b'i';
const AUDIT: u8 = b'a';
const OUTBOX: u8 = b'o';
const RECEIPT: u8 = b'r';
const SETTING: u8 = b's';
const DIRECTORY_SEEN: &[u8] = b"directory";
const DEAD: u8 = b'x';
const CHECKPOINT: u8 = b'c';
const PEER_CHECKPOINT: u8 = b'p';
const CONSENT: u8 = b'k';
const BY_SUBJECT: u8 = b'u';
const BY_CONSENT: u8 = b'g';
const RETENTION: u8 = b'e';
const NOTICE: u8 = b'n';
const WITHHELD_REPORT: u8 = b'w';
/// Setting present once every audit entry is in the subject index.
const SUBJECT_INDEX_COMPLETE: &[u8] = b"subject-index";

/// What went wrong in the store. None of these is the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be opened.
    #[error("cannot open data directory {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// sled failed during operation (I/O error, or sled found its own log corrupt).
    #[error("storage engine error: {0}")]
    Engine(#[from] sled::Error),
    /// fsync of the data file failed: nothing applied since the last sync may be durable.
    #[error("fsync of {path} failed: {source}")]
    Sync {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stored record failed verification: it is not served.
    #[error("stored {family} record {key} is corrupt: {source}")]
    Corrupt {
        /// Which key family.
        family: &'static str,
        /// The key, printable.
        key: String,
        /// What failed.
        source: RecordError,
    },
}

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
    /// Consent the message travels under.
    pub consent_id: String,
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
                let bytes = keys.open(&self.id, sealed)?;
                let text = String::from_utf8(bytes).map_err(|_| VaultError::Damaged)?;
                RawValue::from_string(text).map_err(|_| VaultError::Damaged)
            }
            (None, Some(sealed), None) => Err(VaultError::UnknownKey(sealed.key.clone())),
            (None, None, _) => Err(VaultError::Damaged),
        }
    }

    /// Encodes the record for [`WriteSet::put_message`]. Separate from the write so that the
    /// (comparatively expensive) encoding of the payload can run on the caller's thread, in
    /// parallel, rather than on the single writer's.
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
    key: Vec<u8>,
    bytes: Vec<u8>,
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

/// A set of writes applied atomically by [`Store::apply`].
#[derive(Default)]
pub struct WriteSet {
    batch: sled::Batch,
    len: usize,
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
    /// Stores an encoded message record.
    pub fn put_message(&mut self, message: EncodedMessage) {
        self.put(message.key, message.bytes);
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
        self.batch.remove(inbox_key(recipient, seq));
        self.len += 1;
    }
    /// Puts a message into the outbox to `peer` at position `seq`.
    pub fn put_outbox(&mut self, peer: &CenterId, seq: u64, id: &MessageId) {
        self.put(outbox_key(peer, seq), id.as_str().as_bytes().to_vec());
    }
    /// Removes an outbox entry.
    pub fn remove_outbox(&mut self, peer: &CenterId, seq: u64) {
        self.batch.remove(outbox_key(peer, seq));
        self.len += 1;
    }
    /// Stores the receipt a peer signed for a message this node forwarded.
    pub fn put_receipt(&mut self, receipt: &Receipt) {
        self.put(
            key(RECEIPT, receipt.message_id.as_bytes()),
            record::encode(receipt),
        );
    }
    /// Marks a message dead-lettered (an index for operators).
    pub fn put_dead_letter(&mut self, id: &MessageId) {
        self.put(key(DEAD, id.as_str().as_bytes()), Vec::new());
    }
    /// Unmarks a dead-lettered message (requeued).
    pub fn remove_dead_letter(&mut self, id: &MessageId) {
        self.batch.remove(key(DEAD, id.as_str().as_bytes()));
        self.len += 1;
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
    /// Stores a consent (registered or changed).
    pub fn put_consent(&mut self, consent: &ConsentRecord) {
        self.put(key(CONSENT, consent.id.as_bytes()), record::encode(consent));
    }
    /// Indexes message `id` (queue position `seq`) under the consent it cites.
    pub fn put_under_consent(&mut self, consent_id: &str, seq: u64, id: &MessageId) {
        let k = queue_key(&queue_prefix(BY_CONSENT, consent_id), seq);
        self.put(k, id.as_str().as_bytes().to_vec());
    }
    /// Schedules the purge of message `id`'s payload at `end` (unix seconds).
    pub fn put_retention(&mut self, end: u64, seq: u64, id: &MessageId) {
        self.put(retention_key(end, seq), id.as_str().as_bytes().to_vec());
    }
    /// Drops a scheduled purge (done).
    pub fn remove_retention(&mut self, end: u64, seq: u64) {
        self.batch.remove(retention_key(end, seq));
        self.len += 1;
    }
    /// Notes that center `peer` is to be told of consent `consent_id`'s current state.
    pub fn put_notice(&mut self, peer: &CenterId, consent_id: &str) {
        self.put(notice_key(peer, consent_id), Vec::new());
    }
    /// `peer` was told.
    pub fn remove_notice(&mut self, peer: &CenterId, consent_id: &str) {
        self.batch.remove(notice_key(peer, consent_id));
        self.len += 1;
    }
    /// Notes that center `peer`, where message `id` came from, is to be told it was
    /// withheld here.
    pub fn put_withheld_report(&mut self, peer: &CenterId, id: &MessageId, why: &Erasure) {
        self.put(report_key(peer, id), record::encode(why));
    }
    /// `peer` was told.
    pub fn remove_withheld_report(&mut self, peer: &CenterId, id: &MessageId) {
        self.batch.remove(report_key(peer, id));
        self.len += 1;
    }
    /// Records the newest directory loaded.
    pub fn put_directory_seen(&mut self, seen: &DirectorySeen) {
        self.put(key(SETTING, DIRECTORY_SEEN), record::encode(seen));
    }
    /// Appends an audit entry.
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
    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.batch.insert(k, v);
        self.len += 1;
    }
}

/// The store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    data_file: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_file", &self.data_file)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.to_owned(),
            source,
        };
        let db = sled::Config::new()
            .path(dir)
            .segment_size(SEGMENT_BYTES)
            .cache_capacity(CACHE_BYTES)
            .mode(sled::Mode::HighThroughput)
            // We make commits durable ourselves (group commit + fsync); sled's background
            // flusher would only add unsynchronised writes.
            .flush_every_ms(None)
            .open()
            .map_err(open_err)?;
        Ok(Store {
            db,
            data_file: dir.join("db"),
        })
    }

    /// Applies a write set atomically. Visible to readers at once, durable only after
    /// [`Store::sync`].
    pub fn apply(&self, writes: WriteSet) -> Result<(), StoreError> {
        self.db.apply_batch(writes.batch)?;
        Ok(())
    }

    /// Makes everything applied so far durable: sled's flush, then an fsync of its data file.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        let sync_err = |source| StoreError::Sync {
            path: self.data_file.clone(),
            source,
        };
        File::open(&self.data_file)
            .and_then(|f| f.sync_all())
            .map_err(sync_err)
    }

    /// Reads and verifies a message record.
    pub fn message(&self, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.get(MESSAGE, "message", id.as_str())
    }

    /// Reads and verifies a delivery record.
    pub fn delivery(&self, id: &MessageId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.get(DELIVERY, "delivery", id.as_str())
    }

    /// The inbox of `recipient` in acceptance order, starting after `after_seq`.
    pub fn inbox(
        &self,
        recipient: &AgencyId,
        after_seq: Option<u64>,
    ) -> impl Iterator<Item = Result<QueueEntry, StoreError>> + '_ {
        self.queue("inbox", queue_prefix(INBOX, recipient.as_str()), after_seq)
    }

    /// The outbox to `peer` in acceptance order, starting after `after_seq`.
    pub fn outbox(
        &self,
        peer: &CenterId,
        after_seq: Option<u64>,
    ) -> impl Iterator<Item = Result<QueueEntry, StoreError>> + '_ {
        self.queue("outbox", queue_prefix(OUTBOX, peer.as_str()), after_seq)
    }

    /// How many messages wait in each outbox.
    pub fn outbox_lengths(
        &self,
    ) -> Result<std::collections::BTreeMap<CenterId, usize>, StoreError> {
        let mut lengths = std::collections::BTreeMap::new();
        for item in self.db.scan_prefix([OUTBOX]) {
            let (k, _) = item?;
            let peer = k[1..]
                .split(|b| *b == 0)
                .next()
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| CenterId::parse(p).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    family: "outbox",
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body("key names no center".into()),
                })?;
            *lengths.entry(peer).or_insert(0) += 1;
        }
        Ok(lengths)
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

    /// The audit entries about `subject`, in chain order.
    pub fn audit_for_subject(
        &self,
        subject: &str,
    ) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        let prefix = queue_prefix(BY_SUBJECT, subject);
        let prefix_len = prefix.len();
        self.db.scan_prefix(prefix).map(move |item| {
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

    /// Reads and verifies a registered consent.
    pub fn consent(&self, id: &str) -> Result<Option<ConsentRecord>, StoreError> {
        self.get(CONSENT, "consent", id)
    }

    /// The messages this node holds under consent `consent_id`, in acceptance order.
    pub fn messages_under(
        &self,
        consent_id: &str,
    ) -> impl Iterator<Item = Result<QueueEntry, StoreError>> + '_ {
        self.queue("consent index", queue_prefix(BY_CONSENT, consent_id), None)
    }

    /// Scheduled purges due at or before `now` (unix seconds): (end, seq, message).
    pub fn retention_due(
        &self,
        now: u64,
    ) -> impl Iterator<Item = Result<(u64, u64, MessageId), StoreError>> + '_ {
        self.db
            .range(key(RETENTION, &[])..retention_key(now.saturating_add(1), 0))
            .map(|item| {
                let (k, v) = item?;
                let corrupt = |what: &str| StoreError::Corrupt {
                    family: "retention",
                    key: format!("{:02x?}", &k[..]),
                    source: RecordError::Body(what.to_owned()),
                };
                let end: [u8; 8] = k
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("key has no end time"))?;
                let seq: [u8; 8] = k
                    .get(9..17)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("key has no sequence number"))?;
                let id = std::str::from_utf8(&v)
                    .ok()
                    .and_then(MessageId::parse)
                    .ok_or_else(|| corrupt("value is not a message id"))?;
                Ok((u64::from_be_bytes(end), u64::from_be_bytes(seq), id))
            })
    }

    /// The consents whose current state center `peer` is still to be told, in id order.
    pub fn notices(
        &self,
        peer: &CenterId,
    ) -> impl Iterator<Item = Result<String, StoreError>> + '_ {
        let prefix = queue_prefix(NOTICE, peer.as_str());
        let prefix_len = prefix.len();
        self.db.scan_prefix(prefix).map(move |item| {
            let (k, _) = item?;
            String::from_utf8(k[prefix_len..].to_vec()).map_err(|_| StoreError::Corrupt {
                family: "notice",
                key: String::from_utf8_lossy(&k).into_owned(),
                source: RecordError::Body("consent id is not UTF-8".into()),
            })
        })
    }

    /// Messages from center `peer` withheld here that it is still to be told of.
    pub fn withheld_reports(
        &self,
        peer: &CenterId,
    ) -> impl Iterator<Item = Result<(MessageId, Erasure), StoreError>> + '_ {
        let prefix = queue_prefix(WITHHELD_REPORT, peer.as_str());
        let prefix_len = prefix.len();
        self.db.scan_prefix(prefix).map(move |item| {
            let (k, v) = item?;
            let id = std::str::from_utf8(&k[prefix_len..])
                .ok()
                .and_then(MessageId::parse)
                .ok_or_else(|| StoreError::Corrupt {
                    family: "withheld report",
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body("key is not a message id".into()),
                })?;
            Ok((id, decode_at("withheld report", &k, &v)?))
        })
    }

    /// The latest checkpoint `peer` handed over.
    pub fn peer_checkpoint(&self, peer: &CenterId) -> Result<Option<Checkpoint>, StoreError> {
        self.get(PEER_CHECKPOINT, "peer checkpoint", peer.as_str())
    }

    /// Every dead-lettered message, in id order.
    pub fn dead_letters(&self) -> impl Iterator<Item = Result<MessageId, StoreError>> + '_ {
        self.db.scan_prefix([DEAD]).map(|item| {
            let (k, _) = item?;
            std::str::from_utf8(&k[1..])
                .ok()
                .and_then(MessageId::parse)
                .ok_or_else(|| StoreError::Corrupt {
                    family: "dead-letter",
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body("key is not a message id".into()),
                })
        })
    }

    /// Reads and verifies a stored receipt.
    pub fn receipt(&self, id: &MessageId) -> Result<Option<Receipt>, StoreError> {
        self.get(RECEIPT, "receipt", id.as_str())
    }

    /// The newest directory this node has loaded, if any.
    pub fn directory_seen(&self) -> Result<Option<DirectorySeen>, StoreError> {
        match self.db.get(key(SETTING, DIRECTORY_SEEN))? {
            None => Ok(None),
            Some(v) => decode_at("setting", &key(SETTING, DIRECTORY_SEEN), &v).map(Some),
        }
    }

    fn queue(
        &self,
        family: &'static str,
        prefix: Vec<u8>,
        after_seq: Option<u64>,
    ) -> impl Iterator<Item = Result<QueueEntry, StoreError>> + '_ {
        let start = match after_seq {
            Some(seq) => queue_key(&prefix, seq.saturating_add(1)),
            None => prefix.clone(),
        };
        let prefix_len = prefix.len();
        self.db
            .range(start..)
            .take_while(move |item| match item {
                Ok((k, _)) => k.starts_with(&prefix),
                Err(_) => true,
            })
            .map(move |item| {
                let (k, v) = item?;
                let corrupt = |what: &str| StoreError::Corrupt {
                    family,
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body(what.to_owned()),
                };
                let seq_bytes: [u8; 8] = k[prefix_len..]
                    .try_into()
                    .map_err(|_| corrupt("key has no sequence number"))?;
                let id = std::str::from_utf8(&v)
                    .ok()
                    .and_then(MessageId::parse)
                    .ok_or_else(|| corrupt("value is not a message id"))?;
                Ok(QueueEntry {
                    seq: u64::from_be_bytes(seq_bytes),
                    id,
                })
            })
    }

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

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        family_byte: u8,
        family: &'static str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get(key(family_byte, id.as_bytes()))? {
            None => Ok(None),
            Some(v) => record::decode(&v)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    family,
                    key: id.to_owned(),
                    source,
                }),
        }
    }
}

fn decode_at<T: serde::de::DeserializeOwned>(
    family: &'static str,
    k: &[u8],
    v: &[u8],
) -> Result<T, StoreError> {
    record::decode(v).map_err(|source| StoreError::Corrupt {
        family,
        key: format!("{:02x?}", &k[1..]),
        source,
    })
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

/// `family`, the queue owner (agency or center id), NUL. Ids never contain NUL, so one
/// owner's prefix is never a prefix of another's (`suwon/a` vs `suwon/ab`).
fn queue_prefix(family: u8, owner: &str) -> Vec<u8> {
    let mut k = key(family, owner.as_bytes());
    k.push(0);
    k
}

fn queue_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn retention_key(end: u64, seq: u64) -> Vec<u8> {
    queue_key(&key(RETENTION, &end.to_be_bytes()), seq)
}

fn notice_key(peer: &CenterId, consent_id: &str) -> Vec<u8> {
    let mut k = queue_prefix(NOTICE, peer.as_str());
    k.extend_from_slice(consent_id.as_bytes());
    k
}

fn report_key(peer: &CenterId, id: &MessageId) -> Vec<u8> {
    let mut k = queue_prefix(WITHHELD_REPORT, peer.as_str());
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn inbox_key(recipient: &AgencyId, seq: u64) -> Vec<u8> {
    queue_key(&queue_prefix(INBOX, recipient.as_str()), seq)
}

fn outbox_key(peer: &CenterId, seq: u64) -> Vec<u8> {
    queue_key(&queue_prefix(OUTBOX, peer.as_str()), seq)
}
