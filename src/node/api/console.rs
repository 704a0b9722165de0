//! The privacy officer's web console at `/console/`: one HTML page, its script and its
//! style sheet, compiled into the binary (plain HTML, CSS and JavaScript, no build step, no
//! external resources). The page calls the `/v1/privacy/…` endpoints of the same node; the
//! browser presents the officer's client certificate for both.
//!
//! Architecture invariants:
//! - Only registered officer certificates get any of it (`api::route` checks before calling
//!   [`asset`]); agencies and nodes get a 403 problem, never the page.
//! - Every answer carries `Content-Security-Policy: default-src 'self'` (no inline script, no
//!   other origin), `Cache-Control: no-store`, `X-Content-Type-Options: nosniff` and
//!   refuses framing.
//! - The script puts data into the page only as text (`textContent`), never as markup.

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
const APP_CSS: &str = include_str!("console/app.css");
const FAVICON_SVG: &str = include_str!("console/favicon.svg");

/// The policy every console answer carries. `default-src 'self'` is the rule; the others
/// cover what `default-src` does not (framing, `<base>`, form targets).
pub const CONTENT_SECURITY_POLICY_VALUE: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console file at `rest` (the path segments after `console`): `[]` is `/console`,
/// redirected to `/console/`; `[""]` the page.
pub fn asset(rest: &[&str]) -> Resp {
    let (status, content_type, body) = match rest {
        [] => {
            let mut resp = with_headers(StatusCode::PERMANENT_REDIRECT, "text/plain", "");
            resp.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/console/"));
            return resp;
        }
        [""] | ["index.html"] => (StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        ["app.js"] => (StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        ["app.css"] => (StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        ["favicon.svg"] => (StatusCode::OK, "image/svg+xml", FAVICON_SVG),
        _ => {
            let mut resp = Problem::not_found("no such console file").into_response();
            secure(&mut resp);
            return resp;
        }
    };
    with_headers(status, content_type, body)
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
    use super::*;

    #[test]
    fn every_file_has_its_type_and_the_security_headers() {
        for (path, content_type) in [
            (vec![""], "text/html; charset=utf-8"),
            (vec!["app.js"], "text/javascript; charset=utf-8"),
            (vec!["app.css"], "text/css; charset=utf-8"),
            (vec!["favicon.svg"], "image/svg+xml"),
            (vec!["nope.js"], "application/problem+json"),
        ] {
            let resp = asset(&path);
            let h = resp.headers();
            assert_eq!(h[CONTENT_TYPE], content_type, "{path:?}");
            assert_eq!(h[CACHE_CONTROL], "no-store");
            assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(h[CONTENT_SECURITY_POLICY]
                .to_str()
                .is_ok_and(|v| v.starts_with("default-src 'self'")));
        }
        let redirect = asset(&[]);
        assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(redirect.headers()[LOCATION], "/console/");
    }

    /// The page loads nothing from elsewhere and holds no inline script or style (the
    /// policy would block them anyway), and the script never writes markup.
    #[test]
    fn the_assets_stay_within_the_policy() {
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("style=\""));
        }
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(INDEX_HTML.contains("<script src=\"app.js\" defer></script>"));
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(forbidden), "app.js uses {forbidden}");
        }
    }
}
