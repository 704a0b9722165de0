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

use jsonschema::error::{TypeKind, ValidationErrorKind};
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
    /// Every file of the set by name, as served at `GET /v1/schemas/{file}` ([`publish`]).
    served: BTreeMap<String, String>,
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
        let mut served = BTreeMap::new();
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
            served.insert(
                file.clone(),
                publish::served_text(&file, &text, &value, &id),
            );
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
        Ok(Schemas {
            envelope,
            payloads,
            served,
        })
    }

    /// The schema file `file` as the node serves it: its text with its `$id` made relative,
    /// so the `$ref`s in it resolve against the URL it was fetched from ([`publish`]).
    pub fn served(&self, file: &str) -> Option<&str> {
        self.served.get(file).map(String::as_str)
    }

    /// The names of every file of the set, each servable by [`Schemas::served`].
    pub fn served_files(&self) -> impl Iterator<Item = &str> {
        self.served.keys().map(String::as_str)
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
            // Keys are the document's structure, not what it says about the person; one
            // shaped like a resident registration number is still not repeated.
            pointer: crate::core::rrn::redact(&format!("{prefix}{}", e.instance_path().as_str())),
            message: describe(e.kind()),
        })
        .collect()
}

/// Longest property name a violation message names; longer ones are counted, not named.
const PROPERTY_NAME_LEN_MAX: usize = 64;

/// What is wrong at a pointer, from the schema's side only.
///
/// Invariant: the text quotes nothing of the instance. `jsonschema`'s own messages start
/// with the offending value (`"홍길동" is not one of …`), and these texts go back to the
/// sender, into logs, and into dead-letter reasons and audit entries when a peer node
/// refuses a message; so each kind is described by what the schema asked for (its limit,
/// pattern, format or type), never by what the document holds. The one part of the
/// instance named is an unexpected property name, and only when it is shaped like a field
/// name ([`field_name_like`]), because that is what a sender needs to fix a typo.
fn describe(kind: &ValidationErrorKind) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::AdditionalItems { limit } => format!("has more than {limit} items"),
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            unexpected_properties(unexpected)
        }
        K::UnevaluatedItems { unexpected } => {
            format!("has {} items the schema does not allow", unexpected.len())
        }
        K::AnyOf { .. } | K::OneOfNotValid { .. } => {
            "is not valid under any of the allowed schemas".into()
        }
        K::OneOfMultipleValid { .. } => {
            "is valid under more than one of the schemas, where exactly one is allowed".into()
        }
        K::Constant { .. } => "is not the one allowed value".into(),
        K::Contains => "contains no item of the required shape".into(),
        K::ContentEncoding { content_encoding } => {
            format!("is not valid {content_encoding}")
        }
        K::ContentMediaType { content_media_type } => {
            format!("is not valid {content_media_type}")
        }
        K::Enum { .. } => "is not one of the allowed values".into(),
        K::ExclusiveMaximum { limit } => format!("is not less than {limit}"),
        K::ExclusiveMinimum { limit } => format!("is not greater than {limit}"),
        K::FalseSchema => "is not allowed here".into(),
        K::Format { format } => format!("is not a valid {format}"),
        K::FromUtf8 { .. } => "does not decode to UTF-8 text".into(),
        K::MaxItems { limit } => format!("has more than {limit} items"),
        K::Maximum { limit } => format!("is greater than {limit}"),
        K::MaxLength { limit } => format!("is longer than {limit} characters"),
        K::MaxProperties { limit } => format!("has more than {limit} properties"),
        K::MinItems { limit } => format!("has fewer than {limit} items"),
        K::Minimum { limit } => format!("is less than {limit}"),
        K::MinLength { limit } => format!("is shorter than {limit} characters"),
        K::MinProperties { limit } => format!("has fewer than {limit} properties"),
        K::MultipleOf { multiple_of } => format!("is not a multiple of {multiple_of}"),
        K::Not { .. } => "matches a schema it must not match".into(),
        K::Pattern { pattern } => format!("does not match pattern {pattern}"),
        K::PropertyNames { .. } => "has a property name the schema does not allow".into(),
        K::Required { property } => match property.as_str() {
            Some(name) => format!("is missing required property {name:?}"),
            None => "is missing a required property".into(),
        },
        K::Type { kind } => {
            let types: Vec<&str> = match kind {
                TypeKind::Single(t) => vec![t.as_str()],
                TypeKind::Multiple(set) => set.iter().map(|t| t.as_str()).collect(),
            };
            format!("is not of type {}", types.join(" or "))
        }
        K::UniqueItems => "has items that are not unique".into(),
        K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => {
            "could not be checked against its pattern".into()
        }
        K::Custom { keyword, .. } => format!("does not satisfy {keyword}"),
        K::Referencing(_) => "could not be checked: a schema reference does not resolve".into(),
    }
}

/// "has properties the schema does not allow", naming those shaped like field names.
fn unexpected_properties(unexpected: &[String]) -> String {
    let named: Vec<String> = unexpected
        .iter()
        .filter(|p| field_name_like(p))
        .map(|p| format!("{p:?}"))
        .collect();
    let unnamed = unexpected.len() - named.len();
    let mut text = String::from("has properties the schema does not allow");
    if !named.is_empty() {
        text.push_str(": ");
        text.push_str(&named.join(", "));
    }
    if unnamed > 0 {
        text.push_str(&format!(
            "{}{unnamed} other(s) not named",
            if named.is_empty() { ": " } else { " and " }
        ));
    }
    text
}

/// A property name a schema could have: ASCII letters, digits, `_` and `-`, starting with a
/// letter or `_`, at most [`PROPERTY_NAME_LEN_MAX`] long. A name, a phone number or a note
/// used as a key is not.
fn field_name_like(name: &str) -> bool {
    name.len() <= PROPERTY_NAME_LEN_MAX
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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

mod publish;

#[cfg(test)]
mod tests;
