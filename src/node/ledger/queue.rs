//! The ledger's queue, bounded in bytes as well as in commands.
//!
//! The channel to the writer thread holds at most `QUEUE_LEN_MAX` commands, but a command
//! that carries messages (a push, a federation batch) can be a megabyte or thirty: 16,384
//! of them would be gigabytes. So such a command first takes its bytes from a
//! [`QueueBytes`] budget (`limits.ledger_queue_bytes_max`) and holds them until its group is
//! durable and answered: the bound covers what waits in the queue *and* the group being
//! written. A sender that finds no room waits (backpressure) up to [`QUEUE_WAIT_MAX`], then
//! gets [`LedgerError::Busy`] (503 with `Retry-After`).
//!
//! Invariants, enforced here:
//! - the bytes held by queued and uncommitted commands never exceed the bound; a command
//!   larger than the whole bound takes all of it, so it waits until it is alone rather
//!   than for ever;
//! - the bytes are an owned permit moved into the command, given back however it ends
//!   (answered, refused, or dropped with a stopped ledger).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::LedgerError;

/// Longest a sender waits for room in the queue before it is answered busy: long enough
/// to ride out a burst (a group commit takes milliseconds), short against a client's
/// timeout.
pub const QUEUE_WAIT_MAX: Duration = Duration::from_secs(5);

/// The byte budget of the ledger's queue.
#[derive(Debug, Clone)]
pub(super) struct QueueBytes {
    permits: Arc<Semaphore>,
    max: u32,
    wait_max: Duration,
}

/// Bytes of the queue held by one command; given back when dropped.
#[derive(Debug)]
pub(super) struct QueuedBytes(#[allow(dead_code)] OwnedSemaphorePermit);

impl QueueBytes {
    /// At most `max` bytes (capped at `u32::MAX`), a sender waiting at most `wait_max`.
    pub(super) fn new(max: usize, wait_max: Duration) -> QueueBytes {
        let max = u32::try_from(max).unwrap_or(u32::MAX).max(1);
        QueueBytes {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            wait_max,
        }
    }

    /// Takes `bytes` of the budget (all of it for a larger command), waiting for room up to
    /// the wait bound, then [`LedgerError::Busy`].
    pub(super) async fn take(&self, bytes: usize) -> Result<QueuedBytes, LedgerError> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.max);
        let permits = Arc::clone(&self.permits);
        match tokio::time::timeout(self.wait_max, permits.acquire_many_owned(n)).await {
            Ok(Ok(permit)) => Ok(QueuedBytes(permit)),
            // The semaphore is never closed; treat it like a stopped ledger.
            Ok(Err(_)) => Err(LedgerError::Stopped),
            Err(_) => Err(LedgerError::Busy),
        }
    }

    /// Bytes free now.
    #[cfg(test)]
    pub(super) fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short: these tests wait for real (tokio's test-util clock is not in the build).
    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_sender_waits_for_room_and_gets_it_when_bytes_come_back() {
        let queue = QueueBytes::new(100, WAIT * 10);
        let first = queue.take(80).await.expect("room");
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.take(40).await }
        });
        tokio::time::sleep(WAIT).await;
        assert!(!waiting.is_finished(), "40 more bytes than the bound fit");
        drop(first);
        let second = waiting.await.expect("task").expect("room after the first");
        assert_eq!(queue.available(), 60);
        drop(second);
        assert_eq!(queue.available(), 100);
    }

    #[tokio::test]
    async fn a_sender_that_finds_no_room_in_time_is_told_busy() {
        let queue = QueueBytes::new(100, WAIT);
        let _held = queue.take(100).await.expect("room");
        assert!(matches!(queue.take(1).await, Err(LedgerError::Busy)));
        assert_eq!(queue.available(), 0, "the refused sender took nothing");
    }

    #[tokio::test]
    async fn a_command_larger_than_the_bound_takes_it_all_instead_of_waiting_for_ever() {
        let queue = QueueBytes::new(100, WAIT);
        let whole = queue.take(1_000).await.expect("a large command alone");
        assert_eq!(queue.available(), 0);
        drop(whole);
        assert_eq!(queue.available(), 100);
    }
}
