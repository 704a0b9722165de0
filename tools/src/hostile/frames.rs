//! HTTP/2 written frame by frame, for what the `h2` crate will not send: streams past
//! the server's concurrency limit, HEADERS then RST_STREAM in a loop (rapid reset), floods
//! of SETTINGS and PING, a header block of endless CONTINUATION frames, a zero window, and
//! a HEADERS frame a byte a second. A reader task tallies what the node sends back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex as AsyncMutex;
use tokio_rustls::client::TlsStream;

use super::{connect, since, Expect, Got, Outcome, Target, Who, GRACE};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
/// RST_STREAM's CANCEL.
const CANCEL: u32 = 0x8;

type Tls = TlsStream<TcpStream>;

/// What the node sent on one raw connection.
#[derive(Debug, Default, Clone)]
struct Tally {
    /// HEADERS frames (answers) received.
    answers: usize,
    /// RST_STREAM frames received, by error code name.
    resets: BTreeMap<String, usize>,
    /// GOAWAY's error code name, and when it came.
    goaway: Option<(String, Duration)>,
    /// When the connection ended (EOF or error).
    closed: Option<Duration>,
}

impl Tally {
    fn ended(&self) -> Option<Duration> {
        match (&self.goaway, self.closed) {
            (Some((_, a)), _) => Some(*a),
            (None, closed) => closed,
        }
    }

    fn summary(&self) -> String {
        let mut parts = vec![format!("{} answers", self.answers)];
        for (code, n) in &self.resets {
            parts.push(format!("{n} RST_STREAM {code}"));
        }
        if let Some((code, at)) = &self.goaway {
            parts.push(format!("GOAWAY {code} after {:.1} s", at.as_secs_f64()));
        }
        match self.closed {
            Some(at) => parts.push(format!("closed after {:.1} s", at.as_secs_f64())),
            None => parts.push("still open".to_owned()),
        }
        parts.join(", ")
    }
}

/// An HTTP/2 connection driven frame by frame.
struct Raw {
    wr: Arc<AsyncMutex<WriteHalf<Tls>>>,
    tally: Arc<Mutex<Tally>>,
    start: Instant,
    reader: Option<tokio::task::JoinHandle<()>>,
    rd: Option<ReadHalf<Tls>>,
}

/// Error code names of RFC 9113 §7.
fn code_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("0x{code:x}"), |n| (*n).to_owned())
}

/// One frame's bytes.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), first byte's high bits 0.
fn hpack_int(n: u32, value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn hpack_str(s: &[u8], out: &mut Vec<u8>) {
    hpack_int(7, s.len(), out);
    out.extend_from_slice(s);
}

/// A literal header field without indexing, with a new name.
fn hpack_literal(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    hpack_str(name.as_bytes(), out);
    hpack_str(value, out);
}

/// A request header block: `GET` or `POST` `path`, plus `extra` literal headers.
fn request_block(t: &Target, post: bool, path: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let mut out = vec![if post { 0x83 } else { 0x82 }, 0x87];
    // :path and :authority: literal without indexing, indexed names 4 and 1.
    hpack_int(4, 4, &mut out);
    hpack_str(path.as_bytes(), &mut out);
    hpack_int(4, 1, &mut out);
    hpack_str(format!("localhost:{}", t.addr.port()).as_bytes(), &mut out);
    for (name, value) in extra {
        hpack_literal(name, value.as_bytes(), &mut out);
    }
    out
}

impl Raw {
    /// Connects as `who`, sends the preface and `settings`; reads (tallying, answering
    /// PINGs and SETTINGS) only if `read`.
    /// [`Raw::open`] as the other agency; a refused connection is the attack's one
    /// outcome, ready to return.
    async fn open_other(
        t: &Target,
        settings: &[(u16, u32)],
        read: bool,
    ) -> Result<Raw, Vec<Outcome>> {
        Raw::open(t, Who::Other, settings, read)
            .await
            .map_err(|got| vec![Outcome::judged("h2 other", got, &Expect::Tally("", false))])
    }

    async fn open(t: &Target, who: Who, settings: &[(u16, u32)], read: bool) -> Result<Raw, Got> {
        let start = Instant::now();
        let tls = connect(t, who, HttpVersion::Http2).await?;
        let (rd, mut wr) = tokio::io::split(tls);
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        let mut hello = PREFACE.to_vec();
        hello.extend_from_slice(&frame(SETTINGS, 0, 0, &payload));
        wr.write_all(&hello)
            .await
            .map_err(|e| Got::Refused(e.to_string()))?;
        let mut raw = Raw {
            wr: Arc::new(AsyncMutex::new(wr)),
            tally: Arc::default(),
            start,
            reader: None,
            rd: Some(rd),
        };
        if read {
            raw.read();
        }
        Ok(raw)
    }

    /// Starts reading (once): tallies frames, answers PING and SETTINGS.
    fn read(&mut self) {
        let Some(mut rd) = self.rd.take() else { return };
        let tally = Arc::clone(&self.tally);
        let wr = Arc::clone(&self.wr);
        let start = self.start;
        self.reader = Some(tokio::spawn(async move {
            let mut head = [0u8; 9];
            loop {
                if rd.read_exact(&mut head).await.is_err() {
                    break;
                }
                let len = (usize::from(head[0]) << 16)
                    | (usize::from(head[1]) << 8)
                    | usize::from(head[2]);
                let mut payload = vec![0u8; len];
                if rd.read_exact(&mut payload).await.is_err() {
                    break;
                }
                let (kind, flags) = (head[3], head[4]);
                let code = |at: usize| {
                    payload
                        .get(at..at + 4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0)
                };
                let answer = {
                    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                    match kind {
                        HEADERS => tally.answers += 1,
                        RST_STREAM => *tally.resets.entry(code_name(code(0))).or_default() += 1,
                        GOAWAY if tally.goaway.is_none() => {
                            tally.goaway = Some((code_name(code(4)), since(start)));
                        }
                        _ => {}
                    }
                    match kind {
                        PING if flags & ACK == 0 => Some(frame(PING, ACK, 0, &payload)),
                        SETTINGS if flags & ACK == 0 => Some(frame(SETTINGS, ACK, 0, &[])),
                        _ => None,
                    }
                };
                if let Some(answer) = answer {
                    let _ = wr.lock().await.write_all(&answer).await;
                }
            }
            tally.lock().unwrap_or_else(PoisonError::into_inner).closed = Some(since(start));
        }));
    }

    async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut wr = self.wr.lock().await;
        wr.write_all(bytes).await?;
        wr.flush().await
    }

    fn tally(&self) -> Tally {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the connection ends or `wait` has passed since it opened.
    async fn wait_end(&self, wait: Duration) -> Tally {
        loop {
            let tally = self.tally();
            if tally.closed.is_some() || self.start.elapsed() >= wait {
                return tally;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }
}

/// A tally judged: `ok` says whether it is what a hardened node does.
fn tallied(variant: &str, tally: &Tally, expected: &'static str, ok: bool) -> Outcome {
    Outcome::judged(
        variant,
        Got::Tally(tally.summary()),
        &Expect::Tally(expected, ok),
    )
}

/// HEADERS then RST_STREAM(CANCEL), 20,000 times on one connection, each a long poll of
/// the inbox (work the node would start for nothing). The node must end the connection
/// (GOAWAY) or absorb it, and stay healthy (checked by the caller).
pub(super) async fn rapid_reset(t: &Target) -> Vec<Outcome> {
    let raw = match Raw::open_other(t, &[], true).await {
        Ok(raw) => raw,
        Err(refused) => return refused,
    };
    let block = request_block(t, false, "/v1/inbox?wait_s=30", &[]);
    let mut sent = 0usize;
    let mut stream = 1u32;
    for _ in 0..200 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend_from_slice(&frame(HEADERS, END_STREAM | END_HEADERS, stream, &block));
            batch.extend_from_slice(&frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
            stream += 2;
        }
        if raw.send(&batch).await.is_err() || raw.tally().ended().is_some() {
            break;
        }
        sent += 100;
    }
    let tally = raw
        .wait_end(raw.start.elapsed() + Duration::from_secs(1))
        .await;
    let expected = "GOAWAY, or every stream absorbed with the node healthy";
    let variant = format!("h2 other ({sent} streams reset)");
    vec![tallied(&variant, &tally, expected, true)]
}

/// 600 streams at once (over the node's 256), each a POST declaring a body it never
/// sends: the streams over the limit must be refused (RST_STREAM REFUSED_STREAM or
/// GOAWAY), the others answered 408 or closed within `limits.body_read_timeout_ms`.
pub(super) async fn stream_flood(t: &Target) -> Vec<Outcome> {
    const STREAMS: u32 = 600;
    let raw = match Raw::open_other(t, &[], true).await {
        Ok(raw) => raw,
        Err(refused) => return refused,
    };
    let extra = [
        ("content-type", "application/json".to_owned()),
        ("content-length", "1024".to_owned()),
    ];
    let block = request_block(t, true, "/v1/messages", &extra);
    let mut batch = Vec::new();
    for i in 0..STREAMS {
        batch.extend_from_slice(&frame(HEADERS, END_HEADERS, 1 + 2 * i, &block));
    }
    let _ = raw.send(&batch).await;
    let wait = t.limits.body_read_timeout + GRACE;
    let deadline = raw.start.elapsed() + wait;
    // A stream answered early (408) is then reset NO_ERROR: only other codes refuse one.
    let refusals = |tally: &Tally| -> usize {
        tally
            .resets
            .iter()
            .filter(|(code, _)| code.as_str() != "NO_ERROR")
            .map(|(_, n)| n)
            .sum()
    };
    loop {
        let tally = raw.tally();
        let refused = refusals(&tally);
        if tally.ended().is_some() || tally.answers + refused >= STREAMS as usize {
            break;
        }
        if raw.start.elapsed() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tally = raw.tally();
    let refused = refusals(&tally);
    let ok = tally.goaway.is_some()
        || tally.closed.is_some()
        || tally.answers + refused >= STREAMS as usize;
    vec![tallied(
        "h2 other (600 streams)",
        &tally,
        "every stream refused or answered, or the connection ended",
        ok,
    )]
}

/// 10,000 SETTINGS and 10,000 PINGs, nothing read while sending (the node's ACKs pile up
/// in its socket): the node must bound what it queues (GOAWAY or stop reading) and the
/// connection end or be answered.
pub(super) async fn control_flood(t: &Target) -> Vec<Outcome> {
    let mut raw = match Raw::open_other(t, &[], false).await {
        Ok(raw) => raw,
        Err(refused) => return refused,
    };
    let mut batch = Vec::new();
    for i in 0..10_000u64 {
        batch.extend_from_slice(&frame(SETTINGS, 0, 0, &[]));
        batch.extend_from_slice(&frame(PING, 0, 0, &i.to_be_bytes()));
    }
    let wrote = tokio::time::timeout(GRACE, raw.send(&batch)).await;
    let wrote = match wrote {
        Ok(Ok(())) => "all sent",
        Ok(Err(_)) => "write failed (closed)",
        Err(_) => "node stopped reading",
    };
    raw.read();
    let tally = raw.wait_end(raw.start.elapsed() + GRACE).await;
    let variant = format!("h2 other ({wrote})");
    vec![tallied(
        &variant,
        &tally,
        "GOAWAY, closed, or answered within the flow of TCP",
        true,
    )]
}

/// A HEADERS frame without END_HEADERS, then CONTINUATION frames of 16 KiB of headers
/// each, up to 64 MiB: the node must end it (431, RST_STREAM or GOAWAY, or close) long
/// before, without buffering it.
pub(super) async fn continuation_flood(t: &Target) -> Vec<Outcome> {
    let raw = match Raw::open_other(t, &[], true).await {
        Ok(raw) => raw,
        Err(refused) => return refused,
    };
    let block = request_block(t, false, "/healthz", &[]);
    let _ = raw.send(&frame(HEADERS, END_STREAM, 1, &block)).await;
    let mut piece = Vec::new();
    while piece.len() < (16 << 10) - 64 {
        hpack_literal("x-c", &[b'a'; 100], &mut piece);
    }
    let one = frame(CONTINUATION, 0, 1, &piece);
    let mut sent = 0usize;
    while sent < (64 << 20) {
        let mut batch = Vec::new();
        for _ in 0..16 {
            batch.extend_from_slice(&one);
        }
        let write = tokio::time::timeout(GRACE, raw.send(&batch)).await;
        if !matches!(write, Ok(Ok(()))) || raw.tally().ended().is_some() {
            break;
        }
        sent += batch.len();
    }
    let tally = raw.wait_end(raw.start.elapsed() + GRACE).await;
    let ok = tally.ended().is_some() || tally.answers > 0 || !tally.resets.is_empty();
    let variant = format!("h2 other ({} KiB sent)", sent >> 10);
    vec![tallied(
        &variant,
        &tally,
        "431, RST_STREAM or GOAWAY, or closed",
        ok,
    )]
}

/// A GET of `path` (1 MiB) as one HEADERS frame and CONTINUATION frames of 16 KiB: the
/// node must answer (431, 414, 400), reset the stream, or end the connection.
pub(super) async fn huge_path(t: &Target, path: &str) -> Vec<Outcome> {
    let raw = match Raw::open_other(t, &[], true).await {
        Ok(raw) => raw,
        Err(refused) => return refused,
    };
    let block = request_block(t, false, path, &[]);
    let mut pieces = block.chunks(16 << 10).peekable();
    let mut first = true;
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let (kind, flags) = match (first, last) {
            (true, true) => (HEADERS, END_STREAM | END_HEADERS),
            (true, false) => (HEADERS, END_STREAM),
            (false, true) => (CONTINUATION, END_HEADERS),
            (false, false) => (CONTINUATION, 0),
        };
        first = false;
        if raw.send(&frame(kind, flags, 1, piece)).await.is_err() {
            break;
        }
    }
    let deadline = raw.start.elapsed() + GRACE;
    loop {
        let tally = raw.tally();
        if tally.ended().is_some()
            || tally.answers > 0
            || !tally.resets.is_empty()
            || raw.start.elapsed() >= deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tally = raw.tally();
    let ok = tally.ended().is_some() || tally.answers > 0 || !tally.resets.is_empty();
    vec![tallied(
        "h2 other",
        &tally,
        "an answer, RST_STREAM or GOAWAY, or closed",
        ok,
    )]
}

/// A zero stream window (SETTINGS_INITIAL_WINDOW_SIZE 0), 100 requests for the OpenAPI
/// document, PINGs answered, no WINDOW_UPDATE ever: the node cannot send a byte of any
/// answer and must still end the connection once its requests stall (idle timeout plus the
/// longest wait of a request) and its graceful close times out, not hold it and the
/// answers until `connection_age_max_s`.
pub(super) async fn zero_window(t: &Target) -> Vec<Outcome> {
    let settings = [(SETTINGS_INITIAL_WINDOW_SIZE, 0u32)];
    let raw = match Raw::open_other(t, &settings, true).await {
        Ok(raw) => raw,
        Err(refused) => return refused,
    };
    let block = request_block(t, false, "/v1/openapi.json", &[]);
    let mut batch = Vec::new();
    for i in 0..100u32 {
        batch.extend_from_slice(&frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, &block));
    }
    let _ = raw.send(&batch).await;
    let bound = t.limits.stalled_connection_max() + GRACE;
    let tally = raw.wait_end(bound + GRACE).await;
    let ok = tally.closed.is_some_and(|at| at <= bound);
    let expected = "closed within the stall bound and close grace";
    vec![tallied("h2 other (100 streams)", &tally, expected, ok)]
}

/// A HEADERS frame sent a byte a second (HTTP/2 slowloris): the connection has no request
/// yet, so it must end within the idle (or header read) timeout.
pub(super) async fn slow_headers(t: &Target, wait: Duration) -> Got {
    let raw = match Raw::open(t, Who::Other, &[], true).await {
        Ok(raw) => raw,
        Err(got) => return got,
    };
    let extra = [("content-length", "2".to_owned())];
    let bytes = frame(
        HEADERS,
        END_HEADERS,
        1,
        &request_block(t, true, "/v1/messages", &extra),
    );
    let wait = wait.max(t.limits.idle_timeout + GRACE * 2);
    // Let the SETTINGS exchange finish first: the reader's ACK must not land inside the
    // frame being trickled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let trickle = async {
        for byte in bytes {
            if raw.send(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    };
    let ended = async {
        loop {
            let tally = raw.tally();
            if let Some(at) = tally.ended() {
                return match tally.goaway {
                    Some((reason, after)) => Got::Reset {
                        frame: "GOAWAY",
                        reason,
                        after,
                    },
                    None => Got::Closed { after: at },
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let got = tokio::select! {
        got = ended => got,
        () = trickle => Got::Silent { waited: wait },
        () = tokio::time::sleep(wait) => Got::Silent { waited: wait },
    };
    got
}
