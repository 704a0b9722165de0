//! The report: what each phase cost, each start and stop, and the data directory at each
//! step with the space amplification; as tables or JSON.

use std::fmt::Write as _;

use harness::Node;
use serde::Serialize;

use super::census::Census;
use super::monitor::Maxima;
use super::probe::{memory, DiskUsage, Memory, MIB};
use super::start::StartTiming;
use super::RetentionArgs;

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    /// `--messages`.
    pub(super) fill_messages: u64,
    /// `--connections`.
    pub(super) connections: u16,
    /// Bytes of one push's request body.
    pub(super) body_bytes: u64,
    /// Request bytes of every accepted push (the reference the amplification is also
    /// given against).
    pub(super) pushed_bytes: u64,
    pub(super) phases: Vec<Phase>,
    pub(super) starts: Vec<StartTiming>,
    pub(super) stops: Vec<Stop>,
    pub(super) disk: Vec<DiskRow>,
    /// The message whose purge marks the end of the retention purge.
    pub(super) purge_probe: Option<String>,
    /// With `--sled-cleaner-s`: the bytes sled wrote while its cleaner ran.
    pub(super) sled_cleaner_written_bytes: Option<u64>,
}

/// A phase that pushes, drains or purges.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Phase {
    pub(super) name: String,
    pub(super) seconds: f64,
    /// Messages pushed, acknowledged or purged.
    pub(super) count: u64,
    pub(super) per_s: f64,
    /// Failed requests (e.g. those cut off by a SIGKILL).
    pub(super) failures: u64,
    /// The maxima sampled during the phase.
    pub(super) sampled: Maxima,
    /// The node's memory at the phase's end (none once it was killed).
    pub(super) at_end: Option<Memory>,
}

impl Phase {
    pub(super) fn new(name: &str, seconds: f64, count: u64, sampled: Maxima, node: &Node) -> Phase {
        Phase {
            name: name.to_owned(),
            seconds,
            count,
            per_s: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
            failures: 0,
            sampled,
            at_end: memory(node),
        }
    }
}

/// A clean stop: SIGTERM until the process exited.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Stop {
    pub(super) name: String,
    pub(super) seconds: f64,
    pub(super) memory_before: Option<Memory>,
}

/// The data directory at one step.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DiskRow {
    pub(super) name: String,
    /// Whether the node was running.
    pub(super) running: bool,
    /// Messages accepted so far (pushes answered `202`; a SIGKILL may have made a few more
    /// durable without an answer).
    pub(super) messages: u64,
    /// Request bytes of those pushes.
    pub(super) pushed_bytes: u64,
    pub(super) usage: DiskUsage,
    /// The store's content, where a census was taken (after this row's sizes were read).
    pub(super) census: Option<Census>,
}

impl DiskRow {
    /// Allocated bytes ÷ live bytes, where a census was taken.
    fn amplification(&self) -> Option<f64> {
        let live = self.census.as_ref()?.live_bytes;
        (live > 0).then(|| self.usage.allocated_bytes as f64 / live as f64)
    }

    /// Allocated bytes ÷ the request bytes pushed.
    fn per_pushed(&self) -> Option<f64> {
        (self.pushed_bytes > 0)
            .then(|| self.usage.allocated_bytes as f64 / self.pushed_bytes as f64)
    }

    /// One line for the progress output.
    pub(super) fn summary(&self) -> String {
        let mut text = format!(
            "{}: data {:.0} MiB allocated ({:.0} MiB in files, db {:.0} MiB)",
            self.name,
            self.usage.allocated_bytes as f64 / MIB,
            self.usage.apparent_bytes as f64 / MIB,
            self.usage.db_bytes as f64 / MIB,
        );
        if let Some(c) = &self.census {
            let _ = write!(
                text,
                "; live {:.0} MiB in {} messages (sled opened in {:.2} s)",
                c.live_bytes as f64 / MIB,
                c.messages,
                c.open_s
            );
        }
        text
    }
}

impl Report {
    pub(super) fn new(args: &RetentionArgs, body_bytes: u64) -> Report {
        Report {
            fill_messages: args.messages,
            connections: args.connections,
            body_bytes,
            pushed_bytes: 0,
            phases: Vec::new(),
            starts: Vec::new(),
            stops: Vec::new(),
            disk: Vec::new(),
            purge_probe: None,
            sled_cleaner_written_bytes: None,
        }
    }

    /// The report as tables.
    pub(super) fn to_text(&self) -> String {
        let mut out = String::new();
        let o = &mut out;
        let _ = writeln!(
            o,
            "plusgate-retention: {} referrals of {} bytes, {} HTTP/1.1 connections\n",
            self.fill_messages, self.body_bytes, self.connections
        );
        let _ = writeln!(
            o,
            "{:<44} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}",
            "phase", "s", "count", "/s", "failed", "maxRSS", "peakMiB"
        );
        for p in &self.phases {
            let _ = writeln!(
                o,
                "{:<44} {:>8.1} {:>9} {:>8.0} {:>8} {:>8.0} {:>8.0}",
                p.name,
                p.seconds,
                p.count,
                p.per_s,
                p.failures,
                p.sampled.rss_mib,
                p.sampled.peak_mib
            );
        }
        let _ = writeln!(
            o,
            "\n{:<48} {:>9} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>6} {:>9}",
            "start (seconds from spawn)",
            "listening",
            "ready",
            "1stpush",
            "RSS",
            "peak",
            "readMiB",
            "diskMiB",
            "cpu s",
            "replayed"
        );
        for s in &self.starts {
            let (rss, peak) = s.memory.map_or((0.0, 0.0), |m| (m.rss_mib, m.peak_mib));
            let (read, disk, cpu) = s.at_listening.map_or((0.0, 0.0, 0.0), |w| {
                (
                    w.read_bytes as f64 / MIB,
                    w.disk_read_bytes as f64 / MIB,
                    w.cpu_s,
                )
            });
            let name = if s.cold {
                format!("{} (cold)", s.name)
            } else {
                s.name.clone()
            };
            let _ = writeln!(
                o,
                "{:<48} {:>9.2} {:>7.2} {:>7.2} {:>6.0} {:>6.0} {:>8.0} {:>8.0} {:>6.2} {:>9}",
                name,
                s.listening_s,
                s.ready_s,
                s.first_push_s,
                rss,
                peak,
                read,
                disk,
                cpu,
                s.replayed_writes
            );
        }
        let _ = writeln!(
            o,
            "\n{:<44} {:>8} {:>10}",
            "stop (SIGTERM → exit)", "s", "RSS before"
        );
        for s in &self.stops {
            let rss = s.memory_before.map_or(0.0, |m| m.rss_mib);
            let _ = writeln!(o, "{:<44} {:>8.2} {:>10.0}", s.name, s.seconds, rss);
        }
        self.disk_table(o);
        if let Some(written) = self.sled_cleaner_written_bytes {
            let _ = writeln!(
                o,
                "(sled's segment cleaner, run on the stopped store, wrote {:.0} MiB)",
                written as f64 / MIB
            );
        }
        self.census_table(o);
        out
    }

    fn disk_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "\n{:<32} {:>8} {:>9} {:>9} {:>8} {:>5} {:>9} {:>9} {:>9}",
            "data directory (MiB)",
            "messages",
            "files",
            "allocated",
            "db",
            "snaps",
            "live",
            "alloc/live",
            "alloc/push"
        );
        for d in &self.disk {
            let live = d.census.as_ref().map_or("-".to_owned(), |c| {
                format!("{:.0}", c.live_bytes as f64 / MIB)
            });
            let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}"));
            let _ = writeln!(
                o,
                "{:<32} {:>8} {:>9.0} {:>9.0} {:>8.0} {:>5} {:>9} {:>9} {:>9}",
                d.name,
                d.messages,
                d.usage.apparent_bytes as f64 / MIB,
                d.usage.allocated_bytes as f64 / MIB,
                d.usage.db_bytes as f64 / MIB,
                d.usage.snapshots,
                live,
                ratio(d.amplification()),
                ratio(d.per_pushed()),
            );
        }
    }

    fn census_table(&self, o: &mut String) {
        let taken: Vec<(&str, &Census)> = self
            .disk
            .iter()
            .filter_map(|d| Some((d.name.as_str(), d.census.as_ref()?)))
            .collect();
        if taken.is_empty() {
            return;
        }
        let _ = write!(o, "\n{:<22}", "live data by family");
        for (name, _) in &taken {
            let _ = write!(o, " {:>26}", truncate_name(name, 26));
        }
        let _ = writeln!(o);
        let mut families: Vec<&String> =
            taken.iter().flat_map(|(_, c)| c.families.keys()).collect();
        families.sort();
        families.dedup();
        for family in families {
            let _ = write!(o, "{family:<22}");
            for (_, c) in &taken {
                let cell = c.families.get(family).map_or("-".to_owned(), |f| {
                    format!(
                        "{} keys {:.1} MiB",
                        f.keys,
                        (f.key_bytes + f.value_bytes) as f64 / MIB
                    )
                });
                let _ = write!(o, " {cell:>26}");
            }
            let _ = writeln!(o);
        }
        let _ = write!(o, "{:<22}", "sled open / scan s");
        for (_, c) in &taken {
            let _ = write!(o, " {:>26}", format!("{:.2} / {:.2}", c.open_s, c.scan_s));
        }
        let _ = write!(o, "\n{:<22}", "+RSS open / scan MiB");
        for (_, c) in &taken {
            let _ = write!(
                o,
                " {:>26}",
                format!("{:.0} / {:.0}", c.open_rss_mib, c.scan_rss_mib)
            );
        }
        let _ = writeln!(o);
    }
}

fn truncate_name(name: &str, chars_max: usize) -> String {
    name.chars().take(chars_max).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn row(allocated: u64, pushed: u64, live: Option<u64>) -> DiskRow {
        DiskRow {
            name: "step".into(),
            running: false,
            messages: 10,
            pushed_bytes: pushed,
            usage: DiskUsage {
                allocated_bytes: allocated,
                ..DiskUsage::default()
            },
            census: live.map(|live_bytes| Census {
                open_s: 0.0,
                scan_s: 0.0,
                open_rss_mib: 0.0,
                scan_rss_mib: 0.0,
                messages: 10,
                live_bytes,
                families: BTreeMap::new(),
                other_trees: 0,
                sled_size_on_disk: allocated,
            }),
        }
    }

    #[test]
    fn amplification_is_allocated_over_live_and_over_pushed() {
        let check = |r: DiskRow, live: Option<f64>, pushed: Option<f64>| {
            assert_eq!(r.amplification(), live);
            assert_eq!(r.per_pushed(), pushed);
        };
        check(row(400, 100, Some(200)), Some(2.0), Some(4.0));
        check(row(400, 100, None), None, Some(4.0));
        check(row(400, 0, Some(0)), None, None);
    }

    #[test]
    fn the_disk_table_shows_each_step_with_its_ratios() {
        let mut report = Report {
            fill_messages: 10,
            connections: 1,
            body_bytes: 10,
            pushed_bytes: 100,
            phases: Vec::new(),
            starts: Vec::new(),
            stops: Vec::new(),
            disk: vec![row(400 << 20, 100 << 20, Some(200 << 20))],
            purge_probe: None,
            sled_cleaner_written_bytes: None,
        };
        report.disk[0].name = "purged, stopped cleanly".into();
        let text = report.to_text();
        let line = text
            .lines()
            .find(|l| l.starts_with("purged, stopped cleanly"))
            .expect("a row for the step");
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[cells.len() - 3..], ["200", "2.00", "4.00"], "{line}");
    }
}
