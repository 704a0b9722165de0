//! The `[limits]` section: every bound a client can push against, with its documented
//! default and largest accepted value, each named with why it has its value, and the
//! validation of the section into [`Limits`].

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Limits};

/// Largest accepted `limits.body_bytes_max`: a request is buffered whole, validated and
/// sealed in memory, and a federation batch carries up to `batch_max` of them. (The store
/// keeps any size inside the one file it fsyncs: a large record is stored in pieces, see
/// `store::pieces`.)
pub const BODY_BYTES_MAX_LIMIT: usize = 1 << 20;

/// Default `limits.handshake_timeout_ms`: a TLS handshake on a LAN or across the country
/// takes milliseconds; three seconds leaves room for a loaded client and little for a
/// slowloris.
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 3_000;
/// Largest accepted `limits.handshake_timeout_ms`.
pub const HANDSHAKE_TIMEOUT_MS_LIMIT: u64 = 30_000;
/// Default `limits.handshakes_max`: connections still in the TLS handshake (not yet
/// authenticated). Small next to `connections_max`, so unauthenticated sockets can never
/// take the slots of authenticated clients.
pub const HANDSHAKES_MAX_DEFAULT: usize = 128;
/// Default `limits.handshakes_per_address_per_s`: TLS handshakes one source address (an
/// IPv6 /64) may start a second, after its burst. A client that keeps its connections (up
/// to `connection_age_max_s`) starts a few handshakes a minute, and even a batch job that
/// opens a connection per request rarely needs more than this; an address over it has its
/// connections closed at once, before the handshake, like a full handshake budget. A
/// handshake is the costliest thing a client can make the node do before it is
/// authenticated (a signature, a key exchange, the certificate's verification: about a
/// millisecond of CPU), so this bounds one source at about 6 % of a core, and the
/// handshake thread's lower priority keeps even that behind authenticated requests.
pub const HANDSHAKES_PER_ADDRESS_PER_S_DEFAULT: u32 = 64;
/// Largest accepted `limits.handshakes_per_address_per_s`.
pub const HANDSHAKES_PER_ADDRESS_PER_S_LIMIT: u32 = 100_000;
/// Default `limits.handshakes_per_address_burst`: handshakes one address may start at once
/// before the rate applies: as many as the handshake budget (`handshakes_max`), so after
/// a node restart two agencies' whole pools (`connections_per_identity_max` each) behind
/// one address reconnect at once, and no address fills the budget twice in a row.
pub const HANDSHAKES_PER_ADDRESS_BURST_DEFAULT: u32 = 128;
/// Largest accepted `limits.handshakes_per_address_burst`.
pub const HANDSHAKES_PER_ADDRESS_BURST_LIMIT: u32 = 1_000_000;
/// Default `limits.connections_per_identity_max`: one agency system's pool of connections
/// (HTTP/2 multiplexes up to 256 requests on each), so one identity (or one leaked key)
/// cannot hold every slot.
pub const CONNECTIONS_PER_IDENTITY_MAX_DEFAULT: usize = 64;
/// Default `limits.idle_timeout_ms`: a connection with no open request for this long is
/// closed (gracefully: HTTP/2 GOAWAY, HTTP/1.1 close between requests).
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Largest accepted `limits.idle_timeout_ms`.
pub const IDLE_TIMEOUT_MS_LIMIT: u64 = 3_600_000;
/// Default `limits.header_read_timeout_ms`: an HTTP/1.1 client must send a request's whole
/// head (request line and headers) within this time after the node starts waiting for it,
/// and a connection of either protocol its first request head within this time of its
/// handshake, else the connection is closed (the slowloris guard). A head is a few hundred bytes that
/// any client sends at once; ten seconds is ample for a loaded client and a third of what a
/// slowloris held before (hyper's 30 s default, hard-coded until then).
pub const HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Largest accepted `limits.header_read_timeout_ms`.
pub const HEADER_READ_TIMEOUT_MS_LIMIT: u64 = 60_000;
/// Default `limits.body_read_timeout_ms`: the whole request body must arrive within this
/// time after the handler starts reading it (1 MiB at a slow 1 Mbit/s takes 8 s), else 408.
pub const BODY_READ_TIMEOUT_MS_DEFAULT: u64 = 15_000;
/// Largest accepted `limits.body_read_timeout_ms`.
pub const BODY_READ_TIMEOUT_MS_LIMIT: u64 = 300_000;
/// Default `limits.body_budget_bytes`: request bodies the whole node buffers at once.
/// Without it, 4,096 connections × 256 HTTP/2 streams × 1 MiB could ask for terabytes;
/// 256 MiB is a quarter of the smallest host we deploy on (1 GiB), and at the measured
/// ~2,000 pushes/s of 1 KiB–1 MiB bodies it is never the bottleneck of honest traffic
/// (docs/performance.md).
pub const BODY_BUDGET_BYTES_DEFAULT: usize = 256 << 20;
/// Default `limits.body_budget_identity_bytes`: bodies one certificate identity buffers at
/// once. A quarter of the node's budget, so one agency (or one leaked key) cannot take it
/// all, and twice a federation batch (32 MiB), so a peer node's batch is always readable
/// while another one is being answered.
pub const BODY_BUDGET_IDENTITY_BYTES_DEFAULT: usize = 64 << 20;
/// Default `limits.ledger_queue_bytes_max`: message bytes waiting for the ledger thread.
/// Four federation batches' worth; the count bound (`ledger::QUEUE_LEN_MAX`) alone would
/// let 16,384 queued 1 MiB pushes hold 16 GiB.
pub const LEDGER_QUEUE_BYTES_MAX_DEFAULT: usize = 128 << 20;
/// Largest accepted `limits.ledger_queue_bytes_max` (a semaphore's permits are `u32`).
pub const LEDGER_QUEUE_BYTES_MAX_LIMIT: usize = u32::MAX as usize;
/// Default `limits.inbox_max`: messages one local agency's inbox may hold. Like a
/// federation outbox's `outbox_max`: an agency that stops pulling makes its senders wait
/// (503) instead of growing the store without bound.
pub const INBOX_MAX_DEFAULT: usize = 100_000;
/// Default `limits.connection_age_max_s`: a connection older than this is closed gracefully
/// (HTTP/2 GOAWAY, HTTP/1.1 close after the current response) and the client reconnects,
/// with a full handshake against the current CA bundle and CRLs. It bounds how long a
/// certificate revoked by a CRL the node cannot match to an open connection (or revoked
/// while the node could not reload) keeps being served; an hour costs a busy agency one
/// handshake an hour per connection.
pub const CONNECTION_AGE_MAX_S_DEFAULT: u64 = 3_600;
/// Largest accepted `limits.connection_age_max_s`: one day.
pub const CONNECTION_AGE_MAX_S_LIMIT: u64 = 86_400;
/// Default `limits.h2_stream_window_bytes`: request body bytes one HTTP/2 stream may send
/// before the node has read them (the stream's flow-control window, RFC 9113 §6.9). A
/// quarter of the largest push: a 1 MiB body crosses a LAN in four windows, and a sender
/// never has more of one request in flight than this.
pub const H2_STREAM_WINDOW_BYTES_DEFAULT: u32 = 256 << 10;
/// Default `limits.h2_connection_window_bytes`: request body bytes all streams of one
/// HTTP/2 connection may send before the node has read them. It bounds what a connection
/// makes the node buffer unread (one identity: `connections_per_identity_max` × this,
/// 64 MiB, as much as its body budget; the node: `connections_max` × this), and it paces
/// one connection at this much per round trip: 1 MiB keeps a peer node's batches across
/// the country (a forwarder sends them over one connection) as fast as hyper's default
/// did, while four streams can upload at once at full speed.
pub const H2_CONNECTION_WINDOW_BYTES_DEFAULT: u32 = 1 << 20;
/// Smallest accepted HTTP/2 window: the protocol's initial window (RFC 9113 §6.9.2), below
/// which a connection's window cannot be set at all and a stream's would slow every body.
pub const H2_WINDOW_BYTES_MIN: u32 = 65_535;
/// Largest accepted HTTP/2 window: 2^31-1, the protocol's maximum (RFC 9113 §6.9.1).
pub const H2_WINDOW_BYTES_LIMIT: u32 = (1 << 31) - 1;

/// `[limits]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default = "default_body_bytes_max")]
    body_bytes_max: usize,
    #[serde(default = "default_connections_max")]
    connections_max: usize,
    #[serde(default = "default_inbox_lease_ms")]
    inbox_lease_ms: u64,
    #[serde(default = "default_inbox_wait_s_max")]
    inbox_wait_s_max: u64,
    #[serde(default = "default_inbox_pull_max")]
    inbox_pull_max: usize,
    #[serde(default = "default_handshake_timeout_ms")]
    handshake_timeout_ms: u64,
    #[serde(default = "default_handshakes_max")]
    handshakes_max: usize,
    #[serde(default = "default_handshakes_per_address_per_s")]
    handshakes_per_address_per_s: u32,
    #[serde(default = "default_handshakes_per_address_burst")]
    handshakes_per_address_burst: u32,
    #[serde(default = "default_connections_per_identity_max")]
    connections_per_identity_max: usize,
    #[serde(default = "default_idle_timeout_ms")]
    idle_timeout_ms: u64,
    #[serde(default = "default_header_read_timeout_ms")]
    header_read_timeout_ms: u64,
    #[serde(default = "default_body_read_timeout_ms")]
    body_read_timeout_ms: u64,
    #[serde(default = "default_connection_age_max_s")]
    connection_age_max_s: u64,
    #[serde(default = "default_body_budget_bytes")]
    body_budget_bytes: usize,
    #[serde(default = "default_body_budget_identity_bytes")]
    body_budget_identity_bytes: usize,
    #[serde(default = "default_ledger_queue_bytes_max")]
    ledger_queue_bytes_max: usize,
    #[serde(default = "default_inbox_max")]
    inbox_max: usize,
    #[serde(default = "default_h2_stream_window_bytes")]
    h2_stream_window_bytes: u64,
    #[serde(default = "default_h2_connection_window_bytes")]
    h2_connection_window_bytes: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            body_bytes_max: default_body_bytes_max(),
            connections_max: default_connections_max(),
            inbox_lease_ms: default_inbox_lease_ms(),
            inbox_wait_s_max: default_inbox_wait_s_max(),
            inbox_pull_max: default_inbox_pull_max(),
            handshake_timeout_ms: default_handshake_timeout_ms(),
            handshakes_max: default_handshakes_max(),
            handshakes_per_address_per_s: default_handshakes_per_address_per_s(),
            handshakes_per_address_burst: default_handshakes_per_address_burst(),
            connections_per_identity_max: default_connections_per_identity_max(),
            idle_timeout_ms: default_idle_timeout_ms(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            body_read_timeout_ms: default_body_read_timeout_ms(),
            connection_age_max_s: default_connection_age_max_s(),
            body_budget_bytes: default_body_budget_bytes(),
            body_budget_identity_bytes: default_body_budget_identity_bytes(),
            ledger_queue_bytes_max: default_ledger_queue_bytes_max(),
            inbox_max: default_inbox_max(),
            h2_stream_window_bytes: default_h2_stream_window_bytes(),
            h2_connection_window_bytes: default_h2_connection_window_bytes(),
        }
    }
}

fn default_body_bytes_max() -> usize {
    1 << 20
}
fn default_connections_max() -> usize {
    4096
}
fn default_inbox_lease_ms() -> u64 {
    30_000
}
fn default_inbox_wait_s_max() -> u64 {
    30
}
fn default_inbox_pull_max() -> usize {
    100
}
fn default_handshake_timeout_ms() -> u64 {
    HANDSHAKE_TIMEOUT_MS_DEFAULT
}
fn default_handshakes_max() -> usize {
    HANDSHAKES_MAX_DEFAULT
}
fn default_handshakes_per_address_per_s() -> u32 {
    HANDSHAKES_PER_ADDRESS_PER_S_DEFAULT
}
fn default_handshakes_per_address_burst() -> u32 {
    HANDSHAKES_PER_ADDRESS_BURST_DEFAULT
}
fn default_connections_per_identity_max() -> usize {
    CONNECTIONS_PER_IDENTITY_MAX_DEFAULT
}
fn default_idle_timeout_ms() -> u64 {
    IDLE_TIMEOUT_MS_DEFAULT
}
fn default_header_read_timeout_ms() -> u64 {
    HEADER_READ_TIMEOUT_MS_DEFAULT
}
fn default_body_read_timeout_ms() -> u64 {
    BODY_READ_TIMEOUT_MS_DEFAULT
}
fn default_connection_age_max_s() -> u64 {
    CONNECTION_AGE_MAX_S_DEFAULT
}
fn default_body_budget_bytes() -> usize {
    BODY_BUDGET_BYTES_DEFAULT
}
fn default_body_budget_identity_bytes() -> usize {
    BODY_BUDGET_IDENTITY_BYTES_DEFAULT
}
fn default_ledger_queue_bytes_max() -> usize {
    LEDGER_QUEUE_BYTES_MAX_DEFAULT
}
fn default_inbox_max() -> usize {
    INBOX_MAX_DEFAULT
}
fn default_h2_stream_window_bytes() -> u64 {
    H2_STREAM_WINDOW_BYTES_DEFAULT.into()
}
fn default_h2_connection_window_bytes() -> u64 {
    H2_CONNECTION_WINDOW_BYTES_DEFAULT.into()
}

/// Validates the `[limits]` section.
pub(super) fn limits(
    limits: &RawLimits,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Limits, ConfigError> {
    if limits.body_bytes_max == 0 || limits.body_bytes_max > BODY_BYTES_MAX_LIMIT {
        return Err(invalid(
            "limits.body_bytes_max",
            format!("must be between 1 and {BODY_BYTES_MAX_LIMIT}"),
        ));
    }
    if limits.connections_max == 0 {
        return Err(invalid(
            "limits.connections_max",
            "must be at least 1".into(),
        ));
    }
    if limits.handshake_timeout_ms == 0 || limits.handshake_timeout_ms > HANDSHAKE_TIMEOUT_MS_LIMIT
    {
        return Err(invalid(
            "limits.handshake_timeout_ms",
            format!("must be between 1 and {HANDSHAKE_TIMEOUT_MS_LIMIT}"),
        ));
    }
    if limits.handshakes_max == 0 {
        return Err(invalid(
            "limits.handshakes_max",
            "must be at least 1".into(),
        ));
    }
    // 0 turns the per-address rate off: for a node behind a TCP proxy or load balancer,
    // where every client shares the proxy's address.
    if limits.handshakes_per_address_per_s > HANDSHAKES_PER_ADDRESS_PER_S_LIMIT {
        return Err(invalid(
            "limits.handshakes_per_address_per_s",
            format!("must be between 0 (no limit) and {HANDSHAKES_PER_ADDRESS_PER_S_LIMIT}"),
        ));
    }
    if limits.handshakes_per_address_burst == 0
        || limits.handshakes_per_address_burst > HANDSHAKES_PER_ADDRESS_BURST_LIMIT
    {
        return Err(invalid(
            "limits.handshakes_per_address_burst",
            format!("must be between 1 and {HANDSHAKES_PER_ADDRESS_BURST_LIMIT}"),
        ));
    }
    if limits.connections_per_identity_max == 0
        || limits.connections_per_identity_max > limits.connections_max
    {
        return Err(invalid(
            "limits.connections_per_identity_max",
            format!(
                "must be between 1 and connections_max ({})",
                limits.connections_max
            ),
        ));
    }
    if limits.idle_timeout_ms == 0 || limits.idle_timeout_ms > IDLE_TIMEOUT_MS_LIMIT {
        return Err(invalid(
            "limits.idle_timeout_ms",
            format!("must be between 1 and {IDLE_TIMEOUT_MS_LIMIT}"),
        ));
    }
    if limits.header_read_timeout_ms == 0
        || limits.header_read_timeout_ms > HEADER_READ_TIMEOUT_MS_LIMIT
    {
        return Err(invalid(
            "limits.header_read_timeout_ms",
            format!("must be between 1 and {HEADER_READ_TIMEOUT_MS_LIMIT}"),
        ));
    }
    if limits.body_read_timeout_ms == 0 || limits.body_read_timeout_ms > BODY_READ_TIMEOUT_MS_LIMIT
    {
        return Err(invalid(
            "limits.body_read_timeout_ms",
            format!("must be between 1 and {BODY_READ_TIMEOUT_MS_LIMIT}"),
        ));
    }
    if limits.connection_age_max_s == 0 || limits.connection_age_max_s > CONNECTION_AGE_MAX_S_LIMIT
    {
        return Err(invalid(
            "limits.connection_age_max_s",
            format!("must be between 1 and {CONNECTION_AGE_MAX_S_LIMIT}"),
        ));
    }
    if limits.inbox_lease_ms == 0 {
        return Err(invalid(
            "limits.inbox_lease_ms",
            "must be at least 1".into(),
        ));
    }
    if limits.inbox_wait_s_max > 300 {
        return Err(invalid(
            "limits.inbox_wait_s_max",
            "must be at most 300 seconds".into(),
        ));
    }
    if limits.inbox_pull_max == 0 || limits.inbox_pull_max > 1000 {
        return Err(invalid(
            "limits.inbox_pull_max",
            "must be between 1 and 1000".into(),
        ));
    }
    // A body the identity's budget cannot hold could never be read: refuse the config
    // rather than answer every such push 503 for ever.
    if limits.body_budget_identity_bytes < limits.body_bytes_max {
        return Err(invalid(
            "limits.body_budget_identity_bytes",
            format!(
                "must be at least body_bytes_max ({})",
                limits.body_bytes_max
            ),
        ));
    }
    if limits.body_budget_bytes < limits.body_budget_identity_bytes {
        return Err(invalid(
            "limits.body_budget_bytes",
            format!(
                "must be at least body_budget_identity_bytes ({})",
                limits.body_budget_identity_bytes
            ),
        ));
    }
    if limits.ledger_queue_bytes_max < limits.body_bytes_max
        || limits.ledger_queue_bytes_max > LEDGER_QUEUE_BYTES_MAX_LIMIT
    {
        return Err(invalid(
            "limits.ledger_queue_bytes_max",
            format!(
                "must be between body_bytes_max ({}) and {LEDGER_QUEUE_BYTES_MAX_LIMIT}",
                limits.body_bytes_max
            ),
        ));
    }
    if limits.inbox_max == 0 {
        return Err(invalid("limits.inbox_max", "must be at least 1".into()));
    }
    let window = |key: &str, bytes: u64, min: u32| {
        u32::try_from(bytes)
            .ok()
            .filter(|b| (min..=H2_WINDOW_BYTES_LIMIT).contains(b))
            .ok_or_else(|| {
                invalid(
                    key,
                    format!("must be between {min} and {H2_WINDOW_BYTES_LIMIT} (RFC 9113 §6.9)"),
                )
            })
    };
    let h2_stream_window_bytes = window(
        "limits.h2_stream_window_bytes",
        limits.h2_stream_window_bytes,
        H2_WINDOW_BYTES_MIN,
    )?;
    // A stream can never use more than its connection's window, so a larger stream window
    // would only mislead whoever reads the config.
    let h2_connection_window_bytes = window(
        "limits.h2_connection_window_bytes",
        limits.h2_connection_window_bytes,
        h2_stream_window_bytes,
    )?;
    Ok(Limits {
        body_bytes_max: limits.body_bytes_max,
        connections_max: limits.connections_max,
        handshake_timeout: Duration::from_millis(limits.handshake_timeout_ms),
        handshakes_max: limits.handshakes_max,
        handshakes_per_address_per_s: limits.handshakes_per_address_per_s,
        handshakes_per_address_burst: limits.handshakes_per_address_burst,
        connections_per_identity_max: limits.connections_per_identity_max,
        idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
        header_read_timeout: Duration::from_millis(limits.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(limits.body_read_timeout_ms),
        connection_age_max: Duration::from_secs(limits.connection_age_max_s),
        inbox_lease: Duration::from_millis(limits.inbox_lease_ms),
        inbox_wait_max: Duration::from_secs(limits.inbox_wait_s_max),
        inbox_pull_max: limits.inbox_pull_max,
        body_budget_bytes: limits.body_budget_bytes,
        body_budget_identity_bytes: limits.body_budget_identity_bytes,
        ledger_queue_bytes_max: limits.ledger_queue_bytes_max,
        inbox_max: limits.inbox_max,
        h2_stream_window_bytes,
        h2_connection_window_bytes,
    })
}
