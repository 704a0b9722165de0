//! What a node keeps of its peers: their signed checkpoints, each extending the one held
//! before (`ledger` judges and holds them), the evidence that a peer's audit log never goes
//! back or forks. Both ends of
//! a hand-over keep the other's: the receiver (`api::federation`) what a batch carries, the
//! sender (`forwarder`) what the answer carries. And what a node sends of its own: the
//! checkpoints a peer needs to link this node's newest one to the one it holds (`links`),
//! and the evidence this node keeps against a peer, which tells that peer its own log was
//! cut back or rewritten (a node whose anchor was deleted with its newest entries learns it
//! this way, and its officer's audit status says so).

use crate::core::audit::{Checkpoint, Evidence, Link};
use crate::core::identity::CenterId;
use crate::core::keys::PublicKey;
use crate::core::wire::{EVIDENCE_MAX, LINKS_MAX};
use crate::node::ledger::{Ledger, LedgerError, Queued, Via};
use crate::node::store::{Store, StoreError};

/// Checks what a peer handed over of its checkpoints over channel `via` (each must be that
/// peer's, signed with its key from the directory) and keeps each that extends the newest
/// one held; see [`queue_peer_checkpoints`] and [`report`].
pub async fn keep_peer_checkpoints(
    ledger: &Ledger,
    peer: &CenterId,
    key: &PublicKey,
    via: Via,
    links: Vec<Checkpoint>,
    latest: Checkpoint,
) {
    if let Some(queued) = queue_peer_checkpoints(ledger, peer, key, via, links, latest).await {
        report(peer, queued).await;
    }
}

/// Checks the signatures of what a peer handed over of its checkpoints and queues them
/// with the ledger, returning once queued (so a caller that queues in the order it
/// received keeps the channel's order). One that does not verify is logged as an error and
/// nothing is queued.
pub async fn queue_peer_checkpoints(
    ledger: &Ledger,
    peer: &CenterId,
    key: &PublicKey,
    via: Via,
    links: Vec<Checkpoint>,
    latest: Checkpoint,
) -> Option<Queued<Link>> {
    let forged = links
        .iter()
        .chain(std::iter::once(&latest))
        .find(|c| c.node != peer.as_str() || !c.verify(key));
    if let Some(c) = forged {
        tracing::error!(%peer, node = %c.node, length = c.length,
            "a checkpoint from this peer does not verify against its key in the directory");
        return None;
    }
    match ledger
        .queue_peer_checkpoints(peer.clone(), via, links, latest)
        .await
    {
        Ok(queued) => Some(queued),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "could not keep the peer's checkpoints");
            None
        }
    }
}

/// Waits for the ledger's verdict on a peer's checkpoints and logs it: one that rolls
/// back, rewrites or forks the peer's log is an error (the ledger keeps it as evidence, and
/// the checkpoints held stay).
pub async fn report(peer: &CenterId, queued: Queued<Link>) {
    match queued.reply().await {
        Ok(Link::Gap) => tracing::debug!(%peer,
            "the peer's newest checkpoint follows ones not seen yet; it sends them next time"),
        Ok(_) => {}
        Err(LedgerError::PeerRollback(what)) => {
            tracing::error!(%peer, %what,
                "peer's audit log went back or forked: its checkpoint is refused and kept as \
                 evidence; investigate");
        }
        Err(e) => tracing::warn!(%peer, error = %e, "could not keep the peer's checkpoints"),
    }
}

/// The length of the newest checkpoint held of `peer`: what it sends its links after.
pub fn holds(store: &Store, peer: &CenterId) -> Result<Option<u64>, StoreError> {
    Ok(store.peer_checkpoint(peer)?.map(|c| c.length))
}

/// This node's checkpoints that a peer holding the one of `holds` entries needs to link
/// `latest` to it: those after it and before `latest`, oldest first, at most
/// [`LINKS_MAX`]. None when the peer holds nothing of this node (it takes `latest` as it
/// is) or its holdings are unknown.
pub fn links(
    store: &Store,
    holds: Option<u64>,
    latest: Option<&Checkpoint>,
) -> Result<Vec<Checkpoint>, StoreError> {
    let (Some(holds), Some(latest)) = (holds, latest) else {
        return Ok(Vec::new());
    };
    store
        .checkpoints_after(holds)
        .take_while(|c| c.as_ref().map_or(true, |c| c.length < latest.length))
        .take(LINKS_MAX)
        .collect()
}

/// Takes the evidence `peer` reports holding against this node (each piece is checked
/// against this node's own key by the ledger); logged as an error when new.
pub async fn take_reported_evidence(ledger: &Ledger, peer: &CenterId, evidence: Vec<Evidence>) {
    let Some(first) = evidence.first().map(|e| e.problem.clone()) else {
        return;
    };
    match ledger.reported_evidence(peer.clone(), evidence).await {
        Ok(0) => {}
        Ok(new) => tracing::error!(%peer, new, problem = %first,
            "peer holds proof that this node's audit log went back or forked (two checkpoints \
             this node signed that contradict each other): investigate"),
        Err(e) => tracing::warn!(%peer, error = %e, "could not keep the evidence reported"),
    }
}

/// The evidence this node keeps against `peer` that proves itself, oldest first, at most
/// [`EVIDENCE_MAX`]: sent along to `peer`. (A checkpoint that went back on one channel is
/// evidence by the order this node saw them in, which `peer` cannot check: it stays here.)
pub fn evidence_against(store: &Store, peer: &CenterId) -> Result<Vec<Evidence>, StoreError> {
    let mut evidence = store.peer_evidence(peer)?;
    evidence.retain(Evidence::proves_itself);
    evidence.sort_by(|a, b| a.found_at.cmp(&b.found_at));
    evidence.truncate(EVIDENCE_MAX);
    Ok(evidence)
}
