//! RFC 9457 problem details: the one shape of every error response, and the one place the
//! node's errors ([`LedgerError`], [`StoreError`], [`InboxError`]) become one.
//!
//! Internal errors are logged once, where they are turned into a problem, and never
//! returned to the client in detail. Whether an error is the caller's (4xx), temporary
//! (503 with `Retry-After`: [`LedgerError::retryable`]) or the node's for good (500) is
//! decided here.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::core::consent::Refusal;
use crate::core::schema::Violation;
use crate::node::inbox::InboxError;
use crate::node::ledger::LedgerError;
use crate::node::store::StoreError;

/// Every problem type (`urn:plusgate:problem:<slug>`) the node answers with, except the
/// consent refusals, which are [`Refusal::KINDS`] (see [`all_types`]). The console shows a
/// translated label for each; a unit test reads every `Problem` constructor call in `src/`
/// and fails on a slug missing here, so this list cannot fall behind the code.
pub const TYPES: &[&str] = &[
    "ambiguous-id",
    "audit-rollback",
    "backup-failed",
    "backup-in-progress",
    "backup-no-space",
    "bad-request",
    "body-timeout",
    "body-too-large",
    "busy",
    "consent-ambiguous",
    "consent-conflict",
    "corrupt-record",
    "cross-site-request",
    "id-conflict",
    "inbox-full",
    "method-not-allowed",
    "no-handler",
    "no-such-backup",
    "not-collector",
    "not-federated",
    "not-found",
    "not-ready",
    "outbox-full",
    "report-failed",
    "resend-failed",
    "schema-violation",
    "storage-full",
    "type-not-allowed",
    "type-not-received",
    "unavailable",
    "unknown-identity",
    "unknown-node",
    "unknown-recipient",
    "unsupported-media-type",
    "wrong-role",
    "wrong-state",
];

/// Every problem type the node can answer with: [`TYPES`], then the consent refusals
/// ([`Refusal::KINDS`], which also go into the audit chain as `<kind>: <explanation>`).
pub fn all_types() -> impl Iterator<Item = &'static str> {
    TYPES
        .iter()
        .copied()
        .chain(Refusal::KINDS.into_iter().filter(|k| !TYPES.contains(k)))
}

/// Longest `detail`, in characters, as `docs/openapi.json` bounds it (`Problem.detail`): a
/// detail may quote the caller's input, which has no bound of its own.
pub const DETAIL_CHARS_MAX: usize = 4000;
/// Longest violation `message`, in characters (`Problem.violations[].message`): a message
/// may list every member a body should not have, as many as the body has.
pub const VIOLATION_MESSAGE_CHARS_MAX: usize = 1000;
/// Longest violation `pointer`, in characters (`Problem.violations[].pointer`).
pub const VIOLATION_POINTER_CHARS_MAX: usize = 1024;
/// Most violations in one answer (`Problem.violations`).
pub const VIOLATIONS_MAX: usize = 1000;

/// `text` cut to at most `max` characters, the last of them `…` when it was cut.
fn bounded(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max) {
        let keep = text[..at]
            .char_indices()
            .nth(max.saturating_sub(1))
            .map_or(at, |(i, _)| i);
        text.truncate(keep);
        text.push('…');
    }
    text
}

/// A problem response body. Its strings and lists are bounded as the document says
/// ([`DETAIL_CHARS_MAX`] …), whatever the input they quote.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:plusgate:problem:<slug>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, fixed summary of the kind.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What went wrong with this request and what the caller can do.
    pub detail: String,
    /// Every violation, for 422s.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    #[serde(skip)]
    retry_after_s: Option<u32>,
    #[serde(skip)]
    allow: Option<&'static str>,
}

impl Problem {
    /// A problem of kind `slug`.
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            kind: format!("urn:plusgate:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: bounded(detail.into(), DETAIL_CHARS_MAX),
            violations: Vec::new(),
            retry_after_s: None,
            allow: None,
        }
    }

    /// Adds violations: the first [`VIOLATIONS_MAX`], each bounded.
    pub fn with_violations(mut self, violations: Vec<Violation>) -> Problem {
        self.violations = violations
            .into_iter()
            .take(VIOLATIONS_MAX)
            .map(|v| Violation {
                pointer: bounded(v.pointer, VIOLATION_POINTER_CHARS_MAX),
                message: bounded(v.message, VIOLATION_MESSAGE_CHARS_MAX),
            })
            .collect();
        self
    }

    /// Asks the client to retry after `seconds`.
    pub fn retry_after(mut self, seconds: u32) -> Problem {
        self.retry_after_s = Some(seconds);
        self
    }

    /// For 405: the methods the resource supports.
    pub fn allow(mut self, methods: &'static str) -> Problem {
        self.allow = Some(methods);
        self
    }

    /// 400: the body is not the JSON it should be.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Malformed request",
            detail,
        )
    }

    /// 403.
    pub fn forbidden(slug: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, slug, "Forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 422 with violations.
    pub fn invalid(violations: Vec<Violation>) -> Problem {
        let n = violations.len();
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema-violation",
            "The message does not conform to its schema",
            format!("{n} violation(s); see `violations` for each JSON pointer"),
        )
        .with_violations(violations)
    }

    /// 405: the resource exists, but only with `allow`.
    pub fn method_not_allowed(allow: &'static str) -> Problem {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("use {allow}"),
        )
        .allow(allow)
    }

    /// 500 for a failure the client cannot fix; `internal` is logged, not sent.
    pub fn internal(slug: &str, internal: &dyn std::fmt::Display) -> Problem {
        tracing::error!(error = %internal, kind = slug, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            slug,
            "Internal error",
            "the node could not complete the request; it has been logged for the operator",
        )
    }

    /// 503 for a temporary failure: retry later.
    pub fn unavailable(internal: &dyn std::fmt::Display) -> Problem {
        tracing::error!(error = %internal, "request refused: node unavailable");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            "the node cannot store messages right now; nothing was accepted, retry later",
        )
        .retry_after(5)
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(methods) = self.allow {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(methods));
        }
        if let Some(s) = self.retry_after_s {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// A ledger error as the caller sees it: the caller's own mistakes as 4xx, the node's
/// trouble as 503 with `Retry-After` when [`LedgerError::retryable`], else 500.
pub(super) fn ledger_problem(e: LedgerError) -> Problem {
    match e {
        LedgerError::IdConflict(id) => Problem::new(
            StatusCode::CONFLICT,
            "id-conflict",
            "Message id already used",
            format!(
                "id {} was already used for a different message; choose a new id",
                id.public()
            ),
        ),
        LedgerError::AmbiguousId(id) => Problem::new(
            StatusCode::CONFLICT,
            "ambiguous-id",
            "Two messages with this id",
            format!(
                "two messages {id} from different senders are in your inbox; nothing was \
                 acknowledged: acknowledge each as <from>/{id}"
            ),
        ),
        LedgerError::NoSuchMessage(id) => Problem::not_found(format!(
            "no message {id} in your inbox; nothing was acknowledged"
        )),
        LedgerError::OutboxFull(center) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outbox-full",
            "Outbox full",
            format!(
                "too many messages wait for center {center}, which has not been reachable; \
                 nothing was accepted, retry later"
            ),
        )
        .retry_after(60),
        LedgerError::InboxFull(agency) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "inbox-full",
            "Inbox full",
            format!(
                "too many messages wait in the inbox of {agency}, which has not been pulling \
                 them; nothing was accepted, retry later"
            ),
        )
        .retry_after(30),
        LedgerError::Busy => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Busy",
            "the node holds as many messages waiting to be written as it may; nothing was \
             accepted, retry later",
        )
        .retry_after(1),
        LedgerError::ConsentConflict(_) => Problem::new(
            StatusCode::CONFLICT,
            "consent-conflict",
            "Consent id already used",
            format!("{e}; register a changed consent under a new id"),
        ),
        LedgerError::NoSuchConsent(_) => Problem::not_found(e.to_string()),
        LedgerError::PeerRollback(_) => Problem::new(
            StatusCode::CONFLICT,
            "audit-rollback",
            "Audit log rolled back",
            e.to_string(),
        ),
        LedgerError::WrongState { .. } => Problem::new(
            StatusCode::CONFLICT,
            "wrong-state",
            "Not possible in this state",
            e.to_string(),
        ),
        LedgerError::Refused(refusal) => Problem::forbidden(refusal.kind(), refusal.to_string()),
        LedgerError::Halted(_) => {
            tracing::error!(error = %e, "request refused: the ledger has halted");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
                "the node's store failed and the node takes no writes until it is restarted; \
                 a request that got this answer may or may not have been kept: retry it \
                 unchanged (with its id) once the node is back",
            )
            .retry_after(30)
        }
        LedgerError::StorageFull(_) => Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage-full",
            "Storage full",
            format!("{e}; nothing was accepted, retry later"),
        )
        .retry_after(30),
        // What is left is the node's trouble, not the request's: 503 with Retry-After when
        // the same request may succeed later, else 500 (a damaged record stays damaged).
        _ if e.retryable() => Problem::unavailable(&e),
        _ => Problem::internal("corrupt-record", &e),
    }
}

/// A failed read: a damaged record is 500 (it stays damaged), anything else 503.
pub(super) fn store_problem(e: StoreError) -> Problem {
    match e {
        StoreError::Corrupt { .. } => Problem::internal("corrupt-record", &e),
        _ => Problem::unavailable(&e),
    }
}

/// A failed pull: reading the inbox or recording the lease.
pub(super) fn inbox_problem(e: InboxError) -> Problem {
    match e {
        InboxError::Store(e) => store_problem(e),
        InboxError::Ledger(e) => ledger_problem(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::audit::Divergence;
    use crate::core::identity::{AgencyId, CenterId};
    use crate::core::message::MessageId;
    use crate::node::store::RecordError;

    /// A violation message listing every unknown member of a large body, and a detail
    /// quoting a long query value, stay within the document's `maxLength`s (schemathesis
    /// found the first: 64 unknown members made a 1,400-character message).
    #[test]
    fn problem_strings_stay_within_the_documents_bounds() {
        let long = "x\u{d55c}".repeat(3000);
        let many = (0..VIOLATIONS_MAX + 5)
            .map(|i| Violation {
                pointer: format!("/{}", long.clone() + &i.to_string()),
                message: long.clone(),
            })
            .collect();
        let p = Problem::invalid(many);
        assert_eq!(p.violations.len(), VIOLATIONS_MAX);
        for v in &p.violations {
            assert_eq!(v.message.chars().count(), VIOLATION_MESSAGE_CHARS_MAX);
            assert!(v.message.ends_with('…'));
            assert_eq!(v.pointer.chars().count(), VIOLATION_POINTER_CHARS_MAX);
        }
        let p = Problem::bad_request(long.clone());
        assert_eq!(p.detail.chars().count(), DETAIL_CHARS_MAX);
        assert_eq!(bounded("short".into(), 5), "short");
        assert_eq!(bounded("longer".into(), 5), "long…");
    }

    /// [`LedgerError::retryable`] decides between 503 with `Retry-After` and a final answer:
    /// every retryable error is a 503 asking to come back, every other one is not.
    #[test]
    fn retryable_ledger_errors_and_only_they_are_503_with_retry_after() {
        let id = || MessageId::generate();
        let io = || StoreError::Sync {
            path: "data".into(),
            source: std::io::ErrorKind::Other.into(),
        };
        let corrupt = || StoreError::Corrupt {
            family: "message",
            key: "m-1".into(),
            source: RecordError::Truncated(0),
        };
        let center = CenterId::parse("gangseo").expect("center");
        let errors = [
            LedgerError::IdConflict(id()),
            LedgerError::NoSuchMessage(id()),
            LedgerError::AmbiguousId(id()),
            LedgerError::OutboxFull(center),
            LedgerError::InboxFull(AgencyId::parse("suwon/welfare").expect("agency")),
            LedgerError::Busy,
            LedgerError::ConsentConflict("c-1".into()),
            LedgerError::NoSuchConsent("c-1".into()),
            LedgerError::PeerRollback(Divergence::RolledBack {
                node: "gangseo".into(),
                length: 1,
                earlier: 2,
            }),
            LedgerError::WrongState {
                id: id(),
                state: "acked",
                what: "test",
            },
            LedgerError::Refused(Refusal::Unknown { id: "c-1".into() }),
            LedgerError::Storage(io()),
            LedgerError::Storage(corrupt()),
            LedgerError::StorageFull(Arc::new(io())),
            LedgerError::Halted(Arc::new(io())),
            LedgerError::Stopped,
        ];
        for e in errors {
            let what = format!("{e:?}");
            let retryable = e.retryable();
            let problem = ledger_problem(e);
            assert_eq!(
                problem.status == 503 || problem.status == 507,
                retryable,
                "{what}"
            );
            assert_eq!(problem.retry_after_s.is_some(), retryable, "{what}");
        }
    }
}

#[cfg(test)]
mod types_tests {
    use std::path::Path;

    use super::{Refusal, TYPES};

    /// The `.rs` files under `dir`, recursively.
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The slug argument of each `Problem::new(`, `Problem::forbidden(` and
    /// `Problem::internal(` call in `text`: a string literal, or the expression written
    /// there when it is computed.
    fn slugs_in(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (call, skip_status) in [
            ("Problem::new(", true),
            ("Problem::forbidden(", false),
            ("Problem::internal(", false),
        ] {
            for (at, _) in text.match_indices(call) {
                let mut rest = &text[at + call.len()..];
                if skip_status {
                    // The status (`StatusCode::…`) comes first and holds no comma.
                    rest = rest.split_once(',').map_or("", |(_, r)| r);
                }
                let rest = rest.trim_start();
                let slug = match rest.strip_prefix('"') {
                    Some(lit) => lit.split('"').next().unwrap_or_default(),
                    None => rest.split([',', '\n']).next().unwrap_or_default().trim(),
                };
                found.push(slug.to_owned());
            }
        }
        found
    }

    /// Every problem type the code can build is listed: a literal slug must be in
    /// [`TYPES`]; a computed one must be one of the few whose values are listed elsewhere
    /// (the constructors' own parameter, a refusal's kind from [`Refusal::KINDS`]).
    #[test]
    fn every_problem_type_the_code_builds_is_listed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let mut literals = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source readable");
            // This module names the calls it looks for; it makes none.
            let code = text.split("mod types_tests").next().unwrap_or_default();
            for slug in slugs_in(code) {
                match slug.as_str() {
                    "slug" if file.ends_with("node/api/problem.rs") => {}
                    "refusal.kind()" => {}
                    s if s.chars().all(|c| c.is_ascii_lowercase() || c == '-') => {
                        literals += 1;
                        assert!(
                            TYPES.contains(&s) || Refusal::KINDS.contains(&s),
                            "{}: problem type `{s}` is not in problem::TYPES: add it there \
                             (and its labels to the console's labels.json)",
                            file.display()
                        );
                    }
                    other => panic!(
                        "{}: a problem type computed as `{other}`: list its values in \
                         problem::TYPES and teach this test where they come from",
                        file.display()
                    ),
                }
            }
        }
        assert!(
            literals > 20,
            "the scan found only {literals} slugs: is it still reading calls?"
        );
        let mut sorted = TYPES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, TYPES, "TYPES is sorted and has no duplicates");
    }
}
