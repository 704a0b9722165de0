//! The write path's durability argument, tested from outside (ARCHITECTURE.md § Crash
//! safety): large messages never leave a file the node does not fsync; a store failure in
//! the middle of a group halts writes until a restart and nothing half-written is ever
//! served; a full disk is refused with 507 and writes resume when space comes back, without
//! a restart; SIGKILL in any of these loses nothing acknowledged and duplicates nothing.
//!
//! The full-disk tests mount a small tmpfs over the node's data directory, which needs
//! root (or CAP_SYS_ADMIN); without it they print a visible SKIPPED line and pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plusgate::node::client::{Agent, HttpVersion};
use serde_json::Value;

use crate::support::{drain_inbox, large_case_summary, push, with_id, Federation, Node};

/// The files sled wrote outside its main log (`blobs/`): none may exist, since the node
/// fsyncs only the main log.
fn blob_files(data_dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("blobs")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok().map(|e| e.path())).collect()
}

fn summary_sender(fed: &Federation, node: &Node) -> Agent {
    fed.set_sends("suwon/welfare", &["referral-status", "case-summary"]);
    node.agent("suwon/welfare", HttpVersion::Http2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_stored_inside_the_synced_log() {
    let fed = Federation::new();
    fed.set_sends("suwon/welfare", &["referral-status", "case-summary"]);
    let mut node = fed.start("suwon");
    let sender = summary_sender(&fed, &node);
    let mut accepted = BTreeSet::new();
    for i in 0..30 {
        let id = format!("cs-large-{i:02}");
        let body = large_case_summary(&fed, &id, 350);
        assert!(body.to_string().len() > 300_000, "a large message");
        let response = push(&sender, &body).await;
        assert_eq!(response.status.as_u16(), 202, "{}", response.text());
        accepted.insert(id);
        // No acknowledged byte may live in a file the node does not fsync.
        assert_eq!(blob_files(&fed.data_dir("suwon")), Vec::<PathBuf>::new());
    }
    node.kill_hard();
    node.restart();
    let delivered = drain_once_each(&node, &summary_recipient(&fed)).await;
    assert_eq!(delivered, accepted);
    assert_eq!(blob_files(&fed.data_dir("suwon")), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_stream_of_large_messages_loses_nothing_acknowledged() {
    let fed = Federation::new();
    fed.set_sends("suwon/welfare", &["referral-status", "case-summary"]);
    let mut node = fed.start("suwon");
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let mut pushers = Vec::new();
    for p in 0..4 {
        let agent = node.agent("suwon/welfare", HttpVersion::Http2);
        let template = large_case_summary(&fed, "cs-template", 300);
        let accepted = accepted.clone();
        pushers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("cs-kill-{p}-{i:04}");
                match push_once(&agent, &with_id(template.clone(), &id)).await {
                    Some(202) => {
                        accepted.lock().expect("lock").insert(id);
                    }
                    Some(status) => panic!("{id}: {status} before the kill"),
                    None => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill_hard();
    for p in pushers {
        p.await.expect("pusher");
    }
    let accepted = std::mem::take(&mut *accepted.lock().expect("lock"));
    assert!(
        accepted.len() >= 4,
        "large messages were accepted before the kill"
    );
    assert_eq!(blob_files(&fed.data_dir("suwon")), Vec::<PathBuf>::new());
    node.restart();
    let delivered = drain_once_each(&node, &summary_recipient(&fed)).await;
    let lost: Vec<_> = accepted.difference(&delivered).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
}

/// One push on a fresh connection: its status, or `None` if the node is gone.
async fn push_once(agent: &Agent, body: &Value) -> Option<u16> {
    let body = bytes::Bytes::from(body.to_string());
    agent
        .request(
            hyper::Method::POST,
            "/v1/messages",
            Some((body, "application/json")),
        )
        .await
        .ok()
        .map(|r| r.status.as_u16())
}

/// The agency the case-summary example goes to.
fn summary_recipient(fed: &Federation) -> String {
    fed.example("case-summary")["to"]
        .as_str()
        .expect("the example names its recipient")
        .to_owned()
}

/// Drains `recipient`'s inbox; panics if any message comes twice.
async fn drain_once_each(node: &Node, recipient: &str) -> BTreeSet<String> {
    let agent = node.agent(recipient, HttpVersion::Http1);
    // Ten at a time: a pull of a hundred 300 KB messages is over the client's 16 MiB limit.
    let delivered = crate::support::drain_inbox_by(&agent, 10).await;
    let set: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(
        delivered.len(),
        set.len(),
        "each message once: {delivered:?}"
    );
    set
}

/// Pushes referrals with ids `prefix-0`, `prefix-1`, … one at a time (one group each)
/// until one is not accepted; returns the accepted ids and the first refusal's status,
/// body and id.
async fn push_until_refused(
    fed: &Federation,
    agent: &Agent,
    prefix: &str,
    max: usize,
) -> (Vec<String>, Option<(u16, String, String)>) {
    let mut accepted = Vec::new();
    for n in 0..max {
        let id = format!("{prefix}-{n}");
        let response = push(agent, &fed.referral(&id)).await;
        if response.status.as_u16() == 202 {
            accepted.push(id);
        } else {
            return (
                accepted,
                Some((response.status.as_u16(), response.text(), id)),
            );
        }
    }
    (accepted, None)
}

async fn readyz(node: &Node) -> u16 {
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let response = agent
        .request(hyper::Method::GET, "/readyz", None)
        .await
        .expect("readyz answers");
    response.status.as_u16()
}

/// A store failure halfway through a group (`fault`: the config key that injects it)
/// halts writes: the push in that group and an identical retry are 503, never 202 (sled
/// may hold half of the group in memory), `/readyz` is 503, and after a restart the retry
/// is taken exactly once and the chain verifies.
async fn store_failure_halts_until_restart(fault: &str) {
    let fed = Federation::new();
    fed.set_option("suwon", "storage", fault, "40");
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let (accepted, refused) = push_until_refused(&fed, &sender, "ref-fault", 200).await;
    let (status, text, failed_id) = refused.expect("the injected fault refuses a push");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("restarted"), "{text}");
    // An identical retry must not find the half-written group.
    let retry = push(&sender, &fed.referral(&failed_id)).await;
    assert_eq!(retry.status.as_u16(), 503, "{}", retry.text());
    assert_eq!(readyz(&node).await, 503);
    // A pull leases what it hands out, which is a write: nothing is served while halted,
    // so nothing of the failed group can be.
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let pulled = crate::support::pull_response(&welfare, "max=100").await;
    assert_eq!(pulled.status.as_u16(), 503, "{}", pulled.text());

    node.kill_hard();
    fed.set_option("suwon", "storage", fault, "0");
    node.restart();
    assert_eq!(readyz(&node).await, 200);
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let retry = push(&sender, &fed.referral(&failed_id)).await;
    assert_eq!(retry.status.as_u16(), 202, "{}", retry.text());
    let retry_again = push(&sender, &fed.referral(&failed_id)).await;
    assert_eq!(retry_again.status.as_u16(), 202, "idempotent");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let all = drain_inbox(&welfare).await;
    let set: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), set.len(), "each message once: {all:?}");
    let mut expected: BTreeSet<String> = accepted.into_iter().collect();
    expected.insert(failed_id);
    assert_eq!(set, expected);
    assert!(node.stop().success());
    assert_chain_verifies(&fed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_that_fails_halfway_halts_writes_until_a_restart() {
    store_failure_halts_until_restart("danger_fail_apply_at").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_halts_writes_until_a_restart() {
    store_failure_halts_until_restart("danger_fail_sync_at").await;
}

/// A tmpfs of `mib` MiB mounted over `dir` for the test's lifetime, if this process may
/// mount (root); `None` with a visible message otherwise.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, mib: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).expect("create the data directory");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallDisk {
                dir: dir.to_owned(),
            }),
            other => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs over {} ({other:?}); the full-disk tests need \
                     root or CAP_SYS_ADMIN",
                    dir.display()
                );
                None
            }
        }
    }

    /// Fills the disk until fewer than `leave` bytes are free (`leave` 0: until ENOSPC).
    fn fill(&self, leave: u64) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("filler")).expect("create filler");
        let chunk = vec![0u8; 256 << 10];
        loop {
            let free = fs2::available_space(&self.dir).expect("statvfs");
            if free <= leave {
                break;
            }
            let n = (free - leave).min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).expect("remove filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_with_507_and_writes_resume_without_a_restart() {
    let fed = Federation::new();
    let Some(disk) = SmallDisk::mount(&fed.data_dir("suwon"), 96) else {
        return;
    };
    fed.set_option("suwon", "storage", "reserve_mb", "16");
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let (mut accepted, refused) = push_until_refused(&fed, &sender, "ref-before", 20).await;
    assert!(refused.is_none(), "{refused:?}");
    assert_eq!(readyz(&node).await, 200);

    disk.fill(8 << 20);
    let (more, refused) = push_until_refused(&fed, &sender, "ref-full", 5).await;
    accepted.extend(more);
    let (status, text, full_id) = refused.expect("a push on a full disk is refused");
    assert_eq!(status, 507, "{text}");
    assert!(text.contains("storage-full"), "{text}");
    assert_eq!(readyz(&node).await, 503);

    // Space comes back: ready again and accepting, same process.
    disk.free();
    assert_eq!(readyz(&node).await, 200);
    let retry = push(&sender, &fed.referral(&full_id)).await;
    assert_eq!(retry.status.as_u16(), 202, "{}", retry.text());
    accepted.push(full_id);

    // SIGKILL while the disk is full: nothing acknowledged is lost or duplicated.
    disk.fill(8 << 20);
    let (_, refused) = push_until_refused(&fed, &sender, "ref-full-again", 3).await;
    assert_eq!(refused.expect("refused").0, 507);
    node.kill_hard();
    disk.free();
    node.restart();
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let delivered = drain_inbox(&welfare).await;
    let set: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(delivered.len(), set.len(), "each message once");
    assert_eq!(set, accepted.into_iter().collect::<BTreeSet<_>>());
    drop(node);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_inside_the_engine_halts_and_a_restart_recovers_everything_acknowledged() {
    let fed = Federation::new();
    let Some(disk) = SmallDisk::mount(&fed.data_dir("suwon"), 96) else {
        return;
    };
    // No reserve: the engine itself meets the full disk.
    fed.set_option("suwon", "storage", "reserve_mb", "0");
    let mut node = fed.start("suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let (mut accepted, refused) = push_until_refused(&fed, &sender, "ref-before", 20).await;
    assert!(refused.is_none(), "{refused:?}");
    disk.fill(0);
    let (more, refused) = push_until_refused(&fed, &sender, "ref-enospc", 5_000).await;
    accepted.extend(more);
    let (status, text, _) = refused.expect("a full disk ends in a refusal");
    assert!(status == 503 || status == 507, "{status}: {text}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(readyz(&node).await, 503);
    node.kill_hard();
    disk.free();
    node.restart();
    assert_eq!(readyz(&node).await, 200);
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let delivered = drain_inbox(&welfare).await;
    let set: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(delivered.len(), set.len(), "each message once");
    let accepted: BTreeSet<String> = accepted.into_iter().collect();
    assert!(
        accepted.is_subset(&set),
        "lost: {:?}",
        accepted.difference(&set).collect::<Vec<_>>()
    );
    drop(node);
    drop(disk);
}

/// `plusgate audit verify --config` passes on the stopped node's store.
fn assert_chain_verifies(fed: &Federation) {
    let verify = Command::new(fed.plusgate().path())
        .args(["audit", "verify", "--config"])
        .arg(fed.config_path("suwon"))
        .output()
        .expect("run audit verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Bytes allocated under `dir`.
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                allocated(&e.path())
            } else {
                meta.blocks() * 512
            }
        })
        .sum()
}

fn compact(fed: &Federation) -> crate::support::Finished {
    let mut command = Command::new(fed.plusgate().path());
    command
        .args(["compact", "--config"])
        .arg(fed.config_path("suwon"));
    crate::support::run_command_to_exit(command, Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_gives_the_space_back_and_keeps_every_record() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let ids: Vec<String> = (0..1500).map(|i| format!("ref-compact-{i:04}")).collect();
    crate::support::push_referrals(&fed, &node, &ids, 8).await;
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(drain_inbox(&welfare).await.len(), ids.len());

    let running = compact(&fed);
    assert!(
        !running.status.success(),
        "a running node's store is not compacted"
    );
    assert!(
        running.stderr.contains("still running"),
        "{}",
        running.stderr
    );

    assert!(node.stop().success());
    let data_dir = fed.data_dir("suwon");
    let before = allocated(&data_dir);
    let done = compact(&fed);
    assert!(done.status.success(), "{}", done.stderr);
    let after = allocated(&data_dir);
    assert!(
        after < before,
        "compaction must give space back: {before} → {after} bytes\n{}",
        done.stdout
    );
    assert!(!data_dir.with_file_name("data.compacting").exists());

    // Everything is still there: the chain verifies, the node starts (its audit anchor
    // came along), an old message is known by its id and stays acknowledged.
    assert_chain_verifies(&fed);
    node.restart();
    let sender = node.agent("suwon/employment", HttpVersion::Http1);
    let again = push(&sender, &fed.referral(&ids[7])).await;
    assert_eq!(again.status.as_u16(), 202, "{}", again.text());
    let status = crate::support::status(&sender, &ids[7]).await;
    assert!(status.text().contains("acked"), "{}", status.text());
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert!(drain_inbox(&welfare).await.is_empty(), "nothing comes back");
}
