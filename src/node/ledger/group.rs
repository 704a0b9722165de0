//! The writer thread's loop and group commit: take every command waiting (up to
//! [`GROUP_LEN_MAX`]), apply each into one [`Group`] (its writes and what later commands of
//! the same group must see), sign a checkpoint if one is due, make the group durable with
//! one `store.apply` + `store.sync`, publish the new durable sequence number, and only then
//! answer each command.
//!
//! Invariants enforced here:
//! - no command is answered with success before its group is durable;
//! - the durable sequence number is published before the answers, so a sender told
//!   "accepted" that asks the recipient to pull at once finds the message visible;
//! - a group refused for lack of disk space ([`LedgerError::StorageFull`]) is refused before
//!   any of it reaches the store, and leaves no trace: the chain's head and the outbox
//!   counts go back to where they were; the next group tries again, so writes resume by
//!   themselves once space is freed;
//! - after *any* error from the store while applying or syncing a group, every later
//!   command is refused unrun ([`LedgerError::Halted`]) until a restart. sled applies a
//!   batch key by key, so a failed apply can leave part of the group visible in memory
//!   (the fault-injection tests show it); after a failed fsync the kernel may have dropped
//!   the dirty pages it could not write. Either way no later command may read that state
//!   or reuse the group's sequence numbers; at restart sled recovers each batch whole or not
//!   at all from what is on disk. Deferred writes reach the overlay only after their batch
//!   applied (`store::deferred`), so nothing of a failed group is ever pullable;
//! - the clock is read once per group: all of a group's entries carry the same time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::commands::{Command, Pending};
use super::{LedgerError, Writer, GROUP_LEN_MAX};
use crate::core::audit::Checkpoint;
use crate::core::consent::{ConsentKey, ConsentRecord};
use crate::core::identity::{AgencyId, CenterId};
use crate::core::message::MessageId;
use crate::core::time::Timestamp;
use crate::node::store::{DeliveryRecord, MessageRecord, WriteSet};

/// One group being built: its writes, and what its commands have written so far, so later
/// commands of the same group see it (the store does not, until the group is applied).
pub(super) struct Group {
    /// Everything the group writes, applied and made durable together.
    pub(super) writes: WriteSet,
    /// The group's time, read once from the ledger's clock.
    pub(super) now: OffsetDateTime,
    /// `now` as the group's records and audit entries carry it (RFC 3339).
    pub(super) at: String,
    /// Messages taken in this group: id -> (from, body_sha256, accepted_at).
    pub(super) messages: HashMap<MessageId, (String, String, Timestamp)>,
    /// Delivery records written in this group.
    pub(super) deliveries: HashMap<MessageId, DeliveryRecord>,
    /// Outbox lengths before this group, to restore if its commit fails.
    outbox_len_before: BTreeMap<CenterId, usize>,
    /// Inbox lengths before this group, likewise.
    inbox_len_before: HashMap<AgencyId, usize>,
    /// A command asked for a checkpoint.
    pub(super) checkpoint_requested: bool,
    /// The checkpoint this group writes, published once durable.
    pub(super) checkpoint: Option<Checkpoint>,
    /// Consents written in this group.
    pub(super) consents: HashMap<ConsentKey, ConsentRecord>,
    /// Records (without payload) of messages written in this group.
    pub(super) metas: HashMap<MessageId, MessageRecord>,
    /// Messages taken in this group, by the consent they cite (a withdrawal in the same
    /// group cannot find them through the index yet).
    pub(super) under_consent: HashMap<ConsentKey, Vec<MessageId>>,
    /// What the group counted (`stats`).
    pub(super) stats: super::stats::StatsDelta,
}

impl Group {
    fn new(
        now: OffsetDateTime,
        outbox_len: &BTreeMap<CenterId, usize>,
        inbox_len: &HashMap<AgencyId, usize>,
    ) -> Group {
        Group {
            writes: WriteSet::new(),
            now,
            at: crate::core::time::rfc3339(now),
            messages: HashMap::new(),
            deliveries: HashMap::new(),
            outbox_len_before: outbox_len.clone(),
            inbox_len_before: inbox_len.clone(),
            checkpoint_requested: false,
            checkpoint: None,
            consents: HashMap::new(),
            metas: HashMap::new(),
            under_consent: HashMap::new(),
            stats: Default::default(),
        }
    }
}

impl Writer {
    /// The thread's loop: one group per wake-up, until every handle is gone.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Box<dyn Command>>) {
        let mut commands = Vec::with_capacity(64);
        while let Some(first) = rx.blocking_recv() {
            commands.push(first);
            while commands.len() < GROUP_LEN_MAX {
                match rx.try_recv() {
                    Ok(cmd) => commands.push(cmd),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut commands);
        }
        // A clean stop leaves nothing for the next start to replay (a crash would, safely).
        if self.failed.get().is_none() {
            match self.store.fold_all() {
                Ok(n) => tracing::debug!(writes = n, "deferred writes folded into the store"),
                Err(e) => tracing::warn!(error = %e, "could not fold deferred writes at stop"),
            }
        }
        tracing::debug!("ledger stopped: every handle is gone");
    }

    fn commit_group(&mut self, commands: &mut Vec<Box<dyn Command>>) {
        if let Some(cause) = self.failed.get() {
            for cmd in commands.drain(..) {
                cmd.refuse(LedgerError::Halted(cause.clone()));
            }
            return;
        }
        let head_before = self.head.clone();
        let commands_len = commands.len();
        let mut group = Group::new(self.clock.now(), &self.outbox_len, &self.inbox_len);
        let pending: Vec<Pending> = commands
            .drain(..)
            .map(|cmd| cmd.apply(self, &mut group))
            .collect();
        // Every `every` entries, a signed checkpoint in the same write as the entries.
        if self.checkpoint_due() || group.checkpoint_requested {
            self.sign_checkpoint(&mut group);
        }
        group.stats.write(&mut group.writes);

        let Group {
            writes,
            checkpoint,
            outbox_len_before,
            inbox_len_before,
            stats,
            ..
        } = group;
        let outcome = if writes.is_empty() {
            Ok(())
        } else {
            match self.store.check_space() {
                Err(e) => Err((e, false)),
                Ok(()) => self
                    .store
                    .apply(writes)
                    .and_then(|()| {
                        let started = std::time::Instant::now();
                        let synced = self.store.sync();
                        self.metrics.committed(commands_len, started.elapsed());
                        synced
                    })
                    .map_err(|e| (e, true)),
            }
        };
        match outcome {
            Ok(()) => {
                // Publish before answering, so a sender that is told "accepted" and
                // immediately asks the recipient to pull finds the message visible.
                stats.publish(&self.stats);
                self.durable.send_replace(self.head.next_seq);
                self.metrics
                    .publish_depths(&self.inbox_len, &self.outbox_len);
                if checkpoint.is_some() {
                    self.checkpoint.send_replace(checkpoint);
                }
                for p in pending {
                    p.answer(Ok(()));
                }
            }
            Err((e, touched)) => {
                let cause = Arc::new(e);
                let failure = if touched {
                    // The store may hold part of the group, visible or not durable: from
                    // here on nothing may read it or build on it, so stop writing.
                    tracing::error!(error = %cause, "commit failed: the ledger stops writing until a restart");
                    let _ = self.failed.set(cause.clone());
                    LedgerError::Halted
                } else {
                    // Refused before the store saw any of it: as if it never ran.
                    tracing::warn!(error = %cause, "group refused: not enough disk space");
                    self.head = head_before;
                    self.outbox_len = outbox_len_before;
                    self.inbox_len = inbox_len_before;
                    LedgerError::StorageFull
                };
                for p in pending {
                    p.answer(Err(failure(cause.clone())));
                }
            }
        }
    }

    /// Message `id`'s delivery record, as written in this group or stored.
    pub(super) fn delivery(
        &self,
        g: &Group,
        id: &MessageId,
    ) -> Result<Option<DeliveryRecord>, LedgerError> {
        match g.deliveries.get(id) {
            Some(d) => Ok(Some(d.clone())),
            None => Ok(self.store.delivery(id)?),
        }
    }
}
