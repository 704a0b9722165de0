//! The soak's one source of randomness: SplitMix64, seeded once. Every task (each pusher,
//! each puller, the killer) gets its own generator split off the run's seed in a fixed
//! order, so a seed repeats every random choice (which node dies, when, which push is
//! retried) even though the threads interleave differently from run to run.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for choosing moments and
/// nodes, and no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A new generator seeded from this one (for another task).
    pub fn split(&mut self) -> Rng {
        Rng(self.next_u64())
    }

    /// Uniform in `low..=high` (`low` if `high < low`).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        let span = high - low + 1;
        // The modulo bias is below 2^-40 for the spans used here (milliseconds).
        low + self.next_u64() % span
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u8) -> bool {
        self.next_u64() % 100 < u64::from(percent)
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_repeats_its_sequence_and_bounds_hold() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..100).map(|_| rng.between(50, 2000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(7).iter().all(|ms| (50..=2000).contains(ms)));
        assert_eq!(Rng::new(1).between(5, 5), 5);
        assert_eq!(Rng::new(1).between(5, 3), 5);
        let mut rng = Rng::new(3);
        assert!(!(0..1000).any(|_| rng.percent(0)));
        assert!((0..1000).all(|_| rng.percent(100)));
    }
}
