//! The ledger: the node's single writer. Every change to durable state (accepting a message,
//! leasing it, acknowledging it, taking one over from another node, recording a peer's
//! receipt, dead-lettering, consents and their withdrawal, purges) is a request on the
//! [`Ledger`] handle, sent to one thread that owns the audit chain's head, turns requests
//! into one atomic write set per group, makes the group durable with one flush+fsync, and
//! only then answers every request of the group (group commit).
//!
//! ```text
//!  api tasks ──Command──▶ [bounded queue] ──▶ ledger thread
//!                                              │ take all waiting commands (≤ GROUP_LEN_MAX)
//!                                              │ check each (idempotency, ownership, consent)
//!                                              │ build one WriteSet, chain audit entries
//!                                              │ store.apply + store.sync  (one fsync)
//!                                              │ publish the durable sequence number
//!                                              ▼ answer each command
//! ```
//!
//! One file per concept, each an `impl Writer` block: `commands` (the handle's requests),
//! `group` (the thread's loop and group commit), `intake` (accept and receive), `consent`
//! (registration, the check, consents from peers), `withdrawal` (withdrawal, erasure,
//! notices, retention purge), `outbox`, `leases`, `pickups` (reports that the recipient
//! pulled or acknowledged a message, queued for its origin, and applied there),
//! `checkpoints`, `anchor` (the newest own checkpoint outside the store, and the start-up
//! check against it), `lifecycle`, `queries`.
//!
//! Architecture invariants, enforced here:
//! - A command is answered with success only after its writes are durable.
//! - A message, its delivery record, its inbox or outbox entry and its audit entry are in one
//!   write set; a peer's receipt for a forwarded message is in the same write set as the
//!   message's move from `accepted` to `delivered`.
//! - An outbox never holds more than `outbox_max` messages: beyond that, pushes for that
//!   center are refused (the caller answers 503) instead of growing without bound.
//! - Likewise an inbox never holds more than `inbox_max` messages: beyond that, pushes and
//!   handed-over messages for that agency are refused, retryably (503; a sending node keeps
//!   the message in its outbox and tries again).
//! - The commands that carry messages hold at most `queue_bytes_max` bytes between them,
//!   queued or in the group being written (`queue`); the queue holds at most
//!   `QUEUE_LEN_MAX` commands.
//! - Audit sequence numbers are dense and ordered: only this thread appends to the chain.
//! - A message is taken only if its consent covers it at the group's time, checked on this
//!   thread, which also records withdrawals: a check and a withdrawal never interleave.
//! - Readers see an inbox entry only when its sequence number is below the published durable
//!   sequence number (see `inbox`), so nobody can pull a message that a crash could still undo.
//! - A federated node starts only on a chain that extends the newest checkpoint it issued,
//!   which it also keeps outside sled (`anchor`); each checkpoint names the one before it.
//! - After a failed fsync the ledger refuses all further writes: what is on disk is then
//!   unknown, and the only safe recovery is a restart, which re-reads what sled persisted.
//! - Every time the ledger writes is read from its [`Clock`], once per group: the entries
//!   of a group carry the same time, and tests move that clock instead of waiting.
//! - Who acted is a typed [`Identity`], turned into its SAN URI only where an audit entry
//!   (or a record's reason) is written.
//! - A time the ledger answers with ([`Accepted`], [`Received`], [`Submission::accepted_at`])
//!   is a [`Timestamp`] holding the text that is stored, byte for byte: a retried push is
//!   answered, and a resent message's receipt signed again, with exactly the text first
//!   written. Records, audit entries and the group's time stay text (`String`): they are
//!   what is stored and hashed.

mod anchor;
mod checkpoints;
mod commands;
mod consent;
mod group;
mod intake;
mod leases;
mod lifecycle;
mod outbox;
mod pickups;
mod queries;
mod queue;
mod stats;
mod withdrawal;

pub use stats::StatsBook;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, watch};

use crate::core::audit::{self, Checkpoint, Head};
use crate::core::consent::{ConsentKey, ConsentRecord, Refusal, Terms};
use crate::core::identity::{AgencyId, CenterId, Identity};
use crate::core::message::MessageId;
use crate::core::time::Timestamp;
use crate::node::clock::Clock;
use crate::node::metrics::LedgerMetrics;
use crate::node::store::{DeliveryState, MessageRecord, Store, StoreError, WriteSet};

pub use self::anchor::{Anchor, AnchorError, Unextended, ANCHOR_FILE};
pub use self::checkpoints::{Via, EVIDENCE_PER_PEER_MAX, PEER_HISTORY_MAX};
use self::commands::Command;
pub use self::commands::Queued;
pub use self::intake::Submission;
pub use self::pickups::{PickupOutcome, PickupRefusal};
pub use self::queue::QUEUE_WAIT_MAX;
pub use self::withdrawal::{purge_every, PURGE_BATCH};

/// Most commands committed by one flush+fsync.
pub const GROUP_LEN_MAX: usize = 4096;
/// Commands that may wait for the ledger; senders beyond this wait for room (backpressure).
/// Commands carrying messages are bounded in bytes as well (`queue`).
pub const QUEUE_LEN_MAX: usize = 16_384;
/// Most consents [`Writer::consent_cache`] holds before it starts over.
const CONSENT_CACHE_MAX: usize = 10_000;

/// Why the ledger could not do what was asked. [`LedgerError::retryable`] says whether the
/// same request may succeed later.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The id was used before for a different message (or by a different sender). The
    /// caller's fault.
    #[error("message id {0} was already used for a different message")]
    IdConflict(MessageId),
    /// An ack named a message that is not in the caller's inbox: none with that id, or one
    /// addressed to another agency. One error for both, so that no answer tells an agency
    /// whether another agency's message exists. The caller's fault.
    #[error("no message {0} in your inbox")]
    NoSuchMessage(MessageId),
    /// An ack names a message by its bare id, and two senders sent the recipient a
    /// message with that id (ids are unique per sender). The caller's fault: it acks that
    /// one as `<from>/<id>`. (Both are the caller's own messages: telling it so tells
    /// nothing about anyone else's.)
    #[error(
        "two messages {0} from different senders are in your inbox: acknowledge each as <from>/{0}"
    )]
    AmbiguousId(MessageId),
    /// The outbox to this center is full: the center has been unreachable for a while.
    /// Nothing was written; retry later.
    #[error("the outbox to center {0} is full; retry later")]
    OutboxFull(CenterId),
    /// The inbox of this local agency holds `inbox_max` messages: the agency has not been
    /// pulling and acknowledging. Nothing was written; retry later.
    #[error("the inbox of {0} is full; retry later")]
    InboxFull(AgencyId),
    /// The ledger's queue holds as many message bytes as it may, and no room came within
    /// `QUEUE_WAIT_MAX`: the node is busy. Nothing was queued; retry later.
    #[error("the ledger is busy; retry later")]
    Busy,
    /// The consent id was registered before with a different document. The caller's fault.
    #[error("consent {0} is already registered with a different document")]
    ConsentConflict(String),
    /// No consent with this id that the caller collected is registered here: none at all, or
    /// one another agency collected (only the collector may change it). One error for both,
    /// so that no answer tells an agency whether another agency's consent exists. The
    /// caller's fault.
    #[error("no consent {0} collected by you is registered here")]
    NoSuchConsent(String),
    /// A peer's checkpoint does not follow the one it signed before: it rolled back or
    /// rewrote its audit log. The earlier checkpoint is kept. The peer's fault.
    #[error(transparent)]
    PeerRollback(crate::core::audit::Divergence),
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
    /// Reading what the command needed failed; nothing was written. A damaged record stays
    /// damaged; any other storage error may pass.
    #[error("storage failure: {0}")]
    Storage(#[from] StoreError),
    /// The store's disk is below its free-space reserve: nothing of the group this command
    /// was part of was written. Writes resume by themselves once space is freed; retry
    /// later.
    #[error("the ledger is not accepting writes: {0}")]
    StorageFull(Arc<StoreError>),
    /// Applying or syncing a group failed, so what the store holds is unknown until sled
    /// recovers it from disk: the ledger refuses every write until the node is restarted
    /// (`/readyz` says so). Retrying helps after the restart.
    #[error("the ledger is not accepting writes: the store failed: {0}; restart the node")]
    Halted(Arc<StoreError>),
    /// The ledger's thread is gone: the node is shutting down. Retry at the restarted node.
    #[error("the ledger is not accepting writes: the ledger has stopped")]
    Stopped,
}

impl LedgerError {
    /// True if the same request may succeed later, unchanged: the failure is the node's
    /// (storage, shutdown, a full outbox), not the request's. Callers answer these with 503
    /// and Retry-After, or keep the work to try again; the others are final.
    pub fn retryable(&self) -> bool {
        match self {
            LedgerError::OutboxFull(_)
            | LedgerError::InboxFull(_)
            | LedgerError::Busy
            | LedgerError::StorageFull(_)
            | LedgerError::Halted(_)
            | LedgerError::Stopped => true,
            LedgerError::Storage(e) => !matches!(e, StoreError::Corrupt { .. }),
            LedgerError::IdConflict(_)
            | LedgerError::NoSuchMessage(_)
            | LedgerError::AmbiguousId(_)
            | LedgerError::ConsentConflict(_)
            | LedgerError::NoSuchConsent(_)
            | LedgerError::PeerRollback(_)
            | LedgerError::WrongState { .. }
            | LedgerError::Refused(_) => false,
        }
    }
}

/// The answer to an accepted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The message (its key; the sender's id, or the one the node assigned, is
    /// [`MessageId::public`]).
    pub id: MessageId,
    /// When it was first accepted (an identical retry gets the original time, as stored).
    pub accepted_at: Timestamp,
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
    /// When this node took it first, as stored (the receipt signs this text).
    pub received_at: Timestamp,
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
    /// Consent id.
    pub consent_id: String,
    /// Consent's collector (`None` in records from before consents were scoped).
    pub consent_by: Option<String>,
    /// Its type (statistics count the first pull of a referral).
    pub message_type: String,
    /// When this node took it.
    pub accepted_at: String,
    /// Its digest (the fingerprint): what a pickup report to its origin center names
    /// (`pickups`), read here with the record so the writer need not read it again.
    pub digest: String,
}

impl LeaseItem {
    /// What a lease of message `id` needs of its record `m`.
    pub fn of(id: MessageId, m: &MessageRecord) -> LeaseItem {
        LeaseItem {
            id,
            from: m.from.clone(),
            subject: m.subject.clone(),
            consent_id: m.consent_id.clone(),
            consent_by: m.consent_by.clone(),
            message_type: m.message_type.clone(),
            accepted_at: m.accepted_at.clone(),
            digest: m.body_sha256.clone(),
        }
    }
}

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
    /// Consent id.
    pub consent_id: String,
    /// Consent's collector (see `audit::AuditEntry::consent_by`).
    pub consent_by: Option<String>,
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
            consent_by: None,
        }
    }

    /// The parties of a stored message.
    pub fn of(m: &MessageRecord) -> Parties {
        Parties {
            from: m.from.clone(),
            to: m.to.clone(),
            subject: m.subject.clone(),
            consent_id: m.consent_id.clone(),
            consent_by: m.consent_by.clone(),
        }
    }
}

/// How the ledger bounds what it holds, and whether it signs checkpoints.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Most messages one outbox (to one center) may hold.
    pub outbox_max: usize,
    /// Most messages one local agency's inbox may hold.
    pub inbox_max: usize,
    /// Most message bytes waiting in the queue and in the group being written (`queue`).
    pub queue_bytes_max: usize,
    /// Signed checkpoints of the audit chain (federated nodes, which have a signing key).
    pub checkpoints: Option<CheckpointPolicy>,
    /// This node's center, when it is part of a federation: a withdrawal is then queued to
    /// be told to every other center the consent names (see `outbox`).
    pub federated_as: Option<CenterId>,
    /// Where the writer records group sizes, fsync times, refusals, dead letters and the
    /// inbox and outbox depths (`node::metrics`).
    pub metrics: Arc<LedgerMetrics>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            outbox_max: 100_000,
            inbox_max: crate::config::INBOX_MAX_DEFAULT,
            queue_bytes_max: crate::config::LEDGER_QUEUE_BYTES_MAX_DEFAULT,
            checkpoints: None,
            federated_as: None,
            metrics: Arc::default(),
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
    /// Where the newest checkpoint is kept outside the store (see `anchor`).
    pub anchor: Anchor,
}

impl std::fmt::Debug for CheckpointPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointPolicy")
            .field("node", &self.node)
            .field("every", &self.every)
            .field("anchor", &self.anchor)
            .finish_non_exhaustive()
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
    /// The chain does not extend the newest checkpoint this node issued, or the anchor that
    /// keeps it is unusable.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    /// The OS refused a thread.
    #[error("cannot start the ledger thread: {0}")]
    Thread(std::io::Error),
}

/// A handle to the ledger. Cheap to clone; the ledger thread stops when every handle is gone.
/// Its requests are in `commands.rs`.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Box<dyn Command>>,
    /// The queue's bound in bytes, for commands carrying messages.
    bytes: queue::QueueBytes,
    /// For readiness: the store's free space is checked live, so a node refused for a full
    /// disk turns ready again as soon as space is freed, even with no write coming.
    store: Store,
    durable: watch::Receiver<u64>,
    failed: Arc<OnceLock<Arc<StoreError>>>,
    checkpoint: watch::Receiver<Option<Checkpoint>>,
    clock: Arc<dyn Clock>,
    stats: Arc<StatsBook>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("durable_seq", &*self.durable.borrow())
            .finish()
    }
}

impl Ledger {
    /// Starts the ledger thread over `store`, resuming the audit chain from its last entry,
    /// after checking that entry against its own hash and, for a node that signs
    /// checkpoints, that the chain extends the newest checkpoint it issued (`anchor`).
    /// Every time it records is read from `clock`.
    pub fn start(
        store: Store,
        options: LedgerOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(Ledger, JoinHandle<()>), StartError> {
        let head = match store.audit_head()? {
            None => Head::GENESIS,
            Some(last) => Head::after(&last)?,
        };
        let latest = match &options.checkpoints {
            Some(policy) => anchor::check_at_start(&store, &head, policy)?,
            None => store.latest_checkpoint()?,
        };
        let outbox_len = store.outbox_lengths()?;
        let inbox_len = store.inbox_lengths()?;
        let indexed = store.ensure_subject_index()?;
        if indexed > 0 {
            tracing::info!(entries = indexed, "built the audit index by subject");
        }
        let (stats, counting_starts) = StatsBook::load(&store, &clock.now_rfc3339())?;
        if counting_starts {
            // No other writer yet: the ledger thread starts below.
            let mut w = WriteSet::new();
            w.put_stats_since(stats.since());
            store.apply(w)?;
            store.sync()?;
        }
        let stats = Arc::new(stats);
        let (tx, rx) = mpsc::channel(QUEUE_LEN_MAX);
        let options_queue_bytes_max = options.queue_bytes_max;
        let (durable_tx, durable) = watch::channel(head.next_seq);
        let (checkpoint_tx, checkpoint) = watch::channel(latest);
        let anchor = options.checkpoints.as_ref().map(|p| p.anchor.clone());
        let failed = Arc::new(OnceLock::new());
        let writer = Writer {
            store: store.clone(),
            head,
            durable: durable_tx,
            failed: failed.clone(),
            outbox_len,
            outbox_max: options.outbox_max,
            inbox_len,
            inbox_max: options.inbox_max,
            checkpoints: options.checkpoints,
            checkpoint: anchor::Issued::new(checkpoint_tx, anchor),
            federated_as: options.federated_as,
            consent_cache: HashMap::new(),
            clock: clock.clone(),
            peer_history: HashMap::new(),
            peer_latest: HashMap::new(),
            metrics: options.metrics,
            stats: stats.clone(),
        };
        writer
            .metrics
            .publish_depths(&writer.inbox_len, &writer.outbox_len);
        let thread = std::thread::Builder::new()
            .name("plusgate-ledger".into())
            .spawn(move || writer.run(rx))
            .map_err(StartError::Thread)?;
        Ok((
            Ledger {
                tx,
                bytes: queue::QueueBytes::new(options_queue_bytes_max, QUEUE_WAIT_MAX),
                store,
                durable,
                failed,
                checkpoint,
                clock,
                stats,
            },
            thread,
        ))
    }

    /// The durable sequence number: every audit entry (and inbox entry) below it is durable.
    pub fn durable_seq(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Why the ledger does not accept writes now, if it does not: it stopped after a store
    /// failure (until a restart), or the disk is below its free-space reserve (until space
    /// is freed).
    pub fn failure(&self) -> Option<String> {
        if let Some(e) = self.failed.get() {
            return Some(format!("the store failed: {e}; restart the node"));
        }
        self.store.check_space().err().map(|e| e.to_string())
    }

    /// A receiver that changes whenever more becomes durable (used by long polls).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// This node's latest durable checkpoint.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.borrow().clone()
    }

    /// What the ledger counted (`stats`), for `GET /v1/stats` and the federation's.
    pub fn stats(&self) -> &Arc<StatsBook> {
        &self.stats
    }

    /// The clock every time in the ledger comes from. It is the node's clock: a handler
    /// that stamps a record or judges "expired" reads it here, so it agrees with the ledger.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

/// The state owned by the ledger thread. Its `impl` blocks are one per concept, in the
/// files of this module.
struct Writer {
    store: Store,
    head: Head,
    durable: watch::Sender<u64>,
    failed: Arc<OnceLock<Arc<StoreError>>>,
    /// Messages waiting in each outbox (counted at start, kept here).
    outbox_len: BTreeMap<CenterId, usize>,
    outbox_max: usize,
    /// Messages waiting in each local agency's inbox (counted at start, kept here; an
    /// agency with none may be missing).
    inbox_len: HashMap<AgencyId, usize>,
    inbox_max: usize,
    checkpoints: Option<CheckpointPolicy>,
    /// The latest durable checkpoint, anchored outside the store and published after each
    /// commit that writes one; the next checkpoint names it as its `prev`.
    checkpoint: anchor::Issued,
    /// This node's center when federated: consent changes are then queued as notices for
    /// the other centers a consent names.
    federated_as: Option<CenterId>,
    /// Durable consents and their parsed terms, so the check per message does not re-read
    /// and re-parse the document. Coherent because this thread is the only writer of
    /// consents: every consent write drops its entry.
    consent_cache: HashMap<ConsentKey, (ConsentRecord, Terms)>,
    /// Where every group's time comes from.
    clock: Arc<dyn Clock>,
    /// The checkpoints held of each peer, by length (see `checkpoints`), read from the
    /// store the first time a peer's are judged; coherent because this thread is their
    /// only writer. A group that fails to commit may leave some here that are not durable:
    /// each was signed by the peer and extends the one before, so judging by it stays sound.
    peer_history: HashMap<CenterId, BTreeMap<u64, Checkpoint>>,
    /// The newest checkpoint each peer sent over each channel since this node started
    /// (see `checkpoints`: one that goes back on its own channel is a rollback).
    peer_latest: HashMap<(CenterId, Via), Checkpoint>,
    /// Where group commits, refusals, dead letters and depths are recorded.
    metrics: Arc<LedgerMetrics>,
    /// What was counted, by day (`stats`): this thread is its only writer.
    stats: Arc<StatsBook>,
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

/// An audit event for message `id` with `parties`, done by `actor` at the group's time:
/// the shape most of the writer's entries have.
fn message_event(
    actor: &Identity,
    action: audit::Action,
    id: &MessageId,
    parties: Parties,
    at: &str,
    detail: Option<String>,
) -> audit::Event {
    audit::Event {
        at: at.to_owned(),
        actor: actor.uri(),
        action,
        message_id: id.public().to_owned(),
        from: parties.from,
        to: parties.to,
        subject: parties.subject,
        consent_id: parties.consent_id,
        consent_by: parties.consent_by,
        detail,
    }
}

#[cfg(test)]
mod tests;
