//! After a restore: when the backup was taken, which peers were asked to send again what
//! they delivered since, and what a peer finds to send again when asked (see
//! `api::federation`'s resend and `ledger::outbox`).
//!
//! Settings (`s`): `restored-from` holds the backup's time; `resend-told/<peer>` the backup
//! time that peer was last asked about. A peer is still to be asked while the two differ,
//! so a second restore asks every peer again.

use time::OffsetDateTime;

use super::keys::{key, DELIVERY, SETTING};
use super::records::{DeliveryRecord, DeliveryState};
use super::{decode_at, Store, StoreError, WriteSet};
use crate::core::consent::ConsentKey;
use crate::core::identity::{AgencyId, CenterId};
use crate::core::message::MessageId;
use crate::core::time::parse as parse_rfc3339;

const RESTORED_FROM: &[u8] = b"restored-from";

fn told_key(peer: &CenterId) -> Vec<u8> {
    key(SETTING, format!("resend-told/{peer}").as_bytes())
}

fn text(v: &[u8], what: &'static str) -> Result<String, StoreError> {
    String::from_utf8(v.to_vec()).map_err(|_| StoreError::Corrupt {
        family: "setting",
        key: what.into(),
        source: super::RecordError::Body("not UTF-8".into()),
    })
}

impl Store {
    /// The time of the backup this store was restored from, if it was.
    pub fn restored_from(&self) -> Result<Option<String>, StoreError> {
        match self.db.get(key(SETTING, RESTORED_FROM))? {
            Some(v) => text(&v, "restored-from").map(Some),
            None => Ok(None),
        }
    }

    /// The backup time to ask `peer` about, if this store was restored and `peer` was not
    /// asked about that backup yet.
    pub fn resend_pending(&self, peer: &CenterId) -> Result<Option<String>, StoreError> {
        let Some(taken_at) = self.restored_from()? else {
            return Ok(None);
        };
        let told = self.db.get(told_key(peer))?;
        Ok((told.as_deref() != Some(taken_at.as_bytes())).then_some(taken_at))
    }

    /// Records, durably, that this store was just restored from a backup taken at
    /// `taken_at`; only `plusgate restore` calls it, on the store it built.
    pub fn mark_restored(&self, taken_at: &str) -> Result<(), StoreError> {
        let mut w = WriteSet::new();
        w.put_setting(RESTORED_FROM, taken_at.as_bytes());
        self.apply(w)?;
        self.sync()
    }

    /// Messages this node delivered to `peer` (its receipt says it took them) at or after
    /// `since`, by the receipt's time. A scan of every delivery record: run once per
    /// restore of a peer, off the writer.
    pub fn delivered_to(
        &self,
        peer: &CenterId,
        since: OffsetDateTime,
    ) -> Result<Vec<MessageId>, StoreError> {
        let mut ids = Vec::new();
        for item in self.scan_prefix(vec![DELIVERY]) {
            let (k, v) = item?;
            let d: DeliveryRecord = decode_at("delivery", &k, &v)?;
            let delivered_since = d
                .delivered_at
                .as_deref()
                .and_then(parse_rfc3339)
                .is_some_and(|at| at >= since);
            if d.state == DeliveryState::Delivered
                && d.peer.as_ref() == Some(peer)
                && delivered_since
            {
                if let Some(id) = std::str::from_utf8(&k[1..])
                    .ok()
                    .and_then(MessageId::from_key)
                {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    /// Consents that name an agency of `center` (as collector or recipient) and changed
    /// status at or after `since`.
    pub fn consents_changed_for(
        &self,
        center: &CenterId,
        since: OffsetDateTime,
    ) -> Result<Vec<ConsentKey>, StoreError> {
        let mut keys = Vec::new();
        for c in self.consents() {
            let c = c?;
            let names = std::iter::once(&c.collected_by)
                .chain(&c.recipients)
                .filter_map(|a| AgencyId::parse(a).ok())
                .any(|a| a.center() == center);
            let changed = c
                .history
                .iter()
                .filter_map(|h| parse_rfc3339(&h.at))
                .any(|at| at >= since);
            if names && changed {
                keys.push(c.key());
            }
        }
        Ok(keys)
    }
}

impl WriteSet {
    /// `peer` was asked to send again what it delivered since the backup taken at
    /// `taken_at`.
    pub fn put_resend_told(&mut self, peer: &CenterId, taken_at: &str) {
        self.put(told_key(peer), taken_at.as_bytes().to_vec());
    }

    fn put_setting(&mut self, name: &[u8], value: &[u8]) {
        self.put(key(SETTING, name), value.to_vec());
    }
}
