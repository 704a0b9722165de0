//! One client connection's life: its source address's handshake rate, then the TLS
//! handshake on the handshake budget and the handshake thread (under the current
//! [`Trust`]), admission by identity onto the main budget (`admission`), then
//! HTTP/1.1 or HTTP/2 (with the flow-control windows of `limits`) until the client closes,
//! the connection is idle too long or older than `limits.connection_age_max_s`, a reload
//! no longer accepts its client certificate (revoked, expired, CA removed), or the node
//! shuts down, or its open requests stall (none started or ended for the idle timeout plus
//! the longest a request may wait). Every close the node starts is graceful, for at most
//! `close_grace`; then the connection is dropped.
//!
//! Invariant: an HTTP/2 connection's request bytes that the node has not read are at most
//! `limits.h2_connection_window_bytes` (a stream's at most `h2_stream_window_bytes`).
//!
//! Invariant: every slot a connection holds is an owned value moved into its task, so it
//! is given back when the task ends, however it ends.
//!
//! Invariant: each handshake uses the trust current when the TCP connection was taken; no
//! connection outlives a reload that refuses its certificate by more than the time its
//! in-flight requests take.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::admission::{Activity, AddressRate, IdentitySlots, Quiet, RefusalLog};
use super::api::Api;
use super::api::Holding;
use super::handshakes::{HandshakeError, Handshakes};
use super::tls::Trust;
use crate::config::Limits;
use crate::core::identity::{self, Anonymous, Peer};

/// What a graceful close may take beyond the longest a request may legitimately last
/// (`close_grace`), before the connection is dropped: a client that never lets the node
/// send its answers (an HTTP/2 window held at zero) would otherwise hold a closing
/// connection, and the answers, for ever.
const CLOSE_GRACE_EXTRA: Duration = Duration::from_secs(5);
/// Largest HTTP/1.1 read buffer, so the largest request head: the API's heads are a few
/// hundred bytes; a longer head is answered 431 by hyper and the connection closed.
/// (hyper's default, ~400 KiB, named here so an upgrade cannot move it.)
const H1_BUF_BYTES_MAX: usize = 64 << 10;
/// Most headers of an HTTP/1.1 request; more are answered 431 (hyper's default).
const H1_HEADERS_MAX: usize = 100;
/// Largest decoded HTTP/2 header list; a larger one ends the stream or connection (hyper's
/// default), as does a CONTINUATION flood long before it is buffered.
const H2_HEADER_LIST_BYTES_MAX: u32 = 16 << 10;
/// HTTP/2 streams a client may reset before the node accepted them; past it the connection
/// gets GOAWAY ENHANCE_YOUR_CALM (the rapid-reset guard, CVE-2023-44487; h2's default).
const H2_PENDING_ACCEPT_RESETS_MAX: usize = 20;
/// HTTP/2 streams the node may reset for a client's protocol errors on one connection
/// before it sends GOAWAY (hyper's default).
const H2_LOCAL_ERROR_RESETS_MAX: usize = 1024;
/// Most concurrent HTTP/2 streams per connection.
const H2_STREAMS_MAX: u32 = 256;
/// HTTP/2 pings this often while the connection is open, so a peer that vanished (no FIN,
/// no RST) is found even while a long request keeps the connection from being idle.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// A ping not answered within this closes the connection.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection task shares: the current TLS trust, the HTTP server settings, the
/// API and the budgets.
pub struct Connections {
    /// Replaced whole by a reload; read once per connection for its handshake, watched by
    /// open connections to check their certificate again.
    trust: watch::Receiver<Arc<Trust>>,
    builder: auto::Builder<TokioExecutor>,
    api: Arc<Api>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    /// Open requests none of which started or ended for this long are stalled, and the
    /// connection is closed: `idle_timeout` plus the longest a request may wait on its own
    /// (a body read, a long poll), so a legitimate request never stalls.
    stall_timeout: Duration,
    /// A connection's first request head must arrive within this (HTTP/1.1 and HTTP/2;
    /// hyper bounds every HTTP/1.1 head by it too).
    header_read_timeout: Duration,
    /// The longest a graceful close may take before the connection is dropped.
    close_grace: Duration,
    /// The bound on a connection's age, whatever it does (`limits.connection_age_max_s`).
    age_max: Duration,
    /// Handshakes a second per source address (`limits.handshakes_per_address_*`); `None`:
    /// no such limit.
    address_rate: Option<AddressRate>,
    /// Connections in the TLS handshake (`limits.handshakes_max`).
    handshakes: Arc<Semaphore>,
    /// Where the handshakes run.
    handshake_thread: Handshakes,
    /// Authenticated connections (`limits.connections_max`).
    authenticated: Arc<Semaphore>,
    identities: Arc<IdentitySlots>,
    closing: watch::Receiver<bool>,
    refused_rate: RefusalLog,
    refused_unauthenticated: RefusalLog,
    refused_authenticated: RefusalLog,
}

impl Connections {
    /// The connection budgets and HTTP settings of `limits`.
    pub fn new(
        trust: watch::Receiver<Arc<Trust>>,
        api: Arc<Api>,
        limits: &Limits,
        handshake_thread: Handshakes,
        closing: watch::Receiver<bool>,
    ) -> Arc<Connections> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(H1_BUF_BYTES_MAX)
            .max_headers(H1_HEADERS_MAX);
        // Flow control bounds what a client can make the node buffer unread: at most the
        // connection's window per connection, whatever its streams do. Named rather than
        // hyper's defaults (which may change), and never adaptive: hyper's adaptive window
        // follows the bandwidth-delay product the client shows it, up to 16 MiB a window,
        // so the bound would be the client's to set.
        builder
            .http2()
            .timer(TokioTimer::new())
            .adaptive_window(false)
            .initial_stream_window_size(limits.h2_stream_window_bytes)
            .initial_connection_window_size(limits.h2_connection_window_bytes)
            .max_concurrent_streams(H2_STREAMS_MAX)
            .max_header_list_size(H2_HEADER_LIST_BYTES_MAX)
            .max_pending_accept_reset_streams(H2_PENDING_ACCEPT_RESETS_MAX)
            .max_local_error_reset_streams(H2_LOCAL_ERROR_RESETS_MAX)
            .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        Arc::new(Connections {
            trust,
            builder,
            api,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            stall_timeout: limits.idle_timeout
                + limits.inbox_wait_max.max(limits.body_read_timeout),
            header_read_timeout: limits.header_read_timeout,
            close_grace: limits.inbox_wait_max.max(limits.body_read_timeout) + CLOSE_GRACE_EXTRA,
            age_max: limits.connection_age_max,
            address_rate: AddressRate::new(
                limits.handshakes_per_address_per_s,
                limits.handshakes_per_address_burst,
            ),
            handshakes: Arc::new(Semaphore::new(limits.handshakes_max)),
            handshake_thread,
            authenticated: Arc::new(Semaphore::new(limits.connections_max)),
            identities: IdentitySlots::new(limits.connections_per_identity_max),
            closing,
            refused_rate: RefusalLog::new("handshakes_per_address_per_s reached"),
            refused_unauthenticated: RefusalLog::new("handshakes_max reached"),
            refused_authenticated: RefusalLog::new("connections_max reached"),
        })
    }

    /// Takes a freshly accepted TCP connection: closes it at once if its source address has
    /// no handshake left this second or the handshake budget is full, else serves it on its
    /// own task.
    pub fn spawn(self: &Arc<Self>, tcp: TcpStream, remote: SocketAddr) {
        if let Some(rate) = &self.address_rate {
            if !rate.admit(remote.ip(), std::time::Instant::now()) {
                self.refused_rate.refused();
                return;
            }
        }
        let Ok(handshake) = Arc::clone(&self.handshakes).try_acquire_owned() else {
            self.refused_unauthenticated.refused();
            return;
        };
        let _ = tcp.set_nodelay(true);
        let this = Arc::clone(self);
        tokio::spawn(async move { this.serve(tcp, remote, handshake).await });
    }

    /// Waits until every connection has ended, at most `timeout`; false if some had not.
    pub async fn drained(&self, timeout: Duration, connections_max: usize) -> bool {
        let all = u32::try_from(connections_max).unwrap_or(u32::MAX);
        tokio::time::timeout(timeout, self.authenticated.acquire_many(all))
            .await
            .is_ok()
    }

    async fn serve(&self, tcp: TcpStream, remote: SocketAddr, handshake: OwnedSemaphorePermit) {
        let mut trust = self.trust.clone();
        let acceptor = TlsAcceptor::from(Arc::clone(&trust.borrow_and_update().server));
        let accepted = self
            .handshake_thread
            .accept(tcp, acceptor, self.handshake_timeout)
            .await;
        drop(handshake);
        let tls = match accepted {
            Ok(tls) => tls,
            Err(e @ HandshakeError::TimedOut) => {
                tracing::debug!(%remote, error = %e, "connection closed in its handshake");
                return;
            }
            Err(e) => {
                tracing::info!(%remote, error = %e, "connection closed in its handshake");
                return;
            }
        };
        let chain: Vec<CertificateDer<'static>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let peer: Arc<Peer> = Arc::new(chain.first().map_or(Err(Anonymous::NoPlusgateUri), |c| {
            identity::from_certificate(c)
        }));
        let Ok(_slot) = Arc::clone(&self.authenticated).try_acquire_owned() else {
            self.refused_authenticated.refused();
            return;
        };
        // A verified certificate without a plusgate identity is still served (every
        // endpoint answers it 403); such connections share `connections_max` only.
        let _identity_slot = match peer.as_ref() {
            Ok(identity) => match self.identities.take(identity) {
                Ok(slot) => Some(slot),
                Err(refusal) => {
                    tracing::info!(%remote, %identity, %refusal, "connection closed after the handshake");
                    return;
                }
            },
            Err(_) => None,
        };
        tracing::debug!(%remote, peer = ?peer, "connection");

        let activity = Activity::default();
        let who = Arc::clone(&peer);
        let service = {
            let activity = activity.clone();
            let api = Arc::clone(&self.api);
            service_fn(move |req| {
                let in_flight = activity.begin();
                let api = Arc::clone(&api);
                let peer = Arc::clone(&peer);
                async move {
                    let resp = api.handle(req, peer).await;
                    Ok::<_, std::convert::Infallible>(resp.map(|b| Holding::new(b, in_flight)))
                }
            })
        };
        let conn = self
            .builder
            .serve_connection(TokioIo::new(tls), service)
            .into_owned();
        tokio::pin!(conn);
        let mut closing = self.closing.clone();
        let refused = async {
            loop {
                if trust.changed().await.is_err() {
                    // No more reloads: the node is going; `closing` ends the connection.
                    std::future::pending::<()>().await;
                }
                let current = Arc::clone(&trust.borrow_and_update());
                if let Err(e) = current.still_accepts(&chain) {
                    tracing::info!(%remote, peer = ?who, error = %e,
                        "closing a connection whose client certificate the reloaded trust refuses");
                    break;
                }
            }
        };
        let why = tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            quiet = activity.idle_or_stalled_for(self.idle_timeout, self.stall_timeout) => {
                match quiet {
                    Quiet::Idle => "idle",
                    Quiet::Stalled => "requests stalled",
                }
            }
            _ = activity.no_first_request_within(self.header_read_timeout) => "no request head in time",
            _ = tokio::time::sleep(self.age_max) => "age",
            _ = refused => "certificate no longer accepted",
            _ = closing.wait_for(|closing| *closing) => "shutdown",
        };
        tracing::debug!(%remote, why, "closing the connection");
        // Graceful: HTTP/2 sends GOAWAY and finishes open streams; HTTP/1.1 closes after
        // the current response.
        conn.as_mut().graceful_shutdown();
        match tokio::time::timeout(self.close_grace, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%remote, error = %e, "connection ended with an error"),
            // Dropped: the client did not let its streams finish (see CLOSE_GRACE_EXTRA).
            Err(_) => tracing::info!(%remote, peer = ?who, why,
                "graceful close took too long; connection dropped"),
        }
    }
}
