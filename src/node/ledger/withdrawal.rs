//! The end of a consent's reach: its withdrawal, the erasure and withholding of what was
//! taken under it, the notices that tell the other centers, the reports of messages a peer
//! withheld, and the purge of payloads at the end of their retention period (with the timer
//! that asks for it, [`purge_every`]).
//!
//! Invariants enforced here:
//! - a withdrawal is one atomic write with its effects: the consent's new status, for every
//!   message under it (index `g`) the payload erased and, if not pulled yet, its inbox or
//!   outbox entry removed (`withheld`), and a notice (`n`) per other center it names;
//! - after an erasure no inbox or outbox entry points at the message, so nothing can lease
//!   or forward it; the record (who sent what to whom under which consent) stays;
//! - a message taken over from another center and withheld here is reported (`w`) to its
//!   origin center;
//! - a purge erases only what the retention queue (`e`) says has ended by the group's time,
//!   at most [`PURGE_BATCH`] per command.

use std::collections::BTreeSet;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::group::Group;
use super::{Ledger, LedgerError, Parties, Writer};
use crate::core::audit::{bound_detail, Action};
use crate::core::consent::{ConsentKey, ConsentRecord, ConsentStatus, StatusChange};
use crate::core::identity::{AgencyId, CenterId, Identity};
use crate::core::message::MessageId;
use crate::core::wire::WithheldReport;
use crate::node::store::{DeliveryState, Erasure, MessageRecord, StoreError};

/// Most payloads one purge command erases (one commit stays small).
pub const PURGE_BATCH: usize = 1000;

/// Erases the payloads whose retention period has ended, at once and then every `every` on
/// the ledger's clock, until `closing` turns true. `node`: this node, the actor.
pub async fn purge_every(
    ledger: Ledger,
    node: Identity,
    every: Duration,
    mut closing: watch::Receiver<bool>,
) {
    loop {
        loop {
            match ledger.purge(node.clone()).await {
                Ok(n) if n >= PURGE_BATCH => continue,
                Ok(0) => break,
                Ok(n) => {
                    tracing::info!(
                        payloads = n,
                        "purged payloads at the end of their retention"
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge expired payloads");
                    break;
                }
            }
        }
        tokio::select! {
            _ = ledger.clock().sleep(every) => {}
            _ = closing.changed() => break,
        }
    }
}

impl Writer {
    pub(super) fn withdraw_consent(
        &mut self,
        id: &str,
        caller: &AgencyId,
        change: StatusChange,
        g: &mut Group,
    ) -> Result<ConsentRecord, LedgerError> {
        // Only the collector withdraws, so only the caller's own consents are looked at:
        // another agency's consent with this id is, for the caller, no consent at all, and
        // the answer cannot tell whether one exists.
        let mut c = self
            .consent(g, &ConsentKey::new(caller.as_str(), id))?
            .ok_or_else(|| LedgerError::NoSuchConsent(id.to_owned()))?;
        if c.status == ConsentStatus::Withdrawn {
            return Ok(c);
        }
        let actor = Identity::Agency(caller.clone());
        // Who and when are the node's record, never the request's (see `StatusChange`).
        let change = StatusChange {
            at: g.at.clone(),
            by: caller.to_string(),
            ..change
        };
        c.status = ConsentStatus::Withdrawn;
        let detail = change.reason.clone();
        let reason = format!("consent {id} withdrawn at {}", change.at);
        c.history.push(change);
        let at = g.at.clone();
        let entry = self.consent_event(&actor, Action::ConsentWithdrawn, &c, &at, detail);
        self.count_withdrawal(g);
        self.put_consent(&c, g);
        g.writes.put_audit(&entry);
        // In the same write: nothing under it is pulled or forwarded from here on, and the
        // other centers it names are told.
        self.withhold_under(&actor, &c, &reason, g)?;
        self.notify(&c, g);
        Ok(c)
    }

    /// Erases the payload of every message held under `consent`, and withholds those not
    /// yet pulled (out of their inbox or outbox). `reason` goes into each record and audit
    /// entry.
    ///
    /// The messages are found through the audit index by subject (the consent's): every
    /// message this node took has an `accepted` or `received` entry naming its subject and
    /// consent. No index by consent is kept, since it would cost a key per message for an
    /// event as rare as a withdrawal.
    pub(super) fn withhold_under(
        &mut self,
        actor: &Identity,
        consent: &ConsentRecord,
        reason: &str,
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        let mut held: Vec<MessageId> = Vec::new();
        for entry in self.store.audit_for_subject(&consent.subject) {
            let entry = entry?;
            // An entry naming no collector is from before consents were scoped, when an id
            // was one consent per node: the id alone says it.
            if entry.consent_id == consent.id
                && entry
                    .consent_by
                    .as_ref()
                    .is_none_or(|by| *by == consent.collected_by)
                && matches!(entry.action, Action::Accepted | Action::Received)
            {
                // The entry names the message by sender and id; its key is the record's.
                match self.store.message_named(&entry.from, &entry.message_id) {
                    Ok(Some(m)) => held.extend(MessageId::from_key(&m.id)),
                    Ok(None) => {}
                    Err(e @ StoreError::Corrupt { .. }) => {
                        tracing::error!(message_id = %entry.message_id, error = %e,
                            "damaged record not erased");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if let Some(here) = g.under_consent.get(&consent.key()) {
            held.extend(here.iter().cloned());
        }
        let mut n = 0;
        for id in held {
            n += usize::from(self.erase(actor, &id, reason, g)?);
        }
        Ok(n)
    }

    /// Erases message `id`'s payload (keeping its record) and, if the recipient has not
    /// pulled it yet, withholds it: out of its inbox or outbox, state `withheld`. One audit
    /// entry: `withheld` or `purged`. False if there was nothing to erase.
    ///
    /// Invariant: after this, no inbox or outbox entry points at the message, so nothing
    /// can lease or forward it (`lease` also skips `withheld`, for a read that raced).
    pub(super) fn erase(
        &mut self,
        actor: &Identity,
        id: &MessageId,
        reason: &str,
        g: &mut Group,
    ) -> Result<bool, LedgerError> {
        let record = match g.metas.get(id) {
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
        let erasure = Erasure {
            at: g.at.clone(),
            reason: bound_detail(reason.to_owned()),
        };
        let erased = MessageRecord {
            payload: None,
            sealed: None,
            erased: Some(erasure.clone()),
            ..record
        };
        g.writes.replace_message(erased.encode());
        let mut action = Action::Purged;
        if let Some(mut d) = self.delivery(g, id)? {
            let held = match (&d.peer, d.state) {
                (None, DeliveryState::Accepted) => {
                    if let Ok(to) = AgencyId::parse(&erased.to) {
                        self.remove_inbox_entry(&to, d.seq, g);
                    }
                    true
                }
                // Pulled already: disclosed, so not withheld; but with its payload gone it
                // cannot be pulled again, and an ack still closes it.
                (None, DeliveryState::Pulled) => {
                    if let Ok(to) = AgencyId::parse(&erased.to) {
                        self.remove_inbox_entry(&to, d.seq, g);
                    }
                    false
                }
                (Some(peer), state) if state.in_outbox() => {
                    self.remove_outbox_entry(peer, d.seq, g);
                    true
                }
                _ => false,
            };
            // The last forwarding error (a dead-letter reason, a peer's refusal) is free
            // text from outside this node: it goes with the payload it was about, so that
            // nothing stored about the message outlives what the consent allows.
            let cleared = d.last_error.take().is_some();
            if cleared && !held {
                g.writes.put_delivery(id, &d);
                g.deliveries.insert(id.clone(), d.clone());
            }
            if held {
                // Taken over from another center: that node's sender is to hear of it.
                let origin = AgencyId::parse(&erased.from)
                    .ok()
                    .map(|a| a.center().clone())
                    .filter(|c| self.federated_as.as_ref().is_some_and(|me| me != c));
                if let (Some(origin), None) = (origin, &d.peer) {
                    g.writes.put_withheld_report(&origin, id, &erasure);
                }
                d.state = DeliveryState::Withheld;
                d.withheld = Some(erasure);
                g.writes.put_delivery(id, &d);
                g.deliveries.insert(id.clone(), d);
                action = Action::Withheld;
            }
        }
        let entry = self.head.append(super::message_event(
            actor,
            action,
            id,
            Parties::of(&erased),
            &g.at,
            Some(reason.to_owned()),
        ));
        g.writes.put_audit(&entry);
        g.metas.insert(id.clone(), erased);
        Ok(true)
    }

    /// Withholds the messages a forwarder found under a consent that has ended, before
    /// sending them: each is checked again here, at the group's time, and withheld (out of
    /// its outbox, payload erased, state `withheld`) only if its consent has indeed ended.
    /// The ids withheld.
    pub(super) fn withhold_ended(
        &mut self,
        actor: &Identity,
        ids: Vec<MessageId>,
        g: &mut Group,
    ) -> Result<Vec<MessageId>, LedgerError> {
        let mut held = Vec::new();
        for id in ids {
            let consent = match g.metas.get(&id) {
                Some(r) => self.store.consent_of(r)?,
                None => match self.store.message(&id)? {
                    Some(r) => self.store.consent_of(&r)?,
                    None => continue,
                },
            };
            if let Ok(Some(why)) = self.consent_ended(&consent, g)? {
                if self.erase(actor, &id, &why, g)? {
                    held.push(id);
                }
            }
        }
        Ok(held)
    }

    /// Queues a notice of consent `c`'s current state for every other center it names
    /// (its collector's and its recipients'), for their forwarders to carry.
    fn notify(&self, c: &ConsentRecord, g: &mut Group) {
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
            g.writes.put_notice(&center, &c.key());
        }
    }

    /// `peer` reports that it withheld messages this node handed over to it: each one this
    /// node delivered to that peer becomes `withheld` here too, with the peer's reason.
    pub(super) fn withheld_at_peer(
        &mut self,
        actor: &Identity,
        peer: &CenterId,
        reports: Vec<WithheldReport>,
        g: &mut Group,
    ) -> Result<(), LedgerError> {
        for report in reports {
            // The peer names the message by its key there, which is this node's key for it
            // unless one of the two took it before ids were scoped (then one key is the
            // bare id: the record found says which this node uses).
            let Some(named) = MessageId::from_key(&report.id) else {
                continue;
            };
            let (id, parties) = match self.store.message_by_key_or_legacy(&named) {
                Ok(Some(m)) => match MessageId::from_key(&m.id) {
                    Some(id) => (id, Parties::of(&m)),
                    None => continue,
                },
                Ok(None) => continue,
                Err(_) => (named, Parties::unknown()),
            };
            let Some(mut d) = self.delivery(g, &id)? else {
                continue;
            };
            if d.peer.as_ref() != Some(peer) || d.state != DeliveryState::Delivered {
                continue;
            }
            let reason = format!("withheld at center {peer}: {}", report.reason);
            d.state = DeliveryState::Withheld;
            d.withheld = Some(Erasure {
                at: report.at,
                reason: reason.clone(),
            });
            let entry = self.head.append(super::message_event(
                actor,
                Action::Withheld,
                &id,
                parties,
                &g.at,
                Some(reason),
            ));
            g.writes.put_delivery(&id, &d);
            g.writes.put_audit(&entry);
            g.deliveries.insert(id, d);
        }
        Ok(())
    }

    /// `peer` took the consents in `told` (id, status sent): their notices are done,
    /// unless the consent changed again since (then the notice stays for the next batch).
    /// The withheld reports it was sent (`reported`) are done too.
    pub(super) fn notices_told(
        &mut self,
        peer: &CenterId,
        told: Vec<(ConsentKey, ConsentStatus)>,
        reported: &[MessageId],
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        for id in reported {
            g.writes.remove_withheld_report(peer, id);
        }
        let mut n = 0;
        for (key, status) in told {
            if self.consent(g, &key)?.is_some_and(|c| c.status == status) {
                g.writes.remove_notice(peer, &key);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Erases the payloads whose consent's retention period has ended by the group's time
    /// (at most [`PURGE_BATCH`] per call; the caller calls again while it returns that
    /// many).
    pub(super) fn purge(&mut self, actor: &Identity, g: &mut Group) -> Result<usize, LedgerError> {
        let due: Vec<(u64, u64, MessageId)> = self
            .store
            .retention_due(g.now.unix_timestamp().max(0) as u64)
            .take(PURGE_BATCH)
            .collect::<Result<_, _>>()?;
        let n = due.len();
        for (end, seq, id) in due {
            let consent = g
                .metas
                .get(&id)
                .map(|m| m.consent_id.clone())
                .or_else(|| self.store.message(&id).ok().flatten().map(|m| m.consent_id))
                .unwrap_or_default();
            let ended = OffsetDateTime::from_unix_timestamp(end as i64)
                .map(crate::core::time::rfc3339)
                .unwrap_or_default();
            let reason = format!("the retention period of consent {consent} ended at {ended}");
            self.erase(actor, &id, &reason, g)?;
            g.writes.remove_retention(end, seq);
        }
        Ok(n)
    }
}
