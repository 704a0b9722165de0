//! Unit tests of `core::audit::checkpoint`.

use std::collections::BTreeMap;

use super::*;
use crate::core::audit::test_event as event;
use crate::core::keys::SigningKey;

fn key() -> SigningKey {
    SigningKey::generate().expect("key").0
}

/// A node that appends entries and signs chained checkpoints, as the ledger does. Cloning
/// it forks it: both clones go on from the same chain and the same last checkpoint.
#[derive(Clone)]
struct Signer<'k> {
    key: &'k SigningKey,
    head: Head,
    last: Option<Checkpoint>,
    /// Distinguishes the entries of forks that grow from the same point.
    branch: u64,
}

impl<'k> Signer<'k> {
    fn new(key: &'k SigningKey) -> Signer<'k> {
        Signer {
            key,
            head: Head::GENESIS,
            last: None,
            branch: 0,
        }
    }

    /// Grows the chain to `length` entries and signs a checkpoint of it.
    fn at(&mut self, length: u64) -> Checkpoint {
        while self.head.next_seq < length {
            let mut e = event(self.head.next_seq % 60);
            e.detail = (self.branch > 0).then(|| format!("branch {}", self.branch));
            self.head.append(e);
        }
        let prev = self.last.as_ref().map_or_else(Prev::genesis, Prev::of);
        let at = format!("2026-11-26T04:00:{:02}.000Z", length % 60);
        let c = Checkpoint::sign(self.key, "suwon", &self.head, &at, prev);
        self.last = Some(c.clone());
        c
    }

    /// The chain cut back to its first `length` entries and its checkpoints back to `kept`
    /// (what deleting the newest entries and checkpoints from its store leaves), growing
    /// anew on branch `branch`.
    fn truncated(&self, length: u64, kept: Option<&Checkpoint>, branch: u64) -> Signer<'k> {
        let mut head = Head::GENESIS;
        for i in 0..length {
            let mut e = event(i % 60);
            e.detail = (self.branch > 0).then(|| format!("branch {}", self.branch));
            head.append(e);
        }
        Signer {
            key: self.key,
            head,
            last: kept.cloned(),
            branch,
        }
    }
}

#[test]
fn a_checkpoint_verifies_only_against_its_signers_key_and_covers_every_field() {
    let key = key();
    let other = self::key();
    let mut node = Signer::new(&key);
    let first = node.at(2);
    let c = node.at(3);
    assert_eq!(c.length, 3);
    assert_eq!(c.head, hex::encode(&node.head.hash));
    assert_eq!(c.prev, Some(Prev::of(&first)));
    assert_eq!(first.prev, Some(Prev::genesis()));
    assert!(c.verify(&key.public_key()));
    assert!(!c.verify(&other.public_key()));
    let altered = [
        Checkpoint {
            node: "gangseo".into(),
            ..c.clone()
        },
        Checkpoint {
            length: 2,
            ..c.clone()
        },
        Checkpoint {
            head: hex::encode(&[0; 32]),
            ..c.clone()
        },
        Checkpoint {
            at: "2026-11-26T04:00:01.000Z".into(),
            ..c.clone()
        },
        Checkpoint {
            prev: Some(Prev::genesis()),
            ..c.clone()
        },
        Checkpoint {
            prev: Some(Prev {
                length: 1,
                ..Prev::of(&first)
            }),
            ..c.clone()
        },
        // Dropping `prev` does not turn it into an unchained checkpoint that verifies.
        Checkpoint {
            prev: None,
            ..c.clone()
        },
    ];
    for a in altered {
        assert!(!a.verify(&key.public_key()), "{a:?}");
        assert_ne!(a.digest(), c.digest());
    }
    let unchained = Checkpoint::sign_unchained(&key, "suwon", &node.head, "t");
    assert!(unchained.verify(&key.public_key()));
    assert_eq!(unchained.prev, None);
}

#[test]
fn a_checkpoint_signed_before_checkpoints_were_chained_still_decodes_and_verifies() {
    // Stored by an earlier build: no `prev`, signed in format v1.
    let key = key();
    let mut head = Head::GENESIS;
    head.append(event(0));
    let old = Checkpoint::sign_unchained(&key, "suwon", &head, "2026-01-01T00:00:00.000Z");
    let json = serde_json::to_string(&old).expect("serialize");
    assert!(!json.contains("prev"), "{json}");
    let decoded: Checkpoint = serde_json::from_str(&json).expect("decode");
    assert!(decoded.verify(&key.public_key()));
}

#[test]
fn a_later_checkpoint_must_not_be_shorter_or_rewrite_the_same_length() {
    let key = key();
    let mut node = Signer::new(&key);
    let one = node.at(1);
    let two = node.at(2);
    assert_eq!(two.continues(&one), Ok(()));
    assert_eq!(two.continues(&two), Ok(()));
    assert!(matches!(
        one.continues(&two),
        Err(Divergence::RolledBack {
            length: 1,
            earlier: 2,
            ..
        })
    ));
    assert!(one
        .continues(&two)
        .is_err_and(|e| e.to_string().contains("rolled back")));
    let rewritten = node.truncated(0, None, 1).at(2);
    assert!(matches!(
        rewritten.continues(&two),
        Err(Divergence::Rewritten { length: 2, .. })
    ));
    assert!(rewritten
        .continues(&two)
        .is_err_and(|e| e.to_string().contains("rewritten")));
}

/// The name of what `follows` says, for compact tables.
fn judged(c: &Checkpoint, held: &Checkpoint) -> String {
    match c.follows(held) {
        Ok(link) => format!("{link:?}"),
        Err(d) => format!("{d:?}")
            .split_once(' ')
            .map_or(String::new(), |(name, _)| name.to_owned()),
    }
}

#[test]
fn a_checkpoint_follows_the_one_held_only_through_its_prev() {
    let key = key();
    let mut honest = Signer::new(&key);
    let c5 = honest.at(5);
    let c10 = honest.at(10);
    let c15 = honest.at(15);
    let c20 = honest.at(20);
    // Entries after 7 and the checkpoints after 5 deleted; the node grows again.
    let mut cut = honest.truncated(7, Some(&c5), 1);
    let x12 = cut.at(12);
    let x18 = cut.at(18);
    // Only the checkpoints deleted (the entries intact): it signs again from nothing.
    let restarted = honest.truncated(20, None, 0).at(22);
    // The same length signed twice with different heads.
    let y10 = honest.truncated(9, Some(&c5), 2).at(10);
    let unchained = Checkpoint::sign_unchained(&key, "suwon", &cut.head, "t");
    for (c, held, expected) in [
        (&c10, &c10, "Held"),
        (&c5, &c10, "Older"),
        (&c15, &c10, "Extends"),
        (&c20, &c10, "Gap"),
        (&y10, &c10, "Rewritten"),
        // x12 follows c5, so it skips c10; x18 follows x12, which is longer than c10.
        (&x12, &c10, "Forked"),
        (&x18, &c10, "Gap"),
        (&x18, &c15, "Forked"),
        (&restarted, &c20, "Forked"),
        (&unchained, &c10, "Unchained"),
        // x12 is what the truncated node signs after c5: for a peer holding only c5, it
        // extends it (the peer cannot know more; one holding c10 can).
        (&x12, &c5, "Extends"),
    ] {
        assert_eq!(
            judged(c, held),
            expected,
            "{} after {}",
            c.length,
            held.length
        );
    }
    // From a peer holding y10 (of another branch), c15's prev names a different checkpoint
    // of 10 entries: rewritten.
    assert_eq!(judged(&c15, &y10), "Rewritten");
    let forked = x12.follows(&c10).expect_err("forked");
    assert_eq!(
        forked.to_string(),
        "node suwon signed a checkpoint of 12 entries that follows its checkpoint of 5 \
         entries, skipping the one of 10 entries it signed before (forked: its audit log was \
         cut back and grew again)"
    );
}

#[test]
fn checkpoints_from_before_they_were_chained_are_judged_by_length_until_a_chained_one_comes() {
    let key = key();
    let mut head = Head::GENESIS;
    for i in 0..4 {
        head.append(event(i));
    }
    let old4 = Checkpoint::sign_unchained(&key, "suwon", &head, "t4");
    head.append(event(4));
    let old5 = Checkpoint::sign_unchained(&key, "suwon", &head, "t5");
    head.append(event(5));
    let new6 = Checkpoint::sign(&key, "suwon", &head, "t6", Prev::of(&old5));
    assert_eq!(old5.follows(&old4), Ok(Link::Extends));
    assert_eq!(new6.follows(&old5), Ok(Link::Extends));
    // A peer that missed old5 sees a gap, not a contradiction.
    assert_eq!(new6.follows(&old4), Ok(Link::Gap));
}

/// What a holder holds: `chain`, by length.
fn held(chain: &[&Checkpoint]) -> BTreeMap<u64, Checkpoint> {
    chain.iter().map(|c| (c.length, (*c).clone())).collect()
}

#[test]
fn follow_keeps_what_extends_the_one_held_and_stops_at_the_first_contradiction() {
    let key = key();
    let mut honest = Signer::new(&key);
    let c5 = honest.at(5);
    let c10 = honest.at(10);
    let c15 = honest.at(15);
    let c20 = honest.at(20);
    let mut cut = honest.truncated(12, Some(&c10), 1);
    let x17 = cut.at(17);
    let x30 = cut.at(30);

    // Nothing held: the first one is taken as it is.
    let f = follow(&held(&[]), &[], &c10);
    assert_eq!((f.keep, f.outcome), (vec![c10.clone()], Ok(Link::Extends)));
    // The same again: nothing new.
    let f = follow(&held(&[&c10]), &[], &c10);
    assert_eq!((f.keep, f.outcome), (vec![], Ok(Link::Held)));
    // The next one.
    let f = follow(&held(&[&c10]), &[], &c15);
    assert_eq!((f.keep, f.outcome), (vec![c15.clone()], Ok(Link::Extends)));
    // A gap: nothing kept until the checkpoints in between come …
    let f = follow(&held(&[&c10]), &[], &c20);
    assert_eq!((f.keep, f.outcome), (vec![], Ok(Link::Gap)));
    // … as links, oldest first; one the holder already has, or older, is passed over.
    let links = [c5.clone(), c10.clone(), c15.clone()];
    let f = follow(&held(&[&c10]), &links, &c20);
    assert_eq!(
        (f.keep, f.outcome),
        (vec![c15.clone(), c20.clone()], Ok(Link::Extends))
    );
    // Links that end before the newest (the sender sends a bounded number): progress is
    // kept, the newest waits.
    let f = follow(&held(&[&c5]), std::slice::from_ref(&c10), &c20);
    assert_eq!((f.keep, f.outcome), (vec![c10.clone()], Ok(Link::Gap)));

    // The truncated node: its newest checkpoint (30) follows one the holder has not seen,
    // so the holder asks for the links after the one it holds (15); the first of them
    // follows c10 and skips c15.
    let f = follow(&held(&[&c10, &c15]), &[], &x30);
    assert_eq!(f.outcome, Ok(Link::Gap));
    let f = follow(&held(&[&c10, &c15]), std::slice::from_ref(&x17), &x30);
    assert_eq!(f.keep, vec![]);
    let c = f.outcome.expect_err("forked");
    assert!(matches!(
        c.divergence,
        Divergence::Forked {
            length: 17,
            prev: 10,
            held: 15,
            ..
        }
    ));
    assert_eq!((&c.held, &c.refused), (&c15, &x17));
    // The pair proves itself to anyone: x17 names c10 and is longer than c15.
    assert!(Evidence::of(&c, "t").proves_itself());
    // A holder of c10 only cannot tell: from c10, x17 and x30 are the next ones.
    let f = follow(&held(&[&c10]), std::slice::from_ref(&x17), &x30);
    assert_eq!(
        (f.keep, f.outcome),
        (vec![x17.clone(), x30.clone()], Ok(Link::Extends))
    );
    // Progress before a contradiction stays: c15 extends c10, then x30 (unchained) does not.
    let unchained = Checkpoint::sign_unchained(&key, "suwon", &cut.head, "t");
    let f = follow(&held(&[&c10]), std::slice::from_ref(&c15), &unchained);
    assert_eq!(f.keep, vec![c15.clone()]);
    let evidence = Evidence::of(&f.outcome.expect_err("unchained"), "2026-11-26T05:00:00Z");
    assert_eq!(evidence.held, c15);
    assert!(
        evidence.problem.contains("unchained"),
        "{}",
        evidence.problem
    );
}

#[test]
fn a_shorter_checkpoint_is_judged_by_the_ones_held_before() {
    let key = key();
    let mut honest = Signer::new(&key);
    let c5 = honest.at(5);
    let c10 = honest.at(10);
    let c15 = honest.at(15);
    let c20 = honest.at(20);
    // Restored from a backup taken at 12 entries (checkpoint c10), it grows again and
    // signs a checkpoint of 17 entries, shorter than the 20 it signed before.
    let y17 = honest.truncated(12, Some(&c10), 3).at(17);
    let rewritten15 = honest.truncated(12, Some(&c10), 4).at(15);
    let all = held(&[&c10, &c15, &c20]);
    let judged = |c: &Checkpoint| match follow(&all, &[], c).outcome {
        Ok(link) => format!("{link:?}"),
        Err(c) => format!("{:?}", c.divergence)
            .split_once(' ')
            .map_or(String::new(), |(name, _)| name.to_owned()),
    };
    // An earlier one that arrives late (over the other channel between two nodes): fine.
    assert_eq!(judged(&c15), "Older");
    assert_eq!(judged(&c10), "Older");
    // Older than everything held: nothing to judge it by.
    assert_eq!(judged(&c5), "Older");
    // Not among those held, though in their range (each held one followed the one
    // before): not in the node's chain.
    assert_eq!(judged(&y17), "RolledBack");
    // Another one of a length held.
    assert_eq!(judged(&rewritten15), "Rewritten");
    let f = follow(&all, &[], &y17);
    let c = f.outcome.expect_err("rolled back");
    assert_eq!((&c.held, &c.refused), (&c20, &y17));
    // That y17 is not in the chain shows only against the checkpoints held in between.
    assert!(!Evidence::of(&c, "t").proves_itself());
    assert!(
        c.divergence.to_string().contains("rolled back"),
        "{}",
        c.divergence
    );
}
