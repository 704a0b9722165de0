//! The latency phase of `--cross`: pushes at A on an open-loop timetable, each message's
//! time from its push at A to a pull at B first returning it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail};
use hyper::{Method, StatusCode};
use plusgate::node::client::{Agent, ClientError, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cross::CrossNodes;
use super::cross_report::LatencyReport;
use super::histogram::Histogram;
use super::load::{BodyTemplate, Window, WorkerStats};
use super::pullers::Arrivals;
use super::report::LatencyMs;
use super::usage::{NodeUsage, RssSampler};
use super::{doing, error_kind, micros, BenchArgs, REQUEST_TIMEOUT, STREAMS_PER_H2_CONNECTION};

/// Largest `--rate`.
pub(super) const RATE_MAX: u32 = 100_000;

/// Most sends one latency phase may schedule (each costs 9 bytes of bookkeeping).
const SENDS_MAX: u64 = 50_000_000;

/// How long after the latency phase's last scheduled send a message may still arrive.
pub(super) const ARRIVAL_GRACE: Duration = Duration::from_secs(10);

/// The product owner's target for forwarding between two centers: p99 of the time from a
/// push at A to the message being pullable at B.
pub(super) const TARGET_P99_MS: f64 = 50.0;

/// An open-loop timetable at `rate` sends per second: send `i` is due `i / rate`
/// seconds after the start, whatever happened to the sends before it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    rate: u32,
}

impl Schedule {
    const NANOS_PER_S: u128 = 1_000_000_000;

    /// `rate` must be at least 1.
    fn new(rate: u32) -> Schedule {
        Schedule { rate: rate.max(1) }
    }

    /// When send `i` is due, after the start (rounded down to the nanosecond).
    fn offset(self, i: u64) -> Duration {
        let nanos = u128::from(i) * Self::NANOS_PER_S / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many sends are due strictly before `elapsed`: the first `i` with
    /// `offset(i) >= elapsed`.
    fn count_before(self, elapsed: Duration) -> u64 {
        // offset(i) < e ⟺ ⌊i·10⁹/r⌋ < e ⟺ i·10⁹ < e·r (e in whole nanoseconds).
        let count = (elapsed.as_nanos() * u128::from(self.rate)).div_ceil(Self::NANOS_PER_S);
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}

/// What the open-loop senders share.
struct OpenLoop {
    agent: Agent,
    template: BodyTemplate,
    /// Ids are `<id_prefix><i>`.
    id_prefix: String,
    /// HTTP/2 connections, send `i` goes on `i % len`; reconnected when closed.
    connections: Vec<tokio::sync::Mutex<Option<Connection>>>,
    /// The timetable's start.
    t0: Instant,
    /// Per send: nanoseconds after `t0` when its push was sent.
    sent_ns: Vec<AtomicU64>,
    /// Per send: whether A answered `202`.
    accepted: Vec<AtomicBool>,
    /// Sends before this index are warm-up.
    measured_first: u64,
    stats: Mutex<OpenLoopStats>,
}

/// Counts of the measured sends of the open loop.
struct OpenLoopStats {
    /// Push answers (`202` latency) and errors.
    push: WorkerStats,
    /// How far behind the timetable each send went out.
    lag: Histogram,
}

impl OpenLoop {
    /// A connection for send `i`, reconnecting its slot if it is closed.
    async fn connection(&self, i: u64) -> Result<Connection, ClientError> {
        let slot = &self.connections[(i % self.connections.len() as u64) as usize];
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            if let Some(clone) = conn.try_clone() {
                return Ok(clone);
            }
        }
        let conn = self.agent.connect().await?;
        let clone = conn.try_clone();
        *slot = Some(conn);
        self.lock_stats().push.reconnects += 1;
        clone.ok_or_else(|| ClientError::Request("the open loop needs HTTP/2".to_owned()))
    }

    fn lock_stats(&self) -> MutexGuard<'_, OpenLoopStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends push `i` (due at `due`) and records its outcome; holds `_permit` (one of the
/// `--connections` in-flight slots) until answered.
async fn send_scheduled(
    shared: Arc<OpenLoop>,
    i: u64,
    due: Instant,
    _permit: OwnedSemaphorePermit,
) {
    let measured = i >= shared.measured_first;
    let id = format!("{}{i}", shared.id_prefix);
    let body = shared.template.body(&id);
    let mut conn = match shared.connection(i).await {
        Ok(conn) => conn,
        Err(e) => {
            if measured {
                shared
                    .lock_stats()
                    .push
                    .error(error_kind(&e), &e.to_string());
            }
            return;
        }
    };
    let index = usize::try_from(i).unwrap_or(usize::MAX);
    let sent = Instant::now();
    if let Some(slot) = shared.sent_ns.get(index) {
        slot.store(
            nanos(sent.saturating_duration_since(shared.t0)),
            Ordering::Relaxed,
        );
    }
    let result = conn
        .send(
            Method::POST,
            "/v1/messages",
            Some((body, "application/json")),
        )
        .await;
    let done = Instant::now();
    let accepted = matches!(&result, Ok(r) if r.status == StatusCode::ACCEPTED);
    if let Some(flag) = shared.accepted.get(index).filter(|_| accepted) {
        flag.store(true, Ordering::Relaxed);
    }
    if !measured {
        return;
    }
    let mut stats = shared.lock_stats();
    stats
        .lag
        .record(micros(sent.saturating_duration_since(due)));
    match result {
        Ok(_) if accepted => {
            stats.push.accepted += 1;
            stats.push.latency.record(micros(done - sent));
        }
        Ok(response) => stats.push.error(
            &format!("status {}", response.status.as_u16()),
            &response.text(),
        ),
        Err(e) => stats.push.error(error_kind(&e), &e.to_string()),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The open-loop phase: pushes at A on the timetable of `rate`/s, then waits up to
/// [`ARRIVAL_GRACE`] after the last scheduled send for B to receive them.
pub(super) async fn latency_phase(
    args: &BenchArgs,
    rate: u32,
    agent_a: &Agent,
    template: &BodyTemplate,
    run_tag: &str,
    arrivals: &Arrivals,
    nodes: &mut CrossNodes,
) -> anyhow::Result<LatencyReport> {
    let schedule = Schedule::new(rate);
    let warmup = Duration::from_secs(args.warmup_s.into());
    let length = warmup + Duration::from_secs(args.duration_s.into());
    let sends = schedule.count_before(length);
    if sends > SENDS_MAX {
        bail!(
            "{rate}/s for {} s is more than {SENDS_MAX} sends",
            length.as_secs()
        );
    }
    let in_flight_max = usize::from(args.connections);
    let tcp_connections = (in_flight_max / STREAMS_PER_H2_CONNECTION).max(1);
    let mut connections = Vec::with_capacity(tcp_connections);
    for _ in 0..tcp_connections {
        connections.push(tokio::sync::Mutex::new(Some(agent_a.connect().await?)));
    }
    let len = usize::try_from(sends)?;
    let t0 = Instant::now() + Duration::from_millis(20);
    let window = Window {
        start: t0 + warmup,
        end: t0 + length,
    };
    let prefix = format!("xbench-{run_tag}-lat-");
    let shared = Arc::new(OpenLoop {
        agent: agent_a.clone(),
        template: template.clone(),
        id_prefix: prefix.clone(),
        connections,
        t0,
        sent_ns: (0..len).map(|_| AtomicU64::new(0)).collect(),
        accepted: (0..len).map(|_| AtomicBool::new(false)).collect(),
        measured_first: schedule.count_before(warmup),
        stats: Mutex::new(OpenLoopStats {
            push: WorkerStats::new(),
            lag: Histogram::new(),
        }),
    });

    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    let mut tasks = JoinSet::new();
    let mut usage_start = None;
    let mut rss = None;
    for i in 0..sends {
        let due = t0 + schedule.offset(i);
        tokio::time::sleep_until(due).await;
        if i == shared.measured_first {
            usage_start = Some(nodes.usage());
            let [a, b] = nodes.watched();
            rss = Some([RssSampler::start(a), RssSampler::start(b)]);
        }
        let permit = Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .map_err(doing("the in-flight limit closed"))?;
        tasks.spawn(send_scheduled(Arc::clone(&shared), i, due, permit));
        while tasks.try_join_next().is_some() {}
    }
    tokio::time::sleep_until(window.end).await;
    let [a_end, b_end, bench_end] = nodes.usage();
    let [a_start, b_start, bench_start] = usage_start.unwrap_or([None, None, None]);
    let [rss_a, rss_b] = match rss {
        Some([a, b]) => [a.finish().await, b.finish().await],
        None => [Vec::new(), Vec::new()],
    };
    let deadline = window.end + REQUEST_TIMEOUT + Duration::from_secs(5);
    while let Some(joined) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .map_err(|_| anyhow!("open-loop pushes did not finish in time"))?
    {
        joined.map_err(doing("an open-loop push panicked"))?;
    }
    nodes.check_running()?;

    let accepted_all = shared
        .accepted
        .iter()
        .filter(|a| a.load(Ordering::Relaxed))
        .count() as u64;
    let grace_end = window.end + ARRIVAL_GRACE;
    arrivals
        .wait_for(
            &prefix,
            accepted_all,
            grace_end.saturating_duration_since(Instant::now()),
            None,
        )
        .await;
    nodes.check_running()?;

    let seen = arrivals.with_prefix(&prefix);
    let tally = tally_latency(
        (0..len).map(|i| {
            let sent = t0 + Duration::from_nanos(shared.sent_ns[i].load(Ordering::Relaxed));
            let accepted = shared.accepted[i].load(Ordering::Relaxed);
            let seen = accepted
                .then(|| seen.get(&format!("{prefix}{i}")).copied())
                .flatten();
            SendRecord {
                accepted,
                sent,
                seen: seen.filter(|at| *at <= grace_end),
            }
        }),
        usize::try_from(shared.measured_first)?,
    );
    let stats = shared.lock_stats();
    let measured_s = window.seconds();
    let latency_ms = LatencyMs::from_histogram(&tally.latency);
    let scheduled = sends - shared.measured_first;
    Ok(LatencyReport {
        rate_per_s: rate,
        measured_s,
        tcp_connections,
        in_flight_max,
        scheduled,
        accepted: stats.push.accepted,
        accepted_per_s: stats.push.accepted as f64 / measured_s,
        arrived: tally.arrived,
        never_arrived: tally.never_arrived,
        never_arrived_warmup: tally.never_arrived_warmup,
        grace_s: ARRIVAL_GRACE.as_secs(),
        target_p99_ms: TARGET_P99_MS,
        target_met: tally.never_arrived == 0
            && tally.arrived > 0
            && latency_ms.p99.is_some_and(|p99| p99 < TARGET_P99_MS),
        latency_ms,
        push_latency_ms: LatencyMs::from_histogram(&stats.push.latency),
        send_lag_ms: LatencyMs::from_histogram(&stats.lag),
        errors_total: stats.push.errors_total(),
        errors: stats.push.errors.clone(),
        reconnects: stats.push.reconnects,
        node_a: NodeUsage::between(a_start, a_end, measured_s, stats.push.accepted),
        node_b: NodeUsage::between(b_start, b_end, measured_s, tally.arrived),
        bench_cpu_percent: NodeUsage::between(bench_start, bench_end, measured_s, 0)
            .map(|u| u.cpu_percent),
        rss_a_mib: rss_a,
        rss_b_mib: rss_b,
    })
}

/// One open-loop send, for [`tally_latency`].
struct SendRecord {
    /// A answered `202`.
    accepted: bool,
    /// When the push was sent.
    sent: Instant,
    /// When a pull at B first returned it, if within the grace period.
    seen: Option<Instant>,
}

/// The latency phase's outcome.
#[derive(Debug)]
struct LatencyTally {
    /// Measured, accepted and pulled at B.
    arrived: u64,
    /// Measured and accepted, never pulled.
    never_arrived: u64,
    /// Accepted during the warm-up, never pulled.
    never_arrived_warmup: u64,
    /// Push-to-pullable latency of the measured arrivals, µs.
    latency: Histogram,
}

/// Tallies the sends in order; those before index `measured_first` are warm-up (only
/// their losses are counted). Sends A did not accept are not expected at B.
fn tally_latency(records: impl Iterator<Item = SendRecord>, measured_first: usize) -> LatencyTally {
    let mut tally = LatencyTally {
        arrived: 0,
        never_arrived: 0,
        never_arrived_warmup: 0,
        latency: Histogram::new(),
    };
    for (i, record) in records.enumerate() {
        if !record.accepted {
            continue;
        }
        let measured = i >= measured_first;
        match record.seen {
            Some(seen) if measured => {
                tally.arrived += 1;
                tally
                    .latency
                    .record(micros(seen.saturating_duration_since(record.sent)));
            }
            Some(_) => {}
            None if measured => tally.never_arrived += 1,
            None => tally.never_arrived_warmup += 1,
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_offsets_follow_the_rate() {
        let s = Schedule::new(1000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(1000), Duration::from_secs(1));
        assert_eq!(s.offset(12_345), Duration::from_micros(12_345_000));
        // Not a divisor of 10⁹: rounded down to the nanosecond, never drifting.
        let s = Schedule::new(3);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(2), Duration::from_nanos(666_666_666));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        assert_eq!(s.offset(3_000), Duration::from_secs(1000));
        // A rate of 0 is treated as 1/s instead of dividing by zero.
        assert_eq!(Schedule::new(0).offset(2), Duration::from_secs(2));
    }

    #[test]
    fn schedule_counts_sends_due_before_an_instant() {
        let s = Schedule::new(1000);
        assert_eq!(s.count_before(Duration::ZERO), 0);
        assert_eq!(s.count_before(Duration::from_nanos(1)), 1);
        assert_eq!(s.count_before(Duration::from_millis(1)), 1);
        assert_eq!(s.count_before(Duration::from_nanos(1_000_001)), 2);
        // 2 s warm-up + 10 s measured at 1000/s: 12,000 sends, the first 2,000 warm-up.
        assert_eq!(s.count_before(Duration::from_secs(12)), 12_000);
        assert_eq!(s.count_before(Duration::from_secs(2)), 2_000);
        assert_eq!(Schedule::new(3).count_before(Duration::from_secs(1)), 3);
        assert_eq!(Schedule::new(7).count_before(Duration::from_secs(10)), 70);
    }

    #[test]
    fn schedule_count_and_offset_agree() {
        for rate in [1, 3, 7, 999, 1000, 1001, 4096, 100_000] {
            let s = Schedule::new(rate);
            let mut previous = None;
            for i in (0..5_000).chain([123_456, 9_999_999]) {
                let at = s.offset(i);
                // Send i is the first one due at or after its own offset …
                assert_eq!(s.count_before(at), i, "rate {rate}, send {i}");
                // … and is due before anything later.
                assert_eq!(s.count_before(at + Duration::from_nanos(1)), i + 1);
                if let Some(previous) = previous {
                    assert!(
                        at > previous,
                        "rate {rate}: send {i} not after send {}",
                        i - 1
                    );
                }
                previous = (i < 5_000).then_some(at);
            }
        }
    }
    #[test]
    fn latency_tally_counts_measured_sends_only() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let record = |accepted, sent, seen| SendRecord {
            accepted,
            sent,
            seen,
        };
        let records = vec![
            // warm-up: one arrived, one lost, one refused by A
            record(true, ms(0), Some(ms(900))),
            record(true, ms(1), None),
            record(false, ms(2), None),
            // measured
            record(true, ms(10), Some(ms(15))),
            record(true, ms(11), Some(ms(31))),
            record(true, ms(12), None),
            record(false, ms(13), None),
            record(true, ms(14), Some(ms(17))),
        ];
        let tally = tally_latency(records.into_iter(), 3);
        assert_eq!(tally.arrived, 3);
        assert_eq!(tally.never_arrived, 1);
        assert_eq!(tally.never_arrived_warmup, 1);
        assert_eq!(tally.latency.total, 3);
        // 3 ms, 5 ms, 20 ms (the warm-up's 900 ms is not counted)
        assert_eq!(tally.latency.max_us, 20_000);
        let p50 = tally.latency.quantile(0.5).expect("p50");
        assert!((5_000..=5_000 + 5_000 / 64).contains(&p50), "{p50}");
    }
}
