//! The statistics family (`t`): what the ledger counted per Asia/Seoul day, one record per
//! (day, agency pair) and one per day for consents (see `core::stats`), and the setting
//! `stats-since`, the time this store began counting.
//!
//! Keys: `t`, the day as a big-endian day number (so a scan returns days in order), then
//! `<from> NUL <to>` for a pair's counts (messages by type, referrals by outcome),
//! `<from> NUL <to> NUL <p|a|c>` for its times to first pull, acceptance and completion, or
//! a lone NUL for the consent record (an agency id never starts with NUL, so none meet).
//!
//! A pair's day is split so that what changes most often stays small: every push rewrites
//! its day's counts record (a few numbers), while a day's list of times, which grows with
//! the referrals measured, is rewritten only by the pull or status that adds to it.
//!
//! The family is deferred (`super::deferred`): a group commit rewrites the records it
//! touched (today's, and the day of each referral whose status changed), and the overlay
//! keeps only the last write of each, so a busy day costs one small journal entry per
//! group, not one tree insert per message.

use ::time::Date;

use std::collections::BTreeMap;

use super::keys::{key, SETTING, STATS};
use super::{decode_at, Store, StoreError, WriteSet};
use crate::core::stats::{ConsentDay, Durations, Measure, PairDay};

const SINCE: &[u8] = b"stats-since";

/// The day number of `d`: its Julian day, positive for every date a record can name.
fn day_number(d: Date) -> u32 {
    d.to_julian_day().max(0) as u32
}

fn day_of(n: u32) -> Option<Date> {
    Date::from_julian_day(n as i32).ok()
}

fn pair_key(day: Date, from: &str, to: &str) -> Vec<u8> {
    let mut rest = day_number(day).to_be_bytes().to_vec();
    rest.extend_from_slice(from.as_bytes());
    rest.push(0);
    rest.extend_from_slice(to.as_bytes());
    key(STATS, &rest)
}

fn measure_byte(m: Measure) -> u8 {
    match m {
        Measure::FirstPull => b'p',
        Measure::Acceptance => b'a',
        Measure::Completion => b'c',
    }
}

fn durations_key(day: Date, from: &str, to: &str, m: Measure) -> Vec<u8> {
    let mut k = pair_key(day, from, to);
    k.push(0);
    k.push(measure_byte(m));
    k
}

fn consent_key(day: Date) -> Vec<u8> {
    let mut rest = day_number(day).to_be_bytes().to_vec();
    rest.push(0);
    key(STATS, &rest)
}

/// One stored day: its pairs and its consent record.
#[derive(Debug, Default)]
pub struct StoredDay {
    /// (from, to) and what was counted.
    pub pairs: Vec<((String, String), PairDay)>,
    /// Refusals and withdrawals.
    pub consents: ConsentDay,
}

impl Store {
    /// Every counted day, oldest first.
    pub fn stats_days(&self) -> Result<Vec<(Date, StoredDay)>, StoreError> {
        let mut out: Vec<(Date, StoredDay)> = Vec::new();
        // The day being read: its pairs, put together from their records.
        let mut pairs: BTreeMap<(String, String), PairDay> = BTreeMap::new();
        let finish = |out: &mut Vec<(Date, StoredDay)>, pairs: &mut BTreeMap<_, _>| {
            if let Some((_, slot)) = out.last_mut() {
                slot.pairs = std::mem::take(pairs).into_iter().collect();
            }
        };
        for item in self.scan_prefix(vec![STATS]) {
            let (k, v) = item?;
            let corrupt = |why: &str| StoreError::Corrupt {
                family: "stats",
                key: format!("{:02x?}", &k[1..]),
                source: super::RecordError::Body(why.to_owned()),
            };
            let n = k
                .get(1..5)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| corrupt("key names no day"))?;
            let day = day_of(n).ok_or_else(|| corrupt("key names no valid day"))?;
            if out.last().is_none_or(|(d, _)| *d != day) {
                finish(&mut out, &mut pairs);
                out.push((day, StoredDay::default()));
            }
            let slot = &mut out.last_mut().expect("pushed above").1;
            let rest = &k[5..];
            if rest == [0] {
                slot.consents = decode_at("stats", &k, &v)?;
            } else {
                let parts: Vec<&[u8]> = rest.split(|b| *b == 0).collect();
                let text =
                    |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt("not UTF-8"));
                let (from, to, measure) = match parts.as_slice() {
                    [from, to] => (from, to, None),
                    [from, to, [m]] => (from, to, Some(*m)),
                    _ => return Err(corrupt("key names no agency pair")),
                };
                let pair = pairs.entry((text(from)?, text(to)?)).or_default();
                match measure {
                    None => {
                        let counts: PairDay = decode_at("stats", &k, &v)?;
                        pair.messages = counts.messages;
                        pair.outcomes = counts.outcomes;
                    }
                    Some(m) => {
                        let m = Measure::ALL
                            .into_iter()
                            .find(|x| measure_byte(*x) == m)
                            .ok_or_else(|| corrupt("key names no measure"))?;
                        *pair.durations_mut(m) = decode_at::<Durations>("stats", &k, &v)?;
                    }
                }
            }
        }
        finish(&mut out, &mut pairs);
        Ok(out)
    }

    /// When this store began counting, if it has.
    pub fn stats_since(&self) -> Result<Option<String>, StoreError> {
        match self.db.get(key(SETTING, SINCE))? {
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|_| StoreError::Corrupt {
                    family: "setting",
                    key: "stats-since".into(),
                    source: super::RecordError::Body("not UTF-8".into()),
                }),
            None => Ok(None),
        }
    }
}

impl WriteSet {
    /// What was counted on `day` about messages from `from` to `to`: its counts (`d`'s
    /// times are left out, see [`WriteSet::put_pair_durations`]).
    pub fn put_pair_counts(&mut self, day: Date, from: &str, to: &str, d: &PairDay) {
        self.put(pair_key(day, from, to), super::record::encode(&d.counts()));
    }

    /// The times `m` measured of the referrals `from` sent `to` on `day`.
    pub fn put_pair_durations(
        &mut self,
        day: Date,
        from: &str,
        to: &str,
        m: Measure,
        d: &Durations,
    ) {
        self.put(durations_key(day, from, to, m), super::record::encode(d));
    }

    /// All of a pair's day: its counts and its times.
    pub fn put_pair_day(&mut self, day: Date, from: &str, to: &str, d: &PairDay) {
        self.put_pair_counts(day, from, to, d);
        for m in Measure::ALL {
            self.put_pair_durations(day, from, to, m, d.durations(m));
        }
    }

    /// What was counted on `day` about consents.
    pub fn put_consent_day(&mut self, day: Date, d: &ConsentDay) {
        self.put(consent_key(day), super::record::encode(d));
    }

    /// The store counts from `at` on.
    pub fn put_stats_since(&mut self, at: &str) {
        self.put(key(SETTING, SINCE), at.as_bytes().to_vec());
    }
}
