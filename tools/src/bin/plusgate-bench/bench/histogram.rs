//! A log-linear latency histogram: bounded memory however long the run.

/// A log-linear histogram of microsecond values: exact below 128 µs, then 64 equal
/// sub-buckets per power of two, so a reported value is at most 1/64 above the true one.
/// Values are clamped to 2^38 µs (about 76 hours).
#[derive(Debug, Clone)]
pub(super) struct Histogram {
    counts: Vec<u64>,
    pub(super) total: u64,
    sum_us: u128,
    pub(super) max_us: u64,
}

impl Histogram {
    const SUB_BITS: u32 = 6;
    const SUB_LEN: u64 = 1 << Self::SUB_BITS;
    /// Values below this are counted exactly, one bucket each.
    const EXACT_LEN: u64 = 2 * Self::SUB_LEN;
    const EXPONENT_FIRST: u32 = Self::SUB_BITS + 1;
    const EXPONENT_END: u32 = 38;
    const VALUE_MAX: u64 = (1 << Self::EXPONENT_END) - 1;
    const BUCKETS_LEN: usize = (Self::EXACT_LEN
        + (Self::EXPONENT_END - Self::EXPONENT_FIRST) as u64 * Self::SUB_LEN)
        as usize;

    pub(super) fn new() -> Histogram {
        Histogram {
            counts: vec![0; Self::BUCKETS_LEN],
            total: 0,
            sum_us: 0,
            max_us: 0,
        }
    }

    fn index(value: u64) -> usize {
        let value = value.min(Self::VALUE_MAX);
        if value < Self::EXACT_LEN {
            return value as usize;
        }
        let exponent = 63 - value.leading_zeros();
        let sub = (value >> (exponent - Self::SUB_BITS)) & (Self::SUB_LEN - 1);
        (Self::EXACT_LEN + u64::from(exponent - Self::EXPONENT_FIRST) * Self::SUB_LEN + sub)
            as usize
    }

    /// The largest value that falls in bucket `index`.
    fn bucket_high(index: usize) -> u64 {
        let index = index as u64;
        if index < Self::EXACT_LEN {
            return index;
        }
        let exponent = (index - Self::EXACT_LEN) / Self::SUB_LEN + u64::from(Self::EXPONENT_FIRST);
        let sub = (index - Self::EXACT_LEN) % Self::SUB_LEN;
        let width = 1u64 << (exponent - u64::from(Self::SUB_BITS));
        (1u64 << exponent) + sub * width + width - 1
    }

    pub(super) fn record(&mut self, value_us: u64) {
        self.counts[Self::index(value_us)] += 1;
        self.total += 1;
        self.sum_us += u128::from(value_us);
        self.max_us = self.max_us.max(value_us);
    }

    pub(super) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The value at quantile `q` (0 < q ≤ 1) by the nearest-rank method, reported as
    /// its bucket's upper bound (never above the exact maximum); `None` when empty.
    pub(super) fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        // The epsilon keeps float error in `q * total` from moving an exact rank up by one.
        let rank = ((q * self.total as f64 - 1e-9).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::bucket_high(index).min(self.max_us));
            }
        }
        Some(self.max_us)
    }

    pub(super) fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_us as f64 / self.total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_exact_below_128_us() {
        for v in 0..128 {
            assert_eq!(Histogram::bucket_high(Histogram::index(v)), v);
        }
    }

    #[test]
    fn histogram_buckets_are_within_one_64th() {
        let mut v = 128u64;
        let mut previous = Histogram::index(127);
        while v < Histogram::VALUE_MAX {
            let index = Histogram::index(v);
            assert!(index == previous || index == previous + 1, "gap at {v}");
            let high = Histogram::bucket_high(index);
            assert!(high >= v, "{v} above its bucket {high}");
            assert!(high - v <= v / 64, "{v} → {high}");
            previous = index;
            v += 1 + v / 200;
        }
        let last = Histogram::index(Histogram::VALUE_MAX);
        assert_eq!(last, Histogram::BUCKETS_LEN - 1);
        assert_eq!(Histogram::bucket_high(last), Histogram::VALUE_MAX);
        assert_eq!(Histogram::index(u64::MAX), last);
    }

    #[test]
    fn bucket_edges_are_contiguous() {
        for index in Histogram::EXACT_LEN as usize..Histogram::BUCKETS_LEN - 1 {
            let high = Histogram::bucket_high(index);
            assert_eq!(Histogram::index(high), index);
            assert_eq!(Histogram::index(high + 1), index + 1);
        }
    }

    fn check_quantiles(values: &[u64], expected: &[(f64, Option<u64>)]) {
        let mut h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        for &(q, want) in expected {
            assert_eq!(h.quantile(q), want, "q={q} of {values:?}");
        }
    }

    #[test]
    fn quantiles_nearest_rank() {
        check_quantiles(&[], &[(0.5, None)]);
        check_quantiles(&[7], &[(0.5, Some(7)), (0.999, Some(7))]);
        check_quantiles(
            &(1..=100).collect::<Vec<_>>(),
            &[
                (0.5, Some(50)),
                (0.9, Some(90)),
                (0.99, Some(99)),
                (1.0, Some(100)),
            ],
        );
        // 1000 and 5000 are not bucket edges: reported as their bucket's upper bound,
        // except the maximum, which is exact.
        check_quantiles(
            &[10, 10, 10, 1000, 5000],
            &[(0.5, Some(10)), (0.7, Some(1007)), (0.999, Some(5000))],
        );
    }

    #[test]
    fn merge_adds_counts_and_keeps_max() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(5);
        b.record(3);
        b.record(200_000);
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.quantile(0.5), Some(5));
        assert_eq!(a.quantile(1.0), Some(200_000));
        assert_eq!(a.mean(), Some((5.0 + 3.0 + 200_000.0) / 3.0));
    }
}
