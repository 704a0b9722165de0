//! The mutual-TLS client that commands against a running node share (`plusgate outbox`,
//! `plusgate privacy`): the node's address and CA come from its config file, or from
//! `--url` and `--ca` (an officer at their own desk has no node config); the certificate
//! presented is the node's own (outbox) or the privacy officer's (privacy).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};

use crate::config::Config;
use crate::core::directory::{Host, NodeUrl};
use crate::node::client::{self, ClientError, Connection, HttpVersion, Response};

/// Why an operator's (or a privacy officer's, see `report`) command against a running node
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The client certificate, its key or the CA could not be loaded: the caller's files.
    #[error("cannot set up TLS to the node: {0}")]
    Tls(Box<ClientError>),
    /// `--url` is not a node URL.
    #[error("{0}")]
    Url(Box<ClientError>),
    /// The node could not be reached (not running? a host name that does not resolve?) or
    /// TLS failed.
    #[error("cannot reach the node at {node}: {source} (is it running?)")]
    Unreachable {
        /// Where we tried (`HOST:PORT`).
        node: String,
        /// Why it failed.
        source: Box<ClientError>,
    },
    /// The node answered with an error.
    #[error("the node refused: {0}")]
    Refused(String),
}

impl AdminError {
    /// The exit code a command ends with for this error: 78 for the caller's own files, 2
    /// for a bad `--url`, 69 (EX_UNAVAILABLE) when the node cannot be reached, 3 when it
    /// answered with a refusal. Scripts tell "try later" from "this will not work" by it.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Tls(_) => crate::cli::exit::EXIT_CONFIG,
            AdminError::Url(_) => crate::cli::exit::EXIT_USAGE,
            AdminError::Unreachable { .. } => crate::cli::exit::EXIT_UNREACHABLE,
            AdminError::Refused(_) => crate::cli::exit::EXIT_REFUSED,
        }
    }
}

/// Which node a command talks to, and the CA its certificate is checked against.
#[derive(Debug, Clone)]
pub struct Target {
    url: NodeUrl,
    ca: PathBuf,
}

impl Target {
    /// The node of `config`, on this machine: its listen address (an unspecified one,
    /// 0.0.0.0 or ::, is reached on loopback) and its CA.
    pub fn of_config(config: &Config) -> Target {
        let mut addr = config.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Target {
            url: NodeUrl {
                host: Host::Ip(addr.ip()),
                explicit_port: Some(addr.port()),
            },
            ca: config.tls.client_ca.clone(),
        }
    }

    /// The node at `url` (`https://HOST:PORT`, as in the federation directory; a host name
    /// is resolved at each connection), its certificate checked against `ca` and the host.
    pub fn at(url: &str, ca: &Path) -> Result<Target, AdminError> {
        let url = client::parse_https_url(url).map_err(|e| AdminError::Url(Box::new(e)))?;
        Ok(Target {
            url,
            ca: ca.to_owned(),
        })
    }
}

/// The node configured in `config`, reached over mutual TLS as `identity` (certificate and
/// key files), trusting the config's CA.
#[derive(Debug)]
pub(crate) struct NodeClient {
    url: NodeUrl,
    tls: Arc<rustls::ClientConfig>,
}

impl NodeClient {
    /// A client for the node `target`, presenting `identity`.
    pub(crate) fn new(target: &Target, identity: (&Path, &Path)) -> Result<NodeClient, AdminError> {
        let tls = client::client_config(&target.ca, Some(identity), HttpVersion::Http1)
            .map_err(|e| AdminError::Tls(Box::new(e)))?;
        Ok(NodeClient {
            url: target.url.clone(),
            tls,
        })
    }

    /// Sends a request; a non-success answer is [`AdminError::Refused`] with the problem's
    /// detail (or the body, if it is not a problem).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, AdminError> {
        let unreachable = |source| AdminError::Unreachable {
            // `HOST:PORT`, as a socket address is written (IPv6 in brackets).
            node: format!("{}:{}", self.url.host, self.url.port()),
            source: Box::new(source),
        };
        let payload = body.map(|b| (Bytes::from(b.to_string()), "application/json"));
        let mut conn =
            Connection::connect_url(&self.url, Arc::clone(&self.tls), HttpVersion::Http1)
                .await
                .map_err(unreachable)?;
        let response = conn
            .send(method, path, payload)
            .await
            .map_err(unreachable)?;
        if !response.status.is_success() {
            let body: Value = response.json().unwrap_or_else(|_| json!({}));
            let detail = body["detail"]
                .as_str()
                .map_or_else(|| response.text(), str::to_owned);
            return Err(AdminError::Refused(detail));
        }
        Ok(response)
    }
}
