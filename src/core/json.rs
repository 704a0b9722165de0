//! Strict JSON decoding for request bodies.
//!
//! `serde_json` silently keeps the last of two equal keys in an object. For a message whose
//! parts decide where personal data goes, `{"to": "a", "to": "b"}` must be an error, not a
//! guess, so bodies are decoded with a visitor that refuses duplicate keys.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What is wrong with a body that did not decode, in words that quote nothing of it.
///
/// `serde_json`'s messages repeat the offending value (`invalid type: string "홍길동",
/// expected u64`); they go back to the sender and, between nodes, into stored dead-letter
/// reasons. This keeps the kind of error, what was expected (the type's side) and the
/// position, and drops the value. Field names in `unknown field` and `duplicate key` are
/// kept only when shaped like field names.
pub fn describe_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // serde_json appends " at line L column C" to what the error says.
    let what = text.split(" at line ").next().unwrap_or(&text);
    let expected = what
        .split_once(", expected ")
        .map(|(_, exp)| format!(", expected {exp}"))
        .unwrap_or_default();
    let said = match e.classify() {
        serde_json::error::Category::Data => {
            if what.starts_with("invalid type: ") {
                format!("a value of the wrong type{expected}")
            } else if what.starts_with("invalid value: ") || what.starts_with("unknown variant ") {
                format!("a value that is not allowed{expected}")
            } else if let Some(name) = quoted_name(what, "unknown field `") {
                format!("unknown field `{name}`{expected}")
            } else if let Some(name) = quoted_name(what, "duplicate key `") {
                format!("duplicate key `{name}`")
            } else if what.starts_with("missing field `")
                || what.starts_with("duplicate field `")
                || what.starts_with("invalid length ")
                || what.starts_with("nested deeper than ")
            {
                what.to_owned()
            } else {
                "a value of the wrong shape".to_owned()
            }
        }
        // Syntax and end-of-input messages name characters the parser expected, not values.
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => what.to_owned(),
    };
    if e.line() > 0 {
        format!("{said} at line {} column {}", e.line(), e.column())
    } else {
        said
    }
}

/// The name after `prefix` up to the closing backtick, if it is shaped like a field name.
fn quoted_name<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let name = text.strip_prefix(prefix)?.split('`').next()?;
    let field_like = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    field_like.then_some(name)
}

/// Largest nesting depth accepted (serde_json's own recursion limit is 128).
const DEPTH_MAX: usize = 64;

/// Parses `bytes` as one JSON value, refusing duplicate object keys and trailing data.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue { depth: 0 }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct StrictValue {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested::<A::Error>()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let v = map.next_value_seed(inner)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

impl StrictValue {
    fn nested<E: de::Error>(self) -> Result<StrictValue, E> {
        if self.depth >= DEPTH_MAX {
            return Err(E::custom(format_args!(
                "nested deeper than {DEPTH_MAX} levels"
            )));
        }
        Ok(StrictValue {
            depth: self.depth + 1,
        })
    }
}

#[cfg(test)]
mod tests {

    use super::describe_error;
    use serde_json::Value;
    /// Regression: decoding errors quoted the value (`invalid type: string "…"`).
    #[test]
    fn decoding_errors_quote_no_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        #[serde(deny_unknown_fields)]
        struct Shape {
            n: u64,
            kind: Kind,
        }
        #[derive(Debug, serde::Deserialize)]
        enum Kind {
            A,
        }
        for body in [
            r#"{"n": "홍길동 010-1111-2222", "kind": "A"}"#,
            r#"{"n": 1, "kind": "홍길동 010-1111-2222"}"#,
            r#"{"n": 1, "kind": "A", "홍길동 010-1111-2222": 1}"#,
        ] {
            let value: Value = serde_json::from_str(body).expect("JSON");
            let e = serde_json::from_value::<Shape>(value).expect_err("wrong shape");
            let text = describe_error(&e);
            assert!(!text.contains("홍길동") && !text.contains("1111"), "{text}");
            let e = serde_json::from_str::<Shape>(body).expect_err("wrong shape");
            let text = describe_error(&e);
            assert!(!text.contains("홍길동") && !text.contains("1111"), "{text}");
        }
        let e = parse_strict(br#"{"to": "a", "to": "b"}"#).expect_err("duplicate");
        assert_eq!(describe_error(&e), "duplicate key `to` at line 1 column 16");
    }
    use super::parse_strict;

    #[test]
    fn accepts_ordinary_json() {
        let v = parse_strict(br#"{"a": [1, 2.5, "x", null, true, {"b": {}}]}"#).expect("valid");
        assert_eq!(v["a"][2], "x");
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        for body in [
            r#"{"to": "a", "to": "b"}"#,
            r#"{"payload": {"x": 1, "x": 1}}"#,
            r#"[{"k": 1, "k": 2}]"#,
        ] {
            let err = parse_strict(body.as_bytes()).expect_err(body);
            assert!(err.to_string().contains("duplicate key"), "{err}");
        }
    }

    #[test]
    fn refuses_trailing_data_and_deep_nesting() {
        assert!(parse_strict(b"{} {}").is_err());
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse_strict(deep.as_bytes()).is_err());
    }
}
