//! The referral-status lifecycle: a `referral-status` message updates the lifecycle of the
//! referral it names, as the referral's sender then sees it in `GET /v1/messages/{id}`.
//!
//! Invariants enforced here:
//! - a status updates a referral only if that referral went from the status's recipient to
//!   the status's sender: nobody can change a referral they did not receive;
//! - an older status never replaces a newer one (`changed_at`, compared as instants);
//! - the referral is looked up once per status (`find_referral`), for both the consent
//!   check (a status travels for its referral's purpose) and this update; a damaged record
//!   counts as absent, so the status is still checked and taken.

use super::group::Group;
use super::intake::StatusUpdate;
use super::{LedgerError, Writer};
use crate::core::identity::AgencyId;
use crate::core::message::{MessageId, MessageType};
use crate::node::store::{Lifecycle, MessageRecord, StoreError};

impl Writer {
    /// The record of referral `id` (a key; a referral from before ids were scoped is found
    /// by its bare id) at this node (written in this group or stored), if any.
    /// A damaged one counts as absent: the status it answers is still checked and taken,
    /// only without its referral's purpose and lifecycle.
    pub(super) fn find_referral(
        &self,
        id: &MessageId,
        g: &Group,
    ) -> Result<Option<MessageRecord>, LedgerError> {
        if let Some(r) = g.metas.get(id) {
            return Ok(Some(r.clone()));
        }
        match self.store.message_by_key_or_legacy(id) {
            Ok(r) => Ok(r),
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(referral = %id, error = %e, "the referral's record is damaged");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A `referral-status` from `status_from` to `status_to` updates the referral it names,
    /// if that referral went the other way (from `status_to` to `status_from`) and the
    /// status is not older than the one recorded. Anything else is left alone.
    pub(super) fn update_lifecycle(
        &mut self,
        status_id: &MessageId,
        status_from: &AgencyId,
        status_to: &AgencyId,
        update: StatusUpdate,
        g: &mut Group,
    ) -> Result<(), LedgerError> {
        let Some(referral) = &update.referral else {
            return Ok(());
        };
        if referral.message_type != MessageType::Referral.as_str()
            || referral.from != status_to.as_str()
            || referral.to != status_from.as_str()
        {
            return Ok(());
        }
        let mut d = match self.delivery(g, &update.referral_id) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(LedgerError::Storage(e @ StoreError::Corrupt { .. })) => {
                tracing::error!(referral = %update.referral_id, error = %e,
                    "lifecycle not updated: the referral's delivery record is damaged");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let old = d.lifecycle.clone();
        let newer = old
            .as_ref()
            .is_none_or(|l| !crate::core::time::is_before(&update.changed_at, &l.changed_at));
        let mut new = match (&old, newer) {
            (Some(l), false) => l.clone(),
            _ => Lifecycle {
                status: update.status.clone(),
                changed_at: update.changed_at.clone(),
                // The key; shown to the referral's sender as the status's own id.
                message_id: status_id.to_string(),
                outcome: (update.status == "completed")
                    .then(|| update.outcome.clone())
                    .flatten(),
                taken_on_at: old.as_ref().and_then(|l| l.taken_on_at.clone()),
                completed_at: old.as_ref().and_then(|l| l.completed_at.clone()),
            },
        };
        // An older status changes nothing shown, but may be the first to take the
        // referral on (statuses can arrive out of order): the statistics count it.
        self.count_status(
            g,
            referral,
            old.as_ref(),
            &mut new,
            &update.status,
            &update.changed_at,
        );
        if old.as_ref() != Some(&new) {
            d.lifecycle = Some(new);
            g.writes.put_delivery(&update.referral_id, &d);
            g.deliveries.insert(update.referral_id, d);
        }
        Ok(())
    }
}
