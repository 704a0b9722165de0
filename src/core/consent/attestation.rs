//! What a consent's collecting node vouches for when the consent travels: this document
//! (by its digest), under this id, collected by this agency, is in this state (granted, or
//! withdrawn at this time). Signed with the node's Ed25519 key, which every node finds in
//! the signed federation directory.
//!
//! Why: a consent's parties are at several centers, and any of their nodes may carry it to
//! another (a recipient at center B writes back to a recipient at center D under a consent
//! collected at A). Without a signature, any node whose center a consent names could hand
//! another node a document "collected by" a third center's agency and be believed. Now only
//! the collector's node can say what its consent is, and the others relay its word
//! unchanged.
//!
//! Invariants kept here:
//! - the signed message binds every fact a receiver acts on: the collector's center (the
//!   signer), the consent id, the collecting agency, the document's digest, the status and
//!   the withdrawal time; fields are length-prefixed under a domain tag, so no two different
//!   statements sign alike;
//! - a receiver checks the signature against the key the directory lists for the center of
//!   the document's own `collected_by` agency, never against the sender's.

use serde::{Deserialize, Serialize};

use super::{ConsentRecord, ConsentStatus};
use crate::core::identity::{AgencyId, CenterId};
use crate::core::keys::{PublicKey, SigningKey};

/// The collector's node's signed word on a consent's state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// The status vouched for.
    pub status: ConsentStatus,
    /// When the collector's node recorded the withdrawal (for `withdrawn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<String>,
    /// Ed25519 signature (hex) by the collector's center's node over the statement.
    pub signature: String,
}

/// Why an attestation does not vouch for a consent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// None came with the consent.
    #[error("consent {id} comes without the signature of its collector's node")]
    Missing {
        /// The consent.
        id: String,
    },
    /// The collecting agency is not an agency id.
    #[error("consent {id} names no valid collecting agency")]
    NoCollector {
        /// The consent.
        id: String,
    },
    /// The directory lists no node for the collector's center.
    #[error("consent {id} is collected at center {center}, which the directory does not list")]
    UnknownCenter {
        /// The consent.
        id: String,
        /// The collector's center.
        center: CenterId,
    },
    /// The signature does not check against the collector's node's key.
    #[error("consent {id}: the signature is not its collector's node's (center {center}) for this document and state")]
    BadSignature {
        /// The consent.
        id: String,
        /// The collector's center.
        center: CenterId,
    },
}

impl Attestation {
    /// The collector's node signs `record`'s current state. Only the node of the collector's
    /// center may call this (the caller checks; see [`collector_center`]).
    pub fn sign(key: &SigningKey, record: &ConsentRecord) -> Attestation {
        let withdrawn_at = withdrawn_at(record);
        let center = collector_center(record)
            .map(|c| c.to_string())
            .unwrap_or_default();
        let message = statement(&center, record, record.status, withdrawn_at.as_deref());
        Attestation {
            status: record.status,
            withdrawn_at,
            signature: crate::core::hex::encode(&key.sign(&message)),
        }
    }

    /// Checks that this vouches for `record`'s document, id and collector, with `key` the
    /// directory's key for the collector's center (`key` is `None` when the directory lists
    /// no such center).
    pub fn verify(
        &self,
        record: &ConsentRecord,
        key: Option<&PublicKey>,
    ) -> Result<(), AttestationError> {
        let id = || record.id.clone();
        let center =
            collector_center(record).ok_or_else(|| AttestationError::NoCollector { id: id() })?;
        let key = key.ok_or_else(|| AttestationError::UnknownCenter {
            id: id(),
            center: center.clone(),
        })?;
        let message = statement(
            center.as_str(),
            record,
            self.status,
            self.withdrawn_at.as_deref(),
        );
        let signature = crate::core::hex::decode(&self.signature).unwrap_or_default();
        if key.verify(&message, &signature) {
            Ok(())
        } else {
            Err(AttestationError::BadSignature { id: id(), center })
        }
    }
}

/// The center of a consent's collecting agency: whose node alone may vouch for it.
pub fn collector_center(record: &ConsentRecord) -> Option<CenterId> {
    AgencyId::parse(&record.collected_by)
        .ok()
        .map(|a| a.center().clone())
}

/// When `record` was withdrawn, as its last `withdrawn` change says.
fn withdrawn_at(record: &ConsentRecord) -> Option<String> {
    (record.status == ConsentStatus::Withdrawn)
        .then(|| super::latest_withdrawal(&record.history).map(|c| c.at.clone()))
        .flatten()
}

/// The signed statement: a domain tag, then each field with its length first.
fn statement(
    center: &str,
    record: &ConsentRecord,
    status: ConsentStatus,
    withdrawn_at: Option<&str>,
) -> Vec<u8> {
    let status = serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let fields = [
        center,
        record.id.as_str(),
        record.collected_by.as_str(),
        record.digest.as_str(),
        status.as_str(),
        withdrawn_at.unwrap_or(""),
    ];
    let mut out = b"plusgate consent attestation v1\0".to_vec();
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}
