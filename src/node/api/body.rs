//! Bodies in and out: a request's JSON body read with its limits, and JSON answers.
//!
//! Invariants, in the order a body is checked:
//! - the content type is `application/json` or `…+json` (else 415);
//! - a declared `Content-Length` over the limit is refused before a byte is read, and
//!   reading stops at the limit (413): a body is never buffered beyond it;
//! - the JSON is parsed strictly: a duplicate key is a 400, never silently the last one.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::{Api, Problem, Resp};

impl Api {
    /// Reads a JSON body: content type checked (415), size bounded (413), duplicate keys
    /// refused (400).
    pub(super) async fn read_json(&self, req: Request<Incoming>) -> Result<Value, Problem> {
        self.read_json_up_to(req, self.limits.body_bytes_max).await
    }

    /// [`Self::read_json`] with another size limit (node-to-node batches are larger).
    pub(super) async fn read_json_up_to(
        &self,
        req: Request<Incoming>,
        limit: usize,
    ) -> Result<Value, Problem> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("send application/json, not `{content_type}`"),
            ));
        }
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body limit is {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let bytes = Limited::new(req.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    Problem::bad_request(format!("could not read the body: {e}"))
                }
            })?
            .to_bytes();
        crate::core::json::parse_strict(&bytes).map_err(|e| {
            Problem::bad_request(format!(
                "the body is not valid JSON: {}",
                crate::core::json::describe_error(&e)
            ))
        })
    }
}

/// A JSON answer with `status`.
pub(super) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Resp {
    raw_json(status, &serde_json::to_string(body).unwrap_or_default())
}

/// `body`, already JSON, as an answer with `status`.
pub(super) fn raw_json(status: StatusCode, body: &str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
