//! The command line, one file per command group: `serve` and `check-config` ([`serve`]),
//! `dev-init`, `audit verify|export` ([`audit`], with the export file in [`export`]),
//! `outbox list|retry|drop` ([`outbox`]), `privacy …` ([`privacy`]), `directory sign|verify`
//! ([`directory`]), `csr` ([`csr`]). Parses arguments, calls into the library, maps failures to exit
//! codes (78 = configuration, 1 = other). `anyhow` lives here and nowhere deeper.

pub mod audit;
pub mod backup;
pub mod compact;
pub mod csr;
pub mod directory;
pub mod exit;
pub mod export;
pub mod logging;
pub mod migrate;
pub mod node_client;
pub mod outbox;
pub mod privacy;
pub(crate) mod progress;
pub mod serve;
pub mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::dev::devinit::{self, DevInitArgs};

use self::exit::{fail, finish, runtime};
pub use self::exit::{EXIT_CONFIG, EXIT_FAILURE, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE};

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
    Serve(serve::ServeArgs),
    /// Create a development federation: CA, node and agency certificates, configs, examples.
    DevInit(DevInitArgs),
    /// Revoke a certificate of a development federation: add it to the dev CA's CRL
    /// (`ca.crl`), which the nodes reload within seconds.
    DevRevoke {
        /// The federation folder (`dev-init --out`).
        #[arg(long)]
        dir: PathBuf,
        /// The certificate to revoke (PEM).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Validate a config file (and the files it names) and exit.
    CheckConfig {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Inspect a node's audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Inspect and repair a running node's outboxes (messages for other centers).
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// A privacy officer's reports from a running node (consents, refusals, withdrawals, a
    /// subject's disclosures, the audit chain), over mTLS with the officer's certificate.
    #[command(subcommand)]
    Privacy(crate::cli::privacy::PrivacyCommand),
    /// Referral statistics of the center or the federation (a manager's or officer's
    /// certificate): messages, outcomes, times, refusals and withdrawals, small counts
    /// suppressed.
    Stats(crate::cli::stats::StatsArgs),
    /// Sign or verify the federation directory.
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// Give a stopped node's disk space back: copy its store into a fresh one and swap
    /// them atomically (sled keeps the space that acks, purges and retention free).
    Compact(compact::CompactArgs),
    /// Copy a consistent backup of the running node into a folder (through its admin API,
    /// as the node itself); its writes wait only while the node writes the copy locally.
    Backup(backup::BackupArgs),
    /// Replace a stopped node's data directory with a backup (the one replaced is kept
    /// beside it).
    Restore(backup::RestoreArgs),
    /// Make this node's TLS key, a certificate request for the federation authority and
    /// the node's signing key (joining a federation, renewing the certificate).
    Csr(csr::CsrArgs),
    /// Bring a stopped node's store to this version's format (after an upgrade), keeping a
    /// copy of it as it was next to the data directory.
    Migrate(migrate::MigrateArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::DevInit(args) => match devinit::run(&args) {
            Ok(manifest) => {
                println!("{}", devinit::summary(&manifest, None));
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &e),
        },
        Command::DevRevoke { dir, cert } => match devinit::revoke(&dir, &cert) {
            Ok(crl) => {
                println!("revoked {} in {}", cert.display(), crl.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &e),
        },
        Command::CheckConfig { config } => finish(serve::check_config(&config), |_| EXIT_CONFIG),
        Command::Audit(command) => audit::run(command),
        Command::Outbox(command) => {
            let config = match Config::load(&command.node().config) {
                Ok(c) => c,
                Err(e) => return fail(EXIT_CONFIG, &e),
            };
            against_node(crate::cli::outbox::run(&config, command))
        }
        Command::Privacy(command) => {
            let target = match staff_target(command.officer()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            against_node(async move { crate::cli::privacy::run(&target, &command).await })
        }
        Command::Stats(args) => {
            let target = match staff_target(&args.caller) {
                Ok(t) => t,
                Err(code) => return code,
            };
            against_node(async move { crate::cli::stats::run(&target, &args).await })
        }
        Command::Directory(command) => finish(directory::run(&command), |_| EXIT_FAILURE),
        Command::Compact(args) => finish(compact::run(&args), |e| match e {
            compact::CompactError::Config(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }),
        Command::Backup(args) => {
            let result = match runtime() {
                Ok(rt) => rt.block_on(backup::run_backup(&args)),
                Err(e) => return fail(EXIT_FAILURE, &format!("{e:#}")),
            };
            finish(result, backup::BackupCliError::exit_code)
        }
        Command::Restore(args) => finish(
            backup::run_restore(&args),
            backup::BackupCliError::exit_code,
        ),
        Command::Csr(args) => finish(csr::run(&args), |e| match e {
            csr::CsrError::Exists(_) | csr::CsrError::NoAddress => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }),
        Command::Migrate(args) => finish(migrate::run(&args), |e| match e {
            migrate::MigrateError::Config(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }),
    }
}

/// Runs `call` (a request to a running node) and prints its answer, or fails with the exit
/// code its error says (`AdminError::exit_code`: refused, unreachable, or the caller's
/// files).
/// The node an officer's or manager's command asks: from its config on the node's host,
/// or its URL and CA elsewhere; the exit code if neither works.
fn staff_target(
    caller: &crate::cli::privacy::OfficerArgs,
) -> Result<node_client::Target, ExitCode> {
    match (&caller.config, &caller.url, &caller.ca) {
        (Some(path), _, _) => match Config::load(path) {
            Ok(c) => Ok(node_client::Target::of_config(&c)),
            Err(e) => Err(fail(EXIT_CONFIG, &e)),
        },
        (None, Some(url), Some(ca)) => {
            node_client::Target::at(url, ca).map_err(|e| fail(e.exit_code(), &e))
        }
        // clap requires `--config`, or `--url` with `--ca`.
        _ => Err(fail(
            EXIT_USAGE,
            &"name the node: --config FILE, or --url URL --ca FILE",
        )),
    }
}

fn against_node<Fut>(call: Fut) -> ExitCode
where
    Fut: std::future::Future<Output = Result<String, crate::cli::node_client::AdminError>>,
{
    let result = match runtime() {
        Ok(rt) => rt.block_on(call),
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
        Err(e) => fail(e.exit_code(), &e),
    }
}
