//! The example request bodies and consents `dev-init` writes into `examples/`: a referral
//! (and one to the second center), a status and a case summary answering it, and the
//! consents they travel under, built from the payload examples maintained with the schemas.
//!
//! Invariants kept here:
//! - every agency id in an example names one of the federation's own centers (the embedded
//!   examples' centers are renamed);
//! - every message example cites a consent example collected by its sender and naming its
//!   recipient, valid from the day before the federation is made, so the examples pass the
//!   consent check as written.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::files::{create_dir, write_file};
use super::{DevInitError, DEV_CERT_VALIDITY_DAYS};
use crate::dev::manifest::ExampleEntry;
use crate::dev::pki;

/// Folder (inside the federation folder) holding the example request bodies; no center
/// may take its name.
pub const EXAMPLES_DIR: &str = "examples";

/// Id of the `consent` example (collected by the first center's employment center, naming
/// the welfare teams), which the referral examples cite.
pub const EXAMPLE_CONSENT_ID: &str = "cns-example-0001";

/// Id of the `consent-reply` example (collected by the first center's welfare team, naming
/// its employment center), which the `referral-status` and `case-summary` examples cite:
/// information goes back only under a consent the sending agency collected.
pub const EXAMPLE_REPLY_CONSENT_ID: &str = "cns-example-0002";

/// Id of the `consent-reply-remote` example: the same for the second center's welfare team,
/// for answers to `referral-remote`.
pub const EXAMPLE_REMOTE_REPLY_CONSENT_ID: &str = "cns-example-0003";

/// Envelope id of the `referral` example (also the `referral_id` of `referral-status`).
pub const EXAMPLE_REFERRAL_ID: &str = "ref-example-0001";

/// Envelope id of the `referral-remote` example.
pub const EXAMPLE_REFERRAL_REMOTE_ID: &str = "ref-example-remote-0001";

/// Envelope id of the `referral-status` example.
pub const EXAMPLE_STATUS_ID: &str = "sts-example-0001";

/// Envelope id of the `referral-status-remote` example (the answer to `referral-remote`).
pub const EXAMPLE_STATUS_REMOTE_ID: &str = "sts-example-remote-0001";

/// Envelope id of the `case-summary` example.
pub const EXAMPLE_CASE_SUMMARY_ID: &str = "cs-example-0001";

/// Payload examples maintained with the schemas, embedded so the binary is self-contained.
mod embedded {
    pub const ENVELOPE: &str = include_str!("../../../schemas/examples/envelope.json");
    pub const REFERRAL: &str = include_str!("../../../schemas/examples/referral.json");
    pub const REFERRAL_STATUS: &str =
        include_str!("../../../schemas/examples/referral-status.json");
    pub const CASE_SUMMARY: &str = include_str!("../../../schemas/examples/case-summary.json");
    pub const CONSENT: &str = include_str!("../../../schemas/examples/consent.json");

    /// The centers the embedded examples are written for (first and second center); any
    /// agency id naming them is rewritten to the federation's own centers.
    pub const CENTERS: [&str; 2] = ["suwon", "gangseo"];
}

/// Builds the example request bodies for `centers` (at least one), keyed by example name,
/// each with the agency id that sends it.
fn build_examples(
    centers: &[&str],
) -> Result<BTreeMap<&'static str, (String, Value)>, DevInitError> {
    let c0 = centers[0];
    let c1 = centers.get(1).copied();
    let employment = format!("{c0}/employment");
    let welfare = format!("{c0}/welfare");

    let renames: Vec<(&str, &str)> = embedded::CENTERS
        .iter()
        .copied()
        .zip(centers.iter().copied())
        .collect();
    let parse = |example: &'static str, text: &str| -> Result<Value, DevInitError> {
        let mut doc: Value = serde_json::from_str(text).map_err(|e| DevInitError::Example {
            example,
            detail: e.to_string(),
        })?;
        rename_centers(&mut doc, &renames);
        Ok(doc)
    };
    let envelope_template = parse("envelope", embedded::ENVELOPE)?;
    let subject = envelope_template
        .get("subject")
        .cloned()
        .ok_or(DevInitError::Example {
            example: "envelope",
            detail: "no field at /subject".into(),
        })?;
    let envelope = |id: &str, kind: &str, to: &str, consent: &str, payload: Value| {
        json!({
            "id": id,
            "type": kind,
            "version": 1,
            "to": to,
            "subject": subject,
            "consent_id": consent,
            "payload": payload,
        })
    };

    let mut examples = BTreeMap::new();

    let mut referral = parse("referral", embedded::REFERRAL)?;
    set(
        &mut referral,
        "referral",
        "/referrer/agency",
        employment.as_str(),
    )?;
    set(
        &mut referral,
        "referral",
        "/recipient/agency",
        welfare.as_str(),
    )?;
    if let Some(c1) = c1 {
        let remote_welfare = format!("{c1}/welfare");
        let mut remote = referral.clone();
        set(
            &mut remote,
            "referral-remote",
            "/recipient/agency",
            remote_welfare.as_str(),
        )?;
        let body = envelope(
            EXAMPLE_REFERRAL_REMOTE_ID,
            "referral",
            &remote_welfare,
            EXAMPLE_CONSENT_ID,
            remote,
        );
        examples.insert("referral-remote", (employment.clone(), body));
    }
    let body = envelope(
        EXAMPLE_REFERRAL_ID,
        "referral",
        &welfare,
        EXAMPLE_CONSENT_ID,
        referral,
    );
    examples.insert("referral", (employment.clone(), body));

    let mut status = parse("referral-status", embedded::REFERRAL_STATUS)?;
    set(
        &mut status,
        "referral-status",
        "/referral_id",
        EXAMPLE_REFERRAL_ID,
    )?;
    set(
        &mut status,
        "referral-status",
        "/changed_by/agency",
        welfare.as_str(),
    )?;
    let body = envelope(
        EXAMPLE_STATUS_ID,
        "referral-status",
        &employment,
        EXAMPLE_REPLY_CONSENT_ID,
        status.clone(),
    );
    // The same answer from the second center's welfare team to `referral-remote`, under
    // the consent that team collected for answering.
    if let Some(c1) = c1 {
        let remote_welfare = format!("{c1}/welfare");
        let mut remote = status.clone();
        set(
            &mut remote,
            "referral-status-remote",
            "/referral_id",
            EXAMPLE_REFERRAL_REMOTE_ID,
        )?;
        set(
            &mut remote,
            "referral-status-remote",
            "/changed_by/agency",
            remote_welfare.as_str(),
        )?;
        let body = envelope(
            EXAMPLE_STATUS_REMOTE_ID,
            "referral-status",
            &employment,
            EXAMPLE_REMOTE_REPLY_CONSENT_ID,
            remote,
        );
        examples.insert("referral-status-remote", (remote_welfare, body));
    }
    examples.insert("referral-status", (welfare.clone(), body));

    let mut case_summary = parse("case-summary", embedded::CASE_SUMMARY)?;
    set(
        &mut case_summary,
        "case-summary",
        "/author/agency",
        welfare.as_str(),
    )?;
    let body = envelope(
        EXAMPLE_CASE_SUMMARY_ID,
        "case-summary",
        &employment,
        EXAMPLE_REPLY_CONSENT_ID,
        case_summary,
    );
    examples.insert("case-summary", (welfare.clone(), body));

    // Valid from yesterday for a year, like the development certificates, so the examples
    // pass the consent check whenever the federation is made.
    let now = time::OffsetDateTime::now_utc();
    let stamp = |t: time::OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap_or(t)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let from = stamp(now - time::Duration::days(1));
    let until = stamp(now + time::Duration::days(DEV_CERT_VALIDITY_DAYS));
    let template = parse("consent", embedded::CONSENT)?;
    let consent_example = |id: &str,
                           collector: &str,
                           recipients: Vec<Value>,
                           items: &[(&str, bool)]|
     -> Result<Value, DevInitError> {
        let mut c = template.clone();
        set(&mut c, "consent", "/id", id)?;
        set(&mut c, "consent", "/subject", subject.clone())?;
        set(&mut c, "consent", "/collected_by/agency", collector)?;
        set(&mut c, "consent", "/recipients", recipients)?;
        let items: Vec<Value> = items
            .iter()
            .map(|(item, sensitive)| {
                json!({"item": item, "sensitive": sensitive, "unique_identifier": false})
            })
            .collect();
        set(&mut c, "consent", "/items", items)?;
        for pointer in [
            "/valid_from",
            "/notice/shown_at",
            "/collection/collected_at",
        ] {
            set(&mut c, "consent", pointer, from.as_str())?;
        }
        set(&mut c, "consent", "/valid_until", until.as_str())?;
        set(
            &mut c,
            "consent",
            "/status_history",
            json!([{"status": "granted", "at": from, "by": collector}]),
        )?;
        Ok(c)
    };
    // What a referral carries; what a status and a case summary carry back.
    let referral_items = [
        ("household", true),
        ("needs", true),
        ("urgency", false),
        ("summary", true),
        ("tried", false),
        ("contact_preferences", false),
        ("requested_response_by", false),
    ];
    let reply_items = [
        ("reason", false),
        ("outcome", true),
        ("next_contact_at", false),
        ("case_opened_on", false),
        ("needs_assessment", true),
        ("services_received", true),
        ("plan", false),
        ("conference", false),
        ("summary", true),
    ];
    // The agencies of an integrated case-management network: the first center's welfare
    // and jobs teams, and every other center's welfare team.
    let mut recipients = vec![
        Value::from(welfare.as_str()),
        Value::from(format!("{c0}/jobs")),
    ];
    recipients.extend(
        centers[1..]
            .iter()
            .map(|c| Value::from(format!("{c}/welfare"))),
    );
    let consent = consent_example(EXAMPLE_CONSENT_ID, &employment, recipients, &referral_items)?;
    examples.insert("consent", (employment.clone(), consent));
    let reply = consent_example(
        EXAMPLE_REPLY_CONSENT_ID,
        &welfare,
        vec![Value::from(employment.as_str())],
        &reply_items,
    )?;
    examples.insert("consent-reply", (welfare.clone(), reply));
    if let Some(c1) = c1 {
        let remote_welfare = format!("{c1}/welfare");
        let reply = consent_example(
            EXAMPLE_REMOTE_REPLY_CONSENT_ID,
            &remote_welfare,
            vec![Value::from(employment.as_str())],
            &reply_items,
        )?;
        examples.insert("consent-reply-remote", (remote_welfare, reply));
    }

    Ok(examples)
}

/// Replaces the value at `pointer`, which the embedded example must have.
fn set(
    doc: &mut Value,
    example: &'static str,
    pointer: &str,
    value: impl Into<Value>,
) -> Result<(), DevInitError> {
    let slot = doc
        .pointer_mut(pointer)
        .ok_or_else(|| DevInitError::Example {
            example,
            detail: format!("no field at {pointer}"),
        })?;
    *slot = value.into();
    Ok(())
}

/// Rewrites every string of the form `<from>/<name>` to `<to>/<name>`, so agency ids
/// mentioned anywhere in an example (plans, participants, status history) name the
/// federation's own centers.
fn rename_centers(doc: &mut Value, renames: &[(&str, &str)]) {
    match doc {
        Value::String(text) => {
            let renamed = text.split_once('/').and_then(|(center, name)| {
                let (_, to) = renames.iter().find(|(from, _)| *from == center)?;
                pki::is_valid_name(name).then(|| format!("{to}/{name}"))
            });
            if let Some(renamed) = renamed {
                *text = renamed;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_centers(v, renames)),
        Value::Object(fields) => fields.values_mut().for_each(|v| rename_centers(v, renames)),
        _ => {}
    }
}

pub(super) fn write_examples(
    out: &Path,
    centers: &[&str],
) -> Result<BTreeMap<String, ExampleEntry>, DevInitError> {
    let dir = out.join(EXAMPLES_DIR);
    create_dir(&dir)?;
    let mut entries = BTreeMap::new();
    for (name, (sender, body)) in build_examples(centers)? {
        let file = format!("{EXAMPLES_DIR}/{name}.json");
        let mut text = serde_json::to_string_pretty(&body).map_err(|e| DevInitError::Example {
            example: name,
            detail: e.to_string(),
        })?;
        text.push('\n');
        write_file(&out.join(&file), text.as_bytes())?;
        entries.insert(name.to_owned(), ExampleEntry { file, sender });
    }
    Ok(entries)
}
