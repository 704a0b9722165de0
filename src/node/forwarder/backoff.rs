//! Exponential backoff with jitter and a cap, for a peer whose rounds fail; and the time
//! to live of a message waiting in an outbox.

use std::time::Duration;

use time::OffsetDateTime;

/// Exponential backoff with jitter and a cap.
///
/// After the n-th consecutive failure the delay is drawn uniformly from
/// `[d/2, d]` with `d = min(max, initial · 2^(n-1))`: doubling spreads retries out while a
/// peer is down, the cap bounds how late a recovered peer is noticed, and the jitter keeps
/// many nodes from retrying in lockstep after a shared outage.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Records a failure and returns the delay before the next attempt. `jitter` in
    /// `[0, 1]` picks the point in `[d/2, d]` (the caller supplies randomness, so tests can
    /// fix it).
    pub fn fail(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(32);
        let ceiling = self
            .initial
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        ceiling.mul_f64(0.5 + 0.5 * jitter)
    }

    /// A success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// True if a message accepted at `accepted_at` (RFC 3339) has outlived `ttl` at `now`.
/// An unreadable time counts as expired: such a record cannot be trusted to ever leave.
pub fn expired(accepted_at: &str, now: OffsetDateTime, ttl: Duration) -> bool {
    match crate::core::time::parse(accepted_at) {
        Some(at) => now - at > ttl,
        None => true,
    }
}

/// A random number in `[0, 1]` for jitter.
pub(super) fn jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX)
}
