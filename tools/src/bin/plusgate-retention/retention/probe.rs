//! What the tool reads from outside the node: its memory from Linux's `/proc`, and the size
//! of its data directory from the file system.

use std::path::Path;

use harness::Node;
use serde::Serialize;

/// Bytes in a MiB, for printing.
pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// A node's memory at one instant, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Memory {
    /// Resident set size now (VmRSS), MiB.
    pub(super) rss_mib: f64,
    /// Peak resident set size since the process started (VmHWM), MiB.
    pub(super) peak_mib: f64,
}

/// The memory of `node`'s process; `None` when it is not running or `/proc` cannot be read.
pub(super) fn memory(node: &Node) -> Option<Memory> {
    memory_of(node.pid()?)
}

/// The memory of process `pid`; `None` when it is gone or `/proc` cannot be read.
pub(super) fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_mib: status_kib(&status, "VmRSS:")? as f64 / 1024.0,
        peak_mib: status_kib(&status, "VmHWM:")? as f64 / 1024.0,
    })
}

/// The value in KiB of field `name` (with its colon) of `/proc/<pid>/status`.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a process has read and the CPU it has used since it started, from `/proc`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Work {
    /// Bytes it read with read(2) and kin, from the page cache or the disk (`rchar`).
    pub(super) read_bytes: u64,
    /// Bytes it caused to be fetched from the storage device (`read_bytes`).
    pub(super) disk_read_bytes: u64,
    /// User + system CPU seconds.
    pub(super) cpu_s: f64,
}

/// Linux reports process CPU times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Linux supports (the kernel ABI fixes it).
const USER_HZ: f64 = 100.0;

/// The reads and CPU time of process `pid` so far.
pub(super) fn work_of(pid: u32) -> Option<Work> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Work {
        read_bytes: io_field(&io, "rchar:")?,
        disk_read_bytes: io_field(&io, "read_bytes:")?,
        cpu_s: cpu_ticks(&stat)? as f64 / USER_HZ,
    })
}

fn io_field(io: &str, name: &str) -> Option<u64> {
    io.lines()
        .find_map(|line| line.strip_prefix(name))?
        .trim()
        .parse()
        .ok()
}

/// utime + stime from `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// What a sled data directory takes on disk. sled 0.34 keeps its log in one file, `db`, of
/// fixed-size segments, plus `conf`, a `snap.<lsn>` snapshot of its page table written at
/// each open, and `blobs/` for items larger than a quarter of a segment.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct DiskUsage {
    /// Sum of the files' lengths.
    pub(super) apparent_bytes: u64,
    /// Sum of the blocks the files occupy (what `du` shows; less than the length where a
    /// file has holes).
    pub(super) allocated_bytes: u64,
    /// Length of the log file `db`.
    pub(super) db_bytes: u64,
    /// Blocks the log file `db` occupies.
    pub(super) db_allocated_bytes: u64,
    /// `snap.*` files and their bytes.
    pub(super) snapshots: u64,
    pub(super) snapshot_bytes: u64,
    /// Files under `blobs/` and their bytes.
    pub(super) blobs: u64,
    pub(super) blob_bytes: u64,
}

/// The sizes of everything under the data directory `dir` (zero for files that vanish
/// while it is read: sled removes old snapshots and blobs itself).
pub(super) fn disk_usage(dir: &Path) -> DiskUsage {
    let mut usage = DiskUsage::default();
    add_dir(dir, &mut usage, false);
    usage
}

fn add_dir(dir: &Path, usage: &mut DiskUsage, in_blobs: bool) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if meta.is_dir() {
            add_dir(&entry.path(), usage, in_blobs || name == "blobs");
            continue;
        }
        // st_blocks is in 512-byte units whatever the file system's block size.
        let (len, allocated) = (meta.len(), meta.blocks() * 512);
        usage.apparent_bytes += len;
        usage.allocated_bytes += allocated;
        if in_blobs {
            usage.blobs += 1;
            usage.blob_bytes += len;
        } else if name == "db" {
            usage.db_bytes = len;
            usage.db_allocated_bytes = allocated;
        } else if name.starts_with("snap.") {
            usage.snapshots += 1;
            usage.snapshot_bytes += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let status = "Name:\tplusgate\nVmPeak:\t  9000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(4321));
        assert_eq!(status_kib(status, "VmRSS:"), Some(4000));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let stat = "1234 (plus gate) (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        let io = "rchar: 8000\nwchar: 10\nsyscr: 3\nread_bytes: 4096\nwrite_bytes: 0\n";
        assert_eq!(io_field(io, "rchar:"), Some(8000));
        assert_eq!(io_field(io, "read_bytes:"), Some(4096));
    }

    #[test]
    fn a_data_directory_is_measured_by_kind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, len: usize| {
            std::fs::write(dir.path().join(name), vec![1u8; len]).expect("write");
        };
        write("db", 10_000);
        write("conf", 100);
        write("snap.00000001", 300);
        std::fs::create_dir(dir.path().join("blobs")).expect("blobs");
        write("blobs/7", 50);
        let usage = disk_usage(dir.path());
        assert_eq!(usage.apparent_bytes, 10_450);
        assert_eq!(usage.db_bytes, 10_000);
        assert_eq!((usage.snapshots, usage.snapshot_bytes), (1, 300));
        assert_eq!((usage.blobs, usage.blob_bytes), (1, 50));
        assert!(usage.allocated_bytes >= usage.db_allocated_bytes);
    }
}
