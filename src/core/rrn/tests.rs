//! The specification of "looks like an RRN": what is found, and the look-alikes that pass.

use super::*;
use serde_json::json;

#[track_caller]
fn check_found(s: &str) {
    assert!(contains_rrn(s), "{s:?} must be found");
}

#[track_caller]
fn check_passes(s: &str) {
    assert!(!contains_rrn(s), "{s:?} must pass");
}

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
        check_found(s);
    }
}

/// Regression: only ASCII digits with an optional ASCII hyphen used to be found.
#[test]
fn rrns_written_with_other_dashes_are_found() {
    for dash in [
        '\u{2010}', // ‐ hyphen
        '\u{2011}', // ‑ non-breaking hyphen
        '\u{2012}', // ‒ figure dash
        '\u{2013}', // – en dash
        '\u{2014}', // — em dash
        '\u{2015}', // ― horizontal bar
        '\u{2212}', // − minus sign
        '\u{FE58}', // ﹘ small em dash
        '\u{FE63}', // ﹣ small hyphen-minus
        '\u{FF0D}', // － full-width hyphen-minus
        '\u{3161}', // ㅡ Hangul letter EU, typed for a dash
    ] {
        check_found(&format!("900101{dash}1234567"));
        check_found(&format!("주민번호: 850315{dash}2345678 입니다"));
    }
}

/// Regression: a space (or a spaced dash) between the two parts used to hide the number.
#[test]
fn rrns_written_with_spaces_are_found() {
    for s in [
        "900101 1234567",
        "900101  1234567",
        "900101 - 1234567",
        "900101 -1234567",
        "900101- 1234567",
        "900101\u{00A0}1234567",   // no-break space
        "900101\u{3000}1234567",   // ideographic space
        "900101\t1234567",         // tab
        "900101 \u{2013} 1234567", // spaced en dash
    ] {
        check_found(s);
    }
}

/// Regression: full-width (and other compatibility) digits used to pass.
#[test]
fn rrns_written_with_full_width_or_mixed_digits_are_found() {
    for s in [
        "９００１０１－１２３４５６７",
        "９００１０１１２３４５６７",
        "９００１０１-1234567",
        "900101－１２３４５６７",
        "9００1０1 – 12３4567",
        "𝟗𝟎𝟎𝟏𝟎𝟏-𝟏𝟐𝟑𝟒𝟓𝟔𝟕", // mathematical bold digits
        "주민등록번호는 ８５０３１５－２３４５６７８ 입니다",
    ] {
        check_found(s);
    }
}

/// Regression: invisible characters inside the number used to split it.
#[test]
fn invisible_characters_do_not_split_an_rrn() {
    for s in [
        "9001\u{200B}01-1234567",
        "900101\u{200D}-\u{2060}1234567",
        "900101-123\u{00AD}4567",
        "\u{FEFF}9001011234567",
    ] {
        check_found(s);
    }
}

#[test]
fn look_alikes_pass() {
    for s in [
        "010-1234-5678", // mobile phone
        "010 1234 5678",
        "０１０－１２３４－５６７８", // mobile phone, full width
        "+82 10-1234-5678",
        "02-123-4567",  // Seoul landline
        "031-000-5678", // landline
        "1588-1234",    // service number
        "2026-03-05",   // date
        "2024-01-15",
        "19900115",
        "1990-01-15 12:34:56",
        "2026-03-05T09:30:00+09:00",
        "20240115 123456",          // date and time stamp
        "1,234,567원",              // amount
        "1,234,567,890원",          // larger amount
        "₩1,234,567",               // amount
        "ref-suwon-20260305-0001",  // referral id
        "901301-1234567",           // month 13
        "900230-1234567",           // 30 February
        "900431-1234567",           // 31 April
        "900100-1234567",           // day 0
        "900101-123456",            // back part too short
        "900101-12345678",          // back part too long
        "19900101-1234567",         // longer front run
        "12345678901234",           // 14 digits
        "123-45-67890",             // business registration number
        "１２３－４５－６７８９０", // business registration number, full width
        "110-234-567890",           // bank account
        "1002-123-456789",          // bank account
        "123456-01-234567",         // bank account
        "900101--1234567",          // two dashes: not how an RRN is written
        "900101 -- 1234567",
        "900101    1234567", // a wide gap: two numbers in a table
        "900101/1234567",    // another separator: two numbers
        "900101, 1234567",
        "1234-5678-9012-3456", // card number
        "ps-7f3a9c21e4b05d18", // pseudonymous subject id
        "cns-2026-000123",     // consent id
        "",
    ] {
        check_passes(s);
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
    assert_eq!(
        redact("번호 ９００１０１－１２３４５６７, 전화 010-1234-5678"),
        "번호 [redacted], 전화 010-1234-5678"
    );
    assert_eq!(redact("a 900101 – 1234567 b"), "a [redacted] b");
}

#[test]
fn pointers_name_every_place_and_escape_keys() {
    let payload = json!({
        "summary": "no numbers here",
        "household": [
            {"name": "배우자", "note": "900101-1234567"},
            {"name": "자녀", "note": "９００１０１－１２３４５６７"}
        ],
        "a/b": {"c~d": "0402294123456"},
    });
    let mut found = find(&payload);
    found.sort();
    assert_eq!(
        found,
        ["/a~1b/c~0d", "/household/0/note", "/household/1/note"]
    );
}

/// Regression: an RRN used as an object key was not looked at; now it is found, and the
/// pointer that names the place does not repeat it.
#[test]
fn an_rrn_in_an_object_key_is_found_and_not_repeated() {
    let payload = json!({"notes": {"900101-1234567": "seen"}});
    assert_eq!(find(&payload), ["/notes/[redacted]"]);
}

#[test]
fn the_quick_digit_count_agrees_with_the_reading_of_every_character() {
    // `is_digit` is the fast pre-check; `unit` the full reading. They must agree on every
    // character up to the end of the digit ranges, or a number could slip past.
    for c in (0..=0x1_FFFF).filter_map(char::from_u32) {
        assert_eq!(
            is_digit(c),
            matches!(unit(c), Some(Unit::Digit(_))),
            "U+{:04X}",
            c as u32
        );
    }
}
