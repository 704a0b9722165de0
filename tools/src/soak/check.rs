//! The end of a soak: with the killer done, wait (bounded) until every acknowledged push
//! has been delivered, look at both nodes' outboxes through `plusgate outbox list`, drain
//! both inboxes, stop both nodes with SIGTERM and run `plusgate audit verify` on each.
//! Whatever fails is a violation in the books; nothing here ends the run early.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::book::{Book, Route, ViolationKind};
use super::killer::{exited_by_itself, Pair};
use super::load::{PullCounts, Puller};
use crate::process::{wait_with_timeout, Plusgate};

/// Bound on one `plusgate outbox list` or `audit verify`.
const CLI_TIMEOUT: Duration = Duration::from_secs(300);

/// Bound on the outboxes emptying once everything acknowledged was delivered (the
/// sender's node drops an outbox entry when B's receipt arrives, a little later).
const OUTBOX_EMPTY_TIME_MAX: Duration = Duration::from_secs(60);

/// Failed pull rounds in a row after which the final drain of an inbox gives up.
const DRAIN_FAILURES_MAX: u32 = 200;

/// Acknowledged ids quoted per route when some were never delivered.
const LOST_QUOTED_MAX: usize = 10;

/// How the end went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndReport {
    /// Every acknowledged push was delivered within the bound.
    pub drained: bool,
    /// Seconds the wait for delivery took.
    pub drain_s: f64,
    /// Acknowledged pushes never delivered (lost), by route.
    pub lost_local: u64,
    /// …for the agency at B.
    pub lost_remote: u64,
    /// Both inboxes were pulled empty at the end.
    pub inboxes_empty: bool,
    /// Messages still waiting in A's outbox at the end.
    pub outbox_queued: u64,
    /// Dead-lettered messages at A and B at the end.
    pub dead_lettered: u64,
    /// How each node ended on SIGTERM (A, B).
    pub node_exits: [String; 2],
    /// `plusgate audit verify --config` of A and B: "ok" or what it said.
    pub audit: [String; 2],
}

/// The configs of A and B and the executable, for the CLI checks.
pub(super) struct Cli<'a> {
    /// The `plusgate` executable.
    pub(super) plusgate: &'a Plusgate,
    /// The federation folder (working directory).
    pub(super) dir: &'a Path,
    /// A's and B's config files.
    pub(super) configs: [PathBuf; 2],
}

/// Waits (at most `drain_max`) for every acknowledged push to be delivered while the
/// pullers go on; records the rest as lost once the pullers are stopped by the caller.
pub(super) async fn wait_for_delivery(
    book: &Book,
    pair: &mut Pair,
    drain_max: Duration,
) -> (bool, f64) {
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let waiting = book.waiting();
        if waiting == 0 {
            return (true, started.elapsed().as_secs_f64());
        }
        if let Some(detail) = exited_by_itself(pair) {
            book.violate(ViolationKind::NodeDown, detail);
            return (false, started.elapsed().as_secs_f64());
        }
        if started.elapsed() >= drain_max {
            eprintln!(
                "soak: the outbox did NOT drain: {waiting} acknowledged messages still undelivered \
                 after {drain_max:?}"
            );
            return (false, started.elapsed().as_secs_f64());
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            eprintln!("soak: waiting for {waiting} acknowledged messages to be delivered");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Drains both inboxes (the pullers are stopped), then counts what is still undelivered
/// as lost.
pub(super) async fn drain_and_count_lost(
    book: &Book,
    pullers: &[Puller],
    counts: &PullCounts,
    end: &mut EndReport,
) {
    let mut empty = true;
    for puller in pullers {
        empty &= puller.drain(book, counts, DRAIN_FAILURES_MAX).await;
    }
    end.inboxes_empty = empty;
    // An acknowledgement the node recorded but could not answer (killed in between) leaves
    // a delivered message that the books cannot see as delivered: ask the node.
    for (route, id, key) in book.undelivered_after_unanswered_ack() {
        let Some(puller) = pullers.iter().find(|p| p.route == route) else {
            continue;
        };
        if puller.ack_again(&key, book, counts).await {
            book.acked_by_recheck(&id);
        }
    }
    for (route, ids) in book.undelivered() {
        let count = ids.len() as u64;
        match route {
            Route::Local => end.lost_local = count,
            Route::Remote => end.lost_remote = count,
        }
        book.violate(
            ViolationKind::Lost,
            format!(
                "{count} acknowledged pushes for the {route:?} inbox never arrived, e.g. {:?}",
                &ids[..ids.len().min(LOST_QUOTED_MAX)]
            ),
        );
    }
}

/// `plusgate outbox list --json` on both running nodes until A's outbox is empty (bounded);
/// any dead letter, or a message still queued, is a violation.
pub(super) fn check_outboxes(cli: &Cli<'_>, book: &Book, end: &mut EndReport) {
    let started = Instant::now();
    loop {
        let lists: Vec<Result<(u64, u64), String>> =
            cli.configs.iter().map(|c| outbox(cli, c)).collect();
        let mut queued = 0;
        let mut dead = 0;
        let mut failed = None;
        for (list, name) in lists.into_iter().zip(["A", "B"]) {
            match list {
                Ok((q, d)) => {
                    queued += q;
                    dead += d;
                }
                Err(e) => failed = Some(format!("`plusgate outbox list` of node {name}: {e}")),
            }
        }
        if let Some(e) = failed {
            book.violate(ViolationKind::Outbox, e);
            return;
        }
        end.outbox_queued = queued;
        end.dead_lettered = dead;
        if queued == 0 || started.elapsed() >= OUTBOX_EMPTY_TIME_MAX {
            if queued > 0 {
                book.violate(
                    ViolationKind::Outbox,
                    format!("{queued} messages still queued in the outboxes after everything was delivered"),
                );
            }
            if dead > 0 {
                book.violate(
                    ViolationKind::Outbox,
                    format!("{dead} messages were dead-lettered"),
                );
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Queued and dead-lettered messages of the node with config `config`.
fn outbox(cli: &Cli<'_>, config: &Path) -> Result<(u64, u64), String> {
    let config = config.display().to_string();
    let out = run_cli(cli, &["outbox", "list", "--json", "--config", &config])?;
    let list: Value = serde_json::from_str(&out).map_err(|e| format!("not JSON ({e}): {out}"))?;
    let queued = list["centers"]
        .as_object()
        .map(|centers| centers.values().filter_map(|c| c["queued"].as_u64()).sum())
        .unwrap_or(0);
    let dead = list["dead_lettered"].as_array().map_or(0, Vec::len) as u64;
    Ok((queued, dead))
}

/// SIGTERM to both nodes (B last), then `plusgate audit verify --config` of each.
pub(super) fn stop_and_verify(cli: &Cli<'_>, mut pair: Pair, book: &Book, end: &mut EndReport) {
    for (i, (name, node)) in [("A", &mut pair.a), ("B", &mut pair.b)]
        .into_iter()
        .enumerate()
    {
        end.node_exits[i] = match node.terminate() {
            Ok(status) if status.success() => status.to_string(),
            Ok(status) => {
                book.violate(
                    ViolationKind::Audit,
                    format!("node {name} did not stop cleanly: {status}"),
                );
                status.to_string()
            }
            Err(e) => {
                book.violate(
                    ViolationKind::Audit,
                    format!("node {name} did not stop: {e}"),
                );
                e.to_string()
            }
        };
    }
    for (i, name) in ["A", "B"].into_iter().enumerate() {
        let config = cli.configs[i].display().to_string();
        end.audit[i] = match run_cli(cli, &["audit", "verify", "--config", &config]) {
            Ok(_) => "ok".to_owned(),
            Err(e) => {
                book.violate(
                    ViolationKind::Audit,
                    format!("audit verify of node {name}: {e}"),
                );
                e
            }
        };
    }
}

/// Runs `plusgate args…`; its stdout if it exits 0, else what it said.
fn run_cli(cli: &Cli<'_>, args: &[&str]) -> Result<String, String> {
    let out = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
    let file = |name: &str| {
        std::fs::File::create(out.path().join(name)).map_err(|e| format!("an output file: {e}"))
    };
    let mut child = Command::new(cli.plusgate.path())
        .args(args)
        .current_dir(cli.dir)
        .stdin(Stdio::null())
        .stdout(file("stdout")?)
        .stderr(file("stderr")?)
        .spawn()
        .map_err(|e| format!("starting plusgate {args:?}: {e}"))?;
    let Some(status) = wait_with_timeout(&mut child, CLI_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "plusgate {args:?} did not finish within {CLI_TIMEOUT:?}"
        ));
    };
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
    if status.success() {
        Ok(read("stdout"))
    } else {
        Err(format!(
            "plusgate {args:?} exited {status}: {}{}",
            read("stdout").trim(),
            read("stderr").trim()
        ))
    }
}
