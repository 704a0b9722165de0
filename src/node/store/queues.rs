//! Ordered scans of the queues and indexes that point at messages: the inboxes (`i`) and
//! outboxes (`o`), scheduled purges (`e`), consent
//! notices (`n`), withheld reports (`w`) and pickup reports (`q`) owed to a peer, and the
//! dead letters (`x`).
//!
//! Invariants kept here:
//! - a scan stays inside its owner's prefix (see [`super::keys`]) and returns entries in
//!   sequence order, oldest first;
//! - an entry whose key or value does not parse is reported as [`StoreError::Corrupt`], not
//!   skipped: a queue never silently loses a message.

use super::keys::{
    key, queue_key, queue_prefix, retention_key, DEAD, INBOX, OUTBOX, PICKUP_REPORT, RETENTION,
    WITHHELD_REPORT,
};
use super::records::{Erasure, Pickup, QueueEntry};
use super::{decode_at, RecordError, Store, StoreError};
use crate::core::identity::{AgencyId, CenterId};
use crate::core::message::MessageId;

impl Store {
    /// The inbox of `recipient` in acceptance order, starting after `after_seq`.
    pub fn inbox(
        &self,
        recipient: &AgencyId,
        after_seq: Option<u64>,
    ) -> impl Iterator<Item = Result<QueueEntry, StoreError>> + '_ {
        self.queue("inbox", queue_prefix(INBOX, recipient.as_str()), after_seq)
    }

    /// The outbox to `peer` in acceptance order, starting after `after_seq`.
    pub fn outbox(
        &self,
        peer: &CenterId,
        after_seq: Option<u64>,
    ) -> impl Iterator<Item = Result<QueueEntry, StoreError>> + '_ {
        self.queue("outbox", queue_prefix(OUTBOX, peer.as_str()), after_seq)
    }

    /// How many messages wait in each outbox.
    pub fn outbox_lengths(
        &self,
    ) -> Result<std::collections::BTreeMap<CenterId, usize>, StoreError> {
        let mut lengths = std::collections::BTreeMap::new();
        for item in self.scan_prefix(vec![OUTBOX]) {
            let (k, _) = item?;
            let peer = k[1..]
                .split(|b| *b == 0)
                .next()
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| CenterId::parse(p).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    family: "outbox",
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body("key names no center".into()),
                })?;
            *lengths.entry(peer).or_insert(0) += 1;
        }
        Ok(lengths)
    }

    /// How many messages wait in each local agency's inbox.
    pub fn inbox_lengths(&self) -> Result<std::collections::HashMap<AgencyId, usize>, StoreError> {
        let mut lengths = std::collections::HashMap::new();
        for item in self.scan_prefix(vec![INBOX]) {
            let (k, _) = item?;
            let recipient = k[1..]
                .split(|b| *b == 0)
                .next()
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| AgencyId::parse(p).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    family: "inbox",
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body("key names no agency".into()),
                })?;
            *lengths.entry(recipient).or_insert(0) += 1;
        }
        Ok(lengths)
    }

    /// Scheduled purges due at or before `now` (unix seconds): (end, seq, message).
    pub fn retention_due(
        &self,
        now: u64,
    ) -> impl Iterator<Item = Result<(u64, u64, MessageId), StoreError>> + '_ {
        self.scan(key(RETENTION, &[]), retention_key(now.saturating_add(1), 0))
            .map(|item| {
                let (k, v) = item?;
                let corrupt = |what: &str| StoreError::Corrupt {
                    family: "retention",
                    key: format!("{:02x?}", &k[..]),
                    source: RecordError::Body(what.to_owned()),
                };
                let end: [u8; 8] = k
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("key has no end time"))?;
                let seq: [u8; 8] = k
                    .get(9..17)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("key has no sequence number"))?;
                let id = std::str::from_utf8(&v)
                    .ok()
                    .and_then(MessageId::from_key)
                    .ok_or_else(|| corrupt("value is not a message id"))?;
                Ok((u64::from_be_bytes(end), u64::from_be_bytes(seq), id))
            })
    }

    /// Messages from center `peer` withheld here that it is still to be told of.
    pub fn withheld_reports(
        &self,
        peer: &CenterId,
    ) -> impl Iterator<Item = Result<(MessageId, Erasure), StoreError>> + '_ {
        self.reports_to(WITHHELD_REPORT, "withheld report", peer)
    }

    /// Pickup reports owed to center `origin` (messages its agencies sent that were pulled
    /// or acknowledged here since), in the order of their keys.
    pub fn pickup_reports(
        &self,
        origin: &CenterId,
    ) -> impl Iterator<Item = Result<(MessageId, Pickup), StoreError>> + '_ {
        self.reports_to(PICKUP_REPORT, "pickup report", origin)
    }

    /// The reports of `family` owed to center `peer`, keyed by message: (message, value).
    fn reports_to<T: serde::de::DeserializeOwned>(
        &self,
        family: u8,
        what: &'static str,
        peer: &CenterId,
    ) -> impl Iterator<Item = Result<(MessageId, T), StoreError>> + '_ {
        let prefix = queue_prefix(family, peer.as_str());
        let prefix_len = prefix.len();
        self.db.scan_prefix(prefix).map(move |item| {
            let (k, v) = item?;
            let id = std::str::from_utf8(&k[prefix_len..])
                .ok()
                .and_then(MessageId::from_key)
                .ok_or_else(|| StoreError::Corrupt {
                    family: what,
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body("key is not a message id".into()),
                })?;
            Ok((id, decode_at(what, &k, &v)?))
        })
    }

    /// Every dead-lettered message, in id order.
    pub fn dead_letters(&self) -> impl Iterator<Item = Result<MessageId, StoreError>> + '_ {
        self.db.scan_prefix([DEAD]).map(|item| {
            let (k, _) = item?;
            std::str::from_utf8(&k[1..])
                .ok()
                .and_then(MessageId::from_key)
                .ok_or_else(|| StoreError::Corrupt {
                    family: "dead-letter",
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body("key is not a message id".into()),
                })
        })
    }

    fn queue(
        &self,
        family: &'static str,
        prefix: Vec<u8>,
        after_seq: Option<u64>,
    ) -> impl Iterator<Item = Result<QueueEntry, StoreError>> + '_ {
        let start = match after_seq {
            Some(seq) => queue_key(&prefix, seq.saturating_add(1)),
            None => prefix.clone(),
        };
        let prefix_len = prefix.len();
        self.scan(start, super::prefix_end(&prefix))
            .map(move |item| {
                let (k, v) = item?;
                let corrupt = |what: &str| StoreError::Corrupt {
                    family,
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source: RecordError::Body(what.to_owned()),
                };
                let seq_bytes: [u8; 8] = k[prefix_len..]
                    .try_into()
                    .map_err(|_| corrupt("key has no sequence number"))?;
                let id = std::str::from_utf8(&v)
                    .ok()
                    .and_then(MessageId::from_key)
                    .ok_or_else(|| corrupt("value is not a message id"))?;
                Ok(QueueEntry {
                    seq: u64::from_be_bytes(seq_bytes),
                    id,
                })
            })
    }
}
