//! Addressing: the directory names nodes by host name (resolved by the system resolver at
//! every connection) or by IPv6 address, and whatever a node is reached by, its
//! certificate must carry the directory's identity for that center. A name that does not
//! resolve leaves messages queued until the directory is fixed.

use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{
    ack, ids_of, pull, push_accepted, run_to_exit, wait_for_status, Federation, Finished, Node,
};

/// Longest a test waits for forwarding to catch up.
const CATCH_UP: Duration = Duration::from_secs(60);

/// A federation of `centers` whose forwarders retry quickly.
fn quick(centers: &[&str]) -> Federation {
    let fed = Federation::with_centers(centers);
    for center in centers {
        fed.set_option(center, "federation", "retry_initial_ms", "50");
        fed.set_option(center, "federation", "retry_max_ms", "500");
    }
    fed
}

/// The port the directory (as dev-init wrote it, `https://127.0.0.1:PORT`) gives `center`.
fn port_of(fed: &Federation, center: &str) -> u16 {
    let url = fed.directory()["centers"][center]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    url.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// Names `center`'s node by `url` in the directory (signed again, version + 1).
fn name_node(fed: &Federation, center: &str, url: &str) {
    fed.resign_directory(|d| d["centers"][center]["url"] = json!(url));
}

/// Whether this machine can listen on the IPv6 loopback address.
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Pulls `agency`'s inbox at `node` until a message arrives, acknowledges what came, and
/// returns its ids.
async fn pull_one(node: &Node, agency: &str) -> Vec<String> {
    let agent = node.agent(agency, HttpVersion::Http2);
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let got = ids_of(&pull(&agent, "max=10&wait=5").await);
        if !got.is_empty() {
            let refs: Vec<&str> = got.iter().map(String::as_str).collect();
            assert_eq!(ack(&agent, &refs).await.status.as_u16(), 200);
            return got;
        }
        assert!(Instant::now() < deadline, "nothing arrived for {agency}");
    }
}

/// The example referral from suwon to the second center, and its answer back.
fn referral_and_answer(fed: &Federation) -> (Value, Value, String) {
    let referral = fed.example("referral-remote");
    let answer = fed.example("referral-status-remote");
    let recipient = referral["to"].as_str().expect("to").to_owned();
    (referral, answer, recipient)
}

/// Suwon is named `localhost` (resolved through the system resolver, `/etc/hosts`, at
/// each connection) and gangseo `[::1]`, an address its certificate does not name: a
/// referral travels there and its status comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_named_by_host_name_and_ipv6_address_exchange_messages() {
    let fed = quick(&["suwon", "gangseo"]);
    let (suwon_port, gangseo_port) = (port_of(&fed, "suwon"), port_of(&fed, "gangseo"));
    name_node(&fed, "suwon", &format!("https://localhost:{suwon_port}"));
    if has_ipv6_loopback() {
        fed.edit_config("gangseo", |text| {
            text.replace(
                &format!("listen = \"127.0.0.1:{gangseo_port}\""),
                &format!("listen = \"[::1]:{gangseo_port}\""),
            )
        });
        name_node(&fed, "gangseo", &format!("https://[::1]:{gangseo_port}"));
    } else {
        eprintln!("no IPv6 loopback on this machine: gangseo stays on 127.0.0.1");
    }
    let a = fed.start("suwon");
    let b = fed.start("gangseo");
    if has_ipv6_loopback() {
        assert!(b.addr().is_ipv6(), "gangseo listens on {}", b.addr());
    }
    let (referral, answer, recipient) = referral_and_answer(&fed);
    let id = referral["id"].as_str().expect("id").to_owned();
    push_accepted(&a.agent("suwon/employment", HttpVersion::Http2), &referral).await;
    assert_eq!(pull_one(&b, &recipient).await, [id.as_str()]);
    let seen = wait_for_status(&a, &id, |s| s["state"] == "delivered").await;
    assert_eq!(seen["forwarding"]["receipt"]["node"], json!("gangseo"));

    // Back the other way, to the node named localhost.
    push_accepted(&b.agent(&recipient, HttpVersion::Http2), &answer).await;
    assert_eq!(
        pull_one(&a, "suwon/employment").await,
        [answer["id"].as_str().expect("id")]
    );
    wait_for_status(&a, &id, |s| {
        s["lifecycle"]["status"] == answer["payload"]["status"]
    })
    .await;
}

/// The directory names gangseo by a host name that leads to jeongeup's node: the
/// certificate there is valid, from the federation's CA, but for another center, so
/// nothing is handed over and the messages wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reached_by_name_with_another_centers_certificate_is_refused() {
    let fed = quick(&["suwon", "gangseo", "jeongeup"]);
    let jeongeup_port = port_of(&fed, "jeongeup");
    name_node(
        &fed,
        "gangseo",
        &format!("https://localhost:{jeongeup_port}"),
    );
    let a = fed.start("suwon");
    let _c = fed.start("jeongeup");
    let (referral, _, _) = referral_and_answer(&fed);
    assert!(referral["to"].as_str().expect("to").starts_with("gangseo/"));
    let id = referral["id"].as_str().expect("id").to_owned();
    push_accepted(&a.agent("suwon/employment", HttpVersion::Http1), &referral).await;
    let seen = wait_for_status(&a, &id, |s| {
        s["forwarding"]["failed_attempts"].as_u64() >= Some(3)
    })
    .await;
    assert_eq!(seen["state"], json!("forwarded"), "{seen}");
    let error = seen["forwarding"]["last_error"]
        .as_str()
        .expect("last_error");
    assert!(
        error.contains("is node jeongeup, not the node of center gangseo"),
        "{error}"
    );
}

/// A host name that does not resolve (RFC 6761 `.invalid`) fails each round with its own
/// error, warned of like an unreachable peer; the messages stay in the outbox and go once
/// the directory is fixed and the node reloads it (SIGHUP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_keeps_messages_queued_until_the_directory_is_fixed() {
    let fed = quick(&["suwon", "gangseo"]);
    let gangseo_port = port_of(&fed, "gangseo");
    name_node(
        &fed,
        "gangseo",
        &format!("https://gangseo.invalid:{gangseo_port}"),
    );
    // A well-formed name is a valid directory: whether it resolves is a matter of the
    // moment, not of the configuration.
    let config = fed.config_path("suwon").display().to_string();
    let checked = run_to_exit(
        &["check-config", "--config", &config],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert!(checked.status.success(), "{checked:?}");
    let a = fed.start("suwon");
    let b = fed.start("gangseo");
    let (referral, _, recipient) = referral_and_answer(&fed);
    let id = referral["id"].as_str().expect("id").to_owned();
    push_accepted(&a.agent("suwon/employment", HttpVersion::Http1), &referral).await;
    let seen = wait_for_status(&a, &id, |s| {
        s["forwarding"]["failed_attempts"].as_u64() >= Some(3)
    })
    .await;
    assert_eq!(seen["state"], json!("forwarded"), "{seen}");
    let error = seen["forwarding"]["last_error"]
        .as_str()
        .expect("last_error");
    assert!(
        error.contains("the host name gangseo.invalid does not resolve"),
        "{error}"
    );
    let warned = a
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("forwarding failed"))
        .filter(|l| l.contains("does not resolve") && l.contains("Upstream"))
        .count();
    assert!(warned >= 1, "{}", a.log());

    name_node(
        &fed,
        "gangseo",
        &format!("https://localhost:{gangseo_port}"),
    );
    a.hangup();
    assert_eq!(pull_one(&b, &recipient).await, [id.as_str()]);
    wait_for_status(&a, &id, |s| s["state"] == "delivered").await;
}

/// An officer's `plusgate privacy … --url` names the node by host name too; a name that
/// does not resolve is "unreachable, try later" (69), a malformed one a usage error (2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_a_node_by_host_name() {
    let fed = Federation::with_centers(&["suwon"]);
    let node = fed.start("suwon");
    let port = node.addr().port();
    let cert = fed.identity("suwon/privacy-officer");
    let ca = fed.dir().join("ca.crt").display().to_string();
    let (c, k) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let consents = |url: &str| -> Finished {
        run_to_exit(
            &[
                "privacy", "consents", "--url", url, "--ca", &ca, "--cert", &c, "--key", &k,
            ],
            fed.dir(),
            Duration::from_secs(30),
        )
    };
    let out = consents(&format!("https://localhost:{port}"));
    assert!(out.status.success(), "{out:?}");
    let body: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert!(body["consents"].is_array(), "{body}");

    let out = consents(&format!("https://suwon.invalid:{port}"));
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        out.stderr
            .contains("the host name suwon.invalid does not resolve"),
        "{}",
        out.stderr
    );
    let out = consents(&format!("https://suwon_node:{port}"));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("host name of letters"),
        "{}",
        out.stderr
    );
}
