//! Taking messages in: a push from an agency (`accept`) and a batch handed over by another
//! node (`receive_batch`). A [`Submission`] is prepared on the caller's task (canonical
//! payload, fingerprint, sealing, the encoded record), so the writer does little per
//! message.
//!
//! Invariants enforced here:
//! - idempotency: a sender-chosen id seen before answers with the original acceptance if
//!   the sender and fingerprint match, and is a conflict otherwise; a handed-over message
//!   held already answers with its original receipt facts and stays in the inbox once;
//! - a push for a full outbox is refused before anything is written;
//! - a message is taken only if its consent covers it (`consent.rs`), and then in one write
//!   with its inbox or outbox entry, its audit entry (and through it its place in the index
//!   by subject, where a withdrawal finds it), its place in the retention queue (`e`), and
//!   its referral's lifecycle.

use ring::digest::{Context, SHA256};
use time::OffsetDateTime;

use super::group::Group;
use super::{Accepted, LedgerError, Received, Writer};
use crate::core::audit::{Action, Event};
use crate::core::consent::{ConsentKey, ConsentRecord, Retention};
use crate::core::identity::{AgencyId, CenterId, Identity};
use crate::core::message::{Envelope, MessageId, MessageType};
use crate::core::routing::Route;
use crate::core::time::Timestamp;
use crate::core::vault::{Binding, DataKeys, VaultError};
use crate::core::wire::WithheldReport;
use crate::node::store::{DeliveryRecord, EncodedMessage, MessageRecord, RecordError, StoreError};

/// A message prepared for the ledger: its record already encoded, on the caller's thread.
#[derive(Debug)]
pub struct Submission {
    pub(super) id: MessageId,
    pub(super) sender_chose_id: bool,
    pub(super) from: AgencyId,
    pub(super) to: AgencyId,
    pub(super) route: Route,
    pub(super) subject: String,
    pub(super) consent_id: String,
    /// The cited consent's collector: as the sender named it (or the sending node, for a
    /// handed-over message), and once the writer found the consent (`enforce`), as found.
    pub(super) consent_by: Option<String>,
    pub(super) body_sha256: String,
    pub(super) accepted_at: Timestamp,
    pub(super) status_update: Option<StatusUpdate>,
    /// The payload's purpose (`None` for a status: its referral's, found by the writer).
    pub(super) purpose: Option<String>,
    /// The payload's data items (see `consent::items_of`).
    pub(super) items: Vec<String>,
    /// The record without its payload: what stays if the payload is erased.
    pub(super) meta: MessageRecord,
    pub(super) record: EncodedMessage,
}

/// What a `referral-status` message says about the referral it answers.
#[derive(Debug, Clone)]
pub(super) struct StatusUpdate {
    pub(super) referral_id: MessageId,
    pub(super) status: String,
    pub(super) changed_at: String,
    /// `/outcome/code`, for a completion.
    pub(super) outcome: Option<String>,
    /// The referral's record at this node, looked up once by the writer (`find_referral`)
    /// for both the consent check (its purpose) and the lifecycle update.
    pub(super) referral: Option<MessageRecord>,
}

impl Submission {
    /// What the submission holds in memory, about: its encoded record (the payload, sealed
    /// or not); the record without payload and the other fields are small next to it. Used
    /// to bound the ledger's queue in bytes (`queue`).
    pub fn bytes(&self) -> usize {
        self.record.len()
    }

    /// Prepares `envelope` from `sender`, going `route`, taken at `now` (the node's clock,
    /// see [`super::Ledger::clock`]), assigning an id if the sender chose none.
    ///
    /// The payload is serialised once, canonically (keys sorted, no whitespace); those bytes
    /// are both what is stored and, with the envelope's other fields, the request's
    /// fingerprint for idempotent retries. Two bodies that differ only in key order or
    /// spacing are the same message, and two nodes compute the same fingerprint for it.
    /// With `keys`, the stored payload is sealed (see `vault`); the fingerprint is always
    /// over the plain canonical payload.
    pub fn new(
        sender: &AgencyId,
        envelope: Envelope,
        route: Route,
        keys: Option<&DataKeys>,
        now: OffsetDateTime,
    ) -> Result<Submission, VaultError> {
        let payload = serde_json::value::to_raw_value(&envelope.payload)
            .expect("JSON values always serialize");
        let fingerprint = fingerprint(&envelope, payload.get());
        let status_update = status_update(envelope.message_type, &envelope.payload);
        let purpose = envelope
            .payload
            .get("purpose")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let items = crate::core::consent::items_of(&envelope.payload);
        let sender_chose_id = envelope.id.is_some();
        // The key: the id scoped by its sender (see `MessageId`).
        let id = match &envelope.id {
            Some(chosen) => MessageId::scoped(sender, chosen),
            None => MessageId::scoped(sender, &MessageId::generate()),
        };
        let accepted_at = Timestamp::new(now);
        let (payload, sealed) = match keys {
            None => (Some(payload), None),
            Some(keys) => {
                let binding = Binding {
                    id: id.as_str(),
                    from: sender.as_str(),
                    to: envelope.to.as_str(),
                    subject: &envelope.subject,
                };
                (None, Some(keys.seal(&binding, payload.get().as_bytes())?))
            }
        };
        let meta = MessageRecord {
            id: id.to_string(),
            sender_chose_id,
            from: sender.to_string(),
            to: envelope.to.to_string(),
            message_type: envelope.message_type.to_string(),
            version: envelope.version,
            subject: envelope.subject,
            consent_id: envelope.consent_id,
            // The writer's to set, with the queue position (`EncodedMessage::stamped`).
            consent_by: None,
            payload: None,
            sealed: None,
            body_sha256: fingerprint,
            accepted_at: accepted_at.to_string(),
            purpose: purpose.clone(),
            items: items.clone(),
            erased: None,
            seq: None,
            peer: match &route {
                Route::Remote(peer) => Some(peer.clone()),
                Route::Local => None,
            },
        };
        let record = MessageRecord {
            payload,
            sealed,
            ..meta.clone()
        }
        .encode();
        Ok(Submission {
            id,
            sender_chose_id,
            from: sender.clone(),
            to: envelope.to,
            route,
            subject: meta.subject.clone(),
            consent_id: meta.consent_id.clone(),
            consent_by: envelope
                .consent_collected_by
                .as_ref()
                .map(ToString::to_string),
            body_sha256: meta.body_sha256.clone(),
            accepted_at,
            status_update,
            purpose,
            items,
            meta,
            record,
        })
    }

    /// The message id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The fingerprint (hex SHA-256) that receipts sign.
    pub fn digest(&self) -> &str {
        &self.body_sha256
    }

    /// When this node took the message.
    pub fn accepted_at(&self) -> &Timestamp {
        &self.accepted_at
    }
}

fn status_update(t: MessageType, payload: &serde_json::Value) -> Option<StatusUpdate> {
    if t != MessageType::ReferralStatus {
        return None;
    }
    let field = |name: &str| payload.get(name).and_then(serde_json::Value::as_str);
    Some(StatusUpdate {
        referral_id: MessageId::parse(field("referral_id")?)?,
        status: field("status")?.to_owned(),
        changed_at: field("changed_at")?.to_owned(),
        outcome: payload
            .pointer("/outcome/code")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        referral: None,
    })
}

/// SHA-256 (hex) over the envelope's fields in canonical JSON, a NUL, and the canonical
/// payload. Not over `consent_collected_by`: the origin node resolves the collector when
/// the sender did not name it and hands the message over naming it, and both nodes must
/// compute the same fingerprint (a retry naming another collector for the same id and body
/// is answered as the original).
fn fingerprint(envelope: &Envelope, canonical_payload: &str) -> String {
    let head = serde_json::json!({
        "id": envelope.id.as_ref().map(MessageId::as_str),
        "type": envelope.message_type.as_str(),
        "version": envelope.version,
        "to": envelope.to.as_str(),
        "subject": envelope.subject,
        "consent_id": envelope.consent_id,
    });
    let mut ctx = Context::new(&SHA256);
    ctx.update(&serde_json::to_vec(&head).expect("JSON values always serialize"));
    ctx.update(&[0]);
    ctx.update(canonical_payload.as_bytes());
    crate::core::hex::encode(ctx.finish().as_ref())
}

impl Writer {
    /// A push: the sender (the actor) is the submission's `from`.
    pub(super) fn accept(
        &mut self,
        mut m: Submission,
        g: &mut Group,
    ) -> Result<Accepted, LedgerError> {
        if m.sender_chose_id {
            if let Some((from, sha, at)) = self.earlier(g, &m.id)? {
                return if from == m.from.as_str() && sha == m.body_sha256 {
                    Ok(Accepted {
                        id: m.id,
                        accepted_at: at,
                    })
                } else {
                    Err(LedgerError::IdConflict(m.id))
                };
            }
        }
        self.check_room(&m)?;
        let actor = Identity::Agency(m.from.clone());
        let retention = self.enforce(&actor, &mut m, g)?;
        let id = m.id.clone();
        let accepted_at = m.accepted_at.clone();
        self.take(&actor, Action::Accepted, m, retention, None, g)?;
        Ok(Accepted { id, accepted_at })
    }

    /// A batch from the node of `peer` (the actor): first the consents it carried, then its
    /// reports of messages it withheld, then each message in order, each with its result.
    pub(super) fn receive_batch(
        &mut self,
        peer: CenterId,
        consents: Vec<ConsentRecord>,
        withheld: Vec<WithheldReport>,
        items: Vec<Submission>,
        g: &mut Group,
    ) -> Result<Vec<Result<Received, LedgerError>>, LedgerError> {
        let actor = Identity::Node(peer.clone());
        for c in consents {
            self.merge_consent(&actor, c, g)?;
        }
        self.withheld_at_peer(&actor, &peer, withheld, g)?;
        Ok(items
            .into_iter()
            .map(|item| self.receive(&actor, item, g))
            .collect())
    }

    fn receive(
        &mut self,
        actor: &Identity,
        mut m: Submission,
        g: &mut Group,
    ) -> Result<Received, LedgerError> {
        if let Some((from, sha, at)) = self.earlier(g, &m.id)? {
            if from != m.from.as_str() || sha != m.body_sha256 {
                return Err(LedgerError::IdConflict(m.id));
            }
            // Already here: a resend after a lost answer. Same facts, same receipt, and the
            // message stays in the inbox once.
            return Ok(Received {
                id: m.id,
                digest: sha,
                received_at: at,
            });
        }
        self.check_room(&m)?;
        let received = Received {
            id: m.id.clone(),
            digest: m.body_sha256.clone(),
            received_at: m.accepted_at.clone(),
        };
        let retention = self.enforce(actor, &mut m, g)?;
        let detail = Some(format!("digest {}", m.body_sha256));
        self.take(actor, Action::Received, m, retention, detail, g)?;
        Ok(received)
    }

    /// Room for `m` where it goes: its outbox below `outbox_max`, its recipient's inbox
    /// below `inbox_max`. (A message held already, a retry, is answered before this.)
    fn check_room(&self, m: &Submission) -> Result<(), LedgerError> {
        match &m.route {
            Route::Remote(peer) => {
                if self.outbox_len.get(peer).copied().unwrap_or(0) >= self.outbox_max {
                    return Err(LedgerError::OutboxFull(peer.clone()));
                }
            }
            Route::Local => {
                if self.inbox_len.get(&m.to).copied().unwrap_or(0) >= self.inbox_max {
                    return Err(LedgerError::InboxFull(m.to.clone()));
                }
            }
        }
        Ok(())
    }

    /// An earlier message with this id: (from, fingerprint, accepted_at). A stored record
    /// whose time does not read is damaged (this node writes only RFC 3339).
    fn earlier(
        &self,
        g: &Group,
        id: &MessageId,
    ) -> Result<Option<(String, String, Timestamp)>, LedgerError> {
        if let Some(seen) = g.messages.get(id) {
            return Ok(Some(seen.clone()));
        }
        let Some(r) = self.store.message_by_key_or_legacy(id)? else {
            return Ok(None);
        };
        let at = Timestamp::parse(&r.accepted_at).ok_or_else(|| StoreError::Corrupt {
            family: "message",
            key: id.to_string(),
            source: RecordError::Body(format!(
                "accepted_at {:?} is not an RFC 3339 time",
                r.accepted_at
            )),
        })?;
        Ok(Some((r.from, r.body_sha256, at)))
    }

    /// Writes a new message: record (with its queue position), inbox or outbox entry, audit
    /// entry, its place in the retention queue, and the referral's lifecycle if it is a
    /// status update.
    fn take(
        &mut self,
        actor: &Identity,
        action: Action,
        m: Submission,
        retention: Retention,
        detail: Option<String>,
        g: &mut Group,
    ) -> Result<(), LedgerError> {
        let entry = self.head.append(Event {
            at: m.accepted_at.to_string(),
            actor: actor.uri(),
            action,
            message_id: m.id.public().to_owned(),
            from: m.from.to_string(),
            to: m.to.to_string(),
            subject: m.subject,
            consent_id: m.consent_id,
            consent_by: m.consent_by.clone(),
            detail,
        });
        let peer = match m.route {
            Route::Local => {
                g.writes.put_inbox(&m.to, entry.seq, &m.id);
                *self.inbox_len.entry(m.to.clone()).or_insert(0) += 1;
                None
            }
            Route::Remote(peer) => {
                g.writes.put_outbox(&peer, entry.seq, &m.id);
                *self.outbox_len.entry(peer.clone()).or_insert(0) += 1;
                Some(peer)
            }
        };
        // The record carries its queue position, which is all its delivery record would say
        // yet (`Store::delivery`): no delivery record is written until it changes.
        let delivery = DeliveryRecord::new(entry.seq, peer);
        // `enforce` found the consent before `take` is called, so its collector is known.
        let collector = m.consent_by.unwrap_or_else(|| m.from.to_string());
        g.writes
            .put_message(m.record.stamped(entry.seq, &collector));
        g.writes.put_audit(&entry);
        self.count_message(
            g,
            m.accepted_at.instant(),
            m.from.as_str(),
            m.to.as_str(),
            &m.meta.message_type,
        );
        // When its retention ends (counted from now). A withdrawal finds it through the
        // audit entry's subject (`withhold_under`).
        let end = retention.end(g.now).unix_timestamp().max(0) as u64;
        g.writes.put_retention(end, entry.seq, &m.id);
        g.under_consent
            .entry(ConsentKey::new(collector.clone(), entry.consent_id.clone()))
            .or_default()
            .push(m.id.clone());
        let mut meta = m.meta;
        meta.seq = Some(entry.seq);
        meta.consent_by = Some(collector);
        g.metas.insert(m.id.clone(), meta);
        g.deliveries.insert(m.id.clone(), delivery);
        // Only a sender-chosen id (every handed-over message has one) can come again in the
        // same group; node-assigned ids are unique by construction.
        if m.sender_chose_id {
            g.messages.insert(
                m.id.clone(),
                (m.from.to_string(), m.body_sha256, m.accepted_at),
            );
        }
        if let Some(update) = m.status_update {
            self.update_lifecycle(&m.id, &m.from, &m.to, update, g)?;
        }
        Ok(())
    }
}
