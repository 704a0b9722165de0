//! Consents on the writer: registration by the collecting agency, the check every message
//! passes before it is taken (`enforce`), and the merge of consents another node sends with
//! a batch.
//!
//! Invariants enforced here:
//! - a message is taken only if `consent::ConsentRecord::check` passes against the consent
//!   as this thread knows it, at the group's time; otherwise a `refused` audit entry (with
//!   the condition that failed) is written and the caller gets [`LedgerError::Refused`];
//! - consents are kept, found and changed by collector and id (`consent::ConsentKey`): an
//!   agency registers each of its ids once (the same document again is answered with the
//!   record, another document under it is a conflict, which tells the agency only of its
//!   own ids); another collector's consent with the same id is another consent, never a
//!   conflict, and never one a message is checked against unless it is the one the message
//!   cites (`consent::resolve`);
//! - a consent from a peer is kept under its own collector and id: it can neither replace
//!   nor shadow another collector's; another document under a key known here is ignored
//!   (logged) and the one registered first stays;
//! - the consent cache is coherent: this thread is the only writer of consents, and every
//!   consent write drops the cached entry.

use super::group::Group;
use super::{LedgerError, Writer, CONSENT_CACHE_MAX};
use crate::core::audit::{self, Action, Event};
use crate::core::consent::{ConsentKey, ConsentRecord, ConsentStatus, Refusal, Retention, Use};
use crate::core::identity::{AgencyId, Identity};
use crate::core::message::MessageId;
use crate::node::store::StoreError;

use super::intake::Submission;

impl Writer {
    /// Consent `key`, as written in this group or stored.
    pub(super) fn consent(
        &self,
        g: &Group,
        key: &ConsentKey,
    ) -> Result<Option<ConsentRecord>, LedgerError> {
        Ok(match g.consents.get(key) {
            Some(c) => Some(c.clone()),
            None => self.store.consent(key)?,
        })
    }

    /// Which consent submission `m` cites: the collector it names (the sender's envelope, or
    /// the sending node's word on a handed-over message), else the one `consent::resolve`
    /// picks among the consents with the cited id, as written in this group or stored.
    fn resolve_consent(
        &mut self,
        m: &Submission,
        g: &Group,
    ) -> Result<Result<ConsentKey, Refusal>, LedgerError> {
        if let Some(collector) = &m.consent_by {
            return Ok(Ok(ConsentKey::new(collector.clone(), m.consent_id.clone())));
        }
        // The common case first, without a scan: the sender's own consent.
        let own = ConsentKey::new(m.from.as_str(), m.consent_id.clone());
        if g.consents.contains_key(&own) {
            return Ok(Ok(own));
        }
        match self.cache_consent(&own)? {
            Ok(()) => return Ok(Ok(own)),
            Err(Refusal::Unknown { .. }) => {}
            Err(unreadable) => return Ok(Err(unreadable)),
        }
        let mut candidates = self.store.consents_with_id(&m.consent_id)?;
        candidates.extend(
            g.consents
                .values()
                .filter(|c| c.id == m.consent_id)
                .cloned(),
        );
        let unknown = || Refusal::Unknown {
            id: m.consent_id.clone(),
        };
        Ok(crate::core::consent::resolve(
            &m.consent_id,
            m.from.as_str(),
            m.to.as_str(),
            &candidates,
        )
        .and_then(|k| k.ok_or_else(unknown)))
    }

    /// Why the consent `id` no longer lets a message under it be handed out at the group's
    /// time (expired or withdrawn: see `ConsentRecord::ended`), or `None` while it does.
    /// A consent that is missing or does not read is `Err(())`: hand nothing out under it,
    /// but take no action on a record that may only be damaged.
    pub(super) fn consent_ended(
        &mut self,
        key: &ConsentKey,
        g: &Group,
    ) -> Result<Result<Option<String>, ()>, LedgerError> {
        let describe = |r: Refusal| format!("{r}; nothing under it is handed out any more");
        // Written in this group: not in the cache yet (the cache holds durable consents).
        if let Some(c) = g.consents.get(key) {
            return Ok(c
                .terms()
                .map(|t| c.ended(&t, g.now).map(describe))
                .map_err(|_| ()));
        }
        if let Err(why) = self.cache_consent(key)? {
            tracing::error!(consent = %key, %why, "consent unusable: nothing handed out under it");
            return Ok(Err(()));
        }
        let (c, terms) = &self.consent_cache[key];
        Ok(Ok(c.ended(terms, g.now).map(describe)))
    }

    /// The audit entry of a change to consent `c`, at `at`.
    pub(super) fn consent_event(
        &mut self,
        actor: &Identity,
        action: Action,
        c: &ConsentRecord,
        at: &str,
        detail: Option<String>,
    ) -> audit::AuditEntry {
        self.head.append(Event {
            at: at.to_owned(),
            actor: actor.uri(),
            action,
            message_id: String::new(),
            from: c.collected_by.clone(),
            to: c.recipients.join(" "),
            subject: c.subject.clone(),
            consent_id: c.id.clone(),
            consent_by: None,
            detail,
        })
    }

    /// Keeps consent `c` as written in this group (record, cache, group view).
    pub(super) fn put_consent(&mut self, c: &ConsentRecord, g: &mut Group) {
        g.writes.put_consent(c);
        let key = c.key();
        self.consent_cache.remove(&key);
        g.consents.insert(key, c.clone());
    }

    pub(super) fn register_consent(
        &mut self,
        collector: &AgencyId,
        record: ConsentRecord,
        g: &mut Group,
    ) -> Result<(ConsentRecord, bool), LedgerError> {
        if let Some(existing) = self.consent(g, &record.key())? {
            return if existing.digest == record.digest {
                Ok((existing, false))
            } else {
                Err(LedgerError::ConsentConflict(record.id))
            };
        }
        let actor = Identity::Agency(collector.clone());
        let at = record.registered_at.clone();
        let entry = self.consent_event(&actor, Action::ConsentRegistered, &record, &at, None);
        self.put_consent(&record, g);
        g.writes.put_audit(&entry);
        Ok((record, true))
    }

    /// Takes in a consent another node sent with a batch (`actor`: that node): a consent
    /// new here is kept as it came; a withdrawal of one kept here is recorded and applied
    /// (the messages under it withheld). A different document under a known id is ignored
    /// (logged): the one registered first stays.
    pub(super) fn merge_consent(
        &mut self,
        actor: &Identity,
        incoming: ConsentRecord,
        g: &mut Group,
    ) -> Result<(), LedgerError> {
        let Some(mut local) = self.consent(g, &incoming.key())? else {
            let detail = Some(format!("status {}", incoming.status));
            let at = g.at.clone();
            let entry = self.consent_event(actor, Action::ConsentReceived, &incoming, &at, detail);
            g.writes.put_audit(&entry);
            self.put_consent(&incoming, g);
            return Ok(());
        };
        if local.digest != incoming.digest {
            tracing::warn!(consent = %incoming.key(), actor = %actor.uri(),
                "a peer sent a different document under a consent known here; kept ours");
            return Ok(());
        }
        // Held from before consents travelled signed: keep the collector's word now, to
        // relay it.
        if local.attestation.is_none()
            && incoming.attestation.is_some()
            && incoming.status == local.status
        {
            local.attestation = incoming.attestation.clone();
            self.put_consent(&local, g);
        }
        let Some(withdrawal) = incoming
            .withdrawal()
            .filter(|_| local.status != ConsentStatus::Withdrawn)
            .cloned()
        else {
            return Ok(());
        };
        let reason = format!(
            "consent {} withdrawn at {} (told by {})",
            local.id,
            withdrawal.at,
            actor.uri()
        );
        local.status = ConsentStatus::Withdrawn;
        local.history.push(withdrawal);
        // The collector's node's word on the withdrawal, relayed with the consent from now
        // on. (A `granted` attestation never replaces a withdrawn one: withdrawal is final,
        // and an old signed word replayed must not undo it.)
        if incoming.attestation.is_some() {
            local.attestation = incoming.attestation.clone();
        }
        let at = g.at.clone();
        let entry = self.consent_event(
            actor,
            Action::ConsentReceived,
            &local,
            &at,
            Some("status withdrawn".into()),
        );
        g.writes.put_audit(&entry);
        self.put_consent(&local, g);
        self.withhold_under(actor, &local, &reason, g)?;
        Ok(())
    }

    /// The consent check for a message about to be taken. A refusal is an audit entry
    /// (`refused`, with the failed condition) and [`LedgerError::Refused`].
    pub(super) fn enforce(
        &mut self,
        actor: &Identity,
        m: &mut Submission,
        g: &mut Group,
    ) -> Result<Retention, LedgerError> {
        if let Some(update) = &mut m.status_update {
            // The referral this status answers went to the status's sender from its
            // recipient: its key is the id scoped by the status's recipient.
            let key = MessageId::scoped(&m.to, &update.referral_id);
            update.referral = self.find_referral(&key, g)?;
            update.referral_id = update
                .referral
                .as_ref()
                .and_then(|r| MessageId::from_key(&r.id))
                .unwrap_or(key);
        }
        let checked = match self.resolve_consent(m, g)? {
            Ok(key) => {
                m.consent_by = Some(key.collector.clone());
                self.check_consent(m, &key, g)?
            }
            Err(refusal) => Err(refusal),
        };
        let refusal = match checked {
            Ok(retention) => return Ok(retention),
            Err(refusal) => refusal,
        };
        let entry = self.head.append(Event {
            at: g.at.clone(),
            actor: actor.uri(),
            action: Action::Refused,
            message_id: m.id.public().to_owned(),
            from: m.from.to_string(),
            to: m.to.to_string(),
            subject: m.subject.clone(),
            consent_id: m.consent_id.clone(),
            consent_by: m.consent_by.clone(),
            detail: Some(refusal.describe()),
        });
        g.writes.put_audit(&entry);
        self.metrics.refused(refusal.kind());
        // An agency's push: a hand-over refused here was counted at its origin.
        if matches!(actor, Identity::Agency(_)) {
            self.count_refusal(g, refusal.kind());
        }
        Err(LedgerError::Refused(refusal))
    }

    /// Whether consent `key`, the one `m` cites, covers it at the group's time (see
    /// `consent::ConsentRecord::check`); the outer error is a storage failure, the inner
    /// the refusal.
    fn check_consent(
        &mut self,
        m: &Submission,
        key: &ConsentKey,
        g: &Group,
    ) -> Result<Result<Retention, Refusal>, LedgerError> {
        let purpose = match (&m.purpose, &m.status_update) {
            (Some(p), _) => Some(p.clone()),
            // A status travels for the purpose of the referral it answers.
            (None, Some(update)) => {
                match update.referral.as_ref().and_then(|r| r.purpose.clone()) {
                    Some(p) => Some(p),
                    None => {
                        return Ok(Err(Refusal::PurposeUnknown {
                            why: format!(
                                "a referral-status travels for the purpose of its referral, and \
                                 referral {} is not held at this node",
                                update.referral_id
                            ),
                        }))
                    }
                }
            }
            (None, None) => None,
        };
        let wanted = Use {
            subject: &m.subject,
            sender: m.from.as_str(),
            recipient: m.to.as_str(),
            purpose: purpose.as_deref(),
            items: &m.items,
        };
        if let Some(c) = g.consents.get(key) {
            return Ok(c.check(&wanted, g.now));
        }
        if let Err(refusal) = self.cache_consent(key)? {
            return Ok(Err(refusal));
        }
        let (c, terms) = &self.consent_cache[key];
        Ok(c.check_with(terms, &wanted, g.now)
            .map(|()| terms.retention))
    }

    /// Puts durable consent `key` and its parsed terms into [`Writer::consent_cache`] if
    /// they are not there; a consent that is missing or does not read is the refusal to
    /// give.
    fn cache_consent(&mut self, key: &ConsentKey) -> Result<Result<(), Refusal>, LedgerError> {
        if self.consent_cache.contains_key(key) {
            return Ok(Ok(()));
        }
        let id = key.id.as_str();
        let c = match self.store.consent(key) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(Err(Refusal::Unknown { id: id.to_owned() })),
            Err(e @ StoreError::Corrupt { .. }) => {
                return Ok(Err(Refusal::Unreadable {
                    id: id.to_owned(),
                    why: e.to_string(),
                }))
            }
            Err(e) => return Err(e.into()),
        };
        let terms = match c.terms() {
            Ok(t) => t,
            Err(r) => return Ok(Err(r)),
        };
        if self.consent_cache.len() >= CONSENT_CACHE_MAX {
            self.consent_cache.clear();
        }
        self.consent_cache.insert(key.clone(), (c, terms));
        Ok(Ok(()))
    }
}
