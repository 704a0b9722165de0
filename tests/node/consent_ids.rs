//! Consent ids belong to the agency that collected the consent: two agencies may both have
//! a consent `cns-1`, and neither can squat the other's id, shadow its consent or its
//! withdrawal, or learn whether it exists. A message cites its sender's own consent, or
//! names the collector (`consent_collected_by`), or cites the only consent with that id
//! that names both its sender and its recipient; anything else is refused, never sent
//! under whichever consent came first.

use plusgate::node::client::{Agent, HttpVersion};
use serde_json::{json, Value};

use crate::support::{
    assert_problem, consent_of, ids_of, pull, push, push_accepted, quick_federation,
    referral_between, Federation, Node,
};

async fn register(node: &Node, collector: &str, document: &Value) -> u16 {
    let response = node
        .agent(collector, HttpVersion::Http1)
        .post_json("/v1/consents", document)
        .await
        .expect("response");
    response.status.as_u16()
}

async fn withdraw(node: &Node, collector: &str, id: &str) {
    let response = node
        .agent(collector, HttpVersion::Http1)
        .post_json(
            &format!("/v1/consents/{id}/withdraw"),
            &json!({"reason": "the client withdrew by phone"}),
        )
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
}

async fn read(agent: &Agent, path: &str) -> (u16, Value) {
    let response = agent.get(path).await.expect("response");
    let status = response.status.as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The collecting agency of a consent as `GET /v1/consents/{id}` shows it.
fn collector_of(view: &Value) -> &str {
    view["document"]["collected_by"]["agency"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_taken_first_by_another_agency_neither_blocks_nor_shadows_the_collectors_consent() {
    let fed = Federation::new();
    let node = fed.start_bare("suwon", "");
    let id = "cns-squatted";
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);

    // Another agency registers the id first, naming the same recipient and the same
    // subject, with a consent it collected.
    let squat = consent_of(&fed, id, "suwon/finance", &["suwon/welfare"]);
    assert_eq!(register(&node, "suwon/finance", &squat).await, 201);
    // The real collector registers its consent under the same id: its own, not a
    // conflict (which would also tell it that someone else uses the id).
    let real = consent_of(&fed, id, "suwon/employment", &["suwon/welfare"]);
    assert_eq!(register(&node, "suwon/employment", &real).await, 201);

    // Each collector reads its own; the recipient of both must say which.
    let path = format!("/v1/consents/{id}");
    let (s, own) = read(&employment, &path).await;
    assert_eq!((s, collector_of(&own)), (200, "suwon/employment"));
    let finance = node.agent("suwon/finance", HttpVersion::Http1);
    let (s, own) = read(&finance, &path).await;
    assert_eq!((s, collector_of(&own)), (200, "suwon/finance"));
    let (s, problem) = read(&welfare, &path).await;
    assert_eq!(
        (s, &problem["type"]),
        (409, &json!("urn:plusgate:problem:consent-ambiguous"))
    );
    for collector in ["suwon/employment", "suwon/finance"] {
        let (s, c) = read(&welfare, &format!("{path}?collected_by={collector}")).await;
        assert_eq!((s, collector_of(&c)), (200, collector));
    }
    // An agency that is no party reads nothing, even naming the collector.
    let jobs = node.agent("suwon/jobs", HttpVersion::Http1);
    let (s, _) = read(&jobs, &format!("{path}?collected_by=suwon/employment")).await;
    assert_eq!(s, 404);

    // The collector withdraws its consent: its messages under the id are refused as
    // withdrawn, not carried on under the other agency's consent.
    withdraw(&node, "suwon/employment", id).await;
    let body = referral_between(
        &fed,
        "ref-after-withdrawal",
        "suwon/employment",
        "suwon/welfare",
        id,
    );
    assert_problem(&push(&employment, &body).await, 403, "consent-withdrawn");
    // And the other agency's consent is untouched by that withdrawal.
    let body = referral_between(&fed, "ref-by-finance", "suwon/finance", "suwon/welfare", id);
    push_accepted(&finance, &body).await;
    let pulled = pull(&welfare, "max=10").await;
    assert_eq!(ids_of(&pulled), ["ref-by-finance"]);
    assert_eq!(pulled[0]["consent_collected_by"], json!("suwon/finance"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_under_another_agencys_consent_names_it_when_the_id_is_not_unique() {
    let fed = Federation::new();
    let node = fed.start_bare("suwon", "");
    let id = "cns-shared";
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let jobs = node.agent("suwon/jobs", HttpVersion::Http1);
    // Collected by employment, naming welfare and jobs: welfare may pass data on to jobs
    // under it (the parties to a consent share among themselves).
    let shared = consent_of(
        &fed,
        id,
        "suwon/employment",
        &["suwon/welfare", "suwon/jobs"],
    );
    assert_eq!(register(&node, "suwon/employment", &shared).await, 201);

    // The only consent with the id that names both: no need to name its collector.
    let first = referral_between(&fed, "ref-1", "suwon/welfare", "suwon/jobs", id);
    push_accepted(&welfare, &first).await;

    // Another agency registers a consent under the same id naming both as well: from now
    // on a message that does not say which consent it means is refused, never sent under
    // the one that happens to come first.
    let squat = consent_of(&fed, id, "suwon/finance", &["suwon/welfare", "suwon/jobs"]);
    assert_eq!(register(&node, "suwon/finance", &squat).await, 201);
    let unnamed = referral_between(&fed, "ref-2", "suwon/welfare", "suwon/jobs", id);
    let problem = assert_problem(&push(&welfare, &unnamed).await, 403, "consent-ambiguous");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("consent_collected_by")),
        "{problem}"
    );
    let mut named = unnamed.clone();
    named["consent_collected_by"] = json!("suwon/employment");
    push_accepted(&welfare, &named).await;
    let mut under_finance = referral_between(&fed, "ref-3", "suwon/welfare", "suwon/jobs", id);
    under_finance["consent_collected_by"] = json!("suwon/finance");
    push_accepted(&welfare, &under_finance).await;

    // Employment withdraws its consent: the messages under it that wait are withheld; the
    // one under finance's consent with the same id is not.
    withdraw(&node, "suwon/employment", id).await;
    let pulled = pull(&jobs, "max=10").await;
    assert_eq!(ids_of(&pulled), ["ref-3"]);
    assert_eq!(pulled[0]["consent_collected_by"], json!("suwon/finance"));
    // And a message naming the withdrawn consent is refused for that reason.
    let mut late = referral_between(&fed, "ref-4", "suwon/welfare", "suwon/jobs", id);
    late["consent_collected_by"] = json!("suwon/employment");
    assert_problem(&push(&welfare, &late).await, 403, "consent-withdrawn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_that_does_not_name_the_sender_is_answered_as_no_consent_at_all() {
    let fed = Federation::new();
    let node = fed.start_bare("suwon", "");
    let finance = node.agent("suwon/finance", HttpVersion::Http1);
    // Employment's consent, withdrawn, about another subject: finance is no party to it,
    // so nothing about it may be told to finance, named collector or not.
    let mut other = consent_of(
        &fed,
        "cns-not-yours",
        "suwon/employment",
        &["suwon/welfare"],
    );
    other["subject"] = json!("ps-00000000deadbeef");
    assert_eq!(register(&node, "suwon/employment", &other).await, 201);
    withdraw(&node, "suwon/employment", "cns-not-yours").await;
    let mut answers = Vec::new();
    for consent_id in ["cns-not-yours", "cns-nobody-has"] {
        let mut body =
            referral_between(&fed, "ref-a", "suwon/finance", "suwon/welfare", consent_id);
        body["consent_collected_by"] = json!("suwon/employment");
        let response = push(&finance, &body).await;
        assert_problem(&response, 403, "consent-unknown");
        answers.push(response.text().replace(consent_id, "ID"));
    }
    assert_eq!(answers[0], answers[1]);
}

/// A consent that travels with a message from another center is kept under its own
/// collector: a consent with the same id collected at the receiving center neither
/// replaces it nor is used in its place, and the collector's withdrawal reaches the one
/// it withdrew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_from_another_center_with_an_id_used_here_stays_its_collectors() {
    let (fed, nodes) = quick_federation(&["suwon", "gangseo"], &["suwon", "gangseo"]);
    let (suwon, gangseo) = (&nodes[0], &nodes[1]);
    let referral = fed.example("referral-remote");
    let to = referral["to"].as_str().expect("to").to_owned();
    assert!(to.starts_with("gangseo/"), "{to}");
    let id = referral["consent_id"].as_str().expect("consent").to_owned();
    // At gangseo, the recipient itself collected a consent under the same id, about the
    // same subject, which does not name itself as a recipient: checked against it, the
    // referral from suwon would be refused.
    let local = consent_of(&fed, &id, &to, &["suwon/employment", "gangseo/jobs"]);
    assert_eq!(register(gangseo, &to, &local).await, 201);

    push_accepted(
        &suwon.agent("suwon/employment", HttpVersion::Http1),
        &referral,
    )
    .await;
    let recipient = gangseo.agent(&to, HttpVersion::Http1);
    let pulled = pull(&recipient, "max=10&wait=30").await;
    assert_eq!(ids_of(&pulled), [referral["id"].as_str().expect("id")]);
    assert_eq!(pulled[0]["consent_collected_by"], json!("suwon/employment"));

    // The collector at suwon withdraws its consent; gangseo hears of it, for that consent
    // only: its own under the same id stays granted.
    withdraw(suwon, "suwon/employment", &id).await;
    let theirs = format!("/v1/consents/{id}?collected_by=suwon/employment");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (s, c) = read(&recipient, &theirs).await;
        assert_eq!(s, 200, "{c}");
        if c["status"] == json!("withdrawn") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never told: {c}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (s, own) = read(&recipient, &format!("/v1/consents/{id}")).await;
    assert_eq!((s, collector_of(&own)), (200, to.as_str()));
    assert_eq!(own["status"], json!("granted"));
}
