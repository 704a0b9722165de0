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

    pub(super) fn consent_view(&self, agency: &AgencyId, id: &str) -> Result<Resp, Problem> {
        let not_found = || Problem::not_found(format!("no consent {id} that names you"));
        let record = self
            .store
            .consent(id)
            .map_err(store_problem)?
            .filter(|c| c.readable_by(agency))
            .ok_or_else(not_found)?;
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
