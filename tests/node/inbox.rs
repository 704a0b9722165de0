//! `GET /v1/inbox` and `POST /v1/inbox/ack`: what a pull hands out, leases, long polls,
//! and acknowledgement.

use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{
    ack, assert_problem, drain_inbox_by, ids_of, pull, pull_response, push_accepted,
    push_referrals, status, Federation, VERSIONS,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_returns_the_message_with_sender_and_envelope_fields() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let body = fed.referral("ref-pulled");
    let accepted = push_accepted(&node.agent("suwon/employment", HttpVersion::Http1), &body).await;

    let messages = pull(&node.agent("suwon/welfare", HttpVersion::Http2), "max=10").await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["id"], json!("ref-pulled"));
    assert_eq!(m["from"], json!("suwon/employment"));
    assert_eq!(m["type"], json!("referral"));
    assert_eq!(m["version"], json!(1));
    assert_eq!(m["subject"], body["subject"]);
    assert_eq!(m["consent_id"], body["consent_id"]);
    assert_eq!(m["payload"], body["payload"]);
    assert_eq!(m["received_at"], accepted["accepted_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_shows_each_agency_only_its_own_inbox() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    push_accepted(
        &node.agent("suwon/employment", HttpVersion::Http1),
        &fed.referral("ref-for-welfare"),
    )
    .await;
    for other in ["suwon/jobs", "suwon/employment"] {
        let agent = node.agent(other, HttpVersion::Http1);
        assert!(pull(&agent, "").await.is_empty(), "{other} sees nothing");
    }
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "").await), ["ref-for-welfare"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_message_is_hidden_until_the_lease_expires() {
    let fed = Federation::new();
    fed.set_limit("suwon", "inbox_lease_ms", 1000);
    let node = fed.start("suwon");
    push_accepted(
        &node.agent("suwon/employment", HttpVersion::Http1),
        &fed.referral("ref-leased"),
    )
    .await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    let leased_at = Instant::now();
    assert_eq!(ids_of(&pull(&welfare, "").await), ["ref-leased"]);
    let again = pull(&welfare, "").await;
    assert!(
        again.is_empty() || leased_at.elapsed() >= Duration::from_millis(1000),
        "a leased message must not be handed out twice within the lease: {again:?}"
    );
    // A waiting pull notices the lease running out.
    let started = Instant::now();
    assert_eq!(ids_of(&pull(&welfare, "wait=5").await), ["ref-leased"]);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_message_never_comes_back() {
    let fed = Federation::new();
    fed.set_limit("suwon", "inbox_lease_ms", 500);
    let node = fed.start("suwon");
    push_accepted(
        &node.agent("suwon/employment", HttpVersion::Http1),
        &fed.referral("ref-acked"),
    )
    .await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "").await), ["ref-acked"]);
    let response = ack(&welfare, &["ref-acked"]).await;
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    assert_eq!(
        response.json::<Value>().expect("JSON"),
        json!({"acked": ["ref-acked"]})
    );
    // Waiting well past the lease: the message stays gone.
    let started = Instant::now();
    assert!(pull(&welfare, "wait=2").await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_returns_at_most_max_messages_in_acceptance_order() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http2);
    let ids: Vec<String> = (0..5).map(|i| format!("ref-max-{i}")).collect();
    for id in &ids {
        push_accepted(&sender, &fed.referral(id)).await;
    }
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "max=2").await), ids[0..2]);
    assert_eq!(ids_of(&pull(&welfare, "max=1").await), ids[2..3]);
    assert_eq!(ids_of(&pull(&welfare, "max=100").await), ids[3..5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_pull_parameters_are_400() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    for query in [
        "max=0",
        "max=-1",
        "max=abc",
        "max=101",
        "max=",
        "wait=soon",
        "wait=-1",
        "colour=blue",
    ] {
        let response = pull_response(&welfare, query).await;
        assert_problem(&response, 400, "bad-request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_soon_after_a_push() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    for (i, version) in VERSIONS.into_iter().enumerate() {
        let welfare = node.agent("suwon/welfare", version);
        let started = Instant::now();
        let waiting = tokio::spawn(async move {
            let messages = pull(&welfare, "wait=5").await;
            (messages, started.elapsed())
        });
        // Give the pull time to reach the node and start waiting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = format!("ref-long-poll-{i}");
        push_accepted(&node.agent("suwon/employment", version), &fed.referral(&id)).await;
        let (messages, took) = waiting.await.expect("pull task");
        assert_eq!(ids_of(&messages), [id]);
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_is_cut_to_the_configured_maximum() {
    let fed = Federation::new();
    fed.set_limit("suwon", "inbox_wait_s_max", 1);
    let node = fed.start("suwon");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let started = Instant::now();
    assert!(pull(&welfare, "wait=3600").await.is_empty());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "waited {took:?}");
    assert!(took < Duration::from_secs(10), "waited {took:?}");
}

/// A `wait` of more seconds than a u64 holds is a long wait like any other, shortened to
/// the node's maximum, not refused (found by schemathesis, `api_properties`: the document
/// allows any whole number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_too_large_for_any_integer_type_is_shortened_not_refused() {
    let fed = Federation::new();
    fed.set_limit("suwon", "inbox_wait_s_max", 1);
    let node = fed.start("suwon");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    for wait in ["18446744073709551616", "2051779378402059299586048000"] {
        let response = pull_response(&welfare, &format!("wait={wait}&max=3")).await;
        assert_eq!(response.status.as_u16(), 200, "{wait}: {}", response.text());
    }
    for query in ["wait=", "wait=1e30", "wait=soon"] {
        assert_problem(&pull_response(&welfare, query).await, 400, "bad-request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_never_hand_out_a_message_twice() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let ids: Vec<String> = (0..60).map(|i| format!("ref-shared-{i:02}")).collect();
    push_referrals(&fed, &node, &ids, 4).await;
    let mut pullers = Vec::new();
    for p in 0..4 {
        let version = VERSIONS[p % 2];
        let agent = node.agent("suwon/welfare", version);
        pullers.push(tokio::spawn(async move { drain_inbox_by(&agent, 3).await }));
    }
    let mut delivered = Vec::new();
    for puller in pullers {
        delivered.extend(puller.await.expect("puller"));
    }
    delivered.sort();
    assert_eq!(delivered, ids, "each message exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_of_another_agencys_message_is_answered_as_an_unknown_id_and_acks_nothing() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&sender, &fed.referral("ref-for-welfare")).await;
    let mut to_jobs = fed.referral("ref-for-jobs");
    to_jobs["to"] = json!("suwon/jobs");
    to_jobs["payload"]["recipient"]["agency"] = json!("suwon/jobs");
    push_accepted(&sender, &to_jobs).await;

    let jobs = node.agent("suwon/jobs", HttpVersion::Http2);
    assert_eq!(ids_of(&pull(&jobs, "").await), ["ref-for-jobs"]);
    // Another agency's message and an id nobody used get the same answer, word for word
    // but the id: an ack must not tell whether another agency's message exists.
    let foreign = ack(&jobs, &["ref-for-welfare"]).await;
    assert_problem(&foreign, 404, "not-found");
    let unknown = ack(&jobs, &["ref-nobody-sent"]).await;
    assert_problem(&unknown, 404, "not-found");
    assert_eq!(
        foreign.text().replace("ref-for-welfare", "ID"),
        unknown.text().replace("ref-nobody-sent", "ID"),
    );
    // All or nothing: jobs' own message in the same ack is not acknowledged either.
    let mixed = ack(&jobs, &["ref-for-jobs", "ref-for-welfare"]).await;
    assert_problem(&mixed, 404, "not-found");
    let seen: Value = status(&sender, "ref-for-jobs").await.json().expect("JSON");
    assert_eq!(seen["state"], json!("pulled"));

    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "").await), ["ref-for-welfare"]);
    let response = ack(&welfare, &["ref-for-welfare"]).await;
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_of_an_unknown_id_is_404_and_acks_nothing() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    push_accepted(
        &node.agent("suwon/employment", HttpVersion::Http1),
        &fed.referral("ref-known"),
    )
    .await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    assert_problem(&ack(&welfare, &["ref-unknown"]).await, 404, "not-found");
    let mixed = ack(&welfare, &["ref-known", "ref-unknown"]).await;
    assert_problem(&mixed, 404, "not-found");
    assert_eq!(ids_of(&pull(&welfare, "").await), ["ref-known"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_is_idempotent() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    push_accepted(
        &node.agent("suwon/employment", HttpVersion::Http1),
        &fed.referral("ref-twice"),
    )
    .await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "").await), ["ref-twice"]);
    for _ in 0..2 {
        let response = ack(&welfare, &["ref-twice", "ref-twice"]).await;
        assert_eq!(response.status.as_u16(), 200, "{}", response.text());
        assert_eq!(
            response.json::<Value>().expect("JSON"),
            json!({"acked": ["ref-twice"]})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ack_bodies_are_refused() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    for body in [
        json!({"ids": []}),
        json!({"ids": "ref-1"}),
        json!({"ids": [1]}),
        json!({"ids": ["ref-1"], "all": true}),
        json!(["ref-1"]),
        json!({ "ids": (0..1001).map(|i| format!("ref-{i}")).collect::<Vec<_>>() }),
    ] {
        let response = welfare
            .post_json("/v1/inbox/ack", &body)
            .await
            .expect("response");
        assert_problem(&response, 422, "schema-violation");
    }
}
