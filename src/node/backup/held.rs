//! The backup the node holds for the operator's command to read (`api::backup`): at most
//! one at a time, in an unnamed file of the data directory, dropped when released or after
//! [`IDLE_MAX`] unread.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{io_err, BackupError, Summary};
use crate::core::hex;

/// How long an operator's copy may sit unread before the node drops it and frees its space.
pub const IDLE_MAX: Duration = Duration::from_secs(600);

/// The backup the node holds for the operator's command to read: at most one at a time.
#[derive(Debug)]
pub struct Backups {
    data_dir: PathBuf,
    reserve_bytes: u64,
    held: Mutex<Option<Held>>,
}

#[derive(Debug)]
struct Held {
    id: String,
    file: Arc<File>,
    summary: Summary,
    last_used: Instant,
}

/// Why the node cannot take a backup now, or serve a piece of one.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    /// Another backup is being read: one at a time.
    #[error("another backup ({0}) is being copied; wait for it to finish (or {idle} without reads)", idle = humanize(IDLE_MAX))]
    Busy(String),
    /// Not enough free space for the copy.
    #[error("only {available} bytes are free in {}, and the copy needs about {needed} (the store's size and the reserve); free disk space", .path.display())]
    NoSpace {
        /// The data directory.
        path: PathBuf,
        /// Bytes free.
        available: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// No such backup (never taken, finished, or dropped after [`IDLE_MAX`] unread).
    #[error("no backup {0} is held (finished, or dropped after {idle} unread); take a new one", idle = humanize(IDLE_MAX))]
    Unknown(String),
    /// The offset is past the end.
    #[error("offset {offset} is past the end of the backup ({len} bytes)")]
    Offset {
        /// Asked.
        offset: u64,
        /// The backup's length.
        len: u64,
    },
    /// Writing or reading the copy failed.
    #[error(transparent)]
    Backup(#[from] BackupError),
}

fn humanize(d: Duration) -> String {
    format!("{} minutes", d.as_secs() / 60)
}

impl Backups {
    /// Backups of the node whose data directory is `data_dir`, keeping `reserve_bytes` free.
    pub fn new(data_dir: PathBuf, reserve_bytes: u64) -> Backups {
        Backups {
            data_dir,
            reserve_bytes,
            held: Mutex::new(None),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// An unnamed file in the data directory for a new backup, once no other is being read
    /// and there is room for it.
    pub fn prepare(&self) -> Result<File, HeldError> {
        {
            let mut held = self.held.lock().expect("backups lock");
            match held.as_ref() {
                Some(h) if h.last_used.elapsed() < IDLE_MAX => {
                    return Err(HeldError::Busy(h.id.clone()))
                }
                _ => *held = None,
            }
        }
        let size = store_bytes(&self.data_dir).map_err(io_err("measuring", &self.data_dir))?;
        let available = fs2::available_space(&self.data_dir)
            .map_err(io_err("reading the free space of", &self.data_dir))?;
        let needed = size + self.reserve_bytes;
        if available < needed {
            return Err(HeldError::NoSpace {
                path: self.data_dir.clone(),
                available,
                needed,
            });
        }
        Ok(unnamed_file(&self.data_dir)
            .map_err(io_err("creating the backup's file in", &self.data_dir))?)
    }

    /// Holds `file`, a backup just written, for the operator to read; returns its id.
    pub fn hold(&self, file: File, summary: Summary) -> Result<String, HeldError> {
        let mut held = self.held.lock().expect("backups lock");
        if let Some(h) = held.as_ref().filter(|h| h.last_used.elapsed() < IDLE_MAX) {
            return Err(HeldError::Busy(h.id.clone()));
        }
        let id = new_id();
        *held = Some(Held {
            id: id.clone(),
            file: Arc::new(file),
            summary,
            last_used: Instant::now(),
        });
        Ok(id)
    }

    /// The held backup `id`'s file and length, for a read at `offset`.
    pub fn open(&self, id: &str, offset: u64) -> Result<(Arc<File>, u64), HeldError> {
        let mut held = self.held.lock().expect("backups lock");
        match held.as_mut() {
            Some(h) if h.id == id && h.last_used.elapsed() < IDLE_MAX => {
                if offset > h.summary.bytes {
                    return Err(HeldError::Offset {
                        offset,
                        len: h.summary.bytes,
                    });
                }
                h.last_used = Instant::now();
                Ok((h.file.clone(), h.summary.bytes))
            }
            _ => Err(HeldError::Unknown(id.to_owned())),
        }
    }

    /// Drops the held backup `id` (its space is free once no read holds the file).
    pub fn release(&self, id: &str) -> Result<(), HeldError> {
        let mut held = self.held.lock().expect("backups lock");
        match held.as_ref() {
            Some(h) if h.id == id => {
                *held = None;
                Ok(())
            }
            _ => Err(HeldError::Unknown(id.to_owned())),
        }
    }

    /// Watches the held backup from a task of its own, which drops it once it has been
    /// unread for [`IDLE_MAX`] and ends when nothing is held.
    pub fn expire_later(self: &Arc<Self>) {
        let backups = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let Some(backups) = backups.upgrade() else {
                    return;
                };
                backups.expire();
                if backups.held.lock().expect("backups lock").is_none() {
                    return;
                }
            }
        });
    }

    /// Drops a backup left unread for [`IDLE_MAX`].
    pub fn expire(&self) {
        let mut held = self.held.lock().expect("backups lock");
        if held
            .as_ref()
            .is_some_and(|h| h.last_used.elapsed() >= IDLE_MAX)
        {
            tracing::info!("dropped a backup left unread; its disk space is free again");
            *held = None;
        }
    }
}

/// Bytes the engine's files in `data_dir` take: more than a backup of them needs.
fn store_bytes(data_dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(data_dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// A new file in `dir` without a name (`O_TMPFILE`), gone with its last handle; where the
/// file system cannot make one, a named file removed at once.
fn unnamed_file(dir: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    match rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
            let path = dir.join(format!(".backup-{}", new_id()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
        Err(e) => Err(e.into()),
    }
}

/// A fresh random id for a held backup.
fn new_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source works");
    hex::encode(&b)
}
