//! How `dev-init` writes files: folders, plain files, certificates with their keys, and
//! private keys.
//!
//! Invariants kept here:
//! - a private key written here (the authority's and each node's Ed25519 key, each data key)
//!   goes to a new file, created only if absent and readable by its owner only; certificates
//!   and their TLS keys are written by [`pki::write_pem_pair`];
//! - every failure names the file, or whose certificate or key it was.

use std::fs;
use std::io;
use std::path::Path;

use super::DevInitError;
use crate::core::keys::SigningKey;
use crate::dev::manifest::KeyPairPaths;
use crate::dev::pki::{self, CertificateAuthority, IssuedCert, Role, Validity};

/// Generates an Ed25519 key and writes it as PKCS#8 PEM to a new file only its owner can
/// read.
pub(super) fn write_signing_key(
    path: &Path,
    whose: impl ToString,
) -> Result<SigningKey, DevInitError> {
    let (key, pem) = SigningKey::generate().map_err(|source| DevInitError::Key {
        what: whose.to_string(),
        source,
    })?;
    write_private(path, &pem)?;
    Ok(key)
}

/// Writes a new file readable by its owner only.
pub(super) fn write_private(path: &Path, text: &str) -> Result<(), DevInitError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options
        .open(path)
        .and_then(|mut file| io::Write::write_all(&mut file, text.as_bytes()));
    result.map_err(|source| DevInitError::Io {
        path: path.to_owned(),
        source,
    })
}

pub(super) fn issue(
    ca: &CertificateAuthority,
    role: &Role,
    validity: Validity,
) -> Result<IssuedCert, DevInitError> {
    ca.issue(role, validity)
        .map_err(|source| DevInitError::Pki {
            what: role.to_string(),
            source,
        })
}

pub(super) fn write_pair(
    dir: &Path,
    stem: &str,
    pair: &IssuedCert,
    what: impl ToString,
) -> Result<(), DevInitError> {
    pki::write_pem_pair(dir, stem, pair)
        .map(|_| ())
        .map_err(|source| DevInitError::Pki {
            what: what.to_string(),
            source,
        })
}

pub(super) fn pair_paths(stem: &str) -> KeyPairPaths {
    KeyPairPaths {
        cert: format!("{stem}.crt"),
        key: format!("{stem}.key"),
    }
}

pub(super) fn create_dir(path: &Path) -> Result<(), DevInitError> {
    fs::create_dir_all(path).map_err(|source| DevInitError::Io {
        path: path.to_owned(),
        source,
    })
}

pub(super) fn write_file(path: &Path, contents: &[u8]) -> Result<(), DevInitError> {
    fs::write(path, contents).map_err(|source| DevInitError::Io {
        path: path.to_owned(),
        source,
    })
}
