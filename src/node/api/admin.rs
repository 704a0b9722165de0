//! `/admin/v1/outbox…`: the operator's view of the outboxes, behind `plusgate outbox
//! list|retry|drop --config FILE`.
//!
//! Architecture invariant: only this node's own certificate (`urn:plusgate:node:<self>`)
//! gets in. Whoever can read the node's key already controls the node; the CLI uses that key,
//! so operators need no separate credential and nobody else gets one.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::body::json_response;
use super::inbox::parse_ack;
use super::problem::{ledger_problem, store_problem};
use super::{Api, Problem, Resp};
use crate::core::identity::{Identity, Peer};
use crate::core::message::MessageId;
use crate::node::ledger::{state_name, LedgerError};
use crate::node::store::StoreError;

/// Most outbox entries listed per center.
const LIST_MAX: usize = 1000;

impl Api {
    /// This node's own identity, if that is who is calling.
    pub(super) fn operator(&self, peer: &Peer) -> Result<Identity, Problem> {
        match peer {
            Ok(Identity::Node(c)) if c == &self.center => Ok(Identity::Node(c.clone())),
            Ok(other) => Err(Problem::forbidden(
                "wrong-role",
                format!(
                    "{other} may not use the operator API; only this node's own certificate may"
                ),
            )),
            Err(_) => Err(Problem::forbidden(
                "unknown-identity",
                "the client certificate carries no plusgate identity",
            )),
        }
    }

    pub(super) fn outbox_list(&self) -> Result<Resp, Problem> {
        let lengths = self.store.outbox_lengths().map_err(store_problem)?;
        let mut centers = serde_json::Map::new();
        for (peer, len) in &lengths {
            let mut messages = Vec::new();
            for entry in self.store.outbox(peer, None).take(LIST_MAX) {
                let entry = entry.map_err(store_problem)?;
                messages.push(self.describe(&entry.id)?);
            }
            centers.insert(
                peer.to_string(),
                json!({"queued": len, "messages": messages}),
            );
        }
        let mut dead = Vec::new();
        for id in self.store.dead_letters().take(LIST_MAX) {
            dead.push(self.describe(&id.map_err(store_problem)?)?);
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({"centers": centers, "dead_lettered": dead}),
        ))
    }

    fn describe(&self, id: &MessageId) -> Result<Value, Problem> {
        // A damaged record is listed as such, not a reason to fail the whole list: the
        // operator needs the list most when something is wrong.
        let (m, d) = match (self.store.message(id), self.store.delivery(id)) {
            (Ok(m), Ok(d)) => (m, d),
            (Err(e @ StoreError::Corrupt { .. }), _) | (_, Err(e @ StoreError::Corrupt { .. })) => {
                return Ok(
                    json!({"id": id.as_str(), "state": "damaged", "last_error": e.to_string()}),
                );
            }
            (Err(e), _) | (_, Err(e)) => return Err(store_problem(e)),
        };
        Ok(match (m, d) {
            (Some(m), Some(d)) => json!({
                "id": m.id,
                "from": m.from,
                "to": m.to,
                "type": m.message_type,
                "accepted_at": m.accepted_at,
                "state": state_name(d.state),
                "failed_attempts": d.failed_attempts,
                "last_error": d.last_error,
            }),
            _ => json!({"id": id.as_str(), "state": "missing"}),
        })
    }

    /// The key of the message an operator names: a key (`<from>/<id>`, as listed) names
    /// itself; a bare id names the one message with that id sent by an agency of this
    /// center (only theirs are in outboxes), or one from before ids were scoped. Two
    /// agencies' messages with that id: 409, listing their keys.
    fn operator_key(&self, id: &MessageId) -> Result<MessageId, Problem> {
        if id.sender().is_some() {
            return Ok(id.clone());
        }
        let mut found: Vec<MessageId> = Vec::new();
        for agency in self.routing().local_agencies() {
            let key = MessageId::scoped(agency, id);
            match self.store.message(&key) {
                Ok(None) => {}
                // A damaged record is still a message the operator may name.
                Ok(Some(_)) | Err(StoreError::Corrupt { .. }) => found.push(key),
                Err(e) => return Err(store_problem(e)),
            }
        }
        match found.len() {
            0 => Ok(id.clone()),
            1 => Ok(found.remove(0)),
            _ => Err(Problem::new(
                StatusCode::CONFLICT,
                "ambiguous-id",
                "Several messages with this id",
                format!(
                    "{} agencies sent a message {id}: name one as {}",
                    found.len(),
                    found
                        .iter()
                        .map(MessageId::as_str)
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
        }
    }

    pub(super) async fn outbox_action(
        &self,
        req: Request<Incoming>,
        actor: Identity,
        action: &str,
    ) -> Result<Resp, Problem> {
        let body = self.read_json(req).await?;
        let named = parse_ack(&body).map_err(Problem::invalid)?;
        let mut ids = Vec::with_capacity(named.len());
        for id in &named {
            ids.push(self.operator_key(id)?);
        }
        let mut done = Vec::new();
        match action {
            "retry" => {
                for id in ids {
                    self.ledger
                        .requeue(actor.clone(), id.clone())
                        .await
                        .map_err(|e| match e {
                            LedgerError::NoSuchMessage(id) => {
                                Problem::not_found(format!("no message {id} at this node"))
                            }
                            e => ledger_problem(e),
                        })?;
                    done.push(id);
                }
            }
            "drop" => {
                for id in ids {
                    let n = self
                        .ledger
                        .dead_letter(
                            actor.clone(),
                            vec![(id.clone(), "dropped by the operator".into())],
                        )
                        .await
                        .map_err(ledger_problem)?;
                    if n == 0 {
                        return Err(Problem::not_found(format!(
                            "message {id} is not in an outbox{}",
                            if done.is_empty() {
                                ""
                            } else {
                                "; the ones before it were dropped"
                            }
                        )));
                    }
                    done.push(id);
                }
            }
            other => {
                return Err(Problem::not_found(format!(
                    "no outbox action `{other}`; use retry or drop"
                )))
            }
        }
        // As the operator named them.
        let done: Vec<&str> = named[..done.len()].iter().map(MessageId::as_str).collect();
        Ok(json_response(StatusCode::OK, &json!({ action: done })))
    }
}
