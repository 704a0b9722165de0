//! Each schema file as the node serves it at `GET /v1/schemas/{file}`, so a tool that fetched
//! the OpenAPI document from the node can resolve every `$ref` from the node too.
//!
//! The files are served as written except for their top-level `$id`. Each file's `$id` is
//! its canonical name (`https://schemas.plusgate.kr/envelope.v1.json`), which the node's own
//! registry keys the set by; but in JSON Schema 2020-12 (and so in OpenAPI 3.1) a `$id` is
//! also the base URI for the file's relative `$ref`s, and that host serves nothing. A tool
//! that follows `common.v1.json#/$defs/agencyId` inside a file fetched from the node would
//! look for it there. Served, the `$id` is the file's own name instead: a relative URI
//! that resolves to the URL the file was fetched from, so its siblings resolve from the node
//! as well. Nothing else changes, down to the bytes (the canonical `$id` is the served name
//! under the folder of the one it replaced).

use serde_json::Value;

/// `text` (the file `file`, parsed as `value`, whose top-level `$id` is `id`) with that
/// `$id` replaced by `file`.
///
/// The replacement is made in the text, so the served file keeps its layout and key order;
/// the result is parsed back and must equal `value` with the new `$id`, else (a layout the
/// textual edit cannot handle, such as the id string appearing earlier in the file) the
/// value is written out whole instead.
pub(super) fn served_text(file: &str, text: &str, value: &Value, id: &str) -> String {
    let mut expected = value.clone();
    if let Some(map) = expected.as_object_mut() {
        map.insert("$id".into(), Value::String(file.to_owned()));
    }
    let (Ok(old), Ok(new)) = (serde_json::to_string(id), serde_json::to_string(file)) else {
        return whole(&expected);
    };
    if let Some(at) = text.find(&old) {
        let edited = format!("{}{new}{}", &text[..at], &text[at + old.len()..]);
        if serde_json::from_str::<Value>(&edited).is_ok_and(|v| v == expected) {
            return edited;
        }
    }
    whole(&expected)
}

fn whole(value: &Value) -> String {
    // A `Value` parsed from text has string keys only, so it always serialises.
    serde_json::to_string_pretty(value).unwrap_or_else(|_| String::from("{}"))
}
