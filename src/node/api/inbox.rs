//! `GET /v1/inbox` (pull) and `POST /v1/inbox/ack` (ack), for the recipient agency that
//! [`Api::route`] admitted. The leases and the long poll are `node::inbox`'s; this file
//! parses the query and the ack body and shapes the answers.
//!
//! Invariants: a pull's query is parsed strictly (an unknown parameter or a bad value is a
//! 400; a wait longer than the node allows is shortened, not refused); an ack names 1 to
//! [`ACK_IDS_MAX`] ids, all or nothing.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::body::json_response;
use super::problem::{inbox_problem, ledger_problem};
use super::{Api, Problem, Resp};
use crate::core::identity::AgencyId;
use crate::core::message::MessageId;
use crate::core::schema::Violation;
use crate::node::store::MessageRecord;

/// Most ids one ack may carry.
pub const ACK_IDS_MAX: usize = 1000;

impl Api {
    /// `GET /v1/inbox?max=&wait=` from `recipient`: up to `max` messages, leased, waiting
    /// up to `wait` seconds for the first.
    pub(super) async fn pull(
        &self,
        query: Option<&str>,
        recipient: &AgencyId,
    ) -> Result<Resp, Problem> {
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
                    // A whole number too large for a u64 is still a whole number, and
                    // shortened like any other long wait (it was once refused with 400).
                    let whole = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                    let secs = v
                        .parse::<u64>()
                        .ok()
                        .or(whole.then_some(u64::MAX))
                        .ok_or_else(|| {
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
            .map_err(inbox_problem)?;
        self.metrics.pulled(recipient, messages.len());
        // Written straight from the stored canonical JSON: the payloads (up to 100 of up to
        // 1 MiB) are copied into the answer, never parsed into values and serialised again
        // on the runtime's threads.
        let messages: Vec<Pulled<'_>> = messages.iter().map(Pulled::of).collect();
        Ok(json_response(StatusCode::OK, &Answer { messages }))
    }

    /// `POST /v1/inbox/ack` from `recipient`: `{"ids": [...]}` acknowledged, all or nothing.
    pub(super) async fn ack(
        &self,
        req: Request<Incoming>,
        recipient: &AgencyId,
    ) -> Result<Resp, Problem> {
        let body = self.read_json(req).await?;
        let ids = parse_ack(&body).map_err(Problem::invalid)?;
        match self.inbox.ack(recipient, ids).await {
            Ok(acked) => {
                self.metrics.acked(recipient, acked.len());
                // As the caller named them.
                let acked: Vec<&str> = acked.iter().map(MessageId::as_str).collect();
                Ok(json_response(StatusCode::OK, &json!({ "acked": acked })))
            }
            Err(e) => Err(ledger_problem(e)),
        }
    }
}

/// `{"ids": [...]}` → ids, or the violations. The operator's outbox actions take the same
/// body.
pub(super) fn parse_ack(body: &Value) -> Result<Vec<MessageId>, Vec<Violation>> {
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
        // A message id as pulled, or `<from>/<id>` (which names the sender too).
        match v.as_str().and_then(MessageId::from_key) {
            Some(id) => out.push(id),
            None => bad.push(violation(
                &format!("/ids/{i}"),
                "is not a message id (or <from>/<id>)",
            )),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad)
    }
}

/// A pulled message as the answer shows it (`InboxMessage` in the OpenAPI document).
#[derive(serde::Serialize)]
struct Pulled<'a> {
    id: &'a str,
    from: &'a str,
    #[serde(rename = "type")]
    message_type: &'a str,
    version: u32,
    subject: &'a str,
    consent_id: &'a str,
    consent_collected_by: Option<&'a str>,
    /// Opened by the inbox; raw canonical JSON.
    payload: Option<&'a serde_json::value::RawValue>,
    received_at: &'a str,
}

impl<'a> Pulled<'a> {
    fn of(m: &'a MessageRecord) -> Pulled<'a> {
        Pulled {
            id: crate::core::message::public_of(&m.id),
            from: &m.from,
            message_type: &m.message_type,
            version: m.version,
            subject: &m.subject,
            consent_id: &m.consent_id,
            consent_collected_by: m.consent_by.as_deref(),
            payload: m.payload.as_deref(),
            received_at: &m.accepted_at,
        }
    }
}

/// The answer to a pull.
#[derive(serde::Serialize)]
struct Answer<'a> {
    messages: Vec<Pulled<'a>>,
}
