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
//! - a body is buffered only within the body budget ([`super::budget`]): its declared
//!   length is granted before the first byte is read, a streamed body's frames as they
//!   come; a request that finds the budget exhausted gets 503 `busy` with `Retry-After`,
//!   its body unread, and the grant is held until the request's handler returns (the
//!   parsed JSON lives that long);
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

use super::budget::{Exhausted, Grant};
use super::{Api, Problem, Resp};
use crate::core::identity::Identity;

/// Seconds a client is asked to wait when the body budget is exhausted: bodies are read
/// within `body_read_timeout_ms` and handled in milliseconds, so room comes back fast.
const BUSY_RETRY_AFTER_S: u32 = 1;

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
        // Every refusal below leaves the body unread, kept until the answer is sent: dropped
        // first, HTTP/2 resets the stream and the client sees a framing error, not the
        // answer (whatever the refusal: 415, 413 by declared or by counted length, 503, 408).
        let unread = req.extensions().get::<UnreadBody>().cloned();
        let refused = |problem: Problem, body: Incoming| {
            if let Some(unread) = &unread {
                unread.keep(body);
            }
            problem
        };
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
            let problem = Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("send application/json, not `{content_type}`"),
            );
            return Err(refused(problem, req.into_body()));
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
            let mut body = req.into_body();
            drain_oversized(&mut body, declared, self.limits.body_read_timeout).await;
            return Err(refused(too_large(), body));
        }
        let scope = req
            .extensions()
            .get::<BodyScope>()
            .cloned()
            .unwrap_or_default();
        let mut grant = self.body_budget.grant(scope.identity.clone());
        let mut body = req.into_body();
        if let Some(declared) = declared {
            // Within `limit` (checked above), so it fits a usize.
            if let Err(e) = grant.grow(declared as usize) {
                return Err(refused(busy(e), body));
            }
        }
        let timeout = self.limits.body_read_timeout;
        let read = tokio::time::timeout(timeout, read_up_to(&mut body, limit, &mut grant)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(ReadError::TooLarge)) => {
                drain_oversized(&mut body, declared, timeout).await;
                return Err(refused(too_large(), body));
            }
            Ok(Err(ReadError::Busy(e))) => return Err(refused(busy(e), body)),
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
        let parsed = crate::core::json::parse_strict(&bytes).map_err(|e| {
            Problem::bad_request(format!(
                "the body is not valid JSON: {}",
                crate::core::json::describe_error(&e)
            ))
        });
        // The parsed value lives on in the handler: the bytes stay granted until it returns.
        scope.keep(grant);
        parsed
    }
}

/// 503 `busy`: the body budget is exhausted; nothing was read.
fn busy(why: Exhausted) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "Busy",
        format!("{why}; nothing was read or accepted, retry later"),
    )
    .retry_after(BUSY_RETRY_AFTER_S)
}

/// What a request's body reading needs from its connection and keeps for its handler: the
/// caller's identity (whose share of the budget the body takes) and the grants taken, held
/// until the request's handler returns. Put into the request's extensions by `Api::handle`.
#[derive(Debug, Clone, Default)]
pub(super) struct BodyScope {
    identity: Option<Identity>,
    grants: Arc<Mutex<Vec<Grant>>>,
}

impl BodyScope {
    /// The scope of a request from `identity`.
    pub(super) fn new(identity: Option<Identity>) -> BodyScope {
        BodyScope {
            identity,
            grants: Arc::default(),
        }
    }

    fn keep(&self, grant: Grant) {
        self.grants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(grant);
    }
}

/// Why a body could not be read whole.
enum ReadError {
    /// More than the limit.
    TooLarge,
    /// The body budget has no room for the next frame.
    Busy(Exhausted),
    /// The connection failed or the client reset the stream.
    Transport(hyper::Error),
}

/// Reads `body` whole, stopping as soon as it exceeds `limit` bytes (the rest stays unread)
/// or `grant` cannot grow to hold the next frame.
async fn read_up_to(
    body: &mut Incoming,
    limit: usize,
    grant: &mut Grant,
) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Transport)?;
        if let Ok(data) = frame.into_data() {
            let len = bytes.len() + data.len();
            if len > limit {
                return Err(ReadError::TooLarge);
            }
            // Invariant: every byte kept is granted first (a declared length was granted
            // whole before reading; a streamed body grows frame by frame).
            if len > grant.bytes() {
                grant.grow(len - grant.bytes()).map_err(ReadError::Busy)?;
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// Most bytes of an oversized body (its declared `Content-Length`) the node reads and throws
/// away before answering 413.
///
/// Why read any: answering before the client has finished sending is allowed (HTTP/2 then
/// ends the stream with RST_STREAM NO_ERROR, RFC 9113 §8.1, which h2 does), but common
/// clients (curl before 8, some SDKs) report that reset as a stream error and never show
/// the 413. Reading the rest of a moderately oversized body, without keeping it, lets the
/// client finish its upload and see the answer; a body far beyond it is answered at once.
/// Bounded in bytes (here) and in time (`limits.body_read_timeout_ms`), and nothing read
/// is kept, so it costs bandwidth, never memory.
pub const DRAIN_BYTES_MAX: u64 = 8 << 20;

/// Reads and discards what is left of an oversized body whose declared length is within
/// [`DRAIN_BYTES_MAX`], for at most `timeout`. A body without a declared length is answered
/// at once: nothing says when it would end (a streaming client may keep it open).
async fn drain_oversized(body: &mut Incoming, declared: Option<u64>, timeout: std::time::Duration) {
    if declared.is_none_or(|n| n > DRAIN_BYTES_MAX) {
        return;
    }
    let drain = async {
        let mut seen: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DRAIN_BYTES_MAX {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
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

/// A response body that keeps `G` alive until the body is sent whole or dropped. Two things
/// must outlive an answer: the request body left unread (dropped before the answer, it
/// makes HTTP/2 reset the stream, and the client sees no 413), and a connection's
/// open-request guard (so a long answer counts as activity; `admission::InFlight`).
#[derive(Debug)]
pub struct Holding<B, G> {
    body: B,
    _held: G,
}

impl<B, G> Holding<B, G> {
    /// `body`, keeping `held` until it ends.
    pub fn new(body: B, held: G) -> Holding<B, G> {
        Holding { body, _held: held }
    }
}

impl<B, G> Body for Holding<B, G>
where
    B: Body<Data = Bytes, Error = Infallible> + Unpin,
    G: Unpin,
{
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

/// The body of every answer: the bytes, and the request body left unread, which is
/// dropped only with the answer (see the module's invariants).
pub type Answer = Holding<Full<Bytes>, Option<Incoming>>;

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
