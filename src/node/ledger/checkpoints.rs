//! Evidence against rollback: this node's signed checkpoints of its audit chain, the newest
//! checkpoint of each peer, what contradicts it, and the newest federation directory loaded.
//!
//! Invariants enforced here:
//! - a federated node signs a checkpoint in the same write as the entries it covers, once
//!   `every` entries accumulated since the last one, or on request when the chain grew;
//! - each checkpoint names the one this node issued before it (`prev`: the newest durable
//!   one, which `anchor` keeps outside the store too), so this node's checkpoints form one
//!   chain;
//! - a peer's checkpoint replaces the one held only if it *extends* it
//!   (`core::audit::follow`: its `prev` chain reaches the one held, through the checkpoints
//!   the peer sent along); one that contradicts it is refused with
//!   [`LedgerError::PeerRollback`], the held one stays, and the pair is kept as evidence
//!   (at most [`EVIDENCE_PER_PEER_MAX`] per peer); one that cannot be linked yet is left
//!   until the peer sends the checkpoints in between;
//! - evidence a peer reports against this node is kept only if both checkpoints are this
//!   node's own (its key) and contradict each other: a peer cannot make it up.

use super::group::Group;
use super::{LedgerError, Writer};
use crate::core::audit::{self, Checkpoint, Evidence, Link, Prev};
use crate::core::identity::CenterId;
use crate::node::store::DirectorySeen;

/// Most contradictions kept as evidence per peer. The first ones are what matters; a peer
/// whose log forked goes on sending checkpoints that contradict, and each is logged.
pub const EVIDENCE_PER_PEER_MAX: usize = 32;

impl Writer {
    /// Length of the chain the latest durable checkpoint covers.
    fn checkpointed_len(&self) -> u64 {
        self.checkpoint.borrow().as_ref().map_or(0, |c| c.length)
    }

    /// True if `every` entries accumulated since the last checkpoint.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|policy| {
            self.head.next_seq >= self.checkpointed_len().saturating_add(policy.every)
        })
    }

    /// Asks for a checkpoint in this group if the chain grew since the last one; 1 if so.
    pub(super) fn request_checkpoint(&self, g: &mut Group) -> usize {
        let grew = self.checkpoints.is_some() && self.head.next_seq > self.checkpointed_len();
        g.checkpoint_requested |= grew;
        usize::from(grew)
    }

    /// Signs the chain as it stands after the group's entries, in the group's write, as
    /// the checkpoint after the newest durable one.
    pub(super) fn sign_checkpoint(&mut self, g: &mut Group) {
        let Some(policy) = &self.checkpoints else {
            return;
        };
        if self.head.next_seq == 0 {
            return;
        }
        let prev = self
            .checkpoint
            .borrow()
            .as_ref()
            .map_or_else(Prev::genesis, Prev::of);
        let checkpoint =
            Checkpoint::sign(&policy.key, policy.node.as_str(), &self.head, &g.at, prev);
        g.writes.put_checkpoint(&checkpoint);
        g.checkpoint = Some(checkpoint);
    }

    /// Judges what `peer` sent of its checkpoints (`links`, oldest first, then `latest`;
    /// signatures already checked) against the newest one held of it: keeps the newest
    /// that extends it, and refuses a contradiction, keeping it as evidence.
    pub(super) fn peer_checkpoints(
        &mut self,
        peer: CenterId,
        links: Vec<Checkpoint>,
        latest: Checkpoint,
        g: &mut Group,
    ) -> Result<Link, LedgerError> {
        let held = match g.peer_checkpoints.get(&peer) {
            Some(c) => Some(c.clone()),
            None => self.store.peer_checkpoint(&peer)?,
        };
        let followed = audit::follow(held.as_ref(), &links, &latest);
        if let Some(keep) = followed.keep {
            g.writes.put_peer_checkpoint(&peer, &keep);
            g.peer_checkpoints.insert(peer.clone(), keep);
        }
        match followed.outcome {
            Ok(link) => Ok(link),
            Err(contradiction) => {
                self.keep_evidence(&peer, Evidence::of(&contradiction, &g.at), g)?;
                Err(LedgerError::PeerRollback(contradiction.divergence))
            }
        }
    }

    /// Keeps what `peer` reported holding against this node: each piece that holds two of
    /// this node's own checkpoints (signed with its key) that contradict each other. Returns
    /// how many were new. Anything else is not evidence and is left out.
    pub(super) fn reported_evidence(
        &mut self,
        peer: &CenterId,
        evidence: Vec<Evidence>,
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        let Some(policy) = &self.checkpoints else {
            return Ok(0);
        };
        let (own, key) = (policy.node.clone(), policy.key.public_key());
        let mut new = 0;
        for e in evidence {
            let ours = |c: &Checkpoint| c.node == own.as_str() && c.verify(&key);
            let contradicts = audit::follow(Some(&e.held), &[], &e.refused)
                .outcome
                .is_err();
            if !(ours(&e.held) && ours(&e.refused) && contradicts) {
                tracing::warn!(%peer, "evidence reported against this node does not hold");
                continue;
            }
            new += usize::from(self.keep_evidence(&own, e, g)?);
        }
        Ok(new)
    }

    /// Keeps `evidence` against `center` unless the same refused checkpoint is kept already
    /// or [`EVIDENCE_PER_PEER_MAX`] are (counted in what is durable: one group may add a
    /// few more). True if kept now.
    fn keep_evidence(
        &mut self,
        center: &CenterId,
        evidence: Evidence,
        g: &mut Group,
    ) -> Result<bool, LedgerError> {
        let digest = evidence.refused.digest();
        let known = self.store.peer_evidence(center)?;
        if known.len() >= EVIDENCE_PER_PEER_MAX
            || known.iter().any(|e| e.refused.digest() == digest)
        {
            return Ok(false);
        }
        g.writes.put_peer_evidence(center, &evidence);
        Ok(true)
    }

    /// Records the newest federation directory loaded.
    pub(super) fn record_directory(
        &mut self,
        seen: &DirectorySeen,
        g: &mut Group,
    ) -> Result<(), LedgerError> {
        g.writes.put_directory_seen(seen);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
