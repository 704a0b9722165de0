//! Evidence against rollback: this node's signed checkpoints of its audit chain, the newest
//! checkpoint of each peer, what contradicts it, and the newest federation directory loaded.
//!
//! Invariants enforced here:
//! - a federated node signs a checkpoint in the same write as the entries it covers, once
//!   `every` entries accumulated since the last one, or on request when the chain grew;
//! - each checkpoint names the one this node issued before it (`prev`: the newest durable
//!   one, which `anchor` keeps outside the store too), so this node's checkpoints form one
//!   chain;
//! - a peer's checkpoint is held only if it *extends* the newest one held
//!   (`core::audit::follow`: its `prev` chain reaches it, through the checkpoints the peer
//!   sent along); the newest [`PEER_HISTORY_MAX`] held are kept (in memory too, read from
//!   the store once per peer: this thread is their only writer), to judge a shorter one that
//!   arrives late; one that contradicts them is refused with [`LedgerError::PeerRollback`],
//!   those held stay, and the pair is kept as evidence (at most [`EVIDENCE_PER_PEER_MAX`] per
//!   node); one that cannot be linked yet is left until the peer sends the checkpoints in
//!   between;
//! - evidence a peer reports against this node is kept only if both checkpoints are this
//!   node's own (its key) and contradict each other: a peer cannot make it up.

use std::collections::BTreeMap;

use super::group::Group;
use super::{LedgerError, Writer};
use crate::core::audit::{self, Checkpoint, Contradiction, Divergence, Evidence, Link, Prev};
use crate::core::identity::CenterId;
use crate::node::store::DirectorySeen;

/// Most checkpoints held of one peer (the newest; each extends the one before). A shorter
/// checkpoint that arrives is judged by them: an earlier one of these, or not in the chain.
/// At `checkpoint_every` = 1000 entries that covers the peer's last 256,000 entries.
pub const PEER_HISTORY_MAX: usize = 256;

/// Which way a peer's checkpoint came. Over one channel a peer's checkpoints come in the
/// order it published them (one batch in flight per peer, judged in the order they arrive;
/// answers recorded in turn by the forwarder), so one shorter than the one before on the
/// same channel means the peer's log went back; between channels, an earlier one can
/// arrive after a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// With a batch the peer handed over (`api::federation`).
    Batch,
    /// With the peer's answer to a batch this node handed over (`forwarder`).
    Answer,
}

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
    /// signatures already checked) against those held of it: holds each that extends the
    /// newest, and refuses a contradiction, keeping it as evidence.
    pub(super) fn peer_checkpoints(
        &mut self,
        peer: CenterId,
        via: Via,
        links: Vec<Checkpoint>,
        latest: Checkpoint,
        g: &mut Group,
    ) -> Result<Link, LedgerError> {
        let before = self.peer_latest.get(&(peer.clone(), via)).cloned();
        let held = self.held_of(&peer)?;
        let mut followed = audit::follow(held, &links, &latest);
        // An earlier checkpoint than the one before on the same channel: the peer went back
        // (one that came late over the other channel never does this).
        if let (Ok(Link::Older), Some(before)) = (&followed.outcome, &before) {
            if latest.length < before.length {
                followed.outcome = Err(Contradiction {
                    divergence: Divergence::RolledBack {
                        node: latest.node.clone(),
                        length: latest.length,
                        earlier: before.length,
                    },
                    held: before.clone(),
                    refused: latest.clone(),
                });
            }
        }
        if before.as_ref().is_none_or(|b| latest.length >= b.length) {
            self.peer_latest.insert((peer.clone(), via), latest);
        }
        let held = self.held_of(&peer)?;
        for c in &followed.keep {
            held.insert(c.length, c.clone());
            g.writes.put_peer_history(&peer, c);
        }
        while held.len() > PEER_HISTORY_MAX {
            if let Some((length, _)) = held.pop_first() {
                g.writes.remove_peer_history(&peer, length);
            }
        }
        if let Some(newest) = followed.keep.last() {
            g.writes.put_peer_checkpoint(&peer, newest);
        }
        match followed.outcome {
            Ok(link) => Ok(link),
            Err(contradiction) => {
                self.keep_evidence(&peer, Evidence::of(&contradiction, &g.at), g)?;
                Err(LedgerError::PeerRollback(contradiction.divergence))
            }
        }
    }

    /// The checkpoints held of `peer`, read from the store the first time (a store from
    /// before they were kept has only the newest).
    fn held_of(&mut self, peer: &CenterId) -> Result<&mut BTreeMap<u64, Checkpoint>, LedgerError> {
        if !self.peer_history.contains_key(peer) {
            let mut held = self.store.peer_history(peer)?;
            if held.is_empty() {
                if let Some(c) = self.store.peer_checkpoint(peer)? {
                    held.insert(c.length, c);
                }
            }
            self.peer_history.insert(peer.clone(), held);
        }
        Ok(self
            .peer_history
            .get_mut(peer)
            .expect("inserted above if it was missing"))
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
            if !(ours(&e.held) && ours(&e.refused) && e.proves_itself()) {
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
