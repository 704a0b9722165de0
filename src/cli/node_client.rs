//! The mutual-TLS client that commands against a running node share (`plusgate outbox`,
//! `plusgate privacy`): the node's address and CA come from its config file; the
//! certificate presented is the node's own (outbox) or the privacy officer's (privacy).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};

use crate::config::Config;
use crate::node::client::{self, Agent, ClientError, HttpVersion, Response};

/// Why an operator's (or a privacy officer's, see `report`) command against a running node
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The client certificate, its key or the CA could not be loaded: the caller's files.
    #[error("cannot set up TLS to the node: {0}")]
    Tls(Box<ClientError>),
    /// The node could not be reached (not running?) or TLS failed.
    #[error("cannot reach the node at {addr}: {source} (is it running?)")]
    Unreachable {
        /// Where we tried.
        addr: SocketAddr,
        /// Why it failed.
        source: Box<ClientError>,
    },
    /// The node answered with an error.
    #[error("the node refused: {0}")]
    Refused(String),
}

/// Where the node listens, as seen from this machine: an unspecified listen address
/// (0.0.0.0, ::) is reached on loopback.
fn local_addr(config: &Config) -> SocketAddr {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    addr
}

/// The node configured in `config`, reached over mutual TLS as `identity` (certificate and
/// key files), trusting the config's CA.
#[derive(Debug)]
pub(crate) struct NodeClient {
    agent: Agent,
}

impl NodeClient {
    /// A client for the node of `config`, presenting `identity`.
    pub(crate) fn new(config: &Config, identity: (&Path, &Path)) -> Result<NodeClient, AdminError> {
        let addr = local_addr(config);
        let tls = client::client_config(&config.tls.client_ca, Some(identity), HttpVersion::Http1)
            .map_err(|e| AdminError::Tls(Box::new(e)))?;
        Ok(NodeClient {
            agent: Agent::new(addr, addr.ip().to_string(), tls, HttpVersion::Http1),
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
        let addr = self.agent.addr;
        let payload = body.map(|b| (Bytes::from(b.to_string()), "application/json"));
        let response = self
            .agent
            .request(method, path, payload)
            .await
            .map_err(|source| AdminError::Unreachable {
                addr,
                source: Box::new(source),
            })?;
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
