//! What a privacy officer can ask of the record: a subject's disclosure history, as JSON and
//! CSV, each query itself audited; nobody but a registered officer may ask.

use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;
use serde_json::Value;

use crate::support::{ack, assert_problem, ids_of, pull, push_accepted, with_id, Federation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let store = plusgate::node::store::Store::open(&fed.data_dir("suwon")).expect("store");
    let queries = store
        .audit_entries()
        .map(|e| e.expect("entry"))
        .filter(|e| serde_json::to_value(e.action).expect("action") == "queried")
        .filter(|e| e.subject == subject && e.actor == "urn:plusgate:officer:suwon:privacy-officer")
        .count();
    assert!(queries >= 2, "{queries} queries audited");
}

/// A disclosure as the test compares it: message, from, to, consent, the node it went on
/// to (if any), who first pulled it (if anyone), and whether it was acknowledged.
type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    bool,
);

fn rows(report: &Value) -> Vec<Row> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    report["disclosures"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            (
                text(&d["message_id"]),
                text(&d["from"]),
                text(&d["to"]),
                text(&d["consent_id"]),
                d["delivered_to_node"][0].as_str().map(str::to_owned),
                d["first_pulled"][0].as_str().map(str::to_owned),
                d["acked_at"].is_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_center_s_disclosure_history_is_exactly_what_it_delivered_in_a_three_center_scenario()
{
    let fed = Federation::with_centers(&["suwon", "gangseo", "jeongeup"]);
    let a = fed.start("suwon");
    let b = fed.start("gangseo");
    let c = fed.start("jeongeup");
    let employment = a.agent("suwon/employment", HttpVersion::Http2);
    let referral_to = |id: &str, to: &str| {
        let mut body = fed.referral(id);
        body["to"] = serde_json::json!(to);
        body["payload"]["recipient"]["agency"] = serde_json::json!(to);
        body
    };
    let subject = fed.referral("x")["subject"]
        .as_str()
        .expect("subject")
        .to_owned();

    // The script: one referral to each center's welfare team, one that no consent covers.
    push_accepted(&employment, &referral_to("ref-3-local", "suwon/welfare")).await;
    push_accepted(
        &employment,
        &referral_to("ref-3-gangseo", "gangseo/welfare"),
    )
    .await;
    push_accepted(
        &employment,
        &referral_to("ref-3-jeongeup", "jeongeup/welfare"),
    )
    .await;
    assert_problem(
        &crate::support::push(&employment, &referral_to("ref-3-refused", "suwon/finance")).await,
        403,
        "consent-recipient-not-named",
    );
    // Suwon's welfare team pulls and acknowledges.
    let suwon_welfare = a.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(
        ids_of(&pull(&suwon_welfare, "max=10").await),
        ["ref-3-local"]
    );
    assert_eq!(
        ack(&suwon_welfare, &["ref-3-local"]).await.status.as_u16(),
        200
    );
    // Gangseo's pulls, acknowledges and answers under the consent it collected.
    let gangseo_welfare = b.agent("gangseo/welfare", HttpVersion::Http1);
    let got = wait_for_messages(&gangseo_welfare).await;
    assert_eq!(got, ["ref-3-gangseo"]);
    assert_eq!(
        ack(&gangseo_welfare, &["ref-3-gangseo"])
            .await
            .status
            .as_u16(),
        200
    );
    let mut answer = with_id(fed.example("referral-status"), "sts-3-gangseo");
    answer["consent_id"] = fed.example("consent-reply-remote")["id"].clone();
    answer["payload"]["referral_id"] = serde_json::json!("ref-3-gangseo");
    answer["payload"]["changed_by"]["agency"] = serde_json::json!("gangseo/welfare");
    push_accepted(&gangseo_welfare, &answer).await;
    // Jeongeup's pulls but does not acknowledge.
    let jeongeup_welfare = c.agent("jeongeup/welfare", HttpVersion::Http1);
    assert_eq!(
        wait_for_messages(&jeongeup_welfare).await,
        ["ref-3-jeongeup"]
    );
    // Suwon's employment centre pulls the answer and acknowledges it.
    assert_eq!(wait_for_messages(&employment).await, ["sts-3-gangseo"]);
    assert_eq!(
        ack(&employment, &["sts-3-gangseo"]).await.status.as_u16(),
        200
    );

    let path = format!("/v1/privacy/subjects/{subject}/disclosures");
    let s = |v: &str| v.to_owned();
    let agency = |id: &str| Some(format!("urn:plusgate:agency:{}", id.replace('/', ":")));
    let node = |c: &str| Some(format!("urn:plusgate:node:{c}"));
    let (referrals, answers) = (s("cns-example-0001"), s("cns-example-0003"));
    assert_eq!(
        history(&a, "suwon", &path).await,
        vec![
            (
                s("ref-3-local"),
                s("suwon/employment"),
                s("suwon/welfare"),
                referrals.clone(),
                None,
                agency("suwon/welfare"),
                true
            ),
            (
                s("ref-3-gangseo"),
                s("suwon/employment"),
                s("gangseo/welfare"),
                referrals.clone(),
                node("gangseo"),
                None,
                false
            ),
            (
                s("ref-3-jeongeup"),
                s("suwon/employment"),
                s("jeongeup/welfare"),
                referrals.clone(),
                node("jeongeup"),
                None,
                false
            ),
            (
                s("sts-3-gangseo"),
                s("gangseo/welfare"),
                s("suwon/employment"),
                answers.clone(),
                None,
                agency("suwon/employment"),
                true
            ),
        ]
    );
    assert_eq!(
        history(&b, "gangseo", &path).await,
        vec![
            (
                s("ref-3-gangseo"),
                s("suwon/employment"),
                s("gangseo/welfare"),
                referrals.clone(),
                None,
                agency("gangseo/welfare"),
                true
            ),
            (
                s("sts-3-gangseo"),
                s("gangseo/welfare"),
                s("suwon/employment"),
                answers,
                node("suwon"),
                None,
                false
            ),
        ]
    );
    assert_eq!(
        history(&c, "jeongeup", &path).await,
        vec![(
            s("ref-3-jeongeup"),
            s("suwon/employment"),
            s("jeongeup/welfare"),
            referrals,
            None,
            agency("jeongeup/welfare"),
            false
        )]
    );
}

/// The disclosure history `center`'s officer reads at `path`, once every hand-over the
/// center made has its receipt (a minute at most).
async fn history(node: &crate::support::Node, center: &str, path: &str) -> Vec<Row> {
    let officer = node.agent(&format!("{center}/privacy-officer"), HttpVersion::Http1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report: Value = officer
            .get(path)
            .await
            .expect("response")
            .json()
            .expect("JSON");
        let pending = report["disclosures"]
            .as_array()
            .expect("list")
            .iter()
            .any(|d| {
                d["to"]
                    .as_str()
                    .is_some_and(|to| !to.starts_with(&format!("{center}/")))
                    && d["delivered_to_node"].is_null()
            });
        if !pending || Instant::now() > deadline {
            return rows(&report);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pulls until something arrives (a minute at most).
async fn wait_for_messages(agent: &plusgate::node::client::Agent) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = ids_of(&pull(agent, "max=10&wait=2").await);
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
    }
}

/// Regression: the officer endpoints answered any request carrying the officer's client
/// certificate, so another site's page could make the officer's browser query the record
/// (each query an audited look at a person's data) and read or cache the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_endpoints_refuse_cross_site_requests_and_answer_no_store() {
    use hyper::Method;

    let fed = Federation::new();
    let mut a = fed.start("suwon");
    let officer = a.agent("suwon/privacy-officer", HttpVersion::Http1);
    let own = format!("https://{}:{}", officer.server_name, officer.addr.port());
    let subject_path = "/v1/privacy/subjects/ps-0123456789abcdef/disclosures";
    let endpoints = [
        subject_path,
        "/v1/privacy/consents",
        "/v1/privacy/refusals",
        "/v1/privacy/withdrawals",
        "/v1/privacy/audit",
        "/console/",
        "/console/app.js",
    ];
    let cross_site: [&[(&str, &str)]; 4] = [
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "https://evil.example")],
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://evil.example"),
        ],
    ];
    for path in endpoints {
        for method in [Method::GET, Method::POST] {
            for headers in cross_site {
                let response = officer
                    .connect()
                    .await
                    .expect("connect")
                    .send_with_headers(method.clone(), path, headers, None)
                    .await
                    .expect("response");
                assert_problem(&response, 403, "cross-site-request");
                assert_eq!(response.headers["cache-control"], "no-store", "{path}");
            }
        }
    }
    // The node's own pages, an address typed by the officer, and non-browser clients.
    let same_origin: [&[(&str, &str)]; 4] = [
        &[("sec-fetch-site", "same-origin")],
        &[("sec-fetch-site", "none")],
        &[("sec-fetch-site", "same-origin"), ("origin", &own)],
        &[],
    ];
    for path in endpoints {
        for headers in same_origin {
            let response = officer
                .connect()
                .await
                .expect("connect")
                .send_with_headers(Method::GET, path, headers, None)
                .await
                .expect("response");
            assert_eq!(response.status.as_u16(), 200, "{path} {headers:?}");
            assert_eq!(response.headers["cache-control"], "no-store", "{path}");
        }
    }
    // Refusals for other roles are no-store too.
    let agency = a.agent("suwon/employment", HttpVersion::Http2);
    let refused = agency.get("/v1/privacy/consents").await.expect("response");
    assert_problem(&refused, 403, "wrong-role");
    assert_eq!(refused.headers["cache-control"], "no-store");

    // Only the admitted queries are in the audit chain: 4 of the disclosures path.
    assert!(a.stop().success());
    let store = plusgate::node::store::Store::open(&fed.data_dir("suwon")).expect("store");
    let queries = store
        .audit_entries()
        .map(|e| e.expect("entry"))
        .filter(|e| serde_json::to_value(e.action).expect("action") == "queried")
        .filter(|e| e.subject == "ps-0123456789abcdef")
        .count();
    assert_eq!(queries, same_origin.len(), "queries audited");
}

/// The disclosures report reads `format` as the other reports do: `csv` or `json` (or
/// empty: not given); any other value is refused with 400, where it once answered 200 with
/// JSON (found by schemathesis, `api_properties`). Given, it wins over `Accept`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosures_format_other_than_csv_or_json_is_refused() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let officer = node.agent("suwon/privacy-officer", HttpVersion::Http1);
    let path = "/v1/privacy/subjects/ps-0123456789abcdef/disclosures";
    for bad in ["AAA", "CSV", "xml"] {
        let response = officer
            .get(&format!("{path}?format={bad}"))
            .await
            .expect("response");
        assert_problem(&response, 400, "bad-request");
    }
    for (query, csv) in [("", false), ("?format=", false), ("?format=json", false)] {
        let response = officer
            .get(&format!("{path}{query}"))
            .await
            .expect("response");
        assert_eq!(
            response.status.as_u16(),
            200,
            "{query}: {}",
            response.text()
        );
        let media = response.headers["content-type"].to_str().expect("ASCII");
        assert_eq!(media.starts_with("text/csv"), csv, "{query}: {media}");
    }
    let response = officer
        .get(&format!("{path}?format=csv"))
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    let media = response.headers["content-type"].to_str().expect("ASCII");
    assert!(media.starts_with("text/csv"), "{media}");
}
