//! The soak's load: pushers at node A (each sending one message at a time, to the agency
//! at A or to the one at B) and one puller per recipient that pulls and acknowledges
//! without pause. Both go on through kills: a request that fails for want of a node is
//! retried on a new connection after a short pause.
//!
//! A push whose outcome is unknown (no answer: the node died with the request in flight)
//! is retried with the same id and body some of the time (`retry_percent`), to exercise
//! idempotency across crashes; otherwise the id is abandoned, and it may or may not arrive.
//! A 503 (nothing accepted) is always retried. Now and then (`conflict_percent`) a pusher
//! sends a different body under one of its acknowledged ids, which the node must refuse
//! with 409, however many kills ago the id was accepted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use plusgate::node::client::{Agent, ClientError, Connection, Response};
use serde::Serialize;
use serde_json::{json, Value};

use super::book::{Book, Pulled, Route, ViolationKind};
use super::rng::Rng;
use crate::error::truncate;

/// JSON pointer of the free-text field that carries each body's marker.
pub(super) const MARKER_POINTER: &str = "/payload/contact_preferences/notes";

/// Pause before trying again after a failed request (the node is down or restarting).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Attempts of one push before the pusher gives the id up (at [`RETRY_PAUSE`] apart, far
/// longer than a restart takes).
const PUSH_ATTEMPTS_MAX: u32 = 1200;

/// Messages per pull.
const PULL_MAX: usize = 100;

/// Characters of an unexpected answer quoted in a violation.
const ANSWER_CHARS_MAX: usize = 300;

/// What all pushers did, counted as it happens.
#[derive(Debug, Default)]
pub(super) struct PushCounts {
    requests: AtomicU64,
    transport_errors: AtomicU64,
    busy: AtomicU64,
    retried_ids: AtomicU64,
    acked_on_retry: AtomicU64,
    abandoned_ids: AtomicU64,
    conflict_probes: AtomicU64,
    conflicts_refused: AtomicU64,
}

/// [`PushCounts`] read out for the report.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PushReport {
    /// Push requests sent (every attempt).
    pub requests: u64,
    /// Attempts that got no answer (connection refused or broken, timeout).
    pub transport_errors: u64,
    /// 503 answers (nothing accepted; retried with the same id).
    pub busy: u64,
    /// Ids retried with the same body after an attempt without an answer.
    pub retried_ids: u64,
    /// Of those, ids a retry got a 202 for.
    pub acked_on_retry: u64,
    /// Ids given up after an attempt without an answer (they may or may not arrive).
    pub abandoned_ids: u64,
    /// Different bodies sent under an acknowledged id.
    pub conflict_probes: u64,
    /// Of those, refused with 409 as they must be.
    pub conflicts_refused: u64,
}

impl PushCounts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub(super) fn report(&self) -> PushReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PushReport {
            requests: get(&self.requests),
            transport_errors: get(&self.transport_errors),
            busy: get(&self.busy),
            retried_ids: get(&self.retried_ids),
            acked_on_retry: get(&self.acked_on_retry),
            abandoned_ids: get(&self.abandoned_ids),
            conflict_probes: get(&self.conflict_probes),
            conflicts_refused: get(&self.conflicts_refused),
        }
    }
}

/// What all pullers did.
#[derive(Debug, Default)]
pub(super) struct PullCounts {
    pulls: AtomicU64,
    acks: AtomicU64,
    errors: AtomicU64,
}

/// [`PullCounts`] read out for the report.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PullReport {
    /// Pulls answered with 200.
    pub pulls: u64,
    /// Acknowledgements answered with 200.
    pub acks: u64,
    /// Pulls and acknowledgements without an answer (the node was down).
    pub transport_errors: u64,
}

impl PullCounts {
    /// The counts now.
    pub(super) fn report(&self) -> PullReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PullReport {
            pulls: get(&self.pulls),
            acks: get(&self.acks),
            transport_errors: get(&self.errors),
        }
    }
}

/// One pusher's fixed part.
pub(super) struct Pusher {
    /// Which recipient its messages are for.
    pub(super) route: Route,
    /// The sender's agent at node A.
    pub(super) agent: Agent,
    /// The envelope sent, apart from its id and marker.
    pub(super) template: Value,
    /// Its ids are `<prefix>-<n>`.
    pub(super) prefix: String,
    /// Its random choices.
    pub(super) rng: Rng,
    /// Percent of pushes without an answer that are retried with the same id.
    pub(super) retry_percent: u8,
    /// Percent of acknowledged pushes followed by a conflicting body under an earlier id.
    pub(super) conflict_percent: u8,
    /// Pause after each message (bounds the rate, and so the stores' growth in a long run).
    pub(super) pause: Duration,
}

/// The body of message `id` with body marker `marker`.
pub(super) fn body(template: &Value, id: &str, marker: &str) -> Value {
    let mut body = template.clone();
    body["id"] = json!(id);
    if let Some(field) = body.pointer_mut(MARKER_POINTER) {
        *field = json!(marker);
    }
    body
}

/// How one push attempt ended.
enum Attempt {
    Answer(Response),
    NoAnswer,
}

impl Pusher {
    /// Pushes new messages until `stop`, each to a definite end (202, refusal, or given up).
    pub(super) async fn run(
        mut self,
        book: Arc<Book>,
        counts: Arc<PushCounts>,
        stop: Arc<AtomicBool>,
    ) {
        let mut conn: Option<Connection> = None;
        let mut acked: Vec<String> = Vec::new();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = format!("{}-{n}", self.prefix);
            n += 1;
            let marker = format!("soak body of {id}");
            let bytes = Bytes::from(body(&self.template, &id, &marker).to_string());
            book.sending(&id, self.route, &marker);
            if self.push_one(&mut conn, &id, &bytes, &book, &counts).await {
                acked.push(id);
                if !acked.is_empty() && self.rng.percent(self.conflict_percent) {
                    let pick = self.rng.between(0, acked.len() as u64 - 1);
                    let earlier = usize::try_from(pick).map_or(&acked[0], |i| &acked[i]);
                    self.probe_conflict(&mut conn, earlier, &book, &counts)
                        .await;
                }
            }
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
        }
    }

    /// Pushes one id until a definite answer; true if it got a 202.
    async fn push_one(
        &mut self,
        conn: &mut Option<Connection>,
        id: &str,
        bytes: &Bytes,
        book: &Book,
        counts: &PushCounts,
    ) -> bool {
        let mut retrying = false;
        for _ in 0..PUSH_ATTEMPTS_MAX {
            PushCounts::add(&counts.requests);
            match send(conn, &self.agent, Method::POST, "/v1/messages", Some(bytes)).await {
                Attempt::Answer(r) if r.status == StatusCode::ACCEPTED => {
                    book.acked(id);
                    if retrying {
                        PushCounts::add(&counts.acked_on_retry);
                    }
                    return true;
                }
                Attempt::Answer(r) if r.status == StatusCode::SERVICE_UNAVAILABLE => {
                    PushCounts::add(&counts.busy);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Attempt::Answer(r) if r.status == StatusCode::CONFLICT => {
                    book.violate(
                        ViolationKind::Idempotency,
                        format!(
                            "a retry of {id} with the same body was refused: {}",
                            truncate(&r.text(), ANSWER_CHARS_MAX)
                        ),
                    );
                    return false;
                }
                Attempt::Answer(r) => {
                    book.violate(
                        ViolationKind::UnexpectedAnswer,
                        format!(
                            "push of {id}: {} {}",
                            r.status,
                            truncate(&r.text(), ANSWER_CHARS_MAX)
                        ),
                    );
                    return false;
                }
                Attempt::NoAnswer => {
                    PushCounts::add(&counts.transport_errors);
                    if !retrying {
                        if !self.rng.percent(self.retry_percent) {
                            PushCounts::add(&counts.abandoned_ids);
                            return false;
                        }
                        retrying = true;
                        PushCounts::add(&counts.retried_ids);
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        PushCounts::add(&counts.abandoned_ids);
        false
    }

    /// Sends a different body under the acknowledged `id`: it must be refused with 409.
    async fn probe_conflict(
        &mut self,
        conn: &mut Option<Connection>,
        id: &str,
        book: &Book,
        counts: &PushCounts,
    ) {
        PushCounts::add(&counts.conflict_probes);
        let marker = format!("soak conflicting body of {id}");
        let bytes = Bytes::from(body(&self.template, id, &marker).to_string());
        match send(
            conn,
            &self.agent,
            Method::POST,
            "/v1/messages",
            Some(&bytes),
        )
        .await
        {
            Attempt::Answer(r) if r.status == StatusCode::CONFLICT => {
                PushCounts::add(&counts.conflicts_refused);
            }
            Attempt::Answer(r) if r.status.is_success() => book.violate(
                ViolationKind::Idempotency,
                format!(
                    "a different body under the acknowledged id {id} was accepted: {}",
                    r.status
                ),
            ),
            // No answer, or busy: the probe says nothing either way.
            Attempt::NoAnswer => {}
            Attempt::Answer(r) if r.status == StatusCode::SERVICE_UNAVAILABLE => {}
            Attempt::Answer(r) => book.violate(
                ViolationKind::UnexpectedAnswer,
                format!(
                    "conflicting push of {id}: {} {}",
                    r.status,
                    truncate(&r.text(), ANSWER_CHARS_MAX)
                ),
            ),
        }
    }
}

/// One request on `conn`, connecting first if there is none; a failure drops the
/// connection, so the next request connects anew.
async fn send(
    conn: &mut Option<Connection>,
    agent: &Agent,
    method: Method,
    path: &str,
    body: Option<&Bytes>,
) -> Attempt {
    let result: Result<Response, ClientError> = async {
        if conn.as_ref().is_none_or(Connection::is_closed) {
            *conn = Some(agent.connect().await?);
        }
        let c = conn.as_mut().expect("connected just above");
        c.send(method, path, body.map(|b| (b.clone(), "application/json")))
            .await
    }
    .await;
    match result {
        Ok(response) => Attempt::Answer(response),
        Err(_) => {
            *conn = None;
            Attempt::NoAnswer
        }
    }
}

/// One recipient's puller: pulls (long-polling a second) and acknowledges, until `stop`.
pub(super) struct Puller {
    /// Which recipient.
    pub(super) route: Route,
    /// The recipient's agent at its node.
    pub(super) agent: Agent,
}

impl Puller {
    /// Pulls and acknowledges until `stop`.
    pub(super) async fn run(self, book: Arc<Book>, counts: Arc<PullCounts>, stop: Arc<AtomicBool>) {
        let mut conn = None;
        while !stop.load(Ordering::Relaxed) {
            if self.round(&mut conn, 1, &book, &counts).await.is_none() {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    /// Pulls without waiting and acknowledges until a pull comes back empty, or `attempts`
    /// rounds failed in a row; true if the inbox was seen empty.
    pub(super) async fn drain(&self, book: &Book, counts: &PullCounts, attempts: u32) -> bool {
        let mut conn = None;
        let mut failures = 0;
        while failures < attempts {
            match self.round(&mut conn, 0, book, counts).await {
                Some(0) => return true,
                Some(_) => failures = 0,
                None => {
                    failures += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        false
    }

    /// One pull (waiting up to `wait_s` on an empty inbox) and the acknowledgement of what
    /// it returned; the number of messages, or `None` if either got no good answer.
    async fn round(
        &self,
        conn: &mut Option<Connection>,
        wait_s: u32,
        book: &Book,
        counts: &PullCounts,
    ) -> Option<usize> {
        let path = format!("/v1/inbox?max={PULL_MAX}&wait={wait_s}");
        let response = self
            .answer(conn, Method::GET, &path, None, book, counts)
            .await?;
        counts.pulls.fetch_add(1, Ordering::Relaxed);
        let (page, keys) = match parse_page(&response) {
            Ok(parsed) => parsed,
            Err(e) => {
                book.violate(
                    ViolationKind::UnexpectedAnswer,
                    format!("a pull of the {:?} inbox: {e}", self.route),
                );
                return None;
            }
        };
        book.pulled(self.route, &page);
        if page.is_empty() {
            return Some(0);
        }
        let ids: Vec<String> = page.into_iter().map(|m| m.id).collect();
        let ack = Bytes::from(json!({ "ids": keys }).to_string());
        if self
            .answer(
                conn,
                Method::POST,
                "/v1/inbox/ack",
                Some(&ack),
                book,
                counts,
            )
            .await
            .is_none()
        {
            book.ack_unanswered(&ids, &keys);
            return None;
        }
        counts.acks.fetch_add(1, Ordering::Relaxed);
        book.delivered(&ids);
        Some(ids.len())
    }

    /// Acknowledges `key` (`<from>/<id>`) on its own: true if the node says it is
    /// acknowledged (now, or before: acknowledging again is not an error).
    pub(super) async fn ack_again(&self, key: &str, book: &Book, counts: &PullCounts) -> bool {
        let mut conn = None;
        let ack = Bytes::from(json!({ "ids": [key] }).to_string());
        match send(
            &mut conn,
            &self.agent,
            Method::POST,
            "/v1/inbox/ack",
            Some(&ack),
        )
        .await
        {
            Attempt::Answer(r) if r.status == StatusCode::OK => true,
            Attempt::Answer(r) if r.status == StatusCode::NOT_FOUND => false,
            _ => {
                // Anything else is reported like any other answer.
                let _ = self
                    .answer(
                        &mut conn,
                        Method::POST,
                        "/v1/inbox/ack",
                        Some(&ack),
                        book,
                        counts,
                    )
                    .await;
                false
            }
        }
    }

    /// A 200 answer to one request, or `None` (no answer, or another status: a violation
    /// unless it is a 503).
    async fn answer(
        &self,
        conn: &mut Option<Connection>,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
        book: &Book,
        counts: &PullCounts,
    ) -> Option<Response> {
        match send(conn, &self.agent, method.clone(), path, body).await {
            Attempt::Answer(r) if r.status == StatusCode::OK => Some(r),
            Attempt::Answer(r) if r.status == StatusCode::SERVICE_UNAVAILABLE => None,
            Attempt::Answer(r) => {
                book.violate(
                    ViolationKind::UnexpectedAnswer,
                    format!(
                        "{method} {path} at the {:?} inbox: {} {}",
                        self.route,
                        r.status,
                        truncate(&r.text(), ANSWER_CHARS_MAX)
                    ),
                );
                None
            }
            Attempt::NoAnswer => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// The messages of a pull (id and marker) and the keys to acknowledge them by
/// (`<from>/<id>`, which the node accepts again after a restart, unlike a bare id).
fn parse_page(response: &Response) -> Result<(Vec<Pulled>, Vec<String>), String> {
    let body: Value = response
        .json()
        .map_err(|e| format!("the answer is not JSON: {e}"))?;
    let messages = body["messages"]
        .as_array()
        .ok_or_else(|| format!("no messages array in {}", truncate(&body.to_string(), 200)))?;
    let mut page = Vec::with_capacity(messages.len());
    let mut keys = Vec::with_capacity(messages.len());
    for m in messages {
        let (Some(id), Some(from)) = (m["id"].as_str(), m["from"].as_str()) else {
            return Err(format!(
                "a message without id or from: {}",
                truncate(&m.to_string(), 200)
            ));
        };
        keys.push(format!("{from}/{id}"));
        page.push(Pulled {
            id: id.to_owned(),
            marker: m
                .pointer(MARKER_POINTER)
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok((page, keys))
}
