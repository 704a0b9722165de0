//! The signed federation directory: which centers exist, where their nodes are, which key
//! each node signs receipts and checkpoints with, and which agencies each center has and what
//! they may send and receive.
//!
//! One file (`directory.json`) is loaded by every node:
//!
//! ```json
//! {
//!   "directory": {"version": 3, "issued_at": "2026-11-26T03:00:00Z", "centers": {…}},
//!   "signature": "<128 hex: Ed25519 signature by the federation authority>"
//! }
//! ```
//!
//! The signature covers the exact bytes of the `directory` value as they appear in the file
//! (no canonicalisation), so it is checked first, on those bytes; only a directory whose
//! signature verifies against the authority key pinned in the node's config is parsed
//! (strictly: duplicate keys and unknown fields are errors) and validated.
//!
//! Architecture invariant: nothing outside this module interprets the directory file; the
//! rest of the node sees a validated [`Directory`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::core::hex;
use crate::core::identity::{AgencyId, CenterId};
use crate::core::keys::{PublicKey, SigningKey, SIGNATURE_LEN};
use crate::core::message::MessageType;

pub use self::url::{parse_https_url, Host, HostName, NodeUrl, UrlError, DEFAULT_PORT};

mod url;

/// File name `dev-init` gives the directory (next to the centers' folders).
pub const DIRECTORY_FILE: &str = "directory.json";

/// The validated federation directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// Increases with every directory the authority issues.
    pub version: u64,
    /// When the authority issued it (RFC 3339, as written in the file).
    pub issued_at: String,
    /// Every center of the federation.
    pub centers: BTreeMap<CenterId, CenterEntry>,
    /// SHA-256 of the whole signed file.
    digest: [u8; 32],
}

/// One center: its node and its agencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CenterEntry {
    /// Base URL of the center's node, `https://host:port` (the host an IP address or a
    /// DNS name, see [`parse_https_url`]).
    pub url: String,
    /// The node's Ed25519 public key for receipts and checkpoints.
    pub signing_key: PublicKey,
    /// The center's agencies.
    pub agencies: BTreeMap<AgencyId, AgencyEntry>,
}

/// What one agency may send and receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyEntry {
    /// Message types the agency may send.
    pub sends: Vec<MessageType>,
    /// Message types the agency accepts.
    pub receives: Vec<MessageType>,
}

/// Why a directory is unusable. [`Directory::from_signed_file`] wraps every problem with the
/// contents in [`DirectoryError::File`], so the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A problem with the contents of a file, with the file's name.
    #[error("directory {path}: {source}")]
    File {
        /// The directory file.
        path: PathBuf,
        /// What is wrong with its contents.
        source: Box<DirectoryError>,
    },
    /// Not JSON of the expected shape (outside the signed part, or duplicate keys inside it).
    #[error("not a valid signed directory: {0}")]
    Malformed(String),
    /// The file has no `signature` member.
    #[error(
        "is not signed: it has no `signature` member (sign it with `plusgate directory sign`)"
    )]
    Unsigned,
    /// The signature does not verify against the authority key.
    #[error("signature does not verify against the federation authority key in the config")]
    BadSignature,
    /// The signed directory breaks a rule.
    #[error("`{field}` {problem}")]
    Invalid {
        /// Where, as a path into the directory object, e.g. `centers.suwon.url`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl DirectoryError {
    /// The problem itself, looking through [`DirectoryError::File`] (to match on the kind of
    /// error whatever the source).
    pub fn cause(&self) -> &DirectoryError {
        match self {
            DirectoryError::File { source, .. } => source.cause(),
            other => other,
        }
    }
}

/// The signed file as written (serde boundary type).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigned<'a> {
    #[serde(borrow)]
    directory: &'a RawValue,
    signature: Option<String>,
}

// The members are `Value`s, each converted by [`shape`] on its own, so that a value of the
// wrong type is reported with its path (serde_json names no field in such errors).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    version: Value,
    issued_at: Value,
    centers: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCenter {
    url: Value,
    node: Value,
    signing_key: Value,
    agencies: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgency {
    sends: Value,
    receives: Value,
}

impl Directory {
    /// [`Directory::from_signed_bytes`] over the bytes of the file at `path`, which only names
    /// the file in errors (the caller reads it: `Directory::load` in `node::files`).
    pub fn from_signed_file(
        path: &Path,
        bytes: &[u8],
        authority: &PublicKey,
    ) -> Result<Directory, DirectoryError> {
        Directory::from_signed_bytes(bytes, authority).map_err(|e| in_file(path, e))
    }

    /// Checks the signature of a signed directory file's bytes against `authority`, then
    /// parses and validates the directory.
    pub fn from_signed_bytes(
        bytes: &[u8],
        authority: &PublicKey,
    ) -> Result<Directory, DirectoryError> {
        let signed: RawSigned<'_> = serde_json::from_slice(bytes).map_err(|e| {
            // A bare directory object is a file someone forgot to sign.
            if let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(bytes) {
                if members.contains_key("centers") && !members.contains_key("directory") {
                    return DirectoryError::Unsigned;
                }
            }
            DirectoryError::Malformed(format!(
                "expected {{\"directory\": {{…}}, \"signature\": \"<128 hex>\"}}: {e}"
            ))
        })?;
        let signature_hex = signed.signature.ok_or(DirectoryError::Unsigned)?;
        let signature = hex::decode(&signature_hex)
            .filter(|s| s.len() == SIGNATURE_LEN)
            .ok_or_else(|| {
                DirectoryError::Malformed(format!(
                    "`signature` must be {} hexadecimal characters (an Ed25519 signature)",
                    2 * SIGNATURE_LEN
                ))
            })?;
        let signed_bytes = signed.directory.get().as_bytes();
        if !authority.verify(signed_bytes, &signature) {
            return Err(DirectoryError::BadSignature);
        }
        let (version, issued_at, centers) = validate(signed_bytes)?;
        Ok(Directory {
            version,
            issued_at,
            centers,
            digest: sha256(bytes),
        })
    }

    /// Parses and validates the directory in the bytes of the signed directory file at
    /// `path` **without checking its signature**. Every error names the file.
    ///
    /// For offline tools that need the node keys a directory lists but may be run without
    /// the federation authority's key at hand (`plusgate audit verify --file` when no
    /// `--authority-key` is given, which then says the directory was not checked). Whoever
    /// can edit the file can then put any key in it, so callers should prefer
    /// [`Directory::from_signed_file`] with the pinned authority key; a node never uses this.
    pub fn from_unverified_file(path: &Path, bytes: &[u8]) -> Result<Directory, DirectoryError> {
        Directory::from_unverified_bytes(bytes).map_err(|e| in_file(path, e))
    }

    /// [`Directory::from_signed_bytes`] without the signature check (see
    /// [`Directory::from_unverified_file`]).
    fn from_unverified_bytes(bytes: &[u8]) -> Result<Directory, DirectoryError> {
        let signed: RawSigned<'_> = serde_json::from_slice(bytes).map_err(|e| {
            DirectoryError::Malformed(format!(
                "expected {{\"directory\": {{…}}, \"signature\": \"<128 hex>\"}}: {e}"
            ))
        })?;
        let (version, issued_at, centers) = validate(signed.directory.get().as_bytes())?;
        Ok(Directory {
            version,
            issued_at,
            centers,
            digest: sha256(bytes),
        })
    }

    /// The center `id`, if the directory lists it.
    pub fn center(&self, id: &CenterId) -> Option<&CenterEntry> {
        self.centers.get(id)
    }

    /// The agency `id`, if its center lists it.
    pub fn agency(&self, id: &AgencyId) -> Option<&AgencyEntry> {
        self.centers.get(id.center())?.agencies.get(id)
    }

    /// The agencies of one center as the node's `LocalDirectory` expects them: agency → the
    /// message types it may send. Empty for a center the directory does not list.
    pub fn local_agencies(&self, center: &CenterId) -> BTreeMap<AgencyId, Vec<MessageType>> {
        self.centers
            .get(center)
            .map(|c| {
                c.agencies
                    .iter()
                    .map(|(id, a)| (id.clone(), a.sends.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of agencies over all centers.
    pub fn agency_count(&self) -> usize {
        self.centers.values().map(|c| c.agencies.len()).sum()
    }

    /// SHA-256 of the whole signed file, to tell which directory a node runs with.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

/// Signs a bare directory object (the JSON that goes under `"directory"`): validates it,
/// then returns the signed file's bytes, pretty-printed around the directory, which is
/// embedded byte for byte as given (without surrounding whitespace).
pub fn sign(unsigned: &[u8], authority: &SigningKey) -> Result<Vec<u8>, DirectoryError> {
    let raw: &RawValue = serde_json::from_slice(unsigned)
        .map_err(|e| DirectoryError::Malformed(format!("the directory is not JSON: {e}")))?;
    let text = raw.get();
    if let Ok(Value::Object(members)) = serde_json::from_str::<Value>(text) {
        if members.contains_key("directory") && members.contains_key("signature") {
            return Err(DirectoryError::Malformed(
                "this is already a signed directory file; sign takes the bare directory object \
                 (the value of its `directory` member)"
                    .into(),
            ));
        }
    }
    validate(text.as_bytes())?;
    let signature = authority.sign(text.as_bytes());
    let file = format!(
        "{{\n  \"directory\": {text},\n  \"signature\": \"{}\"\n}}\n",
        hex::encode(&signature)
    );
    Ok(file.into_bytes())
}

/// A problem with the contents of the file at `path`, naming the file.
fn in_file(path: &Path, e: DirectoryError) -> DirectoryError {
    DirectoryError::File {
        path: path.to_owned(),
        source: Box::new(e),
    }
}

type Validated = (u64, String, BTreeMap<CenterId, CenterEntry>);

/// Parses the directory object strictly and checks every rule.
fn validate(bytes: &[u8]) -> Result<Validated, DirectoryError> {
    let value = crate::core::json::parse_strict(bytes)
        .map_err(|e| DirectoryError::Malformed(format!("the directory object: {e}")))?;
    let raw: RawDirectory = shape("directory", value)?;
    let version: u64 = shape("version", raw.version)?;
    if version == 0 {
        return Err(invalid("version", "must be at least 1"));
    }
    let issued_at: String = shape("issued_at", raw.issued_at)?;
    if time::OffsetDateTime::parse(&issued_at, &time::format_description::well_known::Rfc3339)
        .is_err()
    {
        return Err(invalid(
            "issued_at",
            format!("`{issued_at}` is not an RFC 3339 time like 2026-11-26T03:00:00Z"),
        ));
    }
    let raw_centers: BTreeMap<String, Value> = shape("centers", raw.centers)?;
    if raw_centers.is_empty() {
        return Err(invalid("centers", "must list at least one center"));
    }
    let mut centers = BTreeMap::new();
    for (name, value) in raw_centers {
        let field = format!("centers.{name}");
        let id = CenterId::parse(&name).map_err(|e| invalid(&field, e.to_string()))?;
        let entry = validate_center(&id, &field, value)?;
        centers.insert(id, entry);
    }
    Ok((version, issued_at, centers))
}

fn validate_center(
    center: &CenterId,
    field: &str,
    value: Value,
) -> Result<CenterEntry, DirectoryError> {
    let raw: RawCenter = shape(field, value)?;
    let url_field = format!("{field}.url");
    let url: String = shape(&url_field, raw.url)?;
    check_url(&url_field, &url)?;
    let node_field = format!("{field}.node");
    let node: String = shape(&node_field, raw.node)?;
    let expected = format!("urn:plusgate:node:{center}");
    if node != expected {
        return Err(invalid(
            &node_field,
            format!("is `{node}`, but must be `{expected}`"),
        ));
    }
    let key_field = format!("{field}.signing_key");
    let signing_key: String = shape(&key_field, raw.signing_key)?;
    let signing_key =
        PublicKey::from_hex(&signing_key).map_err(|e| invalid(&key_field, format!("is {e}")))?;
    let agencies_field = format!("{field}.agencies");
    let raw_agencies: BTreeMap<String, Value> = shape(&agencies_field, raw.agencies)?;
    let mut agencies = BTreeMap::new();
    for (name, value) in raw_agencies {
        let field = format!("{agencies_field}.{name}");
        let id = AgencyId::parse(&name).map_err(|e| invalid(&field, e.to_string()))?;
        if id.center() != center {
            return Err(invalid(
                &field,
                format!(
                    "names center `{}`, but is listed under center `{center}`",
                    id.center()
                ),
            ));
        }
        let raw: RawAgency = shape(&field, value)?;
        let sends_field = format!("{field}.sends");
        let receives_field = format!("{field}.receives");
        let entry = AgencyEntry {
            sends: message_types(&sends_field, shape(&sends_field, raw.sends)?)?,
            receives: message_types(&receives_field, shape(&receives_field, raw.receives)?)?,
        };
        agencies.insert(id, entry);
    }
    Ok(CenterEntry {
        url,
        signing_key,
        agencies,
    })
}

fn message_types(field: &str, names: Vec<String>) -> Result<Vec<MessageType>, DirectoryError> {
    let mut types = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let ty = MessageType::parse(name).ok_or_else(|| {
            invalid(
                &format!("{field}[{i}]"),
                format!(
                    "`{name}` is not a message type ({})",
                    MessageType::ALL_NAMES
                ),
            )
        })?;
        if types.contains(&ty) {
            return Err(invalid(
                &format!("{field}[{i}]"),
                format!("lists `{name}` a second time"),
            ));
        }
        types.push(ty);
    }
    Ok(types)
}

/// A node URL must be exactly `https://HOST:PORT`: an IP address or a host name, and an
/// explicit port, nothing after it, so paths can be appended to it.
fn check_url(field: &str, url: &str) -> Result<(), DirectoryError> {
    const EXPECTED: &str =
        "must be https://host:port, e.g. https://node.suwon.example:7443 or https://10.20.0.5:7443";
    let parsed = parse_https_url(url).map_err(|e| invalid(field, format!("{EXPECTED} ({e})")))?;
    if parsed.explicit_port.is_none() || url.ends_with('/') {
        return Err(invalid(
            field,
            format!("{EXPECTED}: `{url}` has no port or has a path"),
        ));
    }
    Ok(())
}

/// Deserialises one value of the directory with serde, naming `field` in any error.
fn shape<T: DeserializeOwned>(field: &str, value: Value) -> Result<T, DirectoryError> {
    serde_json::from_value(value).map_err(|e| invalid(field, format!("is not valid: {e}")))
}

fn invalid(field: &str, problem: impl Into<String>) -> DirectoryError {
    DirectoryError::Invalid {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests;
