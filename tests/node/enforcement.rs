//! Consent enforcement, as agencies meet it: a message travels only under a consent that
//! exists, is the subject's, is valid now, is not withdrawn, has the sender as a party,
//! names the recipient, covers the purpose and covers every data item. Checked at the origin before the 202 and again at
//! the destination; a withdrawal withholds what was not pulled yet, here and at every
//! center the consent names.

use std::time::{Duration, Instant};

use plusgate::core::audit::{Action, AuditEntry};
use plusgate::node::client::HttpVersion;
use plusgate::node::store::record;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::{
    assert_problem, ids_of, pull, push, push_accepted, register_consent, status, with_id,
    Federation, Node,
};

/// RFC 3339, `seconds` from now.
fn from_now(seconds: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .replace_nanosecond(0)
        .expect("whole second")
        .format(&Rfc3339)
        .expect("format")
}

/// The example consent under another id, changed by `edit`.
fn consent_like(fed: &Federation, id: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut consent = fed.example("consent");
    consent["id"] = json!(id);
    edit(&mut consent);
    consent
}

/// The `referral` example under id `id`, citing consent `consent`.
fn referral_under(fed: &Federation, id: &str, consent: &str) -> Value {
    let mut body = fed.referral(id);
    body["consent_id"] = json!(consent);
    body
}

/// The audit chain of the stopped node of `center`, read from its sled directory.
fn audit_entries(fed: &Federation, center: &str) -> Vec<AuditEntry> {
    let db = sled::Config::new()
        .path(fed.data_dir(center))
        .segment_size(8 << 20)
        .open()
        .expect("open the node's sled directory");
    db.scan_prefix([b'a'])
        .map(|kv| record::decode(&kv.expect("read").1).expect("decode"))
        .collect()
}

async fn withdraw(node: &Node, collector: &str, consent: &str) {
    let response = node
        .agent(collector, HttpVersion::Http1)
        .post_json(
            &format!("/v1/consents/{consent}/withdraw"),
            &json!({"at": from_now(0), "reason": "the client withdrew by phone"}),
        )
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
}

async fn status_of(node: &Node, sender: &str, id: &str) -> Value {
    let response = status(&node.agent(sender, HttpVersion::Http1), id).await;
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    response.json().expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_condition_is_a_403_that_names_it_and_an_audited_refusal() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http2);
    for consent in [
        consent_like(&fed, "cns-future", |c| {
            c["valid_from"] = json!(from_now(86_400));
            c["valid_until"] = json!(from_now(2 * 86_400));
        }),
        consent_like(&fed, "cns-expired", |c| {
            c["valid_from"] = json!(from_now(-2 * 86_400));
            c["valid_until"] = json!(from_now(-86_400));
        }),
        consent_like(&fed, "cns-withdrawn", |_| {}),
        consent_like(&fed, "cns-elsewhere", |c| {
            c["recipients"] = json!(["gangseo/welfare"]);
        }),
        consent_like(&fed, "cns-no-household", |c| {
            let items = c["items"].as_array_mut().expect("items");
            items.retain(|i| i["item"] != "household" && i["item"] != "tried");
        }),
    ] {
        register_consent(&employment, &consent).await;
    }
    withdraw(&node, "suwon/employment", "cns-withdrawn").await;

    let mut other_subject = fed.referral("ref-other-subject");
    other_subject["subject"] = json!("ps-00000000deadbeef");
    let mut other_purpose = fed.referral("ref-other-purpose");
    other_purpose["payload"]["purpose"] = json!("housing-support");
    let mut orphan_status = with_id(fed.example("referral-status"), "sts-orphan");
    orphan_status["payload"]["referral_id"] = json!("ref-never-sent");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let finance = node.agent("suwon/finance", HttpVersion::Http1);
    let mut borrowed = fed.referral("ref-borrowed");
    borrowed["payload"]["referrer"]["agency"] = json!("suwon/finance");
    let cases: Vec<(&str, &plusgate::node::client::Agent, Value, &str, &str)> = vec![
        (
            "no such consent",
            &employment,
            referral_under(&fed, "ref-unknown", "cns-never-registered"),
            "consent-unknown",
            "cns-never-registered",
        ),
        (
            "another person's consent",
            &employment,
            other_subject,
            "consent-other-subject",
            "ps-00000000deadbeef",
        ),
        (
            "not valid yet",
            &employment,
            referral_under(&fed, "ref-future", "cns-future"),
            "consent-not-yet-valid",
            "valid only from",
        ),
        (
            "expired",
            &employment,
            referral_under(&fed, "ref-expired", "cns-expired"),
            "consent-expired",
            "expired at",
        ),
        (
            "withdrawn",
            &employment,
            referral_under(&fed, "ref-withdrawn", "cns-withdrawn"),
            "consent-withdrawn",
            "withdrawn at",
        ),
        (
            // To an agency that is no party to it, a consent does not exist: the answer
            // says nothing of it (not its subject, its validity or its withdrawal).
            "a consent the sender is no party to",
            &finance,
            borrowed,
            "consent-unknown",
            "cns-example-0001",
        ),
        (
            "recipient not named",
            &employment,
            referral_under(&fed, "ref-elsewhere", "cns-elsewhere"),
            "consent-recipient-not-named",
            "suwon/welfare",
        ),
        (
            "purpose not covered",
            &employment,
            other_purpose,
            "consent-purpose-not-covered",
            "housing-support",
        ),
        (
            "items not covered (data minimisation)",
            &employment,
            referral_under(&fed, "ref-too-much", "cns-no-household"),
            "consent-item-not-covered",
            "household, tried",
        ),
        (
            "a status for a referral this node never carried",
            &welfare,
            orphan_status,
            "consent-purpose-unknown",
            "ref-never-sent",
        ),
    ];
    for (what, agent, body, kind, named) in &cases {
        let problem = assert_problem(&push(agent, body).await, 403, kind);
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(named), "{what}: {detail}");
        // Refused means not taken: the sender has no such message.
        let id = body["id"].as_str().expect("id");
        assert_eq!(status(agent, id).await.status.as_u16(), 404, "{what}");
    }
    // Nothing reached the recipient; what the consents cover still does.
    assert!(pull(&welfare, "max=10").await.is_empty());
    push_accepted(&employment, &fed.referral("ref-covered")).await;
    assert_eq!(ids_of(&pull(&welfare, "max=10").await), ["ref-covered"]);

    // Each refusal is in the audit chain with the condition that failed.
    assert!(node.stop().success());
    let refused: Vec<(String, String)> = audit_entries(&fed, "suwon")
        .into_iter()
        .filter(|e| e.action == Action::Refused)
        .map(|e| (e.message_id, e.detail.unwrap_or_default()))
        .collect();
    assert_eq!(refused.len(), cases.len(), "{refused:?}");
    for ((_, _, body, kind, _), (id, detail)) in cases.iter().zip(&refused) {
        assert_eq!(body["id"].as_str(), Some(id.as_str()));
        assert!(detail.starts_with(&format!("{kind}: ")), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_travels_with_its_message_and_is_checked_again_at_the_destination() {
    let fed = Federation::new();
    let a = fed.start("suwon");
    let employment = a.agent("suwon/employment", HttpVersion::Http2);
    // Valid for a minute only.
    let brief = consent_like(&fed, "cns-brief", |c| {
        c["valid_until"] = json!(from_now(60));
    });
    register_consent(&employment, &brief).await;
    let mut late = with_id(fed.example("referral-remote"), "ref-arrives-late");
    late["consent_id"] = json!("cns-brief");
    let on_time = with_id(fed.example("referral-remote"), "ref-arrives-on-time");
    let recipient = on_time["to"].as_str().expect("to").to_owned();

    // The recipient's center is down while the short consent runs out: it comes back two
    // minutes later, on its clock (shifted, so the test does not wait for it), and says so.
    push_accepted(&employment, &late).await;
    push_accepted(&employment, &on_time).await;
    fed.shift_clock("gangseo", 120);
    let b = fed.start("gangseo");
    let log = b.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("the clock is shifted") && l.contains("120")),
        "{log}"
    );

    // The message under a consent that is still valid arrives, and its consent with it:
    // the recipient can read the consent it received data under.
    let inbox = b.agent(&recipient, HttpVersion::Http1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = ids_of(&pull(&inbox, "max=10&wait=2").await);
        if !got.is_empty() || Instant::now() > deadline {
            break got;
        }
    };
    assert_eq!(got, ["ref-arrives-on-time"]);
    let seen = inbox
        .get("/v1/consents/cns-example-0001")
        .await
        .expect("response");
    assert_eq!(seen.status.as_u16(), 200, "{}", seen.text());
    let seen: Value = seen.json().expect("JSON");
    assert_eq!(seen["document"], fed.example("consent"));

    // The other was accepted at the origin, but the destination checks again: expired by
    // the time it arrived, it is refused there, and the sender's status says why.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = status_of(&a, "suwon/employment", "ref-arrives-late").await;
        if s["state"] == "dead-lettered" || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["state"], "dead-lettered", "{status}");
    let reason = status["forwarding"]["last_error"].as_str().unwrap_or("");
    assert!(
        reason.contains("refused by center gangseo") && reason.contains("consent-expired"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_is_erased_when_its_retention_period_ends_and_the_sender_sees_so() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http2);
    let one_day = consent_like(&fed, "cns-one-day", |c| {
        c["retention"]["period"] = json!("P1D");
    });
    register_consent(&employment, &one_day).await;
    push_accepted(
        &employment,
        &referral_under(&fed, "ref-kept-a-day", "cns-one-day"),
    )
    .await;

    // A day and a minute later (the node restarted on a shifted clock; nobody waits a
    // day), the purge at start erases the payload; the record of who sent what stays.
    fed.shift_clock("suwon", 86_400 + 60);
    node.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = status_of(&node, "suwon/employment", "ref-kept-a-day").await;
        if s["payload_erased"].is_object() || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let why = status["payload_erased"]["reason"].as_str().unwrap_or("");
    assert!(
        why.contains("retention period of consent cns-one-day"),
        "{status}"
    );
    // Never pulled, so never disclosed: withheld from the recipient.
    assert_eq!(status["state"], "withheld", "{status}");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert!(pull(&welfare, "max=10").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_withholds_what_was_not_pulled_and_the_sender_sees_why() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http2);
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    for id in ["ref-pulled", "ref-waiting"] {
        push_accepted(&employment, &fed.referral(id)).await;
    }
    assert_eq!(ids_of(&pull(&welfare, "max=1").await), ["ref-pulled"]);

    withdraw(&node, "suwon/employment", "cns-example-0001").await;

    // The waiting one never reaches the recipient; the pulled one cannot be pulled again.
    assert!(pull(&welfare, "max=10").await.is_empty());
    let waiting = status_of(&node, "suwon/employment", "ref-waiting").await;
    assert_eq!(waiting["state"], "withheld", "{waiting}");
    let why = waiting["withheld"]["reason"].as_str().unwrap_or("");
    assert!(why.contains("cns-example-0001 withdrawn"), "{why}");
    assert!(waiting["payload_erased"]["at"].is_string(), "{waiting}");
    let pulled = status_of(&node, "suwon/employment", "ref-pulled").await;
    assert_eq!(pulled["state"], "pulled", "{pulled}");
    assert!(pulled["payload_erased"]["at"].is_string(), "{pulled}");

    // And nothing new goes under it.
    assert_problem(
        &push(&employment, &fed.referral("ref-after")).await,
        403,
        "consent-withdrawn",
    );

    // The record of what was disclosed outlives the payload: the officer still sees which
    // data items the pulled message carried (field names; routing fields are not items).
    let subject = fed.referral("x")["subject"]
        .as_str()
        .expect("subject")
        .to_owned();
    let report: Value = node
        .agent("suwon/privacy-officer", HttpVersion::Http1)
        .get(&format!("/v1/privacy/subjects/{subject}/disclosures"))
        .await
        .expect("response")
        .json()
        .expect("JSON");
    let row = report["disclosures"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["message_id"] == "ref-pulled")
        .expect("the pulled message is a disclosure")
        .clone();
    let items: Vec<&str> = row["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        items.contains(&"summary") && items.contains(&"household"),
        "{row}"
    );
    assert!(
        !items.contains(&"referrer") && !items.contains(&"purpose"),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_reaches_the_other_center_and_nothing_is_delivered_after_it() {
    let fed = Federation::new();
    let a = fed.start("suwon");
    let b = fed.start("gangseo");
    let employment = a.agent("suwon/employment", HttpVersion::Http2);
    let recipient = fed.example("referral-remote")["to"]
        .as_str()
        .expect("to")
        .to_owned();
    let inbox = b.agent(&recipient, HttpVersion::Http1);

    // Some arrive and one is pulled before the withdrawal.
    for i in 0..3 {
        push_accepted(
            &employment,
            &with_id(fed.example("referral-remote"), &format!("ref-before-{i}")),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status_of(&a, "suwon/employment", "ref-before-2").await;
        if s["state"] == "delivered" || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ids_of(&pull(&inbox, "max=1").await), ["ref-before-0"]);

    // The race: pushes keep coming while the consent is withdrawn at the origin.
    let pusher = {
        let employment = a.agent("suwon/employment", HttpVersion::Http2);
        let example = fed.example("referral-remote");
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..200 {
                let body = with_id(example.clone(), &format!("ref-race-{i}"));
                answers.push(push(&employment, &body).await.status.as_u16());
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    withdraw(&a, "suwon/employment", "cns-example-0001").await;
    let answers = pusher.await.expect("pusher");
    // Accepted until the withdrawal, refused after it (the writer orders the two).
    let first_refused = answers
        .iter()
        .position(|s| *s == 403)
        .unwrap_or(answers.len());
    assert!(
        answers[..first_refused].iter().all(|s| *s == 202),
        "{answers:?}"
    );
    assert!(
        answers[first_refused..].iter().all(|s| *s == 403),
        "{answers:?}"
    );

    // The recipient's center learns of it and its recipient can read it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c: Value = inbox
            .get("/v1/consents/cns-example-0001")
            .await
            .expect("response")
            .json()
            .expect("JSON");
        if c["status"] == "withdrawn" {
            break;
        }
        assert!(Instant::now() < deadline, "withdrawal not propagated: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // From then on the recipient gets nothing under the consent.
    assert!(pull(&inbox, "max=100").await.is_empty());

    // At the origin every message of the race ends delivered (then withheld there),
    // withheld before it left, or refused by the destination; none waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..200 {
        let id = format!("ref-race-{i}");
        let response = status(&employment, &id).await;
        if response.status.as_u16() == 404 {
            continue; // refused at the push
        }
        loop {
            let s = status_of(&a, "suwon/employment", &id).await;
            let state = s["state"].as_str().unwrap_or("").to_owned();
            if ["delivered", "withheld", "dead-lettered"].contains(&state.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "{id} still {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The destination reports back what it withheld: the sender sees why the delivered but
    // unpulled ones never reached the recipient; the pulled one stays delivered.
    for id in ["ref-before-1", "ref-before-2"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        let s = loop {
            let s = status_of(&a, "suwon/employment", id).await;
            if s["state"] == "withheld" || Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(s["state"], "withheld", "{s}");
        let why = s["withheld"]["reason"].as_str().unwrap_or("");
        assert!(why.starts_with("withheld at center gangseo"), "{why}");
        assert!(
            s["forwarding"]["receipt"].is_object(),
            "the receipt stays: {s}"
        );
    }
    let pulled = status_of(&a, "suwon/employment", "ref-before-0").await;
    assert_eq!(pulled["state"], "delivered", "{pulled}");

    // In the destination's audit chain: after the withdrawal was recorded there, nothing
    // under the consent was received into an inbox or leased.
    drop(inbox);
    let mut b = b;
    assert!(b.stop().success());
    let entries = audit_entries(&fed, "gangseo");
    let recorded = entries
        .iter()
        .position(|e| {
            e.action == Action::ConsentReceived
                && e.consent_id == "cns-example-0001"
                && e.detail.as_deref() == Some("status withdrawn")
        })
        .expect("the withdrawal is in the destination's chain");
    let after: Vec<&AuditEntry> = entries[recorded..]
        .iter()
        .filter(|e| {
            e.consent_id == "cns-example-0001"
                && matches!(e.action, Action::Received | Action::Leased)
        })
        .collect();
    assert!(
        after.is_empty(),
        "delivered after the withdrawal: {after:?}"
    );
    // What had arrived and was not pulled was withheld there; the pulled one was erased.
    let withheld: Vec<&str> = entries[recorded..]
        .iter()
        .filter(|e| e.action == Action::Withheld)
        .map(|e| e.message_id.as_str())
        .collect();
    assert!(withheld.contains(&"ref-before-1"), "{withheld:?}");
    assert!(withheld.contains(&"ref-before-2"), "{withheld:?}");
    assert!(entries[recorded..]
        .iter()
        .any(|e| e.action == Action::Purged && e.message_id == "ref-before-0"));
}

/// A consent can end while its message waits: it expires, or is withdrawn as the pull
/// comes in. The message is checked again when it is handed out — at a pull and before it
/// is forwarded — and withheld instead: nothing is disclosed after its consent ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_consent_ended_while_it_waited_is_withheld_not_pulled() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http2);
    let brief = consent_like(&fed, "cns-brief-local", |c| {
        c["valid_until"] = json!(from_now(60));
    });
    register_consent(&employment, &brief).await;
    push_accepted(
        &employment,
        &referral_under(&fed, "ref-waits-too-long", "cns-brief-local"),
    )
    .await;
    push_accepted(&employment, &fed.referral("ref-still-covered")).await;

    // Two minutes later (a restart on a shifted clock), the recipient pulls.
    fed.shift_clock("suwon", 120);
    node.restart();
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(
        ids_of(&pull(&welfare, "max=10").await),
        ["ref-still-covered"]
    );
    assert!(
        pull(&welfare, "max=10").await.is_empty(),
        "not later either"
    );

    let status = status_of(&node, "suwon/employment", "ref-waits-too-long").await;
    assert_eq!(status["state"], "withheld", "{status}");
    let why = status["withheld"]["reason"].as_str().unwrap_or("");
    assert!(
        why.contains("cns-brief-local") && why.contains("expired"),
        "{status}"
    );
    assert!(status["payload_erased"].is_object(), "{status}");
    drop(node);
    let entries = audit_entries(&fed, "suwon");
    let withheld = entries
        .iter()
        .find(|e| e.message_id == "ref-waits-too-long" && e.action == Action::Withheld)
        .expect("a withheld entry");
    assert_eq!(withheld.actor, "urn:plusgate:node:suwon");
    assert!(
        !entries
            .iter()
            .any(|e| e.message_id == "ref-waits-too-long" && e.action == Action::Leased),
        "never handed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_consent_ended_in_the_outbox_is_withheld_not_forwarded() {
    let fed = Federation::new();
    let mut a = fed.start("suwon");
    let employment = a.agent("suwon/employment", HttpVersion::Http2);
    let brief = consent_like(&fed, "cns-brief-remote", |c| {
        c["valid_until"] = json!(from_now(60));
    });
    register_consent(&employment, &brief).await;
    let mut late = with_id(fed.example("referral-remote"), "ref-outlived-its-consent");
    late["consent_id"] = json!("cns-brief-remote");
    let on_time = with_id(fed.example("referral-remote"), "ref-forwarded-on-time");
    let recipient = on_time["to"].as_str().expect("to").to_owned();
    // The recipient's center is down; the sender's node restarts two minutes later (on a
    // shifted clock) with both waiting in its outbox.
    push_accepted(&employment, &late).await;
    push_accepted(&employment, &on_time).await;
    fed.shift_clock("suwon", 120);
    a.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = status_of(&a, "suwon/employment", "ref-outlived-its-consent").await;
        if s["state"] == "withheld" || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["state"], "withheld", "{status}");
    let why = status["withheld"]["reason"].as_str().unwrap_or("");
    assert!(
        why.contains("cns-brief-remote") && why.contains("expired"),
        "{status}"
    );

    // The recipient's center comes back: the covered one arrives, the other never does.
    fed.shift_clock("gangseo", 120);
    let b = fed.start("gangseo");
    let inbox = b.agent(&recipient, HttpVersion::Http1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = ids_of(&pull(&inbox, "max=10&wait=2").await);
        if !got.is_empty() || Instant::now() > deadline {
            break got;
        }
    };
    assert_eq!(got, ["ref-forwarded-on-time"]);
    assert!(pull(&inbox, "max=10&wait=1").await.is_empty());
}
