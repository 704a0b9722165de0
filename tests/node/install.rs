//! The operator guide followed on a fresh system: the Debian package built from this tree is
//! installed, and deploy/OPERATOR.md's "First start" is run command for command (its
//! `plusgate csr`, the authority's `openssl x509 -req` and `plusgate directory sign`, the
//! data key, the config from the example, `check-config` as the node's user), then the node
//! starts as the unit starts it (`/usr/bin/plusgate serve` as user `plusgate`) and serves
//! agencies over mTLS.
//!
//! "Fresh" is this machine's own root file system under a throw-away overlay in a private
//! mount namespace, entered with `chroot`: the package really installs (dpkg, its postinst,
//! the `plusgate` user) and nothing of it outlives the test. That needs root (or `sudo -n`)
//! and overlayfs. systemd does not run there: the unit's `StateDirectory=` is made by hand,
//! as systemd would make it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use plusgate::node::client::HttpVersion;
use serde_json::json;

use crate::packages::{build_deb, is_root, ops_get};
use crate::support::{push_accepted, status, Federation, Node, NodeSpec};

/// Sets up the overlay and enters it: `$1` the package, `$2` the authority's folder (which
/// holds `guide.sh`, [`GUIDE`]), `$3` an empty folder to mount the layers on, the rest the
/// guide's arguments. The upper layer is a tmpfs of this mount namespace, so it goes when
/// the node's process ends.
const FRESH_ROOT: &str = r#"
set -eu
deb=$1; authority=$2; top=$3; shift 3
mount -t tmpfs fresh "$top"
mkdir "$top/upper" "$top/work" "$top/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
mount --bind /proc "$top/root/proc"
mount --bind /dev "$top/root/dev"
cp "$deb" "$top/root/root/plusgate.deb"
cp -r "$authority" "$top/root/root/authority"
exec chroot "$top/root" /bin/sh /root/authority/guide.sh "$@"
"#;

/// deploy/OPERATOR.md, "Install" and "First start", as root in the fresh root; `$1` the
/// node's port, `$2` the operations port, `$3` the authority's public key. Everything but
/// the node's own lines goes to stderr (the node's log); exit 9x names the step that failed.
const GUIDE: &str = r#"
set -eu
port=$1; ops=$2; authority_key=$3
exec 3>&1 1>&2
apt-get install -y --no-install-recommends /root/plusgate.deb || exit 90
id plusgate
[ "$(stat -c %U:%G:%a /etc/plusgate)" = root:plusgate:750 ] || exit 91

# 1. The node's keys and request.
plusgate csr --center suwon --out /etc/plusgate --dns localhost --ip 127.0.0.1 | tee /root/csr.out
chown plusgate:plusgate /etc/plusgate/node.key /etc/plusgate/node-signing.key
signing_key=$(sed -n 's/.*"signing_key": "\([0-9a-f]*\)".*/\1/p' /root/csr.out)
[ -n "$signing_key" ] || exit 92

# 2. The authority issues the certificate and signs the directory listing the new key.
cd /root/authority
openssl x509 -req -in /etc/plusgate/node.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days 365 -copy_extensions copy -out node.crt
sed "s/SIGNING_KEY_OF_SUWON/$signing_key/" directory.template.json > directory.unsigned.json
plusgate directory sign --key authority.key --in directory.unsigned.json --out directory.json

# 3. Into place, and the data key.
install -m 0644 node.crt ca.crt ca.crl directory.json /etc/plusgate/
sh -c 'umask 077; head -c 32 /dev/urandom | od -An -tx1 -v | tr -d " \n" > /etc/plusgate/data.key'
chown plusgate:plusgate /etc/plusgate/data.key
plusgate directory verify --file /etc/plusgate/directory.json --authority-key "$authority_key"

# 4. The config from the example (the ports made free ones for the test).
cp /etc/plusgate/plusgate.toml.example /etc/plusgate/plusgate.toml
sed -i -e "s/REPLACE-center-id/suwon/g" \
    -e "s/REPLACE-with-the-federation-authority-public-key-64-hex-digits/$authority_key/" \
    -e "s/0.0.0.0:7443/127.0.0.1:$port/" -e "s/127.0.0.1:9464/127.0.0.1:$ops/" \
    /etc/plusgate/plusgate.toml
if grep -n '^[^#]*REPLACE' /etc/plusgate/plusgate.toml; then exit 93; fi
install -d -o plusgate -g plusgate -m 0700 /var/lib/plusgate   # the unit's StateDirectory=
runuser -u plusgate -- plusgate check-config --config /etc/plusgate/plusgate.toml || exit 94

# An upgrade (here: the same package again) leaves the config alone.
cp /etc/plusgate/plusgate.toml /root/plusgate.toml.before
apt-get install -y --reinstall /root/plusgate.deb || exit 95
cmp /etc/plusgate/plusgate.toml /root/plusgate.toml.before || exit 96

# 5. The unit's ExecStart as its User=.
exec 1>&3
exec setpriv --reuid plusgate --regid plusgate --init-groups --no-new-privs -- \
    /usr/bin/plusgate serve --config /etc/plusgate/plusgate.toml
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_guide_installs_and_starts_a_node_on_a_fresh_system() {
    // The federation authority: the development CA and authority key.
    let fed = Federation::with_centers(&["suwon"]);
    let deb = build_deb();
    let ports = harness::free_port_range(2).unwrap_or_else(|e| panic!("{e}"));
    let (port, ops_port) = (ports, ports + 1);

    let authority = fed.scratch("authority");
    for file in ["ca.crt", "ca.key", "ca.crl", "authority.key"] {
        std::fs::copy(fed.dir().join(file), authority.join(file)).expect("copy");
    }
    // The directory the authority will sign: the center's URL on the test's port, and a
    // placeholder for the signing key `plusgate csr` is about to make.
    let mut directory = fed.directory();
    directory["version"] = json!(directory["version"].as_u64().expect("version") + 1);
    directory["centers"]["suwon"]["url"] = json!(format!("https://127.0.0.1:{port}"));
    directory["centers"]["suwon"]["signing_key"] = json!("SIGNING_KEY_OF_SUWON");
    std::fs::write(
        authority.join("directory.template.json"),
        serde_json::to_vec_pretty(&directory).expect("JSON"),
    )
    .expect("write template");
    let config = std::fs::read_to_string(fed.config_path("suwon")).expect("config");
    let authority_key = config
        .lines()
        .find_map(|l| l.strip_prefix("authority_key = \""))
        .and_then(|rest| rest.split('"').next())
        .expect("authority_key in the dev config")
        .to_owned();

    std::fs::write(authority.join("guide.sh"), GUIDE).expect("write guide");
    let bin = fed.scratch("bin");
    std::fs::write(bin.join("fresh-root.sh"), FRESH_ROOT).expect("write script");
    let wrapper = bin.join("fresh");
    let sudo = if is_root() { "" } else { "sudo -n " };
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {sudo}unshare --mount --propagation private -- sh {} \"$@\"\n",
            bin.join("fresh-root.sh").display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let spec = NodeSpec {
        args: vec![
            deb.display().to_string(),
            authority.display().to_string(),
            fed.scratch("fresh-root").display().to_string(),
            port.to_string(),
            ops_port.to_string(),
            authority_key,
        ],
        cwd: fed.dir().to_owned(),
        log: fed.dir().join("fresh.log"),
        federation: fed.dir().to_owned(),
        log_filter: String::new(),
    };
    let mut node = Node::spawn(&harness::Plusgate::at(&wrapper), spec).unwrap_or_else(|e| {
        panic!("the guide did not get the node running (needs root or sudo -n, and overlayfs): {e}")
    });
    assert_eq!(node.addr().port(), port);
    let ops = node.ops_addr().expect("operations listener");
    assert_eq!(ops.port(), ops_port);
    assert_eq!(ops_get(ops, "/readyz").0, 200, "{}", node.log());

    // Agencies of the center connect with their certificates and are served.
    fed.register_example_consents(&node, "suwon");
    let agent = node.agent("suwon/employment", HttpVersion::Http2);
    push_accepted(&agent, &fed.referral("ref-fresh-1")).await;
    let seen = status(&agent, "ref-fresh-1").await;
    assert_eq!(seen.status.as_u16(), 200, "{}", seen.text());
    let log = node.log();
    assert!(log.contains("Setting up plusgate"), "{log}");
    for step in [
        "uid=",                             // the postinst made the user
        "Send to the federation authority", // plusgate csr
        "directory.json signed: version 2", // the authority's directory sign
        "directory.json ok: version 2",     // directory verify with the pinned key
        "plusgate.toml: ok (node suwon",    // check-config as the node's user
    ] {
        assert!(log.contains(step), "{step:?} not in the log:\n{log}");
    }
    assert!(
        node.terminate_within(Duration::from_secs(20))
            .expect("stop")
            .success(),
        "{}",
        node.log_tail(20)
    );
}
