//! One node: the closed-loop load at the sender's node, once per HTTP version, with
//! `--pull` a drain of the recipient's inbox after each run, and with `--rabbitmq` the
//! same load against RabbitMQ once the node is stopped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use harness::{identity_in, try_drain_inbox, try_register_consent, ClientCert, Federation, Node};
use plusgate::dev::manifest::{LoadedManifest, Manifest};
use plusgate::node::client::{Agent, HttpVersion};
use tokio::time::Instant;

use super::load::{
    connect_workers, join_workers, push_first, spawn_workers, BodyTemplate, Window, WorkerShared,
};
use super::report::{LatencyMs, PullReport, Report, RunReport};
use super::usage::{node_usage, NodeUsage, RssSampler, Watched};
use super::{amqp, broker};
use super::{
    bench_agent, bench_consent, doing, ip_url, plusgate, tag, BenchArgs, BENCH_CONSENT_ID,
};

/// The one center of the federation the bench creates.
const CENTER: &str = "suwon";

/// Bound on the `--pull` drain of the recipient's inbox after each run.
const PULL_TIME_MAX: Duration = Duration::from_secs(60);

/// Messages asked for per inbox pull (the node's default `inbox_pull_max`).
const PULL_BATCH_LEN: usize = 100;

/// Runs the single-node bench: a federation and node of its own unless `--manifest`.
pub(super) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    if args.rabbitmq {
        // Before the plusgate run, not after it.
        broker::check_installed(&amqp::server_path(args))?;
    }
    // Declared before `node` so it is dropped after it: the node dies, then its files go.
    let (federation, manifest) = match &args.manifest {
        Some(path) => (None, Manifest::load(path)?),
        None => {
            let federation = Federation::create(plusgate(args)?, &[CENTER])?;
            // The bench is one agency holding all its connections: let it hold as many as
            // it asks for (the node's default cap per identity is lower than the bench's
            // largest --connections).
            let wanted = usize::from(args.connections);
            if wanted > plusgate::config::CONNECTIONS_PER_IDENTITY_MAX_DEFAULT {
                federation.set_option(
                    CENTER,
                    "limits",
                    "connections_per_identity_max",
                    &wanted.to_string(),
                );
            }
            // Nobody pulls during the run: the recipient's inbox must hold everything the
            // run accepts, or the node rightly answers 503 inbox-full past its bound.
            federation.set_option(CENTER, "limits", "inbox_max", "1000000000");
            eprintln!(
                "bench: created a dev federation in {}",
                federation.dir().display()
            );
            let manifest = federation.manifest().clone();
            (Some(federation), manifest)
        }
    };
    let setup = Setup::from_manifest(&manifest, args)?;

    let node = match &federation {
        Some(federation) => {
            let node = federation.spawn_node(&setup.sender_center, "")?;
            eprintln!("bench: node listening on https://{}", node.addr());
            Some(node)
        }
        None => None,
    };
    let url = match &node {
        Some(node) => format!("https://{}", node.addr()),
        None => setup.node_url.clone(),
    };
    let (addr, server_name) = ip_url(&url)?;

    let run_tag = uuid::Uuid::now_v7().simple().to_string();
    let template = BodyTemplate::new(&setup.envelope)?;
    let mut runs = Vec::new();
    for version in args.http.versions() {
        let agent = bench_agent(&manifest, addr, &server_name, &setup.sender_cert, version)?;
        try_register_consent(&agent, &setup.consent).await?;
        preflight(&agent, &template, &run_tag).await?;
        eprintln!(
            "bench: {version}, {} in flight, {} s warm-up + {} s measured",
            args.connections, args.warmup_s, args.duration_s
        );
        let mut run = load(&agent, &template, &run_tag, args, node.as_ref()).await?;
        if args.pull {
            eprintln!("bench: draining {}'s inbox", setup.recipient);
            // The bench's own node serves the recipient too (one-center federation).
            let (addr, server_name) = match &node {
                Some(_) => (addr, server_name.clone()),
                None => ip_url(manifest.url_of(&setup.recipient)?)?,
            };
            let cert = identity_in(&manifest, &setup.recipient)?;
            let agent = bench_agent(&manifest, addr, &server_name, &cert, HttpVersion::Http2)?;
            run.pull = Some(drain(&agent).await?);
        }
        runs.push(run);
    }
    // Kills the node (SIGKILL: its data goes with the folder), so that it takes no CPU
    // from the broker.
    drop(node);
    let rabbitmq = match args.rabbitmq {
        true => {
            let mut rabbit = amqp::run(args, &template, &run_tag).await?;
            rabbit.compare(&runs);
            Some(Box::new(rabbit))
        }
        false => None,
    };
    Ok(Report {
        node_url: url,
        node_spawned: args.manifest.is_none(),
        sender: setup.sender,
        recipient: setup.recipient,
        connections: args.connections.into(),
        warmup_s: args.warmup_s.into(),
        duration_s: args.duration_s.into(),
        runs,
        rabbitmq,
    })
}

/// Everything the bench needs from the manifest, resolved.
struct Setup {
    sender: String,
    sender_center: String,
    sender_cert: ClientCert,
    recipient: String,
    /// The node of the sender's center.
    node_url: String,
    /// The referral envelope to send, adjusted to `sender` and `recipient`.
    envelope: serde_json::Value,
    /// The consent the envelope cites, registered by `sender` before the load.
    consent: serde_json::Value,
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
        let sender_cert = identity_in(manifest, &sender)?;
        let sender_center = sender
            .split_once('/')
            .map(|(center, _)| center.to_owned())
            .ok_or_else(|| anyhow!("agency id {sender:?} is not <center>/<agency>"))?;
        Ok(Setup {
            node_url: manifest.url_of(&sender)?.to_owned(),
            sender,
            sender_center,
            sender_cert,
            recipient,
            envelope,
            consent,
        })
    }
}

/// Sends one referral and fails the bench with the node's answer if it is not `202`,
/// so that a misconfiguration shows as one clear error instead of N × errors.
async fn preflight(agent: &Agent, template: &BodyTemplate, run_tag: &str) -> anyhow::Result<()> {
    let id = format!("bench-{run_tag}-{}-preflight", tag(agent.version));
    let mut conn = agent
        .connect()
        .await
        .map_err(doing("the node is not reachable"))?;
    push_first(&mut conn, template, &id, "the first referral", String::new).await
}

/// Runs one load phase with `args.connections` requests in flight.
async fn load(
    agent: &Agent,
    template: &BodyTemplate,
    run_tag: &str,
    args: &BenchArgs,
    node: Option<&Node>,
) -> anyhow::Result<RunReport> {
    let workers = usize::from(args.connections);
    let (connections, tcp_connections) = connect_workers(agent, workers).await?;
    let shared = Arc::new(WorkerShared {
        agent: agent.clone(),
        id_prefix: format!("bench-{run_tag}-{}", tag(agent.version)),
        template: template.clone(),
    });
    let window = Window::after_warmup(Instant::now(), args);
    let tasks = spawn_workers(&shared, connections, workers, window);

    tokio::time::sleep_until(window.start).await;
    let cpu_start = node.and_then(node_usage);
    let rss = RssSampler::start(node.and_then(Node::pid).map(Watched::Process));
    tokio::time::sleep_until(window.end).await;
    let cpu_end = node.and_then(node_usage);
    let rss_mib = rss.finish().await;
    let total = join_workers(tasks, window).await?;

    let measured_s = window.seconds();
    Ok(RunReport {
        http: agent.version.to_string(),
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
        rss_mib,
        pull: None,
    })
}

/// Pulls and acknowledges the inbox `agent` reads until it is empty or [`PULL_TIME_MAX`]
/// has passed, over one connection.
async fn drain(agent: &Agent) -> anyhow::Result<PullReport> {
    let started = Instant::now();
    let drained = try_drain_inbox(agent, PULL_BATCH_LEN, PULL_TIME_MAX).await?;
    let seconds = started.elapsed().as_secs_f64();
    let acked = drained.ids.len() as u64;
    Ok(PullReport {
        acked,
        seconds,
        acked_per_s: if seconds > 0.0 {
            acked as f64 / seconds
        } else {
            0.0
        },
        drained: drained.complete,
    })
}
