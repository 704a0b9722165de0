//! The store as a stream of its keys and values, and a new store built from such a stream:
//! what a backup carries (`node::backup`) and what `plusgate compact` copies.
//!
//! The stream is the store's content, not the engine's files: every key and value of the
//! one tree in key order, the journal of deferred writes not yet folded (`j`, see
//! [`super::deferred`]) included. A store built from it therefore replays those writes at
//! open exactly as the original would after a crash, and a replicated engine behind this
//! interface can take the same stream.
//!
//! Invariants:
//! - a stream read while no write is applied is a state the store was in between two
//!   groups, so the copy is consistent: the ledger's writer is the store's only writer and
//!   reads it on its own thread for a backup (`ledger::backup`), a stopped node's command
//!   holds the store's lock;
//! - [`Store::build`] returns only once the new store is durable: sled's flush, then every
//!   file it made and its folder fsynced.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{sled_config, Store, StoreError};

/// Why a store could not be built from a stream.
#[derive(Debug, thiserror::Error)]
pub enum BuildError<E: std::error::Error + 'static> {
    /// Reading the stream failed (e.g. a damaged backup).
    #[error(transparent)]
    Source(E),
    /// Writing the new store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Key and value bytes a batch of the new store collects before it is applied. Small on
/// purpose: sled frees the tree nodes an insert replaces through its epoch-based
/// reclamation, which collects only every so many pins, and a batch pins once; with 8 MiB
/// batches a build pinned too rarely to ever collect and held everything it replaced
/// (measured on 894,174 records, 784 MiB: 5.1 GB resident for a restore, 1.9 GB for
/// `compact`; with 64 KiB batches 0.98 GB and 0.56 GB, and a little faster).
const BUILD_BATCH_BYTES: usize = 64 << 10;

impl Store {
    /// Every key and value, in key order (see the module's invariants for when this is
    /// consistent).
    pub fn records(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.db.iter().map(|item| {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        })
    }

    /// Creates a store at `dir` (which must not exist) holding `records`, and makes it
    /// durable. `progress` is told (records, bytes) after every batch and at the end; the totals
    /// are returned.
    pub fn build<E: std::error::Error + 'static>(
        dir: &Path,
        records: impl IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), E>>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(u64, u64), BuildError<E>> {
        let open_err = |source| StoreError::Open {
            path: dir.to_owned(),
            source,
        };
        let copy = sled_config(dir, 8 << 20)
            .create_new(true)
            .open()
            .map_err(open_err)?;
        let (mut count, mut bytes, mut pending) = (0u64, 0u64, 0usize);
        let mut batch = sled::Batch::default();
        for item in records {
            let (k, v) = item.map_err(BuildError::Source)?;
            count += 1;
            bytes += (k.len() + v.len()) as u64;
            pending += k.len() + v.len();
            batch.insert(k, v);
            if pending >= BUILD_BATCH_BYTES {
                copy.apply_batch(std::mem::take(&mut batch))
                    .map_err(StoreError::from)?;
                pending = 0;
                progress(count, bytes);
            }
        }
        copy.apply_batch(batch).map_err(StoreError::from)?;
        copy.flush().map_err(StoreError::from)?;
        drop(copy);
        // Every file sled made (its log, its config, a snapshot), then the folder.
        let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Sync {
            path: dir.to_owned(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.push(dir.to_owned());
        for path in paths {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|source| StoreError::Sync { path, source })?;
        }
        progress(count, bytes);
        Ok((count, bytes))
    }
}

/// True for a file in a data directory that belongs to the storage engine (sled's log
/// `db`, its `conf`, its snapshots `snap.*`, its `blobs/`), false for the node's own files
/// kept beside it (e.g. the audit anchor), which a copy of the store must carry separately.
pub fn is_engine_file(name: &str) -> bool {
    name == "db" || name == "conf" || name == "blobs" || name.starts_with("snap.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::store::WriteSet;

    #[test]
    fn a_store_built_from_anothers_records_holds_the_same_records_and_its_journal_replays() {
        let tmp = tempfile::tempdir().expect("test setup");
        let original = Store::open(&tmp.path().join("a")).expect("test setup");
        let mut w = WriteSet::new();
        let agency =
            crate::core::identity::AgencyId::parse("suwon/employment").expect("test setup");
        let id = crate::core::message::MessageId::from_key("suwon/employment/ref-1")
            .expect("test setup");
        // An inbox entry is a deferred write: it reaches the tree as a journal record.
        w.put_inbox(&agency, 7, &id);
        original.apply(w).expect("test setup");
        original.sync().expect("test setup");
        let before: Vec<_> = original.records().map(|r| r.expect("record")).collect();
        assert!(!before.is_empty());

        let copy_dir = tmp.path().join("b");
        let (n, _) =
            Store::build(&copy_dir, original.records(), |_, _| {}).expect("build the copy");
        assert_eq!(n, before.len() as u64);
        let copy = Store::open(&copy_dir).expect("test setup");
        let after: Vec<_> = copy.records().map(|r| r.expect("record")).collect();
        assert_eq!(before, after);
        let queued: Vec<_> = copy
            .inbox(&agency, None)
            .map(|r| r.expect("record"))
            .collect();
        assert_eq!(queued.len(), 1, "the journal replays into the copy's inbox");
        assert_eq!(queued[0].id, id);
    }

    #[test]
    fn building_into_an_existing_store_is_refused() {
        let tmp = tempfile::tempdir().expect("test setup");
        let original = Store::open(&tmp.path().join("a")).expect("test setup");
        let err = Store::build(&tmp.path().join("a"), original.records(), |_, _| {});
        assert!(matches!(
            err,
            Err(BuildError::Store(StoreError::Open { .. }))
        ));
    }
}
