//! Schema fixtures as the specification: every example under `schemas/examples/` is valid,
//! every case under `schemas/examples/invalid/` fails at exactly the pointers it lists.

use std::path::Path;

use serde_json::Value;

use super::*;

fn schemas() -> Schemas {
    Schemas::embedded().expect("embedded schemas compile")
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn examples_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples"))
}

#[test]
fn embedded_list_matches_the_schemas_folder() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"));
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("schemas dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.ends_with(".json").then_some(name)
        })
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| (*n).to_owned()).collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "add new schema files to schema::EMBEDDED"
    );
}

#[test]
fn every_example_is_valid() {
    let s = schemas();
    s.validate(&read(&examples_dir().join("envelope.json")))
        .expect("envelope example valid");
    for ty in MessageType::ALL {
        let doc = read(&examples_dir().join(format!("{ty}.json")));
        if let Err(v) = s.validate_payload(ty, 1, &doc) {
            panic!("example {ty}.json is invalid: {v:#?}");
        }
    }
}

#[test]
fn every_invalid_case_fails_where_it_says() {
    let s = schemas();
    let mut n = 0;
    for entry in std::fs::read_dir(examples_dir().join("invalid")).expect("invalid dir") {
        let path = entry.expect("entry").path();
        let case = read(&path);
        let schema = case["schema"].as_str().expect("case names its schema");
        let instance = &case["instance"];
        let result = if schema == "envelope.v1.json" {
            s.validate(instance)
        } else {
            let (ty, version) = payload_file(schema).expect("payload schema name");
            s.validate_payload(ty, version, instance)
        };
        let violations = result.expect_err(&format!("{} must be invalid", path.display()));
        let got: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        for want in case["pointers"].as_array().expect("pointers") {
            let want = want.as_str().expect("pointer string");
            assert!(
                got.contains(&want),
                "{}: expected a violation at {want}, got {got:?}",
                path.display()
            );
        }
        n += 1;
    }
    assert!(n >= 8, "only {n} invalid cases");
}

#[test]
fn a_broken_schema_is_named() {
    let mut files: Vec<(String, String)> = EMBEDDED
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    files[2].1 = files[2].1.replacen('{', "{ \"maxProperties\": -1, ", 1);
    let err = Schemas::compile(files).expect_err("broken schema");
    assert!(err.to_string().contains(EMBEDDED[2].0), "{err}");
}

#[test]
fn a_dangling_ref_is_named() {
    let mut files: Vec<(String, String)> = EMBEDDED
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    let i = files
        .iter()
        .position(|(n, _)| n == "referral.v1.json")
        .expect("referral");
    files[i].1 = files[i].1.replacen(
        '{',
        "{ \"$defs\": {\"x\": {\"$ref\": \"missing.v1.json\"}}, ",
        1,
    );
    let err = Schemas::compile(files).expect_err("dangling ref");
    assert!(
        matches!(&err, SchemaError::DanglingRef { reference, .. } if reference == "missing.v1.json"),
        "{err}"
    );
    assert!(err.to_string().contains("referral.v1.json"), "{err}");
}

#[test]
fn payload_violations_point_into_the_envelope() {
    let s = schemas();
    let mut body = read(&examples_dir().join("envelope.json"));
    body["payload"]["urgency"] = Value::String("whenever".into());
    let v = s.validate(&body).expect_err("bad urgency");
    assert!(v.iter().any(|v| v.pointer == "/payload/urgency"), "{v:?}");
}

/// Regression: messages used to start with the offending value; now they say what the
/// schema asked for and nothing of what the document holds.
#[test]
fn violation_messages_quote_no_instance_value() {
    let s = schemas();
    let mut doc = read(&examples_dir().join("referral.json"));
    let secret = "김영희 010-2222-3333";
    let obj = doc.as_object_mut().expect("object");
    for value in obj.values_mut() {
        if value.is_string() {
            *value = Value::String(format!("{secret} {}", "x".repeat(3000)));
        } else if value.is_array() || value.is_number() || value.is_boolean() {
            *value = Value::String(secret.into());
        }
    }
    obj.insert("김영희".into(), Value::String(secret.into()));
    obj.insert("unexpected_field".into(), Value::Null);
    let violations = s
        .validate_payload(MessageType::Referral, 1, &doc)
        .expect_err("invalid");
    assert!(violations.len() > 2, "{violations:#?}");
    for v in &violations {
        assert!(
            !v.message.contains("김영희") && !v.message.contains("010-2222-3333"),
            "{v:?}"
        );
        assert!(v.message.len() < 300, "{v:?}");
    }
    let text = format!("{violations:?}");
    assert!(
        text.contains("unexpected_field"),
        "field names help: {text}"
    );
}

/// Each file is served as written but for its top-level `$id`, made relative: with the
/// canonical one, a tool that fetched the file from a node would look for the files its
/// relative `$ref`s name on `schemas.plusgate.kr`, which serves nothing.
#[test]
fn served_files_are_the_files_with_a_relative_id() {
    let schemas = schemas();
    let names: Vec<&str> = schemas.served_files().collect();
    assert_eq!(names.len(), EMBEDDED.len());
    for (file, text) in EMBEDDED {
        let served = schemas.served(file).expect("served");
        let canonical: Value = serde_json::from_str(text).expect("JSON");
        let id = canonical["$id"].as_str().expect("$id");
        assert_eq!(
            served,
            text.replacen(&format!("\"{id}\""), &format!("\"{file}\""), 1)
        );
    }
    assert_eq!(schemas.served("nope.v1.json"), None);
}
