//! What a privacy officer can ask of the record: a subject's disclosure history, as JSON and
//! CSV, each query itself audited; nobody but a registered officer may ask.

use std::time::{Duration, Instant};

use plusgate::client::HttpVersion;
use serde_json::Value;

use crate::support::{ack, assert_problem, ids_of, pull, push_accepted, with_id, Federation};

#[tokio::test]
async fn an_officer_sees_who_received_what_about_a_subject_and_the_query_is_audited() {
    let fed = Federation::new();
    let a = fed.start("suwon");
    let b = fed.start("gangseo");
    let employment = a.agent("suwon/employment", HttpVersion::Http2);
    let local = fed.referral("ref-privacy-local");
    let subject = local["subject"].as_str().expect("subject").to_owned();
    push_accepted(&employment, &local).await;
    let remote = with_id(fed.example("referral-remote"), "ref-privacy-remote");
    assert_eq!(remote["subject"], local["subject"]);
    push_accepted(&employment, &remote).await;
    let welfare = a.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(
        ids_of(&pull(&welfare, "max=10").await),
        ["ref-privacy-local"]
    );
    assert_eq!(
        ack(&welfare, &["ref-privacy-local"]).await.status.as_u16(),
        200
    );

    let path = format!("/v1/privacy/subjects/{subject}/disclosures");
    let officer = a.agent("suwon/privacy-officer", HttpVersion::Http2);
    // Wait until the remote referral is delivered, so the answer is complete.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let response = officer.get(&path).await.expect("response");
        assert_eq!(response.status.as_u16(), 200, "{}", response.text());
        let report: Value = response.json().expect("JSON");
        let delivered = report["disclosures"]
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["message_id"] == "ref-privacy-remote" && d["delivered_to_node"].is_array());
        if delivered {
            break report;
        }
        assert!(Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let list = report["disclosures"].as_array().expect("list");
    assert_eq!(list.len(), 2, "{report}");
    let local_row = &list[0];
    assert_eq!(local_row["message_id"], "ref-privacy-local");
    assert_eq!(local_row["to"], "suwon/welfare");
    assert_eq!(local_row["consent_id"], local["consent_id"]);
    assert_eq!(
        local_row["first_pulled"][0],
        "urn:plusgate:agency:suwon:welfare"
    );
    assert!(local_row["acked_at"].is_string(), "{local_row}");
    let items: Vec<&str> = local_row["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        items.contains(&"summary") && items.contains(&"needs"),
        "{items:?}"
    );
    assert_eq!(list[1]["delivered_to_node"][0], "urn:plusgate:node:gangseo");
    // Field names only: nothing of what the payload says.
    let summary = local["payload"]["summary"].as_str().expect("summary");
    assert!(!report.to_string().contains(summary));

    // The same as CSV.
    let csv = officer
        .get(&format!("{path}?format=csv"))
        .await
        .expect("response");
    assert_eq!(csv.status.as_u16(), 200);
    assert_eq!(csv.content_type(), Some("text/csv; charset=utf-8"));
    let text = csv.text();
    let rows: Vec<&str> = text.trim_end().split("\r\n").collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[1].starts_with("ref-privacy-local,referral,suwon/employment,suwon/welfare"));

    // Agencies and nodes may not ask.
    assert_problem(
        &employment.get(&path).await.expect("response"),
        403,
        "wrong-role",
    );
    let node_cert = fed.node_identity("suwon");
    let node = a.agent_as(Some(&node_cert), HttpVersion::Http1);
    assert_problem(&node.get(&path).await.expect("response"), 403, "wrong-role");

    // The receiving node's officer sees what it received.
    let officer_b = b.agent("gangseo/privacy-officer", HttpVersion::Http1);
    let report_b: Value = officer_b
        .get(&path)
        .await
        .expect("response")
        .json()
        .expect("JSON");
    let list_b = report_b["disclosures"].as_array().expect("list");
    assert_eq!(list_b.len(), 1, "{report_b}");
    assert_eq!(list_b[0]["message_id"], "ref-privacy-remote");
    assert_eq!(list_b[0]["from"], "suwon/employment");

    // Every query is in the audit chain, with the officer as actor.
    let (mut a, _b) = (a, b);
    assert!(a.stop().success());

    // A store written before the index existed gets it at start: drop the index and see
    // the same answer after a restart.
    {
        let db = sled::Config::new()
            .path(fed.data_dir("suwon"))
            .segment_size(8 << 20)
            .open()
            .expect("open the node's sled directory");
        for item in db.scan_prefix([b'u']) {
            db.remove(item.expect("key").0).expect("remove");
        }
        db.remove(b"ssubject-index").expect("remove");
        db.flush().expect("flush");
    }
    a.restart();
    let officer = a.agent("suwon/privacy-officer", HttpVersion::Http2);
    let again: Value = officer
        .get(&path)
        .await
        .expect("response")
        .json()
        .expect("JSON");
    assert_eq!(again["disclosures"], report["disclosures"]);
    assert!(a.stop().success());
    let store = plusgate::store::Store::open(&fed.data_dir("suwon")).expect("store");
    let queries = store
        .audit_entries()
        .map(|e| e.expect("entry"))
        .filter(|e| serde_json::to_value(e.action).expect("action") == "queried")
        .filter(|e| e.subject == subject && e.actor == "urn:plusgate:officer:suwon:privacy-officer")
        .count();
    assert!(queries >= 2, "{queries} queries audited");
}
