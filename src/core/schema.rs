//! The JSON Schemas of `schemas/`, compiled once at start, and validation of request bodies
//! against them.
//!
//! Every `*.json` schema is registered under its `$id`, so files refer to each other with
//! relative `$ref`s and nothing is ever fetched from the network (the registry is offline).
//! Validation runs with `format` checks on and the non-backtracking `regex` engine, so a
//! pattern can never take exponential time on hostile input.
//!
//! Architecture invariant: a schema that does not compile, or a `$ref` that does not
//! resolve, stops the node at start with an error naming the file; at run time the
//! schemas cannot fail, only the instances.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jsonschema::{Draft, PatternOptions, Registry, Validator};
use serde_json::Value;

use crate::core::message::MessageType;

/// The schemas built into the binary: the repository's `schemas/` at build time.
/// Adding a schema version means adding its file here too (a test checks the list matches
/// the folder).
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "common.v1.json",
        include_str!("../../schemas/common.v1.json"),
    ),
    (
        "envelope.v1.json",
        include_str!("../../schemas/envelope.v1.json"),
    ),
    (
        "referral.v1.json",
        include_str!("../../schemas/referral.v1.json"),
    ),
    (
        "referral-status.v1.json",
        include_str!("../../schemas/referral-status.v1.json"),
    ),
    (
        "case-summary.v1.json",
        include_str!("../../schemas/case-summary.v1.json"),
    ),
    (
        "consent.v1.json",
        include_str!("../../schemas/consent.v1.json"),
    ),
];

/// Where the message schemas come from (`[schemas] dir` in the config, or the built-in
/// ones).
#[derive(Debug, Clone)]
pub enum SchemaSource {
    /// The schemas compiled into the binary (the repository's `schemas/`).
    Embedded,
    /// A folder of `*.json` schema files.
    Dir(PathBuf),
}

/// The file holding the envelope schema.
const ENVELOPE_FILE: &str = "envelope.v1.json";

/// A schema set that cannot be used; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A file is not JSON.
    #[error("schema {file} is not valid JSON: {message}")]
    Json {
        /// The file.
        file: String,
        /// Parser message with line and column.
        message: String,
    },
    /// A file has no `$id`, or a `$id` is registered twice.
    #[error("schema {file}: {message}")]
    Id {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The registry could not be built (bad `$id` URI, unresolvable reference).
    #[error("schema {file} does not compile: {message}")]
    Compile {
        /// The file.
        file: String,
        /// The compiler's message.
        message: String,
    },
    /// A `$ref` names no schema of the set (reported against the file that holds it; the
    /// registry would only name the missing URI).
    #[error("schema {file} does not compile: `$ref: {reference}` names no schema in the set")]
    DanglingRef {
        /// The file holding the reference.
        file: String,
        /// The `$ref` as written.
        reference: String,
    },
    /// A required schema is missing.
    #[error("schema file {file} is missing")]
    Missing {
        /// The expected file name.
        file: String,
    },
}

/// One problem with a request body: where (JSON pointer into the body) and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON pointer into the request body (RFC 6901); empty for the whole body.
    pub pointer: String,
    /// Human-readable description.
    pub message: String,
}

/// The compiled schema set.
pub struct Schemas {
    envelope: Validator,
    payloads: BTreeMap<(MessageType, u32), Validator>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas")
            .field("payloads", &self.payloads.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Schemas {
    /// Compiles the schemas built into the binary ([`EMBEDDED`]). A [`SchemaSource::Dir`]
    /// is read by `Schemas::load` in `node::files`, then compiled here.
    pub fn embedded() -> Result<Schemas, SchemaError> {
        Schemas::compile(
            EMBEDDED
                .iter()
                .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
                .collect(),
        )
    }

    /// Compiles a set of `(file name, text)` schema files.
    pub fn compile(files: Vec<(String, String)>) -> Result<Schemas, SchemaError> {
        let mut docs: Vec<(String, String, Value)> = Vec::new();
        for (file, text) in files {
            let value: Value = serde_json::from_str(&text).map_err(|e| SchemaError::Json {
                file: file.clone(),
                message: e.to_string(),
            })?;
            let id = value
                .get("$id")
                .and_then(Value::as_str)
                .ok_or_else(|| SchemaError::Id {
                    file: file.clone(),
                    message: "has no string `$id`".into(),
                })?
                .to_owned();
            if let Some((other, _, _)) = docs.iter().find(|(_, other_id, _)| *other_id == id) {
                return Err(SchemaError::Id {
                    file,
                    message: format!("has the same `$id` as {other}"),
                });
            }
            docs.push((file, id, value));
        }

        let ids: Vec<&str> = docs.iter().map(|(_, id, _)| id.as_str()).collect();
        for (file, id, value) in &docs {
            if let Some(reference) = dangling_ref(value, id, &ids) {
                return Err(SchemaError::DanglingRef {
                    file: file.clone(),
                    reference: reference.to_owned(),
                });
            }
        }

        let mut builder = Registry::new();
        for (file, id, value) in &docs {
            builder = builder
                .add(id, value.clone())
                .map_err(|e| SchemaError::Compile {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
        }
        let registry = builder.prepare().map_err(|e| SchemaError::Compile {
            file: "(registry)".into(),
            message: e.to_string(),
        })?;

        // Compile every file, not just the ones we use, so a broken file is found at start.
        let mut compiled: BTreeMap<String, Validator> = BTreeMap::new();
        for (file, _id, value) in &docs {
            let validator = jsonschema::options()
                .with_draft(Draft::Draft202012)
                .should_validate_formats(true)
                .with_pattern_options(PatternOptions::regex())
                .with_registry(&registry)
                .offline()
                .build(value)
                .map_err(|e| SchemaError::Compile {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
            compiled.insert(file.clone(), validator);
        }

        let envelope = compiled
            .remove(ENVELOPE_FILE)
            .ok_or_else(|| SchemaError::Missing {
                file: ENVELOPE_FILE.into(),
            })?;
        let mut payloads = BTreeMap::new();
        for (file, validator) in compiled {
            if let Some((ty, version)) = payload_file(&file) {
                payloads.insert((ty, version), validator);
            }
        }
        for ty in MessageType::ALL {
            if !payloads.keys().any(|(t, _)| *t == ty) {
                return Err(SchemaError::Missing {
                    file: format!("{ty}.v1.json"),
                });
            }
        }
        Ok(Schemas { envelope, payloads })
    }

    /// Validates an envelope body: the envelope schema first, then the payload against the
    /// schema of its type and version. Returns every violation found.
    pub fn validate(&self, body: &Value) -> Result<(), Vec<Violation>> {
        let mut violations = collect(&self.envelope, body, "");
        let ty = body
            .get("type")
            .and_then(Value::as_str)
            .and_then(MessageType::parse);
        let version = body
            .get("version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        if let (Some(ty), Some(version), Some(payload)) = (ty, version, body.get("payload")) {
            match self.payloads.get(&(ty, version)) {
                Some(validator) => violations.extend(collect(validator, payload, "/payload")),
                None => violations.push(Violation {
                    pointer: "/version".into(),
                    message: format!("{ty} version {version} is not supported by this node"),
                }),
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Validates a bare document against the payload schema of `(ty, version)`; used for
    /// documents that are not wrapped in an envelope (and by the schema fixture tests).
    pub fn validate_payload(
        &self,
        ty: MessageType,
        version: u32,
        payload: &Value,
    ) -> Result<(), Vec<Violation>> {
        let validator = self.payloads.get(&(ty, version)).ok_or_else(|| {
            vec![Violation {
                pointer: String::new(),
                message: format!("{ty} version {version} is not supported"),
            }]
        })?;
        let v = collect(validator, payload, "");
        if v.is_empty() {
            Ok(())
        } else {
            Err(v)
        }
    }
}

/// Violations are bounded: a hostile body must not make the error response huge.
const VIOLATIONS_MAX: usize = 100;

fn collect(validator: &Validator, instance: &Value, prefix: &str) -> Vec<Violation> {
    validator
        .iter_errors(instance)
        .take(VIOLATIONS_MAX)
        .map(|e| Violation {
            pointer: format!("{prefix}{}", e.instance_path().as_str()),
            // Messages quote the offending value; a resident registration number in it is
            // not repeated back (nor anywhere else).
            message: crate::core::rrn::redact(&e.to_string()),
        })
        .collect()
}

/// The first `$ref` in `value` that names no registered schema, if any.
fn dangling_ref<'v>(value: &'v Value, base_id: &str, ids: &[&str]) -> Option<&'v str> {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let resource = r.split('#').next().unwrap_or("");
                if !resource.is_empty() {
                    let absolute = if resource.contains("://") || resource.starts_with("urn:") {
                        resource.to_owned()
                    } else {
                        let dir = base_id.rsplit_once('/').map_or("", |(d, _)| d);
                        format!("{dir}/{resource}")
                    };
                    if !ids.contains(&absolute.as_str()) {
                        return Some(r);
                    }
                }
            }
            map.values().find_map(|v| dangling_ref(v, base_id, ids))
        }
        Value::Array(items) => items.iter().find_map(|v| dangling_ref(v, base_id, ids)),
        _ => None,
    }
}

/// `referral-status.v1.json` → `(ReferralStatus, 1)`.
fn payload_file(file: &str) -> Option<(MessageType, u32)> {
    let stem = file.strip_suffix(".json")?;
    let (name, version) = stem.rsplit_once(".v")?;
    Some((MessageType::parse(name)?, version.parse().ok()?))
}

#[cfg(test)]
mod tests;
