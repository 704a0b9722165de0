//! `POST /v1/messages` (push) and `GET /v1/messages/{id}` (its status), for the sending
//! agency that [`Api::route`] admitted.
//!
//! A push, in order: the body read and parsed strictly (`body`: 415, 413, 400), validated
//! against the envelope and payload schemas and the cross-field rules (422), the sender's
//! right to send the type and the recipient's place looked up in the directory (403, 404),
//! the [`Submission`] prepared on this task, and the ledger's answer: `202` only once the
//! message is durable, the original `202` for an identical retry, `409` for a reused id.
//!
//! Invariant: the status of a message is shown only to its sender, and only once it is
//! durable; before that (or to anyone else) it does not exist.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::body::json_response;
use super::problem::{ledger_problem, store_problem};
use super::{Api, Problem, Resp};
use crate::core::identity::AgencyId;
use crate::core::message::{Envelope, MessageId};
use crate::core::routing::RouteError;
use crate::core::schema::Violation;
use crate::node::ledger::{state_name, Submission};
use crate::node::store::DeliveryState;

impl Api {
    /// `POST /v1/messages` from `sender`.
    pub(super) async fn push(
        &self,
        req: Request<Incoming>,
        sender: &AgencyId,
    ) -> Result<Resp, Problem> {
        let body = self.read_json(req).await?;
        let envelope = self.envelope(body, sender).map_err(Problem::invalid)?;
        let routing = self.routing();
        if !routing.may_send(sender, envelope.message_type) {
            return Err(Problem::forbidden(
                "type-not-allowed",
                format!("{sender} may not send {} messages", envelope.message_type),
            ));
        }
        let route = routing
            .route(&envelope.to, envelope.message_type)
            .map_err(|e| match e {
                RouteError::UnknownRecipient(detail) => Problem::new(
                    StatusCode::NOT_FOUND,
                    "unknown-recipient",
                    "Unknown recipient",
                    detail,
                ),
                RouteError::NotReceived { .. } => {
                    Problem::forbidden("type-not-received", e.to_string())
                }
            })?;
        let now = self.ledger.clock().now();
        let submission = Submission::new(sender, envelope, route, self.data_keys.as_deref(), now)
            .map_err(|e| Problem::unavailable(&e))?;
        match self.ledger.accept(submission).await {
            Ok(accepted) => {
                self.metrics.pushed(sender);
                tracing::Span::current().record("message_id", accepted.id.public());
                Ok(json_response(
                    StatusCode::ACCEPTED,
                    &json!({"id": accepted.id.public(), "status": "accepted", "accepted_at": accepted.accepted_at.as_str()}),
                ))
            }
            Err(e) => Err(ledger_problem(e)),
        }
    }

    /// Validates a body against the envelope and payload schemas and the cross-field rules,
    /// for `sender`; every violation found.
    pub(super) fn envelope(
        &self,
        body: Value,
        sender: &AgencyId,
    ) -> Result<Envelope, Vec<Violation>> {
        self.schemas.validate(&body)?;
        Envelope::from_validated(body, sender).map_err(|rules| {
            rules
                .into_iter()
                .map(|r| Violation {
                    pointer: r.pointer,
                    message: r.message,
                })
                .collect()
        })
    }

    /// `GET /v1/messages/{id}` from `sender`: the message's delivery state, forwarding,
    /// lifecycle and withholding, as this node knows them.
    pub(super) fn status(&self, sender: &AgencyId, id: &str) -> Result<Resp, Problem> {
        let not_found = || Problem::not_found(format!("you sent no message {id}"));
        // Only the caller's own messages are looked for: the id scoped by the caller.
        let scoped = MessageId::scoped(sender, &MessageId::parse(id).ok_or_else(not_found)?);
        let record = self
            .store
            .message_by_key_or_legacy(&scoped)
            .map_err(store_problem)?
            .filter(|m| m.from == sender.as_str())
            .ok_or_else(not_found)?;
        let id = MessageId::from_key(&record.id).ok_or_else(not_found)?;
        // Not yet durable (its group is still being fsynced): the sender has not been told
        // it was accepted, and a crash could still undo it, so it does not exist yet.
        let durable_seq = self.ledger.durable_seq();
        let delivery = self
            .store
            .delivery(&id)
            .map_err(store_problem)?
            .filter(|d| d.seq < durable_seq)
            .ok_or_else(not_found)?;
        let mut body = json!({
            "id": id.public(),
            "type": record.message_type,
            "version": record.version,
            "to": record.to,
            "subject": record.subject,
            "consent_id": record.consent_id,
            "consent_collected_by": record.consent_by,
            "accepted_at": record.accepted_at,
            "state": state_name(delivery.state),
            "first_pulled_at": delivery.first_pulled_at,
            "acked_at": delivery.acked_at,
        });
        if let Some(peer) = &delivery.peer {
            body["forwarding"] = json!({
                "center": peer,
                "failed_attempts": delivery.failed_attempts,
                "last_error": delivery.last_error,
                "delivered_at": delivery.delivered_at,
                // A message withheld at the recipient's node after delivery keeps the
                // receipt that proves the hand-over.
                "receipt": match delivery.state {
                    DeliveryState::Delivered | DeliveryState::Withheld =>
                        self.store.receipt(&id).map_err(store_problem)?,
                    _ => None,
                },
            });
        }
        if let Some(lifecycle) = &delivery.lifecycle {
            // What the referral's sender is told; the statistics' marks stay inside.
            body["lifecycle"] = json!({
                "status": lifecycle.status,
                "changed_at": lifecycle.changed_at,
            });
            // The status message's id as its sender wrote it (the record keeps its key).
            body["lifecycle"]["message_id"] =
                json!(crate::core::message::public_of(&lifecycle.message_id));
        }
        // Why it never reached the recipient (its consent was withdrawn), and whether the
        // payload is gone from this node.
        if let Some(withheld) = &delivery.withheld {
            body["withheld"] = json!(withheld);
        }
        if let Some(erased) = &record.erased {
            body["payload_erased"] = json!(erased);
        }
        Ok(json_response(StatusCode::OK, &body))
    }
}
