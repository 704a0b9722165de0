//! The signed directory: signature over the exact bytes, then one failing case per rule.

use serde_json::json;

use super::*;

const SUWON_KEY: &str = "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1";

fn authority() -> SigningKey {
    SigningKey::generate().expect("generate").0
}

/// A valid bare directory with two centers.
fn good() -> Value {
    json!({
        "version": 3,
        "issued_at": "2026-11-26T03:00:00Z",
        "centers": {
            "suwon": {
                "url": "https://127.0.0.1:7443",
                "node": "urn:plusgate:node:suwon",
                "signing_key": SUWON_KEY,
                "agencies": {
                    "suwon/employment": {
                        "sends": ["referral", "referral-status", "case-summary"],
                        "receives": ["referral", "referral-status", "case-summary"]
                    },
                    "suwon/welfare": {"sends": ["referral-status"], "receives": ["referral"]}
                }
            },
            "gangseo": {
                "url": "https://[::1]:7444",
                "node": "urn:plusgate:node:gangseo",
                "signing_key": "00".repeat(32),
                "agencies": {
                    "gangseo/welfare": {"sends": [], "receives": ["referral"]}
                }
            }
        }
    })
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("serialise")
}

/// Signs `directory` the way `sign` does, but without validating it first.
fn sign_unchecked(directory: &str, key: &SigningKey) -> Vec<u8> {
    let signature = hex::encode(&key.sign(directory.as_bytes()));
    format!("{{\"directory\": {directory}, \"signature\": \"{signature}\"}}").into_bytes()
}

fn suwon() -> CenterId {
    CenterId::parse("suwon").expect("center")
}

fn agency(id: &str) -> AgencyId {
    AgencyId::parse(id).expect("agency")
}

#[test]
fn sign_then_load_round_trips() {
    let key = authority();
    let signed = sign(&bytes(&good()), &key).expect("sign");
    let path = Path::new(DIRECTORY_FILE);
    let d = Directory::from_signed_file(path, &signed, &key.public_key()).expect("load");
    assert_eq!(d.version, 3);
    assert_eq!(d.issued_at, "2026-11-26T03:00:00Z");
    assert_eq!(d.centers.len(), 2);
    assert_eq!(d.agency_count(), 3);
    assert_eq!(d.digest(), sha256(&signed));
    let entry = d.center(&suwon()).expect("suwon");
    assert_eq!(entry.url, "https://127.0.0.1:7443");
    assert_eq!(entry.signing_key.to_hex(), SUWON_KEY);
    assert_eq!(
        d.center(&CenterId::parse("gangseo").expect("id"))
            .expect("gangseo")
            .url,
        "https://[::1]:7444"
    );
    assert!(d.center(&CenterId::parse("busan").expect("id")).is_none());

    let welfare = d.agency(&agency("suwon/welfare")).expect("welfare");
    assert_eq!(welfare.sends, [MessageType::ReferralStatus]);
    assert_eq!(welfare.receives, [MessageType::Referral]);
    assert!(d.agency(&agency("suwon/jobs")).is_none());
    assert!(d.agency(&agency("busan/welfare")).is_none());

    let local = d.local_agencies(&suwon());
    assert_eq!(
        local.keys().map(AgencyId::as_str).collect::<Vec<_>>(),
        ["suwon/employment", "suwon/welfare"]
    );
    assert_eq!(
        local[&agency("suwon/employment")],
        [
            MessageType::Referral,
            MessageType::ReferralStatus,
            MessageType::CaseSummary
        ]
    );
    assert!(d
        .local_agencies(&CenterId::parse("busan").expect("id"))
        .is_empty());
}

#[test]
fn the_signed_file_embeds_the_directory_byte_for_byte() {
    let key = authority();
    // Odd spacing and key order survive: the signature is over these exact bytes.
    let unsigned = format!(
        "\n  {{\"issued_at\":\"2026-11-26T03:00:00Z\",  \"version\":1,\"centers\":{}}}  \n",
        serde_json::to_string(&good()["centers"]).expect("centers")
    );
    let signed = sign(unsigned.as_bytes(), &key).expect("sign");
    let text = String::from_utf8(signed.clone()).expect("utf-8");
    assert!(text.contains(unsigned.trim()), "{text}");
    assert!(text.starts_with("{\n  \"directory\": {"), "{text}");
    assert!(text.ends_with("\"\n}\n"), "{text}");
    let signature = text
        .rsplit_once("\"signature\": \"")
        .map(|(_, s)| &s[..128])
        .expect("signature");
    assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()));
    let d = Directory::from_signed_bytes(&signed, &key.public_key()).expect("verify");
    assert_eq!(d.version, 1);
}

#[test]
fn a_flipped_byte_inside_the_directory_breaks_the_signature() {
    let key = authority();
    let signed = sign(&bytes(&good()), &key).expect("sign");
    let text = String::from_utf8(signed).expect("utf-8");
    for (from, to) in [
        ("127.0.0.1:7443", "127.0.0.1:7444"),
        ("\"version\": 3", "\"version\": 4"),
        ("\"version\": 3", "\"version\":  3"),
    ] {
        assert!(text.contains(from));
        let tampered = text.replacen(from, to, 1);
        let err = Directory::from_signed_bytes(tampered.as_bytes(), &key.public_key())
            .expect_err("tampered");
        assert!(matches!(err, DirectoryError::BadSignature), "{from}: {err}");
    }
    // Whitespace outside the directory value is not signed and may change.
    let reformatted = text.replacen("{\n  \"directory\"", "{\"directory\"", 1);
    assert_ne!(reformatted, text);
    Directory::from_signed_bytes(reformatted.as_bytes(), &key.public_key()).expect("still valid");
}

#[test]
fn a_wrong_authority_key_is_a_bad_signature_and_the_message_names_the_file() {
    let key = authority();
    let signed = sign(&bytes(&good()), &key).expect("sign");
    let other = authority().public_key();
    let err = Directory::from_signed_bytes(&signed, &other).expect_err("wrong key");
    assert!(matches!(err, DirectoryError::BadSignature));

    let path = Path::new("federation").join(DIRECTORY_FILE);
    let err = Directory::from_signed_file(&path, &signed, &other).expect_err("wrong key");
    assert!(matches!(err.cause(), DirectoryError::BadSignature));
    assert_eq!(
        err.to_string(),
        format!(
            "directory {}: signature does not verify against the federation authority key in the config",
            path.display()
        )
    );
}

#[test]
fn an_invalid_directory_is_reported_only_once_its_signature_verifies() {
    let key = authority();
    let mut bad = good();
    bad["version"] = json!(0);
    let signed = sign_unchecked(&bad.to_string(), &key);
    let err = Directory::from_signed_bytes(&signed, &authority().public_key()).expect_err("key");
    assert!(matches!(err, DirectoryError::BadSignature), "{err}");
    let err = Directory::from_signed_bytes(&signed, &key.public_key()).expect_err("version");
    assert!(matches!(err, DirectoryError::Invalid { .. }), "{err}");
}

#[test]
fn an_unsigned_file_is_refused() {
    let key = authority();
    let public = key.public_key();
    let unsigned = format!("{{\"directory\": {}}}", good());
    let err = Directory::from_signed_bytes(unsigned.as_bytes(), &public).expect_err("unsigned");
    assert!(matches!(err, DirectoryError::Unsigned), "{err}");
    assert!(err.to_string().contains("plusgate directory sign"), "{err}");
    // The bare directory object, as handed to `sign`.
    let err = Directory::from_signed_bytes(&bytes(&good()), &public).expect_err("bare");
    assert!(matches!(err, DirectoryError::Unsigned), "{err}");
}

#[test]
fn a_malformed_file_is_refused() {
    let key = authority();
    let public = key.public_key();
    let signed = String::from_utf8(sign(&bytes(&good()), &key).expect("sign")).expect("utf-8");
    let (directory_part, signature) = signed.rsplit_once("\"signature\": ").expect("split");
    for bad in [
        String::new(),
        "not json".to_owned(),
        "[]".to_owned(),
        format!("{signed} {{}}"),
        // An extra member next to the two.
        signed.replacen("{\n", "{\n  \"comment\": \"x\",\n", 1),
        // The signature twice.
        format!(
            "{directory_part}\"signature\": {}, \"signature\": {signature}",
            &signature[..130]
        ),
        // Not hex, too short.
        format!("{directory_part}\"signature\": \"{}\"\n}}", "zz".repeat(64)),
        format!("{directory_part}\"signature\": \"{}\"\n}}", "00".repeat(63)),
        // No directory.
        format!("{{\"signature\": {signature}"),
    ] {
        let err = Directory::from_signed_bytes(bad.as_bytes(), &public).expect_err(&bad);
        assert!(matches!(err, DirectoryError::Malformed(_)), "{bad}: {err}");
    }
}

/// Signs `directory` (bypassing `sign`'s own check), loads it, and expects the rule about
/// `field` to refuse it; `sign` must refuse it the same way.
fn check_invalid(directory: &Value, field: &str, needle: &str) {
    check_invalid_text(&directory.to_string(), field, needle);
}

fn check_invalid_text(directory: &str, field: &str, needle: &str) {
    let key = authority();
    let signed = sign_unchecked(directory, &key);
    let err = Directory::from_signed_bytes(&signed, &key.public_key()).expect_err(directory);
    match &err {
        DirectoryError::Invalid { field: f, problem } => {
            assert_eq!(f, field, "{err}");
            assert!(problem.contains(needle), "expected `{needle}` in: {err}");
        }
        other => panic!("expected Invalid at {field}, got: {other}"),
    }
    let err2 = sign(directory.as_bytes(), &key).expect_err("sign must refuse it too");
    assert_eq!(err2.to_string(), err.to_string());
}

#[test]
fn version_and_issued_at_rules() {
    let mut d = good();
    d["version"] = json!(0);
    check_invalid(&d, "version", "at least 1");
    d["version"] = json!(-1);
    check_invalid(&d, "version", "expected u64");
    d["version"] = json!("3");
    check_invalid(&d, "version", "expected u64");
    d["version"] = json!(1.5);
    check_invalid(&d, "version", "expected u64");

    for bad in ["2026-11-26", "2026-11-26 03:00:00", "yesterday", ""] {
        let mut d = good();
        d["issued_at"] = json!(bad);
        check_invalid(&d, "issued_at", "RFC 3339");
    }
    let mut d = good();
    d["issued_at"] = json!(20261126);
    check_invalid(&d, "issued_at", "expected a string");
    let mut d = good();
    d["issued_at"] = json!("2026-11-26T12:00:00+09:00");
    let key = authority();
    sign(&bytes(&d), &key).expect("an offset is RFC 3339 too");
}

#[test]
fn center_rules() {
    let mut d = good();
    d["centers"] = json!({});
    check_invalid(&d, "centers", "at least one center");
    let mut d = good();
    d["centers"] = json!([]);
    check_invalid(&d, "centers", "expected a map");
    let mut d = good();
    d["centers"]["suwon"] = json!("https://127.0.0.1:7443");
    check_invalid(&d, "centers.suwon", "expected struct");
    let mut d = good();
    d["centers"]["suwon"]["url"] = json!(7443);
    check_invalid(&d, "centers.suwon.url", "expected a string");
    let mut d = good();
    d["centers"]["suwon"]["agencies"] = json!(null);
    check_invalid(&d, "centers.suwon.agencies", "expected a map");

    let mut d = good();
    let suwon = d["centers"]["suwon"].clone();
    d["centers"]["Suwon"] = suwon;
    check_invalid(&d, "centers.Suwon", "not a valid name");

    for bad in [
        "http://127.0.0.1:7443",
        "https://127.0.0.1",
        "https://127.0.0.1:7443/",
        "https://127.0.0.1:7443/v1",
        "https://127.0.0.1:",
        "https://127.0.0.1:0",
        "https://127.0.0.1:74430",
        "https://127.0.0.1:7443?x=1",
        "https://[::1]",
        "https://node_suwon.example:7443",
        "https://node.suwon.example.:7443",
        "https://node.suwon.example",
        "https://[::1]:7444/",
        "https://user@127.0.0.1:7443",
        "127.0.0.1:7443",
        "",
    ] {
        let mut d = good();
        d["centers"]["suwon"]["url"] = json!(bad);
        check_invalid(&d, "centers.suwon.url", "https://host:port");
    }
    // Host names are resolved when a node connects, so the directory may name them.
    for url in [
        "https://localhost:7443",
        "https://node.suwon.example:7443",
        "https://[2001:db8::5]:7443",
    ] {
        let mut d = good();
        d["centers"]["suwon"]["url"] = json!(url);
        sign(&bytes(&d), &authority()).unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    for bad in [
        "urn:plusgate:node:gangseo",
        "urn:plusgate:agency:suwon:x",
        "suwon",
    ] {
        let mut d = good();
        d["centers"]["suwon"]["node"] = json!(bad);
        check_invalid(&d, "centers.suwon.node", "urn:plusgate:node:suwon");
    }

    for bad in ["", "00", &"zz".repeat(32), &"00".repeat(33)] {
        let mut d = good();
        d["centers"]["suwon"]["signing_key"] = json!(bad);
        check_invalid(&d, "centers.suwon.signing_key", "Ed25519 public key");
    }
}

#[test]
fn agency_rules() {
    let mut d = good();
    d["centers"]["suwon"]["agencies"]["employment"] = json!({"sends": [], "receives": []});
    check_invalid(&d, "centers.suwon.agencies.employment", "<center>/<name>");

    let mut d = good();
    d["centers"]["suwon"]["agencies"]["suwon/Jobs"] = json!({"sends": [], "receives": []});
    check_invalid(&d, "centers.suwon.agencies.suwon/Jobs", "not a valid name");

    let mut d = good();
    d["centers"]["suwon"]["agencies"]["gangseo/jobs"] = json!({"sends": [], "receives": []});
    check_invalid(
        &d,
        "centers.suwon.agencies.gangseo/jobs",
        "listed under center `suwon`",
    );

    let mut d = good();
    d["centers"]["suwon"]["agencies"]["suwon/welfare"]["sends"] = json!(["referral", "gossip"]);
    check_invalid(
        &d,
        "centers.suwon.agencies.suwon/welfare.sends[1]",
        "not a message type",
    );
    let mut d = good();
    d["centers"]["suwon"]["agencies"]["suwon/welfare"]["receives"] = json!(["Referral"]);
    check_invalid(
        &d,
        "centers.suwon.agencies.suwon/welfare.receives[0]",
        "not a message type",
    );
    let mut d = good();
    d["centers"]["suwon"]["agencies"]["suwon/welfare"]["sends"] = json!("referral");
    check_invalid(
        &d,
        "centers.suwon.agencies.suwon/welfare.sends",
        "expected a sequence",
    );
    let mut d = good();
    d["centers"]["suwon"]["agencies"]["suwon/welfare"]["receives"] =
        json!(["referral", "case-summary", "referral"]);
    check_invalid(
        &d,
        "centers.suwon.agencies.suwon/welfare.receives[2]",
        "second time",
    );
}

#[test]
fn unknown_missing_and_duplicate_members_are_refused() {
    let mut d = good();
    d["serial"] = json!(1);
    check_invalid(&d, "directory", "unknown field `serial`");
    let mut d = good();
    d["centers"]["suwon"]["name"] = json!("Suwon");
    check_invalid(&d, "centers.suwon", "unknown field `name`");
    let mut d = good();
    d["centers"]["suwon"]["agencies"]["suwon/welfare"]["may_send"] = json!([]);
    check_invalid(
        &d,
        "centers.suwon.agencies.suwon/welfare",
        "unknown field `may_send`",
    );

    let mut d = good();
    d.as_object_mut().expect("object").remove("issued_at");
    check_invalid(&d, "directory", "missing field `issued_at`");
    let mut d = good();
    d["centers"]["suwon"]
        .as_object_mut()
        .expect("object")
        .remove("signing_key");
    check_invalid(&d, "centers.suwon", "missing field `signing_key`");
    let mut d = good();
    d["centers"]["suwon"]["agencies"]["suwon/welfare"]
        .as_object_mut()
        .expect("object")
        .remove("receives");
    check_invalid(
        &d,
        "centers.suwon.agencies.suwon/welfare",
        "missing field `receives`",
    );

    // A duplicate key anywhere inside the signed bytes: serde_json alone would keep the last.
    let key = authority();
    let text = good()
        .to_string()
        .replacen("\"version\":3", "\"version\":3,\"version\":4", 1);
    assert!(text.contains("\"version\":4"));
    let err = Directory::from_signed_bytes(&sign_unchecked(&text, &key), &key.public_key())
        .expect_err("duplicate");
    assert!(matches!(err, DirectoryError::Malformed(_)), "{err}");
    assert!(err.to_string().contains("duplicate key `version`"), "{err}");
    let text = good().to_string().replacen(
        "\"suwon\":{",
        &format!("\"suwon\":{},\"suwon\":{{", good()["centers"]["suwon"]),
        1,
    );
    let err = sign(text.as_bytes(), &key).expect_err("duplicate center");
    assert!(err.to_string().contains("duplicate key `suwon`"), "{err}");
}

#[test]
fn sign_refuses_non_json_and_an_already_signed_file() {
    let key = authority();
    let err = sign(b"{\"version\": ", &key).expect_err("not JSON");
    assert!(matches!(err, DirectoryError::Malformed(_)), "{err}");
    let signed = sign(&bytes(&good()), &key).expect("sign");
    let err = sign(&signed, &key).expect_err("signed twice");
    assert!(
        err.to_string().contains("already a signed directory"),
        "{err}"
    );
}
