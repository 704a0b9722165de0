//! The consent registry: consents of data subjects as the collecting agency registers them,
//! and their withdrawals.
//!
//! A consent (schema `consent.v1.json`) names the subject (pseudonymously), the collecting
//! agency and counsellor, the recipients, the purposes, the items with their sensitivity,
//! the recipients' retention period, the validity, the refusal-right notice shown, the legal
//! basis and the evidence of collection. The registry keeps the document as registered and
//! a status history (`granted`, then possibly `withdrawn`).
//!
//! This module is the registry's vocabulary and rules, without I/O: `api` checks and
//! registers, the `ledger` writes (with an audit entry for each consent event), the `store`
//! keeps. Enforcement on messages (a message may travel only under a consent that covers it)
//! builds on this and is not here yet.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::identity::AgencyId;

/// A consent as the registry keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// The consent id (the document's `id`).
    pub id: String,
    /// The pseudonymous subject.
    pub subject: String,
    /// The agency that collected and registered it.
    pub collected_by: String,
    /// The recipient agencies it names.
    pub recipients: Vec<String>,
    /// The document as registered, canonical JSON.
    pub document: Box<RawValue>,
    /// SHA-256 (hex) of the canonical document: a second registration of the same id must
    /// be the same document.
    pub digest: String,
    /// When this node registered it (RFC 3339, UTC).
    pub registered_at: String,
    /// `granted` or `withdrawn`.
    pub status: String,
    /// Every status change, oldest first.
    pub history: Vec<StatusChange>,
}

/// One change of a consent's status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusChange {
    /// `granted` or `withdrawn`.
    pub status: String,
    /// When (as the registering agency states it, or when this node recorded it).
    pub at: String,
    /// The agency that recorded the change.
    pub by: String,
    /// Why, if stated (for a withdrawal, e.g. how the subject withdrew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A consent document checked against the schema, ready to register.
#[derive(Debug)]
pub struct Registration {
    /// The record to store.
    pub record: ConsentRecord,
}

/// Why a consent document cannot be registered (beyond schema violations).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The document says another agency collected it.
    #[error("`collected_by.agency` is {stated}, but the consent is registered by {caller}: an agency registers the consents it collected")]
    NotCollector {
        /// What the document says.
        stated: String,
        /// Who is registering.
        caller: String,
    },
}

impl Registration {
    /// Builds the record for a schema-valid consent document registered by `caller` at
    /// `now`. The document's own `status_history` is the history so far.
    pub fn new(
        document: &Value,
        caller: &AgencyId,
        now: &str,
    ) -> Result<Registration, RegistrationError> {
        let text = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let collected_by = text("/collected_by/agency");
        if collected_by != caller.as_str() {
            return Err(RegistrationError::NotCollector {
                stated: collected_by,
                caller: caller.to_string(),
            });
        }
        let recipients = document["recipients"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut history: Vec<StatusChange> = document["status_history"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| serde_json::from_value(strip_unknown(c)).ok())
                    .collect()
            })
            .unwrap_or_default();
        let status = history
            .last()
            .map_or_else(|| "granted".to_owned(), |c| c.status.clone());
        if history.is_empty() {
            history.push(StatusChange {
                status: "granted".into(),
                at: now.to_owned(),
                by: caller.to_string(),
                reason: None,
            });
        }
        let canonical =
            serde_json::value::to_raw_value(document).expect("JSON values always serialize");
        let digest = crate::audit::hex(
            ring::digest::digest(&ring::digest::SHA256, canonical.get().as_bytes()).as_ref(),
        );
        Ok(Registration {
            record: ConsentRecord {
                id: text("/id"),
                subject: text("/subject"),
                collected_by,
                recipients,
                document: canonical,
                digest,
                registered_at: now.to_owned(),
                status,
                history,
            },
        })
    }
}

/// A status-history item with only the fields the registry keeps.
fn strip_unknown(change: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["status", "at", "by", "reason"] {
        if let Some(v) = change.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

impl ConsentRecord {
    /// True if `agency` may read this consent: the collector and the recipients.
    pub fn readable_by(&self, agency: &AgencyId) -> bool {
        self.collected_by == agency.as_str() || self.recipients.iter().any(|r| r == agency.as_str())
    }

    /// The registry's view for an API answer.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "status": self.status,
            "registered_at": self.registered_at,
            "history": self.history,
            "document": self.document,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Value {
        let text = include_str!("../schemas/examples/consent.json");
        serde_json::from_str(text).expect("example")
    }

    #[test]
    fn only_the_collecting_agency_registers_a_consent() {
        let collector = AgencyId::parse("suwon/employment").expect("id");
        let other = AgencyId::parse("suwon/welfare").expect("id");
        let r = Registration::new(&example(), &collector, "2026-11-26T05:00:00Z").expect("ok");
        assert_eq!(r.record.status, "granted");
        assert_eq!(r.record.recipients, ["suwon/welfare", "gangseo/welfare"]);
        assert!(r.record.readable_by(&other));
        assert!(matches!(
            Registration::new(&example(), &other, "t"),
            Err(RegistrationError::NotCollector { .. })
        ));
    }

    #[test]
    fn the_same_document_has_the_same_digest_whatever_its_key_order() {
        let collector = AgencyId::parse("suwon/employment").expect("id");
        let a = Registration::new(&example(), &collector, "t1").expect("ok");
        let reordered: Value =
            serde_json::from_str(&serde_json::to_string_pretty(&example()).expect("json"))
                .expect("json");
        let b = Registration::new(&reordered, &collector, "t2").expect("ok");
        assert_eq!(a.record.digest, b.record.digest);
        let mut changed = example();
        changed["purposes"] = serde_json::json!(["medical-support"]);
        let c = Registration::new(&changed, &collector, "t3").expect("ok");
        assert_ne!(a.record.digest, c.record.digest);
    }
}
