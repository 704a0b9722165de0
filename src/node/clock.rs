//! Time as the node reads it: one [`Clock`], built by the composition root and handed to
//! every part that asks "what time is it" or "wait this long" for a rule (the ledger's
//! audit times, consent checks and retention schedule, the purge timer, the forwarders'
//! time to live and retry delays, the API's timestamps and reports).
//!
//! - [`SystemClock`]: the wall clock and tokio's timers, optionally shifted by a fixed
//!   offset (`[clock] danger_offset_s`), so a test can start a node "later" instead of
//!   waiting for a consent, a retention period or a time to live to run out.
//! - `ManualClock` (unit tests only): moves when the test says so.
//!
//! Architecture invariant: nothing under `node` reads the wall clock except
//! [`SystemClock::now`]; `core` never reads a clock (times are passed in, and
//! `core::time` formats them). Monotonic timers that are not rules (handshake and drain
//! timeouts, inbox leases, long polls, the checkpoint interval) stay on tokio's clock.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use time::OffsetDateTime;

/// A future that completes after a clock's sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the node gets "now" and its waits from.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> OffsetDateTime;

    /// Completes once `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> Sleep;

    /// Now as RFC 3339, UTC, milliseconds (see `core::time::rfc3339`).
    fn now_rfc3339(&self) -> String {
        crate::core::time::rfc3339(self.now())
    }
}

/// The wall clock, shifted by a fixed offset (zero in production), and tokio's timers.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    offset: time::Duration,
}

impl SystemClock {
    /// The wall clock as it is.
    pub fn new() -> SystemClock {
        SystemClock::shifted(time::Duration::ZERO)
    }

    /// The wall clock plus `offset` (negative: earlier). Only `[clock] danger_offset_s`
    /// asks for a non-zero offset.
    pub fn shifted(offset: time::Duration) -> SystemClock {
        SystemClock { offset }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

#[cfg(test)]
pub use manual::ManualClock;

#[cfg(test)]
mod manual {
    use super::*;
    use tokio::sync::watch;

    /// A clock that moves only when told to, for unit tests.
    ///
    /// Made with [`ManualClock::new`], time moves by [`ManualClock::advance`] and a sleep
    /// completes once the clock has been advanced past its end. Made with
    /// [`ManualClock::fast_forwarding`], each sleep moves the clock forward by its length and
    /// completes at once: hours of retries run in milliseconds.
    #[derive(Debug)]
    pub struct ManualClock {
        now: watch::Sender<OffsetDateTime>,
        fast_forward: bool,
    }

    impl ManualClock {
        /// A clock standing at `start`.
        pub fn new(start: OffsetDateTime) -> ManualClock {
            ManualClock {
                now: watch::Sender::new(start),
                fast_forward: false,
            }
        }

        /// A clock at `start` that jumps over every sleep.
        pub fn fast_forwarding(start: OffsetDateTime) -> ManualClock {
            ManualClock {
                fast_forward: true,
                ..ManualClock::new(start)
            }
        }

        /// Moves the clock forward by `d`, waking the sleeps that end by then.
        pub fn advance(&self, d: Duration) {
            self.now.send_modify(|now| *now += d);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> OffsetDateTime {
            *self.now.borrow()
        }

        fn sleep(&self, d: Duration) -> Sleep {
            if self.fast_forward {
                self.advance(d);
                return Box::pin(tokio::task::yield_now());
            }
            let end = self.now() + d;
            let mut now = self.now.subscribe();
            Box::pin(async move {
                // The clock gone (the test ended) ends the sleep too.
                let _ = now.wait_for(|now| *now >= end).await;
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[tokio::test]
    async fn a_sleep_ends_when_the_clock_is_advanced_past_it_and_not_before() {
        let clock = ManualClock::new(datetime!(2026-11-26 03:00 UTC));
        let mut sleep = tokio::spawn(clock.sleep(Duration::from_secs(60)));
        clock.advance(Duration::from_secs(59));
        let early = tokio::time::timeout(Duration::from_millis(50), &mut sleep).await;
        assert!(early.is_err(), "woke a second early");
        clock.advance(Duration::from_secs(1));
        sleep.await.expect("sleep ends");
        assert_eq!(clock.now(), datetime!(2026-11-26 03:01 UTC));
    }

    #[tokio::test]
    async fn a_fast_forwarding_clock_jumps_over_its_sleeps() {
        let clock = ManualClock::fast_forwarding(datetime!(2026-11-26 03:00 UTC));
        clock.sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_rfc3339(), "2026-11-26T04:00:00Z");
    }

    #[test]
    fn a_shifted_clock_runs_that_far_ahead_or_behind() {
        let ahead = SystemClock::shifted(time::Duration::hours(1)).now();
        let behind = SystemClock::shifted(time::Duration::hours(-1)).now();
        let real = SystemClock::new().now();
        let near =
            |a: OffsetDateTime, b: OffsetDateTime| (a - b).abs() < time::Duration::minutes(1);
        assert!(near(ahead, real + time::Duration::hours(1)));
        assert!(near(behind, real - time::Duration::hours(1)));
    }
}
