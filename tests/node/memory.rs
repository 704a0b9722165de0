//! What an authenticated flood can make a node hold: request bodies buffered at once (the
//! body budget, node-wide and per identity), message bytes waiting for the ledger
//! (`ledger_queue_bytes_max`), messages waiting in one agency's inbox (`inbox_max`), report
//! rows, and whether one agency's pulls can stall another's.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use plusgate::node::client::{client_config, Agent, HttpVersion, Response};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::support::{
    ack, assert_problem, drain_inbox_by, ids_of, large_case_summary, messages_of, pull, push,
    push_accepted, status, Federation, Node, Trickle,
};

/// A generous bound on anything that should be prompt: a functional check, not a
/// measurement.
const PROMPT: Duration = Duration::from_secs(10);

/// Starts a push over HTTP/2 as suwon/employment that declares `declared` bytes and sends
/// only a first few: the node holds its grant of the budget while it waits for the rest.
/// Dropping the returned sender and task ends it.
async fn push_held_open(
    fed: &Federation,
    node: &Node,
    declared: usize,
) -> (mpsc::Sender<Bytes>, tokio::task::JoinHandle<()>) {
    let cert = fed.identity("suwon/employment");
    let config = client_config(
        &fed.manifest().ca_path(),
        Some((&cert.cert, &cert.key)),
        HttpVersion::Http2,
    )
    .expect("client config");
    let tcp = TcpStream::connect(node.addr()).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(Arc::clone(&config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
    let (tx, rx) = mpsc::channel(4);
    tx.send(Bytes::from_static(b"{\"type\":"))
        .await
        .expect("first bytes");
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "https://localhost:{}/v1/messages",
            node.addr().port()
        ))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONTENT_LENGTH, declared)
        .body(Trickle(rx))
        .expect("request");
    let task = tokio::spawn(async move {
        tokio::spawn(conn);
        let _ = sender.send_request(request).await;
    });
    (tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_body_budget_get_503_busy_and_the_node_serves_again_after() {
    let fed = Federation::new();
    // One body's worth for the node and for the identity: a body held open takes it all.
    fed.set_limit("suwon", "body_bytes_max", 65_536);
    fed.set_limit("suwon", "body_budget_identity_bytes", 65_536);
    fed.set_limit("suwon", "body_budget_bytes", 65_536);
    let node = fed.start("suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let (mut held, mut task) = push_held_open(&fed, &node, 65_000).await;

    // The held body's grant is taken as soon as its handler reads it; until then the push
    // below may still find room, so ask until the budget is seen exhausted.
    let deadline = Instant::now() + PROMPT;
    let refused = loop {
        // A push below may hold the budget just when the held one arrives (on a loaded
        // machine it can arrive late), which is then answered busy itself: hold another.
        if task.is_finished() {
            (held, task) = push_held_open(&fed, &node, 65_000).await;
        }
        let response = push(&agent, &fed.referral("ref-while-flooded")).await;
        if response.status.as_u16() == 503 {
            break response;
        }
        assert_eq!(response.status.as_u16(), 202, "{}", response.text());
        assert!(Instant::now() < deadline, "the budget was never exhausted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let problem = assert_problem(&refused, 503, "busy");
    assert!(
        refused.headers.contains_key(hyper::header::RETRY_AFTER),
        "{problem}"
    );

    // The held body goes away: its bytes come back and pushes are served again.
    drop(held);
    task.abort();
    let deadline = Instant::now() + PROMPT;
    loop {
        let response = push(&agent, &fed.referral("ref-after-flood")).await;
        if response.status.as_u16() == 202 {
            break;
        }
        assert_problem(&response, 503, "busy");
        assert!(Instant::now() < deadline, "the budget never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_refuses_pushes_until_its_agency_acks() {
    let fed = Federation::new();
    fed.set_limit("suwon", "inbox_max", 2);
    let node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&employment, &fed.referral("ref-inbox-1")).await;
    push_accepted(&employment, &fed.referral("ref-inbox-2")).await;

    let refused = push(&employment, &fed.referral("ref-inbox-3")).await;
    let problem = assert_problem(&refused, 503, "inbox-full");
    assert!(
        refused.headers.contains_key(hyper::header::RETRY_AFTER),
        "{problem}"
    );
    // A pull alone makes no room: the messages are still the agency's to acknowledge.
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "max=1").await), ["ref-inbox-1"]);
    assert_problem(
        &push(&employment, &fed.referral("ref-inbox-3")).await,
        503,
        "inbox-full",
    );
    assert_eq!(ack(&welfare, &["ref-inbox-1"]).await.status.as_u16(), 200);
    push_accepted(&employment, &fed.referral("ref-inbox-3")).await;
    // Bounded again at two.
    assert_problem(
        &push(&employment, &fed.referral("ref-inbox-4")).await,
        503,
        "inbox-full",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_with_more_rows_than_their_limit_are_cut_and_say_so() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let first = fed.referral("ref-report-1");
    let subject = first["subject"].as_str().expect("subject").to_owned();
    push_accepted(&employment, &first).await;
    push_accepted(&employment, &fed.referral("ref-report-2")).await;
    let officer = node.agent("suwon/privacy-officer", HttpVersion::Http2);
    let get = |path: String| {
        let officer = &officer;
        async move {
            let response = officer.get(&path).await.expect("response");
            assert_eq!(response.status.as_u16(), 200, "{}", response.text());
            let body: Value = response.json().expect("JSON");
            (response, body)
        }
    };

    let path = format!("/v1/privacy/subjects/{subject}/disclosures");
    let (_, whole) = get(path.clone()).await;
    assert_eq!(
        whole["disclosures"].as_array().expect("list").len(),
        2,
        "{whole}"
    );
    assert_eq!(whole["truncated"], false, "{whole}");
    let (response, cut) = get(format!("{path}?limit=1")).await;
    let rows = cut["disclosures"].as_array().expect("list");
    assert_eq!(rows.len(), 1, "{cut}");
    assert_eq!(rows[0]["message_id"], "ref-report-1", "the oldest is kept");
    assert_eq!(cut["truncated"], true, "{cut}");
    assert_eq!(response.headers["plusgate-truncated"], "true");

    let (_, consents) = get("/v1/privacy/consents".into()).await;
    let all = consents["consents"].as_array().expect("list").len();
    assert!(
        all >= 2,
        "the examples register several consents: {consents}"
    );
    let (_, cut) = get("/v1/privacy/consents?limit=1".into()).await;
    assert_eq!(cut["consents"].as_array().expect("list").len(), 1, "{cut}");
    assert_eq!(cut["truncated"], true, "{cut}");
    // A limit past the most a report answers is the caller's mistake.
    let response = officer
        .get("/v1/privacy/refusals?limit=10001")
        .await
        .expect("response");
    assert_problem(&response, 400, "bad-request");
}

/// Starts pushing `bodies` from `agent` at once, one HTTP/2 stream each; each task ends
/// with the body's id and the answer.
async fn spawn_pushes(agent: &Agent, bodies: Vec<Value>) -> JoinSet<(String, Response)> {
    let conn = agent.connect().await.expect("connect");
    let mut pushes = JoinSet::new();
    for body in bodies {
        let mut conn = conn.try_clone().expect("HTTP/2 connections clone");
        pushes.spawn(async move {
            let id = body["id"].as_str().expect("id").to_owned();
            let bytes = Bytes::from(body.to_string());
            let response = conn
                .send(
                    Method::POST,
                    "/v1/messages",
                    Some((bytes, "application/json")),
                )
                .await
                .expect("push gets a response");
            (id, response)
        });
    }
    pushes
}

/// Pushes `bodies` from `agent` at once (see [`spawn_pushes`]); returns each body's id
/// with the answer.
async fn push_all_at_once(agent: &Agent, bodies: Vec<Value>) -> Vec<(String, Response)> {
    spawn_pushes(agent, bodies).await.join_all().await
}

/// Where the answers to a burst of pushes went: accepted, or refused 503 `busy` with
/// `Retry-After` (anything else fails the test).
#[derive(Debug, Default)]
struct Answers {
    accepted: BTreeSet<String>,
    busy: BTreeSet<String>,
}

impl Answers {
    fn record(&mut self, (id, response): (String, Response)) {
        if response.status.as_u16() == 202 {
            self.accepted.insert(id);
            return;
        }
        let problem = assert_problem(&response, 503, "busy");
        assert!(
            response.headers.contains_key(hyper::header::RETRY_AFTER),
            "{problem}"
        );
        self.busy.insert(id);
    }
}

/// An ext4 file system in a file, loop-mounted over a folder for the test's life (root
/// only), which the test can freeze (`fsfreeze`): every write and fsync to it then blocks
/// until it is thawed, as on a disk that stalls.
struct StallableDisk {
    dir: PathBuf,
}

impl StallableDisk {
    /// Mounts a fresh 256 MiB file system (room for the node's free-space reserve) from
    /// `image` over `dir`; `None`, with a visible SKIPPED line, where that is not allowed.
    fn mount(image: &Path, dir: &Path) -> Option<StallableDisk> {
        std::fs::create_dir_all(dir).expect("create the data directory");
        std::fs::File::create(image)
            .and_then(|f| f.set_len(256 << 20))
            .expect("image file");
        let run = |program: &str, args: &[&std::ffi::OsStr]| {
            Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let made = run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), image.as_ref()]);
        if !(made
            && run(
                "mount",
                &["-o".as_ref(), "loop".as_ref(), image.as_ref(), dir.as_ref()],
            ))
        {
            eprintln!(
                "SKIPPED: cannot loop-mount an ext4 image over {}; the stalled-disk part needs \
                 root, mkfs.ext4 and a loop device",
                dir.display()
            );
            return None;
        }
        let _ = std::fs::remove_dir(dir.join("lost+found"));
        Some(StallableDisk {
            dir: dir.to_owned(),
        })
    }

    /// Freezes the file system until the returned guard is dropped.
    fn freeze(&self) -> Frozen {
        // A process writing to a frozen file system cannot be killed until it is thawed:
        // should this test die while it is frozen, a watchdog of its own process group thaws
        // it anyway, so the node can still be ended.
        let watchdog = Command::new("sh")
            .args(["-c", "sleep 60; fsfreeze --unfreeze \"$0\""])
            .arg(&self.dir)
            .process_group(0)
            .spawn()
            .expect("start the thawing watchdog");
        let frozen = Frozen {
            dir: self.dir.clone(),
            watchdog,
        };
        let status = Command::new("fsfreeze")
            .arg("--freeze")
            .arg(&self.dir)
            .status()
            .expect("run fsfreeze");
        assert!(status.success(), "fsfreeze --freeze: {status}");
        frozen
    }
}

impl Drop for StallableDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A frozen [`StallableDisk`]; dropping it thaws the disk and ends the watchdog.
struct Frozen {
    dir: PathBuf,
    watchdog: Child,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze")
            .arg("--unfreeze")
            .arg(&self.dir)
            .status();
        // The watchdog's shell and its sleep, by their group's id (the shell's pid).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.watchdog.id())])
            .status();
        let _ = self.watchdog.wait();
    }
}

/// The ledger's queue holds at most `ledger_queue_bytes_max` of messages; a sender waits
/// for room up to `QUEUE_WAIT_MAX` (5 s), then gets 503 `busy`. Here the bound is the least
/// the config takes (one largest body), and each message is sealed into a record of more
/// than half of it, so one at a time is queued or in a group commit and every other push of
/// a burst waits its turn. First a burst of 48 (over 20 times the bound) with the writer at
/// full speed; then, with the node's disk frozen so that the writer is stuck in its fsync,
/// six more: the one the writer holds waits for the disk, the other five wait for room and
/// are answered busy while the disk is still frozen. Nothing is lost or taken twice: every
/// 202 is pulled exactly once, and no refused message is in the inbox or known to the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_burst_past_the_ledger_queue_bound_waits_or_is_refused_busy_and_loses_nothing() {
    const STALLED: usize = 6;
    let fed = Federation::new();
    let bound: u64 = 600_000;
    fed.set_limit("suwon", "body_bytes_max", bound);
    fed.set_limit("suwon", "ledger_queue_bytes_max", bound);
    let disk = StallableDisk::mount(
        &fed.scratch("disk").join("ext4.img"),
        &fed.data_dir("suwon"),
    );
    let node = fed.start("suwon");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    let summaries = |prefix: &str, n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| large_case_summary(&fed, &format!("{prefix}-{i:02}"), 330))
            .collect()
    };

    let burst = summaries("cs-burst", 48);
    let bytes: usize = burst.iter().map(|b| b.to_string().len()).sum();
    assert!(
        bytes as u64 > 20 * bound,
        "the burst is many times the bound"
    );
    let mut answers = Answers::default();
    for answer in push_all_at_once(&welfare, burst).await {
        answers.record(answer);
    }

    if let Some(disk) = &disk {
        let frozen = disk.freeze();
        let mut stalled = spawn_pushes(&welfare, summaries("cs-stalled", STALLED)).await;
        for _ in 1..STALLED {
            // Bounded well inside the agent's own timeout, to say what went wrong.
            let (id, response) = tokio::time::timeout(Duration::from_secs(15), stalled.join_next())
                .await
                .expect("a push waiting for room is answered busy after 5 s")
                .expect("a push")
                .expect("push task");
            // Nothing is accepted while the disk is frozen: each answer now is a refusal.
            assert_problem(&response, 503, "busy");
            answers.record((id, response));
        }
        drop(frozen);
        while let Some(answer) = stalled.join_next().await {
            answers.record(answer.expect("push task"));
        }
        assert!(
            answers.busy.len() >= STALLED - 1,
            "refused busy: {:?}",
            answers.busy
        );
    }

    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    // Ten at a time: a pull's answer stays under the client's 16 MiB.
    let delivered = drain_inbox_by(&employment, 10).await;
    let once: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(
        once.len(),
        delivered.len(),
        "each message once: {delivered:?}"
    );
    assert_eq!(
        once, answers.accepted,
        "every accepted message, and only those"
    );
    for id in &answers.busy {
        assert_problem(&status(&welfare, id).await, 404, "not-found");
    }
}

/// An HTTP/2 connection to `node` as `identity` that reads answers of any size (the
/// harness's client keeps them under 16 MiB).
async fn unbounded_connection(
    fed: &Federation,
    node: &Node,
    identity: &str,
) -> http2::SendRequest<Empty<Bytes>> {
    let cert = fed.identity(identity);
    let config = client_config(
        &fed.manifest().ca_path(),
        Some((&cert.cert, &cert.key)),
        HttpVersion::Http2,
    )
    .expect("client config");
    let tcp = TcpStream::connect(node.addr()).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    sender
}

/// A pull's store reads and payload opens once ran under one lock shared by every
/// recipient, on the async workers: one agency pulling large batches of large payloads held
/// it, and with two pulls at once both workers of a 2-core host (one reading, one waiting
/// for the lock), so every other agency's pull, and every push, waited behind its batches.
/// Here suwon/employment pulls 100 sealed case summaries of about 300 KB (30 MB) per pull,
/// four pulls at a time, three times over (a 1 ms lease makes every pull read them all
/// again), while suwon/welfare pulls two messages waiting for it, one after the other, then
/// long-polls for one pushed meanwhile. Measured as order, not time: welfare's first pull,
/// sent after employment's first four, is answered before any of those has handed out its
/// batch, and each of welfare's pulls while employment's are still going.
///
/// A generous bound: it catches a pull that waits for another agency's stream of batches,
/// not one that waits for a single batch. The code before the fix passes it too (welfare's
/// first pull then took 0.3 to 1.5 s, against about 0.1 s now, and employment's first batch
/// 1.3 to 1.8 s): on this hardware the reads and opens of a 30 MB batch take tens of
/// milliseconds, so no black-box ordering separates the two without a slow disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agencys_large_pulls_do_not_stall_another_agencys_pull() {
    const BATCH: usize = 100;
    const PULLERS: usize = 4;
    const ROUNDS: usize = 3;
    let fed = Federation::new();
    fed.set_limit("suwon", "inbox_lease_ms", 1);
    let node = fed.start("suwon");
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    let employment = node.agent("suwon/employment", HttpVersion::Http2);
    let summaries: Vec<String> = (0..BATCH).map(|i| format!("cs-pulled-{i:02}")).collect();
    for chunk in summaries.chunks(10) {
        let bodies = chunk
            .iter()
            .map(|id| large_case_summary(&fed, id, 330))
            .collect();
        for (id, response) in push_all_at_once(&welfare, bodies).await {
            assert_eq!(response.status.as_u16(), 202, "{id}: {}", response.text());
        }
    }
    let waiting = ["ref-waiting-0", "ref-waiting-1"];
    for id in waiting {
        push_accepted(&employment, &fed.referral(id)).await;
    }
    // Every connection is open before employment's pulls start, so no handshake slows
    // welfare's side.
    let mut welfares = welfare.connect().await.expect("connect");
    let mut pusher = employment.connect().await.expect("connect");
    let mut conns = Vec::new();
    for _ in 0..PULLERS {
        conns.push(unbounded_connection(&fed, &node, "suwon/employment").await);
    }

    // Told when each of employment's pulls is answered with a batch (a pull can find every
    // summary reserved by another one and hand out none).
    let (batch_tx, mut batches) = mpsc::channel::<()>(PULLERS * ROUNDS);
    let mut pullers = Vec::new();
    for mut conn in conns {
        let uri = format!(
            "https://localhost:{}/v1/inbox?max={BATCH}&wait=0",
            node.addr().port()
        );
        let batch_tx = batch_tx.clone();
        pullers.push(tokio::spawn(async move {
            let mut handed_out = 0;
            for _ in 0..ROUNDS {
                let request = Request::get(&uri).body(Empty::new()).expect("request");
                let response = conn.send_request(request).await.expect("a large pull");
                assert_eq!(response.status().as_u16(), 200);
                let body = response.into_body().collect().await.expect("its body");
                let page: Value = serde_json::from_slice(&body.to_bytes()).expect("JSON");
                let n = page["messages"].as_array().expect("messages").len();
                if n > 0 {
                    let _ = batch_tx.try_send(());
                }
                handed_out += n;
            }
            handed_out
        }));
    }
    drop(batch_tx);
    let still_pulling =
        |pullers: &[tokio::task::JoinHandle<usize>]| pullers.iter().any(|p| !p.is_finished());
    // Employment's pulls go out first, so that they reach the node before welfare's.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (i, id) in waiting.into_iter().enumerate() {
        let response = welfares
            .send(Method::GET, "/v1/inbox?max=1&wait=0", None)
            .await
            .expect("welfare's pull is answered");
        if i == 0 {
            assert!(
                batches.try_recv().is_err(),
                "welfare's first pull was answered only after a batch of employment's"
            );
        }
        assert_eq!(ids_of(&messages_of(&response)), [id]);
        assert!(
            still_pulling(&pullers),
            "welfare's pull of {id} was answered only after employment's large pulls"
        );
        // Acknowledged, or the 1 ms lease hands it out again.
        let body = Bytes::from(serde_json::json!({ "ids": [id] }).to_string());
        let acked = welfares
            .send(
                Method::POST,
                "/v1/inbox/ack",
                Some((body, "application/json")),
            )
            .await
            .expect("welfare's ack is answered");
        assert_eq!(acked.status.as_u16(), 200, "{}", acked.text());
    }
    let long_poll = {
        let welfare = welfare.clone();
        tokio::spawn(async move { pull(&welfare, "max=1&wait=30").await })
    };
    let body = Bytes::from(fed.referral("ref-pushed").to_string());
    let pushed = pusher
        .send(
            Method::POST,
            "/v1/messages",
            Some((body, "application/json")),
        )
        .await
        .expect("push gets a response");
    assert_eq!(pushed.status.as_u16(), 202, "{}", pushed.text());
    assert_eq!(ids_of(&long_poll.await.expect("long poll")), ["ref-pushed"]);
    assert!(
        still_pulling(&pullers),
        "welfare's long poll was answered only after employment's large pulls"
    );

    let mut handed_out = 0;
    for puller in pullers {
        handed_out += puller.await.expect("puller");
    }
    assert!(
        handed_out >= BATCH * ROUNDS,
        "the large pulls handed out {handed_out} summaries"
    );
}
