//! Cross-site requests to the officer endpoints: refused.
//!
//! A privacy officer's browser holds the officer's client certificate and presents it to
//! the node for any page that asks, including a request another site's page makes (a form
//! posted from elsewhere, an `<img>`, a `fetch`). The certificate alone would then let that
//! site read or trigger officer queries, each an audited look at a person's record. So an
//! officer request is admitted only when the browser says it came from the node's own
//! pages, or when it is not a browser's at all:
//! - `Sec-Fetch-Site` (Fetch Metadata), when present, must be `same-origin` or `none` (the
//!   officer typed the address or opened a bookmark); `same-site` is refused too, since
//!   another host of the same site is another program;
//! - `Origin`, when present, must be this node's own origin: `https://` and the authority
//!   the request was addressed to (`:authority` or `Host`), the default port 443 implied.
//!
//! Requests with neither header (the `plusgate privacy` commands, scripts, `curl`) are
//! admitted: they are not made by a browser on another site's behalf.
//!
//! Pure apart from reading the request head; `api::route` calls [`check`] for every
//! officer endpoint, where the officer role is checked.

use hyper::header::{HeaderMap, HOST, ORIGIN};
use hyper::Uri;

/// The Fetch Metadata request header naming the initiator's relation to the target.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Why a request was taken for a cross-site one. The caller's browser (or a page it
/// loaded from elsewhere) is at fault; the same request from the node's own console, or
/// from a non-browser client, is admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    /// `Sec-Fetch-Site` says the request did not come from this node's own pages.
    #[error(
        "the browser marked this request Sec-Fetch-Site: {0}; officer endpoints answer only \
         this node's own pages (same-origin) or an address typed by the officer (none)"
    )]
    FetchSite(String),
    /// `Origin` names another origin than this node's.
    #[error(
        "the request comes from origin {origin}, not from this node ({own}); officer \
         endpoints answer only this node's own pages"
    )]
    Origin {
        /// The `Origin` the browser sent (cut to a bounded length).
        origin: String,
        /// This node's origin as the request addressed it.
        own: String,
    },
}

/// Longest header value quoted back in a refusal.
const QUOTED_LEN_MAX: usize = 100;

/// Admits a request that is same-origin, typed by the user, or not from a browser.
pub fn check(headers: &HeaderMap, uri: &Uri) -> Result<(), CrossSite> {
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        let site = site.to_str().unwrap_or("(not ASCII)");
        if !matches!(site, "same-origin" | "none") {
            return Err(CrossSite::FetchSite(quoted(site)));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not ASCII)");
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()));
        let own = authority.map(|a| format!("https://{a}"));
        let same = own
            .as_deref()
            .is_some_and(|own| normalised(origin) == normalised(own));
        if !same {
            return Err(CrossSite::Origin {
                origin: quoted(origin),
                own: own.map_or_else(|| "unknown: no Host".to_owned(), |o| quoted(&o)),
            });
        }
    }
    Ok(())
}

/// An origin compared without case and with the default port of `https` left out.
fn normalised(origin: &str) -> String {
    let lower = origin.to_ascii_lowercase();
    match lower.strip_suffix(":443") {
        Some(without) if without.starts_with("https://") => without.to_owned(),
        _ => lower,
    }
}

fn quoted(value: &str) -> String {
    value.chars().take(QUOTED_LEN_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    /// `check` on a request addressed to `https://node.test:7443` (through `Host`) with
    /// `headers`.
    #[track_caller]
    fn check_headers(headers: &[(&'static str, &str)], admitted: bool) {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_static("node.test:7443"));
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        let uri: Uri = "/v1/privacy/consents".parse().expect("uri");
        assert_eq!(check(&map, &uri).is_ok(), admitted, "{headers:?}");
    }

    #[test]
    fn same_origin_typed_and_non_browser_requests_are_admitted() {
        check_headers(&[], true);
        check_headers(&[("sec-fetch-site", "same-origin")], true);
        check_headers(&[("sec-fetch-site", "none")], true);
        check_headers(&[("origin", "https://node.test:7443")], true);
        check_headers(&[("origin", "HTTPS://Node.Test:7443")], true);
        check_headers(
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://node.test:7443"),
            ],
            true,
        );
    }

    #[test]
    fn cross_site_and_same_site_requests_are_refused() {
        check_headers(&[("sec-fetch-site", "cross-site")], false);
        check_headers(&[("sec-fetch-site", "same-site")], false);
        check_headers(&[("sec-fetch-site", "something-new")], false);
        check_headers(&[("origin", "https://evil.example")], false);
        check_headers(&[("origin", "https://node.test")], false); // another port
        check_headers(&[("origin", "http://node.test:7443")], false); // another scheme
        check_headers(&[("origin", "https://node.test:7443.evil.example")], false);
        check_headers(&[("origin", "null")], false);
        check_headers(
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://evil.example"),
            ],
            false,
        );
    }

    #[test]
    fn the_default_port_is_implied_and_the_authority_of_http2_counts() {
        let mut map = HeaderMap::new();
        map.insert(ORIGIN, HeaderValue::from_static("https://node.test"));
        let uri: Uri = "https://node.test:443/console/".parse().expect("uri");
        assert_eq!(check(&map, &uri), Ok(()));
        let uri: Uri = "https://other.test/console/".parse().expect("uri");
        assert!(check(&map, &uri).is_err());
        // An Origin with no Host to compare it with cannot be shown to be this node's.
        assert!(check(&map, &"/console/".parse().expect("uri")).is_err());
    }
}
