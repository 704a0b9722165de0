//! Revocation and reload: a certificate on the CA's CRL is refused (per certificate, not per
//! agency: another certificate of the same agency keeps working), whether it comes back on
//! a new connection, by resuming a TLS session, or stays on an open connection; the CRL,
//! CA bundle, node certificate and config are reloaded on SIGHUP and when they change, and
//! a reload that fails keeps the node serving as before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use plusgate::dev::pki::{Role, Validity};
use plusgate::node::client::{client_config, Connection, HttpVersion};
use rustls::pki_types::ServerName;
use rustls::HandshakeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::{assert_problem, pull_response, ClientCert, Federation, Node, VERSIONS};

/// Longest a reload (SIGHUP, or the 2 s file poll) may take to show.
const RELOAD_WITHIN: Duration = Duration::from_secs(6);

fn employment() -> Role {
    Role::Agency {
        center: "suwon".into(),
        agency: "employment".into(),
    }
}

/// Two current certificates of suwon/employment: the one that will be stolen and revoked,
/// and its reissued twin.
fn two_certificates(fed: &Federation) -> (ClientCert, ClientCert) {
    let stolen = fed.issue("stolen", &employment(), Validity::days_from_now(30));
    let reissued = fed.issue("reissued", &employment(), Validity::days_from_now(30));
    (stolen, reissued)
}

/// Whether a request with `cert` gets an HTTP answer at all (false: refused below HTTP).
async fn answered(node: &Node, cert: &ClientCert, version: HttpVersion) -> bool {
    node.agent_as(Some(cert), version)
        .get("/v1/inbox")
        .await
        .is_ok()
}

/// Waits until `cert` is refused on a new connection; panics after [`RELOAD_WITHIN`].
async fn until_refused(node: &Node, cert: &ClientCert) {
    let start = Instant::now();
    while answered(node, cert, HttpVersion::Http1).await {
        assert!(
            start.elapsed() < RELOAD_WITHIN,
            "the revoked certificate is still served; log:\n{}",
            node.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_served(node: &Node, cert: &ClientCert, case: &str) {
    for version in VERSIONS {
        let agent = node.agent_as(Some(cert), version);
        let response = pull_response(&agent, "").await;
        assert_eq!(response.status.as_u16(), 200, "{case} over {version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_and_its_reissued_twin_keeps_working() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let (stolen, reissued) = two_certificates(&fed);
    assert_served(&node, &stolen, "before revocation").await;
    fed.revoke(&stolen);
    node.hangup();
    until_refused(&node, &stolen).await;
    for version in VERSIONS {
        assert!(
            !answered(&node, &stolen, version).await,
            "revoked over {version}"
        );
    }
    assert_served(&node, &reissued, "the reissued certificate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_crl_is_taken_up_without_a_signal() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let (stolen, reissued) = two_certificates(&fed);
    assert_served(&node, &stolen, "before revocation").await;
    fed.revoke(&stolen);
    until_refused(&node, &stolen).await;
    assert_served(&node, &reissued, "the reissued certificate").await;
}

/// One HTTP/1.1 request on a fresh TLS connection made with `config` (which keeps the
/// session tickets it gets); returns how the handshake went and whether an answer came.
async fn raw_request(
    node: &Node,
    config: &Arc<rustls::ClientConfig>,
) -> (Option<HandshakeKind>, bool) {
    let tcp = TcpStream::connect(node.addr()).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let Ok(mut tls) = TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
    else {
        return (None, false);
    };
    let kind = tls.get_ref().1.handshake_kind();
    let request = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
    if tls.write_all(request).await.is_err() {
        return (kind, false);
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answered = matches!(read, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200");
    (kind, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_cannot_resume_its_tls_session() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let (stolen, reissued) = two_certificates(&fed);
    let config_of = |cert: &ClientCert| {
        client_config(
            &fed.manifest().ca_path(),
            Some((&cert.cert, &cert.key)),
            HttpVersion::Http1,
        )
        .expect("client config")
    };
    let (stolen_tls, reissued_tls) = (config_of(&stolen), config_of(&reissued));
    for config in [&stolen_tls, &reissued_tls] {
        assert_eq!(
            raw_request(&node, config).await,
            (Some(HandshakeKind::Full), true)
        );
        // The premise: without a reload, the node lets a client resume.
        assert_eq!(
            raw_request(&node, config).await,
            (Some(HandshakeKind::Resumed), true)
        );
    }
    fed.revoke(&stolen);
    node.hangup();
    until_refused(&node, &stolen).await;
    // The stolen certificate's client still holds a ticket from before the revocation.
    let (kind, answered) = raw_request(&node, &stolen_tls).await;
    assert!(!answered, "a revoked certificate resumed its session");
    assert_ne!(kind, Some(HandshakeKind::Resumed));
    // The reissued one's ticket is gone with the old trust too: a full handshake, served.
    assert_eq!(
        raw_request(&node, &reissued_tls).await,
        (Some(HandshakeKind::Full), true)
    );
}

/// Waits until `conn` is closed by the node, at most `within`; false if it is still open.
async fn closed_within(conn: &Connection, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        while !conn.is_closed() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok()
}

async fn open(node: &Node, cert: &ClientCert, version: HttpVersion) -> Connection {
    let mut conn = node
        .agent_as(Some(cert), version)
        .connect()
        .await
        .expect("connect");
    let ok = conn
        .send(Method::GET, "/healthz", None)
        .await
        .expect("answer");
    assert_eq!(ok.status.as_u16(), 200);
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_connections_of_a_revoked_certificate_are_closed_at_the_reload() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let (stolen, reissued) = two_certificates(&fed);
    let mut stolen_conns = Vec::new();
    let mut reissued_conns = Vec::new();
    for version in VERSIONS {
        stolen_conns.push(open(&node, &stolen, version).await);
        reissued_conns.push(open(&node, &reissued, version).await);
    }
    fed.revoke(&stolen);
    node.hangup();
    for conn in &stolen_conns {
        assert!(
            closed_within(conn, RELOAD_WITHIN).await,
            "a {} connection of the revoked certificate is still open",
            conn.version()
        );
    }
    for conn in &mut reissued_conns {
        assert!(!conn.is_closed(), "{} connection closed", conn.version());
        let ok = conn
            .send(Method::GET, "/healthz", None)
            .await
            .expect("the reissued certificate's connection still answers");
        assert_eq!(ok.status.as_u16(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_older_than_connection_age_max_is_closed() {
    let fed = Federation::new();
    fed.set_option("suwon", "limits", "connection_age_max_s", "1");
    let node = fed.start("suwon");
    let employment = fed.identity("suwon/employment");
    for version in VERSIONS {
        let conn = open(&node, &employment, version).await;
        // Well before the idle timeout (60 s): only its age closes it.
        assert!(
            closed_within(&conn, Duration::from_secs(4)).await,
            "a {version} connection older than connection_age_max_s is still open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_broken_crl_keeps_the_current_trust() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let (stolen, reissued) = two_certificates(&fed);
    fed.revoke(&stolen);
    node.hangup();
    until_refused(&node, &stolen).await;

    std::fs::write(fed.crl_path(), "-----BEGIN X509 CRL-----\nbroken\n").expect("write");
    node.hangup();
    let start = Instant::now();
    while !node.log().contains("reload refused") {
        assert!(start.elapsed() < RELOAD_WITHIN, "no reload error logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("reload refused"))
        .expect("line");
    assert!(line.contains("ca.crl"), "the error names the file: {line}");
    assert!(!answered(&node, &stolen, HttpVersion::Http1).await);
    assert_served(&node, &reissued, "after a failed reload").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_removed_from_the_config_is_refused_after_the_reload() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let officer = node.agent("suwon/privacy-officer", HttpVersion::Http1);
    let path = "/v1/privacy/consents";
    let before = officer.get(path).await.expect("answer");
    assert_eq!(before.status.as_u16(), 200, "{}", before.text());
    fed.edit_config("suwon", |text| {
        text.replace("[[officers]]\nid = \"suwon/privacy-officer\"\n", "")
    });
    node.hangup();
    let start = Instant::now();
    loop {
        let response = officer.get(path).await.expect("answer");
        if response.status.as_u16() == 403 {
            assert_problem(&response, 403, "unknown-identity");
            break;
        }
        assert!(
            start.elapsed() < RELOAD_WITHIN,
            "the officer is still served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The forwarding side reloads too: once a peer node's certificate is on the CRL and this
/// node has reloaded, its forwarder refuses that peer's server certificate on the next
/// connection, and nothing is handed over to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_forwards_nothing_to_a_peer_whose_certificate_was_revoked() {
    let fed = Federation::new();
    let remote = {
        let r = fed.example("referral-remote");
        r["to"].as_str().expect("to").to_owned()
    };
    let peer = remote.split('/').next().expect("center").to_owned();
    let a = fed.start("suwon");
    fed.revoke(&fed.node_identity(&peer));
    a.hangup();
    let start = Instant::now();
    while !a.log().contains("reloaded the TLS trust") {
        assert!(start.elapsed() < RELOAD_WITHIN, "{}", a.log_tail(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = fed.start(&peer);
    let sender = a.agent("suwon/employment", HttpVersion::Http1);
    let mut referral = fed.example("referral-remote");
    referral["id"] = serde_json::json!("ref-to-a-revoked-node");
    let response = sender
        .post_json("/v1/messages", &referral)
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 202, "{}", response.text());
    // A tries and fails, on the TLS handshake; B never gets it.
    let start = Instant::now();
    loop {
        let status = sender
            .get("/v1/messages/ref-to-a-revoked-node")
            .await
            .expect("response");
        let status: serde_json::Value = status.json().expect("JSON");
        if status["state"] == "forwarded" {
            let error = status["forwarding"]["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(error.to_lowercase().contains("revoked"), "{status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inbox = b.agent(&remote, HttpVersion::Http1);
    let pulled = pull_response(&inbox, "max=10").await;
    assert_eq!(pulled.status.as_u16(), 200);
    let body: serde_json::Value = pulled.json().expect("JSON");
    assert_eq!(body["messages"], serde_json::json!([]), "{body}");
}
