//! `plusgate-hostile`: hostile clients against a node of a dev federation while a
//! well-behaved client measures its latency. It starts a node of the `plusgate` next to
//! its own executable (or `--plusgate PATH`), measures the good client's baseline, then
//! runs each attack (`harness::hostile`) in a loop for `--duration-s` while the good client
//! runs again; it prints what each attack got, whether that is what a hardened node
//! answers, the good client's p50/p99 during the attack and its p99 over the baseline, and
//! exits non-zero if any attack got an unexpected answer, left the node unhealthy or
//! slowed the good client's p99 to twice its baseline or more.
//!
//! Each attack connects from a loopback address of its own ([`attacker_address`]) and, by
//! default, runs on CPUs of its own (`cpus`), as it would from its own machine.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use clap::Parser;
use harness::hostile::{self, Got, Outcome, Target, TargetLimits};
use harness::{Federation, Node, Plusgate};
use plusgate::node::client::HttpVersion;
use tokio::task::JoinSet;

mod cpus;
mod health;
mod load;
mod report;

use report::{AttackReport, Report};

/// The center the node runs.
const CENTER: &str = "suwon";
/// The attacker: an agency of the node other than the good client's.
const ATTACKER: &str = "suwon/saeil";
/// The source address of the `i`th attack: 127.0.0.10 upwards, one attacker machine per
/// attack, so that one attack's use of its address's handshake rate does not decide what
/// the next one gets. The good client connects from 127.0.0.1.
fn attacker_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, u8::try_from(10 + i % 240).unwrap_or(10))
}

/// The node's limits for the run: the defaults, except the idle and body read timeouts
/// and the longest long poll, lowered so that each slow attack's round (which lasts until
/// the node gives up) fits a measurement of a few tens of seconds. The per-address
/// handshake rate is written out because the harness turns it off for its clients.
const LIMITS: &[(&str, u64)] = &[
    (
        "handshakes_per_address_per_s",
        plusgate::config::HANDSHAKES_PER_ADDRESS_PER_S_DEFAULT as u64,
    ),
    (
        "handshakes_per_address_burst",
        plusgate::config::HANDSHAKES_PER_ADDRESS_BURST_DEFAULT as u64,
    ),
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
    /// A `[limits]` key of the node, `KEY=VALUE` (repeatable; over the tool's own, e.g.
    /// `handshakes_per_address_per_s=0` to measure without the per-address rate).
    #[arg(long = "limit", value_parser = parse_limit)]
    limits: Vec<(String, u64)>,
    /// CPUs of the node and the good client (e.g. `0`, `0-1`); default: CPU 0.
    #[arg(long, requires = "attacker_cpus")]
    node_cpus: Option<String>,
    /// CPUs of the attackers; default: every CPU but the first.
    #[arg(long, requires = "node_cpus")]
    attacker_cpus: Option<String>,
    /// Run the node, the good client and the attackers on every CPU, sharing them.
    #[arg(long, conflicts_with_all = ["node_cpus", "attacker_cpus"])]
    shared_cpus: bool,
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
    let placement = match (&args.node_cpus, &args.attacker_cpus) {
        _ if args.shared_cpus => cpus::Placement::default(),
        (Some(node), Some(attackers)) => match cpus::Placement::given(node, attackers) {
            Ok(p) => p,
            Err(e) => return fail(&format!("{e:#}")),
        },
        _ => cpus::Placement::split(),
    };
    // The attackers' runtime: this thread and every worker on the attackers' CPUs.
    if let Err(e) = cpus::pin_this_thread(&placement.attackers) {
        return fail(&format!(
            "cannot pin to CPUs {:?}: {e}",
            placement.attackers
        ));
    }
    let attackers = placement.attackers.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || {
            if let Err(e) = cpus::pin_this_thread(&attackers) {
                eprintln!("plusgate-hostile: cannot pin a worker: {e}");
            }
        })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(&args, placement)) {
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
                eprintln!(
                    "plusgate-hostile: some attacks got an unexpected outcome or slowed the \
                     good client's p99 to twice its baseline or more"
                );
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
async fn run(args: &Args, placement: cpus::Placement) -> anyhow::Result<Report> {
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
    let mut limits: Vec<(String, u64)> =
        LIMITS.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    for (key, value) in &args.limits {
        limits.retain(|(k, _)| k != key);
        limits.push((key.clone(), *value));
    }
    for (key, value) in &limits {
        fed.set_option(CENTER, "limits", key, &value.to_string());
    }
    let mut node = fed.spawn_node(CENTER, "").context("starting the node")?;
    let pid = node
        .pid()
        .ok_or_else(|| anyhow!("the node exited at once"))?;
    cpus::pin_process(pid, &placement.node)?;
    eprintln!(
        "node on CPUs {:?}, attackers on {:?}, each attack from its own address from {}",
        placement.node,
        placement.attackers,
        attacker_address(0)
    );
    fed.register_example_consents(&node, CENTER);
    let target = target(&fed, &node, &limits)?;
    let good = load::GoodClient {
        sender: node.agent("suwon/employment", HttpVersion::Http2),
        recipient: node.agent("suwon/welfare", HttpVersion::Http1),
        referral: fed.referral("hostile-warmup"),
        cpus: placement.node.clone(),
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
    for (i, name) in names.into_iter().enumerate() {
        let target = Target {
            source: attacker_address(i),
            ..target.clone()
        };
        eprintln!("attack {name}");
        let report = attack(name, &target, &good, &mut node, args, &baseline, &resting).await;
        eprintln!("  {}", report.summary());
        attacks.push(report);
    }
    Ok(Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rate: args.rate,
        duration_s: duration.as_secs(),
        limits,
        cpus: placement,
        baseline,
        attacks,
    })
}

/// `KEY=VALUE` of `--limit`.
fn parse_limit(text: &str) -> Result<(String, u64), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    let value = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a whole number"))?;
    Ok((key.trim().to_owned(), value))
}

/// The target of the attacks: the node, the attacker's and the good client's certificates,
/// the node's limits.
fn target(fed: &Federation, node: &Node, limits: &[(String, u64)]) -> anyhow::Result<Target> {
    let limit = |key: &str, default: u64| {
        limits
            .iter()
            .find(|(k, _)| k == key)
            .map_or(default, |(_, v)| *v)
    };
    let ms = |key: &str, default: u64| Duration::from_millis(limit(key, default));
    use plusgate::config as l;
    Ok(Target {
        addr: node.addr(),
        source: attacker_address(0),
        ca: fed.manifest().ca_path(),
        other: fed.identity(ATTACKER),
        same: fed.identity("suwon/employment"),
        limits: TargetLimits {
            body_bytes_max: 1 << 20,
            handshake_timeout: ms("handshake_timeout_ms", l::HANDSHAKE_TIMEOUT_MS_DEFAULT),
            header_read_timeout: ms("header_read_timeout_ms", l::HEADER_READ_TIMEOUT_MS_DEFAULT),
            body_read_timeout: ms("body_read_timeout_ms", l::BODY_READ_TIMEOUT_MS_DEFAULT),
            idle_timeout: ms("idle_timeout_ms", l::IDLE_TIMEOUT_MS_DEFAULT),
            inbox_wait_max: Duration::from_secs(limit("inbox_wait_s_max", 30)),
            handshakes_max: usize::try_from(limit(
                "handshakes_max",
                l::HANDSHAKES_MAX_DEFAULT as u64,
            ))?,
            connections_per_identity_max: usize::try_from(limit(
                "connections_per_identity_max",
                l::CONNECTIONS_PER_IDENTITY_MAX_DEFAULT as u64,
            ))?,
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
            let mut rounds = Rounds::default();
            loop {
                match hostile::round(name, &target).await {
                    Ok(outcomes) => rounds.add(outcomes),
                    Err(e) => return (rounds, Some(e.to_string())),
                }
                if started.elapsed() >= duration {
                    return (rounds, None);
                }
            }
        });
    }
    let during = load::run_apart(good, args.rate, duration, name).await;
    let (mut rounds, mut turned_away) = (0, 0);
    let mut outcomes = Vec::new();
    let mut error = None;
    while let Some(joined) = loops.join_next().await {
        let Ok((loop_rounds, e)) = joined else {
            continue;
        };
        rounds += loop_rounds.n;
        turned_away += loop_rounds.turned_away;
        error = error.or(e);
        // A loop that ever got a wrong answer reports that round, not its first.
        if let Some(shown) = loop_rounds.shown() {
            if outcomes.is_empty() || shown.iter().any(|o| !o.ok) {
                outcomes = shown;
            }
        }
    }
    let attack_s = started.elapsed().as_secs_f64();
    let health = health::check(node, target, resting).await;
    AttackReport::new(
        name,
        target.source,
        (rounds, turned_away),
        attack_s,
        outcomes,
        error,
        during,
        baseline,
        health,
    )
}

/// What one loop of an attack got over its rounds.
#[derive(Debug, Default)]
struct Rounds {
    n: usize,
    /// Rounds whose every variant was closed before its TLS handshake.
    turned_away: usize,
    /// The first round of which no variant was turned away.
    first: Option<Vec<Outcome>>,
    /// The first round of which some variants were turned away.
    partial: Option<Vec<Outcome>>,
    /// The first round with a wrong answer.
    bad: Option<Vec<Outcome>>,
}

impl Rounds {
    fn add(&mut self, mut outcomes: Vec<Outcome>) {
        self.n += 1;
        if outcomes.iter().all(|o| o.got == Got::TurnedAway) {
            self.turned_away += 1;
            return;
        }
        // A variant turned away at the door is refused, as a hardened node may; the
        // others of the round are judged as usual.
        let mut any_turned_away = false;
        for o in &mut outcomes {
            if o.got == Got::TurnedAway {
                o.ok = true;
                any_turned_away = true;
            }
        }
        if self.bad.is_none() && outcomes.iter().any(|o| !o.ok) {
            self.bad = Some(outcomes.clone());
        }
        if any_turned_away {
            self.partial.get_or_insert(outcomes);
        } else {
            self.first.get_or_insert(outcomes);
        }
    }

    /// The round to report: a wrong one, else the first that got through whole, else one
    /// that got through in part.
    fn shown(self) -> Option<Vec<Outcome>> {
        self.bad.or(self.first).or(self.partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::hostile::Expect;

    fn outcome(got: Got) -> Outcome {
        Outcome::judged("h1 other", got, &Expect::Problem(400, "bad-request"))
    }

    fn answered() -> Got {
        Got::Answer {
            status: 400,
            problem: Some("bad-request".into()),
        }
    }

    #[test]
    fn rounds_turned_away_are_counted_and_the_round_shown_got_through() {
        let mut rounds = Rounds::default();
        rounds.add(vec![outcome(Got::TurnedAway), outcome(Got::TurnedAway)]);
        rounds.add(vec![outcome(answered()), outcome(Got::TurnedAway)]);
        rounds.add(vec![outcome(answered()), outcome(answered())]);
        assert_eq!((rounds.n, rounds.turned_away), (3, 1));
        let shown = rounds.shown().expect("a round to show");
        assert!(shown.iter().all(|o| o.ok && o.got == answered()));
    }

    #[test]
    fn a_wrong_answer_is_shown_whatever_else_came() {
        let mut rounds = Rounds::default();
        rounds.add(vec![outcome(answered())]);
        rounds.add(vec![outcome(Got::Answer {
            status: 500,
            problem: None,
        })]);
        let shown = rounds.shown().expect("a round to show");
        assert!(!shown[0].ok);
    }

    #[test]
    fn a_round_turned_away_in_part_counts_as_refused_there() {
        let mut rounds = Rounds::default();
        rounds.add(vec![outcome(answered()), outcome(Got::TurnedAway)]);
        let shown = rounds.shown().expect("a round to show");
        assert!(shown.iter().all(|o| o.ok));
    }
}
