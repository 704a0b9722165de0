//! The node configuration `dev-init` writes for each center: its `plusgate.toml`, in the
//! documented format, with relative paths to the files `layout` writes next to it.
//!
//! Invariant kept here: the text is built only from center and officer names checked against
//! `[a-z0-9][a-z0-9-]*`, a port and a hex key, so it needs no TOML escaping.

use std::fmt::Write as _;

use super::layout::{MANAGERS, OFFICERS};
use crate::core::keys::PublicKey;

/// The node configuration of one development center, in the documented format.
pub(super) fn config_toml(center: &str, port: u16, authority: &PublicKey) -> String {
    // Names were checked against `[a-z0-9][a-z0-9-]*`, so they need no TOML escaping.
    let mut toml = format!(
        r#"# plusgate node configuration for center "{center}", written by `plusgate dev-init`.
# Relative paths are relative to this file's folder.

[node]
id = "{center}"                     # center id
listen = "127.0.0.1:{port}"
data_dir = "data"

[tls]
cert = "node.crt"                # node's server certificate chain (PEM)
key = "node.key"                 # PKCS#8 PEM
client_ca = "../ca.crt"          # CA bundle that client certificates must chain to
crls = ["../ca.crl"]             # revocation lists of those CAs (PEM or DER); reloaded when changed

[limits]                          # every key optional; defaults shown
body_bytes_max = 1048576
connections_max = 4096            # authenticated connections
handshakes_max = 128              # connections still in the TLS handshake
handshake_timeout_ms = 3000
handshakes_per_address_per_s = 64 # handshakes a source address may start a second (0: no limit)
handshakes_per_address_burst = 128 # … at once, before that rate applies
connections_per_identity_max = 64 # per client-certificate identity
idle_timeout_ms = 60000           # a connection without an open request is closed
header_read_timeout_ms = 10000    # a request head must arrive within this, else closed
connection_age_max_s = 3600       # an older connection is closed gracefully (and reconnects)
body_read_timeout_ms = 15000      # a request body must arrive within this, else 408
inbox_lease_ms = 30000
inbox_wait_s_max = 30
inbox_pull_max = 100
inbox_max = 100000                # messages waiting per agency inbox, else 503 inbox-full
body_budget_bytes = 268435456     # request bodies buffered at once, node-wide, else 503 busy
body_budget_identity_bytes = 67108864  # … and per client-certificate identity
ledger_queue_bytes_max = 134217728     # message bytes waiting for the ledger (backpressure)
h2_stream_window_bytes = 262144        # HTTP/2 body bytes a stream may send unread
h2_connection_window_bytes = 1048576   # … and a connection: what it can make the node buffer

[federation]                      # agencies come from the signed directory
directory = "../directory.json"   # signed by the federation authority, whose
                                  # Ed25519 public key is pinned here:
authority_key = "{authority}"
signing_key = "node-signing.key"  # this node's Ed25519 key (PKCS#8 PEM)
outbox_max = 100000               # optional keys from here on; defaults shown
retry_initial_ms = 200
retry_max_ms = 60000
message_ttl_s = 86400
batch_max = 1000
checkpoint_every = 1000           # a signed checkpoint of the audit chain every N entries
checkpoint_interval_s = 60        # … and at least this often while it grows

[storage]
data_key = "data.key"             # AES-256 key sealing payloads at rest (64 hex digits)
old_data_keys = []                # earlier keys, kept to open older payloads
# cache_mb = 16                   # sled's page cache
# overlay_mb = 4                  # deferred index writes held in memory (at most ~2x)
# reserve_mb = 64                 # below this much free disk, writes get 507 until freed

[ops]                             # plain-HTTP /metrics, /healthz, /readyz (no certificate)
listen = "127.0.0.1:0"            # a free port, printed at start (several dev nodes share a
                                  # host); without [ops]: 127.0.0.1:9464; "off": none
"#
    );
    for officer in OFFICERS {
        let _ = write!(toml, "\n[[officers]]\nid = \"{center}/{officer}\"\n");
    }
    for manager in MANAGERS {
        let _ = write!(
            toml,
            "\n[[managers]]                      # statistics only\nid = \"{center}/{manager}\"\n"
        );
    }
    toml
}
