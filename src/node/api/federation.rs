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

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Map, Value};

use super::{json_response, ledger_problem, Api, Problem, Resp};
use crate::core::audit::Checkpoint;
use crate::core::consent::{ConsentRecord, Registration};
use crate::core::identity::{AgencyId, Anonymous, CenterId, Identity, Peer};
use crate::core::message::MessageType;
use crate::core::routing::Route;
use crate::core::wire::{ItemResult, Receipt, WireConsent, WithheldReport, BATCH_LEN_MAX};
use crate::node::ledger::{now_rfc3339, LedgerError, Submission};

/// Largest batch body accepted (a forwarder builds at most `outbox::BATCH_BYTES_MAX`).
pub const BATCH_BODY_BYTES_MAX: usize = 32 << 20;

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
        let body = self.read_json_up_to(req, BATCH_BODY_BYTES_MAX).await?;
        let expected =
            || Problem::bad_request("expected {\"messages\": [...], \"checkpoint\"?: {...}}");
        let Value::Object(mut obj) = body else {
            return Err(expected());
        };
        let messages = match obj.remove("messages") {
            Some(Value::Array(messages)) => messages,
            _ => return Err(expected()),
        };
        let consents: Vec<WireConsent> = match obj.remove("consents") {
            None => Vec::new(),
            Some(c) => serde_json::from_value(c).map_err(|e| {
                Problem::bad_request(format!("`consents` is not a list of consents: {e}"))
            })?,
        };
        let withheld: Vec<WithheldReport> = match obj.remove("withheld") {
            None => Vec::new(),
            Some(w) => serde_json::from_value(w).map_err(|e| {
                Problem::bad_request(format!("`withheld` is not a list of reports: {e}"))
            })?,
        };
        let checkpoint = match obj.remove("checkpoint") {
            None => None,
            Some(c) => Some(serde_json::from_value::<Checkpoint>(c).map_err(|e| {
                Problem::bad_request(format!("`checkpoint` is not a checkpoint: {e}"))
            })?),
        };
        if let Some(k) = obj.keys().next() {
            return Err(Problem::bad_request(format!("unknown member `{k}`")));
        }
        if messages.len() > BATCH_LEN_MAX {
            return Err(Problem::bad_request(format!(
                "a batch holds at most {BATCH_LEN_MAX} messages"
            )));
        }
        // Check every message (spread over the cores: validation is most of a batch's
        // cost); only the valid ones go to the ledger, as one command, so they enter the
        // inboxes in batch order.
        let checked = crate::node::parallel::map_owned(messages, |m| self.check_handover(node, m));
        let mut results: Vec<(String, Option<String>)> = Vec::with_capacity(checked.len());
        let mut valid = Vec::new();
        for (i, outcome) in checked.into_iter().enumerate() {
            match outcome {
                Ok(submission) => {
                    results.push((submission.id().to_string(), None));
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
        let actor = Identity::Node(node.clone()).uri();
        let outcomes = if valid.is_empty() && consents.is_empty() && withheld.is_empty() {
            Vec::new()
        } else {
            self.ledger
                .receive(actor, node.clone(), consents, withheld, valid)
                .await
                .map_err(ledger_problem)?
        };
        // Durable now: sign the receipts (in parallel too; a signature is tens of µs).
        let center = &self.center;
        let signed = crate::node::parallel::map_owned(outcomes, |outcome| {
            outcome.map(|r| Receipt::sign(&key, center, r.id.as_str(), &r.digest, &r.received_at))
        });
        let mut signed = signed.into_iter();
        let items: Vec<ItemResult> = results
            .into_iter()
            .map(|(id, refused)| match refused {
                Some(reason) => ItemResult {
                    id,
                    receipt: None,
                    refused: Some(reason),
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
                            "the id is already used at this node for a different message".into(),
                        ),
                    },
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
        // Keeping the sender's checkpoint is evidence, not part of the hand-over: it is not
        // waited for (its fsync would delay every batch's answer).
        if let (Some(checkpoint), Some(peer)) = (checkpoint, self.routing().peer(node)) {
            let (ledger, node, key) = (self.ledger.clone(), node.clone(), peer.signing_key.clone());
            tokio::spawn(async move {
                crate::node::peers::keep_peer_checkpoint(&ledger, &node, &key, checkpoint).await;
            });
        }
        let mut answer = json!({ "results": items });
        if let Some(own) = self.ledger.latest_checkpoint() {
            answer["checkpoint"] = json!(own);
        }
        Ok(json_response(StatusCode::OK, &answer))
    }

    /// Checks a consent a peer sent: its document passes `consent.v1.json` and holds no
    /// RRN, and the sending center is one it names (its collector's or a recipient's): a
    /// node speaks only for consents its own center is party to.
    fn check_wire_consent(&self, node: &CenterId, c: WireConsent) -> Result<ConsentRecord, String> {
        let document: Value =
            serde_json::from_str(c.document.get()).map_err(|e| format!("not JSON: {e}"))?;
        let id = document["id"].as_str().unwrap_or("?").to_owned();
        self.schemas
            .validate_payload(MessageType::Consent, 1, &document)
            .map_err(|v| {
                format!(
                    "consent {id} does not pass consent.v1.json ({} violations)",
                    v.len()
                )
            })?;
        if !crate::core::rrn::find(&document).is_empty() {
            return Err(format!("consent {id} holds an RRN-shaped value"));
        }
        let collector = document
            .pointer("/collected_by/agency")
            .and_then(Value::as_str)
            .and_then(|a| AgencyId::parse(a).ok())
            .ok_or_else(|| format!("consent {id} names no collecting agency"))?;
        let registration = Registration::new(&document, &collector, &now_rfc3339())
            .map_err(|e| format!("consent {id}: {e}"))?;
        let mut record = registration.record;
        let party = std::iter::once(collector.as_str())
            .chain(record.recipients.iter().map(String::as_str))
            .filter_map(|a| AgencyId::parse(a).ok())
            .any(|a| a.center() == node);
        if !party {
            return Err(format!("consent {id} names no agency of center {node}"));
        }
        if c.status == "withdrawn" {
            let change = crate::core::consent::latest_withdrawal(&c.history).ok_or_else(|| {
                format!("consent {id} is withdrawn but its history says not when")
            })?;
            record.status = "withdrawn".into();
            record.history.push(change.clone());
        }
        Ok(record)
    }

    /// Validates one handed-over message. The error is the message's id (as far as
    /// readable) and why it is refused for good.
    fn check_handover(&self, node: &CenterId, m: Value) -> Result<Submission, (String, String)> {
        let Value::Object(mut obj) = m else {
            return Err((String::new(), "not an object".into()));
        };
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let refuse = |reason: String| (id.clone(), reason);
        let take_str = |name: &str, obj: &mut Map<String, Value>| match obj.remove(name) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(refuse(format!("`{name}` missing or not a string"))),
        };
        let from = take_str("from", &mut obj)?;
        let digest = take_str("digest", &mut obj)?;
        let _origin_accepted_at = take_str("accepted_at", &mut obj)?;
        let from = AgencyId::parse(&from)
            .map_err(|e| refuse(format!("`from` is not an agency id: {e}")))?;
        if id.is_empty() {
            return Err(refuse("a handed-over message must carry its id".into()));
        }
        crate::core::routing::Routing::check_handed_over_by(node, &from).map_err(refuse)?;
        // What remains is exactly the envelope the origin's agency sent.
        let envelope = self.envelope(Value::Object(obj), &from).map_err(|v| {
            let list: Vec<String> = v
                .iter()
                .take(10)
                .map(|v| format!("{}: {}", v.pointer, v.message))
                .collect();
            refuse(format!("invalid message: {}", list.join("; ")))
        })?;
        self.routing()
            .check_incoming(node, &from, &envelope.to, envelope.message_type)
            .map_err(refuse)?;
        let submission = Submission::new(&from, envelope, Route::Local, self.data_keys.as_deref())
            .map_err(|e| refuse(format!("cannot store it: {e}")))?;
        if submission.digest() != digest {
            return Err(refuse(format!(
                "digest {digest} differs from this node's {} for the same message",
                submission.digest()
            )));
        }
        Ok(submission)
    }
}
