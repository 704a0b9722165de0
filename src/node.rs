//! The composition root: builds a node from a validated [`Config`] (schemas, TLS, store,
//! ledger, inbox, API) and serves it on a listener until a shutdown signal.
//!
//! `run(listener, shutdown)` takes the socket and the signal from the caller, so tests bind
//! port 0 and stop the node when they like.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::config::Config;
use crate::identity::{self, Anonymous, CenterId, Peer};
use crate::inbox::Inbox;
use crate::ledger::{self, Ledger};
use crate::schema::{SchemaError, Schemas};
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};

/// A TLS handshake that takes longer than this is dropped (slowloris guard).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open requests (long polls included) to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 client must send a request's headers within this time (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most concurrent HTTP/2 streams per connection.
const H2_STREAMS_MAX: u32 = 256;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a node could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
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
}

/// A node ready to serve.
pub struct Node {
    center: CenterId,
    api: Arc<Api>,
    acceptor: TlsAcceptor,
    connections_max: usize,
    store: Store,
    ledger_thread: JoinHandle<()>,
    closing: watch::Sender<bool>,
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
        let server_config = tls::server_config(&config.tls)?;
        let store = Store::open(&config.data_dir)?;
        let (ledger, ledger_thread) = Ledger::start(store.clone())?;
        let (closing, closing_rx) = watch::channel(false);
        let inbox = Inbox::new(
            store.clone(),
            ledger.clone(),
            config.limits.inbox_lease,
            closing_rx,
        );
        let api = Api {
            schemas,
            ledger,
            inbox,
            store: store.clone(),
            directory: config.directory.clone(),
            limits: config.limits.clone(),
        };
        Ok(Node {
            center: config.center.clone(),
            api: Arc::new(api),
            acceptor: TlsAcceptor::from(server_config),
            connections_max: config.limits.connections_max,
            store,
            ledger_thread,
            closing,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then drains open connections.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let Node {
            center,
            api,
            acceptor,
            connections_max,
            store,
            ledger_thread,
            closing,
        } = self;
        let limit = Arc::new(Semaphore::new(connections_max));
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_STREAMS_MAX);
        let builder = Arc::new(builder);
        tokio::pin!(shutdown);

        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = limit.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
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
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let api = api.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                let peer: Arc<Peer> = Arc::new(
                    tls.get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map_or(Err(Anonymous::NoPlusgateUri), |c| {
                            identity::from_certificate(c)
                        }),
                );
                tracing::debug!(%remote, peer = ?peer, "connection");
                let service = service_fn(move |req| {
                    let api = api.clone();
                    let peer = peer.clone();
                    async move { Ok::<_, std::convert::Infallible>(api.handle(req, peer).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            });
        }

        tracing::info!(node = %center, "shutting down: draining connections");
        drop(listener);
        // Long polls answer now rather than at their deadline.
        closing.send_replace(true);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within the drain timeout");
        }
        // Everything acknowledged is already durable; this only tidies sled's buffers.
        if let Err(e) = store.sync() {
            tracing::warn!(error = %e, "final sync failed");
        }
        drop(api);
        if ledger_thread.is_finished() {
            let _ = ledger_thread.join();
        }
        tracing::info!(node = %center, "stopped");
    }
}
