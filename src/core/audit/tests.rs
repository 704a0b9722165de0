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

#[test]
fn a_checkpoint_verifies_only_against_its_signers_key_and_covers_every_field() {
    let (key, _) = crate::core::keys::SigningKey::generate().expect("key");
    let (other, _) = crate::core::keys::SigningKey::generate().expect("key");
    let mut head = Head::GENESIS;
    for i in 0..3 {
        head.append(event(i));
    }
    let c = Checkpoint::sign(&key, "suwon", &head, "2026-11-26T04:00:00.000Z");
    assert_eq!(c.length, 3);
    assert_eq!(c.head, hex::encode(&head.hash));
    assert!(c.verify(&key.public_key()));
    assert!(!c.verify(&other.public_key()));
    let altered = [
        Checkpoint {
            node: "gangseo".into(),
            ..c.clone()
        },
        Checkpoint {
            length: 2,
            ..c.clone()
        },
        Checkpoint {
            head: hex::encode(&[0; 32]),
            ..c.clone()
        },
        Checkpoint {
            at: "2026-11-26T04:00:01.000Z".into(),
            ..c.clone()
        },
    ];
    for a in altered {
        assert!(!a.verify(&key.public_key()), "{a:?}");
    }
}

#[test]
fn a_later_checkpoint_must_not_be_shorter_or_rewrite_the_same_length() {
    let (key, _) = crate::core::keys::SigningKey::generate().expect("key");
    let mut head = Head::GENESIS;
    head.append(event(0));
    let one = Checkpoint::sign(&key, "suwon", &head, "t1");
    head.append(event(1));
    let two = Checkpoint::sign(&key, "suwon", &head, "t2");
    assert_eq!(two.continues(&one), Ok(()));
    assert_eq!(two.continues(&two), Ok(()));
    assert!(matches!(
        one.continues(&two),
        Err(Divergence::RolledBack {
            length: 1,
            earlier: 2,
            ..
        })
    ));
    assert!(one
        .continues(&two)
        .is_err_and(|e| e.to_string().contains("rolled back")));
    let mut other = Head::GENESIS;
    other.append(event(7));
    other.append(event(8));
    let rewritten = Checkpoint::sign(&key, "suwon", &other, "t3");
    assert!(matches!(
        rewritten.continues(&two),
        Err(Divergence::Rewritten { length: 2, .. })
    ));
    assert!(rewritten
        .continues(&two)
        .is_err_and(|e| e.to_string().contains("rewritten")));
}
