//! Reloading what may change while the node runs, without dropping a healthy connection:
//! the TLS trust (the node's certificate and key, the client CA bundle, the CRLs) and, from
//! the config file, the privacy officers and a standalone node's agencies. A reload happens
//! on SIGHUP and when one of those files changes (polled every [`POLL_INTERVAL`] by
//! modification time and size: simple, and robust against editors that replace files and
//! against file systems without change notification).
//!
//! A reload builds everything new first and swaps only when all of it loaded: a bad file
//! keeps the old state whole and is logged as an error naming the file. Every other config
//! value (listen address, limits, storage, federation) still needs a restart.
//!
//! Architecture invariant: the swap is one `send_replace` per watch channel; a new
//! handshake reads the trust once (`connection`), so it sees either the old trust or the
//! new one, never a mix.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::tls::Trust;
use crate::config::{Config, TlsConfig};
use crate::core::identity::CenterId;
use crate::core::routing::Routing;
use crate::core::routing::Staff;

/// How often the watched files' modification times are compared with the last reload's.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What a file looked like at the last check: `None` if it could not be read.
type Stamp = Option<(SystemTime, u64)>;

/// The reloadable state of a node, and where each part comes from.
pub struct Reloadable {
    config_path: PathBuf,
    center: CenterId,
    trust: watch::Sender<Arc<Trust>>,
    officers: watch::Sender<Arc<Staff>>,
    /// A standalone node's routing (its agencies come from the config file); `None` for a
    /// federated node, whose agencies come from the signed directory (reloaded on SIGHUP
    /// by the federation runtime).
    standalone_routing: Option<watch::Sender<Arc<Routing>>>,
    /// A federated node's client side: the TLS config its forwarders open connections to
    /// other nodes with (its certificate and key, the CA bundle and CRLs, which check the
    /// peers' server certificates). Reloaded with the trust.
    forwarding: Option<watch::Sender<Arc<rustls::ClientConfig>>>,
    watched: Vec<(PathBuf, Stamp)>,
}

impl Reloadable {
    /// The state as the node was built from `config`.
    pub fn new(
        config: &Config,
        trust: watch::Sender<Arc<Trust>>,
        officers: watch::Sender<Arc<Staff>>,
        standalone_routing: Option<watch::Sender<Arc<Routing>>>,
        forwarding: Option<watch::Sender<Arc<rustls::ClientConfig>>>,
    ) -> Reloadable {
        Reloadable {
            config_path: config.path.clone(),
            center: config.center.clone(),
            trust,
            officers,
            standalone_routing,
            forwarding,
            watched: watch_list(&config.path, &config.tls),
        }
    }

    /// Whether a watched file changed since the last check (or the last reload).
    pub fn files_changed(&mut self) -> bool {
        let mut changed = false;
        for (path, seen) in &mut self.watched {
            let now = stamp(path);
            if now != *seen {
                *seen = now;
                changed = true;
            }
        }
        changed
    }

    /// Reloads the config file and the TLS material it names, and swaps them in if all of
    /// it loads; otherwise keeps the current state and logs why, naming the file.
    pub fn reload(&mut self, why: &'static str) {
        let config = match Config::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(why, error = %e, "reload refused; keeping the current TLS trust, officers and agencies");
                self.rewatch(None);
                return;
            }
        };
        if config.center != self.center {
            tracing::error!(why, file = %self.config_path.display(), was = %self.center, now = %config.center,
                "reload refused: node.id changed, which needs a restart; keeping the current state");
            self.rewatch(Some(&config.tls));
            return;
        }
        let trust = match Trust::load(&config.tls) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(why, error = %e, "reload refused; keeping the current TLS trust, officers and agencies");
                self.rewatch(Some(&config.tls));
                return;
            }
        };
        let forwarding = match &self.forwarding {
            None => None,
            Some(_) => match forwarding_config(&config.tls) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(why, error = %e, "reload refused; keeping the current TLS trust, officers and agencies");
                    self.rewatch(Some(&config.tls));
                    return;
                }
            },
        };
        // Open connections are checked against the new trust as soon as it is sent.
        self.trust.send_replace(Arc::new(trust));
        if let (Some(tx), Some(c)) = (&self.forwarding, forwarding) {
            tx.send_replace(c);
        }
        self.officers
            .send_replace(Arc::new(config.directory.staff()));
        if let Some(routing) = &self.standalone_routing {
            routing.send_replace(Arc::new(Routing::standalone(
                self.center.clone(),
                &config.directory,
            )));
        }
        tracing::info!(
            why,
            crls = config.tls.crls.len(),
            officers = config.directory.officers.len(),
            managers = config.directory.managers.len(),
            "reloaded the TLS trust (certificate, key, CA bundle, CRLs), officers and agencies"
        );
        self.rewatch(Some(&config.tls));
    }

    /// Watches the files `tls` names (the current ones when `None`), stamped as they are
    /// now, so that one change triggers one reload attempt.
    fn rewatch(&mut self, tls: Option<&TlsConfig>) {
        if let Some(tls) = tls {
            self.watched = watch_list(&self.config_path, tls);
        } else {
            for (path, seen) in &mut self.watched {
                *seen = stamp(path);
            }
        }
    }
}

/// The TLS config a federated node's forwarders connect to other nodes with: this node's
/// certificate and key as client certificate, peers' server certificates checked against
/// the CA bundle, the CRLs and the node identity (`client::peer_node_config`; the center
/// itself is checked by the forwarder).
pub fn forwarding_config(
    tls: &TlsConfig,
) -> Result<Arc<rustls::ClientConfig>, crate::node::client::ClientError> {
    crate::node::client::peer_node_config(&tls.client_ca, &tls.crls, (&tls.cert, &tls.key))
}

/// The config file and every TLS file it names, stamped as they are now.
fn watch_list(config: &std::path::Path, tls: &TlsConfig) -> Vec<(PathBuf, Stamp)> {
    let mut paths = vec![
        config.to_owned(),
        tls.cert.clone(),
        tls.key.clone(),
        tls.client_ca.clone(),
    ];
    paths.extend(tls.crls.iter().cloned());
    paths
        .into_iter()
        .map(|p| {
            let s = stamp(&p);
            (p, s)
        })
        .collect()
}

fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
