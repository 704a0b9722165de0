//! The route table: every (method, path template) the node answers, each with the
//! `operationId` the OpenAPI document gives it.
//!
//! `Api::route` asks [`find`] before it dispatches, so the table, not the `match` after it,
//! decides what is a 404 and what a 405 (and the 405's `Allow`): an arm added to the `match`
//! without a row here is never reached, and a row without an arm is answered by the
//! `match`'s last arm as the node's own fault. The integration tests compare this table
//! with `docs/openapi.json` (`tests/node/openapi.rs`), so the document and the router cannot
//! drift apart silently.
//!
//! A template's `{name}` matches one path segment, as the router's `match` binds one (an
//! empty one too: `/v1/messages/` is `getMessage` with an empty id, answered by its handler);
//! everything else matches literally. The first row that matches wins, so `/console/` is
//! the page and `/console/{file}` the console's other files.

use hyper::Method;

use super::Problem;

/// One endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path template, as in the OpenAPI document's `paths`.
    pub path: &'static str,
    /// The OpenAPI `operationId`.
    pub operation_id: &'static str,
}

const fn route(method: &'static str, path: &'static str, operation_id: &'static str) -> Route {
    Route {
        method,
        path,
        operation_id,
    }
}

/// Every endpoint, in the order of the README's endpoint table.
pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", "healthz"),
    route("GET", "/readyz", "readyz"),
    route("GET", "/v1/openapi.json", "openapi"),
    route("GET", "/v1/schemas/{file}", "getSchema"),
    route("POST", "/v1/messages", "sendMessage"),
    route("GET", "/v1/messages/{id}", "getMessage"),
    route("GET", "/v1/inbox", "pullInbox"),
    route("POST", "/v1/inbox/ack", "ackInbox"),
    route("POST", "/v1/consents", "registerConsent"),
    route("GET", "/v1/consents/{id}", "getConsent"),
    route("POST", "/v1/consents/{id}/withdraw", "withdrawConsent"),
    route("POST", "/federation/v1/batches", "receiveBatch"),
    route("POST", "/federation/v1/resend", "resendSince"),
    route("GET", "/federation/v1/stats", "federationStats"),
    route("GET", "/admin/v1/outbox", "listOutbox"),
    route("POST", "/admin/v1/outbox/{action}", "outboxAction"),
    route("POST", "/admin/v1/backups", "takeBackup"),
    route("GET", "/admin/v1/backups/{id}", "readBackup"),
    route("POST", "/admin/v1/backups/{id}/release", "releaseBackup"),
    route(
        "GET",
        "/v1/privacy/subjects/{subject}/disclosures",
        "privacyDisclosures",
    ),
    route("GET", "/v1/privacy/consents", "privacyConsents"),
    route("GET", "/v1/privacy/refusals", "privacyRefusals"),
    route("GET", "/v1/privacy/withdrawals", "privacyWithdrawals"),
    route("GET", "/v1/privacy/audit", "privacyAudit"),
    route("GET", "/v1/stats", "getStats"),
    route("GET", "/console", "privacyConsoleRedirect"),
    route("GET", "/console/", "privacyConsole"),
    route("GET", "/console/{file}", "privacyConsoleFile"),
];

/// The route `method` `path` names, or the problem the node answers: 404 for a path no
/// template matches, 405 naming the allowed method for a known path with another method.
/// `shown` is the path as the 404's detail may name it (see `path_for_log`).
pub fn find(method: &Method, path: &str, shown: &str) -> Result<&'static Route, Problem> {
    let mut allowed = None;
    for route in ROUTES.iter().filter(|r| matches(r.path, path)) {
        if route.method == method.as_str() {
            return Ok(route);
        }
        allowed.get_or_insert(route.method);
    }
    match allowed {
        Some(allow) => Err(Problem::method_not_allowed(allow)),
        None => Err(Problem::not_found(format!("no endpoint {shown}"))),
    }
}

/// The answer for a request [`find`] admitted but no arm of the router handles: a row of
/// the table without its handler, the node's fault (500), never a client's.
pub fn unhandled(method: &Method, shown: &str) -> Problem {
    Problem::internal(
        "no-handler",
        &format!("the route table has {method} {shown} but the router has no arm for it"),
    )
}

/// Whether `path` is an instance of `template`.
/// The template of the first route whose path matches `path`, whatever its method (what
/// request metrics label a request with: never the path itself).
pub fn template(path: &str) -> Option<&'static str> {
    ROUTES
        .iter()
        .find(|r| matches(r.path, path))
        .map(|r| r.path)
}

fn matches(template: &str, path: &str) -> bool {
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(_)) if w.starts_with('{') && w.ends_with('}') => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, expected: Result<&str, u16>) {
        let got = find(&method, path, path)
            .map(|r| r.operation_id)
            .map_err(|p| p.status);
        assert_eq!(got, expected, "{method} {path}");
    }

    #[test]
    fn paths_find_their_route_or_the_right_refusal() {
        check(Method::GET, "/healthz", Ok("healthz"));
        check(Method::GET, "/healthz/", Err(404));
        check(Method::PUT, "/healthz", Err(405));
        check(Method::GET, "/v1/messages/m-1", Ok("getMessage"));
        check(Method::GET, "/v1/messages/", Ok("getMessage"));
        check(Method::GET, "/v1/messages", Err(405));
        check(
            Method::POST,
            "/v1/consents/c-1/withdraw",
            Ok("withdrawConsent"),
        );
        check(Method::GET, "/v1/inbox/ack/extra", Err(404));
        check(Method::GET, "/console", Ok("privacyConsoleRedirect"));
        check(Method::GET, "/console/", Ok("privacyConsole"));
        check(Method::GET, "/console/app.js", Ok("privacyConsoleFile"));
        check(Method::GET, "/v1/schemas/common.v1.json", Ok("getSchema"));
        check(Method::GET, "/", Err(404));
    }

    /// A 405 can name only one method (`Problem::allow` takes one): no path has two.
    #[test]
    fn every_template_has_one_method_and_every_operation_one_id() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert_ne!(a.path, b.path, "two methods on {}", a.path);
                assert_ne!(a.operation_id, b.operation_id);
            }
        }
    }
}
