//! Unit tests of `dev::manifest`.

use super::*;

const SAMPLE: &str = r#"{
  "ca_cert": "ca.crt",
  "directory": "directory.json",
  "centers": {
    "suwon": {"config": "suwon/plusgate.toml", "url": "https://127.0.0.1:9999",
              "agencies": {"suwon/employment": {"cert": "suwon/agencies/employment.crt",
                                                "key": "suwon/agencies/employment.key"}},
              "officers": {"suwon/privacy-officer": {"cert": "suwon/officers/privacy-officer.crt",
                                                     "key": "suwon/officers/privacy-officer.key"}}},
    "gangseo": {"config": "gangseo/plusgate.toml", "url": "https://127.0.0.1:10000",
                "agencies": {}, "officers": {}}
  },
  "examples": {"referral": {"file": "examples/referral.json", "sender": "suwon/employment"}}
}"#;

fn load_sample() -> (tempfile::TempDir, LoadedManifest) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(MANIFEST_FILE);
    fs::write(&path, SAMPLE).expect("write sample");
    let loaded = Manifest::load(&path).expect("load sample");
    (dir, loaded)
}

#[test]
fn paths_resolve_against_the_manifest_folder() {
    let (dir, m) = load_sample();
    assert_eq!(m.ca_path(), dir.path().join("ca.crt"));
    assert_eq!(m.directory_path(), dir.path().join("directory.json"));
    let (cert, key) = m.agency_identity("suwon/employment").expect("agency");
    assert_eq!(cert, dir.path().join("suwon/agencies/employment.crt"));
    assert_eq!(key, dir.path().join("suwon/agencies/employment.key"));
    let (cert, _) = m
        .officer_identity("suwon/privacy-officer")
        .expect("officer");
    assert_eq!(cert, dir.path().join("suwon/officers/privacy-officer.crt"));
    let (file, sender) = m.example("referral").expect("example");
    assert_eq!(file, dir.path().join("examples/referral.json"));
    assert_eq!(sender, "suwon/employment");
    assert_eq!(
        m.url_of("suwon/employment").expect("url"),
        "https://127.0.0.1:9999"
    );
    assert_eq!(
        m.config_path("gangseo").expect("config"),
        dir.path().join("gangseo/plusgate.toml")
    );
}

#[test]
fn centers_in_order_follows_ports_not_names() {
    let (_dir, m) = load_sample();
    let ids: Vec<&str> = m.centers_in_order().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["suwon", "gangseo"]);
}

#[test]
fn unknown_ids_name_the_file() {
    let (dir, m) = load_sample();
    let err = m.agency_identity("suwon/jobs").expect_err("unknown agency");
    let text = err.to_string();
    assert!(text.contains("suwon/jobs") && text.contains(&dir.path().display().to_string()));
    assert!(m.center("busan").is_err());
    assert!(m.example("consent").is_err());
}

#[test]
fn bad_files_are_reported_with_their_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(MANIFEST_FILE);
    let err = Manifest::load(&path).expect_err("missing");
    assert!(matches!(err, ManifestError::Read { .. }));
    assert!(err.to_string().contains(MANIFEST_FILE));

    fs::write(
        &path,
        r#"{"ca_cert": "ca.crt", "directory": "directory.json", "centers": {}, "examples": {}, "extra": 1}"#,
    )
    .expect("write");
    let err = Manifest::load(&path).expect_err("unknown field");
    assert!(matches!(err, ManifestError::Parse { .. }));
    assert!(err.to_string().contains(MANIFEST_FILE));

    // A manifest from before the signed directory existed does not load.
    fs::write(
        &path,
        r#"{"ca_cert": "ca.crt", "centers": {}, "examples": {}}"#,
    )
    .expect("write");
    let err = Manifest::load(&path).expect_err("no directory");
    assert!(err.to_string().contains("directory"), "{err}");
}

#[test]
fn write_then_load_round_trips_and_lists_missing_files() {
    let (_sample_dir, sample) = load_sample();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sample.manifest().write(dir.path()).expect("write");
    assert!(!dir.path().join("manifest.json.tmp").exists());
    let loaded = Manifest::load(&path).expect("reload");
    assert_eq!(loaded.manifest(), sample.manifest());
    // Nothing but the manifest exists: every named file is missing.
    assert_eq!(loaded.missing_files().len(), 9);
    assert!(loaded
        .missing_files()
        .contains(&dir.path().join("directory.json")));
    fs::write(dir.path().join("ca.crt"), "").expect("touch");
    fs::write(dir.path().join("directory.json"), "").expect("touch");
    assert_eq!(loaded.missing_files().len(), 7);
}

#[test]
fn port_parsing() {
    assert_eq!(url_port("https://127.0.0.1:7443"), Some(7443));
    assert_eq!(url_port("https://[::1]:8443/x"), Some(8443));
    assert_eq!(url_port("https://localhost"), None);
}
