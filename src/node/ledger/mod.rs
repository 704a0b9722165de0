//! The ledger: the node's single writer. Every change to durable state (accepting a message,
//! leasing it, acknowledging it, taking one over from another node, recording a peer's
//! receipt, dead-lettering) is a [`Command`] sent to one thread that owns the audit
//! chain's head, turns commands into one atomic write set per group, makes the group durable
//! with one flush+fsync, and only then answers every command of the group (group commit).
//!
//! ```text
//!  api tasks ──Command──▶ [bounded queue] ──▶ ledger thread
//!                                              │ take all waiting commands (≤ GROUP_LEN_MAX)
//!                                              │ check each (idempotency, ownership)
//!                                              │ build one WriteSet, chain audit entries
//!                                              │ store.apply + store.sync  (one fsync)
//!                                              │ publish the durable sequence number
//!                                              ▼ answer each command
//! ```
//!
//! Architecture invariants, enforced here:
//! - A command is answered with success only after its writes are durable.
//! - A message, its delivery record, its inbox or outbox entry and its audit entry are in one
//!   write set; a peer's receipt for a forwarded message is in the same write set as the
//!   message's move from `accepted` to `delivered`.
//! - An outbox never holds more than `outbox_max` messages: beyond that, pushes for that
//!   center are refused (the caller answers 503) instead of growing without bound.
//! - Audit sequence numbers are dense and ordered: only this thread appends to the chain.
//! - Readers see an inbox entry only when its sequence number is below the published durable
//!   sequence number (see `inbox`), so nobody can pull a message that a crash could still undo.
//! - After a failed fsync the ledger refuses all further writes: what is on disk is then
//!   unknown, and the only safe recovery is a restart, which re-reads what sled persisted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use ring::digest::{Context, SHA256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};

use crate::core::audit::{self, Action, Checkpoint, Event, Head};
use crate::core::consent::{ConsentRecord, Refusal, Retention, StatusChange, Terms, Use};
use crate::core::identity::{AgencyId, CenterId};
use crate::core::message::{Envelope, MessageId, MessageType};
use crate::core::routing::Route;
use crate::core::vault::{DataKeys, VaultError};
use crate::core::wire::{Receipt, WithheldReport};
use crate::node::store::{
    DeliveryRecord, DeliveryState, DirectorySeen, EncodedMessage, Lifecycle, MessageRecord, Store,
    StoreError, WriteSet,
};

/// Most commands committed by one flush+fsync.
pub const GROUP_LEN_MAX: usize = 4096;
/// Commands that may wait for the ledger; senders beyond this wait for room (backpressure).
pub const QUEUE_LEN_MAX: usize = 16_384;

/// Why the ledger could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The id was used before for a different message (or by a different sender).
    #[error("message id {0} was already used for a different message")]
    IdConflict(MessageId),
    /// An ack named a message in another agency's inbox.
    #[error("message {0} is not addressed to you")]
    NotYours(MessageId),
    /// An ack named a message that does not exist.
    #[error("no message {0}")]
    NoSuchMessage(MessageId),
    /// The outbox to this center is full: the center has been unreachable for a while.
    /// Nothing was written; retry later.
    #[error("the outbox to center {0} is full; retry later")]
    OutboxFull(CenterId),
    /// The consent id was registered before with a different document.
    #[error("consent {0} is already registered with a different document")]
    ConsentConflict(String),
    /// No consent with this id is registered here.
    #[error("no consent {0} is registered here")]
    NoSuchConsent(String),
    /// Only the agency that collected a consent may change it.
    #[error("consent {0} was collected by another agency; only it may withdraw it")]
    NotCollector(String),
    /// A peer's checkpoint does not follow the one it signed before: it rolled back or
    /// rewrote its audit log. The earlier checkpoint is kept.
    #[error("{0}")]
    PeerRollback(String),
    /// The message is not in a state the operation applies to.
    #[error("message {id} is {state}: {what}")]
    WrongState {
        /// The message.
        id: MessageId,
        /// Its state.
        state: &'static str,
        /// What was expected.
        what: &'static str,
    },
    /// No consent covers the message (the refusal is in the audit chain).
    #[error("{0}")]
    Refused(Refusal),
    /// Storage failed; the command had no effect that was acknowledged. Retry later.
    #[error("storage failure: {0}")]
    Storage(#[from] StoreError),
    /// The ledger stopped writing after a storage failure, or is shutting down.
    #[error("the ledger is not accepting writes: {0}")]
    Unavailable(String),
}

/// The answer to an accepted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The message id (the sender's, or the one the node assigned).
    pub id: MessageId,
    /// When it was first accepted (an identical retry gets the original time).
    pub accepted_at: String,
}

/// A message prepared for the ledger: its record already encoded, on the caller's thread.
#[derive(Debug)]
pub struct Submission {
    id: MessageId,
    sender_chose_id: bool,
    from: AgencyId,
    to: AgencyId,
    route: Route,
    subject: String,
    consent_id: String,
    body_sha256: String,
    accepted_at: String,
    status_update: Option<StatusUpdate>,
    /// The payload's purpose (`None` for a status: its referral's, found by the writer).
    purpose: Option<String>,
    /// The payload's data items (see `consent::items_of`).
    items: Vec<String>,
    /// The record without its payload: what stays if the payload is erased.
    meta: MessageRecord,
    record: EncodedMessage,
}

/// What a `referral-status` message says about the referral it answers.
#[derive(Debug, Clone)]
struct StatusUpdate {
    referral_id: MessageId,
    status: String,
    changed_at: String,
    /// The referral's record at this node, looked up once by the writer (`find_referral`)
    /// for both the consent check (its purpose) and the lifecycle update.
    referral: Option<MessageRecord>,
}

impl Submission {
    /// Prepares `envelope` from `sender`, going `route`, assigning an id if the sender chose
    /// none.
    ///
    /// The payload is serialised once, canonically (keys sorted, no whitespace); those bytes
    /// are both what is stored and, with the envelope's other fields, the request's
    /// fingerprint for idempotent retries. Two bodies that differ only in key order or
    /// spacing are the same message, and two nodes compute the same fingerprint for it.
    /// With `keys`, the stored payload is sealed (see `vault`); the fingerprint is always
    /// over the plain canonical payload.
    pub fn new(
        sender: &AgencyId,
        envelope: Envelope,
        route: Route,
        keys: Option<&DataKeys>,
    ) -> Result<Submission, VaultError> {
        let payload = serde_json::value::to_raw_value(&envelope.payload)
            .expect("JSON values always serialize");
        let fingerprint = fingerprint(&envelope, payload.get());
        let status_update = status_update(envelope.message_type, &envelope.payload);
        let purpose = envelope
            .payload
            .get("purpose")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let items = crate::core::consent::items_of(&envelope.payload);
        let sender_chose_id = envelope.id.is_some();
        let id = envelope.id.unwrap_or_else(MessageId::generate);
        let (payload, sealed) = match keys {
            None => (Some(payload), None),
            Some(keys) => (
                None,
                Some(keys.seal(id.as_str(), payload.get().as_bytes())?),
            ),
        };
        let meta = MessageRecord {
            id: id.to_string(),
            sender_chose_id,
            from: sender.to_string(),
            to: envelope.to.to_string(),
            message_type: envelope.message_type.to_string(),
            version: envelope.version,
            subject: envelope.subject,
            consent_id: envelope.consent_id,
            payload: None,
            sealed: None,
            body_sha256: fingerprint,
            accepted_at: now_rfc3339(),
            purpose: purpose.clone(),
            items: items.clone(),
            erased: None,
        };
        let record = MessageRecord {
            payload,
            sealed,
            ..meta.clone()
        }
        .encode();
        Ok(Submission {
            id,
            sender_chose_id,
            from: sender.clone(),
            to: envelope.to,
            route,
            subject: meta.subject.clone(),
            consent_id: meta.consent_id.clone(),
            body_sha256: meta.body_sha256.clone(),
            accepted_at: meta.accepted_at.clone(),
            status_update,
            purpose,
            items,
            meta,
            record,
        })
    }

    /// The message id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The fingerprint (hex SHA-256) that receipts sign.
    pub fn digest(&self) -> &str {
        &self.body_sha256
    }

    /// When this node took the message.
    pub fn accepted_at(&self) -> &str {
        &self.accepted_at
    }
}

fn status_update(t: MessageType, payload: &serde_json::Value) -> Option<StatusUpdate> {
    if t != MessageType::ReferralStatus {
        return None;
    }
    let field = |name: &str| payload.get(name).and_then(serde_json::Value::as_str);
    Some(StatusUpdate {
        referral_id: MessageId::parse(field("referral_id")?)?,
        status: field("status")?.to_owned(),
        changed_at: field("changed_at")?.to_owned(),
        referral: None,
    })
}

/// SHA-256 (hex) over the envelope's fields in canonical JSON, a NUL, and the canonical
/// payload.
fn fingerprint(envelope: &Envelope, canonical_payload: &str) -> String {
    let head = serde_json::json!({
        "id": envelope.id.as_ref().map(MessageId::as_str),
        "type": envelope.message_type.as_str(),
        "version": envelope.version,
        "to": envelope.to.as_str(),
        "subject": envelope.subject,
        "consent_id": envelope.consent_id,
    });
    let mut ctx = Context::new(&SHA256);
    ctx.update(&serde_json::to_vec(&head).expect("JSON values always serialize"));
    ctx.update(&[0]);
    ctx.update(canonical_payload.as_bytes());
    audit::hex(ctx.finish().as_ref())
}

/// A message being handed out by a pull, as the ledger needs it for the audit entry.
#[derive(Debug, Clone)]
pub struct LeaseItem {
    /// The message.
    pub id: MessageId,
    /// Sender.
    pub from: String,
    /// Subject.
    pub subject: String,
    /// Consent.
    pub consent_id: String,
}

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// Who a message is from, to and about: what an audit entry records of it. Callers that
/// hold the message already pass it along, so the writer need not read the record again.
#[derive(Debug, Clone)]
pub struct Parties {
    /// Sending agency.
    pub from: String,
    /// Recipient agency.
    pub to: String,
    /// Pseudonymous subject.
    pub subject: String,
    /// Consent.
    pub consent_id: String,
}

impl Parties {
    /// For a message whose record cannot be read.
    pub fn unknown() -> Parties {
        let unknown = || "unknown (record damaged)".to_owned();
        Parties {
            from: unknown(),
            to: unknown(),
            subject: unknown(),
            consent_id: unknown(),
        }
    }

    /// The parties of a stored message.
    pub fn of(m: &MessageRecord) -> Parties {
        Parties {
            from: m.from.clone(),
            to: m.to.clone(),
            subject: m.subject.clone(),
            consent_id: m.consent_id.clone(),
        }
    }
}

/// A message another node handed over, as this node now durably holds it: what its receipt
/// states. For a message held already (a resend), the original time, so the receipt signed
/// again is the original one (Ed25519 signatures are deterministic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The message.
    pub id: MessageId,
    /// Its digest.
    pub digest: String,
    /// When this node took it first.
    pub received_at: String,
}

/// A request to change durable state.
enum Command {
    Accept {
        actor: String,
        submission: Box<Submission>,
        reply: Reply<Accepted>,
    },
    Receive {
        actor: String,
        peer: CenterId,
        consents: Vec<ConsentRecord>,
        withheld: Vec<WithheldReport>,
        items: Vec<Submission>,
        reply: Reply<Vec<Result<Received, LedgerError>>>,
    },
    Delivered {
        actor: String,
        peer: CenterId,
        receipts: Vec<(Receipt, Parties)>,
        reply: Reply<usize>,
    },
    AttemptFailed {
        peer: CenterId,
        ids: Vec<MessageId>,
        error: String,
        reply: Reply<usize>,
    },
    DeadLetter {
        actor: String,
        items: Vec<(MessageId, String)>,
        reply: Reply<usize>,
    },
    Requeue {
        actor: String,
        id: MessageId,
        reply: Reply<usize>,
    },
    Lease {
        actor: String,
        recipient: AgencyId,
        items: Vec<LeaseItem>,
        reply: Reply<Vec<MessageId>>,
    },
    Ack {
        actor: String,
        recipient: AgencyId,
        ids: Vec<MessageId>,
        reply: Reply<Vec<MessageId>>,
    },
    RecordDirectory {
        seen: DirectorySeen,
        reply: Reply<usize>,
    },
    Checkpoint {
        reply: Reply<usize>,
    },
    Queried {
        actor: String,
        subject: String,
        detail: String,
        reply: Reply<usize>,
    },
    RegisterConsent {
        actor: String,
        record: Box<ConsentRecord>,
        reply: Reply<(ConsentRecord, bool)>,
    },
    WithdrawConsent {
        actor: String,
        id: String,
        caller: AgencyId,
        change: StatusChange,
        reply: Reply<ConsentRecord>,
    },
    PeerCheckpoint {
        peer: CenterId,
        checkpoint: Checkpoint,
        reply: Reply<usize>,
    },
    NoticesTold {
        peer: CenterId,
        told: Vec<(String, String)>,
        reported: Vec<MessageId>,
        reply: Reply<usize>,
    },
    Purge {
        actor: String,
        now: OffsetDateTime,
        reply: Reply<usize>,
    },
}

/// A handle to the ledger. Cheap to clone; the ledger thread stops when every handle is gone.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Command>,
    durable: watch::Receiver<u64>,
    failed: Arc<OnceLock<String>>,
    checkpoint: watch::Receiver<Option<Checkpoint>>,
}

/// How the ledger bounds what it holds, and whether it signs checkpoints.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Most messages one outbox (to one center) may hold.
    pub outbox_max: usize,
    /// Signed checkpoints of the audit chain (federated nodes, which have a signing key).
    pub checkpoints: Option<CheckpointPolicy>,
    /// This node's center, when it is part of a federation: a withdrawal is then queued to
    /// be told to every other center the consent names (see `outbox`).
    pub federated_as: Option<CenterId>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            outbox_max: 100_000,
            checkpoints: None,
            federated_as: None,
        }
    }
}

/// When and as whom the ledger signs checkpoints of its audit chain.
#[derive(Clone)]
pub struct CheckpointPolicy {
    /// This node's center (the checkpoint's `node`).
    pub node: CenterId,
    /// This node's signing key (its public half is in the signed directory).
    pub key: Arc<crate::core::keys::SigningKey>,
    /// A checkpoint at least every this many entries (more often on request, see
    /// [`Ledger::checkpoint`]).
    pub every: u64,
}

impl std::fmt::Debug for CheckpointPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointPolicy")
            .field("node", &self.node)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("durable_seq", &*self.durable.borrow())
            .finish()
    }
}

impl Ledger {
    /// Starts the ledger thread over `store`, resuming the audit chain from its last entry.
    pub fn start(
        store: Store,
        options: LedgerOptions,
    ) -> Result<(Ledger, JoinHandle<()>), StartError> {
        let head = match store.audit_head()? {
            None => Head::GENESIS,
            Some(last) => Head::after(&last)?,
        };
        let outbox_len = store.outbox_lengths()?;
        let latest = store.latest_checkpoint()?;
        let indexed = store.ensure_subject_index()?;
        if indexed > 0 {
            tracing::info!(entries = indexed, "built the audit index by subject");
        }
        let (tx, rx) = mpsc::channel(QUEUE_LEN_MAX);
        let (durable_tx, durable) = watch::channel(head.next_seq);
        let (checkpoint_tx, checkpoint) = watch::channel(latest);
        let failed = Arc::new(OnceLock::new());
        let writer = Writer {
            store,
            head,
            durable: durable_tx,
            failed: failed.clone(),
            outbox_len,
            outbox_max: options.outbox_max,
            checkpoints: options.checkpoints,
            checkpoint: checkpoint_tx,
            federated_as: options.federated_as,
            consent_cache: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("plusgate-ledger".into())
            .spawn(move || writer.run(rx))
            .map_err(StartError::Thread)?;
        Ok((
            Ledger {
                tx,
                durable,
                failed,
                checkpoint,
            },
            thread,
        ))
    }

    /// Accepts a prepared submission; `actor` is the SAN URI recorded in the audit log.
    pub async fn accept(
        &self,
        actor: String,
        submission: Submission,
    ) -> Result<Accepted, LedgerError> {
        self.call(|reply| Command::Accept {
            actor,
            submission: Box::new(submission),
            reply,
        })
        .await
    }

    /// Takes over messages another node hands over (`actor`: its SAN URI), in order. Each
    /// gets its own result: what this node now durably holds (the original for a message
    /// already here), or why it cannot be taken. Receipts are signed from these results,
    /// so only for messages that are durable.
    ///
    /// Before the messages: the consents the batch carried are merged, and `peer`'s reports
    /// of messages it withheld are recorded.
    pub async fn receive(
        &self,
        actor: String,
        peer: CenterId,
        consents: Vec<ConsentRecord>,
        withheld: Vec<WithheldReport>,
        items: Vec<Submission>,
    ) -> Result<Vec<Result<Received, LedgerError>>, LedgerError> {
        self.call(|reply| Command::Receive {
            actor,
            peer,
            consents,
            withheld,
            items,
            reply,
        })
        .await
    }

    /// Records receipts `peer` returned for messages in its outbox (already checked against
    /// the directory): those messages leave the outbox as delivered. Returns how many did.
    pub async fn delivered(
        &self,
        actor: String,
        peer: CenterId,
        receipts: Vec<(Receipt, Parties)>,
    ) -> Result<usize, LedgerError> {
        self.call(|reply| Command::Delivered {
            actor,
            peer,
            receipts,
            reply,
        })
        .await
    }

    /// Records a forwarding attempt to `peer` that got no receipt for `ids`.
    pub async fn attempt_failed(
        &self,
        peer: CenterId,
        ids: Vec<MessageId>,
        error: String,
    ) -> Result<usize, LedgerError> {
        self.call(|reply| Command::AttemptFailed {
            peer,
            ids,
            error,
            reply,
        })
        .await
    }

    /// Takes messages out of their outbox undelivered, each with the reason. Messages no
    /// longer in an outbox are skipped. Returns how many were dead-lettered.
    pub async fn dead_letter(
        &self,
        actor: String,
        items: Vec<(MessageId, String)>,
    ) -> Result<usize, LedgerError> {
        self.call(|reply| Command::DeadLetter {
            actor,
            items,
            reply,
        })
        .await
    }

    /// Puts a dead-lettered message back at the end of its outbox (an operator's retry).
    pub async fn requeue(&self, actor: String, id: MessageId) -> Result<usize, LedgerError> {
        self.call(|reply| Command::Requeue { actor, id, reply })
            .await
    }

    /// Records the newest federation directory loaded (rollback protection).
    pub async fn record_directory(&self, seen: DirectorySeen) -> Result<(), LedgerError> {
        self.call(|reply| Command::RecordDirectory { seen, reply })
            .await
            .map(|_| ())
    }

    /// Records that `recipient` leased `items`; returns the ids actually leased (those not
    /// acknowledged meanwhile).
    pub async fn lease(
        &self,
        actor: String,
        recipient: AgencyId,
        items: Vec<LeaseItem>,
    ) -> Result<Vec<MessageId>, LedgerError> {
        self.call(|reply| Command::Lease {
            actor,
            recipient,
            items,
            reply,
        })
        .await
    }

    /// Acknowledges messages in `recipient`'s inbox. All or nothing: if any id is unknown or
    /// someone else's, nothing is acknowledged.
    pub async fn ack(
        &self,
        actor: String,
        recipient: AgencyId,
        ids: Vec<MessageId>,
    ) -> Result<Vec<MessageId>, LedgerError> {
        self.call(|reply| Command::Ack {
            actor,
            recipient,
            ids,
            reply,
        })
        .await
    }

    /// Signs a checkpoint now if the chain grew since the last one (called on a timer, so a
    /// quiet node's last entries are vouched for too). Returns 1 if it signed one.
    pub async fn checkpoint(&self) -> Result<usize, LedgerError> {
        self.call(|reply| Command::Checkpoint { reply }).await
    }

    /// Records, durably, that `actor` (a privacy officer) looked at `subject`'s record
    /// (`detail`: which report). The answer goes out only after this.
    pub async fn queried(
        &self,
        actor: String,
        subject: String,
        detail: String,
    ) -> Result<(), LedgerError> {
        self.call(|reply| Command::Queried {
            actor,
            subject,
            detail,
            reply,
        })
        .await
        .map(|_| ())
    }

    /// Registers a consent. An identical registration again returns the registered record
    /// (`false`: nothing new); the same id with another document is a conflict.
    pub async fn register_consent(
        &self,
        actor: String,
        record: ConsentRecord,
    ) -> Result<(ConsentRecord, bool), LedgerError> {
        self.call(|reply| Command::RegisterConsent {
            actor,
            record: Box::new(record),
            reply,
        })
        .await
    }

    /// Records a withdrawal of consent `id` by its collecting agency `caller`. Withdrawing
    /// a withdrawn consent changes nothing and returns it as it is.
    pub async fn withdraw_consent(
        &self,
        actor: String,
        id: String,
        caller: AgencyId,
        change: StatusChange,
    ) -> Result<ConsentRecord, LedgerError> {
        self.call(|reply| Command::WithdrawConsent {
            actor,
            id,
            caller,
            change,
            reply,
        })
        .await
    }

    /// `peer` durably took the consents of a batch, each in the status sent: their notices
    /// are done (see `outbox`). Returns how many notices were cleared.
    /// Also clears the reports of withheld messages (`reported`) the batch carried.
    pub async fn notices_told(
        &self,
        peer: CenterId,
        told: Vec<(String, String)>,
        reported: Vec<MessageId>,
    ) -> Result<usize, LedgerError> {
        self.call(|reply| Command::NoticesTold {
            peer,
            told,
            reported,
            reply,
        })
        .await
    }

    /// Erases payloads whose retention period ended by `now` (at most [`PURGE_BATCH`]; call
    /// again while it returns that many). `actor`: this node.
    pub async fn purge(&self, actor: String, now: OffsetDateTime) -> Result<usize, LedgerError> {
        self.call(|reply| Command::Purge { actor, now, reply })
            .await
    }

    /// This node's latest durable checkpoint.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.borrow().clone()
    }

    /// Keeps `peer`'s checkpoint (its signature already checked against the directory) if
    /// it follows the one kept before; otherwise the peer rolled back or rewrote its log,
    /// and the error says how (the earlier checkpoint stays as evidence).
    pub async fn peer_checkpoint(
        &self,
        peer: CenterId,
        checkpoint: Checkpoint,
    ) -> Result<usize, LedgerError> {
        self.call(|reply| Command::PeerCheckpoint {
            peer,
            checkpoint,
            reply,
        })
        .await
    }

    /// The durable sequence number: every audit entry (and inbox entry) below it is durable.
    pub fn durable_seq(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Why the ledger stopped accepting writes, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.get().cloned()
    }

    /// A receiver that changes whenever more becomes durable (used by long polls).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, LedgerError> {
        let (reply, rx) = oneshot::channel();
        let gone = || LedgerError::Unavailable("the ledger has stopped".into());
        self.tx.send(make(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// Why the ledger could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Reading the audit head failed.
    #[error("cannot read the audit log: {0}")]
    Store(#[from] StoreError),
    /// The last audit entry does not match its hash.
    #[error(
        "the audit log is damaged: {0}; run `plusgate audit verify --config FILE` for details"
    )]
    Chain(#[from] audit::ChainError),
    /// The OS refused a thread.
    #[error("cannot start the ledger thread: {0}")]
    Thread(std::io::Error),
}

/// The state owned by the ledger thread.
struct Writer {
    store: Store,
    head: Head,
    durable: watch::Sender<u64>,
    failed: Arc<OnceLock<String>>,
    /// Messages waiting in each outbox (counted at start, kept here).
    outbox_len: BTreeMap<CenterId, usize>,
    outbox_max: usize,
    checkpoints: Option<CheckpointPolicy>,
    /// The latest durable checkpoint, published after each commit that writes one.
    checkpoint: watch::Sender<Option<Checkpoint>>,
    /// This node's center when federated: consent changes are then queued as notices for
    /// the other centers a consent names.
    federated_as: Option<CenterId>,
    /// Durable consents and their parsed terms, so the check per message does not re-read
    /// and re-parse the document. Coherent because this thread is the only writer of
    /// consents: every consent write drops its entry.
    consent_cache: HashMap<String, (ConsentRecord, Terms)>,
}

/// Most consents [`Writer::consent_cache`] holds before it starts over.
const CONSENT_CACHE_MAX: usize = 10_000;

/// Most payloads one purge command erases (one commit stays small).
pub const PURGE_BATCH: usize = 1000;

/// One reply, held until the group is durable: called with `Ok` to send the command's
/// result, or with the reason the group's commit failed.
type Pending = Box<dyn FnOnce(Result<(), String>) + Send>;

fn pending<T: Send + 'static>(reply: Reply<T>, result: Result<T, LedgerError>) -> Pending {
    Box::new(move |commit: Result<(), String>| {
        let _ = reply.send(match commit {
            Ok(()) => result,
            Err(reason) => Err(LedgerError::Unavailable(reason)),
        });
    })
}

/// What the commands of the current group have written so far, so later commands of the
/// same group see it (the store does not, until the group is applied).
struct GroupView {
    messages: HashMap<MessageId, (String, String, String)>, // id -> (from, body_sha256, accepted_at)
    deliveries: HashMap<MessageId, DeliveryRecord>,
    /// Outbox lengths before this group, to restore if its commit fails.
    outbox_len_before: Option<BTreeMap<CenterId, usize>>,
    /// A command asked for a checkpoint.
    checkpoint_requested: bool,
    /// The checkpoint this group writes, published once durable.
    checkpoint: Option<Checkpoint>,
    /// Peer checkpoints kept in this group.
    peer_checkpoints: HashMap<CenterId, Checkpoint>,
    /// Consents written in this group.
    consents: HashMap<String, ConsentRecord>,
    /// The group's clock (the `now` its entries carry).
    now: OffsetDateTime,
    /// Records (without payload) of messages written in this group.
    metas: HashMap<MessageId, MessageRecord>,
    /// Messages taken in this group, by the consent they cite (queue position, id).
    under_consent: HashMap<String, Vec<(u64, MessageId)>>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut group = Vec::with_capacity(64);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < GROUP_LEN_MAX {
                match rx.try_recv() {
                    Ok(cmd) => group.push(cmd),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
        tracing::debug!("ledger stopped: every handle is gone");
    }

    fn commit_group(&mut self, group: &mut Vec<Command>) {
        if let Some(reason) = self.failed.get() {
            for cmd in group.drain(..) {
                cmd.refuse(reason);
            }
            return;
        }
        let head_before = self.head.clone();
        let mut writes = WriteSet::new();
        let now_t = OffsetDateTime::now_utc();
        let now = rfc3339(now_t);
        let mut view = GroupView {
            outbox_len_before: Some(self.outbox_len.clone()),
            checkpoint_requested: false,
            checkpoint: None,
            peer_checkpoints: HashMap::new(),
            messages: HashMap::new(),
            deliveries: HashMap::new(),
            consents: HashMap::new(),
            now: now_t,
            metas: HashMap::new(),
            under_consent: HashMap::new(),
        };
        let pending: Vec<Pending> = group
            .drain(..)
            .map(|cmd| self.apply(cmd, &mut writes, &mut view, &now))
            .collect();
        // Every `every` entries, a signed checkpoint in the same write as the entries.
        let due = self.checkpoints.as_ref().is_some_and(|policy| {
            self.head.next_seq >= self.checkpointed_len().saturating_add(policy.every)
        });
        if due || view.checkpoint_requested {
            self.sign_checkpoint(&now, &mut writes, &mut view);
        }

        let outcome = if writes.is_empty() {
            Ok(())
        } else {
            match self.store.apply(writes) {
                Ok(()) => self.store.sync().map_err(|e| (e, true)),
                Err(e) => Err((e, false)),
            }
        };
        match outcome {
            Ok(()) => {
                // Publish before answering, so a sender that is told "accepted" and
                // immediately asks the recipient to pull finds the message visible.
                self.durable.send_replace(self.head.next_seq);
                if let Some(checkpoint) = view.checkpoint.take() {
                    self.checkpoint.send_replace(Some(checkpoint));
                }
                for p in pending {
                    p(Ok(()));
                }
            }
            Err((e, applied)) => {
                tracing::error!(error = %e, "commit failed");
                if applied {
                    // Applied but maybe not durable: from here on we cannot tell what a
                    // restart will find, so stop writing.
                    let _ = self
                        .failed
                        .set(format!("fsync failed: {e}; restart the node"));
                } else {
                    self.head = head_before;
                    if let Some(before) = view.outbox_len_before.take() {
                        self.outbox_len = before;
                    }
                }
                let reason = e.to_string();
                for p in pending {
                    p(Err(reason.clone()));
                }
            }
        }
    }

    fn apply(
        &mut self,
        cmd: Command,
        writes: &mut WriteSet,
        view: &mut GroupView,
        now: &str,
    ) -> Pending {
        match cmd {
            Command::Accept {
                actor,
                submission,
                reply,
            } => pending(reply, self.accept(actor, *submission, writes, view)),
            Command::Receive {
                actor,
                peer,
                consents,
                withheld,
                items,
                reply,
            } => {
                for c in consents {
                    if let Err(e) = self.merge_consent(&actor, c, writes, view) {
                        return pending(reply, Err(e));
                    }
                }
                if let Err(e) = self.withheld_at_peer(&actor, &peer, withheld, writes, view) {
                    return pending(reply, Err(e));
                }
                let results = items
                    .into_iter()
                    .map(|item| self.receive(&actor, item, writes, view))
                    .collect();
                pending(reply, Ok(results))
            }
            Command::Delivered {
                actor,
                peer,
                receipts,
                reply,
            } => pending(
                reply,
                self.delivered(&actor, &peer, receipts, writes, view, now),
            ),
            Command::AttemptFailed {
                peer,
                ids,
                error,
                reply,
            } => pending(reply, self.attempt_failed(&peer, ids, &error, writes, view)),
            Command::DeadLetter {
                actor,
                items,
                reply,
            } => pending(reply, self.dead_letter(&actor, items, writes, view, now)),
            Command::Requeue { actor, id, reply } => {
                pending(reply, self.requeue(&actor, &id, writes, view, now))
            }
            Command::Lease {
                actor,
                recipient,
                items,
                reply,
            } => pending(
                reply,
                self.lease(actor, recipient, items, writes, view, now),
            ),
            Command::Ack {
                actor,
                recipient,
                ids,
                reply,
            } => pending(reply, self.ack(actor, recipient, ids, writes, view, now)),
            Command::RecordDirectory { seen, reply } => {
                writes.put_directory_seen(&seen);
                pending(reply, Ok(1))
            }
            Command::Checkpoint { reply } => {
                let grew =
                    self.checkpoints.is_some() && self.head.next_seq > self.checkpointed_len();
                view.checkpoint_requested |= grew;
                pending(reply, Ok(usize::from(grew)))
            }
            Command::PeerCheckpoint {
                peer,
                checkpoint,
                reply,
            } => pending(reply, self.peer_checkpoint(peer, checkpoint, writes, view)),
            Command::RegisterConsent {
                actor,
                record,
                reply,
            } => pending(reply, self.register_consent(actor, *record, writes, view)),
            Command::Queried {
                actor,
                subject,
                detail,
                reply,
            } => {
                let entry = self.head.append(Event {
                    at: now.to_owned(),
                    actor,
                    action: Action::Queried,
                    message_id: String::new(),
                    from: String::new(),
                    to: String::new(),
                    subject,
                    consent_id: String::new(),
                    detail: Some(detail),
                });
                writes.put_audit(&entry);
                pending(reply, Ok(1))
            }
            Command::NoticesTold {
                peer,
                told,
                reported,
                reply,
            } => {
                for id in &reported {
                    writes.remove_withheld_report(&peer, id);
                }
                pending(reply, self.notices_told(&peer, told, writes, view))
            }
            Command::Purge { actor, now, reply } => {
                pending(reply, self.purge(&actor, now, writes, view))
            }
            Command::WithdrawConsent {
                actor,
                id,
                caller,
                change,
                reply,
            } => pending(
                reply,
                self.withdraw_consent(actor, &id, &caller, change, writes, view, now),
            ),
        }
    }

    /// Length of the chain the latest checkpoint (durable or in this group) covers.
    fn checkpointed_len(&self) -> u64 {
        self.checkpoint.borrow().as_ref().map_or(0, |c| c.length)
    }

    fn sign_checkpoint(&mut self, now: &str, writes: &mut WriteSet, view: &mut GroupView) {
        let Some(policy) = &self.checkpoints else {
            return;
        };
        if self.head.next_seq == 0 {
            return;
        }
        let checkpoint = Checkpoint::sign(&policy.key, policy.node.as_str(), &self.head, now);
        writes.put_checkpoint(&checkpoint);
        view.checkpoint = Some(checkpoint);
    }

    fn peer_checkpoint(
        &mut self,
        peer: CenterId,
        checkpoint: Checkpoint,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<usize, LedgerError> {
        let earlier = match view.peer_checkpoints.get(&peer) {
            Some(c) => Some(c.clone()),
            None => self.store.peer_checkpoint(&peer)?,
        };
        if let Some(earlier) = earlier {
            checkpoint
                .follows(&earlier)
                .map_err(LedgerError::PeerRollback)?;
            if earlier == checkpoint {
                return Ok(0);
            }
        }
        writes.put_peer_checkpoint(&peer, &checkpoint);
        view.peer_checkpoints.insert(peer, checkpoint);
        Ok(1)
    }

    fn consent(&self, view: &GroupView, id: &str) -> Result<Option<ConsentRecord>, LedgerError> {
        Ok(match view.consents.get(id) {
            Some(c) => Some(c.clone()),
            None => self.store.consent(id)?,
        })
    }

    fn consent_event(
        &mut self,
        actor: String,
        action: Action,
        c: &ConsentRecord,
        at: &str,
        detail: Option<String>,
    ) -> audit::AuditEntry {
        self.head.append(Event {
            at: at.to_owned(),
            actor,
            action,
            message_id: String::new(),
            from: c.collected_by.clone(),
            to: c.recipients.join(" "),
            subject: c.subject.clone(),
            consent_id: c.id.clone(),
            detail,
        })
    }

    fn register_consent(
        &mut self,
        actor: String,
        record: ConsentRecord,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<(ConsentRecord, bool), LedgerError> {
        if let Some(existing) = self.consent(view, &record.id)? {
            return if existing.digest == record.digest
                && existing.collected_by == record.collected_by
            {
                Ok((existing, false))
            } else {
                Err(LedgerError::ConsentConflict(record.id))
            };
        }
        let at = record.registered_at.clone();
        let entry = self.consent_event(actor, Action::ConsentRegistered, &record, &at, None);
        self.consent_cache.remove(&record.id);
        writes.put_consent(&record);
        writes.put_audit(&entry);
        view.consents.insert(record.id.clone(), record.clone());
        Ok((record, true))
    }

    #[allow(clippy::too_many_arguments)]
    fn withdraw_consent(
        &mut self,
        actor: String,
        id: &str,
        caller: &AgencyId,
        change: StatusChange,
        writes: &mut WriteSet,
        view: &mut GroupView,
        now: &str,
    ) -> Result<ConsentRecord, LedgerError> {
        let mut c = self
            .consent(view, id)?
            .ok_or_else(|| LedgerError::NoSuchConsent(id.to_owned()))?;
        if c.collected_by != caller.as_str() {
            return Err(LedgerError::NotCollector(id.to_owned()));
        }
        if c.status == "withdrawn" {
            return Ok(c);
        }
        c.status = "withdrawn".into();
        let detail = change.reason.clone();
        let reason = format!("consent {id} withdrawn at {}", change.at);
        c.history.push(change);
        let entry = self.consent_event(actor.clone(), Action::ConsentWithdrawn, &c, now, detail);
        writes.put_consent(&c);
        writes.put_audit(&entry);
        self.consent_cache.remove(&c.id);
        view.consents.insert(c.id.clone(), c.clone());
        // In the same write: nothing under it is pulled or forwarded from here on, and the
        // other centers it names are told.
        self.withhold_under(&actor, id, &reason, writes, view)?;
        self.notify(&c, writes);
        Ok(c)
    }

    fn accept(
        &mut self,
        actor: String,
        mut m: Submission,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<Accepted, LedgerError> {
        if m.sender_chose_id {
            if let Some((from, sha, at)) = self.earlier(view, &m.id)? {
                return if from == m.from.as_str() && sha == m.body_sha256 {
                    Ok(Accepted {
                        id: m.id,
                        accepted_at: at,
                    })
                } else {
                    Err(LedgerError::IdConflict(m.id))
                };
            }
        }
        if let Route::Remote(peer) = &m.route {
            let len = self.outbox_len.get(peer).copied().unwrap_or(0);
            if len >= self.outbox_max {
                return Err(LedgerError::OutboxFull(peer.clone()));
            }
        }
        let retention = self.enforce(&actor, &mut m, writes, view)?;
        let id = m.id.clone();
        let accepted_at = m.accepted_at.clone();
        self.take(actor, Action::Accepted, m, retention, None, writes, view)?;
        Ok(Accepted { id, accepted_at })
    }

    /// An earlier message with this id: (from, fingerprint, accepted_at).
    fn earlier(
        &self,
        view: &GroupView,
        id: &MessageId,
    ) -> Result<Option<(String, String, String)>, LedgerError> {
        Ok(match view.messages.get(id) {
            Some(seen) => Some(seen.clone()),
            None => self
                .store
                .message(id)?
                .map(|r| (r.from, r.body_sha256, r.accepted_at)),
        })
    }

    /// Writes a new message: record, delivery record, inbox or outbox entry, audit entry,
    /// its place under its consent and in the retention queue, and the referral's lifecycle
    /// if it is a status update.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        actor: String,
        action: Action,
        m: Submission,
        retention: Retention,
        detail: Option<String>,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<(), LedgerError> {
        let entry = self.head.append(Event {
            at: m.accepted_at.clone(),
            actor,
            action,
            message_id: m.id.to_string(),
            from: m.from.to_string(),
            to: m.to.to_string(),
            subject: m.subject,
            consent_id: m.consent_id,
            detail,
        });
        let peer = match m.route {
            Route::Local => {
                writes.put_inbox(&m.to, entry.seq, &m.id);
                None
            }
            Route::Remote(peer) => {
                writes.put_outbox(&peer, entry.seq, &m.id);
                *self.outbox_len.entry(peer.clone()).or_insert(0) += 1;
                Some(peer)
            }
        };
        let delivery = DeliveryRecord::new(entry.seq, peer);
        writes.put_message(m.record);
        writes.put_delivery(&m.id, &delivery);
        writes.put_audit(&entry);
        // Where a withdrawal finds it, and when its retention ends (counted from now).
        writes.put_under_consent(&entry.consent_id, entry.seq, &m.id);
        let end = retention.end(view.now).unix_timestamp().max(0) as u64;
        writes.put_retention(end, entry.seq, &m.id);
        view.under_consent
            .entry(entry.consent_id.clone())
            .or_default()
            .push((entry.seq, m.id.clone()));
        view.metas.insert(m.id.clone(), m.meta);
        view.deliveries.insert(m.id.clone(), delivery);
        // Only a sender-chosen id (every handed-over message has one) can come again in the
        // same group; node-assigned ids are unique by construction.
        if m.sender_chose_id {
            view.messages.insert(
                m.id.clone(),
                (m.from.to_string(), m.body_sha256, m.accepted_at),
            );
        }
        if let Some(update) = m.status_update {
            self.update_lifecycle(&m.id, &m.from, &m.to, update, writes, view)?;
        }
        Ok(())
    }

    /// The record of referral `id` at this node (written in this group or stored), if any.
    /// A damaged one counts as absent: the status it answers is still checked and taken,
    /// only without its referral's purpose and lifecycle.
    fn find_referral(
        &self,
        id: &MessageId,
        view: &GroupView,
    ) -> Result<Option<MessageRecord>, LedgerError> {
        if let Some(r) = view.metas.get(id) {
            return Ok(Some(r.clone()));
        }
        match self.store.message(id) {
            Ok(r) => Ok(r),
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(referral = %id, error = %e, "the referral's record is damaged");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The consent check for a message about to be taken. A refusal is an audit entry
    /// (`refused`, with the failed condition) and [`LedgerError::Refused`].
    fn enforce(
        &mut self,
        actor: &str,
        m: &mut Submission,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<Retention, LedgerError> {
        if let Some(update) = &mut m.status_update {
            update.referral = self.find_referral(&update.referral_id, view)?;
        }
        let refusal = match self.check_consent(m, view)? {
            Ok(retention) => return Ok(retention),
            Err(refusal) => refusal,
        };
        let entry = self.head.append(Event {
            at: rfc3339(view.now),
            actor: actor.to_owned(),
            action: Action::Refused,
            message_id: m.id.to_string(),
            from: m.from.to_string(),
            to: m.to.to_string(),
            subject: m.subject.clone(),
            consent_id: m.consent_id.clone(),
            detail: Some(refusal.describe()),
        });
        writes.put_audit(&entry);
        Err(LedgerError::Refused(refusal))
    }

    /// Whether the consent `m` cites covers it now (see `consent::ConsentRecord::check`);
    /// the outer error is a storage failure, the inner the refusal.
    fn check_consent(
        &mut self,
        m: &Submission,
        view: &GroupView,
    ) -> Result<Result<Retention, Refusal>, LedgerError> {
        let purpose = match (&m.purpose, &m.status_update) {
            (Some(p), _) => Some(p.clone()),
            // A status travels for the purpose of the referral it answers.
            (None, Some(update)) => {
                match update.referral.as_ref().and_then(|r| r.purpose.clone()) {
                    Some(p) => Some(p),
                    None => {
                        return Ok(Err(Refusal::PurposeUnknown {
                            why: format!(
                                "a referral-status travels for the purpose of its referral, and \
                                 referral {} is not held at this node",
                                update.referral_id
                            ),
                        }))
                    }
                }
            }
            (None, None) => None,
        };
        let wanted = Use {
            subject: &m.subject,
            sender: m.from.as_str(),
            recipient: m.to.as_str(),
            purpose: purpose.as_deref(),
            items: &m.items,
        };
        if let Some(c) = view.consents.get(&m.consent_id) {
            return Ok(c.check(&wanted, view.now));
        }
        if !self.consent_cache.contains_key(&m.consent_id) {
            let c = match self.store.consent(&m.consent_id) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return Ok(Err(Refusal::Unknown {
                        id: m.consent_id.clone(),
                    }))
                }
                Err(e @ StoreError::Corrupt { .. }) => {
                    return Ok(Err(Refusal::Unreadable {
                        id: m.consent_id.clone(),
                        why: e.to_string(),
                    }))
                }
                Err(e) => return Err(e.into()),
            };
            let terms = match c.terms() {
                Ok(t) => t,
                Err(r) => return Ok(Err(r)),
            };
            if self.consent_cache.len() >= CONSENT_CACHE_MAX {
                self.consent_cache.clear();
            }
            self.consent_cache.insert(m.consent_id.clone(), (c, terms));
        }
        let (c, terms) = &self.consent_cache[&m.consent_id];
        Ok(c.check_with(terms, &wanted, view.now)
            .map(|()| terms.retention))
    }

    /// Erases the payload of every message held under consent `consent_id`, and withholds
    /// those not yet pulled (out of their inbox or outbox). `reason` goes into each record
    /// and audit entry.
    fn withhold_under(
        &mut self,
        actor: &str,
        consent_id: &str,
        reason: &str,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<usize, LedgerError> {
        let mut held: Vec<MessageId> = self
            .store
            .messages_under(consent_id)
            .map(|e| e.map(|q| q.id))
            .collect::<Result<_, _>>()?;
        if let Some(here) = view.under_consent.get(consent_id) {
            held.extend(here.iter().map(|(_, id)| id.clone()));
        }
        let mut n = 0;
        for id in held {
            n += usize::from(self.erase(actor, &id, reason, writes, view)?);
        }
        Ok(n)
    }

    /// Erases message `id`'s payload (keeping its record) and, if the recipient has not
    /// pulled it yet, withholds it: out of its inbox or outbox, state `withheld`. One audit
    /// entry: `withheld` or `purged`. False if there was nothing to erase.
    ///
    /// Invariant: after this, no inbox or outbox entry points at the message, so nothing
    /// can lease or forward it (`lease` also skips `withheld`, for a read that raced).
    fn erase(
        &mut self,
        actor: &str,
        id: &MessageId,
        reason: &str,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<bool, LedgerError> {
        let record = match view.metas.get(id) {
            Some(r) => r.clone(),
            None => match self.store.message(id) {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(false),
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::error!(message_id = %id, error = %e, "damaged record not erased");
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            },
        };
        if record.erased.is_some() {
            return Ok(false);
        }
        let at = rfc3339(view.now);
        let erasure = crate::node::store::Erasure {
            at: at.clone(),
            reason: reason.to_owned(),
        };
        let erased = MessageRecord {
            payload: None,
            sealed: None,
            erased: Some(erasure.clone()),
            ..record
        };
        writes.put_message(erased.encode());
        let mut action = Action::Purged;
        if let Some(mut d) = self.delivery(view, id)? {
            let held = match (&d.peer, d.state) {
                (None, DeliveryState::Accepted) => {
                    if let Ok(to) = AgencyId::parse(&erased.to) {
                        writes.remove_inbox(&to, d.seq);
                    }
                    true
                }
                // Pulled already: disclosed, so not withheld; but with its payload gone it
                // cannot be pulled again, and an ack still closes it.
                (None, DeliveryState::Pulled) => {
                    if let Ok(to) = AgencyId::parse(&erased.to) {
                        writes.remove_inbox(&to, d.seq);
                    }
                    false
                }
                (Some(peer), state) if state.in_outbox() => {
                    self.remove_outbox_entry(peer, d.seq, writes);
                    true
                }
                _ => false,
            };
            if held {
                // Taken over from another center: that node's sender is to hear of it.
                let origin = AgencyId::parse(&erased.from)
                    .ok()
                    .map(|a| a.center().clone())
                    .filter(|c| self.federated_as.as_ref().is_some_and(|me| me != c));
                if let (Some(origin), None) = (origin, &d.peer) {
                    writes.put_withheld_report(&origin, id, &erasure);
                }
                d.state = DeliveryState::Withheld;
                d.withheld = Some(erasure);
                writes.put_delivery(id, &d);
                view.deliveries.insert(id.clone(), d);
                action = Action::Withheld;
            }
        }
        let parties = Parties::of(&erased);
        let entry = self.head.append(Event {
            at,
            actor: actor.to_owned(),
            action,
            message_id: id.to_string(),
            from: parties.from,
            to: parties.to,
            subject: parties.subject,
            consent_id: parties.consent_id,
            detail: Some(reason.to_owned()),
        });
        writes.put_audit(&entry);
        view.metas.insert(id.clone(), erased);
        Ok(true)
    }

    /// Takes the entry at `seq` out of the outbox to `peer`, keeping the outbox's count.
    fn remove_outbox_entry(&mut self, peer: &CenterId, seq: u64, writes: &mut WriteSet) {
        writes.remove_outbox(peer, seq);
        if let Some(n) = self.outbox_len.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
    }

    /// Queues a notice of consent `c`'s current state for every other center it names
    /// (its collector's and its recipients'), for their forwarders to carry.
    fn notify(&self, c: &ConsentRecord, writes: &mut WriteSet) {
        let Some(me) = &self.federated_as else {
            return;
        };
        let centers: BTreeSet<CenterId> = std::iter::once(&c.collected_by)
            .chain(&c.recipients)
            .filter_map(|a| AgencyId::parse(a).ok())
            .map(|a| a.center().clone())
            .filter(|center| center != me)
            .collect();
        for center in centers {
            writes.put_notice(&center, &c.id);
        }
    }

    /// Takes in a consent another node sent with a batch (`actor`: that node): a consent
    /// new here is kept as it came; a withdrawal of one kept here is recorded and applied
    /// (the messages under it withheld). A different document under a known id is ignored
    /// (logged): the one registered first stays.
    fn merge_consent(
        &mut self,
        actor: &str,
        incoming: ConsentRecord,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<(), LedgerError> {
        let Some(mut local) = self.consent(view, &incoming.id)? else {
            let at = rfc3339(view.now);
            let detail = Some(format!("status {}", incoming.status));
            let entry = self.consent_event(
                actor.to_owned(),
                Action::ConsentReceived,
                &incoming,
                &at,
                detail,
            );
            writes.put_audit(&entry);
            writes.put_consent(&incoming);
            self.consent_cache.remove(&incoming.id);
            view.consents.insert(incoming.id.clone(), incoming);
            return Ok(());
        };
        if local.digest != incoming.digest {
            tracing::warn!(consent_id = %incoming.id, %actor,
                "a peer sent a different document under a consent id known here; kept ours");
            return Ok(());
        }
        let Some(withdrawal) = incoming
            .withdrawal()
            .filter(|_| local.status != "withdrawn")
            .cloned()
        else {
            return Ok(());
        };
        let reason = format!(
            "consent {} withdrawn at {} (told by {actor})",
            local.id, withdrawal.at
        );
        local.status = "withdrawn".into();
        local.history.push(withdrawal);
        let at = rfc3339(view.now);
        let entry = self.consent_event(
            actor.to_owned(),
            Action::ConsentReceived,
            &local,
            &at,
            Some("status withdrawn".into()),
        );
        writes.put_audit(&entry);
        writes.put_consent(&local);
        self.consent_cache.remove(&local.id);
        view.consents.insert(local.id.clone(), local.clone());
        self.withhold_under(actor, &local.id, &reason, writes, view)?;
        Ok(())
    }

    /// `peer` reports that it withheld messages this node handed over to it: each one this
    /// node delivered to that peer becomes `withheld` here too, with the peer's reason.
    fn withheld_at_peer(
        &mut self,
        actor: &str,
        peer: &CenterId,
        reports: Vec<WithheldReport>,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<(), LedgerError> {
        for report in reports {
            let Some(id) = MessageId::parse(&report.id) else {
                continue;
            };
            let Some(mut d) = self.delivery(view, &id)? else {
                continue;
            };
            if d.peer.as_ref() != Some(peer) || d.state != DeliveryState::Delivered {
                continue;
            }
            let parties = match self.store.message(&id) {
                Ok(Some(m)) => Parties::of(&m),
                _ => Parties::unknown(),
            };
            let reason = format!("withheld at center {peer}: {}", report.reason);
            d.state = DeliveryState::Withheld;
            d.withheld = Some(crate::node::store::Erasure {
                at: report.at,
                reason: reason.clone(),
            });
            let entry = self.head.append(Event {
                at: rfc3339(view.now),
                actor: actor.to_owned(),
                action: Action::Withheld,
                message_id: id.to_string(),
                from: parties.from,
                to: parties.to,
                subject: parties.subject,
                consent_id: parties.consent_id,
                detail: Some(reason),
            });
            writes.put_delivery(&id, &d);
            writes.put_audit(&entry);
            view.deliveries.insert(id, d);
        }
        Ok(())
    }

    /// `peer` took the consents in `told` (id, status sent): their notices are done,
    /// unless the consent changed again since (then the notice stays for the next batch).
    fn notices_told(
        &mut self,
        peer: &CenterId,
        told: Vec<(String, String)>,
        writes: &mut WriteSet,
        view: &GroupView,
    ) -> Result<usize, LedgerError> {
        let mut n = 0;
        for (id, status) in told {
            if self.consent(view, &id)?.is_some_and(|c| c.status == status) {
                writes.remove_notice(peer, &id);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Erases the payloads whose consent's retention period has ended by `now` (at most
    /// `PURGE_BATCH` per call; the caller calls again while it returns that many).
    fn purge(
        &mut self,
        actor: &str,
        now: OffsetDateTime,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<usize, LedgerError> {
        let due: Vec<(u64, u64, MessageId)> = self
            .store
            .retention_due(now.unix_timestamp().max(0) as u64)
            .take(PURGE_BATCH)
            .collect::<Result<_, _>>()?;
        let n = due.len();
        for (end, seq, id) in due {
            let consent = view
                .metas
                .get(&id)
                .map(|m| m.consent_id.clone())
                .or_else(|| self.store.message(&id).ok().flatten().map(|m| m.consent_id))
                .unwrap_or_default();
            let ended = OffsetDateTime::from_unix_timestamp(end as i64)
                .map(rfc3339)
                .unwrap_or_default();
            let reason = format!("the retention period of consent {consent} ended at {ended}");
            self.erase(actor, &id, &reason, writes, view)?;
            writes.remove_retention(end, seq);
        }
        Ok(n)
    }

    /// A `referral-status` from `status_from` to `status_to` updates the referral it names,
    /// if that referral went the other way (from `status_to` to `status_from`) and the
    /// status is not older than the one recorded. Anything else is left alone: a status
    /// cannot change a referral its sender did not receive.
    fn update_lifecycle(
        &mut self,
        status_id: &MessageId,
        status_from: &AgencyId,
        status_to: &AgencyId,
        update: StatusUpdate,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<(), LedgerError> {
        let Some(referral) = &update.referral else {
            return Ok(());
        };
        if referral.message_type != MessageType::Referral.as_str()
            || referral.from != status_to.as_str()
            || referral.to != status_from.as_str()
        {
            return Ok(());
        }
        let mut d = match self.delivery(view, &update.referral_id) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(LedgerError::Storage(e @ StoreError::Corrupt { .. })) => {
                tracing::error!(referral = %update.referral_id, error = %e,
                    "lifecycle not updated: the referral's delivery record is damaged");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let newer = d
            .lifecycle
            .as_ref()
            .is_none_or(|l| !is_before(&update.changed_at, &l.changed_at));
        if newer {
            d.lifecycle = Some(Lifecycle {
                status: update.status,
                changed_at: update.changed_at,
                message_id: status_id.to_string(),
            });
            writes.put_delivery(&update.referral_id, &d);
            view.deliveries.insert(update.referral_id, d);
        }
        Ok(())
    }

    fn receive(
        &mut self,
        actor: &str,
        mut m: Submission,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<Received, LedgerError> {
        if let Some((from, sha, at)) = self.earlier(view, &m.id)? {
            if from != m.from.as_str() || sha != m.body_sha256 {
                return Err(LedgerError::IdConflict(m.id));
            }
            // Already here: a resend after a lost answer. Same facts, same receipt, and the
            // message stays in the inbox once.
            return Ok(Received {
                id: m.id,
                digest: sha,
                received_at: at,
            });
        }
        let received = Received {
            id: m.id.clone(),
            digest: m.body_sha256.clone(),
            received_at: m.accepted_at.clone(),
        };
        let retention = self.enforce(actor, &mut m, writes, view)?;
        let detail = Some(format!("digest {}", m.body_sha256));
        self.take(
            actor.to_owned(),
            Action::Received,
            m,
            retention,
            detail,
            writes,
            view,
        )?;
        Ok(received)
    }

    /// Takes `id` out of the outbox to `peer` (or any outbox when `peer` is `None`), writing
    /// the new delivery record and an audit entry. `None` if it is not in an outbox.
    #[allow(clippy::too_many_arguments)]
    fn leave_outbox(
        &mut self,
        id: &MessageId,
        peer: Option<&CenterId>,
        actor: &str,
        action: Action,
        detail: String,
        parties: Option<Parties>,
        now: &str,
        writes: &mut WriteSet,
        view: &mut GroupView,
        change: impl FnOnce(&mut DeliveryRecord),
    ) -> Result<bool, LedgerError> {
        let Some(mut d) = self.delivery(view, id)? else {
            return Ok(false);
        };
        let Some(current_peer) = d.peer.clone() else {
            return Ok(false);
        };
        if !d.state.in_outbox() || peer.is_some_and(|p| p != &current_peer) {
            return Ok(false);
        }
        let parties = match parties {
            Some(p) => p,
            None => match self.store.message(id) {
                Ok(Some(m)) => Parties::of(&m),
                Ok(None) => return Ok(false),
                // A damaged record must still be able to leave its outbox (dead-lettered),
                // or it would block the outbox for good; the audit entry says what is known.
                Err(StoreError::Corrupt { .. }) => Parties::unknown(),
                Err(e) => return Err(e.into()),
            },
        };
        self.remove_outbox_entry(&current_peer, d.seq, writes);
        change(&mut d);
        let entry = self.head.append(Event {
            at: now.to_owned(),
            actor: actor.to_owned(),
            action,
            message_id: id.to_string(),
            from: parties.from,
            to: parties.to,
            subject: parties.subject,
            consent_id: parties.consent_id,
            detail: Some(detail),
        });
        writes.put_delivery(id, &d);
        writes.put_audit(&entry);
        view.deliveries.insert(id.clone(), d);
        Ok(true)
    }

    fn delivered(
        &mut self,
        actor: &str,
        peer: &CenterId,
        receipts: Vec<(Receipt, Parties)>,
        writes: &mut WriteSet,
        view: &mut GroupView,
        now: &str,
    ) -> Result<usize, LedgerError> {
        let mut n = 0;
        for (receipt, parties) in receipts {
            let Some(id) = MessageId::parse(&receipt.message_id) else {
                continue;
            };
            let detail = format!("receipt {}", receipt.signature);
            let at = receipt.received_at.clone();
            let left = self.leave_outbox(
                &id,
                Some(peer),
                actor,
                Action::Delivered,
                detail,
                Some(parties),
                now,
                writes,
                view,
                |d| {
                    d.state = DeliveryState::Delivered;
                    d.delivered_at = Some(at);
                    d.last_error = None;
                },
            )?;
            if left {
                writes.put_receipt(&receipt);
                n += 1;
            }
        }
        Ok(n)
    }

    fn attempt_failed(
        &mut self,
        peer: &CenterId,
        ids: Vec<MessageId>,
        error: &str,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<usize, LedgerError> {
        let mut n = 0;
        for id in ids {
            let Some(mut d) = self.delivery(view, &id)? else {
                continue;
            };
            if !d.state.in_outbox() || d.peer.as_ref() != Some(peer) {
                continue;
            }
            d.state = DeliveryState::Forwarded;
            d.failed_attempts = d.failed_attempts.saturating_add(1);
            d.last_error = Some(error.to_owned());
            writes.put_delivery(&id, &d);
            view.deliveries.insert(id, d);
            n += 1;
        }
        Ok(n)
    }

    fn dead_letter(
        &mut self,
        actor: &str,
        items: Vec<(MessageId, String)>,
        writes: &mut WriteSet,
        view: &mut GroupView,
        now: &str,
    ) -> Result<usize, LedgerError> {
        let mut n = 0;
        for (id, reason) in items {
            let why = reason.clone();
            let left = self.leave_outbox(
                &id,
                None,
                actor,
                Action::DeadLettered,
                reason,
                None,
                now,
                writes,
                view,
                |d| {
                    d.state = DeliveryState::DeadLettered;
                    d.last_error = Some(why);
                },
            )?;
            if left {
                writes.put_dead_letter(&id);
                n += 1;
            }
        }
        Ok(n)
    }

    fn requeue(
        &mut self,
        actor: &str,
        id: &MessageId,
        writes: &mut WriteSet,
        view: &mut GroupView,
        now: &str,
    ) -> Result<usize, LedgerError> {
        let mut d = self
            .delivery(view, id)?
            .ok_or_else(|| LedgerError::NoSuchMessage(id.clone()))?;
        let peer = match (&d.peer, d.state) {
            (Some(peer), DeliveryState::DeadLettered) => peer.clone(),
            _ => {
                return Err(LedgerError::WrongState {
                    id: id.clone(),
                    state: state_name(d.state),
                    what: "only a dead-lettered message for another center can be retried",
                })
            }
        };
        if self.outbox_len.get(&peer).copied().unwrap_or(0) >= self.outbox_max {
            return Err(LedgerError::OutboxFull(peer));
        }
        let message = match view.metas.get(id) {
            Some(m) => m.clone(),
            None => self
                .store
                .message(id)?
                .ok_or_else(|| LedgerError::NoSuchMessage(id.clone()))?,
        };
        // Its consent was withdrawn or its retention ended: there is nothing left to send.
        if message.erased.is_some() {
            return Err(LedgerError::WrongState {
                id: id.clone(),
                state: "erased",
                what: "its payload was erased (consent withdrawn or retention ended)",
            });
        }
        let entry = self.head.append(Event {
            at: now.to_owned(),
            actor: actor.to_owned(),
            action: Action::Requeued,
            message_id: id.to_string(),
            from: message.from,
            to: message.to,
            subject: message.subject,
            consent_id: message.consent_id,
            detail: d.last_error.clone(),
        });
        // A new position at the end of the outbox: the message goes after everything
        // accepted meanwhile (an operator's retry does not keep the original order).
        d.seq = entry.seq;
        d.requeued_at = Some(now.to_owned());
        d.state = DeliveryState::Accepted;
        d.failed_attempts = 0;
        d.last_error = None;
        writes.put_outbox(&peer, entry.seq, id);
        writes.remove_dead_letter(id);
        *self.outbox_len.entry(peer).or_insert(0) += 1;
        writes.put_delivery(id, &d);
        writes.put_audit(&entry);
        view.deliveries.insert(id.clone(), d);
        Ok(1)
    }

    fn delivery(
        &self,
        view: &GroupView,
        id: &MessageId,
    ) -> Result<Option<DeliveryRecord>, LedgerError> {
        match view.deliveries.get(id) {
            Some(d) => Ok(Some(d.clone())),
            None => Ok(self.store.delivery(id)?),
        }
    }

    fn lease(
        &mut self,
        actor: String,
        recipient: AgencyId,
        items: Vec<LeaseItem>,
        writes: &mut WriteSet,
        view: &mut GroupView,
        now: &str,
    ) -> Result<Vec<MessageId>, LedgerError> {
        let mut leased = Vec::with_capacity(items.len());
        for item in items {
            // A record that went bad since the inbox read it is skipped (and logged), not an
            // error for the whole pull: one damaged record must not block an inbox.
            let mut d = match self.delivery(view, &item.id) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(message_id = %item.id, error = %e, "not leased");
                    continue;
                }
            };
            // Acked, or withheld (its consent was withdrawn) since the inbox read it.
            if matches!(d.state, DeliveryState::Acked | DeliveryState::Withheld) {
                continue;
            }
            d.state = DeliveryState::Pulled;
            d.lease_count = d.lease_count.saturating_add(1);
            d.first_pulled_at.get_or_insert_with(|| now.to_owned());
            let entry = self.head.append(Event {
                at: now.to_owned(),
                actor: actor.clone(),
                action: Action::Leased,
                message_id: item.id.to_string(),
                from: item.from,
                to: recipient.to_string(),
                subject: item.subject,
                consent_id: item.consent_id,
                detail: None,
            });
            writes.put_delivery(&item.id, &d);
            writes.put_audit(&entry);
            view.deliveries.insert(item.id.clone(), d);
            leased.push(item.id);
        }
        Ok(leased)
    }

    fn ack(
        &mut self,
        actor: String,
        recipient: AgencyId,
        ids: Vec<MessageId>,
        writes: &mut WriteSet,
        view: &mut GroupView,
        now: &str,
    ) -> Result<Vec<MessageId>, LedgerError> {
        // Check every id before writing anything: an ack is all or nothing.
        let mut todo = Vec::with_capacity(ids.len());
        let mut seen = BTreeSet::new();
        for id in ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            let message = self
                .store
                .message(&id)?
                .ok_or_else(|| LedgerError::NoSuchMessage(id.clone()))?;
            if message.to != recipient.as_str() {
                return Err(LedgerError::NotYours(id));
            }
            let delivery = self
                .delivery(view, &id)?
                .ok_or_else(|| LedgerError::NoSuchMessage(id.clone()))?;
            todo.push((id, message, delivery));
        }
        let mut acked = Vec::with_capacity(todo.len());
        for (id, message, mut d) in todo {
            // A withheld message was never pulled: there is nothing to acknowledge.
            if !matches!(d.state, DeliveryState::Acked | DeliveryState::Withheld) {
                d.state = DeliveryState::Acked;
                d.acked_at = Some(now.to_owned());
                let entry = self.head.append(Event {
                    at: now.to_owned(),
                    actor: actor.clone(),
                    action: Action::Acked,
                    message_id: id.to_string(),
                    from: message.from,
                    to: message.to,
                    subject: message.subject,
                    consent_id: message.consent_id,
                    detail: None,
                });
                writes.remove_inbox(&recipient, d.seq);
                writes.put_delivery(&id, &d);
                writes.put_audit(&entry);
                view.deliveries.insert(id.clone(), d);
            }
            acked.push(id);
        }
        Ok(acked)
    }
}

impl Command {
    /// Answers the command with "unavailable" without doing it.
    fn refuse(self, reason: &str) {
        let err = LedgerError::Unavailable(reason.to_owned());
        match self {
            Command::Accept { reply, .. } => drop(reply.send(Err(err))),
            Command::Receive { reply, .. } => drop(reply.send(Err(err))),
            Command::Delivered { reply, .. }
            | Command::AttemptFailed { reply, .. }
            | Command::DeadLetter { reply, .. }
            | Command::Requeue { reply, .. }
            | Command::RecordDirectory { reply, .. }
            | Command::Checkpoint { reply, .. }
            | Command::PeerCheckpoint { reply, .. }
            | Command::NoticesTold { reply, .. }
            | Command::Purge { reply, .. } => drop(reply.send(Err(err))),
            Command::RegisterConsent { reply, .. } => drop(reply.send(Err(err))),
            Command::Queried { reply, .. } => drop(reply.send(Err(err))),
            Command::WithdrawConsent { reply, .. } => drop(reply.send(Err(err))),
            Command::Lease { reply, .. } | Command::Ack { reply, .. } => drop(reply.send(Err(err))),
        }
    }
}

/// The wire name of a delivery state.
pub fn state_name(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Accepted => "accepted",
        DeliveryState::Forwarded => "forwarded",
        DeliveryState::Delivered => "delivered",
        DeliveryState::DeadLettered => "dead-lettered",
        DeliveryState::Pulled => "pulled",
        DeliveryState::Acked => "acked",
        DeliveryState::Withheld => "withheld",
    }
}

/// True if RFC 3339 time `a` is strictly before `b`; unparseable times compare as equal
/// (the schema has already checked the format, so that does not happen in practice).
fn is_before(a: &str, b: &str) -> bool {
    match (
        OffsetDateTime::parse(a, &Rfc3339),
        OffsetDateTime::parse(b, &Rfc3339),
    ) {
        (Ok(a), Ok(b)) => a < b,
        _ => false,
    }
}

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// `t` as RFC 3339 with milliseconds.
fn rfc3339(now: OffsetDateTime) -> String {
    let now = now
        .replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now);
    now.format(&Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::AgencyId;

    /// A ledger over a real sled store, with the dev examples of a fresh dev-init.
    async fn ledger_with_examples() -> (
        tempfile::TempDir,
        Store,
        Ledger,
        crate::dev::manifest::LoadedManifest,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let args = crate::dev::devinit::DevInitArgs {
            out: tmp.path().join("fed"),
            centers: vec!["suwon".into()],
            base_port: 7443,
        };
        let manifest = crate::dev::devinit::run(&args).expect("dev-init");
        let store = Store::open(&tmp.path().join("data")).expect("store");
        let (ledger, _thread) =
            Ledger::start(store.clone(), LedgerOptions::default()).expect("ledger");
        (tmp, store, ledger, manifest)
    }

    fn example(
        manifest: &crate::dev::manifest::LoadedManifest,
        name: &str,
    ) -> (serde_json::Value, AgencyId) {
        let (path, sender) = manifest.example(name).expect("example");
        let body = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON");
        (body, AgencyId::parse(sender).expect("sender"))
    }

    #[tokio::test]
    async fn payloads_are_purged_when_the_retention_period_ends_and_the_record_stays() {
        let (_tmp, store, ledger, manifest) = ledger_with_examples().await;
        let (mut consent, collector) = example(&manifest, "consent");
        consent["retention"]["period"] = serde_json::json!("P1D");
        let record = crate::core::consent::Registration::new(&consent, &collector, &now_rfc3339())
            .expect("registration")
            .record;
        ledger
            .register_consent("test".into(), record)
            .await
            .expect("registered");
        let (body, sender) = example(&manifest, "referral");
        let envelope = Envelope::from_validated(body, &sender).expect("envelope");
        let recipient = envelope.to.clone();
        let submission =
            Submission::new(&sender, envelope, Route::Local, None).expect("submission");
        let id = ledger
            .accept("test".into(), submission)
            .await
            .expect("accepted")
            .id;

        // Within the day nothing is due.
        let now = OffsetDateTime::now_utc();
        let actor = "urn:plusgate:node:suwon".to_owned();
        assert_eq!(
            ledger
                .purge(actor.clone(), now + time::Duration::hours(23))
                .await
                .expect("purge"),
            0
        );
        assert!(store
            .message(&id)
            .expect("read")
            .expect("kept")
            .payload
            .is_some());

        // A day and a bit later the payload goes; who sent what to whom under which consent
        // stays, and the unpulled message leaves the inbox.
        let later = now + time::Duration::hours(25);
        assert_eq!(ledger.purge(actor.clone(), later).await.expect("purge"), 1);
        let kept = store.message(&id).expect("read").expect("record stays");
        assert!(kept.payload.is_none() && kept.sealed.is_none());
        let erased = kept.erased.expect("erasure recorded");
        assert!(
            erased.reason.contains("retention period"),
            "{}",
            erased.reason
        );
        assert_eq!(kept.consent_id, "cns-example-0001");
        let d = store.delivery(&id).expect("read").expect("delivery");
        assert_eq!(d.state, DeliveryState::Withheld);
        assert_eq!(store.inbox(&recipient, None).count(), 0);
        let last = store.audit_head().expect("read").expect("entry");
        assert_eq!(
            (last.action, last.message_id.as_str()),
            (Action::Withheld, id.as_str())
        );
        // Done once: nothing is due again.
        assert_eq!(ledger.purge(actor, later).await.expect("purge"), 0);
    }

    #[tokio::test]
    async fn a_withdrawn_message_cannot_be_retried_into_an_outbox() {
        let (_tmp, store, ledger, manifest) = ledger_with_examples().await;
        let (consent, collector) = example(&manifest, "consent");
        let record = crate::core::consent::Registration::new(&consent, &collector, &now_rfc3339())
            .expect("registration")
            .record;
        ledger
            .register_consent("test".into(), record)
            .await
            .expect("registered");
        let (body, sender) = example(&manifest, "referral");
        let envelope = Envelope::from_validated(body, &sender).expect("envelope");
        let peer = CenterId::parse("gangseo").expect("center");
        let submission =
            Submission::new(&sender, envelope, Route::Remote(peer), None).expect("submission");
        let id = ledger
            .accept("test".into(), submission)
            .await
            .expect("accepted")
            .id;
        ledger
            .dead_letter("test".into(), vec![(id.clone(), "peer down".into())])
            .await
            .expect("dead-lettered");
        let change = StatusChange {
            status: "withdrawn".into(),
            at: now_rfc3339(),
            by: collector.to_string(),
            reason: None,
        };
        ledger
            .withdraw_consent("test".into(), "cns-example-0001".into(), collector, change)
            .await
            .expect("withdrawn");
        assert!(store
            .message(&id)
            .expect("read")
            .expect("record")
            .erased
            .is_some());
        let refused = ledger.requeue("operator".into(), id.clone()).await;
        assert!(
            matches!(
                refused,
                Err(LedgerError::WrongState {
                    state: "erased",
                    ..
                })
            ),
            "{refused:?}"
        );
        assert_eq!(
            store.delivery(&id).expect("read").expect("d").state,
            DeliveryState::DeadLettered
        );
    }
}
