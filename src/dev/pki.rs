//! Certificate generation for plusgate federations: a CA, node certificates and client
//! certificates for agencies and privacy officers.
//!
//! Everything is ECDSA P-256 signed with SHA-256 (rcgen on `ring`). Identities travel as
//! one SAN URI per certificate (`urn:plusgate:agency:<center>:<agency>` and friends, see
//! [`Role::san_uri`]); the node reads them back out of verified certificates in `identity`.
//!
//! Revocation: [`CertificateAuthority::crl`] signs a CRL, and [`revoke`] adds a certificate
//! to a CRL file (what `dev-revoke` and the revocation tests use).
//!
//! Architecture Invariant: the running node never calls this module. It is used by
//! `dev-init` and by tests, which is why the CA key lives in memory and in plain PEM files.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

/// The extended key usages a certificate may be issued with
/// ([`CertificateAuthority::issue_with_usages`]).
pub use rcgen::ExtendedKeyUsagePurpose as KeyPurpose;
use x509_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;

/// Longest center, agency or officer name, in bytes (`[a-z0-9][a-z0-9-]{0,62}`).
pub const NAME_LEN_MAX: usize = 63;

/// How far back `not_before` is set by [`Validity::days_from_now`], so that a peer whose
/// clock is a little behind ours still accepts a certificate issued a moment ago.
pub const CLOCK_SKEW_TOLERANCE: Duration = Duration::hours(1);

/// Whether `name` is a valid center, agency or officer name: `[a-z0-9][a-z0-9-]{0,62}`.
///
/// These names end up in SAN URIs, file names and TOML strings, so the narrow alphabet
/// is what keeps all three free of quoting problems.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if bytes.len() <= NAME_LEN_MAX => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                && bytes[1..]
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// Who a certificate identifies, and therefore which SAN URI and key usages it gets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// An agency at a center (client certificate), agency id `<center>/<agency>`.
    Agency {
        /// Center id, e.g. `suwon`.
        center: String,
        /// Agency name within the center, e.g. `employment`.
        agency: String,
    },
    /// A privacy officer at a center (client certificate), officer id `<center>/<name>`.
    Officer {
        /// Center id, e.g. `suwon`.
        center: String,
        /// Officer name within the center, e.g. `privacy-officer`.
        name: String,
    },
    /// A center manager (client certificate), manager id `<center>/<name>`: statistics only.
    Manager {
        /// Center id, e.g. `suwon`.
        center: String,
        /// Manager name within the center, e.g. `manager`.
        name: String,
    },
    /// A center's node (server certificate, also usable as a client towards other nodes).
    Node {
        /// Center id, e.g. `suwon`.
        center: String,
    },
}

impl Role {
    /// The identity URI carried as the certificate's SAN, e.g.
    /// `urn:plusgate:agency:suwon:employment`.
    pub fn san_uri(&self) -> String {
        match self {
            Role::Agency { center, agency } => format!("urn:plusgate:agency:{center}:{agency}"),
            Role::Officer { center, name } => format!("urn:plusgate:officer:{center}:{name}"),
            Role::Manager { center, name } => format!("urn:plusgate:manager:{center}:{name}"),
            Role::Node { center } => format!("urn:plusgate:node:{center}"),
        }
    }

    /// The identity as written in configs and messages: `suwon/employment` for an agency,
    /// `suwon/privacy-officer` for an officer, `suwon` for a node. Also used as the CN.
    pub fn id(&self) -> String {
        match self {
            Role::Agency { center, agency } => format!("{center}/{agency}"),
            Role::Officer { center, name } | Role::Manager { center, name } => {
                format!("{center}/{name}")
            }
            Role::Node { center } => center.clone(),
        }
    }

    /// Checks every name in the role against [`is_valid_name`].
    pub fn validate(&self) -> Result<(), PkiError> {
        let names: &[&String] = match self {
            Role::Agency { center, agency } => &[center, agency],
            Role::Officer { center, name } | Role::Manager { center, name } => &[center, name],
            Role::Node { center } => &[center],
        };
        match names.iter().find(|name| !is_valid_name(name)) {
            Some(bad) => Err(PkiError::InvalidName {
                name: (*bad).clone(),
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Role::Agency { .. } => "agency",
            Role::Officer { .. } => "officer",
            Role::Manager { .. } => "manager",
            Role::Node { .. } => "node",
        };
        write!(f, "{kind} {}", self.id())
    }
}

/// The period in which a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from an hour ago ([`CLOCK_SKEW_TOLERANCE`]) until `days` days from now.
    pub fn days_from_now(days: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - CLOCK_SKEW_TOLERANCE,
            not_after: now + Duration::days(days),
        }
    }

    /// A period that ended yesterday (for testing that expired certificates are refused).
    pub fn expired() -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        }
    }

    /// A period that starts tomorrow (for testing that premature certificates are refused).
    pub fn not_yet_valid() -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now + Duration::days(1),
            not_after: now + Duration::days(30),
        }
    }

    fn check(&self) -> Result<(), PkiError> {
        if self.not_before < self.not_after {
            Ok(())
        } else {
            Err(PkiError::EmptyValidity {
                not_before: self.not_before,
                not_after: self.not_after,
            })
        }
    }
}

/// A certificate and its private key, both PEM (the key as PKCS#8 `PRIVATE KEY`).
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM `CERTIFICATE`.
    pub cert_pem: String,
    /// The private key, PEM PKCS#8 `PRIVATE KEY`.
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    /// Leaves the private key out, so a stray `{:?}` cannot leak it into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// A certificate authority that can issue node, agency and officer certificates.
#[derive(Debug)]
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// How the CA's key identifier is derived, so that a CRL's authority key identifier
    /// names the same key as the CA certificate's subject key identifier.
    key_id: KeyIdMethod,
}

impl CertificateAuthority {
    /// Generates a new self-signed CA with a fresh P-256 key.
    ///
    /// The CA may sign end-entity certificates only (path length 0): a development
    /// federation has no intermediate CAs.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Self, PkiError> {
        validity.check()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            key_id: params.key_identifier_method.clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and PKCS#8 key (both PEM), e.g. to issue more
    /// certificates into an existing development federation.
    ///
    /// Refuses a certificate that is not a CA and a key that does not belong to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| PkiError::BadCaCert(e.to_string()))?;
        let x509 = pem
            .parse_x509()
            .map_err(|e| PkiError::BadCaCert(e.to_string()))?;
        if !x509.is_ca() {
            return Err(PkiError::NotACa);
        }
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::BadCaKey)?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch);
        }

        // Issued certificates must carry the CA's subject as their issuer and its key
        // identifier as their authority key identifier, so both are copied verbatim.
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name_from_x509(x509.subject())?;
        params.key_identifier_method = x509
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);
        if let Ok(Some(usage)) = x509.key_usage() {
            let usage = usage.value;
            let flags = [
                (usage.key_cert_sign(), KeyUsagePurpose::KeyCertSign),
                (usage.crl_sign(), KeyUsagePurpose::CrlSign),
                (usage.digital_signature(), KeyUsagePurpose::DigitalSignature),
            ];
            params.key_usages = flags
                .into_iter()
                .filter_map(|(set, purpose)| set.then_some(purpose))
                .collect();
        }
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            key_id: params.key_identifier_method.clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM PKCS#8.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA's own certificate and key in the shape [`write_pem_pair`] takes.
    pub fn pem_pair(&self) -> IssuedCert {
        IssuedCert {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem(),
        }
    }

    /// Issues a certificate with a fresh P-256 key for `role`.
    ///
    /// Every certificate has CN = [`Role::id`] and one SAN URI = [`Role::san_uri`].
    /// Node certificates also name `localhost` and `127.0.0.1` and allow both serverAuth
    /// and clientAuth (nodes will connect to each other); agency and officer
    /// certificates allow clientAuth only.
    pub fn issue(&self, role: &Role, validity: Validity) -> Result<IssuedCert, PkiError> {
        let mut usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Role::Node { .. } = role {
            usages.insert(0, ExtendedKeyUsagePurpose::ServerAuth);
        }
        self.issue_with_usages(role, validity, usages)
    }

    /// [`issue`](Self::issue) with the extended key usages given (none: no extension at
    /// all), for testing that certificates unfit for client authentication are refused.
    pub fn issue_with_usages(
        &self,
        role: &Role,
        validity: Validity,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<IssuedCert, PkiError> {
        role.validate()?;
        validity.check()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, role.id());
        params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(role.san_uri())?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        if let Role::Node { .. } = role {
            params
                .subject_alt_names
                .push(SanType::DnsName(Ia5String::try_from("localhost")?));
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;

        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl CertificateAuthority {
    /// A CRL signed by this CA, numbered `number`, listing the certificates with the serial
    /// numbers `revoked` (as [`serial_of`] reads them), valid until `next_update`; PEM.
    pub fn crl(
        &self,
        revoked: &[Vec<u8>],
        number: u64,
        next_update: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            // Back by the same tolerance as certificates: a node whose clock is a little
            // behind must not see a CRL from the future.
            this_update: now - CLOCK_SKEW_TOLERANCE,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - CLOCK_SKEW_TOLERANCE,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: self.key_id.clone(),
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// The serial number of the certificate in `cert_pem`, as its DER encodes it.
pub fn serial_of(cert_pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| PkiError::BadCert(e.to_string()))?;
    let x509 = pem
        .parse_x509()
        .map_err(|e| PkiError::BadCert(e.to_string()))?;
    Ok(x509.raw_serial().to_vec())
}

/// What a CRL file lists: its number and the serials it revokes.
fn read_crl(path: &Path) -> Result<(u64, Vec<Vec<u8>>), PkiError> {
    let bad = |message: String| PkiError::BadCrl {
        path: path.to_owned(),
        message,
    };
    let text = fs::read(path).map_err(|e| bad(e.to_string()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).map_err(|e| bad(e.to_string()))?;
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).map_err(|e| bad(e.to_string()))?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    Ok((number, serials))
}

/// Adds the certificate in `cert_pem` to the CRL file at `crl_path`, signed by `ca`: keeps
/// every serial it already lists, raises its number, and sets its nextUpdate to
/// `next_update`. Revoking a certificate the CRL already lists rewrites it unchanged but for
/// number and dates. The file is replaced in one step (a new file renamed over it), so a
/// node reloading it reads the old CRL or the new one, never half of one.
pub fn revoke(
    ca: &CertificateAuthority,
    crl_path: &Path,
    cert_pem: &str,
    next_update: OffsetDateTime,
) -> Result<(), PkiError> {
    let serial = serial_of(cert_pem)?;
    let (number, mut serials) = if crl_path.exists() {
        read_crl(crl_path)?
    } else {
        (0, Vec::new())
    };
    if !serials.contains(&serial) {
        serials.push(serial);
    }
    write_crl(ca, crl_path, &serials, number + 1, next_update)
}

/// Writes a CRL (by `ca`, listing `serials`) to `path`, replacing any file there in one
/// step.
pub fn write_crl(
    ca: &CertificateAuthority,
    path: &Path,
    serials: &[Vec<u8>],
    number: u64,
    next_update: OffsetDateTime,
) -> Result<(), PkiError> {
    let pem = ca.crl(serials, number, next_update)?;
    let write_err = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("crl.new");
    fs::write(&tmp, pem).map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)
}

/// Rebuilds an rcgen distinguished name from a parsed one, keeping each value's ASN.1
/// string type so that the issuer name of new certificates matches the CA's subject
/// byte for byte (chain building compares them exactly).
fn distinguished_name_from_x509(
    name: &x509_parser::x509::X509Name<'_>,
) -> Result<DistinguishedName, PkiError> {
    let mut dn = DistinguishedName::new();
    for attr in name.iter_attributes() {
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| PkiError::BadCaCert("subject attribute OID too large".into()))?
            .collect();
        let value = attr.attr_value();
        let text = std::str::from_utf8(value.data)
            .map_err(|_| PkiError::BadCaCert("subject attribute is not UTF-8".into()))?;
        let value = match value.header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(text.try_into()?),
            Tag::Ia5String => DnValue::Ia5String(text.try_into()?),
            Tag::T61String => DnValue::TeletexString(text.try_into()?),
            other => {
                return Err(PkiError::BadCaCert(format!(
                    "unsupported string type {other} in the CA subject"
                )))
            }
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// Writes `<dir>/<stem>.crt` and `<dir>/<stem>.key` and returns their paths.
///
/// The key file is readable by its owner only (mode 0600 on unix). Neither file may
/// exist yet: silently replacing a key is never what the caller meant.
pub fn write_pem_pair(
    dir: &Path,
    stem: &str,
    pair: &IssuedCert,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    write_new_file(&cert_path, pair.cert_pem.as_bytes(), false)?;
    write_new_file(&key_path, pair.key_pem.as_bytes(), true)?;
    Ok((cert_path, key_path))
}

fn write_new_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), PkiError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let result = options
        .open(path)
        .and_then(|mut file| file.write_all(contents));
    result.map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

/// What went wrong while generating, loading or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A center, agency or officer name is outside the allowed alphabet (caller's input).
    #[error("invalid name {name:?}: names must match [a-z0-9][a-z0-9-]{{0,62}}")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// The validity period is empty or reversed (caller's input).
    #[error("certificate validity is empty: not_before {not_before} is not before not_after {not_after}")]
    EmptyValidity {
        /// Requested start.
        not_before: OffsetDateTime,
        /// Requested end.
        not_after: OffsetDateTime,
    },
    /// The CA certificate PEM could not be parsed.
    #[error("CA certificate is not a valid PEM X.509 certificate: {0}")]
    BadCaCert(String),
    /// The CA key PEM could not be parsed.
    #[error("CA key is not a usable PKCS#8 PEM private key: {0}")]
    BadCaKey(rcgen::Error),
    /// The certificate given as CA lacks `basicConstraints cA=TRUE`.
    #[error("the CA certificate is not a CA (basicConstraints cA is not set)")]
    NotACa,
    /// A certificate PEM could not be parsed.
    #[error("not a valid PEM X.509 certificate: {0}")]
    BadCert(String),
    /// A CRL file could not be read or parsed.
    #[error("cannot read the CRL {path}: {message}")]
    BadCrl {
        /// The CRL file.
        path: PathBuf,
        /// The problem.
        message: String,
    },
    /// The CA key does not belong to the CA certificate.
    #[error("the CA key does not match the CA certificate's public key")]
    KeyMismatch,
    /// rcgen refused to build the certificate or key (a bug here, or an unusable input).
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A certificate or key file could not be written (the file may already exist).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

#[cfg(test)]
mod tests;
