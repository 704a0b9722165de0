//! Evidence against rollback: this node's signed checkpoints of its audit chain, the latest
//! checkpoint of each peer, and the newest federation directory loaded.
//!
//! Invariants enforced here:
//! - a federated node signs a checkpoint in the same write as the entries it covers, once
//!   `every` entries accumulated since the last one, or on request when the chain grew;
//! - a peer's checkpoint is kept only if it *follows* the one kept before (not shorter,
//!   same head at the same length); one that goes back is refused with
//!   [`LedgerError::PeerRollback`] and the earlier one stays as evidence.

use super::group::Group;
use super::{LedgerError, Writer};
use crate::core::audit::Checkpoint;
use crate::core::identity::CenterId;
use crate::node::store::DirectorySeen;

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

    /// Signs the chain as it stands after the group's entries, in the group's write.
    pub(super) fn sign_checkpoint(&mut self, g: &mut Group) {
        let Some(policy) = &self.checkpoints else {
            return;
        };
        if self.head.next_seq == 0 {
            return;
        }
        let checkpoint = Checkpoint::sign(&policy.key, policy.node.as_str(), &self.head, &g.at);
        g.writes.put_checkpoint(&checkpoint);
        g.checkpoint = Some(checkpoint);
    }

    pub(super) fn peer_checkpoint(
        &mut self,
        peer: CenterId,
        checkpoint: Checkpoint,
        g: &mut Group,
    ) -> Result<usize, LedgerError> {
        let earlier = match g.peer_checkpoints.get(&peer) {
            Some(c) => Some(c.clone()),
            None => self.store.peer_checkpoint(&peer)?,
        };
        if let Some(earlier) = earlier {
            checkpoint
                .continues(&earlier)
                .map_err(LedgerError::PeerRollback)?;
            if earlier == checkpoint {
                return Ok(0);
            }
        }
        g.writes.put_peer_checkpoint(&peer, &checkpoint);
        g.peer_checkpoints.insert(peer, checkpoint);
        Ok(1)
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
