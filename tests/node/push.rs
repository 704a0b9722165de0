//! `POST /v1/messages`: what is accepted, and the status code of every kind of refusal.

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{
    assert_problem, drain_inbox, push, push_accepted, push_raw, violation_pointers, Federation,
    VERSIONS,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_push_answers_202_with_id_status_and_time() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    for (i, version) in VERSIONS.into_iter().enumerate() {
        let agent = node.agent("suwon/employment", version);
        let id = format!("ref-accepted-{i}");
        let response = push(&agent, &fed.referral(&id)).await;
        assert_eq!(response.status.as_u16(), 202, "{}", response.text());
        assert_eq!(response.content_type(), Some("application/json"));
        let body: Value = response.json().expect("JSON");
        assert_eq!(body["id"], json!(id));
        assert_eq!(body["status"], json!("accepted"));
        let accepted_at = body["accepted_at"].as_str().expect("accepted_at");
        time::OffsetDateTime::parse(accepted_at, &time::format_description::well_known::Rfc3339)
            .expect("accepted_at is RFC 3339");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_retry_is_accepted_again_with_the_original_time() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let body = fed.referral("ref-retry");
    let first = push_accepted(&node.agent("suwon/employment", HttpVersion::Http1), &body).await;
    // The retry comes over the other HTTP version, with keys in another order: the same
    // message is the same JSON value, not the same bytes.
    let reordered = serde_json::to_string_pretty(&body).expect("JSON");
    let second = push_raw(
        &node.agent("suwon/employment", HttpVersion::Http2),
        reordered,
        "application/json; charset=utf-8",
    )
    .await;
    assert_eq!(second.status.as_u16(), 202, "{}", second.text());
    let second: Value = second.json().expect("JSON");
    assert_eq!(second["id"], json!("ref-retry"));
    assert_eq!(second["accepted_at"], first["accepted_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_pushes_make_one_message() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let conn = agent.connect().await.expect("connect");
    let body = bytes::Bytes::from(fed.referral("ref-concurrent").to_string());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut conn = conn.try_clone().expect("HTTP/2 connections clone");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let response = conn
                .send(
                    hyper::Method::POST,
                    "/v1/messages",
                    Some((body, "application/json")),
                )
                .await
                .expect("response");
            assert_eq!(response.status.as_u16(), 202, "{}", response.text());
            response.json::<Value>().expect("JSON")["accepted_at"].clone()
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.expect("push task"));
    }
    times.dedup();
    assert_eq!(
        times.len(),
        1,
        "one message, one acceptance time: {times:?}"
    );
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(drain_inbox(&welfare).await, ["ref-concurrent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_one_id_with_different_bodies_accept_exactly_one() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let conn = agent.connect().await.expect("connect");
    let mut tasks = Vec::new();
    for n in 0..8 {
        let mut conn = conn.try_clone().expect("HTTP/2 connections clone");
        let mut body = fed.referral("ref-contested");
        body["payload"]["tried"][0]["result"] = json!(format!("variant {n}"));
        tasks.push(tokio::spawn(async move {
            let body = bytes::Bytes::from(body.to_string());
            conn.send(
                hyper::Method::POST,
                "/v1/messages",
                Some((body, "application/json")),
            )
            .await
            .expect("response")
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let response = task.await.expect("push task");
        if response.status.as_u16() == 409 {
            assert_problem(&response, 409, "id-conflict");
        }
        statuses.push(response.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 409, 409, 409, 409, 409, 409, 409]);
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(drain_inbox(&welfare).await, ["ref-contested"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_an_id_for_a_different_body_is_409() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&agent, &fed.referral("ref-reused")).await;
    let mut different = fed.referral("ref-reused");
    different["payload"]["urgency"] = json!("routine");
    assert_problem(&push(&agent, &different).await, 409, "id-conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_without_id_gets_a_fresh_node_assigned_id_each_time() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let mut body = fed.example("referral");
    body.as_object_mut().expect("object").remove("id");
    let first = push_accepted(&agent, &body).await;
    let second = push_accepted(&agent, &body).await;
    let (first, second) = (first["id"].as_str(), second["id"].as_str());
    assert!(first.is_some_and(|id| !id.is_empty()), "{first:?}");
    assert_ne!(first, second, "two pushes without id are two messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_json_is_400() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    for version in VERSIONS {
        let agent = node.agent("suwon/employment", version);
        for body in ["{", "", "not json", "{\"to\": }", "[1, 2"] {
            let response = push_raw(&agent, body, "application/json").await;
            assert_problem(&response, 400, "bad-request");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_are_400_at_top_level_and_inside_the_payload() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let text = fed.referral("ref-dup").to_string();
    let cases = [
        (
            r#""to":"suwon/welfare""#,
            r#""to":"suwon/welfare","to":"suwon/jobs""#,
        ),
        (
            r#""urgency":"priority""#,
            r#""urgency":"priority","urgency":"routine""#,
        ),
        // The same value twice is still ambiguous JSON.
        (
            r#""agency":"suwon/welfare""#,
            r#""agency":"suwon/welfare","agency":"suwon/welfare""#,
        ),
    ];
    for (once, twice) in cases {
        let body = text.replacen(once, twice, 1);
        assert_ne!(body, text, "the case must find {once}");
        let response = push_raw(&agent, body, "application/json").await;
        let problem = assert_problem(&response, 400, "bad-request");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or("")
                .contains("duplicate"),
            "{problem}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_configured_limit_is_413() {
    let fed = Federation::new();
    fed.set_limit("suwon", "body_bytes_max", 1024);
    // A consent document is larger than this limit, so none is registered (none is needed
    // here).
    let node = fed.start_bare("suwon", "");
    let body = fed.referral("ref-large");
    assert!(
        body.to_string().len() > 1024,
        "the example must exceed the limit"
    );
    for version in VERSIONS {
        let agent = node.agent("suwon/employment", version);
        assert_problem(&push(&agent, &body).await, 413, "body-too-large");
        // A small body still goes through: the limit refused the size, not the sender.
        let small = push_raw(&agent, "{}", "application/json").await;
        assert_problem(&small, 422, "schema-violation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413() {
    let fed = Federation::new();
    fed.set_limit("suwon", "body_bytes_max", 4096);
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let text = fed.referral("ref-at-limit").to_string();
    assert!(
        text.len() < 4096,
        "the example must fit: {} bytes",
        text.len()
    );
    // Whitespace after the value is still one JSON value; it only makes the body longer.
    let padded = |len: usize| format!("{text}{}", " ".repeat(len - text.len()));
    let over = push_raw(&agent, padded(4097), "application/json").await;
    assert_problem(&over, 413, "body-too-large");
    let at = push_raw(&agent, padded(4096), "application/json").await;
    assert_eq!(at.status.as_u16(), 202, "{}", at.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_400_and_the_node_keeps_serving() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    for depth in [100, 100_000] {
        let text = fed.referral("ref-deep").to_string();
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let body = text.replacen("\"needs\":[", &format!("\"deep\":{nested},\"needs\":["), 1);
        assert_ne!(body, text);
        let response = push_raw(&agent, body, "application/json").await;
        assert_problem(&response, 400, "bad-request");
    }
    push_accepted(&agent, &fed.referral("ref-shallow")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_that_is_not_json_is_415() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let body = fed.referral("ref-text").to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let response = push_raw(&agent, body.clone(), content_type).await;
        assert_problem(&response, 415, "unsupported-media-type");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations_are_422_listing_every_pointer() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let mut body = fed.referral("ref-invalid");
    // A resident registration number is exactly what `subject` must never carry.
    body["subject"] = json!("900101-1234567");
    body["payload"]["urgency"] = json!("whenever");
    let problem = assert_problem(&push(&agent, &body).await, 422, "schema-violation");
    let pointers = violation_pointers(&problem);
    assert!(pointers.contains(&"/subject".to_owned()), "{pointers:?}");
    assert!(
        pointers.contains(&"/payload/urgency".to_owned()),
        "{pointers:?}"
    );
    for violation in problem["violations"].as_array().expect("violations") {
        assert!(
            violation["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{violation}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations_cover_envelope_and_payload_fields() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let check = |edit: fn(&mut Value), pointer: &'static str| {
        let mut body = fed.referral("ref-check");
        edit(&mut body);
        let agent = agent.clone();
        async move {
            let problem = assert_problem(&push(&agent, &body).await, 422, "schema-violation");
            let pointers = violation_pointers(&problem);
            assert!(
                pointers.iter().any(|p| p == pointer),
                "expected {pointer} in {pointers:?}"
            );
        }
    };
    check(|b| b["type"] = json!("gossip"), "/type").await;
    check(|b| b["id"] = json!("-starts-with-dash"), "/id").await;
    check(|b| b["to"] = json!("SUWON/welfare"), "/to").await;
    check(|b| b["extra"] = json!(1), "").await;
    check(|b| b["payload"]["needs"] = json!([]), "/payload/needs").await;
    check(
        |b| b["payload"]["referrer"]["counsellor"]["email"] = json!(7),
        "/payload/referrer/counsellor/email",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrer_other_than_the_sending_certificate_is_422() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let mut body = fed.referral("ref-impostor");
    body["payload"]["referrer"]["agency"] = json!("suwon/jobs");
    let problem = assert_problem(&push(&agent, &body).await, 422, "schema-violation");
    assert_eq!(violation_pointers(&problem), ["/payload/referrer/agency"]);

    let mut body = fed.referral("ref-misaddressed");
    body["payload"]["recipient"]["agency"] = json!("suwon/jobs");
    let problem = assert_problem(&push(&agent, &body).await, 422, "schema-violation");
    assert_eq!(violation_pointers(&problem), ["/payload/recipient/agency"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_registration_number_anywhere_in_a_payload_is_422_naming_where() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let mut body = fed.referral("ref-with-rrn");
    let summary = body["payload"]["summary"]
        .as_str()
        .expect("summary")
        .to_owned();
    body["payload"]["summary"] = json!(format!("{summary} (주민번호 9001011234567)"));
    let problem = assert_problem(&push(&agent, &body).await, 422, "schema-violation");
    assert_eq!(violation_pointers(&problem), ["/payload/summary"]);
    assert!(
        !problem.to_string().contains("9001011234567"),
        "the refusal must not repeat the number: {problem}"
    );
    // Nor does a schema violation quote one back (a subject must be pseudonymous).
    let mut body = fed.referral("ref-rrn-subject");
    body["subject"] = json!("900101-1234567");
    let problem = assert_problem(&push(&agent, &body).await, 422, "schema-violation");
    assert_eq!(violation_pointers(&problem), ["/subject"]);
    assert!(!problem.to_string().contains("900101-1234567"), "{problem}");
    // Phone numbers and dates are not mistaken for one.
    let mut body = fed.referral("ref-with-phone");
    body["payload"]["summary"] = json!(format!("{summary} 연락처 010-1234-5678, 2026-03-05 방문"));
    push_accepted(&agent, &body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_recipient_is_404() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let mut body = fed.referral("ref-nobody");
    body["to"] = json!("suwon/nobody");
    body["payload"]["recipient"]["agency"] = json!("suwon/nobody");
    assert_problem(&push(&agent, &body).await, 404, "unknown-recipient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_unknown_to_the_federation_is_404() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    // A center the signed directory does not list, and an agency it does not list at a
    // center it does.
    for to in ["busan/welfare", "gangseo/nobody"] {
        let mut body = fed.example("referral-remote");
        body["to"] = json!(to);
        body["payload"]["recipient"]["agency"] = json!(to);
        let problem = assert_problem(&push(&agent, &body).await, 404, "unknown-recipient");
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(to),
            "{problem}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_not_allowed_to_send_a_type_is_403() {
    let fed = Federation::new();
    fed.set_sends("suwon/welfare", &["referral", "referral-status"]);
    let node = fed.start("suwon");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let summary = fed.example("case-summary");
    assert_eq!(
        summary["payload"]["author"]["agency"],
        json!("suwon/welfare")
    );
    assert_problem(&push(&welfare, &summary).await, 403, "type-not-allowed");
    // What it may send still goes through (a status, once the referral it answers is here).
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&employment, &fed.example("referral")).await;
    push_accepted(&welfare, &fed.example("referral-status")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_never_sendable_as_a_message() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let referral = fed.example("referral");
    let consent = json!({
        "id": "cns-as-message",
        "type": "consent",
        "version": 1,
        "to": "suwon/welfare",
        "subject": referral["subject"],
        "consent_id": referral["consent_id"],
        "payload": fed.example("consent"),
    });
    assert_problem(&push(&agent, &consent).await, 403, "type-not-allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_a_center_can_deliver_is_accepted() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    // In the order of the workflow: the status answers the referral (and travels for its
    // purpose), so the referral comes first.
    for (name, sender) in [
        ("referral", "suwon/employment"),
        ("referral-status", "suwon/welfare"),
        ("case-summary", "suwon/welfare"),
    ] {
        let agent = node.agent(sender, HttpVersion::Http2);
        push_accepted(&agent, &fed.example(name)).await;
    }
}

/// Regression: violation messages used to quote the offending value back (`"…" is not one
/// of …`), so whatever personal data a sender put in the wrong place came back in the
/// answer, and, between nodes, into stored dead-letter reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violation_messages_quote_no_value_of_the_message() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let name = "홍길동 님 010-9876-5432";
    let mut body = fed.referral("ref-quotes-nothing");
    body["subject"] = json!(name); // does not match the subject pattern
    body["payload"]["urgency"] = json!(format!("{name} urgent")); // not an allowed value
    body["version"] = json!(name); // not an integer
    let problem = assert_problem(&push(&agent, &body).await, 422, "schema-violation");
    let text = problem.to_string();
    for piece in ["홍길동", "010-9876-5432"] {
        assert!(
            !text.contains(piece),
            "the answer repeats {piece:?}: {text}"
        );
    }
    let pointers = violation_pointers(&problem);
    for pointer in ["/subject", "/version"] {
        assert!(pointers.contains(&pointer.to_owned()), "{pointers:?}");
    }
    // An RRN written with full-width digits and dash is refused like an ASCII one, and not
    // repeated either.
    let mut body = fed.referral("ref-full-width-rrn");
    body["payload"]["summary"] = json!("주민번호 ９００１０１－１２３４５６７");
    let problem = assert_problem(&push(&agent, &body).await, 422, "schema-violation");
    assert_eq!(violation_pointers(&problem), ["/payload/summary"]);
    assert!(!problem.to_string().contains("１２３４５６７"), "{problem}");
}
