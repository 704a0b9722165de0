//! Closed-loop pushers: `--connections` HTTP/1.1 connections, each sending the next referral
//! as soon as the previous answer arrives, every referral with an id of its own, so each
//! is a new message the node must retain. Used to fill the node (a fixed number of ids,
//! each pushed until it is accepted) and for the loads after a start (until told to stop).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use plusgate::node::client::{Agent, Connection};
use tokio::task::JoinSet;

use super::{doing, truncate};

/// Pause before a pusher retries after a failed request or connect, so a node that is down
/// or refusing for now is not hammered in a tight loop.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Failures in a row after which a fill gives up (a node that keeps failing is broken).
const FAILURES_IN_A_ROW_MAX: u64 = 2_000;

/// The referral serialized once, split around its `id`, so each push only splices in a
/// fresh id.
#[derive(Clone)]
pub(super) struct Template {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl Template {
    const PLACEHOLDER: &'static str = "plusgate-retention-id-placeholder";

    pub(super) fn new(envelope: &serde_json::Value) -> anyhow::Result<Template> {
        let mut envelope = envelope.clone();
        envelope
            .as_object_mut()
            .ok_or_else(|| anyhow!("the referral example is not a JSON object"))?
            .insert("id".into(), Self::PLACEHOLDER.into());
        let text = serde_json::to_string(&envelope)?;
        let quoted = format!("\"{}\"", Self::PLACEHOLDER);
        let Some((prefix, suffix)) = text.split_once(&quoted) else {
            bail!("the id placeholder is missing from the serialized referral");
        };
        Ok(Template {
            prefix: format!("{prefix}\"").into_bytes(),
            suffix: format!("\"{suffix}").into_bytes(),
        })
    }

    /// The body with `id` spliced in; `id` must not need JSON escaping.
    pub(super) fn body(&self, id: &str) -> Bytes {
        let mut body = Vec::with_capacity(self.len(id));
        body.extend_from_slice(&self.prefix);
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(&self.suffix);
        Bytes::from(body)
    }

    /// The length of [`Template::body`] for `id`.
    pub(super) fn len(&self, id: &str) -> usize {
        self.prefix.len() + id.len() + self.suffix.len()
    }
}

/// What the pushers of one run share.
pub(super) struct Pushers {
    pub(super) agent: Agent,
    pub(super) template: Template,
    /// Ids are `<prefix>-<n>`.
    pub(super) prefix: String,
    /// Ids `0..limit` are pushed (`u64::MAX`: until stopped).
    pub(super) limit: u64,
    /// The next id to hand out.
    pub(super) next: AtomicU64,
    /// `202`s so far.
    pub(super) accepted: AtomicU64,
    /// Request bytes of the accepted pushes.
    pub(super) accepted_bytes: AtomicU64,
    /// Failed requests and refusals so far.
    pub(super) failures: AtomicU64,
    /// Set to make every pusher stop after its current request.
    pub(super) stop: AtomicBool,
}

impl Pushers {
    pub(super) fn new(agent: Agent, template: Template, prefix: String, limit: u64) -> Pushers {
        Pushers {
            agent,
            template,
            prefix,
            limit,
            next: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            accepted_bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    pub(super) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub(super) fn accepted_bytes(&self) -> u64 {
        self.accepted_bytes.load(Ordering::Relaxed)
    }

    pub(super) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Tells every pusher to stop after its current request.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts `connections` pushers (each connects first).
pub(super) fn spawn(pushers: &Arc<Pushers>, connections: usize) -> JoinSet<anyhow::Result<()>> {
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(push_loop(Arc::clone(pushers)));
    }
    tasks
}

/// Waits for every pusher; the first one's failure is the result.
pub(super) async fn join(mut tasks: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(doing("a pusher panicked")).and_then(|r| r);
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

/// One pusher: takes the next id, pushes it until it is accepted (a retry of the same id
/// is answered as the original, so a lost answer never makes a second message), and so on
/// until the ids run out or it is told to stop. Gives up after [`FAILURES_IN_A_ROW_MAX`]
/// failures in a row, unless stopping.
async fn push_loop(p: Arc<Pushers>) -> anyhow::Result<()> {
    let mut conn: Option<Connection> = None;
    let mut failures_in_a_row = 0;
    'ids: loop {
        let n = p.next.fetch_add(1, Ordering::Relaxed);
        if n >= p.limit {
            return Ok(());
        }
        let id = format!("{}-{n}", p.prefix);
        loop {
            if p.stop.load(Ordering::Relaxed) {
                break 'ids Ok(());
            }
            if failures_in_a_row >= FAILURES_IN_A_ROW_MAX {
                bail!("{failures_in_a_row} pushes in a row failed, the last one of {id}");
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match p.agent.connect().await {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        p.failures.fetch_add(1, Ordering::Relaxed);
                        failures_in_a_row += 1;
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                },
            };
            let body = p.template.body(&id);
            let bytes = body.len() as u64;
            match c
                .send(
                    Method::POST,
                    "/v1/messages",
                    Some((body, "application/json")),
                )
                .await
            {
                Ok(r) if r.status == StatusCode::ACCEPTED => {
                    p.accepted.fetch_add(1, Ordering::Relaxed);
                    p.accepted_bytes.fetch_add(bytes, Ordering::Relaxed);
                    failures_in_a_row = 0;
                    continue 'ids;
                }
                // Asking again helps: a full outbox, a disk below its reserve, a restart.
                Ok(r)
                    if r.status == StatusCode::SERVICE_UNAVAILABLE
                        || r.status == StatusCode::INSUFFICIENT_STORAGE => {}
                Ok(r) => bail!(
                    "the node answered the push of {id} with {}: {}",
                    r.status,
                    truncate(&r.text(), 2000)
                ),
                // HTTP/1.1 cannot reuse a connection whose request failed half-way.
                Err(_) => conn = None,
            }
            p.failures.fetch_add(1, Ordering::Relaxed);
            failures_in_a_row += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_splices_the_id() {
        let envelope = serde_json::json!({"type": "referral", "id": "old", "payload": {"a": 1}});
        let template = Template::new(&envelope).expect("template");
        let body = template.body("ret-x-7");
        assert_eq!(body.len(), template.len("ret-x-7"));
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(parsed["id"], "ret-x-7");
        assert_eq!(parsed["payload"]["a"], 1);
    }
}
