//! The HTTP API: the agency endpoints (`/v1/…`), the node-to-node endpoint
//! (`/federation/v1/batches`), the operator endpoints of this node's own certificate
//! (`/admin/v1/…`), the privacy officer's reports (`/v1/privacy/…`) and web console
//! (`/console/`).
//!
//! This file holds the [`Api`] and `Api::route`, the table of every endpoint and the role
//! each admits. Each endpoint family lives in its own file, from the handler `route` calls
//! to the ledger call:
//! - `messages`: push (`POST /v1/messages`) and its status (`GET /v1/messages/{id}`);
//! - `inbox`: pull (`GET /v1/inbox`) and ack (`POST /v1/inbox/ack`);
//! - [`routes`]: the route table the router checks first (404, 405) and the OpenAPI
//!   document is tested against; [`schemas`]: the JSON Schemas (`GET /v1/schemas/{file}`);
//! - [`consent`]: the consent registry (`/v1/consents…`);
//! - [`federation`]: batches handed over by other centers' nodes;
//! - [`admin`]: the operator's outbox view and actions; `backup`: backups of the running
//!   node (`/admin/v1/backups…`);
//! - [`privacy`] and [`console`]: the privacy officer's reports and web console;
//! - [`cross_site`]: the refusal of cross-site requests to the officer endpoints;
//! - `body`: reading request bodies (content type, size limit, strict JSON) and writing
//!   JSON answers; [`budget`]: the bytes of bodies buffered at once, node-wide and per
//!   identity;
//! - [`problem`]: the one place errors become `application/problem+json`.
//!
//! Architecture invariants, enforced here:
//! - Only this module knows about HTTP.
//! - The caller's identity is the [`Peer`] fixed at the TLS handshake; no field of a request
//!   can change it. Each endpoint family admits one role, checked in `Api::route` before
//!   anything else: agency endpoints only agencies registered here, the federation endpoint
//!   only other centers' nodes listed in the signed directory, the admin endpoints only this
//!   node's own certificate, the privacy reports and the console only privacy officers
//!   registered here.
//! - Every officer endpoint goes through one gate, `Api::officer_endpoint`: the officer role,
//!   then the refusal of cross-site requests ([`cross_site`], 403 `cross-site-request`),
//!   before anything else; every answer there carries `Cache-Control: no-store`.
//! - A request body is read only up to the configured limit and within the configured
//!   time; larger bodies get 413 and slower ones 408 before anything is parsed (`body`),
//!   and the answer goes out before the unread rest is dropped. An oversized body that
//!   declares a length of at most `body::DRAIN_BYTES_MAX` is read and discarded first, so
//!   a client that sends its whole body before reading sees the 413, not a reset.
//! - A request body is buffered only within the body budget ([`budget`]): beyond it, 503
//!   `busy` with `Retry-After`, the body unread.
//! - Every error leaves as a problem, built in [`problem`]; internal errors are logged
//!   there once and never returned in detail.

pub mod admin;
mod backup;
mod body;
pub mod budget;
pub mod consent;
pub mod console;
pub mod cross_site;
pub mod federation;
mod inbox;
mod messages;
mod observe;
pub mod privacy;
pub mod problem;
pub mod routes;
mod schemas;
mod stats;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::Limits;
use crate::core::identity::{AgencyId, Anonymous, CenterId, Identity, OfficerId, Peer};
use crate::core::keys::SigningKey;
use crate::core::routing::Routing;
use crate::core::schema::Schemas;
use crate::node::inbox::Inbox;
use crate::node::ledger::Ledger;
use crate::node::store::Store;
use body::{json_response, raw_json, BodyScope, UnreadBody};

pub use body::{Answer, Holding};

pub use inbox::ACK_IDS_MAX;
pub use problem::Problem;

/// The OpenAPI document kept in the repository.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

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
    /// Privacy officers and center managers registered at this node; replaced whole by a
    /// reload.
    pub officers: tokio::sync::watch::Receiver<Arc<crate::core::routing::Staff>>,
    /// The client TLS configuration this node reaches other nodes with (its own
    /// certificate), when federated: the statistics ask the other nodes with it.
    pub federation_tls: Option<tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>>,
    /// Limits.
    pub limits: Limits,
    /// Bytes of request bodies buffered at once (`limits.body_budget_*`).
    pub body_budget: Arc<budget::BodyBudget>,
    /// Requests, pushes, pulls and acks, for the operations listener's `/metrics`.
    pub metrics: Arc<crate::node::metrics::ApiMetrics>,
    /// The backup held for the operator's command to read (`/admin/v1/backups`).
    pub backups: Arc<crate::node::backup::Backups>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// Every handler's answer.
type Resp = Response<Full<Bytes>>;

impl Api {
    /// Handles one request from `peer`. Never fails: every error is a problem response.
    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: Arc<Peer>,
    ) -> Response<Answer> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (method_label, route) = observe::labels(&method, &path);
        // Every line logged while handling the request carries its id and route (and a
        // push its message id): never the path itself, which may name a subject.
        let request_id = observe::next_request_id();
        let span = tracing::info_span!(
            "request",
            request_id,
            route,
            message_id = tracing::field::Empty,
        );
        let unread = UnreadBody::default();
        req.extensions_mut().insert(unread.clone());
        // Holds the body's grant of the budget until the handler has returned.
        let scope = BodyScope::new(peer.as_ref().as_ref().ok().cloned());
        req.extensions_mut().insert(scope.clone());
        let result = self
            .route(req, &peer, &method, &path)
            .instrument(span.clone())
            .await;
        drop(scope);
        let mut resp = result.unwrap_or_else(Problem::into_response);
        // The id every log line of this request carries, for the caller to quote.
        resp.headers_mut()
            .insert(observe::REQUEST_ID, HeaderValue::from(request_id));
        let status = resp.status().as_u16();
        let took = started.elapsed();
        self.metrics.request(method_label, route, status, took);
        let path = path_for_log(&path);
        span.in_scope(|| {
            tracing::debug!(%method, %path, status, took_us = took.as_micros() as u64, "request");
        });
        resp.map(|body| Answer::new(body, unread.take()))
    }

    /// The table of endpoints: each path and method, the role it admits (checked first,
    /// before the body is read) and its handler. Which paths and methods exist is the route
    /// table's ([`routes::find`]): a known path with another method is a 405 naming the
    /// allowed one; anything else is a 404.
    async fn route(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        method: &Method,
        path: &str,
    ) -> Result<Resp, Problem> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // The officer gate comes before any 404 or 405 there; `officer_route` asks the table.
        if !matches!(
            segments.as_slice(),
            ["v1", "privacy", ..] | ["console", ..] | ["v1", "stats"]
        ) {
            routes::find(method, path, path)?;
        }
        match (segments.as_slice(), method) {
            (["healthz"], &Method::GET) => Ok(Api::healthz()),
            (["readyz"], &Method::GET) => Ok(self.readyz()),
            (["v1", "openapi.json"], &Method::GET) => Ok(raw_json(StatusCode::OK, OPENAPI)),
            (["v1", "schemas", file], &Method::GET) => self.schema_file(file),
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
            (["v1", "privacy", ..] | ["console", ..] | ["v1", "stats"], _) => {
                Ok(self.staff_endpoint(req, peer, method, &segments).await)
            }
            (["v1", "consents"], &Method::POST) => {
                let agency = self.agency(peer)?;
                self.register_consent(req, agency).await
            }
            (["v1", "consents", id], &Method::GET) => {
                let agency = self.agency(peer)?;
                self.consent_view(agency, id, req.uri().query())
            }
            (["v1", "consents", id, "withdraw"], &Method::POST) => {
                let agency = self.agency(peer)?;
                self.withdraw_consent(req, agency, id).await
            }
            (["federation", "v1", "batches"], &Method::POST) => {
                let node = self.peer_node(peer)?;
                self.receive_batch(req, node).await
            }
            (["federation", "v1", "resend"], &Method::POST) => {
                let node = self.peer_node(peer)?;
                self.resend(req, node).await
            }
            (["federation", "v1", "stats"], &Method::GET) => {
                let node = self.peer_node(peer)?;
                self.federation_stats(&req, node).await
            }
            (["admin", "v1", "outbox"], &Method::GET) => {
                self.operator(peer)?;
                self.outbox_list()
            }
            (["admin", "v1", "outbox", action], &Method::POST) => {
                let actor = self.operator(peer)?;
                self.outbox_action(req, actor, action).await
            }
            (["admin", "v1", "backups"], &Method::POST) => {
                self.operator(peer)?;
                self.backup_take().await
            }
            (["admin", "v1", "backups", id], &Method::GET) => {
                self.operator(peer)?;
                self.backup_piece(id, req.uri().query()).await
            }
            (["admin", "v1", "backups", id, "release"], &Method::POST) => {
                self.operator(peer)?;
                self.backup_release(id)
            }
            _ => Err(routes::unhandled(method, path)),
        }
    }

    /// Every officer endpoint (`/v1/privacy/…`, `/console/…`), behind one gate: the officer
    /// role and the refusal of cross-site requests (`Api::officer`), checked before the
    /// method, the path or the body is looked at, so a refused request runs no query and
    /// writes no audit entry. Every answer, a refusal included, is marked
    /// `Cache-Control: no-store`: it shows who received what about a person, and no cache
    /// between the officer and the node, nor the browser's own, may keep it.
    ///
    /// Center managers pass the same gate, to the statistics and the console only
    /// (`manager_route`): a manager never sees a message, a subject or a consent.
    async fn staff_endpoint(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        method: &Method,
        segments: &[&str],
    ) -> Resp {
        let answer = match self.staff_member(peer, &req) {
            Ok(privacy::Staffer::Officer(officer)) => {
                self.officer_route(req, officer, method, segments).await
            }
            Ok(privacy::Staffer::Manager(manager)) => {
                self.manager_route(req, manager, method, segments).await
            }
            Err(refused) => Err(refused),
        };
        let mut resp = answer.unwrap_or_else(Problem::into_response);
        resp.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    /// The endpoints a center manager may use, once admitted: the statistics and the
    /// console that shows them.
    async fn manager_route(
        &self,
        req: Request<Incoming>,
        manager: &crate::core::identity::ManagerId,
        method: &Method,
        segments: &[&str],
    ) -> Result<Resp, Problem> {
        let path = req.uri().path();
        routes::find(method, path, &path_for_log(path))?;
        match (segments, method) {
            (["v1", "stats"], &Method::GET) => self.stats(&req).await,
            (["console", rest @ ..], &Method::GET) => Ok(console::asset(rest, "manager")),
            _ => Err(Problem::forbidden(
                "wrong-role",
                format!("manager {manager} sees statistics only"),
            )),
        }
    }

    /// The officer endpoints, once `officer` is admitted.
    async fn officer_route(
        &self,
        req: Request<Incoming>,
        officer: &OfficerId,
        method: &Method,
        segments: &[&str],
    ) -> Result<Resp, Problem> {
        let path = req.uri().path();
        routes::find(method, path, &path_for_log(path))?;
        match (segments, method) {
            (["v1", "privacy", "subjects", subject, "disclosures"], &Method::GET) => {
                self.disclosures(&req, officer, subject).await
            }
            (
                ["v1", "privacy", name @ ("consents" | "refusals" | "withdrawals" | "audit")],
                &Method::GET,
            ) => self.report(&req, officer, name).await,
            (["console", rest @ ..], &Method::GET) => Ok(console::asset(rest, "officer")),
            (["v1", "stats"], &Method::GET) => self.stats(&req).await,
            _ => Err(routes::unhandled(method, &path_for_log(req.uri().path()))),
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

    /// `GET /healthz`: the process answers. Also served by the operations listener.
    pub fn healthz() -> Resp {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    }

    /// `GET /readyz`: ready while the ledger accepts writes, else 503 with the reason. Also
    /// served by the operations listener.
    pub fn readyz(&self) -> Resp {
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
}

/// `path` as the request log may show it: a segment that names a person (the subject of
/// `/v1/privacy/subjects/{subject}/…`) is replaced by its placeholder.
///
/// Invariant: no log line names a subject. Logs are kept, copied and read far more widely
/// than the audit chain, where an officer's query of a subject is recorded.
fn path_for_log(path: &str) -> String {
    const SUBJECTS: &str = "/v1/privacy/subjects/";
    match path.strip_prefix(SUBJECTS) {
        Some(rest) => match rest.split_once('/') {
            Some((_, tail)) => format!("{SUBJECTS}{{subject}}/{tail}"),
            None => format!("{SUBJECTS}{{subject}}"),
        },
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::path_for_log;

    /// Regression: the request log printed the subject of a disclosure query.
    #[test]
    fn the_request_log_names_no_subject() {
        assert_eq!(
            path_for_log("/v1/privacy/subjects/ps-0123456789abcdef/disclosures"),
            "/v1/privacy/subjects/{subject}/disclosures"
        );
        assert_eq!(
            path_for_log("/v1/privacy/subjects/ps-0123456789abcdef"),
            "/v1/privacy/subjects/{subject}"
        );
        assert_eq!(path_for_log("/v1/messages"), "/v1/messages");
    }
}
