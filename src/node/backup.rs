//! Backups of a running node: one file holding a consistent copy of its store and of its
//! own files in the data directory (the audit anchor), taken while it serves, and turned
//! back into a data directory by `plusgate restore`.
//!
//! ```text
//! magic     "plusgate backup\n"                          16 bytes
//! header    u32 length, then the [`Header`] as JSON
//! items     b'K' u32 key length, u32 value length, key, value   a store record, key order
//!           b'F' u16 name length, name, u64 length, bytes       a node file of the data dir
//! end       b'E' u64 records, u64 files, then the SHA-256 of every byte before it
//! ```
//! (integers big-endian). The records are the store's stream (`store::dump`), so a backup
//! does not depend on the engine's files and a restored store replays its journal at open.
//!
//! How a backup is taken (`POST /admin/v1/backups`, [`Backups`]): the ledger's writer, the
//! store's only writer, writes the backup on its own thread between two groups' writes
//! (`Ledger::backup`), so the copy is the state after one group and before the next, with
//! the anchor of that state. It writes into an unnamed file in the data directory (Linux
//! `O_TMPFILE`: no name, so nothing is left behind by a crash and nothing else in the data
//! directory sees it) at the speed of the page cache, without fsync; writes wait only that
//! long. The digest is added after, off the writer ([`seal`]). The operator's command then reads the file in pieces at its own pace
//! (`GET /admin/v1/backups/{id}?offset=N`) and makes its own copy durable.
//!
//! Invariants:
//! - the digest covers every byte before it, and [`restore`] checks the whole file before it
//!   creates anything, so a damaged or cut-off backup restores nothing;
//! - [`restore`] builds the new data directory beside the live one and returns only once it
//!   is durable; swapping it in is the caller's (`cli::backup`), one atomic rename;
//! - a backup is of one node: restore refuses another center's;
//! - a restored store records the backup's time (`Store::mark_restored`), and its
//!   forwarders ask every peer to send again what it delivered since
//!   (`POST /federation/v1/resend`), so messages other centers handed over after the backup
//!   are not lost with the rest of what came after it.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::core::hex;
use crate::core::identity::CenterId;
use crate::node::store::dump::{is_engine_file, BuildError};
use crate::node::store::{Store, StoreError};

/// The first bytes of every backup.
pub const MAGIC: &[u8; 16] = b"plusgate backup\n";

/// The backup's file name in the directory `plusgate backup --out` writes.
pub const FILE_NAME: &str = "plusgate.backup";

/// The description of the backup (the node's answer, [`Taken`]) beside it.
pub const DESCRIPTION_NAME: &str = "backup.json";

/// Longest key, value and node file a backup may hold: far above what the store writes
/// (values of at most 16 KiB), low enough that a damaged length cannot make restore
/// allocate gigabytes.
const KEY_BYTES_MAX: u32 = 64 << 10;
const VALUE_BYTES_MAX: u32 = 64 << 20;
const FILE_BYTES_MAX: u64 = 64 << 20;
const HEADER_BYTES_MAX: u32 = 64 << 10;

/// What a backup says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// The node's center.
    pub center: String,
    /// When it was taken (RFC 3339, UTC).
    pub taken_at: String,
    /// The store's format (`store::format`); `None` for an empty store.
    pub store_format: Option<u32>,
    /// Audit entries it holds.
    pub audit_length: u64,
    /// The hash of its last audit entry (hex), if any.
    pub audit_head: Option<String>,
    /// The plusgate version that took it.
    pub plusgate_version: String,
}

/// A backup as written: its header, its counts, and the SHA-256 of the whole file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    /// The header.
    #[serde(flatten)]
    pub header: Header,
    /// Store records.
    pub records: u64,
    /// Node files.
    pub files: u64,
    /// The file's length.
    pub bytes: u64,
    /// The SHA-256 of the whole file (hex), digest included.
    pub sha256: String,
}

/// What went wrong writing, reading or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not a backup, or not one this version reads.
    #[error("{} is not a plusgate backup ({why})", .path.display())]
    NotABackup {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file is damaged or cut off: nothing was restored from it.
    #[error("the backup {} is damaged ({why}); nothing was restored from it: take the copy again from the node, or use another backup", .path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The backup is of another center's node.
    #[error("the backup {} is of center {found}, this node is {expected}: restore a backup of this node", .path.display())]
    OtherCenter {
        /// The file.
        path: PathBuf,
        /// The center this node is.
        expected: String,
        /// The center the backup is of.
        found: String,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io { what, path, source }
}

/// A writer that counts what passes through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A backup's content as written, before its digest: what [`seal`] finishes.
#[derive(Debug, Clone)]
pub struct Written {
    header: Header,
    records: u64,
    files: u64,
    len: u64,
}

/// Writes a backup of `store` and of the node's files in `data_dir` to `out` (at its
/// start), all but the digest: [`seal`] adds that once the writes may go on. Consistent
/// only while nothing writes to the store (the ledger's writer calls it: `Ledger::backup`).
/// Hashing is left out of here because here the node's writes wait: hashing hundreds of
/// megabytes would double the wait.
pub fn write_body(
    store: &Store,
    data_dir: &Path,
    center: &CenterId,
    now: OffsetDateTime,
    out: &mut File,
) -> Result<Written, BackupError> {
    let werr = || io_err("writing the backup in", data_dir);
    let head = store.audit_head()?;
    let header = Header {
        center: center.to_string(),
        taken_at: crate::core::time::rfc3339(now),
        store_format: store.format()?,
        audit_length: head.as_ref().map_or(0, |e| e.seq + 1),
        audit_head: head.map(|e| e.hash),
        plusgate_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let mut w = Counting {
        inner: BufWriter::with_capacity(1 << 20, &mut *out),
        bytes: 0,
    };
    let header_json = serde_json::to_vec(&header).expect("a header serializes");
    let put = |w: &mut Counting<_>, parts: &[&[u8]]| -> io::Result<()> {
        parts.iter().try_for_each(|p| w.write_all(p))
    };
    put(
        &mut w,
        &[
            MAGIC,
            &(header_json.len() as u32).to_be_bytes(),
            &header_json,
        ],
    )
    .map_err(werr())?;
    let mut records = 0u64;
    for item in store.records() {
        let (k, v) = item?;
        records += 1;
        put(
            &mut w,
            &[
                b"K",
                &(k.len() as u32).to_be_bytes(),
                &(v.len() as u32).to_be_bytes(),
                &k,
                &v,
            ],
        )
        .map_err(werr())?;
    }
    let mut files = 0u64;
    for (name, path) in node_files(data_dir)? {
        let bytes = std::fs::read(&path).map_err(io_err("reading", &path))?;
        files += 1;
        put(
            &mut w,
            &[
                b"F",
                &(name.len() as u16).to_be_bytes(),
                name.as_bytes(),
                &(bytes.len() as u64).to_be_bytes(),
                &bytes,
            ],
        )
        .map_err(werr())?;
    }
    put(
        &mut w,
        &[b"E", &records.to_be_bytes(), &files.to_be_bytes()],
    )
    .map_err(werr())?;
    w.flush().map_err(werr())?;
    Ok(Written {
        header,
        records,
        files,
        len: w.bytes,
    })
}

/// Finishes a backup [`write_body`] wrote into `file`: reads it back, appends the SHA-256
/// of everything before, and returns its description with the whole file's SHA-256.
pub fn seal(file: &File, written: Written) -> Result<Summary, BackupError> {
    use std::os::unix::fs::FileExt;
    let rerr = |source| BackupError::Io {
        what: "sealing",
        path: PathBuf::from("the backup being written"),
        source,
    };
    let mut digest = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < written.len {
        let want = buf.len().min((written.len - at) as usize);
        file.read_exact_at(&mut buf[..want], at).map_err(rerr)?;
        digest.update(&buf[..want]);
        at += want as u64;
    }
    // The file's own SHA-256 covers the digest too: the hash so far, then those 32 bytes.
    let mut whole = digest.clone();
    let body_digest = digest.finish();
    whole.update(body_digest.as_ref());
    file.write_all_at(body_digest.as_ref(), written.len)
        .map_err(rerr)?;
    Ok(Summary {
        header: written.header,
        records: written.records,
        files: written.files,
        bytes: written.len + body_digest.as_ref().len() as u64,
        sha256: hex::encode(whole.finish().as_ref()),
    })
}

/// The node's own files in `data_dir` (not the engine's), by name, in name order.
fn node_files(data_dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(io_err("reading", data_dir))? {
        let entry = entry.map_err(io_err("reading", data_dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && !is_engine_file(&name) {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// One item of a backup being read.
enum Item {
    Record(Vec<u8>, Vec<u8>),
    File(String, Vec<u8>),
    End,
}

/// Reads a backup item by item, hashing as it goes.
struct Reader {
    path: PathBuf,
    inner: BufReader<File>,
    digest: Context,
    records: u64,
    files: u64,
}

impl Reader {
    /// Opens `path` and reads its header.
    fn open(path: &Path) -> Result<(Reader, Header), BackupError> {
        let file = File::open(path).map_err(io_err("opening", path))?;
        let mut r = Reader {
            path: path.to_owned(),
            inner: BufReader::with_capacity(1 << 20, file),
            digest: Context::new(&SHA256),
            records: 0,
            files: 0,
        };
        let not = |why: &str| BackupError::NotABackup {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        let mut magic = [0u8; 16];
        r.exact(&mut magic).map_err(|_| not("too short"))?;
        if &magic != MAGIC {
            return Err(not("it does not start with \"plusgate backup\""));
        }
        let len = r.u32()?;
        if len > HEADER_BYTES_MAX {
            return Err(r.damaged(format!("a header of {len} bytes")));
        }
        let json = r.bytes(len as usize)?;
        let header: Header = serde_json::from_slice(&json)
            .map_err(|e| not(&format!("its header does not read: {e}")))?;
        Ok((r, header))
    }

    fn damaged(&self, why: impl Into<String>) -> BackupError {
        BackupError::Damaged {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.digest.update(buf);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.damaged("it ends early: cut off in copying?"))
            }
            Err(e) => Err(BackupError::Io {
                what: "reading",
                path: self.path.clone(),
                source: e,
            }),
        }
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, BackupError> {
        let mut v = vec![0u8; n];
        self.exact(&mut v)?;
        Ok(v)
    }

    fn u16(&mut self) -> Result<u16, BackupError> {
        let mut b = [0u8; 2];
        self.exact(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, BackupError> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    /// The next item; at the end, the counts and the digest are checked, and nothing may
    /// follow.
    fn next(&mut self) -> Result<Item, BackupError> {
        let mut tag = [0u8; 1];
        self.exact(&mut tag)?;
        match &tag {
            b"K" => {
                let (k, v) = (self.u32()?, self.u32()?);
                if k > KEY_BYTES_MAX || v > VALUE_BYTES_MAX {
                    return Err(self.damaged(format!("a record of {k} + {v} bytes")));
                }
                self.records += 1;
                Ok(Item::Record(
                    self.bytes(k as usize)?,
                    self.bytes(v as usize)?,
                ))
            }
            b"F" => {
                let n = self.u16()?;
                let name = String::from_utf8(self.bytes(n as usize)?)
                    .map_err(|_| self.damaged("a file name that is not UTF-8"))?;
                if !safe_file_name(&name) {
                    return Err(self.damaged(format!("a file named {name:?}")));
                }
                let len = self.u64()?;
                if len > FILE_BYTES_MAX {
                    return Err(self.damaged(format!("a file of {len} bytes")));
                }
                self.files += 1;
                Ok(Item::File(name, self.bytes(len as usize)?))
            }
            b"E" => {
                let (records, files) = (self.u64()?, self.u64()?);
                if (records, files) != (self.records, self.files) {
                    return Err(self.damaged(format!(
                        "it says {records} records and {files} files, it holds {} and {}",
                        self.records, self.files
                    )));
                }
                let expected = std::mem::replace(&mut self.digest, Context::new(&SHA256)).finish();
                let mut found = [0u8; 32];
                self.exact(&mut found)?;
                if found != expected.as_ref() {
                    return Err(self.damaged("its SHA-256 does not match its content"));
                }
                let mut more = [0u8; 1];
                match self.inner.read(&mut more) {
                    Ok(0) => Ok(Item::End),
                    Ok(_) => Err(self.damaged("bytes follow its end")),
                    Err(e) => Err(BackupError::Io {
                        what: "reading",
                        path: self.path.clone(),
                        source: e,
                    }),
                }
            }
            other => Err(self.damaged(format!("an item of unknown kind {:#04x}", other[0]))),
        }
    }
}

/// A name a node file may have in a backup: one plain path component, not the engine's.
fn safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && !is_engine_file(name)
}

/// Reads the whole backup at `path` and checks it (its digest, its counts, its items):
/// its header, records and files.
pub fn check(path: &Path) -> Result<(Header, u64, u64), BackupError> {
    let (mut r, header) = Reader::open(path)?;
    loop {
        if let Item::End = r.next()? {
            return Ok((header, r.records, r.files));
        }
    }
}

/// What [`restore`] made.
#[derive(Debug)]
pub struct Restored {
    /// The backup's header.
    pub header: Header,
    /// Store records written.
    pub records: u64,
    /// Node files written.
    pub files: u64,
    /// The restored store, open (sled may release its lock a moment after the last handle
    /// is dropped: whoever reads it next takes this one).
    pub store: Store,
}

/// Builds a data directory at `dir` (which must not exist) from the backup at `path`, for
/// the node of `center`, and makes it durable. The whole backup is checked first, so a
/// damaged one creates nothing. `progress` is told the records written so far.
pub fn restore(
    path: &Path,
    dir: &Path,
    center: &CenterId,
    mut progress: impl FnMut(u64),
) -> Result<Restored, BackupError> {
    let (header, _, _) = check(path)?;
    if header.center != center.as_str() {
        return Err(BackupError::OtherCenter {
            path: path.to_owned(),
            expected: center.to_string(),
            found: header.center,
        });
    }
    let (mut r, _) = Reader::open(path)?;
    // Records come first, then the node's files, then the end.
    let mut after_records = None;
    let records = std::iter::from_fn(|| {
        if after_records.is_some() {
            return None;
        }
        match r.next() {
            Ok(Item::Record(k, v)) => Some(Ok((k, v))),
            Ok(other) => {
                after_records = Some(other);
                None
            }
            Err(e) => Some(Err(e)),
        }
    });
    let (count, _) = Store::build(dir, records, |n, _| progress(n)).map_err(|e| match e {
        BuildError::Source(e) => e,
        BuildError::Store(e) => BackupError::Store(e),
    })?;
    let mut item = after_records.expect("the records end before the stream does");
    let mut files = 0u64;
    loop {
        match item {
            Item::Record(..) => return Err(r.damaged("a record after the node's files")),
            Item::End => break,
            Item::File(name, bytes) => {
                let target = dir.join(&name);
                write_new_durably(&target, &bytes).map_err(io_err("writing", &target))?;
                files += 1;
            }
        }
        item = r.next()?;
    }
    // The node's peers are to send again what they delivered after the backup: the
    // restored store says since when (`store::resend`), its forwarders ask.
    // Whatever its format: a backup of an older one is restored as it is, and the node
    // then asks for `plusgate migrate` as for any store of that format.
    let store = Store::open_for_migration(dir, crate::node::store::StoreOptions::default())?;
    store.mark_restored(&header.taken_at)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsyncing", dir))?;
    Ok(Restored {
        header,
        records: count,
        files,
        store,
    })
}

/// Creates `path` (which must not exist) holding `bytes`, and fsyncs it; the caller fsyncs
/// its folder.
pub fn write_new_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

mod held;
pub use held::{Backups, HeldError, IDLE_MAX};

#[cfg(test)]
mod tests;
