//! Federation: messages for an agency at another center travel from the sender's node to
//! the recipient's node exactly once, in order, with signed receipts, whatever crashes or
//! outages happen on the way; statuses travel back; the directory decides who is who.
//!
//! Every test runs real node processes on loopback ports named in a real signed directory.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use plusgate::dev::pki::{Role, Validity};
use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{
    ack, assert_problem, collect, ids_of, once_each, pull, push, push_accepted, run_to_exit,
    status, wait_for_status, with_id, Federation, Node, CATCH_UP,
};

/// A three-center federation whose forwarders retry quickly (tests must not wait a minute
/// for a backoff to expire).
fn three_centers() -> Federation {
    let fed = Federation::with_centers(&["suwon", "gangseo", "jeongeup"]);
    for center in ["suwon", "gangseo", "jeongeup"] {
        fed.set_option(center, "federation", "retry_initial_ms", "50");
        fed.set_option(center, "federation", "retry_max_ms", "1000");
        fed.set_option(center, "federation", "checkpoint_every", "5");
    }
    fed
}

/// The `referral-remote` example (first center's employment agency → an agency at another
/// center) with envelope id `id`.
fn remote_referral(fed: &Federation, id: &str) -> Value {
    with_id(fed.example("referral-remote"), id)
}

/// The remote recipient of the `referral-remote` example and its center.
fn remote_recipient(fed: &Federation) -> (String, String) {
    let to = fed.example("referral-remote")["to"]
        .as_str()
        .expect("to")
        .to_owned();
    let center = to.split('/').next().expect("center").to_owned();
    (to, center)
}

/// A `referral-status` from the referral's recipient back to its sender.
fn status_answer(fed: &Federation, referral: &Value, id: &str, status: &str) -> Value {
    let mut body = with_id(fed.example("referral-status"), id);
    let recipient = referral["to"].as_str().expect("to");
    body["to"] = json!("suwon/employment");
    body["subject"] = referral["subject"].clone();
    // Back under a consent the answering agency collected.
    let reply = if recipient.starts_with("suwon/") {
        "consent-reply"
    } else {
        "consent-reply-remote"
    };
    body["consent_id"] = fed.example(reply)["id"].clone();
    body["payload"]["referral_id"] = referral["id"].clone();
    body["payload"]["status"] = json!(status);
    body["payload"]["changed_by"]["agency"] = json!(recipient);
    if status != "completed" {
        body["payload"]
            .as_object_mut()
            .expect("payload")
            .remove("outcome");
    }
    body
}

/// `plusgate audit verify` on a stopped node.
fn assert_audit_verifies(fed: &Federation, center: &str) {
    let config = fed.config_path(center).display().to_string();
    let done = run_to_exit(
        &["audit", "verify", "--config", &config],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert!(done.status.success(), "{center}: {done:?}");
}

/// Pushes `ids` as remote referrals at `node`, `streams` at a time; returns those accepted.
async fn push_remote(fed: &Federation, node: &Node, ids: &[String], streams: usize) -> Vec<String> {
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let conn = agent.connect().await.expect("connect");
    let template = fed.example("referral-remote");
    let mut tasks = Vec::new();
    for chunk in ids.chunks(ids.len().div_ceil(streams).max(1)) {
        let mut conn = conn.try_clone().expect("HTTP/2");
        let bodies: Vec<(String, Value)> = chunk
            .iter()
            .map(|id| (id.clone(), with_id(template.clone(), id)))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for (id, body) in bodies {
                let bytes = bytes::Bytes::from(body.to_string());
                let response = conn
                    .send(
                        hyper::Method::POST,
                        "/v1/messages",
                        Some((bytes, "application/json")),
                    )
                    .await
                    .expect("push gets a response");
                assert_eq!(response.status.as_u16(), 202, "{}", response.text());
                accepted.push(id);
            }
            accepted
        }));
    }
    let mut accepted = Vec::new();
    for task in tasks {
        accepted.extend(task.await.expect("push task"));
    }
    accepted
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_to_another_center_arrives_once_and_its_status_comes_back() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    let a = fed.start("suwon");
    let b = fed.start(&center);
    let referral = remote_referral(&fed, "ref-remote-loop");
    let accepted = push_accepted(&a.agent("suwon/employment", HttpVersion::Http2), &referral).await;
    assert_eq!(accepted["status"], json!("accepted"));

    // It is pullable at B, exactly once, as sent by A's agency.
    let b_agency = b.agent(&recipient, HttpVersion::Http2);
    let pulled = pull(&b_agency, "max=10&wait=20").await;
    assert_eq!(ids_of(&pulled), ["ref-remote-loop"]);
    assert_eq!(pulled[0]["from"], json!("suwon/employment"));
    assert_eq!(pulled[0]["payload"], referral["payload"]);
    let acked = b_agency
        .post_json("/v1/inbox/ack", &json!({"ids": ["ref-remote-loop"]}))
        .await
        .expect("ack");
    assert_eq!(acked.status.as_u16(), 200);
    assert!(pull(&b_agency, "max=10&wait=1").await.is_empty());

    // A shows it delivered, with B's signed receipt.
    let seen = wait_for_status(&a, "ref-remote-loop", |s| s["state"] == "delivered").await;
    assert_eq!(seen["forwarding"]["center"], json!(center));
    let receipt = &seen["forwarding"]["receipt"];
    assert_eq!(receipt["node"], json!(center));
    assert_eq!(receipt["message_id"], json!("ref-remote-loop"));
    assert_eq!(receipt["signature"].as_str().map(str::len), Some(128));

    // B's agency accepts it: the status travels back and closes the loop at A.
    let answer = status_answer(&fed, &referral, "st-remote-loop-1", "accepted");
    push_accepted(&b_agency, &answer).await;
    let seen = wait_for_status(&a, "ref-remote-loop", |s| {
        s["lifecycle"]["status"] == "accepted"
    })
    .await;
    assert_eq!(seen["lifecycle"]["message_id"], json!("st-remote-loop-1"));
    // … and the status message itself is in the sender's inbox at A.
    let employment = a.agent("suwon/employment", HttpVersion::Http1);
    let back = pull(&employment, "max=10&wait=20").await;
    assert_eq!(ids_of(&back), ["st-remote-loop-1"]);
    assert_eq!(back[0]["from"], json!(recipient));
    let acked = employment
        .post_json("/v1/inbox/ack", &json!({"ids": ["st-remote-loop-1"]}))
        .await
        .expect("ack");
    assert_eq!(acked.status.as_u16(), 200);

    // A later, older status does not overwrite a newer one.
    let mut later = status_answer(&fed, &referral, "st-remote-loop-2", "completed");
    later["payload"]["changed_at"] = json!("2099-01-01T00:00:00+09:00");
    push_accepted(&b_agency, &later).await;
    wait_for_status(&a, "ref-remote-loop", |s| {
        s["lifecycle"]["status"] == "completed"
    })
    .await;
    let mut stale = status_answer(&fed, &referral, "st-remote-loop-3", "on-hold");
    stale["payload"]["reason"] = json!("stale update");
    push_accepted(&b_agency, &stale).await;
    // The stale status reached A (it is in the inbox) but the referral stays completed.
    assert_eq!(
        collect(&employment, 2, Duration::ZERO).await,
        ["st-remote-loop-2", "st-remote-loop-3"]
    );
    let seen: Value = status(&employment, "ref-remote-loop")
        .await
        .json()
        .expect("JSON");
    assert_eq!(seen["lifecycle"]["status"], json!("completed"), "{seen}");

    // B reported the pull and the ack back to A (signed pickup reports).
    let seen = wait_for_status(&a, "ref-remote-loop", |s| s["acked_at"].is_string()).await;
    assert!(seen["first_pulled_at"].is_string(), "{seen}");

    // Each side can prove afterwards what was handed over, when, and to whom.
    let (mut a, mut b) = (a, b);
    assert!(a.stop().success());
    assert!(b.stop().success());
    let signature = receipt["signature"].as_str().expect("signature").to_owned();
    let digest = receipt["digest"].as_str().expect("digest").to_owned();
    let mut at_a = audit_of(&fed, "suwon", "ref-remote-loop");
    // The pull and the ack, reported by B: as one report, or two when the pull's went
    // before the ack.
    let reported = at_a.split_off(2);
    assert!((1..=2).contains(&reported.len()), "{reported:?}");
    for (action, actor, detail) in &reported {
        assert_eq!(action, "pickup-reported");
        assert_eq!(*actor, format!("urn:plusgate:node:{center}"));
        assert!(
            detail.as_deref().is_some_and(|d| d.contains("signature")),
            "{detail:?}"
        );
    }
    let last = reported.last().and_then(|(_, _, d)| d.as_deref());
    assert!(
        last.is_some_and(|d| d.contains("acknowledged at")),
        "{last:?}"
    );
    assert_eq!(
        at_a,
        [
            (
                "accepted".into(),
                "urn:plusgate:agency:suwon:employment".into(),
                None
            ),
            (
                "delivered".into(),
                format!("urn:plusgate:node:{center}"),
                Some(format!("receipt {signature}"))
            ),
        ]
    );
    let at_b = audit_of(&fed, &center, "ref-remote-loop");
    let (agency_center, agency_name) = recipient.split_once('/').expect("agency id");
    let b_agency_uri = format!("urn:plusgate:agency:{agency_center}:{agency_name}");
    assert_eq!(
        at_b,
        [
            (
                "received".into(),
                "urn:plusgate:node:suwon".into(),
                Some(format!("digest {digest}"))
            ),
            ("leased".into(), b_agency_uri.clone(), None),
            ("acked".into(), b_agency_uri, None),
        ]
    );
    assert_audit_verifies(&fed, "suwon");
    assert_audit_verifies(&fed, &center);

    // Each node keeps the other's latest signed checkpoint, which verifies against the
    // other's key in the directory and covers no more than the other's chain.
    for (holder, signer) in [("suwon", center.as_str()), (center.as_str(), "suwon")] {
        let store = plusgate::node::store::Store::open(&fed.data_dir(holder)).expect("store");
        let peer = plusgate::core::identity::CenterId::parse(signer).expect("center");
        let kept = store
            .peer_checkpoint(&peer)
            .expect("read")
            .unwrap_or_else(|| panic!("{holder} keeps no checkpoint of {signer}"));
        drop(store);
        let key = &fed.directory()["centers"][signer]["signing_key"];
        let key =
            plusgate::core::keys::PublicKey::from_hex(key.as_str().expect("hex")).expect("key");
        assert!(kept.verify(&key), "{kept:?}");
        let own = plusgate::node::store::Store::open(&fed.data_dir(signer)).expect("store");
        let length = own.audit_entries().count() as u64;
        assert!(
            kept.length >= 1 && kept.length <= length,
            "{kept:?} vs {length}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_rolls_its_audit_log_back_is_caught() {
    let fed = three_centers();
    let (_, center) = remote_recipient(&fed);
    let a = fed.start("suwon");
    let mut b = fed.start(&center);
    let agent = a.agent("suwon/employment", HttpVersion::Http2);
    let first: Vec<String> = numbered("ref-before-backup", 10);
    for id in &first {
        push_accepted(&agent, &remote_referral(&fed, id)).await;
    }
    wait_for_status(&a, &first[9], |s| s["state"] == "delivered").await;
    // B's operator takes a backup …
    assert!(b.stop().success());
    let backup = fed.scratch("b-backup");
    copy_dir(&fed.data_dir(&center), &backup);
    b.restart();
    // … B goes on (its chain and its checkpoints grow, and A keeps the newer one) …
    for id in numbered("ref-after-backup", 20) {
        push_accepted(&agent, &remote_referral(&fed, &id)).await;
    }
    wait_for_status(&a, "ref-after-backup-00019", |s| s["state"] == "delivered").await;
    // … then restores the backup: B's chain is shorter than what it signed before.
    assert!(b.stop().success());
    std::fs::remove_dir_all(fed.data_dir(&center)).expect("remove");
    copy_dir(&backup, &fed.data_dir(&center));
    b.restart();
    push_accepted(&agent, &remote_referral(&fed, "ref-after-restore")).await;
    wait_for_status(&a, "ref-after-restore", |s| s["state"] == "delivered").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.log().contains("audit log went back") {
        assert!(Instant::now() < deadline, "A did not notice:\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Regression test for issue 10, finding 3: a node whose newest entries and checkpoints
/// were deleted (its anchor file too, so it starts) grows again and signs longer
/// checkpoints; its peer took any longer checkpoint. Now each checkpoint names the one
/// before it, the peer refuses one that does not pass through the checkpoint it holds, logs
/// it, keeps the pair as evidence, and its officer's audit status reports it; the peer tells
/// the forked node, whose own officer sees it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_audit_log_was_cut_back_and_grew_again_is_caught_and_reported() {
    let fed = three_centers();
    let (_, center) = remote_recipient(&fed);
    let mut a = fed.start("suwon");
    let mut b = fed.start(&center);
    let agent = a.agent("suwon/employment", HttpVersion::Http2);
    for id in numbered("ref-before-cut", 10) {
        push_accepted(&agent, &remote_referral(&fed, &id)).await;
    }
    wait_for_status(&a, "ref-before-cut-00009", |s| s["state"] == "delivered").await;
    assert!(a.stop().success());
    assert!(b.stop().success());
    let held = {
        let store = plusgate::node::store::Store::open(&fed.data_dir(&center)).expect("store");
        let suwon = plusgate::core::identity::CenterId::parse("suwon").expect("center");
        store
            .peer_checkpoint(&suwon)
            .expect("read")
            .expect("B holds A's checkpoint")
    };
    crate::support::wait_unlocked(&fed.data_dir(&center));
    // A's newest entries and checkpoints go, from before the checkpoint B holds, and the
    // anchor with them: A starts on a store consistent in itself.
    assert!(held.length > 4, "{held:?}");
    crate::support::cut_audit_log(&fed.data_dir("suwon"), held.length - 3);
    let anchor = fed.data_dir("suwon").join("audit-anchor");
    if anchor.exists() {
        std::fs::remove_file(anchor).expect("remove the anchor");
    }
    // A's next checkpoint after the newest one left comes only past the length B holds, so
    // it skips the one B holds (were it of that very length, B would find it rewritten).
    let left = plusgate::node::store::Store::open(&fed.data_dir("suwon"))
        .expect("store")
        .latest_checkpoint()
        .expect("read")
        .map_or(0, |c| c.length);
    crate::support::wait_unlocked(&fed.data_dir("suwon"));
    let every = (held.length - left + 1).to_string();
    fed.set_option("suwon", "federation", "checkpoint_every", &every);
    a.restart();
    let agent = a.agent("suwon/employment", HttpVersion::Http2);
    // With B down, A's chain grows well past what B holds and A signs new checkpoints.
    for id in numbered("ref-after-cut", 30) {
        push_accepted(&agent, &remote_referral(&fed, &id)).await;
    }
    b.restart();
    wait_for_status(&a, "ref-after-cut-00029", |s| s["state"] == "delivered").await;
    // Each further batch carries A's checkpoints after the one B holds, until B sees the
    // fork (the first batch after A's restart cannot: A does not know yet what B holds).
    let deadline = Instant::now() + CATCH_UP;
    let mut n = 0;
    while !b.log().contains("audit log went back or forked") {
        assert!(Instant::now() < deadline, "B did not notice:\n{}", b.log());
        let id = format!("ref-probe-{n:05}");
        push_accepted(&agent, &remote_referral(&fed, &id)).await;
        wait_for_status(&a, &id, |s| s["state"] == "delivered").await;
        n += 1;
    }
    assert!(
        b.log().contains("forked: its audit log was cut back"),
        "{}",
        b.log()
    );

    // B's officer sees it: the status is not "verified", and names A and the evidence.
    let officer = b.agent(&format!("{center}/privacy-officer"), HttpVersion::Http1);
    let status: Value = officer
        .get("/v1/privacy/audit")
        .await
        .expect("response")
        .json()
        .expect("JSON");
    assert_eq!(status["verified"], false, "{status}");
    assert_eq!(
        status["chain_verified"], true,
        "B's own chain is fine: {status}"
    );
    let problem = status["problem"].as_str().expect("a problem");
    assert!(
        problem.starts_with("checkpoints of suwon contradict each other"),
        "{problem}"
    );
    let peers = status["peers"].as_array().expect("peers");
    let suwon = peers
        .iter()
        .find(|p| p["center"] == "suwon")
        .expect("A listed");
    assert_eq!(suwon["consistent"], false, "{status}");
    assert_eq!(
        suwon["checkpoint"]["head"],
        json!(held.head),
        "B still holds the honest one"
    );
    let evidence = &suwon["evidence"][0];
    assert_eq!(evidence["held"]["length"], held.length, "{status}");
    assert!(
        evidence["refused"]["length"].as_u64() > Some(held.length),
        "{status}"
    );
    assert!(
        evidence["problem"]
            .as_str()
            .is_some_and(|p| p.contains(&format!("follows its checkpoint of {left} entries"))),
        "{status}"
    );

    // A learns it from B's answers, checks that both checkpoints are its own, and its
    // officer's status stops saying verified.
    let deadline = Instant::now() + CATCH_UP;
    let own = loop {
        let officer = a.agent("suwon/privacy-officer", HttpVersion::Http1);
        let status: Value = officer
            .get("/v1/privacy/audit")
            .await
            .expect("response")
            .json()
            .expect("JSON");
        if status["verified"] == false {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "A's officer is not told: {status}\n{}",
            a.log()
        );
        let id = format!("ref-probe-{n:05}");
        push_accepted(&agent, &remote_referral(&fed, &id)).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let problem = own["problem"].as_str().expect("a problem");
    assert!(
        problem.starts_with("checkpoints of suwon contradict each other"),
        "{problem}"
    );
    assert!(
        a.log().contains("holds proof that this node's audit log"),
        "{}",
        a.log()
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The audit entries of a stopped node about message `id`: (action, actor, detail).
fn audit_of(fed: &Federation, center: &str, id: &str) -> Vec<(String, String, Option<String>)> {
    let store = plusgate::node::store::Store::open(&fed.data_dir(center)).expect("open store");
    store
        .audit_entries()
        .map(|e| e.expect("audit entry"))
        .filter(|e| e.message_id == id)
        .map(|e| {
            let action = serde_json::to_value(e.action).expect("action");
            (
                action.as_str().expect("action name").to_owned(),
                e.actor,
                e.detail,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_sender_arrive_in_the_order_they_were_accepted() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    let a = fed.start("suwon");
    let ids = numbered("ref-order", 300);
    // B is down while they are accepted, so they all wait in the outbox and go in batches.
    let agent = a.agent("suwon/employment", HttpVersion::Http2);
    for id in &ids[..150] {
        push_accepted(&agent, &remote_referral(&fed, id)).await;
    }
    let b = fed.start(&center);
    for id in &ids[150..] {
        push_accepted(&agent, &remote_referral(&fed, id)).await;
    }
    let got = collect(
        &b.agent(&recipient, HttpVersion::Http2),
        ids.len(),
        Duration::ZERO,
    )
    .await;
    assert_eq!(got, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_of_either_node_lose_nothing_and_duplicate_nothing() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    // The smallest overlay on both: outbox, inbox and delivery writes are folded into the
    // stores many times during the stream, so the kills land mid-fold too.
    fed.set_option("suwon", "storage", "overlay_mb", "1");
    fed.set_option(&center, "storage", "overlay_mb", "1");
    let mut a = fed.start("suwon");
    let mut b = fed.start(&center);
    let ids = numbered("ref-crash", 10_000);

    // B is SIGKILLed while A forwards the stream, then restarted.
    let pushing = {
        let fed_ids = ids.clone();
        let agent_node = &a;
        let push = push_remote(&fed, agent_node, &fed_ids, 8);
        let crash_b = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            b.kill_hard();
            tokio::time::sleep(Duration::from_millis(500)).await;
            b.restart();
        };
        let (accepted, ()) = tokio::join!(push, crash_b);
        accepted
    };
    assert_eq!(pushing.len(), ids.len());

    // A is SIGKILLed while still forwarding, then restarted.
    a.kill_hard();
    a.restart();

    let got = collect(
        &b.agent(&recipient, HttpVersion::Http2),
        ids.len(),
        Duration::ZERO,
    )
    .await;
    let got = once_each(&got);
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{} of {} arrived",
        got.len(),
        want.len()
    );
    assert_eq!(got, want);

    // Every message ends delivered at A, and both audit chains verify.
    wait_for_status(&a, &ids[ids.len() - 1], |s| s["state"] == "delivered").await;
    assert!(a.stop().success());
    assert!(b.stop().success());
    assert_audit_verifies(&fed, "suwon");
    assert_audit_verifies(&fed, &center);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_unreachable_through_many_backoff_rounds_gets_everything_once_it_is_back() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    let a = fed.start("suwon");
    let agent = a.agent("suwon/employment", HttpVersion::Http2);
    // B is down while A keeps accepting, long enough for A's backoff (50 ms doubling, capped
    // at 1 s by `three_centers`) to reach its cap and keep retrying there: eight times the
    // cap. (A minute of outage against a 60 s cap is the same test, sixty times slower.)
    let mut ids = Vec::new();
    let outage = Instant::now();
    let mut i = 0;
    while outage.elapsed() < Duration::from_secs(8) {
        let id = format!("ref-outage-{i:04}");
        push_accepted(&agent, &remote_referral(&fed, &id)).await;
        ids.push(id);
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let waiting = wait_for_status(&a, &ids[0], |s| s["state"] == "forwarded").await;
    // Delays of at most 50, 100, 200, 400 and 800 ms fit five failures into the first
    // 1.6 s: by now the backoff has reached its cap.
    assert!(
        waiting["forwarding"]["failed_attempts"].as_u64() >= Some(5),
        "{waiting}"
    );
    assert!(waiting["forwarding"]["last_error"].is_string(), "{waiting}");

    let mut b = fed.start(&center);
    let got = collect(
        &b.agent(&recipient, HttpVersion::Http2),
        ids.len(),
        Duration::ZERO,
    )
    .await;
    assert_eq!(got, ids, "all of them, once, in order");
    let mut a = a;
    assert!(a.stop().success());
    assert!(b.stop().success());
    assert_audit_verifies(&fed, "suwon");
    assert_audit_verifies(&fed, &center);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_message_is_dead_lettered_and_an_operator_can_retry_it() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    fed.set_option("suwon", "federation", "message_ttl_s", "2");
    let mut a = fed.start("suwon");
    let agent = a.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&agent, &remote_referral(&fed, "ref-dead")).await;
    push_accepted(&agent, &remote_referral(&fed, "ref-dropped")).await;
    // The peer stays down past their time to live: A comes back a minute later on its
    // clock (shifted, so the test does not wait for it).
    fed.shift_clock("suwon", 60);
    a.restart();

    let seen = wait_for_status(&a, "ref-dead", |s| s["state"] == "dead-lettered").await;
    let reason = seen["forwarding"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("time to live"), "{seen}");

    // The operator sees it, and retries it once the peer is back.
    let config = fed.config_path("suwon").display().to_string();
    let listed = run_to_exit(
        &["outbox", "list", "--config", &config],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert!(listed.status.success(), "{listed:?}");
    assert!(listed.stdout.contains("ref-dead"), "{}", listed.stdout);
    assert!(listed.stdout.contains("dead-lettered"), "{}", listed.stdout);

    let b = fed.start(&center);
    let retried = run_to_exit(
        &["outbox", "retry", "--config", &config, "ref-dead"],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert!(retried.status.success(), "{retried:?}");
    let got = collect(&b.agent(&recipient, HttpVersion::Http2), 1, Duration::ZERO).await;
    assert_eq!(got, ["ref-dead"]);
    wait_for_status(&a, "ref-dead", |s| s["state"] == "delivered").await;

    // Retrying what is not dead-lettered is refused and says why.
    let again = run_to_exit(
        &["outbox", "retry", "--config", &config, "ref-dead"],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert!(!again.status.success(), "{again:?}");
    assert!(again.stderr.contains("delivered"), "{}", again.stderr);
}

/// After a long outage, `outbox retry --all --center C` puts every dead letter for that
/// center back (and only those); the exit codes tell a refusal from an unreachable node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_every_dead_letter_for_a_center_at_once() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    let other = if center == "gangseo" {
        "jeongeup"
    } else {
        "gangseo"
    };
    fed.set_option("suwon", "federation", "message_ttl_s", "2");
    let mut a = fed.start("suwon");
    let agent = a.agent("suwon/employment", HttpVersion::Http1);
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = format!("ref-outage-{i}");
        push_accepted(&agent, &remote_referral(&fed, &id)).await;
        ids.push(id);
    }
    push_accepted(
        &agent,
        &referral_to(&fed, "ref-other-center", &format!("{other}/welfare")),
    )
    .await;
    fed.shift_clock("suwon", 60);
    a.restart();
    for id in ids
        .iter()
        .chain(std::iter::once(&"ref-other-center".to_owned()))
    {
        wait_for_status(&a, id, |s| s["state"] == "dead-lettered").await;
    }

    let b = fed.start(&center);
    let config = fed.config_path("suwon").display().to_string();
    let retried = run_to_exit(
        &[
            "outbox", "retry", "--config", &config, "--all", "--center", &center,
        ],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert!(retried.status.success(), "{retried:?}");
    assert!(
        retried.stdout.contains(&format!(
            "put back into the outbox: 3 dead-lettered messages for {center}"
        )),
        "{}",
        retried.stdout
    );
    let mut got = collect(&b.agent(&recipient, HttpVersion::Http2), 3, Duration::ZERO).await;
    got.sort();
    assert_eq!(got, ids);
    let other_one: Value = status(&agent, "ref-other-center")
        .await
        .json()
        .expect("JSON");
    assert_eq!(
        other_one["state"],
        json!("dead-lettered"),
        "only {center}'s went back"
    );

    // Refused by the node (nothing to retry under that id): exit 3. Node down: exit 69.
    let refused = run_to_exit(
        &["outbox", "retry", "--config", &config, "ref-nobody-sent"],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(a.stop().success());
    let down = run_to_exit(
        &["outbox", "list", "--config", &config],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert_eq!(down.status.code(), Some(69), "{down:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_in_an_outbox_is_dead_lettered_and_blocks_nothing() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    let mut a = fed.start("suwon");
    let agent = a.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&agent, &remote_referral(&fed, "ref-fed-damaged")).await;
    push_accepted(&agent, &remote_referral(&fed, "ref-fed-intact")).await;
    assert!(a.stop().success());
    crate::durability::damage_record(
        &fed.data_dir("suwon"),
        b'm',
        "suwon/employment/ref-fed-damaged",
    );

    a.restart();
    let b = fed.start(&center);
    let got = collect(&b.agent(&recipient, HttpVersion::Http2), 1, Duration::ZERO).await;
    assert_eq!(got, ["ref-fed-intact"]);
    let config = fed.config_path("suwon").display().to_string();
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let listed = run_to_exit(
            &["outbox", "list", "--config", &config],
            fed.dir(),
            Duration::from_secs(30),
        );
        assert!(listed.status.success(), "{listed:?}");
        if listed.stdout.contains("dead-lettered: 1") {
            assert!(
                listed.stdout.contains("ref-fed-damaged"),
                "{}",
                listed.stdout
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}", listed.stdout);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_drop_a_waiting_message() {
    let fed = three_centers();
    let (_, center) = remote_recipient(&fed);
    let a = fed.start("suwon");
    let agent = a.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&agent, &remote_referral(&fed, "ref-drop-me")).await;
    let config = fed.config_path("suwon").display().to_string();
    let dropped = run_to_exit(
        &["outbox", "drop", "--config", &config, "ref-drop-me"],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert!(dropped.status.success(), "{dropped:?}");
    let seen = wait_for_status(&a, "ref-drop-me", |s| s["state"] == "dead-lettered").await;
    assert!(
        seen["forwarding"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("operator")),
        "{seen}"
    );
    // It is never delivered, even when the peer comes up: a message pushed after it is
    // delivered, so the forwarder has sent everything still waiting before it.
    let _b = fed.start(&center);
    push_accepted(&agent, &remote_referral(&fed, "ref-after-the-drop")).await;
    wait_for_status(&a, "ref-after-the-drop", |s| s["state"] == "delivered").await;
    let seen: Value = status(&agent, "ref-drop-me").await.json().expect("JSON");
    assert_eq!(seen["state"], json!("dead-lettered"));
}

/// The `referral-remote` example, addressed to `to` instead (an agency at any center).
fn referral_to(fed: &Federation, id: &str, to: &str) -> Value {
    let mut body = remote_referral(fed, id);
    body["to"] = json!(to);
    body["payload"]["recipient"]["agency"] = json!(to);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_center_that_is_down_does_not_hold_up_the_others() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    let other = if center == "gangseo" {
        "jeongeup"
    } else {
        "gangseo"
    };
    // After a failure, a forwarder waits 30 s: if one peer's failures held up another
    // peer's delivery, B's messages would wait that long.
    fed.set_option("suwon", "federation", "retry_initial_ms", "30000");
    fed.set_option("suwon", "federation", "retry_max_ms", "30000");
    let a = fed.start("suwon");
    let b = fed.start(&center);
    // `other` stays down throughout; its outbox fills while B's drains.
    let agent = a.agent("suwon/employment", HttpVersion::Http2);
    let mut for_b = Vec::new();
    for i in 0..50 {
        let id = format!("ref-down-other-{i:02}");
        push_accepted(&agent, &referral_to(&fed, &id, &format!("{other}/welfare"))).await;
        let id = format!("ref-up-{i:02}");
        push_accepted(&agent, &referral_to(&fed, &id, &recipient)).await;
        for_b.push(id);
    }
    let started = Instant::now();
    let got = collect(
        &b.agent(&recipient, HttpVersion::Http2),
        for_b.len(),
        Duration::ZERO,
    )
    .await;
    assert_eq!(got, for_b);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "B's messages took {:?}: held up by {other}'s retry delay",
        started.elapsed()
    );
    let waiting = wait_for_status(&a, "ref-down-other-00", |s| s["state"] == "forwarded").await;
    assert!(waiting["forwarding"]["failed_attempts"].as_u64() > Some(0));
}

/// A peer that stays down is not a warning at every retry: the first failure, a changed
/// error, and failures 2, 4, 8, … are; the node says when forwarding works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stays_down_is_warned_of_a_few_times_not_at_every_retry() {
    let fed = Federation::with_centers(&["suwon", "gangseo"]);
    fed.set_option("suwon", "federation", "retry_initial_ms", "20");
    fed.set_option("suwon", "federation", "retry_max_ms", "40");
    let a = fed.start("suwon");
    let (_, center) = remote_recipient(&fed);
    push_accepted(
        &a.agent("suwon/employment", HttpVersion::Http1),
        &remote_referral(&fed, "ref-to-a-down-center"),
    )
    .await;
    let seen = wait_for_status(&a, "ref-to-a-down-center", |s| {
        s["forwarding"]["failed_attempts"].as_u64() >= Some(40)
    })
    .await;
    let failures = seen["forwarding"]["failed_attempts"]
        .as_u64()
        .expect("count");
    let warnings = a
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("forwarding failed"))
        .count() as u64;
    assert!(warnings >= 1, "the first failure is a warning");
    // 1, 2, 4, 8, 16, 32 (and 64 if it got there): about log2 of the failures.
    assert!(
        warnings <= 2 + u64::from(failures.ilog2()),
        "{warnings} warnings for {failures} failures"
    );
    let b = fed.start(&center);
    let deadline = Instant::now() + CATCH_UP;
    while !a.log().contains("forwarding works again") {
        assert!(Instant::now() < deadline, "never said it works again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_ids_and_never_what_a_message_says() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    // Everything every crate logs at debug level, on both nodes.
    let a = fed.start_logging("suwon", "debug");
    let b = fed.start_logging(&center, "debug");
    let secrets = [
        "SECRET-SUMMARY-7f1c",
        "비밀상담내용",
        "010-9876-5432",
        "900101-1234567",
    ];
    let employment = a.agent("suwon/employment", HttpVersion::Http2);
    let mut local = fed.referral("ref-logs-local");
    let mut remote = remote_referral(&fed, "ref-logs-remote");
    for body in [&mut local, &mut remote] {
        body["payload"]["summary"] = json!(format!("{} {}", secrets[0], secrets[1]));
        body["payload"]["contact_preferences"]["notes"] = json!(secrets[2]);
    }
    push_accepted(&employment, &local).await;
    push_accepted(&employment, &remote).await;
    // Refused, with the RRN in it: the refusal is logged, the number is not.
    let mut with_rrn = fed.referral("ref-logs-rrn");
    with_rrn["payload"]["summary"] = json!(format!("주민번호 {}", secrets[3]));
    assert_problem(&push(&employment, &with_rrn).await, 422, "schema-violation");
    let got = collect(&b.agent(&recipient, HttpVersion::Http2), 1, Duration::ZERO).await;
    assert_eq!(got, ["ref-logs-remote"]);
    let welfare = a.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(
        collect(&welfare, 1, Duration::ZERO).await,
        ["ref-logs-local"]
    );
    wait_for_status(&a, "ref-logs-remote", |s| s["state"] == "delivered").await;

    for (node, log) in [("suwon", a.log()), (center.as_str(), b.log())] {
        assert!(
            log.contains("plusgate::node::api") && log.contains("/v1/inbox"),
            "{node} logged at debug level:\n{log}"
        );
        for secret in secrets {
            assert!(!log.contains(secret), "{node} logged {secret:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_refuses_new_pushes_for_that_center_only() {
    let fed = three_centers();
    fed.set_option("suwon", "federation", "outbox_max", "3");
    let a = fed.start("suwon");
    let agent = a.agent("suwon/employment", HttpVersion::Http1);
    for i in 0..3 {
        push_accepted(&agent, &remote_referral(&fed, &format!("ref-full-{i}"))).await;
    }
    let response = push(&agent, &remote_referral(&fed, "ref-full-3")).await;
    let problem = assert_problem(&response, 503, "outbox-full");
    assert!(response.headers.get("retry-after").is_some(), "{problem}");
    // Local delivery, and other centers, are not affected.
    push_accepted(&agent, &fed.referral("ref-local-while-full")).await;
    let (recipient, _) = remote_recipient(&fed);
    let elsewhere = if recipient.starts_with("gangseo/") {
        "jeongeup/welfare"
    } else {
        "gangseo/welfare"
    };
    push_accepted(&agent, &referral_to(&fed, "ref-other-center", elsewhere)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_in_the_directory_may_hand_over_messages() {
    let fed = three_centers();
    let a = fed.start("suwon");
    let batch = json!({"messages": []});
    // An agency certificate.
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let agency = a.agent("suwon/employment", version);
        let response = agency
            .post_json("/federation/v1/batches", &batch)
            .await
            .expect("response");
        assert_problem(&response, 403, "wrong-role");
    }
    // A node certificate from the federation's CA for a center the directory does not list.
    let rogue = fed.issue(
        "rogue-node",
        &Role::Node {
            center: "rogue".into(),
        },
        Validity::days_from_now(30),
    );
    let response = a
        .agent_as(Some(&rogue), HttpVersion::Http2)
        .post_json("/federation/v1/batches", &batch)
        .await
        .expect("response");
    assert_problem(&response, 403, "unknown-node");
    // A listed node may (an empty batch gets an empty answer).
    let peer = fed.node_identity("gangseo");
    let response = a
        .agent_as(Some(&peer), HttpVersion::Http2)
        .post_json("/federation/v1/batches", &batch)
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    // … but not the operator API, which only this node's own certificate may use.
    let response = a
        .agent_as(Some(&peer), HttpVersion::Http1)
        .get("/admin/v1/outbox")
        .await
        .expect("response");
    assert_problem(&response, 403, "wrong-role");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_revalidates_what_another_node_hands_over() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    let b = fed.start(&center);
    let suwon = fed.node_identity("suwon");
    let agent = b.agent_as(Some(&suwon), HttpVersion::Http2);
    let referral = remote_referral(&fed, "ref-forged");
    let wire = |from: &str, mutate: &dyn Fn(&mut Value)| {
        let mut m = referral.clone();
        m["from"] = json!(from);
        m["accepted_at"] = json!("2026-11-26T00:00:00Z");
        m["digest"] = json!("00");
        mutate(&mut m);
        m
    };
    let batch = json!({"messages": [
        // Not suwon's agency: a node speaks only for its own center.
        wire("gangseo/employment", &|_| {}),
        // Schema violation.
        wire("suwon/employment", &|m| m["payload"]["urgency"] = json!("whenever")),
        // Digest that does not match the content.
        wire("suwon/employment", &|_| {}),
    ]});
    let response = agent
        .post_json("/federation/v1/batches", &batch)
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    let body: Value = response.json().expect("JSON");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    for r in results {
        assert!(r["refused"].is_string(), "{r}");
        assert!(r.get("receipt").is_none(), "{r}");
    }
    assert!(results[0]["refused"].as_str().unwrap_or("").contains("own"));
    assert!(results[1]["refused"]
        .as_str()
        .unwrap_or("")
        .contains("urgency"));
    assert!(results[2]["refused"]
        .as_str()
        .unwrap_or("")
        .contains("digest"));
    assert!(pull(&b.agent(&recipient, HttpVersion::Http1), "max=10")
        .await
        .is_empty());
}

#[test]
fn a_tampered_or_unsigned_directory_stops_the_node() {
    let fed = three_centers();
    let path = fed.directory_path();
    let good = std::fs::read_to_string(&path).expect("directory");
    let config = fed.config_path("suwon").display().to_string();
    let serve = || {
        run_to_exit(
            &["serve", "--config", &config, "--listen", "127.0.0.1:0"],
            fed.dir(),
            Duration::from_secs(20),
        )
    };

    let verify = || {
        let file = path.display().to_string();
        run_to_exit(
            &["directory", "verify", "--file", &file, "--config", &config],
            fed.dir(),
            Duration::from_secs(20),
        )
    };
    let done = verify();
    assert!(done.status.success(), "{done:?}");
    assert!(done.stdout.contains("ok"), "{}", done.stdout);

    // One changed character inside the signed content.
    let tampered = good.replacen("\"receives\"", "\"receives\" ", 1);
    assert_ne!(tampered, good);
    std::fs::write(
        &path,
        tampered.replacen("referral-status", "referral-statuz", 1),
    )
    .expect("write");
    let done = serve();
    assert_eq!(done.status.code(), Some(78), "{done:?}");
    assert!(done.stderr.contains("directory"), "{}", done.stderr);
    let done = verify();
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(done.stderr.contains("signature"), "{}", done.stderr);

    // No signature at all.
    let mut unsigned: Value = serde_json::from_str(&good).expect("JSON");
    unsigned
        .as_object_mut()
        .expect("object")
        .remove("signature");
    std::fs::write(&path, unsigned.to_string()).expect("write");
    let done = serve();
    assert_eq!(done.status.code(), Some(78), "{done:?}");
    assert!(done.stderr.contains("directory"), "{}", done.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_directory_is_refused_and_a_newer_one_is_taken_on_sighup() {
    let fed = three_centers();
    let original = std::fs::read(fed.directory_path()).expect("directory");
    // Version + 1: suwon/employment may no longer send referrals.
    fed.set_sends("suwon/employment", &["case-summary"]);
    let newer = std::fs::read(fed.directory_path()).expect("directory");
    let mut a = fed.start("suwon");
    let agent = a.agent("suwon/employment", HttpVersion::Http1);
    assert_problem(
        &push(&agent, &fed.referral("ref-not-allowed")).await,
        403,
        "type-not-allowed",
    );
    assert!(a.stop().success());

    // Rolling back to the original (older) directory is refused at start …
    std::fs::write(fed.directory_path(), &original).expect("write");
    let config = fed.config_path("suwon").display().to_string();
    let done = run_to_exit(
        &["serve", "--config", &config, "--listen", "127.0.0.1:0"],
        fed.dir(),
        Duration::from_secs(20),
    );
    assert_eq!(done.status.code(), Some(78), "{done:?}");
    assert!(done.stderr.contains("older"), "{}", done.stderr);

    // … and on reload. A newer one (version + 2: referrals allowed again) is taken.
    std::fs::write(fed.directory_path(), &newer).expect("write");
    a.restart();
    std::fs::write(fed.directory_path(), &original).expect("write");
    a.hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent = a.agent("suwon/employment", HttpVersion::Http1);
    assert_problem(
        &push(&agent, &fed.referral("ref-still-not-allowed")).await,
        403,
        "type-not-allowed",
    );
    std::fs::write(fed.directory_path(), &newer).expect("write");
    fed.set_sends(
        "suwon/employment",
        &["referral", "referral-status", "case-summary"],
    );
    a.hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = push(&agent, &fed.referral("ref-allowed-again")).await;
        if response.status.as_u16() == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", response.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.log().contains("refusing to roll back"), "{}", a.log());
}

/// A consent travels on its collector's node's word only: a node whose center a consent
/// names cannot hand another node a consent "collected by" a third center's agency, nor
/// change one, nor vouch for it itself. Only a signature by the node of the collector's
/// center, checked against the directory, makes the receiver hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_is_believed_only_on_its_collectors_nodes_signature() {
    use plusgate::core::consent::attestation::Attestation;
    use plusgate::core::consent::{ConsentRecord, Registration};
    use plusgate::core::identity::AgencyId;
    use plusgate::core::keys::SigningKey;

    let fed = three_centers();
    let suwon = fed.start("suwon");
    let signing_key = |center: &str| {
        let path = fed
            .config_path(center)
            .parent()
            .expect("folder")
            .join("node-signing.key");
        SigningKey::load(&path).expect("signing key")
    };
    // Collected at jeongeup; names gangseo (the sending node's center) and suwon.
    let document = |id: &str| {
        let mut c = fed.example("consent");
        c["id"] = json!(id);
        c["collected_by"]["agency"] = json!("jeongeup/welfare");
        c["recipients"] = json!(["gangseo/welfare", "suwon/welfare"]);
        c
    };
    let record = |doc: &Value| -> ConsentRecord {
        let collector = AgencyId::parse("jeongeup/welfare").expect("agency");
        Registration::new(doc, &collector, "2026-11-29T00:00:00Z")
            .expect("registrable")
            .record
    };
    let gangseo_node = fed.node_identity("gangseo");
    let from_gangseo = suwon.agent_as(Some(&gangseo_node), HttpVersion::Http2);
    let reader = suwon.agent("suwon/welfare", HttpVersion::Http1);
    let send = |doc: Value, attestation: Option<Attestation>| {
        let mut wire = json!({"document": doc, "status": "granted", "history": []});
        if let Some(a) = attestation {
            wire["attestation"] = serde_json::to_value(a).expect("JSON");
        }
        json!({"messages": [], "consents": [wire]})
    };
    let held = |id: &str| {
        let reader = &reader;
        let path = format!("/v1/consents/{id}");
        async move { reader.get(&path).await.expect("response").status.as_u16() == 200 }
    };

    // No signature at all.
    let doc = document("cns-unsigned");
    let response = from_gangseo
        .post_json("/federation/v1/batches", &send(doc, None))
        .await
        .expect("response");
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    assert!(
        !held("cns-unsigned").await,
        "an unsigned consent is not held"
    );

    // Signed by the sending node, not by the collector's.
    let doc = document("cns-signed-by-sender");
    let by_sender = Attestation::sign(&signing_key("gangseo"), &record(&doc));
    from_gangseo
        .post_json("/federation/v1/batches", &send(doc, Some(by_sender)))
        .await
        .expect("response");
    assert!(!held("cns-signed-by-sender").await);

    // The collector's node's signature over another document (here: valid for longer).
    let doc = document("cns-altered");
    let genuine = Attestation::sign(&signing_key("jeongeup"), &record(&doc));
    let mut altered = doc.clone();
    altered["valid_until"] = json!("2030-03-04T23:59:59+09:00");
    from_gangseo
        .post_json("/federation/v1/batches", &send(altered, Some(genuine)))
        .await
        .expect("response");
    assert!(!held("cns-altered").await);

    // The collector's node's signature over this document: relayed by gangseo, believed.
    let doc = document("cns-genuine");
    let genuine = Attestation::sign(&signing_key("jeongeup"), &record(&doc));
    from_gangseo
        .post_json("/federation/v1/batches", &send(doc, Some(genuine)))
        .await
        .expect("response");
    assert!(
        held("cns-genuine").await,
        "a relayed genuine consent is held"
    );
}

/// A recipient's full inbox at another center holds messages back, never loses them: the
/// receiving node answers a message for a full inbox with neither a receipt nor a refusal,
/// so the sending node keeps it in its outbox and sends it again; once the recipient acks,
/// it arrives. Nothing is dead-lettered, nothing arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_at_another_center_holds_messages_back_until_the_recipient_acks() {
    let fed = three_centers();
    let (recipient, center) = remote_recipient(&fed);
    fed.set_limit(&center, "inbox_max", 2);
    let b = fed.start(&center);
    let a = fed.start("suwon");
    let sender = a.agent("suwon/employment", HttpVersion::Http1);
    let ids = ["ref-full-b-1", "ref-full-b-2", "ref-full-b-3"];
    for id in ids {
        push_accepted(&sender, &remote_referral(&fed, id)).await;
    }
    let inbox = b.agent(&recipient, HttpVersion::Http1);
    // Two arrive; the third waits at A, tried again and again, not dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut arrived = BTreeSet::new();
    while arrived.len() < 2 {
        for m in ids_of(&pull(&inbox, "max=10&wait=1").await) {
            arrived.insert(m);
        }
        assert!(Instant::now() < deadline, "{arrived:?}");
    }
    let third = loop {
        let s: Value = status(&sender, "ref-full-b-3").await.json().expect("JSON");
        if s["forwarding"]["failed_attempts"].as_u64().unwrap_or(0) >= 1
            || Instant::now() > deadline
        {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(third["state"], "forwarded", "{third}");
    assert!(!arrived.contains("ref-full-b-3"));
    // The recipient acks what it has: room again, and the third arrives, once.
    let got: Vec<&str> = arrived.iter().map(String::as_str).collect();
    assert_eq!(ack(&inbox, &got).await.status.as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let late = loop {
        let late = ids_of(&pull(&inbox, "max=10&wait=1").await);
        if !late.is_empty() || Instant::now() > deadline {
            break late;
        }
    };
    assert_eq!(late, ["ref-full-b-3"]);
    let s: Value = status(&sender, "ref-full-b-3").await.json().expect("JSON");
    assert_eq!(s["state"], "delivered", "{s}");
}
