//! One round of a forwarder: read up to `batch_max` durable outbox entries in order,
//! dead-letter what can never go, hand the rest over as one batch (HTTP/2, mTLS as this
//! node) with the consents, withheld and pickup reports owed to the peer, check every
//! receipt against the peer's key in the directory, and record the outcome through the
//! ledger.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::core::audit::Checkpoint;
use crate::core::consent::attestation::{collector_center, Attestation};
use crate::core::consent::{ConsentKey, ConsentStatus};
use crate::core::identity::{CenterId, Identity};
use crate::core::keys::PublicKey;
use crate::core::message::MessageId;
use crate::core::wire::{
    Batch, BatchResult, PickupReport, ResendAnswer, ResendRequest, WireConsent, WireMessage,
    WithheldReport, BATCHES_PATH, RESEND_PATH,
};
use crate::node::client::{self, Connection, HttpVersion};
use crate::node::ledger::Parties;
use crate::node::store::{MessageRecord, StoreError};

use super::pickups;
use super::triage::{triage, Retry, RoundError, Undelivered};
use super::{expired, Forwarding, BATCH_BYTES_MAX};

/// A batch the peer answered: what to record.
pub(super) struct Handed {
    /// Outbox position of the batch's last message.
    pub(super) last_seq: u64,
    /// Verified receipts.
    pub(super) receipts: Vec<(MessageId, crate::core::wire::Receipt, Parties)>,
    /// Messages the peer will never take, with its reason.
    pub(super) refused: Vec<(MessageId, String)>,
    /// Messages without a valid receipt (sent again later).
    pub(super) unanswered: Vec<MessageId>,
    /// The peer's latest checkpoint, the ones it sent to link it, and the key to check them
    /// with.
    pub(super) checkpoint: Option<PeerCheckpoints>,
    /// What the peer keeps against this node (checked by the ledger).
    pub(super) evidence: Vec<crate::core::audit::Evidence>,
    /// Consent notices the batch carried (which consent, status sent).
    pub(super) told: Vec<(ConsentKey, ConsentStatus)>,
    /// Withheld reports the batch carried.
    pub(super) reported: Vec<MessageId>,
    /// Pickup reports the peer answered (taken or refused for good), each with the
    /// acknowledgement time it carried.
    pub(super) picked: Vec<(MessageId, Option<String>)>,
}

/// What a peer's answer carried of its checkpoints: its newest, the ones before it that
/// link it to the one this node holds (oldest first), and the peer's key from the directory.
pub(super) struct PeerCheckpoints {
    pub(super) latest: Checkpoint,
    pub(super) links: Vec<Checkpoint>,
    pub(super) key: PublicKey,
}

/// What a batch carries besides messages.
pub(super) struct Extras {
    pub(super) consents: Vec<WireConsent>,
    pub(super) withheld: Vec<WithheldReport>,
    pub(super) pickups: Vec<PickupReport>,
}

impl Extras {
    pub(super) fn is_empty(&self) -> bool {
        self.consents.is_empty() && self.withheld.is_empty() && self.pickups.is_empty()
    }
}

/// One round: dead-letter what expired, send one batch of what comes after `cursor`, check
/// the answer. `None`: nothing to send. `peer_holds`: how far the peer holds this node's
/// checkpoints, as its last answer said (updated from this one's); `reports`: whether the
/// peer takes pickup reports, and whether some await an answer (updated likewise).
pub(super) async fn round(
    ctx: &Forwarding,
    peer: &CenterId,
    conn: &mut Option<Connection>,
    cursor: Option<u64>,
    peer_holds: &mut Option<u64>,
    reports: &mut pickups::State,
) -> Result<Option<Handed>, RoundError> {
    // Restored from a backup: first ask the peer for what it delivered since.
    if let Some(taken_at) = ctx.store.resend_pending(peer)? {
        ask_resend(ctx, peer, conn, &taken_at).await?;
    }
    let durable_seq = ctx.ledger.durable_seq();
    let now = ctx.clock.now();
    let mut batch = Vec::new();
    let mut last_seq = 0;
    let mut undelivered = Vec::new();
    // Messages whose consent has ended since they were taken: never sent (nothing is
    // disclosed after its consent ended), withheld through the ledger, which checks again.
    let mut ended = Vec::new();
    let mut consent_ended: HashMap<ConsentKey, bool> = HashMap::new();
    // The ids as sent in this batch: two senders may have used one id, and the peer
    // answers by id, so the second waits for the next batch.
    let mut sent_ids: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut bytes = 0usize;
    for entry in ctx.store.outbox(peer, cursor) {
        let entry = entry?;
        if entry.seq >= durable_seq {
            break;
        }
        let mut record = match ctx.store.message(&entry.id) {
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
        if !sent_ids.insert(crate::core::message::public_of(&record.id).to_owned()) {
            break;
        }
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
        // Which consent, said once here for the rest of the round (the batch's consents,
        // the wire message's collector); a record from before consents were scoped names
        // none, and the store says which it is.
        let consent = ctx.store.consent_of(&record)?;
        record.consent_by = Some(consent.collector.clone());
        let has_ended = match consent_ended.get(&consent) {
            Some(e) => *e,
            None => {
                let e = consent_has_ended(ctx, &consent, now);
                consent_ended.insert(consent, e);
                e
            }
        };
        if has_ended {
            ended.push(entry.id);
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
                if let Some(id) = MessageId::from_key(&id) {
                    undelivered.push((id, Undelivered::Unopenable(e)));
                }
            }
        }
    }
    if !ended.is_empty() {
        let actor = Identity::Node(ctx.center.clone());
        let held = ctx.ledger.withhold_ended(actor, ended).await?;
        if !held.is_empty() {
            tracing::info!(%peer, messages = held.len(), "withheld, not sent: their consent has ended");
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
        .filter_map(|r| MessageId::from_key(&r.id))
        .collect();
    let extras = Extras {
        consents,
        withheld,
        pickups: pickups::read(ctx, peer, reports),
    };
    if batch.is_empty() {
        if extras.is_empty() {
            return Ok(None);
        }
        // Only consent notices, withheld or pickup reports: once the peer answered, it
        // holds them durably.
        let handed = hand_over(ctx, peer, conn, &batch, extras, peer_holds, reports).await?;
        if !told.is_empty() || !reported.is_empty() {
            ctx.ledger
                .notices_told(peer.clone(), told, reported)
                .await?;
        }
        if !handed.picked.is_empty() {
            ctx.ledger.pickups_told(peer.clone(), handed.picked).await?;
        }
        return Ok(None);
    }
    match hand_over(ctx, peer, conn, &batch, extras, peer_holds, reports).await {
        Ok(mut handed) => {
            handed.last_seq = last_seq;
            record_lag(ctx, peer, &batch, &handed, ctx.clock.now());
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
                .filter_map(|m| MessageId::from_key(&m.id))
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

/// Whether consent `key` has ended at `now` (expired or withdrawn), as the store holds
/// it. A consent that cannot be read counts as ended here: nothing is sent under it, and
/// the ledger, checking again, leaves the message alone.
fn consent_has_ended(ctx: &Forwarding, key: &ConsentKey, now: time::OffsetDateTime) -> bool {
    match ctx.store.consent(key) {
        Ok(Some(c)) => c.terms().map_or(true, |t| c.ended(&t, now).is_some()),
        Ok(None) | Err(_) => true,
    }
}

/// The consents a batch carries: those its messages cite and those `peer` is to be told of
/// (a withdrawal), each in its current state; and the told ones with the status sent, to
/// clear their notices once the peer has them. (Every record of `batch` names its
/// consent's collector: `round` said it.)
#[allow(clippy::type_complexity)]
pub(super) fn consents_for(
    ctx: &Forwarding,
    peer: &CenterId,
    batch: &[MessageRecord],
) -> Result<(Vec<WireConsent>, Vec<(ConsentKey, ConsentStatus)>), RoundError> {
    let notices: Vec<ConsentKey> = ctx.store.notices(peer).collect::<Result<_, _>>()?;
    let cited: std::collections::BTreeSet<ConsentKey> = batch
        .iter()
        .map(|m| {
            let collector = m.consent_by.clone().unwrap_or_else(|| m.from.clone());
            ConsentKey::new(collector, m.consent_id.clone())
        })
        .chain(notices.iter().cloned())
        .collect();
    let mut consents = Vec::with_capacity(cited.len());
    let mut told = Vec::new();
    for id in &cited {
        match ctx.store.consent(id) {
            Ok(Some(c)) => {
                // Collected here: this node vouches for it. Collected elsewhere: its
                // collector's node's word, relayed as received; without one it cannot
                // travel (the receiver would not believe it), and its messages are refused
                // there for want of a consent.
                let attestation = if collector_center(&c).as_ref() == Some(&ctx.center) {
                    Some(Attestation::sign(&ctx.signing_key, &c))
                } else {
                    c.attestation.clone()
                };
                let Some(attestation) = attestation else {
                    tracing::error!(%peer, consent = %id,
                        "consent not sent: no signature of its collector's node is held");
                    continue;
                };
                if notices.contains(id) {
                    told.push((c.key(), c.status));
                }
                consents.push(WireConsent::of(&c, attestation));
            }
            // Unknown here: the message goes without it (and is refused there); a damaged
            // one is logged and left out the same way.
            Ok(None) => {}
            Err(e) => tracing::error!(%peer, consent = %id, error = %e, "consent not sent"),
        }
    }
    Ok((consents, told))
}

/// Records, for each message `handed` holds a verified receipt for, the time since it was
/// accepted here, until `now`.
fn record_lag(
    ctx: &Forwarding,
    peer: &CenterId,
    batch: &[MessageRecord],
    handed: &Handed,
    now: time::OffsetDateTime,
) {
    if handed.receipts.is_empty() {
        return;
    }
    let accepted: HashMap<&str, &str> = batch
        .iter()
        .map(|m| (m.id.as_str(), m.accepted_at.as_str()))
        .collect();
    for (id, _, _) in &handed.receipts {
        let at = accepted
            .get(id.as_str())
            .and_then(|at| crate::core::time::parse(at));
        if let Some(at) = at {
            let lag = std::time::Duration::try_from(now - at).unwrap_or_default();
            ctx.metrics.delivered(peer, lag);
        }
    }
}

/// Records what a peer's answer said: receipts (the messages leave the outbox as
/// delivered), refusals (dead-lettered), and messages without a valid receipt (a failed
/// attempt; they are sent again).
pub(super) async fn record(
    ctx: Arc<Forwarding>,
    peer: CenterId,
    handed: Handed,
) -> Result<(), RoundError> {
    ctx.ledger.delivered(peer.clone(), handed.receipts).await?;
    if !handed.told.is_empty() || !handed.reported.is_empty() {
        ctx.ledger
            .notices_told(peer.clone(), handed.told, handed.reported)
            .await?;
    }
    if let Some(c) = handed.checkpoint {
        let via = crate::node::ledger::Via::Answer;
        crate::node::peers::keep_peer_checkpoints(
            &ctx.ledger,
            &peer,
            &c.key,
            via,
            c.links,
            c.latest,
        )
        .await;
    }
    crate::node::peers::take_reported_evidence(&ctx.ledger, &peer, handed.evidence).await;
    if !handed.refused.is_empty() {
        ctx.ledger
            .dead_letter(Identity::Node(ctx.center.clone()), handed.refused)
            .await?;
    }
    if !handed.unanswered.is_empty() {
        ctx.ledger
            .attempt_failed(
                peer.clone(),
                handed.unanswered,
                "no valid receipt in the answer".into(),
            )
            .await?;
    }
    // Last: the peer holds these reports either way, and they are sent again harmlessly
    // (answered again as taken) if this fails.
    if !handed.picked.is_empty() {
        ctx.ledger.pickups_told(peer, handed.picked).await?;
    }
    Ok(())
}

/// Sends `batch` to `peer` and checks the answer. The batch carries this node's newest
/// checkpoint, the ones after what the peer holds (`peer_holds`) to link it, and how far
/// this node holds the peer's; `peer_holds` is then updated from the answer. A peer that
/// refuses the batch for its pickup reports gets it again without them (`reports` then
/// says so, see `pickups`).
pub(super) async fn hand_over(
    ctx: &Forwarding,
    peer: &CenterId,
    conn: &mut Option<Connection>,
    batch: &[MessageRecord],
    extras: Extras,
    peer_holds: &mut Option<u64>,
    reports: &mut pickups::State,
) -> Result<Handed, RoundError> {
    let (c, key) = connected(ctx, peer, conn).await?;
    let checkpoint = ctx.ledger.latest_checkpoint();
    // Evidence, not the hand-over: a failed read sends none.
    let read = || -> Result<_, StoreError> {
        use crate::node::peers;
        Ok((
            peers::links(&ctx.store, *peer_holds, checkpoint.as_ref())?,
            peers::holds(&ctx.store, peer)?,
            peers::evidence_against(&ctx.store, peer)?,
        ))
    };
    let (links, holds, evidence) = read().unwrap_or_else(|e| {
        tracing::warn!(%peer, error = %e, "cannot read the checkpoints to link");
        (Vec::new(), None, Vec::new())
    });
    let mut body = Batch {
        checkpoint,
        links,
        holds,
        evidence,
        consents: extras.consents,
        withheld: extras.withheld,
        pickups: extras.pickups,
        messages: batch
            .iter()
            .map(|m| WireMessage {
                // As the sender wrote it; the receiver scopes it by `from` again.
                id: crate::core::message::public_of(&m.id).to_owned(),
                from: m.from.clone(),
                to: m.to.clone(),
                message_type: m.message_type.clone(),
                version: m.version,
                subject: m.subject.clone(),
                consent_id: m.consent_id.clone(),
                // Named when it is not the sender's own: the receiver then checks the same
                // consent this node did, whatever else it holds under that id.
                consent_collected_by: m.consent_by.clone().filter(|c| *c != m.from),
                // Opened when the batch was read.
                payload: m.payload.clone().unwrap_or_else(null_payload),
                accepted_at: m.accepted_at.clone(),
                digest: m.body_sha256.clone(),
            })
            .collect(),
    };
    let mut resp = send_batch(c, &body).await?;
    if resp.status == StatusCode::BAD_REQUEST && !body.pickups.is_empty() {
        // A peer from before pickup reports refuses the member whole (`Batch` denies
        // unknown members). The same batch without them tells whether that was it.
        let refusal = resp.text();
        body.pickups.clear();
        resp = send_batch(c, &body).await?;
        if resp.status == StatusCode::OK {
            reports.refused(peer, &refusal);
        }
    }
    if resp.status != StatusCode::OK {
        return Err(RoundError::Refused {
            peer: peer.clone(),
            status: resp.status,
            detail: resp.text(),
        });
    }
    let answer: BatchResult = resp.json()?;
    *peer_holds = answer.holds;
    let picked = if body.pickups.is_empty() {
        Vec::new()
    } else {
        reports.answered(peer, &body.pickups, &answer.pickups)
    };
    // Signature checks are the bulk of the work here; spread them over the cores.
    let checked = check_receipts(peer, &key, batch, &answer);
    let mut receipts = Vec::new();
    let mut undelivered = Vec::new();
    for (m, outcome) in batch.iter().zip(checked) {
        let Some(id) = MessageId::from_key(&m.id) else {
            continue;
        };
        match outcome {
            Ok(receipt) => receipts.push((id, receipt, Parties::of(m))),
            Err(why) => undelivered.push((id, why)),
        }
    }
    let (refused, unanswered) = triage(peer, undelivered);
    Ok(Handed {
        last_seq: 0,
        receipts,
        refused,
        unanswered,
        checkpoint: answer.checkpoint.map(|latest| PeerCheckpoints {
            latest,
            links: answer.links,
            key,
        }),
        evidence: answer.evidence,
        told: Vec::new(),
        reported: Vec::new(),
        picked,
    })
}

/// POSTs `body` to the peer's batch endpoint.
async fn send_batch(c: &mut Connection, body: &Batch) -> Result<client::Response, RoundError> {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("batches always serialize"));
    Ok(c.send(
        Method::POST,
        BATCHES_PATH,
        Some((bytes, "application/json")),
    )
    .await?)
}

/// The connection to `peer` (made, at its directory URL, if there is none open) whose
/// server proved to be `peer`'s node, and `peer`'s signing key from the directory.
async fn connected<'c>(
    ctx: &Forwarding,
    peer: &CenterId,
    conn: &'c mut Option<Connection>,
) -> Result<(&'c mut Connection, PublicKey), RoundError> {
    let (url, key) = {
        let routing = ctx.routing.borrow();
        let entry = routing
            .peer(peer)
            .ok_or_else(|| RoundError::UnknownPeer(peer.clone()))?;
        (entry.url.clone(), entry.signing_key.clone())
    };
    if conn.as_ref().is_none_or(Connection::is_closed) {
        // Parsed, and a host name resolved, for every new connection: a directory reload
        // or a DNS change takes effect with the next one.
        let target = client::parse_https_url(&url)?;
        let tls = ctx.tls.borrow().clone();
        let c = Connection::connect_url(&target, tls, HttpVersion::Http2).await?;
        // The TLS verifier took any node of the federation (`client::peer`); it must be
        // this center's, whatever address or name it was reached by.
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
    Ok((conn.as_mut().expect("connected above"), key))
}

/// This node was restored from a backup taken at `taken_at`: asks `peer` to send again
/// what it delivered since, and records that it was asked once it answered. A peer that
/// refuses for good (a 4xx but 408 and 429: e.g. 404 from a plusgate without the endpoint)
/// is warned of and not asked again, its operator must put those messages back by hand;
/// anything else is tried again with the round's backoff.
async fn ask_resend(
    ctx: &Forwarding,
    peer: &CenterId,
    conn: &mut Option<Connection>,
    taken_at: &str,
) -> Result<(), RoundError> {
    let (c, _) = connected(ctx, peer, conn).await?;
    let body = ResendRequest {
        backup_taken_at: taken_at.to_owned(),
    };
    let bytes = Bytes::from(serde_json::to_vec(&body).expect("requests serialize"));
    let resp = c
        .send(Method::POST, RESEND_PATH, Some((bytes, "application/json")))
        .await?;
    match resp.status {
        StatusCode::OK => {
            let answer: ResendAnswer = resp.json()?;
            tracing::info!(%peer, messages = answer.messages, consents = answer.consents,
                backup_taken_at = taken_at,
                "restored from a backup: the peer sends again what it delivered since");
        }
        // Refused for good (an older plusgate without the endpoint, or a peer that will not
        // take this node's request): said once, and forwarding goes on; asking again at
        // every round would hold up everything else for this peer.
        status if resend_refused_for_good(status) => {
            tracing::warn!(%peer, backup_taken_at = taken_at, %status, answer = %resp.text(),
                "restored from a backup, but the peer will not send again what it delivered \
                 since: ask its operator to put back what it delivered to this center since \
                 then");
        }
        status => {
            return Err(RoundError::Refused {
                peer: peer.clone(),
                status,
                detail: resp.text(),
            })
        }
    }
    ctx.ledger
        .resend_told(peer.clone(), taken_at.to_owned())
        .await?;
    Ok(())
}

/// Whether a peer's answer `status` to a resend request means it will never do it (a
/// client error the same request cannot cure: 404 from an older plusgate, 403, 400), as
/// opposed to a failure worth asking again after the backoff (5xx, 408, 429).
pub(super) fn resend_refused_for_good(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

pub(super) fn null_payload() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("null".into()).expect("null is JSON")
}

/// Matches each message of `batch` with its result in `answer` and checks receipts, on up
/// to as many threads as there are cores (an Ed25519 verification costs tens of µs): a
/// verified receipt, or why there is none.
pub(super) fn check_receipts(
    peer: &CenterId,
    key: &crate::core::keys::PublicKey,
    batch: &[MessageRecord],
    answer: &BatchResult,
) -> Vec<Result<crate::core::wire::Receipt, Undelivered>> {
    // By the id as sent (`round` puts no two messages with one id in a batch).
    let by_id: std::collections::HashMap<&str, &crate::core::wire::ItemResult> =
        answer.results.iter().map(|r| (r.id.as_str(), r)).collect();
    let check = |m: &MessageRecord| match by_id.get(crate::core::message::public_of(&m.id)) {
        None => Err(Undelivered::Unanswered),
        Some(r) => match (&r.receipt, &r.refused) {
            (Some(receipt), _) => match receipt.check(
                peer,
                key,
                crate::core::message::public_of(&m.id),
                &m.body_sha256,
            ) {
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
