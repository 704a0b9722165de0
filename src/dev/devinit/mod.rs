//! `plusgate dev-init`: writes a complete development federation into one folder.
//!
//! The folder holds a CA, the federation authority's Ed25519 key (`authority.key`; in
//! production it lives offline) and the `directory.json` it signed, one node per center
//! (certificate, key, Ed25519 signing key `node-signing.key` and `plusgate.toml` with a
//! `[federation]` section), client certificates for each center's agencies and privacy
//! officer, example request bodies, and `manifest.json` indexing all of it (see
//! [`crate::dev::manifest`]). Center `i` of `--centers` listens on `127.0.0.1:(base_port + i)`.
//!
//! Architecture Invariant: `manifest.json` is written last and atomically, so its
//! presence means the federation is complete; [`ensure`] relies on that. This module
//! prints nothing: [`run`] returns the loaded manifest and [`summary`](fn@summary) the text
//! the CLI shows.
//!
//! One file per concept: this one holds the command (its arguments, [`run`], [`ensure`],
//! the order in which the federation is written, and [`DevInitError`]); `layout` checks the
//! centers, assigns their ports and writes each center's folder; `directory` the directory
//! the authority signs; `configs` each node's `plusgate.toml`; `examples` the example request
//! bodies and consents; `files` how files and key material are written; `summary` the text
//! the CLI shows.

mod configs;
mod directory;
mod examples;
mod files;
mod layout;
mod summary;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::core::directory::{DirectoryError, DIRECTORY_FILE};
use crate::core::keys::KeyError;
use crate::dev::manifest::{LoadedManifest, Manifest, ManifestError, MANIFEST_FILE};
use crate::dev::pki::{self, CertificateAuthority, PkiError, Validity};
use directory::{directory_center, write_directory};
use examples::write_examples;
use files::{write_pair, write_signing_key};
use layout::{plan_centers, prepare_out_dir, write_center, PlannedCenter};

pub use directory::{AGENCY_RECEIVES, AGENCY_SENDS, DEV_DIRECTORY_VERSION};
pub use examples::{
    EXAMPLES_DIR, EXAMPLE_CASE_SUMMARY_ID, EXAMPLE_CONSENT_ID, EXAMPLE_REFERRAL_ID,
    EXAMPLE_REFERRAL_REMOTE_ID, EXAMPLE_REMOTE_REPLY_CONSENT_ID, EXAMPLE_REPLY_CONSENT_ID,
    EXAMPLE_STATUS_ID,
};
pub use layout::{
    AGENCIES, AUTHORITY_KEY_FILE, CRL_FILE, DATA_KEY_FILE, NODE_SIGNING_KEY_FILE, OFFICERS,
};
pub use summary::summary;

/// Centers created when `--centers` is not given, in port order.
pub const DEFAULT_CENTERS: &str = "suwon,gangseo,jeongeup";

/// Port of the first center when `--base-port` is not given.
pub const DEFAULT_BASE_PORT: u16 = 7443;

/// How long development certificates are valid.
pub const DEV_CERT_VALIDITY_DAYS: i64 = 365;

/// Common name of the development CA.
pub const CA_COMMON_NAME: &str = "plusgate development CA";

/// Arguments of `plusgate dev-init`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevInitArgs {
    /// Folder to write the federation into; it must not exist yet or be empty.
    #[arg(long)]
    pub out: PathBuf,
    /// Center ids, comma-separated; center i listens on 127.0.0.1:(base-port + i).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_CENTERS)]
    pub centers: Vec<String>,
    /// Port of the first center.
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
}

impl DevInitArgs {
    /// Arguments for writing the default federation into `out`.
    pub fn with_defaults(out: impl Into<PathBuf>) -> DevInitArgs {
        DevInitArgs {
            out: out.into(),
            centers: DEFAULT_CENTERS.split(',').map(str::to_owned).collect(),
            base_port: DEFAULT_BASE_PORT,
        }
    }
}

/// Writes a development federation as described by `args` and returns its manifest.
///
/// Checks the arguments and that `args.out` is absent or empty before writing anything.
/// If writing fails half-way, the folder is left without `manifest.json` and the error
/// ([`DevInitError::Incomplete`]) says to delete it.
pub fn run(args: &DevInitArgs) -> Result<LoadedManifest, DevInitError> {
    let centers = plan_centers(&args.centers, args.base_port)?;
    prepare_out_dir(&args.out)?;
    write_federation(&args.out, &centers).map_err(|source| DevInitError::Incomplete {
        path: args.out.clone(),
        source: Box::new(source),
    })
}

/// Loads the federation in `dir`, writing a default one first if `dir/manifest.json`
/// does not exist (what `serve --dev` uses).
pub fn ensure(dir: &Path) -> Result<LoadedManifest, DevInitError> {
    let manifest = dir.join(MANIFEST_FILE);
    if manifest.is_file() {
        return Manifest::load(manifest).map_err(|source| match source {
            // Most likely written by an older plusgate (e.g. before the signed directory).
            ManifestError::Parse { .. } => DevInitError::Outdated {
                path: dir.to_owned(),
                source,
            },
            other => other.into(),
        });
    }
    run(&DevInitArgs::with_defaults(dir))
}

fn write_federation(out: &Path, centers: &[PlannedCenter]) -> Result<LoadedManifest, DevInitError> {
    let validity = Validity::days_from_now(DEV_CERT_VALIDITY_DAYS);
    let ca = CertificateAuthority::generate(CA_COMMON_NAME, validity).map_err(|source| {
        DevInitError::Pki {
            what: "the CA".into(),
            source,
        }
    })?;
    write_pair(out, "ca", &ca.pem_pair(), "the CA")?;
    // An empty CRL, so every node checks revocation from the start; `dev-revoke` (or
    // `pki::revoke`) adds to it and the nodes pick it up within seconds.
    pki::write_crl(&ca, &out.join(CRL_FILE), &[], 1, validity.not_after).map_err(|source| {
        DevInitError::Pki {
            what: "the CA's CRL".into(),
            source,
        }
    })?;
    let authority = write_signing_key(&out.join(AUTHORITY_KEY_FILE), "the federation authority")?;

    let mut center_entries = BTreeMap::new();
    let mut directory_centers = BTreeMap::new();
    for center in centers {
        let (entry, signing_key) =
            write_center(out, &ca, &authority.public_key(), center, validity)?;
        directory_centers.insert(
            center.id.clone(),
            directory_center(&center.id, &entry.url, &signing_key),
        );
        center_entries.insert(center.id.clone(), entry);
    }
    write_directory(&out.join(DIRECTORY_FILE), directory_centers, &authority)?;
    let ids: Vec<&str> = centers.iter().map(|c| c.id.as_str()).collect();
    let examples = write_examples(out, &ids)?;

    let manifest = Manifest {
        ca_cert: "ca.crt".into(),
        directory: DIRECTORY_FILE.into(),
        centers: center_entries,
        examples,
    };
    let path = manifest.write(out)?;
    // Read back what was written, so a manifest that does not load is caught here.
    Ok(Manifest::load(path)?)
}

/// `dev-revoke`: adds the certificate at `cert` to the CRL of the development federation
/// in `dir` (`ca.crl`, signed by its CA, valid as long as its certificates), where every
/// node of it picks it up within seconds. Returns the CRL's path.
pub fn revoke(dir: &Path, cert: &Path) -> Result<PathBuf, DevInitError> {
    let failed = |detail: String| DevInitError::Revoke {
        cert: cert.to_owned(),
        detail,
    };
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|e| failed(format!("{}: {e}", path.display())))
    };
    let ca = CertificateAuthority::from_pem(&read(dir.join("ca.crt"))?, &read(dir.join("ca.key"))?)
        .map_err(|e| failed(e.to_string()))?;
    let crl = dir.join(CRL_FILE);
    let next_update = Validity::days_from_now(DEV_CERT_VALIDITY_DAYS).not_after;
    pki::revoke(&ca, &crl, &read(cert.to_owned())?, next_update)
        .map_err(|e| failed(e.to_string()))?;
    Ok(crl)
}

/// Why `dev-init` refused or failed. Variants up to [`DevInitError::OutNotDirectory`] are
/// mistakes in the command line and leave the disk untouched.
#[derive(Debug, thiserror::Error)]
pub enum DevInitError {
    /// `--centers` was empty.
    #[error("no centers given: --centers needs at least one center id")]
    NoCenters,
    /// A center id is outside the allowed alphabet.
    #[error("invalid center id {name:?}: center ids must match [a-z0-9][a-z0-9-]{{0,62}}")]
    InvalidCenterName {
        /// The rejected id.
        name: String,
    },
    /// A center id collides with a folder dev-init itself writes.
    #[error(
        "center id {name:?} is reserved: the federation folder uses it for the example bodies"
    )]
    ReservedCenterName {
        /// The rejected id.
        name: String,
    },
    /// A center id was given twice.
    #[error("center id {name:?} is given more than once in --centers")]
    DuplicateCenter {
        /// The repeated id.
        name: String,
    },
    /// `--base-port 0` would give every node an ephemeral port the manifest cannot name.
    #[error("--base-port must be between 1 and 65535")]
    PortZero,
    /// The last center's port would exceed 65535.
    #[error("--base-port {base_port} leaves no room for {count} centers: ports base-port..base-port+{count}-1 must all be at most 65535")]
    PortOverflow {
        /// The requested first port.
        base_port: u16,
        /// Number of centers.
        count: usize,
    },
    /// The output folder already has files in it.
    #[error("refusing to write into {path}: the folder is not empty; choose another --out or delete it first")]
    OutNotEmpty {
        /// The output folder.
        path: PathBuf,
    },
    /// The output path exists and is not a folder.
    #[error("refusing to write into {path}: it exists and is not a folder; choose another --out")]
    OutNotDirectory {
        /// The output path.
        path: PathBuf,
    },
    /// A file or folder could not be created.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `dev-revoke` could not add a certificate to the CA's CRL.
    #[error("cannot revoke {cert}: {detail}")]
    Revoke {
        /// The certificate to revoke.
        cert: PathBuf,
        /// What failed.
        detail: String,
    },
    /// A certificate could not be generated or written.
    #[error("cannot create the certificate of {what}: {source}")]
    Pki {
        /// Whose certificate, e.g. `agency suwon/employment`.
        what: String,
        /// The underlying error.
        source: PkiError,
    },
    /// An embedded payload example lacks a field dev-init patches (schemas/examples is out
    /// of step with this module: a bug in plusgate).
    #[error("embedded example {example:?} cannot be used: {detail}")]
    Example {
        /// Which example.
        example: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// An Ed25519 signing key could not be generated.
    #[error("cannot create the signing key of {what}: {source}")]
    Key {
        /// Whose key, e.g. `the federation authority`.
        what: String,
        /// The underlying error.
        source: KeyError,
    },
    /// The federation directory could not be built or signed (a bug in plusgate).
    #[error("cannot create the federation directory: {source}")]
    Directory {
        /// The underlying error.
        source: DirectoryError,
    },
    /// The manifest could not be written or read back.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The folder holds a federation whose manifest this version cannot read (written by an
    /// older plusgate); it has to be recreated.
    #[error("{path} holds a development federation this version of plusgate cannot use; delete the folder and run again to recreate it ({source})")]
    Outdated {
        /// The federation folder.
        path: PathBuf,
        /// Why its manifest does not load.
        source: ManifestError,
    },
    /// Writing failed half-way; the folder has no manifest and should be deleted.
    #[error("dev-init failed, leaving {path} incomplete (it has no manifest.json; delete it before retrying): {source}")]
    Incomplete {
        /// The output folder.
        path: PathBuf,
        /// What failed.
        source: Box<DevInitError>,
    },
}

#[cfg(test)]
mod tests;
