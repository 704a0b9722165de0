//! Request bodies no well-behaved client sends: over the size limit (declared or
//! streamed), never ending, a byte a second, and JSON built to hurt a parser (deep,
//! duplicate keys, huge numbers, bad bytes).

use std::time::Duration;

use bytes::Bytes;

use super::h1::{exchange, h2_exchange, h2_post, post_head, Step};
use super::{Expect, Got, Outcome, Target, Who, GRACE, OVER_LIMIT_BYTES};

/// 413 `body-too-large`.
fn too_large() -> Expect {
    Expect::Problem(413, "body-too-large")
}

/// A chunked HTTP/1.1 body: `data` as one chunk, and the last chunk if `end`.
fn chunk(data: &[u8], end: bool) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    if end {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

/// `Content-Length` over the limit, body never sent (HTTP/1.1, HTTP/2, and the same
/// identity over HTTP/1.1).
pub(super) async fn declared_over_limit(t: &Target) -> Vec<Outcome> {
    let length = t.limits.body_bytes_max + OVER_LIMIT_BYTES;
    let head = post_head(&format!("content-length: {length}\r\n"));
    let wait = t.limits.body_read_timeout + GRACE;
    let h1 = exchange(t, Who::Other, vec![Step::Write(head.clone())], wait).await;
    let same = exchange(t, Who::Same, vec![Step::Write(head)], wait).await;
    // The body is started (a byte a second), never ended: the node must answer on the
    // declared length alone.
    let h2 =
        super::h2::trickled_post(t, Who::Other, Some(length), Duration::from_secs(1), wait).await;
    vec![
        Outcome::judged("h1 other", h1, &too_large()),
        Outcome::judged("h1 same", same, &too_large()),
        Outcome::judged("h2 other", h2, &too_large()),
    ]
}

/// A body without a length that grows over the limit: chunked over HTTP/1.1, DATA frames
/// over HTTP/2.
pub(super) async fn streamed_over_limit(t: &Target) -> Vec<Outcome> {
    let total = t.limits.body_bytes_max + OVER_LIMIT_BYTES;
    let piece = vec![b' '; 64 << 10];
    let mut body = Vec::new();
    for _ in 0..total.div_ceil(piece.len()) {
        body.extend_from_slice(&chunk(&piece, false));
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = post_head("transfer-encoding: chunked\r\n");
    let wait = t.limits.body_read_timeout + GRACE;
    let h1 = exchange(
        t,
        Who::Other,
        vec![Step::Write(head), Step::Write(body)],
        wait,
    )
    .await;
    let h2 = match h2_post(t).body(()) {
        Ok(req) => {
            let body = Bytes::from(vec![b' '; total]);
            h2_exchange(t, Who::Other, req, Some(body), wait).await
        }
        Err(e) => Got::Refused(e.to_string()),
    };
    // HTTP/2: the node may answer 413 before the client has sent past the window; `h2`
    // then reports the early answer, or the reset that follows it.
    let h2_expect = Expect::AnyOf(vec![too_large(), Expect::EndedWithin(wait)]);
    vec![
        Outcome::judged("h1 other", h1, &too_large()),
        Outcome::judged("h2 other", h2, &h2_expect),
    ]
}

/// A chunked body of one byte every 100 ms that never ends: 408 `body-timeout` within
/// `limits.body_read_timeout_ms` (HTTP/1.1, HTTP/2 as DATA frames).
pub(super) async fn never_ends(t: &Target) -> Vec<Outcome> {
    let limit = t.limits.body_read_timeout;
    let expect = Expect::AnyOf(vec![
        Expect::Problem(408, "body-timeout"),
        Expect::EndedWithin(limit + GRACE),
    ]);
    let wait = limit + GRACE * 2;
    let every = Duration::from_millis(100);
    let h1 = exchange(
        t,
        Who::Other,
        vec![
            Step::Write(post_head("transfer-encoding: chunked\r\n")),
            Step::Forever {
                piece: chunk(b" ", false),
                every,
            },
        ],
        wait,
    );
    let h2 = super::h2::trickled_post(t, Who::Other, None, every, wait);
    let (h1, h2) = tokio::join!(h1, h2);
    vec![
        Outcome::judged("h1 other", h1, &expect),
        Outcome::judged("h2 other", h2, &expect),
    ]
}

/// A declared 1 KiB body sent a byte a second (HTTP/1.1 as
/// another identity and as the same one, HTTP/2).
pub(super) async fn slow_body(t: &Target) -> Vec<Outcome> {
    let limit = t.limits.body_read_timeout;
    let expect = Expect::AnyOf(vec![
        Expect::Problem(408, "body-timeout"),
        Expect::EndedWithin(limit + GRACE),
    ]);
    let wait = limit + GRACE * 2;
    let steps = || {
        vec![
            Step::Write(post_head("content-length: 1024\r\n")),
            Step::Trickle {
                bytes: vec![b' '; 1024],
                piece: 1,
                every: Duration::from_secs(1),
            },
        ]
    };
    let (other, same, h2) = tokio::join!(
        exchange(t, Who::Other, steps(), wait),
        exchange(t, Who::Same, steps(), wait),
        super::h2::trickled_post(t, Who::Other, Some(1024), Duration::from_secs(1), wait),
    );
    vec![
        Outcome::judged("h1 other", other, &expect),
        Outcome::judged("h1 same", same, &expect),
        Outcome::judged("h2 other", h2, &expect),
    ]
}

/// The JSON attacks.
#[derive(Debug, Clone, Copy)]
pub(super) enum JsonAttack {
    /// 100,000 nested arrays.
    Deep,
    /// A duplicate key at the top and nested.
    DuplicateKeys,
    /// 1e400, a 400-digit integer.
    HugeNumbers,
    /// Invalid UTF-8, a BOM, a raw NUL, an escaped NUL.
    BadBytes,
}

/// A referral-shaped body (not the federation's example: the attacker does not need a
/// valid one, only one the parser must read) with `inner` spliced into its `body` object.
fn referral_with(inner: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"hostile-1","type":"referral","to":"suwon/welfare","body":{{"note":"x"{inner}}}}}"#
    )
    .into_bytes()
}

/// The bodies of one JSON attack, each with its variant name and what it must get.
fn json_cases(attack: JsonAttack) -> Vec<(&'static str, Vec<u8>, Expect)> {
    let bad = || Expect::Problem(400, "bad-request");
    // A valid JSON value the schema refuses is a 422, also a clear answer.
    let bad_or_invalid = || {
        Expect::AnyOf(vec![
            Expect::Problem(400, "bad-request"),
            Expect::Problem(422, "schema-violation"),
        ])
    };
    match attack {
        JsonAttack::Deep => {
            let mut deep = "[".repeat(100_000);
            deep.push_str(&"]".repeat(100_000));
            vec![("deep arrays", deep.into_bytes(), bad())]
        }
        JsonAttack::DuplicateKeys => vec![
            (
                "top-level key",
                br#"{"id":"a","id":"b","type":"referral"}"#.to_vec(),
                bad(),
            ),
            ("nested key", referral_with(r#","note":"y""#), bad()),
        ],
        JsonAttack::HugeNumbers => vec![
            ("1e400", referral_with(r#","n":1e400"#), bad_or_invalid()),
            (
                "400 digits",
                referral_with(&format!(r#","n":{}"#, "9".repeat(400))),
                bad_or_invalid(),
            ),
        ],
        JsonAttack::BadBytes => {
            let mut invalid = referral_with(r#","s":"AB""#);
            let at = invalid.len() - 4;
            invalid.splice(at..at + 1, [0xff, 0xfe]);
            let mut bom = vec![0xef, 0xbb, 0xbf];
            bom.extend_from_slice(&referral_with(""));
            let mut raw_nul = referral_with(r#","s":"AB""#);
            let at = raw_nul.len() - 4;
            raw_nul[at] = 0;
            vec![
                ("invalid UTF-8", invalid, bad()),
                ("BOM", bom, bad()),
                ("raw NUL", raw_nul, bad()),
                (
                    "escaped NUL",
                    referral_with(r#","s":"\u0000""#),
                    bad_or_invalid(),
                ),
            ]
        }
    }
}

/// Sends each body of `attack` over HTTP/1.1 and HTTP/2 as another identity.
pub(super) async fn json(t: &Target, attack: JsonAttack) -> Vec<Outcome> {
    let wait = t.limits.body_read_timeout + GRACE;
    let mut outcomes = Vec::new();
    for (name, body, expect) in json_cases(attack) {
        let head = post_head(&format!("content-length: {}\r\n", body.len()));
        let mut request = head;
        request.extend_from_slice(&body);
        let h1 = exchange(t, Who::Other, vec![Step::Write(request)], wait).await;
        outcomes.push(Outcome::judged(format!("h1 other {name}"), h1, &expect));
        let h2 = match h2_post(t).body(()) {
            Ok(req) => h2_exchange(t, Who::Other, req, Some(Bytes::from(body)), wait).await,
            Err(e) => Got::Refused(e.to_string()),
        };
        outcomes.push(Outcome::judged(format!("h2 other {name}"), h2, &expect));
    }
    outcomes
}
