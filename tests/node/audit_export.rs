//! `plusgate audit export` and `plusgate audit verify --file`: a stopped node's audit chain as
//! JSON Lines with its signed checkpoints, checked offline against the federation directory;
//! a flipped byte, a removed, swapped or cut line is refused, naming the line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plusgate::node::client::HttpVersion;
use serde_json::Value;

use crate::support::{ack, ids_of, pull, push_accepted, run_to_exit, Federation, Finished};

fn plusgate(fed: &Federation, args: &[&str]) -> Finished {
    run_to_exit(args, fed.dir(), Duration::from_secs(30))
}

fn export(fed: &Federation, out: &Path, since: Option<&str>) -> Finished {
    let config = fed.config_path("suwon");
    let mut args = vec![
        "audit",
        "export",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    if let Some(since) = since {
        args.extend(["--since", since]);
    }
    plusgate(fed, &args)
}

fn verify_file(fed: &Federation, file: &Path, extra: &[&str]) -> Finished {
    let directory = fed.directory_path();
    let mut args = vec![
        "audit",
        "verify",
        "--file",
        file.to_str().expect("utf-8 path"),
        "--directory",
        directory.to_str().expect("utf-8 path"),
    ];
    args.extend(extra);
    plusgate(fed, &args)
}

/// The export's lines, parsed.
fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("export line is JSON"))
        .collect()
}

/// Line number (from 1) of the entry with `seq`.
fn line_of_entry(lines: &[Value], seq: u64) -> usize {
    1 + lines
        .iter()
        .position(|l| l["entry"]["seq"] == seq)
        .expect("entry in export")
}

/// Writes a copy of `export` with `edit` applied to its lines (without newlines).
fn tampered(export: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let text = std::fs::read_to_string(export).expect("read export");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    let path = export.with_file_name(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write copy");
    path
}

#[track_caller]
fn assert_refused_at(done: &Finished, place: &str, problem: &str) {
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    assert!(done.stdout.is_empty(), "{}", done.stdout);
    assert!(
        done.stderr.contains(&format!("{place}: ")),
        "expected {place:?}: {}",
        done.stderr
    );
    assert!(
        done.stderr.contains(problem),
        "expected {problem:?}: {}",
        done.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_chain_verifies_offline_and_every_alteration_is_named() {
    let fed = Federation::new();
    // Entries 0 and 1: the registrations of the example consents.
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    for i in 0..3 {
        push_accepted(&sender, &fed.referral(&format!("ref-export-{i}"))).await;
    }
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    assert_eq!(ids_of(&pull(&welfare, "max=2").await).len(), 2);
    assert_eq!(ack(&welfare, &["ref-export-0"]).await.status.as_u16(), 200);

    // While the node runs its store is locked: the export reads a backup taken from it
    // now instead, and says so (`tests/node/backup.rs` checks such an export verifies).
    let out = fed.scratch("export").join("suwon.jsonl");
    let done = export(&fed, &out, None);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("the node is running; reading a backup"),
        "{}",
        done.stderr
    );
    assert!(done.stdout.starts_with("exported "), "{}", done.stdout);
    std::fs::remove_file(&out).expect("the export while running was written");

    // Stopped, the node signs a checkpoint of its chain; after a restart and a few more
    // entries, another one. So the export holds one in the middle, one at the end and the
    // one the export itself signs.
    assert!(node.stop().success());
    node.restart();
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    for i in 3..7 {
        push_accepted(&sender, &fed.referral(&format!("ref-export-{i}"))).await;
    }
    assert!(node.stop().success());

    let done = export(&fed, &out, None);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout
            .starts_with("exported 12 audit entries (seq 0 to 11) and 3 checkpoints"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains(out.to_str().expect("utf-8")));
    assert_eq!(done.stdout.lines().count(), 1, "{}", done.stdout);
    assert!(
        !out.with_extension("jsonl.tmp").exists(),
        "temporary file left"
    );
    let lines = lines_of(&out);
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| if l.get("entry").is_some() { "e" } else { "c" })
        .collect();
    assert_eq!(kinds.join(""), "eeeeeeeeceeeecc", "{lines:?}");
    assert_eq!(lines[8]["checkpoint"]["length"], 8);
    assert_eq!(lines[13]["checkpoint"]["length"], 12);
    assert_eq!(lines[14]["checkpoint"]["length"], 12);
    assert_eq!(lines[14]["checkpoint"]["node"], "suwon");

    // Verified against the directory's key for suwon: without the authority key, with a note.
    let done = verify_file(&fed, &out, &[]);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout
            .starts_with("audit export ok: 12 entries (seq 0 to 11) of node suwon, 3 checkpoints"),
        "{}",
        done.stdout
    );
    assert!(done.stderr.contains("was not checked"), "{}", done.stderr);
    // With the authority key the directory's own signature is checked too.
    let config = plusgate::config::Config::load(&fed.config_path("suwon")).expect("config");
    let authority = config.federation.expect("federated").authority_key.to_hex();
    let done = verify_file(&fed, &out, &["--authority-key", &authority]);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(!done.stderr.contains("was not checked"), "{}", done.stderr);
    let wrong = "00".repeat(32);
    let done = verify_file(&fed, &out, &["--authority-key", &wrong]);
    assert_eq!(done.status.code(), Some(1));
    assert!(done.stderr.contains("signature"), "{}", done.stderr);

    // A flipped byte in entry 1 (its recipient, `employment` → `dmployment`).
    let line = line_of_entry(&lines, 1);
    let flipped = tampered(&out, "flipped.jsonl", |l| {
        let at = l[line - 1].find("employment").expect("actor");
        let mut bytes = std::mem::take(&mut l[line - 1]).into_bytes();
        bytes[at] ^= 0x01;
        l[line - 1] = String::from_utf8(bytes).expect("still utf-8");
    });
    assert_refused_at(
        &verify_file(&fed, &flipped, &[]),
        &format!("line {line} (entry seq 1)"),
        "content does not match its hash",
    );

    // Entry 2 removed: entry 3 takes its line.
    let line = line_of_entry(&lines, 2);
    let removed = tampered(&out, "removed.jsonl", |l| {
        l.remove(line - 1);
    });
    assert_refused_at(
        &verify_file(&fed, &removed, &[]),
        &format!("line {line} (entry seq 3)"),
        "out of order",
    );

    // Entries 1 and 2 swapped.
    let line = line_of_entry(&lines, 1);
    let swapped = tampered(&out, "swapped.jsonl", |l| l.swap(line - 1, line));
    assert_refused_at(
        &verify_file(&fed, &swapped, &[]),
        &format!("line {line} (entry seq 2)"),
        "expected seq 1",
    );

    // The last three lines cut: both checkpoints for 12 entries and entry 11 go, so entries
    // 8 to 10 are covered by nothing.
    let cut = tampered(&out, "cut.jsonl", |l| l.truncate(l.len() - 3));
    assert_refused_at(
        &verify_file(&fed, &cut, &[]),
        &format!("line {} (entry seq 8)", line_of_entry(&lines, 8)),
        "entries after 7 are not covered by a signed checkpoint",
    );

    // From entry 2 on: verifies on its own (the first checkpoint vouches for entry 2's link).
    let since = fed.scratch("export").join("since-2.jsonl");
    let done = export(&fed, &since, Some("2"));
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout
            .starts_with("exported 10 audit entries (seq 2 to 11)"),
        "{}",
        done.stdout
    );
    assert_eq!(lines_of(&since)[0]["entry"]["seq"], 2);
    let done = verify_file(&fed, &since, &[]);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout.contains("10 entries (seq 2 to 11)"),
        "{}",
        done.stdout
    );

    // The chain on disk still verifies as before.
    let config = fed.config_path("suwon");
    let done = plusgate(
        &fed,
        &[
            "audit",
            "verify",
            "--config",
            config.to_str().expect("utf-8"),
        ],
    );
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stdout.contains("ok: 12 entries"), "{}", done.stdout);
}

#[test]
fn the_command_line_keeps_the_two_kinds_of_verify_apart() {
    let fed = Federation::new();
    let config = fed.config_path("suwon");
    let config = config.to_str().expect("utf-8");
    let directory = fed.directory_path();
    let directory = directory.to_str().expect("utf-8");
    for args in [
        // Both sources.
        vec![
            "audit",
            "verify",
            "--config",
            config,
            "--file",
            "x.jsonl",
            "--directory",
            directory,
        ],
        // An export without the directory.
        vec!["audit", "verify", "--file", "x.jsonl"],
        // The directory without an export.
        vec![
            "audit",
            "verify",
            "--config",
            config,
            "--directory",
            directory,
        ],
        // Neither.
        vec!["audit", "verify"],
    ] {
        let done = plusgate(&fed, &args);
        assert_eq!(done.status.code(), Some(2), "{args:?}: {}", done.stderr);
    }

    // A node that never ran has nothing to export.
    let out = fed.scratch("export").join("never.jsonl");
    let done = export(&fed, &out, None);
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    assert!(done.stderr.contains("does not exist"), "{}", done.stderr);
    assert!(!out.exists());
}
