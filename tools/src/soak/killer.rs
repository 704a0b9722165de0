//! The killer: at a random moment after a node is up, SIGKILL node A or node B (a fair
//! coin), keep it down a random while, restart it on the same data directory and wait for
//! its listening line; again, `kills` times. Some of the time (`startup_percent`) the first
//! restart is itself SIGKILLed a random moment after its spawn, during start-up (store
//! open, journal replay, catch-up), before the restart that is waited for. It runs on a
//! thread of its own (stopping and starting processes blocks) with its own generator split
//! off the run's seed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::book::{Book, ViolationKind};
use super::rng::Rng;
use crate::node::Node;

/// Longest a killed node may take to print its listening line again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// Node log lines quoted when a node does not come back.
const LOG_TAIL_LINES: usize = 30;

/// Both nodes: A (the senders' center, with the local recipient) and B (the remote
/// recipient's center).
pub(super) struct Pair {
    /// Node A.
    pub(super) a: Node,
    /// Node B.
    pub(super) b: Node,
}

/// When and how long.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KillPlan {
    /// Kills in all.
    pub kills: u32,
    /// A kill lands uniformly between this many milliseconds after the node came up…
    pub after_min_ms: u64,
    /// …and this many.
    pub after_max_ms: u64,
    /// A killed node stays down at least this many milliseconds…
    pub down_min_ms: u64,
    /// …and at most this many.
    pub down_max_ms: u64,
    /// Percent of kills followed by a second kill during the restart's start-up.
    pub startup_percent: u8,
    /// That second kill lands uniformly within this many milliseconds of the spawn.
    pub startup_max_ms: u64,
}

/// What the killer did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KillReport {
    /// Kills of node A.
    pub node_a: u32,
    /// Kills of node B.
    pub node_b: u32,
    /// Restarts that came up (listening) again.
    pub restarts: u32,
    /// Extra kills during a restart's start-up.
    pub startup_kills: u32,
    /// Of those, kills that landed before the node was listening.
    pub startup_kills_before_listening: u32,
    /// Mean time from spawn to listening over the restarts, milliseconds.
    pub restart_mean_ms: f64,
    /// Longest such time, milliseconds.
    pub restart_max_ms: f64,
    /// The killer stopped early: a node did not come back, or exited by itself.
    pub stopped_early: bool,
}

/// Something to print every few kills (the caller's progress line).
pub(super) type Progress<'a> = &'a (dyn Fn(&KillReport) + Sync);

/// Kills and restarts as `plan` says; returns the nodes (both running, unless it stopped
/// early) and what it did.
pub(super) fn run(
    mut pair: Pair,
    plan: KillPlan,
    mut rng: Rng,
    book: &Arc<Book>,
    progress: Progress<'_>,
) -> (Pair, KillReport) {
    let mut report = KillReport::default();
    let mut restart_total = Duration::ZERO;
    for kill in 1..=plan.kills {
        let wait = rng.between(plan.after_min_ms, plan.after_max_ms);
        std::thread::sleep(Duration::from_millis(wait));
        if let Some(detail) = exited_by_itself(&mut pair) {
            book.violate(ViolationKind::NodeDown, detail);
            report.stopped_early = true;
            break;
        }
        let hit_a = rng.percent(50);
        let (node, name) = if hit_a {
            report.node_a += 1;
            (&mut pair.a, "A")
        } else {
            report.node_b += 1;
            (&mut pair.b, "B")
        };
        node.kill_hard();
        let down = rng.between(plan.down_min_ms, plan.down_max_ms);
        std::thread::sleep(Duration::from_millis(down));
        if rng.percent(plan.startup_percent) {
            let after = Duration::from_millis(rng.between(0, plan.startup_max_ms));
            report.startup_kills += 1;
            match node.start_and_kill_after(after) {
                Ok(listening) => report.startup_kills_before_listening += u32::from(!listening),
                Err(e) => {
                    book.violate(
                        ViolationKind::NodeDown,
                        format!("node {name} failed during start-up after kill {kill}: {e}"),
                    );
                    report.stopped_early = true;
                    break;
                }
            }
        }
        let started = Instant::now();
        if let Err(e) = node.try_restart_within(RESTART_TIMEOUT) {
            book.violate(
                ViolationKind::NodeDown,
                format!(
                    "node {name} did not come back after kill {kill}: {e}\n{}",
                    node.log_tail(LOG_TAIL_LINES)
                ),
            );
            report.stopped_early = true;
            break;
        }
        let took = started.elapsed();
        restart_total += took;
        report.restarts += 1;
        report.restart_max_ms = report.restart_max_ms.max(took.as_secs_f64() * 1e3);
        report.restart_mean_ms = restart_total.as_secs_f64() * 1e3 / f64::from(report.restarts);
        if kill % 10 == 0 {
            progress(&report);
        }
    }
    (pair, report)
}

/// Says which node ended without being killed, if one did.
pub(super) fn exited_by_itself(pair: &mut Pair) -> Option<String> {
    for (name, node) in [("A", &mut pair.a), ("B", &mut pair.b)] {
        match node.exited() {
            Ok(None) => {}
            Ok(Some(status)) => {
                return Some(format!(
                    "node {name} exited by itself ({status})\n{}",
                    node.log_tail(LOG_TAIL_LINES)
                ))
            }
            Err(e) => return Some(format!("node {name}: {e}")),
        }
    }
    None
}
