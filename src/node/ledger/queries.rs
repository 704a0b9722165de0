//! An officer's look at a subject's record, recorded before it is answered: a `queried`
//! audit entry naming the officer, the subject and the report.
//!
//! Invariant: a report or disclosure list goes out only after its `queried` entry is
//! durable (the caller awaits this command before answering).

use super::group::Group;
use super::{LedgerError, Writer};
use crate::core::audit::{Action, Event};
use crate::core::identity::{Identity, OfficerId};

impl Writer {
    pub(super) fn queried(
        &mut self,
        officer: OfficerId,
        subject: String,
        detail: String,
        g: &mut Group,
    ) -> Result<(), LedgerError> {
        let entry = self.head.append(Event {
            at: g.at.clone(),
            actor: Identity::Officer(officer).uri(),
            action: Action::Queried,
            message_id: String::new(),
            from: String::new(),
            to: String::new(),
            subject,
            consent_id: String::new(),
            consent_by: None,
            detail: Some(detail),
        });
        g.writes.put_audit(&entry);
        Ok(())
    }
}
