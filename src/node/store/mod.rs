//! The node's durable state, behind an interface of our own so that sled can later be
//! replaced by a replicated engine without touching the rest of the node.
//!
//! Layout: one sled tree, key families separated by a one-byte prefix. One tree because a
//! sled `Batch` is atomic within a tree, which is exactly the guarantee a push needs (message,
//! delivery state, inbox entry and audit entry land together or not at all), and it is far
//! cheaper than sled's cross-tree transactions.
//!
//! | prefix | key                                  | value                 |
//! |--------|--------------------------------------|-----------------------|
//! | `m`    | message id                           | [`MessageRecord`]     |
//! | `d`    | message id                           | [`DeliveryRecord`]    |
//! | `i`    | recipient agency, `0x00`, seq (BE)   | message id            |
//! | `a`    | audit seq (BE)                       | [`AuditEntry`]        |
//! | `o`    | peer center, `0x00`, seq (BE)        | message id            |
//! | `r`    | message id                           | [`Receipt`]           |
//! | `s`    | setting name                         | e.g. [`DirectorySeen`]|
//! | `x`    | message id                           | empty: dead-lettered  |
//! | `c`    | chain length (BE)                    | own [`Checkpoint`]    |
//! | `p`    | peer center                          | its latest [`Checkpoint`] |
//! | `h`    | peer center, `0x00`, chain length (BE) | its [`Checkpoint`]s held in turn, each extending the one before (the newest few hundred) |
//! | `f`    | peer center, `0x00`, refused checkpoint's digest | `audit::Evidence`: two of its checkpoints that contradict each other |
//! | `k`    | consent id                           | [`ConsentRecord`]     |
//! | `u`    | subject, `0x00`, audit seq (BE)      | empty: index of `a` by subject |
//! | `g`    | consent id, `0x00`, seq (BE)         | message id: messages under a consent |
//! | `e`    | retention end (unix s, BE), seq (BE) | message id: payloads to purge, by when |
//! | `n`    | peer center, `0x00`, consent id      | empty: a consent change to tell that center |
//! | `w`    | peer center, `0x00`, message id      | [`Erasure`]: tell that (origin) center its message was withheld here |
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
//! length), so `sync` follows it with an explicit `fsync` of sled's data file. Values stay
//! below sled's blob threshold (the body limit in `config` is capped for that), so no part of
//! a commit lives in a separate blob file that this fsync would miss.
//!
//! One file per concept, each an `impl Store` block or the types it reads and writes:
//! `keys` (the families above and how their keys are built), `records` (the values),
//! `record` (their byte format), `writes` ([`WriteSet`]), `lookups` (point reads), `queues`
//! (scans of the queues and indexes), `audit` (the chain, its subject index and
//! checkpoints), `reports` (the privacy officer's queries). This file holds the store
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
mod keys;
mod lookups;
mod queues;
pub mod record;
mod records;
pub mod reports;
mod writes;

use std::fs::File;
use std::path::{Path, PathBuf};

use keys::key;

pub use record::RecordError;
pub use records::{
    DeliveryRecord, DeliveryState, DirectorySeen, EncodedMessage, Erasure, Lifecycle,
    MessageRecord, QueueEntry,
};
pub use writes::WriteSet;

/// sled's segment size. Its blob threshold is a quarter of this (2 MiB), above the largest
/// accepted body ([`crate::config::BODY_BYTES_MAX_LIMIT`]) plus record overhead.
const SEGMENT_BYTES: usize = 8 << 20;

/// sled's page cache. Bounded so a node's memory stays predictable on small hardware; the
/// working set (recent messages, inbox heads, the audit tail) is far smaller.
const CACHE_BYTES: u64 = 256 << 20;

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

/// The store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    data_file: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_file", &self.data_file)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.to_owned(),
            source,
        };
        let db = sled::Config::new()
            .path(dir)
            .segment_size(SEGMENT_BYTES)
            .cache_capacity(CACHE_BYTES)
            .mode(sled::Mode::HighThroughput)
            // We make commits durable ourselves (group commit + fsync); sled's background
            // flusher would only add unsynchronised writes.
            .flush_every_ms(None)
            .open()
            .map_err(open_err)?;
        Ok(Store {
            db,
            data_file: dir.join("db"),
        })
    }

    /// Applies a write set atomically. Visible to readers at once, durable only after
    /// [`Store::sync`].
    pub fn apply(&self, writes: WriteSet) -> Result<(), StoreError> {
        self.db.apply_batch(writes.batch)?;
        Ok(())
    }

    /// Makes everything applied so far durable: sled's flush, then an fsync of its data file.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        let sync_err = |source| StoreError::Sync {
            path: self.data_file.clone(),
            source,
        };
        File::open(&self.data_file)
            .and_then(|f| f.sync_all())
            .map_err(sync_err)
    }

    /// Reads and verifies the record of `family` stored under `id`.
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        family_byte: u8,
        family: &'static str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get(key(family_byte, id.as_bytes()))? {
            None => Ok(None),
            Some(v) => record::decode(&v)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    family,
                    key: id.to_owned(),
                    source,
                }),
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
