//! Times as plusgate writes them: RFC 3339, UTC, milliseconds. Pure: the time is always
//! passed in (reading it is `node::clock`'s job), so the same instant always gives the same
//! text, which the audit chain's hashes depend on.

use ::time::format_description::well_known::Rfc3339;
use ::time::{OffsetDateTime, UtcOffset};

/// `t` as RFC 3339 in UTC, cut (not rounded) to milliseconds, e.g.
/// `2026-11-26T03:00:00.123Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// An RFC 3339 time, or `None` if `s` is not one.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// True if RFC 3339 time `a` is strictly before `b`; unparseable times compare as equal
/// (the schemas check the format before a time gets here, so that does not happen in
/// practice).
pub fn is_before(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::time::macros::datetime;

    #[test]
    fn times_are_written_in_utc_with_milliseconds_cut_not_rounded() {
        assert_eq!(
            rfc3339(datetime!(2026-11-26 03:00:00.123_999_999 UTC)),
            "2026-11-26T03:00:00.123Z"
        );
        assert_eq!(
            rfc3339(datetime!(2026-11-26 12:00:00 +09:00)),
            "2026-11-26T03:00:00Z"
        );
    }

    #[test]
    fn written_times_read_back_as_the_same_instant() {
        let t = datetime!(2026-11-26 03:00:00.5 UTC);
        assert_eq!(parse(&rfc3339(t)), Some(t));
        assert_eq!(parse("yesterday"), None);
    }

    #[test]
    fn before_compares_instants_not_text() {
        assert!(is_before(
            "2026-11-26T12:00:00+09:00",
            "2026-11-26T03:00:01Z"
        ));
        assert!(!is_before(
            "2026-11-26T03:00:00Z",
            "2026-11-26T12:00:00+09:00"
        ));
        assert!(!is_before("garbage", "2026-11-26T03:00:00Z"));
    }
}
