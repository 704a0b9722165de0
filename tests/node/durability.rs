//! What survives a stop, a SIGKILL under load, and damage to a stored record.
//!
//! The crash test follows sled's own crash tests: kill a child process mid-write, restart
//! it on the same data directory, and check that everything acknowledged is still there.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{
    ack, assert_problem, drain_inbox, ids_of, once_each, pull, push, push_accepted, push_referrals,
    status, with_id, Federation,
};

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_keeps_every_accepted_message() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let ids = numbered("ref-term", 200);
    push_referrals(&fed, &node, &ids, 8).await;
    let status = node.stop();
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
    node.restart();
    let delivered = drain_inbox(&node.agent("suwon/welfare", HttpVersion::Http2)).await;
    assert_eq!(once_each(&delivered), ids.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigkill_keeps_every_accepted_message() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let ids = numbered("ref-kill", 200);
    push_referrals(&fed, &node, &ids, 8).await;
    node.kill_hard();
    node.restart();
    let delivered = drain_inbox(&node.agent("suwon/welfare", HttpVersion::Http1)).await;
    assert_eq!(once_each(&delivered), ids.into_iter().collect());
}

/// sled 0.34 writes a snapshot as `snap.<lsn>.generating`, then renames it; a SIGKILL in
/// between leaves that file, and sled's reader takes the snapshot whose name sorts last, so
/// it read the unfinished one and refused the store as corrupt at every start from then on.
/// Found by the crash soak (docs/crash-soak.md): a node killed during start-up never came
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_cut_off_by_a_kill_does_not_keep_the_node_from_starting() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let ids = numbered("ref-snap", 50);
    push_referrals(&fed, &node, &ids, 4).await;
    node.kill_hard();
    // What a kill in the middle of writing the next snapshot leaves: a file named for a
    // later log position than any complete snapshot, cut short.
    let unfinished = fed
        .data_dir("suwon")
        .join("snap.FFFFFFFFFFFFFF00.generating");
    std::fs::write(&unfinished, [0xA5u8; 100]).expect("write the unfinished snapshot");
    node.restart();
    assert!(!unfinished.exists(), "the unfinished snapshot is removed");
    assert!(
        node.log().contains("left unfinished"),
        "and the operator is told"
    );
    let delivered = drain_inbox(&node.agent("suwon/welfare", HttpVersion::Http2)).await;
    assert_eq!(once_each(&delivered), ids.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_survive_a_restart_and_leases_do_not() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let ids = numbered("ref-ack", 10);
    push_referrals(&fed, &node, &ids, 1).await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    assert_eq!(ids_of(&pull(&welfare, "max=4").await), ids[..4]);
    let response = ack(&welfare, &[&ids[0], &ids[1]]).await;
    assert_eq!(response.status.as_u16(), 200, "{}", response.text());
    node.kill_hard();
    node.restart();
    // Leases live in memory and die with the process, so the two pulled but unacknowledged
    // messages come back (at-least-once); acknowledgements are durable.
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    assert_eq!(drain_inbox(&welfare).await, ids[2..]);
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let seen: Value = status(&sender, &ids[0]).await.json().expect("JSON");
    assert_eq!(seen["state"], json!("acked"));
    let seen: Value = status(&sender, &ids[2]).await.json().expect("JSON");
    assert_eq!(
        seen["state"],
        json!("acked"),
        "acked after the restart by the drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_survives_a_restart() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let body = fed.referral("ref-across-restart");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let first = push_accepted(&agent, &body).await;
    node.kill_hard();
    node.restart();
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let retry = push_accepted(&agent, &body).await;
    assert_eq!(retry["accepted_at"], first["accepted_at"]);
    let mut different = body.clone();
    different["payload"]["urgency"] = json!("routine");
    assert_problem(&push(&agent, &different).await, 409, "id-conflict");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(drain_inbox(&welfare).await, ["ref-across-restart"]);
}

/// What the load of one crash cycle did: ids sent, and ids that got a 202.
#[derive(Default)]
struct Sent {
    attempted: HashSet<String>,
    accepted: HashSet<String>,
}

/// One client pushing unique ids over one connection until the connection breaks.
async fn push_until_failure(
    template: Value,
    agent: plusgate::node::client::Agent,
    prefix: String,
    sent: Arc<Mutex<Sent>>,
) {
    let Ok(mut conn) = agent.connect().await else {
        return;
    };
    for n in 0..1_000_000u32 {
        let id = format!("{prefix}-{n}");
        let body = Bytes::from(with_id(template.clone(), &id).to_string());
        sent.lock().expect("lock").attempted.insert(id.clone());
        match conn
            .send(
                Method::POST,
                "/v1/messages",
                Some((body, "application/json")),
            )
            .await
        {
            Ok(response) => {
                // Whatever answer arrives before the kill must be an acceptance.
                assert_eq!(response.status.as_u16(), 202, "{}", response.text());
                sent.lock().expect("lock").accepted.insert(id);
            }
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_concurrent_load_loses_no_accepted_message() {
    const CYCLES: usize = 3;
    const CLIENTS: usize = 8;
    let fed = Federation::new();
    // The smallest overlay: deferred writes turn over and are folded into the store many
    // times per cycle, so the kill lands mid-fold as well as with writes only in the
    // journal (see `store::deferred`).
    fed.set_option("suwon", "storage", "overlay_mb", "1");
    let mut node = fed.start("suwon");
    let referral = fed.example("referral");
    let mut attempted = HashSet::new();
    let mut accepted = HashSet::new();
    let mut delivered = Vec::new();

    for cycle in 0..CYCLES {
        let sent = Arc::new(Mutex::new(Sent::default()));
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let version = if c % 2 == 0 {
                HttpVersion::Http1
            } else {
                HttpVersion::Http2
            };
            let agent = node.agent("suwon/employment", version);
            clients.push(tokio::spawn(push_until_failure(
                referral.clone(),
                agent,
                format!("crash-{cycle}-{c}"),
                sent.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        node.kill_hard();
        for client in clients {
            client.await.expect("client task");
        }
        let sent = std::mem::take(&mut *sent.lock().expect("lock"));
        assert!(
            sent.accepted.len() >= CLIENTS,
            "cycle {cycle}: the load must have been accepted before the kill ({} accepted)",
            sent.accepted.len()
        );
        attempted.extend(sent.attempted);
        accepted.extend(sent.accepted);

        node.restart();
        let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
        delivered.extend(drain_inbox(&welfare).await);
        let delivered = once_each(&delivered);
        let lost: Vec<_> = accepted
            .iter()
            .filter(|id| !delivered.contains(*id))
            .collect();
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} accepted messages lost, e.g. {:?}\n{}",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>(),
            node.log()
        );
        let invented: Vec<_> = delivered
            .iter()
            .filter(|id| !attempted.contains(*id))
            .collect();
        assert!(invented.is_empty(), "never sent: {invented:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_message_record_is_reported_and_not_served() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&sender, &fed.referral("ref-damaged")).await;
    push_accepted(&sender, &fed.referral("ref-intact")).await;
    assert!(node.stop().success());

    damage_record(&fed.data_dir("suwon"), b'm', "suwon/employment/ref-damaged");

    node.restart();
    let sender = node.agent("suwon/employment", HttpVersion::Http2);
    assert_problem(&status(&sender, "ref-damaged").await, 500, "corrupt-record");
    let intact: Value = status(&sender, "ref-intact").await.json().expect("JSON");
    assert_eq!(intact["state"], json!("accepted"));

    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "max=10").await), ["ref-intact"]);
    assert_eq!(ack(&welfare, &["ref-intact"]).await.status.as_u16(), 200);
    assert!(pull(&welfare, "max=10").await.is_empty());
    assert!(
        node.log().contains("corrupt"),
        "the damage is logged for the operator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_delivery_record_does_not_block_the_rest_of_the_inbox() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&sender, &fed.referral("ref-damaged")).await;
    push_accepted(&sender, &fed.referral("ref-intact")).await;
    // A push writes no delivery record (the message record says where it starts); the
    // first lease does.
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let leased = crate::support::pull_response(&welfare, "max=1").await;
    assert_eq!(
        ids_of(&crate::support::messages_of(&leased)),
        ["ref-damaged"]
    );
    assert!(node.stop().success());

    damage_record(&fed.data_dir("suwon"), b'd', "suwon/employment/ref-damaged");

    node.restart();
    let sender = node.agent("suwon/employment", HttpVersion::Http2);
    assert_problem(&status(&sender, "ref-damaged").await, 500, "corrupt-record");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let response = crate::support::pull_response(&welfare, "max=10").await;
    assert_eq!(
        response.status.as_u16(),
        200,
        "one damaged record must not make the whole inbox fail: {}",
        response.text()
    );
    assert_eq!(
        ids_of(&crate::support::messages_of(&response)),
        ["ref-intact"]
    );
}

/// Flips one byte in the body of a stored record, directly in sled: the message record
/// (`family` `b'm'`) or the delivery record (`b'd'`) of message `key` (`<from>/<id>`, see
/// `MessageId`). Keys are the family byte followed by the message key; values are
/// `[version][crc32][JSON]`.
pub(crate) fn damage_record(data_dir: &std::path::Path, family: u8, key: &str) {
    // The node opens sled with 8 MiB segments, and sled refuses a different setting.
    let db = sled::Config::new()
        .path(data_dir)
        .segment_size(8 << 20)
        .open()
        .expect("open the node's sled directory");
    let key = [&[family], key.as_bytes()].concat();
    let mut value = db.get(&key).expect("read").expect("record exists").to_vec();
    assert!(value.len() > 10, "record has a body");
    let middle = 5 + (value.len() - 5) / 2;
    value[middle] ^= 0x01;
    db.insert(&key, value).expect("write");
    db.flush().expect("flush");
}

/// Every file under `dir`, with its content.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read file");
            out.push((path, bytes));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_sealed_at_rest_and_a_rotated_key_still_opens_older_ones() {
    const MARKER: &str = "SEALED-MARKER-4f2a";
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let mut first = fed.referral("ref-sealed-1");
    first["payload"]["summary"] = json!(format!("{MARKER} 첫 번째"));
    push_accepted(&sender, &first).await;
    assert!(node.stop().success());
    for (path, bytes) in files_under(&fed.data_dir("suwon")) {
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{} holds the payload in plain text",
            path.display()
        );
    }

    // Rotation: a new current key, the old one kept for what it sealed.
    let dir = fed
        .config_path("suwon")
        .parent()
        .expect("folder")
        .to_owned();
    std::fs::write(dir.join("data-2.key"), format!("{}\n", "ab".repeat(32))).expect("key");
    std::fs::set_permissions(
        dir.join("data-2.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    fed.set_option("suwon", "storage", "data_key", "\"data-2.key\"");
    fed.set_option("suwon", "storage", "old_data_keys", "[\"data.key\"]");
    node.restart();
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let mut second = fed.referral("ref-sealed-2");
    second["payload"]["summary"] = json!(format!("{MARKER} 두 번째"));
    push_accepted(&sender, &second).await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let pulled = pull(&welfare, "max=10").await;
    assert_eq!(ids_of(&pulled), ["ref-sealed-1", "ref-sealed-2"]);
    assert_eq!(pulled[0]["payload"], first["payload"]);
    assert_eq!(pulled[1]["payload"], second["payload"]);

    // Without the old key the older payload cannot be opened: it is not served (and the
    // log says why), the newer one is.
    fed.set_option("suwon", "storage", "old_data_keys", "[]");
    node.restart();
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let pulled = pull(&welfare, "max=10").await;
    assert_eq!(ids_of(&pulled), ["ref-sealed-2"]);
    assert!(node.log().contains("old_data_keys"), "{}", node.log());
}
