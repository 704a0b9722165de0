//! The privacy officer's reports over the whole record: consents (`/v1/privacy/consents`),
//! refusals (`/v1/privacy/refusals`), withdrawals (`/v1/privacy/withdrawals`), each
//! filtered and as JSON or CSV, and the audit chain's status (`/v1/privacy/audit`: this
//! node's chain, and whether any peer's checkpoints contradict each other).
//!
//! The query string is parsed strictly at the edge: an unknown parameter, one given twice,
//! or a bad value is a 400 naming the parameter. Dates are `YYYY-MM-DD`, an Asia/Seoul
//! calendar day (00:00 to 24:00 at +09:00, both ends inclusive: the day Korean officers
//! live in, see `core::time::SEOUL`), or RFC 3339 date-times. The store scans run on tokio's
//! blocking pool, so a report over a long audit chain does not hold up other requests.
//!
//! Every CSV answer starts with a UTF-8 byte-order mark ([`UTF8_BOM`]): Excel on Korean
//! Windows reads a CSV without one in the legacy code page (CP949) and garbles Hangul.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::super::body::json_response;
use super::super::problem::{ledger_problem, store_problem};
use super::super::{Api, Problem, Resp};
use crate::core::audit::{Action, Checkpoint};
use crate::core::consent::{ConsentRecord, ConsentStatus};
use crate::core::identity::{AgencyId, OfficerId};
use crate::node::store::reports::{ChainStatus, PeerStatus};
use crate::node::store::{Store, StoreError};

/// Most rows one report answers, and the default of its `limit` parameter (which may ask
/// for fewer). More matching rows are left out, and the answer says so (`"truncated":
/// true`, or the `Plusgate-Truncated: true` header on CSV): narrow the filters.
pub const REPORT_ROWS_MAX: usize = 10_000;

/// Longest subject reference accepted as a filter (the schema's `subjectRef` is shorter).
const SUBJECT_LEN_MAX: usize = 128;

/// The reports of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// Consents registered here.
    Consents,
    /// Messages refused for want of a covering consent.
    Refusals,
    /// Withdrawals of consents registered here.
    Withdrawals,
    /// The audit chain's status.
    Audit,
}

impl Report {
    /// The report named by the last path segment.
    fn parse(name: &str) -> Option<Report> {
        Some(match name {
            "consents" => Report::Consents,
            "refusals" => Report::Refusals,
            "withdrawals" => Report::Withdrawals,
            "audit" => Report::Audit,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Report::Consents => "consents",
            Report::Refusals => "refusals",
            Report::Withdrawals => "withdrawals",
            Report::Audit => "audit",
        }
    }

    /// The query parameters it accepts.
    fn params(self) -> &'static [&'static str] {
        match self {
            Report::Consents => &[
                "subject", "agency", "status", "from", "to", "format", "limit",
            ],
            Report::Refusals => &["agency", "from", "to", "format", "limit"],
            Report::Withdrawals => &["subject", "agency", "from", "to", "format", "limit"],
            Report::Audit => &["verify"],
        }
    }
}

/// What is wrong with a report's query string: the caller's mistake, answered 400 naming
/// the parameter; the same query fails again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FilterError {
    /// A parameter the report does not take.
    #[error("unknown query parameter `{name}`; {report} takes {params}")]
    Unknown {
        name: String,
        report: &'static str,
        params: String,
    },
    /// A parameter given more than once.
    #[error("query parameter `{0}` given twice")]
    Twice(String),
    /// `subject` is not a subject reference.
    #[error("`subject` must be a pseudonymous subject reference such as ps-7f3a9c21e4b05d18")]
    Subject,
    /// `agency` is not an agency id.
    #[error("`agency` must be an agency id such as suwon/welfare, not `{0}`")]
    Agency(String),
    /// `status` is not a consent status.
    #[error("`status` must be granted, withdrawn or expired, not `{0}`")]
    Status(String),
    /// `from` or `to` is neither a date nor a date-time.
    #[error("`{name}` must be a date (YYYY-MM-DD, an Asia/Seoul day) or an RFC 3339 date-time, not `{value}`")]
    Time { name: &'static str, value: String },
    /// `to` is the last day the calendar has.
    #[error("`{0}` is past the last day there is")]
    PastLastDay(&'static str),
    /// `format` is neither json nor csv.
    #[error("`format` must be json or csv, not `{0}`")]
    Format(String),
    /// `verify` is neither checkpoint nor full.
    #[error("`verify` must be checkpoint or full, not `{0}`")]
    Verify(String),
    /// The range is empty.
    #[error("`to` is before `from`")]
    ToBeforeFrom,
    /// `limit` is not a number of rows the report may answer.
    #[error("`limit` must be a number from 1 to {REPORT_ROWS_MAX}, not `{0}`")]
    Limit(String),
}

/// A `limit` parameter's value: 1 to [`REPORT_ROWS_MAX`] rows.
pub(super) fn parse_limit(v: &str) -> Result<usize, FilterError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=REPORT_ROWS_MAX).contains(n))
        .ok_or_else(|| FilterError::Limit(v.to_owned()))
}

/// The filters of a report request, parsed.
#[derive(Debug, Default)]
struct Filters {
    subject: Option<String>,
    agency: Option<AgencyId>,
    status: Option<ConsentStatus>,
    range: Range,
    csv: bool,
    /// Audit: check the chain from genesis rather than from the last checkpoint.
    from_genesis: bool,
    /// Most rows answered (`limit`; [`REPORT_ROWS_MAX`] when not given).
    limit: Option<usize>,
    /// The accepted parameters again, normalised, for the audit entry of the query.
    normalised: String,
}

/// A time range; both ends inclusive.
#[derive(Debug, Default, Clone, Copy)]
struct Range {
    from: Option<OffsetDateTime>,
    /// Exclusive when the parameter was a date (the start of the next day).
    to: Option<(OffsetDateTime, bool)>,
}

impl Range {
    fn is_open(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// True if `at` (RFC 3339) is in range. An unreadable time is only in an open range.
    fn contains(&self, at: &str) -> bool {
        if self.is_open() {
            return true;
        }
        let Ok(t) = OffsetDateTime::parse(at, &Rfc3339) else {
            return false;
        };
        self.from.is_none_or(|from| t >= from)
            && self
                .to
                .is_none_or(|(to, exclusive)| if exclusive { t < to } else { t <= to })
    }
}

/// `YYYY-MM-DD`, an Asia/Seoul day (its start, or with `end` the start of the next day,
/// both at +09:00), or an RFC 3339 date-time.
fn parse_time(
    name: &'static str,
    value: &str,
    end: bool,
) -> Result<(OffsetDateTime, bool), FilterError> {
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok((t, false));
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = Date::parse(value, &format).map_err(|_| FilterError::Time {
        name,
        value: value.to_owned(),
    })?;
    let start = crate::core::time::seoul_day_start;
    if end {
        let next = day.next_day().ok_or(FilterError::PastLastDay(name))?;
        Ok((start(next), true))
    } else {
        Ok((start(day), false))
    }
}

impl Filters {
    fn parse(query: Option<&str>, report: Report) -> Result<Filters, FilterError> {
        let mut f = Filters::default();
        let mut seen: Vec<String> = Vec::new();
        let mut normalised = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let name = k.as_ref();
            if !report.params().contains(&name) {
                return Err(FilterError::Unknown {
                    name: name.to_owned(),
                    report: report.name(),
                    params: report.params().join(", "),
                });
            }
            if seen.iter().any(|s| s == name) {
                return Err(FilterError::Twice(name.to_owned()));
            }
            seen.push(name.to_owned());
            if v.is_empty() {
                continue; // an empty form field: no filter
            }
            match name {
                "subject" => {
                    let ok = v.len() <= SUBJECT_LEN_MAX
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
                    if !ok {
                        return Err(FilterError::Subject);
                    }
                    f.subject = Some(v.clone().into_owned());
                }
                "agency" => {
                    f.agency =
                        Some(AgencyId::parse(&v).map_err(|_| FilterError::Agency(v.to_string()))?);
                }
                "status" => {
                    f.status = Some(
                        ConsentStatus::parse(&v)
                            .ok_or_else(|| FilterError::Status(v.to_string()))?,
                    );
                }
                "from" => f.range.from = Some(parse_time("from", &v, false)?.0),
                "to" => f.range.to = Some(parse_time("to", &v, true)?),
                "format" => {
                    f.csv = match v.as_ref() {
                        "csv" => true,
                        "json" => false,
                        _ => return Err(FilterError::Format(v.to_string())),
                    };
                    continue;
                }
                "limit" => f.limit = Some(parse_limit(&v)?),
                "verify" => {
                    f.from_genesis = match v.as_ref() {
                        "full" => true,
                        "checkpoint" => false,
                        _ => return Err(FilterError::Verify(v.to_string())),
                    };
                }
                _ => {}
            }
            normalised.append_pair(name, &v);
        }
        if let (Some(from), Some((to, exclusive))) = (f.range.from, f.range.to) {
            if to < from || (exclusive && to == from) {
                return Err(FilterError::ToBeforeFrom);
            }
        }
        f.normalised = normalised.finish();
        Ok(f)
    }
}

/// One consent as the consent report shows it.
#[derive(Debug, Serialize)]
struct ConsentRow {
    id: String,
    subject: String,
    collected_by: String,
    recipients: Vec<String>,
    purposes: Vec<String>,
    /// Item names only.
    items: Vec<String>,
    valid_from: String,
    valid_until: String,
    /// ISO 8601 duration, as the document states it.
    retention_period: String,
    registered_at: String,
    status: ConsentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    withdrawn_at: Option<String>,
}

impl ConsentRow {
    fn new(c: &ConsentRecord, now: OffsetDateTime) -> ConsentRow {
        let doc: Value = serde_json::from_str(c.document.get()).unwrap_or(Value::Null);
        let text = |pointer: &str| {
            doc.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let list = |v: &Value, field: Option<&str>| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| match field {
                    Some(f) => x.get(f).and_then(Value::as_str),
                    None => x.as_str(),
                })
                .map(str::to_owned)
                .collect()
        };
        let valid_until = text("/valid_until");
        let withdrawn_at =
            crate::core::consent::latest_withdrawal(&c.history).map(|h| h.at.clone());
        // As of now: `expired` is computed (granted, but past `valid_until`).
        let status = if c.status == ConsentStatus::Withdrawn {
            ConsentStatus::Withdrawn
        } else if OffsetDateTime::parse(&valid_until, &Rfc3339).is_ok_and(|t| t < now) {
            ConsentStatus::Expired
        } else {
            ConsentStatus::Granted
        };
        ConsentRow {
            id: c.id.clone(),
            subject: c.subject.clone(),
            collected_by: c.collected_by.clone(),
            recipients: c.recipients.clone(),
            purposes: list(&doc["purposes"], None),
            items: list(&doc["items"], Some("item")),
            valid_from: text("/valid_from"),
            valid_until,
            retention_period: text("/retention/period"),
            registered_at: c.registered_at.clone(),
            status,
            withdrawn_at,
        }
    }
}

/// A message refused because no consent covered it (an audit entry `refused`).
#[derive(Debug, Serialize)]
struct RefusalRow {
    at: String,
    actor: String,
    message_id: String,
    from: String,
    to: String,
    subject: String,
    consent_id: String,
    /// `<problem-type>: <explanation>`.
    detail: String,
}

/// One withdrawal of a consent.
#[derive(Debug, Serialize)]
struct WithdrawalRow {
    consent_id: String,
    subject: String,
    collected_by: String,
    recipients: Vec<String>,
    withdrawn_at: String,
    by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// A report row that can be written as CSV.
pub(super) trait CsvRow {
    /// The header row.
    const HEADER: &'static [&'static str];
    /// The row's cells, in header order (lists joined with `;`).
    fn cells(&self) -> Vec<String>;
}

impl CsvRow for ConsentRow {
    const HEADER: &'static [&'static str] = &[
        "id",
        "subject",
        "collected_by",
        "recipients",
        "purposes",
        "items",
        "valid_from",
        "valid_until",
        "retention_period",
        "registered_at",
        "status",
        "withdrawn_at",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.subject.clone(),
            self.collected_by.clone(),
            self.recipients.join(";"),
            self.purposes.join(";"),
            self.items.join(";"),
            self.valid_from.clone(),
            self.valid_until.clone(),
            self.retention_period.clone(),
            self.registered_at.clone(),
            self.status.to_string(),
            self.withdrawn_at.clone().unwrap_or_default(),
        ]
    }
}

impl CsvRow for RefusalRow {
    const HEADER: &'static [&'static str] = &[
        "at",
        "actor",
        "message_id",
        "from",
        "to",
        "subject",
        "consent_id",
        "detail",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.at.clone(),
            self.actor.clone(),
            self.message_id.clone(),
            self.from.clone(),
            self.to.clone(),
            self.subject.clone(),
            self.consent_id.clone(),
            self.detail.clone(),
        ]
    }
}

impl CsvRow for WithdrawalRow {
    const HEADER: &'static [&'static str] = &[
        "consent_id",
        "subject",
        "collected_by",
        "recipients",
        "withdrawn_at",
        "by",
        "reason",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.consent_id.clone(),
            self.subject.clone(),
            self.collected_by.clone(),
            self.recipients.join(";"),
            self.withdrawn_at.clone(),
            self.by.clone(),
            self.reason.clone().unwrap_or_default(),
        ]
    }
}

/// RFC 4180 CSV: the header, then one row each, CRLF line ends. A cell is quoted when it
/// holds a comma, quote or line break; one that a spreadsheet would take for a formula
/// (starting with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`, so opening an export
/// never runs what an agency wrote into a reason.
pub(super) fn to_csv<T: CsvRow>(rows: &[T]) -> String {
    let cell = |s: &str| {
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_owned()
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = T::HEADER.join(",");
    out.push_str("\r\n");
    for row in rows {
        let cells: Vec<String> = row.cells().iter().map(|c| cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The UTF-8 byte-order mark (EF BB BF) every CSV answer starts with. Excel takes a CSV
/// without it for the system's legacy code page (CP949 on Korean Windows) and shows Hangul
/// as mojibake; with it, Excel, LibreOffice and Python's `utf-8-sig` read UTF-8.
pub const UTF8_BOM: &str = "\u{FEFF}";

/// A `text/csv` answer, offered for download as `<name>.csv`: [`UTF8_BOM`], then `body`.
pub(in crate::node::api) fn csv_response(name: &str, body: String) -> Resp {
    let mut bytes = String::with_capacity(UTF8_BOM.len() + body.len());
    bytes.push_str(UTF8_BOM);
    bytes.push_str(&body);
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    resp
}

impl Filters {
    /// Most rows to answer.
    fn limit(&self) -> usize {
        self.limit.unwrap_or(REPORT_ROWS_MAX)
    }
}

/// A report's rows, at most its limit (≤ [`REPORT_ROWS_MAX`]), and whether more matched.
struct Rows<T> {
    rows: Vec<T>,
    truncated: bool,
}

impl<T> Rows<T> {
    fn collect(
        items: impl Iterator<Item = Result<T, StoreError>>,
        limit: usize,
    ) -> Result<Rows<T>, StoreError> {
        let mut rows = Vec::new();
        for item in items {
            if rows.len() == limit {
                return Ok(Rows {
                    rows,
                    truncated: true,
                });
            }
            rows.push(item?);
        }
        Ok(Rows {
            rows,
            truncated: false,
        })
    }
}

impl<T: Serialize + CsvRow> Rows<T> {
    fn answer(self, name: &str, csv: bool) -> Resp {
        let mut resp = if csv {
            csv_response(name, to_csv(&self.rows))
        } else {
            json_response(
                StatusCode::OK,
                &json!({ name: self.rows, "truncated": self.truncated }),
            )
        };
        if self.truncated {
            resp.headers_mut()
                .insert("plusgate-truncated", HeaderValue::from_static("true"));
        }
        resp
    }
}

impl Filters {
    /// True if consent `c` is about the subject and names the agency asked for (as its
    /// collector or a recipient).
    fn concern(&self, c: &ConsentRecord) -> bool {
        self.subject.as_ref().is_none_or(|s| *s == c.subject)
            && self.agency.as_ref().is_none_or(|a| {
                c.collected_by == a.as_str() || c.recipients.iter().any(|r| r == a.as_str())
            })
    }
}

fn consents(store: &Store, f: &Filters, now: OffsetDateTime) -> Result<Resp, StoreError> {
    let matching = store.consents().filter_map(|c| match c {
        Err(e) => Some(Err(e)),
        Ok(c) => {
            let keep = f.concern(&c) && f.range.contains(&c.registered_at);
            let row = keep.then(|| ConsentRow::new(&c, now));
            row.filter(|r| f.status.is_none_or(|s| s == r.status))
                .map(Ok)
        }
    });
    Ok(Rows::collect(matching, f.limit())?.answer("consents", f.csv))
}

fn refusals(store: &Store, f: &Filters) -> Result<Resp, StoreError> {
    let agency = f.agency.as_ref().map(AgencyId::as_str);
    let matching = store.audit_entries_from(0).filter_map(|e| match e {
        Err(e) => Some(Err(e)),
        Ok(e) if e.action != Action::Refused => None,
        Ok(e) => {
            let keep = agency.is_none_or(|a| e.from == a || e.to == a) && f.range.contains(&e.at);
            keep.then(|| {
                Ok(RefusalRow {
                    at: e.at,
                    actor: e.actor,
                    message_id: e.message_id,
                    from: e.from,
                    to: e.to,
                    subject: e.subject,
                    consent_id: e.consent_id,
                    detail: e.detail.unwrap_or_default(),
                })
            })
        }
    });
    Ok(Rows::collect(matching, f.limit())?.answer("refusals", f.csv))
}

fn withdrawals(store: &Store, f: &Filters) -> Result<Resp, StoreError> {
    let mut rows = Vec::new();
    for c in store.consents() {
        let c = c?;
        if !f.concern(&c) {
            continue;
        }
        for h in &c.history {
            if h.status == ConsentStatus::Withdrawn && f.range.contains(&h.at) {
                rows.push(WithdrawalRow {
                    consent_id: c.id.clone(),
                    subject: c.subject.clone(),
                    collected_by: c.collected_by.clone(),
                    recipients: c.recipients.clone(),
                    withdrawn_at: h.at.clone(),
                    by: h.by.clone(),
                    reason: h.reason.clone(),
                });
            }
        }
        // Bounded: past the limit the answer is truncated anyway (which withdrawals make it
        // is then decided by consent id, not by time).
        if rows.len() > f.limit() {
            break;
        }
    }
    // Newest first; a time that does not parse sorts last.
    rows.sort_by_key(|r| std::cmp::Reverse(OffsetDateTime::parse(&r.withdrawn_at, &Rfc3339).ok()));
    Ok(Rows::collect(rows.into_iter().map(Ok), f.limit())?.answer("withdrawals", f.csv))
}

/// A checkpoint as the audit status shows it.
fn checkpoint_json(c: &Checkpoint) -> Value {
    json!({"length": c.length, "head": c.head, "signed_at": c.at})
}

/// The audit chain's status as JSON: this node's chain, and what it holds of its peers'
/// checkpoints. `verified` is true only if the chain verifies and no node's checkpoints are
/// known to contradict each other; `problem` names the first thing wrong.
fn audit_json(s: &ChainStatus, peers: &[PeerStatus], checked_at: &str, check_ms: u128) -> Value {
    let checkpoint = s.checkpoint.as_ref().map(|(c, valid)| {
        json!({
            "length": c.length,
            "seq": c.length.saturating_sub(1),
            "head": c.head,
            "signed_at": c.at,
            "signature_valid": valid,
        })
    });
    let peer_problem = peers.iter().find_map(|p| {
        let e = p.evidence.first()?;
        Some(format!(
            "checkpoints of {} contradict each other: {}",
            p.center, e.problem
        ))
    });
    let peers: Vec<Value> = peers
        .iter()
        .map(|p| {
            let evidence: Vec<Value> = p
                .evidence
                .iter()
                .map(|e| {
                    json!({
                        "found_at": e.found_at,
                        "problem": e.problem,
                        "held": checkpoint_json(&e.held),
                        "refused": checkpoint_json(&e.refused),
                    })
                })
                .collect();
            json!({
                "center": p.center,
                "checkpoint": p.held.as_ref().map(checkpoint_json),
                "consistent": p.evidence.is_empty(),
                "evidence": evidence,
            })
        })
        .collect();
    json!({
        "length": s.length,
        "head": s.head,
        "verified": s.verified() && peer_problem.is_none(),
        "chain_verified": s.verified(),
        "verified_from": s.verified_from.as_str(),
        "entries_checked": s.entries_checked,
        "problem": s.problem.as_ref().map(ToString::to_string).or(peer_problem),
        "checkpoint": checkpoint,
        "peers": peers,
        "checked_at": checked_at,
        "check_ms": check_ms,
    })
}

impl Api {
    /// `GET /v1/privacy/{name}`: the report, after its query is durably audited.
    pub(in crate::node::api) async fn report(
        &self,
        req: &Request<hyper::body::Incoming>,
        officer: &OfficerId,
        name: &str,
    ) -> Result<Resp, Problem> {
        let report = Report::parse(name)
            .ok_or_else(|| Problem::not_found(format!("no privacy report {name}")))?;
        let filters = Filters::parse(req.uri().query(), report)
            .map_err(|e| Problem::bad_request(e.to_string()))?;
        let store = self.store.clone();
        let key = self.signing_key.as_ref().map(|k| k.public_key());
        let durable_len = self.ledger.durable_seq();
        let now = self.ledger.clock().now();
        let (resp, filters) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let resp = match report {
                Report::Consents => consents(&store, &filters, now),
                Report::Refusals => refusals(&store, &filters),
                Report::Withdrawals => withdrawals(&store, &filters),
                Report::Audit => store
                    .audit_status(durable_len, key.as_ref(), filters.from_genesis)
                    .and_then(|s| Ok((s, store.peer_statuses()?)))
                    .map(|(s, peers)| {
                        let at = crate::core::time::rfc3339(now);
                        let body = audit_json(&s, &peers, &at, started.elapsed().as_millis());
                        json_response(StatusCode::OK, &body)
                    }),
            };
            (resp, filters)
        })
        .await
        .map_err(|e| Problem::internal("report-failed", &e))?;
        let resp = resp.map_err(store_problem)?;
        let mut detail = report.name().to_owned();
        if !filters.normalised.is_empty() {
            detail = format!("{detail}?{}", filters.normalised);
        }
        if filters.csv {
            detail.push_str(" (csv)");
        }
        self.ledger
            .queried(officer.clone(), filters.subject.unwrap_or_default(), detail)
            .await
            .map_err(ledger_problem)?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests;
