//! The node's durable state, behind an interface of our own so that sled can later be
//! replaced by a replicated engine without touching the rest of the node.
//!
//! Layout: one sled tree, key families separated by a one-byte prefix. One tree because a
//! sled `Batch` is atomic within a tree, which is exactly the guarantee a push needs (its
//! record, its audit entry and the journal record of its deferred writes land together or
//! not at all), and it is far cheaper than sled's cross-tree transactions.
//!
//! The families marked *deferred* are written through the overlay and the journal (`j`) and
//! folded into the tree in bulk ([`deferred`]); every read of them goes through the overlay
//! first. A `d` record exists only once a message's delivery state changed; until then the
//! message record's `seq` and `peer` say where it is. Stores written before this layout may
//! hold `g` keys (an index by consent, no longer kept: a withdrawal finds messages through
//! `u`); nothing reads them.
//!
//! | prefix | key                                  | value                 |
//! |--------|--------------------------------------|-----------------------|
//! | `m`    | message id                           | [`MessageRecord`]     |
//! | `b`    | message id, `0x00`, piece (BE)       | a piece of a large `m` value ([`pieces`]) |
//! | `d`    | message id                           | [`DeliveryRecord`] (deferred) |
//! | `i`    | recipient agency, `0x00`, seq (BE)   | message id (deferred) |
//! | `a`    | audit seq (BE)                       | [`AuditEntry`]        |
//! | `o`    | peer center, `0x00`, seq (BE)        | message id (deferred) |
//! | `r`    | message id                           | [`Receipt`]           |
//! | `s`    | setting name                         | e.g. [`DirectorySeen`]; `format` ([`format`]); `stats-since` ([`stats`]); after a restore, `restored-from` and `resend-told/<peer>` (`resend`) |
//! | `x`    | message id                           | empty: dead-lettered  |
//! | `c`    | chain length (BE)                    | own [`Checkpoint`]    |
//! | `p`    | peer center                          | its latest [`Checkpoint`] |
//! | `h`    | peer center, `0x00`, chain length (BE) | its [`Checkpoint`]s held in turn, each extending the one before (the newest few hundred) |
//! | `f`    | peer center, `0x00`, refused checkpoint's digest | `audit::Evidence`: two of its checkpoints that contradict each other |
//! | `k`    | consent id, `0x00`, collector        | [`ConsentRecord`] ([`consents`]) |
//! | `u`    | subject, `0x00`, audit seq (BE)      | empty: index of `a` by subject (deferred) |
//! | `e`    | retention end (unix s, BE), seq (BE) | message id: payloads to purge, by when (deferred) |
//! | `j`    | group (BE), chunk (BE)               | journal record of a group's deferred writes |
//! | `n`    | peer center, `0x00`, consent id, `0x00`, collector | empty: a consent change to tell that center |
//! | `w`    | peer center, `0x00`, message id      | [`Erasure`]: tell that (origin) center its message was withheld here |
//! | `t`    | Seoul day (BE), from, `0x00`, to [, `0x00`, `p`/`a`/`c`]; or day, `0x00` | a pair's counts (`stats::PairDay` without times), its times to first pull, acceptance or completion (`stats::Durations`), or the day's `stats::ConsentDay` ([`stats`], deferred) |
//! | `q`    | peer center, `0x00`, message id      | [`Pickup`]: tell that (origin) center its message was pulled (and acknowledged) here; one per message, the acknowledgement replacing the pull |
//!
//! A *message id* in a key or value is the message's key, `<from>/<id>` (`MessageId`): the
//! sending agency and the id it chose, so ids never collide between senders. Records taken
//! before ids were scoped stay under their bare id; in a store migrated from format 1,
//! `Store::message_by_key_or_legacy` finds both (`format`).
//!
//! `i` and `o` are queues: a message for an agency at this center waits in its recipient's
//! inbox (`i`), a message for another center in that center's outbox (`o`), both ordered by
//! the sequence number of the audit entry that put it there.
//!
//! Every value except queue entries (which only point at a message) is a versioned,
//! checksummed [`record`], verified on read.
//!
//! Durability: [`Store::apply`] makes a write set visible atomically but not durable;
//! [`Store::sync`] makes everything applied so far durable. sled's own `flush` ends in
//! `sync_file_range` on Linux, which does not persist file metadata (e.g. the file's new
//! length), so `sync` follows it with an explicit `fsync` of sled's data file (and, when an
//! entry of sled's folder changed, of the folder first). No value exceeds
//! [`pieces::PIECE_BYTES`], so no part of a commit lives in a separate blob file that this
//! fsync would miss ([`pieces`]). The whole argument is in ARCHITECTURE.md § Crash safety.
//!
//! One file per concept, each an `impl Store` block or the types it reads and writes:
//! `keys` (the families above and how their keys are built), `deferred` (the overlay and
//! the journal), `pieces` (large records), `records` (the values),
//! `record` (their byte format), `writes` ([`WriteSet`]), `lookups` (point reads), `queues`
//! (scans of the queues and indexes), `audit` (the chain, its subject index and
//! checkpoints), `reports` (the privacy officer's queries), `dump` (the store as a stream
//! of keys and values, and a store built from one: backups and compaction). This file holds the store
//! itself: opening it, applying a write set, making it durable, and the verified read every
//! other file uses.
//!
//! Architecture invariant: only this module knows sled exists.
//!
//! [`AuditEntry`]: crate::core::audit::AuditEntry
//! [`Checkpoint`]: crate::core::audit::Checkpoint
//! [`ConsentRecord`]: crate::core::consent::ConsentRecord
//! [`Receipt`]: crate::core::wire::Receipt

mod audit;
mod consents;
mod deferred;
pub mod dump;
pub mod format;
mod keys;
mod lookups;
mod pieces;
mod queues;
pub mod record;
mod records;
pub mod reports;
mod resend;
pub mod stats;
mod writes;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deferred::{Cursor, Overlay};
use keys::{is_deferred, key, JOURNAL, MESSAGE};

pub use record::RecordError;
pub use records::{
    DeliveryRecord, DeliveryState, DirectorySeen, EncodedMessage, Erasure, Lifecycle,
    MessageRecord, Pickup, QueueEntry,
};
pub use writes::WriteSet;

/// sled's segment size (sled refuses to reopen a store with another). Its blob threshold is
/// a quarter of this (2 MiB); no value the store writes exceeds [`pieces::PIECE_BYTES`]
/// (16 KiB), and a leaf holds at most about 17 values before sled splits it, so no item
/// ever comes near the threshold (see [`pieces`]).
const SEGMENT_BYTES: usize = 8 << 20;

/// Deferred writes folded into the tree per group, at least. A group folds twice what it
/// adds (so the older overlay generation is folded long before the newer one fills), and
/// no more: folding a large slice in one group made that group, and every request waiting
/// behind it, tens of milliseconds late after each turnover (measured: push-to-pullable p99
/// at 1,000/s fell from 75–120 ms to the baseline's when the slice went from 512 to this).
const FOLD_MIN: usize = 64;

/// Deferred writes folded per batch when everything is folded at a clean stop.
const FOLD_AT_STOP: usize = 4096;

/// What the store may use: the named, documented knobs of `[storage]` in the config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache, bytes.
    pub cache_bytes: u64,
    /// The overlay of deferred writes turns over above this many bytes (it holds at most
    /// about twice this; see [`deferred`]).
    pub overlay_bytes: usize,
    /// Free space on the store's file system below which [`Store::check_space`] refuses
    /// writes, so the engine never meets a full disk in the middle of a batch.
    pub reserve_bytes: u64,
    /// Tests only: faults to inject at this interface.
    pub faults: Faults,
}

impl Default for StoreOptions {
    /// The defaults `[storage]` documents (`config::CACHE_MB_DEFAULT` and its neighbours).
    fn default() -> StoreOptions {
        use crate::config::{CACHE_MB_DEFAULT, OVERLAY_MB_DEFAULT, RESERVE_MB_DEFAULT};
        StoreOptions {
            cache_bytes: CACHE_MB_DEFAULT << 20,
            overlay_bytes: (OVERLAY_MB_DEFAULT << 20) as usize,
            reserve_bytes: RESERVE_MB_DEFAULT << 20,
            faults: Faults::default(),
        }
    }
}

/// Faults injected at the store interface, for tests of the write path's failure handling
/// (`[storage] danger_fail_apply_at` / `danger_fail_sync_at`). Counting starts at 1 with the
/// first [`Store::apply`] (or [`Store::sync`]) after open.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// This apply fails after making the first half of its batch visible, as sled's
    /// `apply_batch` would if an insert failed halfway: it applies key by key.
    pub fail_apply_at: Option<u64>,
    /// This sync fails (as an fsync that reports EIO).
    pub fail_sync_at: Option<u64>,
}

#[derive(Debug, Default)]
struct FaultCounters {
    plan: Faults,
    applies: std::sync::atomic::AtomicU64,
    syncs: std::sync::atomic::AtomicU64,
}

impl FaultCounters {
    fn hit(counter: &std::sync::atomic::AtomicU64, at: Option<u64>) -> bool {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        at == Some(n)
    }
}

fn injected(what: &str) -> std::io::Error {
    std::io::Error::other(format!("{what} (fault injected for a test)"))
}

/// What went wrong in the store. None of these is the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be opened.
    #[error("cannot open data directory {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// Another process (another node on the same `data_dir`, or a stopped-node command
    /// such as `audit verify` while the node runs) holds the store's lock.
    #[error("another plusgate process is using the data directory {path} (it holds the store's lock): stop that node first, or give this one its own data_dir")]
    InUse {
        /// The directory.
        path: PathBuf,
    },
    /// The store was written by an older plusgate, in a format this one does not read:
    /// `plusgate migrate` brings it up to date (keeping a copy as it was).
    #[error("the store in {path} is format {found}, written by an older plusgate; this one reads format {}: stop the node and run `plusgate migrate --config FILE`, which keeps a copy of the store as it is", format::FORMAT)]
    OldFormat {
        /// The data directory.
        path: PathBuf,
        /// The format it records.
        found: u32,
    },
    /// The store was written by a newer plusgate.
    #[error("the store in {path} is format {found}, written by a newer plusgate; this one reads format {}: run the newer version (or restore the copy `plusgate migrate` kept)", format::FORMAT)]
    NewerFormat {
        /// The data directory.
        path: PathBuf,
        /// The format it records.
        found: u32,
    },
    /// sled failed during operation (I/O error, or sled found its own log corrupt).
    #[error("storage engine error: {0}")]
    Engine(#[from] sled::Error),
    /// fsync of the data file failed: nothing applied since the last sync may be durable.
    #[error("fsync of {path} failed: {source}")]
    Sync {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file system holding the store has less free space than the configured reserve:
    /// nothing was written. Writes resume by themselves once space is freed.
    #[error("only {available} bytes free for {path}, below the reserve of {reserve} bytes; free disk space")]
    Full {
        /// The data directory.
        path: PathBuf,
        /// Bytes available to the node.
        available: u64,
        /// The configured reserve.
        reserve: u64,
    },
    /// The free space could not be read.
    #[error("cannot read the free space of {path}: {source}")]
    Space {
        /// The data directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stored record failed verification: it is not served.
    #[error("stored {family} record {key} is corrupt: {source}")]
    Corrupt {
        /// Which key family.
        family: &'static str,
        /// The key, printable.
        key: String,
        /// What failed.
        source: RecordError,
    },
}

/// The store. Cheap to clone; all clones share one database and one overlay.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    data_file: PathBuf,
    overlay: Arc<Overlay>,
    reserve_bytes: u64,
    faults: Arc<FaultCounters>,
    /// The folder's change stamp when it was last fsynced (see `sync_dir_if_changed`).
    dir_synced: Arc<std::sync::Mutex<Option<DirStamp>>>,
    /// True if the store may hold messages under their bare id (it was migrated from
    /// format 1; see `format`): only then does a lookup by key look for one
    /// ([`Store::message_by_key_or_legacy`]), so a store that never had them pays no second
    /// read on the push path's idempotency check.
    legacy_ids: Arc<std::sync::atomic::AtomicBool>,
}

/// A folder's (ctime, ctime ns, mtime, mtime ns).
type DirStamp = (i64, i64, i64, i64);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_file", &self.data_file)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, with the default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`, and replays the journal records of
    /// deferred writes not yet folded into the tree (see [`deferred`]).
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let store = Store::open_unchecked(dir, options)?;
        store.check_format()?;
        Ok(store)
    }

    /// Opens the store whatever its format (see `format`).
    fn open_unchecked(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let open_err = |source: sled::Error| match &source {
            // sled 0.34 reports a lock held elsewhere only as this message (an
            // `ErrorKind::Other` I/O error), so that is what is matched.
            sled::Error::Io(e) if e.to_string().starts_with("could not acquire lock") => {
                StoreError::InUse {
                    path: dir.to_owned(),
                }
            }
            _ => StoreError::Open {
                path: dir.to_owned(),
                source,
            },
        };
        let db = match sled_config(dir, options.cache_bytes).open() {
            Ok(db) => db,
            // A kill while sled wrote a snapshot leaves it refusing to open (below); once
            // the unfinished file is gone it opens from the last complete snapshot and its log.
            Err(sled::Error::Corruption { .. })
                if remove_unfinished_snapshots(dir).map_err(|e| open_err(e.into()))? > 0 =>
            {
                sled_config(dir, options.cache_bytes)
                    .open()
                    .map_err(open_err)?
            }
            Err(e) => return Err(open_err(e)),
        };
        let overlay = Arc::new(Overlay::new(options.overlay_bytes));
        let store = Store {
            db,
            dir: dir.to_owned(),
            data_file: dir.join("db"),
            overlay,
            reserve_bytes: options.reserve_bytes,
            faults: Arc::new(FaultCounters {
                plan: options.faults,
                ..FaultCounters::default()
            }),
            dir_synced: Arc::default(),
            legacy_ids: Arc::default(),
        };
        store.load_legacy_ids()?;
        let replayed = store
            .overlay
            .replay(store.db.scan_prefix([JOURNAL]).map(|item| {
                let (k, v) = item?;
                let group = deferred::journal_group(&k).ok_or_else(|| StoreError::Corrupt {
                    family: "journal",
                    key: format!("{:02x?}", &k[..]),
                    source: RecordError::Body("key has no group number".into()),
                })?;
                Ok((group, v.to_vec()))
            }))?;
        if replayed > 0 {
            tracing::info!(
                writes = replayed,
                "replayed deferred writes from the journal"
            );
        }
        Ok(store)
    }

    /// [`Store::open_with`] for `plusgate migrate`: a store of an older format opens too,
    /// for [`Store::migrate`].
    pub fn open_for_migration(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let store = Store::open_unchecked(dir, options)?;
        match store.check_format() {
            Ok(()) | Err(StoreError::OldFormat { .. }) => Ok(store),
            Err(e) => Err(e),
        }
    }

    /// Applies a write set atomically. Visible to readers at once, durable only after
    /// [`Store::sync`].
    ///
    /// One sled batch holds the write set's primary writes, its deferred writes as one
    /// journal record, and the next slice of older deferred writes folded into the tree
    /// (see [`deferred`]); the overlay takes the deferred writes only once the batch is in.
    pub fn apply(&self, writes: WriteSet) -> Result<(), StoreError> {
        let fold_max = FOLD_MIN.max(writes.deferred.len() * 2);
        self.apply_folding(writes, fold_max)
    }

    /// Folds every deferred write into the tree and makes it durable, so the next start
    /// replays nothing (a clean stop; see [`deferred`]). Only the ledger's writer calls it,
    /// as it is the overlay's only writer.
    pub fn fold_all(&self) -> Result<usize, StoreError> {
        let (folded, _) = self.overlay.size();
        loop {
            self.overlay.freeze_now();
            if self.overlay.is_settled() {
                break;
            }
            // In slices: one batch of everything would hold it all in memory twice over.
            self.apply_folding(WriteSet::new(), FOLD_AT_STOP)?;
        }
        self.sync()?;
        Ok(folded)
    }

    fn apply_folding(&self, writes: WriteSet, fold_max: usize) -> Result<(), StoreError> {
        let WriteSet {
            primary_ops: mut ops,
            deferred,
            drop_pieces,
            ..
        } = writes;
        for id in drop_pieces {
            for item in self.db.scan_prefix(pieces::prefix(&id)) {
                ops.push((item?.0.to_vec(), None));
            }
        }
        let mut plan = self.overlay.plan(deferred, fold_max);
        let mut batch = sled::Batch::default();
        let mut put = |k: &[u8], v: Option<&[u8]>| match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        };
        let fault = FaultCounters::hit(&self.faults.applies, self.faults.plan.fail_apply_at);
        if fault {
            // Make the first half visible, then fail: what sled's key-by-key apply leaves
            // when an insert fails halfway.
            for (k, v) in &ops[..ops.len() / 2] {
                put(k, v.as_deref());
            }
            self.db.apply_batch(batch)?;
            return Err(StoreError::Engine(sled::Error::Io(injected(
                "apply failed halfway",
            ))));
        }
        for (k, v) in &ops {
            put(k, v.as_deref());
        }
        for (k, v) in &plan.journal {
            put(k, Some(v));
        }
        for (k, v) in &plan.fold {
            put(k, v.as_deref());
        }
        if let Some((from, to)) = &plan.drop_journal {
            // Oldest first, at most a fold's worth per batch; where it stops is where the
            // next batch starts (a group whose chunks are half dropped is still replayable:
            // everything in it is folded).
            let mut next = deferred::journal_group(to);
            for (dropped, item) in self.db.range(from.as_slice()..to.as_slice()).enumerate() {
                let k = item?.0;
                if dropped == fold_max {
                    next = deferred::journal_group(&k);
                    break;
                }
                put(&k, None);
            }
            plan.dropped_to = next;
        }
        self.db.apply_batch(batch)?;
        self.overlay.commit(plan);
        Ok(())
    }

    /// Copies every record into a new store created at `dir` (which must not exist),
    /// folding the overlay first, and makes the copy durable: sled never gives back the
    /// space of segments it half emptied (its cleaner runs only in a background thread the
    /// node does not start, and gains little when it runs), so an offline copy is how a
    /// store returns to the size of what it holds. `progress` is told (records, bytes)
    /// after every batch of the copy. Only a stopped node's store may be compacted (the
    /// caller holds its lock by having opened it).
    pub fn compact_into(
        &self,
        dir: &Path,
        progress: impl FnMut(u64, u64),
    ) -> Result<(u64, u64), StoreError> {
        self.fold_all()?;
        Store::build(dir, self.records(), progress).map_err(|e| match e {
            dump::BuildError::Source(e) | dump::BuildError::Store(e) => e,
        })
    }

    /// Refuses with [`StoreError::Full`] when the store's file system has less free space
    /// than the reserve. The ledger asks before every group that writes, so a full disk
    /// stops writes before the engine meets it (no batch is ever cut short by ENOSPC in
    /// the normal course), and writes resume by themselves when space comes back.
    pub fn check_space(&self) -> Result<(), StoreError> {
        if self.reserve_bytes == 0 {
            return Ok(());
        }
        let available = fs2::available_space(&self.dir).map_err(|source| StoreError::Space {
            path: self.dir.clone(),
            source,
        })?;
        if available < self.reserve_bytes {
            return Err(StoreError::Full {
                path: self.dir.clone(),
                available,
                reserve: self.reserve_bytes,
            });
        }
        Ok(())
    }

    /// Deferred writes not yet folded into the tree, and the bytes the newer generation
    /// takes (for operators: see `/readyz`'s neighbours and the benchmark).
    pub fn overlay_size(&self) -> (usize, usize) {
        self.overlay.size()
    }

    /// Makes everything applied so far durable: sled's flush, then an fsync of its data file.
    pub fn sync(&self) -> Result<(), StoreError> {
        let sync_err = |source| StoreError::Sync {
            path: self.data_file.clone(),
            source,
        };
        if FaultCounters::hit(&self.faults.syncs, self.faults.plan.fail_sync_at) {
            return Err(sync_err(injected("fsync failed")));
        }
        self.sync_dir_if_changed()?;
        self.db.flush()?;
        File::open(&self.data_file)
            .and_then(|f| f.sync_all())
            .map_err(sync_err)
    }

    /// fsyncs the store's folder if an entry in it changed since the last time. sled writes
    /// a snapshot of its page table now and then (`snap.*`: written, fsynced, renamed into
    /// place, older ones removed) without syncing the folder, and may then reuse log
    /// segments the new snapshot no longer needs. Syncing the folder *before* the flush
    /// that makes such reused segments durable keeps the snapshot they rely on durable
    /// first. The folder's change time tells whether anything happened (a stat, not an
    /// fsync, per group).
    fn sync_dir_if_changed(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let dir_err = |source| StoreError::Sync {
            path: self.dir.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.dir).map_err(dir_err)?;
        let stamp = (
            meta.ctime(),
            meta.ctime_nsec(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        let mut synced = self.dir_synced.lock().expect("dir stamp lock");
        if *synced == Some(stamp) {
            return Ok(());
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(dir_err)?;
        *synced = Some(stamp);
        Ok(())
    }

    /// Reads and verifies the record of `family` stored under `id`.
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        family_byte: u8,
        family: &'static str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let corrupt = |source| StoreError::Corrupt {
            family,
            key: id.to_owned(),
            source,
        };
        let Some(v) = self.raw(&key(family_byte, id.as_bytes()))? else {
            return Ok(None);
        };
        if family_byte == MESSAGE {
            if let Some((n, len, crc)) = pieces::header(&v).map_err(corrupt)? {
                let mut whole = Vec::with_capacity(len);
                for item in self
                    .db
                    .scan_prefix(pieces::prefix(id.as_bytes()))
                    .take(n as usize)
                {
                    whole.extend_from_slice(&item?.1);
                }
                pieces::check(&whole, len, crc).map_err(corrupt)?;
                return record::decode(&whole).map(Some).map_err(corrupt);
            }
        }
        record::decode(&v).map(Some).map_err(corrupt)
    }

    /// The value under `k`: from the overlay for a deferred family, else from the tree.
    fn raw(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if is_deferred(k[0]) {
            if let Some(op) = self.overlay.get(k) {
                return Ok(op);
            }
        }
        Ok(self.db.get(k)?.map(|v| v.to_vec()))
    }

    /// Entries with keys in `[from, to)` in key order, the overlay shadowing the tree (for
    /// a deferred family; any other family is read from the tree alone).
    fn scan(&self, from: Vec<u8>, to: Vec<u8>) -> Scan {
        let overlay = is_deferred(from[0])
            .then(|| Cursor::new(self.overlay.clone(), from.clone(), Some(to.clone())));
        Scan {
            tree: self.db.range(from..to).peekable(),
            overlay,
        }
    }

    /// Entries whose keys start with `prefix`, as [`Store::scan`].
    fn scan_prefix(&self, prefix: Vec<u8>) -> Scan {
        let end = prefix_end(&prefix);
        self.scan(prefix, end)
    }
}

/// True if a process holds the lock of the store in `dir` (a running node, or a command
/// that opened it), found without opening the store: sled takes an exclusive `flock` on its
/// log file `db`. False when there is no store there.
pub fn in_use(dir: &Path) -> std::io::Result<bool> {
    let file = match File::open(dir.join("db")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // fs2's, as sled uses (std's `File::try_lock_shared` is newer than our MSRV).
    match fs2::FileExt::try_lock_shared(&file) {
        Ok(()) => {
            fs2::FileExt::unlock(&file)?;
            Ok(false)
        }
        Err(e) if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() => Ok(true),
        Err(e) => Err(e),
    }
}

/// Removes the snapshots sled 0.34 left unfinished in `dir` (`snap.<lsn>.generating`);
/// returns how many. sled writes a snapshot under that name, fsyncs it and renames it to
/// `snap.<lsn>`, so such a file is by construction one whose writer was killed. But its
/// reader picks the snapshot whose *name* sorts last, `.generating` included, and a newer
/// unfinished one fails its checksum: the store would never open again (sled issue #1527).
/// The complete snapshot before it is still there (sled deletes older ones only after the
/// rename), and sled's log, from which a snapshot is only a summary, is untouched.
fn remove_unfinished_snapshots(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(&path)?;
            tracing::warn!(file = %path.display(), "removed a storage snapshot a crash left unfinished");
            removed += 1;
        }
    }
    Ok(removed)
}

/// How every store in `dir` is opened (a copy made by `compact_into` too: sled refuses to
/// reopen a store with another segment size).
fn sled_config(dir: &Path, cache_bytes: u64) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .segment_size(SEGMENT_BYTES)
        .cache_capacity(cache_bytes)
        .mode(sled::Mode::HighThroughput)
        // We make commits durable ourselves (group commit + fsync); sled's background
        // flusher would only add unsynchronised writes (and its segment cleaner, the one
        // thing it would bring, gained nothing measurable: see `plusgate compact`).
        .flush_every_ms(None)
}

/// The first key after every key that starts with `prefix` (our prefixes never end in
/// 0xFF: they end in a family byte, an id's last character or a NUL).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; 9]
}

/// A merged scan: the tree's entries, shadowed by the overlay's (see [`Store::scan`]).
struct Scan {
    tree: std::iter::Peekable<sled::Iter>,
    overlay: Option<Cursor>,
}

impl Iterator for Scan {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(overlay) = self.overlay.as_mut() else {
                return self
                    .tree
                    .next()
                    .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into));
            };
            let tree_key = match self.tree.peek() {
                Some(Ok((k, _))) => Some(k.to_vec()),
                Some(Err(_)) => {
                    let e = self
                        .tree
                        .next()
                        .expect("peeked")
                        .expect_err("peeked an error");
                    return Some(Err(e.into()));
                }
                None => None,
            };
            let from_overlay = match (overlay.peek(), &tree_key) {
                (None, None) => return None,
                (None, Some(_)) => false,
                (Some(_), None) => true,
                (Some((ok, _)), Some(tk)) => {
                    if ok == tk {
                        self.tree.next();
                    }
                    ok <= tk
                }
            };
            if !from_overlay {
                let (k, v) = self.tree.next().expect("peeked").expect("peeked ok");
                return Some(Ok((k.to_vec(), v.to_vec())));
            }
            match overlay.next_op().expect("peeked") {
                (k, Some(v)) => return Some(Ok((k, v))),
                // A removal: the key is gone (the tree's entry, if any, was skipped above).
                (_, None) => continue,
            }
        }
    }
}

/// Decodes and verifies a value found by a scan at key `k`; a failure names the key.
fn decode_at<T: serde::de::DeserializeOwned>(
    family: &'static str,
    k: &[u8],
    v: &[u8],
) -> Result<T, StoreError> {
    record::decode(v).map_err(|source| StoreError::Corrupt {
        family,
        key: format!("{:02x?}", &k[1..]),
        source,
    })
}

#[cfg(test)]
mod tests;
