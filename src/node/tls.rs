//! The node's TLS server configuration: rustls on the ring provider, TLS 1.3 and TLS 1.2 with
//! ECDHE + AEAD suites only, a client certificate required and verified against the
//! configured CA bundle (validity dates included) and CRLs, carrying the clientAuth extended
//! key usage, ALPN for HTTP/2 and HTTP/1.1.
//!
//! Everything here is built whole into a [`Trust`] from the files the config names; a
//! reload (`node::reload`) builds a new one and replaces the old, never edits it.
//!
//! Architecture invariant: no other crypto provider is ever installed or used; every rustls
//! config in the crate is built with an explicit ring provider (a test checks the lock file
//! for aws-lc-rs and OpenSSL).
//!
//! Architecture invariant: a [`Trust`] owns its session cache and ticket keys, created with
//! it and never shared with another: a session resumed without a full handshake can only
//! have been established under the CA bundle and CRLs of the trust that accepts it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use crate::config::TlsConfig;

/// Why the TLS configuration could not be built. Always the operator's to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {what} from {path}: {message}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The problem.
        message: String,
    },
    /// rustls refused the material (e.g. key does not match certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
    /// The private key file is open to other users.
    #[error(transparent)]
    Exposed(#[from] crate::node::files::ExposedKey),
    /// A CRL file (`tls.crls[index]`) cannot be read, is not a CRL, or was not issued by a
    /// CA of the client CA bundle.
    #[error("tls.crls[{index}]: {path}: {message}")]
    Crl {
        /// Its position in `tls.crls`.
        index: usize,
        /// The file.
        path: PathBuf,
        /// The problem.
        message: String,
    },
}

/// Sessions remembered per [`Trust`] for resumption by session id.
const SESSION_CACHE_LEN: usize = 1024;

/// A CRL whose nextUpdate is closer than this is worth a warning when it is loaded: once it
/// passes, every certificate of its CA is refused until a fresh CRL is in place.
const CRL_EXPIRY_WARNING_S: i64 = 24 * 3600;

/// The ring provider, restricted to ECDHE key exchange with AEAD suites (ring's TLS 1.2
/// suites are all ECDHE + AES-GCM/ChaCha20-Poly1305; the filter makes that explicit).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = ring_provider::default_provider();
    p.cipher_suites.retain(|s| match s {
        rustls::SupportedCipherSuite::Tls13(_) => true,
        rustls::SupportedCipherSuite::Tls12(s) => {
            let name = format!("{:?}", s.common.suite);
            name.starts_with("TLS_ECDHE_")
                && (name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"))
        }
    });
    Arc::new(p)
}

/// Reads every certificate in a PEM file.
pub fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |message: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Reads a private key from a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    crate::node::files::check_private("TLS private key", path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what: "a private key",
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Reads the CA bundle into a root store.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in read_certs(path, "the CA bundle")? {
        roots.add(ca).map_err(|e| TlsError::Pem {
            what: "the CA bundle",
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Reads the CRLs of `tls.crls`, each PEM (`X509 CRL` blocks) or DER, and checks that each
/// parses and was issued by a CA of `roots` (a CRL of another CA would revoke nothing and
/// leave its own CA's certificates of unknown status, that is refused). Warns about a CRL
/// that has expired or is about to.
///
/// The CRL's signature is checked by webpki when a certificate is verified against it; a
/// CRL whose signature does not verify makes its CA's certificates refused.
pub fn read_crls(
    paths: &[PathBuf],
    roots: &RootCertStore,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut crls = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let crl_err = |message: String| TlsError::Crl {
            index,
            path: path.clone(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| crl_err(e.to_string()))?;
        let ders: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
            CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| crl_err(e.to_string()))?
        } else {
            vec![CertificateRevocationListDer::from(bytes)]
        };
        if ders.is_empty() {
            return Err(crl_err("no X509 CRL block found".into()));
        }
        for der in ders {
            check_crl(&der, roots).map_err(crl_err)?;
            crls.push(der);
        }
    }
    Ok(crls)
}

/// Parses one CRL, checks its issuer is one of `roots`, and warns if it is stale.
fn check_crl(der: &[u8], roots: &RootCertStore) -> Result<(), String> {
    let (rest, crl) = x509_parser::parse_x509_crl(der)
        .map_err(|e| format!("is not a certificate revocation list: {e}"))?;
    if !rest.is_empty() {
        return Err("has trailing bytes after the CRL".into());
    }
    // A trust anchor's subject is the Name's content, without its SEQUENCE header.
    let issuer = <x509_parser::asn1_rs::Any as x509_parser::asn1_rs::FromDer<
        '_,
        x509_parser::asn1_rs::Error,
    >>::from_der(crl.issuer().as_raw())
    .map(|(_, name)| name.data)
    .map_err(|e| format!("has an unreadable issuer: {e}"))?;
    if !roots
        .roots
        .iter()
        .any(|anchor| anchor.subject.as_ref() == issuer)
    {
        return Err(format!(
            "was issued by `{}`, which is not a CA of tls.client_ca",
            crl.issuer()
        ));
    }
    if let Some(next) = crl.next_update() {
        let left_s = next.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
        if left_s <= 0 {
            tracing::error!(issuer = %crl.issuer(), next_update = %next,
                "this CRL has expired: every certificate of its CA is refused until a fresh CRL is in place");
        } else if left_s < CRL_EXPIRY_WARNING_S {
            tracing::warn!(issuer = %crl.issuer(), next_update = %next,
                "this CRL expires within a day: put a fresh one in place before then");
        }
    }
    Ok(())
}

/// Everything a reload replaces at once: the server configuration new handshakes use, and
/// the client-certificate verifier that open connections are checked against again.
#[derive(Debug)]
pub struct Trust {
    /// For each new TLS handshake.
    pub server: Arc<ServerConfig>,
    /// The same verifier `server` uses.
    clients: Arc<dyn ClientCertVerifier>,
    /// When the node certificate expires, and when the first CRL is due for renewal (Unix
    /// seconds), for the operations metrics.
    pub expiry: Expiry,
}

/// When this trust's material runs out (Unix seconds; `None`: unknown or no CRL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expiry {
    /// The node certificate's notAfter.
    pub certificate: Option<i64>,
    /// The earliest nextUpdate of the configured CRLs.
    pub crl_next_update: Option<i64>,
}

impl Trust {
    /// Builds the server configuration from the node's TLS material: the node certificate
    /// and key, the client CA bundle and the CRLs, with a fresh session cache and fresh
    /// ticket keys.
    ///
    /// Revocation policy, when CRLs are configured: a certificate whose status no CRL tells
    /// (its CA has none) is refused, and so is every certificate of a CA whose CRL is past
    /// its nextUpdate (fail closed: a stale CRL may miss a revocation). Without CRLs there
    /// is no revocation checking.
    pub fn load(tls: &TlsConfig) -> Result<Trust, TlsError> {
        let chain = read_certs(&tls.cert, "the node certificate")?;
        let key = read_key(&tls.key)?;
        let roots = read_roots(&tls.client_ca)?;
        let crls = read_crls(&tls.crls, &roots)?;
        let expiry = Expiry {
            certificate: chain
                .first()
                .and_then(|c| x509_parser::parse_x509_certificate(c).ok())
                .map(|(_, x)| x.validity().not_after.timestamp()),
            crl_next_update: crls
                .iter()
                .filter_map(|d| x509_parser::parse_x509_crl(d).ok())
                .filter_map(|(_, crl)| crl.next_update().map(|t| t.timestamp()))
                .min(),
        };
        let provider = provider();
        // Requires a client certificate: `allow_unauthenticated` is deliberately not called;
        // nor is `allow_unknown_revocation_status` (see above).
        let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .with_crls(crls)
            .enforce_revocation_expiration()
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let clients: Arc<dyn ClientCertVerifier> = Arc::new(RequireClientAuth { webpki });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(Arc::clone(&clients))
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Resumption skips the client certificate check, so sessions must not outlive the
        // CA bundle and CRLs they were checked under: this config's own, new every time.
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_LEN);
        config.ticketer =
            ring_provider::Ticketer::new().map_err(|e| TlsError::Rustls(e.to_string()))?;
        Ok(Trust {
            server: Arc::new(config),
            clients,
            expiry,
        })
    }

    /// Whether a client certificate chain accepted earlier (by this or an older trust) is
    /// still acceptable now: not revoked, not expired, still from a trusted CA, clientAuth.
    pub fn still_accepts(&self, chain: &[CertificateDer<'static>]) -> Result<(), rustls::Error> {
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        self.clients
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map(|_| ())
    }
}

/// The server configuration `check-config` and tests build; see [`Trust::load`].
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    Trust::load(tls).map(|t| t.server)
}

/// A client certificate must say it is for client authentication. webpki checks the
/// extended key usage only when the certificate has the extension (a certificate without
/// one passes as fit for any purpose); this verifier requires it, with clientAuth in it.
#[derive(Debug)]
struct RequireClientAuth {
    webpki: Arc<dyn ClientCertVerifier>,
}

/// Why a client certificate that chains to a trusted CA is still refused (the certificate
/// issuer's to fix).
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthMissing {
    /// No extended key usage extension at all.
    #[error("the client certificate has no extended key usage; clientAuth is required")]
    NoExtendedKeyUsage,
    /// An extended key usage extension without clientAuth.
    #[error("the client certificate's extended key usage does not include clientAuth")]
    NotForClients,
    /// The certificate could not be parsed for its extensions.
    #[error("the client certificate's extensions cannot be read: {0}")]
    Unreadable(String),
}

/// Checks that `cert` has the clientAuth extended key usage.
pub fn check_client_auth(cert: &CertificateDer<'_>) -> Result<(), ClientAuthMissing> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| ClientAuthMissing::Unreadable(e.to_string()))?;
    match x509.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth => Ok(()),
        Ok(Some(_)) => Err(ClientAuthMissing::NotForClients),
        Ok(None) => Err(ClientAuthMissing::NoExtendedKeyUsage),
        Err(e) => Err(ClientAuthMissing::Unreadable(e.to_string())),
    }
}

impl ClientCertVerifier for RequireClientAuth {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        check_client_auth(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
