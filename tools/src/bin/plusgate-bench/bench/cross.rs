//! `--cross`: forwarding from one center's node (A) to another's (B). The federation,
//! its two nodes, the forwarding check and the closed-loop throughput phase; the pullers
//! at B are in [`super::pullers`], the open-loop latency phase in [`super::open_loop`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use harness::{identity_in, try_register_consent, Federation, Node};
use hyper::Method;
use plusgate::dev::manifest::LoadedManifest;
use plusgate::node::client::{Agent, HttpVersion};
use tokio::time::Instant;

use super::cross_report::{CrossReport, ThroughputReport};
use super::load::{
    connect_workers, join_workers, push_first, spawn_workers, BodyTemplate, Window, WorkerShared,
};
use super::open_loop::latency_phase;
use super::pullers::{Arrivals, Pullers, PULLERS, PULL_WAIT_S};
use super::report::LatencyMs;
use super::usage::{node_usage, process_usage, NodeUsage, ProcessUsage, Watched};
use super::{bench_agent, bench_consent, doing, plusgate, truncate, BenchArgs, BENCH_CONSENT_ID};

/// The two centers of the cross-center federation, sender's first (the `referral-remote`
/// example goes from the first center to the second).
const CROSS_CENTERS: [&str; 2] = ["suwon", "gangseo"];

/// Messages asked for per pull at B, lowered to B's `inbox_pull_max` if that is smaller.
const PULL_MAX_WANTED: usize = 500;

/// The latency phase's rate when `--rate` is not given, messages per second.
pub(super) const DEFAULT_RATE: u32 = 1000;

/// How long the first forwarded message may take before the bench decides that
/// forwarding does not work.
const FORWARD_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on waiting for B to receive the throughput phase's backlog.
const DRAIN_TIME_MAX: Duration = Duration::from_secs(120);

/// The wait for the backlog gives up early when nothing arrives at B for this long.
const DRAIN_STALL_MAX: Duration = Duration::from_secs(15);

/// The product owner's target for forwarding between two centers: messages delivered at
/// B per second.
pub(super) const TARGET_DELIVERED_PER_S: f64 = 5000.0;

/// Log lines of each node quoted when the bench fails.
const LOG_TAIL_LINES: usize = 20;

/// Runs `--cross`: federation, nodes, pullers, the phases, and the clean-up.
pub(super) async fn run(args: &BenchArgs) -> anyhow::Result<CrossReport> {
    // Declared before `nodes` so it is dropped after them: the nodes stop, then the
    // folder goes.
    let mut federation = Federation::create(plusgate(args)?, &CROSS_CENTERS)?;
    federation.set_keep(args.keep);
    eprintln!(
        "bench: created a two-center dev federation in {}",
        federation.dir().display()
    );
    let setup = CrossSetup::from_manifest(federation.manifest())?;

    // B first, so that A's forwarder finds it up.
    let mut nodes = CrossNodes::start(&federation, &setup)?;
    eprintln!(
        "bench: node {} listening on {}, node {} on {}",
        setup.center_a, setup.url_a, setup.center_b, setup.url_b
    );

    let run_tag = uuid::Uuid::now_v7().simple().to_string();
    let template = BodyTemplate::new(&setup.envelope)?;
    let agent_a = &setup.agent_a;
    try_register_consent(agent_a, &setup.consent).await?;
    let arrivals = Arc::new(Arrivals::default());
    let pullers = Pullers::start(&setup, Arc::clone(&arrivals)).await?;

    let first_forward =
        check_forwarding(agent_a, &template, &run_tag, &arrivals, &mut nodes).await?;
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
            Some(throughput_phase(args, agent_a, &template, &run_tag, &arrivals, &mut nodes).await?)
        }
    };
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    eprintln!(
        "bench: latency phase: {rate}/s open loop, at most {} in flight, {} s warm-up + {} s measured",
        args.connections, args.warmup_s, args.duration_s
    );
    let latency = latency_phase(
        args, rate, agent_a, &template, &run_tag, &arrivals, &mut nodes,
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
        federation_dir: args.keep.then(|| federation.dir().display().to_string()),
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

/// Everything `--cross` needs from the federation, resolved.
pub(super) struct CrossSetup {
    sender: String,
    pub(super) recipient: String,
    center_a: String,
    center_b: String,
    url_a: String,
    pub(super) url_b: String,
    /// HTTP/2 to A as the sender.
    agent_a: Agent,
    /// HTTP/2 to B as the recipient.
    pub(super) agent_b: Agent,
    /// The `referral-remote` example, sent as it is apart from its `id` and consent.
    envelope: serde_json::Value,
    /// The consent the envelope cites, registered at A by the sender.
    consent: serde_json::Value,
    /// Messages per pull at B.
    pub(super) pull_max: usize,
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
        let pull_max = plusgate::config::Config::load(&config_b)
            .map_err(doing(format!("reading {}", config_b.display())))?
            .limits
            .inbox_pull_max
            .min(PULL_MAX_WANTED);
        let url_a = manifest.center(&center_a)?.url.clone();
        let url_b = manifest.center(&center_b)?.url.clone();
        let agent_at = |url: &str, id: &str| -> anyhow::Result<Agent> {
            let (addr, server_name) = super::ip_url(url)?;
            let cert = identity_in(manifest, id)?;
            bench_agent(manifest, addr, &server_name, &cert, HttpVersion::Http2)
        };
        Ok(CrossSetup {
            agent_a: agent_at(&url_a, &sender)?,
            agent_b: agent_at(&url_b, &recipient)?,
            url_a,
            url_b,
            sender,
            recipient,
            center_a,
            center_b,
            consent,
            envelope,
            pull_max,
        })
    }
}

/// The two nodes, A (sender's center) and B (recipient's center). Dropping them stops
/// both gracefully (SIGTERM, then SIGKILL after [`harness::STOP_TIMEOUT`]), also when the
/// bench fails or is interrupted, so a kept federation holds complete logs.
pub(super) struct CrossNodes {
    a: Node,
    b: Node,
    center_a: String,
    center_b: String,
}

impl CrossNodes {
    /// Starts B, then A, each on the address the directory gives it (its config's
    /// `listen`), logging to `<center>.log` in the federation folder.
    fn start(federation: &Federation, setup: &CrossSetup) -> anyhow::Result<CrossNodes> {
        let start = |center: &str, url: &str| -> anyhow::Result<Node> {
            let node = federation
                .spawn_node(center, "")
                .map_err(doing(format!("starting node {center}")))?;
            let (want, _) = super::ip_url(url)?;
            if node.addr() != want {
                bail!(
                    "node {center} listens on {} but the federation lists it at {url}",
                    node.addr()
                );
            }
            Ok(node)
        };
        let b = start(&setup.center_b, &setup.url_b)?;
        let a = start(&setup.center_a, &setup.url_a)?;
        Ok(CrossNodes {
            a,
            b,
            center_a: setup.center_a.clone(),
            center_b: setup.center_b.clone(),
        })
    }

    /// Both nodes' counters and the bench's own (A, B, bench); `None` where `/proc`
    /// could not be read.
    pub(super) fn usage(&self) -> [Option<ProcessUsage>; 3] {
        [
            node_usage(&self.a),
            node_usage(&self.b),
            process_usage("self").ok(),
        ]
    }

    /// What to sample the memory of: A and B.
    pub(super) fn watched(&self) -> [Option<Watched>; 2] {
        [
            self.a.pid().map(Watched::Process),
            self.b.pid().map(Watched::Process),
        ]
    }

    /// Fails, with both logs' tails, if either node has exited.
    pub(super) fn check_running(&mut self) -> anyhow::Result<()> {
        let ended = |node: &mut Node| match node.exited() {
            Ok(status) => status.map(|s| s.to_string()),
            Err(e) => Some(format!("unknown ({e})")),
        };
        for (center, ended) in [
            (self.center_a.clone(), ended(&mut self.a)),
            (self.center_b.clone(), ended(&mut self.b)),
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
                node.log_path().display(),
                node.log_tail(LOG_TAIL_LINES)
            );
        }
        out
    }

    /// Stops A, then B (SIGTERM, wait); returns how each ended, by center.
    fn stop(mut self) -> BTreeMap<String, String> {
        eprintln!("bench: stopping the nodes");
        let ended = |node: &mut Node| match node.terminate() {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        };
        let mut exits = BTreeMap::new();
        exits.insert(self.center_a.clone(), ended(&mut self.a));
        exits.insert(self.center_b.clone(), ended(&mut self.b));
        exits
    }
}

impl Drop for CrossNodes {
    fn drop(&mut self) {
        // After `stop` both are stopped already and this does nothing.
        let _ = self.a.terminate();
        let _ = self.b.terminate();
    }
}

/// Pushes one referral at A and waits until a pull at B returns it; returns how long
/// that took. Fails with A's view of the message and both nodes' logs when it does not
/// arrive within [`FORWARD_CHECK_TIMEOUT`].
async fn check_forwarding(
    agent_a: &Agent,
    template: &BodyTemplate,
    run_tag: &str,
    arrivals: &Arrivals,
    nodes: &mut CrossNodes,
) -> anyhow::Result<Duration> {
    let id = format!("xbench-{run_tag}-check");
    let mut conn = agent_a
        .connect()
        .await
        .map_err(doing("node A is not reachable"))?;
    let sent = Instant::now();
    push_first(
        &mut conn,
        template,
        &id,
        "the first referral-remote at node A",
        || format!("\n{}", nodes.log_tails()),
    )
    .await?;
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
    agent_a: &Agent,
    template: &BodyTemplate,
    run_tag: &str,
    arrivals: &Arrivals,
    nodes: &mut CrossNodes,
) -> anyhow::Result<ThroughputReport> {
    let workers = usize::from(args.connections);
    let (connections, tcp_connections) = connect_workers(agent_a, workers).await?;
    let shared = Arc::new(WorkerShared {
        agent: agent_a.clone(),
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
