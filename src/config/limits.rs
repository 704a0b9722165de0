//! The documented defaults and largest accepted values of `[limits]`: every bound a
//! client can push against, named, with why it has its value.

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
/// Default `limits.connections_per_identity_max`: one agency system's pool of connections
/// (HTTP/2 multiplexes up to 256 requests on each), so one identity (or one leaked key)
/// cannot hold every slot.
pub const CONNECTIONS_PER_IDENTITY_MAX_DEFAULT: usize = 64;
/// Default `limits.idle_timeout_ms`: a connection with no open request for this long is
/// closed (gracefully: HTTP/2 GOAWAY, HTTP/1.1 close between requests).
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Largest accepted `limits.idle_timeout_ms`.
pub const IDLE_TIMEOUT_MS_LIMIT: u64 = 3_600_000;
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
