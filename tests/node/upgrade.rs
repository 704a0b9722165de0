//! Upgrades: a store written by an older plusgate is refused by a node, with the command
//! that migrates it; `plusgate migrate` keeps a copy of the store as it was, brings it to
//! the current format, and the node serves everything it held.

use std::time::Duration;

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{ids_of, pull, push_accepted, run_to_exit, Federation};

/// Turns the stopped node's store back into format 1, as the version before formats wrote
/// it: no format recorded, consents keyed by their id alone.
fn make_format_1(data_dir: &std::path::Path) {
    let db = sled::Config::new()
        .path(data_dir)
        .segment_size(8 << 20)
        .open()
        .expect("open the node's sled directory");
    db.remove(b"sformat").expect("remove the format");
    for item in db.scan_prefix([b'k']) {
        let (k, v) = item.expect("consent");
        let nul = k.iter().position(|&b| b == 0).expect("id, NUL, collector");
        db.insert(&k[..nul], v).expect("old key");
        db.remove(&k).expect("new key");
    }
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_store_is_refused_and_migrate_brings_it_up_keeping_a_copy() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let referral = fed.referral("ref-before-upgrade");
    let consent_id = referral["consent_id"].as_str().expect("consent").to_owned();
    push_accepted(&employment, &referral).await;
    assert!(node.stop().success());
    let data_dir = fed.data_dir("suwon");
    make_format_1(&data_dir);

    let config = fed.config_path("suwon").display().to_string();
    let serve = run_to_exit(
        &["serve", "--config", &config, "--listen", "127.0.0.1:0"],
        fed.dir(),
        Duration::from_secs(10),
    );
    assert_eq!(serve.status.code(), Some(78), "{serve:?}");
    assert!(serve.stderr.contains("format 1"), "{}", serve.stderr);
    assert!(
        serve.stderr.contains("plusgate migrate"),
        "{}",
        serve.stderr
    );

    let migrate = run_to_exit(
        &["migrate", "--config", &config],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert!(migrate.status.success(), "{migrate:?}");
    assert!(
        migrate.stdout.contains("from format 1 to 2"),
        "{}",
        migrate.stdout
    );
    let mut copy = data_dir.clone().into_os_string();
    copy.push(".format-1");
    let copy = std::path::PathBuf::from(copy);
    assert!(
        migrate.stdout.contains(&copy.display().to_string()),
        "{}",
        migrate.stdout
    );
    // The copy is the store as it was: still format 1, every consent under its old key.
    {
        let old = sled::Config::new()
            .path(&copy)
            .segment_size(8 << 20)
            .open()
            .expect("the copy opens");
        assert!(old.get(b"sformat").expect("read").is_none());
        assert!(old
            .get([b"k".as_slice(), consent_id.as_bytes()].concat())
            .expect("read")
            .is_some());
    }
    // Again: nothing to do; the copy is not overwritten.
    let again = run_to_exit(
        &["migrate", "--config", &config],
        fed.dir(),
        Duration::from_secs(60),
    );
    assert!(again.status.success(), "{again:?}");
    assert!(
        again.stdout.contains("nothing to migrate"),
        "{}",
        again.stdout
    );

    // The node serves what it held: the consent, and the message under it.
    node.restart();
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(
        ids_of(&pull(&welfare, "max=10").await),
        ["ref-before-upgrade"]
    );
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let read = employment
        .get(&format!("/v1/consents/{consent_id}"))
        .await
        .expect("response");
    assert_eq!(read.status.as_u16(), 200, "{}", read.text());
    let read: Value = read.json().expect("JSON");
    assert_eq!(read["status"], json!("granted"));
}
