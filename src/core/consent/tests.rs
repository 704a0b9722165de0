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

/// A consent collected by `collector` under `id`, naming `recipients`.
fn collected(id: &str, collector: &str, recipients: &[&str]) -> ConsentRecord {
    let mut doc = example();
    doc["id"] = Value::from(id);
    doc["collected_by"]["agency"] = Value::from(collector);
    doc["recipients"] = Value::from(recipients.to_vec());
    let agency = AgencyId::parse(collector).expect("agency");
    Registration::new(&doc, &agency, "2026-03-05T01:20:00Z")
        .expect("registrable")
        .record
}

#[test]
fn a_cited_id_is_the_senders_own_consent_else_the_only_one_naming_both_parties() {
    let own = collected("c-1", "suwon/welfare", &["suwon/jobs"]);
    let employment = collected("c-1", "suwon/employment", &["suwon/welfare", "suwon/jobs"]);
    let finance = collected("c-1", "suwon/finance", &["suwon/welfare", "suwon/jobs"]);
    let elsewhere = collected("c-1", "suwon/finance", &["suwon/jobs"]);
    let other_id = collected("c-2", "suwon/employment", &["suwon/welfare", "suwon/jobs"]);
    let key = |c: &ConsentRecord| Ok(Some(c.key()));
    let resolve = |cands: &[&ConsentRecord]| {
        resolve("c-1", "suwon/welfare", "suwon/jobs", cands.iter().copied())
    };

    // The sender's own wins, wherever it is among the others.
    assert_eq!(resolve(&[&employment, &finance, &own]), key(&own));
    // Else the only one naming sender and recipient; one that does not name the sender,
    // or has another id, does not count.
    assert_eq!(
        resolve(&[&employment, &elsewhere, &other_id]),
        key(&employment)
    );
    // The same consent seen twice (stored, and changed in this group) is one.
    assert_eq!(resolve(&[&employment, &employment]), key(&employment));
    // Two collectors' consents that both fit: refused, whatever their order.
    for cands in [[&employment, &finance], [&finance, &employment]] {
        assert_eq!(
            resolve(&cands),
            Err(Refusal::Ambiguous { id: "c-1".into() })
        );
    }
    // None fits: unknown (the caller's answer).
    assert_eq!(resolve(&[&elsewhere, &other_id]), Ok(None));
}

/// `ConsentStatus::ALL` and `Refusal::KINDS` name every status and every refusal: the
/// matches below stop compiling when a variant is added, and the indexes they give must
/// be the lists' positions.
#[test]
fn the_lists_of_statuses_and_refusal_kinds_are_whole() {
    for status in ConsentStatus::ALL {
        let at = match status {
            ConsentStatus::Granted => 0,
            ConsentStatus::Withdrawn => 1,
            ConsentStatus::Expired => 2,
        };
        assert_eq!(ConsentStatus::ALL[at], status);
        assert_eq!(ConsentStatus::parse(status.as_str()), Some(status));
    }
    let s = String::new;
    let refusals = [
        Refusal::Unknown { id: s() },
        Refusal::Ambiguous { id: s() },
        Refusal::OtherSubject {
            id: s(),
            subject: s(),
        },
        Refusal::NotYetValid {
            id: s(),
            valid_from: s(),
        },
        Refusal::Expired {
            id: s(),
            valid_until: s(),
        },
        Refusal::Withdrawn { id: s(), at: s() },
        Refusal::RecipientNotNamed {
            id: s(),
            recipient: s(),
        },
        Refusal::PurposeNotCovered {
            id: s(),
            purpose: s(),
        },
        Refusal::PurposeUnknown { why: s() },
        Refusal::ItemNotCovered {
            id: s(),
            items: Vec::new(),
        },
        Refusal::Unreadable { id: s(), why: s() },
    ];
    for (i, refusal) in refusals.iter().enumerate() {
        let at = match refusal {
            Refusal::Unknown { .. } => 0,
            Refusal::Ambiguous { .. } => 1,
            Refusal::OtherSubject { .. } => 2,
            Refusal::NotYetValid { .. } => 3,
            Refusal::Expired { .. } => 4,
            Refusal::Withdrawn { .. } => 5,
            Refusal::RecipientNotNamed { .. } => 6,
            Refusal::PurposeNotCovered { .. } => 7,
            Refusal::PurposeUnknown { .. } => 8,
            Refusal::ItemNotCovered { .. } => 9,
            Refusal::Unreadable { .. } => 10,
        };
        assert_eq!(at, i, "{refusal:?}");
        assert_eq!(Refusal::KINDS[at], refusal.kind());
    }
    assert_eq!(refusals.len(), Refusal::KINDS.len());
}
