//! What a node keeps of its peers: their latest signed checkpoints, the evidence that a
//! peer's audit log never goes back. Both ends of a hand-over keep the other's: the
//! receiver (`api::federation`) the checkpoint a batch carries, the sender (`forwarder`) the
//! one the answer carries.

use crate::core::audit::Checkpoint;
use crate::core::identity::CenterId;
use crate::core::keys::PublicKey;
use crate::node::ledger::{Ledger, LedgerError};

/// Checks a checkpoint a peer handed over (it must be that peer's, signed with its key from
/// the directory) and keeps it if it follows the one kept before. A checkpoint that does not
/// verify, or that shows the peer rolled back or rewrote its log, is logged as an error and
/// not kept: the earlier one stays as evidence.
pub async fn keep_peer_checkpoint(
    ledger: &Ledger,
    peer: &CenterId,
    key: &PublicKey,
    checkpoint: Checkpoint,
) {
    if checkpoint.node != peer.as_str() || !checkpoint.verify(key) {
        tracing::error!(%peer, node = %checkpoint.node,
            "a checkpoint from this peer does not verify against its key in the directory");
        return;
    }
    match ledger.peer_checkpoint(peer.clone(), checkpoint).await {
        Ok(_) => {}
        Err(LedgerError::PeerRollback(what)) => {
            tracing::error!(%peer, %what, "peer's audit log went back: investigate");
        }
        Err(e) => tracing::warn!(%peer, error = %e, "could not keep the peer's checkpoint"),
    }
}
