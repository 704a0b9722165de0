//! Fuzz target: a pushed body as `Api::push` checks it — strict JSON (`core::json`), the
//! envelope and payload schemas (`core::schema`), then the cross-field rules
//! (`core::message::Envelope::from_validated`). Nothing may panic, and every refusal must
//! be describable.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plusgate::core::identity::AgencyId;
use plusgate::core::json;
use plusgate::core::message::Envelope;
use plusgate::core::schema::Schemas;

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas::embedded().expect("embedded schemas compile"))
}

fuzz_target!(|data: &[u8]| {
    let body = match json::parse_strict(data) {
        Ok(body) => body,
        Err(e) => {
            let _ = json::describe_error(&e);
            return;
        }
    };
    let sender = AgencyId::parse("suwon/employment").expect("a valid agency id");
    if schemas().validate(&body).is_ok() {
        let _ = Envelope::from_validated(body, &sender);
    }
});
