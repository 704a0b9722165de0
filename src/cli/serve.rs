//! `plusgate serve` and `plusgate check-config`: run a node, or check everything it would
//! load without binding. `serve` registers its SIGTERM and SIGHUP handlers *before* printing
//! the listening line, so a signal sent right after it is never lost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::exit::{fail, runtime, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::{Config, ConfigError};
use crate::core::keys::SigningKey;
use crate::core::schema::Schemas;
use crate::dev::devinit;
use crate::node::{Node, NodeError};

/// Where `serve --dev` keeps its development federation.
pub const DEV_DIR: &str = "plusgate-dev";

/// `plusgate serve`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "dev"])))]
pub struct ServeArgs {
    /// The node's config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Create (first run) or reuse a development federation in ./plusgate-dev/ and serve its
    /// first center.
    #[arg(long)]
    pub dev: bool,
    /// Listen here instead of the config's `node.listen` (e.g. 127.0.0.1:0 for a free port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// Why `check-config` refused a configuration. Always the operator's to fix (exit 78);
/// checking again unchanged fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum CheckConfigError {
    /// The config file itself.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something it names: schemas, TLS material, the signing key, the directory.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Everything `serve` checks before binding, without binding: the config, the schemas,
/// the TLS material, and for a federated node its signing key and the signed directory.
pub fn check_config(path: &Path) -> Result<String, CheckConfigError> {
    let config = Config::load(path)?;
    Schemas::load(&config.schemas).map_err(NodeError::from)?;
    crate::node::tls::server_config(&config.tls).map_err(NodeError::from)?;
    let (agencies, federation) = match &config.federation {
        None => (config.directory.agencies.len(), String::new()),
        Some(f) => {
            let key = SigningKey::load(&f.signing_key).map_err(NodeError::from)?;
            let directory = crate::node::load_directory_for(f, &config.center, &key)?;
            (
                directory.local_agencies(&config.center).len(),
                format!(
                    ", federation directory version {} with {} centers",
                    directory.version,
                    directory.centers.len()
                ),
            )
        }
    };
    Ok(format!(
        "{}: ok (node {}, {agencies} agencies, {} officers, listen {}, data {}{federation})",
        path.display(),
        config.center,
        config.directory.officers.len(),
        config.listen,
        config.data_dir.display()
    ))
}

/// Runs `plusgate serve` until SIGTERM or Ctrl-C.
pub fn serve(args: ServeArgs) -> ExitCode {
    let (config_path, dev_hint) = match (&args.config, args.dev) {
        (Some(path), _) => (path.clone(), None),
        (None, _) => match devinit::ensure(Path::new(DEV_DIR)) {
            Ok(manifest) => match manifest.centers_in_order().first() {
                Some((name, center)) => (
                    manifest.resolve(&center.config),
                    Some(devinit::summary(&manifest, Some(name))),
                ),
                None => return fail(EXIT_CONFIG, &"the development federation has no center"),
            },
            Err(e) => return fail(EXIT_CONFIG, &e),
        },
    };
    let mut config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let node = match Node::build(&config) {
        Ok(n) => n,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_FAILURE, &e),
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return fail(
                    EXIT_CONFIG,
                    &format!(
                        "cannot listen on {}: the port is taken, perhaps by another node (the \
                         one `serve --dev` started listens on 127.0.0.1:7443): stop it, or \
                         choose another address with --listen or `listen` in the config",
                        config.listen
                    ),
                )
            }
            Err(e) => return fail(EXIT_CONFIG, &format!("cannot listen on {}: {e}", config.listen)),
        };
        let addr = listener.local_addr().unwrap_or(config.listen);
        let ops = match config.ops.listen {
            None => None,
            Some(at) => match tokio::net::TcpListener::bind(at).await {
                Ok(l) => Some(l),
                Err(e) => {
                    return fail(EXIT_CONFIG, &format!("cannot listen on {at} (ops.listen): {e}"))
                }
            },
        };
        let shutdown = shutdown_signal();
        let reload = reload_requests();
        // Scripts and tests read these lines to learn the bound addresses; the operations
        // line comes first, so a reader that waits for the listening line has both.
        if let Some(ops_addr) = ops.as_ref().and_then(|l| l.local_addr().ok()) {
            println!("plusgate operations on http://{ops_addr} (node {})", config.center);
            tracing::info!(node = %config.center, addr = %ops_addr, "operations listener (metrics, health, readiness)");
        }
        println!("plusgate listening on https://{addr} (node {})", config.center);
        if let Some(hint) = dev_hint {
            println!("{hint}");
        }
        tracing::info!(node = %config.center, %addr, data_dir = %config.data_dir.display(), "serving");
        node.run(listener, ops, shutdown, reload).await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM or Ctrl-C. The handlers are registered when this is called, not when the
/// future is first polled, so a signal sent right after the listening line is not lost (or
/// fatal, as an unhandled SIGTERM would be).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}

/// Reload requests (TLS trust, officers, agencies, federation directory): one per SIGHUP. Registered at once, for the same reason as
/// [`shutdown_signal`] (an unhandled SIGHUP would kill the node).
fn reload_requests() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // A reload already pending covers this one too.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; reload on SIGHUP disabled (changed TLS and config files are still reloaded)")
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}
