//! An independent TLS scanner's view of a real node: `sslyze` (the Python package, pinned,
//! in the virtual environment `.ci/test` installs it into, `target/sslyze-venv`) scans a
//! node's agency port while presenting an agency's client certificate, because the node
//! ends every handshake that has none, and a scan without one would find every suite
//! "rejected" and prove nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{run_command_to_exit, Federation};

/// Where `sslyze` is: `$SSLYZE`, the virtual environment `.ci/test` installs it into, or
/// the `PATH`.
fn sslyze() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SSLYZE") {
        return Some(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sslyze-venv/bin/sslyze");
    if venv.is_file() {
        return Some(venv);
    }
    let found = Command::new("sslyze").arg("--help").output();
    found
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("sslyze"))
}

/// The result of one of sslyze's scan commands, which must have completed: a command that
/// errored says nothing about the node.
fn command<'a>(scan: &'a Value, name: &str) -> &'a Value {
    let entry = &scan[name];
    assert_eq!(
        entry["status"], "COMPLETED",
        "sslyze's {name} did not complete: {entry}"
    );
    &entry["result"]
}

/// The names of the cipher suites sslyze's `name` command saw accepted.
fn accepted(scan: &Value, name: &str) -> Vec<String> {
    command(scan, name)["accepted_cipher_suites"]
        .as_array()
        .expect("accepted_cipher_suites")
        .iter()
        .map(|s| {
            s["cipher_suite"]["name"]
                .as_str()
                .expect("name")
                .to_string()
        })
        .collect()
}

/// An AEAD bulk cipher: AES-GCM or ChaCha20-Poly1305 (rustls offers no CCM).
fn is_aead(suite: &str) -> bool {
    suite.contains("_GCM_") || suite.contains("CHACHA20_POLY1305")
}

/// sslyze, presenting Suwon's employment center's certificate, finds on a node: only TLS
/// 1.2 and 1.3; every suite ECDHE (or TLS 1.3) with an AEAD; no compression, no insecure
/// renegotiation, no early data, none of the old OpenSSL bugs; and the node's certificate
/// chains to the federation's CA. The scan must have reached the node:
/// a failed connection, or a refused client certificate (which would leave TLS 1.2 and 1.3
/// with no suite accepted), fails the test. It prints what it found (`--nocapture`).
/// Skipped, visibly, where sslyze is not installed, unless `PLUSGATE_REQUIRE_SSLYZE` is
/// set (`.ci/test` sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_tls_scan_finds_only_modern_tls() {
    let Some(sslyze) = sslyze() else {
        assert!(
            std::env::var_os("PLUSGATE_REQUIRE_SSLYZE").is_none(),
            "sslyze is not installed, and this run requires it"
        );
        eprintln!("SKIPPED: sslyze is not installed (.ci/test installs it)");
        return;
    };
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agency = fed.identity("suwon/employment");
    let out = tempfile::tempdir().expect("temp dir");
    let json = out.path().join("scan.json");
    let mut scan = Command::new(&sslyze);
    scan.arg("--cert")
        .arg(&agency.cert)
        .arg("--key")
        .arg(&agency.key)
        .arg("--certinfo_ca_file")
        .arg(fed.dir().join("ca.crt"))
        .arg("--json_out")
        .arg(&json)
        // Our own assertions below, not a Mozilla profile, decide; the profile would also
        // want a certificate from a public CA, which a federation's nodes do not have.
        // Few connections at a time (costs under a second here): a handshake that times out
        // while the rest of the suite loads both cores would read as an error.
        .args(["--mozilla_config=disable", "--quiet", "--slow_connection"])
        .args([
            "--sslv2",
            "--sslv3",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
        ])
        .args([
            "--compression",
            "--reneg",
            "--elliptic_curves",
            "--certinfo",
        ])
        .args([
            "--fallback",
            "--heartbleed",
            "--openssl_ccs",
            "--robot",
            "--ems",
        ])
        .args(["--early_data"])
        .arg(node.addr().to_string());
    let finished = run_command_to_exit(scan, Duration::from_secs(180));
    assert!(finished.status.success(), "sslyze failed: {finished:?}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("sslyze's JSON")).expect("JSON");
    let server = &report["server_scan_results"][0];
    assert_eq!(
        server["connectivity_status"], "COMPLETED",
        "sslyze did not connect to the node: {}",
        server["connectivity_error_trace"]
    );
    assert_eq!(server["scan_status"], "COMPLETED", "{server}");
    let scan = &server["scan_result"];

    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert_eq!(
            command(scan, old)["is_tls_version_supported"],
            false,
            "{old}"
        );
        assert_eq!(accepted(scan, old), Vec::<String>::new(), "{old}");
    }
    let tls12 = accepted(scan, "tls_1_2_cipher_suites");
    let tls13 = accepted(scan, "tls_1_3_cipher_suites");
    // Both versions accepting something is also the proof that the client certificate
    // was taken: without it every handshake ends and every suite reads "rejected".
    assert!(!tls12.is_empty(), "no TLS 1.2 suite accepted: {scan}");
    assert!(!tls13.is_empty(), "no TLS 1.3 suite accepted: {scan}");
    for suite in &tls12 {
        assert!(
            suite.starts_with("TLS_ECDHE_") && is_aead(suite),
            "TLS 1.2 suite {suite} is not ECDHE with an AEAD"
        );
    }
    for suite in &tls13 {
        assert!(is_aead(suite), "TLS 1.3 suite {suite} is not an AEAD");
    }
    for (name, key) in [
        ("tls_1_2_cipher_suites", "TLS 1.2"),
        ("tls_1_3_cipher_suites", "TLS 1.3"),
    ] {
        for suite in command(scan, name)["accepted_cipher_suites"]
            .as_array()
            .expect("suites")
        {
            assert_eq!(
                suite["ephemeral_key"]["type_name"], "ECDH",
                "{key}: {suite}"
            );
        }
    }

    assert_eq!(
        command(scan, "tls_compression")["supports_compression"],
        false
    );
    let reneg = command(scan, "session_renegotiation");
    assert_eq!(
        reneg["is_vulnerable_to_client_renegotiation_dos"], false,
        "{reneg}"
    );
    assert_eq!(
        command(scan, "tls_1_3_early_data")["supports_early_data"],
        false
    );
    assert_eq!(
        command(scan, "heartbleed")["is_vulnerable_to_heartbleed"],
        false
    );
    assert_eq!(
        command(scan, "openssl_ccs_injection")["is_vulnerable_to_ccs_injection"],
        false
    );
    let robot = command(scan, "robot")["robot_result"]
        .as_str()
        .unwrap_or("");
    assert!(robot.starts_with("NOT_VULNERABLE"), "ROBOT: {robot}");
    let ems = command(scan, "tls_extended_master_secret")["supports_ems_extension"].clone();
    let fallback = command(scan, "tls_fallback_scsv")["supports_fallback_scsv"].clone();

    let curves = command(scan, "elliptic_curves");
    let supported: Vec<&str> = curves["supported_curves"]
        .as_array()
        .expect("curves")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert!(!supported.is_empty(), "no elliptic curve: {curves}");

    let certinfo = command(scan, "certificate_info");
    let deployment = &certinfo["certificate_deployments"][0];
    let leaf = &deployment["received_certificate_chain"][0];
    // The federation's CA is the one trust store that matters; the public ones cannot know it.
    let federation_ca = deployment["path_validation_results"]
        .as_array()
        .expect("path validation")
        .iter()
        .find(|r| {
            r["trust_store"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("ca.crt"))
        })
        .expect("a result for the federation's CA");
    assert!(
        federation_ca["was_validation_successful"] == true,
        "the node's certificate does not chain to the federation's CA: {federation_ca}"
    );
    assert_eq!(deployment["verified_chain_has_sha1_signature"], false);

    eprintln!("sslyze {} against {}:", sslyze.display(), node.addr());
    eprintln!("  TLS 1.2 accepted: {}", tls12.join(", "));
    eprintln!("  TLS 1.3 accepted: {}", tls13.join(", "));
    eprintln!("  SSL 2.0, SSL 3.0, TLS 1.0, TLS 1.1: rejected");
    eprintln!("  curves: {}", supported.join(", "));
    eprintln!(
        "  compression: no; client renegotiation: refused (secure renegotiation \
         extension: {}); early data: no; heartbleed, CCS injection: no; ROBOT: {robot}; \
         extended master secret: {ems}; fallback SCSV: {fallback}",
        reneg["supports_secure_renegotiation"]
    );
    eprintln!(
        "  certificate: {} (IP {}; {} {}), signed {}, valid {} .. {}, chains to the \
         federation CA",
        leaf["subject"]["rfc4514_string"],
        leaf["subject_alternative_name"]["ip_addresses"],
        leaf["public_key"]["algorithm"],
        leaf["public_key"]["ec_curve_name"],
        leaf["signature_algorithm_oid"]["name"],
        leaf["not_valid_before"],
        leaf["not_valid_after"],
    );
}
