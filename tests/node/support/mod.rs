//! The test harness: a development federation in a temporary folder, real `plusgate`
//! nodes started as child processes on ephemeral ports, mutual-TLS agents, and small
//! helpers for the API calls the tests make.
//!
//! Nothing here reaches into the node: every test talks to the real binary over real TLS,
//! stops it with real signals and restarts it on the same sled data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use plusgate::dev::devinit::{self, DevInitArgs};
use plusgate::dev::manifest::{LoadedManifest, Manifest};
use plusgate::dev::pki::{self, CertificateAuthority, Role, Validity};
use plusgate::node::client::{client_config, Agent, Connection, HttpVersion, Response};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Both HTTP versions, for tests that must hold for each.
pub const VERSIONS: [HttpVersion; 2] = [HttpVersion::Http1, HttpVersion::Http2];

/// Longest a node may take from spawn to printing its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a node may take to exit after SIGTERM (its own drain bound is 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound on every request a test agent makes; a hang fails the test instead of stalling
/// the suite.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The line `serve` prints once it is bound; tests read the address from it.
const LISTENING_PREFIX: &str = "plusgate listening on https://";

/// A development federation (`plusgate dev-init`) in a temporary folder that is deleted
/// when the federation is dropped. Nodes started from it must be dropped first, which
/// declaration order gives for free (`let fed = …; let node = fed.start(…);`).
pub struct Federation {
    dir: TempDir,
    manifest: LoadedManifest,
}

/// A client certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// The PKCS#8 key, PEM.
    pub key: PathBuf,
}

impl Federation {
    /// Writes a two-center federation (`suwon`, then `gangseo`): enough for a local
    /// recipient, a recipient at another center and a certificate of another center.
    pub fn new() -> Federation {
        Federation::with_centers(&["suwon", "gangseo"])
    }

    /// Writes a federation of `centers`, listening on free loopback ports (the signed
    /// directory names each node's address, so nodes listen where their config says).
    pub fn with_centers(centers: &[&str]) -> Federation {
        let dir = tempfile::tempdir().expect("temporary folder");
        let args = DevInitArgs {
            out: dir.path().join("fed"),
            centers: centers.iter().map(|c| (*c).to_owned()).collect(),
            base_port: free_port_range(centers.len() as u16),
        };
        let manifest = devinit::run(&args).expect("dev-init");
        Federation { dir, manifest }
    }

    /// The federation folder.
    pub fn dir(&self) -> &Path {
        self.manifest.dir()
    }

    /// A scratch folder next to the federation, for test files of our own.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("scratch folder");
        path
    }

    /// The config file of `center`.
    pub fn config_path(&self, center: &str) -> PathBuf {
        self.manifest
            .config_path(center)
            .expect("center in manifest")
    }

    /// The sled data directory of `center` (dev-init configs say `data_dir = "data"`).
    pub fn data_dir(&self, center: &str) -> PathBuf {
        self.config_path(center)
            .parent()
            .expect("config file has a folder")
            .join("data")
    }

    /// Rewrites the config file of `center` with `edit`, which must change it.
    pub fn edit_config(&self, center: &str, edit: impl FnOnce(String) -> String) {
        let path = self.config_path(center);
        let before = std::fs::read_to_string(&path).expect("read config");
        let after = edit(before.clone());
        assert_ne!(before, after, "the edit must change {}", path.display());
        std::fs::write(&path, after).expect("write config");
    }

    /// Sets `[limits] key = value` in `center`'s config (dev-init writes every key).
    pub fn set_limit(&self, center: &str, key: &str, value: u64) {
        self.edit_config(center, |text| {
            text.lines()
                .map(|line| {
                    if line.starts_with(&format!("{key} =")) {
                        format!("{key} = {value}")
                    } else {
                        line.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        });
    }

    /// Sets `key = value` in `[section]` of `center`'s config, adding the key if the
    /// section does not have it yet (`value` is TOML, e.g. `"2000"` or `"\"x\""`).
    pub fn set_option(&self, center: &str, section: &str, key: &str, value: &str) {
        self.edit_config(center, |text| {
            let mut out = Vec::new();
            let mut in_section = false;
            let mut done = false;
            for line in text.lines() {
                if line.starts_with('[') {
                    if in_section && !done {
                        out.push(format!("{key} = {value}"));
                        done = true;
                    }
                    let header = line.split('#').next().unwrap_or_default().trim();
                    in_section = header == format!("[{section}]");
                }
                if in_section && !done && line.starts_with(&format!("{key} =")) {
                    out.push(format!("{key} = {value}"));
                    done = true;
                    continue;
                }
                out.push(line.to_owned());
            }
            if in_section && !done {
                out.push(format!("{key} = {value}"));
                done = true;
            }
            assert!(done, "no [{section}] in the config of {center}");
            out.join("\n") + "\n"
        });
    }

    /// From its next start, `center`'s node reads a clock `seconds` ahead of the real one
    /// (`[clock] danger_offset_s`): a test sees a consent expire or a time to live run out
    /// by starting a node later instead of waiting.
    pub fn shift_clock(&self, center: &str, seconds: i64) {
        let seconds = seconds.to_string();
        let text = std::fs::read_to_string(self.config_path(center)).expect("read config");
        if text.lines().any(|l| l.trim() == "[clock]") {
            self.set_option(center, "clock", "danger_offset_s", &seconds);
        } else {
            self.edit_config(center, |text| {
                format!("{text}\n[clock]\ndanger_offset_s = {seconds}\n")
            });
        }
    }

    /// The signed directory file.
    pub fn directory_path(&self) -> PathBuf {
        self.manifest.directory_path()
    }

    /// The directory's content (what the signature covers).
    pub fn directory(&self) -> Value {
        let text = std::fs::read_to_string(self.directory_path()).expect("read directory");
        let signed: Value = serde_json::from_str(&text).expect("directory is JSON");
        signed["directory"].clone()
    }

    /// Changes the directory with `edit`, raises its version by one and signs it again with
    /// the federation authority's key, as the authority would for a real change.
    pub fn resign_directory(&self, edit: impl FnOnce(&mut Value)) {
        let mut directory = self.directory();
        edit(&mut directory);
        let version = directory["version"].as_u64().expect("version") + 1;
        directory["version"] = json!(version);
        let key = plusgate::core::keys::SigningKey::load(&self.dir().join("authority.key"))
            .expect("authority key");
        let unsigned = serde_json::to_vec_pretty(&directory).expect("directory JSON");
        let signed = plusgate::core::directory::sign(&unsigned, &key).expect("sign directory");
        std::fs::write(self.directory_path(), signed).expect("write directory");
    }

    /// Replaces what `agency` may send, in the signed directory.
    pub fn set_sends(&self, agency: &str, sends: &[&str]) {
        let center = agency.split('/').next().expect("agency id has a center");
        self.resign_directory(|d| {
            d["centers"][center]["agencies"][agency]["sends"] = json!(sends);
        });
    }

    /// The example body `name` (`referral`, `referral-remote`, `referral-status`,
    /// `case-summary`, `consent`) as written by dev-init.
    pub fn example(&self, name: &str) -> Value {
        let (path, _sender) = self.manifest.example(name).expect("example in manifest");
        let text = std::fs::read_to_string(path).expect("read example");
        serde_json::from_str(&text).expect("example is JSON")
    }

    /// The `referral` example (suwon/employment → suwon/welfare) with envelope id `id`.
    pub fn referral(&self, id: &str) -> Value {
        with_id(self.example("referral"), id)
    }

    /// The certificate of an agency or officer of the federation, e.g. `suwon/employment`.
    pub fn identity(&self, id: &str) -> ClientCert {
        let (cert, key) = self
            .manifest
            .agency_identity(id)
            .or_else(|_| self.manifest.officer_identity(id))
            .expect("agency or officer in manifest");
        ClientCert { cert, key }
    }

    /// The node certificate of `center`, used as a client certificate.
    pub fn node_identity(&self, center: &str) -> ClientCert {
        let dir = self.config_path(center);
        let dir = dir.parent().expect("config file has a folder");
        ClientCert {
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
        }
    }

    /// Issues a certificate for `role` from the federation's own CA, valid for `validity`,
    /// written as `<scratch>/certs/<stem>.crt|.key`.
    pub fn issue(&self, stem: &str, role: &Role, validity: Validity) -> ClientCert {
        let read =
            |name: &str| std::fs::read_to_string(self.dir().join(name)).expect("read CA file");
        let ca = CertificateAuthority::from_pem(&read("ca.crt"), &read("ca.key")).expect("CA");
        self.write_cert(stem, &ca, role, validity)
    }

    /// Issues a currently valid certificate for `role` from a CA the node does not trust.
    pub fn issue_from_other_ca(&self, stem: &str, role: &Role) -> ClientCert {
        let ca = CertificateAuthority::generate("some other CA", Validity::days_from_now(30))
            .expect("other CA");
        self.write_cert(stem, &ca, role, Validity::days_from_now(30))
    }

    fn write_cert(
        &self,
        stem: &str,
        ca: &CertificateAuthority,
        role: &Role,
        validity: Validity,
    ) -> ClientCert {
        let issued = ca.issue(role, validity).expect("issue certificate");
        let (cert, key) =
            pki::write_pem_pair(&self.scratch("certs"), stem, &issued).expect("write certificate");
        ClientCert { cert, key }
    }

    /// Starts the node of `center` on the port its config (and the directory) names, with
    /// the example consents its agencies collected registered through the API, as those
    /// agencies would before sending anything: tests about other things push the examples
    /// as they are. (A registration again after a restart is a harmless 200.)
    pub fn start(&self, center: &str) -> Node {
        self.start_logging(center, "")
    }

    /// [`Federation::start`] with `PLUSGATE_LOG` set to `filter` (empty: the default).
    pub fn start_logging(&self, center: &str, filter: &str) -> Node {
        let node = self.start_bare(center, filter);
        self.register_example_consents(&node, center);
        node
    }

    /// The example consents (`consent`, `consent-reply`, …) collected by agencies of
    /// `center`, with their collectors.
    pub fn example_consents(&self, center: &str) -> Vec<(String, Value)> {
        ["consent", "consent-reply", "consent-reply-remote"]
            .iter()
            .filter_map(|name| {
                let (_, sender) = self.manifest.example(name).ok()?;
                let sender = sender.to_owned();
                sender
                    .starts_with(&format!("{center}/"))
                    .then(|| (sender, self.example(name)))
            })
            .collect()
    }

    /// Registers [`Federation::example_consents`] of `center` at `node` (from a thread of
    /// its own, so that synchronous start-up works inside async tests too).
    pub fn register_example_consents(&self, node: &Node, center: &str) {
        for (collector, consent) in self.example_consents(center) {
            let agent = node.agent(&collector, HttpVersion::Http1);
            std::thread::scope(|s| {
                s.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(register_consent(&agent, &consent))
                })
                .join()
                .expect("registering thread")
            });
        }
    }

    /// Starts the node of `center` with nothing registered (`filter`: `PLUSGATE_LOG`).
    pub fn start_bare(&self, center: &str, filter: &str) -> Node {
        Node::start(NodeSpec {
            args: vec![
                "serve".into(),
                "--config".into(),
                self.config_path(center).display().to_string(),
            ],
            cwd: self.dir().to_owned(),
            log: self.dir().join(format!("{center}.log")),
            federation: self.dir().to_owned(),
            log_filter: filter.to_owned(),
        })
    }
}

/// How to (re)start a node process.
#[derive(Clone)]
pub struct NodeSpec {
    /// Arguments of the `plusgate` binary.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// File that collects the node's stderr (its logs), appended across restarts.
    pub log: PathBuf,
    /// The federation folder (holding `manifest.json`), for the CA and the agency
    /// certificates; read when an agent is made, so `serve --dev` may create it.
    pub federation: PathBuf,
    /// `PLUSGATE_LOG` for the node (empty: the default, info).
    pub log_filter: String,
}

/// A running `plusgate serve` child process. Dropping it kills the process.
pub struct Node {
    spec: NodeSpec,
    child: Option<Child>,
    addr: SocketAddr,
}

impl Node {
    /// Spawns the node and waits for its listening line.
    pub fn start(spec: NodeSpec) -> Node {
        let (child, addr) = spawn(&spec);
        Node {
            spec,
            child: Some(child),
            addr,
        }
    }

    /// The bound address (changes on every restart).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's log so far (its stderr), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// An agent presenting the certificate of agency or officer `id` of the federation.
    pub fn agent(&self, id: &str, version: HttpVersion) -> Agent {
        let manifest = load_manifest(&self.spec.federation);
        let (cert, key) = manifest
            .agency_identity(id)
            .or_else(|_| manifest.officer_identity(id))
            .expect("agency or officer in manifest");
        self.agent_as(Some(&ClientCert { cert, key }), version)
    }

    /// An agent presenting `cert` (or no client certificate at all).
    pub fn agent_as(&self, cert: Option<&ClientCert>, version: HttpVersion) -> Agent {
        let identity = cert.map(|c| (c.cert.as_path(), c.key.as_path()));
        let ca = load_manifest(&self.spec.federation).ca_path();
        let config = client_config(&ca, identity, version).expect("client config");
        let mut agent = Agent::new(self.addr, "localhost", config, version);
        agent.timeout = REQUEST_TIMEOUT;
        agent
    }

    /// SIGKILL: the process gets no chance to flush or tidy anything.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the node");
            child.wait().expect("reap the node");
        }
    }

    /// SIGHUP: the node reloads its federation directory.
    pub fn hangup(&self) {
        let child = self.child.as_ref().expect("node is running");
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// SIGTERM, then waits for the node to drain and exit; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let status = wait_with_timeout(&mut child, STOP_TIMEOUT);
        status.unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                self.log()
            )
        })
    }

    /// Starts the node again on the same config and data directory (SIGKILLing it first
    /// if it still runs). The address changes: make new agents afterwards.
    pub fn restart(&mut self) {
        self.kill_hard();
        let (child, addr) = spawn(&self.spec);
        self.child = Some(child);
        self.addr = addr;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A base port such that `base .. base + n` are free on loopback now. Below Linux's
/// ephemeral range (32768–60999), so no outgoing connection takes one meanwhile, and
/// spread by process id and a counter, so parallel tests do not pick the same range.
fn free_port_range(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 200) as u16 * 50;
    for _ in 0..1000 {
        let step = NEXT.fetch_add(n + 1, Ordering::Relaxed) % 10_000;
        let base = 20_000 + (offset + step) % 12_000;
        let free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {n} free consecutive ports on 127.0.0.1");
}

/// The path of the binary under test.
pub fn plusgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_plusgate")
}

fn spawn(spec: &NodeSpec) -> (Child, SocketAddr) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .expect("open node log");
    let mut command = Command::new(plusgate_bin());
    if !spec.log_filter.is_empty() {
        command.env("PLUSGATE_LOG", &spec.log_filter);
    }
    let mut child = command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn plusgate");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Keep draining stdout for the node's whole life so it can never block on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(LISTENING_PREFIX) {
                let addr = rest.split(' ').next().unwrap_or_default().to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => (child, addr.parse().expect("listening line has an address")),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            let log = std::fs::read_to_string(&spec.log).unwrap_or_default();
            panic!(
                "node {:?} did not print its listening line (exit: {status:?})\n{log}",
                spec.args
            );
        }
    }
}

/// What a `plusgate` command that ran to its end printed.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Runs `plusgate args…` in `cwd` and waits for it to exit, at most `timeout` (after which
/// the test fails).
pub fn run_to_exit(args: &[&str], cwd: &Path, timeout: Duration) -> Finished {
    let mut command = Command::new(plusgate_bin());
    command.args(args).current_dir(cwd);
    run_command_to_exit(command, timeout)
}

/// Runs `command` without standard input, collecting its output, and waits for it to
/// exit, at most `timeout` (after which it is killed and the test fails).
pub fn run_command_to_exit(mut command: Command, timeout: Duration) -> Finished {
    let out = tempfile::tempdir().expect("temporary folder");
    let file = |name: &str| std::fs::File::create(out.path().join(name)).expect("output file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let status = wait_with_timeout(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not exit within {timeout:?}")
    });
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
    Finished {
        status,
        stdout: read("stdout"),
        stderr: read("stderr"),
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `body` with its envelope `id` set.
pub fn with_id(mut body: Value, id: &str) -> Value {
    body["id"] = json!(id);
    body
}

/// Pushes `body` as `application/json`.
pub async fn push(agent: &Agent, body: &Value) -> Response {
    agent
        .post_json("/v1/messages", body)
        .await
        .expect("push gets a response")
}

/// Pushes raw bytes with a content type of our choosing.
pub async fn push_raw(agent: &Agent, body: impl Into<Bytes>, content_type: &str) -> Response {
    agent
        .request(
            Method::POST,
            "/v1/messages",
            Some((body.into(), content_type)),
        )
        .await
        .expect("push gets a response")
}

/// Pushes `body` and asserts 202; returns the response body.
pub async fn push_accepted(agent: &Agent, body: &Value) -> Value {
    let response = push(agent, body).await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
    response.json().expect("202 body is JSON")
}

/// Registers `consent` through `agent` (its collector), which must answer 201 or 200.
pub async fn register_consent(agent: &Agent, consent: &Value) {
    let response = agent
        .post_json("/v1/consents", consent)
        .await
        .expect("register consent");
    assert!(
        matches!(response.status.as_u16(), 200 | 201),
        "registering consent {}: {}",
        consent["id"],
        response.text()
    );
}

/// `GET /v1/inbox?{query}`.
pub async fn pull_response(agent: &Agent, query: &str) -> Response {
    agent
        .get(&format!("/v1/inbox?{query}"))
        .await
        .expect("pull gets a response")
}

/// `GET /v1/inbox?{query}`, asserting 200; returns the messages.
pub async fn pull(agent: &Agent, query: &str) -> Vec<Value> {
    messages_of(&pull_response(agent, query).await)
}

/// The `messages` of a 200 pull response.
pub fn messages_of(response: &Response) -> Vec<Value> {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body: Value = response.json().expect("pull body is JSON");
    body["messages"]
        .as_array()
        .expect("pull body has a messages array")
        .clone()
}

/// The ids of pulled messages, in order.
pub fn ids_of(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().expect("message has an id").to_owned())
        .collect()
}

/// `POST /v1/inbox/ack {"ids": ids}`.
pub async fn ack(agent: &Agent, ids: &[&str]) -> Response {
    agent
        .post_json("/v1/inbox/ack", &json!({ "ids": ids }))
        .await
        .expect("ack gets a response")
}

/// `GET /v1/messages/{id}`.
pub async fn status(agent: &Agent, id: &str) -> Response {
    agent
        .get(&format!("/v1/messages/{id}"))
        .await
        .expect("status gets a response")
}

/// Pulls (max 100) and acknowledges until the inbox is empty; returns every id delivered,
/// in delivery order, duplicates included (so callers can check there are none).
pub async fn drain_inbox(agent: &Agent) -> Vec<String> {
    drain_inbox_by(agent, 100).await
}

/// [`drain_inbox`], pulling at most `max` messages at a time.
pub async fn drain_inbox_by(agent: &Agent, max: usize) -> Vec<String> {
    let mut delivered = Vec::new();
    // Bounded: each round acknowledges at least one message or ends the loop.
    for _ in 0..100_000 {
        let ids = ids_of(&pull(agent, &format!("max={max}")).await);
        if ids.is_empty() {
            return delivered;
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let response = ack(agent, &refs).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        delivered.extend(ids);
    }
    panic!("the inbox never ran empty");
}

/// Pushes the `referral` example once for each id, `streams` at a time over one HTTP/2
/// connection, asserting 202 for each.
pub async fn push_referrals(fed: &Federation, node: &Node, ids: &[String], streams: usize) {
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    let conn = agent.connect().await.expect("connect");
    let template = fed.example("referral");
    let mut tasks = Vec::new();
    for chunk in ids.chunks(ids.len().div_ceil(streams).max(1)) {
        let mut conn: Connection = conn.try_clone().expect("HTTP/2 connections clone");
        let bodies: Vec<Value> = chunk
            .iter()
            .map(|id| with_id(template.clone(), id))
            .collect();
        tasks.push(tokio::spawn(async move {
            for body in bodies {
                let bytes = Bytes::from(body.to_string());
                let response = conn
                    .send(
                        Method::POST,
                        "/v1/messages",
                        Some((bytes, "application/json")),
                    )
                    .await
                    .expect("push gets a response");
                assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
            }
        }));
    }
    for task in tasks {
        task.await.expect("push task");
    }
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

/// The JSON pointers of a 422 problem's violations.
pub fn violation_pointers(problem: &Value) -> Vec<String> {
    problem["violations"]
        .as_array()
        .expect("a 422 lists its violations")
        .iter()
        .map(|v| v["pointer"].as_str().expect("violation pointer").to_owned())
        .collect()
}

/// Loads the manifest of a federation written by someone else (e.g. `serve --dev`).
pub fn load_manifest(dir: &Path) -> LoadedManifest {
    Manifest::load(dir.join("manifest.json")).expect("manifest")
}
