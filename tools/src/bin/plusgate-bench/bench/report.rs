//! The single-node report: a table with one column per HTTP version (and one for
//! RabbitMQ with `--rabbitmq`), or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::histogram::Histogram;
use super::usage::{NodeUsage, RssSample};
use super::ErrorCount;

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LatencyMs {
    pub(super) mean: Option<f64>,
    pub(super) p50: Option<f64>,
    pub(super) p90: Option<f64>,
    pub(super) p99: Option<f64>,
    pub(super) p99_9: Option<f64>,
    pub(super) max: Option<f64>,
}

impl LatencyMs {
    pub(super) fn from_histogram(h: &Histogram) -> LatencyMs {
        let ms = |q: f64| h.quantile(q).map(|us| us as f64 / 1000.0);
        LatencyMs {
            mean: h.mean().map(|us| us / 1000.0),
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p99_9: ms(0.999),
            max: (h.total > 0).then(|| h.max_us as f64 / 1000.0),
        }
    }
}

/// Result of draining the recipient's inbox after a run.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PullReport {
    /// Messages pulled and acknowledged.
    pub(super) acked: u64,
    pub(super) seconds: f64,
    pub(super) acked_per_s: f64,
    /// False when the time bound stopped the drain before the inbox was empty.
    pub(super) drained: bool,
}

/// One HTTP version's results.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RunReport {
    pub(super) http: String,
    pub(super) tcp_connections: usize,
    pub(super) streams_per_connection: usize,
    pub(super) measured_s: f64,
    pub(super) accepted: u64,
    pub(super) accepted_per_s: f64,
    pub(super) latency_ms: LatencyMs,
    pub(super) errors_total: u64,
    pub(super) errors: BTreeMap<String, ErrorCount>,
    pub(super) reconnects: u64,
    pub(super) node: Option<NodeUsage>,
    /// The node's (or broker's) resident memory once a second over the measured window.
    pub(super) rss_mib: Vec<RssSample>,
    pub(super) pull: Option<PullReport>,
}

/// The RabbitMQ run of `--rabbitmq` and how the broker was set up.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RabbitReport {
    /// Product and version, as the broker announces them.
    pub(super) broker: String,
    pub(super) node_name: String,
    pub(super) queue: String,
    pub(super) queue_type: String,
    pub(super) durable: bool,
    pub(super) delivery_mode: u8,
    pub(super) publisher_confirms: bool,
    /// Size of the first publisher's first body (the plusgate run's bodies differ only in
    /// their ids, which have the same length).
    pub(super) body_bytes: usize,
    pub(super) tls: String,
    pub(super) auth: String,
    /// Every confirmed publish, warm-up and after the window included.
    pub(super) confirmed_all: u64,
    /// Messages in the queue at the end (passive declare), a check on `confirmed_all`.
    pub(super) queued_at_end: Option<u64>,
    /// How long the broker took to stop.
    pub(super) stop_s: Option<f64>,
    /// The measured window, in the plusgate runs' shape: `accepted` = confirmed
    /// publishes, `node` = the broker's process group.
    pub(super) run: RunReport,
    /// plusgate's accepted/s over RabbitMQ's confirmed/s, per plusgate run (HTTP version).
    pub(super) plusgate_over_rabbitmq: BTreeMap<String, f64>,
}

impl RabbitReport {
    /// Fills [`RabbitReport::plusgate_over_rabbitmq`] from the plusgate `runs`.
    pub(super) fn compare(&mut self, runs: &[RunReport]) {
        if self.run.accepted_per_s > 0.0 {
            for run in runs {
                self.plusgate_over_rabbitmq.insert(
                    run.http.clone(),
                    run.accepted_per_s / self.run.accepted_per_s,
                );
            }
        }
    }
}

/// The whole bench report, printed as a table or as JSON.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    pub(super) node_url: String,
    pub(super) node_spawned: bool,
    pub(super) sender: String,
    pub(super) recipient: String,
    pub(super) connections: usize,
    pub(super) warmup_s: u64,
    pub(super) duration_s: u64,
    pub(super) runs: Vec<RunReport>,
    /// With `--rabbitmq`: the same load against RabbitMQ, after the plusgate runs.
    pub(super) rabbitmq: Option<Box<RabbitReport>>,
}

impl Report {
    pub(super) fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plusgate bench: {} → {} via {}{}",
            self.sender,
            self.recipient,
            self.node_url,
            if self.node_spawned {
                " (node started by the bench)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "{} requests in flight, {} s warm-up, {} s measured\n",
            self.connections, self.warmup_s, self.duration_s
        );
        let fmt_ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let mut rows: Vec<(&str, Vec<String>)> = vec![
            ("", self.column(|r| r.http.clone())),
            (
                "connections",
                self.column(|r| match r.streams_per_connection {
                    1 => r.tcp_connections.to_string(),
                    s => format!("{} × {s} streams", r.tcp_connections),
                }),
            ),
            ("accepted", self.column(|r| r.accepted.to_string())),
            (
                "accepted/s",
                self.column(|r| format!("{:.1}", r.accepted_per_s)),
            ),
            (
                "latency mean ms",
                self.column(|r| fmt_ms(r.latency_ms.mean)),
            ),
            ("latency p50 ms", self.column(|r| fmt_ms(r.latency_ms.p50))),
            ("latency p90 ms", self.column(|r| fmt_ms(r.latency_ms.p90))),
            ("latency p99 ms", self.column(|r| fmt_ms(r.latency_ms.p99))),
            (
                "latency p99.9 ms",
                self.column(|r| fmt_ms(r.latency_ms.p99_9)),
            ),
            ("latency max ms", self.column(|r| fmt_ms(r.latency_ms.max))),
            ("errors", self.column(|r| r.errors_total.to_string())),
            ("reconnects", self.column(|r| r.reconnects.to_string())),
        ];
        if self.all_runs().any(|r| r.node.is_some()) {
            let node = |f: fn(&NodeUsage) -> String| {
                self.column(move |r| r.node.as_ref().map_or_else(|| "-".to_owned(), f))
            };
            rows.push(("node CPU %", node(|n| format!("{:.0}", n.cpu_percent))));
            rows.push((
                "node CPU µs/msg",
                node(|n| {
                    n.cpu_us_per_accepted
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
                }),
            ));
            rows.push((
                "node peak RSS MiB",
                node(|n| format!("{:.1}", n.peak_rss_mib)),
            ));
        }
        if self.runs.iter().any(|r| r.pull.is_some()) {
            let pull = |f: fn(&PullReport) -> String| {
                self.column(move |r| r.pull.as_ref().map_or_else(|| "-".to_owned(), f))
            };
            rows.push(("inbox acked", pull(|p| p.acked.to_string())));
            rows.push((
                "inbox acked/s",
                pull(|p| {
                    format!(
                        "{:.1}{}",
                        p.acked_per_s,
                        if p.drained { "" } else { " (stopped)" }
                    )
                }),
            ));
        }
        let label_width = rows
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let cell_width = rows
            .iter()
            .flat_map(|(_, cells)| cells.iter().map(|c| c.chars().count()))
            .max()
            .unwrap_or(0);
        for (label, cells) in &rows {
            let _ = write!(out, "{label:<label_width$}");
            for cell in cells {
                let _ = write!(out, "  {cell:>cell_width$}");
            }
            out.push('\n');
        }
        if let Some(rabbit) = &self.rabbitmq {
            let _ = writeln!(
                out,
                "\nRabbitMQ column: {}, {}; {} queue {:?} (durable), delivery mode {}, \
                 {}-byte bodies as sent to plusgate, publisher confirms, one connection and \
                 channel per publisher; {}. accepted = confirmed publishes; node = the \
                 broker's processes (beam.smp and helpers). Queued at the end: {} of {} \
                 confirmed.",
                rabbit.broker,
                rabbit.tls,
                rabbit.queue_type,
                rabbit.queue,
                rabbit.delivery_mode,
                rabbit.body_bytes,
                rabbit.auth,
                rabbit
                    .queued_at_end
                    .map_or_else(|| "?".to_owned(), |q| q.to_string()),
                rabbit.confirmed_all,
            );
            for (http, ratio) in &rabbit.plusgate_over_rabbitmq {
                let _ = writeln!(out, "plusgate {http} / RabbitMQ, accepted/s: {ratio:.2}×");
            }
        }
        for run in self.all_runs() {
            for (kind, e) in &run.errors {
                let _ = writeln!(
                    out,
                    "\n{} {kind}: {} × (first: {})",
                    run.http, e.count, e.first
                );
            }
        }
        out
    }

    /// The plusgate runs, then the RabbitMQ run if any: the table's columns.
    fn all_runs(&self) -> impl Iterator<Item = &RunReport> {
        self.runs
            .iter()
            .chain(self.rabbitmq.as_ref().map(|r| &r.run))
    }

    fn column(&self, cell: impl Fn(&RunReport) -> String) -> Vec<String> {
        self.all_runs().map(cell).collect()
    }
}
