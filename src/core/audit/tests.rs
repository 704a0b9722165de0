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
