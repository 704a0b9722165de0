//! Pulling and acknowledging: leases over the durable inbox.
//!
//! The inbox itself (which messages wait for which agency) is durable and lives in the store;
//! the *leases* (which of them a pull has handed out, until when) live only in memory here.
//! A lease only hides a message from other pulls for a while; losing the leases in a crash
//! just makes unacknowledged messages visible again, which is what at-least-once delivery to
//! the pulling system means. Acknowledgement is durable and goes through the ledger.
//!
//! Architecture invariants, enforced here:
//! - A pull returns only messages whose sequence number is below the ledger's durable
//!   sequence number: nothing a crash could still undo is ever handed out.
//! - A message is leased to at most one pull at a time.
//! - A pull is answered only after the ledger has durably recorded the lease in the audit
//!   log (the disclosure is on record before it happens).
//! - A record that fails verification is not served; it is logged and stays in the inbox.
//! - The lease bookkeeping's lock is held only for in-memory work (reserving candidates,
//!   dropping leases), never across a store read or a payload open: those run on tokio's
//!   blocking pool, so one agency's large or slow pull never stalls another's.
//! - A waiting long poll scans again only when something can have changed for it: the
//!   durable sequence moved (and then only the entries above what it scanned), one of its
//!   recipient's leases expired, or a lease was given back (then from the inbox's floor).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::core::identity::AgencyId;
use crate::core::message::MessageId;
use crate::core::vault::DataKeys;
use crate::node::ledger::{LeaseItem, Ledger, LedgerError};
use crate::node::store::{MessageRecord, Store, StoreError};

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// Reading the inbox failed.
    #[error("reading the inbox failed: {0}")]
    Store(#[from] StoreError),
    /// Recording the lease failed; nothing was handed out.
    #[error("{0}")]
    Ledger(#[from] LedgerError),
}

/// How many acknowledged keys a recipient's state remembers (see
/// `Recipient::recently_acked`): about a minute of acks at a busy agency, a few hundred
/// KiB at most.
const RECENTLY_ACKED_MAX: usize = 4096;

/// The inboxes of this node's agencies.
pub struct Inbox {
    shared: Arc<Shared>,
    ledger: Ledger,
    /// Bumped when leases are given back before they expire (recording them failed), so
    /// waiting pulls look again from their floor.
    released: watch::Sender<u64>,
    closing: watch::Receiver<bool>,
}

/// What a pull's store work (on the blocking pool) needs.
struct Shared {
    store: Store,
    lease: Duration,
    /// Opens payloads stored sealed.
    keys: Option<Arc<DataKeys>>,
    /// Per recipient, its leases and floor. Invariant: locked only for in-memory work.
    recipients: Mutex<HashMap<AgencyId, Recipient>>,
}

/// One recipient's in-memory state.
#[derive(Debug, Default)]
struct Recipient {
    /// Messages handed out, until when.
    leases: HashMap<MessageId, Instant>,
    /// The keys of the messages acknowledged last, newest at the back (at most
    /// [`RECENTLY_ACKED_MAX`]): an ack sent again by the bare id (its answer was lost) finds
    /// its message here, gone from the inbox and its leases.
    recently_acked: std::collections::VecDeque<MessageId>,
    /// The lowest sequence number its inbox may still hold: a pull scans from there, not
    /// over everything acknowledged before it. Sound because an inbox entry's sequence
    /// number is that of the audit entry that took the message, so a new entry is always
    /// above every durable one; and an entry once gone never comes back.
    floor: Option<u64>,
}

impl Recipient {
    fn leased(&self, id: &MessageId, now: Instant) -> bool {
        self.leases.get(id).is_some_and(|until| *until > now)
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("lease", &self.shared.lease)
            .finish()
    }
}

impl Inbox {
    /// An inbox over `store`, leasing for `lease`. When `closing` turns true (the node is
    /// shutting down), waiting long polls answer at once with what they have (nothing),
    /// instead of holding the shutdown until their deadline.
    pub fn new(
        store: Store,
        ledger: Ledger,
        lease: Duration,
        closing: watch::Receiver<bool>,
        keys: Option<Arc<DataKeys>>,
    ) -> Inbox {
        Inbox {
            shared: Arc::new(Shared {
                store,
                lease,
                keys,
                recipients: Mutex::new(HashMap::new()),
            }),
            ledger,
            released: watch::Sender::new(0),
            closing,
        }
    }

    /// Leases up to `max` messages of `recipient`, waiting up to `wait` for one to arrive.
    /// The recipient is the actor the audit log records.
    pub async fn pull(
        &self,
        recipient: &AgencyId,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<MessageRecord>, InboxError> {
        let deadline = Instant::now() + wait;
        let mut durable = self.ledger.subscribe();
        let mut released = self.released.subscribe();
        let mut closing = self.closing.clone();
        // Where the next scan starts: `None` from the floor; `Some(seq)` from `seq`, when
        // everything below it was looked at and nothing there can have turned available.
        let mut from = None;
        loop {
            durable.borrow_and_update();
            released.borrow_and_update();
            let durable_seq = self.ledger.durable_seq();
            let taken = self.take(recipient, max, from, durable_seq).await?;
            if !taken.is_empty() {
                return self.record_lease(recipient, taken).await;
            }
            from = Some(durable_seq);
            let now = Instant::now();
            if now >= deadline || *closing.borrow_and_update() {
                return Ok(Vec::new());
            }
            let expiry = self
                .next_expiry(recipient, now)
                .map_or(deadline, |e| e.min(deadline));
            tokio::select! {
                changed = durable.changed() => {
                    if changed.is_err() {
                        return Err(LedgerError::Stopped.into());
                    }
                }
                _ = tokio::time::sleep_until(expiry) => from = None,
                _ = released.changed() => from = None,
                _ = closing.changed() => {}
            }
        }
    }

    /// Acknowledges `ids` for `recipient` (all or nothing; the recipient is the actor) and
    /// drops their leases. Each id is one the recipient was given: the bare id, or
    /// `<from>/<id>` (see [`Inbox::key_of`]). Answers the ids as given.
    pub async fn ack(
        &self,
        recipient: &AgencyId,
        ids: Vec<MessageId>,
    ) -> Result<Vec<MessageId>, LedgerError> {
        let keys = self.keys_of(recipient, &ids).await?;
        let acked = self.ledger.ack(recipient.clone(), keys).await?;
        let mut recipients = self.shared.lock();
        let r = recipients.entry(recipient.clone()).or_default();
        for key in acked {
            r.leases.remove(&key);
            if !r.recently_acked.contains(&key) {
                if r.recently_acked.len() >= RECENTLY_ACKED_MAX {
                    r.recently_acked.pop_front();
                }
                r.recently_acked.push_back(key);
            }
        }
        let mut seen = std::collections::HashSet::new();
        Ok(ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect())
    }

    /// The keys of the messages `ids` name for `recipient`. A key (`<from>/<id>`) names
    /// itself. A bare id, as agencies are shown it, names the message with that id among
    /// the recipient's leased ones, else among those waiting in its inbox (a lease ran out
    /// before the ack; one scan for all such ids); two there means two senders used the
    /// id, and the ack must say which (`LedgerError::AmbiguousId`). Else the ones
    /// acknowledged lately, all of them (acking one again changes nothing). None of those:
    /// the bare id itself, the key of a message from before ids were scoped (or of none:
    /// 404).
    async fn keys_of(
        &self,
        recipient: &AgencyId,
        ids: &[MessageId],
    ) -> Result<Vec<MessageId>, LedgerError> {
        // A key names the message with the bare id `id`: its sender's key, or (from before
        // ids were scoped) the bare id itself.
        let names = |k: &MessageId, id: &MessageId| k.public() == id.as_str();
        let mut out = Vec::with_capacity(ids.len());
        let mut unresolved: Vec<(&MessageId, Vec<MessageId>)> = Vec::new();
        {
            let recipients = self.shared.lock();
            let state = recipients.get(recipient);
            for id in ids {
                if id.sender().is_some() {
                    out.push(id.clone());
                    continue;
                }
                let tier = |keys: &mut dyn Iterator<Item = &MessageId>| -> Vec<MessageId> {
                    let mut found: Vec<MessageId> =
                        keys.filter(|k| names(k, id)).cloned().collect();
                    found.sort();
                    found.dedup();
                    found
                };
                let leased = state.map_or_else(Vec::new, |r| tier(&mut r.leases.keys()));
                let acked = state.map_or_else(Vec::new, |r| tier(&mut r.recently_acked.iter()));
                match leased.len() {
                    0 => unresolved.push((id, acked)),
                    1 => out.extend(leased),
                    _ => return Err(LedgerError::AmbiguousId(id.clone())),
                }
            }
        }
        if unresolved.is_empty() {
            return Ok(out);
        }
        let shared = Arc::clone(&self.shared);
        let who = recipient.clone();
        let wanted: std::collections::HashSet<String> = unresolved
            .iter()
            .map(|(id, _)| id.as_str().to_owned())
            .collect();
        let waiting: Vec<MessageId> = tokio::task::spawn_blocking(move || {
            shared
                .store
                .inbox(&who, None)
                .filter_map(Result::ok)
                .map(|e| e.id)
                .filter(|k| wanted.contains(k.public()))
                .collect()
        })
        .await
        .map_err(|_| LedgerError::Stopped)?;
        for (id, acked) in unresolved {
            let mut found: Vec<MessageId> =
                waiting.iter().filter(|k| names(k, id)).cloned().collect();
            found.sort();
            found.dedup();
            match found.len() {
                0 if acked.is_empty() => out.push(id.clone()),
                0 => out.extend(acked),
                1 => out.extend(found),
                _ => return Err(LedgerError::AmbiguousId(id.clone())),
            }
        }
        Ok(out)
    }

    /// When the first of `recipient`'s leases runs out (leases run out already are
    /// dropped on the way: an expired lease is as good as none).
    fn next_expiry(&self, recipient: &AgencyId, now: Instant) -> Option<Instant> {
        let mut recipients = self.shared.lock();
        let r = recipients.get_mut(recipient)?;
        r.leases.retain(|_, until| *until > now);
        r.leases.values().min().copied()
    }

    /// Picks up to `max` visible, unleased messages of `recipient` from `from` (or its
    /// floor) below `durable_seq`, and leases them in memory; on the blocking pool.
    async fn take(
        &self,
        recipient: &AgencyId,
        max: usize,
        from: Option<u64>,
        durable_seq: u64,
    ) -> Result<Vec<MessageRecord>, InboxError> {
        let shared = Arc::clone(&self.shared);
        let recipient = recipient.clone();
        match tokio::task::spawn_blocking(move || shared.take(&recipient, max, from, durable_seq))
            .await
        {
            Ok(taken) => Ok(taken?),
            // A panic in the scan is this task's, as if it had run here.
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: the runtime is shutting down.
                Err(_) => Err(LedgerError::Stopped.into()),
            },
        }
    }

    async fn record_lease(
        &self,
        recipient: &AgencyId,
        taken: Vec<MessageRecord>,
    ) -> Result<Vec<MessageRecord>, InboxError> {
        let items = taken
            .iter()
            .filter_map(|m| Some(LeaseItem::of(MessageId::from_key(&m.id)?, m)))
            .collect();
        match self.ledger.lease(recipient.clone(), items).await {
            Ok(leased) => Ok(taken
                .into_iter()
                .filter(|m| leased.iter().any(|id| id.as_str() == m.id))
                .collect()),
            Err(e) => {
                let ids = taken.iter().filter_map(|m| MessageId::from_key(&m.id));
                self.shared.release(recipient, ids);
                self.released.send_modify(|n| *n = n.wrapping_add(1));
                Err(e.into())
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgencyId, Recipient>> {
        self.recipients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives back the leases of `ids`.
    fn release(&self, recipient: &AgencyId, ids: impl Iterator<Item = MessageId>) {
        let mut recipients = self.lock();
        if let Some(r) = recipients.get_mut(recipient) {
            for id in ids {
                r.leases.remove(&id);
            }
        }
    }

    /// [`Inbox::take`], on the calling (blocking) thread: the index is scanned without the
    /// lock, candidates are reserved (leased) under it in chunks, and their records are
    /// read and opened without it; one that fails is logged and its reservation given back.
    fn take(
        &self,
        recipient: &AgencyId,
        max: usize,
        from: Option<u64>,
        durable_seq: u64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let floor = self.lock().get(recipient).and_then(|r| r.floor);
        let start = match (from, floor) {
            (Some(from), Some(floor)) => Some(from.max(floor)),
            (from, floor) => from.or(floor),
        };
        let mut taken = Vec::new();
        let mut candidates = Vec::new();
        // Everything below `durable_seq` is in the store already; scanning from the floor,
        // the first entry seen is the lowest the inbox holds (nothing below it can appear).
        let mut lowest = durable_seq;
        for entry in self
            .store
            .inbox(recipient, start.and_then(|s| s.checked_sub(1)))
        {
            let entry = entry?;
            lowest = lowest.min(entry.seq);
            if entry.seq >= durable_seq {
                break;
            }
            candidates.push(entry.id);
            if candidates.len() >= max - taken.len() {
                self.reserve_and_open(recipient, &mut candidates, &mut taken);
                if taken.len() >= max {
                    break;
                }
            }
        }
        self.reserve_and_open(recipient, &mut candidates, &mut taken);
        if from.is_none() {
            self.lock().entry(recipient.clone()).or_default().floor = Some(lowest);
        }
        Ok(taken)
    }

    /// Leases those of `candidates` no one holds (under the lock), then reads and opens
    /// them (without it) into `taken`.
    fn reserve_and_open(
        &self,
        recipient: &AgencyId,
        candidates: &mut Vec<MessageId>,
        taken: &mut Vec<MessageRecord>,
    ) {
        if candidates.is_empty() {
            return;
        }
        let reserved: Vec<MessageId> = {
            let now = Instant::now();
            let mut recipients = self.lock();
            let r = recipients.entry(recipient.clone()).or_default();
            let mut reserved = Vec::with_capacity(candidates.len());
            for id in candidates.drain(..) {
                if !r.leased(&id, now) {
                    r.leases.insert(id.clone(), now + self.lease);
                    reserved.push(id);
                }
            }
            reserved
        };
        let mut failed = Vec::new();
        for id in reserved {
            match self.open(&id) {
                Some(record) => taken.push(record),
                None => failed.push(id),
            }
        }
        self.release(recipient, failed.into_iter());
    }

    /// Message `id` with its payload opened, if both its records verify; a damaged one is
    /// logged and skipped, never served, and never allowed to block the rest of the inbox.
    fn open(&self, id: &MessageId) -> Option<MessageRecord> {
        let record = self.store.message(id).and_then(|m| match m {
            Some(m) => self.store.delivery_of(&m).map(|_| Some(m)),
            None => Ok(None),
        });
        match record {
            Ok(Some(mut record)) => match record.open(self.keys.as_deref()) {
                Ok(payload) => {
                    record.payload = Some(payload);
                    record.sealed = None;
                    Some(record)
                }
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "payload does not open; not served");
                    None
                }
            },
            Ok(None) => {
                tracing::error!(message_id = %id, "inbox entry points at a missing message; skipped");
                None
            }
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "corrupt record not served");
                None
            }
        }
    }
}
