//! The privacy officer's web console at `/console/`: one HTML page, its scripts (`app.js`,
//! and `stats.js` for the statistics view), its style sheet and its label catalogue
//! (`labels.json`, Korean and English), compiled into the binary (plain HTML, CSS and
//! JavaScript, no build step, no external resources). The page calls the `/v1/privacy/…`
//! and `/v1/stats` endpoints of the same node; the browser presents the officer's client
//! certificate for both. Times are shown in Korea Standard Time (+09:00, stated on
//! the page) and date filters are Asia/Seoul days, as the reports take them.
//!
//! Architecture invariants:
//! - Only registered officer and manager certificates get any of it (the staff gate runs
//!   before [`asset`]); agencies and nodes get a 403 problem, never the page. A manager's
//!   page shows the statistics view only (it learns the role from the node's 403
//!   `wrong-role` to a manager on the audit status).
//! - Every answer carries `Content-Security-Policy: default-src 'self'` (no inline script, no
//!   other origin), `Cache-Control: no-store`, `X-Content-Type-Options: nosniff` and
//!   refuses framing.
//! - The scripts put data into the page only as text (`textContent`), never as markup, and
//!   set no style (the statistics' SVG charts take their colours from `app.css` classes).
//! - The label catalogue has a Korean and an English label for every status, problem type
//!   (refusal reasons included), role, message type and verification start the node can
//!   emit, taken from the Rust lists of them (a unit test), so no value shows untranslated.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Response, StatusCode};

use super::{Problem, Resp};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STATS_JS: &str = include_str!("console/stats.js");
const APP_CSS: &str = include_str!("console/app.css");
const FAVICON_SVG: &str = include_str!("console/favicon.svg");
const LABELS_JSON: &str = include_str!("console/labels.json");

/// The policy every console answer carries. `default-src 'self'` is the rule; the others
/// cover what `default-src` does not (framing, `<base>`, form targets).
pub const CONTENT_SECURITY_POLICY_VALUE: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console file at `rest` (the path segments after `console`): `[]` is `/console`,
/// redirected to `/console/`; `[""]` the page. `role` is the role the staff gate admitted
/// (`officer` or `manager`), sent as `Plusgate-Role` for the page to show its views by.
pub fn asset(rest: &[&str], role: &'static str) -> Resp {
    let (status, content_type, body) = match rest {
        [] => {
            let mut resp = with_headers(StatusCode::PERMANENT_REDIRECT, "text/plain", "");
            resp.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/console/"));
            return resp;
        }
        [""] | ["index.html"] => (StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        ["app.js"] => (StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        ["stats.js"] => (StatusCode::OK, "text/javascript; charset=utf-8", STATS_JS),
        ["app.css"] => (StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        ["favicon.svg"] => (StatusCode::OK, "image/svg+xml", FAVICON_SVG),
        ["labels.json"] => (
            StatusCode::OK,
            "application/json; charset=utf-8",
            LABELS_JSON,
        ),
        _ => {
            let mut resp = Problem::not_found("no such console file").into_response();
            secure(&mut resp);
            return resp;
        }
    };
    let mut resp = with_headers(status, content_type, body);
    // The role the gate admitted (`officer` or `manager`): the page shows its views by it.
    resp.headers_mut()
        .insert("plusgate-role", HeaderValue::from_static(role));
    resp
}

fn with_headers(status: StatusCode, content_type: &'static str, body: &'static str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(&mut resp);
    resp
}

fn secure(resp: &mut Resp) {
    let headers: [(HeaderName, &'static str); 5] = [
        (CACHE_CONTROL, "no-store"),
        (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in headers {
        resp.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_file_has_its_type_and_the_security_headers() {
        for (path, content_type) in [
            (vec![""], "text/html; charset=utf-8"),
            (vec!["app.js"], "text/javascript; charset=utf-8"),
            (vec!["stats.js"], "text/javascript; charset=utf-8"),
            (vec!["app.css"], "text/css; charset=utf-8"),
            (vec!["favicon.svg"], "image/svg+xml"),
            (vec!["labels.json"], "application/json; charset=utf-8"),
            (vec!["nope.js"], "application/problem+json"),
        ] {
            let resp = asset(&path, "officer");
            let h = resp.headers();
            assert_eq!(h[CONTENT_TYPE], content_type, "{path:?}");
            assert_eq!(h[CACHE_CONTROL], "no-store");
            assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(h[CONTENT_SECURITY_POLICY]
                .to_str()
                .is_ok_and(|v| v.starts_with("default-src 'self'")));
        }
        let redirect = asset(&[], "officer");
        assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(redirect.headers()[LOCATION], "/console/");
    }

    /// The page loads nothing from elsewhere and holds no inline script or style (the
    /// policy would block them anyway), and the scripts never write markup nor set a style
    /// (the charts take their colours from classes of `app.css`). The one URL allowed is
    /// the SVG namespace, which names elements and is never fetched.
    #[test]
    fn the_assets_stay_within_the_policy() {
        let stats_js = STATS_JS.replace("'http://www.w3.org/2000/svg'", "");
        for text in [INDEX_HTML, APP_JS, APP_CSS, &stats_js] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("style=\""));
        }
        assert_eq!(INDEX_HTML.matches("<script").count(), 2);
        assert!(INDEX_HTML.contains(
            "<script src=\"app.js\" defer></script>\n<script src=\"stats.js\" defer></script>"
        ));
        for (name, script) in [("app.js", APP_JS), ("stats.js", STATS_JS)] {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                ".style",
                "'style'",
            ] {
                assert!(!script.contains(forbidden), "{name} uses {forbidden}");
            }
        }
    }

    /// The label keys `text` uses: `data-i18n="…"` and `data-i18n-aria-label="…"`
    /// attributes, `t('…')` and `label('…', '…')` calls, and `'group.key'` literals (the
    /// column and audit-row keys).
    fn keys_used(text: &str) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let mut after = |open: &str, close: char| {
            for (at, _) in text.match_indices(open) {
                // A call of `t`, not of `split` or `get`.
                let before = text[..at].chars().next_back().unwrap_or(' ');
                if before.is_ascii_alphanumeric() || before == '_' || before == '.' {
                    continue;
                }
                let rest = &text[at + open.len()..];
                if let Some(end) = rest.find(close) {
                    keys.insert(rest[..end].to_owned());
                }
            }
        };
        after("data-i18n=\"", '"');
        after("data-i18n-aria-label=\"", '"');
        after("t('", '\'');
        for (at, _) in text.match_indices("label('") {
            // `label('tag', 'key')`; a key in a variable is some other literal's business.
            let parts: Vec<&str> = text[at..].splitn(5, '\'').collect();
            if let [_, _, ", ", key, _] = parts.as_slice() {
                keys.insert((*key).to_owned());
            }
        }
        // Every stretch between two quotes: apostrophes in comments pair up wrongly, but
        // what they enclose is prose, which the pattern below never matches.
        let pieces: Vec<&str> = text.split('\'').collect();
        for literal in pieces.iter().skip(1) {
            let dotted = literal.split_once('.').is_some_and(|(group, key)| {
                !group.is_empty()
                    && !key.is_empty()
                    && !key.contains('.')
                    && key != "json"
                    && (group.chars().chain(key.chars()))
                        .all(|c| c.is_ascii_lowercase() || c == '_')
            });
            if dotted {
                keys.insert((*literal).to_owned());
            }
        }
        keys
    }

    /// Every value the node can emit into a view (consent statuses, problem types and
    /// refusal reasons, roles, message types, where a chain check started, audit actions,
    /// the statistics' outcome columns, acceptance bands and pair directions) has a Korean
    /// and an English label, and so has every label key the page and the scripts use. The
    /// lists come from the Rust types that define the values, not from a copy.
    #[test]
    fn the_label_catalogue_covers_every_value_the_node_can_emit() {
        use crate::core::audit::Action;
        use crate::core::consent::ConsentStatus;
        use crate::core::identity::Identity;
        use crate::core::message::MessageType;
        use crate::core::stats;
        use crate::node::store::reports::VerifiedFrom;

        let catalogue: serde_json::Value =
            serde_json::from_str(LABELS_JSON).expect("labels.json is JSON");
        let language = |code: &str| -> BTreeSet<String> {
            let labels = catalogue[code].as_object().expect("a language's labels");
            for (key, label) in labels {
                assert!(
                    label.as_str().is_some_and(|l| !l.trim().is_empty()),
                    "{code}: {key} has no label"
                );
            }
            labels.keys().cloned().collect()
        };
        let (ko, en) = (language("ko"), language("en"));
        assert_eq!(ko, en, "Korean and English label the same keys");
        // JSON lets a key repeat (the last wins), as a merge of two branches can leave it.
        let label_lines = LABELS_JSON
            .lines()
            .filter(|l| l.starts_with("    \""))
            .count();
        assert_eq!(label_lines, ko.len() + en.len(), "a label key is repeated");
        assert_eq!(catalogue.as_object().map(|o| o.len()), Some(2));

        let mut needed: BTreeSet<String> = BTreeSet::new();
        needed.extend(ConsentStatus::ALL.map(|s| format!("status.{s}")));
        needed.extend(super::super::problem::all_types().map(|p| format!("problem.{p}")));
        needed.extend(crate::core::consent::Refusal::KINDS.map(|k| format!("problem.{k}")));
        needed.extend(MessageType::ALL.map(|t| format!("type.{t}")));
        needed.extend(Identity::ROLES.map(|r| format!("role.{r}")));
        needed.extend(VerifiedFrom::ALL.map(|v| format!("verified_from.{}", v.as_str())));
        // The statistics: outcome columns, acceptance bands, and every direction a pair can
        // have (asked of the function that decides it).
        needed.extend(stats::OUTCOME_COLUMNS.map(|c| format!("outcome.{c}")));
        needed.extend(stats::ACCEPTANCE_BANDS.map(|(b, _)| format!("band.{b}")));
        let (here, there, third) = ("suwon/welfare", "jeonju/jobs", "gangseo/saeil");
        let directions: BTreeSet<&str> =
            [(here, here), (here, there), (there, here), (there, third)]
                .iter()
                .map(|(from, to)| stats::report::direction(from, to, "suwon"))
                .collect();
        assert_eq!(directions.len(), 4, "{directions:?}");
        needed.extend(directions.iter().map(|d| format!("direction.{d}")));
        needed.extend(Action::ALL.map(|a| {
            let name = serde_json::to_value(a).expect("an action has a name");
            format!("action.{}", name.as_str().expect("a string"))
        }));
        let emitted = needed.len();
        needed.extend(keys_used(INDEX_HTML));
        needed.extend(keys_used(APP_JS));
        needed.extend(keys_used(STATS_JS));
        assert!(
            needed.len() > emitted + 50,
            "the key scan found too few keys: {needed:?}"
        );
        let missing: Vec<&String> = needed.difference(&ko).collect();
        assert!(missing.is_empty(), "labels.json lacks {missing:?}");
    }
}
