//! Unit tests of the ledger over a real sled store, with the dev examples of a fresh
//! dev-init and a manual clock: time moves when a test says so, never by waiting.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::core::audit::Action;
use crate::core::consent::{Registration, StatusChange};
use crate::core::identity::AgencyId;
use crate::core::message::Envelope;
use crate::core::routing::Route;
use crate::node::clock::ManualClock;

const HOUR: Duration = Duration::from_secs(3600);

/// A ledger over a fresh store, on a manual clock standing at the real time (the dev
/// examples' consents are valid from yesterday for a year).
struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
    ledger: Ledger,
    clock: Arc<ManualClock>,
    manifest: crate::dev::manifest::LoadedManifest,
    metrics: Arc<crate::node::metrics::LedgerMetrics>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = crate::dev::devinit::DevInitArgs {
        out: tmp.path().join("fed"),
        centers: vec!["suwon".into()],
        base_port: 7443,
    };
    let manifest = crate::dev::devinit::run(&args).expect("dev-init");
    let store = Store::open(&tmp.path().join("data")).expect("store");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let metrics = Arc::new(crate::node::metrics::LedgerMetrics::default());
    let options = LedgerOptions {
        metrics: Arc::clone(&metrics),
        ..LedgerOptions::default()
    };
    let (ledger, _thread) = Ledger::start(store.clone(), options, clock.clone()).expect("ledger");
    Fixture {
        _tmp: tmp,
        store,
        ledger,
        clock,
        manifest,
        metrics,
    }
}

impl Fixture {
    fn example(&self, name: &str) -> (serde_json::Value, AgencyId) {
        let (path, sender) = self.manifest.example(name).expect("example");
        let body = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON");
        (body, AgencyId::parse(sender).expect("sender"))
    }

    /// Registers the example consent, changed by `edit`, as its collector.
    async fn register(&self, edit: impl FnOnce(&mut serde_json::Value)) -> AgencyId {
        let (mut consent, collector) = self.example("consent");
        edit(&mut consent);
        let now = self.clock.now_rfc3339();
        let record = Registration::new(&consent, &collector, &now)
            .expect("registration")
            .record;
        self.ledger
            .register_consent(collector.clone(), record)
            .await
            .expect("registered");
        collector
    }

    /// The example referral, prepared now on the ledger's clock.
    fn referral(&self, route: impl FnOnce(&AgencyId) -> Route) -> Submission {
        let (body, sender) = self.example("referral");
        let envelope = Envelope::from_validated(body, &sender).expect("envelope");
        let route = route(&envelope.to);
        Submission::new(&sender, envelope, route, None, self.clock.now()).expect("submission")
    }

    fn node(&self) -> Identity {
        Identity::Node(CenterId::parse("suwon").expect("center"))
    }
}

#[tokio::test]
async fn payloads_are_purged_when_the_retention_period_ends_and_the_record_stays() {
    let f = fixture();
    f.register(|c| c["retention"]["period"] = serde_json::json!("P1D"))
        .await;
    let submission = f.referral(|_| Route::Local);
    let recipient = submission.to.clone();
    let id = f.ledger.accept(submission).await.expect("accepted").id;

    // Within the day nothing is due.
    f.clock.advance(23 * HOUR);
    assert_eq!(f.ledger.purge(f.node()).await.expect("purge"), 0);
    let kept = f.store.message(&id).expect("read").expect("kept");
    assert!(kept.payload.is_some());

    // A day and a bit later the payload goes; who sent what to whom under which consent
    // stays, and the unpulled message leaves the inbox.
    f.clock.advance(2 * HOUR);
    assert_eq!(f.ledger.purge(f.node()).await.expect("purge"), 1);
    let kept = f.store.message(&id).expect("read").expect("record stays");
    assert!(kept.payload.is_none() && kept.sealed.is_none());
    let erased = kept.erased.expect("erasure recorded");
    assert!(
        erased.reason.contains("retention period"),
        "{}",
        erased.reason
    );
    assert_eq!(
        erased.at,
        f.clock.now_rfc3339(),
        "erased at the clock's time"
    );
    assert_eq!(kept.consent_id, "cns-example-0001");
    let d = f.store.delivery(&id).expect("read").expect("delivery");
    assert_eq!(d.state, DeliveryState::Withheld);
    assert_eq!(f.store.inbox(&recipient, None).count(), 0);
    let last = f.store.audit_head().expect("read").expect("entry");
    assert_eq!(
        (last.action, last.message_id.as_str()),
        (Action::Withheld, id.public())
    );
    assert_eq!(last.actor, "urn:plusgate:node:suwon");
    // Done once: nothing is due again.
    assert_eq!(f.ledger.purge(f.node()).await.expect("purge"), 0);
}

#[tokio::test]
async fn the_purge_timer_erases_on_the_ledgers_clock() {
    let f = fixture();
    f.register(|c| c["retention"]["period"] = serde_json::json!("P1D"))
        .await;
    let id = f
        .ledger
        .accept(f.referral(|_| Route::Local))
        .await
        .expect("accepted")
        .id;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let timer = tokio::spawn(purge_every(
        f.ledger.clone(),
        f.node(),
        Duration::from_secs(60),
        closing,
    ));
    let payload_gone = || async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let m = f.store.message(&id).expect("read").expect("record");
            if m.payload.is_none() || std::time::Instant::now() > deadline {
                return m.payload.is_none();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };

    // A minute in, the timer looked again, but the day has not ended.
    f.clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(f
        .store
        .message(&id)
        .expect("read")
        .expect("kept")
        .payload
        .is_some());

    // A day later (on the clock; no real time passes) the next look erases it.
    f.clock.advance(24 * HOUR);
    assert!(
        payload_gone().await,
        "not purged after the retention period"
    );
    closing_tx.send_replace(true);
    timer.await.expect("the timer stops on closing");
}

#[tokio::test]
async fn the_consent_check_and_audit_times_read_the_ledgers_clock() {
    let f = fixture();
    let until = f.clock.now() + HOUR;
    f.register(|c| c["valid_until"] = serde_json::json!(crate::core::time::rfc3339(until)))
        .await;
    let accepted = f
        .ledger
        .accept(f.referral(|_| Route::Local))
        .await
        .expect("valid within the hour");
    assert_eq!(accepted.accepted_at.as_str(), f.clock.now_rfc3339());

    // Two hours later, by the clock alone, the consent has expired.
    f.clock.advance(2 * HOUR);
    let mut late = f.referral(|_| Route::Local);
    late.id = MessageId::generate();
    let refused = f.ledger.accept(late).await;
    assert!(
        matches!(&refused, Err(LedgerError::Refused(r)) if r.kind() == "consent-expired"),
        "{refused:?}"
    );
    let last = f.store.audit_head().expect("read").expect("entry");
    assert_eq!(last.action, Action::Refused);
    assert_eq!(last.at, f.clock.now_rfc3339());
}

/// The depths `/metrics` shows are the writer's counts after each durable group, and a
/// dead letter is counted for the center the message was for.
#[tokio::test]
async fn the_writer_publishes_outbox_depths_and_counts_dead_letters_per_peer() {
    let f = fixture();
    f.register(|_| {}).await;
    let peer = CenterId::parse("gangseo").expect("center");
    let id = f
        .ledger
        .accept(f.referral(|_| Route::Remote(peer.clone())))
        .await
        .expect("accepted")
        .id;
    assert_eq!(f.metrics.depths().outbox.get(&peer), Some(&1));
    assert_eq!(f.metrics.dead_letters_of(&peer), 0);
    f.ledger
        .dead_letter(f.node(), vec![(id, "peer down".into())])
        .await
        .expect("dead-lettered");
    assert_eq!(f.metrics.depths().outbox.get(&peer), Some(&0));
    assert_eq!(f.metrics.dead_letters_of(&peer), 1);
}

#[tokio::test]
async fn a_withdrawn_message_cannot_be_retried_into_an_outbox() {
    let f = fixture();
    let collector = f.register(|_| {}).await;
    let peer = CenterId::parse("gangseo").expect("center");
    let id = f
        .ledger
        .accept(f.referral(|_| Route::Remote(peer)))
        .await
        .expect("accepted")
        .id;
    f.ledger
        .dead_letter(f.node(), vec![(id.clone(), "peer down".into())])
        .await
        .expect("dead-lettered");
    let change = StatusChange {
        status: crate::core::consent::ConsentStatus::Withdrawn,
        at: f.clock.now_rfc3339(),
        by: collector.to_string(),
        reason: None,
        stated_at: None,
    };
    f.ledger
        .withdraw_consent("cns-example-0001".into(), collector, change)
        .await
        .expect("withdrawn");
    assert!(f
        .store
        .message(&id)
        .expect("read")
        .expect("record")
        .erased
        .is_some());
    // The dead-letter reason goes with the payload.
    let d = f.store.delivery(&id).expect("read").expect("delivery");
    assert_eq!(d.last_error, None);
    let refused = f.ledger.requeue(f.node(), id.clone()).await;
    assert!(
        matches!(
            refused,
            Err(LedgerError::WrongState {
                state: "erased",
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(!refused.is_err_and(|e| e.retryable()));
    assert_eq!(
        f.store.delivery(&id).expect("read").expect("d").state,
        DeliveryState::DeadLettered
    );
}

#[test]
fn only_the_nodes_own_failures_are_worth_retrying() {
    let id = || MessageId::parse("ref-1").expect("id");
    let center = || CenterId::parse("gangseo").expect("center");
    let sync = || {
        Arc::new(StoreError::Sync {
            path: "db".into(),
            source: std::io::Error::other("disk gone"),
        })
    };
    let corrupt = StoreError::Corrupt {
        family: "m",
        key: "ref-1".into(),
        source: crate::node::store::RecordError::Truncated(2),
    };
    for (e, retryable) in [
        (LedgerError::OutboxFull(center()), true),
        (
            LedgerError::InboxFull(AgencyId::parse("suwon/welfare").expect("agency")),
            true,
        ),
        (LedgerError::Busy, true),
        (LedgerError::StorageFull(sync()), true),
        (LedgerError::Halted(sync()), true),
        (LedgerError::Stopped, true),
        (LedgerError::Storage(corrupt), false),
        (LedgerError::IdConflict(id()), false),
        (LedgerError::NoSuchMessage(id()), false),
        (LedgerError::ConsentConflict("c".into()), false),
        (LedgerError::NoSuchConsent("c".into()), false),
        (
            LedgerError::PeerRollback(crate::core::audit::Divergence::Rewritten {
                node: "suwon".into(),
                length: 2,
            }),
            false,
        ),
    ] {
        assert_eq!(e.retryable(), retryable, "{e}");
    }
}
