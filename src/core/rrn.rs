//! Resident registration numbers (주민등록번호) never travel through plusgate.
//!
//! PIPA art. 24-2 allows processing an RRN only where a law requires it; a referral never
//! needs one, since subjects are referenced by pseudonymous ids. So any string in a payload
//! that looks like an RRN is refused, wherever it hides (a free-text note as much as an id
//! field or an object key), and the refusal names where it was found, never the number
//! itself.
//!
//! "Looks like": six digits `YYMMDD` with a plausible date part (month 01–12, a day that
//! exists in that month, 29 February allowed because the century is unknown), then a
//! separator, then seven digits (the first is the sex/century digit), standing alone (not
//! part of a longer run of digits). People do not type them the way a form would, so the
//! text is read as the reader sees it, a compatibility normalisation (what NFKC does) done
//! by hand for the characters that matter, with no allocation for the common string:
//! - digits: ASCII, full-width (`０`–`９`) and mathematical (`𝟎`–`𝟿`) digits are digits;
//! - the separator: nothing, or up to [`SEPARATOR_LEN_MAX`] characters of white space
//!   (any Unicode white space: ASCII, no-break, ideographic) with at most one dash among
//!   them; a dash is any of the hyphen and dash class (`-` `‐` `‑` `‒` `–` `—` `―` `−` `﹘`
//!   `﹣` `－` …) or the Hangul letter `ㅡ` that Korean keyboards give for one;
//! - invisible format characters (zero-width space and joiners, word joiner, soft hyphen,
//!   byte-order mark) are skipped wherever they are, so they cannot split a number.
//!
//! Phone numbers, dates, amounts, business registration numbers, case numbers and longer
//! account numbers do not match (the `look_alikes_pass` test lists them).
//!
//! Pure: no I/O. Called by `message` for every envelope, pushed or handed over by a node,
//! and by `api` for consents and withdrawals. It runs on every payload string: a string with
//! fewer than thirteen digits is passed over after one look at its characters, no regular
//! expression is involved, and only a string with enough digits is read a second time.

use serde_json::Value;

/// Longest separator between the date part and the back part, in characters (`" - "`).
pub const SEPARATOR_LEN_MAX: usize = 3;

/// Digits in an RRN: six for the date part, seven for the back part.
const DIGITS: usize = 13;

/// The JSON pointers (relative to `value`) of every string, and every object key, that
/// contains something shaped like a resident registration number. A key that holds one
/// appears in the pointer redacted.
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
                let key_holds_rrn = contains_rrn(key);
                let key = if key_holds_rrn {
                    redact(key)
                } else {
                    key.clone()
                };
                // RFC 6901 escaping: `~` first, then `/`.
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                if key_holds_rrn {
                    found.push(pointer.clone());
                } else {
                    walk(item, pointer, found);
                }
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

/// A character as the scan reads it, after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A digit, with its value.
    Digit(u8),
    /// A character of the hyphen and dash class.
    Dash,
    /// White space.
    Space,
    /// Anything else: ends a number.
    Other,
}

/// One character of the text: what it reads as, and its byte range in the original.
#[derive(Debug, Clone, Copy)]
struct Read {
    unit: Unit,
    start: usize,
    end: usize,
}

/// What `c` reads as; `None` for an invisible character the scan skips.
/// True for the characters [`unit`] reads as digits (kept in step with it; a test checks).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
        || ('\u{FF10}'..='\u{FF19}').contains(&c)
        || ('\u{1D7CE}'..='\u{1D7FF}').contains(&c)
}

fn unit(c: char) -> Option<Unit> {
    let digit = |d: u32| Some(Unit::Digit(u8::try_from(d % 10).unwrap_or(0)));
    match c {
        '0'..='9' => digit(c as u32 - '0' as u32),
        // Full-width digits (NFKC: the ASCII digit).
        '\u{FF10}'..='\u{FF19}' => digit(c as u32 - 0xFF10),
        // Mathematical bold, double-struck, sans-serif, sans-serif bold and monospace digits.
        '\u{1D7CE}'..='\u{1D7FF}' => digit(c as u32 - 0x1D7CE),
        '-'
        | '\u{2010}'..='\u{2015}' // hyphen, non-breaking hyphen, figure dash, en and em dash, bar
        | '\u{2043}' // hyphen bullet
        | '\u{2212}' // minus sign
        | '\u{02D7}' // modifier letter minus
        | '\u{2E3A}' | '\u{2E3B}' // two- and three-em dash
        | '\u{FE58}' // small em dash
        | '\u{FE63}' // small hyphen-minus
        | '\u{FF0D}' // full-width hyphen-minus
        | '\u{3161}' | '\u{FFDA}' // Hangul letter EU (ㅡ), typed as a dash, and its half-width form
        | '\u{30FC}' | '\u{FF70}' // prolonged sound mark, what a Japanese IME gives for a dash
        => Some(Unit::Dash),
        '\u{00AD}' // soft hyphen
        | '\u{200B}'..='\u{200D}' // zero-width space, non-joiner, joiner
        | '\u{2060}' // word joiner
        | '\u{FEFF}' // zero-width no-break space (byte-order mark)
        => None,
        c if c.is_whitespace() => Some(Unit::Space),
        _ => Some(Unit::Other),
    }
}

/// Byte ranges of the RRN-shaped tokens in `s` (each starts at a digit's first byte and
/// ends after a digit's last, so every boundary is a character boundary).
fn tokens(s: &str) -> Vec<(usize, usize)> {
    // Most strings hold fewer than thirteen digits of any kind: one pass, no allocation, and
    // no Unicode table lookups (this runs on every string of every payload). ASCII text is
    // counted byte by byte; otherwise only the digit ranges `unit` knows are compared.
    let digits = if s.is_ascii() {
        s.bytes().filter(u8::is_ascii_digit).take(DIGITS).count()
    } else {
        s.chars().filter(|&c| is_digit(c)).take(DIGITS).count()
    };
    if digits < DIGITS {
        return Vec::new();
    }
    let text: Vec<Read> = s
        .char_indices()
        .filter_map(|(start, c)| {
            unit(c).map(|unit| Read {
                unit,
                start,
                end: start + c.len_utf8(),
            })
        })
        .collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if let Some(end) = token_at(&text, i) {
            found.push((text[i].start, text[end - 1].end));
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// The end (exclusive index into `text`) of an RRN-shaped token starting at `start`, if one
/// does.
fn token_at(text: &[Read], start: usize) -> Option<usize> {
    let digit_at = |i: usize| match text.get(i).map(|r| r.unit) {
        Some(Unit::Digit(d)) => Some(d),
        _ => None,
    };
    // A token starts where a run of digits starts.
    if start > 0 && digit_at(start - 1).is_some() {
        return None;
    }
    let mut date = [0u8; 6];
    for (k, d) in date.iter_mut().enumerate() {
        *d = digit_at(start + k)?;
    }
    if !plausible_date(date) {
        return None;
    }
    let back = after_separator(text, start + 6)?;
    let whole = (back..back + 7).all(|i| digit_at(i).is_some()) && digit_at(back + 7).is_none();
    whole.then_some(back + 7)
}

/// Where the back part starts, after the separator at `at`: nothing, or white space with
/// at most one dash, at most [`SEPARATOR_LEN_MAX`] characters long.
fn after_separator(text: &[Read], at: usize) -> Option<usize> {
    let mut dashes = 0;
    let mut i = at;
    while let Some(r) = text.get(i) {
        match r.unit {
            Unit::Dash => dashes += 1,
            Unit::Space => {}
            Unit::Digit(_) => break,
            Unit::Other => return None,
        }
        i += 1;
        if dashes > 1 || i - at > SEPARATOR_LEN_MAX {
            return None;
        }
    }
    Some(i)
}

/// `YYMMDD` with a month 01–12 and a day that exists in it (29 February always allowed).
fn plausible_date(yymmdd: [u8; 6]) -> bool {
    let two = |i: usize| u32::from(yymmdd[i]) * 10 + u32::from(yymmdd[i + 1]);
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
mod tests;
