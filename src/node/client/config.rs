//! The client side's rustls configuration: which CA (and CRLs) a server certificate must
//! pass, which client certificate to present, which HTTP version to offer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{ClientError, HttpVersion};

/// Builds a rustls client configuration (ring provider, TLS 1.3 only) that trusts the CA
/// certificates in `ca_pem`, presents the client certificate chain and PKCS#8 key in
/// `identity` if given (`None` = no client certificate), and offers `version` by ALPN.
///
/// TLS 1.3 only because both ends are plusgate software and it removes TLS 1.2's
/// weaker options from consideration.
pub fn client_config(
    ca_pem: &Path,
    identity: Option<(&Path, &Path)>,
    version: HttpVersion,
) -> Result<Arc<ClientConfig>, ClientError> {
    client_config_with_crls(ca_pem, &[], identity, version)
}

/// [`client_config`] that also checks the server's certificate against the CRLs in `crls`
/// (PEM or DER, see `tls::read_crls`), under the node's revocation policy: a certificate of
/// unknown status, or checked against an expired CRL, is refused. Node-to-node forwarding
/// uses it with the node's `tls.crls`.
pub fn client_config_with_crls(
    ca_pem: &Path,
    crls: &[PathBuf],
    identity: Option<(&Path, &Path)>,
    version: HttpVersion,
) -> Result<Arc<ClientConfig>, ClientError> {
    let (roots, crls) = read_trust(ca_pem, crls)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .with_crls(crls)
    .enforce_revocation_expiration()
    .build()
    .map_err(|e| ClientError::Config {
        detail: format!("server certificate verifier: {e}"),
    })?;
    finish(provider, verifier, identity, version)
}

/// The configuration a node forwards to its peers with (HTTP/2, this node's certificate
/// `identity` as client certificate): [`client_config_with_crls`], but a peer's server
/// certificate is checked by [`PeerNodeVerifier`](super::peer::PeerNodeVerifier): the CA,
/// the CRLs, serverAuth and a node identity, not the host name it was reached by.
pub fn peer_node_config(
    ca_pem: &Path,
    crls: &[PathBuf],
    identity: (&Path, &Path),
) -> Result<Arc<ClientConfig>, ClientError> {
    let (roots, crls) = read_trust(ca_pem, crls)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        super::peer::PeerNodeVerifier::new(Arc::new(roots), &crls, &provider).map_err(|e| {
            ClientError::Config {
                detail: format!("peer certificate verifier: {e}"),
            }
        })?;
    finish(
        provider,
        Arc::new(verifier),
        Some(identity),
        HttpVersion::Http2,
    )
}

/// The CA certificates of `ca_pem` and the CRLs of `crls` (checked as `tls::read_crls`
/// checks them).
fn read_trust(
    ca_pem: &Path,
    crls: &[PathBuf],
) -> Result<
    (
        rustls::RootCertStore,
        Vec<rustls_pki_types::CertificateRevocationListDer<'static>>,
    ),
    ClientError,
> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca_pem, "CA certificates")? {
        roots.add(cert).map_err(|e| ClientError::Config {
            detail: format!("CA certificate in {}: {e}", ca_pem.display()),
        })?;
    }
    let crls = crate::node::tls::read_crls(crls, &roots).map_err(|e| ClientError::Config {
        detail: e.to_string(),
    })?;
    Ok((roots, crls))
}

/// TLS 1.3 only, `verifier` for the server certificate, the client certificate and key
/// of `identity` if any, `version` offered by ALPN.
fn finish(
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    identity: Option<(&Path, &Path)>,
    version: HttpVersion,
) -> Result<Arc<ClientConfig>, ClientError> {
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config {
            detail: format!("protocol versions: {e}"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((cert_path, key_path)) => {
            let chain = read_certs(cert_path, "client certificate")?;
            crate::node::files::check_private("private key", key_path)?;
            let key =
                PrivateKeyDer::from_pem_file(key_path).map_err(|source| ClientError::Pem {
                    path: key_path.to_owned(),
                    what: "private key",
                    source,
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Config {
                    detail: format!(
                        "client certificate {} with key {}: {e}",
                        cert_path.display(),
                        key_path.display()
                    ),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![version.alpn().to_vec()];
    Ok(Arc::new(config))
}

/// Reads every certificate in a PEM file; an empty file is an error.
pub(super) fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem_error = |source| ClientError::Pem {
        path: path.to_owned(),
        what,
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(pem_error(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}
