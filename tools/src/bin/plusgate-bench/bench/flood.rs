//! `--flood`: what one authenticated agency can make a node hold. The bench opens
//! `--connections` HTTP/2 streams (16 per connection) as the sending agency, each a push
//! declaring a body of `limits.body_bytes_max` (1 MiB) and sending it in 16 pieces spread
//! over `--duration-s`, all at once; then it reports how the node answered each stream and
//! the node's peak RSS (VmHWM) against its RSS before the flood. Without a body budget the
//! node buffers every stream's body (N MiB); with one, the streams past the budget are
//! answered 503 `busy` at once and their bodies never read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use harness::Trickle;
use harness::{identity_in, Federation};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use plusgate::node::client::{client_config, HttpVersion};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::usage::node_usage;
use super::{plusgate, BenchArgs, STREAMS_PER_H2_CONNECTION};

/// The one center of the federation the flood runs against.
const CENTER: &str = "suwon";
/// The agency that floods (the referral example's sender).
const SENDER: &str = "suwon/employment";
/// Bytes each stream declares: the default `limits.body_bytes_max`.
const BODY_BYTES: usize = 1 << 20;
/// Pieces each body is sent in, spread over the window.
const PIECES: usize = 16;

/// What the flood found.
#[derive(Debug, Serialize)]
pub(super) struct FloodReport {
    /// Streams opened, all at once.
    streams: usize,
    /// HTTP/2 connections they were spread over.
    connections: usize,
    /// Bytes each stream declared.
    body_bytes: usize,
    /// How long each body took to send, in seconds.
    duration_s: u16,
    /// Answers by status (`error` when the stream failed without one).
    answers: BTreeMap<String, usize>,
    /// The node's RSS before the flood, in MiB.
    rss_before_mib: f64,
    /// The node's peak RSS (VmHWM) after the flood, in MiB.
    peak_rss_mib: f64,
}

impl FloodReport {
    pub(super) fn to_text(&self) -> String {
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "flood: {} HTTP/2 streams over {} connections as one agency, each a {} KiB body \
             sent over {} s\nanswers: {}\nnode RSS before: {:.1} MiB, peak: {:.1} MiB\n",
            self.streams,
            self.connections,
            self.body_bytes / 1024,
            self.duration_s,
            answers.join(", "),
            self.rss_before_mib,
            self.peak_rss_mib,
        )
    }
}

/// Spawns hyper's HTTP/2 connection tasks on tokio.
#[derive(Clone, Copy)]
struct Spawn;

impl<F> hyper::rt::Executor<F> for Spawn
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

/// Runs the flood against a node of its own.
pub(super) async fn run(args: &BenchArgs) -> anyhow::Result<FloodReport> {
    let streams = usize::from(args.connections);
    let connections = streams.div_ceil(STREAMS_PER_H2_CONNECTION).max(1);
    let window = Duration::from_secs(u64::from(args.duration_s));
    let federation = Federation::create(plusgate(args)?, &[CENTER])?;
    let limit = |key: &str, value: String| federation.set_option(CENTER, "limits", key, &value);
    limit(
        "connections_per_identity_max",
        connections.max(64).to_string(),
    );
    // Every body must still be arriving when the window ends: the flood is about what is
    // held, not about the read deadline.
    limit(
        "body_read_timeout_ms",
        (window.as_millis() as u64 + 30_000).to_string(),
    );
    let node = federation.spawn_node(CENTER, "")?;
    eprintln!("bench: node listening on https://{}", node.addr());
    let before = node_usage(&node).context("reading the node's /proc")?;
    let cert = identity_in(federation.manifest(), SENDER)?;
    let config = client_config(
        &federation.manifest().ca_path(),
        Some((&cert.cert, &cert.key)),
        HttpVersion::Http2,
    )?;
    let mut feeders = Vec::new();
    let mut answers = Vec::new();
    for c in 0..connections {
        let tcp = TcpStream::connect(node.addr()).await?;
        let tls = TlsConnector::from(Arc::clone(&config))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(Spawn, TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let here = STREAMS_PER_H2_CONNECTION.min(streams - c * STREAMS_PER_H2_CONNECTION);
        for _ in 0..here {
            let (tx, rx) = mpsc::channel(PIECES);
            let request = Request::builder()
                .method(Method::POST)
                .uri(format!(
                    "https://localhost:{}/v1/messages",
                    node.addr().port()
                ))
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::CONTENT_LENGTH, BODY_BYTES)
                .body(Trickle(rx))?;
            let mut sender = sender.clone();
            answers.push(tokio::spawn(async move {
                match sender.send_request(request).await {
                    Ok(resp) => resp.status().as_u16().to_string(),
                    Err(_) => "error".to_owned(),
                }
            }));
            feeders.push(tx);
        }
    }
    eprintln!("bench: {streams} streams open; sending their bodies over {window:?}");
    let piece = Bytes::from(vec![b' '; BODY_BYTES / PIECES]);
    for _ in 0..PIECES {
        for tx in &feeders {
            // A stream already answered (503, 413) takes no more.
            let _ = tx.try_send(piece.clone());
        }
        tokio::time::sleep(window / PIECES as u32).await;
    }
    drop(feeders);
    let mut counts = BTreeMap::new();
    for answer in answers {
        let status = tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .map_or_else(
                |_| "timeout".to_owned(),
                |a| a.unwrap_or_else(|_| "error".into()),
            );
        *counts.entry(status).or_insert(0) += 1;
    }
    let after = node_usage(&node).context("reading the node's /proc")?;
    Ok(FloodReport {
        streams,
        connections,
        body_bytes: BODY_BYTES,
        duration_s: args.duration_s,
        answers: counts,
        rss_before_mib: before.peak_rss_kib as f64 / 1024.0,
        peak_rss_mib: after.peak_rss_kib as f64 / 1024.0,
    })
}
