//! The privacy officer's reports over the whole record: consents (filtered by subject,
//! agency, status and registration time), refusals, withdrawals and the audit chain's
//! status, as JSON and CSV, through the API and through `plusgate privacy …`; every query
//! audited; nobody but a registered officer may ask.

use std::time::Duration;

use plusgate::node::client::{Agent, HttpVersion};
use serde_json::{json, Value};

use crate::support::{assert_problem, run_to_exit, Federation, Finished, Node};

const OFFICER: &str = "suwon/privacy-officer";

/// The UTF-8 byte-order mark every officer's CSV starts with.
const UTF8_BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Registers the example consent, one to be withdrawn and one past its validity; withdraws
/// the second. Returns the three ids.
async fn consents(node: &Node, fed: &Federation) -> [String; 3] {
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let example = fed.example("consent");
    let mut withdrawn = example.clone();
    withdrawn["id"] = json!("cns-test-withdrawn");
    withdrawn["subject"] = json!("ps-00000000000b0b0b");
    let mut expired = example.clone();
    expired["id"] = json!("cns-test-expired");
    expired["valid_from"] = json!("2020-01-01T00:00:00+09:00");
    expired["valid_until"] = json!("2021-01-01T00:00:00+09:00");
    for c in [&example, &withdrawn, &expired] {
        let r = agent.post_json("/v1/consents", c).await.expect("response");
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    }
    let r = agent
        .post_json(
            "/v1/consents/cns-test-withdrawn/withdraw",
            &json!({"reason": "전화로 철회, \"본인 요청\""}),
        )
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    [example, withdrawn, expired].map(|c| c["id"].as_str().expect("id").to_owned())
}

async fn get(officer: &Agent, path: &str) -> Value {
    let r = officer.get(path).await.expect("response");
    assert_eq!(r.status.as_u16(), 200, "{path}: {}", r.text());
    r.json().expect("JSON")
}

/// Asserts that the consent report for `query` lists exactly `expected`.
async fn check(officer: &Agent, query: &str, expected: &[&String]) {
    let report = get(officer, &format!("/v1/privacy/consents?{query}")).await;
    let mut got = ids(&report, "consents", "id");
    got.sort();
    let mut expected: Vec<String> = expected.iter().map(|s| (*s).clone()).collect();
    expected.sort();
    assert_eq!(got, expected, "{query}");
}

fn ids(report: &Value, key: &str, field: &str) -> Vec<String> {
    report[key]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r[field].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_filters_consents_and_withdrawals_and_gets_them_as_csv() {
    let fed = Federation::new();
    let mut node = fed.start_bare("suwon", "");
    let [granted, withdrawn, expired] = consents(&node, &fed).await;
    let officer = node.agent(OFFICER, HttpVersion::Http2);

    let all = get(&officer, "/v1/privacy/consents").await;
    assert_eq!(all["truncated"], false);
    let rows = all["consents"].as_array().expect("list");
    assert_eq!(rows.len(), 3, "{all}");
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).expect("row").clone();
    let g = row(&granted);
    assert_eq!(g["status"], "granted");
    assert_eq!(g["collected_by"], "suwon/employment");
    let example = fed.example("consent");
    assert_eq!(g["recipients"], example["recipients"]);
    assert_eq!(g["retention_period"], example["retention"]["period"]);
    let items = example["items"].as_array().expect("items");
    assert_eq!(g["items"].as_array().expect("items").len(), items.len());
    assert!(g.get("withdrawn_at").is_none(), "{g}");
    assert_eq!(row(&withdrawn)["status"], "withdrawn");
    assert!(row(&withdrawn)["withdrawn_at"].is_string());
    assert_eq!(row(&expired)["status"], "expired");

    check(&officer, "status=granted", &[&granted]).await;
    check(&officer, "status=withdrawn", &[&withdrawn]).await;
    check(&officer, "status=expired", &[&expired]).await;
    check(
        &officer,
        "subject=ps-00000000000b0b0b&agency=gangseo%2Fwelfare",
        &[&withdrawn],
    )
    .await;
    check(&officer, "agency=suwon%2Ffinance", &[]).await;
    check(
        &officer,
        "from=2000-01-01&to=2999-12-31",
        &[&granted, &withdrawn, &expired],
    )
    .await;
    check(&officer, "from=2999-01-01", &[]).await;
    check(&officer, "to=2000-01-01T00:00:00Z", &[]).await;

    // CSV: a header and a row per consent, lists joined with `;`.
    let csv = officer
        .get("/v1/privacy/consents?status=granted&format=csv")
        .await
        .expect("response");
    assert_eq!(csv.content_type(), Some("text/csv; charset=utf-8"));
    let text = csv.text();
    let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("\u{FEFF}id,subject,collected_by,recipients,purposes,items,"));
    let recipients: Vec<&str> = example["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        lines[1].contains(&format!(",{},", recipients.join(";"))) && lines[1].contains(",granted,"),
        "{text}"
    );

    // Withdrawals, with the reason as given; quoted in CSV.
    let w = get(&officer, "/v1/privacy/withdrawals").await;
    assert_eq!(
        ids(&w, "withdrawals", "consent_id"),
        std::slice::from_ref(&withdrawn)
    );
    assert_eq!(w["withdrawals"][0]["by"], "suwon/employment");
    assert_eq!(w["withdrawals"][0]["reason"], "전화로 철회, \"본인 요청\"");
    let none = get(&officer, "/v1/privacy/withdrawals?from=2999-01-01").await;
    assert_eq!(none["withdrawals"], json!([]));
    // The CSV's bytes: a UTF-8 byte-order mark (so Excel on Korean Windows reads UTF-8,
    // not CP949), then the Hangul of the reason as it was written.
    let body = officer
        .get("/v1/privacy/withdrawals?format=csv")
        .await
        .expect("response")
        .body;
    assert_eq!(body[..3], UTF8_BOM, "{body:?}");
    let csv = std::str::from_utf8(&body[3..]).expect("UTF-8 after the BOM");
    assert!(csv.starts_with("consent_id,"), "{csv}");
    assert!(
        csv.contains(",suwon/employment,\"전화로 철회, \"\"본인 요청\"\"\"\r\n"),
        "{csv}"
    );

    // Bad filters are refused, naming the parameter.
    for (query, named) in [
        ("status=revoked", "`status`"),
        ("from=26-11-2026", "`from`"),
        ("to=2026-11-26T25:00:00Z", "`to`"),
        ("agency=nobody", "`agency`"),
        ("colour=red", "`colour`"),
    ] {
        let r = officer
            .get(&format!("/v1/privacy/consents?{query}"))
            .await
            .expect("response");
        let problem = assert_problem(&r, 400, "bad-request");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(named)),
            "{problem}"
        );
    }

    // Only registered officers: agencies and nodes get 403; other methods 405.
    let agency = node.agent("suwon/employment", HttpVersion::Http1);
    let node_cert = fed.node_identity("suwon");
    let as_node = node.agent_as(Some(&node_cert), HttpVersion::Http1);
    for path in [
        "/v1/privacy/consents",
        "/v1/privacy/refusals",
        "/v1/privacy/withdrawals",
        "/v1/privacy/audit",
    ] {
        for who in [&agency, &as_node] {
            let r = who.get(path).await.expect("response");
            assert_problem(&r, 403, "wrong-role");
        }
        let r = officer.post_json(path, &json!({})).await.expect("response");
        assert_problem(&r, 405, "method-not-allowed");
    }

    // Every answered query is in the audit chain, as the officer, with its filters.
    assert!(node.stop().success());
    let store = plusgate::node::store::Store::open(&fed.data_dir("suwon")).expect("store");
    let queries: Vec<_> = store
        .audit_entries()
        .map(|e| e.expect("entry"))
        .filter(|e| e.action == plusgate::core::audit::Action::Queried)
        .collect();
    assert!(queries
        .iter()
        .all(|e| e.actor == "urn:plusgate:officer:suwon:privacy-officer"));
    let details: Vec<&str> = queries.iter().filter_map(|e| e.detail.as_deref()).collect();
    assert!(
        details.contains(&"consents?status=withdrawn"),
        "{details:?}"
    );
    assert!(details.contains(&"withdrawals (csv)"), "{details:?}");
    let about_subject = queries
        .iter()
        .find(|e| {
            e.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("consents?subject="))
        })
        .expect("a query by subject");
    assert_eq!(about_subject.subject, "ps-00000000000b0b0b");
    // 8 checks + 2 lists + 2 CSVs + 1 empty range; refused requests are not answered.
    assert_eq!(queries.len(), 13, "{details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_report_verifies_the_chain_from_its_last_checkpoint_and_lists_refusals() {
    let fed = Federation::new();
    fed.set_option("suwon", "federation", "checkpoint_every", "3");
    let mut node = fed.start_bare("suwon", "");
    consents(&node, &fed).await;
    let officer = node.agent(OFFICER, HttpVersion::Http1);
    let status = get(&officer, "/v1/privacy/audit").await;
    assert_eq!(status["verified"], true, "{status}");
    assert_eq!(status["verified_from"], "checkpoint", "{status}");
    assert_eq!(status["length"], 4, "{status}");
    let covered = status["checkpoint"]["length"].as_u64().expect("checkpoint");
    assert!(covered >= 3, "{status}");
    assert_eq!(status["checkpoint"]["seq"], covered - 1, "{status}");
    assert_eq!(status["checkpoint"]["signature_valid"], true, "{status}");
    assert_eq!(status["entries_checked"], 4 - covered, "{status}");
    assert!(status["checked_at"].is_string());
    let full = get(&officer, "/v1/privacy/audit?verify=full").await;
    assert_eq!(full["verified"], true, "{full}");
    assert_eq!(full["verified_from"], "genesis");
    // The first status query is itself an entry now.
    assert_eq!(full["length"], 5, "{full}");
    assert_eq!(full["entries_checked"], 5, "{full}");
    assert_eq!(
        get(&officer, "/v1/privacy/refusals").await["refusals"],
        json!([])
    );
    // A message under a consent nobody registered is refused, and that is a refusal.
    let mut uncovered = fed.referral("ref-no-consent");
    uncovered["consent_id"] = json!("cns-never-registered");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let r = employment
        .post_json("/v1/messages", &uncovered)
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 403, "{}", r.text());
    let refusals = get(&officer, "/v1/privacy/refusals").await;
    assert_eq!(ids(&refusals, "refusals", "message_id"), ["ref-no-consent"]);
    assert_eq!(
        refusals["refusals"][0]["consent_id"],
        "cns-never-registered"
    );

    // Refusals are audit entries the push path writes; here one is appended directly.
    assert!(node.stop().success());
    {
        use plusgate::core::audit::{Action, Event, Head};
        let store = plusgate::node::store::Store::open(&fed.data_dir("suwon")).expect("store");
        let last = store.audit_head().expect("read").expect("an entry");
        let mut head = Head::after(&last).expect("head");
        let mut writes = plusgate::node::store::WriteSet::new();
        writes.put_audit(&head.append(Event {
            at: "2020-01-02T01:02:03.000Z".into(),
            actor: "urn:plusgate:agency:suwon:employment".into(),
            action: Action::Refused,
            message_id: "ref-refused-1".into(),
            from: "suwon/employment".into(),
            to: "gangseo/welfare".into(),
            subject: "ps-7f3a9c21e4b05d18".into(),
            consent_id: "cns-2026-000123".into(),
            consent_by: Some("suwon/employment".into()),
            detail: Some("urn:plusgate:problem:consent-withdrawn: consent was withdrawn".into()),
        }));
        store.apply(writes).expect("apply");
        store.sync().expect("sync");
    }
    node.restart();
    let officer = node.agent(OFFICER, HttpVersion::Http2);
    let refusals = get(&officer, "/v1/privacy/refusals").await;
    assert_eq!(
        ids(&refusals, "refusals", "message_id"),
        ["ref-no-consent", "ref-refused-1"]
    );
    let r = &refusals["refusals"][1];
    assert_eq!(r["to"], "gangseo/welfare");
    assert_eq!(r["consent_id"], "cns-2026-000123");
    assert!(r["detail"]
        .as_str()
        .is_some_and(|d| d.starts_with("urn:plusgate:problem:consent-withdrawn: ")));
    for (query, n) in [
        ("agency=gangseo%2Fwelfare", 1),
        ("agency=suwon%2Ffinance", 0),
        ("from=2020-01-02&to=2020-01-02", 1),
        ("from=2020-01-03&to=2020-12-31", 0),
        ("to=2020-01-01", 0),
    ] {
        let got = get(&officer, &format!("/v1/privacy/refusals?{query}")).await;
        assert_eq!(
            got["refusals"].as_array().expect("list").len(),
            n,
            "{query}"
        );
    }
    let status = get(&officer, "/v1/privacy/audit?verify=full").await;
    assert_eq!(status["verified"], true, "{status}");
}

/// Runs `plusgate privacy …` with the officer's (or `who`'s) certificate.
fn privacy(fed: &Federation, who: &str, args: &[&str]) -> Finished {
    let cert = fed.identity(who);
    let config = fed.config_path("suwon").display().to_string();
    let (cert, key) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let mut all: Vec<&str> = vec!["privacy"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", &config, "--cert", &cert, "--key", &key]);
    run_to_exit(&all, fed.dir(), Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privacy_commands_ask_the_running_node_as_the_officer() {
    let fed = Federation::new();
    let mut node = fed.start_bare("suwon", "");
    let [granted, withdrawn, _] = consents(&node, &fed).await;

    let out = privacy(
        &fed,
        OFFICER,
        &["consents", "--status", "granted", "--format", "csv"],
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[1].starts_with(&format!("{granted},")),
        "{}",
        out.stdout
    );

    let out = privacy(
        &fed,
        OFFICER,
        &["withdrawals", "--agency", "suwon/employment"],
    );
    assert!(out.status.success(), "{out:?}");
    let body: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        ids(&body, "withdrawals", "consent_id"),
        std::slice::from_ref(&withdrawn)
    );

    let out = privacy(&fed, OFFICER, &["refusals", "--from", "2026-01-01"]);
    assert!(out.status.success(), "{out:?}");
    let body: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(body["refusals"], json!([]));

    let out = privacy(
        &fed,
        OFFICER,
        &[
            "disclosures",
            "--subject",
            "ps-7f3a9c21e4b05d18",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.starts_with("\u{FEFF}message_id,type,from,to"),
        "the CLI's CSV starts with the UTF-8 BOM: {:?}",
        out.stdout.as_bytes().get(..8)
    );

    let out = privacy(&fed, OFFICER, &["audit", "--full"]);
    assert!(out.status.success(), "{out:?}");
    let body: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(body["verified"], true, "{body}");

    // From an officer's own desk: no node config, the node's URL and the CA instead.
    let cert = fed.identity(OFFICER);
    let url = format!("https://{}", node.addr());
    let ca = fed.dir().join("ca.crt").display().to_string();
    let (c, k) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let remote = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["privacy"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &url, "--ca", &ca, "--cert", &c, "--key", &k]);
        run_to_exit(&all, fed.dir(), Duration::from_secs(30))
    };
    let out = remote(&["withdrawals"]);
    assert!(out.status.success(), "{out:?}");
    let body: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        ids(&body, "withdrawals", "consent_id"),
        std::slice::from_ref(&withdrawn)
    );
    // `--url` needs `--ca`; `--config` and `--url` do not go together (clap's usage error).
    let out = run_to_exit(
        &[
            "privacy", "consents", "--url", &url, "--cert", &c, "--key", &k,
        ],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // A bad filter and a wrong certificate are refused with the node's reason: exit 3.
    let out = privacy(&fed, OFFICER, &["consents", "--status", "revoked"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stderr.contains("`status` must be"), "{}", out.stderr);
    let out = privacy(&fed, "suwon/employment", &["consents"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        out.stderr.contains("may not use the privacy officer API"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // A stopped node: the error names where it looked; exit 69 (try again later).
    let addr = node.addr().to_string();
    assert!(node.stop().success());
    let out = privacy(&fed, OFFICER, &["consents"]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot reach the node at {addr}")),
        "{}",
        out.stderr
    );
}

/// A day in a filter is an Asia/Seoul day, at the API and in the CLI: a consent registered
/// at 23:30 UTC on day D (08:30 on D+1 in Seoul) is found by `from=D+1&to=D+1` and not by
/// `from=D&to=D`. The node's clock is shifted to 23:30 UTC today so the boundary is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_is_an_asia_seoul_day_at_the_api_and_in_the_cli() {
    let now = time::OffsetDateTime::now_utc();
    let target = now.date().midnight().assume_utc() + time::Duration::minutes(23 * 60 + 30);
    let fed = Federation::new();
    fed.shift_clock("suwon", (target - now).whole_seconds());
    let node = fed.start_bare("suwon", "");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let consent = fed.example("consent");
    let r = agent
        .post_json("/v1/consents", &consent)
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let id = consent["id"].as_str().expect("id").to_owned();
    let registered: Value = r.json().expect("JSON");
    let at = time::OffsetDateTime::parse(
        registered["registered_at"].as_str().expect("registered_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    // Instants stay UTC on the wire; this one is late on UTC day D (the shift worked).
    assert!(registered["registered_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!((at.date(), at.hour()), (target.date(), 23), "{at}");
    let day = at.date();
    let next = day.next_day().expect("a next day");
    let r = agent
        .post_json(
            &format!("/v1/consents/{id}/withdraw"),
            &json!({"reason": "본인 요청"}),
        )
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    let officer = node.agent(OFFICER, HttpVersion::Http2);
    check(&officer, &format!("from={next}&to={next}"), &[&id]).await;
    check(&officer, &format!("from={next}"), &[&id]).await;
    check(&officer, &format!("from={day}&to={day}"), &[]).await;
    check(&officer, &format!("to={day}"), &[]).await;
    let officer = &officer;
    let on = |d: time::Date| async move {
        let w = get(officer, &format!("/v1/privacy/withdrawals?from={d}&to={d}")).await;
        ids(&w, "withdrawals", "consent_id")
    };
    assert_eq!(on(next).await, std::slice::from_ref(&id));
    assert_eq!(on(day).await, Vec::<String>::new());

    // The CLI takes the same days; its CSV starts with the BOM and keeps the Hangul.
    let (day, next) = (day.to_string(), next.to_string());
    let args = |d: &str| {
        let args = ["withdrawals", "--from", d, "--to", d, "--format", "csv"];
        privacy(&fed, OFFICER, &args)
    };
    let out = args(&next);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.as_bytes()[..3], UTF8_BOM, "{:?}", out.stdout);
    let lines: Vec<&str> = out.stdout[3..].trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[0].starts_with("consent_id,") && lines[1].starts_with(&format!("{id},")));
    assert!(lines[1].ends_with(",본인 요청"), "{}", lines[1]);
    let out = args(&day);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout.trim_end().split("\r\n").count(),
        1,
        "{}",
        out.stdout
    );
}
