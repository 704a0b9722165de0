//! Hostile clients: the attacks of `plusgate-hostile` and `tests/node/hostile.rs`, one
//! implementation for both. Each attack is one *round* against a running node (a request,
//! a burst of connections, a slow sender until the node gives up) that returns what the
//! attacker got for each variant (HTTP/1.1, HTTP/2, another identity, the same identity,
//! no certificate) and whether that is what a hardened node answers.
//!
//! The clients are raw: HTTP/1.1 is written by hand over tokio-rustls (`h1`), HTTP/2 goes
//! through the `h2` crate where a client that follows the protocol can still misbehave
//! (`h2`), or is written frame by frame where it cannot (`frames`). Connection floods are
//! in `floods`, the request bodies in `bodies`.
//!
//! Nothing here asserts timing: a round waits at most the node's relevant timeout plus
//! [`GRACE`] for an answer and reports "no answer" otherwise.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plusgate::node::client::{client_config, HttpVersion};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::ClientCert;

mod bodies;
mod floods;
mod frames;
mod h1;
mod h2;

/// How long past a node's timeout an attacker waits before it calls the node silent: the
/// node's timers, a loaded machine's scheduling and the connection's close all fit in it.
pub const GRACE: Duration = Duration::from_secs(5);

/// Bodies the attacks send over the limit are this much larger than it.
const OVER_LIMIT_BYTES: usize = 512 << 10;

/// The node an attack is aimed at, and the certificates it attacks with.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's TLS address.
    pub addr: SocketAddr,
    /// The loopback address the attacker connects from (any of 127.0.0.0/8 is this
    /// machine): an address of its own, as an attacker's machine would have, so the node's
    /// per-address handshake rate applies to it and not to the good client.
    pub source: Ipv4Addr,
    /// The federation's CA bundle (PEM), to verify the node.
    pub ca: PathBuf,
    /// An agency other than the well-behaved client's (the usual attacker).
    pub other: ClientCert,
    /// The well-behaved client's own identity (a leaked key, or a buggy client of the
    /// same agency).
    pub same: ClientCert,
    /// The node's `[limits]` that an attack runs into.
    pub limits: TargetLimits,
}

/// The node's limits an attack waits for or exceeds.
#[derive(Debug, Clone, Copy)]
pub struct TargetLimits {
    /// `limits.body_bytes_max`.
    pub body_bytes_max: usize,
    /// `limits.handshake_timeout_ms`.
    pub handshake_timeout: Duration,
    /// `limits.header_read_timeout_ms`.
    pub header_read_timeout: Duration,
    /// `limits.body_read_timeout_ms`.
    pub body_read_timeout: Duration,
    /// `limits.idle_timeout_ms`.
    pub idle_timeout: Duration,
    /// `limits.inbox_wait_s_max`.
    pub inbox_wait_max: Duration,
    /// `limits.handshakes_max`.
    pub handshakes_max: usize,
    /// `limits.connections_per_identity_max`.
    pub connections_per_identity_max: usize,
}

/// Whose certificate an attack presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Another agency than the well-behaved client.
    Other,
    /// The well-behaved client's own identity.
    Same,
    /// No client certificate at all.
    NoCert,
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Who::Other => "other",
            Who::Same => "same",
            Who::NoCert => "no-cert",
        })
    }
}

impl TargetLimits {
    /// The longest the node holds a connection whose open requests make no progress: the
    /// stall bound (idle timeout plus the longest a request may wait on its own) and then
    /// its graceful close (that wait again plus 5 s).
    pub fn stalled_connection_max(&self) -> Duration {
        let wait = self.inbox_wait_max.max(self.body_read_timeout);
        self.idle_timeout + wait + wait + Duration::from_secs(5)
    }
}

/// What an attacker got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// An HTTP answer, with its problem type's slug if the body is problem+json.
    Answer {
        /// The status code.
        status: u16,
        /// `urn:plusgate:problem:<slug>` → `slug`.
        problem: Option<String>,
    },
    /// The connection ended (FIN or RST) without an answer.
    Closed {
        /// After the attack started.
        after: Duration,
    },
    /// An HTTP/2 stream reset or GOAWAY with this error code name.
    Reset {
        /// `RST_STREAM` or `GOAWAY`.
        frame: &'static str,
        /// The error code, e.g. `ENHANCE_YOUR_CALM`.
        reason: String,
        /// After the attack started.
        after: Duration,
    },
    /// The TLS handshake (or the connection) was refused.
    Refused(String),
    /// The node closed the connection before its TLS handshake: the attacker's address
    /// is over its handshake rate, or the handshake budget is full. A defence, but the
    /// attack's request was never looked at.
    TurnedAway,
    /// Nothing at all within the wait: the node still holds the request or connection.
    Silent {
        /// How long the attacker waited.
        waited: Duration,
    },
    /// A summary of many connections or streams (floods).
    Tally(String),
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Answer { status, problem } => match problem {
                Some(slug) => write!(f, "{status} {slug}"),
                None => write!(f, "{status} (no problem body)"),
            },
            Got::Closed { after } => write!(f, "closed after {:.1} s", after.as_secs_f64()),
            Got::Reset {
                frame,
                reason,
                after,
            } => write!(f, "{frame} {reason} after {:.1} s", after.as_secs_f64()),
            Got::Refused(why) => write!(f, "refused: {why}"),
            Got::TurnedAway => f.write_str("closed before the TLS handshake"),
            Got::Silent { waited } => write!(f, "no answer in {:.0} s", waited.as_secs_f64()),
            Got::Tally(text) => f.write_str(text),
        }
    }
}

/// One variant of an attack: what was sent, what came back, whether that is right.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// E.g. `h1 other`.
    pub variant: String,
    /// What the attacker got.
    pub got: Got,
    /// What a hardened node answers, in words.
    pub expected: String,
    /// Whether `got` is that.
    pub ok: bool,
}

impl Outcome {
    /// An outcome judged by `expect`.
    pub fn judged(variant: impl Into<String>, got: Got, expect: &Expect) -> Outcome {
        Outcome {
            variant: variant.into(),
            ok: expect.accepts(&got),
            expected: expect.to_string(),
            got,
        }
    }
}

/// What a hardened node answers an attack with.
#[derive(Debug, Clone)]
pub enum Expect {
    /// This status with this problem type.
    Problem(u16, &'static str),
    /// This status, with or without a problem body (hyper answers some itself).
    Status(u16),
    /// The connection closed, or the stream or connection reset, within this time.
    EndedWithin(Duration),
    /// The TLS handshake refused.
    Refused,
    /// Any of these.
    AnyOf(Vec<Expect>),
    /// Judged by the attack itself (a tally): `ok` says.
    Tally(&'static str, bool),
}

impl Expect {
    /// Whether `got` is this.
    pub fn accepts(&self, got: &Got) -> bool {
        match (self, got) {
            (Expect::Problem(s, slug), Got::Answer { status, problem }) => {
                status == s && problem.as_deref() == Some(*slug)
            }
            (Expect::Status(s), Got::Answer { status, .. }) => status == s,
            (Expect::EndedWithin(max), Got::Closed { after })
            | (Expect::EndedWithin(max), Got::Reset { after, .. }) => after <= max,
            (Expect::Refused, Got::Refused(_)) => true,
            (Expect::AnyOf(all), got) => all.iter().any(|e| e.accepts(got)),
            (Expect::Tally(_, ok), Got::Tally(_)) => *ok,
            _ => false,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Problem(status, slug) => write!(f, "{status} {slug}"),
            Expect::Status(status) => write!(f, "{status}"),
            Expect::EndedWithin(max) => write!(f, "closed/reset within {:.0} s", max.as_secs_f64()),
            Expect::Refused => f.write_str("handshake refused"),
            Expect::AnyOf(all) => {
                let all: Vec<String> = all.iter().map(ToString::to_string).collect();
                f.write_str(&all.join(" or "))
            }
            Expect::Tally(what, _) => f.write_str(what),
        }
    }
}

/// An attack: a name for `--attack`, what it does, and how many copies of it run at once
/// while the tool measures (a flood is already many connections: one copy).
#[derive(Debug, Clone, Copy)]
pub struct Attack {
    /// `--attack NAME`.
    pub name: &'static str,
    /// One line for the report.
    pub what: &'static str,
    /// Copies of the round the tool runs at once, in a loop, during the measurement.
    pub copies: usize,
}

/// Every attack, in the order the tool runs them.
pub const ATTACKS: &[Attack] = &[
    Attack {
        name: "body-declared-over-limit",
        what: "Content-Length over limits.body_bytes_max (HTTP/1.1, HTTP/2)",
        copies: 4,
    },
    Attack {
        name: "body-streamed-over-limit",
        what: "a body without length growing over the limit (chunked HTTP/1.1, HTTP/2 DATA)",
        copies: 4,
    },
    Attack {
        name: "body-never-ends",
        what: "a chunked body of small chunks that never ends (HTTP/1.1, HTTP/2)",
        copies: 4,
    },
    Attack {
        name: "json-deep",
        what: "100,000 nested arrays",
        copies: 4,
    },
    Attack {
        name: "json-duplicate-keys",
        what: "a referral with a duplicate key at the top and nested",
        copies: 4,
    },
    Attack {
        name: "json-huge-numbers",
        what: "1e400 and a 400-digit integer in a referral",
        copies: 4,
    },
    Attack {
        name: "json-bad-bytes",
        what: "invalid UTF-8 in a string, a BOM, a raw NUL, an escaped NUL",
        copies: 4,
    },
    Attack {
        name: "headers-many",
        what: "10,000 headers (HTTP/1.1, HTTP/2)",
        copies: 4,
    },
    Attack {
        name: "header-huge",
        what: "one 1 MiB header (HTTP/1.1, HTTP/2)",
        copies: 4,
    },
    Attack {
        name: "uri-huge",
        what: "a 1 MiB request target (HTTP/1.1, HTTP/2)",
        copies: 4,
    },
    Attack {
        name: "slow-headers",
        what: "slowloris: request headers a byte a second (HTTP/1.1, HTTP/2)",
        copies: 8,
    },
    Attack {
        name: "slow-body",
        what: "a declared body sent a byte a second (HTTP/1.1, HTTP/2)",
        copies: 8,
    },
    Attack {
        name: "flood-no-hello",
        what: "1,000 TCP connections that never send a ClientHello",
        copies: 1,
    },
    Attack {
        name: "flood-handshakes",
        what: "TLS handshakes as fast as 16 loops can (with and without a certificate)",
        copies: 1,
    },
    Attack {
        name: "flood-handshakes-spread",
        what: "the handshake flood from 4,000 addresses, none over its handshake rate",
        copies: 1,
    },
    Attack {
        name: "flood-idle",
        what: "more idle authenticated connections than the identity may hold",
        copies: 1,
    },
    Attack {
        name: "h2-rapid-reset",
        what: "HEADERS then RST_STREAM in a loop (CVE-2023-44487)",
        copies: 2,
    },
    Attack {
        name: "h2-stream-flood",
        what: "more streams than max concurrent streams, bodies never sent",
        copies: 2,
    },
    Attack {
        name: "h2-control-flood",
        what: "SETTINGS and PING frames in a loop, answers never read",
        copies: 2,
    },
    Attack {
        name: "h2-continuation-flood",
        what: "a header block of endless CONTINUATION frames (CVE-2024-27316 class)",
        copies: 2,
    },
    Attack {
        name: "h2-zero-window",
        what: "a zero flow-control window and responses never read",
        copies: 2,
    },
];

/// Runs one round of attack `name` against `target`.
pub async fn round(name: &str, target: &Target) -> anyhow::Result<Vec<Outcome>> {
    let t = target;
    Ok(match name {
        "body-declared-over-limit" => bodies::declared_over_limit(t).await,
        "body-streamed-over-limit" => bodies::streamed_over_limit(t).await,
        "body-never-ends" => bodies::never_ends(t).await,
        "json-deep" => bodies::json(t, bodies::JsonAttack::Deep).await,
        "json-duplicate-keys" => bodies::json(t, bodies::JsonAttack::DuplicateKeys).await,
        "json-huge-numbers" => bodies::json(t, bodies::JsonAttack::HugeNumbers).await,
        "json-bad-bytes" => bodies::json(t, bodies::JsonAttack::BadBytes).await,
        "headers-many" => h1::headers_many(t).await,
        "header-huge" => h1::header_huge(t).await,
        "uri-huge" => h1::uri_huge(t).await,
        "slow-headers" => h1::slow_headers(t).await,
        "slow-body" => bodies::slow_body(t).await,
        "flood-no-hello" => floods::no_hello(t).await,
        "flood-handshakes" => floods::handshakes(t, floods::Sources::One).await,
        "flood-handshakes-spread" => floods::handshakes(t, floods::Sources::Spread).await,
        "flood-idle" => floods::idle(t).await,
        "h2-rapid-reset" => frames::rapid_reset(t).await,
        "h2-stream-flood" => frames::stream_flood(t).await,
        "h2-control-flood" => frames::control_flood(t).await,
        "h2-continuation-flood" => frames::continuation_flood(t).await,
        "h2-zero-window" => frames::zero_window(t).await,
        other => anyhow::bail!("no attack named `{other}`"),
    })
}

/// The attack named `name`.
pub fn attack(name: &str) -> Option<&'static Attack> {
    ATTACKS.iter().find(|a| a.name == name)
}

/// A TCP connection to the target from the attacker's address.
pub async fn tcp(t: &Target) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(t.source), 0))?;
    socket.connect(t.addr).await
}

/// A TLS connection to the target as `who`, offering only `version` by ALPN; the error is
/// [`Got::TurnedAway`] if the node closed the connection before its handshake, else
/// [`Got::Refused`].
pub async fn connect(
    t: &Target,
    who: Who,
    version: HttpVersion,
) -> Result<TlsStream<TcpStream>, Got> {
    let cert = match who {
        Who::Other => Some(&t.other),
        Who::Same => Some(&t.same),
        Who::NoCert => None,
    };
    let config = client_config(
        &t.ca,
        cert.map(|c| (c.cert.as_path(), c.key.as_path())),
        version,
    )
    .map_err(|e| Got::Refused(format!("client config: {e}")))?;
    let tcp = tcp(t)
        .await
        .map_err(|e| Got::Refused(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").map_err(|e| Got::Refused(e.to_string()))?;
    TlsConnector::from(Arc::clone(&config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            // The node says nothing to a connection it turns away: the client's handshake
            // meets the end of the stream (or a reset) instead of a ServerHello. A refused
            // certificate is a TLS alert, after the client's side of the handshake.
            use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
            match e.kind() {
                UnexpectedEof | ConnectionReset | BrokenPipe => Got::TurnedAway,
                _ => Got::Refused(format!("TLS: {e}")),
            }
        })
}

/// Seconds since `start`, for `Got`.
fn since(start: Instant) -> Duration {
    start.elapsed()
}

/// The problem type's slug in a problem+json body, if it is one.
fn problem_slug(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kind = value.get("type")?.as_str()?;
    Some(
        kind.strip_prefix("urn:plusgate:problem:")
            .unwrap_or(kind)
            .to_owned(),
    )
}
