//! The ledger: the node's single writer. Every change to durable state (accepting a message,
//! leasing it, acknowledging it) is a [`Command`] sent to one thread that owns the audit
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
//! - A message, its delivery record, its inbox entry and its audit entry are in one write set.
//! - Audit sequence numbers are dense and ordered: only this thread appends to the chain.
//! - Readers see an inbox entry only when its sequence number is below the published durable
//!   sequence number (see `inbox`), so nobody can pull a message that a crash could still undo.
//! - After a failed fsync the ledger refuses all further writes: what is on disk is then
//!   unknown, and the only safe recovery is a restart, which re-reads what sled persisted.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use ring::digest::{Context, SHA256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};

use crate::audit::{self, Action, Event, Head};
use crate::identity::AgencyId;
use crate::message::{Envelope, MessageId};
use crate::store::{
    DeliveryRecord, DeliveryState, EncodedMessage, MessageRecord, Store, StoreError, WriteSet,
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
    subject: String,
    consent_id: String,
    body_sha256: String,
    accepted_at: String,
    record: EncodedMessage,
}

impl Submission {
    /// Prepares `envelope` from `sender`, assigning an id if the sender chose none.
    ///
    /// The payload is serialised once, canonically (keys sorted, no whitespace); those bytes
    /// are both what is stored and, with the envelope's other fields, the request's
    /// fingerprint for idempotent retries. Two bodies that differ only in key order or
    /// spacing are the same message.
    pub fn new(sender: &AgencyId, envelope: Envelope) -> Submission {
        let payload = serde_json::value::to_raw_value(&envelope.payload)
            .expect("JSON values always serialize");
        let fingerprint = fingerprint(&envelope, payload.get());
        let sender_chose_id = envelope.id.is_some();
        let id = envelope.id.unwrap_or_else(MessageId::generate);
        let record = MessageRecord {
            id: id.to_string(),
            sender_chose_id,
            from: sender.to_string(),
            to: envelope.to.to_string(),
            message_type: envelope.message_type.to_string(),
            version: envelope.version,
            subject: envelope.subject,
            consent_id: envelope.consent_id,
            payload,
            body_sha256: fingerprint,
            accepted_at: now_rfc3339(),
        };
        let encoded = record.encode();
        Submission {
            id,
            sender_chose_id,
            from: sender.clone(),
            to: envelope.to,
            subject: record.subject,
            consent_id: record.consent_id,
            body_sha256: record.body_sha256,
            accepted_at: record.accepted_at,
            record: encoded,
        }
    }
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

/// A request to change durable state.
enum Command {
    Accept {
        actor: String,
        submission: Box<Submission>,
        reply: Reply<Accepted>,
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
}

/// A handle to the ledger. Cheap to clone; the ledger thread stops when every handle is gone.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Command>,
    durable: watch::Receiver<u64>,
    failed: Arc<OnceLock<String>>,
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
    pub fn start(store: Store) -> Result<(Ledger, JoinHandle<()>), StartError> {
        let head = match store.audit_head()? {
            None => Head::GENESIS,
            Some(last) => Head::after(&last)?,
        };
        let (tx, rx) = mpsc::channel(QUEUE_LEN_MAX);
        let (durable_tx, durable) = watch::channel(head.next_seq);
        let failed = Arc::new(OnceLock::new());
        let writer = Writer {
            store,
            head,
            durable: durable_tx,
            failed: failed.clone(),
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
}

/// One reply, held until the group is durable.
enum Pending {
    Accept(Reply<Accepted>, Result<Accepted, LedgerError>),
    Ids(Reply<Vec<MessageId>>, Result<Vec<MessageId>, LedgerError>),
}

/// What the commands of the current group have written so far, so later commands of the
/// same group see it (the store does not, until the group is applied).
#[derive(Default)]
struct GroupView {
    messages: HashMap<MessageId, (String, String, String)>, // id -> (from, body_sha256, accepted_at)
    deliveries: HashMap<MessageId, DeliveryRecord>,
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
                let err = || LedgerError::Unavailable(reason.clone());
                match cmd {
                    Command::Accept { reply, .. } => drop(reply.send(Err(err()))),
                    Command::Lease { reply, .. } | Command::Ack { reply, .. } => {
                        drop(reply.send(Err(err())))
                    }
                }
            }
            return;
        }
        let head_before = self.head.clone();
        let mut writes = WriteSet::new();
        let mut view = GroupView::default();
        let now = now_rfc3339();
        let pending: Vec<Pending> = group
            .drain(..)
            .map(|cmd| self.apply(cmd, &mut writes, &mut view, &now))
            .collect();

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
                for p in pending {
                    match p {
                        Pending::Accept(reply, r) => drop(reply.send(r)),
                        Pending::Ids(reply, r) => drop(reply.send(r)),
                    }
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
                }
                let reason = e.to_string();
                for p in pending {
                    let err = || LedgerError::Unavailable(reason.clone());
                    match p {
                        Pending::Accept(reply, _) => drop(reply.send(Err(err()))),
                        Pending::Ids(reply, _) => drop(reply.send(Err(err()))),
                    }
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
            } => Pending::Accept(reply, self.accept(actor, *submission, writes, view)),
            Command::Lease {
                actor,
                recipient,
                items,
                reply,
            } => Pending::Ids(
                reply,
                self.lease(actor, recipient, items, writes, view, now),
            ),
            Command::Ack {
                actor,
                recipient,
                ids,
                reply,
            } => Pending::Ids(reply, self.ack(actor, recipient, ids, writes, view, now)),
        }
    }

    fn accept(
        &mut self,
        actor: String,
        m: Submission,
        writes: &mut WriteSet,
        view: &mut GroupView,
    ) -> Result<Accepted, LedgerError> {
        if m.sender_chose_id {
            let earlier = match view.messages.get(&m.id) {
                Some(seen) => Some(seen.clone()),
                None => self
                    .store
                    .message(&m.id)?
                    .map(|r| (r.from, r.body_sha256, r.accepted_at)),
            };
            if let Some((from, sha, at)) = earlier {
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
        let entry = self.head.append(Event {
            at: m.accepted_at.clone(),
            actor,
            action: Action::Accepted,
            message_id: m.id.to_string(),
            from: m.from.to_string(),
            to: m.to.to_string(),
            subject: m.subject,
            consent_id: m.consent_id,
        });
        writes.put_message(m.record);
        writes.put_delivery(
            &m.id,
            &DeliveryRecord {
                seq: entry.seq,
                state: DeliveryState::Accepted,
                first_pulled_at: None,
                lease_count: 0,
                acked_at: None,
            },
        );
        writes.put_inbox(&m.to, entry.seq, &m.id);
        writes.put_audit(&entry);
        if m.sender_chose_id {
            view.messages.insert(
                m.id.clone(),
                (m.from.to_string(), m.body_sha256, m.accepted_at.clone()),
            );
        }
        Ok(Accepted {
            id: m.id,
            accepted_at: m.accepted_at,
        })
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
            if d.state == DeliveryState::Acked {
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
            if d.state != DeliveryState::Acked {
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

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now);
    now.format(&Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
