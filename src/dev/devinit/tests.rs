//! Unit tests of `dev-init`: the federation it writes, its layout, configs, directory and
//! examples, refused arguments, `ensure` and the summary.

use std::collections::{BTreeMap, HashSet};
use std::fs;

use serde_json::{json, Value};

use super::summary::quote;
use super::*;
use crate::core::keys::SigningKey;
use crate::dev::manifest::KeyPairPaths;

fn centers(list: &str) -> Vec<String> {
    list.split(',').map(str::to_owned).collect()
}

fn init(dir: &Path, list: &str, base_port: u16) -> LoadedManifest {
    let args = DevInitArgs {
        out: dir.join("fed"),
        centers: centers(list),
        base_port,
    };
    run(&args).expect("dev-init")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).expect("read example");
    serde_json::from_str(&text).expect("example is JSON")
}

fn example(m: &LoadedManifest, name: &str) -> Value {
    read_json(&m.example(name).expect("example listed").0)
}

#[test]
fn default_federation_is_complete_and_follows_the_layout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), DEFAULT_CENTERS, DEFAULT_BASE_PORT);
    assert_eq!(m.missing_files(), Vec::<PathBuf>::new());
    let fed = tmp.path().join("fed");
    for file in [
        "ca.crt",
        "ca.key",
        "ca.crl",
        "suwon/node.crt",
        "suwon/node.key",
        "jeongeup/agencies/saeil.key",
        "gangseo/officers/privacy-officer.crt",
        "examples/referral-remote.json",
        "authority.key",
        "directory.json",
        "suwon/node-signing.key",
        "jeongeup/node-signing.key",
    ] {
        assert!(fed.join(file).is_file(), "{file} missing");
    }
    let manifest = m.manifest();
    assert_eq!(manifest.ca_cert, "ca.crt");
    assert_eq!(manifest.directory, "directory.json");
    assert_eq!(m.directory_path(), fed.join("directory.json"));
    assert_eq!(manifest.centers.len(), 3);
    let suwon = m.center("suwon").expect("suwon");
    assert_eq!(suwon.config, "suwon/plusgate.toml");
    assert_eq!(suwon.agencies.len(), AGENCIES.len());
    assert_eq!(
        suwon.agencies["suwon/employment"],
        KeyPairPaths {
            cert: "suwon/agencies/employment.crt".into(),
            key: "suwon/agencies/employment.key".into(),
        }
    );
    assert!(suwon.officers.contains_key("suwon/privacy-officer"));
    let names: Vec<&str> = manifest.examples.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "case-summary",
            "consent",
            "consent-reply",
            "consent-reply-remote",
            "referral",
            "referral-remote",
            "referral-status",
            "referral-status-remote"
        ]
    );
    // Whatever the manifest says is also what is on disk, after a fresh load.
    assert_eq!(
        &Manifest::load(fed.join(MANIFEST_FILE)).expect("reload"),
        &m
    );
}

#[test]
fn ports_follow_base_port_in_center_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "zeta,alpha", 9000);
    let order: Vec<(&str, &str)> = m
        .centers_in_order()
        .into_iter()
        .map(|(id, c)| (id, c.url.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("zeta", "https://127.0.0.1:9000"),
            ("alpha", "https://127.0.0.1:9001")
        ]
    );
    let config = fs::read_to_string(tmp.path().join("fed/alpha/plusgate.toml")).expect("config");
    assert!(config.contains("listen = \"127.0.0.1:9001\""));
}

#[test]
fn configs_parse_as_toml_and_name_the_federation_instead_of_agencies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "suwon,gangseo", 7443);
    for (id, center) in m.centers_in_order() {
        let text = fs::read_to_string(m.resolve(&center.config)).expect("config");
        let config: toml::Table = toml::from_str(&text).expect("config is TOML");
        assert_eq!(config["node"]["id"].as_str(), Some(id));
        assert_eq!(config["node"]["data_dir"].as_str(), Some("data"));
        assert_eq!(config["tls"]["client_ca"].as_str(), Some("../ca.crt"));
        assert_eq!(config["tls"]["cert"].as_str(), Some("node.crt"));
        assert!(
            config.get("agencies").is_none(),
            "agencies come from the directory"
        );
        let federation = &config["federation"];
        assert_eq!(federation["directory"].as_str(), Some("../directory.json"));
        assert_eq!(federation["signing_key"].as_str(), Some("node-signing.key"));
        let authority = SigningKey::load(&m.resolve(AUTHORITY_KEY_FILE)).expect("authority");
        assert_eq!(
            federation["authority_key"].as_str(),
            Some(authority.public_key().to_hex().as_str())
        );
        let officers = config["officers"].as_array().expect("officers");
        assert_eq!(
            officers[0]["id"].as_str(),
            Some(format!("{id}/privacy-officer").as_str())
        );
        // The config's relative paths point at the files dev-init wrote.
        let center_dir = m.resolve(id);
        assert!(center_dir.join("node.key").is_file());
        assert!(center_dir.join("../ca.crt").is_file());
        assert!(center_dir.join("../directory.json").is_file());
        assert!(center_dir.join("node-signing.key").is_file());
    }
}

#[test]
fn configs_load_as_node_configs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "suwon,gangseo", 7443);
    for (id, center) in m.centers_in_order() {
        let path = m.resolve(&center.config);
        let config = match crate::config::Config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("config of {id} does not load: {e}"),
        };
        assert!(config.directory.agencies.is_empty());
        assert_eq!(config.directory.officers.len(), OFFICERS.len());
        // What the node will do at start: load its key and the directory it points at.
        let federation = config.federation.expect("[federation]");
        assert_eq!(federation.batch_max, 1000);
        let key = SigningKey::load(&federation.signing_key).expect("node signing key");
        let directory = crate::core::directory::Directory::load(
            &federation.directory,
            &federation.authority_key,
        )
        .expect("directory verifies against the pinned authority key");
        let center_id = crate::core::identity::CenterId::parse(id).expect("center id");
        let entry = directory.center(&center_id).expect("center listed");
        assert_eq!(entry.signing_key, key.public_key());
        assert_eq!(entry.url, center.url);
        assert_eq!(directory.local_agencies(&center_id).len(), AGENCIES.len());
    }
}

#[test]
fn the_directory_lists_every_center_and_agency_signed_by_the_authority() {
    use crate::core::directory::Directory;
    use crate::core::identity::{AgencyId, CenterId};
    use crate::core::message::MessageType;

    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "north,south,east", 9000);
    let authority = SigningKey::load(&m.resolve(AUTHORITY_KEY_FILE)).expect("authority");
    let directory =
        Directory::load(&m.directory_path(), &authority.public_key()).expect("verifies");
    assert_eq!(directory.version, DEV_DIRECTORY_VERSION);
    assert!(
        directory.issued_at.ends_with('Z'),
        "{}",
        directory.issued_at
    );
    assert_eq!(directory.centers.len(), 3);
    let all = [
        MessageType::Referral,
        MessageType::ReferralStatus,
        MessageType::CaseSummary,
    ];
    for (id, center) in m.centers_in_order() {
        let entry = directory
            .center(&CenterId::parse(id).expect("id"))
            .expect("listed");
        assert_eq!(entry.url, center.url);
        let node_key = SigningKey::load(&m.resolve(&format!("{id}/{NODE_SIGNING_KEY_FILE}")))
            .expect("node key");
        assert_eq!(entry.signing_key, node_key.public_key());
        assert_eq!(entry.agencies.len(), AGENCIES.len());
        for agency in AGENCIES {
            let a = directory
                .agency(&AgencyId::from_parts(id, agency).expect("agency id"))
                .expect("agency listed");
            assert_eq!(a.sends, all);
            assert_eq!(a.receives, all);
        }
    }
    // Every node signs with its own key, and none with the authority's.
    let keys: HashSet<String> = directory
        .centers
        .values()
        .map(|c| c.signing_key.to_hex())
        .chain([authority.public_key().to_hex()])
        .collect();
    assert_eq!(keys.len(), 4);

    // Readable: the directory is indented under its member, and the file ends in a newline.
    let text = fs::read_to_string(m.directory_path()).expect("read");
    assert!(
        text.starts_with("{\n  \"directory\": {\n    \"version\": 1,\n    \"issued_at\": "),
        "{text}"
    );
    assert!(text.ends_with("\"\n}\n"), "{text}");
}

#[cfg(unix)]
#[test]
fn private_keys_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "suwon", 7443);
    for file in [
        AUTHORITY_KEY_FILE,
        "suwon/node-signing.key",
        "suwon/node.key",
    ] {
        let mode = fs::metadata(m.resolve(file))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn running_twice_into_the_same_folder_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init(tmp.path(), "suwon", 7443);
    let err = run(&DevInitArgs::with_defaults(tmp.path().join("fed"))).expect_err("second run");
    assert!(matches!(err, DevInitError::OutNotEmpty { .. }));
    let text = err.to_string();
    assert!(
        text.contains("not empty") && text.contains("--out") && text.contains("delete"),
        "{text}"
    );
}

#[test]
fn an_existing_empty_folder_is_used_and_a_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    run(&DevInitArgs::with_defaults(tmp.path())).expect("empty folder is fine");
    let file = tmp.path().join("ca.crt");
    let err = run(&DevInitArgs::with_defaults(&file)).expect_err("a file");
    assert!(matches!(err, DevInitError::OutNotDirectory { .. }), "{err}");
}

#[test]
fn bad_arguments_are_refused_before_writing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("fed");
    let check = |list: &[&str], base_port: u16| {
        let args = DevInitArgs {
            out: out.clone(),
            centers: list.iter().map(|s| s.to_string()).collect(),
            base_port,
        };
        run(&args).expect_err("refused")
    };
    assert!(matches!(check(&[], 7443), DevInitError::NoCenters));
    for bad in ["Suwon", "", "-x", "su won", "a/b", "수원"] {
        let err = check(&["suwon", bad], 7443);
        assert!(
            matches!(err, DevInitError::InvalidCenterName { ref name } if name == bad),
            "{err}"
        );
    }
    assert!(matches!(
        check(&["examples"], 7443),
        DevInitError::ReservedCenterName { .. }
    ));
    assert!(matches!(
        check(&["a", "b", "a"], 7443),
        DevInitError::DuplicateCenter { .. }
    ));
    assert!(matches!(check(&["a"], 0), DevInitError::PortZero));
    assert!(matches!(
        check(&["a", "b"], 65535),
        DevInitError::PortOverflow { .. }
    ));
    assert!(
        !out.exists(),
        "nothing may be written for refused arguments"
    );
    // The last port may be exactly 65535.
    assert_eq!(
        plan_centers(&centers("a,b"), 65534).expect("fits")[1].port,
        65535
    );
}

#[test]
fn examples_are_consistent_with_each_other_and_the_centers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "north,south,east", 7443);
    let senders: BTreeMap<&str, &str> = m
        .manifest()
        .examples
        .iter()
        .map(|(name, e)| (name.as_str(), e.sender.as_str()))
        .collect();
    assert_eq!(senders["referral"], "north/employment");
    assert_eq!(senders["referral-remote"], "north/employment");
    assert_eq!(senders["referral-status"], "north/welfare");
    assert_eq!(senders["referral-status-remote"], "south/welfare");
    assert_eq!(senders["case-summary"], "north/welfare");
    assert_eq!(senders["consent"], "north/employment");

    let referral = example(&m, "referral");
    assert_eq!(referral["id"], EXAMPLE_REFERRAL_ID);
    assert_eq!(referral["type"], "referral");
    assert_eq!(referral["version"], 1);
    assert_eq!(referral["to"], "north/welfare");
    assert_eq!(referral["consent_id"], EXAMPLE_CONSENT_ID);
    assert_eq!(
        referral["payload"]["referrer"]["agency"],
        "north/employment"
    );
    assert_eq!(referral["payload"]["recipient"]["agency"], "north/welfare");
    let subject = referral["subject"].as_str().expect("subject");
    assert!(subject.starts_with("ps-"));

    let remote = example(&m, "referral-remote");
    assert_eq!(remote["id"], EXAMPLE_REFERRAL_REMOTE_ID);
    assert_eq!(remote["to"], "south/welfare");
    assert_eq!(remote["payload"]["recipient"]["agency"], "south/welfare");
    assert_eq!(remote["payload"]["referrer"]["agency"], "north/employment");
    // Its answer, ready to send from the other center (no editing of examples needed).
    let answer = example(&m, "referral-status-remote");
    assert_eq!(answer["to"], "north/employment");
    assert_eq!(answer["consent_id"], EXAMPLE_REMOTE_REPLY_CONSENT_ID);
    assert_eq!(answer["payload"]["referral_id"], EXAMPLE_REFERRAL_REMOTE_ID);
    assert_eq!(answer["payload"]["changed_by"]["agency"], "south/welfare");

    let status = example(&m, "referral-status");
    assert_eq!(status["id"], EXAMPLE_STATUS_ID);
    assert_eq!(status["to"], "north/employment");
    assert_eq!(status["payload"]["referral_id"], EXAMPLE_REFERRAL_ID);
    assert_eq!(status["payload"]["changed_by"]["agency"], "north/welfare");

    let summary = example(&m, "case-summary");
    assert_eq!(summary["id"], EXAMPLE_CASE_SUMMARY_ID);
    assert_eq!(summary["to"], "north/employment");
    assert_eq!(summary["payload"]["author"]["agency"], "north/welfare");

    let consent = example(&m, "consent");
    assert_eq!(consent["id"], EXAMPLE_CONSENT_ID);
    assert_eq!(consent["subject"], subject);
    assert_eq!(
        consent["recipients"],
        json!([
            "north/welfare",
            "north/jobs",
            "south/welfare",
            "east/welfare"
        ])
    );
    assert_eq!(consent["collected_by"]["agency"], "north/employment");
    // Answers go back under consents their senders collected.
    assert_eq!(status["consent_id"], EXAMPLE_REPLY_CONSENT_ID);
    assert_eq!(summary["consent_id"], EXAMPLE_REPLY_CONSENT_ID);
    let reply = example(&m, "consent-reply");
    assert_eq!(reply["id"], EXAMPLE_REPLY_CONSENT_ID);
    assert_eq!(reply["collected_by"]["agency"], "north/welfare");
    assert_eq!(reply["recipients"], json!(["north/employment"]));
    let remote_reply = example(&m, "consent-reply-remote");
    assert_eq!(remote_reply["collected_by"]["agency"], "south/welfare");
    assert_eq!(senders["consent-reply-remote"], "south/welfare");
    assert!(
        consent.get("payload").is_none(),
        "the consent example is a bare document"
    );

    // No agency id of the centers the embedded examples were written for survives.
    for name in m.manifest().examples.keys() {
        let text = fs::read_to_string(m.example(name).expect("listed").0).expect("read");
        assert!(
            !text.contains("suwon/") && !text.contains("gangseo/"),
            "{name}: {text}"
        );
    }
}

#[test]
fn examples_validate_against_the_embedded_schemas() {
    use crate::core::message::MessageType;
    use crate::core::schema::Schemas;

    let schemas = Schemas::embedded().expect("schemas compile");
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "north,south", 7443);
    for name in m.manifest().examples.keys() {
        let body = example(&m, name);
        let result = if name.starts_with("consent") {
            schemas.validate_payload(MessageType::Consent, 1, &body)
        } else {
            schemas.validate(&body)
        };
        if let Err(violations) = result {
            panic!("example {name} is invalid: {violations:?}");
        }
    }
}

#[test]
fn one_center_has_no_remote_referral_and_a_single_recipient() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "solo", 7443);
    assert!(m.example("referral-remote").is_err());
    assert!(m.example("referral-status-remote").is_err());
    assert_eq!(
        example(&m, "consent")["recipients"],
        json!(["solo/welfare", "solo/jobs"])
    );
    assert_eq!(m.missing_files(), Vec::<PathBuf>::new());
}

#[test]
fn ensure_creates_once_then_loads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("dev");
    let first = ensure(&dir).expect("create");
    assert_eq!(first.manifest().centers.len(), 3);
    let files = [
        "ca.crt",
        "authority.key",
        "directory.json",
        "suwon/node-signing.key",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| fs::read(dir.join(f)).expect("file"))
        .collect();
    let second = ensure(&dir).expect("load");
    assert_eq!(first, second);
    for (file, contents) in files.iter().zip(&before) {
        assert_eq!(
            &fs::read(dir.join(file)).expect("file"),
            contents,
            "{file} must not be regenerated"
        );
    }
}

#[test]
fn ensure_refuses_a_federation_written_before_the_signed_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("dev");
    ensure(&dir).expect("create");
    let path = dir.join(MANIFEST_FILE);
    let mut old: Value = read_json(&path);
    old.as_object_mut().expect("object").remove("directory");
    fs::write(&path, old.to_string()).expect("write");
    let err = ensure(&dir).expect_err("old manifest");
    assert!(matches!(err, DevInitError::Outdated { .. }), "{err}");
    assert!(err.to_string().contains("delete the folder"), "{err}");
}

#[test]
fn ensure_refuses_a_folder_left_incomplete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(tmp.path().join("ca.crt"), "partial").expect("write");
    assert!(matches!(
        ensure(tmp.path()),
        Err(DevInitError::OutNotEmpty { .. })
    ));
}

#[test]
fn summary_shows_serve_and_curl_commands() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "suwon,gangseo", 7443);
    let text = summary(&m, None);
    let fed = tmp.path().join("fed");
    // The executable as it runs (not a bare `plusgate`, which may not be on the PATH).
    let exe = quote(&std::env::current_exe().expect("exe"));
    for center in ["suwon", "gangseo"] {
        let config = fed.join(center).join("plusgate.toml");
        assert!(
            text.contains(&format!("{exe} serve --config {}", quote(&config))),
            "{text}"
        );
    }
    assert!(text.contains(&format!("--cacert {}", quote(&fed.join("ca.crt")))));
    assert!(text.contains(&quote(&fed.join("suwon/agencies/employment.crt"))));
    // The consent the referral cites is registered before the referral is sent, and bodies
    // go as they are (`--data-binary` keeps the line breaks JSON errors point into).
    let consent = text
        .find(&format!(
            "--data-binary @{}",
            quote(&fed.join("examples/consent.json"))
        ))
        .expect("the consent is registered");
    let referral = text
        .find(&format!(
            "--data-binary @{}",
            quote(&fed.join("examples/referral.json"))
        ))
        .expect("the referral is sent");
    assert!(consent < referral, "{text}");
    assert!(text.contains("https://127.0.0.1:7443/v1/consents"));
    assert!(text.contains("https://127.0.0.1:7443/v1/messages"));
    assert!(text.contains(&quote(&fed.join("suwon/agencies/welfare.key"))));
    assert!(text.contains("https://127.0.0.1:7443/v1/inbox?max=10&wait=5"));
    assert!(!text.contains("--data @"), "{text}");
}

#[test]
fn summary_for_a_running_node_lists_only_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), "suwon,gangseo", 7443);
    let fed = tmp.path().join("fed");
    let text = summary(&m, Some("suwon"));
    assert!(
        text.contains("The node of suwon is starting here"),
        "{text}"
    );
    assert!(
        !text.contains(&quote(&fed.join("suwon").join("plusgate.toml"))),
        "{text}"
    );
    assert!(
        text.contains(&quote(&fed.join("gangseo").join("plusgate.toml"))),
        "{text}"
    );
    let single = tempfile::tempdir().expect("tempdir");
    let m = init(single.path(), "suwon", 7443);
    let text = summary(&m, Some("suwon"));
    assert!(
        !text.contains(" serve --config "),
        "nothing else to start: {text}"
    );
}

#[test]
fn command_line_defaults_and_comma_lists() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: DevInitArgs,
    }
    let cli = Cli::try_parse_from(["dev-init", "--out", "x"]).expect("defaults");
    assert_eq!(cli.args.centers, centers(DEFAULT_CENTERS));
    assert_eq!(cli.args.base_port, DEFAULT_BASE_PORT);
    let cli = Cli::try_parse_from([
        "dev-init",
        "--out",
        "x",
        "--centers",
        "a,b",
        "--base-port",
        "9000",
    ])
    .expect("explicit");
    assert_eq!(cli.args.centers, ["a", "b"]);
    assert_eq!(cli.args.base_port, 9000);
    assert!(
        Cli::try_parse_from(["dev-init"]).is_err(),
        "--out is required"
    );
}

#[test]
fn quoting() {
    assert_eq!(quote(Path::new("/tmp/fed/ca.crt")), "/tmp/fed/ca.crt");
    assert_eq!(
        quote(Path::new("/tmp/my fed/ca.crt")),
        "'/tmp/my fed/ca.crt'"
    );
    assert_eq!(quote(Path::new("it's")), r"'it'\''s'");
}

/// The serials the PEM CRL at `path` lists.
fn revoked_serials(path: &Path) -> Vec<Vec<u8>> {
    let text = fs::read(path).expect("read CRL");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).expect("PEM");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("CRL");
    crl.iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect()
}

#[test]
fn dev_init_writes_an_empty_crl_and_dev_revoke_adds_each_certificate_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = init(tmp.path(), DEFAULT_CENTERS, DEFAULT_BASE_PORT);
    let fed = tmp.path().join("fed");
    let crl = fed.join(CRL_FILE);
    assert_eq!(revoked_serials(&crl), Vec::<Vec<u8>>::new());
    let (cert, _) = m.agency_identity("suwon/employment").expect("agency");
    let serial =
        crate::dev::pki::serial_of(&fs::read_to_string(&cert).expect("cert")).expect("serial");
    assert_eq!(revoke(&fed, &cert).expect("revoke"), crl);
    assert_eq!(revoked_serials(&crl), std::slice::from_ref(&serial));
    revoke(&fed, &cert).expect("again");
    assert_eq!(revoked_serials(&crl), [serial]);
    let err = revoke(&fed, &fed.join("nonexistent.crt")).expect_err("no such file");
    assert!(err.to_string().contains("nonexistent.crt"), "{err}");
}
