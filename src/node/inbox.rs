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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::core::identity::AgencyId;
use crate::core::message::MessageId;
use crate::core::vault::DataKeys;
use crate::node::ledger::{LeaseItem, Ledger, LedgerError};
use crate::node::store::{MessageRecord, Store, StoreError};

/// How often a waiting pull looks again for leases that expired meanwhile.
const EXPIRY_RECHECK: Duration = Duration::from_millis(250);

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

/// The inboxes of this node's agencies.
pub struct Inbox {
    store: Store,
    ledger: Ledger,
    lease: Duration,
    leases: Mutex<HashMap<MessageId, Instant>>,
    /// Per recipient, the lowest sequence number its inbox may still hold: a pull scans from
    /// there, not over everything acknowledged before it. Sound because an inbox entry's
    /// sequence number is that of the audit entry that took the message, so a new entry is
    /// always above every durable one; and an entry once gone never comes back.
    floors: Mutex<HashMap<AgencyId, u64>>,
    closing: watch::Receiver<bool>,
    /// Opens payloads stored sealed.
    keys: Option<std::sync::Arc<DataKeys>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("lease", &self.lease).finish()
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
        keys: Option<std::sync::Arc<DataKeys>>,
    ) -> Inbox {
        Inbox {
            store,
            ledger,
            lease,
            leases: Mutex::new(HashMap::new()),
            floors: Mutex::new(HashMap::new()),
            closing,
            keys,
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
        let mut closing = self.closing.clone();
        loop {
            durable.borrow_and_update();
            let taken = self.take(recipient, max)?;
            if !taken.is_empty() {
                return self.record_lease(recipient, taken).await;
            }
            let now = Instant::now();
            if now >= deadline || *closing.borrow_and_update() {
                return Ok(Vec::new());
            }
            let recheck = (now + EXPIRY_RECHECK).min(deadline);
            tokio::select! {
                changed = durable.changed() => {
                    if changed.is_err() {
                        return Err(LedgerError::Stopped.into());
                    }
                }
                _ = tokio::time::sleep_until(recheck) => {}
                _ = closing.changed() => {}
            }
        }
    }

    /// Acknowledges `ids` for `recipient` (all or nothing; the recipient is the actor) and
    /// drops their leases.
    pub async fn ack(
        &self,
        recipient: &AgencyId,
        ids: Vec<MessageId>,
    ) -> Result<Vec<MessageId>, LedgerError> {
        let acked = self.ledger.ack(recipient.clone(), ids).await?;
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        for id in &acked {
            leases.remove(id);
        }
        Ok(acked)
    }

    /// Picks up to `max` visible, unleased messages and leases them in memory.
    fn take(&self, recipient: &AgencyId, max: usize) -> Result<Vec<MessageRecord>, StoreError> {
        let durable_seq = self.ledger.durable_seq();
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::new();
        let floor = self
            .floors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(recipient)
            .copied();
        // Everything below `durable_seq` is in the store already; the first entry seen is
        // the lowest the inbox holds (nothing below it can appear any more).
        let mut lowest = durable_seq;
        for entry in self
            .store
            .inbox(recipient, floor.and_then(|f| f.checked_sub(1)))
        {
            let entry = entry?;
            lowest = lowest.min(entry.seq);
            if entry.seq >= durable_seq {
                break;
            }
            match leases.get(&entry.id) {
                Some(until) if *until > now => continue,
                _ => {}
            }
            // Both records must verify; a damaged one is logged and skipped, never served,
            // and never allowed to block the rest of the inbox.
            let record = self.store.message(&entry.id).and_then(|m| match m {
                Some(m) => self.store.delivery_of(&m).map(|_| Some(m)),
                None => Ok(None),
            });
            match record {
                Ok(Some(mut record)) => match record.open(self.keys.as_deref()) {
                    Ok(payload) => {
                        record.payload = Some(payload);
                        record.sealed = None;
                        leases.insert(entry.id, now + self.lease);
                        taken.push(record);
                    }
                    Err(e) => {
                        tracing::error!(message_id = %entry.id, error = %e, "payload does not open; not served");
                    }
                },
                Ok(None) => {
                    tracing::error!(message_id = %entry.id, "inbox entry points at a missing message; skipped");
                }
                Err(e) => {
                    tracing::error!(message_id = %entry.id, error = %e, "corrupt record not served");
                }
            }
            if taken.len() >= max {
                break;
            }
        }
        self.floors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(recipient.clone(), lowest);
        Ok(taken)
    }

    async fn record_lease(
        &self,
        recipient: &AgencyId,
        taken: Vec<MessageRecord>,
    ) -> Result<Vec<MessageRecord>, InboxError> {
        let items = taken
            .iter()
            .filter_map(|m| {
                Some(LeaseItem {
                    id: MessageId::parse(&m.id)?,
                    from: m.from.clone(),
                    subject: m.subject.clone(),
                    consent_id: m.consent_id.clone(),
                })
            })
            .collect();
        match self.ledger.lease(recipient.clone(), items).await {
            Ok(leased) => Ok(taken
                .into_iter()
                .filter(|m| leased.iter().any(|id| id.as_str() == m.id))
                .collect()),
            Err(e) => {
                let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                for m in &taken {
                    if let Some(id) = MessageId::parse(&m.id) {
                        leases.remove(&id);
                    }
                }
                Err(e.into())
            }
        }
    }
}
