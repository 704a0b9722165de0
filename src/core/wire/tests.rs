//! Unit tests of the wire formats: receipts and pickup reports, each field under its
//! signature.

use super::*;

fn receipt(key: &SigningKey) -> Receipt {
    Receipt::sign(
        key,
        &CenterId::parse("jeongeup").expect("center"),
        "ref-1",
        "ab12",
        "2026-11-26T03:00:00.000Z",
    )
}

#[test]
fn a_receipt_verifies_against_its_signers_key_only() {
    let (key, _) = SigningKey::generate().expect("key");
    let (other, _) = SigningKey::generate().expect("key");
    let r = receipt(&key);
    let peer = CenterId::parse("jeongeup").expect("center");
    assert_eq!(r.check(&peer, &key.public_key(), "ref-1", "ab12"), Ok(()));
    assert_eq!(
        r.check(&peer, &other.public_key(), "ref-1", "ab12"),
        Err(ReceiptError::BadSignature { peer: peer.clone() })
    );
}

#[test]
fn every_field_is_covered_by_the_signature() {
    let (key, _) = SigningKey::generate().expect("key");
    let public = key.public_key();
    let good = receipt(&key);
    let mut altered = Vec::new();
    let mut r = good.clone();
    r.message_id.push('x');
    altered.push(r);
    let mut r = good.clone();
    r.digest = "ab13".into();
    altered.push(r);
    let mut r = good.clone();
    r.node = CenterId::parse("suwon").expect("center");
    altered.push(r);
    let mut r = good.clone();
    r.received_at = "2026-11-26T03:00:01.000Z".into();
    altered.push(r);
    let mut r = good.clone();
    r.signature.replace_range(0..2, "00");
    altered.push(r);
    for r in altered {
        assert!(!r.verify(&public), "{r:?} must not verify");
    }
}

#[test]
fn a_receipt_for_another_message_or_digest_or_node_is_refused() {
    let (key, _) = SigningKey::generate().expect("key");
    let r = receipt(&key);
    let peer = CenterId::parse("jeongeup").expect("center");
    let other = CenterId::parse("gangseo").expect("center");
    assert!(matches!(
        r.check(&other, &key.public_key(), "ref-1", "ab12"),
        Err(ReceiptError::OtherNode { .. })
    ));
    assert!(matches!(
        r.check(&peer, &key.public_key(), "ref-2", "ab12"),
        Err(ReceiptError::OtherMessage { .. })
    ));
    assert!(matches!(
        r.check(&peer, &key.public_key(), "ref-1", "ab13"),
        Err(ReceiptError::OtherDigest { .. })
    ));
}

fn pickup(key: &SigningKey, acked_at: Option<&str>) -> PickupReport {
    PickupReport::sign(
        key,
        &CenterId::parse("gangseo").expect("center"),
        "suwon/employment/ref-1",
        "ab12",
        "2026-11-26T03:00:00.000Z",
        acked_at,
    )
}

#[test]
fn a_pickup_report_checks_against_its_senders_key_only() {
    let (key, _) = SigningKey::generate().expect("key");
    let (other, _) = SigningKey::generate().expect("key");
    let sender = CenterId::parse("gangseo").expect("center");
    for acked in [None, Some("2026-11-26T03:00:05.000Z")] {
        let r = pickup(&key, acked);
        assert_eq!(r.check(&sender, &key.public_key()), Ok(()));
        assert_eq!(
            r.check(&sender, &other.public_key()),
            Err(PickupError::BadSignature {
                node: sender.clone()
            })
        );
    }
}

#[test]
fn every_field_of_a_pickup_report_is_covered_by_the_signature() {
    let (key, _) = SigningKey::generate().expect("key");
    let public = key.public_key();
    let acked = pickup(&key, Some("2026-11-26T03:00:05.000Z"));
    let pulled = pickup(&key, None);
    assert!(acked.verify(&public) && pulled.verify(&public));
    let mut altered: Vec<PickupReport> = Vec::new();
    let mut alter = |edit: &dyn Fn(&mut PickupReport)| {
        let mut r = acked.clone();
        edit(&mut r);
        altered.push(r);
    };
    alter(&|r| r.message_id.push('x'));
    alter(&|r| r.message_id = "suwon/employment/ref-2".into());
    alter(&|r| r.digest = "ab13".into());
    alter(&|r| r.node = CenterId::parse("jeongeup").expect("center"));
    alter(&|r| r.first_pulled_at = "2026-11-26T03:00:01.000Z".into());
    alter(&|r| r.acked_at = Some("2026-11-26T03:00:06.000Z".into()));
    // An acknowledgement cannot be taken away, nor added to a report of a pull alone.
    alter(&|r| r.acked_at = None);
    alter(&|r| r.acked_at = Some(String::new()));
    alter(&|r| r.signature.replace_range(0..2, "00"));
    alter(&|r| r.signature = "not hex".into());
    let mut added = pulled.clone();
    added.acked_at = Some("2026-11-26T03:00:05.000Z".into());
    altered.push(added);
    let mut empty = pulled.clone();
    empty.acked_at = Some(String::new());
    altered.push(empty);
    for r in altered {
        assert!(!r.verify(&public), "{r:?} must not verify");
    }
}

#[test]
fn a_pickup_report_signature_is_no_receipt_and_no_receipt_is_a_pickup_report() {
    let (key, _) = SigningKey::generate().expect("key");
    let node = CenterId::parse("gangseo").expect("center");
    // The same strings signed as a receipt (the first four fields line up) do not make a
    // report, and the other way round: each statement has its own context.
    let receipt = Receipt::sign(&key, &node, "suwon/employment/ref-1", "ab12", "x");
    let as_report = PickupReport {
        message_id: receipt.message_id.clone(),
        digest: receipt.digest.clone(),
        node: node.clone(),
        first_pulled_at: "x".into(),
        acked_at: None,
        signature: receipt.signature.clone(),
    };
    assert!(!as_report.verify(&key.public_key()));
    let report = PickupReport::sign(&key, &node, "ref-1", "ab12", "x", None);
    let as_receipt = Receipt {
        message_id: "ref-1".into(),
        digest: "ab12".into(),
        node,
        received_at: "x".into(),
        signature: report.signature,
    };
    assert!(!as_receipt.verify(&key.public_key()));
}

#[test]
fn a_pickup_report_is_refused_for_another_node_or_a_time_that_is_none() {
    let (key, _) = SigningKey::generate().expect("key");
    let r = pickup(&key, None);
    let other = CenterId::parse("jeongeup").expect("center");
    assert!(matches!(
        r.check(&other, &key.public_key()),
        Err(PickupError::OtherNode { .. })
    ));
    let sender = CenterId::parse("gangseo").expect("center");
    let odd = PickupReport::sign(&key, &sender, "a/b/c", "ab12", "yesterday", None);
    assert!(matches!(
        odd.check(&sender, &key.public_key()),
        Err(PickupError::NotATime {
            field: "first_pulled_at",
            ..
        })
    ));
    let odd = PickupReport::sign(
        &key,
        &sender,
        "a/b/c",
        "ab12",
        "2026-11-26T03:00:00.000Z",
        Some("soon"),
    );
    assert!(matches!(
        odd.check(&sender, &key.public_key()),
        Err(PickupError::NotATime {
            field: "acked_at",
            ..
        })
    ));
}

#[test]
fn a_pickup_report_travels_as_json_and_null_is_no_acknowledgement_time() {
    let (key, _) = SigningKey::generate().expect("key");
    let r = pickup(&key, None);
    let json = serde_json::to_value(&r).expect("JSON");
    assert!(json.get("acked_at").is_none(), "{json}");
    let back: PickupReport = serde_json::from_value(json.clone()).expect("parses");
    assert_eq!(back, r);
    let mut with_null = json.clone();
    with_null["acked_at"] = serde_json::Value::Null;
    assert!(serde_json::from_value::<PickupReport>(with_null).is_err());
    let mut unknown = json;
    unknown["read_at"] = serde_json::json!("2026-11-26T03:00:00Z");
    assert!(serde_json::from_value::<PickupReport>(unknown).is_err());
}
