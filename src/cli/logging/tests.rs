//! The log formats: what a request's log lines look like in JSON.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::*;

/// A writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'w self) -> Buffer {
        self.clone()
    }
}

#[test]
fn the_format_is_text_unless_json_is_asked_for() {
    assert_eq!(LogFormat::parse(None).expect("unset"), LogFormat::Text);
    assert_eq!(LogFormat::parse(Some("")).expect("empty"), LogFormat::Text);
    assert_eq!(
        LogFormat::parse(Some("text")).expect("text"),
        LogFormat::Text
    );
    assert_eq!(
        LogFormat::parse(Some("json")).expect("json"),
        LogFormat::Json
    );
    let err = LogFormat::parse(Some("xml"))
        .expect_err("unknown")
        .to_string();
    assert!(
        err.contains("PLUSGATE_LOG_FORMAT") && err.contains("xml"),
        "{err}"
    );
}

/// The node's request span and lines, as `Api::handle` writes them, come out as one JSON
/// object per line with the request id, route and message id.
#[test]
fn json_lines_carry_the_request_and_message_ids() {
    let buffer = Buffer::default();
    let subscriber = subscriber(LogFormat::Json, EnvFilter::new("debug"), buffer.clone());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "request",
            request_id = 42u64,
            route = "/v1/messages",
            message_id = tracing::field::Empty,
        );
        span.record("message_id", "ref-0001");
        span.in_scope(|| {
            tracing::debug!(method = "POST", status = 202u16, "request");
            tracing::error!(error = "disk on fire", "request failed");
        });
    });
    let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        assert_eq!(line["span"]["request_id"], 42, "{line}");
        assert_eq!(line["span"]["route"], "/v1/messages", "{line}");
        assert_eq!(line["span"]["message_id"], "ref-0001", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
    assert_eq!(lines[0]["level"], "DEBUG");
    assert_eq!(lines[0]["message"], "request");
    assert_eq!(lines[0]["status"], 202);
    assert_eq!(lines[1]["level"], "ERROR");
    assert_eq!(lines[1]["error"], "disk on fire");
}
