//! `plusgate csr --center CENTER --out DIR [--dns NAME]… [--ip IP]… [--no-signing-key]`:
//! the first step of joining a federation. Makes the node's keys on the node's own host, so
//! no private key ever travels: the TLS key (ECDSA P-256, PKCS#8) and a PKCS#10 request for
//! the federation authority carrying the node identity `urn:plusgate:node:<center>` (the
//! SAN URI nodes and agencies are told apart by) and the given DNS and IP SANs, and the
//! node's Ed25519 signing key (receipts, checkpoints, consent attestations), whose public
//! half goes into the signed directory. It prints what the authority needs.
//!
//! Invariants kept here:
//! - an existing file is never replaced: every target is checked first, and each file is
//!   put in place with `renameat2(RENAME_NOREPLACE)`, so a key that is in use cannot be
//!   lost to a second run;
//! - a file appears whole or not at all: written to a temporary name in `DIR`, fsynced,
//!   renamed, then `DIR` fsynced; private keys are created with mode 0600 (the node refuses
//!   a key open to others, `node::files::check_private`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};

use crate::core::keys::{KeyError, SigningKey};
use crate::dev::devinit::NODE_SIGNING_KEY_FILE;
use crate::dev::pki::{is_valid_name, Role};

/// The node's TLS private key, in `--out`.
pub const TLS_KEY_FILE: &str = "node.key";
/// The certificate request for the federation authority, in `--out`.
pub const CSR_FILE: &str = "node.csr";

/// `plusgate csr`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CsrArgs {
    /// This node's center id, as the federation directory names it (`[a-z0-9][a-z0-9-]*`).
    #[arg(long, value_parser = parse_center)]
    pub center: String,
    /// Folder to write the keys and the request into (created if missing, mode 0700); none
    /// of `node.key`, `node.csr`, `node-signing.key` may exist in it yet.
    #[arg(long)]
    pub out: PathBuf,
    /// A DNS name the node is reached at (its URL's host in the directory); repeatable.
    #[arg(long = "dns", value_name = "NAME", value_parser = parse_dns, required_unless_present = "ip")]
    pub dns: Vec<String>,
    /// An IP address the node is reached at; repeatable.
    #[arg(long = "ip", value_name = "IP")]
    pub ip: Vec<IpAddr>,
    /// Do not make a signing key: for a standalone node (no `[federation]`), or when only
    /// the TLS certificate is renewed and the signing key in the directory stays.
    #[arg(long)]
    pub no_signing_key: bool,
}

fn parse_center(s: &str) -> Result<String, String> {
    if is_valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err("a center id matches [a-z0-9][a-z0-9-]{0,62}".into())
    }
}

fn parse_dns(s: &str) -> Result<String, String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let name = s.strip_prefix("*.").unwrap_or(s);
    if s.len() <= 253 && name.split('.').all(label_ok) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("not a DNS name (letters, digits, '-' and '.'; IP addresses go to --ip)".into())
    }
}

/// Why `plusgate csr` wrote nothing, or stopped half-way.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// A key or request is already there: it may be the key the node runs with.
    #[error("{} exists: refusing to replace a key or request (it may be in use); choose another --out, or move the file away if it is really unused", .0.display())]
    Exists(PathBuf),
    /// Neither a DNS name nor an IP: peers and agencies could not verify the node.
    #[error("name at least one --dns NAME or --ip IP: the host part of this node's URL in the federation directory, which peers and agencies check the certificate against")]
    NoAddress,
    /// The output folder could not be made or written.
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A later file failed after earlier ones were written: they belong to no request yet.
    #[error("{source}; already written: {}: remove them, then run again", .written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Partial {
        /// The files written before the failure.
        written: Vec<PathBuf>,
        /// What failed.
        source: Box<CsrError>,
    },
    /// Generating a key or the request failed (a bug or an unusable name).
    #[error("cannot make the certificate request: {0}")]
    Request(#[from] rcgen::Error),
    /// Generating the signing key failed.
    #[error("cannot make the signing key: {0}")]
    SigningKey(#[from] KeyError),
}

/// Writes the keys and the request; returns what to tell the operator and the authority.
pub fn run(args: &CsrArgs) -> Result<String, CsrError> {
    if args.dns.is_empty() && args.ip.is_empty() {
        return Err(CsrError::NoAddress);
    }
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| CsrError::Io { what, path, source }
    };
    // The folder will hold private keys.
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(&args.out)
        .map_err(io("create the folder", &args.out))?;
    let key_path = args.out.join(TLS_KEY_FILE);
    let csr_path = args.out.join(CSR_FILE);
    let signing_path = args.out.join(NODE_SIGNING_KEY_FILE);
    let mut targets = vec![&key_path, &csr_path];
    if !args.no_signing_key {
        targets.push(&signing_path);
    }
    if let Some(taken) = targets.iter().find(|p| p.symlink_metadata().is_ok()) {
        return Err(CsrError::Exists((*taken).clone()));
    }

    let role = Role::Node {
        center: args.center.clone(),
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, role.id());
    params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(role.san_uri())?)];
    for name in &args.dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(Ia5String::try_from(name.as_str())?));
    }
    for ip in &args.ip {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    // What a node certificate is used for: serving agencies and peers, and presenting
    // itself to peers (and to itself, for `plusgate outbox`). The authority decides, but
    // asking for it keeps `openssl x509 -req -copy_extensions copy` one step.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let csr = params.serialize_request(&key)?.pem()?;

    let signing = if args.no_signing_key {
        None
    } else {
        Some(SigningKey::generate()?)
    };
    let mut files = vec![
        (&key_path, key.serialize_pem(), true),
        (&csr_path, csr, false),
    ];
    if let Some((_, pem)) = &signing {
        files.insert(0, (&signing_path, pem.clone(), true));
    }
    let mut written = Vec::new();
    for (path, contents, secret) in files {
        write_new(&args.out, path, contents.as_bytes(), secret).map_err(|source| {
            if written.is_empty() {
                source
            } else {
                CsrError::Partial {
                    written: written.clone(),
                    source: Box::new(source),
                }
            }
        })?;
        written.push(path.clone());
    }
    let signing = signing.map(|(key, _)| key.public_key());

    let sans: Vec<String> = std::iter::once(format!("URI:{}", role.san_uri()))
        .chain(args.dns.iter().map(|d| format!("DNS:{d}")))
        .chain(args.ip.iter().map(|i| format!("IP:{i}")))
        .collect();
    let mut text = format!(
        "wrote {} (TLS private key, owner-only)\nwrote {} (certificate request: CN={}, {})\n",
        key_path.display(),
        csr_path.display(),
        role.id(),
        sans.join(", ")
    );
    if signing.is_some() {
        text += &format!(
            "wrote {} (Ed25519 signing key, owner-only)\n",
            signing_path.display()
        );
    }
    text += &format!(
        "\nSend to the federation authority (nothing secret):\n  certificate request: {}\n    to be issued with extendedKeyUsage serverAuth, clientAuth\n  directory entry of center {}:\n    \"node\": \"{}\"",
        csr_path.display(),
        args.center,
        role.san_uri()
    );
    if let Some(public) = signing {
        text += &format!(",\n    \"signing_key\": \"{}\"", public.to_hex());
    }
    Ok(text)
}

/// Puts `contents` at `path` (in `dir`) whole or not at all, never over an existing file:
/// a temporary file in `dir` is written and fsynced, renamed with `RENAME_NOREPLACE`, and
/// `dir` is fsynced so the new name survives a crash.
fn write_new(dir: &Path, path: &Path, contents: &[u8], secret: bool) -> Result<(), CsrError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| CsrError::Io { what, path, source }
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.as_deref().unwrap_or("file"),
        std::process::id()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io("write", &tmp)(e));
    }
    let renamed = rustix::fs::renameat_with(
        rustix::fs::CWD,
        &tmp,
        rustix::fs::CWD,
        path,
        rustix::fs::RenameFlags::NOREPLACE,
    );
    if let Err(e) = renamed {
        let _ = fs::remove_file(&tmp);
        return Err(if e == rustix::io::Errno::EXIST {
            CsrError::Exists(path.to_owned())
        } else {
            io("put in place", path)(e.into())
        });
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync the folder", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_checked_and_lowercased() {
        assert_eq!(
            parse_dns("Node.Suwon.example.kr").as_deref(),
            Ok("node.suwon.example.kr")
        );
        assert!(parse_dns("localhost").is_ok());
        for bad in ["", "a..b", "-a.kr", "a b", "10.0.0.1:443", "ü.kr"] {
            assert!(parse_dns(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_existing_key_is_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = CsrArgs {
            center: "suwon".into(),
            out: dir.path().to_owned(),
            dns: vec!["localhost".into()],
            ip: vec![],
            no_signing_key: false,
        };
        run(&args).expect("first run");
        let key = fs::read(dir.path().join(TLS_KEY_FILE)).expect("key");
        match run(&args) {
            Err(CsrError::Exists(path)) => assert_eq!(path, dir.path().join(TLS_KEY_FILE)),
            other => panic!("second run: {other:?}"),
        }
        assert_eq!(fs::read(dir.path().join(TLS_KEY_FILE)).expect("key"), key);
        // And the rename itself refuses a file that appeared after the check.
        match write_new(dir.path(), &dir.path().join(CSR_FILE), b"x", false) {
            Err(CsrError::Exists(_)) => {}
            other => panic!("{other:?}"),
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
