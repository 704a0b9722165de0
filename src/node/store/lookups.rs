//! Point reads: one key in, one verified record out (a message, its delivery record, its
//! receipt, a consent, the newest directory seen).
//!
//! Invariant kept here: a record is decoded and its checksum verified before it is
//! returned; one that fails is [`StoreError::Corrupt`], never served. Absent is `Ok(None)`.

use super::keys::{key, DELIVERY, DIRECTORY_SEEN, MESSAGE, RECEIPT, SETTING};
use super::records::{DeliveryRecord, DirectorySeen, MessageRecord};
use super::{decode_at, Store, StoreError};
use crate::core::identity::AgencyId;
use crate::core::message::MessageId;
use crate::core::wire::Receipt;

impl Store {
    /// Reads and verifies a message record.
    pub fn message(&self, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.get(MESSAGE, "message", id.as_str())
    }

    /// The message with key `id`, or, if there is none, `id` names its sender and the store
    /// was migrated from format 1 (only such a store holds any), the message that sender
    /// sent with that id before ids were scoped (keyed by the bare id; see `MessageId`).
    /// The record's `id` is the key it is stored under.
    pub fn message_by_key_or_legacy(
        &self,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        if let Some(m) = self.message(id)? {
            return Ok(Some(m));
        }
        let Some(sender) = id.sender().filter(|_| self.has_legacy_ids()) else {
            return Ok(None);
        };
        let legacy = self.get::<MessageRecord>(MESSAGE, "message", id.public())?;
        Ok(legacy.filter(|m| m.from == sender))
    }

    /// The message agency `from` sent as `id` (as an audit entry names it), under its key
    /// or, from before ids were scoped, its bare id.
    pub fn message_named(&self, from: &str, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        match (AgencyId::parse(from), MessageId::parse(id)) {
            (Ok(sender), Some(id)) => {
                self.message_by_key_or_legacy(&MessageId::scoped(&sender, &id))
            }
            _ => Ok(None),
        }
    }

    /// Reads and verifies a delivery record: the one written since the message was taken,
    /// or, if none was (a push writes none), the one its record starts it with.
    pub fn delivery(&self, id: &MessageId) -> Result<Option<DeliveryRecord>, StoreError> {
        if let Some(d) = self.get(DELIVERY, "delivery", id.as_str())? {
            return Ok(Some(d));
        }
        Ok(self.message(id)?.and_then(|m| initial_delivery(&m)))
    }

    /// [`Store::delivery`] of a message whose record the caller has read already (so the
    /// record is not read twice).
    pub fn delivery_of(
        &self,
        record: &MessageRecord,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        if let Some(d) = self.get(DELIVERY, "delivery", &record.id)? {
            return Ok(Some(d));
        }
        Ok(initial_delivery(record))
    }

    /// Reads and verifies a stored receipt.
    pub fn receipt(&self, id: &MessageId) -> Result<Option<Receipt>, StoreError> {
        self.get(RECEIPT, "receipt", id.as_str())
    }

    /// The newest directory this node has loaded, if any.
    pub fn directory_seen(&self) -> Result<Option<DirectorySeen>, StoreError> {
        match self.db.get(key(SETTING, DIRECTORY_SEEN))? {
            None => Ok(None),
            Some(v) => decode_at("setting", &key(SETTING, DIRECTORY_SEEN), &v).map(Some),
        }
    }
}

/// What a message's delivery record starts as, from its record (`None` for a record written
/// before records carried their queue position: those all have a delivery record).
fn initial_delivery(m: &MessageRecord) -> Option<DeliveryRecord> {
    m.seq.map(|seq| DeliveryRecord::new(seq, m.peer.clone()))
}
