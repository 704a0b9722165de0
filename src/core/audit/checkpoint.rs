//! Checkpoints: a node's signed statements of how long its audit chain is and what its head
//! hash is, and the rules by which a peer decides whether a node's new checkpoint extends
//! the one it holds of that node.
//!
//! ```text
//!  checkpoint k = sign(node, length, head, at, prev = (length of k-1, digest of k-1))
//!  checkpoint 0's prev = (0, 32 zero bytes)
//! ```
//!
//! Each checkpoint names the one its node signed before it (`prev`: that checkpoint's length
//! and [`Checkpoint::digest`]), so a node's checkpoints form a hash chain of their own beside
//! the chain of entries. Because `prev` carries the earlier checkpoint's *length*, a peer
//! that holds a node's checkpoint of `L` entries can tell from a newer checkpoint alone
//! whether it passes through the one held ([`Checkpoint::follows`]):
//!
//! - its `prev` is the one held: it extends it;
//! - its `prev` is another checkpoint of `L` entries: the node signed two different ones of
//!   that length (rewritten);
//! - its `prev` is shorter than `L`, but it is longer: it skips the one held — the node's
//!   checkpoints forked, e.g. after its newest entries and checkpoints were deleted;
//! - its `prev` is longer than `L`: checkpoints the peer has not seen lie between; the peer
//!   needs them (the sender sends them, see `core::wire`) before it can judge.
//!
//! Either contradiction is proven by two checkpoints the node signed, which the peer keeps as
//! [`Evidence`]. So the newest checkpoint held is enough to catch any *longer* one that
//! does not extend it. A *shorter* one is not a rollback by itself (an earlier checkpoint
//! can arrive late, over the other channel between two nodes); [`follow`] judges it against
//! the checkpoints held before, which the peer keeps for that (a bounded number): one that
//! is not among them is not in the node's chain (rolled back), one older than all of them
//! is passed over until the node's next checkpoint says more.
//!
//! Checkpoints signed before they were chained (no `prev`, signature format v1) still
//! verify; a node that has signed a chained one never goes back to unchained ones
//! ([`Divergence::Unchained`]). Pure: no I/O, no clock (keys and times are passed in).

use std::collections::BTreeMap;

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

use super::Head;
use crate::core::hex;
use crate::core::keys::{PublicKey, SigningKey};

/// Domain separation for checkpoint signatures without `prev` (signed before checkpoints
/// were chained, and the closing checkpoint of an export, which is no link of the chain).
const CONTEXT_V1: &[u8] = b"plusgate audit checkpoint v1";
/// Domain separation for chained checkpoints: also signs `prev`.
const CONTEXT_V2: &[u8] = b"plusgate audit checkpoint v2";

/// A node's signed statement of how long its audit chain is and what its head hash is.
///
/// Given a checkpoint, the chain up to `length` can no longer be altered, shortened or
/// replaced without the signature failing; nodes hand each other their checkpoints with
/// every batch, so a node whose log is rolled back, cut or rewritten is caught by its peers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The signing node's center.
    pub node: String,
    /// Number of entries covered (entries `0..length`).
    pub length: u64,
    /// Hash of entry `length - 1` (hex; zeros for an empty chain).
    pub head: String,
    /// When it was signed (RFC 3339, UTC).
    pub at: String,
    /// The checkpoint the node signed before this one. Absent in checkpoints signed before
    /// checkpoints were chained (stored ones still decode and verify) and in an export's
    /// closing checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Prev>,
    /// Ed25519 signature (hex) by the node's signing key.
    pub signature: String,
}

/// Which checkpoint a checkpoint follows: the one its node signed just before it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Prev {
    /// Entries that checkpoint covers; 0 when there was none (the node's first).
    pub length: u64,
    /// Its [`Checkpoint::digest`] (hex); zeros when there was none.
    pub digest: String,
}

impl Prev {
    /// What a node's first checkpoint follows: nothing.
    pub fn genesis() -> Prev {
        Prev {
            length: 0,
            digest: hex::encode(&[0; 32]),
        }
    }

    /// What the checkpoint signed after `c` follows.
    pub fn of(c: &Checkpoint) -> Prev {
        Prev {
            length: c.length,
            digest: c.digest(),
        }
    }
}

impl Checkpoint {
    /// Signs `head` as `node` at time `at`, as the checkpoint after `prev`.
    pub fn sign(key: &SigningKey, node: &str, head: &Head, at: &str, prev: Prev) -> Checkpoint {
        Checkpoint::signed(key, node, head, at, Some(prev))
    }

    /// Signs `head` as `node` at time `at` without naming a previous checkpoint: a statement
    /// outside the node's chain of checkpoints (an export's closing checkpoint), which a peer
    /// that has seen the node's chained ones never takes as the next one.
    pub fn sign_unchained(key: &SigningKey, node: &str, head: &Head, at: &str) -> Checkpoint {
        Checkpoint::signed(key, node, head, at, None)
    }

    fn signed(
        key: &SigningKey,
        node: &str,
        head: &Head,
        at: &str,
        prev: Option<Prev>,
    ) -> Checkpoint {
        let mut c = Checkpoint {
            node: node.to_owned(),
            length: head.next_seq,
            head: hex::encode(&head.hash),
            at: at.to_owned(),
            prev,
            signature: String::new(),
        };
        c.signature = hex::encode(&key.sign(&c.signed_bytes()));
        c
    }

    /// True if the signature is `key`'s over this checkpoint's fields.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Some(signature) = hex::decode(&self.signature) else {
            return false;
        };
        key.verify(&self.signed_bytes(), &signature)
    }

    /// SHA-256 (hex) of what the signature covers: the checkpoint's identity, which the
    /// next checkpoint's `prev` names.
    pub fn digest(&self) -> String {
        hex::encode(digest(&SHA256, &self.signed_bytes()).as_ref())
    }

    /// How `self` (newer) relates to `earlier` from the same node, by length and head only:
    /// fine if it is at least as long, and, when just as long, names the same head. The
    /// rule for checkpoints in one export, which holds them all; a peer, which holds one,
    /// uses [`Checkpoint::follows`].
    pub fn continues(&self, earlier: &Checkpoint) -> Result<(), Divergence> {
        if self.length < earlier.length {
            return Err(Divergence::RolledBack {
                node: self.node.clone(),
                length: self.length,
                earlier: earlier.length,
            });
        }
        if self.length == earlier.length && self.head != earlier.head {
            return Err(Divergence::Rewritten {
                node: self.node.clone(),
                length: self.length,
            });
        }
        Ok(())
    }

    /// How `self` relates to `held`, the newest checkpoint of the same node a peer holds
    /// (see the [module doc](self)).
    pub fn follows(&self, held: &Checkpoint) -> Result<Link, Divergence> {
        let node = || self.node.clone();
        if self.length < held.length {
            return Ok(Link::Older);
        }
        if self.length == held.length {
            return if self.digest() == held.digest() {
                Ok(Link::Held)
            } else {
                Err(Divergence::Rewritten {
                    node: node(),
                    length: self.length,
                })
            };
        }
        let Some(prev) = &self.prev else {
            return match held.prev {
                Some(_) => Err(Divergence::Unchained {
                    node: node(),
                    length: self.length,
                }),
                // Both from before checkpoints were chained: by length alone, as then.
                None => Ok(Link::Extends),
            };
        };
        if prev.length > held.length {
            return Ok(Link::Gap);
        }
        if prev.length < held.length {
            return Err(Divergence::Forked {
                node: node(),
                length: self.length,
                prev: prev.length,
                held: held.length,
            });
        }
        if prev.digest == held.digest() {
            Ok(Link::Extends)
        } else {
            Err(Divergence::Rewritten {
                node: node(),
                length: held.length,
            })
        }
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let length = self.length.to_be_bytes();
        let mut fields: Vec<&[u8]> = vec![
            CONTEXT_V1,
            self.node.as_bytes(),
            &length,
            self.head.as_bytes(),
            self.at.as_bytes(),
        ];
        let prev_length;
        if let Some(prev) = &self.prev {
            fields[0] = CONTEXT_V2;
            prev_length = prev.length.to_be_bytes();
            fields.push(&prev_length);
            fields.push(prev.digest.as_bytes());
        }
        let mut out = Vec::with_capacity(240);
        for field in fields {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }
}

/// How a checkpoint relates to the newest one of its node held so far, when it does not
/// contradict it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// It is the one held.
    Held,
    /// It is shorter than the newest one held, and one of those held before it (an earlier
    /// one that arrived late), or older than any held (nothing to compare it with).
    Older,
    /// It follows the one held (its `prev` names it; or nothing was held yet): it takes the
    /// held one's place.
    Extends,
    /// It follows a checkpoint, after the one held, that the holder has not seen: it cannot
    /// be judged until the sender sends the checkpoints in between.
    Gap,
}

/// How a node's later checkpoint contradicts an earlier one: the node (or whoever controls
/// its storage) went back on its audit chain. Evidence against that node; asking again does
/// not change it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    /// The later checkpoint covers fewer entries, and is not one of the node's checkpoints
    /// held before.
    #[error("node {node} signed a chain of {length} entries, after having signed {earlier} (rolled back)")]
    RolledBack {
        /// The signing node.
        node: String,
        /// Entries the later checkpoint covers.
        length: u64,
        /// Entries the earlier one covered.
        earlier: u64,
    },
    /// Two different checkpoints of the same length: directly, or one checkpoint follows
    /// another of the length held.
    #[error("node {node} signed two different checkpoints of {length} entries (rewritten)")]
    Rewritten {
        /// The signing node.
        node: String,
        /// Entries both cover.
        length: u64,
    },
    /// A longer checkpoint follows one shorter than the one held: the node's chain of
    /// checkpoints skips the one held, so its audit chain was cut back and grew again.
    #[error(
        "node {node} signed a checkpoint of {length} entries that follows its checkpoint of \
         {prev} entries, skipping the one of {held} entries it signed before (forked: its \
         audit log was cut back and grew again)"
    )]
    Forked {
        /// The signing node.
        node: String,
        /// Entries the later checkpoint covers.
        length: u64,
        /// Entries the checkpoint it names as its predecessor covers.
        prev: u64,
        /// Entries the checkpoint held covers.
        held: u64,
    },
    /// A longer checkpoint that names no predecessor, from a node that has chained its
    /// checkpoints before: it cannot be linked to the one held.
    #[error(
        "node {node} signed a checkpoint of {length} entries that names no previous \
         checkpoint, after chained ones (unchained)"
    )]
    Unchained {
        /// The signing node.
        node: String,
        /// Entries it covers.
        length: u64,
    },
}

/// Two checkpoints of one node that cannot both be honest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contradiction {
    /// How they contradict each other.
    pub divergence: Divergence,
    /// The one held (kept).
    pub held: Checkpoint,
    /// The one refused.
    pub refused: Checkpoint,
}

/// A [`Contradiction`] as a peer keeps it: the two checkpoints, both signed by the node
/// they accuse, so anyone holding the directory can check them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// When the holder found it (RFC 3339, UTC).
    pub found_at: String,
    /// The [`Divergence`], in words.
    pub problem: String,
    /// The checkpoint held.
    pub held: Checkpoint,
    /// The checkpoint refused.
    pub refused: Checkpoint,
}

impl Evidence {
    /// True if the two checkpoints contradict each other whatever order they were seen in
    /// (the refused one does not extend the held one, and is no earlier one of it). Their
    /// signatures are the caller's to check.
    pub fn proves_itself(&self) -> bool {
        let held = BTreeMap::from([(self.held.length, self.held.clone())]);
        follow(&held, &[], &self.refused).outcome.is_err()
    }

    /// `contradiction`, found at `found_at`.
    pub fn of(contradiction: &Contradiction, found_at: &str) -> Evidence {
        Evidence {
            found_at: found_at.to_owned(),
            problem: contradiction.divergence.to_string(),
            held: contradiction.held.clone(),
            refused: contradiction.refused.clone(),
        }
    }
}

/// What [`follow`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// The checkpoints that extend the newest one held, each the one before (directly or
    /// through the links), oldest first: to hold, the last one as the newest.
    pub keep: Vec<Checkpoint>,
    /// How the sender's newest checkpoint relates to what is held now, or the first
    /// contradiction found.
    pub outcome: Result<Link, Contradiction>,
}

/// Judges what a node sent of its checkpoints: `links` (oldest first: its checkpoints after
/// the one the holder said it holds) and then `latest`, its newest, each against what is
/// held of that node (`held`, by length: the checkpoints taken in turn, each extending the
/// one before, the newest last; the oldest may have been let go). Without anything held,
/// the first one is taken as it is (there is nothing to compare it with). The signatures
/// are the caller's to check first.
///
/// A checkpoint shorter than the newest one held is not by itself a rollback: it reaches a
/// node over two channels (the sender's batches and its answers), so an earlier one can
/// arrive late. It must be one of the checkpoints held; a chained one missing from the
/// held range (each held one extended the one before, so none is missing honestly) or a
/// different one of a held length contradicts them. One older than everything held cannot
/// be judged and is passed over; a node that went back is caught by its next checkpoint.
pub fn follow(
    held: &BTreeMap<u64, Checkpoint>,
    links: &[Checkpoint],
    latest: &Checkpoint,
) -> Followed {
    let mut keep: Vec<Checkpoint> = Vec::new();
    let mut outcome = Ok(Link::Held);
    for c in links.iter().chain(std::iter::once(latest)) {
        let Some(tip) = keep.last().or_else(|| held.values().next_back()) else {
            keep.push(c.clone());
            outcome = Ok(Link::Extends);
            continue;
        };
        let judged = match c.follows(tip) {
            Ok(Link::Older) => older(held, &keep, c, tip),
            judged => judged,
        };
        match judged {
            Ok(Link::Extends) => {
                keep.push(c.clone());
                outcome = Ok(Link::Extends);
            }
            Ok(link) => outcome = Ok(link),
            Err(divergence) => {
                let contradiction = Contradiction {
                    divergence,
                    held: tip.clone(),
                    refused: c.clone(),
                };
                return Followed {
                    keep,
                    outcome: Err(contradiction),
                };
            }
        }
    }
    Followed { keep, outcome }
}

/// Judges `c`, shorter than `tip`, against the checkpoints held (`held` and those just
/// taken, `kept`). The held ones are known to follow one another from the first chained
/// one on, so a chained checkpoint of a length in that range that is not among them is
/// not in the node's chain.
fn older(
    held: &BTreeMap<u64, Checkpoint>,
    kept: &[Checkpoint],
    c: &Checkpoint,
    tip: &Checkpoint,
) -> Result<Link, Divergence> {
    let same_length = kept
        .iter()
        .find(|k| k.length == c.length)
        .or_else(|| held.get(&c.length));
    let chained_from = held
        .values()
        .chain(kept)
        .find(|k| k.prev.is_some())
        .map(|k| k.length);
    match same_length {
        Some(k) if k.digest() == c.digest() => Ok(Link::Older),
        Some(_) => Err(Divergence::Rewritten {
            node: c.node.clone(),
            length: c.length,
        }),
        None if c.prev.is_some() && chained_from.is_some_and(|from| c.length >= from) => {
            Err(Divergence::RolledBack {
                node: c.node.clone(),
                length: c.length,
                earlier: tip.length,
            })
        }
        None => Ok(Link::Older),
    }
}

#[cfg(test)]
mod tests;
