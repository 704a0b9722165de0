//! Draining the recipient's inbox: `--drainers` connections pulling (up to the node's
//! `inbox_pull_max` at a time, without long-polling) and acknowledging, until the inbox is
//! empty. Leases keep the drainers' messages apart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use harness::InboxPage;
use hyper::{Method, StatusCode};
use plusgate::node::client::Agent;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{doing, truncate};

/// Bound on a whole drain: past it the measurement fails rather than hangs.
const DRAIN_TIME_MAX: Duration = Duration::from_secs(4 * 3600);

/// Acknowledged messages, shared with the progress line.
#[derive(Default)]
pub(super) struct Acked(AtomicU64);

impl Acked {
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Drains the inbox `agent` reads with `drainers` connections, `max` per pull, counting
/// into `acked`.
pub(super) async fn drain(
    agent: &Agent,
    drainers: usize,
    max: usize,
    acked: &Arc<Acked>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + DRAIN_TIME_MAX;
    let mut tasks = JoinSet::new();
    for _ in 0..drainers {
        tasks.spawn(drainer(agent.clone(), max, Arc::clone(acked), deadline));
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(doing("a drainer panicked")).and_then(|r| r);
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

async fn drainer(
    agent: Agent,
    max: usize,
    acked: Arc<Acked>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut conn = agent
        .connect()
        .await
        .map_err(doing("connecting a drainer"))?;
    let pull = format!("/v1/inbox?max={max}&wait=0");
    while Instant::now() < deadline {
        let response = conn
            .send(Method::GET, &pull, None)
            .await
            .map_err(doing("pulling the inbox"))?;
        if response.status != StatusCode::OK {
            bail!(
                "the node answered a pull with {}: {}",
                response.status,
                truncate(&response.text(), 2000)
            );
        }
        let page: InboxPage = response.json().map_err(doing("reading a pull"))?;
        if page.messages.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = page.messages.into_iter().map(|m| m.id).collect();
        let body = Bytes::from(json!({ "ids": ids }).to_string());
        let response = conn
            .send(
                Method::POST,
                "/v1/inbox/ack",
                Some((body, "application/json")),
            )
            .await
            .map_err(doing("acknowledging"))?;
        if response.status != StatusCode::OK {
            bail!(
                "the node answered an ack with {}: {}",
                response.status,
                truncate(&response.text(), 2000)
            );
        }
        acked.0.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
    bail!("the inbox was not empty after {DRAIN_TIME_MAX:?}")
}
