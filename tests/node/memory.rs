//! What an authenticated flood can make a node hold: request bodies buffered at once (the
//! body budget, node-wide and per identity), messages waiting in one agency's inbox
//! (`inbox_max`), report rows, and whether one agency's pulls can stall another's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use plusgate::node::client::{client_config, HttpVersion};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::support::{
    ack, assert_problem, ids_of, pull, push, push_accepted, with_id, Federation, Node, Trickle,
};

/// A generous bound on anything that should be prompt: a functional check, not a
/// measurement.
const PROMPT: Duration = Duration::from_secs(10);

/// Starts a push over HTTP/2 as suwon/employment that declares `declared` bytes and sends
/// only a first few: the node holds its grant of the budget while it waits for the rest.
/// Dropping the returned sender and task ends it.
async fn push_held_open(
    fed: &Federation,
    node: &Node,
    declared: usize,
) -> (mpsc::Sender<Bytes>, tokio::task::JoinHandle<()>) {
    let cert = fed.identity("suwon/employment");
    let config = client_config(
        &fed.manifest().ca_path(),
        Some((&cert.cert, &cert.key)),
        HttpVersion::Http2,
    )
    .expect("client config");
    let tcp = TcpStream::connect(node.addr()).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(Arc::clone(&config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
    let (tx, rx) = mpsc::channel(4);
    tx.send(Bytes::from_static(b"{\"type\":"))
        .await
        .expect("first bytes");
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "https://localhost:{}/v1/messages",
            node.addr().port()
        ))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONTENT_LENGTH, declared)
        .body(Trickle(rx))
        .expect("request");
    let task = tokio::spawn(async move {
        tokio::spawn(conn);
        let _ = sender.send_request(request).await;
    });
    (tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_body_budget_get_503_busy_and_the_node_serves_again_after() {
    let fed = Federation::new();
    // One body's worth for the node and for the identity: a body held open takes it all.
    fed.set_limit("suwon", "body_bytes_max", 65_536);
    fed.set_limit("suwon", "body_budget_identity_bytes", 65_536);
    fed.set_limit("suwon", "body_budget_bytes", 65_536);
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let (held, task) = push_held_open(&fed, &node, 65_000).await;

    // The held body's grant is taken as soon as its handler reads it; until then the push
    // below may still find room, so ask until the budget is seen exhausted.
    let deadline = Instant::now() + PROMPT;
    let refused = loop {
        let response = push(&agent, &fed.referral("ref-while-flooded")).await;
        if response.status.as_u16() == 503 {
            break response;
        }
        assert_eq!(response.status.as_u16(), 202, "{}", response.text());
        assert!(Instant::now() < deadline, "the budget was never exhausted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let problem = assert_problem(&refused, 503, "busy");
    assert!(
        refused.headers.contains_key(hyper::header::RETRY_AFTER),
        "{problem}"
    );

    // The held body goes away: its bytes come back and pushes are served again.
    drop(held);
    task.abort();
    let deadline = Instant::now() + PROMPT;
    loop {
        let response = push(&agent, &fed.referral("ref-after-flood")).await;
        if response.status.as_u16() == 202 {
            break;
        }
        assert_problem(&response, 503, "busy");
        assert!(Instant::now() < deadline, "the budget never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_refuses_pushes_until_its_agency_acks() {
    let fed = Federation::new();
    fed.set_limit("suwon", "inbox_max", 2);
    let node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&employment, &fed.referral("ref-inbox-1")).await;
    push_accepted(&employment, &fed.referral("ref-inbox-2")).await;

    let refused = push(&employment, &fed.referral("ref-inbox-3")).await;
    let problem = assert_problem(&refused, 503, "inbox-full");
    assert!(
        refused.headers.contains_key(hyper::header::RETRY_AFTER),
        "{problem}"
    );
    // A pull alone makes no room: the messages are still the agency's to acknowledge.
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "max=1").await), ["ref-inbox-1"]);
    assert_problem(
        &push(&employment, &fed.referral("ref-inbox-3")).await,
        503,
        "inbox-full",
    );
    assert_eq!(ack(&welfare, &["ref-inbox-1"]).await.status.as_u16(), 200);
    push_accepted(&employment, &fed.referral("ref-inbox-3")).await;
    // Bounded again at two.
    assert_problem(
        &push(&employment, &fed.referral("ref-inbox-4")).await,
        503,
        "inbox-full",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_with_more_rows_than_their_limit_are_cut_and_say_so() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let first = fed.referral("ref-report-1");
    let subject = first["subject"].as_str().expect("subject").to_owned();
    push_accepted(&employment, &first).await;
    push_accepted(&employment, &fed.referral("ref-report-2")).await;
    let officer = node.agent("suwon/privacy-officer", HttpVersion::Http2);
    let get = |path: String| {
        let officer = &officer;
        async move {
            let response = officer.get(&path).await.expect("response");
            assert_eq!(response.status.as_u16(), 200, "{}", response.text());
            let body: Value = response.json().expect("JSON");
            (response, body)
        }
    };

    let path = format!("/v1/privacy/subjects/{subject}/disclosures");
    let (_, whole) = get(path.clone()).await;
    assert_eq!(
        whole["disclosures"].as_array().expect("list").len(),
        2,
        "{whole}"
    );
    assert_eq!(whole["truncated"], false, "{whole}");
    let (response, cut) = get(format!("{path}?limit=1")).await;
    let rows = cut["disclosures"].as_array().expect("list");
    assert_eq!(rows.len(), 1, "{cut}");
    assert_eq!(rows[0]["message_id"], "ref-report-1", "the oldest is kept");
    assert_eq!(cut["truncated"], true, "{cut}");
    assert_eq!(response.headers["plusgate-truncated"], "true");

    let (_, consents) = get("/v1/privacy/consents".into()).await;
    let all = consents["consents"].as_array().expect("list").len();
    assert!(
        all >= 2,
        "the examples register several consents: {consents}"
    );
    let (_, cut) = get("/v1/privacy/consents?limit=1".into()).await;
    assert_eq!(cut["consents"].as_array().expect("list").len(), 1, "{cut}");
    assert_eq!(cut["truncated"], true, "{cut}");
    // A limit past the most a report answers is the caller's mistake.
    let response = officer
        .get("/v1/privacy/refusals?limit=10001")
        .await
        .expect("response");
    assert_problem(&response, 400, "bad-request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agencys_large_pulls_do_not_stall_another_agencys_pull() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http2);
    // A large inbox for welfare, and one message for employment (from welfare).
    for chunk in 0..20 {
        let mut pushes = Vec::new();
        for i in 0..10 {
            let agent = employment.clone();
            let body = fed.referral(&format!("ref-bulk-{chunk}-{i}"));
            pushes.push(tokio::spawn(
                async move { push_accepted(&agent, &body).await },
            ));
        }
        for p in pushes {
            p.await.expect("push");
        }
    }
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    let referral = fed.referral("ref-bulk-0-0");
    let mut status = with_id(fed.example("referral-status"), "status-for-employment");
    status["to"] = serde_json::json!("suwon/employment");
    status["subject"] = referral["subject"].clone();
    status["consent_id"] = fed.example("consent-reply")["id"].clone();
    status["payload"]["referral_id"] = serde_json::json!("ref-bulk-0-0");
    status["payload"]["changed_by"]["agency"] = serde_json::json!("suwon/welfare");
    push_accepted(&welfare, &status).await;

    // Welfare pulls everything, over and over, while a long poll of its own waits; the
    // employment agency's pull is answered meanwhile, promptly.
    let busy = {
        let welfare = welfare.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let _ = welfare.get("/v1/inbox?max=1000").await;
            }
        })
    };
    let started = Instant::now();
    let pulled = pull(&employment, "max=10").await;
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    assert_eq!(ids_of(&pulled), ["status-for-employment"]);
    busy.abort();
}
