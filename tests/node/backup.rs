//! Backup while serving, and restore: `plusgate backup` copies a consistent backup out of a
//! running node, `plusgate restore` puts it back into a stopped node's data directory, and
//! `plusgate audit verify|export` read a running node through the same backups.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use plusgate::node::client::{Agent, HttpVersion};
use serde_json::{json, Value};

use crate::support::{
    assert_problem, collect, once_each, run_to_exit, status, wait_for_status, wait_for_status_as,
    with_id, Federation, Finished, Node,
};

/// `plusgate backup` of `center`'s running node into `out`.
fn backup(fed: &Federation, center: &str, out: &Path) -> Finished {
    let config = fed.config_path(center).display().to_string();
    let out = out.display().to_string();
    run_to_exit(
        &["backup", "--config", &config, "--out", &out],
        fed.dir(),
        Duration::from_secs(120),
    )
}

/// Pushes `ids` made from the example `template` at `agent`, in order; each must be
/// accepted (a second push of an id the node holds is answered as the first was).
async fn push_all(fed: &Federation, agent: &Agent, template: &str, ids: &[String]) {
    push_each(agent, &fed.example(template), ids).await
}

/// [`push_all`] with the body `template`.
async fn push_each(agent: &Agent, template: &Value, ids: &[String]) {
    for id in ids {
        let body = with_id(template.clone(), id);
        let response = agent.post_json("/v1/messages", &body).await.expect("push");
        assert_eq!(response.status.as_u16(), 202, "{id}: {}", response.text());
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

fn recipient(fed: &Federation, template: &str) -> String {
    fed.example(template)["to"].as_str().expect("to").to_owned()
}

/// Waits until the sender sees every message of `ids` delivered to the other center.
async fn wait_delivered(node: &Node, ids: &[String]) {
    for id in ids {
        wait_for_status(node, id, |s| s["state"] == "delivered").await;
    }
}

fn audit_verifies(fed: &Federation, center: &str) -> Finished {
    let config = fed.config_path(center).display().to_string();
    run_to_exit(
        &["audit", "verify", "--config", &config],
        fed.dir(),
        Duration::from_secs(120),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_mid_stream_and_restored_loses_nothing_and_duplicates_nothing() {
    let fed = Federation::new();
    for center in ["suwon", "gangseo"] {
        fed.set_option(center, "federation", "retry_initial_ms", "50");
        fed.set_option(center, "federation", "retry_max_ms", "1000");
        fed.set_option(center, "federation", "checkpoint_every", "25");
    }
    let remote_to = recipient(&fed, "referral-remote");
    let local_to = recipient(&fed, "referral");
    assert!(remote_to.starts_with("gangseo/"), "{remote_to}");
    assert!(local_to.starts_with("suwon/"), "{local_to}");
    let mut a = fed.start("suwon");
    let b = fed.start("gangseo");
    let sender = a.agent("suwon/employment", HttpVersion::Http2);

    let remote: Vec<Vec<String>> = (1..=3)
        .map(|n| numbered(&format!("ref-r{n}"), 300))
        .collect();
    let local: Vec<Vec<String>> = (1..=3)
        .map(|n| numbered(&format!("ref-l{n}"), 100))
        .collect();
    // The other center answers the whole time: what it hands over after the backup is
    // lost with the rest, until the restored node asks it to send that again.
    let answerer = b.agent(&remote_to, HttpVersion::Http2);
    // A case summary from the other center's welfare team to the employment center here,
    // under the consent that team collected for its answers.
    let answers_to = "suwon/employment".to_owned();
    let mut summary = fed.example("case-summary");
    summary["to"] = json!(answers_to);
    summary["consent_id"] = fed.example("consent-reply-remote")["id"].clone();
    summary["payload"]["author"]["agency"] = json!(remote_to);
    let answers: Vec<Vec<String>> = (1..=3)
        .map(|n| numbered(&format!("cs-a{n}"), 100))
        .collect();

    // 1: before the backup. 2: while it is taken. 3: after it.
    push_all(&fed, &sender, "referral-remote", &remote[0]).await;
    push_all(&fed, &sender, "referral", &local[0]).await;
    push_each(&answerer, &summary, &answers[0]).await;
    let out = fed.scratch("backup");
    let taken = {
        let fed_dir = fed.dir().to_owned();
        let config = fed.config_path("suwon");
        let out = out.clone();
        let taking = tokio::task::spawn_blocking(move || {
            crate::support::run_to_exit(
                &[
                    "backup",
                    "--config",
                    &config.display().to_string(),
                    "--out",
                    &out.display().to_string(),
                ],
                &fed_dir,
                Duration::from_secs(120),
            )
        });
        push_all(&fed, &sender, "referral-remote", &remote[1]).await;
        push_all(&fed, &sender, "referral", &local[1]).await;
        push_each(&answerer, &summary, &answers[1]).await;
        taking.await.expect("backup task")
    };
    assert!(taken.status.success(), "{taken:?}");
    assert!(
        taken.stdout.contains("backup of node suwon written to"),
        "{}",
        taken.stdout
    );
    let description: Value =
        serde_json::from_slice(&std::fs::read(out.join("backup.json")).expect("backup.json"))
            .expect("JSON");
    assert_eq!(description["center"], "suwon");
    assert!(description["audit_length"].as_u64().expect("length") > 400);
    push_all(&fed, &sender, "referral-remote", &remote[2]).await;
    push_all(&fed, &sender, "referral", &local[2]).await;
    push_each(&answerer, &summary, &answers[2]).await;

    // Everything reaches the other center once, then the sending node's disk is lost.
    let at_b = b.agent(&remote_to, HttpVersion::Http2);
    let all_remote: Vec<String> = remote.concat();
    let got = collect(&at_b, all_remote.len(), Duration::ZERO).await;
    assert_eq!(once_each(&got).len(), all_remote.len());
    // And everything the other center answered has reached this one (its receipts say so).
    let all_answers: Vec<String> = answers.concat();
    let answered_by = b.agent(&remote_to, HttpVersion::Http1);
    for id in &all_answers {
        wait_for_status_as(&answered_by, id, |s| s["state"] == "delivered").await;
    }
    a.kill_hard();

    let config = fed.config_path("suwon").display().to_string();
    let out_arg = out.display().to_string();
    let restored = run_to_exit(
        &["restore", "--config", &config, "--from", &out_arg],
        fed.dir(),
        Duration::from_secs(120),
    );
    assert!(restored.status.success(), "{restored:?}");
    assert!(
        restored.stdout.contains("is kept at"),
        "{}",
        restored.stdout
    );
    a.restart();

    // The restored node is the node as it was at the backup: what came after is not in it.
    let sender = a.agent("suwon/employment", HttpVersion::Http2);
    let last = &remote[2][remote[2].len() - 1];
    crate::support::assert_problem(&status(&sender, last).await, 404, "not-found");
    let first = &remote[0][0];
    assert_eq!(status(&sender, first).await.status.as_u16(), 200);

    // The agency sends again everything it sent since the backup (it may not know exactly
    // what: it sends all of it); the same ids make that safe.
    push_all(&fed, &sender, "referral-remote", &all_remote).await;
    push_all(&fed, &sender, "referral", &local.concat()).await;
    wait_delivered(&a, &all_remote).await;

    // No second copy at the other center, although the restored node forwarded again
    // what it had not seen delivered, and everything after the backup anew.
    let again = collect(&at_b, 0, Duration::from_secs(3)).await;
    assert!(again.is_empty(), "delivered twice: {again:?}");
    // The restored node's own inbox holds each local message once.
    let at_a = a.agent(&local_to, HttpVersion::Http2);
    let all_local: Vec<String> = local.concat();
    let got = collect(&at_a, all_local.len(), Duration::from_secs(2)).await;
    let got = once_each(&got);
    assert_eq!(got, all_local.iter().cloned().collect::<BTreeSet<_>>());

    // Every answer the other center sent is in the restored node's inbox once: those it
    // handed over after the backup it sent again when the restored node asked.
    let at_a = a.agent(&answers_to, HttpVersion::Http2);
    let got = collect(&at_a, all_answers.len(), Duration::from_secs(2)).await;
    let got = once_each(&got);
    assert_eq!(got, all_answers.iter().cloned().collect::<BTreeSet<_>>());
    assert!(
        b.log()
            .contains("a restored peer asked for what it was sent since its backup"),
        "{}",
        b.log_tail(30)
    );

    // Both audit chains verify, read from the running nodes.
    for center in ["suwon", "gangseo"] {
        let verified = audit_verifies(&fed, center);
        assert!(verified.status.success(), "{center}: {verified:?}");
        assert!(
            verified.stderr.contains("the node is running"),
            "{}",
            verified.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_and_export_read_a_running_node_through_a_backup() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    push_all(&fed, &sender, "referral", &numbered("ref-audit", 20)).await;

    let verified = audit_verifies(&fed, "suwon");
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        verified.stdout.contains("audit chain of node suwon ok"),
        "{}",
        verified.stdout
    );

    let config = fed.config_path("suwon").display().to_string();
    let export = fed.scratch("exports").join("audit.jsonl");
    let exported = run_to_exit(
        &[
            "audit",
            "export",
            "--config",
            &config,
            "--out",
            &export.display().to_string(),
        ],
        fed.dir(),
        Duration::from_secs(120),
    );
    assert!(exported.status.success(), "{exported:?}");
    assert!(
        exported.stderr.contains("the node is running"),
        "{}",
        exported.stderr
    );
    let checked = run_to_exit(
        &[
            "audit",
            "verify",
            "--file",
            &export.display().to_string(),
            "--directory",
            &fed.directory_path().display().to_string(),
        ],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert!(checked.status.success(), "{checked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_the_nodes_own_and_restore_refuses_what_would_lose_data() {
    let fed = Federation::new();
    let mut suwon = fed.start("suwon");
    let gangseo = fed.start("gangseo");

    // Only the node's own certificate may take one.
    let agency = suwon.agent("suwon/employment", HttpVersion::Http1);
    let refused = agency
        .post_json("/admin/v1/backups", &json!({}))
        .await
        .expect("answer");
    assert_problem(&refused, 403, "wrong-role");

    // A folder that holds something is not written into.
    let full = fed.scratch("full");
    std::fs::create_dir_all(&full).expect("dir");
    std::fs::write(full.join("notes"), "keep me").expect("file");
    let into_full = backup(&fed, "suwon", &full);
    assert_eq!(into_full.status.code(), Some(2), "{into_full:?}");
    assert!(
        into_full.stderr.contains("is not empty"),
        "{}",
        into_full.stderr
    );

    // The running node's store is never replaced.
    let out = fed.scratch("suwon-backup");
    assert!(backup(&fed, "suwon", &out).status.success());
    let config = fed.config_path("suwon").display().to_string();
    let out_arg = out.display().to_string();
    let running = run_to_exit(
        &["restore", "--config", &config, "--from", &out_arg],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert_eq!(running.status.code(), Some(1), "{running:?}");
    assert!(running.stderr.contains("is running"), "{}", running.stderr);

    // Another center's backup, or a damaged one, restores nothing.
    let other = fed.scratch("gangseo-backup");
    assert!(backup(&fed, "gangseo", &other).status.success());
    drop(gangseo);
    assert!(suwon.stop().success());
    let before: Vec<_> = std::fs::read_dir(fed.data_dir("suwon"))
        .expect("data dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let wrong = run_to_exit(
        &[
            "restore",
            "--config",
            &config,
            "--from",
            &other.display().to_string(),
        ],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(
        wrong.stderr.contains("of center gangseo"),
        "{}",
        wrong.stderr
    );
    let file = out.join("plusgate.backup");
    let mut bytes = std::fs::read(&file).expect("backup");
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&file, &bytes).expect("damage");
    let damaged = run_to_exit(
        &["restore", "--config", &config, "--from", &out_arg],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert_eq!(damaged.status.code(), Some(1), "{damaged:?}");
    assert!(damaged.stderr.contains("is damaged"), "{}", damaged.stderr);
    let after: Vec<_> = std::fs::read_dir(fed.data_dir("suwon"))
        .expect("data dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(before, after, "the data directory is as it was");
    let parent = fed.data_dir("suwon").parent().expect("parent").to_owned();
    let leftovers: Vec<_> = std::fs::read_dir(&parent)
        .expect("parent")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    suwon.restart();
}
