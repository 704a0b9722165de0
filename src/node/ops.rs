//! The operations listener: plain HTTP/1.1, no TLS, for a load balancer's health checks and
//! a Prometheus scraper. It serves exactly three endpoints:
//! - `GET /metrics`: every metric (`node::metrics`), in the OpenMetrics text format;
//! - `GET /healthz` and `GET /readyz`: the same answers as on the mTLS listener (the API's
//!   own `Api::healthz` and `Api::readyz`, not copies of them).
//!
//! Anything else is a 404 problem. Bound to loopback unless `[ops] listen` says otherwise
//! (`config::ops`); `serve` binds it and passes the socket in, as it does the main one, so
//! tests use port 0 and read the bound address from stdout.
//!
//! Architecture invariants, enforced here:
//! - nothing served here names a person, a message or a consent: the metrics' labels are
//!   bounded by construction (`node::metrics`), health and readiness say only the node's
//!   state;
//! - the listener holds at most [`CONNECTIONS_MAX`] connections, each must send its request
//!   head within [`HEADER_READ_TIMEOUT`], and every connection ends at shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::api::{Api, Problem};
use super::ledger::Ledger;
use super::metrics::{self, LedgerMetrics, Metrics};
use super::tls::Trust;
use crate::core::routing::Routing;

/// Connections the listener holds at once: a scraper and a few probes need a handful.
pub const CONNECTIONS_MAX: usize = 32;

/// Longest a connection may take to send a request head (slowloris bound).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the operations listener answers from.
#[derive(Debug)]
pub struct Ops {
    /// Health and readiness, answered by the API's own functions.
    pub api: Arc<Api>,
    /// Every metric.
    pub metrics: Arc<Metrics>,
}

/// Serves `listener` until `closing` turns true, then closes every connection.
pub async fn serve(listener: TcpListener, ops: Arc<Ops>, mut closing: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        let tcp = tokio::select! {
            _ = closing.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "operations listener: accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Finished connections' results are of no interest; collect them as we go.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: closed at once, as the main listener does past its budgets.
            continue;
        };
        let ops = Arc::clone(&ops);
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let ops = Arc::clone(&ops);
                async move { Ok::<_, Infallible>(ops.answer(&req)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "operations connection ended with an error");
            }
            drop(slot);
        });
    }
    connections.shutdown().await;
}

impl Ops {
    /// The answer to one request; the body is never read.
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut resp = Response::new(Full::new(Bytes::from(self.metrics.encode())));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                resp
            }
            (&Method::GET, "/healthz") => Api::healthz(),
            (&Method::GET, "/readyz") => self.api.readyz(),
            (_, "/metrics" | "/healthz" | "/readyz") => {
                Problem::method_not_allowed("GET").into_response()
            }
            _ => Problem::not_found(
                "the operations listener serves only /metrics, /healthz and /readyz",
            )
            .into_response(),
        }
    }
}

/// What `/metrics` reads only when asked: inbox and outbox depths (as the ledger last
/// committed them, every local agency and peer listed, with 0 when empty), the audit
/// chain's length and the age of its last checkpoint, and how long the TLS material lasts.
#[derive(Debug)]
pub struct Scraped {
    /// The chain's length and last checkpoint, and the node's clock.
    pub ledger: Ledger,
    /// The depths the writer publishes.
    pub depths: Arc<LedgerMetrics>,
    /// Which agencies and peers there are.
    pub routing: watch::Receiver<Arc<Routing>>,
    /// The current TLS material (replaced on reload).
    pub trust: watch::Receiver<Arc<Trust>>,
}

const DAY_S: f64 = 86_400.0;

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let depths = self.depths.depths();
        let routing = self.routing.borrow().clone();
        let mut inbox: Vec<(String, usize)> = routing
            .local_agencies()
            .map(|a| (a.to_string(), depths.inbox.get(a).copied().unwrap_or(0)))
            .collect();
        for (agency, n) in &depths.inbox {
            if !routing.is_local_agency(agency) {
                inbox.push((agency.to_string(), *n));
            }
        }
        inbox.sort();
        metrics::encode_gauges(
            &mut encoder,
            "inbox_messages",
            "Messages waiting in each local agency's inbox (pulled and not yet acknowledged \
             included)",
            "agency",
            inbox.iter().map(|(a, n)| (a.as_str(), *n as f64)),
        )?;
        let mut outbox: std::collections::BTreeMap<String, usize> = routing
            .peers()
            .into_iter()
            .map(|p| (p.to_string(), 0))
            .collect();
        for (peer, n) in &depths.outbox {
            outbox.insert(peer.to_string(), *n);
        }
        metrics::encode_gauges(
            &mut encoder,
            "outbox_messages",
            "Messages waiting in each peer center's outbox",
            "peer",
            outbox.iter().map(|(p, n)| (p.as_str(), *n as f64)),
        )?;
        metrics::encode_gauge(
            &mut encoder,
            "audit_entries",
            "Durable entries in the audit chain",
            self.ledger.durable_seq() as f64,
        )?;
        let now = self.ledger.clock().now();
        if let Some(at) = self
            .ledger
            .latest_checkpoint()
            .and_then(|c| crate::core::time::parse(&c.at))
        {
            metrics::encode_gauge(
                &mut encoder,
                "audit_checkpoint_age_seconds",
                "Time since this node signed its latest audit checkpoint",
                (now - at).as_seconds_f64(),
            )?;
        }
        let expiry = self.trust.borrow().expiry;
        let days_left = |at: i64| (at - now.unix_timestamp()) as f64 / DAY_S;
        if let Some(at) = expiry.certificate {
            metrics::encode_gauge(
                &mut encoder,
                "tls_certificate_expiry_days",
                "Days until the node certificate expires (negative: expired)",
                days_left(at),
            )?;
        }
        if let Some(at) = expiry.crl_next_update {
            metrics::encode_gauge(
                &mut encoder,
                "tls_crl_next_update_days",
                "Days until the earliest configured CRL's nextUpdate, after which its CA's \
                 certificates are refused",
                days_left(at),
            )?;
        }
        Ok(())
    }
}
