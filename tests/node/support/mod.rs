//! The test harness is the `harness` library of `plusgate-tools` (`tools/src`), which the
//! bench uses too: a development federation in a temporary folder, real `plusgate` nodes
//! as child processes on free loopback ports, mutual-TLS agents and API helpers. This
//! module re-exports it and adds what only these tests need: the binary cargo built for
//! them, and assertions about problem responses.

use std::path::Path;
use std::time::Duration;

use plusgate::node::client::{Agent, HttpVersion, Response};
use serde_json::{json, Value};

pub use harness::{
    ack, drain_inbox, drain_inbox_by, ids_of, load_manifest, messages_of, pull, pull_response,
    push, push_accepted, push_raw, push_referrals, register_consent, run_command_to_exit, status,
    wait_with_timeout, with_id, ClientCert, Federation, Finished, Node, NodeSpec, Trickle,
    REQUEST_TIMEOUT, VERSIONS,
};

/// The path of the binary under test.
pub fn plusgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_plusgate")
}

/// Runs `plusgate args…` in `cwd` and waits for it to exit, at most `timeout` (after which
/// the test fails).
pub fn run_to_exit(args: &[&str], cwd: &Path, timeout: Duration) -> Finished {
    harness::Plusgate::at(plusgate_bin()).run_to_exit(args, cwd, timeout)
}

/// The harness starts nodes of the `plusgate` next to the running executable
/// ([`harness::Plusgate::in_target_dir`]); for these tests that must be the binary cargo
/// built for them.
#[test]
fn the_harness_runs_the_binary_cargo_built_for_these_tests() {
    let found = harness::Plusgate::in_target_dir().unwrap_or_else(|e| panic!("{e}"));
    let canonical = |path: &Path| std::fs::canonicalize(path).expect("binary exists");
    assert_eq!(
        canonical(found.path()),
        canonical(Path::new(plusgate_bin()))
    );
}

/// Asserts that `response` is an RFC 9457 problem with `status` and type
/// `urn:plusgate:problem:{kind}`; returns its body.
#[track_caller]
pub fn assert_problem(response: &Response, status: u16, kind: &str) -> Value {
    assert_eq!(
        response.status.as_u16(),
        status,
        "status; body: {}",
        response.text()
    );
    assert_eq!(
        response.content_type(),
        Some("application/problem+json"),
        "content type of a {status}"
    );
    let body: Value = response.json().expect("problem body is JSON");
    assert_eq!(
        body["type"],
        json!(format!("urn:plusgate:problem:{kind}")),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["status"], json!(status), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

/// A case summary of about `kib` KiB (well inside the 1 MiB body limit): the example, its
/// plan filled with long Korean notes (3 bytes a character in UTF-8).
pub fn large_case_summary(fed: &Federation, id: &str, kib: usize) -> Value {
    let mut summary = with_id(fed.example("case-summary"), id);
    let note: String = "가".repeat(1_990);
    let items = (kib * 1024 / (note.len() + 64)).clamp(1, 50);
    summary["payload"]["plan"] = Value::Array(
        (0..items)
            .map(|i| {
                json!({
                    "action": format!("{i:02}{note}"),
                    "owner_agency": "suwon/welfare",
                })
            })
            .collect(),
    );
    summary
}

/// The JSON pointers of a 422 problem's violations.
pub fn violation_pointers(problem: &Value) -> Vec<String> {
    problem["violations"]
        .as_array()
        .expect("a 422 lists its violations")
        .iter()
        .map(|v| v["pointer"].as_str().expect("violation pointer").to_owned())
        .collect()
}

/// Deletes, directly in the stopped node's sled folder, the audit entries from `keep` on,
/// the node's own checkpoints of more than `keep` entries and the subject-index entries of
/// the deleted entries: what an intruder with write access to the data directory does to
/// make the newest entries disappear, leaving a store consistent in itself (its last entry
/// matches its own hash, its newest checkpoint is covered). The anchor file beside sled's
/// files (`data/audit-anchor`) is left alone. Returns how many entries were deleted.
pub fn cut_audit_log(data_dir: &Path, keep: u64) -> u64 {
    // The node opens sled with 8 MiB segments, and sled refuses a different setting.
    let db = sled::Config::new()
        .path(data_dir)
        .segment_size(8 << 20)
        .open()
        .expect("open the node's sled directory");
    let seq_of = |key: &[u8]| u64::from_be_bytes(key[key.len() - 8..].try_into().expect("seq"));
    let mut deleted = 0;
    for family in [b'a', b'c', b'u'] {
        for item in db.scan_prefix([family]) {
            let (key, _) = item.expect("read");
            if seq_of(&key) >= keep + u64::from(family == b'c') {
                db.remove(&key).expect("remove");
                deleted += u64::from(family == b'a');
            }
        }
    }
    db.flush().expect("flush");
    drop(db);
    wait_unlocked(data_dir);
    deleted
}

/// Waits (at most 10 s) until nothing in this process holds the lock of the store in
/// `data_dir`: sled lets go of it from a thread of its own a moment after the last handle
/// is dropped, and whatever opens the store next (a node, sled again) would find it taken.
pub fn wait_unlocked(data_dir: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while plusgate::node::store::in_use(data_dir).expect("read the store's lock") {
        assert!(
            std::time::Instant::now() < deadline,
            "{} stays locked",
            data_dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Longest a test waits for forwarding between nodes to catch up.
pub const CATCH_UP: Duration = Duration::from_secs(120);

/// Each id exactly once, as a set; panics naming the first duplicate.
pub fn once_each(ids: &[String]) -> std::collections::BTreeSet<String> {
    let mut set = std::collections::BTreeSet::new();
    for id in ids {
        assert!(set.insert(id.clone()), "{id} was delivered twice");
    }
    set
}

/// Pulls (long-polling) and acknowledges at `agent` until `want` messages arrived and then
/// nothing more for `quiet`, or [`CATCH_UP`] passes; returns every id seen, duplicates
/// included. A failed pull (the node restarting) is tried again.
pub async fn collect(agent: &Agent, want: usize, quiet: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + CATCH_UP;
    let mut seen = Vec::new();
    let mut quiet_until = None;
    while std::time::Instant::now() < deadline {
        if seen.len() >= want {
            let until = *quiet_until.get_or_insert_with(|| std::time::Instant::now() + quiet);
            if std::time::Instant::now() >= until {
                break;
            }
        }
        let Ok(response) = agent.get("/v1/inbox?max=100&wait=1").await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if response.status.as_u16() != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let body: Value = response.json().expect("pull body");
        let ids = ids_of(body["messages"].as_array().expect("messages"));
        if ids.is_empty() {
            continue;
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let acked = agent
            .post_json("/v1/inbox/ack", &json!({ "ids": refs }))
            .await
            .expect("ack");
        assert_eq!(acked.status.as_u16(), 200, "{}", acked.text());
        seen.extend(ids);
    }
    seen
}

/// Polls the sender's view of message `id` at `agent` until `done` holds, at most
/// [`CATCH_UP`]; returns it.
pub async fn wait_for_status_as(agent: &Agent, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + CATCH_UP;
    loop {
        let seen: Value = status(agent, id).await.json().expect("status JSON");
        if done(&seen) {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {id}; last: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`wait_for_status_as`] as suwon/employment, the examples' sender, at `node`.
pub async fn wait_for_status(node: &Node, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    wait_for_status_as(&agent, id, done).await
}

/// The example consent as collected by `collector` under `id`, naming `recipients`.
pub fn consent_of(fed: &Federation, id: &str, collector: &str, recipients: &[&str]) -> Value {
    let mut c = fed.example("consent");
    c["id"] = json!(id);
    c["collected_by"]["agency"] = json!(collector);
    c["recipients"] = json!(recipients);
    c["status_history"][0]["by"] = json!(collector);
    c
}

/// The example referral with id `id` from `from` to `to` under consent id `consent_id`.
pub fn referral_between(
    fed: &Federation,
    id: &str,
    from: &str,
    to: &str,
    consent_id: &str,
) -> Value {
    let mut r = fed.referral(id);
    r["to"] = json!(to);
    r["consent_id"] = json!(consent_id);
    r["payload"]["referrer"]["agency"] = json!(from);
    r["payload"]["recipient"]["agency"] = json!(to);
    r
}

/// A federation of `centers` whose forwarders retry quickly (a test must not wait a
/// minute for a backoff to expire), with the nodes of `start` started, their example
/// consents registered.
pub fn quick_federation(centers: &[&str], start: &[&str]) -> (Federation, Vec<Node>) {
    let fed = Federation::with_centers(centers);
    for center in centers {
        fed.set_option(center, "federation", "retry_initial_ms", "50");
        fed.set_option(center, "federation", "retry_max_ms", "1000");
    }
    let nodes = start.iter().map(|c| fed.start(c)).collect();
    (fed, nodes)
}
