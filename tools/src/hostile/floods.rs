//! Connection floods: TCP connections that never send a ClientHello, TLS handshakes as
//! fast as the attacker can make them (with and without a certificate; from one address,
//! or spread over thousands), and more idle authenticated connections than an identity
//! may hold.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::{connect, Expect, Got, Outcome, Target, Who, GRACE};

/// Connections of the no-ClientHello flood: several times `limits.handshakes_max`, and
/// within a default open-files limit of 1,024 on the attacker's side.
const SILENT_CONNECTIONS: usize = 600;
/// Loops of the handshake flood, each handshaking again as soon as the last one ended.
const HANDSHAKE_LOOPS: usize = 16;
/// How long the handshake flood runs.
const HANDSHAKE_FLOOD: Duration = Duration::from_secs(5);
/// Addresses each loop of the spread handshake flood cycles through (127.1.L.1–250 for
/// loop L): 4,000 in all, so that each stays far below its handshake rate and only the
/// node's other defences are left.
const SPREAD_ADDRESSES: usize = 250;
/// Idle connections opened past the identity's bound.
const IDLE_EXTRA: usize = 8;

/// Reads until the connection ends; how long after `start` it did, or `None` if it was
/// still open at `start + wait`.
async fn ended<R: AsyncReadExt + Unpin>(
    rd: &mut R,
    start: Instant,
    wait: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let left = wait.saturating_sub(start.elapsed());
    let read = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(left, read).await.ok()
}

/// Buckets of when connections ended.
#[derive(Debug, Default)]
struct Ends {
    at_once: usize,
    later: usize,
    open: usize,
    latest: Duration,
}

impl Ends {
    fn add(&mut self, end: Option<Duration>) {
        match end {
            Some(at) if at < Duration::from_millis(500) => self.at_once += 1,
            Some(at) => {
                self.later += 1;
                self.latest = self.latest.max(at);
            }
            None => self.open += 1,
        }
    }
}

/// 600 TCP connections that never send a byte: those over `limits.handshakes_max` closed
/// at once, the others after `limits.handshake_timeout_ms`; none left open.
pub(super) async fn no_hello(t: &Target) -> Vec<Outcome> {
    let start = Instant::now();
    let wait = t.limits.handshake_timeout + GRACE;
    let mut set = JoinSet::new();
    let mut failed = 0usize;
    for _ in 0..SILENT_CONNECTIONS {
        match super::tcp(t).await {
            Ok(mut tcp) => {
                set.spawn(async move {
                    let opened = Instant::now();
                    ended(&mut tcp, opened, wait).await
                });
            }
            Err(_) => failed += 1,
        }
    }
    let mut ends = Ends::default();
    while let Some(end) = set.join_next().await {
        ends.add(end.ok().flatten());
    }
    let text = format!(
        "{} closed at once, {} closed by {:.1} s, {} still open after {:.0} s, {failed} not connected ({:.1} s)",
        ends.at_once,
        ends.later,
        ends.latest.as_secs_f64(),
        ends.open,
        wait.as_secs_f64(),
        start.elapsed().as_secs_f64(),
    );
    let expect = Expect::Tally("all closed within the handshake timeout", ends.open == 0);
    vec![Outcome::judged("tcp", Got::Tally(text), &expect)]
}

/// Whether a TLS connection as `who` is refused: the handshake fails, or (TLS 1.3, where
/// the client finishes first) the first read meets the node's alert or the end.
async fn refused(t: &Target, who: Who) -> bool {
    match connect(t, who, HttpVersion::Http1).await {
        Err(_) => true,
        Ok(mut tls) => {
            let mut byte = [0u8; 1];
            matches!(
                tokio::time::timeout(GRACE, tls.read(&mut byte)).await,
                Ok(Ok(0) | Err(_))
            )
        }
    }
}

/// Where the handshake flood comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sources {
    /// The target's source address: its handshake rate applies.
    One,
    /// [`SPREAD_ADDRESSES`] addresses per loop (a botnet, or an IPv6 /48): no address
    /// reaches its rate.
    Spread,
}

/// The `n`th source address of loop `lp` of the spread flood.
fn spread_source(lp: usize, n: usize) -> Ipv4Addr {
    let (lp, host) = (lp % 256, n % SPREAD_ADDRESSES + 1);
    Ipv4Addr::new(
        127,
        1,
        u8::try_from(lp).unwrap_or(0),
        u8::try_from(host).unwrap_or(1),
    )
}

/// [`HANDSHAKE_LOOPS`] loops handshaking for [`HANDSHAKE_FLOOD`] as another agency, and as
/// many without a certificate: every certificate-less one refused, the node alive.
pub(super) async fn handshakes(t: &Target, from: Sources) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for who in [Who::Other, Who::NoCert] {
        let start = Instant::now();
        let mut set = JoinSet::new();
        for lp in 0..HANDSHAKE_LOOPS {
            let mut t = t.clone();
            set.spawn(async move {
                let (mut done, mut refused, mut turned) = (0usize, 0usize, 0usize);
                let mut n = 0usize;
                while start.elapsed() < HANDSHAKE_FLOOD {
                    if from == Sources::Spread {
                        t.source = spread_source(lp, n);
                        n += 1;
                    }
                    match who {
                        Who::NoCert => {
                            if super::floods::refused(&t, who).await {
                                refused += 1;
                            } else {
                                done += 1;
                            }
                        }
                        _ => match connect(&t, who, HttpVersion::Http1).await {
                            Ok(_) => done += 1,
                            Err(Got::TurnedAway) => turned += 1,
                            Err(_) => refused += 1,
                        },
                    }
                }
                (done, refused, turned)
            });
        }
        let (mut done, mut refused_n, mut turned_n) = (0usize, 0usize, 0usize);
        while let Some(Ok((d, r, a))) = set.join_next().await {
            done += d;
            refused_n += r;
            turned_n += a;
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = (done + refused_n + turned_n) as f64 / secs;
        let text = format!(
            "{done} completed, {refused_n} refused, {turned_n} closed before the handshake ({rate:.0}/s)"
        );
        let (expected, ok) = match who {
            Who::NoCert => ("every handshake refused", done == 0),
            _ => ("handshakes served or refused, node healthy", true),
        };
        outcomes.push(Outcome::judged(
            format!("tls {who}"),
            Got::Tally(text),
            &Expect::Tally(expected, ok),
        ));
    }
    outcomes
}

/// `connections_per_identity_max + 8` idle connections as another agency: the extra ones
/// closed right after the handshake, all the others within `limits.idle_timeout_ms`; and
/// 8 idle connections without a certificate, all refused.
pub(super) async fn idle(t: &Target) -> Vec<Outcome> {
    let wait = t.limits.idle_timeout + GRACE;
    let n = t.limits.connections_per_identity_max + IDLE_EXTRA;
    let mut set = JoinSet::new();
    let mut not_connected = 0usize;
    for _ in 0..n {
        match connect(t, Who::Other, HttpVersion::Http1).await {
            Ok(mut tls) => {
                set.spawn(async move {
                    let opened = Instant::now();
                    ended(&mut tls, opened, wait).await
                });
            }
            Err(_) => not_connected += 1,
        }
    }
    let mut no_cert = JoinSet::new();
    for _ in 0..IDLE_EXTRA {
        let t = t.clone();
        no_cert.spawn(async move { refused(&t, Who::NoCert).await });
    }
    let mut ends = Ends::default();
    while let Some(end) = set.join_next().await {
        ends.add(end.ok().flatten());
    }
    let mut refused_n = 0usize;
    while let Some(r) = no_cert.join_next().await {
        refused_n += usize::from(r.unwrap_or(false));
    }
    let text = format!(
        "{} of {n} closed at once, {} closed by {:.1} s, {} still open after {:.0} s, {not_connected} not connected",
        ends.at_once,
        ends.later,
        ends.latest.as_secs_f64(),
        ends.open,
        wait.as_secs_f64(),
    );
    let ok = ends.open == 0 && ends.at_once + not_connected >= IDLE_EXTRA;
    let expected = "the extra ones closed at once, the rest within the idle timeout";
    let no_cert_text = format!("{refused_n} of {IDLE_EXTRA} refused");
    vec![
        Outcome::judged("tls other", Got::Tally(text), &Expect::Tally(expected, ok)),
        Outcome::judged(
            "tls no-cert",
            Got::Tally(no_cert_text),
            &Expect::Tally("all refused", refused_n == IDLE_EXTRA),
        ),
    ]
}
