//! Node configuration: the TOML file as written by operators ([`RawConfig`], serde, unknown
//! fields refused) and the validated [`Config`] built from it, with resolved paths and units
//! in the names. `plusgate check-config` runs exactly [`Config::load`] and nothing else.
//!
//! Architecture invariant: nothing outside this module reads the TOML; every other module
//! receives its own validated sub-config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::identity::{AgencyId, CenterId, ManagerId, OfficerId};
use crate::core::keys::PublicKey;
use crate::core::message::MessageType;
pub use crate::core::routing::LocalDirectory;
pub use crate::core::schema::SchemaSource;

/// Why a configuration is unusable. Always the operator's to fix; the message names the
/// file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/missing keys.
    #[error("config file {path} is not valid: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the TOML parser said, with line and column.
        message: String,
    },
    /// A value parsed but makes no sense.
    #[error("config file {path}: `{key}` {problem}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The offending key, e.g. `agencies[2].id`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The file as written. Serde lives only here, on the boundary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    tls: RawTls,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    schemas: RawSchemas,
    #[serde(default)]
    agencies: Vec<RawAgency>,
    #[serde(default)]
    officers: Vec<RawOfficer>,
    #[serde(default)]
    managers: Vec<RawOfficer>,
    federation: Option<RawFederation>,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    clock: RawClock,
    #[serde(default)]
    ops: RawOps,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClock {
    #[serde(default)]
    danger_offset_s: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_key: Option<PathBuf>,
    #[serde(default)]
    old_data_keys: Vec<PathBuf>,
    cache_mb: Option<u64>,
    overlay_mb: Option<u64>,
    reserve_mb: Option<u64>,
    danger_fail_apply_at: Option<u64>,
    danger_fail_sync_at: Option<u64>,
}

/// Default `storage.cache_mb`: sled's page cache. The working set (recent messages, inbox
/// heads, the audit tail, index leaves) fits; older records are read from the file.
pub const CACHE_MB_DEFAULT: u64 = 16;
/// Default `storage.overlay_mb`: deferred index and delivery writes held in memory before
/// they are folded into the store (at most about twice this is held).
pub const OVERLAY_MB_DEFAULT: u64 = 4;
/// Default `storage.reserve_mb`: writes are refused (507) while the data directory's file
/// system has less free space than this, and resume by themselves when it has more.
pub const RESERVE_MB_DEFAULT: u64 = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: String,
    listen: String,
    data_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    crls: Vec<PathBuf>,
}

mod limits;
mod ops;
pub use self::limits::*;
use self::limits::{limits, RawLimits};
use self::ops::{ops, RawOps};
pub use self::ops::{OpsConfig, OPS_LISTEN_DEFAULT, OPS_LISTEN_OFF};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchemas {
    dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgency {
    id: String,
    sends: Vec<String>,
}

/// The ids of `[[section]]` (`officers`, `managers`): each one valid and of this node's
/// `center`; otherwise the entry's key and what is wrong with it.
fn people<T>(
    entries: &[RawOfficer],
    section: &str,
    center: &CenterId,
    parse: impl Fn(&str) -> Result<T, crate::core::identity::IdError>,
    center_of: impl Fn(&T) -> &CenterId,
) -> Result<Vec<T>, (String, String)> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let key = format!("{section}[{i}].id");
            let id = parse(&entry.id).map_err(|e| (key.clone(), e.to_string()))?;
            if center_of(&id) != center {
                let named = center_of(&id);
                return Err((
                    key,
                    format!("names center `{named}`, but this node is `{center}`"),
                ));
            }
            Ok(id)
        })
        .collect()
}

/// An `[[officers]]` or `[[managers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOfficer {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    directory: PathBuf,
    authority_key: String,
    signing_key: PathBuf,
    #[serde(default = "default_outbox_max")]
    outbox_max: usize,
    #[serde(default = "default_retry_initial_ms")]
    retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    retry_max_ms: u64,
    #[serde(default = "default_message_ttl_s")]
    message_ttl_s: u64,
    #[serde(default = "default_batch_max")]
    batch_max: usize,
    #[serde(default = "default_checkpoint_every")]
    checkpoint_every: u64,
    #[serde(default = "default_checkpoint_interval_s")]
    checkpoint_interval_s: u64,
}

fn default_checkpoint_every() -> u64 {
    1000
}
fn default_checkpoint_interval_s() -> u64 {
    60
}

fn default_outbox_max() -> usize {
    100_000
}
fn default_retry_initial_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    60_000
}
fn default_message_ttl_s() -> u64 {
    86_400
}
fn default_batch_max() -> usize {
    1000
}

/// Largest accepted `clock.danger_offset_s` either way: about ten years, far beyond any
/// consent or retention period a test needs to see out, and far from the dates a time can
/// hold.
pub const DANGER_OFFSET_S_LIMIT: i64 = 10 * 366 * 86_400;

/// Largest accepted `federation.batch_max`.
pub const BATCH_MAX_LIMIT: usize = 1000;

/// A validated node configuration: the composition root's only input.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// This node's center.
    pub center: CenterId,
    /// Address to bind.
    pub listen: SocketAddr,
    /// sled data directory (absolute or relative to the working directory, resolved).
    pub data_dir: PathBuf,
    /// TLS material.
    pub tls: TlsConfig,
    /// Request and inbox limits.
    pub limits: Limits,
    /// Where the JSON Schemas come from.
    pub schemas: SchemaSource,
    /// Who may connect and what they may send. With `[federation]`, `agencies` is empty
    /// here: the node fills it from the signed federation directory.
    pub directory: LocalDirectory,
    /// Forwarding between centers, when the node belongs to a federation.
    pub federation: Option<FederationConfig>,
    /// Payloads at rest.
    pub storage: StorageConfig,
    /// The node's clock.
    pub clock: ClockConfig,
    /// The operations listener (metrics, health, readiness).
    pub ops: OpsConfig,
}

/// The `[clock]` section. Absent in production configs.
#[derive(Debug, Clone)]
pub struct ClockConfig {
    /// Added to the wall clock wherever the node reads the time (`danger_offset_s`;
    /// negative: earlier). For tests that need a node to start "later" (a consent expired,
    /// a retention period or time to live run out) without waiting; never in production:
    /// every time the node records would be off by this much. Zero unless configured; the
    /// node logs a warning at start when it is not.
    pub danger_offset: time::Duration,
}

/// The `[storage]` section: the keys that seal payloads at rest (see `vault`), and what the
/// store may use.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The current data key (64 hex digits); without one, payloads are stored unsealed.
    pub data_key: Option<PathBuf>,
    /// Earlier data keys, still needed to open payloads sealed with them.
    pub old_data_keys: Vec<PathBuf>,
    /// sled's page cache, bytes (`cache_mb`).
    pub cache_bytes: u64,
    /// Deferred writes held in memory before folding, bytes (`overlay_mb`).
    pub overlay_bytes: u64,
    /// Free space below which writes are refused, bytes (`reserve_mb`; 0 turns it off).
    pub reserve_bytes: u64,
    /// Tests only: the n-th store apply fails halfway (`danger_fail_apply_at`).
    pub danger_fail_apply_at: Option<u64>,
    /// Tests only: the n-th store sync fails (`danger_fail_sync_at`).
    pub danger_fail_sync_at: Option<u64>,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            data_key: None,
            old_data_keys: Vec::new(),
            cache_bytes: CACHE_MB_DEFAULT << 20,
            overlay_bytes: OVERLAY_MB_DEFAULT << 20,
            reserve_bytes: RESERVE_MB_DEFAULT << 20,
            danger_fail_apply_at: None,
            danger_fail_sync_at: None,
        }
    }
}

/// The `[federation]` section: where the signed directory is, whom to trust for it, this
/// node's signing key, and how messages for other centers are forwarded. [`Config::load`]
/// checks these values only; it reads neither the directory nor the key file.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// The signed federation directory (`directory.json`), resolved.
    pub directory: PathBuf,
    /// The federation authority's Ed25519 public key, pinned here; the directory must be
    /// signed with it.
    pub authority_key: PublicKey,
    /// This node's Ed25519 private key (PKCS#8 PEM) for receipts and checkpoints, resolved.
    pub signing_key: PathBuf,
    /// Most messages waiting in the outbox of one peer center.
    pub outbox_max: usize,
    /// First delay before retrying a failed forward.
    pub retry_initial: Duration,
    /// Longest delay between retries (the backoff stops growing here).
    pub retry_max: Duration,
    /// How long a message may wait for delivery before it is dead-lettered.
    pub message_ttl: Duration,
    /// Most messages in one forwarded batch.
    pub batch_max: usize,
    /// A signed checkpoint of the audit chain at least every this many entries.
    pub checkpoint_every: u64,
    /// … and at least this often while the chain grows.
    pub checkpoint_interval: Duration,
}

/// Paths of the node's TLS material.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Node certificate chain (PEM).
    pub cert: PathBuf,
    /// Node private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM or DER) of the CAs in `client_ca`, checked for
    /// client certificates and, when forwarding, for other nodes' server certificates.
    /// Empty: no revocation checking (a certificate stays valid until it expires).
    pub crls: Vec<PathBuf>,
}

/// Bounds on everything a client can make the node hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body.
    pub body_bytes_max: usize,
    /// Concurrent authenticated connections (TLS handshake done, client certificate
    /// verified); one more is closed right after its handshake.
    pub connections_max: usize,
    /// Longest a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Concurrent connections still in the TLS handshake; a TCP connection beyond it is
    /// closed at once, before a byte is read.
    pub handshakes_max: usize,
    /// TLS handshakes one source address (an IPv6 /64) may start a second after its burst;
    /// a connection over it is closed at once, before the handshake. 0: no such limit.
    pub handshakes_per_address_per_s: u32,
    /// Handshakes one source address may start at once before the rate applies.
    pub handshakes_per_address_burst: u32,
    /// Concurrent connections of one identity (the SAN URI of the client certificate); one
    /// more is closed right after its handshake.
    pub connections_per_identity_max: usize,
    /// A connection without an open request for this long is closed.
    pub idle_timeout: Duration,
    /// An HTTP/1.1 request head (request line and headers), and the first request head of
    /// any connection, must arrive whole within this time, else the connection is closed.
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this time, else 408.
    pub body_read_timeout: Duration,
    /// A connection older than this is closed gracefully, whatever it does.
    pub connection_age_max: Duration,
    /// How long a pulled message stays invisible to other pulls.
    pub inbox_lease: Duration,
    /// Longest long-poll a pull may ask for.
    pub inbox_wait_max: Duration,
    /// Most messages one pull returns.
    pub inbox_pull_max: usize,
    /// Request body bytes the whole node buffers at once; past it, 503 `busy`.
    pub body_budget_bytes: usize,
    /// Request body bytes one identity buffers at once; past it, 503 `busy`.
    pub body_budget_identity_bytes: usize,
    /// Message bytes that may wait in the ledger's queue; past it, senders wait.
    pub ledger_queue_bytes_max: usize,
    /// Most messages one local agency's inbox holds; past it, 503 `inbox-full`.
    pub inbox_max: usize,
    /// Request body bytes one HTTP/2 stream may send before the node reads them (its
    /// flow-control window).
    pub h2_stream_window_bytes: u32,
    /// Request body bytes all streams of one HTTP/2 connection may send before the node
    /// reads them: what one connection can make the node buffer unread.
    pub h2_connection_window_bytes: u32,
}

impl Config {
    /// Reads, parses and validates `path`. Relative paths in the file are resolved against
    /// the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates config text that claims to come from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            problem,
        };

        let center =
            CenterId::parse(&raw.node.id).map_err(|e| invalid("node.id", e.to_string()))?;
        let listen: SocketAddr = raw.node.listen.parse().map_err(|e| {
            invalid(
                "node.listen",
                format!("is not an address like 127.0.0.1:7443 ({e})"),
            )
        })?;
        let limits = limits(&raw.limits, &invalid)?;
        let ops = ops(&raw.ops, &invalid)?;
        let crls = crls(&raw.tls, base, &invalid)?;

        if !(-DANGER_OFFSET_S_LIMIT..=DANGER_OFFSET_S_LIMIT).contains(&raw.clock.danger_offset_s) {
            return Err(invalid(
                "clock.danger_offset_s",
                format!("must be between -{DANGER_OFFSET_S_LIMIT} and {DANGER_OFFSET_S_LIMIT}"),
            ));
        }

        let federation = match &raw.federation {
            Some(f) => Some(federation(f, base, &invalid)?),
            None => None,
        };
        if federation.is_some() && !raw.agencies.is_empty() {
            return Err(invalid(
                "agencies",
                "must not be given together with [federation]: the agencies then come from \
                 the signed federation directory (federation.directory); remove the \
                 [[agencies]] blocks"
                    .into(),
            ));
        }

        let mut directory = LocalDirectory::default();
        for (i, agency) in raw.agencies.iter().enumerate() {
            let key = format!("agencies[{i}].id");
            let id = AgencyId::parse(&agency.id).map_err(|e| invalid(&key, e.to_string()))?;
            if id.center() != &center {
                return Err(invalid(
                    &key,
                    format!(
                        "names center `{}`, but this node is `{center}`",
                        id.center()
                    ),
                ));
            }
            let mut sends = Vec::new();
            for (j, t) in agency.sends.iter().enumerate() {
                let ty = MessageType::parse(t).ok_or_else(|| {
                    invalid(
                        &format!("agencies[{i}].sends[{j}]"),
                        format!("`{t}` is not a message type ({})", MessageType::ALL_NAMES),
                    )
                })?;
                sends.push(ty);
            }
            if directory.agencies.insert(id, sends).is_some() {
                return Err(invalid(&key, "is listed twice".into()));
            }
        }
        directory.officers = people(&raw.officers, "officers", &center, OfficerId::parse, |o| {
            o.center()
        })
        .map_err(|(key, problem)| invalid(&key, problem))?;
        directory.managers = people(&raw.managers, "managers", &center, ManagerId::parse, |m| {
            m.center()
        })
        .map_err(|(key, problem)| invalid(&key, problem))?;

        Ok(Config {
            path: path.to_owned(),
            center,
            listen,
            data_dir: base.join(&raw.node.data_dir),
            tls: TlsConfig {
                cert: base.join(&raw.tls.cert),
                key: base.join(&raw.tls.key),
                client_ca: base.join(&raw.tls.client_ca),
                crls,
            },
            limits,
            schemas: match &raw.schemas.dir {
                Some(dir) => SchemaSource::Dir(base.join(dir)),
                None => SchemaSource::Embedded,
            },
            directory,
            federation,
            storage: {
                if raw.storage.data_key.is_none() && !raw.storage.old_data_keys.is_empty() {
                    return Err(invalid(
                        "storage.old_data_keys",
                        "needs storage.data_key: old keys only open, the current one seals".into(),
                    ));
                }
                let mb = |key: &str,
                          v: Option<u64>,
                          default: u64,
                          range: std::ops::RangeInclusive<u64>| {
                    let v = v.unwrap_or(default);
                    if range.contains(&v) {
                        Ok(v << 20)
                    } else {
                        Err(invalid(
                            key,
                            format!("{v} is outside {}..={} (MiB)", range.start(), range.end()),
                        ))
                    }
                };
                StorageConfig {
                    data_key: raw.storage.data_key.as_ref().map(|p| base.join(p)),
                    old_data_keys: raw
                        .storage
                        .old_data_keys
                        .iter()
                        .map(|p| base.join(p))
                        .collect(),
                    cache_bytes: mb(
                        "storage.cache_mb",
                        raw.storage.cache_mb,
                        CACHE_MB_DEFAULT,
                        4..=65_536,
                    )?,
                    overlay_bytes: mb(
                        "storage.overlay_mb",
                        raw.storage.overlay_mb,
                        OVERLAY_MB_DEFAULT,
                        1..=4_096,
                    )?,
                    reserve_bytes: mb(
                        "storage.reserve_mb",
                        raw.storage.reserve_mb,
                        RESERVE_MB_DEFAULT,
                        0..=1_048_576,
                    )?,
                    danger_fail_apply_at: raw.storage.danger_fail_apply_at,
                    danger_fail_sync_at: raw.storage.danger_fail_sync_at,
                }
            },
            clock: ClockConfig {
                danger_offset: time::Duration::seconds(raw.clock.danger_offset_s),
            },
            ops,
        })
    }
}

/// Validates `tls.crls`: each entry a file name, none twice (resolved against `base`, the
/// config file's folder). Their contents are read and checked by `node::tls`, which names
/// the same key (`check-config` runs both).
fn crls(
    raw: &RawTls,
    base: &Path,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Vec<PathBuf>, ConfigError> {
    let mut crls: Vec<PathBuf> = Vec::new();
    for (i, crl) in raw.crls.iter().enumerate() {
        let key = format!("tls.crls[{i}]");
        if crl.as_os_str().is_empty() {
            return Err(invalid(
                &key,
                "is empty; name a CRL file (PEM or DER)".into(),
            ));
        }
        let path = base.join(crl);
        if crls.contains(&path) {
            return Err(invalid(&key, format!("names {} twice", path.display())));
        }
        crls.push(path);
    }
    Ok(crls)
}

mod federation;
use self::federation::federation;

#[cfg(test)]
mod tests;
