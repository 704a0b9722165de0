//! The load generator of `plusgate-bench`: a closed-loop load test of `POST /v1/messages`
//! over mutual TLS.
//!
//! Without `--manifest`, the bench creates a one-center development federation in a
//! temporary folder, starts `plusgate serve` (the `plusgate` executable next to the
//! bench's own, or `--plusgate PATH`) as a child process on a free loopback port, and
//! stops it (and removes the folder) at the end, also on error or Ctrl-C. With
//! `--manifest`, it uses an existing federation whose sender's node is already running.
//! Federations, nodes, free ports, consent registration and inbox draining are the test
//! harness's ([`harness`]), so the bench measures the node exactly as the tests run it.
//!
//! Load model: `--connections N` requests are always in flight, each worker sending the
//! next request as soon as the previous answer arrives. HTTP/1.1 uses N TLS connections
//! (keep-alive, one request in flight each). HTTP/2 uses N streams spread evenly over
//! `max(1, N / 16)` connections, which is how a forwarding node or a busy agency gateway
//! would multiplex. Every request carries the referral example with a unique `id`
//! (`bench-<run>-<h1|h2>-<worker>-<n>`), so each one is a new message the node must store,
//! under a consent (`cns-bench`) the sender registers first, so every push passes the full
//! consent check as any agency's would.
//!
//! Measurement: requests completing during the warm-up are discarded; throughput counts
//! `202 Accepted` responses completing inside the measured window, divided by its length.
//! Latency is kept in a log-linear histogram (exact below 128 µs, then within 1/64 ≈ 1.6 %),
//! so memory does not grow with the run's length. When the bench spawned the node, it
//! also reports the node's CPU time during the window and its peak RSS, read from `/proc`.
//!
//! Every phase is bounded in time, so the command always stops by itself.
//!
//! `--cross` measures forwarding between two centers instead: the bench writes a
//! two-center federation (free loopback ports, since each node must listen where the
//! signed directory says), starts both nodes, and pushes the `referral-remote` example at
//! the first center's node (A) while [`pullers::PULLERS`] long-polling pullers at the
//! second (B), holding the recipient agency's certificate, pull and acknowledge everything
//! that arrives. Pushes and pulls use HTTP/2. Two phases:
//!
//! - **throughput** (closed loop, as above, ids `xbench-<run>-tp-<worker>-<n>`): accepted/s
//!   at A and delivered/s at B over the same measured window (a message is delivered when
//!   a pull at B first returns it), the backlog `accepted − pulled` at the window's end,
//!   and how long B then takes to receive the rest;
//! - **latency** (open loop, `--rate N`/s, default [`cross::DEFAULT_RATE`], ids
//!   `xbench-<run>-lat-<i>`): send `i` is due `i / N` s after the start
//!   ([`open_loop::Schedule`]), whatever the answers to earlier sends; at most
//!   `--connections` are in flight (a send that finds them all busy waits, and its lag
//!   behind the timetable is reported). The latency of a message is from the instant its
//!   push was sent at A to the instant a pull at B first returned it; a message not pulled
//!   within [`open_loop::ARRIVAL_GRACE`] after the last scheduled send counts as never
//!   arrived.
//!
//! Without `--rate` both phases run, throughput first (and the latency phase starts once
//! B has received the throughput backlog); with `--rate` only the latency phase runs. The
//! nodes are stopped with SIGTERM at the end, and the federation folder (with each node's
//! log in `<center>.log`) is removed unless `--keep` is given.
//!
//! `--rabbitmq` (single-node mode) adds a comparison in the same run: once the plusgate
//! runs are done and the node is stopped, the bench starts a private RabbitMQ broker
//! (Debian's `rabbitmq-server`, TLS with client certificates only) and drives it with the
//! same number of synchronous publishers, the same body, warm-up and window: publish one
//! persistent message to a durable queue, wait for its publisher confirm, repeat. The
//! report gets a RabbitMQ column and the ratio plusgate / RabbitMQ.
//!
//! `--flood` measures memory instead of speed: one agency opens `--connections` HTTP/2
//! streams, each declaring a 1 MiB body and trickling it over the window, and the bench
//! reports how the node answered and its peak RSS ([`flood`]).
//!
//! Files: [`args`] (the flags), [`single`] (one node), [`load`] (the closed-loop workers
//! both modes use), [`cross`] with [`pullers`] and [`open_loop`] (two nodes), [`broker`]
//! and [`amqp`] (RabbitMQ), [`histogram`], [`report`] and [`cross_report`] (the outputs),
//! [`usage`] (CPU and memory from `/proc`).

mod amqp;
mod args;
mod broker;
mod cross;
mod cross_report;
mod flood;
mod histogram;
mod load;
mod open_loop;
mod pullers;
mod report;
mod single;
mod usage;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use harness::{agent_to, ClientCert, Plusgate};
use plusgate::dev::manifest::LoadedManifest;
use plusgate::node::client::{Agent, ClientError, HttpVersion};
use serde::Serialize;

pub use self::args::BenchArgs;

/// Bound on one benchmark request; slower requests count as `timeout` errors.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 streams per connection: N streams use `max(1, N / STREAMS_PER_H2_CONNECTION)`
/// connections.
const STREAMS_PER_H2_CONNECTION: usize = 16;

/// Pause before a worker reconnects after a failed connect, so a dead node is not
/// hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Id of the consent the bench registers and its referrals cite.
const BENCH_CONSENT_ID: &str = "cns-bench";

/// Runs the benchmark and prints its report on stdout (progress goes to stderr).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    tokio::select! {
        result = run_mode(&args) => {
            match result? {
                AnyReport::Single(report) => {
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&report)?);
                    } else {
                        print!("{}", report.to_text());
                    }
                }
                AnyReport::Cross(report) => {
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&report)?);
                    } else {
                        print!("{}", report.to_text());
                    }
                }
                AnyReport::Flood(report) => {
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&report)?);
                    } else {
                        print!("{}", report.to_text());
                    }
                }
            }
            Ok(())
        }
        // Returning drops the federation and its nodes, which kills them and removes it.
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    }
}

/// The report of either mode.
enum AnyReport {
    Single(report::Report),
    Cross(Box<cross_report::CrossReport>),
    Flood(flood::FloodReport),
}

async fn run_mode(args: &BenchArgs) -> anyhow::Result<AnyReport> {
    if args.flood {
        Ok(AnyReport::Flood(flood::run(args).await?))
    } else if args.cross {
        Ok(AnyReport::Cross(Box::new(cross::run(args).await?)))
    } else {
        Ok(AnyReport::Single(single::run(args).await?))
    }
}

/// The `plusgate` executable the bench starts nodes of: `--plusgate`, or the one next to
/// the bench's own executable.
fn plusgate(args: &BenchArgs) -> anyhow::Result<Plusgate> {
    match &args.plusgate {
        Some(path) => Ok(Plusgate::at(path)),
        None => Plusgate::in_target_dir().map_err(|e| anyhow!("{e} (or give --plusgate PATH)")),
    }
}

/// The dev `consent` example made the bench's own: collected by `sender`, naming
/// `recipient`, so any sender and recipient the bench is pointed at are covered.
fn bench_consent(
    manifest: &LoadedManifest,
    sender: &str,
    recipient: &str,
) -> anyhow::Result<serde_json::Value> {
    let (path, _) = manifest.example("consent")?;
    let text =
        std::fs::read_to_string(&path).map_err(doing(format!("reading {}", path.display())))?;
    let mut consent: serde_json::Value =
        serde_json::from_str(&text).map_err(doing(format!("parsing {}", path.display())))?;
    consent["id"] = BENCH_CONSENT_ID.into();
    consent["collected_by"]["agency"] = sender.into();
    consent["recipients"] = serde_json::json!([recipient]);
    if let Some(history) = consent["status_history"].get_mut(0) {
        history["by"] = sender.into();
    }
    Ok(consent)
}

/// An agent for the node at `addr` presenting `cert`, each request bounded by
/// [`REQUEST_TIMEOUT`].
fn bench_agent(
    manifest: &LoadedManifest,
    addr: SocketAddr,
    server_name: &str,
    cert: &ClientCert,
    version: HttpVersion,
) -> anyhow::Result<Agent> {
    let mut agent = agent_to(manifest, addr, server_name, Some(cert), version)?;
    agent.timeout = REQUEST_TIMEOUT;
    Ok(agent)
}

/// The address and TLS server name of a node URL with an IP address, as dev-init writes
/// them: the bench opens many connections to one address, so it does not resolve names.
fn ip_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let parsed = plusgate::node::client::parse_https_url(url)?;
    let addr = parsed
        .socket_addr()
        .ok_or_else(|| anyhow!("{url}: the bench needs a node URL with an IP address"))?;
    Ok((addr, parsed.server_name()))
}

/// The tag of `version` in message ids.
fn tag(version: HttpVersion) -> &'static str {
    match version {
        HttpVersion::Http1 => "h1",
        HttpVersion::Http2 => "h2",
    }
}

/// Adds what was being done to an error, keeping the cause on the same line (the CLI
/// prints only the outermost message of an `anyhow::Error`).
fn doing<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> anyhow::Error {
    move |e| anyhow!("{what}: {e}")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A short name for a client failure, used to group errors in the report.
fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Connect { .. } | ClientError::ConnectEach { .. } => "connect",
        ClientError::Resolve { .. } => "resolve",
        ClientError::Tls { .. } | ClientError::Handshake { .. } | ClientError::Alpn { .. } => "tls",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Http { .. } => "http",
        ClientError::BodyTooLarge { .. } => "body too large",
        _ => "other",
    }
}

fn truncate(text: &str, chars_max: usize) -> String {
    match text.char_indices().nth(chars_max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Errors of one kind: how many, and the first one's text for diagnosis.
#[derive(Debug, Clone, Serialize)]
struct ErrorCount {
    count: u64,
    first: String,
}

/// Counts one error of `kind` in `errors`, keeping the first one's `detail`.
fn count_error(errors: &mut BTreeMap<String, ErrorCount>, kind: &str, detail: &str) {
    let entry = errors.entry(kind.to_owned()).or_insert_with(|| ErrorCount {
        count: 0,
        first: truncate(detail, 300),
    });
    entry.count += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_counts_chars() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("가나다라", 2), "가나…");
    }
}
