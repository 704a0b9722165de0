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

/// A message id: chosen by the sender (then it is the idempotency key) or assigned by the node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// Longest id accepted.
    pub const LEN_MAX: usize = 128;

    /// Parses an id: `[A-Za-z0-9][A-Za-z0-9._:-]{0,127}` (the schema's `messageId`).
    pub fn parse(s: &str) -> Option<MessageId> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= Self::LEN_MAX
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
        ok.then(|| MessageId(s.to_owned()))
    }

    /// A fresh node-assigned id (UUIDv7: time-ordered, so keys stay local in the store).
    pub fn generate() -> MessageId {
        MessageId(format!("msg-{}", uuid::Uuid::now_v7()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
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
