//! What ships: the systemd unit (`systemd-analyze verify` and its offline security
//! check, where systemd-analyze exists), the Debian package built by cargo-deb (contents,
//! metadata, maintainer script), the confinement the container image relies on (the node
//! as an unprivileged uid on a read-only system but for its data directory), and the alert
//! rules (every metric they name is on a real node's `/metrics`).
//!
//! The container image itself is not built here: this machine has no container daemon and
//! no registry to pull the base images from. The confinement test reproduces what
//! `docker run --read-only --user 65532` gives the process with a private mount namespace
//! (`unshare`) and `setpriv`, which needs root (or `sudo -n`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;

use crate::support::{
    assert_problem, consent_of, plusgate_bin, push, push_accepted, referral_between,
    register_consent, run_command_to_exit, status, with_id, Federation, Node, NodeSpec,
};

/// The repository's root.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The unit both the package and source installs use.
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/plusgate.service");

/// The alert rules.
const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/alerts.yml");

/// Where the unit expects the binary (the package's path).
const INSTALLED_BIN: &str = "/usr/bin/plusgate";

/// Highest overall exposure `systemd-analyze security` may give the unit, ×10 (its
/// `--threshold` scale): 2.0, "OK"; the unit scores 1.4.
const EXPOSURE_MAX: &str = "20";

/// The container image's user (distroless `nonroot`).
const CONTAINER_UID: &str = "65532";

const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// `systemd-analyze`, or `None` (with a note on stderr) where it is not installed.
fn systemd_analyze() -> Option<&'static str> {
    let path = "/usr/bin/systemd-analyze";
    if Path::new(path).is_file() {
        Some(path)
    } else {
        eprintln!("SKIPPED: systemd-analyze is not installed here");
        None
    }
}

/// Runs `systemd-analyze verify` and `security --offline` on the unit file `unit`, whose
/// `/usr/bin/plusgate` is replaced by the binary under test (verify checks that the
/// executables exist; nothing else of the file changes). Panics on an error or warning.
fn check_unit(analyze: &str, unit: &Path) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let text = std::fs::read_to_string(unit).expect("read unit");
    assert!(
        text.contains(INSTALLED_BIN),
        "the unit runs {INSTALLED_BIN}"
    );
    let copy = dir.path().join("plusgate.service");
    std::fs::write(&copy, text.replace(INSTALLED_BIN, plusgate_bin())).expect("write unit");

    let mut verify = Command::new(analyze);
    verify.arg("verify").arg(&copy);
    let done = run_command_to_exit(verify, COMMAND_TIMEOUT);
    // verify exits 0 on unknown keys and bad values but warns on stderr: both fail here.
    assert!(
        done.status.success() && done.stderr.trim().is_empty(),
        "systemd-analyze verify {}: {done:?}",
        unit.display()
    );

    let mut security = Command::new(analyze);
    security
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--threshold={EXPOSURE_MAX}"))
        .arg(&copy);
    let done = run_command_to_exit(security, COMMAND_TIMEOUT);
    assert!(
        done.status.success(),
        "systemd-analyze security: exposure above {EXPOSURE_MAX}/10:\n{}{}",
        done.stdout,
        done.stderr
    );
}

/// The `[Service]` settings of a unit, key → values in order.
fn service_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if let Some((key, value)) = line.split_once('=').filter(|_| in_service) {
            if !key.starts_with('#') {
                settings
                    .entry(key.trim().to_owned())
                    .or_default()
                    .push(value.trim().to_owned());
            }
        }
    }
    settings
}

#[test]
fn the_unit_verifies_and_is_confined_as_the_node_needs() {
    let text = std::fs::read_to_string(UNIT).expect("read unit");
    let settings = service_settings(&text);
    let one = |key: &str| -> &str {
        match settings.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("{key}: {other:?}"),
        }
    };
    for (key, value) in [
        ("User", "plusgate"),
        ("StateDirectory", "plusgate"),
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "true"),
        ("PrivateTmp", "true"),
        ("PrivateDevices", "true"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
        ("RestartPreventExitStatus", "78"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    // The default connections_max must be reachable: 4096 connections, 128 handshakes,
    // 32 operations connections, peers, and the store's and listeners' files.
    let nofile: u64 = one("LimitNOFILE")
        .parse()
        .expect("LimitNOFILE is one number");
    assert!(
        nofile >= 4096 + 128 + 32 + 256 + 256,
        "LimitNOFILE {nofile}"
    );
    // Everything the node needs to write is in the state directory, and the example
    // config puts the data directory there.
    let example = std::fs::read_to_string(Path::new(ROOT).join("deploy/plusgate.toml.example"))
        .expect("example config");
    assert!(example.contains("data_dir = \"/var/lib/plusgate/data\""));

    if let Some(analyze) = systemd_analyze() {
        check_unit(analyze, Path::new(UNIT));
    }
}

/// The Debian package of the binary under test, built once per test run (cargo-deb's
/// `--profile dev`: no release build in the test) into cargo's temporary folder for tests.
/// Once, because two `cargo deb` at a time would share its intermediate files.
pub(crate) fn build_deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let present = Command::new(&cargo)
            .args(["deb", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            present,
            "cargo-deb is not installed: run .ci/test, which installs it (cargo install cargo-deb --locked)"
        );
        let deb = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plusgate-under-test.deb");
        let mut command = Command::new(&cargo);
        command
            .args(["deb", "--no-build", "--profile", "dev", "--fast", "--output"])
            .arg(&deb)
            .current_dir(ROOT);
        let done = run_command_to_exit(command, Duration::from_secs(300));
        assert!(done.status.success(), "cargo deb: {done:?}");
        deb
    })
}

/// A control member of the package (`postinst`, `conffiles`, …).
fn deb_member(deb: &Path, member: &str) -> String {
    let mut command = Command::new("dpkg-deb");
    command.arg("--info").arg(deb).arg(member);
    let done = run_command_to_exit(command, COMMAND_TIMEOUT);
    assert!(done.status.success(), "dpkg-deb --info {member}: {done:?}");
    done.stdout
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let mut command = Command::new("dpkg-deb");
    command.args(args).arg(deb);
    let done = run_command_to_exit(command, COMMAND_TIMEOUT);
    assert!(done.status.success(), "dpkg-deb {args:?}: {done:?}");
    done.stdout
}

#[test]
fn the_debian_package_installs_the_binary_the_hardened_unit_and_an_example_config() {
    let out = tempfile::tempdir().expect("temporary folder");
    let deb = build_deb();

    let control = dpkg_deb(&["--field"], deb);
    for line in ["Package: plusgate", "Architecture: amd64", "Section: net"] {
        assert!(control.lines().any(|l| l == line), "{line} in\n{control}");
    }
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: ").map(str::to_owned))
        .unwrap_or_default();
    assert!(depends.contains("adduser"), "Depends: {depends}");
    assert!(depends.contains("libc6"), "Depends: {depends}");

    // path → (mode, owner) of every entry.
    let listing = dpkg_deb(&["--contents"], deb);
    let entries: BTreeMap<&str, (&str, &str)> = listing
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            Some((*fields.last()?, (*fields.first()?, *fields.get(1)?)))
        })
        .collect();
    let entry = |path: &str| {
        *entries
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"))
    };
    assert_eq!(entry("./usr/bin/plusgate"), ("-rwxr-xr-x", "0/0"));
    assert_eq!(entry("./usr/lib/systemd/system/plusgate.service").1, "0/0");
    assert_eq!(
        entry("./etc/plusgate/plusgate.toml.example").0,
        "-rw-r--r--"
    );
    entry("./usr/share/doc/plusgate/OPERATOR.md");
    entry("./usr/share/doc/plusgate/alerts.yml");
    // Never the real config: an upgrade must not touch it.
    assert!(!entries.contains_key("./etc/plusgate/plusgate.toml"));

    assert_eq!(
        deb_member(deb, "conffiles").trim(),
        "/etc/plusgate/plusgate.toml.example"
    );
    let postinst = deb_member(deb, "postinst");
    assert!(
        postinst.contains("adduser --system --group") && postinst.contains("plusgate"),
        "the postinst makes the plusgate system user:\n{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-helper enable plusgate.service"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start") && !postinst.contains("restart"),
        "neither started at install nor restarted at upgrade:\n{postinst}"
    );

    // What is inside is the unit in deploy/, and the binary runs.
    let root = out.path().join("root");
    let mut extract = Command::new("dpkg-deb");
    extract.arg("--extract").arg(deb).arg(&root);
    let done = run_command_to_exit(extract, COMMAND_TIMEOUT);
    assert!(done.status.success(), "{done:?}");
    let unit = root.join("usr/lib/systemd/system/plusgate.service");
    assert_eq!(
        std::fs::read_to_string(&unit).expect("unit in package"),
        std::fs::read_to_string(UNIT).expect("unit")
    );
    let mut version = Command::new(root.join("usr/bin/plusgate"));
    version.arg("--version");
    let done = run_command_to_exit(version, COMMAND_TIMEOUT);
    assert!(
        done.status.success() && done.stdout.starts_with("plusgate "),
        "{done:?}"
    );
    if let Some(analyze) = systemd_analyze() {
        check_unit(analyze, &unit);
    }
}

/// Runs `plusgate ARGS…` as [`CONTAINER_UID`] in a private mount namespace where every
/// mount is read-only but `data`: what the container image gets from `docker run
/// --read-only -v VOLUME:/var/lib/plusgate`. Before starting the node the script checks,
/// as root, that `conf`, `/`, `/tmp` and `/var/tmp` refuse a write (exit 97 if not).
const CONFINE: &str = r#"
set -eu
data=$1; conf=$2; uid=$3; shift 3
mount --bind "$data" "$data"
for m in $(awk '{print $5}' /proc/self/mountinfo); do
    [ "$m" = "$data" ] && continue
    mount -o remount,bind,ro "$m" 2>/dev/null || echo "confine: $m stays writable" >&2
done
for probe in "$conf" / /tmp /var/tmp; do
    if touch "$probe/.plusgate-probe" 2>/dev/null; then
        echo "confine: $probe is writable" >&2
        exit 97
    fi
done
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all -- "$@"
"#;

/// Makes `path` traversable by others if it is not (the test's temporary folders are
/// 0700; /tmp and the like are left alone).
fn open_folder(path: &Path) {
    let mode = std::fs::metadata(path).expect("stat").permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

fn chown(path: &Path, uid: &str) {
    let status = Command::new("chown")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown {}", path.display());
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `GET path` on the plain-HTTP operations listener; (status, body).
pub(crate) fn ops_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).expect("connect to the operations listener");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).expect("read answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    (status, body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_runs_unprivileged_on_a_read_only_system_writing_only_its_data_volume() {
    let fed = Federation::with_centers(&["suwon"]);
    let center_dir = fed
        .config_path("suwon")
        .parent()
        .expect("folder")
        .to_owned();
    // The volume, owned by the image's user as a named volume is, and the data directory
    // inside it, as in deploy/plusgate.toml.example.
    let volume = fed.scratch("var-lib-plusgate");
    chown(&volume, CONTAINER_UID);
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let data_dir = volume.join("data");
    fed.set_option(
        "suwon",
        "node",
        "data_dir",
        &format!("{:?}", data_dir.display().to_string()),
    );
    // The config folder as mounted from the host: readable, keys owned by the image's user.
    let mut folder = center_dir.clone();
    while folder.starts_with(std::env::temp_dir()) && folder != std::env::temp_dir() {
        open_folder(&folder);
        folder = folder.parent().expect("parent").to_owned();
    }
    for key in ["node.key", "node-signing.key", "data.key"] {
        chown(&center_dir.join(key), CONTAINER_UID);
    }

    let wrapper = fed.scratch("bin").join("confined");
    let sudo = if is_root() { "" } else { "sudo -n " };
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {sudo}unshare --mount --propagation private -- sh -c '{}' confine \"$@\"\n",
            CONFINE.replace('\'', r#"'"'"'"#)
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let spec = NodeSpec {
        args: vec![
            volume.display().to_string(),
            center_dir.display().to_string(),
            CONTAINER_UID.into(),
            plusgate_bin().into(),
            "serve".into(),
            "--config".into(),
            fed.config_path("suwon").display().to_string(),
        ],
        cwd: fed.dir().to_owned(),
        log: fed.dir().join("confined.log"),
        federation: fed.dir().to_owned(),
        log_filter: String::new(),
    };
    let mut node = Node::spawn(&harness::Plusgate::at(&wrapper), spec).unwrap_or_else(|e| {
        panic!("the confined node did not start (needs root or sudo -n for unshare): {e}")
    });
    let ops = node.ops_addr().expect("operations listener");
    assert_eq!(ops_get(ops, "/readyz").0, 200);

    // It serves and writes: a consent and a referral, durable in the volume.
    fed.register_example_consents(&node, "suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&agent, &fed.referral("ref-confined-1")).await;
    // A clean stop and a start again on the same volume.
    assert!(node.terminate().expect("stop").success(), "{}", node.log());
    node.restart();
    let ops = node.ops_addr().expect("operations listener");
    assert_eq!(ops_get(ops, "/readyz").0, 200);
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let seen = status(&agent, "ref-confined-1").await;
    assert_eq!(seen.status.as_u16(), 200, "{}", seen.text());

    // Everything it wrote is in the volume, as the image's user; nothing it tried to write
    // elsewhere failed quietly.
    let log = node.log();
    for refused in ["Read-only file system", "os error 30", "Permission denied"] {
        assert!(!log.contains(refused), "{refused} in the log:\n{log}");
    }
    let mut owners = BTreeSet::new();
    let mut stack = vec![data_dir.clone()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        owners.insert(meta.uid());
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        }
    }
    assert_eq!(
        owners,
        BTreeSet::from([65532]),
        "owners in {}",
        data_dir.display()
    );
    node.stop();
}

/// Every `plusgate_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("plusgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Whether `name` is a series of a family `# TYPE`d in `families` (name → type): the
/// family itself, a counter's `_total`, a histogram's `_bucket`, `_sum` or `_count`.
fn exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    let kind = |family: &str| families.get(family).map(String::as_str);
    kind(name).is_some()
        || name
            .strip_suffix("_total")
            .is_some_and(|f| kind(f) == Some("counter"))
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|f| kind(f) == Some("histogram"))
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_alert_rules_name_is_on_a_real_nodes_metrics() {
    let rules = std::fs::read_to_string(ALERTS).expect("read alerts.yml");
    let named = metric_names(&rules);
    assert!(named.len() >= 10, "the rules name {named:?}");
    let alerts = rules.matches("- alert:").count();
    assert_eq!(
        alerts,
        rules.matches("\n        expr:").count(),
        "an expr per alert"
    );

    // A federated node with a CRL (dev-init names one) that has signed a checkpoint (its
    // age gauge appears then), taken a push, refused one for want of consent (the
    // refusals' `reason` label), delivered one to a peer (delivery lag) and dead-lettered
    // one for a center that is down (its time to live is 5 s here). Families without a
    // series are not in /metrics at all.
    let fed = Federation::with_centers(&["suwon", "gangseo", "jeongeup"]);
    for (key, value) in [
        ("checkpoint_every", "1"),
        ("message_ttl_s", "5"),
        ("retry_initial_ms", "50"),
        ("retry_max_ms", "500"),
    ] {
        fed.set_option("suwon", "federation", key, value);
    }
    let node = fed.start("suwon");
    let _peer = fed.start("gangseo");
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&agent, &fed.referral("ref-alerts-1")).await;
    let consent = fed.example("consent")["id"]
        .as_str()
        .expect("consent id")
        .to_owned();
    let refused = referral_between(
        &fed,
        "ref-alerts-2",
        "suwon/employment",
        "suwon/finance",
        &consent,
    );
    assert_problem(
        &push(&agent, &refused).await,
        403,
        "consent-recipient-not-named",
    );
    let remote = with_id(fed.example("referral-remote"), "ref-alerts-3");
    push_accepted(&agent, &remote).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: serde_json::Value = status(&agent, "ref-alerts-3").await.json().expect("status");
        if seen["state"] == "delivered" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered to gangseo: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to_jeongeup = consent_of(
        &fed,
        "cns-alerts-j",
        "suwon/employment",
        &["jeongeup/welfare"],
    );
    register_consent(&agent, &to_jeongeup).await;
    let stranded = referral_between(
        &fed,
        "ref-alerts-4",
        "suwon/employment",
        "jeongeup/welfare",
        "cns-alerts-j",
    );
    push_accepted(&agent, &stranded).await;

    let ops = node.ops_addr().expect("operations listener");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (families, text) = loop {
        let (code, text) = ops_get(ops, "/metrics");
        assert_eq!(code, 200, "{text}");
        let families: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
            .collect();
        let missing: Vec<&String> = named.iter().filter(|n| !exported(n, &families)).collect();
        if missing.is_empty() {
            break (families, text);
        }
        assert!(
            Instant::now() < deadline,
            "alerts.yml names metrics the node does not export: {missing:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(!families.is_empty());

    // The labels the rules group and describe by are the node's.
    for label in ["peer", "agency", "reason", "status"] {
        assert!(
            rules.contains(label) && text.contains(&format!("{label}=\"")),
            "label {label}"
        );
    }
}
