//! The audit chain on disk: every push, lease and ack is an entry, and `plusgate audit
//! verify` finds an entry altered with its checksum recomputed (what a careful intruder with
//! write access to the data directory would do), naming it.

use std::time::Duration;

use plusgate::core::audit::{Action, AuditEntry};
use plusgate::node::client::HttpVersion;
use plusgate::node::store::record;

use crate::support::{ack, ids_of, pull, push_accepted, run_to_exit, Federation};

fn audit_verify(fed: &Federation) -> crate::support::Finished {
    let config = fed.config_path("suwon");
    let config = config.to_str().expect("utf-8 path");
    run_to_exit(
        &["audit", "verify", "--config", config],
        fed.dir(),
        Duration::from_secs(30),
    )
}

/// Opens the stopped node's store directly and rewrites audit entry `seq` with `edit`
/// applied, re-encoding the record so its own checksum is valid again.
fn rewrite_audit_entry(fed: &Federation, seq: u64, edit: impl FnOnce(&mut AuditEntry)) {
    let db = sled::Config::new()
        .path(fed.data_dir("suwon"))
        .segment_size(8 << 20)
        .open()
        .expect("open the node's sled directory");
    let key = [&[b'a'][..], &seq.to_be_bytes()].concat();
    let bytes = db.get(&key).expect("read").expect("entry exists");
    let mut entry: AuditEntry = record::decode(&bytes).expect("entry decodes");
    edit(&mut entry);
    db.insert(&key, record::encode(&entry)).expect("write");
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_is_audited_and_the_chain_verifies() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&sender, &fed.referral("ref-audit-1")).await;
    push_accepted(&sender, &fed.referral("ref-audit-2")).await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    assert_eq!(ids_of(&pull(&welfare, "max=1").await), ["ref-audit-1"]);
    assert_eq!(ack(&welfare, &["ref-audit-1"]).await.status.as_u16(), 200);
    assert!(node.stop().success());

    let done = audit_verify(&fed);
    assert!(done.status.success(), "{}", done.stderr);
    // consent-registered ×2 (the examples', by their collectors), accepted ×2, leased ×1,
    // acked ×1
    assert!(done.stdout.contains("ok: 6 entries"), "{}", done.stdout);

    // The entries say who did what to which message, in order.
    let db = sled::Config::new()
        .path(fed.data_dir("suwon"))
        .segment_size(8 << 20)
        .open()
        .expect("open store");
    let entries: Vec<AuditEntry> = db
        .scan_prefix([b'a'])
        .map(|kv| record::decode(&kv.expect("read").1).expect("decode"))
        .collect();
    let steps: Vec<(Action, &str, &str)> = entries
        .iter()
        .map(|e| (e.action, e.message_id.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (
                Action::ConsentRegistered,
                "",
                "urn:plusgate:agency:suwon:employment"
            ),
            (
                Action::ConsentRegistered,
                "",
                "urn:plusgate:agency:suwon:welfare"
            ),
            (
                Action::Accepted,
                "ref-audit-1",
                "urn:plusgate:agency:suwon:employment"
            ),
            (
                Action::Accepted,
                "ref-audit-2",
                "urn:plusgate:agency:suwon:employment"
            ),
            (
                Action::Leased,
                "ref-audit-1",
                "urn:plusgate:agency:suwon:welfare"
            ),
            (
                Action::Acked,
                "ref-audit-1",
                "urn:plusgate:agency:suwon:welfare"
            ),
        ]
    );
    assert!(entries[2..]
        .iter()
        .all(|e| e.consent_id == "cns-example-0001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_entry_is_named_by_audit_verify_and_stops_the_node_if_last() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    for i in 0..3 {
        push_accepted(&sender, &fed.referral(&format!("ref-tamper-{i}"))).await;
    }
    assert!(node.stop().success());

    // Redirect entry 3 (the second push; 0 and 1 are the consents' registrations) to
    // another agency: a quiet rewrite of who received what.
    rewrite_audit_entry(&fed, 3, |e| e.to = "suwon/finance".into());
    let done = audit_verify(&fed);
    assert!(!done.status.success());
    assert!(
        done.stderr
            .contains("audit entry 3: content does not match its hash"),
        "{}",
        done.stderr
    );

    // Altering the newest entry is also caught when the node starts, which refuses to
    // extend a chain whose head does not match its own hash.
    rewrite_audit_entry(&fed, 3, |e| e.to = "suwon/welfare".into());
    assert!(audit_verify(&fed).status.success(), "restored");
    rewrite_audit_entry(&fed, 4, |e| e.subject = "ps-0000000000000000".into());
    let config = fed.config_path("suwon");
    let start = run_to_exit(
        &[
            "serve",
            "--config",
            config.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert!(!start.status.success());
    assert!(start.stderr.contains("audit entry 4"), "{}", start.stderr);
}

/// Regression test for issue 10, finding 3: deleting the newest entries together with their
/// checkpoints left a store consistent in itself, and the node started on it and signed
/// over the gap. The newest checkpoint it issued is anchored outside sled; the node refuses
/// to start on a chain that does not extend it, and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_cut_back_behind_its_newest_checkpoint_is_refused_at_start() {
    let fed = Federation::new();
    fed.set_option("suwon", "federation", "checkpoint_every", "3");
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    for i in 0..5 {
        push_accepted(&sender, &fed.referral(&format!("ref-cut-{i}"))).await;
    }
    // Stopping signs the last entries too: 2 registrations + 5 pushes.
    assert!(node.stop().success());
    assert_eq!(crate::support::cut_audit_log(&fed.data_dir("suwon"), 4), 3);
    // What is left verifies on its own: nothing in the store shows the cut.
    let done = audit_verify(&fed);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stdout.contains("ok: 4 entries"), "{}", done.stdout);

    let config = fed.config_path("suwon");
    let start = run_to_exit(
        &[
            "serve",
            "--config",
            config.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
        fed.dir(),
        Duration::from_secs(30),
    );
    assert!(!start.status.success(), "{}", start.stderr);
    for expected in [
        "the audit log does not extend the newest checkpoint this node signed: 7 entries",
        "audit-anchor",
        "the chain has only 4 entries",
        "restore the data directory",
    ] {
        assert!(
            start.stderr.contains(expected),
            "{expected}:\n{}",
            start.stderr
        );
    }
}

/// `audit verify` shows its progress on a terminal (a pseudo-terminal from `script`), and
/// nothing but its summary otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_shows_progress_on_a_terminal_only() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    assert!(node.stop().success());
    let quiet = audit_verify(&fed);
    assert!(quiet.status.success(), "{quiet:?}");
    assert!(quiet.stderr.is_empty(), "off a terminal: {}", quiet.stderr);
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: no `script` (util-linux) for a pseudo-terminal");
        return;
    }
    let config = fed.config_path("suwon").display().to_string();
    let command = format!(
        "{} audit verify --config {config}",
        crate::support::plusgate_bin()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verifying the audit chain: ["), "{text}");
    assert!(text.contains("audit chain of node suwon ok"), "{text}");
}
