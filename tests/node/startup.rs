//! Starting and stopping a node: configurations and schema sets that must stop it with a
//! message naming the culprit, `check-config`, `serve --dev`, and shutdown on SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;

use crate::support::{
    ids_of, load_manifest, messages_of, pull, pull_response, push_accepted, register_consent,
    run_to_exit, with_id, Federation, Node, NodeSpec, VERSIONS,
};

/// How long a node that cannot start may take to say so.
const FAIL_FAST: Duration = Duration::from_secs(10);

/// Copies the repository's schema files into `<scratch>/schemas`, applies `edit` to the
/// text of `file`, and points the `suwon` config at the copy.
fn use_edited_schemas(fed: &Federation, file: &str, edit: impl FnOnce(String) -> String) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let copy = fed.scratch("schemas");
    let mut edit = Some(edit);
    for entry in std::fs::read_dir(&source).expect("schemas folder") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().expect("file name").to_owned();
        let mut text = std::fs::read_to_string(&path).expect("schema");
        if name == file {
            let edit = edit.take().expect("one file of each name");
            let edited = edit(text.clone());
            assert_ne!(edited, text, "the edit must change {file}");
            text = edited;
        }
        std::fs::write(copy.join(name), text).expect("write schema");
    }
    assert!(edit.is_none(), "no schema {file}");
    fed.edit_config("suwon", |text| {
        format!(
            "{text}\n[schemas]\ndir = {:?}\n",
            copy.display().to_string()
        )
    });
}

fn serve_args(config: &Path) -> Vec<String> {
    vec![
        "serve".into(),
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]
}

/// Runs `serve` on `center`'s config and asserts it exits non-zero, quickly, naming
/// `culprit` on stderr.
fn assert_serve_refuses(fed: &Federation, center: &str, culprit: &str) {
    let args = serve_args(&fed.config_path(center));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let finished = run_to_exit(&args, fed.dir(), FAIL_FAST);
    assert!(!finished.status.success(), "{finished:?}");
    assert!(
        finished.stderr.contains(culprit),
        "stderr must name {culprit}: {}",
        finished.stderr
    );
    assert!(
        !finished.stdout.contains("listening"),
        "must not start serving: {}",
        finished.stdout
    );
}

#[test]
fn schema_file_that_is_not_json_stops_serve_naming_the_file() {
    let fed = Federation::new();
    use_edited_schemas(&fed, "referral.v1.json", |text| {
        text.replacen('{', "{ this is not json", 1)
    });
    assert_serve_refuses(&fed, "suwon", "referral.v1.json");
}

#[test]
fn schema_ref_to_a_missing_file_stops_serve_naming_the_file() {
    let fed = Federation::new();
    use_edited_schemas(&fed, "case-summary.v1.json", |text| {
        text.replacen("\"common.v1.json#", "\"missing.v1.json#", 1)
    });
    assert_serve_refuses(&fed, "suwon", "case-summary.v1.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_schema_copy_is_what_the_node_validates_against() {
    let fed = Federation::new();
    // A valid change: urgency may now also be "someday".
    use_edited_schemas(&fed, "referral.v1.json", |text| {
        text.replacen("\"priority\"", "\"priority\", \"someday\"", 1)
    });
    let node = fed.start("suwon");
    let mut body = fed.referral("ref-someday");
    body["payload"]["urgency"] = "someday".into();
    push_accepted(&node.agent("suwon/employment", HttpVersion::Http1), &body).await;
}

#[test]
fn check_config_accepts_a_good_config() {
    let fed = Federation::new();
    let config = fed.config_path("suwon").display().to_string();
    let finished = run_to_exit(&["check-config", "--config", &config], fed.dir(), FAIL_FAST);
    assert!(finished.status.success(), "{finished:?}");
    assert!(finished.stdout.contains("ok"), "{}", finished.stdout);
}

#[test]
fn check_config_refuses_an_unknown_key_naming_it() {
    let fed = Federation::new();
    fed.edit_config("suwon", |text| {
        text.replacen("[node]\n", "[node]\ncolour = \"blue\"\n", 1)
    });
    let config = fed.config_path("suwon").display().to_string();
    let finished = run_to_exit(&["check-config", "--config", &config], fed.dir(), FAIL_FAST);
    assert!(!finished.status.success(), "{finished:?}");
    assert!(finished.stderr.contains("colour"), "{}", finished.stderr);
    // `serve` refuses the same file for the same reason.
    assert_serve_refuses(&fed, "suwon", "colour");
}

#[test]
fn check_config_refuses_a_bad_value_naming_the_key() {
    let fed = Federation::new();
    fed.set_limit("suwon", "inbox_pull_max", 0);
    let config = fed.config_path("suwon").display().to_string();
    let finished = run_to_exit(&["check-config", "--config", &config], fed.dir(), FAIL_FAST);
    assert!(!finished.status.success(), "{finished:?}");
    assert!(
        finished.stderr.contains("limits.inbox_pull_max"),
        "{}",
        finished.stderr
    );
}

fn dev_node(cwd: &Path) -> Node {
    Node::start(NodeSpec {
        args: ["serve", "--dev", "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec(),
        cwd: cwd.to_owned(),
        log: cwd.join("dev.log"),
        federation: dev_dir(cwd),
        log_filter: String::new(),
    })
}

fn dev_dir(cwd: &Path) -> PathBuf {
    cwd.join("plusgate-dev")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_dev_creates_a_development_federation_then_reuses_it() {
    let cwd = tempfile::tempdir().expect("temporary folder");
    let mut node = dev_node(cwd.path());
    let manifest = load_manifest(&dev_dir(cwd.path()));
    let ca_before = std::fs::read(manifest.ca_path()).expect("dev CA");
    let (example, sender) = manifest.example("referral").expect("referral example");
    let referral: serde_json::Value =
        serde_json::from_slice(&std::fs::read(example).expect("example")).expect("JSON");
    let (consent, collector) = manifest.example("consent").expect("consent example");
    let consent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(consent).expect("example")).expect("JSON");
    register_consent(&node.agent(collector, HttpVersion::Http1), &consent).await;
    let first = with_id(referral.clone(), "ref-dev-1");
    push_accepted(&node.agent(sender, HttpVersion::Http2), &first).await;
    assert!(node.stop().success());

    let mut node = dev_node(cwd.path());
    let ca_after = std::fs::read(manifest.ca_path()).expect("dev CA");
    assert_eq!(ca_before, ca_after, "the second run reuses the federation");
    let second = with_id(referral, "ref-dev-2");
    push_accepted(&node.agent(sender, HttpVersion::Http1), &second).await;
    let recipient = first["to"].as_str().expect("recipient");
    let welfare = node.agent(recipient, HttpVersion::Http1);
    // The data directory was reused too: the first run's message is still waiting.
    assert_eq!(
        ids_of(&pull(&welfare, "max=10").await),
        ["ref-dev-1", "ref-dev-2"]
    );
    assert!(node.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_idle_node_exits_promptly_and_cleanly() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    push_accepted(
        &node.agent("suwon/employment", HttpVersion::Http1),
        &fed.referral("ref-before-stop"),
    )
    .await;
    let started = Instant::now();
    assert!(node.stop().success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_waiting_long_polls_and_exits_promptly() {
    let fed = Federation::new();
    let mut node = fed.start("suwon");
    let mut polls = Vec::new();
    for version in VERSIONS {
        let welfare = node.agent("suwon/welfare", version);
        polls.push(tokio::spawn(async move {
            pull_response(&welfare, "wait=30").await
        }));
    }
    // Let both pulls reach the node and start waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| node.stop());
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    for poll in polls {
        // An empty answer is right: the agency simply pulls again from the restarted node.
        let response = poll.await.expect("poll task");
        assert!(messages_of(&response).is_empty());
    }
}

/// Every private key the node reads (TLS, signing, data) is refused at start when others
/// may read or write it, as ssh refuses such keys; the message names the file and the fix.
#[test]
fn a_key_file_open_to_other_users_stops_serve_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    for key in ["node.key", "node-signing.key", "data.key"] {
        let fed = Federation::new();
        let path = fed
            .config_path("suwon")
            .parent()
            .expect("config folder")
            .join(key);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_serve_refuses(&fed, "suwon", &format!("chmod 600 {}", path.display()));
    }
}

/// A second node on a data directory a running node uses is refused at start, saying so
/// (not with sled's lock error), and the running node is undisturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_data_directory_is_refused_saying_why() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let args = serve_args(&fed.config_path("suwon"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let finished = run_to_exit(&args, fed.dir(), FAIL_FAST);
    assert_eq!(finished.status.code(), Some(78), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("another plusgate process is using the data directory"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("could not acquire lock"),
        "{}",
        finished.stderr
    );
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(
        &employment,
        &with_id(fed.example("referral"), "ref-still-served"),
    )
    .await;
}

/// A port another process holds stops `serve` with exit 78, saying the port is taken and
/// what to do (not only the operating system's error).
#[test]
fn a_taken_port_stops_serve_saying_so() {
    let fed = Federation::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let config = fed.config_path("suwon").display().to_string();
    let finished = run_to_exit(
        &["serve", "--config", &config, "--listen", &addr],
        fed.dir(),
        FAIL_FAST,
    );
    assert_eq!(finished.status.code(), Some(78), "{finished:?}");
    assert!(
        finished.stderr.contains("the port is taken"),
        "{}",
        finished.stderr
    );
    assert!(finished.stderr.contains("--listen"), "{}", finished.stderr);
}
