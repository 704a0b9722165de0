//! Message ids belong to their sender: the node keys a message by its sending agency and
//! the id it chose, so two agencies (at one center or at two) may both send a message
//! `ref-1`. Neither is refused for the other's id, neither learns that the other used it,
//! and a recipient holding both acknowledges each by `<from>/<id>`.

use std::time::Duration;

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{
    ack, assert_problem, consent_of, pull, push_accepted, quick_federation, referral_between,
    run_to_exit, status, Federation,
};

/// `(from, id)` of pulled messages, sorted.
fn senders_and_ids(pulled: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pulled
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (s("from"), s("id"))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_another_sender_used_is_no_conflict_and_each_sender_follows_its_own() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let finance = node.agent("suwon/finance", HttpVersion::Http1);
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    let own = consent_of(&fed, "cns-finance-1", "suwon/finance", &["suwon/welfare"]);
    let registered = finance
        .post_json("/v1/consents", &own)
        .await
        .expect("response");
    assert_eq!(registered.status.as_u16(), 201, "{}", registered.text());

    let first = fed.referral("ref-1");
    push_accepted(&employment, &first).await;
    // The same id from another sender: its own message, accepted (before ids were
    // scoped, this was 409 id-conflict: an answer that told finance employment's id).
    let second = referral_between(
        &fed,
        "ref-1",
        "suwon/finance",
        "suwon/welfare",
        "cns-finance-1",
    );
    let accepted = push_accepted(&finance, &second).await;
    assert_eq!(accepted["id"], json!("ref-1"));
    // Each sender's retry is still idempotent, and each follows its own message.
    push_accepted(&finance, &second).await;
    for (agent, consent_id) in [
        (&employment, "cns-example-0001"),
        (&finance, "cns-finance-1"),
    ] {
        let seen: Value = status(agent, "ref-1").await.json().expect("JSON");
        assert_eq!(seen["id"], json!("ref-1"));
        assert_eq!(seen["consent_id"], json!(consent_id), "{seen}");
    }

    // The recipient gets both, told apart by their sender.
    let pulled = pull(&welfare, "max=10").await;
    assert_eq!(
        senders_and_ids(&pulled),
        [
            ("suwon/employment".to_owned(), "ref-1".to_owned()),
            ("suwon/finance".to_owned(), "ref-1".to_owned())
        ]
    );
    // A bare id naming both is refused, nothing acknowledged; `<from>/<id>` says which.
    assert_problem(&ack(&welfare, &["ref-1"]).await, 409, "ambiguous-id");
    let response = ack(&welfare, &["suwon/employment/ref-1"]).await;
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    assert_eq!(
        response.json::<Value>().expect("JSON"),
        json!({"acked": ["suwon/employment/ref-1"]})
    );
    // Now the bare id names one message, and acking it again is still fine.
    for _ in 0..2 {
        let response = ack(&welfare, &["ref-1"]).await;
        assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    }
    for agent in [&employment, &finance] {
        let seen: Value = status(agent, "ref-1").await.json().expect("JSON");
        assert_eq!(seen["state"], json!("acked"), "{seen}");
    }
}

/// Before ids were scoped, a message from another center whose id an agency here had
/// used was refused by this node for good, and dead-lettered at its origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_another_center_with_an_id_used_here_arrives() {
    let (fed, nodes) = quick_federation(&["suwon", "gangseo"], &["suwon", "gangseo"]);
    let (suwon, gangseo) = (&nodes[0], &nodes[1]);
    let remote = fed.example("referral-remote");
    let id = remote["id"].as_str().expect("id").to_owned();
    let to = remote["to"].as_str().expect("to").to_owned();

    // An agency at gangseo sends the recipient a message with the same id first.
    let local_sender = "gangseo/employment";
    let local = gangseo.agent(local_sender, HttpVersion::Http1);
    let own = consent_of(&fed, "cns-local", local_sender, &[to.as_str()]);
    let registered = local
        .post_json("/v1/consents", &own)
        .await
        .expect("response");
    assert_eq!(registered.status.as_u16(), 201, "{}", registered.text());
    push_accepted(
        &local,
        &referral_between(&fed, &id, local_sender, &to, "cns-local"),
    )
    .await;

    push_accepted(
        &suwon.agent("suwon/employment", HttpVersion::Http1),
        &remote,
    )
    .await;
    let recipient = gangseo.agent(&to, HttpVersion::Http1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut pulled = Vec::new();
    while pulled.len() < 2 && std::time::Instant::now() < deadline {
        pulled.extend(pull(&recipient, "max=10&wait=2").await);
    }
    assert_eq!(
        senders_and_ids(&pulled),
        [
            (local_sender.to_owned(), id.clone()),
            ("suwon/employment".to_owned(), id.clone())
        ]
    );
}

/// A node upgraded (`plusgate migrate`) over a store written before ids were scoped: its
/// messages stay under their bare ids, and everything still finds them. The sender follows them, the recipient
/// pulls and acks them by the ids it is shown, and a withdrawal finds the one still waiting
/// through its audit entry, which names no consent collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stored_before_ids_were_scoped_are_followed_pulled_acked_and_withheld() {
    use plusgate::core::audit::{Action, Event, Head};
    use plusgate::core::identity::AgencyId;
    use plusgate::core::message::MessageId;
    use plusgate::node::store::{MessageRecord, Store, WriteSet};

    let fed = Federation::new();
    let mut node = fed.start("suwon");
    assert!(node.stop().success());
    let example = fed.referral("ref-old");
    let (from, to) = ("suwon/employment", "suwon/welfare");
    let consent_id = example["consent_id"].as_str().expect("consent").to_owned();
    {
        // What the previous version wrote for a push: the record under the bare id, the
        // inbox entry, the `accepted` audit entry without `consent_by`.
        let store = Store::open(&fed.data_dir("suwon")).expect("store");
        let last = store.audit_head().expect("read").expect("an entry");
        let mut head = Head::after(&last).expect("head");
        let mut writes = WriteSet::new();
        let welfare = AgencyId::parse(to).expect("agency");
        for id in ["ref-old-1", "ref-old-2"] {
            let entry = head.append(Event {
                at: last.at.clone(),
                actor: "urn:plusgate:agency:suwon:employment".into(),
                action: Action::Accepted,
                message_id: id.into(),
                from: from.into(),
                to: to.into(),
                subject: example["subject"].as_str().expect("subject").into(),
                consent_id: consent_id.clone(),
                consent_by: None,
                detail: None,
            });
            let record = MessageRecord {
                id: id.into(),
                sender_chose_id: true,
                from: from.into(),
                to: to.into(),
                message_type: "referral".into(),
                version: 1,
                subject: entry.subject.clone(),
                consent_id: consent_id.clone(),
                consent_by: None,
                payload: Some(serde_json::value::to_raw_value(&example["payload"]).expect("raw")),
                sealed: None,
                body_sha256: "0".repeat(64),
                accepted_at: entry.at.clone(),
                purpose: Some("medical-support".into()),
                items: vec!["needs".into()],
                erased: None,
                seq: Some(entry.seq),
                peer: None,
            };
            writes.put_message(record.encode());
            writes.put_inbox(&welfare, entry.seq, &MessageId::parse(id).expect("id"));
            writes.put_audit(&entry);
        }
        store.apply(writes).expect("apply");
        store.sync().expect("sync");
    }
    // A store of then recorded no format; `plusgate migrate` brings it to this one.
    {
        // The store above was dropped; sled lets go of its lock a moment later.
        crate::support::wait_unlocked(&fed.data_dir("suwon"));
        let db = sled::Config::new()
            .path(fed.data_dir("suwon"))
            .segment_size(8 << 20)
            .open()
            .expect("open the node's sled directory");
        db.remove(b"sformat").expect("remove the format");
        db.flush().expect("flush");
    }
    let config = fed.config_path("suwon").display().to_string();
    let migrated = run_to_exit(
        &["migrate", "--config", &config],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert!(migrated.status.success(), "{migrated:?}");
    node.restart();
    let employment = node.agent(from, HttpVersion::Http1);
    let welfare = node.agent(to, HttpVersion::Http1);

    let seen: Value = status(&employment, "ref-old-1").await.json().expect("JSON");
    assert_eq!(
        (&seen["id"], &seen["state"]),
        (&json!("ref-old-1"), &json!("accepted"))
    );
    let pulled = pull(&welfare, "max=1").await;
    assert_eq!(
        senders_and_ids(&pulled),
        [(from.to_owned(), "ref-old-1".to_owned())]
    );
    for _ in 0..2 {
        let response = ack(&welfare, &["ref-old-1"]).await;
        assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    }
    let seen: Value = status(&employment, "ref-old-1").await.json().expect("JSON");
    assert_eq!(seen["state"], json!("acked"));

    let withdrawn = employment
        .post_json(
            &format!("/v1/consents/{consent_id}/withdraw"),
            &json!({"reason": "the client withdrew by phone"}),
        )
        .await
        .expect("response");
    assert_eq!(withdrawn.status.as_u16(), 200, "{}", withdrawn.text());
    let seen: Value = status(&employment, "ref-old-2").await.json().expect("JSON");
    assert_eq!(seen["state"], json!("withheld"), "{seen}");
    assert!(pull(&welfare, "max=10").await.is_empty());
}
