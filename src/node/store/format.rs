//! The store's format version, and the migrations from older ones.
//!
//! A store carries its format under the setting `format` (a decimal number). One written
//! before formats were recorded has none and is format 1.
//!
//! | format | what changed | migration |
//! |--------|--------------|-----------|
//! | 1 | (consents under their id; messages under their bare id) | — |
//! | 2 | consents and notices under id and collector (`consents`); new messages under `<from>/<id>` | consents and notices rewritten; messages stay, and the setting `legacy-message-ids` makes `Store::message_by_key_or_legacy` look for them (a store that never was format 1 is spared that read) |
//!
//! Invariants kept here:
//! - a node opens only a store of its own format ([`Store::open_with`] refuses an older one
//!   with [`StoreError::OldFormat`], naming `plusgate migrate`, and a newer one with
//!   [`StoreError::NewerFormat`]); a new, empty store is stamped with the current format
//!   when it is opened;
//! - a migration runs only on a store opened for it ([`Store::open_for_migration`]), each
//!   step in one atomic batch, and the format is stamped, and synced, only after every step
//!   succeeded: an interrupted migration is run again from the start, and every step is
//!   safe to run twice.

use std::sync::atomic::Ordering;

use super::keys::{key, SETTING};
use super::{Store, StoreError};

/// The format this build writes and reads.
pub const FORMAT: u32 = 2;

/// The format of a store that records none.
const UNRECORDED: u32 = 1;

const FORMAT_KEY: &[u8] = b"format";

/// Present in a store migrated from format 1: it may hold messages under their bare id.
const LEGACY_IDS_KEY: &[u8] = b"legacy-message-ids";

impl Store {
    /// The format the store records (1 if it records none; `None` for an empty store).
    pub fn format(&self) -> Result<Option<u32>, StoreError> {
        let stamp = self.db.get(key(SETTING, FORMAT_KEY))?;
        match stamp {
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt {
                    family: "setting",
                    key: "format".into(),
                    source: super::RecordError::Body("the format is not a number".into()),
                }),
            None if self.db.is_empty() => Ok(None),
            None => Ok(Some(UNRECORDED)),
        }
    }

    /// Reads whether the store may hold messages under their bare id (see
    /// `Store::message_by_key_or_legacy`).
    pub(super) fn load_legacy_ids(&self) -> Result<(), StoreError> {
        let legacy = self.db.contains_key(key(SETTING, LEGACY_IDS_KEY))?;
        self.legacy_ids.store(legacy, Ordering::Relaxed);
        Ok(())
    }

    /// True if the store may hold messages under their bare id.
    pub(super) fn has_legacy_ids(&self) -> bool {
        self.legacy_ids.load(Ordering::Relaxed)
    }

    /// Refuses a store of another format than this build's; stamps an empty one.
    pub(super) fn check_format(&self) -> Result<(), StoreError> {
        match self.format()? {
            None => self.stamp_format(),
            Some(FORMAT) => Ok(()),
            Some(found) if found < FORMAT => Err(StoreError::OldFormat {
                path: self.dir.clone(),
                found,
            }),
            Some(found) => Err(StoreError::NewerFormat {
                path: self.dir.clone(),
                found,
            }),
        }
    }

    fn stamp_format(&self) -> Result<(), StoreError> {
        self.db
            .insert(key(SETTING, FORMAT_KEY), FORMAT.to_string().as_bytes())?;
        self.sync()
    }

    /// Brings a store opened with [`Store::open_for_migration`] to this build's format:
    /// every step from its format on, then the stamp. What each step did, for the operator.
    /// A store of this format already is left alone (an empty list).
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut done = Vec::new();
        let from = match self.format()? {
            None | Some(FORMAT) => return Ok(done),
            Some(found) if found > FORMAT => {
                return Err(StoreError::NewerFormat {
                    path: self.dir.clone(),
                    found,
                })
            }
            Some(found) => found,
        };
        if from < 2 {
            let n = self.scope_consent_keys()?;
            // Its messages stay under their bare ids: lookups by key look there too from
            // now on.
            self.db.insert(key(SETTING, LEGACY_IDS_KEY), &[][..])?;
            self.legacy_ids.store(true, Ordering::Relaxed);
            done.push(format!(
                "format 1 → 2: {n} consent and notice keys rewritten under id and collector; \
                 messages stay under their bare ids and are found there"
            ));
        }
        self.stamp_format()?;
        Ok(done)
    }
}
