//! Spreading CPU-bound work over a batch across the machine's cores, keeping order.
//!
//! Node-to-node batches carry hundreds of messages, each needing schema validation and an
//! Ed25519 signature (receiving side) or verification (sending side). Done one after the
//! other on one task, a batch occupies one core while the other idles, and the round trip
//! of every batch (hence forwarding throughput) pays for it.
//!
//! Scoped threads rather than a pool: batches are few per second, a thread costs a few tens
//! of microseconds against milliseconds of work, and scoped threads may borrow the batch.
//! Inside tokio's multi-threaded runtime the calling worker is handed over with
//! `block_in_place`, so other tasks keep running meanwhile.

/// Below this many items a batch is handled on the calling thread.
const PARALLEL_MIN: usize = 32;

/// `items.iter().map(f)`, in order, on up to as many threads as there are cores.
pub fn map_chunks<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let refs: Vec<&T> = items.iter().collect();
    map_owned(refs, f)
}

/// `items.into_iter().map(f)`, in order, on up to as many threads as there are cores.
pub fn map_owned<T, R, F>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len() / PARALLEL_MIN)
        .max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let run = move || {
        let chunk = items.len().div_ceil(threads);
        let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
        let mut items = items.into_iter();
        loop {
            let part: Vec<T> = items.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            parts.push(part);
        }
        let f = &f;
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .into_iter()
                .map(|part| scope.spawn(move || part.into_iter().map(f).collect::<Vec<R>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| match h.join() {
                    Ok(results) => results,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    };
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(run)
    } else {
        run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items_at_every_size() {
        for n in [0, 1, 31, 32, 33, 64, 1000, 1001] {
            let items: Vec<usize> = (0..n).collect();
            let doubled = map_chunks(&items, |i| i * 2);
            assert_eq!(
                doubled,
                items.iter().map(|i| i * 2).collect::<Vec<_>>(),
                "{n}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inside_the_multi_threaded_runtime_it_hands_the_worker_over() {
        let items: Vec<u64> = (0..500).collect();
        let sums = map_chunks(&items, |i| (0..*i).sum::<u64>());
        assert_eq!(sums[499], (0..499).sum::<u64>());
    }
}
