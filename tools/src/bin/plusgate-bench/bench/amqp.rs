//! The RabbitMQ side of `--rabbitmq`: the plusgate run's closed loop, against a private
//! broker ([`super::broker`]) over AMQP 0-9-1, in the same bench run.
//!
//! Load model: `--connections` publishers, each with its own TLS connection (presenting
//! the bench's client certificate) and one channel in confirm mode. A publisher sends one
//! persistent message (delivery mode 2, `application/json`) whose body is the plusgate
//! run's referral with a fresh id spliced in (ids `bench-<run>-mq-<worker>-<n>`, as long as
//! the HTTP runs' ids, so every body has the same bytes and length as one plusgate
//! stored), through the default exchange to the durable classic queue [`QUEUE`], waits
//! for the broker's `basic.ack`, and sends the next: the AMQP twin of one HTTP/1.1 request
//! in flight per connection. RabbitMQ confirms a persistent message routed to a durable
//! queue once it has written it to disk (fsync), as plusgate answers `202` once its batch
//! is fsynced. Nobody consumes: the queue grows as the plusgate recipient's inbox does.
//! The warm-up, the window and what counts are the plusgate run's ([`super::load`]): a
//! publish counts when its confirm arrives inside the window, and its latency is from
//! sending the publish to receiving the confirm. The broker's CPU time and peak memory
//! are its process group's (`beam.smp` and helpers) over the same window.
//!
//! The client is **amqprs**: it is tokio-native (the bench's runtime) and takes a
//! `tokio_rustls::TlsConnector` that we build ([`TlsAdaptor::new`]), so TLS is rustls on
//! the ring provider, configured as plusgate's own clients are (TLS 1.3 only), and no
//! second crypto provider or OpenSSL enters `Cargo.lock` (the tidy test); its minimum
//! Rust (1.71) is below the workspace's 1.85. lapin, the better-known client, needs Rust
//! 1.88 in its current release and does TLS through its own connector stack; its
//! confirms-as-futures API would have been nicer, but amqprs's confirm callback is a few
//! lines ([`ConfirmForwarder`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use amqprs::callbacks::{ChannelCallback, DefaultConnectionCallback};
use amqprs::channel::{
    BasicPublishArguments, Channel, ConfirmSelectArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::tls::TlsAdaptor;
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use anyhow::{anyhow, bail};
use plusgate::node::client::{client_config, HttpVersion};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::broker::{Broker, DEBIAN_SERVER, QUEUE, USER};
use super::load::{join_workers, BodyTemplate, Window, WorkerStats};
use super::report::{LatencyMs, RabbitReport, RunReport};
use super::usage::{group_usage, NodeUsage, RssSampler, Watched};
use super::{doing, micros, BenchArgs, RECONNECT_PAUSE, REQUEST_TIMEOUT};

/// Bound on the broker's boot (first AMQP connection accepted); a busy 2-core machine
/// needs 5–15 s.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Bound on one connection attempt (TCP, TLS, AMQP open).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on closing one connection at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause between connection attempts while the broker boots.
const BOOT_POLL: Duration = Duration::from_millis(250);

/// Runs the RabbitMQ comparison: starts a private broker, drives it with
/// `args.connections` synchronous publishers for `args.warmup_s` + `args.duration_s`,
/// stops it. `template` is the body the plusgate run pushed.
pub(super) async fn run(
    args: &BenchArgs,
    template: &BodyTemplate,
    run_tag: &str,
) -> anyhow::Result<RabbitReport> {
    let server = server_path(args);
    let mut broker = Broker::start(&server)?;
    eprintln!(
        "bench: starting RabbitMQ ({}) in {}",
        broker.node_name,
        broker.dir().display()
    );
    let result = measure(&mut broker, args, template, run_tag).await;
    let stopped = broker.stop();
    let mut report = match result {
        Ok(report) => report,
        Err(e) => bail!("{e:#}{}", broker.log_tails()),
    };
    report.stop_s = Some(stopped?.as_secs_f64());
    Ok(report)
}

/// The broker's start script: `--rabbitmq-server` or Debian's.
pub(super) fn server_path(args: &BenchArgs) -> PathBuf {
    args.rabbitmq_server
        .clone()
        .unwrap_or_else(|| DEBIAN_SERVER.into())
}

/// Everything between the broker's start and its stop.
async fn measure(
    broker: &mut Broker,
    args: &BenchArgs,
    template: &BodyTemplate,
    run_tag: &str,
) -> anyhow::Result<RabbitReport> {
    let target = Arc::new(Target::new(broker)?);
    let started = Instant::now();
    let first = wait_ready(broker, &target).await?;
    let product = format!(
        "{} {}",
        first.connection.server_properties().product(),
        first.connection.server_properties().version()
    );
    eprintln!(
        "bench: {product} ready after {:.1} s on amqps://{}",
        started.elapsed().as_secs_f64(),
        broker.addr
    );
    match Publisher::open(&Target::without_client_cert(broker)?).await {
        Ok(_) => bail!(
            "the broker accepted a client without a certificate: its TLS set-up is not the \
             bench's"
        ),
        Err(e) => eprintln!("bench: RabbitMQ refuses a client without a certificate ({e})"),
    }
    let mut first = first;
    first
        .channel
        .queue_declare(QueueDeclareArguments::durable_client_named(QUEUE))
        .await
        .map_err(doing(format!("declaring the durable queue {QUEUE}")))?;
    let preflight_id = format!("bench-{run_tag}-mq-preflight");
    first
        .publish(
            template.body(&preflight_id).into(),
            Instant::now() + REQUEST_TIMEOUT,
        )
        .await
        .map_err(|e| anyhow!("the first publish to RabbitMQ was not confirmed: {e}"))?;

    let workers = usize::from(args.connections);
    let mut publishers = Vec::with_capacity(workers);
    for i in 0..workers {
        let publisher = Publisher::open(&target)
            .await
            .map_err(|e| anyhow!("opening RabbitMQ publisher {i}: {e}"))?;
        publishers.push(publisher);
    }
    eprintln!(
        "bench: RabbitMQ, {workers} publishers, {} s warm-up + {} s measured",
        args.warmup_s, args.duration_s
    );
    let shared = Arc::new(Shared {
        target: Arc::clone(&target),
        id_prefix: format!("bench-{run_tag}-mq"),
        template: template.clone(),
    });
    let window = Window::after_warmup(Instant::now(), args);
    let mut tasks = JoinSet::new();
    for (worker, publisher) in publishers.into_iter().enumerate() {
        tasks.spawn(run_publisher(
            Arc::clone(&shared),
            worker,
            Some(publisher),
            window,
        ));
    }
    tokio::time::sleep_until(window.start).await;
    let usage_start = broker.group().and_then(group_usage);
    let rss = RssSampler::start(broker.group().map(Watched::Group));
    tokio::time::sleep_until(window.end).await;
    let usage_end = broker.group().and_then(group_usage);
    let rss_mib = rss.finish().await;
    let total = join_workers(tasks, window).await?;

    let queued = first
        .channel
        .queue_declare(
            QueueDeclareArguments::durable_client_named(QUEUE)
                .passive(true)
                .finish(),
        )
        .await
        .ok()
        .flatten()
        .map(|(_, messages, _)| u64::from(messages));
    first.close().await;

    let measured_s = window.seconds();
    Ok(RabbitReport {
        body_bytes: shared
            .template
            .body(&format!("{}-0-1", shared.id_prefix))
            .len(),
        broker: product,
        node_name: broker.node_name.clone(),
        queue: QUEUE.to_owned(),
        queue_type: "classic".to_owned(),
        durable: true,
        delivery_mode: 2,
        publisher_confirms: true,
        tls: "TLS 1.3, client certificate required (verify_peer, fail_if_no_peer_cert)".into(),
        auth: format!("PLAIN ({USER}) over that TLS"),
        confirmed_all: total.accepted_all,
        queued_at_end: queued,
        stop_s: None,
        run: RunReport {
            http: "RabbitMQ".to_owned(),
            tcp_connections: workers,
            streams_per_connection: 1,
            measured_s,
            accepted: total.accepted,
            accepted_per_s: total.accepted as f64 / measured_s,
            latency_ms: LatencyMs::from_histogram(&total.latency),
            errors_total: total.errors_total(),
            errors: total.errors,
            reconnects: total.reconnects,
            node: NodeUsage::between(usage_start, usage_end, measured_s, total.accepted),
            rss_mib,
            pull: None,
        },
        plusgate_over_rabbitmq: BTreeMap::new(),
    })
}

/// Connects once the broker accepts AMQP connections, failing early if it exits.
async fn wait_ready(broker: &mut Broker, target: &Target) -> anyhow::Result<Publisher> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        broker.check_running()?;
        let last_error = match Publisher::open(target).await {
            Ok(publisher) => return Ok(publisher),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            bail!("RabbitMQ did not accept a connection within {START_TIMEOUT:?}: {last_error}");
        }
        tokio::time::sleep(BOOT_POLL).await;
    }
}

/// Where and how publishers connect.
struct Target {
    open: OpenConnectionArguments,
}

impl Target {
    /// Presenting the bench's client certificate.
    fn new(broker: &Broker) -> anyhow::Result<Target> {
        Target::with_identity(broker, Some((&broker.client_cert, &broker.client_key)))
    }

    /// Presenting no client certificate, which the broker must refuse.
    fn without_client_cert(broker: &Broker) -> anyhow::Result<Target> {
        Target::with_identity(broker, None)
    }

    fn with_identity(broker: &Broker, identity: Option<(&Path, &Path)>) -> anyhow::Result<Target> {
        // plusgate's own client configuration (ring, TLS 1.3), without its HTTP ALPN.
        let config = client_config(&broker.ca_pem, identity, HttpVersion::Http1)?;
        let mut config = (*config).clone();
        config.alpn_protocols.clear();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let open = OpenConnectionArguments::new(
            &broker.addr.ip().to_string(),
            broker.addr.port(),
            USER,
            &broker.password,
        )
        .tls_adaptor(TlsAdaptor::new(connector, "localhost".to_owned()))
        .finish();
        Ok(Target { open })
    }
}

/// What all publishers of a run share.
struct Shared {
    target: Arc<Target>,
    id_prefix: String,
    template: BodyTemplate,
}

/// One closed-loop publisher: publishes the next message when the previous one is
/// confirmed, until `window.end`. Reconnects when its connection or channel fails.
async fn run_publisher(
    shared: Arc<Shared>,
    worker: usize,
    mut publisher: Option<Publisher>,
    window: Window,
) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut n: u64 = 0;
    while Instant::now() < window.end {
        let Some(p) = publisher.as_mut() else {
            match Publisher::open(&shared.target).await {
                Ok(p) => {
                    stats.reconnects += 1;
                    publisher = Some(p);
                }
                Err(e) => {
                    if Instant::now() >= window.start {
                        stats.error("connect", &e.to_string());
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
            continue;
        };
        n += 1;
        let body = shared
            .template
            .body(&format!("{}-{worker}-{n}", shared.id_prefix));
        let sent_at = Instant::now();
        let result = p.publish(body.into(), sent_at + REQUEST_TIMEOUT).await;
        let done_at = Instant::now();
        if result.is_ok() {
            stats.accepted_all += 1;
            if done_at <= window.end {
                stats.accepted_by_end += 1;
            }
        } else if let Some(broken) = publisher.take() {
            // A channel with a publish still unconfirmed cannot be trusted for the next.
            broken.close().await;
        }
        if done_at < window.start || done_at > window.end {
            continue;
        }
        match result {
            Ok(()) => {
                stats.accepted += 1;
                stats.latency.record(micros(done_at - sent_at));
            }
            Err(e) => stats.error(e.kind(), &e.to_string()),
        }
    }
    if let Some(p) = publisher {
        p.close().await;
    }
    stats
}

/// A connection with one channel in confirm mode, and the confirms of that channel.
struct Publisher {
    connection: Connection,
    channel: Channel,
    confirms: mpsc::UnboundedReceiver<Confirm>,
    /// Delivery tag of the last publish on the channel (the broker numbers them from 1).
    last_tag: u64,
}

impl Publisher {
    async fn open(target: &Target) -> Result<Publisher, PublishError> {
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let connection = Connection::open(&target.open).await?;
            connection
                .register_callback(DefaultConnectionCallback)
                .await?;
            let channel = connection.open_channel(None).await?;
            let (tx, confirms) = mpsc::unbounded_channel();
            channel.register_callback(ConfirmForwarder(tx)).await?;
            channel
                .confirm_select(ConfirmSelectArguments::default())
                .await?;
            Ok::<_, amqprs::error::Error>(Publisher {
                connection,
                channel,
                confirms,
                last_tag: 0,
            })
        })
        .await;
        match opened {
            Ok(Ok(publisher)) => Ok(publisher),
            Ok(Err(e)) => Err(PublishError::Connect(e.to_string())),
            Err(_) => Err(PublishError::Connect(format!(
                "no connection within {CONNECT_TIMEOUT:?}"
            ))),
        }
    }

    /// Publishes `body` persistently to [`QUEUE`] and waits until the broker confirms it
    /// (or `deadline`).
    async fn publish(&mut self, body: Vec<u8>, deadline: Instant) -> Result<(), PublishError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(amqprs::DELIVERY_MODE_PERSISTENT)
            .with_content_type("application/json")
            .finish();
        self.channel
            .basic_publish(properties, body, BasicPublishArguments::new("", QUEUE))
            .await
            .map_err(|e| PublishError::Channel(e.to_string()))?;
        self.last_tag += 1;
        let tag = self.last_tag;
        loop {
            let confirm = tokio::time::timeout_at(deadline, self.confirms.recv())
                .await
                .map_err(|_| PublishError::Timeout)?;
            match confirm {
                Some(Confirm::Ack {
                    tag: acked,
                    multiple,
                }) if covers(acked, multiple, tag) => return Ok(()),
                Some(Confirm::Nack {
                    tag: nacked,
                    multiple,
                }) if covers(nacked, multiple, tag) => return Err(PublishError::Nack),
                // A confirm of an earlier publish (one that timed out): not ours yet.
                Some(Confirm::Ack { .. } | Confirm::Nack { .. }) => continue,
                Some(Confirm::Closed(reason)) => return Err(PublishError::Channel(reason)),
                None => return Err(PublishError::Channel("the channel went away".into())),
            }
        }
    }

    async fn close(self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.connection.close()).await;
    }
}

/// Whether a confirm of `confirmed` (all tags up to it if `multiple`) covers `tag`.
fn covers(confirmed: u64, multiple: bool, tag: u64) -> bool {
    confirmed == tag || (multiple && confirmed >= tag)
}

/// What the broker said about a channel's publishes.
#[derive(Debug)]
enum Confirm {
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64, multiple: bool },
    Closed(String),
}

/// Forwards a channel's confirms (and its closing) to its publisher.
struct ConfirmForwarder(mpsc::UnboundedSender<Confirm>);

#[async_trait::async_trait]
impl ChannelCallback for ConfirmForwarder {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        let _ = self.0.send(Confirm::Closed(close.to_string()));
        Ok(())
    }

    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let _ = self.0.send(Confirm::Ack {
            tag: ack.delivery_tag(),
            multiple: ack.mutiple(),
        });
    }

    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        let _ = self.0.send(Confirm::Nack {
            tag: nack.delivery_tag(),
            multiple: nack.multiple(),
        });
    }

    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    /// Connecting, the TLS handshake, logging in or opening the channel failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The channel or connection failed or was closed by the broker.
    #[error("channel: {0}")]
    Channel(String),
    /// No confirm within [`REQUEST_TIMEOUT`].
    #[error("no confirm within {REQUEST_TIMEOUT:?}")]
    Timeout,
    /// The broker refused the message (`basic.nack`).
    #[error("the broker nacked the message")]
    Nack,
}

impl PublishError {
    /// A short name used to group errors in the report.
    fn kind(&self) -> &'static str {
        match self {
            PublishError::Connect(_) => "connect",
            PublishError::Channel(_) => "channel",
            PublishError::Timeout => "timeout",
            PublishError::Nack => "nack",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_cover_their_tag_or_all_below_when_multiple() {
        assert!(covers(5, false, 5));
        assert!(!covers(4, false, 5));
        assert!(!covers(6, false, 5));
        assert!(covers(6, true, 5));
        assert!(!covers(4, true, 5));
    }
}
