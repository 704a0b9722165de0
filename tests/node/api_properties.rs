//! Property tests of the API against its own document: `schemathesis` (the Python package,
//! pinned, in the virtual environment `.ci/test` installs it into,
//! `target/schemathesis-venv`) reads `/v1/openapi.json` from a real node and sends it
//! generated requests, valid and invalid, as each role that may call the operations: an
//! agency, a privacy officer, a manager, another center's node and the node's own operator.
//! Every check is on: no 5xx, every status code, content type, header and body as the
//! document says, invalid data refused and valid data accepted (except where a domain rule
//! no schema states refuses valid data, each named with its reason in [`CONFIG`]). It reads
//! the document from a byte-for-byte copy of what the node serves ([`mirror_document`]
//! says why). The seed is fixed, so a run
//! is the same run everywhere; `PLUSGATE_SCHEMATHESIS_EXAMPLES` and
//! `PLUSGATE_SCHEMATHESIS_SEED` make a longer or another one (docs/api-properties.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use plusgate::core::schema::EMBEDDED;
use plusgate::node::client::HttpVersion;
use serde_json::Value;

use crate::support::{run_command_to_exit, ClientCert, Federation, Node};

/// The seed of every run unless `PLUSGATE_SCHEMATHESIS_SEED` says otherwise.
const SEED: u64 = 20_261_130;

/// Test cases per operation and phase unless `PLUSGATE_SCHEMATHESIS_EXAMPLES` says
/// otherwise: enough to find the classes of bug below, few enough for a loaded CI machine.
const EXAMPLES: u32 = 10;

/// Where a schema-valid request may still be refused, by a rule of the domain no JSON
/// Schema can state; for these operations, and only for the statuses named, the
/// `positive_data_acceptance` check takes the refusal as an answer (its default list plus
/// the one status). Every other check stays on for them.
///
/// Every check is on here (`[checks] enabled`), not with `--checks all`: a check named on
/// the command line would override the per-operation settings below.
const CONFIG: &str = r#"
[checks]
enabled = true

# POST /v1/messages: the payload's sending agency must be the certificate's, the consent
# must be registered and cover the message, the recipient must receive the type: 422 (or
# 403/404, already accepted), documented.
[[operations]]
include-operation-id = "sendMessage"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# POST /v1/consents: the consent's collector must be the calling agency: 422, documented.
[[operations]]
include-operation-id = "registerConsent"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# POST /federation/v1/batches: every message and consent must come from an agency of the
# sending center: 400 for the batch, documented. And the one check off for one operation:
# the messages and consents of a batch are checked one by one, and an invalid one is
# refused alone, with its reason, in the 200 answer (documented: `BatchItemResult.refused`),
# so a batch with an invalid message in it is rightly not refused whole; its shape (the
# members, checkpoints, evidence) is still refused with 400, which the other checks see.
[[operations]]
include-operation-id = "receiveBatch"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
checks.negative_data_rejection.enabled = false

# The reports and statistics: `to` must not be before `from`, and a statistics range must
# fit 400 periods of `by`: rules between two parameters, 400, documented.
[[operations]]
include-operation-id-regex = "^(privacyConsents|privacyRefusals|privacyWithdrawals|getStats|federationStats)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
"#;

/// Where `schemathesis` is: `$SCHEMATHESIS`, the virtual environment `.ci/test` installs it
/// into, or the `PATH`.
fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis-venv/bin/schemathesis");
    if venv.is_file() {
        return Some(venv);
    }
    let found = Command::new("schemathesis").arg("--version").output();
    found
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("schemathesis"))
}

/// A number from the environment variable `name`, or `default`.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text} is not a number")),
        Err(_) => default,
    }
}

/// One caller and the operations it may call.
struct Role {
    /// What the report calls it.
    name: &'static str,
    /// The client certificate it presents.
    cert: ClientCert,
    /// The paths of its operations (schemathesis' `--include-path-regex`).
    paths: &'static str,
    /// How many operations that is: fewer tested means the run missed some.
    operations: u64,
}

/// What one run found, from schemathesis' JSON report.
struct Run {
    role: &'static str,
    report: Value,
    output: String,
}

/// The document `node` serves and every schema file it serves next to it, byte for byte,
/// in `dir` as `v1/openapi.json` and `v1/schemas/<file>`; returns the document's path.
///
/// Schemathesis reads the document from a file, not from the node, because it fetches the
/// schema files the document's `$ref`s name with a plain HTTP client of its own, without
/// the client certificate and CA it uses for everything else, and the node ends every
/// handshake without a certificate. Relative `$ref`s resolve the same way from the copy.
async fn mirror_document(node: &Node, dir: &Path) -> PathBuf {
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let schemas = dir.join("v1/schemas");
    std::fs::create_dir_all(&schemas).expect("mirror folder");
    let mut files = vec![("/v1/openapi.json".to_owned(), dir.join("v1/openapi.json"))];
    files.extend(
        EMBEDDED
            .iter()
            .map(|(f, _)| (format!("/v1/schemas/{f}"), schemas.join(f))),
    );
    for (path, file) in &files {
        let response = agent.get(path).await.expect("response");
        assert_eq!(response.status.as_u16(), 200, "GET {path}");
        std::fs::write(file, &response.body).expect("write mirrored file");
    }
    let served = std::fs::read(&files[0].1).expect("mirrored document");
    assert!(
        served == plusgate::node::api::OPENAPI.as_bytes(),
        "the node serves another document than docs/openapi.json"
    );
    files.swap_remove(0).1
}

/// Runs schemathesis against `node` as `role`, on the copy of its document at `doc`, with
/// every check and both kinds of data, and returns its report. Its files (JSON report,
/// JUnit) go to `out/<role>/`.
fn run(tool: &Path, fed: &Federation, node: &Node, doc: &Path, role: &Role, out: &Path) -> Run {
    let dir = out.join(role.name);
    std::fs::create_dir_all(&dir).expect("report folder");
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG).expect("write schemathesis config");
    let base = format!("https://{}", node.addr());
    let mut command = Command::new(tool);
    // The report folder is the working directory and the config is named, so nothing of
    // the repository's or of a caller's is read, and nothing is written outside.
    command
        .current_dir(&dir)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(doc)
        .args(["--url", &base])
        .arg("--request-cert")
        .arg(&role.cert.cert)
        .arg("--request-cert-key")
        .arg(&role.cert.key)
        .arg("--tls-verify")
        .arg(fed.dir().join("ca.crt"))
        .args(["--include-path-regex", role.paths])
        .args(["--mode", "all"])
        .args([
            "--seed",
            &setting("PLUSGATE_SCHEMATHESIS_SEED", SEED).to_string(),
        ])
        .args([
            "--max-examples",
            &setting("PLUSGATE_SCHEMATHESIS_EXAMPLES", EXAMPLES).to_string(),
        ])
        // One worker: the same requests in the same order for the same seed, and a loaded
        // machine stays usable. A slow answer is not a finding here (benchmarks measure).
        .args(["--workers", "1", "--request-timeout", "30"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--output-truncate", "false"])
        .args(["--report", "json,junit", "--report-json-path"])
        .arg(dir.join("report.json"))
        .arg("--report-junit-path")
        .arg(dir.join("junit.xml"));
    let finished = run_command_to_exit(command, Duration::from_secs(600));
    let output = format!("{}{}", finished.stdout, finished.stderr);
    let json = dir.join("report.json");
    let report: Value = std::fs::read(&json)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON report from schemathesis ({role}):\n{output}",
                role = role.name
            )
        });
    Run {
        role: role.name,
        report,
        output,
    }
}

/// Schemathesis, with a fixed seed and every check, finds nothing wrong with any operation
/// of the document, called by each role that may call it: no server error, no status code,
/// content type, header or body the document does not describe, no invalid request
/// accepted, no valid one refused. Each run must have tested all of its role's operations
/// and had no error of its own (such as a refused TLS handshake): a run that reached no
/// operation fails the test. Skipped, visibly, where schemathesis is not installed, unless
/// `PLUSGATE_REQUIRE_SCHEMATHESIS` is set (`.ci/test` sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong_with_the_api() {
    let Some(tool) = schemathesis() else {
        assert!(
            std::env::var_os("PLUSGATE_REQUIRE_SCHEMATHESIS").is_none(),
            "schemathesis is not installed, and this run requires it"
        );
        eprintln!("SKIPPED: schemathesis is not installed (.ci/test installs it)");
        return;
    };
    let fed = Federation::new();
    // A generated `wait` is any whole number of seconds, which the node shortens to this
    // bound: kept at one, an empty inbox answers each long poll within a second.
    fed.set_limit("suwon", "inbox_wait_s_max", 1);
    let node = fed.start("suwon");
    let roles = [
        Role {
            name: "agency",
            cert: fed.identity("suwon/employment"),
            paths: "^/(healthz|readyz|v1/(openapi\\.json|schemas/|messages|inbox|consents))",
            operations: 11,
        },
        Role {
            name: "officer",
            cert: fed.identity("suwon/privacy-officer"),
            paths: "^/(v1/privacy/|v1/stats$|console)",
            operations: 9,
        },
        Role {
            name: "manager",
            cert: fed.identity("suwon/manager"),
            paths: "^/v1/stats$",
            operations: 1,
        },
        Role {
            name: "federation",
            cert: fed.node_identity("gangseo"),
            paths: "^/federation/v1/",
            operations: 3,
        },
        Role {
            name: "operator",
            cert: fed.node_identity("suwon"),
            paths: "^/admin/v1/",
            operations: 5,
        },
    ];
    let out = tempfile::tempdir().expect("temp dir");
    let doc = mirror_document(&node, &out.path().join("node")).await;
    let mut failed = Vec::new();
    for role in &roles {
        let found = run(&tool, &fed, &node, &doc, role, out.path());
        let report = &found.report;
        let ops = &report["operations"];
        let cases = &report["test_cases"];
        eprintln!(
            "schemathesis as {}: {} of {} operations tested, {} test cases, {} failures, \
             {:.1} s",
            found.role,
            ops["tested"],
            ops["selected"],
            cases["generated"],
            cases["unique_failures"],
            report["running_time"].as_f64().unwrap_or(0.0),
        );
        let tested = ops["tested"].as_u64().unwrap_or(0);
        let clean = report["exit_code"] == 0
            && report["complete"] == true
            && tested >= role.operations
            && ops["errored"] == 0
            && cases["errored"] == 0
            && cases["generated"].as_u64().unwrap_or(0) > tested
            && report["failures"].as_array().is_some_and(Vec::is_empty)
            && report["errors"].as_array().is_some_and(Vec::is_empty);
        if !clean {
            failed.push(format!(
                "as {} (expected {} operations):\n{}\n{report:#}",
                found.role, role.operations, found.output
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
