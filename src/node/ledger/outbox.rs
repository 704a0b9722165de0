//! Leaving the outbox: a message for another center waits in its outbox (`o`) until the
//! forwarder records a verified receipt (`delivered`), a permanent refusal or expiry
//! (`dead_letter`), or an operator drops it; failed attempts are counted
//! (`attempt_failed`); an operator may put a dead-lettered message back (`requeue`), and
//! a peer restored from a backup what was delivered to it since (`resend`).
//!
//! Invariants enforced here:
//! - a message leaves its outbox only through [`Writer::leave_outbox`]: its outbox entry
//!   removed, its outbox count kept, its new delivery record and one audit entry, in one
//!   write; a receipt is stored in the same write that marks the message delivered;
//! - a message with a damaged record can still leave (dead-lettered), so it cannot block
//!   its outbox;
//! - a requeue respects `outbox_max`, and nothing whose payload was erased is requeued.

use super::group::Group;
use super::{message_event, state_name, LedgerError, Parties, Writer};
use crate::core::audit::{bound_detail, Action, Event};
use crate::core::consent::ConsentKey;
use crate::core::identity::{CenterId, Identity};
use crate::core::message::MessageId;
use crate::core::wire::Receipt;
use crate::node::store::{DeliveryRecord, DeliveryState, StoreError};

impl Writer {
    /// Takes the entry at `seq` out of the outbox to `peer`, keeping the outbox's count.
    pub(super) fn remove_outbox_entry(&mut self, peer: &CenterId, seq: u64, g: &mut Group) {
        g.writes.remove_outbox(peer, seq);
        if let Some(n) = self.outbox_len.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
    }

    /// Takes `id` out of the outbox to `peer` (or any outbox when `peer` is `None`), writing
    /// the new delivery record (`change` applied) and an audit entry. False if it is not in
    /// an outbox.
    #[allow(clippy::too_many_arguments)]
    fn leave_outbox(
        &mut self,
        id: &MessageId,
        peer: Option<&CenterId>,
        actor: &Identity,
        action: Action,
        detail: String,
        parties: Option<Parties>,
        g: &mut Group,
        change: impl FnOnce(&mut DeliveryRecord),
    ) -> Result<bool, LedgerError> {
        let Some(mut d) = self.delivery(g, id)? else {
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
        self.remove_outbox_entry(&current_peer, d.seq, g);
        change(&mut d);
        let entry = self.head.append(message_event(
            actor,
            action,
            id,
            parties,
            &g.at,
            Some(detail),
        ));
        g.writes.put_delivery(id, &d);
        g.writes.put_audit(&entry);
        g.deliveries.insert(id.clone(), d);
        Ok(true)
    }

    /// Receipts from `peer` (its node the actor): each message they name leaves the outbox
    /// to `peer` as delivered, its receipt kept.
    pub(super) fn delivered(
        &mut self,
        peer: &CenterId,
        receipts: Vec<(MessageId, Receipt, Parties)>,
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        let actor = Identity::Node(peer.clone());
        let mut n = 0;
        // Each receipt with the key of the message it is for (the receipt names the id as
        // sent, unscoped).
        for (id, receipt, parties) in receipts {
            let detail = format!("receipt {}", receipt.signature);
            let at = receipt.received_at.clone();
            let left = self.leave_outbox(
                &id,
                Some(peer),
                &actor,
                Action::Delivered,
                detail,
                Some(parties),
                g,
                |d| {
                    d.state = DeliveryState::Delivered;
                    d.delivered_at = Some(at);
                    d.last_error = None;
                },
            )?;
            if left {
                g.writes.put_receipt(&id, &receipt);
                n += 1;
            }
        }
        Ok(n)
    }

    pub(super) fn attempt_failed(
        &mut self,
        peer: &CenterId,
        ids: Vec<MessageId>,
        error: &str,
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        let mut n = 0;
        for id in ids {
            let Some(mut d) = self.delivery(g, &id)? else {
                continue;
            };
            if !d.state.in_outbox() || d.peer.as_ref() != Some(peer) {
                continue;
            }
            d.state = DeliveryState::Forwarded;
            d.failed_attempts = d.failed_attempts.saturating_add(1);
            d.last_error = Some(bound_detail(error.to_owned()));
            g.writes.put_delivery(&id, &d);
            g.deliveries.insert(id, d);
            n += 1;
        }
        Ok(n)
    }

    pub(super) fn dead_letter(
        &mut self,
        actor: &Identity,
        items: Vec<(MessageId, String)>,
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        let mut n = 0;
        for (id, reason) in items {
            let reason = bound_detail(reason);
            let why = reason.clone();
            let left = self.leave_outbox(
                &id,
                None,
                actor,
                Action::DeadLettered,
                reason,
                None,
                g,
                |d| {
                    d.state = DeliveryState::DeadLettered;
                    d.last_error = Some(why);
                },
            )?;
            if left {
                g.writes.put_dead_letter(&id);
                if let Some(peer) = g.deliveries.get(&id).and_then(|d| d.peer.as_ref()) {
                    self.metrics.dead_lettered(peer);
                }
                n += 1;
            }
        }
        Ok(n)
    }

    pub(super) fn requeue(
        &mut self,
        actor: &Identity,
        id: &MessageId,
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        let d = self
            .delivery(g, id)?
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
        let detail = d.last_error.clone();
        self.put_back(actor, id, d, peer, detail, g)?;
        Ok(1)
    }

    /// Puts message `id` (delivery record `d`) back at the end of the outbox to `peer`,
    /// with a `requeued` audit entry by `actor`: sent again, its time to live counted from
    /// now. Refused for a message whose payload was erased.
    fn put_back(
        &mut self,
        actor: &Identity,
        id: &MessageId,
        mut d: DeliveryRecord,
        peer: CenterId,
        detail: Option<String>,
        g: &mut Group,
    ) -> Result<(), LedgerError> {
        let message = match g.metas.get(id) {
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
            at: g.at.clone(),
            actor: actor.uri(),
            action: Action::Requeued,
            message_id: id.public().to_owned(),
            from: message.from,
            to: message.to,
            subject: message.subject,
            consent_id: message.consent_id,
            consent_by: message.consent_by,
            detail,
        });
        // A new position at the end of the outbox: the message goes after everything
        // accepted meanwhile (an operator's retry does not keep the original order).
        d.seq = entry.seq;
        d.requeued_at = Some(g.at.clone());
        d.state = DeliveryState::Accepted;
        d.failed_attempts = 0;
        d.last_error = None;
        g.writes.put_outbox(&peer, entry.seq, id);
        g.writes.remove_dead_letter(id);
        *self.outbox_len.entry(peer).or_insert(0) += 1;
        g.writes.put_delivery(id, &d);
        g.writes.put_audit(&entry);
        g.deliveries.insert(id.clone(), d);
        Ok(())
    }

    /// `peer` was restored from a backup taken at `taken_at` and asks for what this node
    /// delivered to it since: each of `ids` still delivered to `peer` goes back into its
    /// outbox (audit `requeued`, actor: that node; no `outbox_max`: these were accepted
    /// long ago), and each of `consents` gets a notice for its forwarder to carry. Returns
    /// (messages, consents) queued. Messages erased since are left: nothing is left to send.
    pub(super) fn resend(
        &mut self,
        peer: &CenterId,
        ids: Vec<MessageId>,
        consents: Vec<ConsentKey>,
        taken_at: &str,
        g: &mut Group,
    ) -> Result<(u64, u64), LedgerError> {
        let actor = Identity::Node(peer.clone());
        let detail = bound_detail(format!(
            "sent again: center {peer} was restored from a backup taken at {taken_at}"
        ));
        let mut messages = 0;
        for id in ids {
            let Some(d) = self.delivery(g, &id)? else {
                continue;
            };
            if d.state != DeliveryState::Delivered || d.peer.as_ref() != Some(peer) {
                continue;
            }
            match self.put_back(&actor, &id, d, peer.clone(), Some(detail.clone()), g) {
                Ok(()) => messages += 1,
                Err(LedgerError::WrongState { .. } | LedgerError::NoSuchMessage(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for key in &consents {
            g.writes.put_notice(peer, key);
        }
        Ok((messages, consents.len() as u64))
    }

    /// `peer` answered this node's request to send again what it delivered since the
    /// backup taken at `taken_at` (see `store::resend`).
    pub(super) fn resend_told(&mut self, peer: &CenterId, taken_at: &str, g: &mut Group) {
        g.writes.put_resend_told(peer, taken_at);
    }
}
