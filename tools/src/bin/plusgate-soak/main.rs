//! `plusgate-soak`: the crash soak. Creates a two-center development federation, puts
//! both nodes under load (pushers at A sending to an agency at A and to one at B, a puller
//! at each recipient that pulls and acknowledges), SIGKILLs node A or node B at random
//! moments `--kills` times, restarting each on its data directory, and then checks that
//! every push answered with 202 was delivered exactly once, that nothing else arrived, that
//! the outboxes are empty and that `plusgate audit verify` passes for both nodes.
//!
//! Every random choice comes from `--seed` (printed at the start, and in the result), so a
//! run can be repeated. Progress goes to stderr; the result to stdout (a summary, or one
//! JSON object with `--json`). Exit 0: passed; 1: a violation (named in the output); 2: the
//! soak could not be set up. The method is in docs/crash-soak.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::Parser;
use harness::soak::{self, KillPlan, SoakConfig};
use harness::Plusgate;

/// SIGKILLs two plusgate nodes at random moments under load, then checks exactly-once
/// delivery and both audit chains.
#[derive(Debug, Parser)]
#[command(name = "plusgate-soak")]
struct Args {
    /// Kills in all (node A or B, a fair coin each time).
    #[arg(long, default_value_t = 100)]
    kills: u32,
    /// Seed of every random choice (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Earliest kill after a node is up, milliseconds.
    #[arg(long, default_value_t = 50)]
    kill_after_min_ms: u64,
    /// Latest kill after a node is up, milliseconds.
    #[arg(long, default_value_t = 2000)]
    kill_after_max_ms: u64,
    /// Longest a killed node stays down before its restart, milliseconds (at least 0).
    #[arg(long, default_value_t = 300)]
    down_max_ms: u64,
    /// Percent of kills after which the restart is itself SIGKILLed during its start-up,
    /// before the restart that is waited for.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    startup_kill_percent: u8,
    /// Latest moment of such a start-up kill after the spawn, milliseconds.
    #[arg(long, default_value_t = 300)]
    startup_kill_max_ms: u64,
    /// Pushers sending to the agency at node A.
    #[arg(long, default_value_t = 3)]
    pushers_local: usize,
    /// Pushers sending to the agency at node B (through A's outbox).
    #[arg(long, default_value_t = 3)]
    pushers_remote: usize,
    /// Each pusher's pause after each message, milliseconds (0: as fast as the node
    /// answers; a pause bounds how fast the stores grow in a long run).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Percent of pushes without an answer retried with the same id and body.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    retry_percent: u8,
    /// Percent of acknowledged pushes followed by a different body under an earlier
    /// acknowledged id (which must be refused with 409).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=100))]
    conflict_percent: u8,
    /// Bound on the wait for every acknowledged push to be delivered after the last kill,
    /// seconds.
    #[arg(long, default_value_t = 180)]
    drain_max_s: u64,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Keep the federation folder (node logs and stores) and print where it is.
    #[arg(long)]
    keep: bool,
    /// The `plusgate` executable (default: the one next to this tool).
    #[arg(long)]
    plusgate: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plusgate = match &args.plusgate {
        Some(path) => Ok(Plusgate::at(path)),
        None => Plusgate::in_target_dir().map_err(|e| anyhow!("{e} (or give --plusgate PATH)")),
    };
    let result = plusgate.and_then(|plusgate| {
        let config = SoakConfig {
            plusgate,
            seed: args.seed.unwrap_or_else(clock_seed),
            plan: KillPlan {
                kills: args.kills,
                after_min_ms: args.kill_after_min_ms,
                after_max_ms: args.kill_after_max_ms,
                down_min_ms: 0,
                down_max_ms: args.down_max_ms,
                startup_percent: args.startup_kill_percent,
                startup_max_ms: args.startup_kill_max_ms,
            },
            pushers_local: args.pushers_local,
            pushers_remote: args.pushers_remote,
            retry_percent: args.retry_percent,
            conflict_percent: args.conflict_percent,
            push_pause: Duration::from_millis(args.pause_ms),
            drain_max: Duration::from_secs(args.drain_max_s),
            keep: args.keep,
        };
        eprintln!(
            "plusgate-soak: seed {} (repeat with --seed {})",
            config.seed, config.seed
        );
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow!("starting the runtime: {e}"))?
            .block_on(soak::run(&config))
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("plusgate-soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        eprint!("{}", report.summary());
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("plusgate-soak: writing the result: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.summary());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A seed from the clock and the process id, for runs without `--seed`.
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Keep it short enough to type: 48 bits.
    (u64::try_from(nanos % (1 << 48)).unwrap_or(0) ^ u64::from(std::process::id()))
        & ((1 << 48) - 1)
}
