//! A process's CPU time and peak memory, read from Linux's `/proc`, and what a node used
//! during a measured window.

use anyhow::anyhow;
use harness::Node;
use serde::Serialize;

/// Linux reports process CPU times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Linux supports (the kernel ABI fixes it, whatever `CONFIG_HZ` is).
const USER_HZ: f64 = 100.0;

/// The spawned node's resource use during the measured window.
#[derive(Debug, Clone, Serialize)]
pub(super) struct NodeUsage {
    /// User + system CPU seconds used during the window.
    pub(super) cpu_s: f64,
    /// `cpu_s` relative to the window (100 = one core busy).
    pub(super) cpu_percent: f64,
    /// CPU microseconds per accepted message.
    pub(super) cpu_us_per_accepted: Option<f64>,
    /// Peak resident set size since the node started (VmHWM), in MiB.
    pub(super) peak_rss_mib: f64,
}

impl NodeUsage {
    /// The use between two readings `measured_s` seconds apart, during which the node
    /// handled `messages` messages; `None` when either reading failed.
    pub(super) fn between(
        start: Option<ProcessUsage>,
        end: Option<ProcessUsage>,
        measured_s: f64,
        messages: u64,
    ) -> Option<NodeUsage> {
        let (a, b) = (start?, end?);
        let cpu_s = (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / USER_HZ;
        Some(NodeUsage {
            cpu_s,
            cpu_percent: 100.0 * cpu_s / measured_s,
            cpu_us_per_accepted: (messages > 0).then(|| cpu_s * 1e6 / messages as f64),
            peak_rss_mib: b.peak_rss_kib as f64 / 1024.0,
        })
    }
}

/// Resource counters of a running process, from `/proc`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcessUsage {
    /// utime + stime, in clock ticks.
    pub(super) cpu_ticks: u64,
    /// VmHWM, in KiB.
    pub(super) peak_rss_kib: u64,
}

/// The counters of `node`'s process; `None` when it is not running or `/proc` cannot be
/// read.
pub(super) fn node_usage(node: &Node) -> Option<ProcessUsage> {
    process_usage(&node.pid()?.to_string()).ok()
}

/// CPU time and peak RSS of process `pid` (a number, or `self`), from `/proc`.
pub(super) fn process_usage(pid: &str) -> anyhow::Result<ProcessUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(ProcessUsage {
        cpu_ticks: parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("unexpected /proc stat"))?,
        peak_rss_kib: parse_vm_hwm_kib(&status)
            .ok_or_else(|| anyhow!("no VmHWM in /proc status"))?,
    })
}

/// utime + stime from `/proc/<pid>/stat`. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmHWM in KiB from `/proc/<pid>/status`.
fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        let stat = "1234 (plus gate) (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        let status = "Name:\tplusgate\nVmPeak:\t  9000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(4321));
        assert_eq!(parse_vm_hwm_kib("Name: x\n"), None);
    }
}
