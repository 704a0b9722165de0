//! `plusgate-hostile`: hostile clients against a node of a dev federation while a
//! well-behaved client measures its latency. It starts a node of the `plusgate` next to
//! its own executable (or `--plusgate PATH`), measures the good client's baseline, then
//! runs each attack (`harness::hostile`) in a loop for `--duration-s` while the good client
//! runs again; it prints what each attack got, whether that is what a hardened node
//! answers, the good client's p50/p99 during the attack and its p99 over the baseline, and
//! exits non-zero if any attack got an unexpected answer or left the node unhealthy.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use clap::Parser;
use harness::hostile::{self, Outcome, Target, TargetLimits};
use harness::{Federation, Node, Plusgate};
use plusgate::node::client::HttpVersion;
use tokio::task::JoinSet;

mod health;
mod load;
mod report;

use report::{AttackReport, Report};

/// The center the node runs.
const CENTER: &str = "suwon";
/// The attacker: an agency of the node other than the good client's.
const ATTACKER: &str = "suwon/saeil";

/// The node's timeouts for the run: the defaults, except the idle and body read timeouts
/// and the longest long poll, lowered so that each slow attack's round (which lasts until
/// the node gives up) fits a measurement of a few tens of seconds.
const LIMITS: &[(&str, u64)] = &[
    ("idle_timeout_ms", 15_000),
    ("body_read_timeout_ms", 10_000),
    ("header_read_timeout_ms", 10_000),
    ("inbox_wait_s_max", 5),
];

#[derive(Debug, Parser)]
#[command(
    name = "plusgate-hostile",
    about = "Hostile clients against a plusgate node"
)]
struct Args {
    /// An attack to run (repeatable); default: all.
    #[arg(long = "attack")]
    attacks: Vec<String>,
    /// Seconds the good client runs, for the baseline and during each attack.
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// The good client's pushes per second (open loop).
    #[arg(long, default_value_t = 150)]
    rate: u32,
    /// The `plusgate` executable (default: the one next to this executable).
    #[arg(long)]
    plusgate: Option<std::path::PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// List the attacks and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for a in hostile::ATTACKS {
            println!("{:28} {}", a.name, a.what);
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return fail(&e.to_string()),
                }
            } else {
                print!("{}", report.to_text());
            }
            if report.all_ok() {
                ExitCode::SUCCESS
            } else {
                eprintln!("plusgate-hostile: some attacks got an unexpected outcome");
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("plusgate-hostile: {message}");
    ExitCode::FAILURE
}

/// Starts the node, measures the baseline, runs the attacks.
async fn run(args: &Args) -> anyhow::Result<Report> {
    let names: Vec<&'static str> = if args.attacks.is_empty() {
        hostile::ATTACKS.iter().map(|a| a.name).collect()
    } else {
        args.attacks
            .iter()
            .map(|name| {
                hostile::attack(name)
                    .map(|a| a.name)
                    .ok_or_else(|| anyhow!("no attack named `{name}` (see --list)"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let plusgate = match &args.plusgate {
        Some(path) => Plusgate::at(path),
        None => Plusgate::in_target_dir().map_err(|e| anyhow!("{e} (or give --plusgate PATH)"))?,
    };
    let fed = Federation::create(plusgate, &[CENTER]).context("creating the federation")?;
    for (key, value) in LIMITS {
        fed.set_option(CENTER, "limits", key, &value.to_string());
    }
    let mut node = fed.spawn_node(CENTER, "").context("starting the node")?;
    fed.register_example_consents(&node, CENTER);
    let target = target(&fed, &node)?;
    let good = load::GoodClient {
        sender: node.agent("suwon/employment", HttpVersion::Http2),
        recipient: node.agent("suwon/welfare", HttpVersion::Http1),
        referral: fed.referral("hostile-warmup"),
    };
    let duration = Duration::from_secs(args.duration_s.max(1));
    eprintln!("warming up ({} s)", duration.as_secs().min(5));
    load::run_apart(
        &good,
        args.rate,
        duration.min(Duration::from_secs(5)),
        "warmup",
    )
    .await;
    eprintln!(
        "baseline: {} pushes/s for {} s",
        args.rate,
        duration.as_secs()
    );
    let baseline = load::run_apart(&good, args.rate, duration, "baseline").await;
    eprintln!(
        "baseline: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        baseline.p50_ms, baseline.p99_ms, baseline.max_ms
    );
    let resting = health::Resources::of(&node);
    let mut attacks = Vec::new();
    for name in names {
        eprintln!("attack {name}");
        let report = attack(name, &target, &good, &mut node, args, &baseline, &resting).await;
        eprintln!("  {}", report.summary());
        attacks.push(report);
    }
    Ok(Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rate: args.rate,
        duration_s: duration.as_secs(),
        limits: LIMITS.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        baseline,
        attacks,
    })
}

/// The target of the attacks: the node, the attacker's and the good client's certificates,
/// the node's limits.
fn target(fed: &Federation, node: &Node) -> anyhow::Result<Target> {
    let limit = |key: &str, default: u64| {
        LIMITS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(default, |(_, v)| *v)
    };
    use plusgate::config as l;
    Ok(Target {
        addr: node.addr(),
        ca: fed.manifest().ca_path(),
        other: fed.identity(ATTACKER),
        same: fed.identity("suwon/employment"),
        limits: TargetLimits {
            body_bytes_max: 1 << 20,
            handshake_timeout: Duration::from_millis(limit(
                "handshake_timeout_ms",
                l::HANDSHAKE_TIMEOUT_MS_DEFAULT,
            )),
            header_read_timeout: Duration::from_millis(limit(
                "header_read_timeout_ms",
                l::HEADER_READ_TIMEOUT_MS_DEFAULT,
            )),
            body_read_timeout: Duration::from_millis(limit(
                "body_read_timeout_ms",
                l::BODY_READ_TIMEOUT_MS_DEFAULT,
            )),
            idle_timeout: Duration::from_millis(limit(
                "idle_timeout_ms",
                l::IDLE_TIMEOUT_MS_DEFAULT,
            )),
            inbox_wait_max: Duration::from_secs(limit("inbox_wait_s_max", 30)),
            handshakes_max: l::HANDSHAKES_MAX_DEFAULT,
            connections_per_identity_max: l::CONNECTIONS_PER_IDENTITY_MAX_DEFAULT,
        },
    })
}

/// Runs attack `name` in `copies` loops for the duration while the good client runs, then
/// checks the node.
async fn attack(
    name: &'static str,
    target: &Target,
    good: &load::GoodClient,
    node: &mut Node,
    args: &Args,
    baseline: &load::Latency,
    resting: &health::Resources,
) -> AttackReport {
    let spec = hostile::attack(name).copied();
    let copies = spec.map_or(1, |a| a.copies);
    let duration = Duration::from_secs(args.duration_s.max(1));
    let started = Instant::now();
    let mut loops = JoinSet::new();
    for _ in 0..copies {
        let target = target.clone();
        loops.spawn(async move {
            let mut rounds = 0usize;
            let mut first: Option<Vec<Outcome>> = None;
            let mut bad: Option<Vec<Outcome>> = None;
            loop {
                match hostile::round(name, &target).await {
                    Ok(outcomes) => {
                        rounds += 1;
                        if bad.is_none() && outcomes.iter().any(|o| !o.ok) {
                            bad = Some(outcomes.clone());
                        }
                        first.get_or_insert(outcomes);
                    }
                    Err(e) => return (rounds, first, Some(e.to_string()), bad),
                }
                if started.elapsed() >= duration {
                    return (rounds, first, None, bad);
                }
            }
        });
    }
    let during = load::run_apart(good, args.rate, duration, name).await;
    let mut rounds = 0;
    let mut outcomes = Vec::new();
    let mut error = None;
    while let Some(joined) = loops.join_next().await {
        let Ok((n, first, e, bad)) = joined else {
            continue;
        };
        rounds += n;
        error = error.or(e);
        // A loop that ever got a wrong answer reports that round, not its first.
        if let Some(shown) = bad.or(first) {
            if outcomes.is_empty() || shown.iter().any(|o| !o.ok) {
                outcomes = shown;
            }
        }
    }
    let attack_s = started.elapsed().as_secs_f64();
    let health = health::check(node, target, resting).await;
    AttackReport::new(
        name, rounds, attack_s, outcomes, error, during, baseline, health,
    )
}
