//! Pickup reports, at both ends of a hand-over. At the recipient's node: when an agency here
//! first pulls, or acknowledges, a message another center handed over, a report is queued
//! (`q`) for that origin center in the same group as the lease or the ack, and dropped once
//! the origin answered it. At the origin: each report a peer sends, signed and checked, is
//! applied to the delivery record of the message this node handed to that peer
//! ([`Writer::apply_pickup`]), so its sender sees when the recipient pulled and
//! acknowledged it.
//!
//! ```text
//!  origin A                                          recipient's node B
//!  outbox ─ batch ─────────────────────────────────▶ inbox ─ lease / ack (+ q/A/<msg>)
//!  delivered (receipt)                                  │
//!  apply_pickup ◀─ checked: signature (api), B's ── batch B→A carries signed reports
//!                  receipt for exactly that message     │
//!  answer: taken / refused ────────────────────────▶ pickups_told: q entry dropped
//! ```
//!
//! Invariants enforced here:
//! - one queue entry per (origin, message): an acknowledgement after a pull replaces the
//!   pull's entry, and an entry the origin answered is dropped only if no acknowledgement
//!   came since the report was read (that one is still to be told);
//! - a report changes the origin's record only if it is signed by the node it came from
//!   (checked before the writer, [`super::Ledger::picked_up`]) and this node holds that
//!   node's receipt for exactly that message (same key, same digest); otherwise it is
//!   refused and changes nothing, and a peer learns nothing of messages that went
//!   elsewhere (an unknown message and another center's are one refusal);
//! - a report only fills in what is not yet known (`first_pulled_at`, `acked_at`, each set
//!   once), and an acknowledgement implies a pull: a report always carries both the pull's
//!   time and, once acknowledged, the acknowledgement's;
//! - each report that changes a record is one `pickup-reported` audit entry (actor: the
//!   reporting node; detail: what it reported, with its signature), in the same write.

use super::group::Group;
use super::{LedgerError, Parties, Writer};
use crate::core::audit::Action;
use crate::core::identity::{AgencyId, CenterId, Identity};
use crate::core::message::MessageId;
use crate::core::wire::{PickupError, PickupReport};
use crate::node::store::{DeliveryRecord, DeliveryState, Pickup, StoreError};

/// What became of one pickup report a peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickupOutcome {
    /// Taken: the message's delivery record says what was reported (now or before).
    Taken,
    /// Never taken: the reporting node drops it (the reason goes back to it).
    Refused(PickupRefusal),
    /// Not now: the message is still on its way to the reporting node as this node knows
    /// it (its receipt is not recorded yet). Left out of the answer, so it comes again.
    Later,
}

/// Why a pickup report is refused for good. The reporting node is at fault, or the two
/// nodes' records disagree; sending it again never helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickupRefusal {
    /// Not signed by the node it came from, or not its own (see [`PickupError`]).
    #[error(transparent)]
    Unsigned(#[from] PickupError),
    /// This node holds no receipt of the reporting node for such a message: it sent no
    /// such message, or sent it elsewhere, or it never arrived there (dead-lettered here).
    /// One refusal for all, so a peer learns nothing of messages that went elsewhere.
    #[error("this node delivered no message {id} to center {peer}")]
    NotDelivered {
        /// The message key the report named.
        id: String,
        /// The reporting node.
        peer: CenterId,
    },
    /// The report is about other content than the receipt this node holds.
    #[error(
        "digest {reported} differs from the one center {peer}'s receipt names for message {id}"
    )]
    OtherDigest {
        /// The message.
        id: MessageId,
        /// The reporting node.
        peer: CenterId,
        /// The digest the report names.
        reported: String,
    },
    /// The message's record here does not read (logged; an operator's matter).
    #[error("the record of message {id} is damaged at this node")]
    Damaged {
        /// The message.
        id: MessageId,
    },
}

/// The message a report names, as delivered to the reporting node: what applying it needs.
struct Delivered {
    id: MessageId,
    delivery: DeliveryRecord,
    parties: Parties,
    /// Its type and when this node took it, for the statistics' time to first pull.
    message_type: String,
    accepted_at: String,
}

/// Where a report leads in this node's records.
enum Found {
    /// The report may be applied (boxed: a report that leads nowhere is small).
    Here(Box<Delivered>),
    /// The report is refused or comes later.
    Not(PickupOutcome),
}

impl Writer {
    /// Queues, for the center message `id` came from (its sender's, when that is another
    /// center's), a report of what its delivery record `d` now says: first pulled, and
    /// perhaps acknowledged. Called where a lease first sets `first_pulled_at` and where an
    /// ack sets `acked_at`, in the same group.
    pub(super) fn queue_pickup(
        &self,
        id: &MessageId,
        from: &str,
        digest: &str,
        d: &DeliveryRecord,
        g: &mut Group,
    ) {
        let Some(me) = &self.federated_as else {
            return;
        };
        let Some(origin) = AgencyId::parse(from).ok().map(|a| a.center().clone()) else {
            return;
        };
        if &origin == me {
            return;
        }
        // An acknowledgement without a pull is the recipient's first contact with it.
        let first = d.first_pulled_at.as_ref().or(d.acked_at.as_ref());
        let Some(first_pulled_at) = first.cloned() else {
            return;
        };
        let pickup = Pickup {
            digest: digest.to_owned(),
            first_pulled_at,
            acked_at: d.acked_at.clone(),
        };
        g.writes.put_pickup_report(&origin, id, &pickup);
    }

    /// `origin` answered the reports in `done` (each with the acknowledgement time it
    /// carried): they leave the queue, except those whose message was acknowledged since
    /// the report was read (their entry now says so, and is still to be told).
    pub(super) fn pickups_told(
        &mut self,
        origin: &CenterId,
        done: Vec<(MessageId, Option<String>)>,
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        let mut n = 0;
        for (id, acked_at) in done {
            let acked_since = match self.delivery(g, &id) {
                Ok(d) => d.is_some_and(|d| d.acked_at.is_some() && d.acked_at != acked_at),
                // Answered all the same; a record gone bad is the store's matter, and must
                // not keep a report (and every round after it) waiting.
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e,
                        "delivery record unreadable; its pickup report is taken as told");
                    false
                }
            };
            if !acked_since {
                g.writes.remove_pickup_report(origin, &id);
                n += 1;
            }
        }
        Ok(n)
    }

    /// `peer` reports pickups of messages this node handed over to it, each with the
    /// outcome of its signature check (made before the writer): each is checked against
    /// this node's records and applied, or refused, or left for later; one outcome each,
    /// in order.
    pub(super) fn picked_up_at_peer(
        &mut self,
        peer: &CenterId,
        reports: Vec<(PickupReport, Result<(), PickupError>)>,
        g: &mut Group,
    ) -> Result<Vec<PickupOutcome>, LedgerError> {
        let actor = Identity::Node(peer.clone());
        let mut outcomes = Vec::with_capacity(reports.len());
        for (report, signed) in reports {
            if let Err(e) = signed {
                outcomes.push(PickupOutcome::Refused(e.into()));
                continue;
            }
            match self.find_delivered(peer, &report, g)? {
                Found::Here(m) => {
                    let Delivered {
                        id,
                        delivery,
                        parties,
                        message_type,
                        accepted_at,
                    } = *m;
                    if delivery.first_pulled_at.is_none() {
                        // The statistics' time to first pull, across centers.
                        self.count_first_pull(
                            g,
                            &message_type,
                            &parties.from,
                            &parties.to,
                            &accepted_at,
                            &report.first_pulled_at,
                        );
                    }
                    self.apply_pickup(&actor, &id, delivery, parties, &report, g);
                    outcomes.push(PickupOutcome::Taken);
                }
                Found::Not(outcome) => outcomes.push(outcome),
            }
        }
        Ok(outcomes)
    }

    /// The message `report` names, if this node handed exactly it to `peer`: it holds
    /// `peer`'s receipt for it, for the report's digest.
    fn find_delivered(
        &self,
        peer: &CenterId,
        report: &PickupReport,
        g: &Group,
    ) -> Result<Found, LedgerError> {
        let not_delivered = || {
            Found::Not(PickupOutcome::Refused(PickupRefusal::NotDelivered {
                id: report.message_id.chars().take(200).collect(),
                peer: peer.clone(),
            }))
        };
        let Some(named) = MessageId::from_key(&report.message_id) else {
            return Ok(not_delivered());
        };
        // The peer names it by its key there, which is this node's key for it unless one
        // of the two took it before ids were scoped (see `withheld_at_peer`).
        let record = match self.store.message_by_key_or_legacy(&named) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(not_delivered()),
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(message_id = %named, %peer, error = %e,
                    "damaged record: pickup report not applied");
                return Ok(Found::Not(PickupOutcome::Refused(PickupRefusal::Damaged {
                    id: named,
                })));
            }
            Err(e) => return Err(e.into()),
        };
        let Some(id) = MessageId::from_key(&record.id) else {
            return Ok(not_delivered());
        };
        let Some(d) = self.delivery(g, &id)? else {
            return Ok(not_delivered());
        };
        if d.peer.as_ref() != Some(peer) {
            return Ok(not_delivered());
        }
        let Some(receipt) = self.store.receipt(&id)? else {
            // Still in the outbox to that peer, or delivered in this very group (its receipt
            // not readable yet): the peer took it, but this node has not recorded that yet.
            let on_its_way = d.state.in_outbox() || d.state == DeliveryState::Delivered;
            return Ok(if on_its_way {
                Found::Not(PickupOutcome::Later)
            } else {
                not_delivered()
            });
        };
        if &receipt.node != peer {
            return Ok(not_delivered());
        }
        if receipt.digest != report.digest {
            return Ok(Found::Not(PickupOutcome::Refused(
                PickupRefusal::OtherDigest {
                    id,
                    peer: peer.clone(),
                    reported: report.digest.chars().take(64).collect(),
                },
            )));
        }
        Ok(Found::Here(Box::new(Delivered {
            id,
            delivery: d,
            parties: Parties::of(&record),
            message_type: record.message_type.clone(),
            accepted_at: record.accepted_at.clone(),
        })))
    }

    /// Applies a taken report of `actor` (the recipient's node) to message `id`'s delivery
    /// record `d`: the first pull and the acknowledgement, each if not known yet, with one
    /// `pickup-reported` audit entry when anything changed. The delivery state stays
    /// `delivered` (the receipt is what it shows). True if anything changed.
    pub(super) fn apply_pickup(
        &mut self,
        actor: &Identity,
        id: &MessageId,
        mut d: DeliveryRecord,
        parties: Parties,
        report: &PickupReport,
        g: &mut Group,
    ) -> bool {
        let mut changed = false;
        if d.first_pulled_at.is_none() {
            // Counted in the statistics by the caller (`picked_up_at_peer`).
            d.first_pulled_at = Some(report.first_pulled_at.clone());
            changed = true;
        }
        if let (None, Some(acked_at)) = (&d.acked_at, &report.acked_at) {
            d.acked_at = Some(acked_at.clone());
            changed = true;
        }
        if !changed {
            return false;
        }
        // What the peer signed, so the entry alone proves what it reported (with the
        // receipt's digest and the entry's message and actor).
        let acked = report
            .acked_at
            .as_deref()
            .map(|at| format!(", acknowledged at {at}"))
            .unwrap_or_default();
        let detail = format!(
            "first pulled at {}{acked}; signature {}",
            report.first_pulled_at, report.signature
        );
        let entry = self.head.append(super::message_event(
            actor,
            Action::PickupReported,
            id,
            parties,
            &g.at,
            Some(detail),
        ));
        g.writes.put_delivery(id, &d);
        g.writes.put_audit(&entry);
        g.deliveries.insert(id.clone(), d);
        true
    }
}

#[cfg(test)]
mod tests;
