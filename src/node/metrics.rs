//! What the node counts and measures, for the operations listener's `/metrics`
//! (`node::ops`), in the Prometheus/OpenMetrics text format.
//!
//! The crate is `prometheus-client`, the Prometheus project's own Rust client: an explicit
//! [`Registry`] built by the composition root (no global recorder, so unit tests and
//! several nodes in one process never share counters), counters and gauges that are one
//! atomic each, and label sets that are plain structs, so a label can be a `&'static str`
//! and a lookup allocates nothing.
//!
//! Recording is split by who records, each part an `Arc` handed to its recorder:
//! [`ApiMetrics`] (requests by route and status, pushes, pulls and acks per agency; on the
//! request tasks) and [`LedgerMetrics`] (group sizes, fsync time, refusals by reason, dead
//! letters and delivery lag per peer, and the inbox and outbox depths the writer counts;
//! on the ledger thread). What is only known when asked (the audit chain's length, the age
//! of its last checkpoint, certificate expiry) is read at scrape time by a [`Collector`]
//! the composition root supplies.
//!
//! Architecture invariants, enforced here by the label types:
//! - labels are bounded: a route is a template (`/v1/messages/{id}`) from a fixed list, a
//!   status a number, a reason a `Refusal::kind`, an agency or peer one the directory
//!   names; never a raw path, a message, consent or subject id, or anything a client wrote;
//! - on the push path a record is a hash lookup under a read lock and an atomic add: the
//!   per-agency counters are resolved once per agency and kept ([`PerAgency`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::core::identity::{AgencyId, CenterId};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the request latency buckets: from a quick status read to a
/// long poll's 30 s.
const REQUEST_SECONDS_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A request: its method (one of a fixed few), route template and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

/// An agency of this center.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgencyLabels {
    agency: String,
}

/// A peer center.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// Why a consent check refused a message (`Refusal::kind`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// A histogram family whose histograms all have the same buckets.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_SECONDS_BUCKETS)
}

/// From a second to half a day, by factors of 4.
fn lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 12))
}

/// Recorded by the API on the request tasks.
#[derive(Debug)]
pub struct ApiMetrics {
    requests: Histograms<RequestLabels>,
    pushed: Family<AgencyLabels, Counter>,
    pulled: Family<AgencyLabels, Counter>,
    acked: Family<AgencyLabels, Counter>,
    received: Family<PeerLabels, Counter>,
    agencies: PerAgency,
}

impl Default for ApiMetrics {
    fn default() -> ApiMetrics {
        ApiMetrics {
            requests: Family::new_with_constructor(request_histogram),
            pushed: Family::default(),
            pulled: Family::default(),
            acked: Family::default(),
            received: Family::default(),
            agencies: PerAgency::default(),
        }
    }
}

/// One agency's counters, resolved from their families once.
#[derive(Clone, Debug)]
struct AgencyCounters {
    pushed: Counter,
    pulled: Counter,
    acked: Counter,
}

/// Each agency's counters by its id: the families' own lookup would need an owned label (a
/// `String` per record); this one is found by `&AgencyId`.
#[derive(Debug, Default)]
struct PerAgency(RwLock<HashMap<AgencyId, AgencyCounters>>);

impl ApiMetrics {
    /// A request answered with `status` after `took`. `method` and `route` are from fixed
    /// lists (`api::observe`).
    pub fn request(&self, method: &'static str, route: &'static str, status: u16, took: Duration) {
        let labels = RequestLabels {
            method,
            route,
            status,
        };
        self.requests
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A push from `agency` answered 202.
    pub fn pushed(&self, agency: &AgencyId) {
        self.of(agency, |c| c.pushed.inc());
    }

    /// `n` messages handed to a pull of `agency`.
    pub fn pulled(&self, agency: &AgencyId, n: usize) {
        self.of(agency, |c| c.pulled.inc_by(n as u64));
    }

    /// `n` messages another center's node `peer` handed over were taken (receipts signed;
    /// a resend of a message held here counts again).
    pub fn received(&self, peer: &CenterId, n: usize) {
        if n > 0 {
            self.received
                .get_or_create(&PeerLabels {
                    peer: peer.to_string(),
                })
                .inc_by(n as u64);
        }
    }

    /// `n` messages acknowledged by `agency`.
    pub fn acked(&self, agency: &AgencyId, n: usize) {
        self.of(agency, |c| c.acked.inc_by(n as u64));
    }

    fn of(&self, agency: &AgencyId, record: impl FnOnce(&AgencyCounters) -> u64) {
        let map = &self.agencies.0;
        if let Some(c) = map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agency)
        {
            record(c);
            return;
        }
        let labels = AgencyLabels {
            agency: agency.to_string(),
        };
        let counters = AgencyCounters {
            pushed: self.pushed.get_or_create_owned(&labels),
            pulled: self.pulled.get_or_create_owned(&labels),
            acked: self.acked.get_or_create_owned(&labels),
        };
        record(&counters);
        map.write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agency.clone(), counters);
    }
}

/// The inbox and outbox depths as the ledger's writer last committed them.
#[derive(Debug, Default, Clone)]
pub struct Depths {
    /// Messages waiting in each local agency's inbox (an agency with none may be missing).
    pub inbox: HashMap<AgencyId, usize>,
    /// Messages waiting in each peer center's outbox.
    pub outbox: BTreeMap<CenterId, usize>,
}

/// Recorded by the ledger's writer thread.
#[derive(Debug)]
pub struct LedgerMetrics {
    group_commands: Histogram,
    fsync_seconds: Histogram,
    refusals: Family<ReasonLabels, Counter>,
    dead_letters: Family<PeerLabels, Counter>,
    delivery_lag: Histograms<PeerLabels>,
    depths: Mutex<Depths>,
}

impl Default for LedgerMetrics {
    fn default() -> LedgerMetrics {
        LedgerMetrics {
            // 1 .. 4096 (`GROUP_LEN_MAX`) commands.
            group_commands: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 100 µs .. 1.6 s.
            fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            refusals: Family::default(),
            dead_letters: Family::default(),
            delivery_lag: Family::new_with_constructor(lag_histogram),
            depths: Mutex::new(Depths::default()),
        }
    }
}

impl LedgerMetrics {
    /// A group of `commands` committed, its store sync taking `fsync`.
    pub fn committed(&self, commands: usize, fsync: Duration) {
        self.group_commands.observe(commands as f64);
        self.fsync_seconds.observe(fsync.as_secs_f64());
    }

    /// The consent check refused a message, for `reason` (`Refusal::kind`).
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A message for `peer` was dead-lettered.
    pub fn dead_lettered(&self, peer: &CenterId) {
        self.dead_letters
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .inc();
    }

    /// A message for `peer` was delivered (its receipt recorded) `lag` after it was
    /// accepted here.
    pub fn delivered(&self, peer: &CenterId, lag: Duration) {
        self.delivery_lag
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .observe(lag.as_secs_f64());
    }

    /// The depths after a committed group.
    pub fn publish_depths(
        &self,
        inbox: &HashMap<AgencyId, usize>,
        outbox: &BTreeMap<CenterId, usize>,
    ) {
        let mut depths = self.depths.lock().unwrap_or_else(PoisonError::into_inner);
        depths.inbox.clone_from(inbox);
        depths.outbox.clone_from(outbox);
    }

    /// How many messages for `peer` were dead-lettered (for tests).
    #[cfg(test)]
    pub fn dead_letters_of(&self, peer: &CenterId) -> u64 {
        self.dead_letters
            .get(&PeerLabels {
                peer: peer.to_string(),
            })
            .map_or(0, |c| c.get())
    }

    /// The depths last published.
    pub fn depths(&self) -> Depths {
        self.depths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Every metric of a node, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Registers `api`'s and `ledger`'s metrics and `scraped`, which encodes what is read
    /// only when asked. Every name gets the `plusgate_` prefix.
    pub fn new(api: &ApiMetrics, ledger: &LedgerMetrics, scraped: Box<dyn Collector>) -> Metrics {
        let mut registry = Registry::with_prefix("plusgate");
        registry.register(
            "http_request_duration_seconds",
            "Requests on the agency/federation/officer listener by method, route template \
             and status: time from the request's head to its answer's head",
            api.requests.clone(),
        );
        registry.register(
            "messages_pushed",
            "Pushes answered 202, by sending agency (an idempotent retry counts again)",
            api.pushed.clone(),
        );
        registry.register(
            "messages_pulled",
            "Messages handed out to pulls, by recipient agency (a message leased again \
             after its lease ran out counts again)",
            api.pulled.clone(),
        );
        registry.register(
            "messages_acked",
            "Messages acknowledged, by recipient agency",
            api.acked.clone(),
        );
        registry.register(
            "messages_received",
            "Messages other centers' nodes handed over and this node took (receipt signed), \
             by peer center (a resend of one held here counts again)",
            api.received.clone(),
        );
        registry.register(
            "ledger_group_commands",
            "Commands per ledger group commit (one fsync each)",
            ledger.group_commands.clone(),
        );
        registry.register(
            "ledger_fsync_seconds",
            "Time of each group commit's store sync (flush and fsync)",
            ledger.fsync_seconds.clone(),
        );
        registry.register(
            "consent_refusals",
            "Messages refused by the consent check, by reason (the problem type's last part)",
            ledger.refusals.clone(),
        );
        registry.register(
            "dead_letters",
            "Messages dead-lettered, by peer center",
            ledger.dead_letters.clone(),
        );
        registry.register(
            "delivery_lag_seconds",
            "Time from acceptance here to the peer's recorded receipt, by peer center",
            ledger.delivery_lag.clone(),
        );
        registry.register_collector(scraped);
        Metrics { registry }
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Writing into a String fails only if an encoder refuses a value.
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }
}

/// Encodes a gauge family `name` of one label `key` (values from `series`) into
/// `encoder`: for collectors that read their values at scrape time.
pub fn encode_gauges<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    key: &'static str,
    series: impl IntoIterator<Item = (&'a str, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, v) in series {
        let labels = [(key, value)];
        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes a gauge `name` without labels into `encoder`.
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(v);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests;
