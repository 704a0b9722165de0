//! Resident registration numbers (주민등록번호) never travel through plusgate.
//!
//! PIPA art. 24-2 allows processing an RRN only where a law requires it; a referral never
//! needs one, since subjects are referenced by pseudonymous ids. So any string in a payload
//! that looks like an RRN is refused, wherever it hides (a free-text note as much as an id
//! field), and the refusal names where it was found, never the number itself.
//!
//! "Looks like": `YYMMDD-NNNNNNN` or the same thirteen digits without the hyphen, standing
//! alone (not part of a longer run of digits), with a plausible date part (month 01–12, a
//! day that exists in that month, 29 February allowed because the century is unknown).
//! Phone numbers, dates, case numbers and longer account numbers do not match.
//!
//! Pure: no I/O. Called by `message` for every envelope, pushed or handed over by a node.

use serde_json::Value;

/// The JSON pointers (relative to `value`) of every string that contains something shaped
/// like a resident registration number.
pub fn find(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(value, &mut String::new(), &mut found);
    found
}

fn walk(value: &Value, pointer: &mut String, found: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            if contains_rrn(s) {
                found.push(pointer.clone());
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk(item, pointer, found);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = pointer.len();
                pointer.push('/');
                // RFC 6901 escaping: `~` first, then `/`.
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(item, pointer, found);
                pointer.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// True if `s` contains an RRN-shaped token.
pub fn contains_rrn(s: &str) -> bool {
    !tokens(s).is_empty()
}

/// `s` with every RRN-shaped token replaced by `[redacted]`.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (start, end) in tokens(s) {
        out.push_str(&s[last..start]);
        out.push_str("[redacted]");
        last = end;
    }
    out.push_str(&s[last..]);
    out
}

/// Byte ranges of the RRN-shaped tokens in `s` (ASCII digits and hyphen only, so every
/// boundary is a character boundary).
fn tokens(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut found = Vec::new();
    let mut start = 0;
    while start < b.len() {
        if let Some(end) = token_at(b, start) {
            found.push((start, end));
            start = end;
        } else {
            start += 1;
        }
    }
    found
}

/// The end of an RRN-shaped token starting at `start`, if one does.
fn token_at(b: &[u8], start: usize) -> Option<usize> {
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    // A token starts where a run of digits starts.
    if !digit(start) || (start > 0 && digit(start - 1)) {
        return None;
    }
    if !(start..start + 6).all(digit) {
        return None;
    }
    let back = if b.get(start + 6) == Some(&b'-') {
        start + 7
    } else {
        start + 6
    };
    let whole = (back..back + 7).all(digit) && !digit(back + 7);
    (whole && plausible_date(&b[start..start + 6])).then_some(back + 7)
}

/// `YYMMDD` with a month 01–12 and a day that exists in it (29 February always allowed).
fn plausible_date(yymmdd: &[u8]) -> bool {
    let two = |i: usize| u32::from(yymmdd[i] - b'0') * 10 + u32::from(yymmdd[i + 1] - b'0');
    let (month, day) = (two(2), two(4));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => 29,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rrn_shapes_are_found_with_or_without_hyphen_anywhere_in_a_string() {
        for s in [
            "900101-1234567",
            "9001011234567",
            "주민번호 900101-2345678 확인함",
            "RRN:0402294123456.",
            "000229-3000000",
            "851231-1111111 and more",
            "(991130-5123456)",
        ] {
            assert!(contains_rrn(s), "{s:?} must be found");
        }
    }

    #[test]
    fn look_alikes_pass() {
        for s in [
            "010-1234-5678", // mobile phone
            "031-000-5678",  // landline
            "2026-03-05",    // date
            "2026-03-05T09:30:00+09:00",
            "ref-suwon-20260305-0001", // referral id
            "901301-1234567",          // month 13
            "900230-1234567",          // 30 February
            "900431-1234567",          // 31 April
            "900100-1234567",          // day 0
            "900101-123456",           // back part too short
            "900101-12345678",         // back part too long
            "19900101-1234567",        // longer front run
            "12345678901234",          // 14 digits
            "123-45-67890",            // business registration number
            "110-234-567890",          // bank account
            "900101 1234567",          // separated by a space: two numbers
            "ps-7f3a9c21e4b05d18",     // pseudonymous subject id
        ] {
            assert!(!contains_rrn(s), "{s:?} must pass");
        }
    }

    #[test]
    fn redaction_replaces_every_rrn_and_nothing_else() {
        assert_eq!(
            redact("\"900101-1234567\" does not match; also 0402294123456, not 010-1234-5678"),
            "\"[redacted]\" does not match; also [redacted], not 010-1234-5678"
        );
        assert_eq!(
            redact("주민번호 900101-2345678 확인"),
            "주민번호 [redacted] 확인"
        );
    }

    #[test]
    fn pointers_name_every_place_and_escape_keys() {
        let payload = json!({
            "summary": "no numbers here",
            "household": [
                {"name": "배우자", "note": "900101-1234567"},
                {"name": "자녀"}
            ],
            "a/b": {"c~d": "0402294123456"},
        });
        let mut found = find(&payload);
        found.sort();
        assert_eq!(found, ["/a~1b/c~0d", "/household/0/note"]);
    }
}
