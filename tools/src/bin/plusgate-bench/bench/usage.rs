//! A process's (or a process group's) CPU time and peak memory, read from Linux's `/proc`,
//! and what a node or broker used during a measured window.

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

/// CPU time and peak RSS of every process in process group `pgid`, added up: the RabbitMQ
/// broker's start script, its Erlang VM (`beam.smp`) and the VM's helpers, which the bench
/// starts in a group of their own. The peak RSS is the sum of each process's own peak, an
/// upper bound of the group's (the VM's dominates). `None` when no process of the group
/// can be read. Processes that exited are not counted.
pub(super) fn group_usage(pgid: u32) -> Option<ProcessUsage> {
    let mut total: Option<ProcessUsage> = None;
    for pid in group_members(pgid) {
        let Ok(usage) = process_usage(&pid.to_string()) else {
            continue;
        };
        let sum = total.get_or_insert(ProcessUsage {
            cpu_ticks: 0,
            peak_rss_kib: 0,
        });
        sum.cpu_ticks += usage.cpu_ticks;
        sum.peak_rss_kib += usage.peak_rss_kib;
    }
    total
}

/// The processes now in process group `pgid`, from `/proc/*/stat`.
pub(super) fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_pgrp(&stat))
                == Some(pgid)
        })
        .collect()
}

/// The process group (field 5) from `/proc/<pid>/stat`, counted after the command name's
/// last `)` as in [`parse_cpu_ticks`].
fn parse_pgrp(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(2)?.parse().ok()
}

/// What a memory sample is taken of: one process, or every process of a group (the
/// broker's).
#[derive(Debug, Clone, Copy)]
pub(super) enum Watched {
    Process(u32),
    Group(u32),
}

impl Watched {
    /// Resident memory now (VmRSS, summed over a group), in KiB; `None` when nothing
    /// can be read (the process is gone).
    fn rss_kib(self) -> Option<u64> {
        let read = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| parse_status_kib(&status, "VmRSS:"))
        };
        match self {
            Watched::Process(pid) => read(pid),
            Watched::Group(pgid) => group_members(pgid).into_iter().map(read).sum(),
        }
    }
}

/// One reading of [`RssSampler`]: seconds since the window started, resident MiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct RssSample {
    pub(super) t_s: f64,
    pub(super) rss_mib: f64,
}

/// Reads a process's resident memory once per [`RSS_SAMPLE_EVERY`] during a measured
/// window, in a task of its own, so a long run's report holds memory over time, not just
/// the peak (VmHWM says how high it went, not whether it keeps growing).
pub(super) struct RssSampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<RssSample>>,
}

/// Interval of [`RssSampler`]'s readings.
pub(super) const RSS_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl RssSampler {
    /// Starts sampling `watched` now (the first reading is taken at once); `None` watched
    /// gives an empty series.
    pub(super) fn start(watched: Option<Watched>) -> RssSampler {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let Some(watched) = watched else {
                return samples;
            };
            let started = tokio::time::Instant::now();
            let mut every = tokio::time::interval(RSS_SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        if let Some(kib) = watched.rss_kib() {
                            samples.push(RssSample {
                                t_s: started.elapsed().as_secs_f64(),
                                rss_mib: kib as f64 / 1024.0,
                            });
                        }
                    }
                    _ = stopped.changed() => return samples,
                }
            }
        });
        RssSampler { stop, task }
    }

    /// Stops sampling and returns the series (empty if the task failed).
    pub(super) async fn finish(self) -> Vec<RssSample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
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
    parse_status_kib(status, "VmHWM:")
}

/// The KiB value of the `/proc/<pid>/status` line starting with `key` (e.g. `VmRSS:`).
fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
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
        assert_eq!(parse_pgrp(stat), Some(2));
        assert_eq!(parse_pgrp("garbage"), None);
        let status = "Name:\tplusgate\nVmPeak:\t  9000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(4321));
        assert_eq!(parse_vm_hwm_kib("Name: x\n"), None);
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(4000));
    }
}
