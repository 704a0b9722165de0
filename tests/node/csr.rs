//! `plusgate csr`: a center joins with keys made on its own host. The request is signed by
//! the federation's CA with `openssl x509 -req`, as an authority would, the signing key's
//! public half goes into the re-signed directory, and the node started with the result is
//! that center to its peers (a referral from another center reaches it over mutual TLS,
//! with a receipt signed by the new key) and to itself (`plusgate outbox` presents its
//! certificate as a client).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;
use serde_json::json;

use crate::support::{ids_of, pull, push_accepted, run_to_exit, status, with_id, Federation};

/// Longest the referral may take to reach the new node.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Signs `csr` with the development CA of `fed` as the federation authority would: the
/// request's SANs and key usages copied, valid for 30 days.
fn authority_signs(fed: &Federation, csr: &Path, out: &Path) {
    let done = Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(csr)
        .arg("-CA")
        .arg(fed.dir().join("ca.crt"))
        .arg("-CAkey")
        .arg(fed.dir().join("ca.key"))
        .args(["-CAcreateserial", "-days", "30", "-copy_extensions", "copy"])
        .arg("-out")
        .arg(out)
        .output()
        .expect("run openssl (a test dependency, like curl in the README)");
    assert!(
        done.status.success(),
        "openssl x509 -req: {}",
        String::from_utf8_lossy(&done.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_joins_with_a_csr_signed_by_the_authority_and_is_its_center_over_mtls() {
    let fed = Federation::with_centers(&["suwon", "gangseo"]);
    fed.set_option("suwon", "federation", "retry_initial_ms", "50");
    fed.set_option("suwon", "federation", "retry_max_ms", "1000");
    let join = fed.scratch("join");
    let join_arg = join.display().to_string();
    let args = [
        "csr",
        "--center",
        "gangseo",
        "--out",
        &join_arg,
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
    ];

    let made = run_to_exit(&args, fed.dir(), COMMAND_TIMEOUT);
    assert!(made.status.success(), "{made:?}");
    let (key, csr, signing) = (
        join.join("node.key"),
        join.join("node.csr"),
        join.join("node-signing.key"),
    );
    assert_eq!(mode(&key), 0o600, "TLS key mode");
    assert_eq!(mode(&signing), 0o600, "signing key mode");
    assert!(
        made.stdout.contains(&csr.display().to_string()),
        "{}",
        made.stdout
    );
    assert!(made
        .stdout
        .contains("\"node\": \"urn:plusgate:node:gangseo\""));
    let public = made
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"signing_key\": \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no signing_key line in {}", made.stdout))
        .to_owned();

    // A second run refuses and leaves the key as it was.
    let key_before = std::fs::read(&key).expect("key");
    let again = run_to_exit(&args, fed.dir(), COMMAND_TIMEOUT);
    assert_eq!(again.status.code(), Some(78), "{again:?}");
    assert!(again.stderr.contains("node.key exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(&key).expect("key"), key_before);

    // The authority issues the certificate and lists the new signing key.
    let cert = join.join("node.crt");
    authority_signs(&fed, &csr, &cert);
    fed.resign_directory(|d| d["centers"]["gangseo"]["signing_key"] = json!(public));
    let quoted = |p: &Path| format!("{:?}", p.display().to_string());
    fed.set_option("gangseo", "tls", "cert", &quoted(&cert));
    fed.set_option("gangseo", "tls", "key", &quoted(&key));
    fed.set_option("gangseo", "federation", "signing_key", &quoted(&signing));
    let check = run_to_exit(
        &[
            "check-config",
            "--config",
            &fed.config_path("gangseo").display().to_string(),
        ],
        fed.dir(),
        COMMAND_TIMEOUT,
    );
    assert!(check.status.success(), "{check:?}");

    let suwon = fed.start("suwon");
    let gangseo = fed.start("gangseo");

    // Suwon's forwarder verifies gangseo's new server certificate as urn:plusgate:node:gangseo,
    // and gangseo's receipt against the new key in the directory.
    let referral = with_id(fed.example("referral-remote"), "ref-csr-0001");
    let to = referral["to"].as_str().expect("to").to_owned();
    assert!(to.starts_with("gangseo/"), "{to}");
    let sender = suwon.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&sender, &referral).await;
    let recipient = gangseo.agent(&to, HttpVersion::Http1);
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    loop {
        let ids = ids_of(&pull(&recipient, "max=10&wait=2").await);
        if ids.contains(&"ref-csr-0001".to_owned()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the referral never reached the new node; suwon's log: {}",
            suwon.log_tail(30)
        );
    }
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    loop {
        let seen: serde_json::Value = status(&sender, "ref-csr-0001")
            .await
            .json()
            .expect("status");
        if seen["state"] == "delivered" {
            assert!(
                seen["forwarding"]["receipt"]["signature"].is_string(),
                "{seen}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {seen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The node's own certificate opens its admin API: it is gangseo as a client too.
    let outbox = run_to_exit(
        &[
            "outbox",
            "list",
            "--config",
            &fed.config_path("gangseo").display().to_string(),
        ],
        fed.dir(),
        COMMAND_TIMEOUT,
    );
    assert!(outbox.status.success(), "{outbox:?}");
}
