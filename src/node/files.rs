//! Reading the files a node's config names: its signing key, the signed federation
//! directory, its data keys and a folder of schemas. `core` takes their bytes and never
//! touches the file system; this module reads them. Every error names the file.
//!
//! The loaders are methods of the core types they build (`SigningKey::load`,
//! `Directory::load`, `DataKeys::load`, `Schemas::load`), defined here rather than in
//! `core`, so that the composition root, the CLI and the tests call them as before while
//! `core` stays free of I/O.

use std::io;
use std::path::{Path, PathBuf};

use crate::core::directory::{Directory, DirectoryError};
use crate::core::keys::{KeyError, SigningKey};
use crate::core::schema::{SchemaError, SchemaSource, Schemas};
use crate::core::vault::{self, DataKeys, VaultError};

/// A file could not be read. The operator's to fix (a wrong path in the config, a missing
/// file, permissions); trying again helps only once the file is there and readable.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what} {path}: {source}")]
pub struct ReadError {
    /// What the file is, e.g. `private key file`, `directory`.
    pub what: &'static str,
    /// The file (or folder).
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// A private key file that users other than its owner may read or write. Refused at start,
/// as ssh refuses such a key: a key readable by others is as good as published, and one
/// writable by others can be replaced. The operator's to fix, with the command we name.
#[derive(Debug, thiserror::Error)]
#[error("{what} {} is open to other users (mode {mode:04o}): a key must be readable by its owner only; run `chmod 600 {}`", path.display(), path.display())]
pub struct ExposedKey {
    /// What the file is, e.g. `data key`.
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

/// Refuses a private key file whose permissions let anyone but its owner read or write it
/// (any of the group and other bits). A file that cannot be examined is left for the read
/// that follows to report.
pub fn check_private(what: &'static str, path: &Path) -> Result<(), ExposedKey> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Err(ExposedKey {
            what,
            path: path.to_owned(),
            mode: meta.permissions().mode() & 0o7777,
        }),
        _ => Ok(()),
    }
}

/// Why a file could not be used: it could not be read, it is a key open to other users,
/// or what it holds is unusable (`E`, the core type's own error, which names the file too).
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A private key file others may read or write.
    #[error(transparent)]
    Exposed(#[from] ExposedKey),
    /// The file was read, but its contents are unusable: fix the file.
    #[error(transparent)]
    Content(E),
}

/// Reads the whole file at `path`; the error says it is a `what`.
pub fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ReadError> {
    std::fs::read(path).map_err(|source| ReadError {
        what,
        path: path.to_owned(),
        source,
    })
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(what: &'static str, path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path).map_err(|source| ReadError {
        what,
        path: path.to_owned(),
        source,
    })
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key file ([`SigningKey::from_pem_file`]).
    pub fn load(path: &Path) -> Result<SigningKey, LoadError<KeyError>> {
        check_private("private key file", path)?;
        let bytes = read("private key file", path)?;
        SigningKey::from_pem_file(path, &bytes).map_err(LoadError::Content)
    }
}

impl Directory {
    /// Reads `path`, checks its signature against `authority` and validates it
    /// ([`Directory::from_signed_file`]).
    pub fn load(
        path: &Path,
        authority: &crate::core::keys::PublicKey,
    ) -> Result<Directory, LoadError<DirectoryError>> {
        let bytes = read("directory", path)?;
        Directory::from_signed_file(path, &bytes, authority).map_err(LoadError::Content)
    }

    /// Reads `path` and validates the directory in it **without checking its signature**
    /// ([`Directory::from_unverified_file`]: offline tools only, never a node).
    pub fn load_unverified(path: &Path) -> Result<Directory, LoadError<DirectoryError>> {
        let bytes = read("directory", path)?;
        Directory::from_unverified_file(path, &bytes).map_err(LoadError::Content)
    }
}

impl DataKeys {
    /// Reads the current data key file and the old ones still needed to open older
    /// payloads ([`vault::key_from_file`]).
    pub fn load(current: &Path, old: &[PathBuf]) -> Result<DataKeys, LoadError<VaultError>> {
        let key = |path: &Path| {
            check_private("data key", path)?;
            let text = read_to_string("data key", path)?;
            vault::key_from_file(path, &text).map_err(LoadError::Content)
        };
        let current = key(current)?;
        let old = old
            .iter()
            .map(|path| key(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DataKeys::from_bytes(current, &old))
    }
}

impl Schemas {
    /// Compiles the schemas from `source`: the built-in ones, or every `*.json` file of a
    /// folder (in name order).
    pub fn load(source: &SchemaSource) -> Result<Schemas, LoadError<SchemaError>> {
        let files = match source {
            SchemaSource::Embedded => return Schemas::embedded().map_err(LoadError::Content),
            SchemaSource::Dir(dir) => read_schema_dir(dir)?,
        };
        Schemas::compile(files).map_err(LoadError::Content)
    }
}

/// The `(file name, text)` of every `*.json` file in `dir`, sorted by name.
fn read_schema_dir(dir: &Path) -> Result<Vec<(String, String)>, ReadError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ReadError {
            what: "schema",
            path,
            source,
        }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let path = entry.map_err(read_err(dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") || !path.is_file() {
            continue;
        }
        let text = read_to_string("schema", &path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((name, text));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a key file as a careful operator would: readable by its owner only.
    fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }

    #[test]
    fn a_key_file_that_is_not_there_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = SigningKey::load(&dir.path().join("absent.key")).expect_err("missing");
        assert!(matches!(err, LoadError::Read(_)));
        assert!(err.to_string().contains("absent.key"), "{err}");
        assert!(
            err.to_string().starts_with("cannot read private key file"),
            "{err}"
        );

        let (key, pem) = SigningKey::generate().expect("generate");
        let good = dir.path().join("node-signing.key");
        write_private(&good, &pem).expect("write");
        assert_eq!(
            SigningKey::load(&good).expect("load").public_key(),
            key.public_key()
        );
        let garbage = dir.path().join("garbage.key");
        write_private(&garbage, "hello").expect("write");
        let err = SigningKey::load(&garbage).expect_err("not PEM");
        assert!(
            matches!(err, LoadError::Content(KeyError::Pem { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("garbage.key"), "{err}");
    }

    #[test]
    fn key_files_open_to_other_users_are_refused_naming_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, pem) = SigningKey::generate().expect("generate");
        let signing = dir.path().join("node-signing.key");
        write_private(&signing, &pem).expect("write");
        let data = dir.path().join("data.key");
        write_private(&data, vault::generate_key_text().expect("key")).expect("write");
        for mode in [0o600, 0o400] {
            for path in [&signing, &data] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
            }
            SigningKey::load(&signing).expect("owner-only signing key loads");
            DataKeys::load(&data, &[]).expect("owner-only data key loads");
        }
        // Every group or other bit, read, write or execute, is refused.
        for mode in [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o644, 0o666] {
            for path in [&signing, &data] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
            }
            let err = SigningKey::load(&signing).expect_err("exposed signing key");
            assert!(matches!(err, LoadError::Exposed(_)), "{mode:o}: {err}");
            assert!(
                err.to_string()
                    .contains(&format!("chmod 600 {}", signing.display())),
                "{err}"
            );
            let err = DataKeys::load(&data, &[]).expect_err("exposed data key");
            assert!(matches!(err, LoadError::Exposed(_)), "{mode:o}: {err}");
            assert!(err.to_string().contains("data.key"), "{err}");
            let err = crate::node::tls::read_key(&signing).expect_err("exposed TLS key");
            assert!(err.to_string().contains(&format!("{mode:04o}")), "{err}");
        }
    }

    #[test]
    fn a_directory_file_that_is_not_there_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.json");
        let (authority, _) = SigningKey::generate().expect("generate");
        let err = Directory::load(&path, &authority.public_key()).expect_err("missing");
        assert!(matches!(err, LoadError::Read(_)));
        assert!(err.to_string().contains("absent.json"), "{err}");
        let err = Directory::load_unverified(&path).expect_err("missing");
        assert!(
            err.to_string().starts_with("cannot read directory"),
            "{err}"
        );
    }

    #[test]
    fn data_key_files_are_read_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.key");
        write_private(&good, vault::generate_key_text().expect("key")).expect("write");
        DataKeys::load(&good, &[]).expect("loads");
        let bad = dir.path().join("bad.key");
        write_private(&bad, "abc\n").expect("write");
        let err = DataKeys::load(&good, &[bad]).expect_err("refused");
        assert!(err.to_string().contains("bad.key"), "{err}");
        let absent = dir.path().join("absent.key");
        let err = DataKeys::load(&absent, &[]).expect_err("missing");
        assert!(err.to_string().starts_with("cannot read data key"), "{err}");
    }

    #[test]
    fn the_schemas_folder_loads_the_same_set_as_the_embedded_schemas() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"));
        Schemas::load(&SchemaSource::Dir(dir.to_owned())).expect("folder schemas compile");
        Schemas::load(&SchemaSource::Embedded).expect("embedded schemas compile");
        let err = Schemas::load(&SchemaSource::Dir(dir.join("absent"))).expect_err("missing");
        assert!(err.to_string().starts_with("cannot read schema"), "{err}");
    }
}
