//! `manifest.json`: the index of a development federation written by `dev-init`.
//!
//! The manifest tells tests, the benchmark and people which files belong to which center,
//! agency and officer, and which example request bodies exist and who sends them. Paths in
//! the file are relative to the manifest's folder and `/`-separated, so a federation can be
//! moved or copied as a whole; [`LoadedManifest`] remembers the folder and resolves them.
//!
//! Architecture Invariant: the node never reads a manifest. It is a development and test
//! artefact; production nodes are configured by their own `plusgate.toml` only.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the manifest inside a federation folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest file's contents, exactly as stored (serde boundary type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The federation's CA certificate (PEM), relative path.
    pub ca_cert: String,
    /// The signed federation directory (`directory.json`), relative path.
    pub directory: String,
    /// Centers by center id.
    pub centers: BTreeMap<String, CenterEntry>,
    /// Example request bodies by example name (`referral`, `referral-remote`, …).
    pub examples: BTreeMap<String, ExampleEntry>,
}

/// One center of the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterEntry {
    /// The node's `plusgate.toml`, relative path.
    pub config: String,
    /// Base URL of the node, e.g. `https://127.0.0.1:7443`.
    pub url: String,
    /// Client certificates of the center's agencies, by agency id (`suwon/employment`).
    pub agencies: BTreeMap<String, KeyPairPaths>,
    /// Client certificates of the center's officers, by officer id (`suwon/privacy-officer`).
    pub officers: BTreeMap<String, KeyPairPaths>,
    /// Client certificates of the center's managers, by manager id (`suwon/manager`).
    /// Absent from manifests written before managers existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub managers: BTreeMap<String, KeyPairPaths>,
}

/// A certificate and its private key, relative paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPairPaths {
    /// Certificate (PEM).
    pub cert: String,
    /// Private key (PKCS#8 PEM).
    pub key: String,
}

/// An example request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleEntry {
    /// The JSON file, relative path.
    pub file: String,
    /// Agency id of the agency that sends it (whose certificate to present).
    pub sender: String,
}

impl Manifest {
    /// Reads and parses the manifest at `path`, remembering its folder.
    pub fn load(path: impl AsRef<Path>) -> Result<LoadedManifest, ManifestError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        let manifest = serde_json::from_str(&text).map_err(|source| ManifestError::Parse {
            path: path.to_owned(),
            source,
        })?;
        // `Path::parent` of a bare file name is "", which joins like ".".
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(LoadedManifest {
            path: path.to_owned(),
            dir,
            manifest,
        })
    }

    /// Writes the manifest as `dir/manifest.json` and returns that path.
    ///
    /// The file appears atomically (written to a temporary name, synced, then renamed), so
    /// a reader never sees half a manifest; `dev-init` relies on this to mark a federation
    /// folder complete.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let write_err = |source| ManifestError::Write {
            path: path.clone(),
            source,
        };
        let mut json = serde_json::to_string_pretty(self).map_err(|e| write_err(e.into()))?;
        json.push('\n');
        let mut file = fs::File::create(&tmp).map_err(write_err)?;
        file.write_all(json.as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        fs::rename(&tmp, &path).map_err(write_err)?;
        Ok(path)
    }
}

/// A manifest together with the file it was read from, so relative paths can be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedManifest {
    path: PathBuf,
    dir: PathBuf,
    manifest: Manifest,
}

impl LoadedManifest {
    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest file's path, as given to [`Manifest::load`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The federation folder (the manifest's folder).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resolves a path from the manifest against the manifest's folder.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The CA certificate's path.
    pub fn ca_path(&self) -> PathBuf {
        self.resolve(&self.manifest.ca_cert)
    }

    /// The signed federation directory's path.
    pub fn directory_path(&self) -> PathBuf {
        self.resolve(&self.manifest.directory)
    }

    /// The center with id `id`.
    pub fn center(&self, id: &str) -> Result<&CenterEntry, ManifestError> {
        self.manifest
            .centers
            .get(id)
            .ok_or_else(|| self.unknown("center", id))
    }

    /// Center ids with their entries in the order `dev-init` created them (its
    /// `--centers` order), recovered from the ports: center `i` listens on `base + i`.
    ///
    /// The JSON object itself is sorted by id, so this is the way to find "the first
    /// center". Centers whose URL has no port sort last, by id.
    pub fn centers_in_order(&self) -> Vec<(&str, &CenterEntry)> {
        let mut centers: Vec<_> = self
            .manifest
            .centers
            .iter()
            .map(|(id, entry)| (id.as_str(), entry))
            .collect();
        centers.sort_by_key(|(id, entry)| (url_port(&entry.url).unwrap_or(u32::MAX), *id));
        centers
    }

    /// The `plusgate.toml` of center `id`, resolved.
    pub fn config_path(&self, center_id: &str) -> Result<PathBuf, ManifestError> {
        Ok(self.resolve(&self.center(center_id)?.config))
    }

    /// The certificate and key paths (resolved) of agency `agency_id`, e.g.
    /// `suwon/employment`, looked up in every center.
    pub fn agency_identity(&self, agency_id: &str) -> Result<(PathBuf, PathBuf), ManifestError> {
        self.manifest
            .centers
            .values()
            .find_map(|center| center.agencies.get(agency_id))
            .map(|pair| self.resolve_pair(pair))
            .ok_or_else(|| self.unknown("agency", agency_id))
    }

    /// The certificate and key paths (resolved) of officer `officer_id`, e.g.
    /// `suwon/privacy-officer`, looked up in every center.
    pub fn officer_identity(&self, officer_id: &str) -> Result<(PathBuf, PathBuf), ManifestError> {
        self.manifest
            .centers
            .values()
            .find_map(|center| center.officers.get(officer_id))
            .map(|pair| self.resolve_pair(pair))
            .ok_or_else(|| self.unknown("officer", officer_id))
    }

    /// The certificate and key paths (resolved) of manager `manager_id`, e.g.
    /// `suwon/manager`, looked up in every center.
    pub fn manager_identity(&self, manager_id: &str) -> Result<(PathBuf, PathBuf), ManifestError> {
        self.manifest
            .centers
            .values()
            .find_map(|center| center.managers.get(manager_id))
            .map(|pair| self.resolve_pair(pair))
            .ok_or_else(|| self.unknown("manager", manager_id))
    }

    /// The URL of the node that serves agency or officer `id` (`<center>/<name>`).
    pub fn url_of(&self, id: &str) -> Result<&str, ManifestError> {
        self.manifest
            .centers
            .values()
            .find(|c| c.agencies.contains_key(id) || c.officers.contains_key(id))
            .map(|c| c.url.as_str())
            .ok_or_else(|| self.unknown("agency or officer", id))
    }

    /// The example `name`: its file (resolved) and the agency id that sends it.
    pub fn example(&self, name: &str) -> Result<(PathBuf, &str), ManifestError> {
        self.manifest
            .examples
            .get(name)
            .map(|e| (self.resolve(&e.file), e.sender.as_str()))
            .ok_or_else(|| self.unknown("example", name))
    }

    /// Every file the manifest names that does not exist (resolved paths), in a stable
    /// order. Empty for a complete federation.
    pub fn missing_files(&self) -> Vec<PathBuf> {
        let m = &self.manifest;
        let mut rels = vec![m.ca_cert.as_str(), m.directory.as_str()];
        for center in m.centers.values() {
            rels.push(&center.config);
            let pairs = center.agencies.values().chain(center.officers.values());
            for pair in pairs.chain(center.managers.values()) {
                rels.push(&pair.cert);
                rels.push(&pair.key);
            }
        }
        rels.extend(m.examples.values().map(|e| e.file.as_str()));
        rels.into_iter()
            .map(|rel| self.resolve(rel))
            .filter(|path| !path.is_file())
            .collect()
    }

    fn resolve_pair(&self, pair: &KeyPairPaths) -> (PathBuf, PathBuf) {
        (self.resolve(&pair.cert), self.resolve(&pair.key))
    }

    fn unknown(&self, kind: &'static str, id: &str) -> ManifestError {
        ManifestError::Unknown {
            path: self.path.clone(),
            kind,
            id: id.to_owned(),
        }
    }
}

/// The port of an `https://host:port` URL, if it has one.
fn url_port(url: &str) -> Option<u32> {
    let authority = url.split("://").nth(1)?.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// What went wrong reading, writing or querying a manifest. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be read (missing file, permissions).
    #[error("cannot read manifest {path}: {source}")]
    Read {
        /// The manifest file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The manifest is not JSON of the expected shape (edited by hand, or another version).
    #[error("manifest {path} is not valid: {source}")]
    Parse {
        /// The manifest file.
        path: PathBuf,
        /// What serde found wrong, with line and column.
        source: serde_json::Error,
    },
    /// The manifest could not be written.
    #[error("cannot write manifest {path}: {source}")]
    Write {
        /// The manifest file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A center, agency, officer or example was asked for that the manifest does not list
    /// (usually a typo by the caller).
    #[error("manifest {path} has no {kind} {id:?}")]
    Unknown {
        /// The manifest file.
        path: PathBuf,
        /// What was looked up: `center`, `agency`, `officer`, `example`, ….
        kind: &'static str,
        /// The id that was not found.
        id: String,
    },
}

#[cfg(test)]
mod tests;
