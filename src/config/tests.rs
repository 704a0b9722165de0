//! Config parsing and validation, one small case per rule.

use super::*;

const GOOD: &str = r#"
[node]
id = "suwon"
listen = "127.0.0.1:7443"
data_dir = "data"

[tls]
cert = "node.crt"
key = "node.key"
client_ca = "../ca.crt"

[[agencies]]
id = "suwon/employment"
sends = ["referral", "case-summary"]

[[officers]]
id = "suwon/privacy-officer"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/plusgate/suwon/plusgate.toml"), text)
}

fn check_err(text: &str, needle: &str) {
    let err = parse(text).expect_err("must be refused").to_string();
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

#[test]
fn a_good_file_resolves_paths_against_its_folder_and_fills_defaults() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(c.center.as_str(), "suwon");
    assert_eq!(c.data_dir, Path::new("/etc/plusgate/suwon/data"));
    assert_eq!(c.tls.client_ca, Path::new("/etc/plusgate/suwon/../ca.crt"));
    assert_eq!(c.limits.inbox_lease, Duration::from_secs(30));
    assert_eq!(c.limits.body_bytes_max, 1 << 20);
    let sends = &c.directory.agencies[&AgencyId::parse("suwon/employment").expect("id")];
    assert_eq!(
        sends,
        &vec![MessageType::Referral, MessageType::CaseSummary]
    );
    assert!(matches!(c.schemas, SchemaSource::Embedded));
}

#[test]
fn each_mistake_names_its_key() {
    check_err(&GOOD.replace("id = \"suwon\"", "id = \"Suwon\""), "node.id");
    check_err(&GOOD.replace("127.0.0.1:7443", "localhost"), "node.listen");
    check_err(
        &GOOD.replace("\"case-summary\"", "\"gossip\""),
        "agencies[0].sends[1]",
    );
    check_err(
        &GOOD.replace("suwon/employment", "gangseo/employment"),
        "agencies[0].id",
    );
    check_err(
        &GOOD.replace("suwon/privacy-officer", "privacy-officer"),
        "officers[0].id",
    );
    check_err(
        &format!("{GOOD}\n[limits]\nbody_bytes_max = 0\n"),
        "limits.body_bytes_max",
    );
    check_err(
        &format!("{GOOD}\n[limits]\nbody_bytes_max = 99999999\n"),
        "limits.body_bytes_max",
    );
    check_err(
        &format!("{GOOD}\n[limits]\ninbox_pull_max = 5000\n"),
        "limits.inbox_pull_max",
    );
    check_err(
        &format!("{GOOD}\n[[agencies]]\nid = \"suwon/employment\"\nsends = []\n"),
        "listed twice",
    );
}

#[test]
fn unknown_and_missing_keys_are_refused() {
    check_err(&GOOD.replace("data_dir", "datadir"), "datadir");
    check_err(&GOOD.replace("[tls]", "[tls]\nverify = false"), "verify");
    check_err("[node]\nid = \"x\"\n", "missing field");
}
