//! `GET /v1/messages/{id}`: a sender follows its own messages, and only its own.

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{ack, assert_problem, ids_of, pull, push_accepted, status, Federation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_sees_accepted_then_pulled_then_acked() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let recipient = node.agent("suwon/welfare", HttpVersion::Http2);
    let accepted = push_accepted(&sender, &fed.referral("ref-state")).await;

    let state = |response: plusgate::node::client::Response| {
        assert_eq!(response.status.as_u16(), 200, "{}", response.text());
        response.json::<Value>().expect("JSON")
    };
    let seen = state(status(&sender, "ref-state").await);
    assert_eq!(seen["state"], json!("accepted"));
    assert_eq!(seen["id"], json!("ref-state"));
    assert_eq!(seen["type"], json!("referral"));
    assert_eq!(seen["to"], json!("suwon/welfare"));
    assert_eq!(seen["accepted_at"], accepted["accepted_at"]);

    assert_eq!(ids_of(&pull(&recipient, "max=10").await), ["ref-state"]);
    let seen = state(status(&sender, "ref-state").await);
    assert_eq!(seen["state"], json!("pulled"));
    assert!(seen["first_pulled_at"].is_string(), "{seen}");

    assert_eq!(ack(&recipient, &["ref-state"]).await.status.as_u16(), 200);
    let seen = state(status(&sender, "ref-state").await);
    assert_eq!(seen["state"], json!("acked"));
    assert!(seen["acked_at"].is_string(), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_status_is_visible_only_to_its_sender() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http2);
    push_accepted(&sender, &fed.referral("ref-private")).await;
    // Neither a bystander nor the recipient learns anything, not even that it exists.
    for other in ["suwon/jobs", "suwon/welfare"] {
        let agent = node.agent(other, HttpVersion::Http1);
        assert_problem(&status(&agent, "ref-private").await, 404, "not-found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_unknown_id_is_404() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    for id in ["ref-never-sent", "not%20an%20id", &"x".repeat(200)] {
        assert_problem(&status(&agent, id).await, 404, "not-found");
    }
}
