//! Fuzz target: a consent document as `POST /v1/consents` takes it — strict JSON, the
//! `consent.v1.json` schema, the RRN scan, `core::consent::Registration::new` as its
//! collector, then the record's terms and JSON view. Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plusgate::core::consent::Registration;
use plusgate::core::identity::AgencyId;
use plusgate::core::json;
use plusgate::core::message::MessageType;
use plusgate::core::schema::Schemas;
use serde_json::Value;

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas::embedded().expect("embedded schemas compile"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(document) = json::parse_strict(data) else {
        return;
    };
    let _ = plusgate::core::rrn::find(&document);
    if schemas()
        .validate_payload(MessageType::Consent, 1, &document)
        .is_err()
    {
        return;
    }
    // The collector as the document names it (what a peer's consent is registered as),
    // and a fixed agency (the API's caller), which may or may not be the collector.
    let named = document
        .pointer("/collected_by/agency")
        .and_then(Value::as_str)
        .and_then(|a| AgencyId::parse(a).ok());
    let fixed = AgencyId::parse("suwon/employment").expect("a valid agency id");
    for collector in named.iter().chain(std::iter::once(&fixed)) {
        if let Ok(r) = Registration::new(&document, collector, "2026-11-26T05:00:00Z") {
            let record = r.record;
            let _ = record.to_json();
            let _ = record.key();
            let _ = record.readable_by(&fixed);
            if let Ok(terms) = record.terms() {
                let now =
                    time::OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("a valid time");
                let _ = record.ended(&terms, now);
            }
        }
    }
});
