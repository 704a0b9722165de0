//! The store against a model: deferred writes read back the same whether they are in the
//! overlay, half folded, folded, or replayed from the journal after a crash.

use std::collections::BTreeMap;

use super::{Store, StoreOptions, WriteSet};
use crate::core::identity::AgencyId;
use crate::core::message::MessageId;
use crate::node::store::DeliveryRecord;

fn agency(n: u64) -> AgencyId {
    AgencyId::parse(&format!("suwon/agency{n}")).expect("agency id")
}

fn id(n: u64) -> MessageId {
    MessageId::parse(&format!("msg-{n:06}")).expect("message id")
}

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn open(dir: &std::path::Path) -> Store {
    open_with(
        dir,
        StoreOptions {
            overlay_bytes: 16 << 10, // turns over every few groups
            reserve_bytes: 0,
            ..StoreOptions::default()
        },
    )
}

/// Opens the store, waiting for a dropped one to let go of its lock: sled's I/O threads may
/// still hold the file for a moment after the last handle is gone.
fn open_with(dir: &std::path::Path, options: StoreOptions) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open_with(dir, options.clone()) {
            Ok(store) => return store,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open store: {e}"),
        }
    }
}

/// What the model says each inbox holds: recipient → seq → id.
type Model = BTreeMap<u64, BTreeMap<u64, u64>>;

fn check(store: &Store, model: &Model, deliveries: &BTreeMap<u64, u32>, when: &str) {
    for a in 0..4 {
        let got: Vec<(u64, String)> = store
            .inbox(&agency(a), None)
            .map(|e| e.map(|q| (q.seq, q.id.to_string())))
            .collect::<Result<_, _>>()
            .expect("scan inbox");
        let want: Vec<(u64, String)> = model
            .get(&a)
            .map(|m| m.iter().map(|(s, i)| (*s, id(*i).to_string())).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "inbox {a} {when}");
        // A scan starting in the middle sees the same tail.
        if let Some((mid, _)) = want.get(want.len() / 2) {
            let tail: Vec<u64> = store
                .inbox(&agency(a), Some(*mid))
                .map(|e| e.map(|q| q.seq))
                .collect::<Result<_, _>>()
                .expect("scan tail");
            let want_tail: Vec<u64> = want.iter().map(|(s, _)| *s).filter(|s| s > mid).collect();
            assert_eq!(tail, want_tail, "inbox {a} tail {when}");
        }
    }
    for (n, leases) in deliveries {
        let d = store
            .delivery(&id(*n))
            .expect("read delivery")
            .expect("delivery exists");
        assert_eq!(d.lease_count, *leases, "delivery of {n} {when}");
    }
}

#[test]
fn deferred_writes_read_back_through_turnover_folding_and_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut model: Model = BTreeMap::new();
    let mut deliveries: BTreeMap<u64, u32> = BTreeMap::new();
    let mut seq = 0u64;
    for group in 0..400 {
        let mut writes = WriteSet::new();
        for _ in 0..rng.next(40) {
            let a = rng.next(4);
            match rng.next(3) {
                // A new message in an inbox.
                0 | 1 => {
                    seq += 1;
                    writes.put_inbox(&agency(a), seq, &id(seq));
                    model.entry(a).or_default().insert(seq, seq);
                }
                // Acknowledge the oldest one there, if any.
                _ => {
                    if let Some((&s, &n)) = model.get(&a).and_then(|m| m.iter().next()) {
                        writes.remove_inbox(&agency(a), s);
                        model.get_mut(&a).expect("inbox").remove(&s);
                        let leases = deliveries.entry(n).or_insert(0);
                        *leases += 1;
                        let mut d = DeliveryRecord::new(s, None);
                        d.lease_count = *leases;
                        writes.put_delivery(&id(n), &d);
                    }
                }
            }
        }
        store.apply(writes).expect("apply");
        store.sync().expect("sync");
        check(&store, &model, &deliveries, &format!("after group {group}"));
        if group % 97 == 96 {
            // A crash: the overlay is lost, the journal replays it.
            drop(store);
            store = open(dir.path());
            check(
                &store,
                &model,
                &deliveries,
                &format!("replayed after group {group}"),
            );
        }
    }
    assert!(
        store.overlay_size().0 > 0,
        "the test ends with writes in the overlay"
    );
    store.fold_all().expect("fold");
    assert_eq!(store.overlay_size().0, 0);
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.overlay_size().0,
        0,
        "nothing to replay after a clean fold"
    );
    check(&store, &model, &deliveries, "after a clean stop");
}

/// A crash in the middle of folding leaves journal records whose writes are partly in the
/// tree already. Replayed, they must not count as "never folded": removing one of them
/// (an ack) has to hide the tree's copy, or the entry comes back.
#[test]
fn an_entry_folded_before_a_crash_stays_removed_after_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || StoreOptions {
        overlay_bytes: 1 << 20, // no turnover of its own: the test decides
        reserve_bytes: 0,
        ..StoreOptions::default()
    };
    let store = open_with(dir.path(), options());
    let mut writes = WriteSet::new();
    for seq in 1..=100 {
        writes.put_inbox(&agency(0), seq, &id(seq));
    }
    store.apply(writes).expect("apply");
    store.overlay.freeze_now();
    // Fold the first ten into the tree; the journal record stays (the fold is unfinished).
    store
        .apply_folding(WriteSet::new(), 10)
        .expect("fold a slice");
    store.sync().expect("sync");
    drop(store); // a crash: the overlay is lost

    let store = open_with(dir.path(), options());
    let mut writes = WriteSet::new();
    writes.remove_inbox(&agency(0), 1);
    store.apply(writes).expect("apply");
    let first = store
        .inbox(&agency(0), None)
        .next()
        .expect("an entry")
        .expect("read");
    assert_eq!(first.seq, 2, "the acknowledged entry stays gone");
    assert_eq!(store.inbox(&agency(0), None).count(), 99);
}

/// Dropping a long journal happens a slice per group, never all in one batch: one batch
/// removing thousands of journal records stalled a group commit for ~100 ms.
#[test]
fn a_finished_fold_drops_its_journal_in_slices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            overlay_bytes: 1 << 20,
            reserve_bytes: 0,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let groups = 1000u64;
    for seq in 1..=groups {
        let mut writes = WriteSet::new();
        writes.put_inbox(&agency(0), seq, &id(seq));
        store.apply(writes).expect("apply");
    }
    let journal_len = || store.db.scan_prefix([super::keys::JOURNAL]).count() as u64;
    assert_eq!(journal_len(), groups, "one journal record per group");
    store.overlay.freeze_now();
    let mut batches = 0;
    while store.overlay_size().0 > 0 || journal_len() > 0 {
        let before = journal_len();
        store.apply(WriteSet::new()).expect("fold");
        assert!(
            before - journal_len() <= super::FOLD_MIN as u64,
            "a batch drops at most a slice of the journal"
        );
        batches += 1;
        assert!(batches < 1000, "the fold finishes");
    }
    assert_eq!(store.inbox(&agency(0), None).count() as u64, groups);
}

/// A store written before consents were kept by collector and id (keys `k` + id, notices
/// `n` + peer NUL id, no format recorded) is refused by a node; `migrate` puts every
/// consent and notice under its new key, once, and stamps the format.
#[test]
fn a_format_1_store_is_refused_and_migrate_rewrites_its_consents_under_collector_and_id() {
    use crate::core::consent::{ConsentKey, Registration};
    use crate::core::identity::CenterId;
    use crate::node::store::keys::{key, queue_prefix, CONSENT, NOTICE, SETTING};
    use crate::node::store::record;
    use crate::node::store::StoreError;

    let dir = tempfile::tempdir().expect("tempdir");
    let collector = AgencyId::parse("suwon/employment").expect("agency");
    let document = serde_json::from_str(include_str!("../../../schemas/examples/consent.json"))
        .expect("example consent");
    let consent = Registration::new(&document, &collector, "2026-03-05T01:20:00Z")
        .expect("registrable")
        .record;
    let peer = CenterId::parse("gangseo").expect("center");
    {
        // The old layout, written directly.
        let store = open(dir.path());
        store
            .db
            .insert(
                key(CONSENT, consent.id.as_bytes()),
                record::encode(&consent),
            )
            .expect("insert");
        let mut notice = queue_prefix(NOTICE, peer.as_str());
        notice.extend_from_slice(consent.id.as_bytes());
        store.db.insert(notice, Vec::new()).expect("insert");
        // A store of then records no format.
        store.db.remove(key(SETTING, b"format")).expect("remove");
        store.sync().expect("sync");
    }
    // A node refuses it, naming the command; the command migrates it. (Once sled has let go
    // of the dropped store's lock, or the refusal would be for the lock.)
    while super::in_use(dir.path()).expect("read the lock") {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let refused = Store::open_with(dir.path(), StoreOptions::default()).expect_err("old");
    assert!(
        matches!(refused, StoreError::OldFormat { found: 1, .. }),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("plusgate migrate"),
        "{refused}"
    );
    drop(refused);
    let store = loop {
        match Store::open_for_migration(dir.path(), StoreOptions::default()) {
            Ok(store) => break store,
            Err(StoreError::InUse { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("open: {e}"),
        }
    };
    let steps = store.migrate().expect("migrate");
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(store.format().expect("format"), Some(super::format::FORMAT));
    let k = ConsentKey::new("suwon/employment", consent.id.clone());
    let read = store
        .consent(&k)
        .expect("read")
        .expect("found by collector and id");
    assert_eq!(read.digest, consent.digest);
    assert_eq!(store.consents_with_id(&consent.id).expect("scan").len(), 1);
    let notices: Vec<ConsentKey> = store.notices(&peer).map(|n| n.expect("notice")).collect();
    assert_eq!(notices, [k]);
    // Nothing is left under the old keys, and migrating again does nothing.
    assert_eq!(store.scope_consent_keys().expect("again"), 0);
    assert_eq!(store.migrate().expect("again"), Vec::<String>::new());
    assert_eq!(store.db.scan_prefix([CONSENT]).count(), 1);
}

/// In a store migrated from format 1, a message stored before ids were scoped (under its
/// bare id) is found by its sender's key, and only by its sender's.
#[test]
fn a_message_stored_under_its_bare_id_is_found_by_its_senders_key_only() {
    use crate::node::store::keys::{key, SETTING};
    use crate::node::store::MessageRecord;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let record = MessageRecord {
        id: "ref-1".into(),
        sender_chose_id: true,
        from: "suwon/employment".into(),
        to: "suwon/welfare".into(),
        message_type: "referral".into(),
        version: 1,
        subject: "ps-0123456789abcdef".into(),
        consent_id: "cns-1".into(),
        consent_by: None,
        payload: None,
        sealed: None,
        body_sha256: "00".into(),
        accepted_at: "2026-11-29T00:00:00Z".into(),
        purpose: None,
        items: Vec::new(),
        erased: None,
        seq: Some(1),
        peer: None,
    };
    let mut writes = WriteSet::new();
    writes.put_message(record.encode());
    store.apply(writes).expect("apply");
    let id = MessageId::parse("ref-1").expect("id");
    let by_sender = MessageId::scoped(&AgencyId::parse("suwon/employment").expect("a"), &id);
    // A store that never was format 1 holds no bare ids, and is not searched for one.
    assert!(store
        .message_by_key_or_legacy(&by_sender)
        .expect("read")
        .is_none());
    store
        .db
        .insert(key(SETTING, b"legacy-message-ids"), &[][..])
        .expect("mark as migrated from format 1");
    store.load_legacy_ids().expect("load");
    let found = store
        .message_by_key_or_legacy(&by_sender)
        .expect("read")
        .expect("found by its sender's key");
    assert_eq!(found.id, "ref-1", "the record says the key it is under");
    let by_other = MessageId::scoped(&AgencyId::parse("suwon/finance").expect("a"), &id);
    assert!(store
        .message_by_key_or_legacy(&by_other)
        .expect("read")
        .is_none());
    let named = store
        .message_named("suwon/employment", "ref-1")
        .expect("read");
    assert!(named.is_some());
}
