//! Statistics: `GET /v1/stats` for the center's managers and privacy officers (behind the
//! staff gate, `Api::staff_endpoint`), and `GET /federation/v1/stats`, each node's signed
//! answer for its own center to another node that merges the federation's.
//!
//! The numbers come from the ledger's [`StatsBook`](crate::node::ledger::StatsBook),
//! folded on the blocking pool; suppression (`core::stats::suppress`) applies to what is
//! shown, after merging. Another node's answer is believed only as its center's signature
//! on it states it (`core::stats::signed`); a center that does not answer in time, or
//! answers what does not verify, is listed with why, and the rest is shown.
//!
//! In the federation's numbers each message is counted once, by the node of the agency
//! that sent it: a node answers another only for the messages its own agencies sent, and
//! the merging node takes its own part the same way.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use time::{Date, Month};

use super::body::json_response;
use super::problem::Problem;
use super::{Api, Resp};
use crate::core::identity::{AgencyId, CenterId, Identity};
use crate::core::stats::report::{Context, Report};
use crate::core::stats::signed::{Signed, Statement};
use crate::core::stats::{day_text, seoul_day, By};
use crate::node::client::{self, Connection, HttpVersion};

/// How long the merging node waits for each other node (asked all at once).
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read from another node. A year of a busy center's times, unsuppressed,
/// is megabytes (6.9 MB for 1,000,000 messages over 40 pairs, `plusgate-stats-bench`), and
/// grows with the distinct times kept, so the client's default bound (16 MiB) is too tight.
const PEER_ANSWER_BYTES_MAX: usize = 128 << 20;

/// Which numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Center,
    Federation,
}

/// A statistics question, as the query string asks it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Question {
    from: Date,
    to: Date,
    by: By,
    scope: Scope,
    csv: bool,
}

/// The default range: from the first day of the month eleven months before `to`.
fn default_from(to: Date) -> Date {
    let months = i32::from(u8::from(to.month())) - 1 + to.year() * 12 - 11;
    let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
    Month::try_from(month as u8)
        .ok()
        .and_then(|m| Date::from_calendar_date(year, m, 1).ok())
        .unwrap_or(to)
}

impl Question {
    /// Parses `from`, `to`, `by`, `scope` and `format` (each at most once; nothing else).
    fn parse(
        query: Option<&str>,
        today: Date,
        federation_allowed: bool,
    ) -> Result<Question, Problem> {
        let mut seen = std::collections::BTreeMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.into_owned();
            let known = ["from", "to", "by", "scope", "format"];
            let Some(k) = known.iter().find(|n| **n == k.as_ref()) else {
                return Err(Problem::bad_request(format!(
                    "unknown parameter `{}`: the statistics take from, to, by, scope and format",
                    shorten(&k)
                )));
            };
            if seen.insert(*k, v).is_some() {
                return Err(Problem::bad_request(format!("`{k}` is given twice")));
            }
        }
        let day = |name: &str| -> Result<Option<Date>, Problem> {
            seen.get(name)
                .map(|v| {
                    day_text::parse(v).ok_or_else(|| {
                        Problem::bad_request(format!(
                            "`{name}` must be a day, YYYY-MM-DD (Asia/Seoul), not `{}`",
                            shorten(v)
                        ))
                    })
                })
                .transpose()
        };
        let to = day("to")?.unwrap_or(today);
        let from = day("from")?.unwrap_or_else(|| default_from(to));
        let by = match seen.get("by") {
            None => By::Month,
            Some(v) => By::parse(v).ok_or_else(|| {
                Problem::bad_request(format!(
                    "`by` must be month, week or day, not `{}`",
                    shorten(v)
                ))
            })?,
        };
        let scope = match seen.get("scope").map(String::as_str) {
            None | Some("center") => Scope::Center,
            Some("federation") if federation_allowed => Scope::Federation,
            Some(v) => {
                return Err(Problem::bad_request(format!(
                    "`scope` must be center{}, not `{}`",
                    if federation_allowed {
                        " or federation"
                    } else {
                        ""
                    },
                    shorten(v)
                )))
            }
        };
        let csv = match seen.get("format").map(String::as_str) {
            None | Some("json") => false,
            Some("csv") => true,
            Some(v) => {
                return Err(Problem::bad_request(format!(
                    "`format` must be json or csv, not `{}`",
                    shorten(v)
                )))
            }
        };
        crate::core::stats::periods(from, to, by)
            .map_err(|e| Problem::bad_request(e.to_string()))?;
        Ok(Question {
            from,
            to,
            by,
            scope,
            csv,
        })
    }
}

/// At most 40 characters of a value from the query, for an error message.
fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

fn center_of(agency: &str) -> Option<CenterId> {
    AgencyId::parse(agency).ok().map(|a| a.center().clone())
}

impl Api {
    /// `GET /v1/stats`, for a manager or officer already admitted.
    pub(super) async fn stats(&self, req: &Request<Incoming>) -> Result<Resp, Problem> {
        let clock = self.ledger.clock().clone();
        let today = seoul_day(clock.now());
        let mut q = Question::parse(req.uri().query(), today, true)?;
        q.csv |= req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"));
        let book = self.ledger.stats().clone();
        let own = self.center.clone();
        let scope = q.scope;
        let (from, to, by) = (q.from, q.to, q.by);
        let (periods, mut raw) = tokio::task::spawn_blocking(move || {
            book.fold(from, to, by, |f, _| {
                // The center's view: everything this node took (its agencies sent or
                // received). The federation's: what its agencies sent; the others' nodes
                // answer for theirs.
                scope == Scope::Center || center_of(f).as_ref() == Some(&own)
            })
        })
        .await
        .map_err(|e| Problem::internal("report-failed", &e))?
        .map_err(|e| Problem::bad_request(e.to_string()))?;
        let mut centers = vec![json!({
            "center": self.center,
            "answered_at": clock.now_rfc3339(),
            "counted_since": self.ledger.stats().since(),
        })];
        if scope == Scope::Federation {
            for (center, answer) in self.ask_peers(&q, periods.len()).await {
                match answer {
                    Ok(s) => {
                        centers.push(json!({
                            "center": center,
                            "answered_at": s.answered_at,
                            "counted_since": s.counted_since,
                        }));
                        raw.merge(s.raw);
                    }
                    Err(why) => {
                        tracing::warn!(center = %center, error = %why, "no statistics from a center");
                        centers.push(json!({"center": center, "error": why}));
                    }
                }
            }
        }
        let ctx = Context {
            scope: match scope {
                Scope::Center => "center",
                Scope::Federation => "federation",
            },
            center: self.center.to_string(),
            from: day_text::format(q.from),
            to: day_text::format(q.to),
            by: q.by,
            generated_at: clock.now_rfc3339(),
            centers,
        };
        let csv = q.csv;
        let report = tokio::task::spawn_blocking(move || Report::new(&ctx, &periods, &raw))
            .await
            .map_err(|e| Problem::internal("report-failed", &e))?;
        Ok(if csv {
            super::privacy::csv_response("stats", report.to_csv())
        } else {
            json_response(StatusCode::OK, report.to_json())
        })
    }

    /// `GET /federation/v1/stats`: this node's numbers of what its agencies sent, signed.
    pub(super) async fn federation_stats(
        &self,
        req: &Request<Incoming>,
        node: &CenterId,
    ) -> Result<Resp, Problem> {
        let Some(key) = self.signing_key.clone() else {
            return Err(Problem::forbidden(
                "not-federated",
                "this node is not part of a federation",
            ));
        };
        let clock = self.ledger.clock().clone();
        let q = Question::parse(req.uri().query(), seoul_day(clock.now()), false)?;
        let book = self.ledger.stats().clone();
        let own = self.center.clone();
        let (from, to, by) = (q.from, q.to, q.by);
        let keep = own.clone();
        let (_, raw) = tokio::task::spawn_blocking(move || {
            book.fold(from, to, by, |f, _| center_of(f).as_ref() == Some(&keep))
        })
        .await
        .map_err(|e| Problem::internal("report-failed", &e))?
        .map_err(|e| Problem::bad_request(e.to_string()))?;
        let statement = Statement {
            center: own,
            from: day_text::format(from),
            to: day_text::format(to),
            by,
            answered_at: clock.now_rfc3339(),
            counted_since: self.ledger.stats().since().to_owned(),
            raw,
        };
        tracing::info!(peer = %node, from = %statement.from, to = %statement.to, "answered a statistics question");
        Ok(json_response(
            StatusCode::OK,
            &Signed::sign(&key, &statement),
        ))
    }

    /// Every other center's signed numbers for `q`, asked at once, each within
    /// [`PEER_TIMEOUT`]: by center, the statement or why there is none.
    async fn ask_peers(
        &self,
        q: &Question,
        periods: usize,
    ) -> Vec<(CenterId, Result<Statement, String>)> {
        let Some(tls) = self.federation_tls.as_ref().map(|t| t.borrow().clone()) else {
            return Vec::new();
        };
        let routing = self.routing();
        let path = format!(
            "/federation/v1/stats?from={}&to={}&by={}",
            day_text::format(q.from),
            day_text::format(q.to),
            q.by.as_str()
        );
        let asked = (day_text::format(q.from), day_text::format(q.to), q.by);
        let mut tasks = tokio::task::JoinSet::new();
        for center in routing.peers() {
            let Some(entry) = routing.peer(&center).cloned() else {
                continue;
            };
            let (tls, path, asked) = (tls.clone(), path.clone(), asked.clone());
            tasks.spawn(async move {
                let answer = tokio::time::timeout(PEER_TIMEOUT, async {
                    let target = client::parse_https_url(&entry.url).map_err(|e| e.to_string())?;
                    let mut conn = Connection::connect_url(&target, tls, HttpVersion::Http2)
                        .await
                        .map_err(|e| format!("unreachable: {e}"))?;
                    conn.set_body_max(PEER_ANSWER_BYTES_MAX);
                    conn.set_timeout(PEER_TIMEOUT);
                    match conn.server_identity() {
                        Ok(Identity::Node(c)) if *c == center => {}
                        _ => {
                            return Err(format!(
                                "the server at {} is not {center}'s node",
                                entry.url
                            ))
                        }
                    }
                    let resp = conn
                        .send(Method::GET, &path, None)
                        .await
                        .map_err(|e| format!("unreachable: {e}"))?;
                    if resp.status != StatusCode::OK {
                        return Err(format!("answered {}", resp.status));
                    }
                    let signed: Signed = resp.json().map_err(|e| e.to_string())?;
                    signed
                        .open(
                            &center,
                            &entry.signing_key,
                            (&asked.0, &asked.1, asked.2),
                            periods,
                        )
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", PEER_TIMEOUT.as_secs())));
                (center, answer)
            });
        }
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(r) = done {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_question_takes_days_grouping_scope_and_format_and_nothing_else() {
        let today = date!(2026 - 11 - 30);
        let q = Question::parse(None, today, true).expect("test value");
        assert_eq!(
            (q.from, q.to, q.by, q.scope, q.csv),
            (
                date!(2025 - 12 - 01),
                today,
                By::Month,
                Scope::Center,
                false
            )
        );
        let q = Question::parse(
            Some("from=2026-01-01&to=2026-01-31&by=day&scope=federation&format=csv"),
            today,
            true,
        )
        .expect("test value");
        assert_eq!((q.by, q.scope, q.csv), (By::Day, Scope::Federation, true));
        assert_eq!(default_from(date!(2026 - 01 - 15)), date!(2025 - 02 - 01));
        for bad in [
            "from=2026-13-01",
            "to=yesterday",
            "by=year",
            "scope=world",
            "format=xml",
            "from=2026-01-01&from=2026-01-02",
            "limit=3",
            "from=2026-02-01&to=2026-01-01",
            "from=2020-01-01&to=2026-01-01&by=day",
        ] {
            assert!(Question::parse(Some(bad), today, true).is_err(), "{bad}");
        }
        assert!(Question::parse(Some("scope=federation"), today, false).is_err());
    }
}
