//! Forwarding: one task per peer center drains that center's outbox to its node.
//!
//! ```text
//!  outbox o/<peer>/<seq>  ──▶ forwarder(peer): read ≤ batch_max in order (durable only)
//!                                 │ older than the time to live → ledger.dead_letter
//!                                 │ POST /federation/v1/batches (HTTP/2, mTLS as this node)
//!                                 │   server certificate must be urn:plusgate:node:<peer>
//!                                 ├─ receipts: check against the peer's key in the signed
//!                                 │  directory → ledger.delivered (leaves the outbox)
//!                                 ├─ refusals (permanent) → ledger.dead_letter
//!                                 ├─ pickup reports answered → ledger.pickups_told
//!                                 └─ transport failure → ledger.attempt_failed, back off
//! ```
//!
//! Architecture invariants, enforced here:
//! - One batch in flight per peer, taken in outbox (= acceptance) order, and the receiver
//!   takes a batch in order: messages reach the peer in the order they were accepted.
//! - A message leaves the outbox only through the ledger, after a verified receipt or with
//!   a recorded reason; a crash at any point leaves it in the outbox, and the receiver's
//!   deduplication by id (answering with the original receipt) makes the resend harmless.
//! - Each peer has its own task and backoff: a peer that is down or slow delays only its own
//!   outbox.
//! - What happens to a message that did not reach the peer is decided by its classification
//!   (`Retry`, with the likely `Fault`): a failed round (`RoundError`) and a message the
//!   peer did not answer for are sent again, after a backoff when the whole round failed;
//!   only a message that can never go (expired, damaged, unopenable, refused by the peer) is
//!   dead-lettered, with its reason.
//!
//! Files: this one (the per-peer task and its options), `backoff` (exponential backoff with
//! jitter, time to live), `triage` (what a failure means: `Retry` and `Fault`), `round` (one
//! round: read the outbox, hand a batch over, check the receipts, record the outcome),
//! `pickups` (the pickup reports a batch carries, and a peer that does not take them).

mod backoff;
mod pickups;
mod round;
#[cfg(test)]
mod tests;
mod triage;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::core::identity::CenterId;
use crate::core::routing::Routing;
use crate::node::client::Connection;
use crate::node::clock::Clock;
use crate::node::ledger::Ledger;
use crate::node::store::Store;

use self::backoff::jitter;
pub use self::backoff::{expired, Backoff};
use self::round::{record, round};
use self::triage::RoundError;

/// Largest batch body a forwarder builds (messages beyond it wait for the next batch).
pub const BATCH_BYTES_MAX: usize = 8 << 20;

/// How forwarding behaves; from the config's `[federation]` section.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    /// Most messages per batch.
    pub batch_max: usize,
    /// First retry delay after a failed attempt.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// A message not delivered within this time after acceptance is dead-lettered.
    pub message_ttl: Duration,
}

/// Everything a forwarder needs. Shared by all forwarders of a node.
pub struct Forwarding {
    /// This node.
    pub center: CenterId,
    /// Read access to outboxes and messages.
    pub store: Store,
    /// The single writer.
    pub ledger: Ledger,
    /// The current directory.
    pub routing: watch::Receiver<Arc<Routing>>,
    /// TLS as this node (node certificate as client certificate), HTTP/2: each new
    /// connection takes the current one, reloaded with the node's TLS material
    /// (`reload::forwarding_config`).
    pub tls: watch::Receiver<Arc<rustls::ClientConfig>>,
    /// Batching, retries, time to live.
    pub options: ForwardOptions,
    /// Turns true when the node shuts down.
    pub closing: watch::Receiver<bool>,
    /// Time source for the time to live and the retry delays: the node's clock (see
    /// `clock`), a fast-forwarding one in tests (hours of retries in milliseconds).
    pub clock: Arc<dyn Clock>,
    /// Opens payloads stored sealed.
    pub keys: Option<Arc<crate::core::vault::DataKeys>>,
    /// This node's signing key: it vouches for the consents collected at its center when
    /// they travel (`consent::attestation`).
    pub signing_key: Arc<crate::core::keys::SigningKey>,
    /// Where the delivery lag per peer is recorded (`node::metrics`).
    pub metrics: Arc<crate::node::metrics::LedgerMetrics>,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("center", &self.center)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Drains the outbox to `peer` until the node shuts down.
///
/// Pipelined by one step: once a batch's receipts are checked, recording them (a ledger
/// write and fsync) runs while the next batch is read and sent. The next batch starts after
/// the last message handed over (`cursor`), so nothing is sent twice meanwhile, and the peer
/// has already taken the previous batch, so order is kept. If recording fails, the cursor is
/// dropped and the messages, still in the outbox, are sent again (the peer answers with the
/// original receipts).
pub async fn forward(ctx: Arc<Forwarding>, peer: CenterId) {
    let mut backoff = Backoff::new(ctx.options.retry_initial, ctx.options.retry_max);
    // The error last logged at warn level, so a repeat of it is not logged at every retry.
    let mut last_logged: Option<String> = None;
    let mut conn: Option<Connection> = None;
    let mut durable = ctx.ledger.subscribe();
    let mut closing = ctx.closing.clone();
    let mut cursor: Option<u64> = None;
    // How far the peer holds this node's checkpoints, as its last answer said (unknown
    // after a start: the first batch carries no links).
    let mut peer_holds: Option<u64> = None;
    // Whether the peer takes pickup reports, and whether some wait for its answer.
    let mut reports = pickups::State::new(&ctx);
    let mut recording: Option<tokio::task::JoinHandle<Result<(), RoundError>>> = None;
    tracing::debug!(%peer, "forwarder started");
    loop {
        if *closing.borrow() {
            break;
        }
        match round(
            &ctx,
            &peer,
            &mut conn,
            cursor,
            &mut peer_holds,
            &mut reports,
        )
        .await
        {
            Ok(Some(handed)) => {
                if backoff.failures() > 0 {
                    tracing::info!(%peer, failures = backoff.failures(), "forwarding works again");
                    last_logged = None;
                }
                backoff.reset();
                if !settle(&peer, recording.take()).await {
                    cursor = None;
                    continue;
                }
                cursor = Some(handed.last_seq);
                recording = Some(tokio::spawn(record(ctx.clone(), peer.clone(), handed)));
            }
            Ok(None) => {
                if recording.is_some() {
                    // Let it land, then look at the outbox from its start again.
                    settle(&peer, recording.take()).await;
                    cursor = None;
                    continue;
                }
                cursor = None;
                // Nothing to send: wait for something new to become durable, or for the
                // time to send again pickup reports the peer could not take yet.
                let again = reports.retry_in();
                tokio::select! {
                    _ = durable.changed() => {}
                    _ = closing.changed() => {}
                    _ = ctx.clock.sleep(again.unwrap_or_default()), if again.is_some() => {}
                }
            }
            Err(e) => {
                settle(&peer, recording.take()).await;
                cursor = None;
                conn = None;
                // Every round error leaves its batch in the outbox (`RoundError::retry`):
                // wait, then try again.
                let delay = backoff.fail(jitter());
                // A peer that stays unreachable (a center never started, a long outage)
                // is not worth a warning every retry: warn at the first failure, when the
                // error changes, and at failures 2, 4, 8, …; the rest go to debug.
                let error = e.to_string();
                let failures = backoff.failures();
                if failures.is_power_of_two() || last_logged.as_deref() != Some(error.as_str()) {
                    tracing::warn!(%peer, %error, fault = ?e.fault(), failures,
                        retry_in_ms = delay.as_millis() as u64,
                        "forwarding failed (repeats of this are logged at 2, 4, 8, … failures)");
                    last_logged = Some(error);
                } else {
                    tracing::debug!(%peer, %error, failures,
                        retry_in_ms = delay.as_millis() as u64, "forwarding failed");
                }
                tokio::select! {
                    _ = ctx.clock.sleep(delay) => {}
                    _ = closing.changed() => {}
                }
            }
        }
    }
    settle(&peer, recording.take()).await;
    tracing::debug!(%peer, "forwarder stopped");
}

/// Waits for a recording to finish; false (and logged) if it failed.
async fn settle(
    peer: &CenterId,
    recording: Option<tokio::task::JoinHandle<Result<(), RoundError>>>,
) -> bool {
    let Some(task) = recording else {
        return true;
    };
    match task.await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(%peer, error = %e, "could not record a hand-over; sending again");
            false
        }
        Err(e) => {
            tracing::error!(%peer, error = %e, "recording a hand-over failed");
            false
        }
    }
}
