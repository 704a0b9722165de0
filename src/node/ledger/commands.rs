//! The handle's requests: each public method of [`Ledger`] here is one command, a call of
//! one writer function run on the ledger thread inside a group, answered once the group is
//! durable.
//!
//! One generic path ([`Ledger::call`]) sends every command and maps a stopped ledger to
//! [`LedgerError::Stopped`]; the writer's group commit (`group.rs`) answers each one with
//! its own result or with the reason the group was not written. Adding a command is a
//! one-line method here and its writer function in the file of its concept: there is no
//! command enum to extend and no reply to route by hand.
//!
//! Invariant: a command's reply is sent exactly once: with its result after the group is
//! durable, with the group's failure, or (never run) with the reason the ledger refuses.

use tokio::sync::oneshot;

use super::checkpoints::Via;
use super::group::Group;
use super::queue::QueuedBytes;
use super::{
    Accepted, LeaseItem, Ledger, LedgerError, Parties, PickupOutcome, Received, Submission, Writer,
};
use crate::core::audit::{Checkpoint, Evidence, Link};
use crate::core::consent::{ConsentKey, ConsentRecord, ConsentStatus, StatusChange};
use crate::core::identity::{AgencyId, CenterId, Identity, OfficerId};
use crate::core::keys::PublicKey;
use crate::core::message::MessageId;
use crate::core::wire::{PickupReport, Receipt, WithheldReport};
use crate::node::backup::{BackupError, Written};
use crate::node::store::DirectorySeen;

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// A command's reply, once it is queued ([`Ledger::queue_peer_checkpoints`]).
pub struct Queued<T>(oneshot::Receiver<Result<T, LedgerError>>);

impl<T> Queued<T> {
    /// The command's result, once its group is durable.
    pub async fn reply(self) -> Result<T, LedgerError> {
        self.0.await.map_err(|_| LedgerError::Stopped)?
    }
}

/// A request on its way to the writer thread: what to do there, and where the answer goes.
pub(super) trait Command: Send {
    /// Does it as part of `group`; the answer goes out once the group is durable.
    fn apply(self: Box<Self>, writer: &mut Writer, group: &mut Group) -> Pending;
    /// Answers `error` without doing it.
    fn refuse(self: Box<Self>, error: LedgerError);
}

/// One reply, held until the group is durable.
pub(super) struct Pending(Box<dyn FnOnce(Result<(), LedgerError>) + Send>);

impl Pending {
    /// Sends the command's own result if `commit` succeeded, else `commit`'s error.
    pub(super) fn answer(self, commit: Result<(), LedgerError>) {
        (self.0)(commit)
    }
}

/// A writer function and the channel for its answer, and the queue's bytes it holds until
/// its group is answered (see `queue`).
struct Call<F, T> {
    op: F,
    reply: Reply<T>,
    bytes: Option<QueuedBytes>,
}

impl<F, T> Command for Call<F, T>
where
    F: FnOnce(&mut Writer, &mut Group) -> Result<T, LedgerError> + Send,
    T: Send + 'static,
{
    fn apply(self: Box<Self>, writer: &mut Writer, group: &mut Group) -> Pending {
        let Call { op, reply, bytes } = *self;
        let result = op(writer, group);
        Pending(Box::new(move |commit: Result<(), LedgerError>| {
            let _ = reply.send(commit.and(result));
            // The group is written (or failed): what it held of the queue's bytes is free.
            drop(bytes);
        }))
    }

    fn refuse(self: Box<Self>, error: LedgerError) {
        let _ = self.reply.send(Err(error));
    }
}

impl Ledger {
    /// Runs `op` on the ledger thread in the next group and returns its result once the
    /// group is durable.
    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Writer, &mut Group) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.send(op, None).await
    }

    /// [`Ledger::call`] for a command that carries `bytes` of messages: it first takes them
    /// from the queue's byte budget, waiting for room (see `queue`).
    async fn call_sized<T: Send + 'static>(
        &self,
        bytes: usize,
        op: impl FnOnce(&mut Writer, &mut Group) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let held = self.bytes.take(bytes).await?;
        self.send(op, Some(held)).await
    }

    async fn send<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Writer, &mut Group) -> Result<T, LedgerError> + Send + 'static,
        bytes: Option<QueuedBytes>,
    ) -> Result<T, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let command: Box<dyn Command> = Box::new(Call { op, reply, bytes });
        self.tx
            .send(command)
            .await
            .map_err(|_| LedgerError::Stopped)?;
        answer.await.map_err(|_| LedgerError::Stopped)?
    }

    /// Queues `op` like [`Ledger::call`], but returns as soon as it is queued, with the
    /// reply to await: what one caller queues in turn is run in turn.
    async fn queue<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Writer, &mut Group) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<Queued<T>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let command: Box<dyn Command> = Box::new(Call {
            op,
            reply,
            bytes: None,
        });
        self.tx
            .send(command)
            .await
            .map_err(|_| LedgerError::Stopped)?;
        Ok(Queued(answer))
    }

    /// Writes a backup of the store and of the node's files in `data_dir` into `out` on the
    /// writer thread, between two groups' writes: one consistent state, the store's and
    /// its anchor's (`node::backup`). Writes wait meanwhile; the time is logged. Returns
    /// `out` and what was written.
    pub async fn backup(
        &self,
        data_dir: std::path::PathBuf,
        center: CenterId,
        mut out: std::fs::File,
    ) -> Result<(std::fs::File, Result<Written, BackupError>), LedgerError> {
        self.call(move |w, g| {
            let started = std::time::Instant::now();
            let written =
                crate::node::backup::write_body(&w.store, &data_dir, &center, g.now, &mut out);
            let took_ms = started.elapsed().as_millis() as u64;
            match &written {
                Ok(_) => tracing::info!(took_ms, "backup written; writes waited meanwhile"),
                Err(e) => tracing::warn!(took_ms, error = %e, "backup failed"),
            }
            Ok((out, written))
        })
        .await
    }

    /// Accepts a prepared submission from its sender (the audit entry's actor).
    pub async fn accept(&self, submission: Submission) -> Result<Accepted, LedgerError> {
        self.call_sized(submission.bytes(), move |w, g| w.accept(submission, g))
            .await
    }

    /// Takes over messages the node of `peer` hands over (that node is the actor), in
    /// order. Each gets its own result: what this node now durably holds (the original for
    /// a message already here), or why it cannot be taken. Receipts are signed from these
    /// results, so only for messages that are durable.
    ///
    /// Before the messages: the consents the batch carried are merged, and `peer`'s reports
    /// of messages it withheld are recorded.
    pub async fn receive(
        &self,
        peer: CenterId,
        consents: Vec<ConsentRecord>,
        withheld: Vec<WithheldReport>,
        items: Vec<Submission>,
    ) -> Result<Vec<Result<Received, LedgerError>>, LedgerError> {
        let bytes = items.iter().map(Submission::bytes).sum();
        self.call_sized(bytes, move |w, g| {
            w.receive_batch(peer, consents, withheld, items, g)
        })
        .await
    }

    /// Takes the pickup reports `peer` sent (its agencies pulled or acknowledged messages
    /// this node handed over to it): each must be signed with `key`, `peer`'s key from the
    /// directory, and name a message this node holds `peer`'s receipt for. One outcome per
    /// report, in order. The signatures are checked here, on the caller's task and spread
    /// over the cores, so the writer thread only reads and writes the store.
    pub async fn picked_up(
        &self,
        peer: CenterId,
        key: PublicKey,
        reports: Vec<PickupReport>,
    ) -> Result<Vec<PickupOutcome>, LedgerError> {
        let checked = crate::node::parallel::map_owned(reports, |r| {
            let signed = r.check(&peer, &key);
            (r, signed)
        });
        self.call(move |w, g| w.picked_up_at_peer(&peer, checked, g))
            .await
    }

    /// `origin` answered the pickup reports in `done` (taken or refused for good; each
    /// with the acknowledgement time it carried): they leave the queue unless their message
    /// was acknowledged since. Returns how many left.
    pub async fn pickups_told(
        &self,
        origin: CenterId,
        done: Vec<(MessageId, Option<String>)>,
    ) -> Result<usize, LedgerError> {
        self.call(move |w, g| w.pickups_told(&origin, done, g))
            .await
    }

    /// Records receipts `peer` returned for messages in its outbox (already checked against
    /// the directory; the peer's node is the actor): those messages leave the outbox as
    /// delivered. Returns how many did.
    pub async fn delivered(
        &self,
        peer: CenterId,
        receipts: Vec<(MessageId, Receipt, Parties)>,
    ) -> Result<usize, LedgerError> {
        self.call(move |w, g| w.delivered(&peer, receipts, g)).await
    }

    /// Records a forwarding attempt to `peer` that got no receipt for `ids`.
    pub async fn attempt_failed(
        &self,
        peer: CenterId,
        ids: Vec<MessageId>,
        error: String,
    ) -> Result<usize, LedgerError> {
        self.call(move |w, g| w.attempt_failed(&peer, ids, &error, g))
            .await
    }

    /// Takes messages out of their outbox undelivered, each with the reason. Messages no
    /// longer in an outbox are skipped. Returns how many were dead-lettered.
    pub async fn dead_letter(
        &self,
        actor: Identity,
        items: Vec<(MessageId, String)>,
    ) -> Result<usize, LedgerError> {
        self.call(move |w, g| w.dead_letter(&actor, items, g)).await
    }

    /// Withholds messages found in an outbox under a consent that has ended, each checked
    /// again at the group's time (see `withdrawal`). Returns the ids withheld.
    pub async fn withhold_ended(
        &self,
        actor: Identity,
        ids: Vec<MessageId>,
    ) -> Result<Vec<MessageId>, LedgerError> {
        self.call(move |w, g| w.withhold_ended(&actor, ids, g))
            .await
    }

    /// Puts a dead-lettered message back at the end of its outbox (an operator's retry).
    pub async fn requeue(&self, actor: Identity, id: MessageId) -> Result<usize, LedgerError> {
        self.call(move |w, g| w.requeue(&actor, &id, g)).await
    }

    /// Records the newest federation directory loaded (rollback protection).
    pub async fn record_directory(&self, seen: DirectorySeen) -> Result<(), LedgerError> {
        self.call(move |w, g| w.record_directory(&seen, g)).await
    }

    /// Records that `recipient` leased `items` (it is the actor); returns the ids actually
    /// leased (those not acknowledged or withheld meanwhile).
    pub async fn lease(
        &self,
        recipient: AgencyId,
        items: Vec<LeaseItem>,
    ) -> Result<Vec<MessageId>, LedgerError> {
        self.call(move |w, g| w.lease(&recipient, items, g)).await
    }

    /// Acknowledges messages in `recipient`'s inbox (it is the actor). All or nothing: if
    /// any id is unknown or someone else's, nothing is acknowledged.
    pub async fn ack(
        &self,
        recipient: AgencyId,
        ids: Vec<MessageId>,
    ) -> Result<Vec<MessageId>, LedgerError> {
        self.call(move |w, g| w.ack(&recipient, ids, g)).await
    }

    /// Signs a checkpoint now if the chain grew since the last one (called on a timer, so a
    /// quiet node's last entries are vouched for too). Returns 1 if it signed one.
    pub async fn checkpoint(&self) -> Result<usize, LedgerError> {
        self.call(|w, g| Ok(w.request_checkpoint(g))).await
    }

    /// Queues what `peer` sent of its checkpoints, over channel `via` (`links`, oldest
    /// first: those after the one this node said it holds; then `latest`, its newest;
    /// signatures already checked against the directory), and returns once it is queued:
    /// what one caller queues in turn is judged in turn, so a channel's order is kept. The
    /// reply says how `latest` relates to the checkpoints held; a contradiction (the peer
    /// rolled back, rewrote or forked its log) is the error, the checkpoints held stay, and
    /// the pair is kept as evidence.
    pub async fn queue_peer_checkpoints(
        &self,
        peer: CenterId,
        via: Via,
        links: Vec<Checkpoint>,
        latest: Checkpoint,
    ) -> Result<Queued<Link>, LedgerError> {
        self.queue(move |w, g| w.peer_checkpoints(peer, via, links, latest, g))
            .await
    }

    /// Keeps the evidence `peer` reported holding against this node: those pieces that
    /// hold two of this node's own checkpoints that contradict each other. Returns how
    /// many were new.
    pub async fn reported_evidence(
        &self,
        peer: CenterId,
        evidence: Vec<Evidence>,
    ) -> Result<usize, LedgerError> {
        self.call(move |w, g| w.reported_evidence(&peer, evidence, g))
            .await
    }

    /// Records, durably, that `officer` looked at `subject`'s record (`detail`: which
    /// report). The answer goes out only after this.
    pub async fn queried(
        &self,
        officer: OfficerId,
        subject: String,
        detail: String,
    ) -> Result<(), LedgerError> {
        self.call(move |w, g| w.queried(officer, subject, detail, g))
            .await
    }

    /// Registers a consent collected by `collector` (the actor). An identical registration
    /// again returns the registered record (`false`: nothing new); the same id with another
    /// document is a conflict.
    pub async fn register_consent(
        &self,
        collector: AgencyId,
        record: ConsentRecord,
    ) -> Result<(ConsentRecord, bool), LedgerError> {
        self.call(move |w, g| w.register_consent(&collector, record, g))
            .await
    }

    /// Records a withdrawal of consent `id` by its collecting agency `caller` (the actor).
    /// Withdrawing a withdrawn consent changes nothing and returns it as it is.
    pub async fn withdraw_consent(
        &self,
        id: String,
        caller: AgencyId,
        change: StatusChange,
    ) -> Result<ConsentRecord, LedgerError> {
        self.call(move |w, g| w.withdraw_consent(&id, &caller, change, g))
            .await
    }

    /// `peer` durably took the consents of a batch, each in the status sent: their notices
    /// are done (see `outbox`). Returns how many notices were cleared.
    /// Also clears the reports of withheld messages (`reported`) the batch carried.
    pub async fn notices_told(
        &self,
        peer: CenterId,
        told: Vec<(ConsentKey, ConsentStatus)>,
        reported: Vec<MessageId>,
    ) -> Result<usize, LedgerError> {
        self.call(move |w, g| w.notices_told(&peer, told, &reported, g))
            .await
    }

    /// `peer`, restored from a backup taken at `taken_at`, asked for what this node
    /// delivered to it since: `ids` go back into its outbox, `consents` get notices (see
    /// `outbox`). Returns (messages, consents) queued.
    pub async fn resend(
        &self,
        peer: CenterId,
        ids: Vec<MessageId>,
        consents: Vec<ConsentKey>,
        taken_at: String,
    ) -> Result<(u64, u64), LedgerError> {
        self.call(move |w, g| w.resend(&peer, ids, consents, &taken_at, g))
            .await
    }

    /// `peer` answered this node's request to send again what it delivered since the
    /// backup taken at `taken_at`: it is not asked again.
    pub async fn resend_told(&self, peer: CenterId, taken_at: String) -> Result<(), LedgerError> {
        self.call(move |w, g| {
            w.resend_told(&peer, &taken_at, g);
            Ok(())
        })
        .await
    }

    /// Erases payloads whose retention period ended by now, on the ledger's clock (at most
    /// [`super::PURGE_BATCH`]; call again while it returns that many). `actor`: this node.
    pub async fn purge(&self, actor: Identity) -> Result<usize, LedgerError> {
        self.call(move |w, g| w.purge(&actor, g)).await
    }
}
