//! Pulls and acks, as the writer records them: a `leased` audit entry per message handed to
//! a pull (before the pull is answered), and an `acked` entry per message acknowledged. The
//! leases themselves (who holds a message until when) live in memory in `inbox`.
//!
//! Invariants enforced here:
//! - an ack is all or nothing: every id is checked (exists, addressed to the caller) before
//!   anything is written;
//! - a message acked or withheld since the inbox read it is not leased; one whose record
//!   went bad is skipped (logged), so one damaged record cannot block an inbox;
//! - a message whose consent has ended (expired, or withdrawn in a race with the pull) is
//!   not leased but withheld, in the same group: the check and the lease are on this
//!   thread at the group's time, so nothing is handed out after its consent ended (a
//!   consent that is missing or unreadable leases nothing and changes nothing);
//! - the actor of a lease or an ack is the recipient agency itself;
//! - an inbox entry leaves only through [`Writer::remove_inbox_entry`], which keeps the
//!   inbox's count (`inbox_max`);
//! - a message from another center that is first pulled, or acknowledged, has a pickup
//!   report for its origin queued in the same group (`pickups`).

use std::collections::BTreeSet;

use super::group::Group;
use super::{LeaseItem, LedgerError, Writer};
use crate::core::audit::{Action, Event};
use crate::core::identity::{AgencyId, Identity};
use crate::core::message::MessageId;
use crate::node::store::DeliveryState;

impl Writer {
    /// Takes the entry at `seq` out of `recipient`'s inbox, keeping the inbox's count.
    pub(super) fn remove_inbox_entry(&mut self, recipient: &AgencyId, seq: u64, g: &mut Group) {
        g.writes.remove_inbox(recipient, seq);
        if let Some(n) = self.inbox_len.get_mut(recipient) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.inbox_len.remove(recipient);
            }
        }
    }

    pub(super) fn lease(
        &mut self,
        recipient: &AgencyId,
        items: Vec<LeaseItem>,
        g: &mut Group,
    ) -> Result<Vec<MessageId>, LedgerError> {
        let actor = Identity::Agency(recipient.clone());
        let mut leased = Vec::with_capacity(items.len());
        for item in items {
            // A record that went bad since the inbox read it is skipped (and logged), not an
            // error for the whole pull: one damaged record must not block an inbox.
            let mut d = match self.delivery(g, &item.id) {
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
            let consent = self.store.consent_cited(
                &item.consent_id,
                item.consent_by.as_deref(),
                &item.from,
                recipient.as_str(),
            )?;
            match self.consent_ended(&consent, g)? {
                Ok(None) => {}
                Ok(Some(why)) => {
                    // This node withholds it: the recipient's center is this node's.
                    let node = Identity::Node(recipient.center().clone());
                    self.erase(&node, &item.id, &why, g)?;
                    continue;
                }
                Err(()) => continue,
            }
            d.state = DeliveryState::Pulled;
            d.lease_count = d.lease_count.saturating_add(1);
            if d.first_pulled_at.is_none() {
                d.first_pulled_at = Some(g.at.clone());
                let at = g.at.clone();
                self.count_first_pull(
                    g,
                    &item.message_type,
                    &item.from,
                    recipient.as_str(),
                    &item.accepted_at,
                    &at,
                );
                // From another center: its origin is to hear of it (`pickups`).
                self.queue_pickup(&item.id, &item.from, &item.digest, &d, g);
            }
            let entry = self.head.append(Event {
                at: g.at.clone(),
                actor: actor.uri(),
                action: Action::Leased,
                message_id: item.id.public().to_owned(),
                from: item.from,
                to: recipient.to_string(),
                subject: item.subject,
                consent_id: item.consent_id,
                consent_by: item.consent_by,
                detail: None,
            });
            g.writes.put_delivery(&item.id, &d);
            g.writes.put_audit(&entry);
            g.deliveries.insert(item.id.clone(), d);
            leased.push(item.id);
        }
        Ok(leased)
    }

    pub(super) fn ack(
        &mut self,
        recipient: &AgencyId,
        ids: Vec<MessageId>,
        g: &mut Group,
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
                .message_by_key_or_legacy(&id)?
                .ok_or_else(|| LedgerError::NoSuchMessage(id.clone()))?;
            // Another agency's message gets the same answer as no message at all: an ack
            // must not tell whether an id exists in someone else's inbox.
            if message.to != recipient.as_str() {
                return Err(LedgerError::NoSuchMessage(id));
            }
            // The key it is stored under (a message from before ids were scoped named by
            // `<from>/<id>` is stored under the bare id).
            let id = MessageId::from_key(&message.id).unwrap_or(id);
            let delivery = self
                .delivery(g, &id)?
                .ok_or_else(|| LedgerError::NoSuchMessage(id.clone()))?;
            todo.push((id, message, delivery));
        }
        let actor = Identity::Agency(recipient.clone());
        let mut acked = Vec::with_capacity(todo.len());
        for (id, message, mut d) in todo {
            // A withheld message was never pulled: there is nothing to acknowledge.
            if !matches!(d.state, DeliveryState::Acked | DeliveryState::Withheld) {
                d.state = DeliveryState::Acked;
                d.acked_at = Some(g.at.clone());
                // From another center: its origin is to hear of it (`pickups`).
                self.queue_pickup(&id, &message.from, &message.body_sha256, &d, g);
                let entry = self.head.append(Event {
                    at: g.at.clone(),
                    actor: actor.uri(),
                    action: Action::Acked,
                    message_id: id.public().to_owned(),
                    from: message.from,
                    to: message.to,
                    subject: message.subject,
                    consent_id: message.consent_id,
                    consent_by: message.consent_by,
                    detail: None,
                });
                self.remove_inbox_entry(recipient, d.seq, g);
                g.writes.put_delivery(&id, &d);
                g.writes.put_audit(&entry);
                g.deliveries.insert(id.clone(), d);
            }
            acked.push(id);
        }
        Ok(acked)
    }
}
