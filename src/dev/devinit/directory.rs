//! The federation directory `dev-init` writes: every center with its URL, node identity and
//! signing key, and every agency with the message types it sends and receives, signed by the
//! federation authority's key.
//!
//! Invariant kept here: the directory reaches the disk only signed, and its bytes are fixed
//! here (field order as documented, indented to line up under `"directory"` in the signed
//! file), since they are what the signature covers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::files::write_file;
use super::layout::AGENCIES;
use super::DevInitError;
use crate::core::directory::{self, DirectoryError};
use crate::core::keys::{PublicKey, SigningKey};

/// Message types every development agency may send. `consent` is absent on purpose:
/// consents are not messages and get their own endpoint.
pub const AGENCY_SENDS: [&str; 3] = ["referral", "referral-status", "case-summary"];

/// Message types every development agency accepts (its `receives` in the directory).
pub const AGENCY_RECEIVES: [&str; 3] = ["referral", "referral-status", "case-summary"];

/// Version of the directory `dev-init` writes.
pub const DEV_DIRECTORY_VERSION: u64 = 1;

/// The bare directory object as `dev-init` writes it (field order as documented).
#[derive(Serialize)]
struct UnsignedDirectory {
    version: u64,
    issued_at: String,
    centers: BTreeMap<String, DirectoryCenter>,
}

#[derive(Serialize)]
pub(super) struct DirectoryCenter {
    url: String,
    node: String,
    signing_key: String,
    agencies: BTreeMap<String, DirectoryAgency>,
}

#[derive(Serialize)]
struct DirectoryAgency {
    sends: Vec<&'static str>,
    receives: Vec<&'static str>,
}

/// The directory entry of one development center: every agency of [`AGENCIES`].
pub(super) fn directory_center(id: &str, url: &str, signing_key: &PublicKey) -> DirectoryCenter {
    DirectoryCenter {
        url: url.to_owned(),
        node: format!("urn:plusgate:node:{id}"),
        signing_key: signing_key.to_hex(),
        agencies: AGENCIES
            .iter()
            .map(|agency| {
                let entry = DirectoryAgency {
                    sends: AGENCY_SENDS.to_vec(),
                    receives: AGENCY_RECEIVES.to_vec(),
                };
                (format!("{id}/{agency}"), entry)
            })
            .collect(),
    }
}

/// Signs the directory listing `centers` with the authority's key and writes it to `path`.
pub(super) fn write_directory(
    path: &Path,
    centers: BTreeMap<String, DirectoryCenter>,
    authority: &SigningKey,
) -> Result<(), DevInitError> {
    let now = time::OffsetDateTime::now_utc();
    let issued_at = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| DevInitError::Directory {
            source: DirectoryError::Malformed(format!("cannot format the issue time: {e}")),
        })?;
    let unsigned = UnsignedDirectory {
        version: DEV_DIRECTORY_VERSION,
        issued_at,
        centers,
    };
    let text = serde_json::to_string_pretty(&unsigned).map_err(|e| DevInitError::Directory {
        source: DirectoryError::Malformed(e.to_string()),
    })?;
    // Indented one level more, so it lines up under "directory" in the signed file. JSON
    // strings hold no raw newlines, so this changes only whitespace between tokens.
    let text = text.replace('\n', "\n  ");
    let signed = directory::sign(text.as_bytes(), authority)
        .map_err(|source| DevInitError::Directory { source })?;
    write_file(path, &signed)
}
