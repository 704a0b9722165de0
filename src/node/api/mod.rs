//! The HTTP API: the agency endpoints (`/v1/…`), the node-to-node endpoint
//! (`/federation/v1/batches`, in [`federation`]), the operator endpoints of this node's own
//! certificate (`/admin/v1/…`, in [`admin`]), the privacy officer's reports (`/v1/privacy/…`,
//! in [`privacy`]) and web console (`/console/`, in [`console`]), request limits, decoding,
//! and the mapping of every error to a problem+json response.
//!
//! Architecture invariants, enforced here:
//! - Only this module knows about HTTP.
//! - The caller's identity is the [`Peer`] fixed at the TLS handshake; no field of a request
//!   can change it. Each endpoint family admits one role: agency endpoints only agencies
//!   registered here, the federation endpoint only other centers' nodes listed in the signed
//!   directory, the admin endpoints only this node's own certificate, the privacy reports
//!   and the console only privacy officers registered here.
//! - A request body is read only up to the configured limit; larger bodies get 413 before
//!   anything is parsed.

pub mod admin;
pub mod consent;
pub mod console;
pub mod federation;
pub mod privacy;
pub mod problem;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use tokio::sync::watch;

use crate::config::Limits;
use crate::core::identity::{AgencyId, Anonymous, CenterId, Identity, Peer};
use crate::core::keys::SigningKey;
use crate::core::message::{Envelope, MessageId};
use crate::core::routing::{RouteError, Routing};
use crate::core::schema::{Schemas, Violation};
use crate::node::inbox::{Inbox, InboxError};
use crate::node::ledger::{state_name, Ledger, LedgerError, Submission};
use crate::node::store::{Store, StoreError};

pub use problem::Problem;

/// The OpenAPI document kept in the repository.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Most ids one ack may carry.
pub const ACK_IDS_MAX: usize = 1000;

/// Everything a request handler needs. Built once by the node.
pub struct Api {
    /// Compiled schemas.
    pub schemas: Schemas,
    /// The single writer.
    pub ledger: Ledger,
    /// Pull and ack.
    pub inbox: Inbox,
    /// Read access to the store.
    pub store: Store,
    /// Who is where (replaced whole when a newer signed directory is loaded).
    pub routing: watch::Receiver<Arc<Routing>>,
    /// This node's key for signing receipts (federated nodes only).
    pub signing_key: Option<Arc<SigningKey>>,
    /// Data keys that seal payloads at rest (`[storage]`), if configured.
    pub data_keys: Option<Arc<crate::core::vault::DataKeys>>,
    /// This node's center.
    pub center: CenterId,
    /// Privacy officers registered at this node.
    pub officers: Vec<crate::core::identity::OfficerId>,
    /// Limits.
    pub limits: Limits,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

type Resp = Response<Full<Bytes>>;

impl Api {
    /// Handles one request from `peer`. Never fails: every error is a problem response.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: Arc<Peer>) -> Resp {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let result = self.route(req, &peer, &method, &path).await;
        let resp = result.unwrap_or_else(Problem::into_response);
        tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        method: &Method,
        path: &str,
    ) -> Result<Resp, Problem> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (segments.as_slice(), method) {
            (["healthz"], &Method::GET) => {
                Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
            }
            (["readyz"], &Method::GET) => Ok(self.readyz()),
            (["v1", "openapi.json"], &Method::GET) => Ok(raw_json(StatusCode::OK, OPENAPI)),
            (["v1", "messages"], &Method::POST) => {
                let sender = self.agency(peer)?;
                self.push(req, sender).await
            }
            (["v1", "messages", id], &Method::GET) => {
                let sender = self.agency(peer)?;
                self.status(sender, id)
            }
            (["v1", "inbox"], &Method::GET) => {
                let recipient = self.agency(peer)?;
                self.pull(req.uri().query(), recipient).await
            }
            (["v1", "inbox", "ack"], &Method::POST) => {
                let recipient = self.agency(peer)?;
                self.ack(req, recipient).await
            }
            (["v1", "privacy", "subjects", subject, "disclosures"], &Method::GET) => {
                let officer = self.officer(peer)?;
                self.disclosures(&req, officer, subject).await
            }
            (["v1", "privacy", "subjects", _, "disclosures"], _) => Err(method_not_allowed("GET")),
            (
                ["v1", "privacy", name @ ("consents" | "refusals" | "withdrawals" | "audit")],
                &Method::GET,
            ) => {
                let officer = self.officer(peer)?;
                self.report(&req, officer, name).await
            }
            (["v1", "privacy", "consents" | "refusals" | "withdrawals" | "audit"], _) => {
                Err(method_not_allowed("GET"))
            }
            (["console", ..], &Method::GET) => {
                self.officer(peer)?;
                Ok(console::asset(&segments[1..]))
            }
            (["console", ..], _) => Err(method_not_allowed("GET")),
            (["v1", "consents"], &Method::POST) => {
                let agency = self.agency(peer)?;
                self.register_consent(req, agency).await
            }
            (["v1", "consents", id], &Method::GET) => {
                let agency = self.agency(peer)?;
                self.consent_view(agency, id)
            }
            (["v1", "consents", id, "withdraw"], &Method::POST) => {
                let agency = self.agency(peer)?;
                self.withdraw_consent(req, agency, id).await
            }
            (["v1", "consents"] | ["v1", "consents", _, "withdraw"], _) => {
                Err(method_not_allowed("POST"))
            }
            (["v1", "consents", _], _) => Err(method_not_allowed("GET")),
            (["federation", "v1", "batches"], &Method::POST) => {
                let node = self.peer_node(peer)?;
                self.receive_batch(req, node).await
            }
            (["admin", "v1", "outbox"], &Method::GET) => {
                self.operator(peer)?;
                self.outbox_list()
            }
            (["admin", "v1", "outbox", action], &Method::POST) => {
                let actor = self.operator(peer)?;
                self.outbox_action(req, actor, action).await
            }
            (["federation", "v1", "batches"] | ["admin", "v1", "outbox", _], _) => {
                Err(method_not_allowed("POST"))
            }
            (["admin", "v1", "outbox"], _) => Err(method_not_allowed("GET")),
            (["healthz"] | ["readyz"] | ["v1", "openapi.json"] | ["v1", "inbox"], _)
            | (["v1", "messages", _], _) => Err(method_not_allowed("GET")),
            (["v1", "messages"] | ["v1", "inbox", "ack"], _) => Err(method_not_allowed("POST")),
            _ => Err(Problem::not_found(format!("no endpoint {path}"))),
        }
    }

    /// The current directory view.
    fn routing(&self) -> Arc<Routing> {
        self.routing.borrow().clone()
    }

    /// The agency behind the connection, if this node knows it.
    fn agency<'p>(&self, peer: &'p Peer) -> Result<&'p AgencyId, Problem> {
        match peer {
            Ok(Identity::Agency(a)) if self.routing().is_local_agency(a) => Ok(a),
            Ok(Identity::Agency(a)) => Err(Problem::forbidden(
                "unknown-identity",
                format!("agency {a} is not registered at this node"),
            )),
            Ok(other) => Err(Problem::forbidden(
                "wrong-role",
                format!("{other} may not use the agency API"),
            )),
            Err(Anonymous::NoPlusgateUri | Anonymous::Unparseable) => Err(Problem::forbidden(
                "unknown-identity",
                "the client certificate carries no plusgate identity (SAN URI urn:plusgate:…)",
            )),
        }
    }

    fn readyz(&self) -> Resp {
        match self.ledger.failure() {
            None => json_response(StatusCode::OK, &json!({"status": "ready"})),
            Some(reason) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                format!("the node does not accept writes: {reason}"),
            )
            .into_response(),
        }
    }

    async fn push(&self, req: Request<Incoming>, sender: &AgencyId) -> Result<Resp, Problem> {
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
            Ok(accepted) => Ok(json_response(
                StatusCode::ACCEPTED,
                &json!({"id": accepted.id.as_str(), "status": "accepted", "accepted_at": accepted.accepted_at}),
            )),
            Err(e) => Err(ledger_problem(e)),
        }
    }

    /// Validates a body against the envelope and payload schemas and the cross-field rules,
    /// for `sender`; every violation found.
    fn envelope(&self, body: Value, sender: &AgencyId) -> Result<Envelope, Vec<Violation>> {
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

    fn status(&self, sender: &AgencyId, id: &str) -> Result<Resp, Problem> {
        let not_found = || Problem::not_found(format!("you sent no message {id}"));
        let id = MessageId::parse(id).ok_or_else(not_found)?;
        let record = self
            .store
            .message(&id)
            .map_err(store_problem)?
            .filter(|m| m.from == sender.as_str())
            .ok_or_else(not_found)?;
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
            "id": record.id,
            "type": record.message_type,
            "version": record.version,
            "to": record.to,
            "subject": record.subject,
            "consent_id": record.consent_id,
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
                    crate::node::store::DeliveryState::Delivered
                    | crate::node::store::DeliveryState::Withheld =>
                        self.store.receipt(&id).map_err(store_problem)?,
                    _ => None,
                },
            });
        }
        if let Some(lifecycle) = &delivery.lifecycle {
            body["lifecycle"] = json!(lifecycle);
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

    async fn pull(&self, query: Option<&str>, recipient: &AgencyId) -> Result<Resp, Problem> {
        let mut max = 10usize.min(self.limits.inbox_pull_max);
        let mut wait = Duration::ZERO;
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "max" => {
                    max = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=self.limits.inbox_pull_max).contains(n))
                        .ok_or_else(|| {
                            Problem::bad_request(format!(
                                "max must be an integer from 1 to {}",
                                self.limits.inbox_pull_max
                            ))
                        })?;
                }
                "wait" => {
                    let secs = v.parse::<u64>().map_err(|_| {
                        Problem::bad_request("wait must be a whole number of seconds")
                    })?;
                    // Longer waits are shortened, not refused: a client asking for more
                    // than the node allows still gets a useful long poll.
                    wait = Duration::from_secs(secs).min(self.limits.inbox_wait_max);
                }
                other => {
                    return Err(Problem::bad_request(format!(
                        "unknown query parameter `{other}`"
                    )))
                }
            }
        }
        let messages = self
            .inbox
            .pull(recipient, max, wait)
            .await
            .map_err(|e| match e {
                InboxError::Store(e) => store_problem(e),
                InboxError::Ledger(e) => ledger_problem(e),
            })?;
        let messages: Vec<Value> = messages
            .into_iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "from": m.from,
                    "type": m.message_type,
                    "version": m.version,
                    "subject": m.subject,
                    "consent_id": m.consent_id,
                    "payload": m.payload,  // opened by the inbox
                    "received_at": m.accepted_at,
                })
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({"messages": messages}),
        ))
    }

    async fn ack(&self, req: Request<Incoming>, recipient: &AgencyId) -> Result<Resp, Problem> {
        let body = self.read_json(req).await?;
        let ids = parse_ack(&body).map_err(Problem::invalid)?;
        match self.inbox.ack(recipient, ids).await {
            Ok(acked) => {
                let acked: Vec<&str> = acked.iter().map(MessageId::as_str).collect();
                Ok(json_response(StatusCode::OK, &json!({ "acked": acked })))
            }
            Err(e) => Err(ledger_problem(e)),
        }
    }

    /// Reads a JSON body: content type checked (415), size bounded (413), duplicate keys
    /// refused (400).
    async fn read_json(&self, req: Request<Incoming>) -> Result<Value, Problem> {
        self.read_json_up_to(req, self.limits.body_bytes_max).await
    }

    /// [`Self::read_json`] with another size limit (node-to-node batches are larger).
    async fn read_json_up_to(
        &self,
        req: Request<Incoming>,
        limit: usize,
    ) -> Result<Value, Problem> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("send application/json, not `{content_type}`"),
            ));
        }
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body limit is {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let bytes = Limited::new(req.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    Problem::bad_request(format!("could not read the body: {e}"))
                }
            })?
            .to_bytes();
        crate::core::json::parse_strict(&bytes)
            .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))
    }
}

/// `{"ids": [...]}` → ids, or the violations.
fn parse_ack(body: &Value) -> Result<Vec<MessageId>, Vec<Violation>> {
    let violation = |pointer: &str, message: &str| Violation {
        pointer: pointer.into(),
        message: message.into(),
    };
    let obj = body
        .as_object()
        .ok_or_else(|| vec![violation("", "must be an object {\"ids\": [...]}")])?;
    if let Some(k) = obj.keys().find(|k| *k != "ids") {
        return Err(vec![violation(&format!("/{k}"), "unknown property")]);
    }
    let ids = obj
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| vec![violation("/ids", "must be an array of message ids")])?;
    if ids.is_empty() || ids.len() > ACK_IDS_MAX {
        return Err(vec![violation("/ids", "must hold 1 to 1000 ids")]);
    }
    let mut out = Vec::with_capacity(ids.len());
    let mut bad = Vec::new();
    for (i, v) in ids.iter().enumerate() {
        match v.as_str().and_then(MessageId::parse) {
            Some(id) => out.push(id),
            None => bad.push(violation(&format!("/ids/{i}"), "is not a message id")),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad)
    }
}

fn method_not_allowed(allow: &'static str) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("use {allow}"),
    )
    .allow(allow)
}

fn ledger_problem(e: LedgerError) -> Problem {
    match e {
        LedgerError::IdConflict(id) => Problem::new(
            StatusCode::CONFLICT,
            "id-conflict",
            "Message id already used",
            format!("id {id} was already used for a different message; choose a new id"),
        ),
        LedgerError::NotYours(id) => Problem::forbidden(
            "not-your-message",
            format!("message {id} is not in your inbox; nothing was acknowledged"),
        ),
        LedgerError::NoSuchMessage(id) => Problem::not_found(format!(
            "no message {id} in your inbox; nothing was acknowledged"
        )),
        LedgerError::OutboxFull(center) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outbox-full",
            "Outbox full",
            format!(
                "too many messages wait for center {center}, which has not been reachable; \
                 nothing was accepted, retry later"
            ),
        )
        .retry_after(60),
        LedgerError::ConsentConflict(_) => Problem::new(
            StatusCode::CONFLICT,
            "consent-conflict",
            "Consent id already used",
            format!("{e}; register a changed consent under a new id"),
        ),
        LedgerError::NoSuchConsent(_) => Problem::not_found(e.to_string()),
        LedgerError::NotCollector(_) => Problem::forbidden("not-collector", e.to_string()),
        LedgerError::PeerRollback(_) => Problem::new(
            StatusCode::CONFLICT,
            "audit-rollback",
            "Audit log rolled back",
            e.to_string(),
        ),
        LedgerError::WrongState { .. } => Problem::new(
            StatusCode::CONFLICT,
            "wrong-state",
            "Not possible in this state",
            e.to_string(),
        ),
        LedgerError::Refused(refusal) => Problem::forbidden(refusal.kind(), refusal.to_string()),
        // What is left is the node's trouble, not the request's: 503 with Retry-After when
        // the same request may succeed later, else 500 (a damaged record stays damaged).
        _ if e.retryable() => Problem::unavailable(&e),
        _ => Problem::internal("corrupt-record", &e),
    }
}

fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::Corrupt { .. } => Problem::internal("corrupt-record", &e),
        _ => Problem::unavailable(&e),
    }
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Resp {
    raw_json(status, &serde_json::to_string(body).unwrap_or_default())
}

fn raw_json(status: StatusCode, body: &str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
