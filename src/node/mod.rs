//! The composition root: builds a node from a validated [`Config`] (schemas, TLS, store,
//! ledger, inbox, routing, API, forwarders) and serves it on a listener until a shutdown
//! signal.
//!
//! With `[federation]` configured, the node loads the signed directory at build time and
//! refuses one whose signature fails or that is older than the newest it ever loaded
//! (rollback protection; the newest is recorded in the store). On request (SIGHUP, see `cli`) it
//! reloads the directory file under the same rules and, if it is newer, replaces the routing whole.
//!
//! `run(listener, shutdown)` takes the socket and the signal from the caller, so tests bind
//! port 0 and stop the node when they like.

pub mod admission;
pub mod api;
pub mod backup;
pub mod client;
pub mod clock;
pub mod connection;
pub mod files;
pub mod forwarder;
pub mod handshakes;
pub mod inbox;
pub mod ledger;
pub mod metrics;
pub mod ops;
pub mod parallel;
pub mod peers;
pub mod reload;
pub mod store;
pub mod tls;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use self::api::Api;
use self::clock::{Clock, SystemClock};
use self::connection::Connections;
use self::files::{LoadError, ReadError};
use self::forwarder::{ForwardOptions, Forwarding};
use self::inbox::Inbox;
use self::ledger::{Anchor, CheckpointPolicy, Ledger, LedgerOptions};
use self::metrics::{ApiMetrics, LedgerMetrics, Metrics};
use self::ops::{Ops, Scraped};
use self::reload::Reloadable;
use self::store::{DirectorySeen, Store, StoreError};
use self::tls::{TlsError, Trust};
use crate::config::{Config, FederationConfig, Limits};
use crate::core::directory::{Directory, DirectoryError};
use crate::core::hex;
use crate::core::identity::{CenterId, Identity};
use crate::core::keys::{KeyError, PublicKey, SigningKey};
use crate::core::routing::Routing;
use crate::core::schema::{SchemaError, Schemas};

/// How long shutdown waits for open requests (long polls included) to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often payloads past their consent's retention period are looked for and erased.
/// Retention periods are days to years, so a minute's lateness is nothing.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Why a node could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file the config names could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A private key file is open to other users.
    #[error(transparent)]
    Exposed(#[from] crate::node::files::ExposedKey),
    /// A schema is broken.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The data directory cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger could not start.
    #[error(transparent)]
    Ledger(#[from] ledger::StartError),
    /// The federation directory is unusable (unreadable, badly signed, invalid).
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The node's signing key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The directory is usable but wrong for this node (older than one loaded before, does
    /// not list this node, lists another key for it).
    #[error("federation directory {path}: {problem}")]
    Federation {
        /// The directory file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: DirectoryMismatch,
    },
    /// A data key is unusable.
    #[error(transparent)]
    Vault(#[from] crate::core::vault::VaultError),
    /// The client side of node-to-node TLS could not be set up.
    #[error("node-to-node TLS: {0}")]
    Client(#[from] client::ClientError),
    /// The thread that runs TLS handshakes could not start (out of threads or memory).
    #[error("cannot start the TLS handshake thread: {0}")]
    Handshakes(std::io::Error),
}

/// Why a directory whose signature verifies is still not one this node may run with. The
/// operator's or the federation authority's to fix (a directory without this node, an older
/// file put back); starting again with the same file fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryMismatch {
    /// The directory does not list this node's center.
    #[error("does not list this node's center `{center}`")]
    NotListed {
        /// This node's center.
        center: CenterId,
    },
    /// The directory lists another signing key for this node.
    #[error("lists signing key {listed} for center {center}, but this node's key is {own}")]
    OtherKey {
        /// This node's center.
        center: CenterId,
        /// The key the directory lists.
        listed: PublicKey,
        /// This node's key.
        own: PublicKey,
    },
    /// Older than a directory this node loaded before (rollback protection).
    #[error(
        "is version {version}, older than version {seen} which this node already loaded; \
         refusing to roll back"
    )]
    Older {
        /// The file's version.
        version: u64,
        /// The newest version loaded before.
        seen: u64,
    },
    /// The same version as one loaded before, but different content.
    #[error(
        "is version {version} but differs from the version {seen} this node already loaded; \
         a changed directory needs a higher version"
    )]
    Changed {
        /// The file's version.
        version: u64,
        /// The version loaded before.
        seen: u64,
    },
}

/// A file that could not be read, or whose contents are unusable: the same as the core
/// type's own error for the contents.
impl<E> From<LoadError<E>> for NodeError
where
    NodeError: From<E>,
{
    fn from(e: LoadError<E>) -> NodeError {
        match e {
            LoadError::Read(e) => NodeError::Read(e),
            LoadError::Exposed(e) => NodeError::Exposed(e),
            LoadError::Content(e) => NodeError::from(e),
        }
    }
}

/// The federated part of a node.
struct Federated {
    config: FederationConfig,
    seen: DirectorySeen,
    signing_key: Arc<SigningKey>,
    /// The forwarders' TLS config, replaced on every reload (`reload`).
    forwarding_tls: watch::Sender<Arc<rustls::ClientConfig>>,
}

/// A node ready to serve.
pub struct Node {
    center: CenterId,
    api: Arc<Api>,
    routing: watch::Sender<Arc<Routing>>,
    federated: Option<Federated>,
    trust: watch::Sender<Arc<Trust>>,
    officers: watch::Sender<Arc<crate::core::routing::Staff>>,
    /// What a reload starts from (the config file's path and what it named at build).
    config: Config,
    limits: Limits,
    store: Store,
    ledger_thread: JoinHandle<()>,
    /// The thread TLS handshakes run on (`handshakes`).
    handshakes: handshakes::Handshakes,
    closing: watch::Sender<bool>,
    /// Every metric, for the operations listener.
    metrics: Arc<Metrics>,
    /// The ledger's metrics, which the forwarders record delivery lag into.
    ledger_metrics: Arc<LedgerMetrics>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("center", &self.center)
            .finish()
    }
}

impl Node {
    /// Builds every part of the node. Fails, naming the culprit, on a broken schema,
    /// unusable TLS material or an unusable data directory.
    pub fn build(config: &Config) -> Result<Node, NodeError> {
        let schemas = Schemas::load(&config.schemas)?;
        let trust = Trust::load(&config.tls)?;
        if config.tls.crls.is_empty() {
            tracing::warn!(
                "no CRLs configured (tls.crls): a client certificate cannot be revoked, only \
                 left to expire or its identity removed"
            );
        }
        let store = Store::open_with(&config.data_dir, store_options(&config.storage))?;
        let (routing, signing_key, federated) = match &config.federation {
            None => (
                Routing::standalone(config.center.clone(), &config.directory),
                None,
                None,
            ),
            Some(f) => {
                let key = SigningKey::load(&f.signing_key)?;
                let directory = load_directory(f, &config.center, &key, &store)?;
                let seen = DirectorySeen {
                    version: directory.version,
                    digest: hex::encode(&directory.digest()),
                };
                let routing = Routing::federated(config.center.clone(), Arc::new(directory));
                let key = Arc::new(key);
                (
                    routing,
                    Some(key.clone()),
                    Some(Federated {
                        config: f.clone(),
                        seen,
                        signing_key: key,
                        forwarding_tls: watch::channel(reload::forwarding_config(&config.tls)?).0,
                    }),
                )
            }
        };
        let options = LedgerOptions {
            outbox_max: config
                .federation
                .as_ref()
                .map_or(LedgerOptions::default().outbox_max, |f| f.outbox_max),
            inbox_max: config.limits.inbox_max,
            queue_bytes_max: config.limits.ledger_queue_bytes_max,
            checkpoints: match (&config.federation, &signing_key) {
                (Some(f), Some(key)) => Some(CheckpointPolicy {
                    node: config.center.clone(),
                    key: Arc::clone(key),
                    every: f.checkpoint_every,
                    anchor: Anchor::in_data_dir(&config.data_dir),
                }),
                _ => None,
            },
            federated_as: config.federation.as_ref().map(|_| config.center.clone()),
            metrics: Arc::new(LedgerMetrics::default()),
        };
        let ledger_metrics = Arc::clone(&options.metrics);
        let data_keys = match &config.storage.data_key {
            None => None,
            Some(current) => Some(Arc::new(crate::core::vault::DataKeys::load(
                current,
                &config.storage.old_data_keys,
            )?)),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::shifted(config.clock.danger_offset));
        if !config.clock.danger_offset.is_zero() {
            tracing::warn!(
                danger_offset_s = config.clock.danger_offset.whole_seconds(),
                "the clock is shifted by [clock] danger_offset_s: every time this node \
                 records and every expiry it judges is off from the real time by this much; \
                 for tests only"
            );
        }
        let (ledger, ledger_thread) = Ledger::start(store.clone(), options, clock)?;
        let ledger_for_metrics = ledger.clone();
        let (closing, closing_rx) = watch::channel(false);
        let inbox = Inbox::new(
            store.clone(),
            ledger.clone(),
            config.limits.inbox_lease,
            closing_rx,
            data_keys.clone(),
        );
        let (routing_tx, routing_rx) = watch::channel(Arc::new(routing));
        let (officers_tx, officers_rx) = watch::channel(Arc::new(config.directory.staff()));
        let api = Api {
            schemas,
            ledger,
            inbox,
            store: store.clone(),
            routing: routing_rx,
            signing_key,
            data_keys,
            center: config.center.clone(),
            officers: officers_rx,
            federation_tls: federated.as_ref().map(|f| f.forwarding_tls.subscribe()),
            limits: config.limits.clone(),
            body_budget: crate::node::api::budget::BodyBudget::new(
                config.limits.body_budget_bytes,
                config.limits.body_budget_identity_bytes,
            ),
            metrics: Arc::new(ApiMetrics::default()),
            backups: Arc::new(crate::node::backup::Backups::new(
                config.data_dir.clone(),
                config.storage.reserve_bytes,
            )),
        };
        let trust = watch::channel(Arc::new(trust)).0;
        let metrics = Metrics::new(
            &api.metrics,
            &ledger_metrics,
            Box::new(Scraped {
                ledger: ledger_for_metrics,
                depths: Arc::clone(&ledger_metrics),
                routing: routing_tx.subscribe(),
                trust: trust.subscribe(),
            }),
        );
        Ok(Node {
            center: config.center.clone(),
            api: Arc::new(api),
            routing: routing_tx,
            federated,
            trust,
            officers: officers_tx,
            config: config.clone(),
            limits: config.limits.clone(),
            store,
            ledger_thread,
            handshakes: handshakes::Handshakes::start().map_err(NodeError::Handshakes)?,
            closing,
            metrics: Arc::new(metrics),
            ledger_metrics,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then drains open connections. Each
    /// message on `reload` (the CLI sends one per SIGHUP) reloads the TLS trust, officers and
    /// agencies (`reload`) and the federation directory; the TLS files and the config file
    /// are also reloaded when they change. With `ops`, the operations listener (`ops`:
    /// metrics, health, readiness, plain HTTP) serves on it until the same shutdown.
    pub async fn run(
        self,
        listener: TcpListener,
        ops: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
        mut reload: tokio::sync::mpsc::Receiver<()>,
    ) {
        let Node {
            center,
            api,
            routing,
            federated,
            trust,
            officers,
            config,
            limits,
            store,
            ledger_thread,
            handshakes,
            closing,
            metrics,
            ledger_metrics,
        } = self;
        let ops = ops.map(|listener| {
            let ops = Arc::new(Ops {
                api: Arc::clone(&api),
                metrics: Arc::clone(&metrics),
            });
            tokio::spawn(ops::serve(listener, ops, closing.subscribe()))
        });
        // Only the operations listener reads the metrics; its registry holds a ledger
        // handle, which must go for the ledger to stop.
        drop(metrics);
        admission::raise_open_files_limit(
            (limits.connections_max + limits.handshakes_max) as u64 + admission::OTHER_FILES_MAX,
        );
        let connections = Connections::new(
            trust.subscribe(),
            api.clone(),
            &limits,
            handshakes,
            closing.subscribe(),
        );
        tokio::pin!(shutdown);

        let forwarding_tls = federated.as_ref().map(|f| f.forwarding_tls.clone());
        let (federation, standalone_routing) = match federated {
            None => (None, Some(routing)),
            Some(f) => {
                match FederationRuntime::start(&center, &api, routing, f, &closing, ledger_metrics)
                    .await
                {
                    Ok(rt) => (Some(rt), None),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start forwarding: messages for other centers stay in their outboxes until a restart");
                        (None, None)
                    }
                }
            }
        };
        let mut reloadable =
            Reloadable::new(&config, trust, officers, standalone_routing, forwarding_tls);
        // Payloads whose consent's retention period ended are erased at start and then
        // every PURGE_EVERY (metadata, receipts and the audit entries stay).
        let purger = tokio::spawn(ledger::purge_every(
            api.ledger.clone(),
            Identity::Node(center.clone()),
            PURGE_EVERY,
            closing.subscribe(),
        ));
        // Reloads run on their own task, so a request is handled at once, not whenever the
        // accept loop next comes round. The task hands the runtime back at shutdown.
        let reloader = {
            let api = api.clone();
            let mut closing = closing.subscribe();
            tokio::spawn(async move {
                let mut federation = federation;
                let mut requests_open = true;
                let mut poll = tokio::time::interval_at(
                    tokio::time::Instant::now() + reload::POLL_INTERVAL,
                    reload::POLL_INTERVAL,
                );
                poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        request = reload.recv(), if requests_open => match request {
                            // No SIGHUP handler: the file poll goes on.
                            None => requests_open = false,
                            Some(()) => {
                                reloadable.reload("SIGHUP");
                                if let Some(f) = &mut federation {
                                    f.reload(&api).await;
                                }
                            }
                        },
                        _ = poll.tick() => {
                            if reloadable.files_changed() {
                                reloadable.reload("a watched file changed");
                            }
                        }
                        _ = closing.changed() => break,
                    }
                }
                federation
            })
        };

        // Accept at once, always: whether a connection may stay is decided by the budgets
        // (`connection`), not by leaving it in the kernel's queue.
        loop {
            let (tcp, remote) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            connections.spawn(tcp, remote);
        }

        tracing::info!(node = %center, "shutting down: draining connections");
        drop(listener);
        purger.abort();
        // Long polls answer now rather than at their deadline.
        closing.send_replace(true);
        if !connections
            .drained(DRAIN_TIMEOUT, limits.connections_max)
            .await
        {
            tracing::warn!("some connections did not finish within the drain timeout");
        }
        // The connections' share of the API goes too, so the ledger can stop below, and so
        // does the operations listener's (it stops on `closing`).
        drop(connections);
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        if let Ok(Some(f)) = reloader.await {
            // The chain's last entries get a signed checkpoint before the node goes.
            if let Err(e) = api.ledger.checkpoint().await {
                tracing::warn!(error = %e, "no final audit checkpoint");
            }
            for task in f.forwarders {
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
        }
        // The writer stops once every handle is gone, folding its deferred writes into the
        // store first; give it a moment. Everything acknowledged is durable either way.
        drop(api);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !ledger_thread.is_finished() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if ledger_thread.is_finished() {
            let _ = ledger_thread.join();
        }
        if let Err(e) = store.sync() {
            tracing::warn!(error = %e, "final sync failed");
        }
        tracing::info!(node = %center, "stopped");
    }
}

/// What `[storage]` lets the store use.
fn store_options(s: &crate::config::StorageConfig) -> crate::node::store::StoreOptions {
    crate::node::store::StoreOptions {
        cache_bytes: s.cache_bytes,
        overlay_bytes: usize::try_from(s.overlay_bytes).unwrap_or(usize::MAX),
        reserve_bytes: s.reserve_bytes,
        faults: crate::node::store::Faults {
            fail_apply_at: s.danger_fail_apply_at,
            fail_sync_at: s.danger_fail_sync_at,
        },
    }
}

/// Loads the signed directory and checks it is right for this node: listing this node
/// with this node's signing key. `check-config` runs exactly this.
pub fn load_directory_for(
    f: &FederationConfig,
    center: &CenterId,
    key: &SigningKey,
) -> Result<Directory, NodeError> {
    let directory = Directory::load(&f.directory, &f.authority_key)?;
    let wrong = |problem| NodeError::Federation {
        path: f.directory.clone(),
        problem,
    };
    let own = directory.center(center).ok_or_else(|| {
        wrong(DirectoryMismatch::NotListed {
            center: center.clone(),
        })
    })?;
    if own.signing_key != key.public_key() {
        return Err(wrong(DirectoryMismatch::OtherKey {
            center: center.clone(),
            listed: own.signing_key.clone(),
            own: key.public_key(),
        }));
    }
    Ok(directory)
}

/// [`load_directory_for`], and not older than the newest this node loaded before.
fn load_directory(
    f: &FederationConfig,
    center: &CenterId,
    key: &SigningKey,
    store: &Store,
) -> Result<Directory, NodeError> {
    let directory = load_directory_for(f, center, key)?;
    if let Some(seen) = store.directory_seen()? {
        check_not_older(&directory, &seen).map_err(|problem| NodeError::Federation {
            path: f.directory.clone(),
            problem,
        })?;
    }
    Ok(directory)
}

/// Rollback protection: a directory older than `seen`, or a different one with the same
/// version, is refused.
fn check_not_older(directory: &Directory, seen: &DirectorySeen) -> Result<(), DirectoryMismatch> {
    if directory.version < seen.version {
        return Err(DirectoryMismatch::Older {
            version: directory.version,
            seen: seen.version,
        });
    }
    if directory.version == seen.version && hex::encode(&directory.digest()) != seen.digest {
        return Err(DirectoryMismatch::Changed {
            version: directory.version,
            seen: seen.version,
        });
    }
    Ok(())
}

/// The running federation side of a node: the forwarders and the directory reload.
struct FederationRuntime {
    ctx: Arc<Forwarding>,
    routing: watch::Sender<Arc<Routing>>,
    federated: Federated,
    started: BTreeSet<CenterId>,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

impl FederationRuntime {
    async fn start(
        center: &CenterId,
        api: &Api,
        routing: watch::Sender<Arc<Routing>>,
        federated: Federated,
        closing: &watch::Sender<bool>,
        metrics: Arc<LedgerMetrics>,
    ) -> Result<FederationRuntime, ledger::LedgerError> {
        api.ledger.record_directory(federated.seen.clone()).await?;
        let f = &federated.config;
        let federated_interval = f.checkpoint_interval;
        let ctx = Arc::new(Forwarding {
            center: center.clone(),
            store: api.store.clone(),
            ledger: api.ledger.clone(),
            routing: routing.subscribe(),
            tls: federated.forwarding_tls.subscribe(),
            options: ForwardOptions {
                batch_max: f.batch_max,
                retry_initial: f.retry_initial,
                retry_max: f.retry_max,
                message_ttl: f.message_ttl,
            },
            closing: closing.subscribe(),
            clock: api.ledger.clock().clone(),
            keys: api.data_keys.clone(),
            signing_key: federated.signing_key.clone(),
            metrics,
        });
        let mut rt = FederationRuntime {
            ctx,
            routing,
            federated,
            started: BTreeSet::new(),
            forwarders: Vec::new(),
        };
        // Every center in the directory, and any center an outbox still holds messages for
        // (a center dropped from the directory: its messages then dead-letter at their TTL).
        let mut peers: BTreeSet<CenterId> = rt.routing.borrow().peers().into_iter().collect();
        if let Ok(lengths) = api.store.outbox_lengths() {
            peers.extend(lengths.into_keys());
        }
        for peer in peers {
            rt.spawn(peer);
        }
        // A quiet node signs its last entries too, at least every checkpoint interval.
        let ledger = api.ledger.clone();
        let mut closing = closing.subscribe();
        let interval = federated_interval;
        rt.forwarders.push(tokio::spawn(async move {
            // The first tick one interval from now (tokio's `interval` would fire at once).
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = ledger.checkpoint().await {
                            tracing::warn!(error = %e, "could not sign an audit checkpoint");
                        }
                    }
                    _ = closing.changed() => break,
                }
            }
        }));
        Ok(rt)
    }

    fn spawn(&mut self, peer: CenterId) {
        if self.started.insert(peer.clone()) {
            self.forwarders
                .push(tokio::spawn(forwarder::forward(self.ctx.clone(), peer)));
        }
    }

    /// SIGHUP: load the directory file again; take it only if it verifies and is newer.
    async fn reload(&mut self, api: &Api) {
        let f = &self.federated.config;
        let center = self.ctx.center.clone();
        let loaded = SigningKey::load(&f.signing_key)
            .map_err(NodeError::from)
            .and_then(|key| load_directory(f, &center, &key, &api.store));
        let directory = match loaded {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "directory reload refused; keeping the current one");
                return;
            }
        };
        let seen = DirectorySeen {
            version: directory.version,
            digest: hex::encode(&directory.digest()),
        };
        if seen == self.federated.seen {
            tracing::info!(version = seen.version, "directory reload: unchanged");
            return;
        }
        if let Err(e) = api.ledger.record_directory(seen.clone()).await {
            tracing::error!(error = %e, "directory reload: cannot record it; keeping the current one");
            return;
        }
        let routing = Routing::federated(center, Arc::new(directory));
        let peers = routing.peers();
        self.routing.send_replace(Arc::new(routing));
        tracing::info!(version = seen.version, "directory reloaded");
        self.federated.seen = seen;
        for peer in peers {
            self.spawn(peer);
        }
    }
}
