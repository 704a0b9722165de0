//! The federation's folder layout: which centers, on which ports, in which folder, and what
//! each center's folder holds (node certificate and keys, data key, agency and officer
//! certificates, `plusgate.toml`).
//!
//! Invariants kept here:
//! - the arguments are checked (valid, distinct, unreserved center ids; every port within
//!   1..=65535) and the output folder found absent or empty before anything is written;
//! - center `i` listens on `127.0.0.1:(base_port + i)`, in the order given.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use super::configs::config_toml;
use super::examples::EXAMPLES_DIR;
use super::files::{
    create_dir, issue, pair_paths, write_file, write_pair, write_private, write_signing_key,
};
use super::DevInitError;
use crate::core::keys::PublicKey;
use crate::dev::manifest::CenterEntry;
use crate::dev::pki::{self, CertificateAuthority, Role, Validity};

/// Agencies created at every center (client certificates and directory entries).
pub const AGENCIES: [&str; 5] = ["employment", "jobs", "welfare", "saeil", "finance"];

/// Officers created at every center (client certificates and `[[officers]]` entries).
pub const OFFICERS: [&str; 1] = ["privacy-officer"];

/// Managers created at every center (client certificates and `[[managers]]` entries).
pub const MANAGERS: [&str; 1] = ["manager"];

/// File (in the federation folder) holding the federation authority's Ed25519 private key,
/// which signs `directory.json`. A development convenience: in production it lives offline.
pub const AUTHORITY_KEY_FILE: &str = "authority.key";

/// File (in the federation folder) holding the CA's certificate revocation list (PEM), which
/// every node's config names in `tls.crls`.
pub const CRL_FILE: &str = "ca.crl";

/// File (in each center's folder) holding the node's Ed25519 private key for receipts and
/// checkpoints.
pub const NODE_SIGNING_KEY_FILE: &str = "node-signing.key";
/// Each center's data key (AES-256), which seals payloads at rest.
pub const DATA_KEY_FILE: &str = "data.key";

/// One center of the federation about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlannedCenter {
    pub(super) id: String,
    pub(super) port: u16,
}

/// Checks the center list and assigns ports.
pub(super) fn plan_centers(
    centers: &[String],
    base_port: u16,
) -> Result<Vec<PlannedCenter>, DevInitError> {
    if centers.is_empty() {
        return Err(DevInitError::NoCenters);
    }
    if base_port == 0 {
        return Err(DevInitError::PortZero);
    }
    let mut seen = HashSet::new();
    let mut planned = Vec::with_capacity(centers.len());
    for (i, id) in centers.iter().enumerate() {
        if !pki::is_valid_name(id) {
            return Err(DevInitError::InvalidCenterName { name: id.clone() });
        }
        if id == EXAMPLES_DIR {
            return Err(DevInitError::ReservedCenterName { name: id.clone() });
        }
        if !seen.insert(id.as_str()) {
            return Err(DevInitError::DuplicateCenter { name: id.clone() });
        }
        let port =
            u16::try_from(usize::from(base_port) + i).map_err(|_| DevInitError::PortOverflow {
                base_port,
                count: centers.len(),
            })?;
        planned.push(PlannedCenter {
            id: id.clone(),
            port,
        });
    }
    Ok(planned)
}

/// Creates `out` if needed; refuses anything but an absent or empty folder.
pub(super) fn prepare_out_dir(out: &Path) -> Result<(), DevInitError> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(DevInitError::OutNotEmpty {
                    path: out.to_owned(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(out),
        Err(_) if out.exists() && !out.is_dir() => Err(DevInitError::OutNotDirectory {
            path: out.to_owned(),
        }),
        Err(source) => Err(DevInitError::Io {
            path: out.to_owned(),
            source,
        }),
    }
}

/// Writes one center's folder; returns its manifest entry and its node's signing key.
pub(super) fn write_center(
    out: &Path,
    ca: &CertificateAuthority,
    authority: &PublicKey,
    center: &PlannedCenter,
    validity: Validity,
) -> Result<(CenterEntry, PublicKey), DevInitError> {
    let id = &center.id;
    let center_dir = out.join(id);
    create_dir(&center_dir)?;
    create_dir(&center_dir.join("agencies"))?;
    create_dir(&center_dir.join("officers"))?;
    create_dir(&center_dir.join("managers"))?;

    let node = Role::Node { center: id.clone() };
    write_pair(&center_dir, "node", &issue(ca, &node, validity)?, &node)?;
    let signing_key =
        write_signing_key(&center_dir.join(NODE_SIGNING_KEY_FILE), &node)?.public_key();
    let data_key = crate::core::vault::generate_key_text().map_err(|e| DevInitError::Io {
        path: center_dir.join(DATA_KEY_FILE),
        source: io::Error::other(e.to_string()),
    })?;
    write_private(&center_dir.join(DATA_KEY_FILE), &data_key)?;

    let mut agencies = BTreeMap::new();
    for agency in AGENCIES {
        let role = Role::Agency {
            center: id.clone(),
            agency: agency.into(),
        };
        write_pair(
            &center_dir.join("agencies"),
            agency,
            &issue(ca, &role, validity)?,
            &role,
        )?;
        agencies.insert(role.id(), pair_paths(&format!("{id}/agencies/{agency}")));
    }
    let mut officers = BTreeMap::new();
    for officer in OFFICERS {
        let role = Role::Officer {
            center: id.clone(),
            name: officer.into(),
        };
        write_pair(
            &center_dir.join("officers"),
            officer,
            &issue(ca, &role, validity)?,
            &role,
        )?;
        officers.insert(role.id(), pair_paths(&format!("{id}/officers/{officer}")));
    }
    let mut managers = BTreeMap::new();
    for manager in MANAGERS {
        let role = Role::Manager {
            center: id.clone(),
            name: manager.into(),
        };
        write_pair(
            &center_dir.join("managers"),
            manager,
            &issue(ca, &role, validity)?,
            &role,
        )?;
        managers.insert(role.id(), pair_paths(&format!("{id}/managers/{manager}")));
    }

    let config_path = center_dir.join("plusgate.toml");
    write_file(
        &config_path,
        config_toml(id, center.port, authority).as_bytes(),
    )?;
    let entry = CenterEntry {
        config: format!("{id}/plusgate.toml"),
        url: format!("https://127.0.0.1:{}", center.port),
        agencies,
        officers,
        managers,
    };
    Ok((entry, signing_key))
}
