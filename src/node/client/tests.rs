//! Unit tests of `node::client`.

use super::config::read_certs;
use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

fn check_url(url: &str, expected: Option<(&str, &str)>) {
    let got = parse_https_url(url)
        .ok()
        .map(|u| (u.socket_addr(), u.server_name()));
    let expected = expected.map(|(addr, host)| (addr.parse::<SocketAddr>().ok(), host.to_owned()));
    assert_eq!(got, expected, "{url}");
}

/// The grammar itself is tested in `core::directory`; here, what the client makes of it:
/// an address to connect to as it is, or a name to resolve (no address yet).
#[test]
fn parse_https_url_cases() {
    check_url(
        "https://127.0.0.1:7443",
        Some(("127.0.0.1:7443", "127.0.0.1")),
    );
    check_url(
        "https://127.0.0.1:7443/",
        Some(("127.0.0.1:7443", "127.0.0.1")),
    );
    check_url("https://127.0.0.1", Some(("127.0.0.1:443", "127.0.0.1")));
    check_url("https://localhost:8443", Some(("", "localhost")));
    check_url(
        "https://Node.Suwon.example:8443",
        Some(("", "node.suwon.example")),
    );
    check_url("https://[::1]:7443", Some(("[::1]:7443", "::1")));
    check_url("http://127.0.0.1:7443", None);
    check_url("127.0.0.1:7443", None);
    check_url("https://node_1.example:7443", None);
    check_url("https://127.0.0.1:7443/v1", None);
    check_url("https://127.0.0.1:7443/?a=b", None);
    check_url("https://user@127.0.0.1:7443", None);
    check_url("", None);
}

#[test]
fn authority_brackets_ipv6() {
    assert_eq!(authority("127.0.0.1", 7443), "127.0.0.1:7443");
    assert_eq!(authority("localhost", 1), "localhost:1");
    assert_eq!(authority("::1", 7443), "[::1]:7443");
}

/// A throwaway PKI written as PEM files: a CA, a server certificate for
/// 127.0.0.1/localhost, and a client certificate.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    CertifiedIssuer::self_signed(params, key).expect("CA")
}

fn leaf(dir: &Path, name: &str, sans: Vec<SanType>, issuer: &CertifiedIssuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = sans;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = params.signed_by(&key, issuer).expect("leaf");
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write");
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    // Owner-only, or the client refuses the key as exposed.
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca("test CA");
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("write");
    let node = vec![
        SanType::DnsName("localhost".try_into().expect("dns")),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ];
    leaf(dir.path(), "server", node, &ca);
    // A node certificate that names no address at all: peers reach it by its identity.
    let node_uri = SanType::URI("urn:plusgate:node:test".try_into().expect("uri"));
    leaf(dir.path(), "node", vec![node_uri], &ca);
    let uri = SanType::URI("urn:plusgate:agency:test:a".try_into().expect("uri"));
    leaf(dir.path(), "client", vec![uri.clone()], &ca);
    let other = new_ca("other CA");
    std::fs::write(dir.path().join("other-ca.crt"), other.pem()).expect("write");
    leaf(dir.path(), "stranger", vec![uri], &other);
    Pki { dir }
}

/// A TLS 1.3 server requiring client certificates from `ca.crt` that answers every
/// request with 200 and the request's method, path and host.
async fn serve(pki: &Pki) -> SocketAddr {
    serve_as(pki, "server").await
}

/// [`serve`] presenting the certificate `<stem>.crt`.
async fn serve_as(pki: &Pki, stem: &str) -> SocketAddr {
    use hyper::service::service_fn;
    use rustls::server::WebPkiClientVerifier;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&pki.path("ca.crt"), "CA").expect("ca") {
        roots.add(cert).expect("root");
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .expect("verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            read_certs(&pki.path(&format!("{stem}.crt")), "server").expect("cert"),
            PrivateKeyDer::from_pem_file(pki.path(&format!("{stem}.key"))).expect("key"),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let host = req
                        .headers()
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned)
                        .or_else(|| req.uri().authority().map(|a| a.to_string()))
                        .unwrap_or_default();
                    let text = format!("{} {} {host}", req.method(), req.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        text,
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

async fn request(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    version: HttpVersion,
) -> Result<Response, ClientError> {
    let agent = Agent::new(addr, "localhost", config, version);
    // A hang here is the bug this guards against, so bound it well below the defaults.
    tokio::time::timeout(Duration::from_secs(5), agent.get("/healthz"))
        .await
        .expect("request must not hang")
}

#[tokio::test]
async fn mutual_tls_round_trip_both_versions() {
    let pki = pki();
    let addr = serve(&pki).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let client = (pki.path("client.crt"), pki.path("client.key"));
        let config = client_config(&pki.path("ca.crt"), Some((&client.0, &client.1)), version)
            .expect("config");
        let response = request(addr, config, version).await.expect("response");
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            response.text(),
            format!("GET /healthz localhost:{}", addr.port())
        );
    }
}

#[tokio::test]
async fn http2_connection_is_shared_between_streams() {
    let pki = pki();
    let addr = serve(&pki).await;
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    let config = client_config(&pki.path("ca.crt"), Some((&cert, &key)), HttpVersion::Http2)
        .expect("config");
    let conn = Connection::connect(addr, "127.0.0.1", config, HttpVersion::Http2)
        .await
        .expect("connect");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut c = conn.try_clone().expect("h2 clones");
        tasks.push(tokio::spawn(async move {
            c.send(
                Method::POST,
                &format!("/n/{i}"),
                Some((Bytes::new(), "text/plain")),
            )
            .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let response = task.await.expect("join").expect("response");
        assert_eq!(
            response.text(),
            format!("POST /n/{i} 127.0.0.1:{}", addr.port())
        );
    }
}

#[tokio::test]
async fn missing_or_foreign_client_certificate_is_a_tls_error() {
    let pki = pki();
    let addr = serve(&pki).await;
    let ca = pki.path("ca.crt");
    let (cert, key) = (pki.path("stranger.crt"), pki.path("stranger.key"));
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        for identity in [None, Some((cert.as_path(), key.as_path()))] {
            let config = client_config(&ca, identity, version).expect("config");
            let err = request(addr, config, version)
                .await
                .expect_err("server must refuse");
            assert!(
                matches!(err, ClientError::Tls { .. }),
                "{version} {identity:?}: {err}"
            );
            assert!(err.to_string().contains("alert"), "{err}");
        }
    }
}

#[tokio::test]
async fn untrusted_server_is_refused_in_the_handshake() {
    let pki = pki();
    let addr = serve(&pki).await;
    let config =
        client_config(&pki.path("other-ca.crt"), None, HttpVersion::Http1).expect("config");
    let err = Connection::connect(addr, "localhost", config, HttpVersion::Http1)
        .await
        .expect_err("must not trust the server");
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");
    assert!(err.is_tls_refusal());
}

#[test]
fn missing_pem_file_names_the_file() {
    let err = client_config(Path::new("/nonexistent/ca.crt"), None, HttpVersion::Http1)
        .expect_err("no file");
    assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
}

/// The configuration a node forwards with, presenting `client.crt`.
fn peer_config(pki: &Pki) -> Arc<ClientConfig> {
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    peer_node_config(&pki.path("ca.crt"), &[], (&cert, &key)).expect("config")
}

async fn connect_url_to(
    url: &str,
    config: Arc<ClientConfig>,
    version: HttpVersion,
) -> Result<Connection, ClientError> {
    let url = parse_https_url(url).expect("url");
    tokio::time::timeout(
        Duration::from_secs(20),
        Connection::connect_url(&url, config, version),
    )
    .await
    .expect("connect must not hang")
}

/// A peer node is trusted for its identity, by whatever name or address it was reached:
/// its certificate need not name either. Clients without an identity to expect still
/// match the host name.
#[tokio::test]
async fn a_peer_node_is_checked_by_identity_not_by_the_name_it_was_reached_by() {
    let pki = pki();
    let addr = serve_as(&pki, "node").await;
    for url in [
        format!("https://localhost:{}", addr.port()),
        format!("https://127.0.0.1:{}", addr.port()),
    ] {
        let mut conn = connect_url_to(&url, peer_config(&pki), HttpVersion::Http2)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            conn.server_identity()
                .as_ref()
                .map(ToString::to_string)
                .ok(),
            Some("node test".to_owned()),
            "{url}"
        );
        let response = conn.send(Method::GET, "/", None).await.expect("request");
        // The name asked for is what the request says, not the address it resolved to.
        let host = url.trim_start_matches("https://");
        assert_eq!(response.text(), format!("GET / {host}"));
    }
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    let usual = client_config(&pki.path("ca.crt"), Some((&cert, &key)), HttpVersion::Http2)
        .expect("config");
    let url = format!("https://localhost:{}", addr.port());
    let err = connect_url_to(&url, usual, HttpVersion::Http2)
        .await
        .expect_err("the usual verifier wants the name in the certificate");
    assert!(err.is_tls_refusal(), "{err}");
}

#[tokio::test]
async fn a_server_without_a_node_identity_is_no_peer_whatever_its_name() {
    let pki = pki();
    // Chains to the CA and names localhost, but carries no urn:plusgate:node identity.
    let addr = serve(&pki).await;
    let url = format!("https://localhost:{}", addr.port());
    let err = connect_url_to(&url, peer_config(&pki), HttpVersion::Http2)
        .await
        .expect_err("not a node");
    assert!(err.is_tls_refusal(), "{err}");
    assert!(err.to_string().contains("urn:plusgate:node"), "{err}");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_its_own_error() {
    let pki = pki();
    // RFC 6761: names under .invalid never resolve.
    let err = connect_url_to(
        "https://node.suwon.invalid:7443",
        peer_config(&pki),
        HttpVersion::Http2,
    )
    .await
    .expect_err("no such name");
    match &err {
        ClientError::Resolve { host, .. } => assert_eq!(host, "node.suwon.invalid"),
        other => panic!("expected a resolve error, got {other:?}"),
    }
    assert!(err.to_string().contains("does not resolve"), "{err}");
}

#[tokio::test]
async fn every_address_that_refuses_is_named() {
    let pki = pki();
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let err = connect_url_to(
        &format!("https://localhost:{port}"),
        peer_config(&pki),
        HttpVersion::Http2,
    )
    .await
    .expect_err("nothing listens");
    match &err {
        ClientError::ConnectEach { host, attempts } => {
            assert_eq!(host, "localhost");
            assert!(!attempts.is_empty());
            assert!(attempts.iter().all(|(a, _)| a.port() == port), "{err}");
        }
        other => panic!("expected connect errors, got {other:?}"),
    }
    let err = connect_url_to(
        &format!("https://127.0.0.1:{port}"),
        peer_config(&pki),
        HttpVersion::Http2,
    )
    .await
    .expect_err("nothing listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}
