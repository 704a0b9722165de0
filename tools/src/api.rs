//! Helpers for the API calls tests and the bench make: push, pull, acknowledge, status,
//! consent registration and draining an inbox.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use plusgate::node::client::{Agent, Connection, HttpVersion, Response};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::error::{client, truncate, Error};
use crate::federation::Federation;
use crate::node::Node;

/// Both HTTP versions, for tests that must hold for each.
pub const VERSIONS: [HttpVersion; 2] = [HttpVersion::Http1, HttpVersion::Http2];

/// Bound on every request a harness agent makes; a hang fails the test instead of stalling
/// the suite.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound on [`drain_inbox`].
pub const DRAIN_TIME_MAX: Duration = Duration::from_secs(120);

/// Characters of an answer's body quoted in an [`Error::Refused`].
const BODY_CHARS_MAX: usize = 4000;

/// `body` with its envelope `id` set.
pub fn with_id(mut body: Value, id: &str) -> Value {
    body["id"] = json!(id);
    body
}

/// Pushes `body` as `application/json`.
pub async fn push(agent: &Agent, body: &Value) -> Response {
    agent
        .post_json("/v1/messages", body)
        .await
        .expect("push gets a response")
}

/// Pushes raw bytes with a content type of our choosing.
pub async fn push_raw(agent: &Agent, body: impl Into<Bytes>, content_type: &str) -> Response {
    agent
        .request(
            Method::POST,
            "/v1/messages",
            Some((body.into(), content_type)),
        )
        .await
        .expect("push gets a response")
}

/// Pushes `body` and asserts 202; returns the response body.
pub async fn push_accepted(agent: &Agent, body: &Value) -> Value {
    let response = push(agent, body).await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
    response.json().expect("202 body is JSON")
}

/// Registers `consent` through `agent` (its collector); the node must answer 201, or 200
/// for the same consent again.
pub async fn try_register_consent(agent: &Agent, consent: &Value) -> Result<(), Error> {
    let what = format!("registering consent {}", consent["id"]);
    let response = agent
        .post_json("/v1/consents", consent)
        .await
        .map_err(client(&what))?;
    if matches!(response.status, StatusCode::CREATED | StatusCode::OK) {
        Ok(())
    } else {
        Err(refused(what, &response))
    }
}

/// [`try_register_consent`], panicking if it fails.
pub async fn register_consent(agent: &Agent, consent: &Value) {
    if let Err(e) = try_register_consent(agent, consent).await {
        panic!("{e}");
    }
}

/// `GET /v1/inbox?{query}`.
pub async fn pull_response(agent: &Agent, query: &str) -> Response {
    agent
        .get(&format!("/v1/inbox?{query}"))
        .await
        .expect("pull gets a response")
}

/// `GET /v1/inbox?{query}`, asserting 200; returns the messages.
pub async fn pull(agent: &Agent, query: &str) -> Vec<Value> {
    messages_of(&pull_response(agent, query).await)
}

/// The `messages` of a 200 pull response.
pub fn messages_of(response: &Response) -> Vec<Value> {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body: Value = response.json().expect("pull body is JSON");
    body["messages"]
        .as_array()
        .expect("pull body has a messages array")
        .clone()
}

/// The ids of pulled messages, in order.
pub fn ids_of(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().expect("message has an id").to_owned())
        .collect()
}

/// `POST /v1/inbox/ack {"ids": ids}`.
pub async fn ack(agent: &Agent, ids: &[&str]) -> Response {
    agent
        .post_json("/v1/inbox/ack", &json!({ "ids": ids }))
        .await
        .expect("ack gets a response")
}

/// `GET /v1/messages/{id}`.
pub async fn status(agent: &Agent, id: &str) -> Response {
    agent
        .get(&format!("/v1/messages/{id}"))
        .await
        .expect("status gets a response")
}

/// What [`try_drain_inbox`] took out of an inbox.
#[derive(Debug, Clone)]
pub struct Drained {
    /// Every id pulled and acknowledged, in delivery order, duplicates included.
    pub ids: Vec<String>,
    /// The inbox ran empty (false: the time bound stopped the drain first).
    pub complete: bool,
}

/// Pulls (at most `max` at a time, without long-polling) and acknowledges until the inbox
/// is empty or `time_max` has passed, over one connection of `agent`.
pub async fn try_drain_inbox(
    agent: &Agent,
    max: usize,
    time_max: Duration,
) -> Result<Drained, Error> {
    let mut conn: Connection = agent
        .connect()
        .await
        .map_err(client(format!("connecting to {}", agent.addr)))?;
    let deadline = Instant::now() + time_max;
    let pull_path = format!("/v1/inbox?max={max}&wait=0");
    let mut drained = Drained {
        ids: Vec::new(),
        complete: false,
    };
    while Instant::now() < deadline {
        let response = conn
            .send(Method::GET, &pull_path, None)
            .await
            .map_err(client("pulling the inbox"))?;
        if response.status != StatusCode::OK {
            return Err(refused("pulling the inbox", &response));
        }
        let page: InboxPage = response.json().map_err(client("reading a pull"))?;
        if page.messages.is_empty() {
            drained.complete = true;
            break;
        }
        let ids: Vec<String> = page.messages.into_iter().map(|m| m.id).collect();
        let body = Bytes::from(json!({ "ids": ids }).to_string());
        let what = format!("acknowledging {} messages", ids.len());
        let response = conn
            .send(
                Method::POST,
                "/v1/inbox/ack",
                Some((body, "application/json")),
            )
            .await
            .map_err(client(&what))?;
        if response.status != StatusCode::OK {
            return Err(refused(what, &response));
        }
        drained.ids.extend(ids);
    }
    Ok(drained)
}

/// The part of `GET /v1/inbox`'s answer that drains and pullers need: the ids handed out.
#[derive(Debug, serde::Deserialize)]
pub struct InboxPage {
    /// The messages of this pull, in inbox order.
    pub messages: Vec<InboxMessage>,
}

/// One message of an [`InboxPage`], as far as it is read here.
#[derive(Debug, serde::Deserialize)]
pub struct InboxMessage {
    /// Its id.
    pub id: String,
}

/// Pulls (max 100) and acknowledges until the inbox is empty; returns every id delivered,
/// in delivery order, duplicates included (so callers can check there are none).
pub async fn drain_inbox(agent: &Agent) -> Vec<String> {
    drain_inbox_by(agent, 100).await
}

/// [`drain_inbox`], pulling at most `max` messages at a time; panics if a pull or ack
/// fails or the inbox is not empty within [`DRAIN_TIME_MAX`].
pub async fn drain_inbox_by(agent: &Agent, max: usize) -> Vec<String> {
    let drained = try_drain_inbox(agent, max, DRAIN_TIME_MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        drained.complete,
        "the inbox never ran empty ({} acknowledged in {DRAIN_TIME_MAX:?})",
        drained.ids.len()
    );
    drained.ids
}

/// Pushes the `referral` example once for each id, `streams` at a time over one HTTP/2
/// connection, asserting 202 for each.
pub async fn push_referrals(fed: &Federation, node: &Node, ids: &[String], streams: usize) {
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let conn = agent.connect().await.expect("connect");
    let template = fed.example("referral");
    let mut tasks = Vec::new();
    for chunk in ids.chunks(ids.len().div_ceil(streams).max(1)) {
        let mut conn: Connection = conn.try_clone().expect("HTTP/2 connections clone");
        let bodies: Vec<Value> = chunk
            .iter()
            .map(|id| with_id(template.clone(), id))
            .collect();
        tasks.push(tokio::spawn(async move {
            for body in bodies {
                let bytes = Bytes::from(body.to_string());
                let response = conn
                    .send(
                        Method::POST,
                        "/v1/messages",
                        Some((bytes, "application/json")),
                    )
                    .await
                    .expect("push gets a response");
                assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
            }
        }));
    }
    for task in tasks {
        task.await.expect("push task");
    }
}

/// [`Error::Refused`] for `response`.
fn refused(what: impl Into<String>, response: &Response) -> Error {
    Error::Refused {
        what: what.into(),
        status: response.status,
        body: truncate(&response.text(), BODY_CHARS_MAX),
    }
}
