//! The crash soak (`plusgate-soak`, and `tests/node/crash_soak.rs` in short): two nodes of
//! a development federation under load while node A or node B is SIGKILLed at random
//! moments, hundreds of times, then a check that every acknowledged message was delivered
//! exactly once and both audit chains verify. docs/crash-soak.md gives the method and the
//! precise meaning of "exactly once" here.
//!
//! - [`run`]: the whole soak for a [`SoakConfig`], returning a [`SoakReport`];
//! - `book`: what was pushed, acknowledged, pulled and delivered, and every violation;
//! - `load`: the pushers at A and the pullers at A and B;
//! - `killer`: the kills and restarts;
//! - `check`: the end (delivery, outboxes, inboxes, clean stop, audit verify);
//! - `rng`: the one seeded generator every random choice comes from.

mod book;
mod check;
mod killer;
mod load;
mod rng;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use plusgate::node::client::HttpVersion;
use serde::Serialize;

pub use book::{Route, RouteTally, Violation, ViolationKind};
pub use check::EndReport;
pub use killer::{KillPlan, KillReport};
pub use load::{PullReport, PushReport};
pub use rng::Rng;

use crate::api::try_register_consent;
use crate::federation::Federation;
use crate::process::Plusgate;
use book::Book;
use killer::Pair;
use load::{PullCounts, Puller, PushCounts, Pusher};

/// The two centers: A (senders, and the local recipient), then B (the remote recipient).
pub const CENTERS: [&str; 2] = ["suwon", "gangseo"];

/// The sending agency at A (the dev examples' sender).
const SENDER: &str = "suwon/employment";

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The executable the nodes run (and the CLI checks).
    pub plusgate: Plusgate,
    /// The seed every random choice comes from.
    pub seed: u64,
    /// The kills.
    pub plan: KillPlan,
    /// Pushers sending to the agency at A.
    pub pushers_local: usize,
    /// Pushers sending to the agency at B.
    pub pushers_remote: usize,
    /// Percent of pushes without an answer retried with the same id and body.
    pub retry_percent: u8,
    /// Percent of acknowledged pushes followed by a conflicting body under an earlier id.
    pub conflict_percent: u8,
    /// Each pusher's pause after each message (zero: as fast as the node answers).
    pub push_pause: Duration,
    /// Bound on the wait for every acknowledged push to be delivered after the last kill.
    pub drain_max: Duration,
    /// Keep the federation folder (nodes' logs and stores) afterwards.
    pub keep: bool,
}

/// The machine a soak ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// The CPU's model name (`/proc/cpuinfo`), if known.
    pub cpu: Option<String>,
    /// The kernel release, if known.
    pub kernel: Option<String>,
    /// The `plusgate` executable run.
    pub plusgate: String,
}

/// Everything a soak did and found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// No violation, and every planned kill happened.
    pub passed: bool,
    /// The seed (run again with `--seed` to repeat every random choice).
    pub seed: u64,
    /// The kills planned.
    pub plan: KillPlan,
    /// Pushers to the agency at A.
    pub pushers_local: usize,
    /// Pushers to the agency at B.
    pub pushers_remote: usize,
    /// Percent of unanswered pushes retried with the same id.
    pub retry_percent: u8,
    /// Percent of acknowledged pushes followed by a conflict probe.
    pub conflict_percent: u8,
    /// Each pusher's pause after each message, milliseconds.
    pub push_pause_ms: u64,
    /// The kills done.
    pub kills: KillReport,
    /// The pushes.
    pub pushes: PushReport,
    /// The pulls.
    pub pulls: PullReport,
    /// Messages for the agency at A.
    pub local: RouteTally,
    /// Messages for the agency at B (forwarded).
    pub remote: RouteTally,
    /// Pushes with a 202, both routes.
    pub acked: u64,
    /// Messages delivered (pulled and acknowledged), both routes.
    pub delivered: u64,
    /// Of those, deliveries whose acknowledgement went unanswered (the node was killed
    /// with it in flight) and that the node confirmed acknowledged at the end.
    pub acked_by_recheck: u64,
    /// Acknowledged deliveries that came back, or ids twice in one pull.
    pub duplicates: u64,
    /// Acknowledged pushes never delivered.
    pub lost: u64,
    /// Violations by kind.
    pub violations_by_kind: BTreeMap<ViolationKind, u64>,
    /// The first violations, in full.
    pub violations: Vec<Violation>,
    /// The end: drain, outboxes, clean stop, audit verify.
    pub end: EndReport,
    /// Wall-clock seconds, set-up to verdict.
    pub wall_s: f64,
    /// Where it ran.
    pub machine: Machine,
    /// The federation folder, when kept.
    pub federation_dir: Option<String>,
}

/// Runs the soak `config` describes (a multi-threaded tokio runtime is needed: the end
/// runs CLI commands on the runtime's threads). Violations are in the report; an error
/// means the soak could not be set up.
pub async fn run(config: &SoakConfig) -> anyhow::Result<SoakReport> {
    let started = Instant::now();
    let mut rng = Rng::new(config.seed);
    let killer_rng = rng.split();
    let mut federation =
        Federation::create(config.plusgate.clone(), &CENTERS).context("creating the federation")?;
    federation.set_keep(config.keep);
    eprintln!(
        "soak: seed {}, federation in {}",
        config.seed,
        federation.dir().display()
    );
    for center in CENTERS {
        // Quick retries (a restarted peer is back within a second), and the smallest
        // overlay, so kills land during folds of deferred writes as well.
        federation.set_option(center, "federation", "retry_initial_ms", "50");
        federation.set_option(center, "federation", "retry_max_ms", "1000");
        federation.set_option(center, "storage", "overlay_mb", "1");
    }
    // B first, so A's forwarder finds it up.
    let b = federation
        .spawn_node(CENTERS[1], "")
        .context("starting node B")?;
    let a = federation
        .spawn_node(CENTERS[0], "")
        .context("starting node A")?;
    for (collector, consent) in federation.example_consents(CENTERS[0]) {
        try_register_consent(&a.agent(&collector, HttpVersion::Http1), &consent)
            .await
            .context("registering the example consents at A")?;
    }

    let book = Arc::new(Book::default());
    let push_counts = Arc::new(PushCounts::default());
    let pull_counts = Arc::new(PullCounts::default());
    let stop_pushing = Arc::new(AtomicBool::new(false));
    let stop_pulling = Arc::new(AtomicBool::new(false));

    let local = federation.example("referral");
    let remote = federation.example("referral-remote");
    let recipient = |template: &serde_json::Value| -> anyhow::Result<String> {
        template["to"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("an example without \"to\""))
    };
    let (local_to, remote_to) = (recipient(&local)?, recipient(&remote)?);
    let version = |i: usize| {
        if i % 2 == 0 {
            HttpVersion::Http2
        } else {
            HttpVersion::Http1
        }
    };
    let mut pushers = Vec::new();
    for (route, count, template, tag) in [
        (Route::Local, config.pushers_local, &local, "l"),
        (Route::Remote, config.pushers_remote, &remote, "r"),
    ] {
        for i in 0..count {
            let pusher = Pusher {
                route,
                agent: a.agent(SENDER, version(i)),
                template: template.clone(),
                prefix: format!("soak-{tag}{i}"),
                rng: rng.split(),
                retry_percent: config.retry_percent,
                conflict_percent: config.conflict_percent,
                pause: config.push_pause,
            };
            pushers.push(tokio::spawn(pusher.run(
                Arc::clone(&book),
                Arc::clone(&push_counts),
                Arc::clone(&stop_pushing),
            )));
        }
    }
    let pullers = [
        Puller {
            route: Route::Local,
            agent: a.agent(&local_to, HttpVersion::Http2),
        },
        Puller {
            route: Route::Remote,
            agent: b.agent(&remote_to, HttpVersion::Http2),
        },
    ];
    let mut pulling = Vec::new();
    for puller in &pullers {
        let puller = Puller {
            route: puller.route,
            agent: puller.agent.clone(),
        };
        pulling.push(tokio::spawn(puller.run(
            Arc::clone(&book),
            Arc::clone(&pull_counts),
            Arc::clone(&stop_pulling),
        )));
    }

    eprintln!(
        "soak: {} kills, each {}–{} ms after the node is up, down {}–{} ms; {} pushers to \
         {local_to}, {} to {remote_to}, pausing {:?} after each message; {} % of restarts \
         killed again within {} ms of their spawn",
        config.plan.kills,
        config.plan.after_min_ms,
        config.plan.after_max_ms,
        config.plan.down_min_ms,
        config.plan.down_max_ms,
        config.pushers_local,
        config.pushers_remote,
        config.push_pause,
        config.plan.startup_percent,
        config.plan.startup_max_ms
    );
    let plan = config.plan;
    let killer_book = Arc::clone(&book);
    let (mut pair, kills) = tokio::task::spawn_blocking(move || {
        let progress = |k: &KillReport| {
            let tally = killer_book.tally();
            eprintln!(
                "soak: {} kills (A {}, B {}), {} acked, {} delivered, {} violations, {:.0} s",
                k.node_a + k.node_b,
                k.node_a,
                k.node_b,
                tally.acked(),
                tally.delivered(),
                tally.violations.values().sum::<u64>(),
                started.elapsed().as_secs_f64()
            );
        };
        killer::run(Pair { a, b }, plan, killer_rng, &killer_book, &progress)
    })
    .await
    .context("the killer thread")?;

    eprintln!("soak: kills done; stopping the pushers");
    stop_pushing.store(true, Ordering::Relaxed);
    for pusher in pushers {
        pusher.await.context("a pusher task")?;
    }
    eprintln!("soak: waiting for every acknowledged push to be delivered");
    let mut end = EndReport::default();
    (end.drained, end.drain_s) = check::wait_for_delivery(&book, &mut pair, config.drain_max).await;
    let cli = check::Cli {
        plusgate: &config.plusgate,
        dir: federation.dir(),
        configs: CENTERS.map(|c| federation.config_path(c)),
    };
    tokio::task::block_in_place(|| check::check_outboxes(&cli, &book, &mut end));
    stop_pulling.store(true, Ordering::Relaxed);
    for puller in pulling {
        puller.await.context("a puller task")?;
    }
    check::drain_and_count_lost(&book, &pullers, &pull_counts, &mut end).await;
    eprintln!("soak: stopping both nodes and verifying their audit chains");
    tokio::task::block_in_place(|| check::stop_and_verify(&cli, pair, &book, &mut end));

    let tally = book.tally();
    let violations = book.violations();
    Ok(SoakReport {
        passed: tally.violations.is_empty() && !kills.stopped_early,
        seed: config.seed,
        plan: config.plan,
        pushers_local: config.pushers_local,
        pushers_remote: config.pushers_remote,
        retry_percent: config.retry_percent,
        conflict_percent: config.conflict_percent,
        push_pause_ms: u64::try_from(config.push_pause.as_millis()).unwrap_or(u64::MAX),
        pushes: push_counts.report(),
        pulls: pull_counts.report(),
        local: tally.local,
        remote: tally.remote,
        acked: tally.acked(),
        delivered: tally.delivered(),
        acked_by_recheck: tally.acked_by_recheck,
        duplicates: tally.count(ViolationKind::Duplicate),
        lost: end.lost_local + end.lost_remote,
        violations_by_kind: tally.violations,
        violations,
        end,
        kills,
        wall_s: started.elapsed().as_secs_f64(),
        machine: machine(&config.plusgate),
        federation_dir: config.keep.then(|| federation.dir().display().to_string()),
    })
}

impl SoakReport {
    /// The human summary: what ran, what happened, the verdict.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(s, "crash soak {verdict} (seed {})", self.seed);
        let _ = writeln!(
            s,
            "  kills: {} of {} (node A {}, node B {}) and {} more during start-up ({} before \
             listening), restart mean {:.0} ms, max {:.0} ms",
            self.kills.node_a + self.kills.node_b,
            self.plan.kills,
            self.kills.node_a,
            self.kills.node_b,
            self.kills.startup_kills,
            self.kills.startup_kills_before_listening,
            self.kills.restart_mean_ms,
            self.kills.restart_max_ms
        );
        let _ = writeln!(
            s,
            "  pushes: {} ids tried, {} requests, {} acked (local {}, remote {}), {} without an \
             answer, {} ids retried with the same id ({} then acked), {} abandoned, {} busy",
            self.local.pushed_ids + self.remote.pushed_ids,
            self.pushes.requests,
            self.acked,
            self.local.acked,
            self.remote.acked,
            self.pushes.transport_errors,
            self.pushes.retried_ids,
            self.pushes.acked_on_retry,
            self.pushes.abandoned_ids,
            self.pushes.busy
        );
        let _ = writeln!(
            s,
            "  conflicting bodies under acked ids: {} sent, {} refused with 409",
            self.pushes.conflict_probes, self.pushes.conflicts_refused
        );
        let _ = writeln!(
            s,
            "  delivered: {} (local {}, remote {}; {} found acknowledged at the end after an \
             unanswered ack); of those never acked to the pusher: {}; pulled again before \
             their ack: {}",
            self.delivered,
            self.local.delivered,
            self.remote.delivered,
            self.acked_by_recheck,
            self.local.delivered_unacked + self.remote.delivered_unacked,
            self.local.pulled_again + self.remote.pulled_again
        );
        let count = |kind| self.violations_by_kind.get(&kind).copied().unwrap_or(0);
        let other = self.violations_by_kind.values().sum::<u64>()
            - count(ViolationKind::Duplicate)
            - count(ViolationKind::Lost);
        let _ = writeln!(
            s,
            "  duplicates: {}, lost: {}, other violations: {other}",
            self.duplicates, self.lost
        );
        let _ = writeln!(
            s,
            "  end: drained {} in {:.1} s, outbox queued {}, dead-lettered {}, inboxes empty {}, \
             stops {:?}, audit verify A: {}, B: {}",
            self.end.drained,
            self.end.drain_s,
            self.end.outbox_queued,
            self.end.dead_lettered,
            self.end.inboxes_empty,
            self.end.node_exits,
            self.end.audit[0],
            self.end.audit[1]
        );
        let _ = writeln!(s, "  wall time: {:.0} s", self.wall_s);
        for v in &self.violations {
            let _ = writeln!(s, "  VIOLATION {:?}: {}", v.kind, v.detail);
        }
        s
    }
}

/// What can be found out about this machine.
fn machine(plusgate: &Plusgate) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_owned());
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu,
        kernel,
        plusgate: plusgate.path().display().to_string(),
    }
}
