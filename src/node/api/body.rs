//! Bodies in and out: a request's JSON body read with its limits, and JSON answers.
//!
//! Invariants, in the order a body is checked:
//! - the content type is `application/json` or `…+json` (else 415);
//! - a declared `Content-Length` over the limit is refused before a byte is read, and
//!   reading stops at the limit (413): a body is never buffered beyond it;
//! - the whole body arrives within `limits.body_read_timeout` (else 408), so a client
//!   trickling a body cannot hold a request, and its connection, open;
//! - a body refused unread (413, 408) is kept, unread, until the answer is sent
//!   ([`UnreadBody`], [`Answer`]): over HTTP/2, a half-open stream that loses its last
//!   handle is reset with CANCEL, and a client then sees only a stream error; kept, the
//!   answer goes out whole first and the stream is then reset with NO_ERROR, which clients
//!   accept as "the server answered early" (RFC 9113 §8.1).
//! - the JSON is parsed strictly: a duplicate key is a 400, never silently the last one.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
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
        let unread = req.extensions().get::<UnreadBody>().cloned();
        let mut body = req.into_body();
        let timeout = self.limits.body_read_timeout;
        let read = tokio::time::timeout(timeout, read_up_to(&mut body, limit)).await;
        let refused = |problem: Problem, body: Incoming| {
            if let Some(unread) = &unread {
                unread.keep(body);
            }
            problem
        };
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(ReadError::TooLarge)) => return Err(refused(too_large(), body)),
            Ok(Err(ReadError::Transport(e))) => {
                return Err(Problem::bad_request(format!(
                    "could not read the body: {e}"
                )))
            }
            Err(_) => {
                let problem = Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-timeout",
                    "Request body too slow",
                    format!(
                        "the whole body must arrive within {} ms",
                        timeout.as_millis()
                    ),
                );
                return Err(refused(problem, body));
            }
        };
        crate::core::json::parse_strict(&bytes).map_err(|e| {
            Problem::bad_request(format!(
                "the body is not valid JSON: {}",
                crate::core::json::describe_error(&e)
            ))
        })
    }
}

/// Why a body could not be read whole.
enum ReadError {
    /// More than the limit.
    TooLarge,
    /// The connection failed or the client reset the stream.
    Transport(hyper::Error),
}

/// Reads `body` whole, stopping as soon as it exceeds `limit` bytes (the rest stays unread).
async fn read_up_to(body: &mut Incoming, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Transport)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// Where a handler leaves a request body it refused unread, for [`Api::handle`] to keep
/// until the answer is sent. Put into the request's extensions by `handle`.
#[derive(Debug, Clone, Default)]
pub(super) struct UnreadBody(Arc<Mutex<Option<Incoming>>>);

impl UnreadBody {
    fn keep(&self, body: Incoming) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
    }

    /// The body left here, if any.
    pub(super) fn take(&self) -> Option<Incoming> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The body of every answer: the bytes, and the request body left unread, which is
/// dropped only with the answer (see the module's invariants).
#[derive(Debug)]
pub struct Answer {
    body: Full<Bytes>,
    _unread: Option<Incoming>,
}

impl Answer {
    pub(super) fn new(body: Full<Bytes>, unread: Option<Incoming>) -> Answer {
        Answer {
            body,
            _unread: unread,
        }
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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
