//! `/v1/privacy/…`: what a privacy officer asks of the record: a subject's disclosure
//! history, "who received what about this person, when, under which consent, and who pulled
//! it", from the audit chain; the consents registered here, the refusals and the withdrawals,
//! filtered, as JSON or CSV; and the audit chain's status (`report`).
//!
//! Architecture invariants: only privacy-officer certificates registered at this node get
//! in (agencies and nodes get 403); every query is itself an audit entry, written durably
//! before the answer goes out; every report answers at most its `limit` rows (at most
//! [`REPORT_ROWS_MAX`]) and says when it was cut (`truncated`), and its store scan runs
//! on tokio's blocking pool, never on the threads that serve requests.

mod report;

use std::collections::BTreeMap;

use hyper::{Request, StatusCode};
use serde::Serialize;

use super::body::json_response;
use super::problem::{ledger_problem, store_problem};
use super::{Api, Problem, Resp};
use crate::core::audit::Action;
use crate::core::identity::{Identity, OfficerId, Peer};
use crate::core::vault::DataKeys;
use crate::node::store::{Store, StoreError};
pub(super) use report::csv_response;
use report::{to_csv, REPORT_ROWS_MAX};

/// One message about the subject, as far as this node saw it.
#[derive(Debug, Default, Serialize)]
pub struct Disclosure {
    /// The message's id as its sender wrote it (with `from`, it names the message; see
    /// `message::MessageId`).
    pub message_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub message_type: String,
    /// Sending agency.
    pub from: String,
    /// Receiving agency.
    pub to: String,
    /// The consent it travelled under: its id ...
    pub consent_id: String,
    /// ... and the agency that collected it (empty for messages taken before consents were
    /// scoped by collector, when an id was one consent per node).
    pub consent_collected_by: String,
    /// The data items it carried (the payload's top-level fields except routing ones).
    pub items: Vec<String>,
    /// When this node took it (from a local agency, or from another node).
    pub accepted_at: String,
    /// The other center's node that took it over from this node, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to_node: Option<(String, String)>,
    /// Who pulled it first (certificate identity), and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_pulled: Option<(String, String)>,
    /// When the recipient acknowledged it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<String>,
}

/// Who passed the staff gate.
#[derive(Debug)]
pub(super) enum Staffer<'p> {
    /// A privacy officer: every officer endpoint.
    Officer(&'p OfficerId),
    /// A center manager: statistics only.
    Manager(&'p crate::core::identity::ManagerId),
}

impl Api {
    /// The privacy officer or center manager behind the connection, if registered here and
    /// if the request is not a cross-site one (the gate of `Api::staff_endpoint`).
    pub(super) fn staff_member<'p, B>(
        &self,
        peer: &'p Peer,
        req: &Request<B>,
    ) -> Result<Staffer<'p>, Problem> {
        let who = match peer {
            Ok(Identity::Manager(m)) if self.officers.borrow().managers.contains(m) => {
                Staffer::Manager(m)
            }
            Ok(Identity::Manager(m)) => {
                return Err(Problem::forbidden(
                    "unknown-identity",
                    format!("manager {m} is not registered at this node"),
                ))
            }
            _ => Staffer::Officer(self.registered_officer(peer)?),
        };
        super::cross_site::check(req.headers(), req.uri())
            .map_err(|e| Problem::forbidden("cross-site-request", e.to_string()))?;
        Ok(who)
    }

    /// The privacy officer certificate behind the connection, if registered here.
    fn registered_officer<'p>(&self, peer: &'p Peer) -> Result<&'p OfficerId, Problem> {
        match peer {
            Ok(Identity::Officer(o)) if self.officers.borrow().officers.contains(o) => Ok(o),
            Ok(Identity::Officer(o)) => Err(Problem::forbidden(
                "unknown-identity",
                format!("officer {o} is not registered at this node"),
            )),
            Ok(other) => Err(Problem::forbidden(
                "wrong-role",
                format!("{other} may not use the privacy officer API"),
            )),
            Err(_) => Err(Problem::forbidden(
                "unknown-identity",
                "the client certificate carries no plusgate identity",
            )),
        }
    }

    pub(super) async fn disclosures(
        &self,
        req: &Request<hyper::body::Incoming>,
        officer: &OfficerId,
        subject: &str,
    ) -> Result<Resp, Problem> {
        let (limit, format) = match disclosure_query(req.uri().query()) {
            Ok(parsed) => parsed,
            Err(e) => return Err(Problem::bad_request(e.to_string())),
        };
        // `format` decides when given; without it, an `Accept` naming CSV does.
        let csv = format.unwrap_or_else(|| {
            req.headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/csv"))
        });
        let (store, keys, who) = (
            self.store.clone(),
            self.data_keys.clone(),
            subject.to_owned(),
        );
        // The scan and the record reads run on the blocking pool (see `report`).
        let (list, truncated) = tokio::task::spawn_blocking(move || {
            disclosures_of(&store, keys.as_deref(), &who, limit)
        })
        .await
        .map_err(|e| Problem::internal("report-failed", &e))?
        .map_err(store_problem)?;
        let what = if csv {
            "disclosures (csv)"
        } else {
            "disclosures"
        };
        self.ledger
            .queried(officer.clone(), subject.to_owned(), what.into())
            .await
            .map_err(ledger_problem)?;
        let mut resp = if csv {
            report::csv_response("disclosures", to_csv(&list))
        } else {
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "subject": subject,
                    "disclosures": list,
                    "truncated": truncated,
                }),
            )
        };
        if truncated {
            resp.headers_mut().insert(
                "plusgate-truncated",
                hyper::header::HeaderValue::from_static("true"),
            );
        }
        Ok(resp)
    }
}

/// The disclosures report's `limit` ([`REPORT_ROWS_MAX`] when not given) and `format`
/// (`Some(true)` for `csv`, `Some(false)` for `json`, `None` when not given). An empty value
/// is no value, as in the other reports; any other `format` is refused, as there: it was
/// once read as JSON, which answered a caller asking for something else with 200.
fn disclosure_query(query: Option<&str>) -> Result<(usize, Option<bool>), report::FilterError> {
    let mut limit = REPORT_ROWS_MAX;
    let mut csv = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "limit" => limit = report::parse_limit(&v)?,
            "format" => {
                csv = match v.as_ref() {
                    "csv" => Some(true),
                    "json" => Some(false),
                    _ => return Err(report::FilterError::Format(v.into_owned())),
                }
            }
            _ => {}
        }
    }
    Ok((limit, csv))
}

/// The messages about `subject`, oldest first, at most `limit` of them, and whether more
/// were left out. Memory stays bounded by `limit`: the scan goes on to the end (later
/// entries about the messages kept still count) but takes no new message past it.
fn disclosures_of(
    store: &Store,
    keys: Option<&DataKeys>,
    subject: &str,
    limit: usize,
) -> Result<(Vec<Disclosure>, bool), StoreError> {
    let mut by_message: BTreeMap<u64, Disclosure> = BTreeMap::new();
    let mut seq_of: BTreeMap<String, u64> = BTreeMap::new();
    let mut truncated = false;
    for entry in store.audit_for_subject(subject) {
        let e = entry?;
        // Consent events and queries concern no message; a refused message was never
        // taken, so it was disclosed to nobody.
        if e.message_id.is_empty() || e.action == Action::Refused {
            continue;
        }
        // A message is its sender and id (two senders may use one id).
        let named = format!("{}/{}", e.from, e.message_id);
        let seq = match seq_of.get(&named) {
            Some(seq) => *seq,
            None if seq_of.len() >= limit => {
                truncated = true;
                continue;
            }
            None => {
                seq_of.insert(named, e.seq);
                e.seq
            }
        };
        let d = by_message.entry(seq).or_default();
        match e.action {
            Action::Accepted | Action::Received => {
                d.message_id = e.message_id.clone();
                d.from = e.from.clone();
                d.to = e.to.clone();
                d.consent_id = e.consent_id.clone();
                d.consent_collected_by = e.consent_by.clone().unwrap_or_default();
                d.accepted_at = e.at.clone();
            }
            Action::Delivered => d.delivered_to_node = Some((e.actor.clone(), e.at.clone())),
            Action::Leased if d.first_pulled.is_none() => {
                d.first_pulled = Some((e.actor.clone(), e.at.clone()));
            }
            Action::Acked => d.acked_at = Some(e.at.clone()),
            _ => {}
        }
    }
    // The items (field names, never values) and type come from the message record.
    for d in by_message.values_mut() {
        if let Ok(Some(record)) = store.message_named(&d.from, &d.message_id) {
            d.message_type = record.message_type.clone();
            d.items = record.items.clone();
            // Records written before they listed their items: read them off the payload
            // (if it is still there).
            if d.items.is_empty() {
                if let Ok(payload) = record.open(keys) {
                    if let Ok(payload) = serde_json::from_str(payload.get()) {
                        d.items = crate::core::consent::items_of(&payload);
                    }
                }
            }
        }
    }
    Ok((by_message.into_values().collect(), truncated))
}

impl report::CsvRow for Disclosure {
    const HEADER: &'static [&'static str] = &[
        "message_id",
        "type",
        "from",
        "to",
        "consent_id",
        "consent_collected_by",
        "items",
        "accepted_at",
        "delivered_to_node",
        "delivered_at",
        "first_pulled_by",
        "first_pulled_at",
        "acked_at",
    ];
    fn cells(&self) -> Vec<String> {
        let (node, node_at) = self.delivered_to_node.clone().unwrap_or_default();
        let (by, at) = self.first_pulled.clone().unwrap_or_default();
        vec![
            self.message_id.clone(),
            self.message_type.clone(),
            self.from.clone(),
            self.to.clone(),
            self.consent_id.clone(),
            self.consent_collected_by.clone(),
            self.items.join(";"),
            self.accepted_at.clone(),
            node,
            node_at,
            by,
            at,
            self.acked_at.clone().unwrap_or_default(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let d = Disclosure {
            message_id: "ref-1".into(),
            message_type: "referral".into(),
            from: "suwon/employment".into(),
            to: "suwon/welfare".into(),
            consent_id: "cns-1".into(),
            consent_collected_by: "suwon/employment".into(),
            items: vec!["needs".into(), "summary".into()],
            accepted_at: "2026-11-26T05:00:00Z".into(),
            first_pulled: Some((
                "urn:plusgate:agency:suwon:welfare".into(),
                "t, \"x\"".into(),
            )),
            ..Disclosure::default()
        };
        let csv = to_csv(&[d]);
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(rows.len(), 3, "{csv}");
        assert!(rows[0].starts_with("message_id,type,from,to"));
        assert_eq!(
            rows[1],
            "ref-1,referral,suwon/employment,suwon/welfare,cns-1,suwon/employment,needs;summary,2026-11-26T05:00:00Z,,,urn:plusgate:agency:suwon:welfare,\"t, \"\"x\"\"\","
        );
    }
}
