//! Who may connect (TLS: a current certificate from the federation's CA) and who may use
//! the agency API (an agency registered at this node), over both HTTP versions.

use plusgate::dev::pki::{KeyPurpose, Role, Validity};
use plusgate::node::client::{ClientError, HttpVersion};

use crate::support::{
    assert_problem, ids_of, pull, pull_response, push, push_accepted, ClientCert, Federation, Node,
    VERSIONS,
};

fn agency(center: &str, agency: &str) -> Role {
    Role::Agency {
        center: center.into(),
        agency: agency.into(),
    }
}

/// Asserts that a request with `cert` fails below HTTP: no response at all.
async fn assert_refused_by_tls(node: &Node, cert: Option<&ClientCert>, case: &str) {
    for version in VERSIONS {
        let agent = node.agent_as(cert, version);
        let result = agent.get("/v1/inbox").await;
        match result {
            Ok(response) => panic!(
                "{case} over {version}: got HTTP {} instead of a TLS refusal: {}",
                response.status,
                response.text()
            ),
            Err(e) => assert!(
                e.is_tls_refusal() || matches!(e, ClientError::Http { .. }),
                "{case} over {version}: expected a TLS refusal, got {e}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_without_a_client_certificate_is_refused_in_tls() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    assert_refused_by_tls(&node, None, "no client certificate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused_in_tls() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    // Same identity as a real agency: only the signature differs.
    let cert = fed.issue_from_other_ca("stranger", &agency("suwon", "employment"));
    assert_refused_by_tls(&node, Some(&cert), "certificate from another CA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused_in_tls() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let cert = fed.issue(
        "expired",
        &agency("suwon", "employment"),
        Validity::expired(),
    );
    assert_refused_by_tls(&node, Some(&cert), "expired certificate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid_certificate_is_refused_in_tls() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let role = agency("suwon", "employment");
    let cert = fed.issue("premature", &role, Validity::not_yet_valid());
    assert_refused_by_tls(&node, Some(&cert), "not-yet-valid certificate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_the_client_auth_usage_is_refused_in_tls() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let role = agency("suwon", "employment");
    // webpki alone accepts a certificate without the extension as fit for any purpose.
    let no_usage = fed.issue_with_usages("no-eku", &role, vec![]);
    assert_refused_by_tls(&node, Some(&no_usage), "no extended key usage").await;
    let server_only = fed.issue_with_usages("server-only", &role, vec![KeyPurpose::ServerAuth]);
    assert_refused_by_tls(&node, Some(&server_only), "serverAuth only").await;
    let client = fed.issue_with_usages("client", &role, vec![KeyPurpose::ClientAuth]);
    let agent = node.agent_as(Some(&client), HttpVersion::Http1);
    assert_eq!(pull_response(&agent, "").await.status.as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_leave_the_node_serving() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let expired = fed.issue(
        "expired",
        &agency("suwon", "employment"),
        Validity::expired(),
    );
    for _ in 0..3 {
        assert_refused_by_tls(&node, None, "no client certificate").await;
        assert_refused_by_tls(&node, Some(&expired), "expired certificate").await;
    }
    for version in VERSIONS {
        let agent = node.agent("suwon/employment", version);
        let id = format!("ref-after-refusals-{version}").replace(['/', '.'], "-");
        push_accepted(&agent, &fed.referral(&id)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_certificate_of_an_unregistered_agency_is_403() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let cert = fed.issue(
        "unknown",
        &agency("suwon", "unknown"),
        Validity::days_from_now(30),
    );
    for version in VERSIONS {
        let agent = node.agent_as(Some(&cert), version);
        assert_problem(&pull_response(&agent, "").await, 403, "unknown-identity");
        let response = push(&agent, &fed.referral("ref-from-unknown")).await;
        assert_problem(&response, 403, "unknown-identity");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_and_node_certificates_may_not_use_the_agency_api() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let officer = fed.identity("suwon/privacy-officer");
    let node_cert = fed.node_identity("suwon");
    for cert in [&officer, &node_cert] {
        for version in VERSIONS {
            let agent = node.agent_as(Some(cert), version);
            assert_problem(&pull_response(&agent, "").await, 403, "wrong-role");
            let response = push(&agent, &fed.referral("ref-from-wrong-role")).await;
            assert_problem(&response, 403, "wrong-role");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agency_of_another_center_is_403() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    for version in VERSIONS {
        let agent = node.agent("gangseo/employment", version);
        assert_problem(&pull_response(&agent, "").await, 403, "unknown-identity");
        let mut body = fed.referral("ref-from-gangseo");
        body["payload"]["referrer"]["agency"] = "gangseo/employment".into();
        assert_problem(&push(&agent, &body).await, 403, "unknown-identity");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_are_served_on_the_same_port() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let h1 = node.agent("suwon/employment", HttpVersion::Http1);
    let h2 = node.agent("suwon/employment", HttpVersion::Http2);
    assert_eq!((h1.addr, h2.addr), (node.addr(), node.addr()));
    push_accepted(&h1, &fed.referral("ref-h1")).await;
    push_accepted(&h2, &fed.referral("ref-h2")).await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    assert_eq!(ids_of(&pull(&welfare, "").await), ["ref-h1", "ref-h2"]);
}
