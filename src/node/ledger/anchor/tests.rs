//! Unit tests of `node::ledger::anchor`: a ledger over a real sled store refuses to start
//! on a chain cut back behind the newest checkpoint it issued.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use time::OffsetDateTime;

use super::*;
use crate::core::identity::{CenterId, OfficerId};
use crate::core::keys::SigningKey;
use crate::node::clock::ManualClock;
use crate::node::ledger::{Ledger, LedgerOptions, StartError};
use crate::node::store::WriteSet;

fn policy(key: &Arc<SigningKey>, dir: &Path) -> CheckpointPolicy {
    CheckpointPolicy {
        node: CenterId::parse("suwon").expect("center"),
        key: key.clone(),
        every: 3,
        anchor: Anchor::in_data_dir(dir),
    }
}

/// A running ledger, its thread and its store.
struct Running(Ledger, JoinHandle<()>, Store);

fn start(dir: &Path, key: &Arc<SigningKey>) -> Result<Running, StartError> {
    let store = Store::open(dir).expect("store");
    let options = LedgerOptions {
        checkpoints: Some(policy(key, dir)),
        ..LedgerOptions::default()
    };
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    Ledger::start(store.clone(), options, clock)
        .map(|(ledger, thread)| Running(ledger, thread, store))
}

/// `n` more entries (an officer's queries), each in a group of its own.
async fn grow(ledger: &Ledger, n: u64) {
    let officer = OfficerId::parse("suwon/privacy-officer").expect("officer");
    for i in 0..n {
        ledger
            .queried(
                officer.clone(),
                "ps-0123456789abcdef".into(),
                format!("q{i}"),
            )
            .await
            .expect("queried");
    }
}

/// Closes the ledger and the store (sled allows one opener of a folder at a time): the
/// thread stops once every handle is gone, and its store clone goes with it.
async fn stop(Running(ledger, thread, store): Running) {
    drop(ledger);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("the ledger thread ended");
    drop(store);
}

/// A store in `to` holding entries `0..entries` and the own checkpoints of at most
/// `checkpoints` entries of the store in `from`, and a copy of its anchor: what deleting
/// the newest entries and checkpoints leaves.
fn cut(from: &Path, to: &Path, entries: u64, checkpoints: u64) {
    let source = Store::open(from).expect("source");
    let target = Store::open(to).expect("target");
    let mut writes = WriteSet::new();
    for e in source.audit_entries() {
        let e = e.expect("entry");
        if e.seq < entries {
            writes.put_audit(&e);
        }
    }
    for c in source.checkpoints() {
        let c = c.expect("checkpoint");
        if c.length <= checkpoints {
            writes.put_checkpoint(&c);
        }
    }
    target.apply(writes).expect("apply");
    target.sync().expect("sync");
    std::fs::copy(from.join(ANCHOR_FILE), to.join(ANCHOR_FILE)).expect("copy the anchor");
}

fn refusal(started: Result<Running, StartError>) -> String {
    match started {
        Ok(_) => panic!("the ledger started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_cut_back_behind_its_newest_checkpoint_is_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = Arc::new(SigningKey::generate().expect("key").0);
    let node = tmp.path().join("node");
    let running = start(&node, &key).expect("fresh start");
    let (ledger, store) = (&running.0, &running.2);
    grow(ledger, 7).await;
    let c6 = ledger.latest_checkpoint().expect("a checkpoint");
    assert_eq!(c6.length, 6);
    let c3 = store
        .own_checkpoint(3)
        .expect("read")
        .expect("checkpoint of 3");
    assert_eq!(c6.prev, Some(crate::core::audit::Prev::of(&c3)));
    stop(running).await;
    let anchored: Checkpoint =
        record::decode(&std::fs::read(node.join(ANCHOR_FILE)).expect("anchor")).expect("record");
    assert_eq!(anchored, c6);

    // Unchanged, it starts again.
    let running = start(&node, &key).expect("restart");
    assert_eq!(running.0.latest_checkpoint(), Some(c6.clone()));
    stop(running).await;

    // Entries 5 and 6 and the checkpoint of 6 deleted: refused, naming both.
    let cut_back = tmp.path().join("cut-back");
    cut(&node, &cut_back, 5, 3);
    let why = refusal(start(&cut_back, &key));
    assert!(
        why.starts_with(
            "the audit log does not extend the newest checkpoint this node signed: 6 entries"
        ),
        "{why}"
    );
    assert!(why.contains("the chain has only 5 entries"), "{why}");
    assert!(why.contains("restore the data directory"), "{why}");

    // Only the checkpoint deleted, the entries intact: refused too.
    let unsigned = tmp.path().join("checkpoint-deleted");
    cut(&node, &unsigned, 7, 3);
    let why = refusal(start(&unsigned, &key));
    assert!(
        why.contains("the store no longer holds that checkpoint (its newest covers 3 entries)"),
        "{why}"
    );

    // The anchor deleted too: it starts (the store is consistent in itself), re-anchors its
    // newest checkpoint, and the next one it signs contradicts the one it signed before:
    // its peers catch that.
    std::fs::remove_file(cut_back.join(ANCHOR_FILE)).expect("remove");
    let running = start(&cut_back, &key).expect("starts without its anchor");
    let anchored: Checkpoint =
        record::decode(&std::fs::read(cut_back.join(ANCHOR_FILE)).expect("anchor"))
            .expect("record");
    assert_eq!(anchored, c3);
    grow(&running.0, 1).await;
    let signed_again = running.0.latest_checkpoint().expect("checkpoint");
    assert_eq!(signed_again.length, 6);
    assert!(signed_again.follows(&c6).is_err());
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_foreign_anchor_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = Arc::new(SigningKey::generate().expect("key").0);
    let node = tmp.path().join("node");
    let running = start(&node, &key).expect("fresh start");
    grow(&running.0, 4).await;
    stop(running).await;
    let path = node.join(ANCHOR_FILE);
    let good = std::fs::read(&path).expect("anchor");

    let mut damaged = good.clone();
    let last = damaged.len() - 2;
    damaged[last] ^= 1;
    std::fs::write(&path, &damaged).expect("write");
    let why = refusal(start(&node, &key));
    assert!(why.contains("checksum"), "{why}");

    std::fs::write(&path, &good).expect("write");
    let other = Arc::new(SigningKey::generate().expect("key").0);
    let why = refusal(start(&node, &other));
    assert!(
        why.contains("this node's signing key did not sign"),
        "{why}"
    );
}
