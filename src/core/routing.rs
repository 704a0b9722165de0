//! Who is where: which agencies this node serves, which message types each may send and
//! receive, and which center's node holds every other agency.
//!
//! A node runs either standalone (its agencies listed in its own config, every other center
//! unknown) or federated (every center, its node and its agencies listed in the signed
//! federation directory). [`Routing`] answers the same questions in both cases, so the API
//! and the forwarders never ask which.
//!
//! Architecture invariant: a `Routing` is immutable. The node owns the current one behind a
//! `watch` channel and replaces it whole when a newer signed directory is loaded, so a
//! request sees one consistent directory from start to end.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::core::directory::{CenterEntry, Directory};
use crate::core::identity::{AgencyId, CenterId, ManagerId, OfficerId};
use crate::core::message::MessageType;

/// The agencies and officers of this center, as the node knows them: from `[[agencies]]`
/// and `[[officers]]` in the config (a federated node's agencies come from the directory).
#[derive(Debug, Clone, Default)]
pub struct LocalDirectory {
    /// Agency → message types it may send.
    pub agencies: BTreeMap<AgencyId, Vec<MessageType>>,
    /// Privacy officers.
    pub officers: Vec<OfficerId>,
    /// Center managers (`[[managers]]`): statistics only.
    pub managers: Vec<ManagerId>,
}

impl LocalDirectory {
    /// The people registered here: who may use the officers' and the managers' endpoints.
    pub fn staff(&self) -> Staff {
        Staff {
            officers: self.officers.clone(),
            managers: self.managers.clone(),
        }
    }
}

/// The privacy officers and center managers registered at this node; the node holds it
/// behind a `watch` channel and a reload replaces it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staff {
    /// Privacy officers.
    pub officers: Vec<OfficerId>,
    /// Center managers.
    pub managers: Vec<ManagerId>,
}

/// Where a message for a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Into the inbox of an agency at this center.
    Local,
    /// Into the outbox to the node of this other center.
    Remote(CenterId),
}

/// Why a message cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Nobody in the directory has this id.
    #[error("{0}")]
    UnknownRecipient(String),
    /// The recipient exists but does not take this type of message.
    #[error("{to} does not receive {message_type} messages")]
    NotReceived {
        /// The recipient.
        to: AgencyId,
        /// The type.
        message_type: MessageType,
    },
}

/// Why a message another center's node hands over breaks the directory's rules. The
/// sending node is at fault (it handed over what the directory does not allow); handing the
/// same message over again never helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    /// This node has no directory, so no node may hand anything over to it.
    #[error("this node is not part of a federation")]
    NotFederated,
    /// The sender is not an agency of the calling node's center: a node never relays.
    #[error("node {node} may only hand over messages of its own agencies, not of {from}")]
    NotOwnAgency {
        /// The calling node's center.
        node: CenterId,
        /// The sender the message names.
        from: AgencyId,
    },
    /// The directory does not list the sender.
    #[error("{0} is not in the federation directory")]
    UnknownSender(AgencyId),
    /// The directory does not let the sender send this type.
    #[error("{from} may not send {message_type} messages")]
    MayNotSend {
        /// The sender.
        from: AgencyId,
        /// The message type.
        message_type: MessageType,
    },
    /// The recipient is not one of this node's agencies.
    #[error("{to} is not an agency of center {center}")]
    NotHere {
        /// The recipient.
        to: AgencyId,
        /// This node's center.
        center: CenterId,
    },
    /// The recipient does not take this type (or is unknown).
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// The node's view of the federation at one moment.
#[derive(Debug, Clone)]
pub struct Routing {
    center: CenterId,
    /// This center's agencies → the types each may send.
    local: BTreeMap<AgencyId, Vec<MessageType>>,
    federation: Option<Arc<Directory>>,
}

impl Routing {
    /// A node that knows only its own center (no `[federation]` in its config).
    pub fn standalone(center: CenterId, local: &LocalDirectory) -> Routing {
        Routing {
            center,
            local: local.agencies.clone(),
            federation: None,
        }
    }

    /// A node in a federation: its agencies are those the directory lists for its center.
    pub fn federated(center: CenterId, directory: Arc<Directory>) -> Routing {
        Routing {
            local: directory.local_agencies(&center),
            center,
            federation: Some(directory),
        }
    }

    /// This node's center.
    pub fn center(&self) -> &CenterId {
        &self.center
    }

    /// The agencies this node serves.
    pub fn local_agencies(&self) -> impl Iterator<Item = &AgencyId> {
        self.local.keys()
    }

    /// True if `agency` is served by this node.
    pub fn is_local_agency(&self, agency: &AgencyId) -> bool {
        self.local.contains_key(agency)
    }

    /// True if the local agency `sender` may send messages of type `t`.
    pub fn may_send(&self, sender: &AgencyId, t: MessageType) -> bool {
        self.local
            .get(sender)
            .is_some_and(|types| types.contains(&t))
    }

    /// Where a message of type `t` for `to` goes. Standalone nodes know only their own
    /// center; federated nodes also check that the recipient takes messages of type `t`.
    pub fn route(&self, to: &AgencyId, t: MessageType) -> Result<Route, RouteError> {
        let Some(directory) = &self.federation else {
            if self.local.contains_key(to) {
                return Ok(Route::Local);
            }
            return Err(RouteError::UnknownRecipient(
                if to.center() == &self.center {
                    format!("no agency {to} at this center")
                } else {
                    format!(
                        "{to} is at center {}; this node is not part of a federation and delivers \
                     only within its own center",
                        to.center()
                    )
                },
            ));
        };
        let entry = directory.agency(to).ok_or_else(|| {
            RouteError::UnknownRecipient(format!("no agency {to} in the federation directory"))
        })?;
        if !entry.receives.contains(&t) {
            return Err(RouteError::NotReceived {
                to: to.clone(),
                message_type: t,
            });
        }
        if to.center() == &self.center {
            Ok(Route::Local)
        } else {
            Ok(Route::Remote(to.center().clone()))
        }
    }

    /// Another center's directory entry (never this node's own).
    pub fn peer(&self, center: &CenterId) -> Option<&CenterEntry> {
        if center == &self.center {
            return None;
        }
        self.federation.as_ref()?.center(center)
    }

    /// Every other center in the directory.
    pub fn peers(&self) -> Vec<CenterId> {
        match &self.federation {
            None => Vec::new(),
            Some(d) => d
                .centers
                .keys()
                .filter(|c| *c != &self.center)
                .cloned()
                .collect(),
        }
    }

    /// A node speaks only for its own center's agencies: the first check on anything another
    /// node hands over, before its content is even looked at.
    pub fn check_handed_over_by(node: &CenterId, from: &AgencyId) -> Result<(), HandoverError> {
        if from.center() == node {
            Ok(())
        } else {
            Err(HandoverError::NotOwnAgency {
                node: node.clone(),
                from: from.clone(),
            })
        }
    }

    /// Checks a message another center's node hands over: its sender must be an agency of
    /// that center ([`Routing::check_handed_over_by`]) allowed to send `t`, and its
    /// recipient an agency here that receives `t`.
    pub fn check_incoming(
        &self,
        node: &CenterId,
        from: &AgencyId,
        to: &AgencyId,
        t: MessageType,
    ) -> Result<(), HandoverError> {
        let directory = self
            .federation
            .as_ref()
            .ok_or(HandoverError::NotFederated)?;
        Routing::check_handed_over_by(node, from)?;
        let sender = directory
            .agency(from)
            .ok_or_else(|| HandoverError::UnknownSender(from.clone()))?;
        if !sender.sends.contains(&t) {
            return Err(HandoverError::MayNotSend {
                from: from.clone(),
                message_type: t,
            });
        }
        if to.center() != &self.center || !self.local.contains_key(to) {
            return Err(HandoverError::NotHere {
                to: to.clone(),
                center: self.center.clone(),
            });
        }
        self.route(to, t)?;
        Ok(())
    }
}
