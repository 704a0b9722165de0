//! Unit tests of `core::audit`.

use super::*;

use super::test_event as event;

fn chain(n: u64) -> Vec<AuditEntry> {
    let mut head = Head::GENESIS;
    (0..n).map(|i| head.append(event(i))).collect()
}

#[test]
fn an_honest_chain_verifies_and_resumes_from_its_head() {
    let entries = chain(5);
    let head = verify(entries.clone()).expect("valid chain");
    assert_eq!(head, Head::after(&entries[4]).expect("hex"));
    assert_eq!(head.next_seq, 5);
}

#[test]
fn every_kind_of_tampering_names_the_first_bad_entry() {
    let good = chain(6);
    let check = |entries: Vec<AuditEntry>, seq: u64| {
        let err = verify(entries).expect_err("tampering must be detected");
        assert_eq!(err.seq, seq, "{err}");
    };
    let mut altered = good.clone();
    altered[3].to = "suwon/finance".into();
    check(altered, 3);
    let mut removed = good.clone();
    removed.remove(2);
    check(removed, 2);
    let mut reordered = good.clone();
    reordered.swap(1, 4);
    check(reordered, 1);
    let mut inserted = good.clone();
    inserted.insert(3, good[3].clone());
    check(inserted, 4);
    let mut relinked = good.clone();
    relinked[5].prev = hex::encode(&[1; 32]);
    check(relinked, 5);
}

/// Details come from outside (a peer's answer, a stated reason): the chain keeps at most
/// `DETAIL_BYTES_MAX` bytes of one, cut on a character boundary.
#[test]
fn a_long_detail_is_bounded_when_appended() {
    let mut e = event(0);
    e.detail = Some("가".repeat(DETAIL_BYTES_MAX));
    let mut head = Head::GENESIS;
    let entry = head.append(e);
    let detail = entry.detail.expect("detail");
    assert!(detail.len() <= DETAIL_BYTES_MAX, "{}", detail.len());
    assert!(detail.ends_with('…'));
    let short = "refused by center gangseo: /payload/urgency: is not one of the allowed values";
    assert_eq!(bound_detail(short.to_owned()), short);
}

#[test]
fn every_action_is_listed_once_under_its_own_name() {
    // A new action does not compile here until it is placed; placing it means listing it
    // in `Action::ALL` too, which the assertions below check.
    let position = |a: Action| match a {
        Action::Accepted => 0,
        Action::Leased => 1,
        Action::Acked => 2,
        Action::Received => 3,
        Action::Delivered => 4,
        Action::DeadLettered => 5,
        Action::Requeued => 6,
        Action::ConsentRegistered => 7,
        Action::ConsentWithdrawn => 8,
        Action::Queried => 9,
        Action::Refused => 10,
        Action::Withheld => 11,
        Action::Purged => 12,
        Action::ConsentReceived => 13,
        Action::PickupReported => 14,
    };
    for (i, action) in Action::ALL.into_iter().enumerate() {
        assert_eq!(position(action), i, "{action:?}");
        let name = serde_json::to_value(action).expect("name");
        let back: Action = serde_json::from_value(name).expect("parses");
        assert_eq!(back, action);
    }
    assert_eq!(
        serde_json::to_value(Action::PickupReported).expect("name"),
        "pickup-reported"
    );
}
