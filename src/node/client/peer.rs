//! How a node checks the server certificate of a peer node it forwards to: by the
//! federation's identity, not by the address it was reached at.
//!
//! A directory URL says where to connect (an IP address, or a host name resolved at connect
//! time); who must answer is the center's node identity, `urn:plusgate:node:<center>`. So
//! the certificate must chain to the federation CA (`tls.client_ca`), pass the CRLs under
//! the node's revocation policy, allow serverAuth and carry a node identity; the host name
//! or IP address is deliberately not matched against its DNS/IP names. A node certificate
//! therefore needs no address in it, an address change needs no new certificate, and a DNS
//! answer that points elsewhere gains an attacker nothing without a certificate the CA
//! issued for that center. Which center it must be is checked right after the handshake,
//! on the verified certificate, by the forwarder (`forwarder::round`), for every new
//! connection, resumed sessions included (they carry the certificate first verified).
//!
//! Other clients (the CLI, tests, the bench) do not know which identity to expect and use
//! rustls's usual verifier, which matches the host name: a node certificate names what
//! people reach it by for them (see `certs/README.md`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::core::identity::{self, Identity};

/// Why a peer's certificate that chains to the federation CA is still not a node's.
#[derive(thiserror::Error)]
pub enum NotANode {
    /// It carries no plusgate node identity (an agency's or officer's certificate, or none).
    #[error("the server's certificate carries no urn:plusgate:node identity")]
    NoNodeIdentity,
}

// rustls shows a `CertificateError::Other` by its `Debug`, so this says the sentence: that
// is what a forwarding error in the log then reads.
impl std::fmt::Debug for NotANode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The server certificate verifier of node-to-node connections (see the module doc).
#[derive(Debug)]
pub struct PeerNodeVerifier {
    roots: Arc<RootCertStore>,
    crls: Vec<webpki::CertRevocationList<'static>>,
    supported: WebPkiSupportedAlgorithms,
}

impl PeerNodeVerifier {
    /// A verifier trusting `roots` and checking revocation against `crls` (none: no
    /// revocation checking), with the signature algorithms of `provider`.
    pub fn new(
        roots: Arc<RootCertStore>,
        crls: &[rustls::pki_types::CertificateRevocationListDer<'static>],
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<PeerNodeVerifier, webpki::Error> {
        let crls = crls
            .iter()
            .map(|der| webpki::OwnedCertRevocationList::from_der(der).map(Into::into))
            .collect::<Result<_, _>>()?;
        Ok(PeerNodeVerifier {
            roots,
            crls,
            supported: provider.signature_verification_algorithms,
        })
    }
}

impl ServerCertVerifier for PeerNodeVerifier {
    /// The chain, validity, revocation and serverAuth as rustls's `WebPkiServerVerifier`
    /// checks them, under the same policy as client certificates (`node::tls`): a CRL past
    /// its nextUpdate, or a certificate no CRL covers, is refused. Then the node identity;
    /// `_server_name` is not matched (see the module doc).
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = match webpki::RevocationOptionsBuilder::new(&crls) {
            Ok(builder) => Some(
                builder
                    .with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                    .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                    .build(),
            ),
            // No CRLs configured: no revocation checking, as for client certificates.
            Err(_) => None,
        };
        cert.verify_for_usage(
            self.supported.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            revocation,
            None,
        )
        .map_err(pki_error)?;
        match identity::from_certificate(end_entity) {
            Ok(Identity::Node(_)) => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(NotANode::NoNodeIdentity)),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.supported)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.supported)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.supported.supported_schemes()
    }
}

/// webpki's verdict as the rustls error rustls's own verifier would give for the common
/// cases (their texts are what logs and forwarding errors show), the rest kept whole.
fn pki_error(error: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let kind = match error {
        E::BadDer | E::BadDerTime => CertificateError::BadEncoding,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertRevoked => CertificateError::Revoked,
        E::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        E::CrlExpired { .. } => CertificateError::ExpiredRevocationList,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(kind)
}
