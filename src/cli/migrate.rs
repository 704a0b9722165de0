//! `plusgate migrate --config FILE`: brings a stopped node's store to this build's format
//! (`node::store::format`), keeping a copy of the store as it was.
//!
//! Invariant: nothing in the data directory changes before the copy of it is complete and
//! durable (the same copy `plusgate compact` makes, with the node's own files such as the
//! audit anchor). The migration steps each run in one atomic batch and the new format is
//! stamped last, so an interrupted run leaves a store that `migrate` takes up again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::compact::{copy_node_files, CompactError};
use crate::config::{Config, ConfigError};
use crate::node::store::format::FORMAT;
use crate::node::store::{Store, StoreError, StoreOptions};

/// `plusgate migrate`'s arguments.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The node's config file (its data directory is migrated; the node must be stopped).
    #[arg(long)]
    pub config: PathBuf,
}

/// Why a migration did not happen, or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The config does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory is not there.
    #[error("data directory {} does not exist: there is nothing to migrate", .0.display())]
    Missing(PathBuf),
    /// The store does not open (another process holds it, it is newer, it is damaged).
    #[error("{0}")]
    Open(StoreError),
    /// A copy from an earlier migration is where this one would put its copy.
    #[error("{} exists, a copy kept by an earlier migration: move it away (or remove it, once the node has run well since), then run migrate again", .0.display())]
    CopyExists(PathBuf),
    /// Copying failed; the data directory is unchanged.
    #[error("copying the store failed, the data directory is unchanged: {0}")]
    Copy(#[from] CompactError),
    /// A migration step failed. The copy is complete; the store can be migrated again.
    #[error("the migration failed: {source}; the store as it was is in {}, and `plusgate migrate` can be run again", .copy.display())]
    Step {
        /// What failed.
        source: StoreError,
        /// Where the copy is.
        copy: PathBuf,
    },
}

/// Migrates the store of the node configured in `args.config`; returns the summary.
pub fn run(args: &MigrateArgs) -> Result<String, MigrateError> {
    let config = Config::load(&args.config)?;
    let data_dir = config.data_dir.clone();
    if !data_dir.is_dir() {
        return Err(MigrateError::Missing(data_dir));
    }
    let store = Store::open_for_migration(&data_dir, StoreOptions::default())
        .map_err(MigrateError::Open)?;
    let from = match store.format().map_err(MigrateError::Open)? {
        None => {
            return Ok(format!(
                "{} is empty: nothing to migrate",
                data_dir.display()
            ))
        }
        Some(f) if f == FORMAT => {
            return Ok(format!(
                "{} is format {FORMAT} already: nothing to migrate",
                data_dir.display()
            ))
        }
        Some(f) => f,
    };
    let copy = copy_path(&data_dir, from);
    if copy.exists() {
        return Err(MigrateError::CopyExists(copy));
    }
    eprintln!(
        "migrating {} from format {from} to {FORMAT}; first a copy of it as it is, in {}",
        data_dir.display(),
        copy.display()
    );
    let started = Instant::now();
    let mut progress = crate::cli::progress::Progress::new("copying", None, "records");
    let (records, _) = store
        .compact_into(&copy, |records, _| progress.set(records))
        .map_err(|e| MigrateError::Copy(CompactError::Copy(e)))?;
    progress.finish();
    copy_node_files(&data_dir, &copy)?;
    let steps = store.migrate().map_err(|source| MigrateError::Step {
        source,
        copy: copy.clone(),
    })?;
    let mut out = format!(
        "migrated {} from format {from} to {FORMAT} in {:.1} s; the store as it was ({records} \
         records) is in {} (remove it once the node has run well)",
        data_dir.display(),
        started.elapsed().as_secs_f64(),
        copy.display()
    );
    for step in steps {
        out.push_str("\n  ");
        out.push_str(&step);
    }
    Ok(out)
}

/// Where the copy of a format-`from` store goes: next to the data directory.
fn copy_path(data_dir: &Path, from: u32) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_owned();
    name.push(format!(".format-{from}"));
    data_dir.with_file_name(name)
}
