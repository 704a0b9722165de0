//! Pickup reports: when an agency at another center pulls, then acknowledges, a message
//! handed over to its node, that node reports it back, signed, and the sender sees at its
//! own node when its message was first pulled and acknowledged, exactly as the
//! recipient's node recorded it; also when the recipient's node crashes right after the
//! acknowledgement, or the origin is down while the recipient pulls and acknowledges.
//!
//! Real node processes on loopback ports named in a real signed directory.

use std::time::Duration;

use plusgate::core::audit::{Action, AuditEntry};
use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{
    ack, ids_of, pull, push_accepted, run_to_exit, wait_for_status, with_id, Federation, Node,
};

/// suwon and gangseo, whose forwarders retry quickly (a test must not wait a minute for a
/// backoff to expire).
fn two_centers() -> Federation {
    let fed = Federation::new();
    for center in ["suwon", "gangseo"] {
        fed.set_option(center, "federation", "retry_initial_ms", "50");
        fed.set_option(center, "federation", "retry_max_ms", "1000");
    }
    fed
}

/// The `referral-remote` example (suwon/employment → an agency at gangseo) with id `id`,
/// and its recipient.
fn remote_referral(fed: &Federation, id: &str) -> (Value, String) {
    let body = with_id(fed.example("referral-remote"), id);
    let to = body["to"].as_str().expect("to").to_owned();
    assert!(to.starts_with("gangseo/"), "{to}");
    (body, to)
}

/// The first pull and acknowledgement of message `id` about `subject` as the node of
/// `center` recorded them: its privacy officer's disclosure history.
async fn recorded_at(node: &Node, center: &str, subject: &str, id: &str) -> (Value, Value) {
    let officer = node.agent(&format!("{center}/privacy-officer"), HttpVersion::Http1);
    let response = officer
        .get(&format!("/v1/privacy/subjects/{subject}/disclosures"))
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    let report: Value = response.json().expect("JSON");
    let row = report["disclosures"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["message_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {report}"))
        .clone();
    (row["first_pulled"][1].clone(), row["acked_at"].clone())
}

/// Pushes the remote referral `id` at `x` and waits until gangseo's receipt is recorded.
async fn delivered(fed: &Federation, x: &Node, id: &str) -> (Value, String) {
    let (referral, to) = remote_referral(fed, id);
    push_accepted(&x.agent("suwon/employment", HttpVersion::Http2), &referral).await;
    let seen = wait_for_status(x, id, |s| s["state"] == "delivered").await;
    assert_eq!(seen["first_pulled_at"], Value::Null, "{seen}");
    (referral, to)
}

/// The `pickup-reported` entries of a stopped node's audit chain about message `id`.
fn pickups_audited(fed: &Federation, center: &str, id: &str) -> Vec<AuditEntry> {
    let store = plusgate::node::store::Store::open(&fed.data_dir(center)).expect("store");
    store
        .audit_entries()
        .map(|e| e.expect("entry"))
        .filter(|e| e.action == Action::PickupReported && e.message_id == id)
        .collect()
}

/// `plusgate audit verify` on a stopped node.
fn assert_audit_verifies(fed: &Federation, center: &str) {
    let config = fed.config_path(center).display().to_string();
    let done = run_to_exit(
        &["audit", "verify", "--config", &config],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert!(done.status.success(), "{center}: {done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_sees_when_its_message_was_first_pulled_and_acknowledged_at_another_center() {
    let fed = two_centers();
    let mut x = fed.start("suwon");
    let mut y = fed.start("gangseo");
    let id = "ref-pickup-loop";
    let (referral, to) = delivered(&fed, &x, id).await;
    let subject = referral["subject"].as_str().expect("subject");

    let agency = y.agent(&to, HttpVersion::Http2);
    assert_eq!(ids_of(&pull(&agency, "max=10&wait=20").await), [id]);
    let (pulled_at, _) = recorded_at(&y, "gangseo", subject, id).await;
    assert!(pulled_at.is_string(), "{pulled_at}");

    // The first pull, as gangseo recorded it, at the sender's node.
    let seen = wait_for_status(&x, id, |s| s["first_pulled_at"].is_string()).await;
    assert_eq!(seen["first_pulled_at"], pulled_at, "{seen}");
    assert_eq!(seen["acked_at"], Value::Null, "{seen}");
    // Still `delivered`, with the receipt that proves the hand-over.
    assert_eq!(seen["state"], json!("delivered"), "{seen}");
    assert_eq!(seen["forwarding"]["receipt"]["node"], json!("gangseo"));

    // The ack is reported too; the first pull stays.
    assert_eq!(ack(&agency, &[id]).await.status.as_u16(), 200);
    let (_, acked_at) = recorded_at(&y, "gangseo", subject, id).await;
    assert!(acked_at.is_string(), "{acked_at}");
    let seen = wait_for_status(&x, id, |s| s["acked_at"].is_string()).await;
    assert_eq!(seen["acked_at"], acked_at, "{seen}");
    assert_eq!(seen["first_pulled_at"], pulled_at, "{seen}");

    // Each report is an audit entry at the origin, by gangseo's node, signed; both chains
    // verify.
    assert!(x.stop().success());
    assert!(y.stop().success());
    let entries = pickups_audited(&fed, "suwon", id);
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        assert_eq!(e.actor, "urn:plusgate:node:gangseo");
        assert_eq!(e.from, "suwon/employment");
        assert!(
            e.detail.as_deref().is_some_and(|d| d.contains("signature")),
            "{e:?}"
        );
    }
    assert_audit_verifies(&fed, "suwon");
    assert_audit_verifies(&fed, "gangseo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_reported_by_a_node_killed_right_after_answering_it_still_arrives() {
    let fed = two_centers();
    let mut x = fed.start("suwon");
    let mut y = fed.start("gangseo");
    let id = "ref-pickup-crash";
    let (referral, to) = delivered(&fed, &x, id).await;
    let subject = referral["subject"].as_str().expect("subject").to_owned();
    let agency = y.agent(&to, HttpVersion::Http2);
    assert_eq!(ids_of(&pull(&agency, "max=10&wait=20").await), [id]);
    wait_for_status(&x, id, |s| s["first_pulled_at"].is_string()).await;

    // The origin is down, so the report of the ack cannot leave before the crash: what
    // reaches it afterwards can only come from gangseo's store.
    assert!(x.stop().success());
    assert_eq!(ack(&agency, &[id]).await.status.as_u16(), 200);
    y.kill_hard();
    y.restart();
    x.restart();

    let (_, acked_at) = recorded_at(&y, "gangseo", &subject, id).await;
    assert!(acked_at.is_string(), "{acked_at}");
    let seen = wait_for_status(&x, id, |s| s["acked_at"].is_string()).await;
    assert_eq!(seen["acked_at"], acked_at, "{seen}");
    assert!(x.stop().success());
    assert!(y.stop().success());
    assert_eq!(pickups_audited(&fed, "suwon", id).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_and_acks_while_the_origin_is_down_are_reported_once_it_is_back() {
    let fed = two_centers();
    let mut x = fed.start("suwon");
    let mut y = fed.start("gangseo");
    let ids = ["ref-pickup-outage-1", "ref-pickup-outage-2"];
    let mut subject = String::new();
    let mut to = String::new();
    for id in ids {
        let (referral, recipient) = delivered(&fed, &x, id).await;
        subject = referral["subject"].as_str().expect("subject").to_owned();
        to = recipient;
    }

    assert!(x.stop().success());
    let agency = y.agent(&to, HttpVersion::Http2);
    assert_eq!(ids_of(&pull(&agency, "max=10&wait=20").await), ids);
    // One is acknowledged at once, the other after gangseo's forwarder has retried a while.
    assert_eq!(ack(&agency, &[ids[0]]).await.status.as_u16(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ack(&agency, &[ids[1]]).await.status.as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.restart();

    for id in ids {
        let (pulled_at, acked_at) = recorded_at(&y, "gangseo", &subject, id).await;
        let seen = wait_for_status(&x, id, |s| s["acked_at"].is_string()).await;
        assert_eq!(seen["first_pulled_at"], pulled_at, "{seen}");
        assert_eq!(seen["acked_at"], acked_at, "{seen}");
    }
    assert!(x.stop().success());
    assert!(y.stop().success());
    // The pull and the ack of each went as one report (one queue entry per message).
    for id in ids {
        let entries = pickups_audited(&fed, "suwon", id);
        assert_eq!(entries.len(), 1, "{id}: {entries:?}");
        let detail = entries[0].detail.as_deref().unwrap_or_default();
        assert!(
            detail.contains("first pulled at") && detail.contains("acknowledged at"),
            "{detail}"
        );
    }
}
