//! `deploy/federation.sh`, run for real: it writes a three-center development federation,
//! starts every node in the background, a referral for another center crosses from the
//! first center to the recipient's, and `stop` ends every node it started.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use plusgate::dev::manifest::LoadedManifest;
use plusgate::node::client::{client_config, Agent, HttpVersion};
use serde_json::{json, Value};

use crate::support::{
    ids_of, load_manifest, plusgate_bin, push_accepted, register_consent, wait_with_timeout,
    Finished, REQUEST_TIMEOUT,
};

/// The script under test.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/federation.sh");

/// Longest one run of the script may take: `start` waits up to 30 s for the nodes, `stop`
/// up to 20 s before it SIGKILLs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest the remote referral may take to become pullable at the recipient's node.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The centers the script asks `dev-init` for, in port order.
const CENTERS: [&str; 3] = ["suwon", "gangseo", "jeongeup"];

/// A base port such that `base .. base + n` are free on loopback now. Like the harness's
/// own (below Linux's ephemeral range, spread by process id), but in 10000–19999, a range
/// the harness never hands out, so a node started by another test cannot take these ports
/// between this check and the script's nodes binding them.
fn free_port_range(n: u16) -> u16 {
    let offset = (std::process::id() % 1000) as u16 * 7;
    for attempt in 0..2000u16 {
        let base = 10_000 + (offset + attempt * (n + 1)) % (10_000 - n);
        let free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {n} free consecutive ports on 127.0.0.1 in 10000-19999");
}

/// Runs `sh deploy/federation.sh args…` with the binary under test and `base_port`, stdin
/// closed, output collected in files, bounded by [`SCRIPT_TIMEOUT`].
///
/// The wait happens off the runtime's thread, so the client side of connections the test
/// made keeps being driven: a node stopping drains its open connections, and a client that
/// cannot answer would hold it up for the whole drain bound.
async fn script(args: &[&Path], base_port: u16) -> Finished {
    let args: Vec<PathBuf> = args.iter().map(|a| a.to_path_buf()).collect();
    tokio::task::spawn_blocking(move || run_script(&args, base_port))
        .await
        .expect("script runner")
}

fn run_script(args: &[PathBuf], base_port: u16) -> Finished {
    let out = tempfile::tempdir().expect("temporary folder");
    let file = |name: &str| File::create(out.path().join(name)).expect("output file");
    let mut child = Command::new("sh")
        .arg(SCRIPT)
        .args(args)
        .env("PLUSGATE", plusgate_bin())
        .env("PLUSGATE_BASE_PORT", base_port.to_string())
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .expect("spawn sh");
    let status = wait_with_timeout(&mut child, SCRIPT_TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("federation.sh {args:?} did not exit within {SCRIPT_TIMEOUT:?}")
    });
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
    Finished {
        status,
        stdout: read("stdout"),
        stderr: read("stderr"),
    }
}

/// True while process `pid` exists and has not exited (a zombie has exited).
fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            !matches!(state, Some(Some('Z' | 'X')))
        }
        // No such process, or no /proc: ask kill.
        Err(_) if Path::new("/proc/self").exists() => false,
        Err(_) => Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// Every `node.pid` of the federation in `dir`, with its center.
fn pid_files(dir: &Path) -> Vec<(String, PathBuf, u32)> {
    CENTERS
        .iter()
        .map(|c| (c.to_string(), dir.join(c).join("node.pid")))
        .filter(|(_, path)| path.exists())
        .map(|(c, path)| {
            let text = std::fs::read_to_string(&path).expect("read pid file");
            let pid = text.trim().parse().expect("pid file holds a pid");
            (c, path, pid)
        })
        .collect()
}

/// SIGKILLs whatever nodes the script left running when the test fails half-way, so a
/// failing test leaves no processes behind.
struct KillLeftovers(PathBuf);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        for (_, _, pid) in pid_files(&self.0) {
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&*self.0.to_string_lossy()))
                .unwrap_or(false);
            if ours {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// An HTTP/2 agent presenting agency `id`'s certificate to the node at `url`.
fn agent(manifest: &LoadedManifest, id: &str, url: &str) -> Agent {
    let (cert, key) = manifest.agency_identity(id).expect("agency in manifest");
    let config = client_config(
        &manifest.ca_path(),
        Some((cert.as_path(), key.as_path())),
        HttpVersion::Http2,
    )
    .expect("client config");
    let addr = url
        .strip_prefix("https://")
        .and_then(|a| a.parse().ok())
        .expect("node URL is https://IP:PORT");
    let mut agent = Agent::new(addr, "localhost", config, HttpVersion::Http2);
    agent.timeout = REQUEST_TIMEOUT;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federation_script_starts_every_center_forwards_and_stops() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path().join("fed");
    let _leftovers = KillLeftovers(dir.clone());
    let base = free_port_range(CENTERS.len() as u16);

    // start: dev-init (the folder does not exist yet), then one node per center.
    let started = script(&[Path::new("start"), &dir], base).await;
    assert!(started.status.success(), "{started:?}");
    let manifest = load_manifest(&dir);
    let centers = manifest.centers_in_order();
    let ids: Vec<&str> = centers.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, CENTERS, "the default centers, in port order");
    let pids = pid_files(&dir);
    assert_eq!(pids.len(), CENTERS.len(), "a pid file per center: {pids:?}");
    for (i, (id, entry)) in centers.iter().enumerate() {
        assert_eq!(
            entry.url,
            format!("https://127.0.0.1:{}", base + i as u16),
            "PLUSGATE_BASE_PORT decides the ports"
        );
        let log = dir.join(id).join("node.log");
        let line = started
            .stdout
            .lines()
            .find(|l| l.contains(&entry.url))
            .unwrap_or_else(|| panic!("no line with {}: {}", entry.url, started.stdout));
        assert!(line.contains(&*log.to_string_lossy()), "{line}");
        let log_text = std::fs::read_to_string(&log).expect("node log");
        assert!(
            log_text.contains("plusgate listening on https://"),
            "{log_text}"
        );
    }
    for (center, _, pid) in &pids {
        assert!(process_running(*pid), "{center} (pid {pid}) runs");
    }

    // status: every center runs.
    let running = script(&[Path::new("status"), &dir], base).await;
    assert!(running.status.success(), "{running:?}");
    assert_eq!(running.stdout.lines().count(), CENTERS.len(), "{running:?}");
    assert!(!running.stdout.contains("not running"), "{running:?}");

    // A second start refuses and changes nothing.
    let again = script(&[Path::new("start"), &dir], base).await;
    assert!(!again.status.success(), "{again:?}");
    assert!(again.stderr.contains("already running"), "{again:?}");
    assert_eq!(pid_files(&dir), pids);

    // The remote referral example, pushed at the first center by its sender, arrives at
    // the recipient's center.
    let (example, sender) = manifest.example("referral-remote").expect("example");
    let body: Value =
        serde_json::from_str(&std::fs::read_to_string(example).expect("read example"))
            .expect("example is JSON");
    let id = body["id"].as_str().expect("example has an id").to_owned();
    let recipient = body["to"].as_str().expect("example has a recipient");
    let first = centers[0].1;
    assert_eq!(manifest.url_of(sender).expect("sender"), first.url);
    let to_url = manifest.url_of(recipient).expect("recipient");
    assert_ne!(to_url, first.url, "the recipient is at another center");
    // Its consent, registered by the agency that collected it, travels with it.
    let (consent, collector) = manifest.example("consent").expect("consent example");
    let consent: Value =
        serde_json::from_str(&std::fs::read_to_string(consent).expect("read example"))
            .expect("example is JSON");
    register_consent(&agent(&manifest, collector, &first.url), &consent).await;
    push_accepted(&agent(&manifest, sender, &first.url), &body).await;

    let inbox = agent(&manifest, recipient, to_url);
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    let pulled = loop {
        let response = inbox.get("/v1/inbox?max=10&wait=5").await.expect("pull");
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        let page: Value = response.json().expect("pull body");
        let messages = page["messages"].as_array().expect("messages").clone();
        if !messages.is_empty() {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "{id} did not reach {recipient} within {ARRIVAL_TIMEOUT:?}"
        );
    };
    assert_eq!(ids_of(&pulled), [id.as_str()]);
    assert_eq!(pulled[0]["from"], json!(sender));
    let acked = inbox
        .post_json("/v1/inbox/ack", &json!({ "ids": [id] }))
        .await
        .expect("ack");
    assert_eq!(acked.status, StatusCode::OK, "{}", acked.text());

    // stop: every node exits, every pid file goes.
    let stopped = script(&[Path::new("stop"), &dir], base).await;
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(!stopped.stdout.contains("SIGKILL"), "{stopped:?}");
    let left = pid_files(&dir);
    assert!(left.is_empty(), "pid files are removed: {left:?}");
    for (center, _, pid) in &pids {
        assert!(!process_running(*pid), "{center} (pid {pid}) has exited");
    }

    // status now reports every center stopped; stopping again is fine.
    let none = script(&[Path::new("status"), &dir], base).await;
    assert_eq!(none.status.code(), Some(3), "{none:?}");
    let lines: Vec<&str> = none.stdout.lines().collect();
    assert_eq!(lines.len(), CENTERS.len(), "{none:?}");
    assert!(lines.iter().all(|l| l.contains("not running")), "{none:?}");
    let twice = script(&[Path::new("stop"), &dir], base).await;
    assert!(twice.status.success(), "{twice:?}");
    assert!(twice.stdout.contains("not running"), "{twice:?}");
}
