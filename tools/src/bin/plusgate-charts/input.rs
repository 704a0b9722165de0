//! The benchmark results the charts are drawn from: the JSON files `tools/bench-charts.sh`
//! writes under `docs/bench/`, each `plusgate-bench --json`'s report wrapped with when, at
//! which commit and on how loaded a machine it was measured.
//!
//! Only the fields the charts draw are read; they mirror `plusgate-bench`'s report types
//! (`bench/report.rs`, `bench/cross_report.rs`), whose other fields are ignored. A renamed
//! field there fails here with the file and the field named, and the test that redraws
//! the committed charts from the committed JSON catches it before a commit does.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A result file: the run's context and the bench's report.
#[derive(Debug, Clone, Deserialize)]
pub struct Measured<R> {
    pub measured_at: String,
    pub commit: String,
    pub cpus: u32,
    pub load_average_at_start: String,
    pub command: String,
    pub report: R,
}

impl<R> Measured<R> {
    /// The day it was measured (`2026-11-30`).
    pub fn day(&self) -> &str {
        self.measured_at.get(..10).unwrap_or(&self.measured_at)
    }
}

/// `plusgate-bench --rabbitmq --http both --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct SingleReport {
    pub connections: u32,
    pub runs: Vec<RunReport>,
    pub rabbitmq: Option<RabbitReport>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RabbitReport {
    pub broker: String,
    pub run: RunReport,
}

/// One load run: a plusgate HTTP version, or the broker.
#[derive(Debug, Clone, Deserialize)]
pub struct RunReport {
    pub http: String,
    pub accepted_per_s: f64,
    pub latency_ms: LatencyMs,
    pub rss_mib: Vec<RssSample>,
}

impl RunReport {
    /// The highest resident memory read during the measured window, MiB.
    pub fn rss_max_mib(&self) -> Option<f64> {
        self.rss_mib.iter().map(|s| s.rss_mib).reduce(f64::max)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LatencyMs {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p99_9: Option<f64>,
    pub max: Option<f64>,
}

/// The labels of [`LatencyMs::percentiles`], in its order.
pub const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

impl LatencyMs {
    /// The percentiles the charts show, in the order of [`PERCENTILES`].
    pub fn percentiles(&self) -> [Option<f64>; 5] {
        [self.p50, self.p90, self.p99, self.p99_9, self.max]
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RssSample {
    pub t_s: f64,
    pub rss_mib: f64,
}

/// `plusgate-bench --cross --json` (`throughput` is absent with `--rate`).
#[derive(Debug, Clone, Deserialize)]
pub struct CrossReport {
    pub connections: u32,
    pub throughput: Option<ThroughputReport>,
    pub latency: CrossLatency,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ThroughputReport {
    pub accepted_per_s: f64,
    pub delivered_per_s: f64,
    pub received_after_end_per_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CrossLatency {
    pub rate_per_s: u32,
    pub measured_s: f64,
    pub arrived: u64,
    pub never_arrived: u64,
    pub latency_ms: LatencyMs,
    pub push_latency_ms: LatencyMs,
    pub rss_a_mib: Vec<RssSample>,
    pub rss_b_mib: Vec<RssSample>,
}

/// Everything in the results folder the charts need.
#[derive(Debug, Clone)]
pub struct Results {
    /// By connection count, ascending.
    pub connections: Vec<Measured<SingleReport>>,
    pub cross: Measured<CrossReport>,
    pub memory: Measured<CrossReport>,
}

impl Results {
    /// Reads `connections-*.json`, `cross.json` and `memory.json` from `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Results> {
        let mut connections = Vec::new();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("connections-") && name.ends_with(".json") {
                connections.push(read::<SingleReport>(&path)?);
            }
        }
        if connections.is_empty() {
            bail!(
                "no connections-*.json in {} (tools/bench-charts.sh connections makes them)",
                dir.display()
            );
        }
        connections.sort_by_key(|m| m.report.connections);
        if let Some(pair) = connections
            .windows(2)
            .find(|w| w[0].report.connections == w[1].report.connections)
        {
            bail!(
                "two results in {} for {} connections",
                dir.display(),
                pair[0].report.connections
            );
        }
        Ok(Results {
            connections,
            cross: read(&in_dir(dir, "cross.json", "cross")?)?,
            memory: read(&in_dir(dir, "memory.json", "memory")?)?,
        })
    }
}

/// `dir/name`, or an error saying which step of `tools/bench-charts.sh` makes it.
fn in_dir(dir: &Path, name: &str, step: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(anyhow!(
            "{} is missing (tools/bench-charts.sh {step} makes it)",
            path.display()
        ));
    }
    Ok(path)
}

fn read<R: DeserializeOwned>(path: &Path) -> anyhow::Result<Measured<R>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a plusgate-bench result this version reads",
            path.display()
        )
    })
}
