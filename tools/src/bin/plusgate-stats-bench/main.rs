//! `plusgate-stats-bench`: how fast a node answers a year of referral statistics
//! (`GET /v1/stats`) for a center that took `--messages` messages (default 1,000,000) in
//! that year, side by side with the no-op (`GET /healthz`) on the same connection.
//!
//! The tool creates a two-center development federation, starts `suwon`'s node once (the
//! executable next to its own, or `--plusgate PATH`) and stops it; then it writes the
//! statistics records a year of traffic leaves in the store (family `t`, one record per
//! Seoul day and agency pair, through the store's own `WriteSet::put_pair_day`): every
//! message counted on a day of 2026, spread over `--pairs` agency pairs (local and to the
//! other center), half of them referrals with an outcome and their times to first pull,
//! acceptance and completion drawn at random (a fixed seed). The messages themselves are
//! not written: an answer reads only these records, and writing a million messages through
//! the API first would take the node minutes for nothing the answer looks at. Then it
//! starts the node again (timed: the start loads the records into memory), and asks, as the
//! center's manager over one HTTPS connection, `--requests` times each: the year by month,
//! by ISO week and by day, and `/healthz`. It prints each one's latency (p50, p90, max), the
//! answer's size and the node's RSS.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use harness::{Federation, Plusgate};
use hyper::Method;
use plusgate::core::stats::{PairDay, ACCEPTANCE_BANDS, OUTCOME_COLUMNS};
use plusgate::node::client::HttpVersion;
use plusgate::node::store::{Store, WriteSet};
use time::macros::date;

/// Measures `GET /v1/stats` for a year of a busy center.
#[derive(Debug, Parser)]
#[command(name = "plusgate-stats-bench")]
struct Args {
    /// Messages the center took in the year.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Agency pairs they are spread over (at most 45: 5 agencies, each to the 4 others at
    /// its center and the 5 at the other).
    #[arg(long, default_value_t = 40)]
    pairs: usize,
    /// Requests per question (after three to warm up).
    #[arg(long, default_value_t = 30)]
    requests: usize,
    /// The `plusgate` executable (default: the one next to this tool).
    #[arg(long)]
    plusgate: Option<PathBuf>,
}

const AGENCIES: [&str; 5] = ["employment", "jobs", "welfare", "saeil", "finance"];

/// A small fixed-seed generator: the same data every run, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn pairs(n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for from in AGENCIES {
        for to in AGENCIES.iter().filter(|t| **t != from) {
            out.push((format!("suwon/{from}"), format!("suwon/{to}")));
        }
        for to in AGENCIES {
            out.push((format!("suwon/{from}"), format!("gangseo/{to}")));
        }
    }
    out.truncate(n);
    out
}

/// Writes a year of statistics records into the stopped node's store: (records, seconds).
fn fill(data_dir: &std::path::Path, args: &Args) -> anyhow::Result<(usize, f64)> {
    let started = Instant::now();
    let store = Store::open(data_dir).context("opening the stopped node's store")?;
    let pairs = pairs(args.pairs);
    let days: Vec<time::Date> = (0..365)
        .map(|i| date!(2026 - 01 - 01) + time::Duration::days(i))
        .collect();
    let cells = (days.len() * pairs.len()) as u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut records = 0;
    let mut w = WriteSet::new();
    for (d, day) in days.iter().enumerate() {
        for (p, (from, to)) in pairs.iter().enumerate() {
            let i = (d * pairs.len() + p) as u64;
            let n = args.messages / cells + u64::from(i < args.messages % cells);
            let referrals = n / 2;
            let statuses = n * 35 / 100;
            let mut cell = PairDay::default();
            cell.messages.insert("referral".into(), referrals);
            cell.messages.insert("referral-status".into(), statuses);
            cell.messages
                .insert("case-summary".into(), n - referrals - statuses);
            for _ in 0..referrals {
                let column = OUTCOME_COLUMNS[rng.below(OUTCOME_COLUMNS.len() as u64) as usize];
                *cell.outcomes.entry(column.to_owned()).or_insert(0) += 1;
                cell.first_pull.add(60 + rng.below(3 * 86_400));
                if column != "no-answer" && column != "declined" {
                    cell.acceptance.add(rng.below(ACCEPTANCE_BANDS[4].1));
                }
                if column.starts_with("completed") {
                    cell.completion.add(86_400 + rng.below(90 * 86_400));
                }
            }
            w.put_pair_day(*day, from, to, &cell);
            records += 1;
        }
        store.apply(std::mem::take(&mut w))?;
    }
    store.sync()?;
    store.fold_all()?;
    store.sync()?;
    Ok((records, started.elapsed().as_secs_f64()))
}

fn quantiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(at(0.5)), ms(at(0.9)), ms(v[v.len() - 1]))
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.pairs == 0 || args.pairs > 45 || args.requests == 0 {
        bail!("--pairs must be 1 to 45 and --requests at least 1");
    }
    let plusgate = match &args.plusgate {
        Some(path) => Plusgate::at(path),
        None => Plusgate::in_target_dir().map_err(|e| anyhow!("{e} (or give --plusgate PATH)"))?,
    };
    let federation = Federation::create(plusgate, &["suwon", "gangseo"])?;
    let mut node = federation.start("suwon");
    node.stop();
    eprintln!(
        "stats-bench: writing a year of statistics for {} messages",
        args.messages
    );
    let (records, fill_s) = fill(&federation.data_dir("suwon"), &args)?;
    eprintln!("stats-bench: {records} day records in {fill_s:.1} s; starting the node");
    let started = Instant::now();
    node.restart();
    let start_s = started.elapsed().as_secs_f64();
    let agent = node.agent("suwon/manager", HttpVersion::Http1);
    let mut conn = agent.connect().await?;
    let questions = [
        (
            "year by month",
            "/v1/stats?from=2026-01-01&to=2026-12-31&by=month",
        ),
        (
            "year by week",
            "/v1/stats?from=2026-01-01&to=2026-12-31&by=week",
        ),
        (
            "year by day",
            "/v1/stats?from=2026-01-01&to=2026-12-31&by=day",
        ),
        ("no-op (/healthz)", "/healthz"),
    ];
    println!(
        "{} messages, {} pairs, {records} day records; node start {start_s:.2} s (records written in {fill_s:.1} s)",
        args.messages, args.pairs
    );
    println!("| question | p50 ms | p90 ms | max ms | answer bytes |");
    println!("|---|---|---|---|---|");
    for (name, path) in questions {
        let mut times = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for i in 0..args.requests + 3 {
            let t = Instant::now();
            let r = conn.send(Method::GET, path, None).await?;
            let took = t.elapsed();
            if r.status.as_u16() != 200 {
                bail!("{path}: {} {}", r.status, r.text());
            }
            if path.starts_with("/v1/stats") && i == 0 {
                let v: serde_json::Value = r.json()?;
                let total = v["messages"]["total"].as_u64().unwrap_or(0);
                if total != args.messages {
                    bail!(
                        "{path}: the answer counts {total} messages, not {}",
                        args.messages
                    );
                }
            }
            bytes = r.body.len();
            if i >= 3 {
                times.push(took);
            }
        }
        let (p50, p90, max) = quantiles(times);
        println!("| {name} | {p50:.1} | {p90:.1} | {max:.1} | {bytes} |");
    }
    // What another node gets when it merges the federation's: the year unsuppressed, signed.
    let peer = node.agent_as(
        Some(&federation.node_identity("gangseo")),
        HttpVersion::Http1,
    );
    let mut conn = peer.connect().await?;
    conn.set_body_max(usize::MAX);
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = conn
            .send(
                Method::GET,
                "/federation/v1/stats?from=2026-01-01&to=2026-12-31&by=month",
                None,
            )
            .await?;
        times.push(t.elapsed());
        if r.status.as_u16() != 200 {
            bail!("federation statistics: {} {}", r.status, r.text());
        }
        bytes = r.body.len();
    }
    let (p50, _, max) = quantiles(times);
    println!("| federation answer for another node (year by month, signed) | {p50:.1} | | {max:.1} | {bytes} |");
    if let Some(rss) = node.pid().and_then(rss_mib) {
        println!("node RSS after the questions: {rss:.0} MiB");
    }
    node.stop();
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plusgate-stats-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plusgate-stats-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
