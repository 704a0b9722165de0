//! Unit tests of `core::consent`.

use super::*;

fn example() -> Value {
    let text = include_str!("../../../schemas/examples/consent.json");
    serde_json::from_str(text).expect("example")
}

#[test]
fn only_the_collecting_agency_registers_a_consent() {
    let collector = AgencyId::parse("suwon/employment").expect("id");
    let other = AgencyId::parse("suwon/welfare").expect("id");
    let r = Registration::new(&example(), &collector, "2026-11-26T05:00:00Z").expect("ok");
    assert_eq!(
        serde_json::to_value(r.record.status).expect("serialises"),
        "granted"
    );
    assert_eq!(r.record.status, ConsentStatus::Granted);
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
