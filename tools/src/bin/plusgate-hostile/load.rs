//! The well-behaved client whose latency the attacks must not ruin: suwon/employment
//! pushes referrals to suwon/welfare over one HTTP/2 connection on an open-loop timetable
//! (`--rate` a second, each send due at `i / rate` whatever happened before), and
//! suwon/welfare pulls and acknowledges them over HTTP/1.1 in a loop.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use harness::with_id;
use hyper::{Method, StatusCode};
use plusgate::node::client::{Agent, Connection};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Latencies of one phase, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Pushes answered 202.
    pub pushes: usize,
    /// Pushes not answered 202 (a status or an error).
    pub push_errors: usize,
    /// The first push error, if any.
    pub first_error: Option<String>,
    /// Push latency (due time to answer): median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Pulls answered 200.
    pub pulls: usize,
    /// Pull latency (no long poll), 99th percentile.
    pub pull_p99_ms: f64,
}

impl Latency {
    /// A phase that could not run: no pushes, the reason as its first error.
    fn failed(why: String) -> Latency {
        Latency {
            pushes: 0,
            push_errors: 1,
            first_error: Some(why),
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            max_ms: f64::NAN,
            pulls: 0,
            pull_p99_ms: f64::NAN,
        }
    }
}

/// Who the good client is: the pushing agent and the pulling one.
#[derive(Clone)]
pub struct GoodClient {
    /// suwon/employment, HTTP/2.
    pub sender: Agent,
    /// suwon/welfare, HTTP/1.1.
    pub recipient: Agent,
    /// The referral example (its id replaced per push).
    pub referral: Value,
    /// The CPUs its thread runs on (empty: any).
    pub cpus: Vec<usize>,
}

/// Push latencies (ms), failed pushes, the first failure.
type Pushes = (Vec<f64>, usize, Option<String>);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A connection of `agent`, reconnected when the node closed it.
async fn connection(agent: &Agent, slot: &AsyncMutex<Option<Connection>>) -> Option<Connection> {
    let mut slot = slot.lock().await;
    if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
        if let Some(clone) = conn.try_clone() {
            return Some(clone);
        }
    }
    let conn = agent.connect().await.ok()?;
    let clone = conn.try_clone();
    *slot = Some(conn);
    clone
}

/// [`run`] on a thread and runtime of its own, apart from the attackers' tasks: on one
/// shared runtime an attacker busy encrypting a megabyte body holds a worker thread, and
/// the good client's pushes would wait for it inside this process, a delay no real client
/// on another machine has. What is left is what the node (and the shared CPU) does to it.
pub async fn run_apart(good: &GoodClient, rate: u32, duration: Duration, tag: &str) -> Latency {
    let good = good.clone();
    let tag = tag.to_owned();
    let (done, result) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("good-client".into())
        .spawn(move || {
            if let Err(e) = super::cpus::pin_this_thread(&good.cpus) {
                let _ = done.send(Latency::failed(format!("cannot pin the good client: {e}")));
                return;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let latency = match runtime {
                Ok(runtime) => runtime.block_on(run(&good, rate, duration, &tag)),
                Err(e) => Latency::failed(format!("cannot start the good client's runtime: {e}")),
            };
            let _ = done.send(latency);
        });
    if let Err(e) = spawned {
        return Latency::failed(format!("cannot start the good client's thread: {e}"));
    }
    result.await.unwrap_or_else(|_| {
        Latency::failed("the good client's thread ended without a result".into())
    })
}

/// Runs the good client for `duration` at `rate` pushes a second; `tag` makes its ids
/// unique per phase.
pub async fn run(good: &GoodClient, rate: u32, duration: Duration, tag: &str) -> Latency {
    let t0 = Instant::now();
    let sends = u64::from(rate) * duration.as_secs();
    let slot = Arc::new(AsyncMutex::new(None::<Connection>));
    let pushes: Arc<Mutex<Pushes>> = Arc::default();
    let mut set = JoinSet::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let puller = tokio::spawn(pull_loop(good.recipient.clone(), Arc::clone(&stop)));
    for i in 0..sends {
        let due = t0 + Duration::from_nanos(i * 1_000_000_000 / u64::from(rate.max(1)));
        tokio::time::sleep_until(due).await;
        let body = Bytes::from(with_id(good.referral.clone(), &format!("{tag}-{i}")).to_string());
        let agent = good.sender.clone();
        let slot = Arc::clone(&slot);
        let pushes = Arc::clone(&pushes);
        set.spawn(async move {
            let answer = match connection(&agent, &slot).await {
                Some(mut conn) => conn
                    .send(
                        Method::POST,
                        "/v1/messages",
                        Some((body, "application/json")),
                    )
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("could not connect".to_owned()),
            };
            let took = due.elapsed().as_secs_f64() * 1e3;
            let mut pushes = pushes.lock().unwrap_or_else(PoisonError::into_inner);
            match answer {
                Ok(r) if r.status == StatusCode::ACCEPTED => pushes.0.push(took),
                Ok(r) => {
                    pushes.1 += 1;
                    pushes
                        .2
                        .get_or_insert(format!("{} {}", r.status.as_u16(), r.text()));
                }
                Err(e) => {
                    pushes.1 += 1;
                    pushes.2.get_or_insert(e);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut pulls = puller.await.unwrap_or_default();
    let (mut lat, errors, first_error) = {
        let p = pushes.lock().unwrap_or_else(PoisonError::into_inner);
        (p.0.clone(), p.1, p.2.clone())
    };
    lat.sort_by(f64::total_cmp);
    pulls.sort_by(f64::total_cmp);
    Latency {
        pushes: lat.len(),
        push_errors: errors,
        first_error,
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        pulls: pulls.len(),
        pull_p99_ms: percentile(&pulls, 99.0),
    }
}

/// Pulls up to 100 messages (no long poll) and acknowledges them, again and again, every
/// 50 ms at most; the latency of each answered pull.
async fn pull_loop(agent: Agent, stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<f64> {
    let mut held: Option<Connection> = None;
    let mut took = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let started = Instant::now();
        if held.as_ref().is_none_or(Connection::is_closed) {
            held = agent.connect().await.ok();
        }
        let Some(conn) = held.as_mut() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let pulled = conn.send(Method::GET, "/v1/inbox?max=100", None).await;
        if let Some(r) = pulled.ok().filter(|r| r.status == StatusCode::OK) {
            took.push(started.elapsed().as_secs_f64() * 1e3);
            let ids: Vec<String> = r
                .json::<Value>()
                .ok()
                .and_then(|v| v["messages"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect();
            if !ids.is_empty() {
                let body = Bytes::from(json!({ "ids": ids }).to_string());
                let _ = conn
                    .send(
                        Method::POST,
                        "/v1/inbox/ack",
                        Some((body, "application/json")),
                    )
                    .await;
            }
        } else {
            // Closed (idle) or refused: the next round reconnects.
            held = None;
        }
        tokio::time::sleep_until(started + Duration::from_millis(50)).await;
    }
    took
}
