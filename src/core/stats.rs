//! Referral statistics, pure: what a node counts, per Asia/Seoul day and agency pair, and
//! how a range of days becomes the numbers the agencies plan with.
//!
//! - [`PairDay`]: everything one node knows about the messages one agency sent another on
//!   one day: how many of each type; what became of the referrals among them (their
//!   current status, [`OUTCOME_COLUMNS`]); how long they took to be pulled, taken on and
//!   completed ([`Durations`]). [`ConsentDay`]: the pushes refused for consent, by reason,
//!   and the consents withdrawn that day. The ledger keeps these up to date as it writes
//!   (`node::ledger::stats`), so an answer never scans history.
//! - [`Raw`]: the days of a range folded into periods ([`Period`]), unprotected: what a
//!   node computes for itself and what it sends, signed, to another node that merges the
//!   federation's ([`Raw::merge`]).
//! - [`report`]: a `Raw` as the agencies see it, every small count suppressed
//!   ([`suppress`]), as JSON or CSV.
//!
//! Definitions (also in the API reference):
//! - a message belongs to the Seoul day its node took it (a push: the sender's node; a
//!   hand-over: the receiving node's time); everything measured about a referral is
//!   counted on its day, so a period's numbers are about the referrals *sent* in it;
//! - a referral is *taken on* at its first status of `accepted`, `in-progress`, `on-hold`
//!   or `completed`, and completed at its first `completed`; both times are the status's
//!   `changed_at` (the handling agency's word, which the lifecycle orders by too); time to
//!   first pull is the node's (the recipient's node, reported back to the sender's);
//! - durations are whole seconds cut to four significant digits (at most 0.1 % short,
//!   [`quantize`]), so a day's record stays small whatever the volume; every band edge
//!   of [`ACCEPTANCE_BANDS`] has four digits, so cutting never moves a time into another
//!   band; quantiles are nearest-rank: the p-quantile of n values is the ⌈p·n⌉-th
//!   smallest.

pub mod report;
pub mod signed;
pub mod suppress;

use std::collections::BTreeMap;

use ::time::{Date, Duration, Month, OffsetDateTime};
use serde::{Deserialize, Serialize};

use crate::core::time::SEOUL;

/// What became of a referral, as a column of the outcomes table: its current status, a
/// completion by its outcome code. `no-answer` is a referral with no status yet, or only
/// `requested`.
pub const OUTCOME_COLUMNS: [&str; 15] = [
    "no-answer",
    "accepted",
    "declined",
    "in-progress",
    "on-hold",
    "completed:employed",
    "completed:training-enrolled",
    "completed:benefit-granted",
    "completed:loan-approved",
    "completed:debt-restructured",
    "completed:treatment-started",
    "completed:service-provided",
    "completed:no-longer-needed",
    "completed:other",
    "cancelled",
];

/// The column of a referral with no status yet.
pub const NO_ANSWER: &str = "no-answer";

/// Bands of the time to acceptance: (column, upper bound in seconds, exclusive).
pub const ACCEPTANCE_BANDS: [(&str, u64); 6] = [
    ("under-1h", 3_600),
    ("1h-1d", 86_400),
    ("1d-3d", 3 * 86_400),
    ("3d-7d", 7 * 86_400),
    ("7d-30d", 30 * 86_400),
    ("30d-plus", u64::MAX),
];

/// Most periods one answer covers (a year and a month by day; years by week or month).
pub const PERIODS_MAX: usize = 400;

/// The outcome column of a referral whose latest status is `status` (with outcome `code`
/// when completed); `None`: no status yet.
pub fn outcome_column(status: Option<&str>, code: Option<&str>) -> &'static str {
    match status {
        Some("completed") => {
            let wanted = format!("completed:{}", code.unwrap_or("other"));
            OUTCOME_COLUMNS
                .iter()
                .find(|c| **c == wanted)
                .copied()
                .unwrap_or("completed:other")
        }
        Some(s) => OUTCOME_COLUMNS
            .iter()
            .find(|c| **c == s)
            .copied()
            .unwrap_or(NO_ANSWER),
        None => NO_ANSWER,
    }
}

/// True for a status that says the handling agency took the referral on.
pub fn takes_on(status: &str) -> bool {
    matches!(status, "accepted" | "in-progress" | "on-hold" | "completed")
}

/// `seconds` cut (not rounded) to four significant digits: exact below 10,000 s (2 h 46
/// min), to 10 s below 100,000 s (27 h), and so on (at most 0.1 % short). Cut rather than
/// rounded so a time never crosses up into the next band.
pub fn quantize(seconds: u64) -> u64 {
    let mut unit = 1u64;
    while seconds / unit >= 10_000 {
        unit *= 10;
    }
    seconds / unit * unit
}

/// Durations as a sorted list of (seconds, how many), seconds [`quantize`]d.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Durations(Vec<(u64, u64)>);

impl Durations {
    /// Counts one duration from `start` to `end` (zero if `end` is before `start`: a
    /// status can claim a time before the referral's node took it).
    pub fn add_between(&mut self, start: OffsetDateTime, end: OffsetDateTime) {
        self.add((end - start).whole_seconds().max(0) as u64);
    }

    /// Counts one duration of `seconds`.
    pub fn add(&mut self, seconds: u64) {
        let v = quantize(seconds);
        match self.0.binary_search_by_key(&v, |(s, _)| *s) {
            Ok(i) => self.0[i].1 += 1,
            Err(i) => self.0.insert(i, (v, 1)),
        }
    }

    /// How many durations.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// True if none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The nearest-rank quantile `num/den` (the ⌈n·num/den⌉-th smallest), `None` if empty.
    pub fn quantile(&self, num: u64, den: u64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (n * num).div_ceil(den).max(1);
        let mut seen = 0;
        for (v, k) in &self.0 {
            seen += k;
            if seen >= rank {
                return Some(*v);
            }
        }
        self.0.last().map(|(v, _)| *v)
    }

    /// How many fall into each of `bands` (upper bounds, exclusive, ascending).
    pub fn bands(&self, bands: &[(&str, u64)]) -> Vec<u64> {
        let mut out = vec![0; bands.len()];
        for (v, n) in &self.0 {
            if let Some(i) = bands.iter().position(|(_, max)| v < max) {
                out[i] += n;
            }
        }
        out
    }

    /// Appends this list's entries to `acc`, unsorted; [`Durations::from_acc`] sorts and
    /// adds up equal values once at the end (cheaper than a map for a year of days).
    fn pour_into(&self, acc: &mut Vec<(u64, u64)>) {
        acc.extend_from_slice(&self.0);
    }

    fn from_acc(mut acc: Vec<(u64, u64)>) -> Durations {
        acc.sort_unstable_by_key(|(v, _)| *v);
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(acc.len());
        for (v, n) in acc {
            match out.last_mut() {
                Some((last, k)) if *last == v => *k += n,
                _ => out.push((v, n)),
            }
        }
        Durations(out)
    }

    /// Both together.
    pub fn merge(&mut self, other: &Durations) {
        let mut acc = Vec::with_capacity(self.0.len() + other.0.len());
        self.pour_into(&mut acc);
        other.pour_into(&mut acc);
        *self = Durations::from_acc(acc);
    }
}

/// What a node counted on one Seoul day about the messages one agency sent another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairDay {
    /// Messages, by type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub messages: BTreeMap<String, u64>,
    /// The referrals among them, by [`outcome_column`] of their current status.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<String, u64>,
    /// Referrals' times from their node taking them to their first pull.
    #[serde(default, skip_serializing_if = "Durations::is_empty")]
    pub first_pull: Durations,
    /// ... to being taken on.
    #[serde(default, skip_serializing_if = "Durations::is_empty")]
    pub acceptance: Durations,
    /// ... to completion.
    #[serde(default, skip_serializing_if = "Durations::is_empty")]
    pub completion: Durations,
}

impl PairDay {
    /// A referral moves from outcome column `old` to `new`.
    pub fn move_outcome(&mut self, old: &str, new: &str) {
        if old == new {
            return;
        }
        if let Some(n) = self.outcomes.get_mut(old) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.outcomes.remove(old);
            }
        }
        *self.outcomes.entry(new.to_owned()).or_insert(0) += 1;
    }
}

/// One of a referral's measured times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// From its node taking it to its first pull.
    FirstPull,
    /// ... to being taken on.
    Acceptance,
    /// ... to completion.
    Completion,
}

impl Measure {
    /// Every measure.
    pub const ALL: [Measure; 3] = [Measure::FirstPull, Measure::Acceptance, Measure::Completion];
}

impl PairDay {
    /// The durations of `m`.
    pub fn durations(&self, m: Measure) -> &Durations {
        match m {
            Measure::FirstPull => &self.first_pull,
            Measure::Acceptance => &self.acceptance,
            Measure::Completion => &self.completion,
        }
    }

    /// The durations of `m`, to change.
    pub fn durations_mut(&mut self, m: Measure) -> &mut Durations {
        match m {
            Measure::FirstPull => &mut self.first_pull,
            Measure::Acceptance => &mut self.acceptance,
            Measure::Completion => &mut self.completion,
        }
    }

    /// The counts alone (messages and outcomes), without the times.
    pub fn counts(&self) -> PairDay {
        PairDay {
            messages: self.messages.clone(),
            outcomes: self.outcomes.clone(),
            ..PairDay::default()
        }
    }
}

/// What a node counted on one Seoul day about consents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentDay {
    /// Pushes refused for consent, by the refusal's problem type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refusals: BTreeMap<String, u64>,
    /// Consents withdrawn at this node.
    #[serde(default)]
    pub withdrawals: u64,
}

/// The Asia/Seoul calendar day of instant `t`.
pub fn seoul_day(t: OffsetDateTime) -> Date {
    t.to_offset(SEOUL).date()
}

/// How an answer groups days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// Calendar months.
    Month,
    /// ISO weeks (Monday to Sunday).
    Week,
    /// Days.
    Day,
}

impl By {
    /// Parses `month`, `week` or `day`.
    pub fn parse(s: &str) -> Option<By> {
        match s {
            "month" => Some(By::Month),
            "week" => Some(By::Week),
            "day" => Some(By::Day),
            _ => None,
        }
    }
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            By::Month => "month",
            By::Week => "week",
            By::Day => "day",
        }
    }
}

/// One column of a time series: a label and the days it covers (clipped to the range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// `2026-01` (month), `2026-W05` (ISO week), `2026-01-05` (day).
    pub label: String,
    /// First day.
    #[serde(with = "day_text")]
    pub from: Date,
    /// Last day.
    #[serde(with = "day_text")]
    pub to: Date,
}

/// A range of days that cannot be answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    /// `to` before `from`.
    #[error("`to` ({to}) is before `from` ({from})")]
    Backwards {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// More periods than [`PERIODS_MAX`].
    #[error("the range has {0} periods; at most {PERIODS_MAX} fit one answer (choose a coarser `by` or a shorter range)")]
    TooLong(usize),
}

/// The periods from `from` to `to` (both included), grouped `by`.
pub fn periods(from: Date, to: Date, by: By) -> Result<Vec<Period>, RangeError> {
    if to < from {
        return Err(RangeError::Backwards {
            from: day_text::format(from),
            to: day_text::format(to),
        });
    }
    let mut out = Vec::new();
    let mut start = from;
    loop {
        let natural_end = match by {
            By::Day => start,
            By::Week => {
                start + Duration::days(6 - i64::from(start.weekday().number_days_from_monday()))
            }
            By::Month => last_of_month(start),
        };
        let end = natural_end.min(to);
        let label = match by {
            By::Day => day_text::format(start),
            By::Week => {
                let (y, w, _) = start.to_iso_week_date();
                format!("{y}-W{w:02}")
            }
            By::Month => format!("{}-{:02}", start.year(), u8::from(start.month())),
        };
        out.push(Period {
            label,
            from: start,
            to: end,
        });
        if out.len() > PERIODS_MAX {
            return Err(RangeError::TooLong(count_periods(from, to, by)));
        }
        match end.next_day() {
            Some(next) if end < to => start = next,
            _ => break,
        }
    }
    Ok(out)
}

fn count_periods(from: Date, to: Date, by: By) -> usize {
    let days = (to - from).whole_days() as usize + 1;
    match by {
        By::Day => days,
        By::Week => days / 7 + 1,
        By::Month => days / 28,
    }
}

fn last_of_month(d: Date) -> Date {
    let next = match d.month() {
        Month::December => Date::from_calendar_date(d.year() + 1, Month::January, 1),
        m => Date::from_calendar_date(d.year(), m.next(), 1),
    };
    next.ok()
        .and_then(|n| n.previous_day())
        .unwrap_or(Date::MAX)
}

/// `YYYY-MM-DD` dates in JSON.
pub mod day_text {
    use ::time::Date;
    use serde::{Deserialize, Deserializer, Serializer};

    /// The date as `YYYY-MM-DD`.
    pub fn format(d: Date) -> String {
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }

    /// A `YYYY-MM-DD` date.
    pub fn parse(s: &str) -> Option<Date> {
        let fmt = ::time::macros::format_description!("[year]-[month]-[day]");
        (s.len() == 10).then(|| Date::parse(s, &fmt).ok()).flatten()
    }

    pub(crate) fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not YYYY-MM-DD")))
    }
}

/// A range's numbers, per period and agency pair, before any suppression: what a node
/// computes from its days and what it sends (signed) to a node merging the federation's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Agency pairs, by (from, to).
    pub pairs: Vec<RawPair>,
    /// Refusals by reason: one count per period.
    pub refusals: BTreeMap<String, Vec<u64>>,
    /// Withdrawals: one count per period.
    pub withdrawals: Vec<u64>,
}

/// One agency pair's numbers over a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPair {
    /// Sending agency.
    pub from: String,
    /// Receiving agency.
    pub to: String,
    /// Messages by type: one count per period.
    pub messages: BTreeMap<String, Vec<u64>>,
    /// Referrals by outcome column (the whole range).
    pub outcomes: BTreeMap<String, u64>,
    /// Time to first pull.
    pub first_pull: Durations,
    /// Time to being taken on.
    pub acceptance: Durations,
    /// Time to completion.
    pub completion: Durations,
}

/// Folds days into a [`Raw`] for given periods.
#[derive(Debug)]
pub struct Folder {
    periods: Vec<Period>,
    pairs: BTreeMap<(String, String), PairAcc>,
    refusals: BTreeMap<String, Vec<u64>>,
    withdrawals: Vec<u64>,
}

#[derive(Debug, Default)]
struct PairAcc {
    messages: BTreeMap<String, Vec<u64>>,
    outcomes: BTreeMap<String, u64>,
    first_pull: Vec<(u64, u64)>,
    acceptance: Vec<(u64, u64)>,
    completion: Vec<(u64, u64)>,
}

impl Folder {
    /// An empty fold over `periods` (see [`periods`]).
    pub fn new(periods: Vec<Period>) -> Folder {
        let n = periods.len();
        Folder {
            periods,
            pairs: BTreeMap::new(),
            refusals: BTreeMap::new(),
            withdrawals: vec![0; n],
        }
    }

    /// The first day covered.
    pub fn first_day(&self) -> Option<Date> {
        self.periods.first().map(|p| p.from)
    }

    /// The last day covered.
    pub fn last_day(&self) -> Option<Date> {
        self.periods.last().map(|p| p.to)
    }

    fn period_of(&self, day: Date) -> Option<usize> {
        let i = self.periods.partition_point(|p| p.to < day);
        (i < self.periods.len() && self.periods[i].from <= day).then_some(i)
    }

    /// Adds one pair's day. Days outside the periods are ignored.
    pub fn add_pair(&mut self, day: Date, from: &str, to: &str, d: &PairDay) {
        let Some(p) = self.period_of(day) else { return };
        let n = self.periods.len();
        let acc = self
            .pairs
            .entry((from.to_owned(), to.to_owned()))
            .or_default();
        for (t, k) in &d.messages {
            acc.messages.entry(t.clone()).or_insert_with(|| vec![0; n])[p] += k;
        }
        for (c, k) in &d.outcomes {
            *acc.outcomes.entry(c.clone()).or_insert(0) += k;
        }
        d.first_pull.pour_into(&mut acc.first_pull);
        d.acceptance.pour_into(&mut acc.acceptance);
        d.completion.pour_into(&mut acc.completion);
    }

    /// Adds one consent day.
    pub fn add_consents(&mut self, day: Date, d: &ConsentDay) {
        let Some(p) = self.period_of(day) else { return };
        let n = self.periods.len();
        for (reason, k) in &d.refusals {
            self.refusals
                .entry(reason.clone())
                .or_insert_with(|| vec![0; n])[p] += k;
        }
        self.withdrawals[p] += d.withdrawals;
    }

    /// The periods and the numbers.
    pub fn finish(self) -> (Vec<Period>, Raw) {
        let pairs = self
            .pairs
            .into_iter()
            .map(|((from, to), a)| RawPair {
                from,
                to,
                messages: a.messages,
                outcomes: a.outcomes,
                first_pull: Durations::from_acc(a.first_pull),
                acceptance: Durations::from_acc(a.acceptance),
                completion: Durations::from_acc(a.completion),
            })
            .collect();
        (
            self.periods,
            Raw {
                pairs,
                refusals: self.refusals,
                withdrawals: self.withdrawals,
            },
        )
    }
}

/// A count vector of another length than the periods'.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} has {got} periods where {want} were asked for")]
pub struct ShapeError {
    what: String,
    got: usize,
    want: usize,
}

impl Raw {
    /// Checks every count vector has `periods` entries (an answer from another node).
    pub fn check_shape(&self, periods: usize) -> Result<(), ShapeError> {
        let bad = |what: String, got: usize| {
            (got != periods).then_some(ShapeError {
                what,
                got,
                want: periods,
            })
        };
        if let Some(e) = bad("withdrawals".into(), self.withdrawals.len()) {
            return Err(e);
        }
        for (r, v) in &self.refusals {
            if let Some(e) = bad(format!("refusals {r}"), v.len()) {
                return Err(e);
            }
        }
        for p in &self.pairs {
            for (t, v) in &p.messages {
                if let Some(e) = bad(format!("messages {}>{} {t}", p.from, p.to), v.len()) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Adds `other` (same periods; check with [`Raw::check_shape`]) to this.
    pub fn merge(&mut self, other: Raw) {
        let n = self.withdrawals.len().max(other.withdrawals.len());
        let add = |a: &mut Vec<u64>, b: &[u64]| {
            a.resize(n, 0);
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        };
        add(&mut self.withdrawals, &other.withdrawals);
        for (r, v) in other.refusals {
            add(self.refusals.entry(r).or_default(), &v);
        }
        let mut pairs: BTreeMap<(String, String), RawPair> = std::mem::take(&mut self.pairs)
            .into_iter()
            .map(|p| ((p.from.clone(), p.to.clone()), p))
            .collect();
        for p in other.pairs {
            let mine = pairs
                .entry((p.from.clone(), p.to.clone()))
                .or_insert_with(|| RawPair {
                    from: p.from.clone(),
                    to: p.to.clone(),
                    ..RawPair::default()
                });
            for (t, v) in p.messages {
                add(mine.messages.entry(t).or_default(), &v);
            }
            for (c, k) in p.outcomes {
                *mine.outcomes.entry(c).or_insert(0) += k;
            }
            mine.first_pull.merge(&p.first_pull);
            mine.acceptance.merge(&p.acceptance);
            mine.completion.merge(&p.completion);
        }
        self.pairs = pairs.into_values().collect();
    }
}

#[cfg(test)]
mod tests;
