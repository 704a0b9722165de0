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
//! the first center's node (A) while [`PULLERS`] long-polling pullers at the second (B),
//! holding the recipient agency's certificate, pull and acknowledge everything that
//! arrives. Pushes and pulls use HTTP/2. Two phases:
//!
//! - **throughput** (closed loop, as above, ids `xbench-<run>-tp-<worker>-<n>`): accepted/s
//!   at A and delivered/s at B over the same measured window (a message is delivered when
//!   a pull at B first returns it), the backlog `accepted − pulled` at the window's end,
//!   and how long B then takes to receive the rest;
//! - **latency** (open loop, `--rate N`/s, default [`DEFAULT_RATE`], ids
//!   `xbench-<run>-lat-<i>`): send `i` is due `i / N` s after the start ([`Schedule`]),
//!   whatever the answers to earlier sends; at most `--connections` are in flight (a send
//!   that finds them all busy waits, and its lag behind the timetable is reported). The
//!   latency of a message is from the instant its push was sent at A to the instant a pull
//!   at B first returned it; a message not pulled within [`ARRIVAL_GRACE`] after the last
//!   scheduled send counts as never arrived.
//!
//! Without `--rate` both phases run, throughput first (and the latency phase starts once
//! B has received the throughput backlog); with `--rate` only the latency phase runs. The
//! nodes are stopped with SIGTERM at the end, and the federation folder (with each node's
//! log in `<center>/node.log`) is removed unless `--keep` is given.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dev::manifest::{LoadedManifest, Manifest};
use crate::node::client::{self, Agent, ClientError, Connection, HttpVersion};

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
}

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
            }
            Ok(())
        }
        // Returning drops the spawned nodes' guards, which stop them.
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    }
}

/// The report of either mode.
enum AnyReport {
    Single(Report),
    Cross(Box<CrossReport>),
}

async fn run_mode(args: &BenchArgs) -> anyhow::Result<AnyReport> {
    if args.cross {
        Ok(AnyReport::Cross(Box::new(run_cross(args).await?)))
    } else {
        Ok(AnyReport::Single(run_inner(args).await?))
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
                scratch.path.display()
            );
            let manifest = create_federation(&scratch.path)?;
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
        register_consent(&target, &setup.consent).await?;
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
    let args = crate::dev::devinit::DevInitArgs {
        out: dir.to_owned(),
        centers: vec!["suwon".to_owned()],
        base_port: 7443,
    };
    crate::dev::devinit::run(&args).map_err(doing("creating the dev federation"))
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
    /// The consent the envelope cites, registered by `sender` before the load.
    consent: serde_json::Value,
}

/// Id of the consent the bench registers and its referrals cite.
const BENCH_CONSENT_ID: &str = "cns-bench";

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

/// Registers the bench's consent as the sender (the same one again is a harmless 200).
async fn register_consent(target: &Target, consent: &serde_json::Value) -> anyhow::Result<()> {
    let mut conn = target
        .connect()
        .await
        .map_err(doing("the node is not reachable"))?;
    let body = Bytes::from(serde_json::to_vec(consent)?);
    let response = conn
        .send(
            Method::POST,
            "/v1/consents",
            Some((body, "application/json")),
        )
        .await
        .map_err(doing("registering the bench's consent"))?;
    if !matches!(response.status, StatusCode::CREATED | StatusCode::OK) {
        bail!(
            "the node refused the bench's consent with {}: {}",
            response.status,
            truncate(&response.text(), 2000)
        );
    }
    Ok(())
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
            ("/consent_id", &BENCH_CONSENT_ID.to_owned()),
        ] {
            if let Some(slot) = envelope.pointer_mut(pointer) {
                *slot = serde_json::Value::String(value.clone());
            }
        }
        let consent = bench_consent(manifest, &sender, &recipient)?;
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
            consent,
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
    let (connections, tcp_connections) = connect_workers(target, workers).await?;
    let shared = Arc::new(WorkerShared {
        target: target.clone(),
        id_prefix: format!("bench-{run_tag}-{}", target.tag()),
        template: template.clone(),
    });
    let window = Window::after_warmup(Instant::now(), args);
    let tasks = spawn_workers(&shared, connections, workers, window);

    tokio::time::sleep_until(window.start).await;
    let cpu_start = node.and_then(|n| n.usage().ok());
    tokio::time::sleep_until(window.end).await;
    let cpu_end = node.and_then(|n| n.usage().ok());
    let total = join_workers(tasks, window).await?;

    let measured_s = window.seconds();
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
        node: NodeUsage::between(cpu_start, cpu_end, measured_s, total.accepted),
        pull: None,
    })
}

impl Window {
    /// `args.warmup_s` from `now` to its end, then `args.duration_s` measured.
    fn after_warmup(now: Instant, args: &BenchArgs) -> Window {
        Window {
            start: now + Duration::from_secs(args.warmup_s.into()),
            end: now + Duration::from_secs(u64::from(args.warmup_s) + u64::from(args.duration_s)),
        }
    }

    /// The measured window's length in seconds.
    fn seconds(&self) -> f64 {
        self.end.duration_since(self.start).as_secs_f64()
    }
}

/// Opens the connections `workers` closed-loop workers use: one each for HTTP/1.1,
/// `max(1, workers / 16)` shared ones for HTTP/2. Returns them and their number.
async fn connect_workers(
    target: &Target,
    workers: usize,
) -> anyhow::Result<(Vec<Connection>, usize)> {
    let tcp_connections = match target.version {
        HttpVersion::Http1 => workers,
        HttpVersion::Http2 => (workers / STREAMS_PER_H2_CONNECTION).max(1),
    };
    let mut connections = Vec::with_capacity(tcp_connections);
    for _ in 0..tcp_connections {
        connections.push(target.connect().await?);
    }
    Ok((connections, tcp_connections))
}

/// Spawns `workers` closed-loop workers on `connections` (from [`connect_workers`]).
fn spawn_workers(
    shared: &Arc<WorkerShared>,
    mut connections: Vec<Connection>,
    workers: usize,
    window: Window,
) -> JoinSet<WorkerStats> {
    let tcp_connections = connections.len().max(1);
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let conn = match shared.target.version {
            HttpVersion::Http1 => connections.pop(),
            HttpVersion::Http2 => connections
                .get(worker % tcp_connections)
                .and_then(Connection::try_clone),
        };
        tasks.spawn(run_worker(Arc::clone(shared), worker, conn, window));
    }
    // The workers' clones keep the HTTP/2 connections open; `connections` is dropped here.
    tasks
}

/// Waits for the workers of [`spawn_workers`] and adds up their counts.
async fn join_workers(
    mut tasks: JoinSet<WorkerStats>,
    window: Window,
) -> anyhow::Result<WorkerStats> {
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
    Ok(total)
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
        if matches!(&result, Ok(r) if r.status == StatusCode::ACCEPTED) {
            stats.accepted_all += 1;
            if done_at <= window.end {
                stats.accepted_by_end += 1;
            }
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

/// Counts one error of `kind` in `errors`, keeping the first one's `detail`.
fn count_error(errors: &mut BTreeMap<String, ErrorCount>, kind: &str, detail: &str) {
    let entry = errors.entry(kind.to_owned()).or_insert_with(|| ErrorCount {
        count: 0,
        first: truncate(detail, 300),
    });
    entry.count += 1;
}

/// One worker's (or, merged, one run's) counts.
struct WorkerStats {
    /// `202`s completing inside the measured window.
    accepted: u64,
    /// Every `202`, warm-up and after the window included.
    accepted_all: u64,
    /// `202`s completing before the window's end, warm-up included.
    accepted_by_end: u64,
    latency: Histogram,
    errors: BTreeMap<String, ErrorCount>,
    reconnects: u64,
}

impl WorkerStats {
    fn new() -> WorkerStats {
        WorkerStats {
            accepted: 0,
            accepted_all: 0,
            accepted_by_end: 0,
            latency: Histogram::new(),
            errors: BTreeMap::new(),
            reconnects: 0,
        }
    }

    fn error(&mut self, kind: &str, detail: &str) {
        count_error(&mut self.errors, kind, detail);
    }

    fn errors_total(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    fn merge(&mut self, other: WorkerStats) {
        self.accepted += other.accepted;
        self.accepted_all += other.accepted_all;
        self.accepted_by_end += other.accepted_by_end;
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

impl NodeUsage {
    /// The use between two readings `measured_s` seconds apart, during which the node
    /// handled `messages` messages; `None` when either reading failed.
    fn between(
        start: Option<ProcessUsage>,
        end: Option<ProcessUsage>,
        measured_s: f64,
        messages: u64,
    ) -> Option<NodeUsage> {
        let (a, b) = (start?, end?);
        let cpu_s = (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / USER_HZ;
        Some(NodeUsage {
            cpu_s,
            cpu_percent: 100.0 * cpu_s / measured_s,
            cpu_us_per_accepted: (messages > 0).then(|| cpu_s * 1e6 / messages as f64),
            peak_rss_mib: b.peak_rss_kib as f64 / 1024.0,
        })
    }
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

/// A temporary folder removed (with its contents) when dropped, unless `keep` is set.
struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    fn create() -> anyhow::Result<ScratchDir> {
        let name = format!(
            "plusgate-bench-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).map_err(doing(format!("creating {}", path.display())))?;
        Ok(ScratchDir { path, keep: false })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("bench: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
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

/// A `plusgate serve` child process, stopped when dropped: killed, or for a `graceful`
/// one sent SIGTERM and given [`NODE_STOP_TIMEOUT`] to drain and exit before it is killed.
struct SpawnedNode {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
    graceful: bool,
}

impl SpawnedNode {
    /// Starts `plusgate serve --config <config> --listen 127.0.0.1:0` (this same
    /// executable), logging to `<log_dir>/node.log`, and waits for its listening line.
    fn start(config: &Path, log_dir: &Path) -> anyhow::Result<SpawnedNode> {
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        SpawnedNode::spawn(config, Some(any_port), &log_dir.join("node.log"), false)
    }

    /// Starts `plusgate serve --config <config>` (this same executable), with `--listen
    /// <listen>` if given, its stderr going to `log_path`, and waits for its listening line.
    fn spawn(
        config: &Path,
        listen: Option<SocketAddr>,
        log_path: &Path,
        graceful: bool,
    ) -> anyhow::Result<SpawnedNode> {
        let exe = std::env::current_exe().map_err(doing("finding the plusgate executable"))?;
        let log = std::fs::File::create(log_path)
            .map_err(doing(format!("creating {}", log_path.display())))?;
        let mut command = Command::new(&exe);
        command.arg("serve").arg("--config").arg(config);
        if let Some(listen) = listen {
            command.arg("--listen").arg(listen.to_string());
        }
        let mut child = command
            // The log is a file: no terminal colour codes in it.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(doing(format!("starting {} serve", exe.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("the node's stdout was not captured"))?;
        // From here on, an early return drops `node`, which stops the child.
        let mut node = SpawnedNode {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path: log_path.to_owned(),
            graceful,
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
                log_tail(log_path)
            )
        })?;
        Ok(node)
    }

    /// How the node ended, if it has.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// Sends SIGTERM, waits up to [`NODE_STOP_TIMEOUT`] for the node to exit, kills it if
    /// it has not; returns how it ended.
    fn terminate(&mut self) -> String {
        if let Some(ended) = self.exited() {
            return ended;
        }
        // std has no SIGTERM and this crate forbids `unsafe`, so ask kill(1).
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if signalled {
            let deadline = std::time::Instant::now() + NODE_STOP_TIMEOUT;
            while std::time::Instant::now() < deadline {
                if let Some(ended) = self.exited() {
                    return ended;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let status = self.child.wait();
        let how = if signalled {
            format!("killed: no exit within {NODE_STOP_TIMEOUT:?} of SIGTERM")
        } else {
            "killed: SIGTERM could not be sent".to_owned()
        };
        match status {
            Ok(status) => format!("{how} ({status})"),
            Err(_) => how,
        }
    }

    fn usage(&self) -> anyhow::Result<ProcessUsage> {
        process_usage(&self.child.id().to_string())
    }

    /// Kills the node now (dropping does the same).
    fn stop(self) {}
}

impl Drop for SpawnedNode {
    fn drop(&mut self) {
        if self.graceful {
            self.terminate();
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time and peak RSS of process `pid` (a number, or `self`), from `/proc`.
fn process_usage(pid: &str) -> anyhow::Result<ProcessUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(ProcessUsage {
        cpu_ticks: parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("unexpected /proc stat"))?,
        peak_rss_kib: parse_vm_hwm_kib(&status)
            .ok_or_else(|| anyhow!("no VmHWM in /proc status"))?,
    })
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

// ---------------------------------------------------------------------------------------
// `--cross`: forwarding from one center's node to another's
// ---------------------------------------------------------------------------------------

/// The two centers of the cross-center federation, sender's first (the `referral-remote`
/// example goes from the first center to the second).
const CROSS_CENTERS: [&str; 2] = ["suwon", "gangseo"];

/// Long-polling pullers at B, each on its own HTTP/2 connection.
const PULLERS: usize = 4;

/// Messages asked for per pull at B, lowered to B's `inbox_pull_max` if that is smaller.
const PULL_MAX_WANTED: usize = 500;

/// Long-poll wait of each pull at B, in seconds.
const PULL_WAIT_S: u64 = 1;

/// Acks one puller may have outstanding while it pulls again.
const ACKS_IN_FLIGHT_MAX: usize = 8;

/// The latency phase's rate when `--rate` is not given, messages per second.
const DEFAULT_RATE: u32 = 1000;

/// Largest `--rate`.
const RATE_MAX: u32 = 100_000;

/// Most sends one latency phase may schedule (each costs 9 bytes of bookkeeping).
const SENDS_MAX: u64 = 50_000_000;

/// How long after the latency phase's last scheduled send a message may still arrive.
const ARRIVAL_GRACE: Duration = Duration::from_secs(10);

/// How long the first forwarded message may take before the bench decides that
/// forwarding does not work.
const FORWARD_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on waiting for B to receive the throughput phase's backlog.
const DRAIN_TIME_MAX: Duration = Duration::from_secs(120);

/// The wait for the backlog gives up early when nothing arrives at B for this long.
const DRAIN_STALL_MAX: Duration = Duration::from_secs(15);

/// How long a node may take to exit after SIGTERM before it is killed.
const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The product owner's targets for forwarding between two centers.
const TARGET_DELIVERED_PER_S: f64 = 5000.0;
const TARGET_P99_MS: f64 = 50.0;

/// Loopback ports the federation may use: below Linux's ephemeral range (32768–60999),
/// so no outgoing connection takes one between the bind test and the node's start.
const PORT_FIRST: u16 = 20_000;
const PORT_END: u16 = 32_000;

/// Runs `--cross`: federation, nodes, pullers, the phases, and the clean-up.
async fn run_cross(args: &BenchArgs) -> anyhow::Result<CrossReport> {
    // Declared before `nodes` so it is dropped after them: the nodes stop, then the
    // folder goes.
    let mut scratch = ScratchDir::create()?;
    scratch.keep = args.keep;
    let base_port = free_port_base(CROSS_CENTERS.len() as u16)?;
    eprintln!(
        "bench: creating a two-center dev federation in {} (ports {base_port}–{})",
        scratch.path.display(),
        base_port + CROSS_CENTERS.len() as u16 - 1
    );
    let manifest = crate::dev::devinit::run(&crate::dev::devinit::DevInitArgs {
        out: scratch.path.clone(),
        centers: CROSS_CENTERS.iter().map(|c| (*c).to_owned()).collect(),
        base_port,
    })
    .map_err(doing("creating the dev federation"))?;
    let setup = CrossSetup::from_manifest(&manifest)?;

    // B first, so that A's forwarder finds it up.
    let mut nodes = CrossNodes::start(&setup)?;
    eprintln!(
        "bench: node {} listening on {}, node {} on {}",
        setup.center_a, setup.url_a, setup.center_b, setup.url_b
    );

    let run_tag = uuid::Uuid::now_v7().simple().to_string();
    let template = BodyTemplate::new(&setup.envelope)?;
    let target_a = setup.target_a()?;
    register_consent(&target_a, &setup.consent).await?;
    let arrivals = Arc::new(Arrivals::default());
    let pullers = Pullers::start(&setup, Arc::clone(&arrivals)).await?;

    let first_forward =
        check_forwarding(&target_a, &template, &run_tag, &arrivals, &mut nodes).await?;
    eprintln!(
        "bench: forwarding works (first message pullable at B after {:.1} ms)",
        first_forward.as_secs_f64() * 1e3
    );

    let throughput = match args.rate {
        Some(_) => None,
        None => {
            eprintln!(
                "bench: throughput phase: {} in flight, {} s warm-up + {} s measured",
                args.connections, args.warmup_s, args.duration_s
            );
            Some(
                throughput_phase(args, &target_a, &template, &run_tag, &arrivals, &mut nodes)
                    .await?,
            )
        }
    };
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    eprintln!(
        "bench: latency phase: {rate}/s open loop, at most {} in flight, {} s warm-up + {} s measured",
        args.connections, args.warmup_s, args.duration_s
    );
    let latency = latency_phase(
        args, rate, &target_a, &template, &run_tag, &arrivals, &mut nodes,
    )
    .await?;

    pullers.stop().await;
    let node_exit = nodes.stop();
    let pull_errors = arrivals.errors();
    Ok(CrossReport {
        mode: "cross",
        sender: setup.sender,
        recipient: setup.recipient,
        node_a_url: setup.url_a,
        node_b_url: setup.url_b,
        federation_dir: args.keep.then(|| scratch.path.display().to_string()),
        http: HttpVersion::Http2.to_string(),
        connections: args.connections.into(),
        warmup_s: args.warmup_s.into(),
        duration_s: args.duration_s.into(),
        pullers: PULLERS,
        pull_max: setup.pull_max,
        pull_wait_s: PULL_WAIT_S,
        first_forward_ms: first_forward.as_secs_f64() * 1e3,
        throughput,
        latency,
        pulls: arrivals.pulls.load(Ordering::Relaxed),
        duplicates: arrivals.duplicates.load(Ordering::Relaxed),
        pull_errors_total: pull_errors.values().map(|e| e.count).sum(),
        pull_errors,
        node_exit,
    })
}

/// A base port such that `base .. base + count` are free on 127.0.0.1 now, picked at
/// random in [`PORT_FIRST`, `PORT_END`) so that concurrent benches and tests rarely
/// collide.
fn free_port_base(count: u16) -> anyhow::Result<u16> {
    // The low 62 bits of a v7 UUID are random.
    let seed = uuid::Uuid::now_v7().as_u128() as u64;
    for attempt in 0..500u64 {
        let base = port_candidate(seed.wrapping_add(attempt.wrapping_mul(7919)), count);
        let free = (0..count)
            .all(|i| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, base + i)).is_ok());
        if free {
            return Ok(base);
        }
    }
    bail!("found no {count} free consecutive ports on 127.0.0.1 in {PORT_FIRST}..{PORT_END}")
}

/// The base port `seed` picks: `base .. base + count` lies in [`PORT_FIRST`, `PORT_END`).
fn port_candidate(seed: u64, count: u16) -> u16 {
    let span = u64::from(PORT_END - PORT_FIRST - count + 1);
    PORT_FIRST + (seed % span) as u16
}

/// Everything `--cross` needs from the federation, resolved.
struct CrossSetup {
    ca: PathBuf,
    sender: String,
    sender_identity: (PathBuf, PathBuf),
    recipient: String,
    recipient_identity: (PathBuf, PathBuf),
    center_a: String,
    center_b: String,
    config_a: PathBuf,
    config_b: PathBuf,
    url_a: String,
    url_b: String,
    /// The `referral-remote` example, sent as it is apart from its `id` and consent.
    envelope: serde_json::Value,
    /// The consent the envelope cites, registered at A by the sender.
    consent: serde_json::Value,
    /// Messages per pull at B.
    pull_max: usize,
}

impl CrossSetup {
    fn from_manifest(manifest: &LoadedManifest) -> anyhow::Result<CrossSetup> {
        let (example_path, sender) = manifest.example("referral-remote")?;
        let sender = sender.to_owned();
        let text = std::fs::read_to_string(&example_path)
            .map_err(doing(format!("reading {}", example_path.display())))?;
        let mut envelope: serde_json::Value = serde_json::from_str(&text)
            .map_err(doing(format!("parsing {}", example_path.display())))?;
        envelope["consent_id"] = BENCH_CONSENT_ID.into();
        let recipient = envelope
            .get("to")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{} has no \"to\"", example_path.display()))?;
        let center_of = |agency: &str| {
            agency
                .split_once('/')
                .map(|(center, _)| center.to_owned())
                .ok_or_else(|| anyhow!("agency id {agency:?} is not <center>/<agency>"))
        };
        let (center_a, center_b) = (center_of(&sender)?, center_of(&recipient)?);
        if center_a == center_b {
            bail!(
                "the referral-remote example goes from {sender} to {recipient}, at the same center"
            );
        }
        let consent = bench_consent(manifest, &sender, &recipient)?;
        let config_b = manifest.config_path(&center_b)?;
        // Ask for as many per pull as B allows, up to PULL_MAX_WANTED.
        let pull_max = crate::config::Config::load(&config_b)
            .map_err(doing(format!("reading {}", config_b.display())))?
            .limits
            .inbox_pull_max
            .min(PULL_MAX_WANTED);
        Ok(CrossSetup {
            ca: manifest.ca_path(),
            sender_identity: manifest.agency_identity(&sender)?,
            recipient_identity: manifest.agency_identity(&recipient)?,
            config_a: manifest.config_path(&center_a)?,
            config_b,
            url_a: manifest.center(&center_a)?.url.clone(),
            url_b: manifest.center(&center_b)?.url.clone(),
            sender,
            recipient,
            center_a,
            center_b,
            consent,
            envelope,
            pull_max,
        })
    }

    /// HTTP/2 to A as the sender.
    fn target_a(&self) -> anyhow::Result<Target> {
        let (cert, key) = &self.sender_identity;
        target(&self.url_a, &self.ca, cert, key)
    }

    /// HTTP/2 to B as the recipient.
    fn target_b(&self) -> anyhow::Result<Target> {
        let (cert, key) = &self.recipient_identity;
        target(&self.url_b, &self.ca, cert, key)
    }
}

/// An HTTP/2 target at `url` presenting `cert` and `key`.
fn target(url: &str, ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Target> {
    let (addr, server_name) = client::parse_https_url(url)?;
    Ok(Target {
        addr,
        server_name,
        config: client::client_config(ca, Some((cert, key)), HttpVersion::Http2)?,
        version: HttpVersion::Http2,
    })
}

/// The two nodes, A (sender's center) and B (recipient's center).
struct CrossNodes {
    a: SpawnedNode,
    b: SpawnedNode,
    center_a: String,
    center_b: String,
}

impl CrossNodes {
    /// Starts B, then A, each on the address the directory gives it (its config's
    /// `listen`), logging to `<center>/node.log` next to its config.
    fn start(setup: &CrossSetup) -> anyhow::Result<CrossNodes> {
        let start = |center: &str, config: &Path, url: &str| -> anyhow::Result<SpawnedNode> {
            let log = config
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("node.log");
            let node = SpawnedNode::spawn(config, None, &log, true)
                .map_err(doing(format!("starting node {center}")))?;
            let (want, _) = client::parse_https_url(url)?;
            if node.addr != want {
                bail!(
                    "node {center} listens on {} but the federation lists it at {url}",
                    node.addr
                );
            }
            Ok(node)
        };
        let b = start(&setup.center_b, &setup.config_b, &setup.url_b)?;
        let a = start(&setup.center_a, &setup.config_a, &setup.url_a)?;
        Ok(CrossNodes {
            a,
            b,
            center_a: setup.center_a.clone(),
            center_b: setup.center_b.clone(),
        })
    }

    /// Both nodes' counters and the bench's own (A, B, bench); `None` where `/proc`
    /// could not be read.
    fn usage(&self) -> [Option<ProcessUsage>; 3] {
        [
            self.a.usage().ok(),
            self.b.usage().ok(),
            process_usage("self").ok(),
        ]
    }

    /// Fails, with both logs' tails, if either node has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for (center, ended) in [
            (self.center_a.clone(), self.a.exited()),
            (self.center_b.clone(), self.b.exited()),
        ] {
            if let Some(ended) = ended {
                bail!(
                    "node {center} exited during the bench ({ended})\n{}",
                    self.log_tails()
                );
            }
        }
        Ok(())
    }

    /// The last lines of both nodes' logs.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (role, center, node) in [
            ("A", &self.center_a, &self.a),
            ("B", &self.center_b, &self.b),
        ] {
            let _ = writeln!(
                out,
                "--- node {role} ({center}), {}, ends with:\n{}",
                node.log_path.display(),
                log_tail(&node.log_path)
            );
        }
        out
    }

    /// Stops A, then B (SIGTERM, wait); returns how each ended, by center.
    fn stop(mut self) -> BTreeMap<String, String> {
        eprintln!("bench: stopping the nodes");
        let mut ended = BTreeMap::new();
        ended.insert(self.center_a.clone(), self.a.terminate());
        ended.insert(self.center_b.clone(), self.b.terminate());
        ended
    }
}

/// What the pullers at B have seen.
#[derive(Default)]
struct Arrivals {
    /// When a pull first returned each id.
    first_seen: Mutex<HashMap<String, Instant>>,
    /// Pull answers with status 200.
    pulls: AtomicU64,
    /// Ids returned again after their first pull (a lease expired or an ack failed).
    duplicates: AtomicU64,
    /// Failed pulls and acks, by kind.
    errors: Mutex<BTreeMap<String, ErrorCount>>,
}

impl Arrivals {
    fn seen(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that a pull answered at `at` returned `ids`.
    fn record(&self, ids: &[String], at: Instant) {
        let mut seen = self.seen();
        for id in ids {
            if seen.contains_key(id) {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            } else {
                seen.insert(id.clone(), at);
            }
        }
    }

    fn first_seen(&self, id: &str) -> Option<Instant> {
        self.seen().get(id).copied()
    }

    /// Distinct ids starting with `prefix` first seen inside `[from, until]` (either bound
    /// open when `None`).
    fn count(&self, prefix: &str, from: Option<Instant>, until: Option<Instant>) -> u64 {
        self.seen()
            .iter()
            .filter(|(id, at)| {
                id.starts_with(prefix)
                    && from.is_none_or(|from| **at >= from)
                    && until.is_none_or(|until| **at <= until)
            })
            .count() as u64
    }

    /// The first-seen instants of ids starting with `prefix`.
    fn with_prefix(&self, prefix: &str) -> HashMap<String, Instant> {
        self.seen()
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .map(|(id, at)| (id.clone(), *at))
            .collect()
    }

    fn error(&self, kind: &str, detail: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        count_error(&mut errors, kind, detail);
    }

    fn errors(&self) -> BTreeMap<String, ErrorCount> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `want` distinct ids starting with `prefix` have been seen,
    /// `limit` has passed, or (with `stall`) nothing new arrived for that long.
    async fn wait_for(
        &self,
        prefix: &str,
        want: u64,
        limit: Duration,
        stall: Option<Duration>,
    ) -> DrainReport {
        let started = Instant::now();
        let mut last = self.count(prefix, None, None);
        let mut last_change = started;
        loop {
            let now = Instant::now();
            let have = self.count(prefix, None, None);
            if have != last {
                last = have;
                last_change = now;
            }
            let stalled = stall.is_some_and(|stall| now - last_change >= stall);
            if have >= want || now - started >= limit || stalled {
                return DrainReport {
                    seconds: (now - started).as_secs_f64(),
                    complete: have >= want,
                    remaining: want.saturating_sub(have),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The pullers at B.
struct Pullers {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Pullers {
    /// Connects [`PULLERS`] HTTP/2 connections to B as the recipient and starts a puller
    /// on each.
    async fn start(setup: &CrossSetup, arrivals: Arc<Arrivals>) -> anyhow::Result<Pullers> {
        let target = setup.target_b()?;
        let path: Arc<str> = format!("/v1/inbox?max={}&wait={PULL_WAIT_S}", setup.pull_max).into();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for _ in 0..PULLERS {
            let conn = target.connect().await.map_err(doing(format!(
                "connecting to node B ({}) as {}",
                setup.url_b, setup.recipient
            )))?;
            tasks.spawn(run_puller(Puller {
                conn: Some(conn),
                target: target.clone(),
                path: Arc::clone(&path),
                arrivals: Arc::clone(&arrivals),
                stop: Arc::clone(&stop),
            }));
        }
        Ok(Pullers { stop, tasks })
    }

    /// Stops the pullers after their current long-poll and outstanding acks.
    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(5);
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, self.tasks.join_next()).await {}
        self.tasks.abort_all();
    }
}

/// One puller's state.
struct Puller {
    conn: Option<Connection>,
    target: Target,
    path: Arc<str>,
    arrivals: Arc<Arrivals>,
    stop: Arc<AtomicBool>,
}

/// Long-polls B's inbox until told to stop, recording what arrives and acknowledging it
/// on a concurrent stream (at most [`ACKS_IN_FLIGHT_MAX`] outstanding), so the next pull
/// starts at once.
async fn run_puller(mut p: Puller) {
    let mut acks = JoinSet::new();
    while !p.stop.load(Ordering::Relaxed) {
        if p.conn.as_ref().is_none_or(Connection::is_closed) {
            match p.target.connect().await {
                Ok(c) => p.conn = Some(c),
                Err(e) => {
                    p.arrivals
                        .error(&format!("pull {}", error_kind(&e)), &e.to_string());
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
        }
        let Some(conn) = p.conn.as_mut() else {
            continue;
        };
        let result = conn.send(Method::GET, &p.path, None).await;
        let at = Instant::now();
        let response = match result {
            Ok(r) if r.status == StatusCode::OK => r,
            Ok(r) => {
                p.arrivals
                    .error(&format!("pull status {}", r.status.as_u16()), &r.text());
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
            Err(e) => {
                if conn.is_closed() || matches!(e, ClientError::Timeout { .. }) {
                    p.conn = None;
                }
                p.arrivals
                    .error(&format!("pull {}", error_kind(&e)), &e.to_string());
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        let page: InboxPage = match response.json() {
            Ok(page) => page,
            Err(e) => {
                p.arrivals.error("pull body", &e.to_string());
                continue;
            }
        };
        p.arrivals.pulls.fetch_add(1, Ordering::Relaxed);
        if page.messages.is_empty() {
            continue;
        }
        let ids: Vec<String> = page.messages.into_iter().map(|m| m.id).collect();
        p.arrivals.record(&ids, at);
        while acks.try_join_next().is_some() {}
        while acks.len() >= ACKS_IN_FLIGHT_MAX {
            acks.join_next().await;
        }
        match conn.try_clone() {
            Some(ack_conn) => {
                acks.spawn(ack(ack_conn, ids, Arc::clone(&p.arrivals)));
            }
            None => p.arrivals.error("ack", "the pull connection is not HTTP/2"),
        }
    }
    while acks.join_next().await.is_some() {}
}

/// Acknowledges `ids` at B.
async fn ack(mut conn: Connection, ids: Vec<String>, arrivals: Arc<Arrivals>) {
    let body = match serde_json::to_vec(&serde_json::json!({ "ids": ids })) {
        Ok(body) => body,
        Err(e) => return arrivals.error("ack body", &e.to_string()),
    };
    let result = conn
        .send(
            Method::POST,
            "/v1/inbox/ack",
            Some((Bytes::from(body), "application/json")),
        )
        .await;
    match result {
        Ok(r) if r.status == StatusCode::OK => {}
        Ok(r) => arrivals.error(&format!("ack status {}", r.status.as_u16()), &r.text()),
        Err(e) => arrivals.error(&format!("ack {}", error_kind(&e)), &e.to_string()),
    }
}

/// Pushes one referral at A and waits until a pull at B returns it; returns how long
/// that took. Fails with A's view of the message and both nodes' logs when it does not
/// arrive within [`FORWARD_CHECK_TIMEOUT`].
async fn check_forwarding(
    target_a: &Target,
    template: &BodyTemplate,
    run_tag: &str,
    arrivals: &Arrivals,
    nodes: &mut CrossNodes,
) -> anyhow::Result<Duration> {
    let id = format!("xbench-{run_tag}-check");
    let mut conn = target_a
        .connect()
        .await
        .map_err(doing("node A is not reachable"))?;
    let sent = Instant::now();
    let response = conn
        .send(
            Method::POST,
            "/v1/messages",
            Some((template.body(&id), "application/json")),
        )
        .await
        .map_err(doing("sending the first referral to node A"))?;
    if response.status != StatusCode::ACCEPTED {
        bail!(
            "node A answered the first referral-remote with {}: {}\n{}",
            response.status,
            truncate(&response.text(), 2000),
            nodes.log_tails()
        );
    }
    let deadline = sent + FORWARD_CHECK_TIMEOUT;
    loop {
        if let Some(seen) = arrivals.first_seen(&id) {
            return Ok(seen.saturating_duration_since(sent));
        }
        nodes.check_running()?;
        if Instant::now() >= deadline {
            let state = match conn
                .send(Method::GET, &format!("/v1/messages/{id}"), None)
                .await
            {
                Ok(r) => format!("{} {}", r.status.as_u16(), truncate(&r.text(), 1000)),
                Err(e) => e.to_string(),
            };
            let pull_errors = arrivals
                .errors()
                .iter()
                .map(|(kind, e)| format!("{kind}: {} × (first: {})", e.count, e.first))
                .collect::<Vec<_>>();
            bail!(
                "forwarding does not work: node A accepted referral {id} but no pull at B \
                 returned it within {FORWARD_CHECK_TIMEOUT:?} ({} pulls answered).\n\
                 A's view of the message (GET /v1/messages/{id}): {state}\n\
                 pull errors at B: {}\n{}",
                arrivals.pulls.load(Ordering::Relaxed),
                if pull_errors.is_empty() {
                    "none".to_owned()
                } else {
                    pull_errors.join("; ")
                },
                nodes.log_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The closed-loop phase: `args.connections` pushes in flight at A while the pullers
/// drain B; then waits (bounded) until B has received everything A accepted.
async fn throughput_phase(
    args: &BenchArgs,
    target_a: &Target,
    template: &BodyTemplate,
    run_tag: &str,
    arrivals: &Arrivals,
    nodes: &mut CrossNodes,
) -> anyhow::Result<ThroughputReport> {
    let workers = usize::from(args.connections);
    let (connections, tcp_connections) = connect_workers(target_a, workers).await?;
    let shared = Arc::new(WorkerShared {
        target: target_a.clone(),
        id_prefix: format!("xbench-{run_tag}-tp"),
        template: template.clone(),
    });
    let prefix = format!("{}-", shared.id_prefix);
    let window = Window::after_warmup(Instant::now(), args);
    let tasks = spawn_workers(&shared, connections, workers, window);

    tokio::time::sleep_until(window.start).await;
    let [a_start, b_start, bench_start] = nodes.usage();
    tokio::time::sleep_until(window.end).await;
    let [a_end, b_end, bench_end] = nodes.usage();
    let total = join_workers(tasks, window).await?;
    nodes.check_running()?;

    let measured_s = window.seconds();
    let delivered = arrivals.count(&prefix, Some(window.start), Some(window.end));
    let pulled_by_end = arrivals.count(&prefix, None, Some(window.end));
    eprintln!("bench: waiting for B to receive the rest of what A accepted");
    let drain = arrivals
        .wait_for(
            &prefix,
            total.accepted_all,
            DRAIN_TIME_MAX,
            Some(DRAIN_STALL_MAX),
        )
        .await;
    // How fast B received the rest with A taking no pushes: forwarding on its own.
    let after_end = arrivals.count(&prefix, None, None) - pulled_by_end;
    let after_end_s = window.end.elapsed().as_secs_f64();
    nodes.check_running()?;
    let delivered_per_s = delivered as f64 / measured_s;
    Ok(ThroughputReport {
        tcp_connections,
        streams_per_connection: workers.div_ceil(tcp_connections),
        measured_s,
        accepted: total.accepted,
        accepted_per_s: total.accepted as f64 / measured_s,
        push_latency_ms: LatencyMs::from_histogram(&total.latency),
        delivered,
        delivered_per_s,
        target_delivered_per_s: TARGET_DELIVERED_PER_S,
        target_met: delivered_per_s >= TARGET_DELIVERED_PER_S,
        accepted_by_end: total.accepted_by_end,
        pulled_by_end,
        backlog_at_end: total.accepted_by_end as i64 - pulled_by_end as i64,
        accepted_all: total.accepted_all,
        drain,
        received_after_end_per_s: after_end as f64 / after_end_s,
        errors_total: total.errors_total(),
        errors: total.errors,
        reconnects: total.reconnects,
        node_a: NodeUsage::between(a_start, a_end, measured_s, total.accepted),
        node_b: NodeUsage::between(b_start, b_end, measured_s, delivered),
        bench_cpu_percent: NodeUsage::between(bench_start, bench_end, measured_s, 0)
            .map(|u| u.cpu_percent),
    })
}

/// An open-loop timetable at `rate` sends per second: send `i` is due `i / rate`
/// seconds after the start, whatever happened to the sends before it.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    rate: u32,
}

impl Schedule {
    const NANOS_PER_S: u128 = 1_000_000_000;

    /// `rate` must be at least 1.
    fn new(rate: u32) -> Schedule {
        Schedule { rate: rate.max(1) }
    }

    /// When send `i` is due, after the start (rounded down to the nanosecond).
    fn offset(self, i: u64) -> Duration {
        let nanos = u128::from(i) * Self::NANOS_PER_S / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many sends are due strictly before `elapsed`: the first `i` with
    /// `offset(i) >= elapsed`.
    fn count_before(self, elapsed: Duration) -> u64 {
        // offset(i) < e ⟺ ⌊i·10⁹/r⌋ < e ⟺ i·10⁹ < e·r (e in whole nanoseconds).
        let count = (elapsed.as_nanos() * u128::from(self.rate)).div_ceil(Self::NANOS_PER_S);
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}

/// What the open-loop senders share.
struct OpenLoop {
    target: Target,
    template: BodyTemplate,
    /// Ids are `<id_prefix><i>`.
    id_prefix: String,
    /// HTTP/2 connections, send `i` goes on `i % len`; reconnected when closed.
    connections: Vec<tokio::sync::Mutex<Option<Connection>>>,
    /// The timetable's start.
    t0: Instant,
    /// Per send: nanoseconds after `t0` when its push was sent.
    sent_ns: Vec<AtomicU64>,
    /// Per send: whether A answered `202`.
    accepted: Vec<AtomicBool>,
    /// Sends before this index are warm-up.
    measured_first: u64,
    stats: Mutex<OpenLoopStats>,
}

/// Counts of the measured sends of the open loop.
struct OpenLoopStats {
    /// Push answers (`202` latency) and errors.
    push: WorkerStats,
    /// How far behind the timetable each send went out.
    lag: Histogram,
}

impl OpenLoop {
    /// A connection for send `i`, reconnecting its slot if it is closed.
    async fn connection(&self, i: u64) -> Result<Connection, ClientError> {
        let slot = &self.connections[(i % self.connections.len() as u64) as usize];
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            if let Some(clone) = conn.try_clone() {
                return Ok(clone);
            }
        }
        let conn = self.target.connect().await?;
        let clone = conn.try_clone();
        *slot = Some(conn);
        self.lock_stats().push.reconnects += 1;
        clone.ok_or_else(|| ClientError::Request("the open loop needs HTTP/2".to_owned()))
    }

    fn lock_stats(&self) -> MutexGuard<'_, OpenLoopStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends push `i` (due at `due`) and records its outcome; holds `_permit` (one of the
/// `--connections` in-flight slots) until answered.
async fn send_scheduled(
    shared: Arc<OpenLoop>,
    i: u64,
    due: Instant,
    _permit: OwnedSemaphorePermit,
) {
    let measured = i >= shared.measured_first;
    let id = format!("{}{i}", shared.id_prefix);
    let body = shared.template.body(&id);
    let mut conn = match shared.connection(i).await {
        Ok(conn) => conn,
        Err(e) => {
            if measured {
                shared
                    .lock_stats()
                    .push
                    .error(error_kind(&e), &e.to_string());
            }
            return;
        }
    };
    let index = usize::try_from(i).unwrap_or(usize::MAX);
    let sent = Instant::now();
    if let Some(slot) = shared.sent_ns.get(index) {
        slot.store(
            nanos(sent.saturating_duration_since(shared.t0)),
            Ordering::Relaxed,
        );
    }
    let result = conn
        .send(
            Method::POST,
            "/v1/messages",
            Some((body, "application/json")),
        )
        .await;
    let done = Instant::now();
    let accepted = matches!(&result, Ok(r) if r.status == StatusCode::ACCEPTED);
    if let Some(flag) = shared.accepted.get(index).filter(|_| accepted) {
        flag.store(true, Ordering::Relaxed);
    }
    if !measured {
        return;
    }
    let mut stats = shared.lock_stats();
    stats
        .lag
        .record(micros(sent.saturating_duration_since(due)));
    match result {
        Ok(_) if accepted => {
            stats.push.accepted += 1;
            stats.push.latency.record(micros(done - sent));
        }
        Ok(response) => stats.push.error(
            &format!("status {}", response.status.as_u16()),
            &response.text(),
        ),
        Err(e) => stats.push.error(error_kind(&e), &e.to_string()),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The open-loop phase: pushes at A on the timetable of `rate`/s, then waits up to
/// [`ARRIVAL_GRACE`] after the last scheduled send for B to receive them.
async fn latency_phase(
    args: &BenchArgs,
    rate: u32,
    target_a: &Target,
    template: &BodyTemplate,
    run_tag: &str,
    arrivals: &Arrivals,
    nodes: &mut CrossNodes,
) -> anyhow::Result<LatencyReport> {
    let schedule = Schedule::new(rate);
    let warmup = Duration::from_secs(args.warmup_s.into());
    let length = warmup + Duration::from_secs(args.duration_s.into());
    let sends = schedule.count_before(length);
    if sends > SENDS_MAX {
        bail!(
            "{rate}/s for {} s is more than {SENDS_MAX} sends",
            length.as_secs()
        );
    }
    let in_flight_max = usize::from(args.connections);
    let tcp_connections = (in_flight_max / STREAMS_PER_H2_CONNECTION).max(1);
    let mut connections = Vec::with_capacity(tcp_connections);
    for _ in 0..tcp_connections {
        connections.push(tokio::sync::Mutex::new(Some(target_a.connect().await?)));
    }
    let len = usize::try_from(sends)?;
    let t0 = Instant::now() + Duration::from_millis(20);
    let window = Window {
        start: t0 + warmup,
        end: t0 + length,
    };
    let prefix = format!("xbench-{run_tag}-lat-");
    let shared = Arc::new(OpenLoop {
        target: target_a.clone(),
        template: template.clone(),
        id_prefix: prefix.clone(),
        connections,
        t0,
        sent_ns: (0..len).map(|_| AtomicU64::new(0)).collect(),
        accepted: (0..len).map(|_| AtomicBool::new(false)).collect(),
        measured_first: schedule.count_before(warmup),
        stats: Mutex::new(OpenLoopStats {
            push: WorkerStats::new(),
            lag: Histogram::new(),
        }),
    });

    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    let mut tasks = JoinSet::new();
    let mut usage_start = None;
    for i in 0..sends {
        let due = t0 + schedule.offset(i);
        tokio::time::sleep_until(due).await;
        if i == shared.measured_first {
            usage_start = Some(nodes.usage());
        }
        let permit = Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .map_err(doing("the in-flight limit closed"))?;
        tasks.spawn(send_scheduled(Arc::clone(&shared), i, due, permit));
        while tasks.try_join_next().is_some() {}
    }
    tokio::time::sleep_until(window.end).await;
    let [a_end, b_end, bench_end] = nodes.usage();
    let [a_start, b_start, bench_start] = usage_start.unwrap_or([None, None, None]);
    let deadline = window.end + REQUEST_TIMEOUT + Duration::from_secs(5);
    while let Some(joined) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .map_err(|_| anyhow!("open-loop pushes did not finish in time"))?
    {
        joined.map_err(doing("an open-loop push panicked"))?;
    }
    nodes.check_running()?;

    let accepted_all = shared
        .accepted
        .iter()
        .filter(|a| a.load(Ordering::Relaxed))
        .count() as u64;
    let grace_end = window.end + ARRIVAL_GRACE;
    arrivals
        .wait_for(
            &prefix,
            accepted_all,
            grace_end.saturating_duration_since(Instant::now()),
            None,
        )
        .await;
    nodes.check_running()?;

    let seen = arrivals.with_prefix(&prefix);
    let tally = tally_latency(
        (0..len).map(|i| {
            let sent = t0 + Duration::from_nanos(shared.sent_ns[i].load(Ordering::Relaxed));
            let accepted = shared.accepted[i].load(Ordering::Relaxed);
            let seen = accepted
                .then(|| seen.get(&format!("{prefix}{i}")).copied())
                .flatten();
            SendRecord {
                accepted,
                sent,
                seen: seen.filter(|at| *at <= grace_end),
            }
        }),
        usize::try_from(shared.measured_first)?,
    );
    let stats = shared.lock_stats();
    let measured_s = window.seconds();
    let latency_ms = LatencyMs::from_histogram(&tally.latency);
    let scheduled = sends - shared.measured_first;
    Ok(LatencyReport {
        rate_per_s: rate,
        measured_s,
        tcp_connections,
        in_flight_max,
        scheduled,
        accepted: stats.push.accepted,
        accepted_per_s: stats.push.accepted as f64 / measured_s,
        arrived: tally.arrived,
        never_arrived: tally.never_arrived,
        never_arrived_warmup: tally.never_arrived_warmup,
        grace_s: ARRIVAL_GRACE.as_secs(),
        target_p99_ms: TARGET_P99_MS,
        target_met: tally.never_arrived == 0
            && tally.arrived > 0
            && latency_ms.p99.is_some_and(|p99| p99 < TARGET_P99_MS),
        latency_ms,
        push_latency_ms: LatencyMs::from_histogram(&stats.push.latency),
        send_lag_ms: LatencyMs::from_histogram(&stats.lag),
        errors_total: stats.push.errors_total(),
        errors: stats.push.errors.clone(),
        reconnects: stats.push.reconnects,
        node_a: NodeUsage::between(a_start, a_end, measured_s, stats.push.accepted),
        node_b: NodeUsage::between(b_start, b_end, measured_s, tally.arrived),
        bench_cpu_percent: NodeUsage::between(bench_start, bench_end, measured_s, 0)
            .map(|u| u.cpu_percent),
    })
}

/// One open-loop send, for [`tally_latency`].
struct SendRecord {
    /// A answered `202`.
    accepted: bool,
    /// When the push was sent.
    sent: Instant,
    /// When a pull at B first returned it, if within the grace period.
    seen: Option<Instant>,
}

/// The latency phase's outcome.
#[derive(Debug)]
struct LatencyTally {
    /// Measured, accepted and pulled at B.
    arrived: u64,
    /// Measured and accepted, never pulled.
    never_arrived: u64,
    /// Accepted during the warm-up, never pulled.
    never_arrived_warmup: u64,
    /// Push-to-pullable latency of the measured arrivals, µs.
    latency: Histogram,
}

/// Tallies the sends in order; those before index `measured_first` are warm-up (only
/// their losses are counted). Sends A did not accept are not expected at B.
fn tally_latency(records: impl Iterator<Item = SendRecord>, measured_first: usize) -> LatencyTally {
    let mut tally = LatencyTally {
        arrived: 0,
        never_arrived: 0,
        never_arrived_warmup: 0,
        latency: Histogram::new(),
    };
    for (i, record) in records.enumerate() {
        if !record.accepted {
            continue;
        }
        let measured = i >= measured_first;
        match record.seen {
            Some(seen) if measured => {
                tally.arrived += 1;
                tally
                    .latency
                    .record(micros(seen.saturating_duration_since(record.sent)));
            }
            Some(_) => {}
            None if measured => tally.never_arrived += 1,
            None => tally.never_arrived_warmup += 1,
        }
    }
    tally
}

/// Waiting for B to receive a phase's backlog.
#[derive(Debug, Clone, Serialize)]
struct DrainReport {
    seconds: f64,
    /// Everything A accepted was pulled at B.
    complete: bool,
    /// Accepted at A, not (yet) pulled at B when the wait ended.
    remaining: u64,
}

/// The throughput phase's results.
#[derive(Debug, Clone, Serialize)]
struct ThroughputReport {
    tcp_connections: usize,
    streams_per_connection: usize,
    measured_s: f64,
    /// `202`s at A inside the measured window.
    accepted: u64,
    accepted_per_s: f64,
    /// A's `202` latency.
    push_latency_ms: LatencyMs,
    /// Distinct messages first pulled at B inside the same window.
    delivered: u64,
    delivered_per_s: f64,
    target_delivered_per_s: f64,
    target_met: bool,
    /// `202`s at A from the start to the window's end (warm-up included).
    accepted_by_end: u64,
    /// Distinct messages pulled at B from the start to the window's end.
    pulled_by_end: u64,
    /// `accepted_by_end − pulled_by_end`: in A's outbox, in flight, or in B's inbox.
    backlog_at_end: i64,
    /// Every `202` at A of this phase.
    accepted_all: u64,
    /// Waiting, after the window, until B had received all of `accepted_all`.
    drain: DrainReport,
    /// Messages first pulled at B after the window's end, per second from the window's
    /// end to the end of `drain`: the forwarding rate while A takes no pushes.
    received_after_end_per_s: f64,
    errors_total: u64,
    errors: BTreeMap<String, ErrorCount>,
    reconnects: u64,
    node_a: Option<NodeUsage>,
    /// B's `cpu_us_per_accepted` is per delivered message.
    node_b: Option<NodeUsage>,
    /// The bench's own CPU use (pushers and pullers) during the window, 100 = one core.
    bench_cpu_percent: Option<f64>,
}

/// The latency phase's results; every count is of the sends scheduled in the measured
/// window, except `never_arrived_warmup`.
#[derive(Debug, Clone, Serialize)]
struct LatencyReport {
    rate_per_s: u32,
    measured_s: f64,
    tcp_connections: usize,
    in_flight_max: usize,
    scheduled: u64,
    accepted: u64,
    accepted_per_s: f64,
    arrived: u64,
    /// Accepted at A, not pulled at B within `grace_s` after the last scheduled send.
    never_arrived: u64,
    never_arrived_warmup: u64,
    grace_s: u64,
    /// From the push being sent at A to a pull at B first returning it.
    latency_ms: LatencyMs,
    target_p99_ms: f64,
    target_met: bool,
    /// A's `202` latency.
    push_latency_ms: LatencyMs,
    /// How far behind the timetable sends went out (all in-flight slots busy, or the
    /// bench itself too slow).
    send_lag_ms: LatencyMs,
    errors_total: u64,
    errors: BTreeMap<String, ErrorCount>,
    reconnects: u64,
    node_a: Option<NodeUsage>,
    /// B's `cpu_us_per_accepted` is per arrived message.
    node_b: Option<NodeUsage>,
    /// The bench's own CPU use (pushers and pullers) during the window, 100 = one core.
    bench_cpu_percent: Option<f64>,
}

/// The `--cross` report, printed as a table or as JSON.
#[derive(Debug, Clone, Serialize)]
struct CrossReport {
    mode: &'static str,
    sender: String,
    recipient: String,
    node_a_url: String,
    node_b_url: String,
    /// Where the federation was kept (`--keep`).
    federation_dir: Option<String>,
    http: String,
    connections: usize,
    warmup_s: u64,
    duration_s: u64,
    pullers: usize,
    pull_max: usize,
    pull_wait_s: u64,
    /// How long the first (check) message took from A to being pullable at B.
    first_forward_ms: f64,
    throughput: Option<ThroughputReport>,
    latency: LatencyReport,
    /// Pull answers with status 200 at B over the whole run.
    pulls: u64,
    /// Messages pulled at B more than once.
    duplicates: u64,
    pull_errors_total: u64,
    pull_errors: BTreeMap<String, ErrorCount>,
    /// How each node ended, by center.
    node_exit: BTreeMap<String, String>,
}

impl CrossReport {
    fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plusgate bench --cross: {} at {} → {} at {} (nodes started by the bench)",
            self.sender, self.node_a_url, self.recipient, self.node_b_url
        );
        let _ = writeln!(
            out,
            "pushes over {} with at most {} in flight; {} pullers at B (max={}, wait={} s), acking every pull",
            self.http, self.connections, self.pullers, self.pull_max, self.pull_wait_s
        );
        let _ = writeln!(
            out,
            "first message pullable at B {:.1} ms after its push\n",
            self.first_forward_ms
        );
        let fmt_ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let node_rows =
            |rows: &mut Vec<(String, String)>, role: &str, usage: &Option<NodeUsage>| match usage {
                Some(n) => {
                    rows.push((
                        format!("node {role} CPU %"),
                        format!("{:.0}", n.cpu_percent),
                    ));
                    rows.push((
                        format!("node {role} CPU µs/msg"),
                        n.cpu_us_per_accepted
                            .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}")),
                    ));
                    rows.push((
                        format!("node {role} peak RSS MiB"),
                        format!("{:.1}", n.peak_rss_mib),
                    ));
                }
                None => rows.push((format!("node {role} usage"), "-".to_owned())),
            };
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        let fmt_percent = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));

        let mut sections = Vec::new();
        if let Some(t) = &self.throughput {
            let heading = format!(
                "throughput (closed loop, {} connections × {} streams, {} s warm-up, {:.0} s measured)",
                t.tcp_connections, t.streams_per_connection, self.warmup_s, t.measured_s
            );
            let mut rows = vec![
                ("accepted at A".to_owned(), t.accepted.to_string()),
                (
                    "accepted/s at A".to_owned(),
                    format!("{:.1}", t.accepted_per_s),
                ),
                ("delivered at B".to_owned(), t.delivered.to_string()),
                (
                    "delivered/s at B".to_owned(),
                    format!(
                        "{:.1} (target ≥ {:.0}: {})",
                        t.delivered_per_s,
                        t.target_delivered_per_s,
                        verdict(t.target_met)
                    ),
                ),
                (
                    "backlog at end".to_owned(),
                    format!(
                        "{} ({} accepted − {} pulled)",
                        t.backlog_at_end, t.accepted_by_end, t.pulled_by_end
                    ),
                ),
                (
                    "rest received at B".to_owned(),
                    if t.drain.complete {
                        format!(
                            "after {:.1} s ({:.0}/s with A idle)",
                            t.drain.seconds, t.received_after_end_per_s
                        )
                    } else {
                        format!(
                            "NO: {} missing after {:.1} s",
                            t.drain.remaining, t.drain.seconds
                        )
                    },
                ),
                (
                    "push latency p50/p99/p99.9 ms".to_owned(),
                    format!(
                        "{} / {} / {}",
                        fmt_ms(t.push_latency_ms.p50),
                        fmt_ms(t.push_latency_ms.p99),
                        fmt_ms(t.push_latency_ms.p99_9)
                    ),
                ),
                ("push errors".to_owned(), t.errors_total.to_string()),
                ("push reconnects".to_owned(), t.reconnects.to_string()),
            ];
            node_rows(&mut rows, "A", &t.node_a);
            node_rows(&mut rows, "B", &t.node_b);
            rows.push(("bench CPU %".to_owned(), fmt_percent(t.bench_cpu_percent)));
            sections.push((heading, rows));
        }

        let l = &self.latency;
        let heading = format!(
            "latency (open loop {}/s, at most {} in flight on {} connections, {} s warm-up, {:.0} s measured, {} s grace)",
            l.rate_per_s, l.in_flight_max, l.tcp_connections, self.warmup_s, l.measured_s, l.grace_s
        );
        let mut rows = vec![
            (
                "scheduled / accepted at A".to_owned(),
                format!("{} / {}", l.scheduled, l.accepted),
            ),
            (
                "accepted/s at A".to_owned(),
                format!("{:.1}", l.accepted_per_s),
            ),
            ("arrived at B".to_owned(), l.arrived.to_string()),
            (
                "never arrived".to_owned(),
                if l.never_arrived_warmup > 0 {
                    format!(
                        "{} (+{} in warm-up)",
                        l.never_arrived, l.never_arrived_warmup
                    )
                } else {
                    l.never_arrived.to_string()
                },
            ),
            (
                "push→pullable mean ms".to_owned(),
                fmt_ms(l.latency_ms.mean),
            ),
            ("push→pullable p50 ms".to_owned(), fmt_ms(l.latency_ms.p50)),
            ("push→pullable p90 ms".to_owned(), fmt_ms(l.latency_ms.p90)),
            (
                "push→pullable p99 ms".to_owned(),
                format!(
                    "{} (target < {:.0}: {})",
                    fmt_ms(l.latency_ms.p99),
                    l.target_p99_ms,
                    verdict(l.target_met)
                ),
            ),
            (
                "push→pullable p99.9 ms".to_owned(),
                fmt_ms(l.latency_ms.p99_9),
            ),
            ("push→pullable max ms".to_owned(), fmt_ms(l.latency_ms.max)),
            (
                "push latency p50/p99 ms".to_owned(),
                format!(
                    "{} / {}",
                    fmt_ms(l.push_latency_ms.p50),
                    fmt_ms(l.push_latency_ms.p99)
                ),
            ),
            (
                "send lag p99/max ms".to_owned(),
                format!(
                    "{} / {}",
                    fmt_ms(l.send_lag_ms.p99),
                    fmt_ms(l.send_lag_ms.max)
                ),
            ),
            ("push errors".to_owned(), l.errors_total.to_string()),
        ];
        node_rows(&mut rows, "A", &l.node_a);
        node_rows(&mut rows, "B", &l.node_b);
        rows.push(("bench CPU %".to_owned(), fmt_percent(l.bench_cpu_percent)));
        sections.push((heading, rows));
        let width = sections
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|(l, _)| l.chars().count()))
            .max()
            .unwrap_or(0);
        for (i, (heading, rows)) in sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "{heading}");
            for (label, value) in rows {
                let pad = width - label.chars().count();
                let _ = writeln!(out, "  {label}{:pad$}  {value}", "");
            }
        }

        let _ = writeln!(
            out,
            "\npulls at B: {}, duplicates: {}, pull/ack errors: {}",
            self.pulls, self.duplicates, self.pull_errors_total
        );
        let exits: Vec<String> = self
            .node_exit
            .iter()
            .map(|(center, how)| format!("{center}: {how}"))
            .collect();
        let _ = writeln!(out, "nodes stopped: {}", exits.join(", "));
        if let Some(dir) = &self.federation_dir {
            let _ = writeln!(out, "federation kept in {dir}");
        }
        let phases = [
            ("throughput", self.throughput.as_ref().map(|t| &t.errors)),
            ("latency", Some(&l.errors)),
            ("pull", Some(&self.pull_errors)),
        ];
        for (phase, errors) in phases {
            for (kind, e) in errors.into_iter().flatten() {
                let _ = writeln!(out, "\n{phase} {kind}: {} × (first: {})", e.count, e.first);
            }
        }
        out
    }
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
    fn schedule_offsets_follow_the_rate() {
        let s = Schedule::new(1000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(1000), Duration::from_secs(1));
        assert_eq!(s.offset(12_345), Duration::from_micros(12_345_000));
        // Not a divisor of 10⁹: rounded down to the nanosecond, never drifting.
        let s = Schedule::new(3);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(2), Duration::from_nanos(666_666_666));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        assert_eq!(s.offset(3_000), Duration::from_secs(1000));
        // A rate of 0 is treated as 1/s instead of dividing by zero.
        assert_eq!(Schedule::new(0).offset(2), Duration::from_secs(2));
    }

    #[test]
    fn schedule_counts_sends_due_before_an_instant() {
        let s = Schedule::new(1000);
        assert_eq!(s.count_before(Duration::ZERO), 0);
        assert_eq!(s.count_before(Duration::from_nanos(1)), 1);
        assert_eq!(s.count_before(Duration::from_millis(1)), 1);
        assert_eq!(s.count_before(Duration::from_nanos(1_000_001)), 2);
        // 2 s warm-up + 10 s measured at 1000/s: 12,000 sends, the first 2,000 warm-up.
        assert_eq!(s.count_before(Duration::from_secs(12)), 12_000);
        assert_eq!(s.count_before(Duration::from_secs(2)), 2_000);
        assert_eq!(Schedule::new(3).count_before(Duration::from_secs(1)), 3);
        assert_eq!(Schedule::new(7).count_before(Duration::from_secs(10)), 70);
    }

    #[test]
    fn schedule_count_and_offset_agree() {
        for rate in [1, 3, 7, 999, 1000, 1001, 4096, 100_000] {
            let s = Schedule::new(rate);
            let mut previous = None;
            for i in (0..5_000).chain([123_456, 9_999_999]) {
                let at = s.offset(i);
                // Send i is the first one due at or after its own offset …
                assert_eq!(s.count_before(at), i, "rate {rate}, send {i}");
                // … and is due before anything later.
                assert_eq!(s.count_before(at + Duration::from_nanos(1)), i + 1);
                if let Some(previous) = previous {
                    assert!(
                        at > previous,
                        "rate {rate}: send {i} not after send {}",
                        i - 1
                    );
                }
                previous = (i < 5_000).then_some(at);
            }
        }
    }

    #[test]
    fn port_candidates_stay_in_range() {
        for count in [1u16, 2, 3] {
            for seed in (0..20_000u64).chain([u64::MAX, u64::MAX - 1, 1 << 40]) {
                let base = port_candidate(seed, count);
                assert!(base >= PORT_FIRST, "{seed}");
                assert!(base + count <= PORT_END, "{seed}: {base}+{count}");
            }
        }
        // Every base in the range can come up.
        let span = u64::from(PORT_END - PORT_FIRST - 2 + 1);
        assert_eq!(port_candidate(0, 2), PORT_FIRST);
        assert_eq!(port_candidate(span - 1, 2), PORT_END - 2);
        assert_eq!(port_candidate(span, 2), PORT_FIRST);
    }

    #[test]
    fn latency_tally_counts_measured_sends_only() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let record = |accepted, sent, seen| SendRecord {
            accepted,
            sent,
            seen,
        };
        let records = vec![
            // warm-up: one arrived, one lost, one refused by A
            record(true, ms(0), Some(ms(900))),
            record(true, ms(1), None),
            record(false, ms(2), None),
            // measured
            record(true, ms(10), Some(ms(15))),
            record(true, ms(11), Some(ms(31))),
            record(true, ms(12), None),
            record(false, ms(13), None),
            record(true, ms(14), Some(ms(17))),
        ];
        let tally = tally_latency(records.into_iter(), 3);
        assert_eq!(tally.arrived, 3);
        assert_eq!(tally.never_arrived, 1);
        assert_eq!(tally.never_arrived_warmup, 1);
        assert_eq!(tally.latency.total, 3);
        // 3 ms, 5 ms, 20 ms (the warm-up's 900 ms is not counted)
        assert_eq!(tally.latency.max_us, 20_000);
        let p50 = tally.latency.quantile(0.5).expect("p50");
        assert!((5_000..=5_000 + 5_000 / 64).contains(&p50), "{p50}");
    }

    #[test]
    fn arrivals_count_first_sightings_by_prefix_and_window() {
        let arrivals = Arrivals::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ids = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        arrivals.record(&ids(&["x-tp-1", "x-tp-2", "x-lat-1"]), at(10));
        arrivals.record(&ids(&["x-tp-3"]), at(20));
        // Seen again (a lease expired): a duplicate, keeping the first sighting.
        arrivals.record(&ids(&["x-tp-1", "x-tp-4"]), at(30));
        assert_eq!(arrivals.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(arrivals.first_seen("x-tp-1"), Some(at(10)));
        assert_eq!(arrivals.first_seen("x-tp-9"), None);
        assert_eq!(arrivals.count("x-tp-", None, None), 4);
        assert_eq!(arrivals.count("x-lat-", None, None), 1);
        assert_eq!(arrivals.count("x-tp-", Some(at(15)), None), 2);
        assert_eq!(arrivals.count("x-tp-", None, Some(at(20))), 3);
        assert_eq!(arrivals.count("x-tp-", Some(at(20)), Some(at(20))), 1);
        let lat = arrivals.with_prefix("x-lat-");
        assert_eq!(lat.len(), 1);
        assert_eq!(lat.get("x-lat-1"), Some(&at(10)));
    }

    #[tokio::test]
    async fn waiting_for_arrivals_ends_on_success_limit_or_stall() {
        let arrivals = Arrivals::default();
        arrivals.record(&["p-1".to_owned(), "p-2".to_owned()], Instant::now());
        let done = arrivals
            .wait_for("p-", 2, Duration::from_secs(60), None)
            .await;
        assert!(done.complete && done.remaining == 0 && done.seconds < 1.0);
        let limited = arrivals
            .wait_for("p-", 3, Duration::from_millis(250), None)
            .await;
        assert!(!limited.complete && limited.remaining == 1);
        assert!(limited.seconds >= 0.25, "{}", limited.seconds);
        let stalled = arrivals
            .wait_for(
                "p-",
                3,
                Duration::from_secs(60),
                Some(Duration::from_millis(250)),
            )
            .await;
        assert!(!stalled.complete);
        assert!(
            (0.25..30.0).contains(&stalled.seconds),
            "{}",
            stalled.seconds
        );
    }

    #[test]
    fn cross_report_text_shows_both_phases_and_verdicts() {
        let latency = LatencyMs {
            mean: Some(3.0),
            p50: Some(2.5),
            p90: Some(4.0),
            p99: Some(12.0),
            p99_9: Some(20.0),
            max: Some(25.0),
        };
        let usage = NodeUsage {
            cpu_s: 5.0,
            cpu_percent: 50.0,
            cpu_us_per_accepted: Some(100.0),
            peak_rss_mib: 300.0,
        };
        let report = CrossReport {
            mode: "cross",
            sender: "suwon/employment".into(),
            recipient: "gangseo/welfare".into(),
            node_a_url: "https://127.0.0.1:20000".into(),
            node_b_url: "https://127.0.0.1:20001".into(),
            federation_dir: None,
            http: "HTTP/2".into(),
            connections: 64,
            warmup_s: 2,
            duration_s: 10,
            pullers: PULLERS,
            pull_max: 100,
            pull_wait_s: 1,
            first_forward_ms: 7.5,
            throughput: Some(ThroughputReport {
                tcp_connections: 4,
                streams_per_connection: 16,
                measured_s: 10.0,
                accepted: 60_000,
                accepted_per_s: 6_000.0,
                push_latency_ms: latency.clone(),
                delivered: 45_000,
                delivered_per_s: 4_500.0,
                target_delivered_per_s: TARGET_DELIVERED_PER_S,
                target_met: false,
                accepted_by_end: 72_000,
                pulled_by_end: 55_000,
                backlog_at_end: 17_000,
                accepted_all: 72_010,
                drain: DrainReport {
                    seconds: 3.5,
                    complete: true,
                    remaining: 0,
                },
                received_after_end_per_s: 4_857.0,
                errors_total: 0,
                errors: BTreeMap::new(),
                reconnects: 0,
                node_a: Some(usage.clone()),
                node_b: None,
                bench_cpu_percent: Some(70.0),
            }),
            latency: LatencyReport {
                rate_per_s: 1000,
                measured_s: 10.0,
                tcp_connections: 4,
                in_flight_max: 64,
                scheduled: 10_000,
                accepted: 10_000,
                accepted_per_s: 1000.0,
                arrived: 10_000,
                never_arrived: 0,
                never_arrived_warmup: 0,
                grace_s: 10,
                latency_ms: latency.clone(),
                target_p99_ms: TARGET_P99_MS,
                target_met: true,
                push_latency_ms: latency.clone(),
                send_lag_ms: latency,
                errors_total: 1,
                errors: BTreeMap::from([(
                    "status 503".to_owned(),
                    ErrorCount {
                        count: 1,
                        first: "unavailable".into(),
                    },
                )]),
                reconnects: 0,
                node_a: Some(usage.clone()),
                node_b: Some(usage),
                bench_cpu_percent: None,
            },
            pulls: 900,
            duplicates: 0,
            pull_errors_total: 0,
            pull_errors: BTreeMap::new(),
            node_exit: BTreeMap::from([
                ("gangseo".to_owned(), "exit status: 0".to_owned()),
                ("suwon".to_owned(), "exit status: 0".to_owned()),
            ]),
        };
        let text = report.to_text();
        for want in [
            "delivered/s at B",
            "4500.0 (target ≥ 5000: NOT met)",
            "17000 (72000 accepted − 55000 pulled)",
            "after 3.5 s (4857/s with A idle)",
            "12.00 (target < 50: met)",
            "node B usage",
            "latency status 503: 1 × (first: unavailable)",
            "gangseo: exit status: 0, suwon: exit status: 0",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["mode"], "cross");
        assert_eq!(json["throughput"]["backlog_at_end"], 17_000);
        assert_eq!(json["latency"]["latency_ms"]["p99"], 12.0);
    }

    #[test]
    fn truncate_counts_chars() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("가나다라", 2), "가나…");
    }
}
