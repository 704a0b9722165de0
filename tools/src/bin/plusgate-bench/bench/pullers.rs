//! The pullers at B in `--cross`: long-polling B's inbox as the recipient, recording when
//! each message first arrives and acknowledging it on a concurrent stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use harness::InboxPage;
use hyper::{Method, StatusCode};
use plusgate::node::client::{Agent, ClientError, Connection};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cross::CrossSetup;
use super::cross_report::DrainReport;
use super::{count_error, doing, error_kind, ErrorCount, RECONNECT_PAUSE, REQUEST_TIMEOUT};

/// Long-polling pullers at B, each on its own HTTP/2 connection.
pub(super) const PULLERS: usize = 4;

/// Long-poll wait of each pull at B, in seconds.
pub(super) const PULL_WAIT_S: u64 = 1;

/// Acks one puller may have outstanding while it pulls again.
const ACKS_IN_FLIGHT_MAX: usize = 8;

/// What the pullers at B have seen.
#[derive(Default)]
pub(super) struct Arrivals {
    /// When a pull first returned each id.
    first_seen: Mutex<HashMap<String, Instant>>,
    /// Pull answers with status 200.
    pub(super) pulls: AtomicU64,
    /// Ids returned again after their first pull (a lease expired or an ack failed).
    pub(super) duplicates: AtomicU64,
    /// Failed pulls and acks, by kind.
    errors: Mutex<BTreeMap<String, ErrorCount>>,
}

impl Arrivals {
    fn seen(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that a pull answered at `at` returned `ids`.
    pub(super) fn record(&self, ids: &[String], at: Instant) {
        let mut seen = self.seen();
        for id in ids {
            if seen.contains_key(id) {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            } else {
                seen.insert(id.clone(), at);
            }
        }
    }

    pub(super) fn first_seen(&self, id: &str) -> Option<Instant> {
        self.seen().get(id).copied()
    }

    /// Distinct ids starting with `prefix` first seen inside `[from, until]` (either bound
    /// open when `None`).
    pub(super) fn count(&self, prefix: &str, from: Option<Instant>, until: Option<Instant>) -> u64 {
        self.seen()
            .iter()
            .filter(|(id, at)| {
                id.starts_with(prefix)
                    && from.is_none_or(|from| **at >= from)
                    && until.is_none_or(|until| **at <= until)
            })
            .count() as u64
    }

    /// The first-seen instants of ids starting with `prefix`.
    pub(super) fn with_prefix(&self, prefix: &str) -> HashMap<String, Instant> {
        self.seen()
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .map(|(id, at)| (id.clone(), *at))
            .collect()
    }

    fn error(&self, kind: &str, detail: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        count_error(&mut errors, kind, detail);
    }

    pub(super) fn errors(&self) -> BTreeMap<String, ErrorCount> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `want` distinct ids starting with `prefix` have been seen,
    /// `limit` has passed, or (with `stall`) nothing new arrived for that long.
    pub(super) async fn wait_for(
        &self,
        prefix: &str,
        want: u64,
        limit: Duration,
        stall: Option<Duration>,
    ) -> DrainReport {
        let started = Instant::now();
        let mut last = self.count(prefix, None, None);
        let mut last_change = started;
        loop {
            let now = Instant::now();
            let have = self.count(prefix, None, None);
            if have != last {
                last = have;
                last_change = now;
            }
            let stalled = stall.is_some_and(|stall| now - last_change >= stall);
            if have >= want || now - started >= limit || stalled {
                return DrainReport {
                    seconds: (now - started).as_secs_f64(),
                    complete: have >= want,
                    remaining: want.saturating_sub(have),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The pullers at B.
pub(super) struct Pullers {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Pullers {
    /// Connects [`PULLERS`] HTTP/2 connections to B as the recipient and starts a puller
    /// on each.
    pub(super) async fn start(
        setup: &CrossSetup,
        arrivals: Arc<Arrivals>,
    ) -> anyhow::Result<Pullers> {
        let agent = &setup.agent_b;
        let path: Arc<str> = format!("/v1/inbox?max={}&wait={PULL_WAIT_S}", setup.pull_max).into();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for _ in 0..PULLERS {
            let conn = agent.connect().await.map_err(doing(format!(
                "connecting to node B ({}) as {}",
                setup.url_b, setup.recipient
            )))?;
            tasks.spawn(run_puller(Puller {
                conn: Some(conn),
                agent: agent.clone(),
                path: Arc::clone(&path),
                arrivals: Arc::clone(&arrivals),
                stop: Arc::clone(&stop),
            }));
        }
        Ok(Pullers { stop, tasks })
    }

    /// Stops the pullers after their current long-poll and outstanding acks.
    pub(super) async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(5);
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, self.tasks.join_next()).await {}
        self.tasks.abort_all();
    }
}

/// One puller's state.
struct Puller {
    conn: Option<Connection>,
    agent: Agent,
    path: Arc<str>,
    arrivals: Arc<Arrivals>,
    stop: Arc<AtomicBool>,
}

/// Long-polls B's inbox until told to stop, recording what arrives and acknowledging it
/// on a concurrent stream (at most [`ACKS_IN_FLIGHT_MAX`] outstanding), so the next pull
/// starts at once.
async fn run_puller(mut p: Puller) {
    let mut acks = JoinSet::new();
    while !p.stop.load(Ordering::Relaxed) {
        if p.conn.as_ref().is_none_or(Connection::is_closed) {
            match p.agent.connect().await {
                Ok(c) => p.conn = Some(c),
                Err(e) => {
                    p.arrivals
                        .error(&format!("pull {}", error_kind(&e)), &e.to_string());
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
        }
        let Some(conn) = p.conn.as_mut() else {
            continue;
        };
        let result = conn.send(Method::GET, &p.path, None).await;
        let at = Instant::now();
        let response = match result {
            Ok(r) if r.status == StatusCode::OK => r,
            Ok(r) => {
                p.arrivals
                    .error(&format!("pull status {}", r.status.as_u16()), &r.text());
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
            Err(e) => {
                if conn.is_closed() || matches!(e, ClientError::Timeout { .. }) {
                    p.conn = None;
                }
                p.arrivals
                    .error(&format!("pull {}", error_kind(&e)), &e.to_string());
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        let page: InboxPage = match response.json() {
            Ok(page) => page,
            Err(e) => {
                p.arrivals.error("pull body", &e.to_string());
                continue;
            }
        };
        p.arrivals.pulls.fetch_add(1, Ordering::Relaxed);
        if page.messages.is_empty() {
            continue;
        }
        let ids: Vec<String> = page.messages.into_iter().map(|m| m.id).collect();
        p.arrivals.record(&ids, at);
        while acks.try_join_next().is_some() {}
        while acks.len() >= ACKS_IN_FLIGHT_MAX {
            acks.join_next().await;
        }
        match conn.try_clone() {
            Some(ack_conn) => {
                acks.spawn(ack(ack_conn, ids, Arc::clone(&p.arrivals)));
            }
            None => p.arrivals.error("ack", "the pull connection is not HTTP/2"),
        }
    }
    while acks.join_next().await.is_some() {}
}

/// Acknowledges `ids` at B.
async fn ack(mut conn: Connection, ids: Vec<String>, arrivals: Arc<Arrivals>) {
    let body = match serde_json::to_vec(&serde_json::json!({ "ids": ids })) {
        Ok(body) => body,
        Err(e) => return arrivals.error("ack body", &e.to_string()),
    };
    let result = conn
        .send(
            Method::POST,
            "/v1/inbox/ack",
            Some((Bytes::from(body), "application/json")),
        )
        .await;
    match result {
        Ok(r) if r.status == StatusCode::OK => {}
        Ok(r) => arrivals.error(&format!("ack status {}", r.status.as_u16()), &r.text()),
        Err(e) => arrivals.error(&format!("ack {}", error_kind(&e)), &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_count_first_sightings_by_prefix_and_window() {
        let arrivals = Arrivals::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ids = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        arrivals.record(&ids(&["x-tp-1", "x-tp-2", "x-lat-1"]), at(10));
        arrivals.record(&ids(&["x-tp-3"]), at(20));
        // Seen again (a lease expired): a duplicate, keeping the first sighting.
        arrivals.record(&ids(&["x-tp-1", "x-tp-4"]), at(30));
        assert_eq!(arrivals.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(arrivals.first_seen("x-tp-1"), Some(at(10)));
        assert_eq!(arrivals.first_seen("x-tp-9"), None);
        assert_eq!(arrivals.count("x-tp-", None, None), 4);
        assert_eq!(arrivals.count("x-lat-", None, None), 1);
        assert_eq!(arrivals.count("x-tp-", Some(at(15)), None), 2);
        assert_eq!(arrivals.count("x-tp-", None, Some(at(20))), 3);
        assert_eq!(arrivals.count("x-tp-", Some(at(20)), Some(at(20))), 1);
        let lat = arrivals.with_prefix("x-lat-");
        assert_eq!(lat.len(), 1);
        assert_eq!(lat.get("x-lat-1"), Some(&at(10)));
    }

    #[tokio::test]
    async fn waiting_for_arrivals_ends_on_success_limit_or_stall() {
        let arrivals = Arrivals::default();
        arrivals.record(&["p-1".to_owned(), "p-2".to_owned()], Instant::now());
        let done = arrivals
            .wait_for("p-", 2, Duration::from_secs(60), None)
            .await;
        assert!(done.complete && done.remaining == 0 && done.seconds < 1.0);
        let limited = arrivals
            .wait_for("p-", 3, Duration::from_millis(250), None)
            .await;
        assert!(!limited.complete && limited.remaining == 1);
        assert!(limited.seconds >= 0.25, "{}", limited.seconds);
        let stalled = arrivals
            .wait_for(
                "p-",
                3,
                Duration::from_secs(60),
                Some(Duration::from_millis(250)),
            )
            .await;
        assert!(!stalled.complete);
        assert!(
            (0.25..30.0).contains(&stalled.seconds),
            "{}",
            stalled.seconds
        );
    }
}
