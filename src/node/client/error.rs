//! What can go wrong in the client ([`ClientError`]), grouped by who is likely at fault.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{HttpVersion, RESPONSE_BODY_BYTES_MAX};

/// What went wrong in the client, grouped by who is likely at fault.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The private key file is open to other users.
    #[error(transparent)]
    Exposed(#[from] crate::node::files::ExposedKey),
    /// A PEM file could not be read or holds no usable item (local setup at fault).
    #[error("reading {what} from {}: {source}", path.display())]
    Pem {
        /// The file that was read.
        path: PathBuf,
        /// What was expected in it ("CA certificates", "client certificate", "private key").
        what: &'static str,
        /// The PEM reader's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The TLS configuration could not be built, e.g. a key that does not match its
    /// certificate or a CA certificate rustls refuses (local setup at fault).
    #[error("TLS configuration: {detail}")]
    Config {
        /// What was being configured and why it failed.
        detail: String,
    },
    /// The server name is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// A URL given to [`parse_https_url`](super::parse_https_url) is not of the form `https://HOST[:PORT][/]`
    /// (whoever wrote it is at fault: the directory's authority, or the operator).
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The host name of a URL did not resolve to any address (no such name, the resolver
    /// unreachable or too slow). The DNS records or the directory are at fault, or the
    /// network to the resolver; it may pass, so callers retry like an unreachable server.
    #[error("the host name {host} does not resolve: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error (`TimedOut` after [`RESOLVE_TIMEOUT`](super::RESOLVE_TIMEOUT)).
        #[source]
        source: io::Error,
    },
    /// None of the addresses a host name resolved to took the TCP connection (each tried
    /// in turn, within [`ADDRESS_CONNECT_TIMEOUT`](super::ADDRESS_CONNECT_TIMEOUT)).
    #[error("connecting to {host}: {}", join_attempts(.attempts))]
    ConnectEach {
        /// The host name.
        host: String,
        /// Each address tried, with its socket error.
        attempts: Vec<(SocketAddr, io::Error)>,
    },
    /// The TCP connection could not be established (server down, wrong address).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The TLS layer failed: during the handshake (e.g. untrusted server certificate) or
    /// afterwards through a fatal alert from the server (e.g. our client certificate was
    /// refused under TLS 1.3). The rustls error text is kept as is.
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// The server address.
        addr: SocketAddr,
        /// The rustls error, for example `received fatal alert: CertificateRequired`.
        #[source]
        source: rustls::Error,
    },
    /// The connection broke during the TLS handshake without a TLS error (e.g. the server
    /// closed it).
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        /// The server address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The server did not agree to the HTTP version we asked for by ALPN.
    #[error("{addr} did not negotiate {wanted} by ALPN (server chose {chosen:?})")]
    Alpn {
        /// The server address.
        addr: SocketAddr,
        /// The version asked for.
        wanted: HttpVersion,
        /// The protocol the server selected, if any.
        chosen: Option<String>,
    },
    /// The request could not be built (e.g. a path that is not `/…`); caller at fault.
    #[error("building request: {0}")]
    Request(String),
    /// An HTTP protocol or transport failure after the handshake (connection reset,
    /// malformed response, GOAWAY, …). `detail` is the whole error chain.
    #[error("HTTP with {addr}: {detail}")]
    Http {
        /// The server address.
        addr: SocketAddr,
        /// The error and its causes, joined with `: `.
        detail: String,
    },
    /// A step did not finish within its time bound.
    #[error("timed out after {after:?} {during} {addr}")]
    Timeout {
        /// The server address.
        addr: SocketAddr,
        /// What was being done ("connecting to", "waiting for a response from").
        during: &'static str,
        /// The bound that expired.
        after: Duration,
    },
    /// The response body is larger than [`RESPONSE_BODY_BYTES_MAX`].
    #[error("response body from {addr} exceeds {RESPONSE_BODY_BYTES_MAX} bytes")]
    BodyTooLarge {
        /// The server address.
        addr: SocketAddr,
    },
    /// The response body is not the JSON the caller expected.
    #[error("response body is not the expected JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// `addr: error; addr: error` for [`ClientError::ConnectEach`].
fn join_attempts(attempts: &[(SocketAddr, io::Error)]) -> String {
    attempts
        .iter()
        .map(|(addr, e)| format!("{addr}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ClientError {
    /// True when the failure is the TLS layer refusing the connection: a TLS error
    /// (handshake failure or fatal alert) or the connection dropped mid-handshake.
    pub fn is_tls_refusal(&self) -> bool {
        matches!(
            self,
            ClientError::Tls { .. } | ClientError::Handshake { .. }
        )
    }
}
