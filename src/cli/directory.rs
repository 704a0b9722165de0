//! `plusgate directory sign|verify`: the federation authority's tools. `sign` signs a bare
//! directory object with the authority's key and writes the signed file every node loads;
//! `verify` checks a signed file against the authority key (given, or pinned in a node's
//! config). The rules themselves are `core::directory`; this is the file handling around them.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};
use crate::core::directory::{self, Directory, DirectoryError};
use crate::core::keys::{KeyError, PublicKey, SigningKey};
use crate::node::files::{self, LoadError, ReadError};

/// `plusgate directory …`: sign a directory with the authority's key, or verify one.
#[derive(Debug, clap::Subcommand)]
pub enum DirectoryCommand {
    /// Sign a bare directory object with the federation authority's key; writes the signed
    /// file that every node loads.
    Sign {
        /// The federation authority's Ed25519 private key (PKCS#8 PEM).
        #[arg(long, value_name = "AUTHORITY_KEY_PEM")]
        key: PathBuf,
        /// The bare directory object (the JSON that goes under "directory").
        #[arg(long = "in", value_name = "UNSIGNED.json")]
        input: PathBuf,
        /// Where to write the signed directory (replaced atomically).
        #[arg(long, value_name = "SIGNED.json")]
        out: PathBuf,
    },
    /// Check a signed directory's signature and contents; exit 0 with a summary, or 1 with
    /// the reason.
    #[command(group(clap::ArgGroup::new("authority").required(true).args(["authority_key", "config"])))]
    Verify {
        /// The signed directory file.
        #[arg(long, value_name = "SIGNED.json")]
        file: PathBuf,
        /// The federation authority's public key (64 hex characters).
        #[arg(long, value_name = "HEX")]
        authority_key: Option<String>,
        /// A node config whose `[federation] authority_key` to verify against.
        #[arg(long, value_name = "NODE_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Why `plusgate directory …` failed. All of them are the caller's to fix (a wrong file or
/// key, a directory that breaks a rule); running it again unchanged fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryCommandError {
    /// `--authority-key` is not an Ed25519 public key.
    #[error("--authority-key is {0}")]
    AuthorityKey(#[source] KeyError),
    /// The node config given with `--config` is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node config given with `--config` is not federated, so it pins no authority key.
    #[error(
        "config file {} has no [federation] section, so it pins no federation authority key; \
         give --authority-key instead",
        .0.display()
    )]
    NotFederated(PathBuf),
    /// Neither `--authority-key` nor `--config` (clap already insists on one).
    #[error("give --authority-key or --config")]
    NoAuthority,
    /// The authority's private key file is unusable.
    #[error(transparent)]
    Key(LoadError<KeyError>),
    /// The signed directory does not verify, or is unreadable or invalid.
    #[error(transparent)]
    Signed(LoadError<DirectoryError>),
    /// The unsigned directory could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The unsigned directory breaks a rule, so it is not signed.
    #[error("directory {}: {source}", .path.display())]
    Unsigned {
        /// The unsigned directory file.
        path: PathBuf,
        /// What is wrong with it.
        source: DirectoryError,
    },
    /// The signed directory could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs `plusgate directory …`: the one line to print on success, or why it failed.
pub fn run(command: &DirectoryCommand) -> Result<String, DirectoryCommandError> {
    match command {
        DirectoryCommand::Sign { key, input, out } => sign_file(key, input, out),
        DirectoryCommand::Verify {
            file,
            authority_key,
            config,
        } => {
            let authority = match (authority_key, config) {
                (Some(hex), _) => {
                    PublicKey::from_hex(hex).map_err(DirectoryCommandError::AuthorityKey)?
                }
                (None, Some(config)) => {
                    let config = Config::load(config)?;
                    config
                        .federation
                        .map(|f| f.authority_key)
                        .ok_or(DirectoryCommandError::NotFederated(config.path))?
                }
                (None, None) => return Err(DirectoryCommandError::NoAuthority),
            };
            let directory =
                Directory::load(file, &authority).map_err(DirectoryCommandError::Signed)?;
            Ok(format!(
                "directory {} ok: version {}, issued {}, {} centers, {} agencies",
                file.display(),
                directory.version,
                directory.issued_at,
                directory.centers.len(),
                directory.agency_count()
            ))
        }
    }
}

fn sign_file(key: &Path, input: &Path, out: &Path) -> Result<String, DirectoryCommandError> {
    let authority = SigningKey::load(key).map_err(DirectoryCommandError::Key)?;
    let unsigned = files::read("directory", input)?;
    let in_input = |source| DirectoryCommandError::Unsigned {
        path: input.to_owned(),
        source,
    };
    let signed = directory::sign(&unsigned, &authority).map_err(in_input)?;
    let directory =
        Directory::from_signed_bytes(&signed, &authority.public_key()).map_err(in_input)?;
    write_atomically(out, &signed).map_err(|source| DirectoryCommandError::Write {
        path: out.to_owned(),
        source,
    })?;
    Ok(format!(
        "directory {} signed: version {}, issued {}, {} centers, {} agencies; authority key {}",
        out.display(),
        directory.version,
        directory.issued_at,
        directory.centers.len(),
        directory.agency_count(),
        authority.public_key()
    ))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a node starting
/// meanwhile reads either the old directory or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}
