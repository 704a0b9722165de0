//! Times as plusgate writes them: RFC 3339, UTC, milliseconds. Pure: the time is always
//! passed in (reading it is `node::clock`'s job), so the same instant always gives the same
//! text, which the audit chain's hashes depend on.
//!
//! Days are another matter: a day an officer names (`YYYY-MM-DD` in a report filter) is an
//! Asia/Seoul calendar day ([`SEOUL`], [`seoul_day_start`]), because that is the day the
//! officers and the agencies live in; instants stay UTC on the wire.
//!
//! [`Timestamp`] is a time as the node's types carry it: the instant, to compare, and the
//! exact text it was written as, to store, sign and hash.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use ::time::format_description::well_known::Rfc3339;
use ::time::{Date, OffsetDateTime, Time, UtcOffset};

/// Asia/Seoul's offset from UTC, +09:00 all year: Korea has observed no daylight saving
/// time since 1988, so a fixed offset is exact for every day a plusgate record can name
/// and no time-zone database is needed.
pub const SEOUL: UtcOffset = ::time::macros::offset!(+9);

/// The instant Asia/Seoul day `day` begins: its 00:00 at +09:00, which is 15:00 UTC the day
/// before. A Seoul day runs from there up to (not including) the next day's start.
pub fn seoul_day_start(day: Date) -> OffsetDateTime {
    day.with_time(Time::MIDNIGHT).assume_offset(SEOUL)
}

/// `t` as RFC 3339 in UTC, cut (not rounded) to milliseconds, e.g.
/// `2026-11-26T03:00:00.123Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = utc_millis(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `t` in UTC, cut (not rounded) to milliseconds: the instant [`rfc3339`] writes.
fn utc_millis(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
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

/// A point in time together with the exact RFC 3339 text it was written as.
///
/// Stored records, audit entries and signed receipts carry times as text, and their hashes
/// and signatures cover those bytes; a `Timestamp` keeps them ([`Timestamp::as_str`]), so
/// passing a time through the node's types never rewrites it. Built from the node's clock
/// ([`Timestamp::new`]), the text is what [`rfc3339`] writes; read from text
/// ([`Timestamp::parse`]), it is that text, byte for byte, whatever its offset or precision.
///
/// Timestamps compare, and are equal, by instant: `2026-11-26T12:00:00+09:00` equals
/// `2026-11-26T03:00:00Z`. Compare [`Timestamp::as_str`] where the bytes matter.
#[derive(Clone)]
pub struct Timestamp {
    instant: OffsetDateTime,
    text: String,
}

impl Timestamp {
    /// `t` as plusgate writes times: its text is [`rfc3339`]`(t)`, its instant `t` in UTC cut
    /// to milliseconds (the instant that text names).
    pub fn new(t: OffsetDateTime) -> Timestamp {
        Timestamp {
            instant: utc_millis(t),
            text: rfc3339(t),
        }
    }

    /// `text` if it is an RFC 3339 time, kept as it is; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Timestamp> {
        Some(Timestamp {
            instant: parse(text)?,
            text: text.to_owned(),
        })
    }

    /// The text, exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The instant.
    pub fn instant(&self) -> OffsetDateTime {
        self.instant
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.text
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({:?})", self.text)
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Timestamp) -> bool {
        self.instant == other.instant
    }
}

impl Eq for Timestamp {}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Timestamp) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Timestamp) -> Ordering {
        self.instant.cmp(&other.instant)
    }
}

impl Hash for Timestamp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.instant.hash(state);
    }
}

#[cfg(test)]
mod tests {
    /// A Seoul day runs 15:00 UTC the day before to 14:59:59.999 UTC: an event at 23:30
    /// UTC on day D belongs to Seoul day D+1.
    #[test]
    fn a_seoul_day_begins_at_15_00_utc_the_day_before() {
        use super::seoul_day_start as start;
        use ::time::macros::{date, datetime};
        assert_eq!(
            start(date!(2026 - 11 - 27)),
            datetime!(2026-11-26 15:00 UTC)
        );
        // (instant, the Seoul day it is on)
        for (at, day) in [
            (datetime!(2026-11-26 23:30 UTC), date!(2026 - 11 - 27)),
            (
                datetime!(2026-11-26 14:59:59.999 UTC),
                date!(2026 - 11 - 26),
            ),
            (datetime!(2026-11-26 15:00 UTC), date!(2026 - 11 - 27)),
            (datetime!(2026-12-31 15:00 UTC), date!(2027 - 01 - 01)),
        ] {
            let next = day.next_day().expect("a next day");
            assert!(start(day) <= at && at < start(next), "{at} on {day}");
        }
    }

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

    #[test]
    fn a_timestamp_from_the_clock_is_written_as_rfc3339_writes_it() {
        let t = datetime!(2026-11-26 12:00:00.123_999_999 +09:00);
        let ts = Timestamp::new(t);
        assert_eq!(ts.as_str(), rfc3339(t));
        assert_eq!(ts.as_str(), "2026-11-26T03:00:00.123Z");
        assert_eq!(ts.to_string(), ts.as_str());
        assert_eq!(Timestamp::parse(ts.as_str()), Some(ts.clone()));
        assert_eq!(ts.instant(), datetime!(2026-11-26 03:00:00.123 UTC));
    }

    #[test]
    fn a_parsed_timestamp_keeps_its_text_byte_for_byte() {
        for text in [
            "2026-11-26T12:00:00+09:00",
            "2026-11-26T03:00:00.5Z",
            "2026-11-26T03:00:00.123456Z",
        ] {
            let ts = Timestamp::parse(text).expect("RFC 3339");
            assert_eq!(ts.as_str(), text);
            assert_eq!(String::from(ts), text);
        }
        assert_eq!(Timestamp::parse("2026-11-26 03:00"), None);
        assert_eq!(Timestamp::parse(""), None);
    }

    #[test]
    fn timestamps_compare_by_instant_not_text() {
        let ts = |s: &str| Timestamp::parse(s).expect("RFC 3339");
        assert_eq!(ts("2026-11-26T12:00:00+09:00"), ts("2026-11-26T03:00:00Z"));
        assert!(ts("2026-11-26T12:00:00+09:00") < ts("2026-11-26T03:00:00.001Z"));
        assert!(ts("2026-11-26T04:00:00+01:00") < ts("2026-11-26T03:30:00Z"));
        assert!(ts("2026-11-26T03:00:00Z") > ts("2026-11-26T11:59:59+09:00"));
    }
}
