//! HTTP/1.1 written by hand over TLS: requests no well-behaved client sends (10,000
//! headers, a 1 MiB header or URI, headers a byte a second), and the reader of whatever
//! comes back. The header attacks' HTTP/2 variants are here too, through the `h2` crate.

use std::time::{Duration, Instant};

use bytes::Bytes;
use plusgate::node::client::HttpVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{connect, problem_slug, since, Expect, Got, Outcome, Target, Who, GRACE};

/// How an attacker writes its request.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// These bytes at once.
    Write(Vec<u8>),
    /// These bytes, `piece` bytes every `every`.
    Trickle {
        bytes: Vec<u8>,
        piece: usize,
        every: Duration,
    },
    /// `piece` every `every`, forever (until the node closes).
    Forever { piece: Vec<u8>, every: Duration },
}

/// Sends `steps` over a fresh HTTP/1.1 connection as `who` while reading the answer; waits
/// at most `wait` for it.
pub(super) async fn exchange(t: &Target, who: Who, steps: Vec<Step>, wait: Duration) -> Got {
    let start = Instant::now();
    let tls = match connect(t, who, HttpVersion::Http1).await {
        Ok(tls) => tls,
        Err(got) => return got,
    };
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        for step in steps {
            match step {
                Step::Write(bytes) => wr.write_all(&bytes).await?,
                Step::Trickle {
                    bytes,
                    piece,
                    every,
                } => {
                    for chunk in bytes.chunks(piece.max(1)) {
                        wr.write_all(chunk).await?;
                        wr.flush().await?;
                        tokio::time::sleep(every).await;
                    }
                }
                Step::Forever { piece, every } => loop {
                    wr.write_all(&piece).await?;
                    wr.flush().await?;
                    tokio::time::sleep(every).await;
                },
            }
            wr.flush().await?;
        }
        // Keep the write half open: closing it would tell the node the request is over.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(wr)
    });
    let got = match tokio::time::timeout(wait, read_answer(&mut rd, start)).await {
        Ok(got) => got,
        Err(_) => Got::Silent { waited: wait },
    };
    writer.abort();
    got
}

/// Reads one HTTP/1.1 answer: status and problem type, or how the connection ended.
async fn read_answer<R: AsyncReadExt + Unpin>(rd: &mut R, start: Instant) -> Got {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return Got::Closed {
                    after: since(start),
                }
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Got::Answer {
        status,
        problem: problem_slug(&body),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request head for `POST /v1/messages` with `extra` header lines (each ending `\r\n`).
pub(super) fn post_head(extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// An HTTP/2 request over a fresh connection as `who` with the `h2` crate: the status and
/// problem type of the answer, or how the stream or connection ended.
pub(super) async fn h2_exchange(
    t: &Target,
    who: Who,
    request: http::Request<()>,
    body: Option<Bytes>,
    wait: Duration,
) -> Got {
    let start = Instant::now();
    let tls = match connect(t, who, HttpVersion::Http2).await {
        Ok(tls) => tls,
        Err(got) => return got,
    };
    let attempt = async {
        let (client, conn) = ::h2::client::Builder::new()
            .max_header_list_size(u32::MAX)
            .handshake::<_, Bytes>(tls)
            .await?;
        let conn = tokio::spawn(conn);
        let mut client = client.ready().await?;
        let (response, mut send) = client.send_request(request, body.is_none())?;
        if let Some(body) = body {
            send.send_data(body, true)?;
        }
        let response = response.await?;
        let status = response.status().as_u16();
        let mut stream = response.into_body();
        let mut bytes = Vec::new();
        while let Some(data) = stream.data().await {
            let data = data?;
            let _ = stream.flow_control().release_capacity(data.len());
            bytes.extend_from_slice(&data);
        }
        conn.abort();
        Ok::<_, ::h2::Error>(Got::Answer {
            status,
            problem: problem_slug(&bytes),
        })
    };
    match tokio::time::timeout(wait, attempt).await {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => h2_error(&e, start),
        Err(_) => Got::Silent { waited: wait },
    }
}

/// How an `h2` error ended the exchange.
pub(super) fn h2_error(e: &::h2::Error, start: Instant) -> Got {
    match e.reason() {
        Some(reason) if e.is_go_away() || e.is_reset() => Got::Reset {
            frame: if e.is_go_away() {
                "GOAWAY"
            } else {
                "RST_STREAM"
            },
            reason: format!("{reason:?}"),
            after: since(start),
        },
        _ => Got::Closed {
            after: since(start),
        },
    }
}

/// An HTTP/2 `POST /v1/messages` request builder of the target.
pub(super) fn h2_post(t: &Target) -> http::request::Builder {
    http::Request::post(format!("https://localhost:{}/v1/messages", t.addr.port()))
        .header("content-type", "application/json")
}

/// What a header attack is answered with: 431 (hyper answers it itself, without a problem
/// body), 400, or a closed or reset connection.
fn header_refusal() -> Expect {
    Expect::AnyOf(vec![
        Expect::Status(431),
        Expect::Status(400),
        Expect::Status(414),
        Expect::EndedWithin(GRACE),
    ])
}

/// 10,000 headers.
pub(super) async fn headers_many(t: &Target) -> Vec<Outcome> {
    let mut lines = String::new();
    let mut request = h2_post(t);
    for i in 0..10_000 {
        lines.push_str(&format!("x-h{i}: v\r\n"));
        request = request.header(format!("x-h{i}"), "v");
    }
    oversized_head(t, &lines, request).await
}

/// One header of 1 MiB.
pub(super) async fn header_huge(t: &Target) -> Vec<Outcome> {
    let value = "a".repeat(1 << 20);
    let request = h2_post(t).header("x-huge", value.as_str());
    oversized_head(t, &format!("x-huge: {value}\r\n"), request).await
}

/// A push whose head is too large, as the other agency: over HTTP/1.1 with `lines` as its
/// header lines, over HTTP/2 as `request`. Both must be refused.
async fn oversized_head(t: &Target, lines: &str, request: http::request::Builder) -> Vec<Outcome> {
    let h1 = exchange(
        t,
        Who::Other,
        vec![Step::Write(post_head(lines))],
        GRACE * 2,
    )
    .await;
    let h2 = match request.body(()) {
        Ok(request) => {
            h2_exchange(
                t,
                Who::Other,
                request,
                Some(Bytes::from_static(b"{}")),
                GRACE * 2,
            )
            .await
        }
        Err(e) => Got::Refused(e.to_string()),
    };
    vec![
        Outcome::judged("h1 other", h1, &header_refusal()),
        Outcome::judged("h2 other", h2, &header_refusal()),
    ]
}

/// A request target of 1 MiB.
pub(super) async fn uri_huge(t: &Target) -> Vec<Outcome> {
    let path = format!("/v1/messages/{}", "a".repeat(1 << 20));
    let head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    let h1 = exchange(
        t,
        Who::Other,
        vec![Step::Write(head.into_bytes())],
        GRACE * 2,
    )
    .await;
    // The `http` crate refuses to build a URI this long: HTTP/2 is written by hand.
    let mut outcomes = vec![Outcome::judged("h1 other", h1, &header_refusal())];
    outcomes.extend(super::frames::huge_path(t, &path).await);
    outcomes
}

/// Slowloris: a request head a byte a second, from another identity and the same one.
/// Both HTTP/1.1 and HTTP/2 (a HEADERS frame a byte a second, `frames::slow_headers`) must
/// be closed within `limits.header_read_timeout_ms`.
pub(super) async fn slow_headers(t: &Target) -> Vec<Outcome> {
    let limit = t.limits.header_read_timeout;
    let expect = Expect::AnyOf(vec![
        Expect::EndedWithin(limit + GRACE),
        Expect::Status(408),
    ]);
    let head = post_head("content-length: 2\r\n");
    let steps = || {
        vec![Step::Trickle {
            bytes: head.clone(),
            piece: 1,
            every: Duration::from_secs(1),
        }]
    };
    let wait = limit + GRACE * 2;
    let (other, same, h2) = tokio::join!(
        exchange(t, Who::Other, steps(), wait),
        exchange(t, Who::Same, steps(), wait),
        super::frames::slow_headers(t, wait),
    );
    vec![
        Outcome::judged("h1 other", other, &expect),
        Outcome::judged("h1 same", same, &expect),
        Outcome::judged("h2 other", h2, &expect),
    ]
}
