//! The consent registry: consents of data subjects as the collecting agency registers them,
//! and their withdrawals.
//!
//! A consent (schema `consent.v1.json`) names the subject (pseudonymously), the collecting
//! agency and counsellor, the recipients, the purposes, the items with their sensitivity,
//! the recipients' retention period, the validity, the refusal-right notice shown, the legal
//! basis and the evidence of collection. The registry keeps the document as registered and
//! a status history (`granted`, then possibly `withdrawn`).
//!
//! This module is the registry's vocabulary and rules, without I/O or clock: `api` checks
//! and registers, the `ledger` writes (with an audit entry for each consent event) and
//! enforces, the `store` keeps.
//!
//! Enforcement ([`ConsentRecord::check`]): a message may travel only under a consent that
//! exists and has the sender as a party (its collector or a named recipient: the parties
//! share among themselves; to anyone else it does not exist), is about the message's
//! subject, is valid at the time, is not withdrawn, names the recipient, covers the purpose and covers every data item of the
//! payload. The ledger runs
//! this check on its single writer thread, at the origin before the 202 and at the
//! destination before the inbox, so a check and a withdrawal are never interleaved: what
//! the writer took before a withdrawal is withheld by it, what comes after is refused.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime};

use crate::core::identity::AgencyId;

pub mod attestation;

/// Which consent: its collecting agency and its id. Consent ids are chosen by the collecting
/// agency, so they are unique only per collector: two agencies may both have a consent
/// `cns-1`. Everything that finds, changes or cites a consent does it by this pair, so no
/// agency (and no other node) can register an id first and shadow another collector's
/// consent or its withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConsentKey {
    /// The collecting agency (`collected_by.agency`).
    pub collector: String,
    /// The consent id the collector chose.
    pub id: String,
}

impl ConsentKey {
    /// The pair.
    pub fn new(collector: impl Into<String>, id: impl Into<String>) -> ConsentKey {
        ConsentKey {
            collector: collector.into(),
            id: id.into(),
        }
    }
}

impl std::fmt::Display for ConsentKey {
    /// `<collector>/<id>`, e.g. `suwon/employment/cns-1`: unambiguous, since an agency id
    /// has exactly one `/` and a consent id none.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.collector, self.id)
    }
}

/// Which consent a message cites when its sender did not name the collector: of the
/// consents with the cited id (`candidates`), the sender's own if it has one; otherwise the
/// single one under which the sender is a party and the recipient is named. `Ok(None)`: no
/// consent with that id can cover the message (the caller answers [`Refusal::Unknown`]).
///
/// Why this order: an agency's own ids are its own namespace, so nobody else can put a
/// consent where the sender's own is looked for. A consent collected elsewhere is used only
/// if it is the only one that fits; if another agency registered a second one with the same
/// id that also fits, the message is refused as ambiguous ([`Refusal::Ambiguous`]) rather
/// than sent under whichever came first, and the sender names the collector
/// (`consent_collected_by`).
pub fn resolve<'a>(
    id: &str,
    sender: &str,
    recipient: &str,
    candidates: impl IntoIterator<Item = &'a ConsentRecord>,
) -> Result<Option<ConsentKey>, Refusal> {
    let mut fitting: Option<ConsentKey> = None;
    let mut ambiguous = false;
    for c in candidates {
        if c.id != id {
            continue;
        }
        if c.collected_by == sender {
            return Ok(Some(c.key()));
        }
        let named = |a: &str| c.recipients.iter().any(|r| r == a);
        if named(sender) && named(recipient) {
            match &fitting {
                // The same consent seen twice (as stored and as changed since) is one.
                Some(f) if f.collector == c.collected_by => {}
                Some(_) => ambiguous = true,
                None => fitting = Some(c.key()),
            }
        }
    }
    if ambiguous {
        return Err(Refusal::Ambiguous { id: id.to_owned() });
    }
    Ok(fitting)
}

/// A consent as the registry keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// The consent id (the document's `id`).
    pub id: String,
    /// The pseudonymous subject.
    pub subject: String,
    /// The agency that collected and registered it.
    pub collected_by: String,
    /// The recipient agencies it names.
    pub recipients: Vec<String>,
    /// The document as registered, canonical JSON.
    pub document: Box<RawValue>,
    /// SHA-256 (hex) of the canonical document: a second registration of the same id must
    /// be the same document.
    pub digest: String,
    /// When this node registered it (RFC 3339, UTC).
    pub registered_at: String,
    /// `granted` or `withdrawn`.
    pub status: ConsentStatus,
    /// Every status change, oldest first.
    pub history: Vec<StatusChange>,
    /// For a consent collected at another center: its collector's node's signed word on
    /// its current state, as received, relayed unchanged when this node carries the
    /// consent on (see [`attestation`]). `None` for consents collected here (this node
    /// signs them when it sends them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<attestation::Attestation>,
}

/// A consent's status as its status history and the registry write it (`statusEntry` in
/// `consent.v1.json`): `granted`, then possibly `withdrawn`; `expired` when the collecting
/// agency recorded it so. Reports also use `expired` for a granted consent past its validity.
/// Stored and sent as those words, so records written before it was a type read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentStatus {
    /// Given by the subject.
    Granted,
    /// Withdrawn by the subject.
    Withdrawn,
    /// Past its validity.
    Expired,
}

impl ConsentStatus {
    /// Every status, in a stable order (the console has a label for each).
    pub const ALL: [ConsentStatus; 3] = [
        ConsentStatus::Granted,
        ConsentStatus::Withdrawn,
        ConsentStatus::Expired,
    ];

    /// The status named `s`, if it is one.
    pub fn parse(s: &str) -> Option<ConsentStatus> {
        Some(match s {
            "granted" => ConsentStatus::Granted,
            "withdrawn" => ConsentStatus::Withdrawn,
            "expired" => ConsentStatus::Expired,
            _ => return None,
        })
    }

    /// Its name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::Withdrawn => "withdrawn",
            ConsentStatus::Expired => "expired",
        }
    }
}

impl std::fmt::Display for ConsentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of a consent's status, as this node recorded it.
///
/// Invariant: `at` and `by` are never taken from a request: `at` is when the node recorded
/// the change (its clock), `by` the identity of the certificate that asked for it. What a
/// caller says about the time is kept apart, in `stated_at`, so a report never shows an
/// action at a time, or by someone, that the node did not see.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusChange {
    /// `granted`, `withdrawn` or `expired`.
    pub status: ConsentStatus,
    /// When this node recorded it (RFC 3339, the node's clock).
    pub at: String,
    /// The agency that asked for the change (from its certificate).
    pub by: String,
    /// Why, if stated (for a withdrawal, e.g. how the subject withdrew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the caller says it happened (e.g. the date on a paper withdrawal form), if it
    /// said: its statement, not the node's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stated_at: Option<String>,
}

/// A consent document checked against the schema, ready to register.
#[derive(Debug)]
pub struct Registration {
    /// The record to store.
    pub record: ConsentRecord,
}

/// Why a consent document cannot be registered (beyond schema violations).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The document says another agency collected it.
    #[error("`collected_by.agency` is {stated}, but the consent is registered by {caller}: an agency registers the consents it collected")]
    NotCollector {
        /// What the document says.
        stated: String,
        /// Who is registering.
        caller: String,
    },
}

impl Registration {
    /// Builds the record for a schema-valid consent document registered by `caller` at
    /// `now`. The document's own `status_history` is the collector's statement: its last
    /// status becomes the consent's, but the record's history holds one change, recorded
    /// now by `caller`, with the stated time kept as `stated_at` (see [`StatusChange`]).
    pub fn new(
        document: &Value,
        caller: &AgencyId,
        now: &str,
    ) -> Result<Registration, RegistrationError> {
        let text = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let collected_by = text("/collected_by/agency");
        if collected_by != caller.as_str() {
            return Err(RegistrationError::NotCollector {
                stated: collected_by,
                caller: caller.to_string(),
            });
        }
        let recipients = document["recipients"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let stated: Option<StatedChange> = document["status_history"]
            .as_array()
            .and_then(|a| a.last())
            .and_then(|c| serde_json::from_value(strip_unknown(c)).ok());
        let history = vec![StatusChange {
            status: stated.as_ref().map_or(ConsentStatus::Granted, |c| c.status),
            at: now.to_owned(),
            by: caller.to_string(),
            reason: stated.as_ref().and_then(|c| c.reason.clone()),
            stated_at: stated.map(|c| c.at),
        }];
        let status = history[0].status;
        let canonical =
            serde_json::value::to_raw_value(document).expect("JSON values always serialize");
        let digest = crate::core::hex::encode(
            ring::digest::digest(&ring::digest::SHA256, canonical.get().as_bytes()).as_ref(),
        );
        Ok(Registration {
            record: ConsentRecord {
                id: text("/id"),
                subject: text("/subject"),
                collected_by,
                recipients,
                document: canonical,
                digest,
                registered_at: now.to_owned(),
                status,
                history,
                attestation: None,
            },
        })
    }
}

/// The latest `withdrawn` change of a status history.
pub fn latest_withdrawal(history: &[StatusChange]) -> Option<&StatusChange> {
    history
        .iter()
        .rev()
        .find(|c| c.status == ConsentStatus::Withdrawn)
}

/// What a consent document says of its latest status change (its `by` is not kept: the
/// node records who registered it).
#[derive(Deserialize)]
struct StatedChange {
    status: ConsentStatus,
    at: String,
    #[serde(default)]
    reason: Option<String>,
}

/// A status-history item with only the fields the registry reads.
fn strip_unknown(change: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["status", "at", "reason"] {
        if let Some(v) = change.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

impl ConsentRecord {
    /// Which consent this is: its collector and id.
    pub fn key(&self) -> ConsentKey {
        ConsentKey::new(self.collected_by.clone(), self.id.clone())
    }

    /// True if `agency` may read this consent: the collector and the recipients.
    pub fn readable_by(&self, agency: &AgencyId) -> bool {
        self.collected_by == agency.as_str() || self.recipients.iter().any(|r| r == agency.as_str())
    }

    /// The registry's view for an API answer.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "status": self.status,
            "registered_at": self.registered_at,
            "history": self.history,
            "document": self.document,
        })
    }
}

/// Top-level payload fields that route or describe the transfer rather than carry personal
/// data about the subject; every other top-level field is a data item the consent must list
/// (`common.v1.json#/$defs/dataItem`).
pub const ROUTING_FIELDS: [&str; 8] = [
    "referrer",
    "recipient",
    "author",
    "purpose",
    "referral_id",
    "status",
    "changed_at",
    "changed_by",
];

/// The data items a payload carries: its top-level fields except [`ROUTING_FIELDS`].
pub fn items_of(payload: &Value) -> Vec<String> {
    payload
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !ROUTING_FIELDS.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// What a message asks of the consent it cites.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    /// The message's subject.
    pub subject: &'a str,
    /// The sending agency.
    pub sender: &'a str,
    /// The recipient agency.
    pub recipient: &'a str,
    /// The purpose of the transfer (a referral's and a case summary's own; a status takes
    /// its referral's). `None` when it cannot be established.
    pub purpose: Option<&'a str>,
    /// The payload's data items ([`items_of`]).
    pub items: &'a [String],
}

/// Why a consent does not cover a message. Each is a 403 at the origin (problem type
/// [`Refusal::kind`]) and a refusal of the hand-over at the destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No consent with that id is registered here.
    #[error("no consent {id} is registered at this node: the collecting agency registers it first (POST /v1/consents)")]
    Unknown {
        /// The cited id.
        id: String,
    },
    /// The message did not name the collector, and more than one consent with the cited id
    /// (collected by other agencies) names both the sender and the recipient.
    #[error("more than one consent {id} names both you and the recipient: name the collecting agency in `consent_collected_by`")]
    Ambiguous {
        /// The cited id.
        id: String,
    },
    /// The consent is another person's.
    #[error("consent {id} is about another subject, not {subject}")]
    OtherSubject {
        /// The consent.
        id: String,
        /// The message's subject.
        subject: String,
    },
    /// The consent's validity has not begun.
    #[error("consent {id} is valid only from {valid_from}")]
    NotYetValid {
        /// The consent.
        id: String,
        /// Its start.
        valid_from: String,
    },
    /// The consent's validity has ended.
    #[error("consent {id} expired at {valid_until}")]
    Expired {
        /// The consent.
        id: String,
        /// Its end.
        valid_until: String,
    },
    /// The subject withdrew the consent.
    #[error("consent {id} was withdrawn at {at}")]
    Withdrawn {
        /// The consent.
        id: String,
        /// When.
        at: String,
    },
    /// The consent does not name the recipient.
    #[error("consent {id} does not name {recipient} as a recipient")]
    RecipientNotNamed {
        /// The consent.
        id: String,
        /// The message's recipient.
        recipient: String,
    },
    /// The purpose is not among the consent's.
    #[error("consent {id} does not cover the purpose {purpose}")]
    PurposeNotCovered {
        /// The consent.
        id: String,
        /// The message's purpose.
        purpose: String,
    },
    /// The purpose could not be established (a status whose referral this node does not
    /// hold).
    #[error("the purpose of this message cannot be established: {why}")]
    PurposeUnknown {
        /// Why.
        why: String,
    },
    /// A data item of the payload is not among the consent's (data minimisation).
    #[error("consent {id} does not cover the data item{} {}: leave {} out or cite a consent that covers {}", if items.len() > 1 { "s" } else { "" }, items.join(", "), if items.len() > 1 { "them" } else { "it" }, if items.len() > 1 { "them" } else { "it" })]
    ItemNotCovered {
        /// The consent.
        id: String,
        /// The uncovered payload fields, in payload order.
        items: Vec<String>,
    },
    /// The consent's document cannot be read (it passed the schema when registered, so this
    /// is damage or a schema change).
    #[error("consent {id} cannot be read: {why}")]
    Unreadable {
        /// The consent.
        id: String,
        /// What is wrong.
        why: String,
    },
}

impl Refusal {
    /// Every [`Refusal::kind`], in declaration order: the problem types a consent check can
    /// answer with (the console has a label for each; a unit test keeps the list whole).
    pub const KINDS: [&'static str; 11] = [
        "consent-unknown",
        "consent-ambiguous",
        "consent-other-subject",
        "consent-not-yet-valid",
        "consent-expired",
        "consent-withdrawn",
        "consent-recipient-not-named",
        "consent-purpose-not-covered",
        "consent-purpose-unknown",
        "consent-item-not-covered",
        "consent-unreadable",
    ];

    /// The problem type (`https://plusgate.kr/problems/<kind>`) naming the failed condition.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Unknown { .. } => "consent-unknown",
            Refusal::Ambiguous { .. } => "consent-ambiguous",
            Refusal::OtherSubject { .. } => "consent-other-subject",
            Refusal::NotYetValid { .. } => "consent-not-yet-valid",
            Refusal::Expired { .. } => "consent-expired",
            Refusal::Withdrawn { .. } => "consent-withdrawn",
            Refusal::RecipientNotNamed { .. } => "consent-recipient-not-named",
            Refusal::PurposeNotCovered { .. } => "consent-purpose-not-covered",
            Refusal::PurposeUnknown { .. } => "consent-purpose-unknown",
            Refusal::ItemNotCovered { .. } => "consent-item-not-covered",
            Refusal::Unreadable { .. } => "consent-unreadable",
        }
    }

    /// `<kind>: <explanation>`, as audit entries and hand-over refusals carry it.
    pub fn describe(&self) -> String {
        format!("{}: {self}", self.kind())
    }
}

/// What a consent allows, read from its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// The recipient agencies.
    pub recipients: Vec<String>,
    /// The purposes.
    pub purposes: Vec<String>,
    /// The data items.
    pub items: Vec<String>,
    /// Start of validity.
    pub valid_from: OffsetDateTime,
    /// End of validity.
    pub valid_until: OffsetDateTime,
    /// How long recipients keep the data.
    pub retention: Retention,
}

/// A retention period: an ISO 8601 duration of years, months, weeks or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days (weeks counted as 7 days).
    pub days: u32,
}

impl Retention {
    /// Parses `P3Y`, `P1Y6M`, `P90D`, `P2W`, … (the shapes the consent schema allows).
    pub fn parse(s: &str) -> Option<Retention> {
        let mut rest = s.strip_prefix('P')?;
        let mut r = Retention {
            years: 0,
            months: 0,
            days: 0,
        };
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit())?;
            let n: u32 = rest[..digits].parse().ok()?;
            match rest[digits..].chars().next()? {
                'Y' => r.years = r.years.checked_add(n)?,
                'M' => r.months = r.months.checked_add(n)?,
                'W' => r.days = r.days.checked_add(n.checked_mul(7)?)?,
                'D' => r.days = r.days.checked_add(n)?,
                _ => return None,
            }
            rest = &rest[digits + 1..];
        }
        Some(r)
    }

    /// When a retention starting at `from` ends: calendar years and months (a day past the
    /// end of the target month is clamped to its last day), then days.
    pub fn end(&self, from: OffsetDateTime) -> OffsetDateTime {
        let total_months = i64::from(from.month() as u8 - 1)
            + i64::from(self.months)
            + 12 * (i64::from(from.year()) + i64::from(self.years));
        let year = i32::try_from(total_months.div_euclid(12))
            .unwrap_or(9999)
            .min(9999);
        let month =
            Month::try_from((total_months.rem_euclid(12) + 1) as u8).unwrap_or(Month::December);
        let last_day = month.length(year);
        let date =
            Date::from_calendar_date(year, month, from.day().min(last_day)).unwrap_or(from.date());
        from.replace_date(date)
            .checked_add(Duration::days(i64::from(self.days)))
            .unwrap_or(from)
    }
}

impl ConsentRecord {
    /// The consent's terms, from its document.
    pub fn terms(&self) -> Result<Terms, Refusal> {
        let unreadable = |why: &str| Refusal::Unreadable {
            id: self.id.clone(),
            why: why.to_owned(),
        };
        let doc: Value =
            serde_json::from_str(self.document.get()).map_err(|_| unreadable("not JSON"))?;
        let strings = |name: &str| -> Vec<String> {
            doc[name]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let time = |name: &str| {
            doc[name]
                .as_str()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                .ok_or_else(|| unreadable(&format!("{name} is not an RFC 3339 time")))
        };
        let items = doc["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["item"].as_str())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let retention = doc
            .pointer("/retention/period")
            .and_then(Value::as_str)
            .and_then(Retention::parse)
            .ok_or_else(|| unreadable("retention.period is not a duration"))?;
        Ok(Terms {
            recipients: strings("recipients"),
            purposes: strings("purposes"),
            items,
            valid_from: time("valid_from")?,
            valid_until: time("valid_until")?,
            retention,
        })
    }

    /// The withdrawal, if it is withdrawn: the latest `withdrawn` change of its history.
    pub fn withdrawal(&self) -> Option<&StatusChange> {
        if self.status != ConsentStatus::Withdrawn {
            return None;
        }
        latest_withdrawal(&self.history)
    }

    /// When the subject withdrew it, if withdrawn.
    pub fn withdrawn_at(&self) -> Option<&str> {
        (self.status == ConsentStatus::Withdrawn)
            .then(|| self.withdrawal().map_or("", |c| c.at.as_str()))
    }

    /// Whether this consent covers `message` at `now`; the first condition that fails, in
    /// the order: sender (one that is no party to it gets [`Refusal::Unknown`], as for a
    /// consent that does not exist, which is the caller's check), subject, validity,
    /// withdrawal, recipient, purpose, items. On success, the
    /// retention period the recipient keeps the data for.
    pub fn check(&self, message: &Use<'_>, now: OffsetDateTime) -> Result<Retention, Refusal> {
        let terms = self.terms()?;
        self.check_with(&terms, message, now)?;
        Ok(terms.retention)
    }

    /// Whether this consent has ended at `now`: expired (past its `valid_until`, or marked
    /// so) or withdrawn. A message taken under it may be handed out (pulled, forwarded)
    /// only while this is `None`: nothing is disclosed after its consent ended, even if it
    /// was taken before.
    pub fn ended(&self, terms: &Terms, now: OffsetDateTime) -> Option<Refusal> {
        if now > terms.valid_until || self.status == ConsentStatus::Expired {
            return Some(Refusal::Expired {
                id: self.id.clone(),
                valid_until: rfc3339(terms.valid_until),
            });
        }
        self.withdrawn_at().map(|at| Refusal::Withdrawn {
            id: self.id.clone(),
            at: at.to_owned(),
        })
    }

    /// [`ConsentRecord::check`] with this consent's `terms` already read.
    pub fn check_with(
        &self,
        terms: &Terms,
        message: &Use<'_>,
        now: OffsetDateTime,
    ) -> Result<(), Refusal> {
        let id = || self.id.clone();
        // First, and as if it did not exist: a consent the sender is no party to is, for the
        // sender, no consent at all. Answering anything else (its subject, its validity,
        // its withdrawal) would tell an agency about another agency's consent.
        if self.collected_by != message.sender
            && !terms.recipients.iter().any(|r| r == message.sender)
        {
            return Err(Refusal::Unknown { id: id() });
        }
        if self.subject != message.subject {
            return Err(Refusal::OtherSubject {
                id: id(),
                subject: message.subject.to_owned(),
            });
        }
        if now < terms.valid_from {
            return Err(Refusal::NotYetValid {
                id: id(),
                valid_from: rfc3339(terms.valid_from),
            });
        }
        if let Some(ended) = self.ended(terms, now) {
            return Err(ended);
        }
        if !terms.recipients.iter().any(|r| r == message.recipient) {
            return Err(Refusal::RecipientNotNamed {
                id: id(),
                recipient: message.recipient.to_owned(),
            });
        }
        match message.purpose {
            None => {
                return Err(Refusal::PurposeUnknown {
                    why: "the message names no purpose".into(),
                })
            }
            Some(p) if !terms.purposes.iter().any(|q| q == p) => {
                return Err(Refusal::PurposeNotCovered {
                    id: id(),
                    purpose: p.to_owned(),
                })
            }
            Some(_) => {}
        }
        let uncovered: Vec<String> = message
            .items
            .iter()
            .filter(|i| !terms.items.contains(i))
            .cloned()
            .collect();
        if !uncovered.is_empty() {
            return Err(Refusal::ItemNotCovered {
                id: id(),
                items: uncovered,
            });
        }
        Ok(())
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests;

/// The consent check as a specification: every combination of consent state and time,
/// against a model that says which condition must fail first.
#[cfg(test)]
mod check_properties;
