//! The flags of `plusgate-bench` (as `plusgate bench` had them, plus `--plusgate`).

use std::path::PathBuf;

use plusgate::node::client::HttpVersion;

use super::open_loop::RATE_MAX;

/// Largest `--connections`; each worker holds a 17 KiB histogram.
const CONNECTIONS_MAX: usize = 1024;

/// The HTTP versions to benchmark.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpChoice {
    /// HTTP/1.1 only.
    #[value(name = "1")]
    Http1,
    /// HTTP/2 only.
    #[value(name = "2")]
    Http2,
    /// HTTP/1.1, then HTTP/2, reported side by side.
    #[value(name = "both")]
    Both,
}

impl HttpChoice {
    pub(super) fn versions(self) -> Vec<HttpVersion> {
        match self {
            HttpChoice::Http1 => vec![HttpVersion::Http1],
            HttpChoice::Http2 => vec![HttpVersion::Http2],
            HttpChoice::Both => vec![HttpVersion::Http1, HttpVersion::Http2],
        }
    }
}

/// Measure a node's push throughput and latency.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "plusgate-bench", version, about, long_about = None)]
pub struct BenchArgs {
    /// Use this existing dev federation (its sender's node must be running) instead of
    /// creating one in a temporary folder and starting a node.
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Requests in flight at all times (HTTP/1.1: connections; HTTP/2: streams).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=CONNECTIONS_MAX as i64))]
    pub connections: u16,
    /// Length of the measured window, in seconds.
    #[arg(long = "duration-s", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=3600))]
    pub duration_s: u16,
    /// Warm-up before the measured window, in seconds (not counted).
    #[arg(long = "warmup-s", default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=600))]
    pub warmup_s: u16,
    /// HTTP version(s) to benchmark.
    #[arg(long, value_enum, default_value_t = HttpChoice::Both)]
    pub http: HttpChoice,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Sending agency (default: the referral example's sender, the first center's
    /// employment agency).
    #[arg(long, value_name = "AGENCY")]
    pub sender: Option<String>,
    /// Receiving agency (default: the referral example's recipient, the first center's
    /// welfare team).
    #[arg(long, value_name = "AGENCY")]
    pub recipient: Option<String>,
    /// After each run, pull and acknowledge the recipient's inbox until it is empty and
    /// report that throughput too.
    #[arg(long)]
    pub pull: bool,
    /// Measure forwarding between two centers: start a two-center federation, push the
    /// `referral-remote` example at the first node and pull it at the second.
    #[arg(long, conflicts_with_all = ["manifest", "http", "pull", "sender", "recipient"])]
    pub cross: bool,
    /// With --cross: only the latency phase, pushing at this fixed rate (messages/s);
    /// without it both phases run, the latency phase at 1000/s.
    #[arg(long, value_name = "N", requires = "cross", value_parser = clap::value_parser!(u32).range(1..=i64::from(RATE_MAX)))]
    pub rate: Option<u32>,
    /// With --cross: keep the temporary federation folder (configs, data, node logs).
    #[arg(long, requires = "cross")]
    pub keep: bool,
    /// After the plusgate run(s), run the same load against a private RabbitMQ broker in the
    /// same run: as many synchronous publishers as --connections, each publishing the same
    /// body persistently to a durable queue and waiting for the publisher confirm, over
    /// AMQPS with client certificates. Needs Debian's rabbitmq-server
    /// (tools/bench-rabbitmq.sh installs it). RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS, if set,
    /// is passed on to the broker's Erlang VM.
    #[arg(long, conflicts_with = "cross")]
    pub rabbitmq: bool,
    /// With --rabbitmq: the broker's start script, run as the current user (default
    /// Debian's /usr/lib/rabbitmq/bin/rabbitmq-server).
    #[arg(long, value_name = "PATH", requires = "rabbitmq")]
    pub rabbitmq_server: Option<PathBuf>,
    /// Measure memory under a flood instead: --connections HTTP/2 streams (16 per
    /// connection) as one agency, each declaring a body of 1 MiB and sending it slowly over
    /// --duration-s; reports the answers and the node's peak RSS.
    #[arg(long, conflicts_with_all = ["manifest", "cross", "rabbitmq", "pull"])]
    pub flood: bool,
    /// The `plusgate` executable to start nodes of (default: the one next to this
    /// executable, which `cargo build --release` puts there).
    #[arg(long, value_name = "PATH", conflicts_with = "manifest")]
    pub plusgate: Option<PathBuf>,
}
