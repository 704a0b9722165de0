//! The `--cross` report: one section per phase with the product owner's targets, as text
//! or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::report::LatencyMs;
use super::usage::{NodeUsage, RssSample};
use super::ErrorCount;

/// Waiting for B to receive a phase's backlog.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DrainReport {
    pub(super) seconds: f64,
    /// Everything A accepted was pulled at B.
    pub(super) complete: bool,
    /// Accepted at A, not (yet) pulled at B when the wait ended.
    pub(super) remaining: u64,
}

/// The throughput phase's results.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ThroughputReport {
    pub(super) tcp_connections: usize,
    pub(super) streams_per_connection: usize,
    pub(super) measured_s: f64,
    /// `202`s at A inside the measured window.
    pub(super) accepted: u64,
    pub(super) accepted_per_s: f64,
    /// A's `202` latency.
    pub(super) push_latency_ms: LatencyMs,
    /// Distinct messages first pulled at B inside the same window.
    pub(super) delivered: u64,
    pub(super) delivered_per_s: f64,
    pub(super) target_delivered_per_s: f64,
    pub(super) target_met: bool,
    /// `202`s at A from the start to the window's end (warm-up included).
    pub(super) accepted_by_end: u64,
    /// Distinct messages pulled at B from the start to the window's end.
    pub(super) pulled_by_end: u64,
    /// `accepted_by_end − pulled_by_end`: in A's outbox, in flight, or in B's inbox.
    pub(super) backlog_at_end: i64,
    /// Every `202` at A of this phase.
    pub(super) accepted_all: u64,
    /// Waiting, after the window, until B had received all of `accepted_all`.
    pub(super) drain: DrainReport,
    /// Messages first pulled at B after the window's end, per second from the window's
    /// end to the end of `drain`: the forwarding rate while A takes no pushes.
    pub(super) received_after_end_per_s: f64,
    pub(super) errors_total: u64,
    pub(super) errors: BTreeMap<String, ErrorCount>,
    pub(super) reconnects: u64,
    pub(super) node_a: Option<NodeUsage>,
    /// B's `cpu_us_per_accepted` is per delivered message.
    pub(super) node_b: Option<NodeUsage>,
    /// The bench's own CPU use (pushers and pullers) during the window, 100 = one core.
    pub(super) bench_cpu_percent: Option<f64>,
}

/// The latency phase's results; every count is of the sends scheduled in the measured
/// window, except `never_arrived_warmup`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LatencyReport {
    pub(super) rate_per_s: u32,
    pub(super) measured_s: f64,
    pub(super) tcp_connections: usize,
    pub(super) in_flight_max: usize,
    pub(super) scheduled: u64,
    pub(super) accepted: u64,
    pub(super) accepted_per_s: f64,
    pub(super) arrived: u64,
    /// Accepted at A, not pulled at B within `grace_s` after the last scheduled send.
    pub(super) never_arrived: u64,
    pub(super) never_arrived_warmup: u64,
    pub(super) grace_s: u64,
    /// From the push being sent at A to a pull at B first returning it.
    pub(super) latency_ms: LatencyMs,
    pub(super) target_p99_ms: f64,
    pub(super) target_met: bool,
    /// A's `202` latency.
    pub(super) push_latency_ms: LatencyMs,
    /// How far behind the timetable sends went out (all in-flight slots busy, or the
    /// bench itself too slow).
    pub(super) send_lag_ms: LatencyMs,
    pub(super) errors_total: u64,
    pub(super) errors: BTreeMap<String, ErrorCount>,
    pub(super) reconnects: u64,
    pub(super) node_a: Option<NodeUsage>,
    /// B's `cpu_us_per_accepted` is per arrived message.
    pub(super) node_b: Option<NodeUsage>,
    /// The bench's own CPU use (pushers and pullers) during the window, 100 = one core.
    pub(super) bench_cpu_percent: Option<f64>,
    /// A's and B's resident memory once a second over the window: with a long
    /// `--duration-s`, whether memory settles or keeps growing.
    pub(super) rss_a_mib: Vec<RssSample>,
    pub(super) rss_b_mib: Vec<RssSample>,
}

/// The `--cross` report, printed as a table or as JSON.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CrossReport {
    pub(super) mode: &'static str,
    pub(super) sender: String,
    pub(super) recipient: String,
    pub(super) node_a_url: String,
    pub(super) node_b_url: String,
    /// Where the federation was kept (`--keep`).
    pub(super) federation_dir: Option<String>,
    pub(super) http: String,
    pub(super) connections: usize,
    pub(super) warmup_s: u64,
    pub(super) duration_s: u64,
    pub(super) pullers: usize,
    pub(super) pull_max: usize,
    pub(super) pull_wait_s: u64,
    /// How long the first (check) message took from A to being pullable at B.
    pub(super) first_forward_ms: f64,
    pub(super) throughput: Option<ThroughputReport>,
    pub(super) latency: LatencyReport,
    /// Pull answers with status 200 at B over the whole run.
    pub(super) pulls: u64,
    /// Messages pulled at B more than once.
    pub(super) duplicates: u64,
    pub(super) pull_errors_total: u64,
    pub(super) pull_errors: BTreeMap<String, ErrorCount>,
    /// How each node ended, by center.
    pub(super) node_exit: BTreeMap<String, String>,
}

impl CrossReport {
    pub(super) fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plusgate bench --cross: {} at {} → {} at {} (nodes started by the bench)",
            self.sender, self.node_a_url, self.recipient, self.node_b_url
        );
        let _ = writeln!(
            out,
            "pushes over {} with at most {} in flight; {} pullers at B (max={}, wait={} s), acking every pull",
            self.http, self.connections, self.pullers, self.pull_max, self.pull_wait_s
        );
        let _ = writeln!(
            out,
            "first message pullable at B {:.1} ms after its push\n",
            self.first_forward_ms
        );
        let fmt_ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let node_rows =
            |rows: &mut Vec<(String, String)>, role: &str, usage: &Option<NodeUsage>| match usage {
                Some(n) => {
                    rows.push((
                        format!("node {role} CPU %"),
                        format!("{:.0}", n.cpu_percent),
                    ));
                    rows.push((
                        format!("node {role} CPU µs/msg"),
                        n.cpu_us_per_accepted
                            .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}")),
                    ));
                    rows.push((
                        format!("node {role} peak RSS MiB"),
                        format!("{:.1}", n.peak_rss_mib),
                    ));
                }
                None => rows.push((format!("node {role} usage"), "-".to_owned())),
            };
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        let fmt_percent = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));

        let mut sections = Vec::new();
        if let Some(t) = &self.throughput {
            let heading = format!(
                "throughput (closed loop, {} connections × {} streams, {} s warm-up, {:.0} s measured)",
                t.tcp_connections, t.streams_per_connection, self.warmup_s, t.measured_s
            );
            let mut rows = vec![
                ("accepted at A".to_owned(), t.accepted.to_string()),
                (
                    "accepted/s at A".to_owned(),
                    format!("{:.1}", t.accepted_per_s),
                ),
                ("delivered at B".to_owned(), t.delivered.to_string()),
                (
                    "delivered/s at B".to_owned(),
                    format!(
                        "{:.1} (target ≥ {:.0}: {})",
                        t.delivered_per_s,
                        t.target_delivered_per_s,
                        verdict(t.target_met)
                    ),
                ),
                (
                    "backlog at end".to_owned(),
                    format!(
                        "{} ({} accepted − {} pulled)",
                        t.backlog_at_end, t.accepted_by_end, t.pulled_by_end
                    ),
                ),
                (
                    "rest received at B".to_owned(),
                    if t.drain.complete {
                        format!(
                            "after {:.1} s ({:.0}/s with A idle)",
                            t.drain.seconds, t.received_after_end_per_s
                        )
                    } else {
                        format!(
                            "NO: {} missing after {:.1} s",
                            t.drain.remaining, t.drain.seconds
                        )
                    },
                ),
                (
                    "push latency p50/p99/p99.9 ms".to_owned(),
                    format!(
                        "{} / {} / {}",
                        fmt_ms(t.push_latency_ms.p50),
                        fmt_ms(t.push_latency_ms.p99),
                        fmt_ms(t.push_latency_ms.p99_9)
                    ),
                ),
                ("push errors".to_owned(), t.errors_total.to_string()),
                ("push reconnects".to_owned(), t.reconnects.to_string()),
            ];
            node_rows(&mut rows, "A", &t.node_a);
            node_rows(&mut rows, "B", &t.node_b);
            rows.push(("bench CPU %".to_owned(), fmt_percent(t.bench_cpu_percent)));
            sections.push((heading, rows));
        }

        let l = &self.latency;
        let heading = format!(
            "latency (open loop {}/s, at most {} in flight on {} connections, {} s warm-up, {:.0} s measured, {} s grace)",
            l.rate_per_s, l.in_flight_max, l.tcp_connections, self.warmup_s, l.measured_s, l.grace_s
        );
        let mut rows = vec![
            (
                "scheduled / accepted at A".to_owned(),
                format!("{} / {}", l.scheduled, l.accepted),
            ),
            (
                "accepted/s at A".to_owned(),
                format!("{:.1}", l.accepted_per_s),
            ),
            ("arrived at B".to_owned(), l.arrived.to_string()),
            (
                "never arrived".to_owned(),
                if l.never_arrived_warmup > 0 {
                    format!(
                        "{} (+{} in warm-up)",
                        l.never_arrived, l.never_arrived_warmup
                    )
                } else {
                    l.never_arrived.to_string()
                },
            ),
            (
                "push→pullable mean ms".to_owned(),
                fmt_ms(l.latency_ms.mean),
            ),
            ("push→pullable p50 ms".to_owned(), fmt_ms(l.latency_ms.p50)),
            ("push→pullable p90 ms".to_owned(), fmt_ms(l.latency_ms.p90)),
            (
                "push→pullable p99 ms".to_owned(),
                format!(
                    "{} (target < {:.0}: {})",
                    fmt_ms(l.latency_ms.p99),
                    l.target_p99_ms,
                    verdict(l.target_met)
                ),
            ),
            (
                "push→pullable p99.9 ms".to_owned(),
                fmt_ms(l.latency_ms.p99_9),
            ),
            ("push→pullable max ms".to_owned(), fmt_ms(l.latency_ms.max)),
            (
                "push latency p50/p99 ms".to_owned(),
                format!(
                    "{} / {}",
                    fmt_ms(l.push_latency_ms.p50),
                    fmt_ms(l.push_latency_ms.p99)
                ),
            ),
            (
                "send lag p99/max ms".to_owned(),
                format!(
                    "{} / {}",
                    fmt_ms(l.send_lag_ms.p99),
                    fmt_ms(l.send_lag_ms.max)
                ),
            ),
            ("push errors".to_owned(), l.errors_total.to_string()),
        ];
        node_rows(&mut rows, "A", &l.node_a);
        node_rows(&mut rows, "B", &l.node_b);
        rows.push(("bench CPU %".to_owned(), fmt_percent(l.bench_cpu_percent)));
        sections.push((heading, rows));
        let width = sections
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|(l, _)| l.chars().count()))
            .max()
            .unwrap_or(0);
        for (i, (heading, rows)) in sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "{heading}");
            for (label, value) in rows {
                let pad = width - label.chars().count();
                let _ = writeln!(out, "  {label}{:pad$}  {value}", "");
            }
        }

        let _ = writeln!(
            out,
            "\npulls at B: {}, duplicates: {}, pull/ack errors: {}",
            self.pulls, self.duplicates, self.pull_errors_total
        );
        let exits: Vec<String> = self
            .node_exit
            .iter()
            .map(|(center, how)| format!("{center}: {how}"))
            .collect();
        let _ = writeln!(out, "nodes stopped: {}", exits.join(", "));
        if let Some(dir) = &self.federation_dir {
            let _ = writeln!(out, "federation kept in {dir}");
        }
        let phases = [
            ("throughput", self.throughput.as_ref().map(|t| &t.errors)),
            ("latency", Some(&l.errors)),
            ("pull", Some(&self.pull_errors)),
        ];
        for (phase, errors) in phases {
            for (kind, e) in errors.into_iter().flatten() {
                let _ = writeln!(out, "\n{phase} {kind}: {} × (first: {})", e.count, e.first);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::cross::TARGET_DELIVERED_PER_S;
    use super::super::open_loop::TARGET_P99_MS;
    use super::super::pullers::PULLERS;
    use super::*;

    #[test]
    fn cross_report_text_shows_both_phases_and_verdicts() {
        let latency = LatencyMs {
            mean: Some(3.0),
            p50: Some(2.5),
            p90: Some(4.0),
            p99: Some(12.0),
            p99_9: Some(20.0),
            max: Some(25.0),
        };
        let usage = NodeUsage {
            cpu_s: 5.0,
            cpu_percent: 50.0,
            cpu_us_per_accepted: Some(100.0),
            peak_rss_mib: 300.0,
        };
        let report = CrossReport {
            mode: "cross",
            sender: "suwon/employment".into(),
            recipient: "gangseo/welfare".into(),
            node_a_url: "https://127.0.0.1:20000".into(),
            node_b_url: "https://127.0.0.1:20001".into(),
            federation_dir: None,
            http: "HTTP/2".into(),
            connections: 64,
            warmup_s: 2,
            duration_s: 10,
            pullers: PULLERS,
            pull_max: 100,
            pull_wait_s: 1,
            first_forward_ms: 7.5,
            throughput: Some(ThroughputReport {
                tcp_connections: 4,
                streams_per_connection: 16,
                measured_s: 10.0,
                accepted: 60_000,
                accepted_per_s: 6_000.0,
                push_latency_ms: latency.clone(),
                delivered: 45_000,
                delivered_per_s: 4_500.0,
                target_delivered_per_s: TARGET_DELIVERED_PER_S,
                target_met: false,
                accepted_by_end: 72_000,
                pulled_by_end: 55_000,
                backlog_at_end: 17_000,
                accepted_all: 72_010,
                drain: DrainReport {
                    seconds: 3.5,
                    complete: true,
                    remaining: 0,
                },
                received_after_end_per_s: 4_857.0,
                errors_total: 0,
                errors: BTreeMap::new(),
                reconnects: 0,
                node_a: Some(usage.clone()),
                node_b: None,
                bench_cpu_percent: Some(70.0),
            }),
            latency: LatencyReport {
                rate_per_s: 1000,
                measured_s: 10.0,
                tcp_connections: 4,
                in_flight_max: 64,
                scheduled: 10_000,
                accepted: 10_000,
                accepted_per_s: 1000.0,
                arrived: 10_000,
                never_arrived: 0,
                never_arrived_warmup: 0,
                grace_s: 10,
                latency_ms: latency.clone(),
                target_p99_ms: TARGET_P99_MS,
                target_met: true,
                push_latency_ms: latency.clone(),
                send_lag_ms: latency,
                errors_total: 1,
                errors: BTreeMap::from([(
                    "status 503".to_owned(),
                    ErrorCount {
                        count: 1,
                        first: "unavailable".into(),
                    },
                )]),
                reconnects: 0,
                node_a: Some(usage.clone()),
                node_b: Some(usage),
                bench_cpu_percent: None,
                rss_a_mib: Vec::new(),
                rss_b_mib: Vec::new(),
            },
            pulls: 900,
            duplicates: 0,
            pull_errors_total: 0,
            pull_errors: BTreeMap::new(),
            node_exit: BTreeMap::from([
                ("gangseo".to_owned(), "exit status: 0".to_owned()),
                ("suwon".to_owned(), "exit status: 0".to_owned()),
            ]),
        };
        let text = report.to_text();
        for want in [
            "delivered/s at B",
            "4500.0 (target ≥ 5000: NOT met)",
            "17000 (72000 accepted − 55000 pulled)",
            "after 3.5 s (4857/s with A idle)",
            "12.00 (target < 50: met)",
            "node B usage",
            "latency status 503: 1 × (first: unavailable)",
            "gangseo: exit status: 0, suwon: exit status: 0",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["mode"], "cross");
        assert_eq!(json["throughput"]["backlog_at_end"], 17_000);
        assert_eq!(json["latency"]["latency_ms"]["p99"], 12.0);
    }
}
