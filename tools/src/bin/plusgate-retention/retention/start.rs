//! A timed start: from spawning `plusgate serve` on the existing data directory to its
//! listening line, to the first `200` from `/readyz`, to the first push answered `202`.
//! The node's log says how many deferred writes it replayed from its journal.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use harness::Node;
use hyper::{Method, StatusCode};
use plusgate::node::client::{Agent, HttpVersion};
use serde::Serialize;
use tokio::time::Instant;

use super::probe::{memory, work_of, Memory, Work};
use super::push::Template;
use super::{doing, SENDER};

/// Longest a start may take to print its listening line (sled's recovery of a large store
/// scans every segment written since its last snapshot).
const START_TIME_MAX: Duration = Duration::from_secs(1800);

/// Longest from the listening line to `/readyz` answering `200`, and to the first `202`.
const READY_TIME_MAX: Duration = Duration::from_secs(300);

/// Pause between two `/readyz` probes.
const READY_POLL: Duration = Duration::from_millis(5);

/// The log line the store writes after replaying its journal.
const REPLAYED: &str = "replayed deferred writes from the journal";

/// What one start took.
#[derive(Debug, Clone, Serialize)]
pub(super) struct StartTiming {
    /// Which start this was.
    pub(super) name: String,
    /// Whether the data directory was dropped from the page cache first (`--cold`).
    pub(super) cold: bool,
    /// Seconds from spawn to the listening line (the store opened, the ledger started).
    pub(super) listening_s: f64,
    /// Seconds from spawn to the first `200` from `/readyz`.
    pub(super) ready_s: f64,
    /// Seconds from spawn to the first push answered `202`.
    pub(super) first_push_s: f64,
    /// The node's memory once the first push was answered.
    pub(super) memory: Option<Memory>,
    /// What the process had read and its CPU time when it printed its listening line
    /// (read just after; the bytes the start read are nearly all sled's recovery).
    pub(super) at_listening: Option<Work>,
    /// Deferred writes replayed from the journal, as the node logged (0: none logged).
    pub(super) replayed_writes: u64,
}

/// Starts `node` again on its data directory `data` (it must be stopped), timing it;
/// `probe_id` is the id of the first push. With `cold`, `data` is dropped from the page
/// cache first.
pub(super) async fn timed_start(
    node: &mut Node,
    name: &str,
    template: &Template,
    probe_id: &str,
    data: Option<&Path>,
) -> anyhow::Result<StartTiming> {
    if let Some(dir) = data {
        drop_from_page_cache(dir)?;
    }
    let log_before = std::fs::metadata(node.log_path()).map_or(0, |m| m.len());
    let spawned = Instant::now();
    tokio::task::block_in_place(|| node.try_restart_within(START_TIME_MAX))?;
    let listening_s = spawned.elapsed().as_secs_f64();
    let at_listening = node.pid().and_then(work_of);
    let agent = node.agent(SENDER, HttpVersion::Http1);
    let ready_s = wait_ready(&agent, spawned).await?;
    push_once(&agent, template, probe_id, spawned).await?;
    let first_push_s = spawned.elapsed().as_secs_f64();
    Ok(StartTiming {
        name: name.to_owned(),
        cold: data.is_some(),
        listening_s,
        ready_s,
        first_push_s,
        memory: memory(node),
        at_listening,
        replayed_writes: replayed_since(node, log_before),
    })
}

/// Polls `/readyz` until it answers `200`; returns the seconds since `spawned`.
async fn wait_ready(agent: &Agent, spawned: Instant) -> anyhow::Result<f64> {
    let mut conn = None;
    loop {
        if spawned.elapsed() > READY_TIME_MAX {
            anyhow::bail!("/readyz did not answer 200 within {READY_TIME_MAX:?}");
        }
        if conn.is_none() {
            conn = agent.connect().await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match c.send(Method::GET, "/readyz", None).await {
                Ok(r) if r.status == StatusCode::OK => return Ok(spawned.elapsed().as_secs_f64()),
                Ok(_) => {}
                Err(_) => conn = None,
            }
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Pushes `id` until it is answered `202` (a `503` while the node settles is retried).
async fn push_once(
    agent: &Agent,
    template: &Template,
    id: &str,
    spawned: Instant,
) -> anyhow::Result<()> {
    let mut conn = agent.connect().await.map_err(doing("connecting"))?;
    loop {
        let r = conn
            .send(
                Method::POST,
                "/v1/messages",
                Some((template.body(id), "application/json")),
            )
            .await
            .map_err(doing("the first push"))?;
        match r.status {
            StatusCode::ACCEPTED => return Ok(()),
            StatusCode::SERVICE_UNAVAILABLE if spawned.elapsed() < READY_TIME_MAX => {
                tokio::time::sleep(READY_POLL).await;
            }
            status => anyhow::bail!("the first push was answered {status}: {}", r.text()),
        }
    }
}

/// Asks the kernel to drop every file under `dir` from the page cache (`posix_fadvise`
/// `DONTNEED`, through dd(1): std has no such call and the workspace forbids `unsafe`).
/// The files must be clean, which they are once the node has stopped: sled fsyncs them.
fn drop_from_page_cache(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            drop_from_page_cache(&path)?;
            continue;
        }
        let status = Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .context("running dd to drop the data from the page cache")?;
        if !status.success() {
            anyhow::bail!("dd iflag=nocache on {} failed: {status}", path.display());
        }
    }
    Ok(())
}

/// The `writes=N` of the journal replay the node logged after byte `from` of its log.
fn replayed_since(node: &Node, from: u64) -> u64 {
    let log = std::fs::read(node.log_path())
        .context("reading the node log")
        .unwrap_or_default();
    let new = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
    new.lines()
        .filter(|line| line.contains(REPLAYED))
        .filter_map(|line| field(line, "writes="))
        .sum()
}

/// The number after `name` in a log line (`… writes=123 …`).
fn field(line: &str, name: &str) -> Option<u64> {
    let rest = &line[line.find(name)? + name.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_count_is_read_from_the_log_line() {
        let line = "2026-11-29T18:00:00Z  INFO plusgate::node::store: replayed deferred writes \
                    from the journal writes=4321";
        assert_eq!(field(line, "writes="), Some(4321));
        assert_eq!(field("nothing here", "writes="), None);
    }
}
