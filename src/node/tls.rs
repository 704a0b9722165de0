//! The node's TLS server configuration: rustls on the ring provider, TLS 1.3 and TLS 1.2 with
//! ECDHE + AEAD suites only, a client certificate required and verified against the
//! configured CA bundle (validity dates included), ALPN for HTTP/2 and HTTP/1.1.
//!
//! Architecture invariant: no other crypto provider is ever installed or used; every rustls
//! config in the crate is built with an explicit ring provider (a test checks the lock file
//! for aws-lc-rs and OpenSSL).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring as ring_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

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
}

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

/// Builds the server configuration from the node's TLS material.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(&tls.cert, "the node certificate")?;
    let key = read_key(&tls.key)?;
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&tls.client_ca, "the client CA bundle")? {
        roots.add(ca).map_err(|e| TlsError::Pem {
            what: "the client CA bundle",
            path: tls.client_ca.clone(),
            message: e.to_string(),
        })?;
    }
    let provider = provider();
    // Requires a client certificate: `allow_unauthenticated` is deliberately not called.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
