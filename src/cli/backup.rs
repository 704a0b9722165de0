//! `plusgate backup` (from the running node) and `plusgate restore` (into a stopped node's
//! data directory); [`snapshot`] lets `plusgate audit` read a running node's chain too.
//!
//! `backup` asks the node, as the node itself (its certificate, like `plusgate outbox`), for
//! a backup (`POST /admin/v1/backups`, see `node::backup`), copies it piece by piece into
//! `DIR/plusgate.backup`, checks it against the SHA-256 the node stated and reads it whole
//! once, then writes `DIR/backup.json` (the node's description of it) and tells the node to
//! free its copy.
//!
//! Invariants:
//! - `DIR/plusgate.backup` exists only complete and checked: it is written as
//!   `plusgate.backup.partial`, fsynced, checked, then renamed, and the folder fsynced;
//! - `restore` builds the new data directory beside the live one and swaps it in with one
//!   atomic exchange (`renameat2(RENAME_EXCHANGE)`), so at every instant the data directory
//!   is a complete store; the one it replaces is kept, never deleted.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use hyper::Method;
use serde_json::Value;

use crate::cli::node_client::{AdminError, NodeClient, Target};
use crate::cli::progress::Progress;
use crate::config::{Config, ConfigError};
use crate::core::hex;
use crate::node::backup::{self, BackupError, Summary, DESCRIPTION_NAME, FILE_NAME};

/// `plusgate backup`'s arguments.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The node's config file (its certificate, key and CA; the node must be running).
    #[arg(long)]
    pub config: PathBuf,
    /// The folder to write the backup into (created; it must not exist or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Reach the node at this URL (`https://IP:PORT`) instead of its configured listen
    /// address.
    #[arg(long)]
    pub url: Option<String>,
}

/// `plusgate restore`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The node's config file (its data directory is replaced; the node must be stopped).
    #[arg(long)]
    pub config: PathBuf,
    /// The folder `plusgate backup --out` wrote (or its `plusgate.backup` file).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
}

/// Why `backup` or `restore` failed. Nothing is left half done: a failed backup leaves no
/// `plusgate.backup`, a failed restore leaves the data directory as it was.
#[derive(Debug, thiserror::Error)]
pub enum BackupCliError {
    /// The config does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node could not be asked, or refused.
    #[error(transparent)]
    Node(#[from] AdminError),
    /// `--out` names a folder that holds something.
    #[error("{} is not empty: give a new folder for the backup", .0.display())]
    OutNotEmpty(PathBuf),
    /// The copy does not match what the node said it sent.
    #[error("the copy of the backup does not match the node's ({0}); nothing was kept: run the backup again")]
    Transfer(String),
    /// The node answered something this version does not understand.
    #[error("the node's answer is not what this plusgate expects: {0}")]
    Answer(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
    /// The node is running (it holds the store's lock).
    #[error("the node using {} is running: stop it before restoring (e.g. `systemctl stop plusgate`)", .0.display())]
    Running(PathBuf),
    /// Reading, checking or restoring the backup failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// A file operation failed.
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

impl BackupCliError {
    /// The exit code: 78 for the config, 2 for a bad `--out` or `--url`, the node's own
    /// codes (3 refused, 69 unreachable), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupCliError::Config(_) => crate::cli::exit::EXIT_CONFIG,
            BackupCliError::Node(e) => e.exit_code(),
            BackupCliError::OutNotEmpty(_) => crate::cli::exit::EXIT_USAGE,
            _ => crate::cli::exit::EXIT_FAILURE,
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupCliError {
    let path = path.to_owned();
    move |source| BackupCliError::Io { what, path, source }
}

/// A backup copied from the node: the node's description, and how long writes waited.
#[derive(Debug)]
pub struct Fetched {
    /// What the node said it wrote.
    pub summary: Summary,
    /// The backup file.
    pub file: PathBuf,
    /// How long the node's writes waited while it was written, ms.
    pub took_ms: u64,
}

/// Runs `plusgate backup`; returns the summary line.
pub async fn run_backup(args: &BackupArgs) -> Result<String, BackupCliError> {
    let config = Config::load(&args.config)?;
    if std::fs::read_dir(&args.out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupCliError::OutNotEmpty(args.out.clone()));
    }
    let fetched = fetch(&config, args.url.as_deref(), &args.out).await?;
    let s = &fetched.summary;
    Ok(format!(
        "backup of node {} written to {}: {} records, {} audit entries, {:.1} MiB, taken at {} \
         (the node's writes waited {} ms)",
        s.header.center,
        fetched.file.display(),
        s.records,
        s.header.audit_length,
        s.bytes as f64 / (1 << 20) as f64,
        s.header.taken_at,
        fetched.took_ms
    ))
}

/// Takes a backup of the running node of `config` (at `url` if given) into the folder
/// `out`, which is created if needed and must hold nothing the backup's files would replace.
pub async fn fetch(
    config: &Config,
    url: Option<&str>,
    out: &Path,
) -> Result<Fetched, BackupCliError> {
    let target = match url {
        Some(url) => Target::at(url, &config.tls.client_ca)?,
        None => Target::of_config(config),
    };
    let node = NodeClient::new(&target, (&config.tls.cert, &config.tls.key))?;
    std::fs::create_dir_all(out).map_err(io("creating", out))?;

    eprintln!("asking the node for a backup (its writes wait while it is written)");
    let answer: Value = node
        .send(Method::POST, "/admin/v1/backups", None)
        .await?
        .json()
        .map_err(|e| BackupCliError::Answer(e.to_string()))?;
    let id = answer["id"]
        .as_str()
        .ok_or_else(|| BackupCliError::Answer("no backup id".into()))?
        .to_owned();
    let took_ms = answer["took_ms"].as_u64().unwrap_or(0);
    let summary: Summary = serde_json::from_value(answer.clone())
        .map_err(|e| BackupCliError::Answer(e.to_string()))?;

    let copied = copy(&node, &id, &summary, out).await;
    // Free the node's copy whatever happened here; it drops it by itself later anyway.
    if let Err(e) = node
        .send(
            Method::POST,
            &format!("/admin/v1/backups/{id}/release"),
            None,
        )
        .await
    {
        eprintln!("plusgate: note: the node keeps its copy until it drops it unread: {e}");
    }
    let file = copied?;

    let description = out.join(DESCRIPTION_NAME);
    let mut text = serde_json::to_string_pretty(&summary).expect("a summary serializes");
    text.push('\n');
    let _ = std::fs::remove_file(&description);
    backup::write_new_durably(&description, text.as_bytes())
        .map_err(io("writing", &description))?;
    sync_dir(out)?;
    Ok(Fetched {
        summary,
        file,
        took_ms,
    })
}

/// Copies the node's backup `id` into `out/plusgate.backup`, checked.
async fn copy(
    node: &NodeClient,
    id: &str,
    summary: &Summary,
    out: &Path,
) -> Result<PathBuf, BackupCliError> {
    let partial = out.join(format!("{FILE_NAME}.partial"));
    let mut file = File::create(&partial).map_err(io("creating", &partial))?;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut progress = Progress::new("copying the backup", Some(summary.bytes >> 20), "MiB");
    let mut offset = 0u64;
    while offset < summary.bytes {
        let piece = piece(node, id, offset).await?;
        if piece.is_empty() {
            return Err(BackupCliError::Transfer(format!(
                "it ended at {offset} of {} bytes",
                summary.bytes
            )));
        }
        file.write_all(&piece).map_err(io("writing", &partial))?;
        digest.update(&piece);
        offset += piece.len() as u64;
        progress.set(offset >> 20);
    }
    progress.finish();
    file.sync_all().map_err(io("fsyncing", &partial))?;
    drop(file);
    let sha256 = hex::encode(digest.finish().as_ref());
    if offset != summary.bytes || sha256 != summary.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(BackupCliError::Transfer(format!(
            "{offset} bytes with SHA-256 {sha256}, the node sent {} bytes with {}",
            summary.bytes, summary.sha256
        )));
    }
    // Read it whole once more, as restore will: its own digest and every item.
    if let Err(e) = backup::check(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    let file = out.join(FILE_NAME);
    std::fs::rename(&partial, &file).map_err(io("renaming into place", &file))?;
    Ok(file)
}

/// One piece of the backup from `offset`, tried three times over a broken connection.
async fn piece(node: &NodeClient, id: &str, offset: u64) -> Result<bytes::Bytes, BackupCliError> {
    let path = format!("/admin/v1/backups/{id}?offset={offset}");
    let mut tries = 0;
    loop {
        match node.send(Method::GET, &path, None).await {
            Ok(response) => return Ok(response.body),
            Err(AdminError::Unreachable { .. }) if tries < 2 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupCliError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsyncing", dir))
}

/// Runs `plusgate restore`; returns the summary line.
pub fn run_restore(args: &RestoreArgs) -> Result<String, BackupCliError> {
    let config = Config::load(&args.config)?;
    let from = if args.from.is_dir() {
        args.from.join(FILE_NAME)
    } else {
        args.from.clone()
    };
    let data_dir = config.data_dir.clone();
    if crate::node::store::in_use(&data_dir).map_err(io("checking the lock of", &data_dir))? {
        return Err(BackupCliError::Running(data_dir));
    }
    let building = sibling(&data_dir, ".restoring");
    if building.exists() {
        std::fs::remove_dir_all(&building).map_err(io("removing a leftover", &building))?;
    }
    eprintln!(
        "checking {}, then restoring it into {}",
        from.display(),
        building.display()
    );
    let (_, total, _) = backup::check(&from)?;
    let mut progress = Progress::new("restoring", Some(total), "records");
    let restored = backup::restore(&from, &building, &config.center, |n| progress.set(n))?;
    progress.finish();
    drop(restored.store);

    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let kept = if data_dir.exists() {
        match_owner(&data_dir, &building)?;
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &building,
            rustix::fs::CWD,
            &data_dir,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| BackupCliError::Io {
            what: "swapping the restored store into place at",
            path: data_dir.clone(),
            source: e.into(),
        })?;
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .expect("the stamp formats");
        let kept = sibling(&data_dir, &format!(".before-restore-{stamp}"));
        std::fs::rename(&building, &kept).map_err(io("keeping the old store at", &kept))?;
        Some(kept)
    } else {
        std::fs::rename(&building, &data_dir).map_err(io("moving into place", &data_dir))?;
        None
    };
    sync_dir(parent)?;
    let h = &restored.header;
    let kept = kept.map_or(String::new(), |k| {
        format!(
            "; the data directory it replaced is kept at {}",
            k.display()
        )
    });
    Ok(format!(
        "restored the backup of node {} taken at {} into {} ({} records, {} audit entries){kept}. \
         Start the node: it sends again what its outboxes held then (other centers keep one \
         copy of each message). Messages accepted after {} are not in it: ask the agencies to \
         push again what they sent since then (the same ids are safe to send twice)",
        h.center,
        h.taken_at,
        data_dir.display(),
        restored.records,
        h.audit_length,
        h.taken_at
    ))
}

/// `<path><suffix>` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Gives `new` and everything in it the owner and mode of `old` (when run as root for a
/// node that runs as its own user, the restored files must stay that user's).
fn match_owner(old: &Path, new: &Path) -> Result<(), BackupCliError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(old).map_err(io("reading", old))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let mut paths = vec![new.to_owned()];
    for entry in std::fs::read_dir(new).map_err(io("reading", new))? {
        paths.push(entry.map_err(io("reading", new))?.path());
    }
    for path in &paths {
        let m = std::fs::metadata(path).map_err(io("reading", path))?;
        if (m.uid(), m.gid()) != (uid, gid) {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(io("giving the old data directory's owner to", path))?;
        }
    }
    std::fs::set_permissions(new, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io("setting the mode of", new))
}

/// A running node's store, read through a backup taken from it now: restored into a
/// temporary folder (removed when the returned guard is dropped) for `plusgate audit`.
pub async fn snapshot(
    config: &Config,
    url: Option<&str>,
) -> Result<(crate::node::store::Store, TempDir), BackupCliError> {
    let tmp = TempDir::new()?;
    eprintln!(
        "plusgate: note: the node is running; reading a backup taken from it now (in {})",
        tmp.0.display()
    );
    let fetched = fetch(config, url, &tmp.0.join("backup")).await?;
    let dir = tmp.0.join("store");
    let restored = backup::restore(&fetched.file, &dir, &config.center, |_| {})?;
    std::fs::remove_dir_all(tmp.0.join("backup")).map_err(io("removing", &tmp.0))?;
    Ok((restored.store, tmp))
}

/// A folder under the system's temporary folder, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, BackupCliError> {
        let base = std::env::temp_dir();
        for n in 0..100u32 {
            let path = base.join(format!("plusgate-snapshot-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("creating", &path)(e)),
            }
        }
        Err(io("creating a folder in", &base)(std::io::Error::other(
            "100 names taken",
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
