//! The pickup reports a forwarder carries to its peer: the reports queued for that center
//! (`q`: its agencies' messages pulled or acknowledged here), signed as this node when a
//! batch is built, at most [`PICKUPS_MAX`] (and `batch_max`) per batch; and what the
//! peer's answer says of them.
//!
//! A peer that predates reports refuses a batch carrying them whole (`Batch` denies unknown
//! members: 400). The forwarder then sends the same batch again without them, and carries
//! none to that peer for [`ASK_AGAIN`]: its messages, consents and withheld reports go on
//! as before, and the reports wait in the queue (durably) until the peer takes them.

use std::time::Duration;

use crate::core::identity::CenterId;
use crate::core::message::MessageId;
use crate::core::wire::{PickupReport, PickupResult, PICKUPS_MAX};

use super::backoff::{jitter, Backoff};
use super::Forwarding;

/// How long a peer that refused a batch for carrying pickup reports gets none, before the
/// next batch tries again (it may have been upgraded meanwhile). One batch an hour sent
/// twice is the whole cost.
pub(super) const ASK_AGAIN: Duration = Duration::from_secs(3600);

/// What a forwarder knows of its peer and pickup reports, between rounds.
pub(super) struct State {
    /// When the peer last refused a batch for carrying reports (tokio's clock).
    refused_at: Option<tokio::time::Instant>,
    /// The delay before reports the peer left unanswered (it has not recorded its receipt
    /// yet) are sent again when there is nothing else to send; grows while they stay
    /// unanswered.
    later: Backoff,
    /// Set when the last answer left some unanswered: how long to wait before sending them
    /// again.
    waiting: Option<Duration>,
}

impl State {
    /// A peer not yet heard from: it is sent reports.
    pub(super) fn new(ctx: &Forwarding) -> State {
        State {
            refused_at: None,
            later: Backoff::new(ctx.options.retry_initial, ctx.options.retry_max),
            waiting: None,
        }
    }

    /// Whether the next batch carries reports.
    pub(super) fn carries(&self) -> bool {
        self.refused_at.is_none_or(|at| at.elapsed() >= ASK_AGAIN)
    }

    /// The peer took the batch only without its reports.
    pub(super) fn refused(&mut self, peer: &CenterId, answer: &str) {
        if self.refused_at.is_none() {
            let answer: String = answer.chars().take(300).collect();
            tracing::warn!(%peer, %answer, ask_again_s = ASK_AGAIN.as_secs(),
                "the peer refused a batch carrying pickup reports (a plusgate from before \
                 them?) and took it without them: its senders do not see when their messages \
                 were pulled here until it takes them; the reports wait in this node's store");
        }
        self.refused_at = Some(tokio::time::Instant::now());
        self.waiting = None;
    }

    /// How long to wait, with nothing else to send, before sending reports again that
    /// the peer left unanswered; `None` if it answered all.
    pub(super) fn retry_in(&self) -> Option<Duration> {
        self.waiting
    }

    /// Records the answer to `sent`: each report answered (taken, or refused for good:
    /// logged) is done, with the acknowledgement time it carried; the rest are sent again.
    pub(super) fn answered(
        &mut self,
        peer: &CenterId,
        sent: &[PickupReport],
        answer: &[PickupResult],
    ) -> Vec<(MessageId, Option<String>)> {
        let answered: std::collections::HashMap<&str, &PickupResult> =
            answer.iter().map(|r| (r.message_id.as_str(), r)).collect();
        let mut done = Vec::with_capacity(answer.len());
        for report in sent {
            let Some(result) = answered.get(report.message_id.as_str()) else {
                continue;
            };
            if let Some(reason) = &result.refused {
                tracing::warn!(%peer, message_id = %report.message_id, %reason,
                    "the peer refused a pickup report for good; dropped");
            }
            if let Some(id) = MessageId::from_key(&report.message_id) {
                done.push((id, report.acked_at.clone()));
            }
        }
        if done.len() < sent.len() {
            self.waiting = Some(self.later.fail(jitter()));
        } else {
            self.later.reset();
            self.waiting = None;
        }
        done
    }
}

/// The reports queued for `peer`, signed as this node: at most [`PICKUPS_MAX`] and
/// `batch_max`. None while `state` says the peer does not take them. A queue entry that
/// does not read is logged and left out, and so is the whole queue if it cannot be read: a
/// report never holds up the messages.
pub(super) fn read(ctx: &Forwarding, peer: &CenterId, state: &mut State) -> Vec<PickupReport> {
    if !state.carries() {
        state.waiting = None;
        return Vec::new();
    }
    let limit = PICKUPS_MAX.min(ctx.options.batch_max);
    let mut queued = Vec::new();
    for entry in ctx.store.pickup_reports(peer) {
        match entry {
            Ok(entry) => queued.push(entry),
            Err(e) => tracing::error!(%peer, error = %e, "pickup report not sent"),
        }
        if queued.len() >= limit {
            break;
        }
    }
    if queued.is_empty() {
        state.waiting = None;
    }
    // A signature is tens of µs; spread over the cores for a full batch.
    crate::node::parallel::map_owned(queued, |(id, p)| {
        PickupReport::sign(
            &ctx.signing_key,
            &ctx.center,
            id.as_str(),
            &p.digest,
            &p.first_pulled_at,
            p.acked_at.as_deref(),
        )
    })
}
