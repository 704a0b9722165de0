//! The envelope and message types, as typed values. No HTTP, no storage here.
//!
//! An [`Envelope`] is only ever built by [`Envelope::from_validated`] from JSON that the
//! `schema` module has already accepted, so its fields are known to be well formed; what
//! remains here are the cross-field rules JSON Schema cannot state (the payload's agencies
//! must match the certificate and the envelope's `to`), and the refusal of anything shaped
//! like a resident registration number anywhere in the payload (see `rrn`).

use std::fmt;

use serde_json::Value;

use crate::core::identity::AgencyId;

/// The kinds of message plusgate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageType {
    /// A referral of a client from one agency to another.
    Referral,
    /// A lifecycle change of a referral, sent back by the recipient.
    ReferralStatus,
    /// A case manager's summary for a joint case conference.
    CaseSummary,
    /// A consent record of the data subject.
    Consent,
}

impl MessageType {
    /// Every type, in a stable order.
    pub const ALL: [MessageType; 4] = [
        MessageType::Referral,
        MessageType::ReferralStatus,
        MessageType::CaseSummary,
        MessageType::Consent,
    ];
    /// The names, for error messages.
    pub const ALL_NAMES: &'static str = "referral, referral-status, case-summary, consent";

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Referral => "referral",
            MessageType::ReferralStatus => "referral-status",
            MessageType::CaseSummary => "case-summary",
            MessageType::Consent => "consent",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message id, as the node keys the message: `<sender agency>/<id>`, the id the sender
/// chose (or the node assigned) scoped by the sending agency. Agency ids are unique in the
/// federation and each sender's ids are unique at its node, so the key is unique
/// everywhere: two agencies (at one center or at two) may both send a message `ref-1`, and
/// neither can squat, shadow or learn of the other's. Records taken before ids were scoped
/// are keyed by the bare id; [`MessageId::from_key`] reads both.
///
/// Agencies see and write the bare id ([`MessageId::public`]); audit entries, reports and
/// operators' tools show the key (it says who sent the message).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// Longest id accepted.
    pub const LEN_MAX: usize = 128;

    /// Parses an id as an agency writes it: `[A-Za-z0-9][A-Za-z0-9._:-]{0,127}` (the
    /// schema's `messageId`). As a key, it is one from before ids were scoped.
    pub fn parse(s: &str) -> Option<MessageId> {
        is_public(s).then(|| MessageId(s.to_owned()))
    }

    /// `id` as sent by `sender`: the key of the message.
    pub fn scoped(sender: &AgencyId, id: &MessageId) -> MessageId {
        MessageId(format!("{sender}/{}", id.public()))
    }

    /// A key as stored or shown: `<center>/<agency>/<id>`, or a bare id (a message from
    /// before ids were scoped).
    pub fn from_key(s: &str) -> Option<MessageId> {
        match s.rsplit_once('/') {
            None => MessageId::parse(s),
            Some((sender, id)) => {
                (AgencyId::parse(sender).is_ok() && is_public(id)).then(|| MessageId(s.to_owned()))
            }
        }
    }

    /// A fresh node-assigned id (UUIDv7: time-ordered, so keys stay local in the store).
    pub fn generate() -> MessageId {
        MessageId(format!("msg-{}", uuid::Uuid::now_v7()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as the sender wrote it (or the node assigned it): what agencies see.
    pub fn public(&self) -> &str {
        public_of(&self.0)
    }

    /// The sending agency, if the key names it (not in keys from before ids were scoped).
    pub fn sender(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(sender, _)| sender)
    }
}

/// The id part of a message key (see [`MessageId`]).
pub fn public_of(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, id)| id)
}

fn is_public(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MessageId::LEN_MAX
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message as accepted from an agency: sender from the certificate, the rest from a body
/// that passed schema validation.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Set when the sender chose the id (then retries are deduplicated).
    pub id: Option<MessageId>,
    /// What kind of message.
    pub message_type: MessageType,
    /// Schema version of the payload.
    pub version: u32,
    /// The recipient agency.
    pub to: AgencyId,
    /// Pseudonymous reference of the data subject.
    pub subject: String,
    /// The consent the message travels under: its id, ...
    pub consent_id: String,
    /// ... and, if the sender named it, the agency that collected it (otherwise the node
    /// finds it: `consent::resolve`).
    pub consent_collected_by: Option<AgencyId>,
    /// The payload, validated against `schemas/<type>.v<version>.json`.
    pub payload: Value,
}

/// A cross-field rule the envelope breaks; reported as a 422 violation at `pointer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// JSON pointer into the request body.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

impl Envelope {
    /// Builds the typed envelope from a schema-valid body. Returns the violations of the
    /// cross-field rules if any.
    pub fn from_validated(
        mut body: Value,
        sender: &AgencyId,
    ) -> Result<Envelope, Vec<RuleViolation>> {
        // Moved out, not cloned: payloads are the bulk of a message.
        let payload = body
            .get_mut("payload")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        let violation = |pointer: &str, message: String| RuleViolation {
            pointer: pointer.to_owned(),
            message,
        };
        // The schema guarantees these shapes; a mismatch here means schema and code disagree,
        // which we still report as a violation instead of panicking.
        let mut errors = Vec::new();
        let id = match field("id") {
            None => None,
            Some(s) => match MessageId::parse(s) {
                Some(id) => Some(id),
                None => {
                    errors.push(violation("/id", "is not a valid message id".into()));
                    None
                }
            },
        };
        let message_type = field("type").and_then(MessageType::parse);
        if message_type.is_none() {
            errors.push(violation(
                "/type",
                format!("must be one of {}", MessageType::ALL_NAMES),
            ));
        }
        let version = body
            .get("version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        if version.is_none() {
            errors.push(violation("/version", "must be a positive integer".into()));
        }
        let to = field("to").and_then(|s| AgencyId::parse(s).ok());
        if to.is_none() {
            errors.push(violation(
                "/to",
                "must be an agency id <center>/<agency>".into(),
            ));
        }
        if let (Some(ty), Some(to)) = (message_type, &to) {
            errors.extend(cross_checks(ty, &payload, sender, to));
        }
        let consent_collected_by = match field("consent_collected_by") {
            None => None,
            Some(s) => match AgencyId::parse(s) {
                Ok(a) => Some(a),
                Err(_) => {
                    errors.push(violation(
                        "/consent_collected_by",
                        "must be an agency id <center>/<agency>".into(),
                    ));
                    None
                }
            },
        };
        for pointer in crate::core::rrn::find(&payload) {
            errors.push(violation(
                &format!("/payload{pointer}"),
                "contains what looks like a resident registration number (주민등록번호), which \
                 never travels: refer to the person by the pseudonymous subject id only"
                    .into(),
            ));
        }
        match (
            message_type,
            version,
            to,
            field("subject"),
            field("consent_id"),
        ) {
            (Some(message_type), Some(version), Some(to), Some(subject), Some(consent_id))
                if errors.is_empty() =>
            {
                Ok(Envelope {
                    id,
                    message_type,
                    version,
                    to,
                    subject: subject.to_owned(),
                    consent_id: consent_id.to_owned(),
                    consent_collected_by,
                    payload,
                })
            }
            _ => {
                if errors.is_empty() {
                    errors.push(violation("", "subject and consent_id are required".into()));
                }
                Err(errors)
            }
        }
    }
}

/// The payload names agencies too; they must agree with the certificate and the envelope,
/// or a recipient would see a referral "from" someone who did not send it.
fn cross_checks(
    ty: MessageType,
    payload: &Value,
    sender: &AgencyId,
    to: &AgencyId,
) -> Vec<RuleViolation> {
    let mut errors = Vec::new();
    let mut expect = |pointer: &str, want: &AgencyId, what: &str| {
        let got = payload.pointer(pointer).and_then(Value::as_str);
        if got != Some(want.as_str()) {
            errors.push(RuleViolation {
                pointer: format!("/payload{pointer}"),
                message: format!("must be {want}, the {what}"),
            });
        }
    };
    match ty {
        MessageType::Referral => {
            expect(
                "/referrer/agency",
                sender,
                "agency of the sending certificate",
            );
            expect("/recipient/agency", to, "envelope's `to`");
        }
        MessageType::CaseSummary => {
            expect(
                "/author/agency",
                sender,
                "agency of the sending certificate",
            );
        }
        MessageType::ReferralStatus => {
            expect(
                "/changed_by/agency",
                sender,
                "agency of the sending certificate",
            );
        }
        MessageType::Consent => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_id_scoped_by_its_sender_and_reads_back_either_way() {
        let sender = AgencyId::parse("suwon/employment").expect("agency");
        let id = MessageId::parse("ref-1").expect("id");
        let key = MessageId::scoped(&sender, &id);
        assert_eq!(key.as_str(), "suwon/employment/ref-1");
        assert_eq!(
            (key.public(), key.sender()),
            ("ref-1", Some("suwon/employment"))
        );
        assert_eq!(MessageId::from_key(key.as_str()), Some(key.clone()));
        // Scoping a key again scopes its id, not the key.
        assert_eq!(MessageId::scoped(&sender, &key), key);
        // A key from before ids were scoped: the bare id, no sender.
        let legacy = MessageId::from_key("ref-1").expect("bare id");
        assert_eq!((legacy.public(), legacy.sender()), ("ref-1", None));
        // What agencies write is never a key: `/` is not in their ids.
        assert_eq!(MessageId::parse("suwon/employment/ref-1"), None);
        for bad in [
            "",
            "/ref-1",
            "suwon/ref-1",
            "Suwon/employment/ref-1",
            "a/b/c/d",
            "a/b/",
        ] {
            assert_eq!(MessageId::from_key(bad), None, "{bad:?}");
        }
    }
}
