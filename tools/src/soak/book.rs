//! The soak's books: every message id a pusher tried (with the body it sent and the inbox
//! it is for), which pushes got a 2xx, what each puller pulled and acknowledged, and every
//! violation seen on the way. Pushers and pullers write here; the final check reads it.
//!
//! What counts (docs/crash-soak.md says the same):
//! - *acknowledged push*: one attempt of that id got a 202;
//! - *delivered*: a puller pulled the id and its `POST /v1/inbox/ack` got a 200;
//! - *duplicate*: a pull returns an id that was delivered already (an acknowledged message
//!   came back), or one pull returns the same id twice;
//! - *wrong body*: a pulled message's body is not the one pushed under its id;
//! - *invented*: a pulled id no pusher ever tried;
//! - *wrong inbox*: a message pulled from the other recipient's inbox.
//!
//! Pulling an id again while it is not yet acknowledged (its lease ran out, or the node
//! was killed between the pull and the ack) is at-least-once delivery working as
//! specified, and only counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;

/// Violations quoted in full in the report (the rest only counted by kind).
const VIOLATIONS_QUOTED_MAX: usize = 50;

/// Which of the two recipients a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// An agency at node A itself (no forwarding).
    Local,
    /// An agency at node B (A's outbox and forwarder, B's receipts).
    Remote,
}

impl Route {
    /// Both, in report order.
    pub const ALL: [Route; 2] = [Route::Local, Route::Remote];
}

/// One kind of broken promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// A push acknowledged with a 202 never reached its recipient.
    Lost,
    /// An acknowledged delivery came back, or one pull held an id twice.
    Duplicate,
    /// A pulled message's body differs from the one pushed under its id.
    WrongBody,
    /// A pulled id that no pusher sent.
    Invented,
    /// A message pulled from the other recipient's inbox.
    WrongInbox,
    /// A second, different body under an acknowledged id was accepted (202), or a retry of
    /// the same body was refused as a conflict.
    Idempotency,
    /// The node answered a push, pull or ack with a status the soak does not expect.
    UnexpectedAnswer,
    /// A node exited without being killed, or did not come back after a kill.
    NodeDown,
    /// The outbox still held messages, or dead-lettered some, at the end.
    Outbox,
    /// `plusgate audit verify` failed, or a node did not stop cleanly at the end.
    Audit,
}

/// One violation: its kind and what exactly happened.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Its kind.
    pub kind: ViolationKind,
    /// What happened (ids, answers, the node's words).
    pub detail: String,
}

/// What was pushed under one id.
#[derive(Debug, Clone)]
struct Sent {
    route: Route,
    /// The body's marker (a free-text field unique to this id and body).
    marker: String,
    /// One attempt got a 202.
    acked: bool,
}

/// The books themselves, behind one lock (a few thousand updates a second at most).
#[derive(Debug, Default)]
struct Books {
    sent: HashMap<String, Sent>,
    /// Times each id was delivered (pulled, then acknowledged with a 200).
    delivered: HashMap<String, u32>,
    /// Times each id was pulled.
    pulled: HashMap<String, u32>,
    /// Ids whose acknowledgement got no answer (the node died with it in flight), with the
    /// key to acknowledge them by (`<from>/<id>`).
    ack_unanswered: HashMap<String, String>,
    /// Ids found acknowledged only by the recheck at the end.
    acked_by_recheck: u64,
    violations: Vec<Violation>,
    violation_counts: BTreeMap<ViolationKind, u64>,
}

/// The soak's books, shared by its tasks.
#[derive(Debug, Default)]
pub struct Book {
    books: Mutex<Books>,
}

/// A pulled message as the books need it.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Its id.
    pub id: String,
    /// Its body's marker (`None` if the field is missing).
    pub marker: Option<String>,
}

impl Book {
    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        // A task that panicked while holding the lock left whole entries behind (every
        // update is one insert), so the books are still good to read.
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes an id about to be pushed for the first time, with its body's marker. Called
    /// before the request leaves, so a message that arrives is always known.
    pub fn sending(&self, id: &str, route: Route, marker: &str) {
        self.lock().sent.insert(
            id.to_owned(),
            Sent {
                route,
                marker: marker.to_owned(),
                acked: false,
            },
        );
    }

    /// Notes that a push of `id` got a 202.
    pub fn acked(&self, id: &str) {
        if let Some(sent) = self.lock().sent.get_mut(id) {
            sent.acked = true;
        }
    }

    /// Records one pull of `inbox` (whose messages were all pulled together) and checks
    /// each message against what was pushed and delivered.
    pub fn pulled(&self, inbox: Route, page: &[Pulled]) {
        let mut books = self.lock();
        let mut in_page = HashSet::new();
        for message in page {
            let id = &message.id;
            *books.pulled.entry(id.clone()).or_default() += 1;
            if !in_page.insert(id.as_str()) {
                books.violate(
                    ViolationKind::Duplicate,
                    format!("one pull of the {inbox:?} inbox returned {id} twice"),
                );
            }
            if let Some(times) = books.delivered.get(id).copied() {
                books.violate(
                    ViolationKind::Duplicate,
                    format!("{id} was pulled again after {times} acknowledged delivery"),
                );
            }
            let Some(sent) = books.sent.get(id).cloned() else {
                books.violate(
                    ViolationKind::Invented,
                    format!("{id} was pulled from the {inbox:?} inbox but never pushed"),
                );
                continue;
            };
            if sent.route != inbox {
                books.violate(
                    ViolationKind::WrongInbox,
                    format!(
                        "{id}, pushed for the {:?} inbox, came from the {inbox:?} inbox",
                        sent.route
                    ),
                );
            }
            if message.marker.as_deref() != Some(sent.marker.as_str()) {
                books.violate(
                    ViolationKind::WrongBody,
                    format!(
                        "{id} arrived with body marker {:?}, pushed with {:?}",
                        message.marker, sent.marker
                    ),
                );
            }
        }
    }

    /// Notes that an acknowledgement of `ids` got a 200: each is delivered.
    pub fn delivered(&self, ids: &[String]) {
        let mut books = self.lock();
        for id in ids {
            *books.delivered.entry(id.clone()).or_default() += 1;
        }
    }

    /// Notes that an acknowledgement of `keys` (`<from>/<id>`, in the order of `ids`) got
    /// no answer: the node may or may not have recorded it.
    pub fn ack_unanswered(&self, ids: &[String], keys: &[String]) {
        let mut books = self.lock();
        for (id, key) in ids.iter().zip(keys) {
            books.ack_unanswered.insert(id.clone(), key.clone());
        }
    }

    /// Acknowledged pushes not delivered whose acknowledgement went unanswered: (route, id,
    /// key to acknowledge by).
    pub fn undelivered_after_unanswered_ack(&self) -> Vec<(Route, String, String)> {
        let books = self.lock();
        let mut out: Vec<_> = books
            .ack_unanswered
            .iter()
            .filter(|(id, _)| !books.delivered.contains_key(*id))
            .filter_map(|(id, key)| {
                let sent = books.sent.get(id)?;
                sent.acked.then(|| (sent.route, id.clone(), key.clone()))
            })
            .collect();
        out.sort();
        out
    }

    /// Notes that the recheck at the end found `id` acknowledged (its earlier
    /// acknowledgement was recorded, only the answer was lost): it is delivered.
    pub fn acked_by_recheck(&self, id: &str) {
        let mut books = self.lock();
        books.acked_by_recheck += 1;
        *books.delivered.entry(id.to_owned()).or_default() += 1;
    }

    /// Records a violation.
    pub fn violate(&self, kind: ViolationKind, detail: impl Into<String>) {
        self.lock().violate(kind, detail.into());
    }

    /// Acknowledged pushes not delivered yet, leaving out those whose acknowledgement went
    /// unanswered (they may be delivered already: the end asks the node).
    pub fn waiting(&self) -> usize {
        let books = self.lock();
        books
            .sent
            .iter()
            .filter(|(id, sent)| {
                sent.acked
                    && !books.delivered.contains_key(*id)
                    && !books.ack_unanswered.contains_key(*id)
            })
            .count()
    }

    /// Acknowledged pushes not delivered (yet), by route, sorted.
    pub fn undelivered(&self) -> BTreeMap<Route, Vec<String>> {
        let books = self.lock();
        let mut out: BTreeMap<Route, Vec<String>> = BTreeMap::new();
        for (id, sent) in &books.sent {
            if sent.acked && !books.delivered.contains_key(id) {
                out.entry(sent.route).or_default().push(id.clone());
            }
        }
        for ids in out.values_mut() {
            ids.sort();
        }
        out
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        let books = self.lock();
        let mut tally = Tally::default();
        for (id, sent) in &books.sent {
            let route = match sent.route {
                Route::Local => &mut tally.local,
                Route::Remote => &mut tally.remote,
            };
            route.pushed_ids += 1;
            route.acked += u64::from(sent.acked);
            let delivered = books.delivered.get(id).copied().unwrap_or(0);
            if delivered > 0 {
                route.delivered += 1;
                if !sent.acked {
                    route.delivered_unacked += 1;
                }
            }
            let pulled = books.pulled.get(id).copied().unwrap_or(0);
            route.pulled_again += u64::from(pulled.saturating_sub(1));
        }
        tally.acked_by_recheck = books.acked_by_recheck;
        tally.violations = books.violation_counts.clone();
        tally
    }

    /// The first violations, in the order they were seen.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }
}

impl Books {
    fn violate(&mut self, kind: ViolationKind, detail: String) {
        *self.violation_counts.entry(kind).or_default() += 1;
        if self.violations.len() < VIOLATIONS_QUOTED_MAX {
            eprintln!("soak: VIOLATION {kind:?}: {detail}");
            self.violations.push(Violation { kind, detail });
        }
    }
}

/// Counts for one route.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RouteTally {
    /// Distinct ids pushed (tried at least once).
    pub pushed_ids: u64,
    /// Ids with a 202.
    pub acked: u64,
    /// Ids delivered (pulled and acknowledged).
    pub delivered: u64,
    /// Of those, ids whose push never got a 202 (the node stored it, then died before
    /// answering, and the id was not retried): allowed, and counted.
    pub delivered_unacked: u64,
    /// Pulls of an id beyond its first (leases that ran out or died with a killed node
    /// before the ack): at-least-once pulling, allowed.
    pub pulled_again: u64,
}

/// The books' counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Messages for the agency at A.
    pub local: RouteTally,
    /// Messages for the agency at B.
    pub remote: RouteTally,
    /// Deliveries whose acknowledgement's answer was lost, found acknowledged at the end.
    pub acked_by_recheck: u64,
    /// Violations by kind.
    pub violations: BTreeMap<ViolationKind, u64>,
}

impl Tally {
    /// Ids with a 202, both routes.
    pub fn acked(&self) -> u64 {
        self.local.acked + self.remote.acked
    }

    /// Ids delivered, both routes.
    pub fn delivered(&self) -> u64 {
        self.local.delivered + self.remote.delivered
    }

    /// Violations of `kind`.
    pub fn count(&self, kind: ViolationKind) -> u64 {
        self.violations.get(&kind).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[(&str, &str)]) -> Vec<Pulled> {
        ids.iter()
            .map(|(id, marker)| Pulled {
                id: (*id).to_owned(),
                marker: Some((*marker).to_owned()),
            })
            .collect()
    }

    #[test]
    fn pulls_again_before_the_ack_are_allowed_and_after_it_are_duplicates() {
        let book = Book::default();
        book.sending("a", Route::Local, "ma");
        book.acked("a");
        book.pulled(Route::Local, &page(&[("a", "ma")]));
        book.pulled(Route::Local, &page(&[("a", "ma")]));
        assert_eq!(book.tally().count(ViolationKind::Duplicate), 0);
        assert_eq!(book.tally().local.pulled_again, 1);
        book.delivered(&["a".to_owned()]);
        assert!(book.undelivered().is_empty());
        book.pulled(Route::Local, &page(&[("a", "ma")]));
        assert_eq!(book.tally().count(ViolationKind::Duplicate), 1);
    }

    #[test]
    fn every_kind_of_bad_pull_is_caught() {
        let book = Book::default();
        book.sending("a", Route::Local, "ma");
        book.sending("b", Route::Remote, "mb");
        book.pulled(Route::Local, &page(&[("a", "other")]));
        book.pulled(Route::Local, &page(&[("b", "mb")]));
        book.pulled(Route::Remote, &page(&[("x", "mx")]));
        book.pulled(Route::Remote, &page(&[("b", "mb"), ("b", "mb")]));
        let tally = book.tally();
        assert_eq!(tally.count(ViolationKind::WrongBody), 1);
        assert_eq!(tally.count(ViolationKind::WrongInbox), 1);
        assert_eq!(tally.count(ViolationKind::Invented), 1);
        assert_eq!(tally.count(ViolationKind::Duplicate), 1);
    }

    #[test]
    fn an_acked_push_never_delivered_is_undelivered_and_an_unacked_one_is_not() {
        let book = Book::default();
        book.sending("a", Route::Remote, "ma");
        book.sending("b", Route::Remote, "mb");
        book.acked("a");
        assert_eq!(
            book.undelivered().get(&Route::Remote),
            Some(&vec!["a".to_owned()])
        );
        book.delivered(&["b".to_owned()]);
        assert_eq!(book.tally().remote.delivered_unacked, 1);
    }
}
