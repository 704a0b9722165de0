//! A development federation (`plusgate dev-init`) in a temporary folder: its certificates,
//! examples, config and directory edits, and starting its nodes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use plusgate::dev::devinit::{self, DevInitArgs};
use plusgate::dev::manifest::{LoadedManifest, Manifest};
use plusgate::dev::pki::{self, CertificateAuthority, KeyPurpose, Role, Validity};
use plusgate::node::client::{client_config, Agent, HttpVersion};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::api::{register_consent, with_id, REQUEST_TIMEOUT};
use crate::error::{client, io, Error};
use crate::node::{Node, NodeSpec};
use crate::ports::free_port_range;
use crate::process::Plusgate;

/// A development federation in a temporary folder that is deleted when the federation is
/// dropped (unless [`Federation::set_keep`]). Nodes started from it must be dropped first,
/// which declaration order gives for free (`let fed = …; let node = fed.start(…);`).
pub struct Federation {
    dir: TempDir,
    manifest: LoadedManifest,
    plusgate: Plusgate,
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
    /// Writes a federation of `centers` (in that order) whose nodes run `plusgate` and
    /// listen on free loopback ports (the signed directory names each node's address, so
    /// nodes listen where their config says).
    pub fn create(plusgate: Plusgate, centers: &[&str]) -> Result<Federation, Error> {
        let dir = tempfile::tempdir().map_err(io("creating a temporary folder"))?;
        Federation::create_at(dir, plusgate, centers)
    }

    /// [`Federation::create`] in a new temporary folder inside `parent` (e.g. on a file
    /// system with room for a large store).
    pub fn create_in(
        parent: &Path,
        plusgate: Plusgate,
        centers: &[&str],
    ) -> Result<Federation, Error> {
        let dir = tempfile::tempdir_in(parent).map_err(io(format!(
            "creating a temporary folder in {}",
            parent.display()
        )))?;
        Federation::create_at(dir, plusgate, centers)
    }

    fn create_at(dir: TempDir, plusgate: Plusgate, centers: &[&str]) -> Result<Federation, Error> {
        let count = u16::try_from(centers.len()).unwrap_or(u16::MAX);
        let args = DevInitArgs {
            out: dir.path().join("fed"),
            centers: centers.iter().map(|c| (*c).to_owned()).collect(),
            base_port: free_port_range(count)?,
        };
        let manifest = devinit::run(&args)?;
        let federation = Federation {
            dir,
            manifest,
            plusgate,
        };
        for center in centers {
            // The tests' and the bench's clients open a fresh connection per request
            // (`Agent::request`), hundreds a second from 127.0.0.1, which stands for many
            // agency systems at once: the per-address handshake rate would turn them away.
            // Where the rate is what is tested or measured (tests/node/limits.rs, the hostile
            // clients), it is set again.
            federation.set_option(center, "limits", "handshakes_per_address_per_s", "0");
        }
        Ok(federation)
    }

    /// Writes a two-center federation (`suwon`, then `gangseo`): enough for a local
    /// recipient, a recipient at another center and a certificate of another center.
    // Not `Default`: making one writes a federation to disk and takes ports.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Federation {
        Federation::with_centers(&["suwon", "gangseo"])
    }

    /// [`Federation::create`] with the `plusgate` of this target dir
    /// ([`Plusgate::in_target_dir`]); panics if that fails.
    pub fn with_centers(centers: &[&str]) -> Federation {
        Plusgate::in_target_dir()
            .and_then(|plusgate| Federation::create(plusgate, centers))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Keeps the folder when the federation is dropped (`false`, the default: deletes it).
    pub fn set_keep(&mut self, keep: bool) {
        self.dir.disable_cleanup(keep);
    }

    /// The federation folder.
    pub fn dir(&self) -> &Path {
        self.manifest.dir()
    }

    /// The federation's manifest.
    pub fn manifest(&self) -> &LoadedManifest {
        &self.manifest
    }

    /// The executable its nodes run.
    pub fn plusgate(&self) -> &Plusgate {
        &self.plusgate
    }

    /// A scratch folder next to the federation, for files of the caller's own.
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
    /// section does not have it yet, and the section if the config has none (`value` is
    /// TOML, e.g. `"2000"` or `"\"x\""`).
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
            if !done {
                out.push(String::new());
                out.push(format!("[{section}]"));
                out.push(format!("{key} = {value}"));
            }
            out.join("\n") + "\n"
        });
    }

    /// From its next start, `center`'s node reads a clock `seconds` ahead of the real one
    /// (`[clock] danger_offset_s`): a test sees a consent expire or a time to live run out
    /// by starting a node later instead of waiting.
    pub fn shift_clock(&self, center: &str, seconds: i64) {
        self.set_option(center, "clock", "danger_offset_s", &seconds.to_string());
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
        identity_in(&self.manifest, id).unwrap_or_else(|e| panic!("{e}"))
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
        self.write_cert(stem, &self.ca(), role, validity)
    }

    /// Issues a currently valid certificate for `role` from the federation's CA with the
    /// extended key usages `usages` (empty: no such extension at all).
    pub fn issue_with_usages(
        &self,
        stem: &str,
        role: &Role,
        usages: Vec<KeyPurpose>,
    ) -> ClientCert {
        let issued = self
            .ca()
            .issue_with_usages(role, Validity::days_from_now(30), usages)
            .expect("issue certificate");
        let (cert, key) =
            pki::write_pem_pair(&self.scratch("certs"), stem, &issued).expect("write certificate");
        ClientCert { cert, key }
    }

    /// The federation's CA, loaded from its files.
    pub fn ca(&self) -> CertificateAuthority {
        let read =
            |name: &str| std::fs::read_to_string(self.dir().join(name)).expect("read CA file");
        CertificateAuthority::from_pem(&read("ca.crt"), &read("ca.key")).expect("CA")
    }

    /// The CA's revocation list, which every node's config names in `tls.crls`.
    pub fn crl_path(&self) -> PathBuf {
        self.dir().join(devinit::CRL_FILE)
    }

    /// Revokes `cert` in the federation's CRL, as its CA's operator would; nodes take it up
    /// on SIGHUP or at their next file poll.
    pub fn revoke(&self, cert: &ClientCert) {
        let pem = std::fs::read_to_string(&cert.cert).expect("read certificate");
        pki::revoke(
            &self.ca(),
            &self.crl_path(),
            &pem,
            Validity::days_from_now(30).not_after,
        )
        .expect("revoke");
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

    /// Starts the node of `center` with nothing registered (`filter`: `PLUSGATE_LOG`);
    /// panics, with its log, if it does not come up.
    pub fn start_bare(&self, center: &str, filter: &str) -> Node {
        self.spawn_node(center, filter)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the node of `center` with nothing registered (`filter`: `PLUSGATE_LOG`, empty
    /// for the default), logging to `<federation>/<center>.log`.
    pub fn spawn_node(&self, center: &str, filter: &str) -> Result<Node, Error> {
        let config = self.manifest.config_path(center)?;
        let spec = NodeSpec {
            args: vec![
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            cwd: self.dir().to_owned(),
            log: self.dir().join(format!("{center}.log")),
            federation: self.dir().to_owned(),
            log_filter: filter.to_owned(),
        };
        Node::spawn(&self.plusgate, spec)
    }
}

/// The certificate of agency, officer or manager `id` of the federation in `manifest`.
pub fn identity_in(manifest: &LoadedManifest, id: &str) -> Result<ClientCert, Error> {
    let (cert, key) = manifest
        .agency_identity(id)
        .or_else(|_| manifest.officer_identity(id))
        .or_else(|_| manifest.manager_identity(id))?;
    Ok(ClientCert { cert, key })
}

/// An agent for the node at `addr`, verified as `server_name` against the CA of the
/// federation in `manifest`, presenting `cert` (or no client certificate), each request
/// bounded by [`REQUEST_TIMEOUT`].
pub fn agent_to(
    manifest: &LoadedManifest,
    addr: SocketAddr,
    server_name: &str,
    cert: Option<&ClientCert>,
    version: HttpVersion,
) -> Result<Agent, Error> {
    let identity = cert.map(|c| (c.cert.as_path(), c.key.as_path()));
    let config = client_config(&manifest.ca_path(), identity, version)
        .map_err(client("making a client TLS configuration"))?;
    let mut agent = Agent::new(addr, server_name, config, version);
    agent.timeout = REQUEST_TIMEOUT;
    Ok(agent)
}

/// Loads the manifest of a federation written by someone else (e.g. `serve --dev`).
pub fn load_manifest(dir: &Path) -> LoadedManifest {
    Manifest::load(dir.join("manifest.json")).expect("manifest")
}
