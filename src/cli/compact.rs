//! `plusgate compact --config FILE`: gives a stopped node's disk space back.
//!
//! sled 0.34 does not return the space of log segments it half emptied (what acks, purges
//! and retention free stays allocated; docs/performance.md has the numbers), so this copies
//! every record into a fresh store next to the data directory and swaps the two.
//!
//! Invariant: at every instant the data directory is a complete store. The copy is made
//! durable (every file and its folder fsynced) before the swap; the swap is one
//! `renameat2(RENAME_EXCHANGE)`, atomic on Linux, then the parent folder is fsynced; only
//! then is the old store, now at the side path, removed. A leftover side path from an
//! interrupted run is therefore never the live store, and is removed first.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::export::{open_store, StoreOpenError};
use crate::config::{Config, ConfigError};
use crate::node::store::StoreError;

/// `plusgate compact`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// The node's config file (its data directory is compacted; the node must be stopped).
    #[arg(long)]
    pub config: PathBuf,
    /// Keep the old store at `<data_dir>.compacting` instead of removing it.
    #[arg(long)]
    pub keep_old: bool,
}

/// Why compaction failed; the data directory is then unchanged (or, after the swap,
/// already the compacted store).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The config does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store does not open (e.g. the node is running).
    #[error(transparent)]
    Open(#[from] StoreOpenError),
    /// Copying failed; the data directory is untouched.
    #[error("copying the store failed, the data directory is unchanged: {0}")]
    Copy(#[source] StoreError),
    /// A file operation around the copy failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CompactError {
    let path = path.to_owned();
    move |source| CompactError::Io { what, path, source }
}

/// Compacts the store of the node configured in `args.config`; returns the summary line.
pub fn run(args: &CompactArgs) -> Result<String, CompactError> {
    let config = Config::load(&args.config)?;
    let data_dir = config.data_dir.clone();
    let side = side_path(&data_dir);
    let store = open_store(&data_dir)?;
    if side.exists() {
        std::fs::remove_dir_all(&side).map_err(io("removing a leftover", &side))?;
    }
    let before = dir_bytes(&data_dir).map_err(io("measuring", &data_dir))?;
    let started = Instant::now();
    let mut progress = crate::cli::progress::Progress::new("copying", None, "records");
    eprintln!(
        "compacting {} ({} MiB on disk) into {}",
        data_dir.display(),
        before >> 20,
        side.display()
    );
    let (records, bytes) = store
        .compact_into(&side, |records, _| progress.set(records))
        .map_err(CompactError::Copy)?;
    progress.finish();
    copy_node_files(&data_dir, &side)?;
    drop(store);

    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        &side,
        rustix::fs::CWD,
        &data_dir,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(|e| CompactError::Io {
        what: "swapping the compacted store into place at",
        path: data_dir.clone(),
        source: e.into(),
    })?;
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io("fsyncing", parent))?;
    let after = dir_bytes(&data_dir).map_err(io("measuring", &data_dir))?;
    let old = if args.keep_old {
        format!("; the old store is kept at {}", side.display())
    } else {
        std::fs::remove_dir_all(&side).map_err(io("removing the old store at", &side))?;
        String::new()
    };
    Ok(format!(
        "compacted {}: {} MiB → {} MiB on disk ({records} records, {} MiB of keys and values) \
         in {:.1} s{old}",
        data_dir.display(),
        before >> 20,
        after >> 20,
        bytes >> 20,
        started.elapsed().as_secs_f64()
    ))
}

/// Where the copy is built, next to the data directory.
fn side_path(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_owned();
    name.push(".compacting");
    data_dir.with_file_name(name)
}

/// Copies the node's own files in the data directory (not sled's: its log `db`, its `conf`,
/// its snapshots `snap.*`, its `blobs/`) into the copy, e.g. the audit anchor, fsynced.
pub(super) fn copy_node_files(from: &Path, to: &Path) -> Result<(), CompactError> {
    for entry in std::fs::read_dir(from).map_err(io("reading", from))? {
        let entry = entry.map_err(io("reading", from))?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if crate::node::store::dump::is_engine_file(&name_str) || !entry.path().is_file() {
            continue;
        }
        let target = to.join(&name);
        std::fs::copy(entry.path(), &target).map_err(io("copying", &entry.path()))?;
        std::fs::File::open(&target)
            .and_then(|f| f.sync_all())
            .map_err(io("fsyncing", &target))?;
    }
    std::fs::File::open(to)
        .and_then(|d| d.sync_all())
        .map_err(io("fsyncing", to))
}

/// Bytes allocated under `dir` (what the disk gives up for it).
fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}
