//! The closed-loop load both modes use: `--connections` workers, each sending the next
//! push as soon as the previous answer arrives, counted inside a measured window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use plusgate::node::client::{Agent, ClientError, Connection, HttpVersion};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::histogram::Histogram;
use super::{
    count_error, doing, error_kind, micros, truncate, BenchArgs, ErrorCount, RECONNECT_PAUSE,
    REQUEST_TIMEOUT, STREAMS_PER_H2_CONNECTION,
};

/// The envelope serialized once, split around its `id` so each request only splices in
/// a fresh id instead of re-serializing the JSON.
#[derive(Clone)]
pub(super) struct BodyTemplate {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl BodyTemplate {
    const PLACEHOLDER: &'static str = "plusgate-bench-id-placeholder";

    pub(super) fn new(envelope: &serde_json::Value) -> anyhow::Result<BodyTemplate> {
        let mut envelope = envelope.clone();
        let object = envelope
            .as_object_mut()
            .ok_or_else(|| anyhow!("the referral example is not a JSON object"))?;
        object.insert("id".into(), Self::PLACEHOLDER.into());
        let text = serde_json::to_string(&envelope)?;
        let quoted = format!("\"{}\"", Self::PLACEHOLDER);
        let (prefix, suffix) = match text.split_once(&quoted) {
            Some(parts) if !parts.1.contains(&quoted) => parts,
            _ => bail!("the referral example already contains the bench's id placeholder"),
        };
        Ok(BodyTemplate {
            prefix: format!("{prefix}\"").into_bytes(),
            suffix: format!("\"{suffix}").into_bytes(),
        })
    }

    /// The body with `id` spliced in; `id` must not need JSON escaping.
    pub(super) fn body(&self, id: &str) -> Bytes {
        let mut body = Vec::with_capacity(self.prefix.len() + id.len() + self.suffix.len());
        body.extend_from_slice(&self.prefix);
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(&self.suffix);
        Bytes::from(body)
    }
}

/// Pushes the referral `id` on `conn` before the load starts, and fails the bench with the
/// node's answer if it is not `202`, so that a misconfiguration shows as one clear error
/// instead of N × errors. `what` names the push and the node in the messages ("the first
/// referral to node A"); `context` is appended to a refusal (e.g. the nodes' log tails),
/// and only computed then.
pub(super) async fn push_first(
    conn: &mut Connection,
    template: &BodyTemplate,
    id: &str,
    what: &str,
    context: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let response = conn
        .send(
            Method::POST,
            "/v1/messages",
            Some((template.body(id), "application/json")),
        )
        .await
        .map_err(doing(format!("sending {what}")))?;
    if response.status != StatusCode::ACCEPTED {
        bail!(
            "the node answered {what} with {}: {}{}",
            response.status,
            truncate(&response.text(), 2000),
            context()
        );
    }
    Ok(())
}

/// The shared clock of one run.
#[derive(Clone, Copy)]
pub(super) struct Window {
    /// End of the warm-up, start of the measured window.
    pub(super) start: Instant,
    /// End of the measured window; no request is started after it.
    pub(super) end: Instant,
}

impl Window {
    /// `args.warmup_s` from `now` to its end, then `args.duration_s` measured.
    pub(super) fn after_warmup(now: Instant, args: &BenchArgs) -> Window {
        Window {
            start: now + Duration::from_secs(args.warmup_s.into()),
            end: now + Duration::from_secs(u64::from(args.warmup_s) + u64::from(args.duration_s)),
        }
    }

    /// The measured window's length in seconds.
    pub(super) fn seconds(&self) -> f64 {
        self.end.duration_since(self.start).as_secs_f64()
    }
}

/// Opens the connections `workers` closed-loop workers use: one each for HTTP/1.1,
/// `max(1, workers / 16)` shared ones for HTTP/2. Returns them and their number.
pub(super) async fn connect_workers(
    agent: &Agent,
    workers: usize,
) -> anyhow::Result<(Vec<Connection>, usize)> {
    let tcp_connections = match agent.version {
        HttpVersion::Http1 => workers,
        HttpVersion::Http2 => (workers / STREAMS_PER_H2_CONNECTION).max(1),
    };
    let mut connections = Vec::with_capacity(tcp_connections);
    for _ in 0..tcp_connections {
        connections.push(agent.connect().await?);
    }
    Ok((connections, tcp_connections))
}

/// Spawns `workers` closed-loop workers on `connections` (from [`connect_workers`]).
pub(super) fn spawn_workers(
    shared: &Arc<WorkerShared>,
    mut connections: Vec<Connection>,
    workers: usize,
    window: Window,
) -> JoinSet<WorkerStats> {
    let tcp_connections = connections.len().max(1);
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let conn = match shared.agent.version {
            HttpVersion::Http1 => connections.pop(),
            HttpVersion::Http2 => connections
                .get(worker % tcp_connections)
                .and_then(Connection::try_clone),
        };
        tasks.spawn(run_worker(Arc::clone(shared), worker, conn, window));
    }
    // The workers' clones keep the HTTP/2 connections open; `connections` is dropped here.
    tasks
}

/// Waits for the workers of [`spawn_workers`] and adds up their counts.
pub(super) async fn join_workers(
    mut tasks: JoinSet<WorkerStats>,
    window: Window,
) -> anyhow::Result<WorkerStats> {
    // Workers stop starting requests at `window.end`; the last ones finish within
    // REQUEST_TIMEOUT. The extra margin only guards against a bug in that reasoning.
    let deadline = window.end + REQUEST_TIMEOUT + Duration::from_secs(5);
    let mut total = WorkerStats::new();
    while let Some(joined) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .map_err(|_| anyhow!("bench workers did not stop in time"))?
    {
        total.merge(joined.map_err(doing("a bench worker panicked"))?);
    }
    Ok(total)
}

/// What all workers of a run share.
pub(super) struct WorkerShared {
    pub(super) agent: Agent,
    pub(super) id_prefix: String,
    pub(super) template: BodyTemplate,
}

/// One closed-loop worker: sends the next request when the previous one is answered,
/// until `window.end`. Reconnects when its connection fails.
async fn run_worker(
    shared: Arc<WorkerShared>,
    worker: usize,
    mut conn: Option<Connection>,
    window: Window,
) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut n: u64 = 0;
    while Instant::now() < window.end {
        let Some(c) = conn.as_mut() else {
            match shared.agent.connect().await {
                Ok(c) => {
                    stats.reconnects += 1;
                    conn = Some(c);
                }
                Err(e) => {
                    if Instant::now() >= window.start {
                        stats.error(error_kind(&e), &e.to_string());
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
            continue;
        };
        n += 1;
        let id = format!("{}-{worker}-{n}", shared.id_prefix);
        let body = shared.template.body(&id);
        let sent_at = Instant::now();
        let result = c
            .send(
                Method::POST,
                "/v1/messages",
                Some((body, "application/json")),
            )
            .await;
        let done_at = Instant::now();
        let broken = result.is_err() && c.is_closed();
        if broken || matches!(result, Err(ClientError::Timeout { .. })) {
            // HTTP/1.1 cannot reuse a connection with a request still pending on it.
            conn = None;
        }
        if matches!(&result, Ok(r) if r.status == StatusCode::ACCEPTED) {
            stats.accepted_all += 1;
            if done_at <= window.end {
                stats.accepted_by_end += 1;
            }
        }
        if done_at < window.start || done_at > window.end {
            continue;
        }
        match result {
            Ok(response) if response.status == StatusCode::ACCEPTED => {
                stats.accepted += 1;
                stats.latency.record(micros(done_at - sent_at));
            }
            Ok(response) => stats.error(
                &format!("status {}", response.status.as_u16()),
                &response.text(),
            ),
            Err(e) => stats.error(error_kind(&e), &e.to_string()),
        }
    }
    stats
}

/// One worker's (or, merged, one run's) counts.
pub(super) struct WorkerStats {
    /// `202`s completing inside the measured window.
    pub(super) accepted: u64,
    /// Every `202`, warm-up and after the window included.
    pub(super) accepted_all: u64,
    /// `202`s completing before the window's end, warm-up included.
    pub(super) accepted_by_end: u64,
    pub(super) latency: Histogram,
    pub(super) errors: BTreeMap<String, ErrorCount>,
    pub(super) reconnects: u64,
}

impl WorkerStats {
    pub(super) fn new() -> WorkerStats {
        WorkerStats {
            accepted: 0,
            accepted_all: 0,
            accepted_by_end: 0,
            latency: Histogram::new(),
            errors: BTreeMap::new(),
            reconnects: 0,
        }
    }

    pub(super) fn error(&mut self, kind: &str, detail: &str) {
        count_error(&mut self.errors, kind, detail);
    }

    pub(super) fn errors_total(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    pub(super) fn merge(&mut self, other: WorkerStats) {
        self.accepted += other.accepted;
        self.accepted_all += other.accepted_all;
        self.accepted_by_end += other.accepted_by_end;
        self.latency.merge(&other.latency);
        self.reconnects += other.reconnects;
        for (kind, e) in other.errors {
            self.errors
                .entry(kind)
                .and_modify(|mine| mine.count += e.count)
                .or_insert(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_template_splices_the_id() {
        let envelope = serde_json::json!({"type": "referral", "id": "old", "payload": {"a": 1}});
        let template = BodyTemplate::new(&envelope).expect("template");
        let body = template.body("bench-x-h1-0-1");
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(parsed["id"], "bench-x-h1-0-1");
        assert_eq!(parsed["payload"]["a"], 1);
        assert_eq!(parsed["type"], "referral");
    }
}
