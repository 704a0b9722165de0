//! `/v1/consents…`: the consent registry's endpoints. The collecting agency registers a
//! consent and may withdraw it; the collector and the recipients it names may read it.
//!
//! Architecture invariant: a consent is registered only if its document validates against
//! `consent.v1.json`, holds nothing shaped like a resident registration number, and names
//! the calling agency as its collector.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::body::json_response;
use super::problem::{ledger_problem, store_problem};
use super::{Api, Problem, Resp};
use crate::core::consent::{ConsentStatus, Registration, StatusChange};
use crate::core::identity::AgencyId;
use crate::core::message::MessageType;
use crate::core::schema::Violation;

impl Api {
    pub(super) async fn register_consent(
        &self,
        req: Request<Incoming>,
        agency: &AgencyId,
    ) -> Result<Resp, Problem> {
        let document = self.read_json(req).await?;
        self.schemas
            .validate_payload(MessageType::Consent, 1, &document)
            .map_err(Problem::invalid)?;
        let rrn: Vec<Violation> = crate::core::rrn::find(&document)
            .into_iter()
            .map(|pointer| Violation {
                pointer,
                message: "looks like a resident registration number, which is never stored".into(),
            })
            .collect();
        if !rrn.is_empty() {
            return Err(Problem::invalid(rrn));
        }
        let now = self.ledger.clock().now_rfc3339();
        let registration = Registration::new(&document, agency, &now)
            .map_err(|e| Problem::forbidden("not-collector", e.to_string()))?;
        let (record, new) = self
            .ledger
            .register_consent(agency.clone(), registration.record)
            .await
            .map_err(ledger_problem)?;
        let status = if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(
            status,
            &json!({"id": record.id, "status": record.status, "registered_at": record.registered_at}),
        ))
    }

    /// `GET /v1/consents/{id}[?collected_by=<agency>]`: the caller's own consent with that
    /// id, else the one it names as collector, else the only one with that id that names
    /// the caller. Consents the caller may not read are never looked at, so every answer
    /// about them is the same 404 as for an id nobody uses.
    pub(super) fn consent_view(
        &self,
        agency: &AgencyId,
        id: &str,
        query: Option<&str>,
    ) -> Result<Resp, Problem> {
        let collector = consent_query(query)?;
        let not_found = || Problem::not_found(format!("no consent {id} that names you"));
        let readable: Vec<_> = self
            .store
            .consents_with_id(id)
            .map_err(store_problem)?
            .into_iter()
            .filter(|c| c.readable_by(agency))
            .filter(|c| {
                collector
                    .as_ref()
                    .is_none_or(|a| c.collected_by == a.as_str())
            })
            .collect();
        let record = match readable.iter().find(|c| c.collected_by == agency.as_str()) {
            Some(own) => own,
            None => match readable.as_slice() {
                [] => return Err(not_found()),
                [only] => only,
                _ => {
                    return Err(Problem::new(
                        StatusCode::CONFLICT,
                        "consent-ambiguous",
                        "More than one consent with this id names you",
                        format!(
                            "{} consents {id}, collected by different agencies, name you: \
                             name the collector with ?collected_by=<agency>",
                            readable.len()
                        ),
                    ))
                }
            },
        };
        Ok(json_response(StatusCode::OK, &record.to_json()))
    }

    pub(super) async fn withdraw_consent(
        &self,
        req: Request<Incoming>,
        agency: &AgencyId,
        id: &str,
    ) -> Result<Resp, Problem> {
        let body = self.read_json(req).await?;
        let (at, reason) = parse_withdrawal(&body).map_err(Problem::invalid)?;
        // `at` and `by` are the ledger's to set (the group's time, the caller's identity);
        // the time the caller states is kept as what it is, its statement.
        let change = StatusChange {
            status: ConsentStatus::Withdrawn,
            at: String::new(),
            by: String::new(),
            reason,
            stated_at: at,
        };
        let record = self
            .ledger
            .withdraw_consent(id.to_owned(), agency.clone(), change)
            .await
            .map_err(ledger_problem)?;
        Ok(json_response(StatusCode::OK, &record.to_json()))
    }
}

/// `collected_by=<agency id>`, the only query parameter of a consent read.
fn consent_query(query: Option<&str>) -> Result<Option<AgencyId>, Problem> {
    let mut collector = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "collected_by" if collector.is_none() => {
                let a = AgencyId::parse(&v).map_err(|_| {
                    Problem::bad_request("collected_by must be an agency id <center>/<agency>")
                })?;
                collector = Some(a);
            }
            "collected_by" => return Err(Problem::bad_request("collected_by is given twice")),
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter `{other}`"
                )))
            }
        }
    }
    Ok(collector)
}

/// `{"at"?: RFC 3339, "reason"?: string}`.
fn parse_withdrawal(body: &Value) -> Result<(Option<String>, Option<String>), Vec<Violation>> {
    let violation = |pointer: &str, message: &str| Violation {
        pointer: pointer.into(),
        message: message.into(),
    };
    let obj = body
        .as_object()
        .ok_or_else(|| vec![violation("", "must be an object {\"at\"?, \"reason\"?}")])?;
    let mut bad = Vec::new();
    if let Some(k) = obj.keys().find(|k| *k != "at" && *k != "reason") {
        bad.push(violation(&format!("/{k}"), "unknown property"));
    }
    let at = match obj.get("at") {
        None => None,
        Some(Value::String(s))
            if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .is_ok() =>
        {
            Some(s.clone())
        }
        Some(_) => {
            bad.push(violation("/at", "must be an RFC 3339 date-time"));
            None
        }
    };
    let reason = match obj.get("reason") {
        None => None,
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= crate::core::audit::DETAIL_BYTES_MAX
                && !crate::core::rrn::contains_rrn(s) =>
        {
            Some(s.clone())
        }
        Some(_) => {
            bad.push(violation(
                "/reason",
                "must be a text of 1 to 2000 bytes without personal identifiers",
            ));
            None
        }
    };
    if bad.is_empty() {
        Ok((at, reason))
    } else {
        Err(bad)
    }
}
