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
    assert_eq!(c.limits.handshake_timeout, Duration::from_secs(3));
    assert_eq!(c.limits.handshakes_max, HANDSHAKES_MAX_DEFAULT);
    assert_eq!(
        c.limits.handshakes_per_address_per_s,
        HANDSHAKES_PER_ADDRESS_PER_S_DEFAULT
    );
    assert_eq!(
        c.limits.handshakes_per_address_burst,
        HANDSHAKES_PER_ADDRESS_BURST_DEFAULT
    );
    assert_eq!(c.limits.connections_per_identity_max, 64);
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.body_read_timeout, Duration::from_secs(15));
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.connection_age_max, Duration::from_secs(3600));
    assert_eq!(c.limits.h2_stream_window_bytes, 256 << 10);
    assert_eq!(c.limits.h2_connection_window_bytes, 1 << 20);
    assert!(c.tls.crls.is_empty(), "no CRLs unless configured");
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
    for (line, key) in [
        ("handshake_timeout_ms = 0", "limits.handshake_timeout_ms"),
        (
            "handshake_timeout_ms = 60000",
            "limits.handshake_timeout_ms",
        ),
        ("handshakes_max = 0", "limits.handshakes_max"),
        (
            "handshakes_per_address_per_s = 100001",
            "limits.handshakes_per_address_per_s",
        ),
        (
            "handshakes_per_address_burst = 0",
            "limits.handshakes_per_address_burst",
        ),
        (
            "connections_per_identity_max = 0",
            "limits.connections_per_identity_max",
        ),
        (
            "connections_max = 10\nconnections_per_identity_max = 11",
            "limits.connections_per_identity_max",
        ),
        ("idle_timeout_ms = 0", "limits.idle_timeout_ms"),
        ("body_read_timeout_ms = 0", "limits.body_read_timeout_ms"),
        (
            "header_read_timeout_ms = 0",
            "limits.header_read_timeout_ms",
        ),
        (
            "header_read_timeout_ms = 60001",
            "limits.header_read_timeout_ms",
        ),
        ("connection_age_max_s = 0", "limits.connection_age_max_s"),
        (
            "connection_age_max_s = 86401",
            "limits.connection_age_max_s",
        ),
        (
            "body_read_timeout_ms = 999999999",
            "limits.body_read_timeout_ms",
        ),
        // A budget that cannot hold one body, or a node budget below one identity's.
        (
            "body_budget_identity_bytes = 1000",
            "limits.body_budget_identity_bytes",
        ),
        (
            "body_budget_identity_bytes = 2097152
body_budget_bytes = 1048576",
            "limits.body_budget_bytes",
        ),
        (
            "ledger_queue_bytes_max = 1000",
            "limits.ledger_queue_bytes_max",
        ),
        ("inbox_max = 0", "limits.inbox_max"),
        // HTTP/2 windows: within the protocol's bounds, a connection's at least a stream's.
        (
            "h2_stream_window_bytes = 65534",
            "limits.h2_stream_window_bytes",
        ),
        (
            "h2_stream_window_bytes = 2147483648",
            "limits.h2_stream_window_bytes",
        ),
        (
            "h2_stream_window_bytes = 4294967296",
            "limits.h2_stream_window_bytes",
        ),
        (
            "h2_connection_window_bytes = 65534",
            "limits.h2_connection_window_bytes",
        ),
        (
            "h2_stream_window_bytes = 524288
h2_connection_window_bytes = 262144",
            "limits.h2_connection_window_bytes",
        ),
        (
            "h2_connection_window_bytes = 2147483648",
            "limits.h2_connection_window_bytes",
        ),
    ] {
        check_err(&format!("{GOOD}\n[limits]\n{line}\n"), key);
    }
    check_err(
        &format!("{GOOD}\n[[agencies]]\nid = \"suwon/employment\"\nsends = []\n"),
        "listed twice",
    );
}

#[test]
fn http2_windows_take_the_protocols_whole_range() {
    for (stream, connection) in [
        (65_535, 65_535),
        (65_535, 2_147_483_647),
        (2_147_483_647, 2_147_483_647),
    ] {
        let c = parse(&format!(
            "{GOOD}\n[limits]\nh2_stream_window_bytes = {stream}\nh2_connection_window_bytes = {connection}\n"
        ))
        .expect("valid");
        assert_eq!(c.limits.h2_stream_window_bytes, stream);
        assert_eq!(c.limits.h2_connection_window_bytes, connection);
    }
}

#[test]
fn crls_resolve_against_the_config_folder_and_each_mistake_names_its_entry() {
    let with = |crls: &str| {
        GOOD.replace(
            "client_ca = \"../ca.crt\"",
            &format!("client_ca = \"../ca.crt\"\ncrls = {crls}"),
        )
    };
    let c = parse(&with(r#"["../ca.crl", "/etc/pki/other.crl"]"#)).expect("valid");
    assert_eq!(
        c.tls.crls,
        [
            Path::new("/etc/plusgate/suwon/../ca.crl"),
            Path::new("/etc/pki/other.crl")
        ]
    );
    check_err(&with(r#"["ca.crl", ""]"#), "tls.crls[1]");
    check_err(&with(r#"["ca.crl", "ca.crl"]"#), "tls.crls[1]");
}

#[test]
fn unknown_and_missing_keys_are_refused() {
    check_err(&GOOD.replace("data_dir", "datadir"), "datadir");
    check_err(&GOOD.replace("[tls]", "[tls]\nverify = false"), "verify");
    check_err("[node]\nid = \"x\"\n", "missing field");
}

const AUTHORITY_KEY: &str = "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1";

/// GOOD with `[federation]` instead of `[[agencies]]`.
fn federated(extra: &str) -> String {
    let without_agencies = GOOD.replace(
        "[[agencies]]\nid = \"suwon/employment\"\nsends = [\"referral\", \"case-summary\"]\n",
        "",
    );
    assert!(!without_agencies.contains("[[agencies]]"));
    format!(
        "{without_agencies}\n[federation]\ndirectory = \"../directory.json\"\n\
         authority_key = \"{AUTHORITY_KEY}\"\nsigning_key = \"node-signing.key\"\n{extra}"
    )
}

#[test]
fn without_a_federation_section_there_is_no_federation() {
    assert!(parse(GOOD).expect("valid").federation.is_none());
}

#[test]
fn a_federation_section_resolves_paths_and_fills_defaults() {
    let c = parse(&federated("")).expect("valid");
    let f = c.federation.expect("federation");
    assert_eq!(
        f.directory,
        Path::new("/etc/plusgate/suwon/../directory.json")
    );
    assert_eq!(
        f.signing_key,
        Path::new("/etc/plusgate/suwon/node-signing.key")
    );
    assert_eq!(f.authority_key.to_hex(), AUTHORITY_KEY);
    assert_eq!(f.outbox_max, 100_000);
    assert_eq!(f.retry_initial, Duration::from_millis(200));
    assert_eq!(f.retry_max, Duration::from_secs(60));
    assert_eq!(f.message_ttl, Duration::from_secs(86_400));
    assert_eq!(f.batch_max, 1000);
    // The agencies come from the directory, which the node reads; officers stay here.
    assert!(c.directory.agencies.is_empty());
    assert_eq!(c.directory.officers.len(), 1);
}

#[test]
fn federation_values_given_explicitly_are_used() {
    let c = parse(&federated(
        "outbox_max = 5\nretry_initial_ms = 10\nretry_max_ms = 10\nmessage_ttl_s = 60\nbatch_max = 1000\n",
    ))
    .expect("valid");
    let f = c.federation.expect("federation");
    assert_eq!(f.outbox_max, 5);
    assert_eq!(f.retry_initial, Duration::from_millis(10));
    assert_eq!(f.retry_max, Duration::from_millis(10));
    assert_eq!(f.message_ttl, Duration::from_secs(60));
    assert_eq!(f.batch_max, 1000);
}

#[test]
fn each_federation_mistake_names_its_key() {
    check_err(
        &federated("").replace(AUTHORITY_KEY, &AUTHORITY_KEY[..60]),
        "federation.authority_key",
    );
    check_err(
        &federated("").replace(AUTHORITY_KEY, &AUTHORITY_KEY.replace('e', "x")),
        "federation.authority_key",
    );
    check_err(&federated("outbox_max = 0\n"), "federation.outbox_max");
    check_err(
        &federated("retry_initial_ms = 0\n"),
        "federation.retry_initial_ms",
    );
    check_err(
        &federated("retry_initial_ms = 500\nretry_max_ms = 499\n"),
        "federation.retry_max_ms",
    );
    check_err(
        &federated("message_ttl_s = 0\n"),
        "federation.message_ttl_s",
    );
    check_err(&federated("batch_max = 0\n"), "federation.batch_max");
    check_err(&federated("batch_max = 1001\n"), "federation.batch_max");
    check_err(
        &federated("checkpoint_every = 0\n"),
        "federation.checkpoint_every",
    );
    check_err(
        &federated("checkpoint_interval_s = 0\n"),
        "federation.checkpoint_interval_s",
    );
    check_err(&federated("outbox_max = -1\n"), "outbox_max");
    check_err(&federated("relay = true\n"), "relay");
    check_err(
        &federated("").replace("directory = \"../directory.json\"\n", ""),
        "missing field `directory`",
    );
    check_err(
        &federated("").replace("signing_key = \"node-signing.key\"\n", ""),
        "missing field `signing_key`",
    );
    check_err(
        &federated("").replace(&format!("authority_key = \"{AUTHORITY_KEY}\"\n"), ""),
        "missing field `authority_key`",
    );
}

#[test]
fn agencies_and_a_federation_exclude_each_other() {
    let text = format!(
        "{}\n[[agencies]]\nid = \"suwon/employment\"\nsends = [\"referral\"]\n",
        federated("")
    );
    let err = parse(&text).expect_err("both").to_string();
    assert!(
        err.contains("`agencies`") && err.contains("signed federation directory"),
        "{err}"
    );
}

#[test]
fn the_clock_runs_true_unless_shifted_on_purpose() {
    assert_eq!(
        parse(GOOD).expect("valid").clock.danger_offset,
        time::Duration::ZERO
    );
    let later = parse(&format!("{GOOD}\n[clock]\ndanger_offset_s = 8\n")).expect("valid");
    assert_eq!(later.clock.danger_offset, time::Duration::seconds(8));
    let earlier = parse(&format!("{GOOD}\n[clock]\ndanger_offset_s = -86400\n")).expect("valid");
    assert_eq!(earlier.clock.danger_offset, time::Duration::days(-1));
}

#[test]
fn each_clock_mistake_names_its_key() {
    for offset in [
        DANGER_OFFSET_S_LIMIT + 1,
        -DANGER_OFFSET_S_LIMIT - 1,
        i64::MIN,
        i64::MAX,
    ] {
        check_err(
            &format!("{GOOD}\n[clock]\ndanger_offset_s = {offset}\n"),
            "clock.danger_offset_s",
        );
    }
    check_err(
        &format!("{GOOD}\n[clock]\ndanger_offset_s = 1.5\n"),
        "danger_offset_s",
    );
    // Only the name that says what it is: no quiet way to shift a node's clock.
    check_err(&format!("{GOOD}\n[clock]\noffset_s = 8\n"), "offset_s");
}

#[test]
fn the_ops_listener_is_on_loopback_unless_configured() {
    let check = |section: &str, want: Option<&str>| {
        let config = parse(&format!("{GOOD}\n{section}")).expect("valid");
        assert_eq!(
            config.ops.listen,
            want.map(|a| a.parse().expect("address")),
            "{section}"
        );
    };
    check("", Some("127.0.0.1:9464"));
    check("[ops]", Some("127.0.0.1:9464"));
    check("[ops]\nlisten = \"127.0.0.1:0\"", Some("127.0.0.1:0"));
    check("[ops]\nlisten = \"0.0.0.0:9100\"", Some("0.0.0.0:9100"));
    check("[ops]\nlisten = \"off\"", None);
    check_err(&format!("{GOOD}\n[ops]\nlisten = \"9464\""), "ops.listen");
    check_err(&format!("{GOOD}\n[ops]\nport = 9464"), "port");
}
