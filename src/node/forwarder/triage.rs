//! What a failure to forward means, as pingora classifies errors: whether sending again can
//! help (`Retry`) and who is likely at fault (`Fault`). A failed round (`RoundError`) is about
//! the batch and always sends again after a backoff; a message that did not go
//! (`Undelivered`) is sent again or dead-lettered by its classification alone (`triage`).

use hyper::StatusCode;

use crate::core::identity::CenterId;
use crate::core::message::MessageId;
use crate::node::client::{self};
use crate::node::store::StoreError;

/// Who is likely at fault when a message does not reach its peer, as pingora's error
/// source says it: where to look first, and whose operator to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// The peer node or the network to it: down, unreachable, slow, refusing this node, or
    /// answering with something that does not check out.
    Upstream,
    /// The message as its sending agency wrote it: the peer refused it on its merits (its
    /// consent, its recipient, the schemas).
    Downstream,
    /// This node: its store, its ledger, its data keys, its TLS setup or its copy of the
    /// directory.
    Internal,
}

/// What the forwarder does with messages that did not reach the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Sending again can help: they stay in the outbox, their failed attempt recorded, and
    /// go again in a later round (after a backoff when the whole round failed). Their time
    /// to live bounds how long.
    Resend,
    /// Sending again cannot help: they leave the outbox dead-lettered, with the reason. An
    /// operator may still put them back (`plusgate outbox retry`).
    DeadLetter,
}

/// Why one forwarding round could not hand the batch over. Every kind is about the batch as
/// a whole, never a verdict on one message, and every kind can pass, so
/// [`RoundError::retry`] is [`Retry::Resend`] for all of them: the forwarder backs off and
/// tries again until the messages' time to live ends.
#[derive(Debug, thiserror::Error)]
pub(super) enum RoundError {
    /// Reading the outbox, a message, a consent or a report failed. Internal.
    #[error("reading the outbox failed: {0}")]
    Store(#[from] StoreError),
    /// The directory no longer lists the center this outbox is for. Internal (this node's
    /// directory; a reload may list it again).
    #[error("center {0} is not in the federation directory")]
    UnknownPeer(CenterId),
    /// Resolving the peer's host name, connecting, TLS or HTTP failed. Upstream (a name
    /// that does not resolve is the peer's DNS or the directory's, and may pass: it is
    /// retried like a peer that is down), except for this node's own setup (a bad URL in
    /// its directory, its TLS files, a request it could not build).
    #[error("{0}")]
    Client(#[from] client::ClientError),
    /// The server at the peer's address is not the peer's node. Upstream (or a directory
    /// entry gone stale).
    #[error("the server at {url} is {found}, not the node of center {peer}")]
    WrongServer {
        /// The peer's URL, from the directory.
        url: String,
        /// The center whose node was expected.
        peer: CenterId,
        /// Who answered instead.
        found: String,
    },
    /// The peer answered the batch with an error status (a 4xx: it does not take this
    /// node's batches, e.g. its directory differs; a 5xx: its own trouble), or with no usable
    /// receipt at all. Upstream.
    #[error("{peer} answered {status}: {detail}")]
    Refused {
        /// The peer.
        peer: CenterId,
        /// The status it answered.
        status: StatusCode,
        /// What it said.
        detail: String,
    },
    /// Recording the round failed (the ledger refused or is stopped). Internal.
    #[error("the ledger refused: {0}")]
    Ledger(#[from] crate::node::ledger::LedgerError),
}

impl RoundError {
    /// Whether sending the batch again can help: always (see the type's doc). Written out
    /// per kind so that a new kind is classified when it is added.
    pub(super) fn retry(&self) -> Retry {
        match self {
            RoundError::Store(_)
            | RoundError::UnknownPeer(_)
            | RoundError::Client(_)
            | RoundError::WrongServer { .. }
            | RoundError::Refused { .. }
            | RoundError::Ledger(_) => Retry::Resend,
        }
    }

    /// Who is likely at fault.
    pub(super) fn fault(&self) -> Fault {
        use client::ClientError as C;
        match self {
            RoundError::Store(_) | RoundError::UnknownPeer(_) | RoundError::Ledger(_) => {
                Fault::Internal
            }
            RoundError::Client(
                C::Pem { .. }
                | C::Exposed(_)
                | C::Config { .. }
                | C::ServerName(_)
                | C::Url { .. }
                | C::Request(_),
            ) => Fault::Internal,
            RoundError::Client(
                C::Resolve { .. }
                | C::ConnectEach { .. }
                | C::Connect { .. }
                | C::Tls { .. }
                | C::Handshake { .. }
                | C::Alpn { .. }
                | C::Http { .. }
                | C::Timeout { .. }
                | C::BodyTooLarge { .. }
                | C::Json(_),
            )
            | RoundError::WrongServer { .. }
            | RoundError::Refused { .. } => Fault::Upstream,
        }
    }
}

/// Why one message did not reach the peer in a round. Its text is the reason recorded for a
/// dead-lettered message (delivery record and audit entry), so it must not change.
#[derive(Debug, thiserror::Error)]
pub(super) enum Undelivered {
    /// Still in the outbox when its time to live ended: the peer did not take it in time.
    #[error("not delivered to center {peer} within its time to live ({ttl_s} s)")]
    Expired {
        /// The peer.
        peer: CenterId,
        /// The time to live.
        ttl_s: u64,
    },
    /// Its stored record does not verify, so it cannot be sent as it was accepted.
    #[error("its stored record is damaged and cannot be sent: {0}")]
    Damaged(StoreError),
    /// Its sealed payload does not open with this node's data keys.
    #[error("its stored payload does not open and cannot be sent: {0}")]
    Unopenable(crate::core::vault::VaultError),
    /// The peer refused it for good, with its reason.
    #[error("refused by center {peer}: {reason}")]
    Refused {
        /// The peer.
        peer: CenterId,
        /// The peer's reason.
        reason: String,
    },
    /// The peer answered for it with a receipt that does not check out.
    #[error("bad receipt: {0}")]
    BadReceipt(crate::core::wire::ReceiptError),
    /// The peer's answer said nothing about it.
    #[error("no answer for it")]
    Unanswered,
}

impl Undelivered {
    /// Whether sending it again can help.
    pub(super) fn retry(&self) -> Retry {
        match self {
            Undelivered::Expired { .. }
            | Undelivered::Damaged(_)
            | Undelivered::Unopenable(_)
            | Undelivered::Refused { .. } => Retry::DeadLetter,
            Undelivered::BadReceipt(_) | Undelivered::Unanswered => Retry::Resend,
        }
    }

    /// Who is likely at fault.
    pub(super) fn fault(&self) -> Fault {
        match self {
            Undelivered::Expired { .. } | Undelivered::BadReceipt(_) | Undelivered::Unanswered => {
                Fault::Upstream
            }
            Undelivered::Refused { .. } => Fault::Downstream,
            Undelivered::Damaged(_) | Undelivered::Unopenable(_) => Fault::Internal,
        }
    }
}

/// Sorts undelivered messages by their [`Retry`]: those to dead-letter, each with its
/// reason, and those to send again.
pub(super) fn triage(
    peer: &CenterId,
    undelivered: Vec<(MessageId, Undelivered)>,
) -> (Vec<(MessageId, String)>, Vec<MessageId>) {
    let mut dead = Vec::new();
    let mut again = Vec::new();
    for (id, why) in undelivered {
        match why.retry() {
            Retry::DeadLetter => dead.push((id, why.to_string())),
            Retry::Resend => {
                if let Undelivered::BadReceipt(problem) = &why {
                    tracing::error!(%peer, message_id = %id, %problem, fault = ?why.fault(),
                        "bad receipt");
                }
                again.push(id);
            }
        }
    }
    (dead, again)
}
