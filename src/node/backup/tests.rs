//! The backup format and `Backups`: written and restored for real on a sled store in a
//! temporary folder; damaged, cut-off and foreign files; one held backup at a time.

use super::*;
use crate::core::identity::AgencyId;
use crate::core::message::MessageId;
use crate::node::store::WriteSet;

/// A whole backup, as the node makes one: [`write_body`] then [`seal`].
fn write(
    store: &Store,
    data_dir: &Path,
    center: &CenterId,
    now: OffsetDateTime,
    out: &mut File,
) -> Result<Summary, BackupError> {
    let written = write_body(store, data_dir, center, now, out)?;
    seal(out, written)
}

fn center() -> CenterId {
    CenterId::parse("suwon").expect("center")
}

/// A data directory with a store holding a deferred write and a node file beside it.
fn data_dir(root: &Path) -> (PathBuf, Store) {
    let dir = root.join("data");
    let store = Store::open(&dir).expect("open");
    let mut w = WriteSet::new();
    let agency = AgencyId::parse("suwon/employment").expect("agency");
    let id = MessageId::from_key("suwon/welfare/ref-1").expect("id");
    w.put_inbox(&agency, 3, &id);
    store.apply(w).expect("apply");
    store.sync().expect("sync");
    std::fs::write(dir.join("audit-anchor"), b"anchor bytes").expect("anchor");
    (dir, store)
}

fn backup_file(root: &Path, store: &Store, dir: &Path) -> (PathBuf, Summary) {
    let path = root.join("b.backup");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create");
    let summary = write(store, dir, &center(), OffsetDateTime::UNIX_EPOCH, &mut f).expect("write");
    (path, summary)
}

#[test]
fn a_backup_restores_the_same_records_and_the_nodes_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, store) = data_dir(tmp.path());
    let (path, summary) = backup_file(tmp.path(), &store, &dir);
    assert_eq!(summary.files, 1, "the anchor, not sled's files");
    assert_eq!(summary.header.center, "suwon");
    assert_eq!(
        summary.bytes,
        std::fs::metadata(&path).expect("test setup").len()
    );
    let whole = ring::digest::digest(&SHA256, &std::fs::read(&path).expect("test setup"));
    assert_eq!(summary.sha256, hex::encode(whole.as_ref()));

    let target = tmp.path().join("restored");
    let restored = restore(&path, &target, &center(), |_| {}).expect("restore");
    assert_eq!(restored.records, summary.records);
    assert_eq!(restored.header, summary.header);
    assert_eq!(
        std::fs::read(target.join("audit-anchor")).expect("test setup"),
        b"anchor bytes"
    );
    let copy = restored.store.clone();
    assert_eq!(
        copy.restored_from().expect("setting"),
        Some(summary.header.taken_at.clone()),
        "the restored store knows since when its peers are to send again"
    );
    // Every record came along; recording the restore also folded the journal's inbox
    // write into the tree, which is the only other difference.
    let a: Vec<_> = store.records().map(|r| r.expect("record")).collect();
    let b: Vec<_> = copy.records().map(|r| r.expect("record")).collect();
    for record in &a {
        assert!(b.contains(record), "{record:?} is restored");
    }
    for (k, _) in b.iter().filter(|r| !a.contains(r)) {
        assert!(k[0] == b'i' || k.as_slice() == b"srestored-from", "{k:?}");
    }
    let agency = AgencyId::parse("suwon/employment").expect("test setup");
    assert_eq!(copy.inbox(&agency, None).count(), 1, "its journal replays");
}

#[test]
fn a_damaged_or_cut_off_backup_restores_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, store) = data_dir(tmp.path());
    let (path, summary) = backup_file(tmp.path(), &store, &dir);
    let good = std::fs::read(&path).expect("test setup");

    let flipped = tmp.path().join("flipped");
    let mut bytes = good.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&flipped, &bytes).expect("test setup");
    let cut = tmp.path().join("cut");
    std::fs::write(&cut, &good[..good.len() - 10]).expect("test setup");
    let longer = tmp.path().join("longer");
    std::fs::write(&longer, [good.as_slice(), b"x"].concat()).expect("test setup");

    for bad in [&flipped, &cut, &longer] {
        let target = tmp.path().join("never");
        let err = restore(bad, &target, &center(), |_| {}).expect_err("damaged");
        assert!(
            matches!(
                err,
                BackupError::Damaged { .. } | BackupError::NotABackup { .. }
            ),
            "{}: {err}",
            bad.display()
        );
        assert!(
            !target.exists(),
            "nothing is created from {}",
            bad.display()
        );
    }
    assert_eq!(
        check(&path).expect("the good one checks").1,
        summary.records
    );
}

#[test]
fn another_centers_backup_or_another_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, store) = data_dir(tmp.path());
    let (path, _) = backup_file(tmp.path(), &store, &dir);
    let gangseo = CenterId::parse("gangseo").expect("test setup");
    let err = restore(&path, &tmp.path().join("x"), &gangseo, |_| {}).expect_err("other center");
    assert!(matches!(err, BackupError::OtherCenter { .. }), "{err}");
    assert!(err.to_string().contains("of center suwon"), "{err}");

    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "hello").expect("test setup");
    let err = check(&text).expect_err("not a backup");
    assert!(matches!(err, BackupError::NotABackup { .. }), "{err}");
}

#[test]
fn node_file_names_in_a_backup_are_single_plain_components() {
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "db",
        "conf",
        "snap.0001",
        "blobs",
    ] {
        assert!(!safe_file_name(bad), "{bad:?}");
    }
    assert!(safe_file_name("audit-anchor"));
}

#[test]
fn one_backup_is_held_at_a_time_and_a_released_one_is_gone() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, store) = data_dir(tmp.path());
    let backups = Backups::new(dir.clone(), 0);
    let mut file = backups.prepare().expect("room for one");
    let summary = write(
        &store,
        &dir,
        &center(),
        OffsetDateTime::UNIX_EPOCH,
        &mut file,
    )
    .expect("test setup");
    let names_before: Vec<_> = std::fs::read_dir(&dir).expect("test setup").collect();
    let id = backups.hold(file, summary.clone()).expect("held");
    assert!(matches!(backups.prepare(), Err(HeldError::Busy(_))));
    let (_, len) = backups.open(&id, 0).expect("readable");
    assert_eq!(len, summary.bytes);
    assert!(matches!(
        backups.open(&id, len + 1),
        Err(HeldError::Offset { .. })
    ));
    assert!(matches!(
        backups.open("nope", 0),
        Err(HeldError::Unknown(_))
    ));
    backups.release(&id).expect("released");
    assert!(matches!(backups.open(&id, 0), Err(HeldError::Unknown(_))));
    backups.prepare().expect("room again");
    let names_after: Vec<_> = std::fs::read_dir(&dir).expect("test setup").collect();
    assert_eq!(
        names_before.len(),
        names_after.len(),
        "the backup's file has no name in the data directory"
    );
}
