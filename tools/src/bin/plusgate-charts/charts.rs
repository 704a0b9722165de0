//! Which charts are drawn, and from which numbers.
//!
//! - `throughput-by-connections`: durable messages accepted per second, plusgate over
//!   HTTP/1.1 and HTTP/2 beside RabbitMQ's confirmed publishes, by connections in flight;
//! - `p99-by-connections`: the same runs' p99 latency;
//! - `latency-percentiles`: p50 … max of the run with 64 connections (or the nearest);
//! - `memory-by-connections`: the highest resident memory read in each run's window;
//! - `cross-center`: two centers, throughput (accepted at A, delivered at B, B's drain);
//! - `cross-center-latency`: two centers at a fixed rate, push → 202 and push → pullable
//!   at B;
//! - `memory-long-run`: both nodes' resident memory over the long open-loop run.

use super::input::{LatencyMs, Measured, Results, RunReport, PERCENTILES};
use super::svg::{BarSeries, Chart, Marks, Scale, Series};

/// The connection count whose latency percentiles are drawn (the bench's default).
const PERCENTILES_AT: u32 = 64;

/// Every chart, by file stem, in the order the README shows them.
pub fn all(results: &Results) -> Vec<(&'static str, Chart)> {
    vec![
        (
            "throughput-by-connections",
            throughput_by_connections(results),
        ),
        ("p99-by-connections", p99_by_connections(results)),
        ("latency-percentiles", latency_percentiles(results)),
        ("memory-by-connections", memory_by_connections(results)),
        ("cross-center", cross_center(results)),
        ("cross-center-latency", cross_center_latency(results)),
        ("memory-long-run", memory_long_run(results)),
    ]
}

/// Where and how the numbers were measured, for the line under a title.
fn provenance<R>(runs: &[&Measured<R>]) -> String {
    let mut days: Vec<&str> = runs.iter().map(|m| m.day()).collect();
    days.dedup();
    let mut commits: Vec<&str> = runs.iter().map(|m| m.commit.as_str()).collect();
    commits.sort_unstable();
    commits.dedup();
    let loads: Vec<f64> = runs
        .iter()
        .filter_map(|m| {
            m.load_average_at_start
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let load = match (
        loads.iter().copied().reduce(f64::min),
        loads.iter().copied().reduce(f64::max),
    ) {
        (Some(low), Some(high)) if (high - low).abs() < 0.05 => format!("{low:.1}"),
        (Some(low), Some(high)) => format!("{low:.1}–{high:.1}"),
        _ => "unknown".to_owned(),
    };
    let cpus = runs.first().map_or(0, |m| m.cpus);
    format!(
        "measured {} at {} · {cpus} CPUs shared with the load generator · load average at start {load}",
        days.join(", "),
        commits.join(", ")
    )
}

/// The commands of the runs, for the chart's description.
fn commands<R>(runs: &[&Measured<R>]) -> Vec<String> {
    runs.iter().map(|m| m.command.clone()).collect()
}

/// The three runs of one connection count, as (series name, run): plusgate's HTTP
/// versions, then the broker.
fn runs_of(single: &super::input::SingleReport) -> Vec<(String, &RunReport)> {
    let mut runs: Vec<(String, &RunReport)> = single
        .runs
        .iter()
        .map(|run| (format!("plusgate {}", run.http), run))
        .collect();
    if let Some(rabbit) = &single.rabbitmq {
        runs.push((
            format!("{} (durable queue, confirms)", rabbit.broker),
            &rabbit.run,
        ));
    }
    runs
}

/// One line per run name across the connection counts, y from `value`.
fn by_connections(results: &Results, value: impl Fn(&RunReport) -> Option<f64>) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for measured in &results.connections {
        let x = f64::from(measured.report.connections);
        for (name, run) in runs_of(&measured.report) {
            let Some(y) = value(run) else { continue };
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push((x, y)),
                None => series.push(Series {
                    name,
                    points: vec![(x, y)],
                }),
            }
        }
    }
    series
}

fn connection_runs(results: &Results) -> Vec<&Measured<super::input::SingleReport>> {
    results.connections.iter().collect()
}

fn throughput_by_connections(results: &Results) -> Chart {
    Chart {
        title: "Durable messages per second, by connections".into(),
        subtitle: provenance(&connection_runs(results)),
        commands: commands(&connection_runs(results)),
        x_label: "requests in flight (plusgate HTTP/1.1: connections; HTTP/2: streams; RabbitMQ: publishers)".into(),
        y_label: "accepted (plusgate) / confirmed (RabbitMQ) per s".into(),
        marks: Marks::Lines {
            x_scale: Scale::Log2,
            y_scale: Scale::Linear,
            series: by_connections(results, |run| Some(run.accepted_per_s)),
        },
    }
}

fn p99_by_connections(results: &Results) -> Chart {
    Chart {
        title: "p99 latency of a durable push, by connections".into(),
        subtitle: provenance(&connection_runs(results)),
        commands: commands(&connection_runs(results)),
        x_label: "requests in flight".into(),
        y_label: "p99 latency, ms (log scale)".into(),
        marks: Marks::Lines {
            x_scale: Scale::Log2,
            y_scale: Scale::Log10,
            series: by_connections(results, |run| run.latency_ms.p99),
        },
    }
}

fn memory_by_connections(results: &Results) -> Chart {
    Chart {
        title: "Resident memory during each run, by connections".into(),
        subtitle: provenance(&connection_runs(results)),
        commands: commands(&connection_runs(results)),
        x_label: "requests in flight".into(),
        y_label: "highest RSS in the measured window, MiB".into(),
        marks: Marks::Lines {
            x_scale: Scale::Log2,
            y_scale: Scale::Linear,
            series: by_connections(results, RunReport::rss_max_mib),
        },
    }
}

/// Bars of percentiles, one series per `(name, latency)`.
fn percentile_bars(series: Vec<(String, &LatencyMs)>) -> (Vec<String>, Vec<BarSeries>) {
    let categories = PERCENTILES.iter().map(|name| (*name).to_owned()).collect();
    let series = series
        .into_iter()
        .map(|(name, latency)| BarSeries {
            name,
            values: latency.percentiles().to_vec(),
        })
        .collect();
    (categories, series)
}

fn latency_percentiles(results: &Results) -> Chart {
    // The run at PERCENTILES_AT connections, or the one nearest to it.
    let measured = results
        .connections
        .iter()
        .min_by_key(|m| m.report.connections.abs_diff(PERCENTILES_AT));
    let (categories, series) = match measured {
        Some(m) => percentile_bars(
            runs_of(&m.report)
                .into_iter()
                .map(|(name, run)| (name, &run.latency_ms))
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let connections = measured.map_or(0, |m| m.report.connections);
    Chart {
        title: format!("Latency of a durable push, {connections} in flight"),
        subtitle: provenance(&measured.into_iter().collect::<Vec<_>>()),
        commands: commands(&measured.into_iter().collect::<Vec<_>>()),
        x_label: "percentile".into(),
        y_label: "ms (log scale)".into(),
        marks: Marks::Bars {
            categories,
            y_scale: Scale::Log10,
            series,
        },
    }
}

fn cross_center(results: &Results) -> Chart {
    let cross = &results.cross;
    let throughput = cross.report.throughput.as_ref();
    Chart {
        title: format!(
            "Two centers: messages per second, {} in flight at A",
            cross.report.connections
        ),
        subtitle: provenance(&[cross]),
        commands: commands(&[cross]),
        x_label: "both nodes and the load generator on the same machine".into(),
        y_label: "messages per s".into(),
        marks: Marks::Bars {
            categories: vec![
                "accepted at A".into(),
                "delivered at B meanwhile".into(),
                "B draining, A idle".into(),
            ],
            y_scale: Scale::Linear,
            series: vec![BarSeries {
                name: "plusgate, A → B over mutual TLS".into(),
                values: vec![
                    throughput.map(|t| t.accepted_per_s),
                    throughput.map(|t| t.delivered_per_s),
                    throughput.map(|t| t.received_after_end_per_s),
                ],
            }],
        },
    }
}

fn cross_center_latency(results: &Results) -> Chart {
    let cross = &results.cross;
    let latency = &cross.report.latency;
    let (categories, series) = percentile_bars(vec![
        (
            "push at A → 202 (durable at A)".into(),
            &latency.push_latency_ms,
        ),
        ("push at A → pullable at B".into(), &latency.latency_ms),
    ]);
    Chart {
        title: format!(
            "Two centers at {}/s: latency, {} s measured",
            latency.rate_per_s, latency.measured_s as u64
        ),
        subtitle: provenance(&[cross]),
        commands: commands(&[cross]),
        x_label: "percentile".into(),
        y_label: "ms (log scale)".into(),
        marks: Marks::Bars {
            categories,
            y_scale: Scale::Log10,
            series,
        },
    }
}

fn memory_long_run(results: &Results) -> Chart {
    let memory = &results.memory;
    let latency = &memory.report.latency;
    let minutes = |samples: &[super::input::RssSample]| {
        samples
            .iter()
            .map(|s| (s.t_s / 60.0, s.rss_mib))
            .collect::<Vec<_>>()
    };
    Chart {
        title: format!(
            "Memory over {} minutes at {}/s between two centers",
            (latency.measured_s / 60.0).round() as u64,
            latency.rate_per_s
        ),
        subtitle: provenance(&[memory]),
        commands: commands(&[memory]),
        x_label: format!(
            "minutes ({} messages pullable at B, {} never arrived)",
            super::svg::format_number(latency.arrived as f64),
            latency.never_arrived
        ),
        y_label: "resident memory, MiB".into(),
        marks: Marks::Lines {
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                Series {
                    name: "node A (accepts, forwards)".into(),
                    points: minutes(&latency.rss_a_mib),
                },
                Series {
                    name: "node B (receives, serves pulls)".into(),
                    points: minutes(&latency.rss_b_mib),
                },
            ],
        },
    }
}
