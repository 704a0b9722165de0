//! Consents by collector and id: the `k` family, the notices (`n`) that tell other centers
//! of a consent's state, and the one-time rewrite of both from the layout before consents
//! were scoped.
//!
//! Invariants kept here:
//! - a consent is stored under its id, NUL, its collecting agency ([`ConsentKey`]), so two
//!   agencies' consents with the same id are two records, and all consents with one id are
//!   one prefix scan (what `consent::resolve` chooses among);
//! - a notice is stored under the peer center, NUL, the consent id, NUL, the collector;
//! - a store written before this layout (format 1: consent keys without a NUL) is
//!   rewritten by `plusgate migrate` (`format`), each old key replaced by its new one in one
//!   atomic batch, then synced; a node never opens it before (`Store::open_with` refuses
//!   format 1), and a store already rewritten has no key to rewrite.

use super::keys::{key, queue_prefix, CONSENT, NOTICE};
use super::records::MessageRecord;
use super::{decode_at, Store, StoreError};
use crate::core::consent::{ConsentKey, ConsentRecord};
use crate::core::identity::CenterId;
use crate::node::store::record::RecordError;

/// `k`, consent id, NUL, collector.
pub(super) fn consent_key(k: &ConsentKey) -> Vec<u8> {
    let mut out = id_prefix(&k.id);
    out.extend_from_slice(k.collector.as_bytes());
    out
}

/// `k`, consent id, NUL: every collector's consent with this id.
fn id_prefix(id: &str) -> Vec<u8> {
    let mut out = key(CONSENT, id.as_bytes());
    out.push(0);
    out
}

/// `n`, peer center, NUL, consent id, NUL, collector.
pub(super) fn notice_key(peer: &CenterId, k: &ConsentKey) -> Vec<u8> {
    let mut out = queue_prefix(NOTICE, peer.as_str());
    out.extend_from_slice(k.id.as_bytes());
    out.push(0);
    out.extend_from_slice(k.collector.as_bytes());
    out
}

impl Store {
    /// Reads and verifies a registered consent.
    pub fn consent(&self, k: &ConsentKey) -> Result<Option<ConsentRecord>, StoreError> {
        let at = consent_key(k);
        match self.db.get(&at)? {
            None => Ok(None),
            Some(v) => decode_at("consent", &at, &v).map(Some),
        }
    }

    /// Every consent with id `id`, whoever collected it, in collector order.
    pub fn consents_with_id(&self, id: &str) -> Result<Vec<ConsentRecord>, StoreError> {
        self.db
            .scan_prefix(id_prefix(id))
            .map(|item| {
                let (k, v) = item?;
                decode_at("consent", &k, &v)
            })
            .collect()
    }

    /// The consent a message cites: consent `id` collected by `by`, or, for a message taken
    /// before consents were scoped (its record and audit entries name no collector), the
    /// one consent with that id. Ids were unique per node then; if another collector has
    /// since registered the same id: the sender's (`from`), else the recipient's (`to`),
    /// else the first registered.
    pub fn consent_cited(
        &self,
        id: &str,
        by: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<ConsentKey, StoreError> {
        if let Some(collector) = by {
            return Ok(ConsentKey::new(collector, id));
        }
        let all = self.consents_with_id(id)?;
        let pick = all
            .iter()
            .find(|c| c.collected_by == from)
            .or_else(|| all.iter().find(|c| c.collected_by == to))
            .or_else(|| {
                all.iter()
                    .min_by(|a, b| a.registered_at.cmp(&b.registered_at))
            });
        // None at all: the key of a consent that is not here, which every lookup answers
        // as unknown.
        Ok(pick.map_or_else(|| ConsentKey::new(from, id), ConsentRecord::key))
    }

    /// [`Store::consent_cited`] by message record `m`.
    pub fn consent_of(&self, m: &MessageRecord) -> Result<ConsentKey, StoreError> {
        self.consent_cited(&m.consent_id, m.consent_by.as_deref(), &m.from, &m.to)
    }

    /// Rewrites consents and notices stored before consents were scoped by collector (see
    /// the module doc). Returns how many keys were rewritten.
    pub(super) fn scope_consent_keys(&self) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut moved = 0;
        let mut collectors = std::collections::HashMap::new();
        for item in self.db.scan_prefix([CONSENT]) {
            let (k, v) = item?;
            if k[1..].contains(&0) {
                continue;
            }
            let c: ConsentRecord = decode_at("consent", &k, &v)?;
            collectors.insert(c.id.clone(), c.collected_by.clone());
            batch.insert(consent_key(&c.key()), v);
            batch.remove(k);
            moved += 1;
        }
        for item in self.db.scan_prefix([NOTICE]) {
            let (k, _) = item?;
            let corrupt = |why: &str| StoreError::Corrupt {
                family: "notice",
                key: String::from_utf8_lossy(&k).into_owned(),
                source: RecordError::Body(why.into()),
            };
            let Some(nul) = k.iter().position(|&b| b == 0) else {
                return Err(corrupt("key has no peer"));
            };
            if k[nul + 1..].contains(&0) {
                continue;
            }
            let peer = std::str::from_utf8(&k[1..nul])
                .ok()
                .and_then(|p| CenterId::parse(p).ok())
                .ok_or_else(|| corrupt("peer is not a center id"))?;
            let id = std::str::from_utf8(&k[nul + 1..])
                .map_err(|_| corrupt("consent id is not UTF-8"))?;
            // A notice of a consent no longer here tells nothing: it goes.
            if let Some(collector) = collectors.get(id) {
                batch.insert(
                    notice_key(&peer, &ConsentKey::new(collector, id)),
                    Vec::new(),
                );
            }
            batch.remove(k);
            moved += 1;
        }
        if moved > 0 {
            self.db.apply_batch(batch)?;
            self.sync()?;
        }
        Ok(moved)
    }

    /// The consents whose current state center `peer` is still to be told, in id order.
    pub fn notices(
        &self,
        peer: &CenterId,
    ) -> impl Iterator<Item = Result<ConsentKey, StoreError>> + '_ {
        let prefix = queue_prefix(NOTICE, peer.as_str());
        let prefix_len = prefix.len();
        self.db.scan_prefix(prefix).map(move |item| {
            let (k, _) = item?;
            let rest = &k[prefix_len..];
            let parsed = rest.iter().position(|&b| b == 0).and_then(|nul| {
                let id = std::str::from_utf8(&rest[..nul]).ok()?;
                let collector = std::str::from_utf8(&rest[nul + 1..]).ok()?;
                Some(ConsentKey::new(collector, id))
            });
            parsed.ok_or_else(|| StoreError::Corrupt {
                family: "notice",
                key: String::from_utf8_lossy(&k).into_owned(),
                source: RecordError::Body("not a consent id and collector".into()),
            })
        })
    }
}
