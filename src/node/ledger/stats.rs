//! The statistics the ledger keeps as it writes (`core::stats`): every group counts what
//! it did (a message taken, a first pull, a status that moves a referral, a refusal, a
//! withdrawal) into the day records it touches, writes them with the group, and publishes
//! them to the [`StatsBook`] once durable. An answer reads the book: no history is scanned.
//!
//! Invariants kept here:
//! - the book and the store's `t` records change only after the group that counted is
//!   durable, in the same write as what was counted, so the numbers match the record
//!   exactly, after a crash too. (A reader of the store can see a group's records, such as
//!   a referral's lifecycle, a moment before that group's fsync; the statistics appear
//!   with the fsync, so they may lag such a read by one group, never lead it.)
//! - the writer is the book's only writer; a reader copies out the days it needs (each an
//!   `Arc`) under a short read lock, and the writer copies a day a reader still holds
//!   before changing it (`Arc::make_mut`), so neither waits on the other's work;
//! - a referral taken before this store began counting (`stats-since`) is not counted, so
//!   its status changes move nothing and no count goes below what was counted.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use time::{Date, OffsetDateTime};

use super::group::Group;
use super::Writer;
use crate::core::stats::{
    outcome_column, seoul_day, takes_on, By, ConsentDay, Folder, Measure, PairDay, Period,
    RangeError, Raw,
};
use crate::core::time::parse as parse_rfc3339;
use crate::node::store::{Lifecycle, MessageRecord, Store, StoreError, WriteSet};

/// One day's records, as the book keeps them.
#[derive(Debug, Clone, Default)]
struct DayCells {
    pairs: BTreeMap<(String, String), PairDay>,
    consents: ConsentDay,
}

/// Everything counted, by Seoul day, in memory: loaded at start, kept by the writer.
#[derive(Debug)]
pub struct StatsBook {
    days: RwLock<BTreeMap<Date, Arc<DayCells>>>,
    since: String,
}

impl StatsBook {
    /// Loads what `store` counted; a store that never counted starts now (`now`), and the
    /// caller writes that down (`WriteSet::put_stats_since`, returned as `true`).
    pub(super) fn load(store: &Store, now: &str) -> Result<(StatsBook, bool), StoreError> {
        let (since, new) = match store.stats_since()? {
            Some(s) => (s, false),
            None => (now.to_owned(), true),
        };
        let mut days = BTreeMap::new();
        for (day, stored) in store.stats_days()? {
            days.insert(
                day,
                Arc::new(DayCells {
                    pairs: stored.pairs.into_iter().collect(),
                    consents: stored.consents,
                }),
            );
        }
        Ok((
            StatsBook {
                days: RwLock::new(days),
                since,
            },
            new,
        ))
    }

    /// When this node began counting (RFC 3339).
    pub fn since(&self) -> &str {
        &self.since
    }

    /// The numbers of the days from `from` to `to`, grouped `by`, of the pairs `keep`
    /// accepts (refusals and withdrawals are the node's own, always kept).
    pub fn fold(
        &self,
        from: Date,
        to: Date,
        by: By,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Result<(Vec<Period>, Raw), RangeError> {
        let periods = crate::core::stats::periods(from, to, by)?;
        let days: Vec<(Date, Arc<DayCells>)> = {
            let book = self.days.read().unwrap_or_else(|p| p.into_inner());
            book.range(from..=to)
                .map(|(d, c)| (*d, c.clone()))
                .collect()
        };
        let mut folder = Folder::new(periods);
        for (day, cells) in &days {
            for ((f, t), d) in &cells.pairs {
                if keep(f, t) {
                    folder.add_pair(*day, f, t, d);
                }
            }
            folder.add_consents(*day, &cells.consents);
        }
        Ok(folder.finish())
    }
}

/// A pair's day as a group changed it, and which of its records (`store::stats`: the
/// counts, and each measure's times) the group must write.
#[derive(Debug)]
struct Touched {
    day: PairDay,
    counts: bool,
    measures: Vec<Measure>,
}

/// What a group counted, before it is durable: the touched records, by day, sending and
/// receiving agency (nested, so a lookup needs no owned key).
#[derive(Debug, Default)]
pub(super) struct StatsDelta {
    pairs: BTreeMap<Date, BTreeMap<String, BTreeMap<String, Touched>>>,
    consents: BTreeMap<Date, ConsentDay>,
}

impl StatsDelta {
    /// Writes the touched records into the group's write set.
    pub(super) fn write(&self, writes: &mut WriteSet) {
        for (day, froms) in &self.pairs {
            for (from, tos) in froms {
                for (to, t) in tos {
                    if t.counts {
                        writes.put_pair_counts(*day, from, to, &t.day);
                    }
                    for m in &t.measures {
                        writes.put_pair_durations(*day, from, to, *m, t.day.durations(*m));
                    }
                }
            }
        }
        for (day, d) in &self.consents {
            writes.put_consent_day(*day, d);
        }
    }

    /// Publishes the touched records to the book (after the group is durable).
    pub(super) fn publish(self, book: &StatsBook) {
        if self.pairs.is_empty() && self.consents.is_empty() {
            return;
        }
        let mut days = book.days.write().unwrap_or_else(|p| p.into_inner());
        for (day, froms) in self.pairs {
            let cells = Arc::make_mut(days.entry(day).or_default());
            for (from, tos) in froms {
                for (to, t) in tos {
                    cells.pairs.insert((from.clone(), to), t.day);
                }
            }
        }
        for (day, d) in self.consents {
            Arc::make_mut(days.entry(day).or_default()).consents = d;
        }
    }
}

fn instant(t: &str) -> Option<OffsetDateTime> {
    parse_rfc3339(t)
}

/// Adds one to `counts[k]`, allocating the key only the first time.
fn bump(counts: &mut BTreeMap<String, u64>, k: &str) {
    match counts.get_mut(k) {
        Some(n) => *n += 1,
        None => {
            counts.insert(k.to_owned(), 1);
        }
    }
}

impl Touched {
    /// The group changed the times of `m`.
    fn mark(&mut self, m: Measure) {
        if !self.measures.contains(&m) {
            self.measures.push(m);
        }
    }
}

impl Writer {
    /// The group's copy of a pair's day, taken from the book the first time the group
    /// touches it.
    fn pair_day<'g>(&self, g: &'g mut Group, day: Date, from: &str, to: &str) -> &'g mut Touched {
        let froms = g.stats.pairs.entry(day).or_default();
        if !froms.contains_key(from) {
            froms.insert(from.to_owned(), BTreeMap::new());
        }
        let tos = froms.get_mut(from).expect("inserted above");
        if !tos.contains_key(to) {
            let days = self.stats.days.read().unwrap_or_else(|p| p.into_inner());
            let day = days
                .get(&day)
                .and_then(|c| c.pairs.get(&(from.to_owned(), to.to_owned())))
                .cloned()
                .unwrap_or_default();
            tos.insert(
                to.to_owned(),
                Touched {
                    day,
                    counts: false,
                    measures: Vec::new(),
                },
            );
        }
        tos.get_mut(to).expect("inserted above")
    }

    fn consent_day<'g>(&self, g: &'g mut Group) -> &'g mut ConsentDay {
        let day = seoul_day(g.now);
        g.stats.consents.entry(day).or_insert_with(|| {
            let days = self.stats.days.read().unwrap_or_else(|p| p.into_inner());
            days.get(&day)
                .map(|c| c.consents.clone())
                .unwrap_or_default()
        })
    }

    /// True if a message taken at `accepted_at` was counted (taken since counting began).
    fn counted(&self, accepted_at: &str) -> bool {
        !crate::core::time::is_before(accepted_at, &self.stats.since)
    }

    /// This node took a message of `message_type` from `from` for `to` at `at`.
    pub(super) fn count_message(
        &self,
        g: &mut Group,
        at: OffsetDateTime,
        from: &str,
        to: &str,
        message_type: &str,
    ) {
        let t = self.pair_day(g, seoul_day(at), from, to);
        t.counts = true;
        bump(&mut t.day.messages, message_type);
        if message_type == "referral" {
            bump(&mut t.day.outcomes, crate::core::stats::NO_ANSWER);
        }
    }

    /// A referral (`from` → `to`, taken at `accepted_at`) was pulled for the first time at
    /// `pulled_at`, here or (reported back) at the recipient's node.
    pub(super) fn count_first_pull(
        &self,
        g: &mut Group,
        message_type: &str,
        from: &str,
        to: &str,
        accepted_at: &str,
        pulled_at: &str,
    ) {
        if message_type != "referral" || !self.counted(accepted_at) {
            return;
        }
        let (Some(start), Some(end)) = (instant(accepted_at), instant(pulled_at)) else {
            return;
        };
        let t = self.pair_day(g, seoul_day(start), from, to);
        t.day.first_pull.add_between(start, end);
        t.mark(Measure::FirstPull);
    }

    /// A status moved `referral` from `old` to `new` (the lifecycle as it will be
    /// stored: `new` carries the marks of what was counted, set here).
    pub(super) fn count_status(
        &self,
        g: &mut Group,
        referral: &MessageRecord,
        old: Option<&Lifecycle>,
        new: &mut Lifecycle,
        status: &str,
        changed_at: &str,
    ) {
        if !self.counted(&referral.accepted_at) {
            return;
        }
        let Some(start) = instant(&referral.accepted_at) else {
            return;
        };
        let t = self.pair_day(g, seoul_day(start), &referral.from, &referral.to);
        let was = outcome_column(
            old.map(|l| l.status.as_str()),
            old.and_then(|l| l.outcome.as_deref()),
        );
        let now = outcome_column(Some(new.status.as_str()), new.outcome.as_deref());
        if was != now {
            t.day.move_outcome(was, now);
            t.counts = true;
        }
        if let Some(end) = instant(changed_at) {
            if takes_on(status) && new.taken_on_at.is_none() {
                t.day.acceptance.add_between(start, end);
                t.mark(Measure::Acceptance);
                new.taken_on_at = Some(changed_at.to_owned());
            }
            if status == "completed" && new.completed_at.is_none() {
                t.day.completion.add_between(start, end);
                t.mark(Measure::Completion);
                new.completed_at = Some(changed_at.to_owned());
            }
        }
    }

    /// A push was refused for consent (`reason`: the refusal's problem type).
    pub(super) fn count_refusal(&self, g: &mut Group, reason: &str) {
        *self
            .consent_day(g)
            .refusals
            .entry(reason.to_owned())
            .or_insert(0) += 1;
    }

    /// A consent was withdrawn at this node.
    pub(super) fn count_withdrawal(&self, g: &mut Group) {
        self.consent_day(g).withdrawals += 1;
    }
}
