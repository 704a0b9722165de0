//! `plusgate bench`: a closed-loop load test of `POST /v1/messages` over mutual TLS.
//!
//! Without `--manifest`, the bench creates a one-center development federation in a
//! temporary folder, starts `plusgate serve` on an ephemeral port as a child process,
//! and stops it (and removes the folder) at the end, also on error or Ctrl-C. With
//! `--manifest`, it uses an existing federation whose sender's node is already running.
//!
//! Load model: `--connections N` requests are always in flight, each worker sending the
//! next request as soon as the previous answer arrives. HTTP/1.1 uses N TLS connections
//! (keep-alive, one request in flight each). HTTP/2 uses N streams spread evenly over
//! `max(1, N / 16)` connections, which is how a forwarding node or a busy agency gateway
//! would multiplex. Every request carries the referral example with a unique `id`
//! (`bench-<run>-<h1|h2>-<worker>-<n>`), so each one is a new message the node must store.
//!
//! Measurement: requests completing during the warm-up are discarded; throughput counts
//! `202 Accepted` responses completing inside the measured window, divided by its length.
//! Latency is kept in a log-linear histogram (exact below 128 µs, then within 1/64 ≈ 1.6 %),
//! so memory does not grow with the run's length. When the bench spawned the node, it
//! also reports the node's CPU time during the window and its peak RSS, read from `/proc`.
//!
//! Every phase is bounded in time, so the command always stops by itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, Agent, ClientError, Connection, HttpVersion};
use crate::manifest::{LoadedManifest, Manifest};

/// Bound on one benchmark request; slower requests count as `timeout` errors.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the spawned node may take to print its listening line.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 streams per connection: N streams use `max(1, N / STREAMS_PER_H2_CONNECTION)`
/// connections.
const STREAMS_PER_H2_CONNECTION: usize = 16;

/// Pause before a worker reconnects after a failed connect, so a dead node is not
/// hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Bound on the `--pull` drain of the recipient's inbox after each run.
const PULL_TIME_MAX: Duration = Duration::from_secs(60);

/// Messages asked for per inbox pull (the node's default `inbox_pull_max`).
const PULL_BATCH_LEN: usize = 100;

/// Linux reports process CPU times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Linux supports (the kernel ABI fixes it, whatever `CONFIG_HZ` is).
const USER_HZ: f64 = 100.0;

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
    fn versions(self) -> Vec<HttpVersion> {
        match self {
            HttpChoice::Http1 => vec![HttpVersion::Http1],
            HttpChoice::Http2 => vec![HttpVersion::Http2],
            HttpChoice::Both => vec![HttpVersion::Http1, HttpVersion::Http2],
        }
    }
}

/// Options of `plusgate bench`.
#[derive(clap::Args, Debug, Clone)]
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
}

/// Runs the benchmark and prints its report on stdout (progress goes to stderr).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    tokio::select! {
        result = run_inner(&args) => {
            let report = result?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        // Returning drops the spawned node's guard, which kills it.
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    }
}

async fn run_inner(args: &BenchArgs) -> anyhow::Result<Report> {
    // Declared before `node` so it is dropped after it: the node dies, then its files go.
    let mut _scratch = None;
    let mut node = None;
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path)?,
        None => {
            let scratch = ScratchDir::create()?;
            eprintln!(
                "bench: creating a dev federation in {}",
                scratch.0.display()
            );
            let manifest = create_federation(&scratch.0)?;
            _scratch = Some(scratch);
            manifest
        }
    };
    let setup = Setup::from_manifest(&manifest, args)?;

    let url = match &args.manifest {
        Some(_) => setup.node_url.clone(),
        None => {
            let config = manifest.config_path(&setup.sender_center)?;
            let spawned = SpawnedNode::start(&config, manifest.dir())?;
            eprintln!("bench: node listening on https://{}", spawned.addr);
            let url = format!("https://{}", spawned.addr);
            node = Some(spawned);
            url
        }
    };
    let (addr, server_name) = client::parse_https_url(&url)?;

    let run_tag = uuid::Uuid::now_v7().simple().to_string();
    let template = BodyTemplate::new(&setup.envelope)?;
    let mut runs = Vec::new();
    for version in args.http.versions() {
        let target = Target {
            addr,
            server_name: server_name.clone(),
            config: client::client_config(
                &setup.ca,
                Some((&setup.sender_cert, &setup.sender_key)),
                version,
            )?,
            version,
        };
        preflight(&target, &template, &run_tag).await?;
        eprintln!(
            "bench: {version}, {} in flight, {} s warm-up + {} s measured",
            args.connections, args.warmup_s, args.duration_s
        );
        let mut run = load(&target, &template, &run_tag, args, node.as_ref()).await?;
        if args.pull {
            eprintln!("bench: draining {}'s inbox", setup.recipient);
            run.pull = Some(drain_inbox(&setup, &manifest, node.as_ref()).await?);
        }
        runs.push(run);
    }
    if let Some(node) = node.take() {
        node.stop();
    }
    Ok(Report {
        node_url: url,
        node_spawned: args.manifest.is_none(),
        sender: setup.sender,
        recipient: setup.recipient,
        connections: args.connections.into(),
        warmup_s: args.warmup_s.into(),
        duration_s: args.duration_s.into(),
        runs,
    })
}

/// Writes a one-center development federation into `dir`.
fn create_federation(dir: &Path) -> anyhow::Result<LoadedManifest> {
    let args = crate::devinit::DevInitArgs {
        out: dir.to_owned(),
        centers: vec!["suwon".to_owned()],
        base_port: 7443,
    };
    crate::devinit::run(&args).map_err(doing("creating the dev federation"))
}

/// Everything the bench needs from the manifest, resolved.
struct Setup {
    ca: PathBuf,
    sender: String,
    sender_center: String,
    sender_cert: PathBuf,
    sender_key: PathBuf,
    recipient: String,
    /// The node of the sender's center.
    node_url: String,
    /// The referral envelope to send, adjusted to `sender` and `recipient`.
    envelope: serde_json::Value,
}

impl Setup {
    fn from_manifest(manifest: &LoadedManifest, args: &BenchArgs) -> anyhow::Result<Setup> {
        let (example_path, example_sender) = manifest.example("referral")?;
        let text = std::fs::read_to_string(&example_path)
            .map_err(doing(format!("reading {}", example_path.display())))?;
        let mut envelope: serde_json::Value = serde_json::from_str(&text)
            .map_err(doing(format!("parsing {}", example_path.display())))?;
        let sender = args
            .sender
            .clone()
            .unwrap_or_else(|| example_sender.to_owned());
        let recipient = match &args.recipient {
            Some(r) => r.clone(),
            None => envelope
                .get("to")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{} has no \"to\"", example_path.display()))?,
        };
        // The node cross-checks these payload fields against the sender and `to`.
        for (pointer, value) in [
            ("/to", &recipient),
            ("/payload/referrer/agency", &sender),
            ("/payload/recipient/agency", &recipient),
        ] {
            if let Some(slot) = envelope.pointer_mut(pointer) {
                *slot = serde_json::Value::String(value.clone());
            }
        }
        let (sender_cert, sender_key) = manifest.agency_identity(&sender)?;
        let sender_center = sender
            .split_once('/')
            .map(|(center, _)| center.to_owned())
            .ok_or_else(|| anyhow!("agency id {sender:?} is not <center>/<agency>"))?;
        Ok(Setup {
            ca: manifest.ca_path(),
            node_url: manifest.url_of(&sender)?.to_owned(),
            sender,
            sender_center,
            sender_cert,
            sender_key,
            recipient,
            envelope,
        })
    }
}

/// Where and how the workers connect.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    server_name: String,
    config: Arc<rustls::ClientConfig>,
    version: HttpVersion,
}

impl Target {
    async fn connect(&self) -> Result<Connection, ClientError> {
        let mut conn = Connection::connect(
            self.addr,
            &self.server_name,
            Arc::clone(&self.config),
            self.version,
        )
        .await?;
        conn.set_timeout(REQUEST_TIMEOUT);
        Ok(conn)
    }

    fn tag(&self) -> &'static str {
        match self.version {
            HttpVersion::Http1 => "h1",
            HttpVersion::Http2 => "h2",
        }
    }
}

/// The envelope serialized once, split around its `id` so each request only splices in
/// a fresh id instead of re-serializing the JSON.
#[derive(Clone)]
struct BodyTemplate {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl BodyTemplate {
    const PLACEHOLDER: &'static str = "plusgate-bench-id-placeholder";

    fn new(envelope: &serde_json::Value) -> anyhow::Result<BodyTemplate> {
        let mut envelope = envelope.clone();
        let object = envelope
            .as_object_mut()
            .ok_or_else(|| anyhow!("the referral example is not a JSON object"))?;
        object.insert("id".into(), Self::PLACEHOLDER.into());
        let text = serde_json::to_string(&envelope)?;
        let quoted = format!("\"{}\"", Self::PLACEHOLDER);
        let (prefix, suffix) = match text.split_once(&quoted) {
            Some(parts) if !parts.1.contains(&quoted) => parts,
            _ => bail!("the referral example already contains the bench's id placeholder"),
        };
        Ok(BodyTemplate {
            prefix: format!("{prefix}\"").into_bytes(),
            suffix: format!("\"{suffix}").into_bytes(),
        })
    }

    /// The body with `id` spliced in; `id` must not need JSON escaping.
    fn body(&self, id: &str) -> Bytes {
        let mut body = Vec::with_capacity(self.prefix.len() + id.len() + self.suffix.len());
        body.extend_from_slice(&self.prefix);
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(&self.suffix);
        Bytes::from(body)
    }
}

/// Sends one referral and fails the bench with the node's answer if it is not `202`,
/// so that a misconfiguration shows as one clear error instead of N × errors.
async fn preflight(target: &Target, template: &BodyTemplate, run_tag: &str) -> anyhow::Result<()> {
    let id = format!("bench-{run_tag}-{}-preflight", target.tag());
    let mut conn = target
        .connect()
        .await
        .map_err(doing("the node is not reachable"))?;
    let response = conn
        .send(
            Method::POST,
            "/v1/messages",
            Some((template.body(&id), "application/json")),
        )
        .await
        .map_err(doing("sending the first referral"))?;
    if response.status != StatusCode::ACCEPTED {
        bail!(
            "the node answered the first referral with {}: {}",
            response.status,
            truncate(&response.text(), 2000)
        );
    }
    Ok(())
}

/// The shared clock of one run.
#[derive(Clone, Copy)]
struct Window {
    /// End of the warm-up, start of the measured window.
    start: Instant,
    /// End of the measured window; no request is started after it.
    end: Instant,
}

/// Runs one load phase with `args.connections` requests in flight.
async fn load(
    target: &Target,
    template: &BodyTemplate,
    run_tag: &str,
    args: &BenchArgs,
    node: Option<&SpawnedNode>,
) -> anyhow::Result<RunReport> {
    let workers = usize::from(args.connections);
    let tcp_connections = match target.version {
        HttpVersion::Http1 => workers,
        HttpVersion::Http2 => (workers / STREAMS_PER_H2_CONNECTION).max(1),
    };
    let mut connections = Vec::with_capacity(tcp_connections);
    for _ in 0..tcp_connections {
        connections.push(target.connect().await?);
    }

    let shared = Arc::new(WorkerShared {
        target: target.clone(),
        id_prefix: format!("bench-{run_tag}-{}", target.tag()),
        template: template.clone(),
    });
    let now = Instant::now();
    let window = Window {
        start: now + Duration::from_secs(args.warmup_s.into()),
        end: now + Duration::from_secs(u64::from(args.warmup_s) + u64::from(args.duration_s)),
    };
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let conn = match target.version {
            HttpVersion::Http1 => connections.pop(),
            HttpVersion::Http2 => connections[worker % tcp_connections].try_clone(),
        };
        tasks.spawn(run_worker(Arc::clone(&shared), worker, conn, window));
    }
    // The workers' clones keep the HTTP/2 connections open; drop ours.
    drop(connections);

    tokio::time::sleep_until(window.start).await;
    let cpu_start = node.and_then(|n| n.usage().ok());
    tokio::time::sleep_until(window.end).await;
    let cpu_end = node.and_then(|n| n.usage().ok());

    // Workers stop starting requests at `window.end`; the last ones finish within
    // REQUEST_TIMEOUT. The extra margin only guards against a bug in that reasoning.
    let deadline = window.end + REQUEST_TIMEOUT + Duration::from_secs(5);
    let mut total = WorkerStats::new();
    while let Some(joined) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .map_err(|_| anyhow!("bench workers did not stop in time"))?
    {
        total.merge(joined.map_err(doing("a bench worker panicked"))?);
    }

    let measured_s = window.end.duration_since(window.start).as_secs_f64();
    let node_usage = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => {
            let cpu_s = (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / USER_HZ;
            Some(NodeUsage {
                cpu_s,
                cpu_percent: 100.0 * cpu_s / measured_s,
                cpu_us_per_accepted: (total.accepted > 0)
                    .then(|| cpu_s * 1e6 / total.accepted as f64),
                peak_rss_mib: b.peak_rss_kib as f64 / 1024.0,
            })
        }
        _ => None,
    };
    Ok(RunReport {
        http: target.version.to_string(),
        tcp_connections,
        streams_per_connection: workers.div_ceil(tcp_connections),
        measured_s,
        accepted: total.accepted,
        accepted_per_s: total.accepted as f64 / measured_s,
        latency_ms: LatencyMs::from_histogram(&total.latency),
        errors_total: total.errors.values().map(|e| e.count).sum(),
        errors: total.errors,
        reconnects: total.reconnects,
        node: node_usage,
        pull: None,
    })
}

/// What all workers of a run share.
struct WorkerShared {
    target: Target,
    id_prefix: String,
    template: BodyTemplate,
}

/// One closed-loop worker: sends the next request when the previous one is answered,
/// until `window.end`. Reconnects when its connection fails.
async fn run_worker(
    shared: Arc<WorkerShared>,
    worker: usize,
    mut conn: Option<Connection>,
    window: Window,
) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut n: u64 = 0;
    while Instant::now() < window.end {
        let Some(c) = conn.as_mut() else {
            match shared.target.connect().await {
                Ok(c) => {
                    stats.reconnects += 1;
                    conn = Some(c);
                }
                Err(e) => {
                    if Instant::now() >= window.start {
                        stats.error(error_kind(&e), &e.to_string());
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
            continue;
        };
        n += 1;
        let id = format!("{}-{worker}-{n}", shared.id_prefix);
        let body = shared.template.body(&id);
        let sent_at = Instant::now();
        let result = c
            .send(
                Method::POST,
                "/v1/messages",
                Some((body, "application/json")),
            )
            .await;
        let done_at = Instant::now();
        let broken = result.is_err() && c.is_closed();
        if broken || matches!(result, Err(ClientError::Timeout { .. })) {
            // HTTP/1.1 cannot reuse a connection with a request still pending on it.
            conn = None;
        }
        if done_at < window.start || done_at > window.end {
            continue;
        }
        match result {
            Ok(response) if response.status == StatusCode::ACCEPTED => {
                stats.accepted += 1;
                stats.latency.record(micros(done_at - sent_at));
            }
            Ok(response) => stats.error(
                &format!("status {}", response.status.as_u16()),
                &response.text(),
            ),
            Err(e) => stats.error(error_kind(&e), &e.to_string()),
        }
    }
    stats
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
        ClientError::Connect { .. } => "connect",
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

/// One worker's (or, merged, one run's) counts.
struct WorkerStats {
    accepted: u64,
    latency: Histogram,
    errors: BTreeMap<String, ErrorCount>,
    reconnects: u64,
}

impl WorkerStats {
    fn new() -> WorkerStats {
        WorkerStats {
            accepted: 0,
            latency: Histogram::new(),
            errors: BTreeMap::new(),
            reconnects: 0,
        }
    }

    fn error(&mut self, kind: &str, detail: &str) {
        let entry = self
            .errors
            .entry(kind.to_owned())
            .or_insert_with(|| ErrorCount {
                count: 0,
                first: truncate(detail, 300),
            });
        entry.count += 1;
    }

    fn merge(&mut self, other: WorkerStats) {
        self.accepted += other.accepted;
        self.latency.merge(&other.latency);
        self.reconnects += other.reconnects;
        for (kind, e) in other.errors {
            self.errors
                .entry(kind)
                .and_modify(|mine| mine.count += e.count)
                .or_insert(e);
        }
    }
}

/// A log-linear histogram of microsecond values: exact below 128 µs, then 64 equal
/// sub-buckets per power of two, so a reported value is at most 1/64 above the true one.
/// Values are clamped to 2^38 µs (about 76 hours).
#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: u128,
    max_us: u64,
}

impl Histogram {
    const SUB_BITS: u32 = 6;
    const SUB_LEN: u64 = 1 << Self::SUB_BITS;
    /// Values below this are counted exactly, one bucket each.
    const EXACT_LEN: u64 = 2 * Self::SUB_LEN;
    const EXPONENT_FIRST: u32 = Self::SUB_BITS + 1;
    const EXPONENT_END: u32 = 38;
    const VALUE_MAX: u64 = (1 << Self::EXPONENT_END) - 1;
    const BUCKETS_LEN: usize = (Self::EXACT_LEN
        + (Self::EXPONENT_END - Self::EXPONENT_FIRST) as u64 * Self::SUB_LEN)
        as usize;

    fn new() -> Histogram {
        Histogram {
            counts: vec![0; Self::BUCKETS_LEN],
            total: 0,
            sum_us: 0,
            max_us: 0,
        }
    }

    fn index(value: u64) -> usize {
        let value = value.min(Self::VALUE_MAX);
        if value < Self::EXACT_LEN {
            return value as usize;
        }
        let exponent = 63 - value.leading_zeros();
        let sub = (value >> (exponent - Self::SUB_BITS)) & (Self::SUB_LEN - 1);
        (Self::EXACT_LEN + u64::from(exponent - Self::EXPONENT_FIRST) * Self::SUB_LEN + sub)
            as usize
    }

    /// The largest value that falls in bucket `index`.
    fn bucket_high(index: usize) -> u64 {
        let index = index as u64;
        if index < Self::EXACT_LEN {
            return index;
        }
        let exponent = (index - Self::EXACT_LEN) / Self::SUB_LEN + u64::from(Self::EXPONENT_FIRST);
        let sub = (index - Self::EXACT_LEN) % Self::SUB_LEN;
        let width = 1u64 << (exponent - u64::from(Self::SUB_BITS));
        (1u64 << exponent) + sub * width + width - 1
    }

    fn record(&mut self, value_us: u64) {
        self.counts[Self::index(value_us)] += 1;
        self.total += 1;
        self.sum_us += u128::from(value_us);
        self.max_us = self.max_us.max(value_us);
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The value at quantile `q` (0 < q ≤ 1) by the nearest-rank method, reported as
    /// its bucket's upper bound (never above the exact maximum); `None` when empty.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        // The epsilon keeps float error in `q * total` from moving an exact rank up by one.
        let rank = ((q * self.total as f64 - 1e-9).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::bucket_high(index).min(self.max_us));
            }
        }
        Some(self.max_us)
    }

    fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_us as f64 / self.total as f64)
    }
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct LatencyMs {
    mean: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    p99_9: Option<f64>,
    max: Option<f64>,
}

impl LatencyMs {
    fn from_histogram(h: &Histogram) -> LatencyMs {
        let ms = |q: f64| h.quantile(q).map(|us| us as f64 / 1000.0);
        LatencyMs {
            mean: h.mean().map(|us| us / 1000.0),
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p99_9: ms(0.999),
            max: (h.total > 0).then(|| h.max_us as f64 / 1000.0),
        }
    }
}

/// The spawned node's resource use during the measured window.
#[derive(Debug, Clone, Serialize)]
struct NodeUsage {
    /// User + system CPU seconds used during the window.
    cpu_s: f64,
    /// `cpu_s` relative to the window (100 = one core busy).
    cpu_percent: f64,
    /// CPU microseconds per accepted message.
    cpu_us_per_accepted: Option<f64>,
    /// Peak resident set size since the node started (VmHWM), in MiB.
    peak_rss_mib: f64,
}

/// Result of draining the recipient's inbox after a run.
#[derive(Debug, Clone, Serialize)]
struct PullReport {
    /// Messages pulled and acknowledged.
    acked: u64,
    seconds: f64,
    acked_per_s: f64,
    /// False when the time bound stopped the drain before the inbox was empty.
    drained: bool,
}

/// One HTTP version's results.
#[derive(Debug, Clone, Serialize)]
struct RunReport {
    http: String,
    tcp_connections: usize,
    streams_per_connection: usize,
    measured_s: f64,
    accepted: u64,
    accepted_per_s: f64,
    latency_ms: LatencyMs,
    errors_total: u64,
    errors: BTreeMap<String, ErrorCount>,
    reconnects: u64,
    node: Option<NodeUsage>,
    pull: Option<PullReport>,
}

/// The whole bench report, printed as a table or as JSON.
#[derive(Debug, Clone, Serialize)]
struct Report {
    node_url: String,
    node_spawned: bool,
    sender: String,
    recipient: String,
    connections: usize,
    warmup_s: u64,
    duration_s: u64,
    runs: Vec<RunReport>,
}

impl Report {
    fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plusgate bench: {} → {} via {}{}",
            self.sender,
            self.recipient,
            self.node_url,
            if self.node_spawned {
                " (node started by the bench)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "{} requests in flight, {} s warm-up, {} s measured\n",
            self.connections, self.warmup_s, self.duration_s
        );
        let fmt_ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let mut rows: Vec<(&str, Vec<String>)> = vec![
            ("", self.runs.iter().map(|r| r.http.clone()).collect()),
            (
                "connections",
                self.runs
                    .iter()
                    .map(|r| match r.streams_per_connection {
                        1 => r.tcp_connections.to_string(),
                        s => format!("{} × {s} streams", r.tcp_connections),
                    })
                    .collect(),
            ),
            ("accepted", self.column(|r| r.accepted.to_string())),
            (
                "accepted/s",
                self.column(|r| format!("{:.1}", r.accepted_per_s)),
            ),
            (
                "latency mean ms",
                self.column(|r| fmt_ms(r.latency_ms.mean)),
            ),
            ("latency p50 ms", self.column(|r| fmt_ms(r.latency_ms.p50))),
            ("latency p90 ms", self.column(|r| fmt_ms(r.latency_ms.p90))),
            ("latency p99 ms", self.column(|r| fmt_ms(r.latency_ms.p99))),
            (
                "latency p99.9 ms",
                self.column(|r| fmt_ms(r.latency_ms.p99_9)),
            ),
            ("latency max ms", self.column(|r| fmt_ms(r.latency_ms.max))),
            ("errors", self.column(|r| r.errors_total.to_string())),
            ("reconnects", self.column(|r| r.reconnects.to_string())),
        ];
        if self.runs.iter().any(|r| r.node.is_some()) {
            let node = |f: fn(&NodeUsage) -> String| {
                self.column(move |r| r.node.as_ref().map_or_else(|| "-".to_owned(), f))
            };
            rows.push(("node CPU %", node(|n| format!("{:.0}", n.cpu_percent))));
            rows.push((
                "node CPU µs/msg",
                node(|n| {
                    n.cpu_us_per_accepted
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
                }),
            ));
            rows.push((
                "node peak RSS MiB",
                node(|n| format!("{:.1}", n.peak_rss_mib)),
            ));
        }
        if self.runs.iter().any(|r| r.pull.is_some()) {
            let pull = |f: fn(&PullReport) -> String| {
                self.column(move |r| r.pull.as_ref().map_or_else(|| "-".to_owned(), f))
            };
            rows.push(("inbox acked", pull(|p| p.acked.to_string())));
            rows.push((
                "inbox acked/s",
                pull(|p| {
                    format!(
                        "{:.1}{}",
                        p.acked_per_s,
                        if p.drained { "" } else { " (stopped)" }
                    )
                }),
            ));
        }
        let label_width = rows
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let cell_width = rows
            .iter()
            .flat_map(|(_, cells)| cells.iter().map(|c| c.chars().count()))
            .max()
            .unwrap_or(0);
        for (label, cells) in &rows {
            let _ = write!(out, "{label:<label_width$}");
            for cell in cells {
                let _ = write!(out, "  {cell:>cell_width$}");
            }
            out.push('\n');
        }
        for run in &self.runs {
            for (kind, e) in &run.errors {
                let _ = writeln!(
                    out,
                    "\n{} {kind}: {} × (first: {})",
                    run.http, e.count, e.first
                );
            }
        }
        out
    }

    fn column(&self, cell: impl Fn(&RunReport) -> String) -> Vec<String> {
        self.runs.iter().map(cell).collect()
    }
}

/// Pulls and acknowledges the recipient's inbox until it is empty or [`PULL_TIME_MAX`]
/// has passed, over one HTTP/2 connection.
async fn drain_inbox(
    setup: &Setup,
    manifest: &LoadedManifest,
    node: Option<&SpawnedNode>,
) -> anyhow::Result<PullReport> {
    let (cert, key) = manifest.agency_identity(&setup.recipient)?;
    let url = match node {
        // The bench's own node serves the recipient too (one-center federation).
        Some(node) => format!("https://{}", node.addr),
        None => manifest.url_of(&setup.recipient)?.to_owned(),
    };
    let config = client::client_config(&setup.ca, Some((&cert, &key)), HttpVersion::Http2)?;
    let mut conn = Agent::from_url(&url, config, HttpVersion::Http2)?
        .connect()
        .await
        .map_err(doing(format!("connecting to {url} as {}", setup.recipient)))?;
    conn.set_timeout(REQUEST_TIMEOUT);

    let started = Instant::now();
    let deadline = started + PULL_TIME_MAX;
    let mut acked = 0u64;
    let mut drained = false;
    let pull_path = format!("/v1/inbox?max={PULL_BATCH_LEN}&wait=0");
    while Instant::now() < deadline {
        let response = conn.send(Method::GET, &pull_path, None).await?;
        if response.status != StatusCode::OK {
            bail!(
                "inbox pull answered {}: {}",
                response.status,
                truncate(&response.text(), 2000)
            );
        }
        let page: InboxPage = response.json()?;
        if page.messages.is_empty() {
            drained = true;
            break;
        }
        let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "ids": ids }))?;
        let response = conn
            .send(
                Method::POST,
                "/v1/inbox/ack",
                Some((Bytes::from(body), "application/json")),
            )
            .await?;
        if response.status != StatusCode::OK {
            bail!(
                "inbox ack answered {}: {}",
                response.status,
                truncate(&response.text(), 2000)
            );
        }
        acked += ids.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(PullReport {
        acked,
        seconds,
        acked_per_s: if seconds > 0.0 {
            acked as f64 / seconds
        } else {
            0.0
        },
        drained,
    })
}

/// The part of `GET /v1/inbox`'s answer the drain needs.
#[derive(serde::Deserialize)]
struct InboxPage {
    messages: Vec<InboxMessage>,
}

#[derive(serde::Deserialize)]
struct InboxMessage {
    id: String,
}

/// A temporary folder removed (with its contents) when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> anyhow::Result<ScratchDir> {
        let name = format!(
            "plusgate-bench-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).map_err(doing(format!("creating {}", path.display())))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resource counters of a running process, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct ProcessUsage {
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// VmHWM, in KiB.
    peak_rss_kib: u64,
}

/// A `plusgate serve` child process, killed when dropped.
struct SpawnedNode {
    child: Child,
    addr: SocketAddr,
}

impl SpawnedNode {
    /// Starts `plusgate serve --config <config> --listen 127.0.0.1:0` (this same
    /// executable), logging to `<log_dir>/node.log`, and waits for its listening line.
    fn start(config: &Path, log_dir: &Path) -> anyhow::Result<SpawnedNode> {
        let exe = std::env::current_exe().map_err(doing("finding the plusgate executable"))?;
        let log_path = log_dir.join("node.log");
        let log = std::fs::File::create(&log_path)
            .map_err(doing(format!("creating {}", log_path.display())))?;
        let mut child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(doing(format!("starting {} serve", exe.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("the node's stdout was not captured"))?;
        // From here on, an early return drops `node`, which kills the child.
        let mut node = SpawnedNode {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keep reading to the end so the node never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        node.addr = rx.recv_timeout(NODE_START_TIMEOUT).map_err(|_| {
            anyhow!(
                "the node did not report a listening address within {NODE_START_TIMEOUT:?}; \
                 its log ends with:\n{}",
                log_tail(&log_path)
            )
        })?;
        Ok(node)
    }

    fn usage(&self) -> anyhow::Result<ProcessUsage> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(ProcessUsage {
            cpu_ticks: parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("unexpected /proc stat"))?,
            peak_rss_kib: parse_vm_hwm_kib(&status)
                .ok_or_else(|| anyhow!("no VmHWM in /proc status"))?,
        })
    }

    /// Kills the node now (dropping does the same).
    fn stop(self) {}
}

impl Drop for SpawnedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the node's `plusgate listening on https://ADDR (node ID)` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("plusgate listening on https://")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// utime + stime from `/proc/<pid>/stat`. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmHWM in KiB from `/proc/<pid>/status`.
fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The last lines of the node's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_exact_below_128_us() {
        for v in 0..128 {
            assert_eq!(Histogram::bucket_high(Histogram::index(v)), v);
        }
    }

    #[test]
    fn histogram_buckets_are_within_one_64th() {
        let mut v = 128u64;
        let mut previous = Histogram::index(127);
        while v < Histogram::VALUE_MAX {
            let index = Histogram::index(v);
            assert!(index == previous || index == previous + 1, "gap at {v}");
            let high = Histogram::bucket_high(index);
            assert!(high >= v, "{v} above its bucket {high}");
            assert!(high - v <= v / 64, "{v} → {high}");
            previous = index;
            v += 1 + v / 200;
        }
        let last = Histogram::index(Histogram::VALUE_MAX);
        assert_eq!(last, Histogram::BUCKETS_LEN - 1);
        assert_eq!(Histogram::bucket_high(last), Histogram::VALUE_MAX);
        assert_eq!(Histogram::index(u64::MAX), last);
    }

    #[test]
    fn bucket_edges_are_contiguous() {
        for index in Histogram::EXACT_LEN as usize..Histogram::BUCKETS_LEN - 1 {
            let high = Histogram::bucket_high(index);
            assert_eq!(Histogram::index(high), index);
            assert_eq!(Histogram::index(high + 1), index + 1);
        }
    }

    fn check_quantiles(values: &[u64], expected: &[(f64, Option<u64>)]) {
        let mut h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        for &(q, want) in expected {
            assert_eq!(h.quantile(q), want, "q={q} of {values:?}");
        }
    }

    #[test]
    fn quantiles_nearest_rank() {
        check_quantiles(&[], &[(0.5, None)]);
        check_quantiles(&[7], &[(0.5, Some(7)), (0.999, Some(7))]);
        check_quantiles(
            &(1..=100).collect::<Vec<_>>(),
            &[
                (0.5, Some(50)),
                (0.9, Some(90)),
                (0.99, Some(99)),
                (1.0, Some(100)),
            ],
        );
        // 1000 and 5000 are not bucket edges: reported as their bucket's upper bound,
        // except the maximum, which is exact.
        check_quantiles(
            &[10, 10, 10, 1000, 5000],
            &[(0.5, Some(10)), (0.7, Some(1007)), (0.999, Some(5000))],
        );
    }

    #[test]
    fn merge_adds_counts_and_keeps_max() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(5);
        b.record(3);
        b.record(200_000);
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.quantile(0.5), Some(5));
        assert_eq!(a.quantile(1.0), Some(200_000));
        assert_eq!(a.mean(), Some((5.0 + 3.0 + 200_000.0) / 3.0));
    }

    #[test]
    fn body_template_splices_the_id() {
        let envelope = serde_json::json!({"type": "referral", "id": "old", "payload": {"a": 1}});
        let template = BodyTemplate::new(&envelope).expect("template");
        let body = template.body("bench-x-h1-0-1");
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(parsed["id"], "bench-x-h1-0-1");
        assert_eq!(parsed["payload"]["a"], 1);
        assert_eq!(parsed["type"], "referral");
    }

    #[test]
    fn listening_line() {
        let check = |line: &str, want: Option<&str>| {
            assert_eq!(
                listening_addr(line),
                want.map(|a| a.parse().expect("addr")),
                "{line}"
            );
        };
        check(
            "plusgate listening on https://127.0.0.1:40123 (node suwon)",
            Some("127.0.0.1:40123"),
        );
        check(
            "plusgate listening on https://[::1]:7443",
            Some("[::1]:7443"),
        );
        check("plusgate listening on http://127.0.0.1:1", None);
        check("starting", None);
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (plus gate) (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        let status = "Name:\tplusgate\nVmPeak:\t  9000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(4321));
        assert_eq!(parse_vm_hwm_kib("Name: x\n"), None);
    }

    #[test]
    fn truncate_counts_chars() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("가나다라", 2), "가나…");
    }
}
