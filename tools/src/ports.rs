//! Free loopback ports, for federations whose nodes must listen where the signed directory
//! says (an ephemeral port cannot be named in advance).

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// First port handed out. The range lies below Linux's ephemeral range (32768–60999), so
/// no outgoing connection takes a port between the check here and the node's bind.
pub const PORT_FIRST: u16 = 20_000;

/// End (exclusive) of the ports handed out.
pub const PORT_END: u16 = 32_000;

/// Candidates tried before giving up.
const ATTEMPTS_MAX: u64 = 1000;

/// A base port such that `base .. base + count` are free on 127.0.0.1 now, in
/// [`PORT_FIRST`]..[`PORT_END`]. Candidates are spread by process id and a counter, so
/// parallel tests (one process, many threads) and concurrent benches rarely try the same.
pub fn free_port_range(count: u16) -> Result<u16, Error> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let no_ports = Error::NoFreePorts {
        count,
        first: PORT_FIRST,
        end: PORT_END,
    };
    if count == 0 || count > PORT_END - PORT_FIRST {
        return Err(no_ports);
    }
    let spread = u64::from(std::process::id()) * 50;
    for _ in 0..ATTEMPTS_MAX {
        let step = NEXT.fetch_add(u64::from(count) + 1, Ordering::Relaxed);
        let base = port_candidate(spread.wrapping_add(step), count);
        let free = (0..count).all(|i| TcpListener::bind((Ipv4Addr::LOCALHOST, base + i)).is_ok());
        if free {
            return Ok(base);
        }
    }
    Err(no_ports)
}

/// The base port `seed` picks: `base .. base + count` lies in [`PORT_FIRST`]..[`PORT_END`];
/// `count` must be 1 ..= `PORT_END - PORT_FIRST`.
fn port_candidate(seed: u64, count: u16) -> u16 {
    let span = u64::from(PORT_END - PORT_FIRST - count + 1);
    PORT_FIRST + (seed % span) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_candidates_stay_in_range() {
        for count in [1u16, 2, 3] {
            for seed in (0..20_000u64).chain([u64::MAX, u64::MAX - 1, 1 << 40]) {
                let base = port_candidate(seed, count);
                assert!(base >= PORT_FIRST, "{seed}");
                assert!(base + count <= PORT_END, "{seed}: {base}+{count}");
            }
        }
        // Every base in the range can come up.
        let span = u64::from(PORT_END - PORT_FIRST - 2 + 1);
        assert_eq!(port_candidate(0, 2), PORT_FIRST);
        assert_eq!(port_candidate(span - 1, 2), PORT_END - 2);
        assert_eq!(port_candidate(span, 2), PORT_FIRST);
    }

    #[test]
    fn free_ranges_lie_in_range_and_impossible_counts_are_refused() {
        let base = free_port_range(3).expect("three free ports");
        assert!((PORT_FIRST..PORT_END - 2).contains(&base));
        assert!(free_port_range(0).is_err());
        assert!(free_port_range(PORT_END - PORT_FIRST + 1).is_err());
    }
}
