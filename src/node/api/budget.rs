//! The body budget: how many bytes of request bodies the node buffers at once, in all and
//! per certificate identity.
//!
//! The per-request limit (`limits.body_bytes_max`, 413) bounds one body; it does not bound
//! how many are buffered together: 4,096 connections × 256 HTTP/2 streams × 1 MiB is far
//! beyond any host's memory, and one agency alone holds 64 connections. A body is read only
//! with a [`Grant`] of this budget: its declared `Content-Length` taken before the first
//! byte, or (streamed, without one) each frame's bytes before the frame is kept. A request
//! that finds the budget exhausted is answered 503 `busy` with `Retry-After` at once, its
//! body left unread.
//!
//! Invariants, enforced here:
//! - the bytes granted never exceed `node_bytes_max` in all, nor `identity_bytes_max` for
//!   one identity (connections without a plusgate identity count against the node's only;
//!   every endpoint refuses them before reading a body anyway);
//! - a grant is an owned value; dropping it gives its bytes back, however the request ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::core::identity::Identity;

/// Why a grant could not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    /// The node buffers `body_budget_bytes` already: the node is busy, not the caller at
    /// fault.
    #[error("the node is buffering as many request bodies as it may")]
    Node,
    /// This identity's bodies take `body_budget_identity_bytes` already: likely the
    /// caller's doing (too many large requests at once).
    #[error("this identity is sending as many request bodies at once as it may")]
    Identity,
}

/// The budget, shared by every connection.
#[derive(Debug)]
pub struct BodyBudget {
    node_bytes_max: usize,
    identity_bytes_max: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    node: usize,
    /// Only identities holding bytes now: an entry goes with its last byte.
    by_identity: HashMap<Identity, usize>,
}

/// Bytes of the budget held for one request body; given back when dropped.
#[derive(Debug)]
pub struct Grant {
    budget: Arc<BodyBudget>,
    identity: Option<Identity>,
    bytes: usize,
}

impl BodyBudget {
    /// At most `node_bytes_max` bytes buffered, `identity_bytes_max` of them for one
    /// identity.
    pub fn new(node_bytes_max: usize, identity_bytes_max: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            node_bytes_max,
            identity_bytes_max,
            held: Mutex::new(Held::default()),
        })
    }

    /// An empty grant for a body of `identity`'s; it takes bytes with [`Grant::grow`].
    pub fn grant(self: &Arc<Self>, identity: Option<Identity>) -> Grant {
        Grant {
            budget: Arc::clone(self),
            identity,
            bytes: 0,
        }
    }

    /// Bytes held now, in all.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).node
    }
}

impl Grant {
    /// Bytes this grant holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `bytes` more, or nothing if either bound would be passed.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Exhausted> {
        let budget = &self.budget;
        let mut held = budget.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.node.saturating_add(bytes) > budget.node_bytes_max {
            return Err(Exhausted::Node);
        }
        if let Some(identity) = &self.identity {
            let mine = held.by_identity.get(identity).copied().unwrap_or(0);
            if mine.saturating_add(bytes) > budget.identity_bytes_max {
                return Err(Exhausted::Identity);
            }
            *held.by_identity.entry(identity.clone()).or_insert(0) += bytes;
        }
        held.node += bytes;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut held = self.budget.held.lock().unwrap_or_else(|e| e.into_inner());
        // Invariant: what this grant took is counted in `held` until now.
        held.node = held.node.saturating_sub(self.bytes);
        if let Some(identity) = &self.identity {
            if let Some(n) = held.by_identity.get_mut(identity) {
                *n = n.saturating_sub(self.bytes);
                if *n == 0 {
                    held.by_identity.remove(identity);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::AgencyId;

    fn agency(name: &str) -> Option<Identity> {
        Some(Identity::Agency(
            AgencyId::parse(&format!("suwon/{name}")).expect("agency id"),
        ))
    }

    #[test]
    fn an_identity_takes_at_most_its_share_and_gets_it_back_on_drop() {
        let budget = BodyBudget::new(100, 60);
        let mut first = budget.grant(agency("employment"));
        first.grow(50).expect("within both bounds");
        let mut second = budget.grant(agency("employment"));
        assert_eq!(second.grow(20), Err(Exhausted::Identity));
        // Another identity is bounded by what the node has left.
        let mut other = budget.grant(agency("welfare"));
        assert_eq!(other.grow(60), Err(Exhausted::Node));
        other.grow(50).expect("the node's rest");
        drop(first);
        second.grow(20).expect("the first grant's bytes came back");
        assert_eq!(budget.held(), 70);
        drop((second, other));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_refused_growth_takes_nothing() {
        let budget = BodyBudget::new(10, 10);
        let mut grant = budget.grant(None);
        grant.grow(6).expect("fits");
        assert_eq!(grant.grow(5), Err(Exhausted::Node));
        grant.grow(4).expect("the refused bytes were not taken");
        assert_eq!(budget.held(), 10);
    }
}
