//! Fuzz target: a federation batch as `api::federation::receive_batch` takes it from a peer
//! node, up to the ledger — strict JSON, the `core::wire::Batch` shape, then each message
//! as `check_handover` checks it (the `WireMessage` shape, the sender, the handing-over
//! node's right, the envelope rebuilt and validated by schema and cross-field rules, the
//! routing's incoming check skipped for want of a directory, the `Submission` prepared and
//! its digest compared), each consent as `check_wire_consent` does (document, schema, RRN
//! scan, registration, party, attestation) and each pickup report's shape. Nothing may
//! panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plusgate::core::consent::Registration;
use plusgate::core::identity::{AgencyId, CenterId};
use plusgate::core::message::{Envelope, MessageType};
use plusgate::core::routing::{Route, Routing};
use plusgate::core::schema::Schemas;
use plusgate::core::wire::{Batch, PickupReport, WireConsent, WireMessage};
use plusgate::node::ledger::Submission;
use serde_json::{json, Value};

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas::embedded().expect("embedded schemas compile"))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("a valid time")
}

fn message(node: &CenterId, m: Value) {
    if !m.is_object() {
        return;
    }
    let Ok(WireMessage {
        id,
        from,
        to,
        message_type,
        version,
        subject,
        consent_id,
        consent_collected_by,
        payload,
        accepted_at: _,
        digest,
    }) = serde_json::from_value::<WireMessage<Value>>(m)
    else {
        return;
    };
    let Ok(from) = AgencyId::parse(&from) else {
        return;
    };
    if id.is_empty() || Routing::check_handed_over_by(node, &from).is_err() {
        return;
    }
    let mut envelope = json!({
        "id": id,
        "type": message_type,
        "version": version,
        "to": to,
        "subject": subject,
        "consent_id": consent_id,
        "payload": payload,
    });
    if let Some(collector) = consent_collected_by {
        envelope["consent_collected_by"] = Value::String(collector);
    }
    if schemas().validate(&envelope).is_err() {
        return;
    }
    let Ok(envelope) = Envelope::from_validated(envelope, &from) else {
        return;
    };
    if let Ok(submission) = Submission::new(&from, envelope, Route::Local, None, now()) {
        let _ = submission.digest() == digest;
        let _ = submission.id().public();
    }
}

fn consent(node: &CenterId, c: WireConsent) {
    let Ok(document) = serde_json::from_str::<Value>(c.document.get()) else {
        return;
    };
    if schemas()
        .validate_payload(MessageType::Consent, 1, &document)
        .is_err()
        || !plusgate::core::rrn::find(&document).is_empty()
    {
        return;
    }
    let Some(collector) = document
        .pointer("/collected_by/agency")
        .and_then(Value::as_str)
        .and_then(|a| AgencyId::parse(a).ok())
    else {
        return;
    };
    let Ok(registration) = Registration::new(&document, &collector, "2026-11-26T05:00:00Z") else {
        return;
    };
    let record = registration.record;
    let _party = std::iter::once(collector.as_str())
        .chain(record.recipients.iter().map(String::as_str))
        .filter_map(|a| AgencyId::parse(a).ok())
        .any(|a| a.center() == node);
    let _ = plusgate::core::consent::attestation::collector_center(&record);
    if let Some(attestation) = c.attestation {
        let _ = attestation.verify(&record, None);
    }
    let _ = plusgate::core::consent::latest_withdrawal(&c.history);
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = plusgate::core::json::parse_strict(data) else {
        return;
    };
    let Ok(batch) = serde_json::from_value::<Batch<Value, Value>>(body) else {
        return;
    };
    let node = CenterId::parse("suwon").expect("a valid center id");
    for m in batch.messages {
        message(&node, m);
    }
    for c in batch.consents {
        consent(&node, c);
    }
    for r in batch.pickups {
        let _ = serde_json::from_value::<PickupReport>(r);
    }
});
