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

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rustls::ClientConfig;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::core::consent::ConsentStatus;
use crate::core::identity::{CenterId, Identity};
use crate::core::message::MessageId;
use crate::core::routing::Routing;
use crate::core::wire::{
    Batch, BatchResult, WireConsent, WireMessage, WithheldReport, BATCHES_PATH,
};
use crate::node::client::{self, Connection, HttpVersion};
use crate::node::clock::Clock;
use crate::node::ledger::{Ledger, Parties};
use crate::node::store::{MessageRecord, Store, StoreError};

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
    /// TLS as this node (node certificate as client certificate), HTTP/2.
    pub tls: Arc<ClientConfig>,
    /// Batching, retries, time to live.
    pub options: ForwardOptions,
    /// Turns true when the node shuts down.
    pub closing: watch::Receiver<bool>,
    /// Time source for the time to live and the retry delays: the node's clock (see
    /// `clock`), a fast-forwarding one in tests (hours of retries in milliseconds).
    pub clock: Arc<dyn Clock>,
    /// Opens payloads stored sealed.
    pub keys: Option<Arc<crate::core::vault::DataKeys>>,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("center", &self.center)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Exponential backoff with jitter and a cap.
///
/// After the n-th consecutive failure the delay is drawn uniformly from
/// `[d/2, d]` with `d = min(max, initial · 2^(n-1))`: doubling spreads retries out while a
/// peer is down, the cap bounds how late a recovered peer is noticed, and the jitter keeps
/// many nodes from retrying in lockstep after a shared outage.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Records a failure and returns the delay before the next attempt. `jitter` in
    /// `[0, 1]` picks the point in `[d/2, d]` (the caller supplies randomness, so tests can
    /// fix it).
    pub fn fail(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(32);
        let ceiling = self
            .initial
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        ceiling.mul_f64(0.5 + 0.5 * jitter)
    }

    /// A success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// True if a message accepted at `accepted_at` (RFC 3339) has outlived `ttl` at `now`.
/// An unreadable time counts as expired: such a record cannot be trusted to ever leave.
pub fn expired(accepted_at: &str, now: OffsetDateTime, ttl: Duration) -> bool {
    match crate::core::time::parse(accepted_at) {
        Some(at) => now - at > ttl,
        None => true,
    }
}

/// A random number in `[0, 1]` for jitter.
fn jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX)
}

/// Who is likely at fault when a message does not reach its peer, as pingora's error
/// source says it: where to look first, and whose operator to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The peer node or the network to it: down, unreachable, slow, refusing this node, or
    /// answering with something that does not check out.
    Upstream,
    /// The message as its sending agency wrote it: the peer refused it on its merits (its
    /// consent, its recipient, the schemas).
    Downstream,
    /// This node: its store, its ledger, its data keys, its TLS setup or its copy of the
    /// directory.
    Internal,
}

/// What the forwarder does with messages that did not reach the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Sending again can help: they stay in the outbox, their failed attempt recorded, and
    /// go again in a later round (after a backoff when the whole round failed). Their time
    /// to live bounds how long.
    Resend,
    /// Sending again cannot help: they leave the outbox dead-lettered, with the reason. An
    /// operator may still put them back (`plusgate outbox retry`).
    DeadLetter,
}

/// Why one forwarding round could not hand the batch over. Every kind is about the batch as
/// a whole, never a verdict on one message, and every kind can pass, so
/// [`RoundError::retry`] is [`Retry::Resend`] for all of them: the forwarder backs off and
/// tries again until the messages' time to live ends.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    /// Reading the outbox, a message, a consent or a report failed. Internal.
    #[error("reading the outbox failed: {0}")]
    Store(#[from] StoreError),
    /// The directory no longer lists the center this outbox is for. Internal (this node's
    /// directory; a reload may list it again).
    #[error("center {0} is not in the federation directory")]
    UnknownPeer(CenterId),
    /// Connecting, TLS or HTTP failed. Upstream, except for this node's own setup (a bad
    /// URL in its directory, its TLS files, a request it could not build).
    #[error("{0}")]
    Client(#[from] client::ClientError),
    /// The server at the peer's address is not the peer's node. Upstream (or a directory
    /// entry gone stale).
    #[error("the server at {url} is {found}, not the node of center {peer}")]
    WrongServer {
        /// The peer's URL, from the directory.
        url: String,
        /// The center whose node was expected.
        peer: CenterId,
        /// Who answered instead.
        found: String,
    },
    /// The peer answered the batch with an error status (a 4xx: it does not take this
    /// node's batches, e.g. its directory differs; a 5xx: its own trouble), or with no usable
    /// receipt at all. Upstream.
    #[error("{peer} answered {status}: {detail}")]
    Refused {
        /// The peer.
        peer: CenterId,
        /// The status it answered.
        status: StatusCode,
        /// What it said.
        detail: String,
    },
    /// Recording the round failed (the ledger refused or is stopped). Internal.
    #[error("the ledger refused: {0}")]
    Ledger(#[from] crate::node::ledger::LedgerError),
}

impl RoundError {
    /// Whether sending the batch again can help: always (see the type's doc). Written out
    /// per kind so that a new kind is classified when it is added.
    fn retry(&self) -> Retry {
        match self {
            RoundError::Store(_)
            | RoundError::UnknownPeer(_)
            | RoundError::Client(_)
            | RoundError::WrongServer { .. }
            | RoundError::Refused { .. }
            | RoundError::Ledger(_) => Retry::Resend,
        }
    }

    /// Who is likely at fault.
    fn fault(&self) -> Fault {
        use client::ClientError as C;
        match self {
            RoundError::Store(_) | RoundError::UnknownPeer(_) | RoundError::Ledger(_) => {
                Fault::Internal
            }
            RoundError::Client(
                C::Pem { .. } | C::Config { .. } | C::ServerName(_) | C::Url { .. } | C::Request(_),
            ) => Fault::Internal,
            RoundError::Client(
                C::Connect { .. }
                | C::Tls { .. }
                | C::Handshake { .. }
                | C::Alpn { .. }
                | C::Http { .. }
                | C::Timeout { .. }
                | C::BodyTooLarge { .. }
                | C::Json(_),
            )
            | RoundError::WrongServer { .. }
            | RoundError::Refused { .. } => Fault::Upstream,
        }
    }
}

/// Why one message did not reach the peer in a round. Its text is the reason recorded for a
/// dead-lettered message (delivery record and audit entry), so it must not change.
#[derive(Debug, thiserror::Error)]
enum Undelivered {
    /// Still in the outbox when its time to live ended: the peer did not take it in time.
    #[error("not delivered to center {peer} within its time to live ({ttl_s} s)")]
    Expired {
        /// The peer.
        peer: CenterId,
        /// The time to live.
        ttl_s: u64,
    },
    /// Its stored record does not verify, so it cannot be sent as it was accepted.
    #[error("its stored record is damaged and cannot be sent: {0}")]
    Damaged(StoreError),
    /// Its sealed payload does not open with this node's data keys.
    #[error("its stored payload does not open and cannot be sent: {0}")]
    Unopenable(crate::core::vault::VaultError),
    /// The peer refused it for good, with its reason.
    #[error("refused by center {peer}: {reason}")]
    Refused {
        /// The peer.
        peer: CenterId,
        /// The peer's reason.
        reason: String,
    },
    /// The peer answered for it with a receipt that does not check out.
    #[error("bad receipt: {0}")]
    BadReceipt(crate::core::wire::ReceiptError),
    /// The peer's answer said nothing about it.
    #[error("no answer for it")]
    Unanswered,
}

impl Undelivered {
    /// Whether sending it again can help.
    fn retry(&self) -> Retry {
        match self {
            Undelivered::Expired { .. }
            | Undelivered::Damaged(_)
            | Undelivered::Unopenable(_)
            | Undelivered::Refused { .. } => Retry::DeadLetter,
            Undelivered::BadReceipt(_) | Undelivered::Unanswered => Retry::Resend,
        }
    }

    /// Who is likely at fault.
    fn fault(&self) -> Fault {
        match self {
            Undelivered::Expired { .. } | Undelivered::BadReceipt(_) | Undelivered::Unanswered => {
                Fault::Upstream
            }
            Undelivered::Refused { .. } => Fault::Downstream,
            Undelivered::Damaged(_) | Undelivered::Unopenable(_) => Fault::Internal,
        }
    }
}

/// Sorts undelivered messages by their [`Retry`]: those to dead-letter, each with its
/// reason, and those to send again.
fn triage(
    peer: &CenterId,
    undelivered: Vec<(MessageId, Undelivered)>,
) -> (Vec<(MessageId, String)>, Vec<MessageId>) {
    let mut dead = Vec::new();
    let mut again = Vec::new();
    for (id, why) in undelivered {
        match why.retry() {
            Retry::DeadLetter => dead.push((id, why.to_string())),
            Retry::Resend => {
                if let Undelivered::BadReceipt(problem) = &why {
                    tracing::error!(%peer, message_id = %id, %problem, fault = ?why.fault(),
                        "bad receipt");
                }
                again.push(id);
            }
        }
    }
    (dead, again)
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
    let mut conn: Option<Connection> = None;
    let mut durable = ctx.ledger.subscribe();
    let mut closing = ctx.closing.clone();
    let mut cursor: Option<u64> = None;
    let mut recording: Option<tokio::task::JoinHandle<Result<(), RoundError>>> = None;
    tracing::debug!(%peer, "forwarder started");
    loop {
        if *closing.borrow() {
            break;
        }
        match round(&ctx, &peer, &mut conn, cursor).await {
            Ok(Some(handed)) => {
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
                // Nothing to send: wait for something new to become durable.
                tokio::select! {
                    _ = durable.changed() => {}
                    _ = closing.changed() => {}
                }
            }
            Err(e) => {
                settle(&peer, recording.take()).await;
                cursor = None;
                conn = None;
                // Every round error leaves its batch in the outbox (`RoundError::retry`):
                // wait, then try again.
                let delay = backoff.fail(jitter());
                tracing::warn!(%peer, error = %e, fault = ?e.fault(), failures = backoff.failures(),
                    retry_in_ms = delay.as_millis() as u64, "forwarding failed");
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

/// A batch the peer answered: what to record.
struct Handed {
    /// Outbox position of the batch's last message.
    last_seq: u64,
    /// Verified receipts.
    receipts: Vec<(crate::core::wire::Receipt, Parties)>,
    /// Messages the peer will never take, with its reason.
    refused: Vec<(MessageId, String)>,
    /// Messages without a valid receipt (sent again later).
    unanswered: Vec<MessageId>,
    /// The peer's latest checkpoint and the key to check it with.
    checkpoint: Option<(crate::core::audit::Checkpoint, crate::core::keys::PublicKey)>,
    /// Consent notices the batch carried (id, status sent).
    told: Vec<(String, ConsentStatus)>,
    /// Withheld reports the batch carried.
    reported: Vec<MessageId>,
}

/// What a batch carries besides messages.
struct Extras {
    consents: Vec<WireConsent>,
    withheld: Vec<WithheldReport>,
}

impl Extras {
    fn is_empty(&self) -> bool {
        self.consents.is_empty() && self.withheld.is_empty()
    }
}

/// One round: dead-letter what expired, send one batch of what comes after `cursor`, check
/// the answer. `None`: nothing to send.
async fn round(
    ctx: &Forwarding,
    peer: &CenterId,
    conn: &mut Option<Connection>,
    cursor: Option<u64>,
) -> Result<Option<Handed>, RoundError> {
    let durable_seq = ctx.ledger.durable_seq();
    let now = ctx.clock.now();
    let mut batch = Vec::new();
    let mut last_seq = 0;
    let mut undelivered = Vec::new();
    let mut bytes = 0usize;
    for entry in ctx.store.outbox(peer, cursor) {
        let entry = entry?;
        if entry.seq >= durable_seq {
            break;
        }
        let record = match ctx.store.message(&entry.id) {
            Ok(Some(record)) => record,
            Ok(None) => continue,
            Err(e @ StoreError::Corrupt { .. }) => {
                // Never sent (it cannot be verified) and never blocking the messages behind
                // it: out of the outbox with the reason, for an operator to look at.
                tracing::error!(%peer, message_id = %entry.id, error = %e, "damaged record");
                undelivered.push((entry.id, Undelivered::Damaged(e)));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // The time to live counts from acceptance, or from an operator's retry (read only
        // when acceptance alone says expired: the common case costs no extra read).
        let ttl = ctx.options.message_ttl;
        let expired_now = expired(&record.accepted_at, now, ttl)
            && ctx
                .store
                .delivery(&entry.id)?
                .and_then(|d| d.requeued_at)
                .is_none_or(|at| expired(&at, now, ttl));
        if expired_now {
            let why = Undelivered::Expired {
                peer: peer.clone(),
                ttl_s: ttl.as_secs(),
            };
            undelivered.push((entry.id, why));
            continue;
        }
        bytes += record.payload.as_ref().map_or(0, |p| p.get().len())
            + record.sealed.as_ref().map_or(0, |s| s.ct.len() * 3 / 4)
            + 512;
        last_seq = entry.seq;
        batch.push(record);
        if batch.len() >= ctx.options.batch_max || bytes >= BATCH_BYTES_MAX {
            break;
        }
    }
    // Open the sealed payloads, spread over the cores (decryption and JSON checks are most
    // of the reading); one that does not open is dead-lettered, not sent.
    let opened = crate::node::parallel::map_owned(batch, |mut record| {
        match record.open(ctx.keys.as_deref()) {
            Ok(payload) => {
                record.payload = Some(payload);
                record.sealed = None;
                Ok(record)
            }
            Err(e) => Err((record.id, e)),
        }
    });
    let mut batch = Vec::with_capacity(opened.len());
    for outcome in opened {
        match outcome {
            Ok(record) => batch.push(record),
            Err((id, e)) => {
                tracing::error!(%peer, message_id = %id, error = %e, "payload does not open");
                if let Some(id) = MessageId::parse(&id) {
                    undelivered.push((id, Undelivered::Unopenable(e)));
                }
            }
        }
    }
    // Anything that could go later simply stays in the outbox, unsent this round.
    let (dead, _later) = triage(peer, undelivered);
    if !dead.is_empty() {
        let actor = Identity::Node(ctx.center.clone());
        ctx.ledger.dead_letter(actor, dead).await?;
    }
    let (consents, told) = consents_for(ctx, peer, &batch)?;
    let withheld: Vec<WithheldReport> = ctx
        .store
        .withheld_reports(peer)
        .take(ctx.options.batch_max)
        .map(|r| {
            r.map(|(id, why)| WithheldReport {
                id: id.to_string(),
                at: why.at,
                reason: why.reason,
            })
        })
        .collect::<Result<_, _>>()?;
    let reported: Vec<MessageId> = withheld
        .iter()
        .filter_map(|r| MessageId::parse(&r.id))
        .collect();
    let extras = Extras { consents, withheld };
    if batch.is_empty() {
        if extras.is_empty() {
            return Ok(None);
        }
        // Only consent notices or withheld reports: once the peer answered, it holds them
        // durably.
        hand_over(ctx, peer, conn, &batch, extras).await?;
        ctx.ledger
            .notices_told(peer.clone(), told, reported)
            .await?;
        return Ok(None);
    }
    match hand_over(ctx, peer, conn, &batch, extras).await {
        Ok(mut handed) => {
            handed.last_seq = last_seq;
            handed.told = told;
            handed.reported = reported;
            if handed.receipts.is_empty() && handed.refused.is_empty() {
                // Answered, but with nothing usable: a failed attempt like any other.
                let n = handed.unanswered.len();
                let error = RoundError::Refused {
                    peer: peer.clone(),
                    status: StatusCode::OK,
                    detail: format!("{n} messages came back without a valid receipt"),
                };
                ctx.ledger
                    .attempt_failed(peer.clone(), handed.unanswered, error.to_string())
                    .await?;
                return Err(error);
            }
            Ok(Some(handed))
        }
        Err(e) => {
            let ids: Vec<MessageId> = batch
                .iter()
                .filter_map(|m| MessageId::parse(&m.id))
                .collect();
            let recorded = match e.retry() {
                Retry::Resend => {
                    ctx.ledger
                        .attempt_failed(peer.clone(), ids, e.to_string())
                        .await
                }
                Retry::DeadLetter => {
                    let reason = e.to_string();
                    let items = ids.into_iter().map(|id| (id, reason.clone())).collect();
                    ctx.ledger
                        .dead_letter(Identity::Node(ctx.center.clone()), items)
                        .await
                }
            };
            if let Err(le) = recorded {
                tracing::error!(%peer, error = %le, "could not record the failed attempt");
            }
            Err(e)
        }
    }
}

/// The consents a batch carries: those its messages cite and those `peer` is to be told of
/// (a withdrawal), each in its current state; and the told ones with the status sent, to
/// clear their notices once the peer has them.
#[allow(clippy::type_complexity)]
fn consents_for(
    ctx: &Forwarding,
    peer: &CenterId,
    batch: &[MessageRecord],
) -> Result<(Vec<WireConsent>, Vec<(String, ConsentStatus)>), RoundError> {
    let notices: Vec<String> = ctx.store.notices(peer).collect::<Result<_, _>>()?;
    let cited: std::collections::BTreeSet<&str> = batch
        .iter()
        .map(|m| m.consent_id.as_str())
        .chain(notices.iter().map(String::as_str))
        .collect();
    let mut consents = Vec::with_capacity(cited.len());
    let mut told = Vec::new();
    for id in cited {
        match ctx.store.consent(id) {
            Ok(Some(c)) => {
                if notices.iter().any(|n| n == id) {
                    told.push((c.id.clone(), c.status));
                }
                consents.push(WireConsent::of(&c));
            }
            // Unknown here: the message goes without it (and is refused there); a damaged
            // one is logged and left out the same way.
            Ok(None) => {}
            Err(e) => tracing::error!(%peer, consent_id = %id, error = %e, "consent not sent"),
        }
    }
    Ok((consents, told))
}

/// Records what a peer's answer said: receipts (the messages leave the outbox as
/// delivered), refusals (dead-lettered), and messages without a valid receipt (a failed
/// attempt; they are sent again).
async fn record(ctx: Arc<Forwarding>, peer: CenterId, handed: Handed) -> Result<(), RoundError> {
    ctx.ledger.delivered(peer.clone(), handed.receipts).await?;
    if !handed.told.is_empty() || !handed.reported.is_empty() {
        ctx.ledger
            .notices_told(peer.clone(), handed.told, handed.reported)
            .await?;
    }
    if let Some((checkpoint, key)) = handed.checkpoint {
        crate::node::peers::keep_peer_checkpoint(&ctx.ledger, &peer, &key, checkpoint).await;
    }
    if !handed.refused.is_empty() {
        ctx.ledger
            .dead_letter(Identity::Node(ctx.center.clone()), handed.refused)
            .await?;
    }
    if !handed.unanswered.is_empty() {
        ctx.ledger
            .attempt_failed(
                peer,
                handed.unanswered,
                "no valid receipt in the answer".into(),
            )
            .await?;
    }
    Ok(())
}

/// Sends `batch` to `peer` and checks the answer.
async fn hand_over(
    ctx: &Forwarding,
    peer: &CenterId,
    conn: &mut Option<Connection>,
    batch: &[MessageRecord],
    extras: Extras,
) -> Result<Handed, RoundError> {
    let (url, key) = {
        let routing = ctx.routing.borrow();
        let entry = routing
            .peer(peer)
            .ok_or_else(|| RoundError::UnknownPeer(peer.clone()))?;
        (entry.url.clone(), entry.signing_key.clone())
    };
    if conn.as_ref().is_none_or(Connection::is_closed) {
        let (addr, host) = client::parse_https_url(&url)?;
        let c = Connection::connect(addr, &host, ctx.tls.clone(), HttpVersion::Http2).await?;
        match c.server_identity() {
            Ok(Identity::Node(c)) if c == peer => {}
            other => {
                return Err(RoundError::WrongServer {
                    url,
                    peer: peer.clone(),
                    found: match other {
                        Ok(i) => i.to_string(),
                        Err(_) => "a server without a plusgate identity".into(),
                    },
                })
            }
        }
        *conn = Some(c);
    }
    let c = conn.as_mut().expect("connected above");
    let body = Batch {
        checkpoint: ctx.ledger.latest_checkpoint(),
        consents: extras.consents,
        withheld: extras.withheld,
        messages: batch
            .iter()
            .map(|m| WireMessage {
                id: m.id.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                message_type: m.message_type.clone(),
                version: m.version,
                subject: m.subject.clone(),
                consent_id: m.consent_id.clone(),
                // Opened when the batch was read.
                payload: m.payload.clone().unwrap_or_else(null_payload),
                accepted_at: m.accepted_at.clone(),
                digest: m.body_sha256.clone(),
            })
            .collect(),
    };
    let bytes = Bytes::from(serde_json::to_vec(&body).expect("batches always serialize"));
    let resp = c
        .send(
            Method::POST,
            BATCHES_PATH,
            Some((bytes, "application/json")),
        )
        .await?;
    if resp.status != StatusCode::OK {
        return Err(RoundError::Refused {
            peer: peer.clone(),
            status: resp.status,
            detail: resp.text(),
        });
    }
    let answer: BatchResult = resp.json()?;
    // Signature checks are the bulk of the work here; spread them over the cores.
    let checked = check_receipts(peer, &key, batch, &answer);
    let mut receipts = Vec::new();
    let mut undelivered = Vec::new();
    for (m, outcome) in batch.iter().zip(checked) {
        let Some(id) = MessageId::parse(&m.id) else {
            continue;
        };
        match outcome {
            Ok(receipt) => receipts.push((receipt, Parties::of(m))),
            Err(why) => undelivered.push((id, why)),
        }
    }
    let (refused, unanswered) = triage(peer, undelivered);
    Ok(Handed {
        last_seq: 0,
        receipts,
        refused,
        unanswered,
        checkpoint: answer.checkpoint.map(|c| (c, key)),
        told: Vec::new(),
        reported: Vec::new(),
    })
}

fn null_payload() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("null".into()).expect("null is JSON")
}

/// Matches each message of `batch` with its result in `answer` and checks receipts, on up
/// to as many threads as there are cores (an Ed25519 verification costs tens of µs): a
/// verified receipt, or why there is none.
fn check_receipts(
    peer: &CenterId,
    key: &crate::core::keys::PublicKey,
    batch: &[MessageRecord],
    answer: &BatchResult,
) -> Vec<Result<crate::core::wire::Receipt, Undelivered>> {
    let by_id: std::collections::HashMap<&str, &crate::core::wire::ItemResult> =
        answer.results.iter().map(|r| (r.id.as_str(), r)).collect();
    let check = |m: &MessageRecord| match by_id.get(m.id.as_str()) {
        None => Err(Undelivered::Unanswered),
        Some(r) => match (&r.receipt, &r.refused) {
            (Some(receipt), _) => match receipt.check(peer, key, &m.id, &m.body_sha256) {
                Ok(()) => Ok(receipt.clone()),
                Err(problem) => Err(Undelivered::BadReceipt(problem)),
            },
            (None, Some(reason)) => Err(Undelivered::Refused {
                peer: peer.clone(),
                reason: reason.clone(),
            }),
            (None, None) => Err(Undelivered::Unanswered),
        },
    };
    crate::node::parallel::map_chunks(batch, check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
        let ceilings: Vec<u128> = (0..12).map(|_| b.fail(1.0).as_millis()).collect();
        assert_eq!(
            ceilings,
            [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000, 60000]
        );
    }

    #[test]
    fn jitter_spreads_each_delay_over_its_upper_half() {
        let mut low = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
        let mut high = low.clone();
        for _ in 0..5 {
            let (l, h) = (low.fail(0.0), high.fail(1.0));
            assert_eq!(l * 2, h);
        }
    }

    #[test]
    fn a_success_starts_the_backoff_again() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..20 {
            b.fail(1.0);
        }
        assert_eq!(
            b.fail(1.0),
            Duration::from_secs(10),
            "capped, never overflows"
        );
        b.reset();
        assert_eq!(b.fail(1.0), Duration::from_millis(100));
    }

    #[test]
    fn a_peer_down_for_an_hour_is_retried_about_a_hundred_times_not_thousands() {
        // Virtual clock: add up the delays instead of sleeping through them.
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
        let (mut elapsed, mut attempts) = (Duration::ZERO, 0);
        while elapsed < Duration::from_secs(3600) {
            elapsed += b.fail(0.5);
            attempts += 1;
        }
        assert!(
            (70..=90).contains(&attempts),
            "{attempts} attempts in an hour"
        );
    }

    /// A sending node whose peer never answers, under a virtual clock. Everything else is
    /// real: a dev-init federation, a sled store, the ledger, TLS configuration, and
    /// connection attempts to a loopback port nobody listens on.
    #[tokio::test]
    async fn a_peer_that_never_answers_is_retried_with_backoff_until_the_message_dead_letters() {
        use crate::config::Config;
        use crate::core::directory::Directory;
        use crate::core::message::Envelope;
        use crate::core::routing::Route;
        use crate::node::clock::ManualClock;
        use crate::node::ledger::{LedgerOptions, Submission};
        use crate::node::store::DeliveryState;

        let tmp = tempfile::tempdir().expect("tempdir");
        // A port that was free a moment ago: nobody listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let args = crate::dev::devinit::DevInitArgs {
            out: tmp.path().join("fed"),
            centers: vec!["suwon".into(), "gangseo".into()],
            base_port: port - 1,
        };
        let manifest = crate::dev::devinit::run(&args).expect("dev-init");
        let config = Config::load(&manifest.config_path("suwon").expect("suwon")).expect("config");
        let f = config.federation.clone().expect("federated");
        let directory = Directory::load(&f.directory, &f.authority_key).expect("directory");
        let routing = Arc::new(Routing::federated(
            config.center.clone(),
            Arc::new(directory),
        ));
        let store = Store::open(&tmp.path().join("data")).expect("store");
        // Virtual time for the ledger and the forwarder alike: every sleep jumps ahead.
        let start = OffsetDateTime::now_utc();
        let clock = Arc::new(ManualClock::fast_forwarding(start));
        let elapsed = || -> Duration { (clock.now() - start).unsigned_abs() };
        let (ledger, _thread) =
            Ledger::start(store.clone(), LedgerOptions::default(), clock.clone()).expect("ledger");

        // The consent the example cites, registered as its collector would.
        let (consent, collector) = manifest.example("consent").expect("consent example");
        let consent: serde_json::Value =
            serde_json::from_slice(&std::fs::read(consent).expect("read")).expect("JSON");
        let collector = crate::core::identity::AgencyId::parse(collector).expect("collector");
        let registration =
            crate::core::consent::Registration::new(&consent, &collector, "2026-01-01T00:00:00Z")
                .expect("registration");
        ledger
            .register_consent(collector, registration.record)
            .await
            .expect("registered");

        let (example, sender) = manifest.example("referral-remote").expect("example");
        let body = crate::core::json::parse_strict(&std::fs::read(example).expect("read"))
            .expect("example JSON");
        let sender = crate::core::identity::AgencyId::parse(sender).expect("sender");
        let envelope = Envelope::from_validated(body, &sender).expect("envelope");
        let peer = envelope.to.center().clone();
        let keys = crate::core::vault::DataKeys::from_bytes([3; 32], &[]);
        let submission = Submission::new(
            &sender,
            envelope,
            Route::Remote(peer.clone()),
            Some(&keys),
            clock.now(),
        )
        .expect("sealed");
        let id = submission.id().clone();
        ledger.accept(submission).await.expect("accepted");

        let (_routing_tx, routing_rx) = watch::channel(routing);
        let (closing_tx, closing_rx) = watch::channel(false);
        let tls = client::client_config(
            &config.tls.client_ca,
            Some((&config.tls.cert, &config.tls.key)),
            HttpVersion::Http2,
        )
        .expect("tls");
        let ctx = Arc::new(Forwarding {
            center: config.center.clone(),
            store: store.clone(),
            ledger: ledger.clone(),
            routing: routing_rx,
            tls,
            options: ForwardOptions {
                batch_max: 256,
                retry_initial: Duration::from_millis(200),
                retry_max: Duration::from_secs(60),
                message_ttl: Duration::from_secs(3600),
            },
            closing: closing_rx,
            clock: clock.clone(),
            keys: Some(Arc::new(keys)),
        });
        let task = tokio::spawn(forward(ctx, peer.clone()));

        // Real time only for the attempts themselves; virtual time for everything else.
        let wait_until = |virtual_time: Duration| {
            let store_for_wait = store.clone();
            let id_for_wait = id.clone();
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while elapsed() < virtual_time {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "forwarder stalled at {:?}: {:?}",
                        elapsed(),
                        store_for_wait.delivery(&id_for_wait)
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };

        // Half an hour in: still waiting, retried with growing delays up to the 60 s cap
        // (a few dozen attempts, not thousands).
        wait_until(Duration::from_secs(1800)).await;
        let d = store.delivery(&id).expect("read").expect("record");
        assert_eq!(d.state, DeliveryState::Forwarded, "{d:?}");
        assert!(
            (25..=60).contains(&d.failed_attempts),
            "{} attempts in 30 virtual minutes",
            d.failed_attempts
        );
        assert!(d
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("127.0.0.1")));

        // Past the time to live (one virtual hour), and not before: dead-lettered with the
        // reason, out of the outbox; the forwarder then has nothing left to try.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let d = loop {
            let d = store.delivery(&id).expect("read").expect("record");
            if d.state == DeliveryState::DeadLettered || std::time::Instant::now() > deadline {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let at = elapsed();
        assert!(
            at >= Duration::from_secs(3600) && at <= Duration::from_secs(3600 + 61),
            "dead-lettered at virtual {at:?}"
        );
        assert_eq!(d.state, DeliveryState::DeadLettered, "{d:?}");
        assert!(d
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("time to live")));
        assert_eq!(store.outbox(&peer, None).count(), 0);
        closing_tx.send_replace(true);
        task.await.expect("forwarder stops on closing");
    }

    /// The retry classification, written down: which failures send again and which
    /// dead-letter, and who is likely at fault. Changing a row changes what the forwarder
    /// does.
    #[test]
    fn what_is_sent_again_and_what_is_dead_lettered() {
        use crate::node::store::RecordError;
        use client::ClientError;
        let peer = CenterId::parse("gangseo").expect("center");
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let corrupt = || StoreError::Corrupt {
            family: "message",
            key: "m-1".into(),
            source: RecordError::Truncated(0),
        };
        let round = |e: RoundError| (e.retry(), e.fault());
        let message = |e: Undelivered| (e.retry(), e.fault());
        use Fault::{Downstream, Internal, Upstream};
        use Retry::{DeadLetter, Resend};

        for (what, got, want) in [
            (
                "store",
                round(RoundError::Store(corrupt())),
                (Resend, Internal),
            ),
            (
                "unknown peer",
                round(RoundError::UnknownPeer(peer.clone())),
                (Resend, Internal),
            ),
            (
                "connect",
                round(RoundError::Client(ClientError::Connect {
                    addr,
                    source: std::io::ErrorKind::ConnectionRefused.into(),
                })),
                (Resend, Upstream),
            ),
            (
                "timeout",
                round(RoundError::Client(ClientError::Timeout {
                    addr,
                    during: "connecting to",
                    after: Duration::from_secs(10),
                })),
                (Resend, Upstream),
            ),
            (
                "bad URL in the directory",
                round(RoundError::Client(ClientError::Url {
                    url: "http://x".into(),
                    reason: "not https",
                })),
                (Resend, Internal),
            ),
            (
                "wrong server",
                round(RoundError::WrongServer {
                    url: "https://127.0.0.1:9".into(),
                    peer: peer.clone(),
                    found: "urn:plusgate:node:suwon".into(),
                }),
                (Resend, Upstream),
            ),
            (
                "batch refused",
                round(RoundError::Refused {
                    peer: peer.clone(),
                    status: StatusCode::FORBIDDEN,
                    detail: "unknown-node".into(),
                }),
                (Resend, Upstream),
            ),
            (
                "ledger",
                round(RoundError::Ledger(
                    crate::node::ledger::LedgerError::Stopped,
                )),
                (Resend, Internal),
            ),
            (
                "expired",
                message(Undelivered::Expired {
                    peer: peer.clone(),
                    ttl_s: 60,
                }),
                (DeadLetter, Upstream),
            ),
            (
                "damaged",
                message(Undelivered::Damaged(corrupt())),
                (DeadLetter, Internal),
            ),
            (
                "unopenable",
                message(Undelivered::Unopenable(
                    crate::core::vault::VaultError::Damaged,
                )),
                (DeadLetter, Internal),
            ),
            (
                "refused by the peer",
                message(Undelivered::Refused {
                    peer: peer.clone(),
                    reason: "no consent".into(),
                }),
                (DeadLetter, Downstream),
            ),
            (
                "bad receipt",
                message(Undelivered::BadReceipt(
                    crate::core::wire::ReceiptError::BadSignature { peer: peer.clone() },
                )),
                (Resend, Upstream),
            ),
            (
                "unanswered",
                message(Undelivered::Unanswered),
                (Resend, Upstream),
            ),
        ] {
            assert_eq!(got, want, "{what}");
        }
    }

    /// A dead-lettered message's reason is stored and audited: its text stays as it was.
    #[test]
    fn dead_letter_reasons_read_as_before() {
        let peer = CenterId::parse("gangseo").expect("center");
        let cases = [
            (
                Undelivered::Expired {
                    peer: peer.clone(),
                    ttl_s: 3600,
                },
                "not delivered to center gangseo within its time to live (3600 s)",
            ),
            (
                Undelivered::Refused {
                    peer: peer.clone(),
                    reason: "no consent covers it".into(),
                },
                "refused by center gangseo: no consent covers it",
            ),
        ];
        for (why, text) in cases {
            assert_eq!(why.to_string(), text);
        }
        let (dead, again) = triage(
            &peer,
            vec![
                (MessageId::generate(), Undelivered::Unanswered),
                (
                    MessageId::generate(),
                    Undelivered::Refused {
                        peer: peer.clone(),
                        reason: "x".into(),
                    },
                ),
            ],
        );
        assert_eq!((dead.len(), again.len()), (1, 1));
        assert_eq!(dead[0].1, "refused by center gangseo: x");
    }

    #[test]
    fn a_message_expires_exactly_after_its_time_to_live() {
        let accepted = "2026-11-26T03:00:00.000Z";
        let at = |s: &str| crate::core::time::parse(s).expect("time");
        let ttl = Duration::from_secs(3600);
        assert!(!expired(accepted, at("2026-11-26T03:59:59Z"), ttl));
        assert!(!expired(accepted, at("2026-11-26T04:00:00Z"), ttl));
        assert!(expired(accepted, at("2026-11-26T04:00:00.001Z"), ttl));
        assert!(expired("garbage", at("2026-11-26T03:00:00Z"), ttl));
    }
}
