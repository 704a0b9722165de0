//! The consent registry: the collecting agency registers a consent and may withdraw it; the
//! collector and the recipients it names may read it; every consent event is audited.

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{assert_problem, violation_pointers, Federation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_registers_a_consent_once_and_a_changed_one_needs_a_new_id() {
    let fed = Federation::new();
    let node = fed.start_bare("suwon", "");
    let consent = fed.example("consent");
    let collector = consent["collected_by"]["agency"]
        .as_str()
        .expect("collector");
    let agent = node.agent(collector, HttpVersion::Http2);
    let first = agent
        .post_json("/v1/consents", &consent)
        .await
        .expect("response");
    assert_eq!(first.status.as_u16(), 201, "{}", first.text());
    let first: Value = first.json().expect("JSON");
    assert_eq!(first["id"], consent["id"]);
    assert_eq!(first["status"], json!("granted"));

    // The same document again: nothing new, the original registration.
    let again = agent
        .post_json("/v1/consents", &consent)
        .await
        .expect("response");
    assert_eq!(again.status.as_u16(), 200, "{}", again.text());
    let again: Value = again.json().expect("JSON");
    assert_eq!(again["registered_at"], first["registered_at"]);

    // The same id for a different document is refused.
    let mut changed = consent.clone();
    changed["purposes"] = json!(["medical-support"]);
    let response = agent
        .post_json("/v1/consents", &changed)
        .await
        .expect("response");
    assert_problem(&response, 409, "consent-conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_that_is_invalid_or_someone_elses_is_refused() {
    let fed = Federation::new();
    let node = fed.start_bare("suwon", "");
    let consent = fed.example("consent");
    let collector = consent["collected_by"]["agency"]
        .as_str()
        .expect("collector");
    let agent = node.agent(collector, HttpVersion::Http1);

    let mut missing = consent.clone();
    missing.as_object_mut().expect("object").remove("purposes");
    let problem = assert_problem(
        &agent
            .post_json("/v1/consents", &missing)
            .await
            .expect("response"),
        422,
        "schema-violation",
    );
    assert!(!violation_pointers(&problem).is_empty(), "{problem}");

    let mut with_rrn = consent.clone();
    with_rrn["retention"]["basis"] = json!("주민번호 900101-1234567 보관");
    let problem = assert_problem(
        &agent
            .post_json("/v1/consents", &with_rrn)
            .await
            .expect("response"),
        422,
        "schema-violation",
    );
    assert_eq!(violation_pointers(&problem), ["/retention/basis"]);

    // Another agency cannot register a consent it did not collect.
    let other = node.agent("suwon/jobs", HttpVersion::Http1);
    let response = other
        .post_json("/v1/consents", &consent)
        .await
        .expect("response");
    assert_problem(&response, 403, "not-collector");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_and_the_recipients_read_it_and_only_the_collector_withdraws_it() {
    let fed = Federation::new();
    let mut node = fed.start_bare("suwon", "");
    let consent = fed.example("consent");
    let id = consent["id"].as_str().expect("id").to_owned();
    let collector = consent["collected_by"]["agency"]
        .as_str()
        .expect("collector");
    let recipient = consent["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .filter_map(Value::as_str)
        .find(|r| r.starts_with("suwon/"))
        .expect("a recipient at this center")
        .to_owned();
    let owner = node.agent(collector, HttpVersion::Http1);
    let response = owner
        .post_json("/v1/consents", &consent)
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 201, "{}", response.text());

    let path = format!("/v1/consents/{id}");
    for reader in [collector, recipient.as_str()] {
        let seen = node
            .agent(reader, HttpVersion::Http2)
            .get(&path)
            .await
            .expect("response");
        assert_eq!(seen.status.as_u16(), 200, "{reader}: {}", seen.text());
        let seen: Value = seen.json().expect("JSON");
        assert_eq!(seen["document"], consent);
        assert_eq!(seen["status"], json!("granted"));
    }
    let outsider = node.agent("suwon/finance", HttpVersion::Http2);
    assert_problem(
        &outsider.get(&path).await.expect("response"),
        404,
        "not-found",
    );

    // Only the collector withdraws it; anyone else is answered as for an unknown id (the
    // answer must not tell whether another agency's consent exists); a second withdrawal
    // changes nothing.
    let withdraw = format!("/v1/consents/{id}/withdraw");
    let body = json!({"reason": "본인이 전화로 철회 요청"});
    let response = node
        .agent(&recipient, HttpVersion::Http1)
        .post_json(&withdraw, &body)
        .await
        .expect("response");
    assert_problem(&response, 404, "not-found");
    let unknown = node
        .agent(&recipient, HttpVersion::Http1)
        .post_json("/v1/consents/consent-nobody-registered/withdraw", &body)
        .await
        .expect("response");
    assert_problem(&unknown, 404, "not-found");
    assert_eq!(
        response.text().replace(id.as_str(), "ID"),
        unknown.text().replace("consent-nobody-registered", "ID"),
    );
    let response = owner.post_json(&withdraw, &body).await.expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    let withdrawn: Value = response.json().expect("JSON");
    assert_eq!(withdrawn["status"], json!("withdrawn"));
    let history = withdrawn["history"].as_array().expect("history");
    assert_eq!(
        history.last().expect("change")["status"],
        json!("withdrawn")
    );
    assert_eq!(history.last().expect("change")["by"], json!(collector));
    let again: Value = owner
        .post_json(&withdraw, &body)
        .await
        .expect("response")
        .json()
        .expect("JSON");
    assert_eq!(again["history"], withdrawn["history"]);
    assert_problem(
        &owner
            .post_json("/v1/consents/cns-nobody/withdraw", &body)
            .await
            .expect("response"),
        404,
        "not-found",
    );

    // Both events are in the audit chain, with the collector as actor.
    assert!(node.stop().success());
    let store = plusgate::node::store::Store::open(&fed.data_dir("suwon")).expect("store");
    let events: Vec<(String, String)> = store
        .audit_entries()
        .map(|e| e.expect("entry"))
        .filter(|e| e.consent_id == id && e.message_id.is_empty())
        .map(|e| {
            let action = serde_json::to_value(e.action).expect("action");
            (action.as_str().expect("name").to_owned(), e.actor)
        })
        .collect();
    let (c, a) = collector.split_once('/').expect("agency id");
    let actor = format!("urn:plusgate:agency:{c}:{a}");
    assert_eq!(
        events,
        [
            ("consent-registered".to_owned(), actor.clone()),
            ("consent-withdrawn".to_owned(), actor)
        ]
    );
}

/// Who changed a consent and when is the node's record, never the caller's say: a
/// document's `status_history` and a withdrawal's `at` are kept as what they are, the
/// caller's statement (`stated_at`), so a report cannot show an action nobody took, at a
/// time nobody saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_records_who_changed_a_consent_and_when_whatever_the_caller_states() {
    let fed = Federation::new();
    let node = fed.start_bare("suwon", "");
    let mut consent = fed.example("consent");
    let collector = consent["collected_by"]["agency"]
        .as_str()
        .expect("collector")
        .to_owned();
    consent["status_history"] = json!([
        {"status": "granted", "at": "2001-01-01T00:00:00Z", "by": "suwon/jobs"},
    ]);
    let id = consent["id"].as_str().expect("id").to_owned();
    let owner = node.agent(&collector, HttpVersion::Http1);
    let response = owner
        .post_json("/v1/consents", &consent)
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 201, "{}", response.text());
    let seen: Value = owner
        .get(&format!("/v1/consents/{id}"))
        .await
        .expect("response")
        .json()
        .expect("JSON");
    let history = seen["history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "{seen}");
    assert_eq!(
        history[0]["by"],
        json!(collector),
        "the registering agency, not the document's"
    );
    assert_eq!(history[0]["at"], seen["registered_at"], "the node's time");
    assert_eq!(history[0]["stated_at"], json!("2001-01-01T00:00:00Z"));

    let response = owner
        .post_json(
            &format!("/v1/consents/{id}/withdraw"),
            &json!({"at": "2001-02-03T04:05:06Z", "reason": "서면 철회서 접수"}),
        )
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    let withdrawn: Value = response.json().expect("JSON");
    let change = withdrawn["history"]
        .as_array()
        .and_then(|h| h.last())
        .expect("change")
        .clone();
    assert_eq!(change["status"], json!("withdrawn"));
    assert_eq!(change["by"], json!(collector));
    assert_eq!(change["stated_at"], json!("2001-02-03T04:05:06Z"));
    let at = change["at"].as_str().expect("at");
    assert!(
        at > "2020",
        "recorded at the node's time, not the stated one: {at}"
    );
}
