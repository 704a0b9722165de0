//! The command line: `serve`, `dev-init`, `check-config`, `audit verify`, `outbox`,
//! `privacy`, `directory`, `bench`. Parses arguments, calls
//! into the library, maps failures to exit codes. `anyhow` lives here and nowhere deeper.

pub mod directory;
pub mod export;
pub mod node_client;
pub mod privacy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use self::node_client::OutboxAction;
use crate::bench::BenchArgs;
use crate::config::Config;
use crate::core::audit::Verifier;
use crate::core::hex;
use crate::dev::devinit::{self, DevInitArgs};
use crate::node::store::Store;
use crate::node::Node;

/// Exit code for a configuration the operator must fix (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

/// Where `serve --dev` keeps its development federation.
pub const DEV_DIR: &str = "plusgate-dev";

/// plusgate: the data-exchange gateway of an Employment-Welfare Plus Center.
#[derive(Debug, Parser)]
#[command(name = "plusgate", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Serve(ServeArgs),
    /// Create a development federation: CA, node and agency certificates, configs, examples.
    DevInit(DevInitArgs),
    /// Validate a config file (and the files it names) and exit.
    CheckConfig {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Measure a node's push throughput and latency.
    Bench(BenchArgs),
    /// Inspect a node's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Inspect and repair a running node's outboxes (messages for other centers).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// A privacy officer's reports from a running node (consents, refusals, withdrawals, a
    /// subject's disclosures, the audit chain), over mTLS with the officer's certificate.
    #[command(subcommand)]
    Privacy(crate::cli::privacy::PrivacyCommand),
    /// Sign or verify the federation directory.
    #[command(subcommand)]
    Directory(crate::cli::directory::DirectoryCommand),
}

/// `plusgate outbox …`: talks to the running node as the node itself (its certificate).
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List messages waiting for other centers, and dead-lettered ones, with the reasons.
    List {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Print the node's JSON answer instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered messages back at the end of their outbox (their time to live
    /// starts again).
    Retry {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Message ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Take waiting messages out of their outbox for good (dead-lettered, "dropped by the
    /// operator").
    Drop {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Message ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `plusgate audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check a (stopped) node's audit chain end to end (`--config`), or an audit export
    /// offline (`--file`, with the federation directory for the node's signing key); exit 1
    /// naming the first bad entry or line.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["config", "file"])))]
    Verify {
        /// The node's config file (its data directory is read).
        #[arg(long)]
        config: Option<PathBuf>,
        /// An export written by `plusgate audit export`.
        #[arg(long, value_name = "EXPORT", requires = "directory")]
        file: Option<PathBuf>,
        /// The signed federation directory, for the signing keys of the nodes whose
        /// checkpoints the export holds.
        #[arg(long, value_name = "DIRECTORY_FILE", conflicts_with = "config")]
        directory: Option<PathBuf>,
        /// The federation authority's public key (64 hex characters): check the directory's
        /// own signature too. Without it the directory is taken as it is (and a note says so).
        #[arg(long, value_name = "HEX", conflicts_with = "config")]
        authority_key: Option<String>,
    },
    /// Write a (stopped) node's audit chain as JSON Lines, with its signed checkpoints and,
    /// for a federated node, one signed now that vouches for the export's end.
    Export {
        /// The node's config file (its data directory is read).
        #[arg(long)]
        config: PathBuf,
        /// The export file to write (replaced atomically).
        #[arg(long, value_name = "EXPORT")]
        out: PathBuf,
        /// Export the entries from this sequence number on.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        since: u64,
    },
}

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

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::DevInit(args) => match devinit::run(&args) {
            Ok(manifest) => {
                println!("{}", devinit::summary(&manifest));
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &e),
        },
        Command::CheckConfig { config } => match check_config(&config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &*e),
        },
        Command::Audit(command) => match audit(command) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err((code, e)) => fail(code, &e),
        },
        Command::Outbox(command) => {
            let (config, action, json) = match command {
                OutboxCommand::List { config, json } => (config, OutboxAction::List, json),
                OutboxCommand::Retry { config, ids } => (config, OutboxAction::Retry(ids), false),
                OutboxCommand::Drop { config, ids } => (config, OutboxAction::Drop(ids), false),
            };
            against_node(&config, |config| async move {
                crate::cli::node_client::outbox(&config, action, json).await
            })
        }
        Command::Privacy(command) => {
            let config = command.officer().config.clone();
            against_node(&config, |config| async move {
                crate::cli::privacy::run(&config, &command).await
            })
        }
        Command::Bench(args) => match runtime().and_then(|rt| rt.block_on(crate::bench::run(args)))
        {
            Ok(()) => ExitCode::SUCCESS,
            // `{:#}` prints anyhow's whole chain of causes on one line.
            Err(e) => fail(EXIT_FAILURE, &format!("{e:#}")),
        },
        Command::Directory(command) => match crate::cli::directory::run(&command) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_FAILURE, &e),
        },
    }
}

/// Loads the node config at `path` and runs `call` (a request to that running node) with
/// it; prints its answer, or fails naming why.
fn against_node<F, Fut>(path: &Path, call: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<String, crate::cli::node_client::AdminError>>,
{
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let result = match runtime() {
        Ok(rt) => rt.block_on(call(config)),
        Err(e) => return fail(EXIT_FAILURE, &format!("{e:#}")),
    };
    match result {
        Ok(text) => {
            // CSV already ends its last line.
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILURE, &e),
    }
}

fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("plusgate: {e}");
    ExitCode::from(code)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Everything `serve` checks before binding, without binding: the config, the schemas,
/// the TLS material.
fn check_config(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let config = Config::load(path)?;
    crate::core::schema::Schemas::load(&config.schemas)?;
    crate::node::tls::server_config(&config.tls)?;
    let (agencies, federation) = match &config.federation {
        None => (config.directory.agencies.len(), String::new()),
        Some(f) => {
            let key = crate::core::keys::SigningKey::load(&f.signing_key)?;
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

/// Runs `plusgate audit …`: the summary line, or the exit code and the reason.
fn audit(command: AuditCommand) -> Result<String, (u8, String)> {
    match command {
        AuditCommand::Verify {
            config: Some(config),
            ..
        } => audit_verify(&config).map_err(|e| (EXIT_FAILURE, e)),
        AuditCommand::Verify {
            file: Some(file),
            directory: Some(directory),
            authority_key,
            ..
        } => audit_verify_file(&file, &directory, authority_key.as_deref())
            .map_err(|e| (EXIT_FAILURE, e)),
        AuditCommand::Verify { .. } => Err((
            EXIT_FAILURE,
            "give --config FILE, or --file EXPORT with --directory DIRECTORY_FILE".into(),
        )),
        AuditCommand::Export { config, out, since } => audit_export(&config, &out, since),
    }
}

/// `audit export`: the chain of the stopped node configured in `path`, from `since`, into
/// `out`, closed by a checkpoint signed now when the node is federated.
fn audit_export(path: &Path, out: &Path, since: u64) -> Result<String, (u8, String)> {
    let config = Config::load(path).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let key = match &config.federation {
        Some(federation) => Some(
            crate::core::keys::SigningKey::load(&federation.signing_key)
                .map_err(|e| (EXIT_CONFIG, e.to_string()))?,
        ),
        None => None,
    };
    let store = crate::cli::export::open_store(&config.data_dir).map_err(|e| (EXIT_FAILURE, e))?;
    let now = crate::node::ledger::now_rfc3339();
    let node = config.center.to_string();
    let closing = key.as_ref().map(|key| crate::cli::export::Closing {
        key,
        node: &node,
        at: &now,
    });
    let written = crate::cli::export::export_to_file(&store, since, closing.as_ref(), out)
        .map_err(|e| (EXIT_FAILURE, e.to_string()))?;
    if !written.closed {
        eprintln!(
            "plusgate: note: node {node} is not federated (no [federation] signing key), so the \
             export ends without a checkpoint signed now; `audit verify --file` will report the \
             entries after its last stored checkpoint as not covered"
        );
    }
    let range = match written.entries {
        0 => format!("no audit entries (the chain has {})", written.length),
        n => format!(
            "{n} audit entries (seq {} to {})",
            written.since,
            written.since + n - 1
        ),
    };
    Ok(format!(
        "exported {range} and {} checkpoints of node {node} to {}",
        written.checkpoints,
        out.display()
    ))
}

/// `audit verify --file`: checks an export offline against the directory's node keys.
fn audit_verify_file(
    file: &Path,
    directory: &Path,
    authority_key: Option<&str>,
) -> Result<String, String> {
    use crate::core::directory::Directory;
    let directory = match authority_key {
        Some(hex) => {
            let authority = crate::core::keys::PublicKey::from_hex(hex)
                .map_err(|e| format!("--authority-key is {e}"))?;
            Directory::load(directory, &authority).map_err(|e| e.to_string())?
        }
        None => {
            let loaded = Directory::load_unverified(directory).map_err(|e| e.to_string())?;
            eprintln!(
                "plusgate: note: the signature of directory {} was not checked (give \
                 --authority-key to check it); the node keys in it are taken as they are",
                directory.display()
            );
            loaded
        }
    };
    let export = std::fs::File::open(file)
        .map_err(|e| format!("cannot read export {}: {e}", file.display()))?;
    let summary = crate::cli::export::verify(std::io::BufReader::new(export), &directory)
        .map_err(|e| format!("export {}: {e}", file.display()))?;
    Ok(summary.to_string())
}

/// Walks the whole audit chain of the node configured in `path`.
fn audit_verify(path: &Path) -> Result<String, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let store = Store::open(&config.data_dir).map_err(|e| {
        format!("{e} (the data directory can be read only while the node is stopped)")
    })?;
    let mut verifier = Verifier::new();
    for entry in store.audit_entries() {
        let entry = entry
            .map_err(|e| format!("audit entry {}: unreadable: {e}", verifier.head().next_seq))?;
        verifier.push(&entry).map_err(|e| e.to_string())?;
    }
    let head = verifier.head();
    Ok(format!(
        "audit chain of node {} ok: {} entries, head {}",
        config.center,
        head.next_seq,
        hex::encode(&head.hash)
    ))
}

fn serve(args: ServeArgs) -> ExitCode {
    let (config_path, dev_hint) = match (&args.config, args.dev) {
        (Some(path), _) => (path.clone(), None),
        (None, _) => match devinit::ensure(Path::new(DEV_DIR)) {
            Ok(manifest) => match manifest.centers_in_order().first() {
                Some((_, center)) => (
                    manifest.resolve(&center.config),
                    Some(devinit::summary(&manifest)),
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
            Err(e) => return fail(EXIT_CONFIG, &format!("cannot listen on {}: {e}", config.listen)),
        };
        let addr = listener.local_addr().unwrap_or(config.listen);
        let shutdown = shutdown_signal();
        let reload = reload_requests();
        // Scripts and tests read this line to learn the bound address.
        println!("plusgate listening on https://{addr} (node {})", config.center);
        if let Some(hint) = dev_hint {
            println!("{hint}");
        }
        tracing::info!(node = %config.center, %addr, data_dir = %config.data_dir.display(), "serving");
        node.run(listener, shutdown, reload).await;
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

/// Directory reload requests: one per SIGHUP. Registered at once, for the same reason as
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
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP; directory reload disabled"),
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}
