//! `POST /federation/v1/batches`: another center's node hands over messages for agencies at
//! this center.
//!
//! Architecture invariants, enforced here:
//! - Only a node certificate of another center listed in the signed directory gets in.
//! - Every message is validated again from scratch (schemas, cross-field rules, the
//!   directory's send/receive rights, the sender's center being the calling node's): a
//!   node never trusts another node's validation.
//! - A receipt is signed only from what the ledger reports durable: the message, its inbox
//!   entry and its `received` audit entry, written together. A resend gets the same receipt
//!   again (same facts; Ed25519 signatures are deterministic).
//! - A pickup report is answered only once the ledger has checked it (signed by the calling
//!   node with its key from the directory, about a message this node delivered to exactly
//!   that node) and made its effect durable; each report is answered on its own, and one
//!   the ledger could not look at now is left unanswered, so the caller sends it again.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::body::json_response;
use super::problem::ledger_problem;
use super::{Api, Problem, Resp};
use crate::core::audit::{Checkpoint, Evidence};
use crate::core::consent::attestation::{collector_center, AttestationError};
use crate::core::consent::{
    ConsentRecord, ConsentStatus, Registration, RegistrationError, StatusChange,
};
use crate::core::identity::{AgencyId, Anonymous, CenterId, IdError, Identity, Peer};
use crate::core::message::MessageType;
use crate::core::routing::{HandoverError, Route};
use crate::core::schema::Violation;
use crate::core::vault::VaultError;
use crate::core::wire::{
    Batch, BatchResult, ItemResult, PickupReport, PickupResult, Receipt, ResendAnswer,
    ResendRequest, WireConsent, WireMessage, BATCH_LEN_MAX, EVIDENCE_MAX, LINKS_MAX, PICKUPS_MAX,
    RESEND_MARGIN_S,
};
use crate::node::ledger::{LedgerError, PickupOutcome, Submission};
use crate::node::store::StoreError;

/// Largest batch body accepted (a forwarder builds at most `outbox::BATCH_BYTES_MAX`).
pub const BATCH_BODY_BYTES_MAX: usize = 32 << 20;

/// Most schema violations a refusal lists.
const REFUSAL_VIOLATIONS_MAX: usize = 10;

/// Messages put back into an outbox per ledger command when a restored peer asks (so no
/// group grows with the peer's history).
const RESEND_SLICE: usize = 1000;

/// Why a handed-over message is refused for good: answered `refused` with this reason, and
/// the origin dead-letters it. The origin node is at fault (or its agency, whose message it
/// took without checking it the same way); handing it over again never helps.
#[derive(Debug, thiserror::Error)]
pub enum HandoverRefusal {
    /// The batch holds something other than an object where a message should be.
    #[error("not an object")]
    NotAnObject,
    /// Not a handed-over message: a member missing, unknown or of the wrong type.
    /// (What is wrong, in words that quote nothing of the message: `json::describe_error`.)
    #[error("not a handed-over message: {0}")]
    Shape(String),
    /// `from` is not an agency id.
    #[error("`from` is not an agency id: {0}")]
    Sender(#[source] IdError),
    /// The message has no id (the origin assigns one if its agency gave none).
    #[error("a handed-over message must carry its id")]
    NoId,
    /// The directory does not allow this hand-over (sender, type or recipient).
    #[error(transparent)]
    Directory(#[from] HandoverError),
    /// The envelope or payload breaks the schemas or the cross-field rules.
    #[error("invalid message: {}", list(.0))]
    Invalid(Vec<Violation>),
    /// The message could not be prepared for storing (its payload not sealed).
    #[error("cannot store it: {0}")]
    Store(#[source] VaultError),
    /// The digest the origin sent is not the one this node computes for the same message.
    #[error("digest {sent} differs from this node's {ours} for the same message")]
    Digest {
        /// The origin's digest.
        sent: String,
        /// This node's.
        ours: String,
    },
}

/// The first violations, `pointer: message; …`.
fn list(violations: &[Violation]) -> String {
    let list: Vec<String> = violations
        .iter()
        .take(REFUSAL_VIOLATIONS_MAX)
        .map(|v| format!("{}: {}", v.pointer, v.message))
        .collect();
    list.join("; ")
}

/// Why a consent a peer sent along with a batch is left out (logged; the messages citing it
/// are then refused for want of a consent, which the sender sees). The sending node is at
/// fault; sending the same consent again never helps.
#[derive(Debug, thiserror::Error)]
pub enum WireConsentError {
    /// The document is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The document does not pass `consent.v1.json`.
    #[error("consent {id} does not pass consent.v1.json ({violations} violations)")]
    Schema {
        /// The consent id, as far as readable.
        id: String,
        /// How many violations.
        violations: usize,
    },
    /// The document holds something shaped like a resident registration number.
    #[error("consent {id} holds an RRN-shaped value")]
    Rrn {
        /// The consent id.
        id: String,
    },
    /// The document names no collecting agency.
    #[error("consent {id} names no collecting agency")]
    NoCollector {
        /// The consent id.
        id: String,
    },
    /// The document cannot be registered.
    #[error("consent {id}: {source}")]
    Registration {
        /// The consent id.
        id: String,
        /// Why.
        source: RegistrationError,
    },
    /// The sending center is neither the collector's nor a recipient's: a node speaks only
    /// for consents its own center is party to.
    #[error("consent {id} names no agency of center {node}")]
    NotParty {
        /// The consent id.
        id: String,
        /// The sending node's center.
        node: CenterId,
    },
    /// Not vouched for by the collector's node (missing, or a signature that does not
    /// check against the directory's key for the collector's center).
    #[error(transparent)]
    Unattested(#[from] AttestationError),
}

impl Api {
    /// The other center's node behind the connection, if the directory lists it.
    pub(super) fn peer_node<'p>(&self, peer: &'p Peer) -> Result<&'p CenterId, Problem> {
        match peer {
            Ok(Identity::Node(c)) if self.routing().peer(c).is_some() => Ok(c),
            Ok(Identity::Node(c)) if c == &self.center => Err(Problem::forbidden(
                "wrong-role",
                "a node does not hand messages over to itself",
            )),
            Ok(Identity::Node(c)) => Err(Problem::forbidden(
                "unknown-node",
                format!("node {c} is not in this node's federation directory"),
            )),
            Ok(other) => Err(Problem::forbidden(
                "wrong-role",
                format!("{other} may not use the federation API"),
            )),
            Err(Anonymous::NoPlusgateUri | Anonymous::Unparseable) => Err(Problem::forbidden(
                "unknown-identity",
                "the client certificate carries no plusgate identity (SAN URI urn:plusgate:…)",
            )),
        }
    }

    pub(super) async fn receive_batch(
        &self,
        req: Request<Incoming>,
        node: &CenterId,
    ) -> Result<Resp, Problem> {
        let Some(key) = self.signing_key.clone() else {
            return Err(Problem::forbidden(
                "not-federated",
                "this node is not part of a federation",
            ));
        };
        // A batch larger than one identity's body budget could never be granted: it is
        // answered 413 rather than 503 for ever (the defaults leave room for two batches).
        let limit = BATCH_BODY_BYTES_MAX.min(self.limits.body_budget_identity_bytes);
        let body = self.read_json_up_to(req, limit).await?;
        // The batch's shape whole; each message on its own, below.
        let Batch {
            messages,
            consents,
            withheld,
            pickups,
            checkpoint,
            links,
            holds,
            evidence,
        } = serde_json::from_value::<Batch<Value, Value>>(body).map_err(|e| {
            Problem::bad_request(format!(
                "expected {{\"messages\": [...], \"consents\"?: [...], \"withheld\"?: [...], \
                 \"pickups\"?: [...], \"checkpoint\"?: {{...}}, \"links\"?: [...], \
                 \"holds\"?: N, \"evidence\"?: [...]}}: {}",
                crate::core::json::describe_error(&e)
            ))
        })?;
        if messages.len() > BATCH_LEN_MAX {
            return Err(Problem::bad_request(format!(
                "a batch holds at most {BATCH_LEN_MAX} messages"
            )));
        }
        if pickups.len() > PICKUPS_MAX {
            return Err(Problem::bad_request(format!(
                "a batch carries at most {PICKUPS_MAX} pickup reports"
            )));
        }
        if links.len() > LINKS_MAX || evidence.len() > EVIDENCE_MAX {
            return Err(Problem::bad_request(format!(
                "a batch carries at most {LINKS_MAX} checkpoint links and {EVIDENCE_MAX} \
                 pieces of evidence"
            )));
        }
        // Check every message (spread over the cores: validation is most of a batch's
        // cost); only the valid ones go to the ledger, as one command, so they enter the
        // inboxes in batch order.
        let checked = crate::node::parallel::map_owned(messages, |m| self.check_handover(node, m));
        let mut results: Vec<(String, Option<HandoverRefusal>)> = Vec::with_capacity(checked.len());
        let mut valid = Vec::new();
        for (i, outcome) in checked.into_iter().enumerate() {
            match outcome {
                Ok(submission) => {
                    // Answered by the id as the batch carried it.
                    results.push((submission.id().public().to_owned(), None));
                    valid.push(submission);
                }
                Err((id, reason)) => {
                    tracing::warn!(%node, index = i, message_id = %id, %reason,
                        "refused a handed-over message");
                    results.push((id, Some(reason)));
                }
            }
        }
        // A consent that does not check out is left out (and logged); the messages citing
        // it are then refused for want of a consent, which the sender sees.
        let consents: Vec<ConsentRecord> = consents
            .into_iter()
            .filter_map(|c| match self.check_wire_consent(node, c) {
                Ok(record) => Some(record),
                Err(why) => {
                    tracing::warn!(%node, %why, "left out a consent a peer sent");
                    None
                }
            })
            .collect();
        let outcomes = if valid.is_empty() && consents.is_empty() && withheld.is_empty() {
            Vec::new()
        } else {
            self.ledger
                .receive(node.clone(), consents, withheld, valid)
                .await
                .map_err(ledger_problem)?
        };
        // The pickup reports are independent of the messages (they are about messages
        // this node sent the caller earlier).
        let pickups = self.take_pickups(node, pickups).await;
        // Durable now: sign the receipts (in parallel too; a signature is tens of µs).
        let center = &self.center;
        let signed = crate::node::parallel::map_owned(outcomes, |outcome| {
            outcome.map(|r| {
                // The id as the batch carried it (the sending node matches receipts to
                // its messages by it).
                Receipt::sign(
                    &key,
                    center,
                    r.id.public(),
                    &r.digest,
                    r.received_at.as_str(),
                )
            })
        });
        self.metrics
            .received(node, signed.iter().filter(|r| r.is_ok()).count());
        let mut signed = signed.into_iter();
        let items: Vec<ItemResult> = results
            .into_iter()
            .map(|(id, refused)| match refused {
                Some(reason) => ItemResult {
                    id,
                    receipt: None,
                    refused: Some(reason.to_string()),
                },
                None => match signed.next() {
                    Some(Ok(receipt)) => ItemResult {
                        id,
                        receipt: Some(receipt),
                        refused: None,
                    },
                    Some(Err(LedgerError::Refused(refusal))) => ItemResult {
                        id,
                        receipt: None,
                        refused: Some(refusal.describe()),
                    },
                    Some(Err(LedgerError::IdConflict(_))) => ItemResult {
                        id,
                        receipt: None,
                        refused: Some(
                            "its sender already used the id for a different message".into(),
                        ),
                    },
                    // The recipient's inbox is full: no receipt, so the sending node
                    // keeps the message in its outbox and sends it again later (like any
                    // unanswered message); expected under load, not an error here.
                    Some(Err(e @ LedgerError::InboxFull(_))) => {
                        tracing::info!(message_id = %id, reason = %e, "not taken over now");
                        ItemResult {
                            id,
                            receipt: None,
                            refused: None,
                        }
                    }
                    // Anything else is not the message's fault: no receipt, the sender
                    // retries.
                    Some(Err(e)) => {
                        tracing::error!(message_id = %id, error = %e, "could not take over");
                        ItemResult {
                            id,
                            receipt: None,
                            refused: None,
                        }
                    }
                    None => ItemResult {
                        id,
                        receipt: None,
                        refused: None,
                    },
                },
            })
            .collect();
        // What this node holds of the sender's checkpoints (before this batch's), and its
        // own checkpoints after what the sender holds of them, for each side to link the
        // other's newest one. Evidence, not the hand-over: a failed read sends none.
        let latest = self.ledger.latest_checkpoint();
        let (answer_holds, answer_links, answer_evidence) = self
            .checkpoint_extras(node, holds, latest.as_ref())
            .unwrap_or_else(|e| {
                tracing::warn!(%node, error = %e, "cannot read the checkpoints to link");
                (None, Vec::new(), Vec::new())
            });
        // Keeping the sender's checkpoints is evidence, not part of the hand-over: it is
        // queued before the answer goes out (so the next batch's are judged after these),
        // but not waited for (its fsync would delay every batch's answer).
        let queued = match (checkpoint, self.routing().peer(node)) {
            (Some(checkpoint), Some(peer)) => {
                let via = crate::node::ledger::Via::Batch;
                let key = peer.signing_key.clone();
                crate::node::peers::queue_peer_checkpoints(
                    &self.ledger,
                    node,
                    &key,
                    via,
                    links,
                    checkpoint,
                )
                .await
            }
            _ => None,
        };
        let (ledger, node) = (self.ledger.clone(), node.clone());
        tokio::spawn(async move {
            if let Some(queued) = queued {
                crate::node::peers::report(&node, queued).await;
            }
            crate::node::peers::take_reported_evidence(&ledger, &node, evidence).await;
        });
        let answer = BatchResult {
            results: items,
            checkpoint: latest,
            links: answer_links,
            holds: answer_holds,
            evidence: answer_evidence,
            pickups,
        };
        Ok(json_response(StatusCode::OK, &answer))
    }

    /// Takes the pickup reports `node` sent: each is parsed on its own (a malformed one is
    /// refused alone), then the ledger checks each signature against `node`'s key in the
    /// directory and each message against its records, and applies what checks out. One
    /// result per report taken or refused for good; a report the ledger could not look at
    /// now (a failure of this node, or a message whose receipt it has not recorded yet) gets
    /// none, and comes again.
    async fn take_pickups(&self, node: &CenterId, reports: Vec<Value>) -> Vec<PickupResult> {
        if reports.is_empty() {
            return Vec::new();
        }
        let mut results = Vec::with_capacity(reports.len());
        let mut parsed: Vec<PickupReport> = Vec::with_capacity(reports.len());
        for r in reports {
            let message_id = r
                .get("message_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>();
            match serde_json::from_value::<PickupReport>(r) {
                Ok(report) => parsed.push(report),
                Err(e) => {
                    let reason = format!(
                        "not a pickup report: {}",
                        crate::core::json::describe_error(&e)
                    );
                    tracing::warn!(%node, %message_id, %reason, "refused a pickup report");
                    results.push(PickupResult {
                        message_id,
                        refused: Some(reason),
                    });
                }
            }
        }
        let Some(key) = self.routing().peer(node).map(|p| p.signing_key.clone()) else {
            return results;
        };
        let ids: Vec<String> = parsed.iter().map(|r| r.message_id.clone()).collect();
        let outcomes = match self.ledger.picked_up(node.clone(), key, parsed).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::warn!(%node, error = %e, "pickup reports not taken now");
                return results;
            }
        };
        for (message_id, outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                PickupOutcome::Taken => results.push(PickupResult {
                    message_id,
                    refused: None,
                }),
                PickupOutcome::Refused(why) => {
                    tracing::warn!(%node, %message_id, reason = %why, "refused a pickup report");
                    results.push(PickupResult {
                        message_id,
                        refused: Some(why.to_string()),
                    });
                }
                PickupOutcome::Later => {}
            }
        }
        results
    }

    /// `POST /federation/v1/resend`: `node` was restored from a backup and asks for what
    /// this node delivered to it since (by the receipts' time, less
    /// [`RESEND_MARGIN_S`]): those messages go back into its outbox, and the consents that
    /// name its agencies and changed since get notices. The scans run off the writer; the
    /// ledger checks each message again. Answered once that is durable; asking again is
    /// harmless (the restored node keeps one copy of each message).
    pub(super) async fn resend(
        &self,
        req: Request<Incoming>,
        node: &CenterId,
    ) -> Result<Resp, Problem> {
        if self.signing_key.is_none() {
            return Err(Problem::forbidden(
                "not-federated",
                "this node is not part of a federation",
            ));
        }
        let body = self.read_json_up_to(req, 4096).await?;
        let ResendRequest { backup_taken_at } = serde_json::from_value(body).map_err(|e| {
            Problem::bad_request(format!(
                "expected {{\"backup_taken_at\": \"RFC 3339 time\"}}: {}",
                crate::core::json::describe_error(&e)
            ))
        })?;
        let taken = crate::core::time::parse(&backup_taken_at).ok_or_else(|| {
            Problem::bad_request(format!(
                "backup_taken_at is not an RFC 3339 time: {backup_taken_at:?}"
            ))
        })?;
        let since = taken - time::Duration::seconds(RESEND_MARGIN_S);
        let (store, peer) = (self.store.clone(), node.clone());
        let (ids, consents) = tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((
                store.delivered_to(&peer, since)?,
                store.consents_changed_for(&peer, since)?,
            ))
        })
        .await
        .map_err(|e| Problem::internal("resend-failed", &e))?
        .map_err(super::problem::store_problem)?;
        // In slices, so no group grows with the peer's history; the consents go with the
        // first.
        let (mut messages, mut announced) = (0, 0);
        let mut consents = Some(consents);
        let mut slices = ids.chunks(RESEND_SLICE).peekable();
        while slices.peek().is_some() || consents.is_some() {
            let slice = slices.next().unwrap_or_default().to_vec();
            let (m, c) = self
                .ledger
                .resend(
                    node.clone(),
                    slice,
                    consents.take().unwrap_or_default(),
                    backup_taken_at.clone(),
                )
                .await
                .map_err(ledger_problem)?;
            messages += m;
            announced += c;
        }
        let consents = announced;
        tracing::info!(%node, messages, consents, backup_taken_at = %backup_taken_at,
            "a restored peer asked for what it was sent since its backup: queued again");
        Ok(json_response(
            StatusCode::OK,
            &ResendAnswer { messages, consents },
        ))
    }

    /// What an answer to `node` carries besides results and this node's newest checkpoint:
    /// how far this node holds `node`'s checkpoints, its own checkpoints after the `holds`
    /// the batch said (to link `latest`), and the evidence it keeps against `node`.
    #[allow(clippy::type_complexity)]
    fn checkpoint_extras(
        &self,
        node: &CenterId,
        holds: Option<u64>,
        latest: Option<&Checkpoint>,
    ) -> Result<(Option<u64>, Vec<Checkpoint>, Vec<Evidence>), StoreError> {
        use crate::node::peers;
        Ok((
            peers::holds(&self.store, node)?,
            peers::links(&self.store, holds, latest)?,
            peers::evidence_against(&self.store, node)?,
        ))
    }

    /// The signing key of `center`'s node: this node's own, or the directory's for a peer.
    fn node_key(&self, center: &CenterId) -> Option<crate::core::keys::PublicKey> {
        if center == self.routing().center() {
            return self.signing_key.as_ref().map(|k| k.public_key());
        }
        self.routing().peer(center).map(|p| p.signing_key.clone())
    }

    /// Checks a consent a peer sent: its document passes `consent.v1.json` and holds no
    /// RRN, and the sending center is one it names (its collector's or a recipient's): a
    /// node speaks only for consents its own center is party to.
    fn check_wire_consent(
        &self,
        node: &CenterId,
        c: WireConsent,
    ) -> Result<ConsentRecord, WireConsentError> {
        let document: Value =
            serde_json::from_str(c.document.get()).map_err(WireConsentError::NotJson)?;
        let id = document["id"].as_str().unwrap_or("?").to_owned();
        if let Err(v) = self
            .schemas
            .validate_payload(MessageType::Consent, 1, &document)
        {
            return Err(WireConsentError::Schema {
                id,
                violations: v.len(),
            });
        }
        if !crate::core::rrn::find(&document).is_empty() {
            return Err(WireConsentError::Rrn { id });
        }
        let Some(collector) = document
            .pointer("/collected_by/agency")
            .and_then(Value::as_str)
            .and_then(|a| AgencyId::parse(a).ok())
        else {
            return Err(WireConsentError::NoCollector { id });
        };
        let now = self.ledger.clock().now_rfc3339();
        let registration = match Registration::new(&document, &collector, &now) {
            Ok(r) => r,
            Err(source) => return Err(WireConsentError::Registration { id, source }),
        };
        let mut record = registration.record;
        let party = std::iter::once(collector.as_str())
            .chain(record.recipients.iter().map(String::as_str))
            .filter_map(|a| AgencyId::parse(a).ok())
            .any(|a| a.center() == node);
        if !party {
            return Err(WireConsentError::NotParty {
                id,
                node: node.clone(),
            });
        }
        // Only the collector's node can say what its consent is: the status is what its
        // signature vouches for, checked against the directory's key for the center of the
        // document's own collector (never the sender's).
        let attestation = c
            .attestation
            .ok_or(AttestationError::Missing { id: id.clone() })?;
        let key = collector_center(&record).and_then(|center| self.node_key(&center));
        attestation.verify(&record, key.as_ref())?;
        if attestation.status == ConsentStatus::Withdrawn {
            let stated = crate::core::consent::latest_withdrawal(&c.history);
            record.status = ConsentStatus::Withdrawn;
            record.history.push(StatusChange {
                status: ConsentStatus::Withdrawn,
                at: attestation
                    .withdrawn_at
                    .clone()
                    .unwrap_or_else(|| now.clone()),
                by: collector.to_string(),
                reason: stated.and_then(|s| s.reason.clone()),
                stated_at: stated.and_then(|s| s.stated_at.clone()),
            });
        }
        record.attestation = Some(attestation);
        Ok(record)
    }

    /// Validates one handed-over message. The error is the message's id (as far as
    /// readable) and why it is refused for good.
    fn check_handover(
        &self,
        node: &CenterId,
        m: Value,
    ) -> Result<Submission, (String, HandoverRefusal)> {
        if !m.is_object() {
            return Err((String::new(), HandoverRefusal::NotAnObject));
        }
        let id = m
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let refuse = |reason: HandoverRefusal| (id.clone(), reason);
        let WireMessage {
            id: message_id,
            from,
            to,
            message_type,
            version,
            subject,
            consent_id,
            consent_collected_by,
            payload,
            accepted_at: _,
            digest,
        } = serde_json::from_value::<WireMessage<Value>>(m).map_err(|e| {
            refuse(HandoverRefusal::Shape(crate::core::json::describe_error(
                &e,
            )))
        })?;
        let from = AgencyId::parse(&from).map_err(|e| refuse(HandoverRefusal::Sender(e)))?;
        if message_id.is_empty() {
            return Err(refuse(HandoverRefusal::NoId));
        }
        crate::core::routing::Routing::check_handed_over_by(node, &from)
            .map_err(|e| refuse(e.into()))?;
        // What remains is exactly the envelope the origin's agency sent (with the consent's
        // collector as the origin found it, which the fingerprint does not cover).
        let mut envelope = json!({
            "id": message_id,
            "type": message_type,
            "version": version,
            "to": to,
            "subject": subject,
            "consent_id": consent_id,
            "payload": payload,
        });
        if let Some(collector) = consent_collected_by {
            envelope["consent_collected_by"] = Value::String(collector);
        }
        let envelope = self
            .envelope(envelope, &from)
            .map_err(|v| refuse(HandoverRefusal::Invalid(v)))?;
        self.routing()
            .check_incoming(node, &from, &envelope.to, envelope.message_type)
            .map_err(|e| refuse(e.into()))?;
        let now = self.ledger.clock().now();
        let submission = Submission::new(
            &from,
            envelope,
            Route::Local,
            self.data_keys.as_deref(),
            now,
        )
        .map_err(|e| refuse(HandoverRefusal::Store(e)))?;
        if submission.digest() != digest {
            let ours = submission.digest().to_owned();
            return Err(refuse(HandoverRefusal::Digest { sent: digest, ours }));
        }
        Ok(submission)
    }
}
