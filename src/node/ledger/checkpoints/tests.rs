//! Unit tests of `node::ledger::checkpoints`: what the ledger holds of a peer's checkpoints.

use std::sync::Arc;

use time::OffsetDateTime;

use super::*;
use crate::core::audit::{test_event, Divergence, Head};
use crate::core::keys::SigningKey;
use crate::node::clock::ManualClock;
use crate::node::ledger::{Ledger, LedgerOptions};
use crate::node::store::Store;

/// The peer's chain grown to `length` entries (entries from `branch` differ from the
/// honest ones from `from` on) and its checkpoint after `prev`.
fn signed(key: &SigningKey, length: u64, from: u64, branch: &str, prev: Prev) -> Checkpoint {
    let mut head = Head::GENESIS;
    for i in 0..length {
        let mut e = test_event(i % 60);
        if i >= from {
            e.detail = Some(branch.into());
        }
        head.append(e);
    }
    Checkpoint::sign(key, "gangseo", &head, "2026-11-26T04:00:00.000Z", prev)
}

/// Queues `peer`'s checkpoints as having come `via`, and waits for the verdict.
async fn judge(
    ledger: &Ledger,
    peer: &CenterId,
    via: Via,
    links: Vec<Checkpoint>,
    latest: Checkpoint,
) -> Result<Link, LedgerError> {
    ledger
        .queue_peer_checkpoints(peer.clone(), via, links, latest)
        .await?
        .reply()
        .await
}

#[tokio::test]
async fn a_peer_checkpoint_that_forks_is_refused_kept_as_evidence_and_the_held_one_stays() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (ledger, _thread) =
        Ledger::start(store.clone(), LedgerOptions::default(), clock).expect("ledger");
    let peer = CenterId::parse("gangseo").expect("center");
    let key = SigningKey::generate().expect("key").0;
    let c10 = signed(&key, 10, u64::MAX, "", Prev::genesis());
    let c15 = signed(&key, 15, u64::MAX, "", Prev::of(&c10));
    let c20 = signed(&key, 20, u64::MAX, "", Prev::of(&c15));
    // Cut back to 12 entries and its checkpoints to c10; grown again to 25.
    let x25 = signed(&key, 25, 12, "after the cut", Prev::of(&c10));
    let keep = |links: Vec<Checkpoint>, latest: &Checkpoint| {
        judge(&ledger, &peer, Via::Batch, links, latest.clone())
    };
    let held = || store.peer_checkpoint(&peer).expect("read");

    assert_eq!(keep(vec![], &c10).await.expect("first"), Link::Extends);
    assert_eq!(held(), Some(c10.clone()));
    // c20 follows c15, not seen yet: nothing kept until it comes along.
    assert_eq!(keep(vec![], &c20).await.expect("gap"), Link::Gap);
    assert_eq!(held(), Some(c10.clone()));
    assert_eq!(
        keep(vec![c15.clone()], &c20).await.expect("linked"),
        Link::Extends
    );
    assert_eq!(held(), Some(c20.clone()));
    let history = store.peer_history(&peer).expect("read");
    assert_eq!(history.keys().copied().collect::<Vec<_>>(), [10, 15, 20]);
    // c15 again, late over the other channel: one held before, no contradiction.
    let late = judge(&ledger, &peer, Via::Answer, vec![], c15.clone()).await;
    assert_eq!(late.expect("late"), Link::Older);
    assert_eq!(held(), Some(c20.clone()));
    assert!(store.peer_evidence(&peer).expect("read").is_empty());

    // The cut-back node's checkpoint skips c15 and c20: refused, and kept as evidence.
    for _ in 0..2 {
        let refused = keep(vec![], &x25).await.expect_err("forked");
        assert!(
            matches!(
                refused,
                LedgerError::PeerRollback(Divergence::Forked {
                    length: 25,
                    prev: 10,
                    held: 20,
                    ..
                })
            ),
            "{refused}"
        );
    }
    assert_eq!(held(), Some(c20.clone()));
    let evidence = store.peer_evidence(&peer).expect("read");
    assert_eq!(evidence.len(), 1, "the same checkpoint is kept once");
    assert_eq!((&evidence[0].held, &evidence[0].refused), (&c20, &x25));
    assert!(
        evidence[0].problem.contains("forked"),
        "{}",
        evidence[0].problem
    );
    assert!(evidence[0].held.verify(&key.public_key()));
    assert!(evidence[0].refused.verify(&key.public_key()));

    // Restored from a backup at 12 entries, it signs 17: shorter than c20 and not one held.
    let y17 = signed(&key, 17, 12, "after the restore", Prev::of(&c10));
    let refused = keep(vec![], &y17).await.expect_err("rolled back");
    assert!(
        matches!(
            refused,
            LedgerError::PeerRollback(Divergence::RolledBack {
                length: 17,
                earlier: 20,
                ..
            })
        ),
        "{refused}"
    );
    assert_eq!(store.peer_evidence(&peer).expect("read").len(), 2);
}

#[tokio::test]
async fn the_checkpoints_held_of_a_peer_are_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (ledger, _thread) =
        Ledger::start(store.clone(), LedgerOptions::default(), clock).expect("ledger");
    let peer = CenterId::parse("gangseo").expect("center");
    let key = SigningKey::generate().expect("key").0;
    let mut prev = Prev::genesis();
    let n = PEER_HISTORY_MAX as u64 + 10;
    for length in 1..=n {
        let c = signed(&key, length, u64::MAX, "", prev);
        prev = Prev::of(&c);
        let link = judge(&ledger, &peer, Via::Answer, vec![], c)
            .await
            .expect("extends");
        assert_eq!(link, Link::Extends);
    }
    let history = store.peer_history(&peer).expect("read");
    assert_eq!(history.len(), PEER_HISTORY_MAX);
    assert_eq!(history.keys().next(), Some(&11));
    assert_eq!(history.keys().next_back(), Some(&n));
}

#[tokio::test]
async fn a_peer_checkpoint_earlier_than_the_one_before_on_the_same_channel_is_a_rollback() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path()).expect("store");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (ledger, _thread) =
        Ledger::start(store.clone(), LedgerOptions::default(), clock).expect("ledger");
    let peer = CenterId::parse("gangseo").expect("center");
    let key = SigningKey::generate().expect("key").0;
    let c10 = signed(&key, 10, u64::MAX, "", Prev::genesis());
    let c15 = signed(&key, 15, u64::MAX, "", Prev::of(&c10));
    let judged = |via, c: &Checkpoint| judge(&ledger, &peer, via, vec![], c.clone());
    assert_eq!(
        judged(Via::Answer, &c10).await.expect("first"),
        Link::Extends
    );
    assert_eq!(judged(Via::Batch, &c15).await.expect("next"), Link::Extends);
    // c10 over the answer channel again: that channel never saw more; fine.
    assert_eq!(judged(Via::Answer, &c10).await.expect("late"), Link::Older);
    // c10 over the batch channel, which brought c15 before: the peer went back (restored
    // from a backup, say) though c10 is one of its checkpoints.
    let refused = judged(Via::Batch, &c10).await.expect_err("went back");
    assert!(
        matches!(
            refused,
            LedgerError::PeerRollback(Divergence::RolledBack {
                length: 10,
                earlier: 15,
                ..
            })
        ),
        "{refused}"
    );
    assert_eq!(store.peer_evidence(&peer).expect("read").len(), 1);
    assert_eq!(store.peer_checkpoint(&peer).expect("read"), Some(c15));
}
