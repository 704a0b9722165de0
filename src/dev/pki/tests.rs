//! Unit tests of `dev::pki`.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;

use super::*;

fn agency() -> Role {
    Role::Agency {
        center: "suwon".into(),
        agency: "employment".into(),
    }
}

fn node() -> Role {
    Role::Node {
        center: "suwon".into(),
    }
}

fn ca() -> CertificateAuthority {
    CertificateAuthority::generate("plusgate test CA", Validity::days_from_now(30))
        .expect("CA generation")
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
}

/// Runs `f` on the parsed certificate.
fn with_x509<T>(pem: &str, f: impl FnOnce(&x509_parser::certificate::X509Certificate) -> T) -> T {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let x509 = pem.parse_x509().expect("X.509");
    f(&x509)
}

fn san_uris(pem: &str) -> Vec<String> {
    with_x509(pem, |x509| {
        let san = x509
            .subject_alternative_name()
            .expect("SAN")
            .expect("SAN present");
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            })
            .collect()
    })
}

fn roots(ca: &CertificateAuthority) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca.cert_pem())).expect("CA is a valid root");
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verify_as_client(ca: &CertificateAuthority, cert: &IssuedCert) -> Result<(), rustls::Error> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
            .build()
            .expect("client verifier");
    verifier
        .verify_client_cert(&der(&cert.cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

fn verify_as_server(
    ca: &CertificateAuthority,
    cert: &IssuedCert,
    name: &str,
) -> Result<(), rustls::Error> {
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
            .build()
            .expect("server verifier");
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    verifier
        .verify_server_cert(&der(&cert.cert_pem), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn san_uris_follow_the_contract() {
    let officer = Role::Officer {
        center: "gangseo".into(),
        name: "privacy-officer".into(),
    };
    assert_eq!(agency().san_uri(), "urn:plusgate:agency:suwon:employment");
    assert_eq!(
        officer.san_uri(),
        "urn:plusgate:officer:gangseo:privacy-officer"
    );
    assert_eq!(node().san_uri(), "urn:plusgate:node:suwon");
    assert_eq!(agency().id(), "suwon/employment");
    assert_eq!(officer.id(), "gangseo/privacy-officer");
}

#[test]
fn names_are_checked() {
    for good in ["a", "suwon", "privacy-officer", "0x", &"a".repeat(63)] {
        assert!(is_valid_name(good), "{good:?} should be valid");
    }
    for bad in [
        "",
        "-a",
        "Suwon",
        "su_won",
        "su won",
        "a/b",
        "한국",
        &"a".repeat(64),
    ] {
        assert!(!is_valid_name(bad), "{bad:?} should be invalid");
    }
    let role = Role::Agency {
        center: "suwon".into(),
        agency: "Bad".into(),
    };
    assert!(matches!(
        ca().issue(&role, Validity::days_from_now(1)),
        Err(PkiError::InvalidName { name }) if name == "Bad"
    ));
}

#[test]
fn agency_certificate_carries_identity_and_client_usage_only() {
    let ca = ca();
    let cert = ca
        .issue(&agency(), Validity::days_from_now(10))
        .expect("issue");
    assert_eq!(
        san_uris(&cert.cert_pem),
        ["urn:plusgate:agency:suwon:employment"]
    );
    with_x509(&cert.cert_pem, |x509| {
        let cn = x509.subject().iter_common_name().next().expect("CN");
        assert_eq!(cn.as_str().expect("CN string"), "suwon/employment");
        let eku = x509
            .extended_key_usage()
            .expect("EKU")
            .expect("EKU present")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!x509.is_ca());
    });
    assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    verify_as_client(&ca, &cert).expect("rustls accepts the agency as a client");
    assert!(verify_as_server(&ca, &cert, "localhost").is_err());
}

#[test]
fn node_certificate_serves_localhost_and_is_also_a_client() {
    let ca = ca();
    let cert = ca
        .issue(&node(), Validity::days_from_now(10))
        .expect("issue");
    assert_eq!(san_uris(&cert.cert_pem), ["urn:plusgate:node:suwon"]);
    verify_as_server(&ca, &cert, "localhost").expect("valid for localhost");
    verify_as_server(&ca, &cert, "127.0.0.1").expect("valid for 127.0.0.1");
    assert!(verify_as_server(&ca, &cert, "example.org").is_err());
    verify_as_client(&ca, &cert).expect("valid as a client");
}

#[test]
fn validity_dates_are_written() {
    let validity = Validity::days_from_now(10);
    let cert = ca().issue(&agency(), validity).expect("issue");
    with_x509(&cert.cert_pem, |x509| {
        let v = x509.validity();
        // X.509 times have whole seconds; rcgen drops the fraction.
        assert!((v.not_before.timestamp() - validity.not_before.unix_timestamp()).abs() <= 1);
        assert!((v.not_after.timestamp() - validity.not_after.unix_timestamp()).abs() <= 1);
        assert!(v.is_valid());
    });
}

#[test]
fn expired_and_premature_certificates_are_refused_by_rustls() {
    let ca = ca();
    let expired = ca.issue(&agency(), Validity::expired()).expect("issue");
    let premature = ca
        .issue(&agency(), Validity::not_yet_valid())
        .expect("issue");
    assert!(verify_as_client(&ca, &expired).is_err());
    assert!(verify_as_client(&ca, &premature).is_err());
}

#[test]
fn empty_validity_is_refused() {
    let now = OffsetDateTime::now_utc();
    let validity = Validity {
        not_before: now,
        not_after: now,
    };
    assert!(matches!(
        ca().issue(&agency(), validity),
        Err(PkiError::EmptyValidity { .. })
    ));
}

#[test]
fn ca_reloaded_from_pem_issues_certificates_that_chain() {
    let original = ca();
    let reloaded =
        CertificateAuthority::from_pem(original.cert_pem(), &original.key_pem()).expect("reload");
    let cert = reloaded
        .issue(&agency(), Validity::days_from_now(1))
        .expect("issue");
    verify_as_client(&original, &cert).expect("chains to the original CA");
}

#[test]
fn from_pem_refuses_leaf_certificates_and_foreign_keys() {
    let ca = ca();
    let leaf = ca
        .issue(&agency(), Validity::days_from_now(1))
        .expect("issue");
    assert!(matches!(
        CertificateAuthority::from_pem(&leaf.cert_pem, &leaf.key_pem),
        Err(PkiError::NotACa)
    ));
    assert!(matches!(
        CertificateAuthority::from_pem(ca.cert_pem(), &leaf.key_pem),
        Err(PkiError::KeyMismatch)
    ));
    assert!(matches!(
        CertificateAuthority::from_pem("not a certificate", &leaf.key_pem),
        Err(PkiError::BadCaCert(_))
    ));
}

#[test]
fn pem_pair_files_are_written_once_with_a_private_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = ca()
        .issue(&agency(), Validity::days_from_now(1))
        .expect("issue");
    let (crt, key) = write_pem_pair(dir.path(), "employment", &cert).expect("write");
    assert_eq!(fs::read_to_string(&crt).expect("read crt"), cert.cert_pem);
    assert_eq!(fs::read_to_string(&key).expect("read key"), cert.key_pem);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o077, 0, "key file must not be readable by others");
    }
    assert!(matches!(
        write_pem_pair(dir.path(), "employment", &cert),
        Err(PkiError::Write { .. })
    ));
}

#[test]
fn debug_output_does_not_contain_private_keys() {
    let ca = ca();
    let cert = ca
        .issue(&agency(), Validity::days_from_now(1))
        .expect("issue");
    assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
    assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
}
