//! A census of a stopped node's store: every key and value in sled's tree, counted by key
//! family, so that the bytes the node actually keeps (the live data) can be set against
//! what the data directory takes on disk.
//!
//! This reads sled directly, which nothing in the node does outside `node::store`: a
//! measurement of sled's space amplification needs sled's own view. It opens the store as
//! the node does (same segment size, no background flusher, so sled's segment cleaner does
//! not run here either), which makes sled write a fresh snapshot of its page table, as the
//! node's next start would. So a census is taken only where the following start is not the
//! one being timed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The node's sled segment size (`node::store::SEGMENT_BYTES`): sled refuses to open a
/// store with another, so a mismatch shows as an error, not a wrong count.
const SEGMENT_BYTES: usize = 8 << 20;

/// sled's page cache while counting (the node's default `[storage] cache_mb`).
const CACHE_BYTES: u64 = 32 << 20;

/// Keys and bytes of one key family.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Family {
    pub(super) keys: u64,
    pub(super) key_bytes: u64,
    pub(super) value_bytes: u64,
}

/// What the store holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Census {
    /// Seconds sled took to open the store (its recovery: read the newest snapshot, then
    /// scan the log written since).
    pub(super) open_s: f64,
    /// Seconds the count took (a full scan of the tree).
    pub(super) scan_s: f64,
    /// How much the census process's resident memory grew while sled opened the store
    /// (its page table and what recovery keeps), MiB.
    pub(super) open_rss_mib: f64,
    /// … and by the end of the scan, which fills sled's page cache, MiB.
    pub(super) scan_rss_mib: f64,
    /// Message records (family `m`).
    pub(super) messages: u64,
    /// Sum of every key's and value's length: the live data.
    pub(super) live_bytes: u64,
    /// By family, named.
    pub(super) families: BTreeMap<String, Family>,
    /// Trees other than sled's default one (the node uses only the default tree).
    pub(super) other_trees: u64,
    /// sled's own `size_on_disk`.
    pub(super) sled_size_on_disk: u64,
}

/// Counts the store in `dir` (its node must be stopped: sled locks the directory), in a
/// child process (this executable with `--census-of DIR`), so that the memory it reports
/// is sled's alone.
pub(super) fn census(dir: &Path) -> anyhow::Result<Census> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let output = std::process::Command::new(exe)
        .arg("--census-of")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running the census")?;
    if !output.status.success() {
        anyhow::bail!(
            "the census of {} failed ({}): {}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading the census")
}

/// The census itself, in this process (see [`census`]).
pub(super) fn census_here(dir: &Path) -> anyhow::Result<Census> {
    let rss_before = own_rss_mib();
    let opened = Instant::now();
    let db = sled::Config::new()
        .path(dir)
        .segment_size(SEGMENT_BYTES)
        .cache_capacity(CACHE_BYTES)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()
        .with_context(|| format!("opening the store in {} for a census", dir.display()))?;
    let open_s = opened.elapsed().as_secs_f64();
    let open_rss_mib = own_rss_mib() - rss_before;
    let scanned = Instant::now();
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut live_bytes = 0;
    for item in db.iter() {
        let (k, v) = item.context("scanning the store")?;
        let family = families.entry(family_name(k.first().copied())).or_default();
        family.keys += 1;
        family.key_bytes += k.len() as u64;
        family.value_bytes += v.len() as u64;
        live_bytes += (k.len() + v.len()) as u64;
    }
    let scan_s = scanned.elapsed().as_secs_f64();
    let scan_rss_mib = own_rss_mib() - rss_before;
    let other_trees = db.tree_names().len().saturating_sub(1) as u64;
    let sled_size_on_disk = db.size_on_disk().context("sled's size_on_disk")?;
    Ok(Census {
        open_s,
        scan_s,
        open_rss_mib,
        scan_rss_mib,
        messages: families.get("m message").map_or(0, |f| f.keys),
        live_bytes,
        families,
        other_trees,
        sled_size_on_disk,
    })
}

/// How often sled's background flusher runs in [`let_sled_clean`] (sled's default); each
/// round spends up to half of it relocating pages out of sparse segments.
const FLUSH_EVERY_MS: u64 = 500;

/// Opens the stopped store in `dir` with sled's background flusher on, which the node
/// turns off, and leaves it idle for `idle`: that thread is the only caller of sled's
/// segment cleaner (`attempt_gc`), which moves the live pages out of segments at most half
/// full so that they can be reused, and the file's tail truncated. An experiment, not what
/// the node does: it shows whether sled would give the space back by itself.
///
/// Returns the bytes this process wrote meanwhile (`wchar` of `/proc/self/io`): what the
/// cleaner rewrote.
pub(super) fn let_sled_clean(dir: &Path, idle: Duration) -> anyhow::Result<u64> {
    let db = sled::Config::new()
        .path(dir)
        .segment_size(SEGMENT_BYTES)
        .cache_capacity(CACHE_BYTES)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(FLUSH_EVERY_MS))
        .open()
        .with_context(|| format!("opening the store in {} for sled's cleaner", dir.display()))?;
    let written = || written_bytes().context("reading /proc/self/io");
    let before = written()?;
    std::thread::sleep(idle);
    db.flush().context("flushing after sled's cleaner")?;
    Ok(written()?.saturating_sub(before))
}

/// This process's resident memory (0 if `/proc` cannot be read), MiB.
fn own_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Bytes this process has written with write(2) and kin.
fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))?
        .trim()
        .parse()
        .ok()
}

/// The family of a key by its first byte, as `node::store`'s table names it.
fn family_name(byte: Option<u8>) -> String {
    let Some(byte) = byte else {
        return "(empty key)".to_owned();
    };
    let name = match byte {
        b'm' => "message",
        b'b' => "message piece",
        b'd' => "delivery",
        b'i' => "inbox",
        b'o' => "outbox",
        b'a' => "audit",
        b'u' => "audit by subject",
        b'g' => "by consent",
        b'e' => "retention",
        b'j' => "journal",
        b'r' => "receipt",
        b's' => "setting",
        b'x' => "dead letter",
        b'c' => "checkpoint",
        b'p' => "peer checkpoint",
        b'k' => "consent",
        b'n' => "notice",
        b'w' => "withheld report",
        _ => return format!("0x{byte:02x} unknown"),
    };
    format!("{} {name}", char::from(byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_named_by_their_byte() {
        assert_eq!(family_name(Some(b'm')), "m message");
        assert_eq!(family_name(Some(b'j')), "j journal");
        assert_eq!(family_name(Some(0x01)), "0x01 unknown");
        assert_eq!(family_name(None), "(empty key)");
    }
}
