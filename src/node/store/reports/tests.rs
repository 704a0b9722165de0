//! Unit tests of `node::store::reports`.

use super::*;
use crate::core::audit::{test_event, Action};
use crate::core::keys::SigningKey;
use crate::node::store::WriteSet;

/// A store with a chain of `n` entries and a checkpoint signed every `every` entries.
fn chain(n: u64, every: u64, key: &SigningKey) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let mut head = Head::GENESIS;
    let mut writes = WriteSet::new();
    for i in 0..n {
        let mut event = test_event(i % 60);
        if i % 7 == 3 {
            event.action = Action::Refused;
            event.detail = Some("urn:plusgate:problem:no-consent: none covers it".into());
        }
        writes.put_audit(&head.append(event));
        if (i + 1) % every == 0 {
            writes.put_checkpoint(&Checkpoint::sign_unchained(key, "suwon", &head, "t"));
        }
        if writes.len() > 10_000 {
            store.apply(std::mem::take(&mut writes)).expect("apply");
        }
    }
    store.apply(writes).expect("apply");
    (dir, store)
}

fn key() -> SigningKey {
    SigningKey::generate().expect("key").0
}

#[test]
fn an_honest_chain_verifies_from_its_last_checkpoint_or_from_genesis() {
    let key = key();
    let (_dir, store) = chain(25, 10, &key);
    let public = key.public_key();
    let quick = store
        .audit_status(25, Some(&public), false)
        .expect("status");
    assert!(quick.verified(), "{quick:?}");
    assert_eq!(quick.verified_from, VerifiedFrom::Checkpoint);
    assert_eq!(quick.entries_checked, 5);
    let (c, valid) = quick.checkpoint.clone().expect("checkpoint");
    assert_eq!((c.length, valid), (20, Some(true)));
    let full = store.audit_status(25, Some(&public), true).expect("status");
    assert!(full.verified(), "{full:?}");
    assert_eq!(full.verified_from, VerifiedFrom::Genesis);
    assert_eq!(full.entries_checked, 25);
    assert_eq!(full.head, quick.head);
    // A shorter bound (the durable length) ignores later entries and checkpoints.
    let earlier = store
        .audit_status(15, Some(&public), false)
        .expect("status");
    assert_eq!(earlier.checkpoint.expect("checkpoint").0.length, 10);
    assert_eq!(earlier.entries_checked, 5);
}

#[test]
fn a_checkpoint_signed_by_another_key_is_not_trusted_and_the_chain_is_checked_whole() {
    let (_dir, store) = chain(25, 10, &key());
    let status = store
        .audit_status(25, Some(&key().public_key()), false)
        .expect("status");
    assert!(status.verified());
    assert_eq!(status.verified_from, VerifiedFrom::Genesis);
    assert_eq!(status.checkpoint.expect("checkpoint").1, Some(false));
}

#[test]
fn an_altered_entry_after_the_checkpoint_or_a_missing_one_is_named() {
    let key = key();
    let (_dir, store) = chain(25, 10, &key);
    let mut bad = store.audit_entry(22).expect("read").expect("entry");
    bad.to = "suwon/finance".into();
    let mut writes = WriteSet::new();
    writes.put_audit(&bad);
    store.apply(writes).expect("apply");
    let status = store
        .audit_status(25, Some(&key.public_key()), false)
        .expect("status");
    assert_eq!(
        status.problem.as_ref().map(ToString::to_string).as_deref(),
        Some("audit entry 22: content does not match its hash (altered)")
    );
    assert!(matches!(status.problem, Some(ChainProblem::Break(_))));
    let status = store
        .audit_status(30, Some(&key.public_key()), false)
        .expect("status");
    assert!(status.problem.is_some());
}

#[test]
fn an_entry_altered_under_the_checkpoint_is_found_by_the_checkpoint_or_from_genesis() {
    let key = key();
    let (_dir, store) = chain(25, 10, &key);
    let mut bad = store.audit_entry(19).expect("read").expect("entry");
    bad.actor = "someone else".into();
    let mut writes = WriteSet::new();
    writes.put_audit(&bad);
    store.apply(writes).expect("apply");
    for from_genesis in [false, true] {
        let status = store
            .audit_status(25, Some(&key.public_key()), from_genesis)
            .expect("status");
        assert!(
            status
                .problem
                .as_ref()
                .is_some_and(|p| p.to_string().starts_with("audit entry 19")),
            "{status:?}"
        );
    }
}

/// Not a check: the numbers for ARCHITECTURE.md (`cargo test --release -- --ignored
/// --nocapture audit_status_cost`).
#[test]
#[ignore]
fn audit_status_cost_on_a_chain_of_100k_entries() {
    let key = key();
    let (_dir, store) = chain(100_999, 1000, &key);
    let public = key.public_key();
    for from_genesis in [false, true] {
        let started = std::time::Instant::now();
        let status = store
            .audit_status(100_999, Some(&public), from_genesis)
            .expect("status");
        assert!(status.verified());
        println!(
            "audit_status(from_genesis: {from_genesis}): {} entries checked in {:?}",
            status.entries_checked,
            started.elapsed()
        );
    }
    let started = std::time::Instant::now();
    let refused = store
        .audit_entries_from(0)
        .filter(|e| e.as_ref().is_ok_and(|e| e.action == Action::Refused))
        .count();
    println!(
        "scan of 100,999 entries for refusals: {refused} found in {:?}",
        started.elapsed()
    );
}
