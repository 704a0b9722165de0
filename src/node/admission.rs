//! Admission: which connections the node holds, and for how long, before and after
//! authentication.
//!
//! Before its TLS handshake, a TCP connection must find a token in its source address's
//! **handshake rate** ([`AddressRate`], `limits.handshakes_per_address_per_s` after a burst
//! of `limits.handshakes_per_address_burst`), else it is closed at once: a handshake is the
//! costliest work a client can cause before it is authenticated, and this bounds how much
//! of it one source can cause a second.
//!
//! A connection then passes two budgets. While it is in the TLS handshake it holds a slot
//! of the small **handshake budget** (`limits.handshakes_max`) and nothing else; a TCP
//! connection that finds that budget full is closed at once. Once the client certificate is verified,
//! the connection gives the handshake slot back and takes one of `limits.connections_max`
//! and one of its identity's `limits.connections_per_identity_max` ([`IdentitySlots`]); if
//! either is full the connection is closed right after the handshake (the client sees the
//! connection end before any answer, and should retry later). A connection then lives while
//! it has an open request, or until it has been idle (no open request) for
//! `limits.idle_timeout_ms` ([`Activity`]).
//!
//! Architecture invariants, enforced here and in the accept loop (`node/mod.rs`):
//! - an unauthenticated connection never holds a slot of `connections_max`, so a flood of
//!   slow or never-finished handshakes cannot take authenticated clients' slots;
//! - one identity never holds more than `connections_per_identity_max` connections;
//! - one source address (an IPv6 /64) never starts more than its burst plus its rate's
//!   worth of handshakes, and the rate's state is at most [`ADDRESSES_MAX`] addresses;
//! - no connection stays open without an open request for longer than the idle timeout
//!   (HTTP/2 keep-alive pings find dead peers while requests are open), nor with open
//!   requests none of which started or ended for the stall bound (`connection`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::identity::Identity;

/// Refused connections are logged at most once per this period, with their count: a flood
/// must not turn into a flood of log lines.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// File descriptors the node needs besides its connections: the store's files, the log,
/// the listener, connections to peer nodes. A generous estimate; used only to warn.
pub const OTHER_FILES_MAX: u64 = 256;

/// Source addresses whose handshake rate the node tracks at once (a few MiB). An attacker
/// with more addresses than this (an IPv6 /48 has 65,536 /64s) cannot grow the map: once
/// it is full, addresses whose bucket has refilled are forgotten, and until some have, a
/// connection from an address not tracked is closed at once (the handshake budget and the
/// authenticated connections are untouched).
pub const ADDRESSES_MAX: usize = 65_536;

/// What identifies one source of connections: an IPv4 address, or the /64 network of an
/// IPv6 address (one host, or one site, can use any address of its /64, so a per-address
/// bound keyed on the whole address would bound nothing). An IPv4-mapped IPv6 address
/// counts as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// The first four segments (the /64) of an IPv6 address.
    V6Net([u16; 4]),
}

impl Source {
    /// The source `ip` belongs to.
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                Source::V6Net([a, b, c, d])
            }
        }
    }
}

/// The per-source handshake rate: a token bucket per [`Source`], `burst` tokens deep,
/// refilled at `per_s` a second; each handshake takes a token, and a connection that finds
/// none is closed before its handshake.
#[derive(Debug)]
pub struct AddressRate {
    per_s: f64,
    burst: f64,
    /// How long an empty bucket takes to refill: a bucket untouched this long is full, and
    /// forgetting it changes nothing.
    refill: Duration,
    state: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<Source, Bucket>,
    /// When full buckets were last forgotten (at most once per `refill`, so an attacker who
    /// keeps the map full cannot make every connection scan it).
    pruned: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AddressRate {
    /// `per_s` handshakes a second per source after a burst of `burst`; `None` if `per_s`
    /// is 0 (no per-address limit).
    pub fn new(per_s: u32, burst: u32) -> Option<AddressRate> {
        if per_s == 0 {
            return None;
        }
        let (per_s, burst) = (f64::from(per_s), f64::from(burst.max(1)));
        Some(AddressRate {
            per_s,
            burst,
            refill: Duration::from_secs_f64(burst / per_s),
            state: Mutex::new(Buckets::default()),
        })
    }

    /// Takes a handshake token of `ip`'s source at `now`; false if it has none left (or if
    /// it is not tracked and the map is full of sources still refilling).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let source = Source::of(ip);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = state.map.get_mut(&source) {
            let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_s;
            bucket.tokens = (bucket.tokens + refilled).min(self.burst);
            bucket.at = now;
            if bucket.tokens < 1.0 {
                return false;
            }
            bucket.tokens -= 1.0;
            return true;
        }
        if state.map.len() >= ADDRESSES_MAX && !self.prune(&mut state, now) {
            return false;
        }
        state.map.insert(
            source,
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        true
    }

    /// Forgets the sources whose bucket is full again, if that was not done within the last
    /// `refill`; whether the map has room now.
    fn prune(&self, state: &mut Buckets, now: Instant) -> bool {
        if state
            .pruned
            .is_none_or(|last| now.saturating_duration_since(last) >= self.refill)
        {
            state.pruned = Some(now);
            let (per_s, burst) = (self.per_s, self.burst);
            state.map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_s < burst
            });
        }
        state.map.len() < ADDRESSES_MAX
    }

    /// Sources tracked now (for the bound's test).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }
}

/// Why a connection that completed its handshake is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every slot of `connections_max` is taken (by authenticated clients).
    #[error("connections_max reached")]
    NodeFull,
    /// This identity already holds `connections_per_identity_max` connections. Likely the
    /// client's doing (a pool without a bound, or connections leaked).
    #[error("connections_per_identity_max reached for this identity")]
    IdentityFull,
}

/// Counts the connections of each identity, up to a bound.
#[derive(Debug)]
pub struct IdentitySlots {
    max: usize,
    held: Mutex<HashMap<Identity, usize>>,
}

/// One connection's place in its identity's count; given back when dropped.
#[derive(Debug)]
pub struct IdentitySlot {
    slots: Arc<IdentitySlots>,
    identity: Identity,
}

impl IdentitySlots {
    /// At most `max` connections per identity.
    pub fn new(max: usize) -> Arc<IdentitySlots> {
        Arc::new(IdentitySlots {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for `identity`, or refuses if it holds `max` already.
    pub fn take(self: &Arc<Self>, identity: &Identity) -> Result<IdentitySlot, Refusal> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(identity.clone()).or_insert(0);
        if *n >= self.max {
            return Err(Refusal::IdentityFull);
        }
        *n += 1;
        Ok(IdentitySlot {
            slots: Arc::clone(self),
            identity: identity.clone(),
        })
    }

    /// Connections `identity` holds now.
    pub fn held(&self, identity: &Identity) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(identity).copied().unwrap_or(0)
    }
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        // Invariant: an entry exists with a count ≥ 1 while a slot of it lives; the entry
        // goes with its last slot so the map holds only identities connected now.
        if let Some(n) = held.get_mut(&self.identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.identity);
            }
        }
    }
}

/// The open requests of one connection, looked at now and then to close it when idle.
///
/// Why counters and a clock instead of a channel: a request's start and end happen on the
/// hot path, thousands of times a second per node. Waking the connection's idle watcher at
/// each (a `watch` send, then a new timer) cost a thread wake-up per request and halved the
/// node's throughput; now they are two atomic operations, and the watcher wakes only once
/// per `timeout`, looking at when the connection was last busy.
#[derive(Debug, Clone)]
pub struct Activity {
    inner: Arc<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    /// Requests open now.
    open: AtomicUsize,
    /// When a request last started or ended, in milliseconds since `epoch`.
    last_ms: AtomicU64,
    /// Whether any request has started on the connection.
    started: std::sync::atomic::AtomicBool,
    epoch: Instant,
}

/// One open request; the connection is not idle while it lives. It lives until the
/// response body is sent (or dropped), so a long answer or a long poll counts as open.
#[derive(Debug)]
pub struct InFlight {
    inner: Arc<ActivityState>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            inner: Arc::new(ActivityState {
                open: AtomicUsize::new(0),
                last_ms: AtomicU64::new(0),
                started: std::sync::atomic::AtomicBool::new(false),
                epoch: Instant::now(),
            }),
        }
    }
}

impl ActivityState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }
}

impl Activity {
    /// Marks a request open until the returned guard is dropped.
    pub fn begin(&self) -> InFlight {
        // Touch first: a watcher that still reads no open request then sees a fresh time.
        self.inner.touch();
        self.inner.started.store(true, Ordering::Relaxed);
        self.inner.open.fetch_add(1, Ordering::AcqRel);
        InFlight {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Completes once the connection has had no open request for `idle` without a break
    /// (any request that starts or ends starts the wait again), or has had open requests
    /// of which none started or ended for `stall`: requests that make no progress, such as
    /// answers a client never lets the node send (an HTTP/2 window held at zero).
    pub async fn idle_or_stalled_for(&self, idle: Duration, stall: Duration) -> Quiet {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (idle_ms, stall_ms) = (ms(idle), ms(stall));
        let mut wait = idle.min(stall);
        loop {
            tokio::time::sleep(wait).await;
            let state = &self.inner;
            let open = state.open.load(Ordering::Acquire) > 0;
            let bound_ms = if open { stall_ms } else { idle_ms };
            let quiet_ms = state
                .now_ms()
                .saturating_sub(state.last_ms.load(Ordering::Relaxed));
            if quiet_ms >= bound_ms {
                return if open { Quiet::Stalled } else { Quiet::Idle };
            }
            // Woken again when the bound would be reached if nothing happens, or when the
            // other bound would be (requests may end or start meanwhile).
            wait = Duration::from_millis((bound_ms - quiet_ms).min(idle_ms.min(stall_ms)).max(1));
        }
    }
}

impl Activity {
    /// Completes if no request has started `timeout` after the connection began (its
    /// first request head did not arrive in time: a slowloris, or a connection opened only
    /// to be held); never otherwise.
    pub async fn no_first_request_within(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
        if self.inner.started.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    }
}

/// How a connection went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// No open request for the idle timeout.
    Idle,
    /// Open requests, none of which started or ended for the stall bound.
    Stalled,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner.touch();
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Logs refused connections at most once per [`REFUSAL_LOG_EVERY`], with how many there
/// were since the last line.
#[derive(Debug)]
pub struct RefusalLog {
    what: &'static str,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    /// A log of refusals for `what` (e.g. "handshake budget full").
    pub fn new(what: &'static str) -> RefusalLog {
        RefusalLog {
            what,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one refusal; logs if the last line is old enough.
    pub fn refused(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 += 1;
        let now = Instant::now();
        if state.0.is_none_or(|last| now - last >= REFUSAL_LOG_EVERY) {
            tracing::info!(
                refused = state.1,
                reason = self.what,
                "connections closed at once (logged at most every {} s)",
                REFUSAL_LOG_EVERY.as_secs()
            );
            *state = (Some(now), 0);
        }
    }
}

/// Raises the soft limit of open files to the hard limit, logs it, and warns if it is below
/// `needed` (the connection budgets plus [`OTHER_FILES_MAX`]): past the limit `accept`
/// fails and the store cannot open files.
pub fn raise_open_files_limit(needed: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let raised = if limit.current != limit.maximum {
        let wanted = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => getrlimit(Resource::Nofile),
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the open-files limit");
                limit
            }
        }
    } else {
        limit
    };
    // `None` is unlimited.
    let soft = raised.current.unwrap_or(u64::MAX);
    tracing::info!(open_files_max = soft, "open-files limit");
    if soft < needed {
        tracing::warn!(
            open_files_max = soft,
            needed,
            "the open-files limit is below connections_max + handshakes_max + the store's \
             files: raise the hard limit (e.g. LimitNOFILE=) or lower the budgets"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::AgencyId;

    fn agency(name: &str) -> Identity {
        Identity::Agency(AgencyId::parse(&format!("suwon/{name}")).expect("agency id"))
    }

    #[test]
    fn an_identity_holds_at_most_its_bound_and_gets_slots_back() {
        let slots = IdentitySlots::new(2);
        let a = agency("employment");
        let first = slots.take(&a).expect("first");
        let _second = slots.take(&a).expect("second");
        assert_eq!(slots.take(&a).err(), Some(Refusal::IdentityFull));
        // Another identity is not affected.
        let _other = slots.take(&agency("welfare")).expect("other identity");
        drop(first);
        assert_eq!(slots.held(&a), 1);
        let _third = slots.take(&a).expect("a slot came back");
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn an_address_gets_its_burst_then_its_rate() {
        let rate = AddressRate::new(10, 4).expect("a rate");
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(rate.admit(v4(1), t0));
        }
        assert!(!rate.admit(v4(1), t0), "past the burst");
        // Another address has its own bucket.
        assert!(rate.admit(v4(2), t0));
        // A tenth of a second later one token is back (10 a second), and only one.
        let later = t0 + Duration::from_millis(100);
        assert!(rate.admit(v4(1), later));
        assert!(!rate.admit(v4(1), later));
        // Never more than the burst, however long the address was quiet.
        let much_later = t0 + Duration::from_secs(3600);
        for _ in 0..4 {
            assert!(rate.admit(v4(1), much_later));
        }
        assert!(!rate.admit(v4(1), much_later));
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64_and_a_mapped_ipv4_its_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().expect("v6");
        let other_net: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(other_net));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("mapped");
        assert_eq!(Source::of(mapped), Source::of(v4(1)));

        let rate = AddressRate::new(1, 1).expect("a rate");
        let now = Instant::now();
        assert!(rate.admit(a, now));
        assert!(!rate.admit(b, now), "the same /64 shares one bucket");
        assert!(rate.admit(other_net, now));
    }

    #[test]
    fn no_rate_means_no_limit() {
        assert!(AddressRate::new(0, 64).is_none());
    }

    #[test]
    fn the_map_stays_bounded_and_forgets_refilled_sources() {
        let rate = AddressRate::new(1, 1).expect("a rate");
        let t0 = Instant::now();
        let many = |n: usize| {
            let n = u32::try_from(n).expect("fits");
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
        };
        for n in 0..ADDRESSES_MAX {
            assert!(rate.admit(many(n), t0));
        }
        // Full of sources still refilling: a new one is turned away, the map does not grow.
        assert!(!rate.admit(many(ADDRESSES_MAX), t0));
        assert_eq!(rate.tracked(), ADDRESSES_MAX);
        // Once their buckets are full again they are forgotten and a new source gets in.
        let refilled = t0 + Duration::from_secs(2);
        assert!(rate.admit(many(ADDRESSES_MAX), refilled));
        assert_eq!(rate.tracked(), 1);
    }

    #[tokio::test]
    async fn a_connection_is_idle_only_without_open_requests() {
        let idle_timeout = Duration::from_millis(50);
        let activity = Activity::default();
        let request = activity.begin();
        let idle = activity.idle_or_stalled_for(idle_timeout, Duration::from_secs(3600));
        tokio::pin!(idle);
        // An open request: never idle, however long it takes.
        let waited = tokio::time::timeout(idle_timeout * 4, &mut idle).await;
        assert!(waited.is_err(), "idle while a request is open");
        drop(request);
        let started = std::time::Instant::now();
        assert_eq!(idle.await, Quiet::Idle);
        assert!(started.elapsed() >= idle_timeout);
    }

    #[tokio::test]
    async fn a_connection_without_a_first_request_is_found() {
        let activity = Activity::default();
        let timeout = Duration::from_millis(20);
        activity.no_first_request_within(timeout).await;
        drop(activity.begin());
        let waited = tokio::time::timeout(timeout * 4, activity.no_first_request_within(timeout));
        assert!(
            waited.await.is_err(),
            "a connection that had a request is not headless"
        );
    }

    /// Regression (hostile clients): a request whose answer a client never lets the node
    /// send kept its connection open until `connection_age_max_s`, an hour.
    #[tokio::test]
    async fn open_requests_without_progress_are_stalled() {
        let stall = Duration::from_millis(50);
        let activity = Activity::default();
        let _stuck = activity.begin();
        let started = std::time::Instant::now();
        let quiet = activity
            .idle_or_stalled_for(Duration::from_secs(3600), stall)
            .await;
        assert_eq!(quiet, Quiet::Stalled);
        assert!(started.elapsed() >= stall);
    }
}
