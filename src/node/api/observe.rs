//! Which endpoint a request was, as the request metrics label it: the method, one of a
//! fixed few, and the route template (`/v1/messages/{id}`), one of a fixed list.
//!
//! Invariant: a label is never a raw path segment, so no id, subject or anything else a
//! client wrote becomes a metric label, and the number of series stays bounded whatever
//! clients send. A path outside the endpoint table is `other`.

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::Method;

/// The response header naming the request's id (as its log lines do).
pub(super) const REQUEST_ID: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-request-id");

/// A new request id: unique within this process's life, in order of arrival. Logs carry
/// it, and the answer's `X-Request-Id` header, so the lines of one request can be found
/// from what its caller saw.
pub(super) fn next_request_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The method and route template labels of a request to `path`.
pub(super) fn labels(method: &Method, path: &str) -> (&'static str, &'static str) {
    (method_label(method), route(path))
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The template of `path`: the route table's (`routes::ROUTES`, the one list of endpoints
/// the router, the OpenAPI document and these labels share), or `other`.
fn route(path: &str) -> &'static str {
    super::routes::template(path).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates_and_never_carry_ids() {
        let check = |path: &str, want: &str| assert_eq!(route(path), want, "{path}");
        check("/v1/messages", "/v1/messages");
        check("/v1/messages/ref-0001", "/v1/messages/{id}");
        check("/v1/inbox", "/v1/inbox");
        check("/v1/inbox/ack", "/v1/inbox/ack");
        check("/v1/consents/cns-1/withdraw", "/v1/consents/{id}/withdraw");
        check(
            "/v1/privacy/subjects/ps-0123456789abcdef/disclosures",
            "/v1/privacy/subjects/{subject}/disclosures",
        );
        check("/console/app.js", "/console/{file}");
        check("/console/", "/console/");
        check("/v1/schemas/common.v1.json", "/v1/schemas/{file}");
        check("/admin/v1/outbox/retry", "/admin/v1/outbox/{action}");
        check("/v1/messages/a/b", "other");
        check("/ps-0123456789abcdef", "other");
        check("/", "other");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").expect("method")),
            "other"
        );
    }
}
