//! Unit tests of pickup reports in the ledger, at both ends, over a real sled store with the
//! examples of a two-center dev-init: queued at the recipient's node by a first pull and an
//! acknowledgement (one entry per message), and at the origin applied only when signed by
//! the node the message was delivered to, for exactly that message.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::core::audit::Action;
use crate::core::identity::{AgencyId, CenterId, Identity};
use crate::core::keys::SigningKey;
use crate::core::message::{Envelope, MessageId};
use crate::core::routing::Route;
use crate::core::wire::{PickupError, PickupReport, Receipt};
use crate::node::clock::{Clock, ManualClock};
use crate::node::ledger::{
    LeaseItem, Ledger, LedgerOptions, Parties, PickupOutcome, PickupRefusal, Submission,
};
use crate::node::store::{DeliveryState, Pickup, Store};

fn center(name: &str) -> CenterId {
    CenterId::parse(name).expect("center")
}

/// A ledger over a fresh store as the node of `me`, in a dev-init federation of suwon and
/// gangseo, with the example consent (suwon/employment's, naming gangseo/welfare among its
/// recipients) registered.
struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
    ledger: Ledger,
    clock: Arc<ManualClock>,
    manifest: crate::dev::manifest::LoadedManifest,
}

async fn fixture(me: &str) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = crate::dev::devinit::DevInitArgs {
        out: tmp.path().join("fed"),
        centers: vec!["suwon".into(), "gangseo".into()],
        base_port: 7443,
    };
    let manifest = crate::dev::devinit::run(&args).expect("dev-init");
    let store = Store::open(&tmp.path().join("data")).expect("store");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let options = LedgerOptions {
        federated_as: Some(center(me)),
        ..LedgerOptions::default()
    };
    let (ledger, _thread) = Ledger::start(store.clone(), options, clock.clone()).expect("ledger");
    let f = Fixture {
        _tmp: tmp,
        store,
        ledger,
        clock,
        manifest,
    };
    let (consent, collector) = f.example("consent");
    let record =
        crate::core::consent::Registration::new(&consent, &collector, &f.clock.now_rfc3339())
            .expect("registration")
            .record;
    f.ledger
        .register_consent(collector, record)
        .await
        .expect("registered");
    f
}

impl Fixture {
    fn example(&self, name: &str) -> (serde_json::Value, AgencyId) {
        let (path, sender) = self.manifest.example(name).expect("example");
        let body = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON");
        (body, AgencyId::parse(sender).expect("sender"))
    }

    /// Example `name` with envelope id `id`, prepared now for `route`.
    fn submission(
        &self,
        name: &str,
        id: &str,
        route: impl FnOnce(&AgencyId) -> Route,
    ) -> Submission {
        let (mut body, sender) = self.example(name);
        body["id"] = serde_json::json!(id);
        let envelope = Envelope::from_validated(body, &sender).expect("envelope");
        let route = route(&envelope.to);
        Submission::new(&sender, envelope, route, None, self.clock.now()).expect("submission")
    }

    /// Leases message `id` as its recipient would.
    async fn lease(&self, id: &MessageId) -> Vec<MessageId> {
        let m = self.store.message(id).expect("read").expect("record");
        let item = LeaseItem::of(id.clone(), &m);
        let to = AgencyId::parse(&m.to).expect("recipient");
        self.ledger.lease(to, vec![item]).await.expect("leased")
    }

    async fn ack(&self, id: &MessageId) {
        let m = self.store.message(id).expect("read").expect("record");
        let to = AgencyId::parse(&m.to).expect("recipient");
        self.ledger.ack(to, vec![id.clone()]).await.expect("acked");
    }

    fn reports_to(&self, origin: &str) -> Vec<(MessageId, Pickup)> {
        self.store
            .pickup_reports(&center(origin))
            .collect::<Result<_, _>>()
            .expect("read the queue")
    }

    fn audit_len(&self) -> u64 {
        self.store
            .audit_head()
            .expect("read")
            .map_or(0, |e| e.seq + 1)
    }
}

#[tokio::test]
async fn a_first_pull_and_an_ack_at_the_recipients_node_queue_one_report_for_the_origin() {
    // gangseo's node, taking over suwon's remote referral for gangseo/welfare.
    let f = fixture("gangseo").await;
    let suwon = center("suwon");
    let handed = f.submission("referral-remote", "ref-pickup-1", |_| Route::Local);
    let digest = handed.digest().to_owned();
    let taken = f
        .ledger
        .receive(suwon.clone(), Vec::new(), Vec::new(), vec![handed])
        .await
        .expect("received");
    let id = taken[0].as_ref().expect("taken").id.clone();
    assert!(f.reports_to("suwon").is_empty(), "nothing pulled yet");

    assert_eq!(f.lease(&id).await.len(), 1);
    let pulled_at = f.clock.now_rfc3339();
    let want = Pickup {
        digest: digest.clone(),
        first_pulled_at: pulled_at.clone(),
        acked_at: None,
    };
    assert_eq!(f.reports_to("suwon"), [(id.clone(), want.clone())]);

    // A second lease (the first one expired) is no first pull: the entry stays as it was.
    f.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(f.lease(&id).await.len(), 1);
    assert_eq!(f.reports_to("suwon"), [(id.clone(), want)]);

    // The ack updates the one entry.
    f.clock.advance(std::time::Duration::from_secs(5));
    f.ack(&id).await;
    let acked = Pickup {
        digest,
        first_pulled_at: pulled_at,
        acked_at: Some(f.clock.now_rfc3339()),
    };
    assert_eq!(f.reports_to("suwon"), [(id.clone(), acked)]);

    // suwon answered the report of the pull alone, read before the ack: the entry stays
    // (the acknowledgement is still to be told) ...
    let told = f
        .ledger
        .pickups_told(suwon.clone(), vec![(id.clone(), None)])
        .await
        .expect("told");
    assert_eq!(told, 0);
    assert_eq!(f.reports_to("suwon").len(), 1);
    // ... and once it answered the one with the acknowledgement, the entry goes.
    let acked_at = f.reports_to("suwon")[0].1.acked_at.clone();
    let told = f
        .ledger
        .pickups_told(suwon, vec![(id, acked_at)])
        .await
        .expect("told");
    assert_eq!(told, 1);
    assert!(f.reports_to("suwon").is_empty());
}

#[tokio::test]
async fn an_ack_without_a_pull_reports_both_at_the_acks_time_and_local_messages_report_nothing() {
    let f = fixture("gangseo").await;
    let handed = f.submission("referral-remote", "ref-pickup-2", |_| Route::Local);
    let taken = f
        .ledger
        .receive(center("suwon"), Vec::new(), Vec::new(), vec![handed])
        .await
        .expect("received");
    let id = taken[0].as_ref().expect("taken").id.clone();
    f.ack(&id).await;
    let now = f.clock.now_rfc3339();
    let reports = f.reports_to("suwon");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].1.first_pulled_at, now);
    assert_eq!(reports[0].1.acked_at.as_deref(), Some(now.as_str()));

    // A message between two agencies of suwon, at suwon's node: nobody to report to.
    let f = fixture("suwon").await;
    let id = f
        .ledger
        .accept(f.submission("referral", "ref-local-1", |_| Route::Local))
        .await
        .expect("accepted")
        .id;
    f.lease(&id).await;
    f.ack(&id).await;
    for origin in ["suwon", "gangseo"] {
        assert!(f.reports_to(origin).is_empty(), "{origin}");
    }
}

/// suwon's node with the remote referral `id` delivered to gangseo (its receipt signed by
/// `key`); returns the message and its digest.
async fn delivered(f: &Fixture, id: &str, key: &SigningKey) -> (MessageId, String) {
    let gangseo = center("gangseo");
    let submission = f.submission("referral-remote", id, |to| {
        Route::Remote(to.center().clone())
    });
    let digest = submission.digest().to_owned();
    let id = f.ledger.accept(submission).await.expect("accepted").id;
    let record = f.store.message(&id).expect("read").expect("record");
    let receipt = Receipt::sign(key, &gangseo, id.public(), &digest, &f.clock.now_rfc3339());
    let n = f
        .ledger
        .delivered(gangseo, vec![(id.clone(), receipt, Parties::of(&record))])
        .await
        .expect("delivered");
    assert_eq!(n, 1);
    (id, digest)
}

fn report(
    key: &SigningKey,
    node: &str,
    id: &MessageId,
    digest: &str,
    first_pulled_at: &str,
    acked_at: Option<&str>,
) -> PickupReport {
    PickupReport::sign(
        key,
        &center(node),
        id.as_str(),
        digest,
        first_pulled_at,
        acked_at,
    )
}

#[tokio::test]
async fn the_origin_takes_the_recipients_nodes_signed_report_once_and_then_its_ack() {
    let f = fixture("suwon").await;
    let (gangseo_key, _) = SigningKey::generate().expect("key");
    let (id, digest) = delivered(&f, "ref-pickup-3", &gangseo_key).await;
    let before = f.audit_len();

    let pulled = "2026-11-26T03:00:00.000Z";
    let outcomes = f
        .ledger
        .picked_up(
            center("gangseo"),
            gangseo_key.public_key(),
            vec![report(&gangseo_key, "gangseo", &id, &digest, pulled, None)],
        )
        .await
        .expect("taken");
    assert_eq!(outcomes, [PickupOutcome::Taken]);
    let d = f.store.delivery(&id).expect("read").expect("delivery");
    assert_eq!(d.first_pulled_at.as_deref(), Some(pulled));
    assert_eq!(d.acked_at, None);
    assert_eq!(
        d.state,
        DeliveryState::Delivered,
        "the receipt is what it shows"
    );
    let entry = f.store.audit_head().expect("read").expect("entry");
    assert_eq!(entry.seq, before);
    assert_eq!(entry.action, Action::PickupReported);
    assert_eq!(entry.actor, Identity::Node(center("gangseo")).uri());
    assert_eq!(entry.message_id, id.public());
    let detail = entry.detail.expect("detail");
    assert!(
        detail.contains(pulled) && detail.contains("signature"),
        "{detail}"
    );

    // The same report again (its answer was lost) is taken and changes nothing.
    let again = report(&gangseo_key, "gangseo", &id, &digest, pulled, None);
    let outcomes = f
        .ledger
        .picked_up(center("gangseo"), gangseo_key.public_key(), vec![again])
        .await
        .expect("taken");
    assert_eq!(outcomes, [PickupOutcome::Taken]);
    assert_eq!(f.audit_len(), before + 1);

    // The acknowledgement: acked_at is set, the first pull stays the first.
    let acked = "2026-11-26T03:00:09.000Z";
    let later_pull = "2026-11-26T03:00:08.000Z";
    let outcomes = f
        .ledger
        .picked_up(
            center("gangseo"),
            gangseo_key.public_key(),
            vec![report(
                &gangseo_key,
                "gangseo",
                &id,
                &digest,
                later_pull,
                Some(acked),
            )],
        )
        .await
        .expect("taken");
    assert_eq!(outcomes, [PickupOutcome::Taken]);
    let d = f.store.delivery(&id).expect("read").expect("delivery");
    assert_eq!(d.first_pulled_at.as_deref(), Some(pulled));
    assert_eq!(d.acked_at.as_deref(), Some(acked));
    assert_eq!(f.audit_len(), before + 2);
}

#[tokio::test]
async fn an_ack_reported_first_implies_the_pull() {
    let f = fixture("suwon").await;
    let (gangseo_key, _) = SigningKey::generate().expect("key");
    let (id, digest) = delivered(&f, "ref-pickup-4", &gangseo_key).await;
    let (pulled, acked) = ("2026-11-26T03:00:00.000Z", "2026-11-26T03:00:01.000Z");
    let outcomes = f
        .ledger
        .picked_up(
            center("gangseo"),
            gangseo_key.public_key(),
            vec![report(
                &gangseo_key,
                "gangseo",
                &id,
                &digest,
                pulled,
                Some(acked),
            )],
        )
        .await
        .expect("taken");
    assert_eq!(outcomes, [PickupOutcome::Taken]);
    let d = f.store.delivery(&id).expect("read").expect("delivery");
    assert_eq!(d.first_pulled_at.as_deref(), Some(pulled));
    assert_eq!(d.acked_at.as_deref(), Some(acked));
}

#[tokio::test]
async fn a_bad_report_is_refused_alone_and_changes_nothing() {
    let f = fixture("suwon").await;
    let (gangseo_key, _) = SigningKey::generate().expect("key");
    let (jeongeup_key, _) = SigningKey::generate().expect("key");
    let (id, digest) = delivered(&f, "ref-pickup-5", &gangseo_key).await;
    // Still in the outbox to gangseo: its receipt is not recorded yet.
    let waiting = f
        .ledger
        .accept(f.submission("referral-remote", "ref-pickup-6", |to| {
            Route::Remote(to.center().clone())
        }))
        .await
        .expect("accepted")
        .id;
    let waiting_digest = f
        .store
        .message(&waiting)
        .expect("read")
        .expect("m")
        .body_sha256;
    // Between two agencies of suwon: never delivered anywhere.
    let local = f
        .ledger
        .accept(f.submission("referral", "ref-local-2", |_| Route::Local))
        .await
        .expect("accepted")
        .id;
    let local_digest = f
        .store
        .message(&local)
        .expect("read")
        .expect("m")
        .body_sha256;
    let before = f.audit_len();
    let at = "2026-11-26T03:00:00.000Z";
    let unknown = MessageId::from_key("suwon/employment/ref-nobody-sent").expect("key");

    let outcomes = f
        .ledger
        .picked_up(
            center("gangseo"),
            gangseo_key.public_key(),
            vec![
                // Signed by another key than gangseo's in the directory.
                report(&jeongeup_key, "gangseo", &id, &digest, at, None),
                // gangseo speaking for jeongeup.
                report(&gangseo_key, "jeongeup", &id, &digest, at, None),
                // A message this node never sent.
                report(&gangseo_key, "gangseo", &unknown, &digest, at, None),
                // A message that never left this center.
                report(&gangseo_key, "gangseo", &local, &local_digest, at, None),
                // Other content than the receipt names.
                report(&gangseo_key, "gangseo", &id, &local_digest, at, None),
                // Not delivered yet as far as this node knows: later, not refused.
                report(&gangseo_key, "gangseo", &waiting, &waiting_digest, at, None),
            ],
        )
        .await
        .expect("answered");
    let gangseo = center("gangseo");
    let not_delivered = |m: &MessageId| {
        PickupOutcome::Refused(PickupRefusal::NotDelivered {
            id: m.to_string(),
            peer: gangseo.clone(),
        })
    };
    assert_eq!(
        outcomes,
        [
            PickupOutcome::Refused(PickupRefusal::Unsigned(PickupError::BadSignature {
                node: gangseo.clone()
            })),
            PickupOutcome::Refused(PickupRefusal::Unsigned(PickupError::OtherNode {
                named: center("jeongeup"),
                sender: gangseo.clone(),
            })),
            not_delivered(&unknown),
            not_delivered(&local),
            PickupOutcome::Refused(PickupRefusal::OtherDigest {
                id: id.clone(),
                peer: gangseo.clone(),
                reported: local_digest.clone(),
            }),
            PickupOutcome::Later,
        ]
    );
    for m in [&id, &waiting, &local] {
        let d = f.store.delivery(m).expect("read").expect("delivery");
        assert_eq!((d.first_pulled_at, d.acked_at), (None, None), "{m}");
    }
    assert_eq!(f.audit_len(), before, "no audit entry for a refused report");

    // A report for a message delivered to gangseo, by jeongeup with jeongeup's own key:
    // jeongeup learns nothing of it (the answer is that for an unknown message).
    let outcomes = f
        .ledger
        .picked_up(
            center("jeongeup"),
            jeongeup_key.public_key(),
            vec![
                report(&jeongeup_key, "jeongeup", &id, &digest, at, None),
                report(&jeongeup_key, "jeongeup", &unknown, &digest, at, None),
            ],
        )
        .await
        .expect("answered");
    let jeongeup = |m: &MessageId| {
        PickupOutcome::Refused(PickupRefusal::NotDelivered {
            id: m.to_string(),
            peer: center("jeongeup"),
        })
    };
    assert_eq!(outcomes, [jeongeup(&id), jeongeup(&unknown)]);

    // With the bad ones, a good one is still taken.
    let outcomes = f
        .ledger
        .picked_up(
            gangseo.clone(),
            gangseo_key.public_key(),
            vec![
                report(&jeongeup_key, "gangseo", &id, &digest, at, None),
                report(&gangseo_key, "gangseo", &id, &digest, at, None),
            ],
        )
        .await
        .expect("answered");
    assert!(matches!(outcomes[0], PickupOutcome::Refused(_)));
    assert_eq!(outcomes[1], PickupOutcome::Taken);
    let d = f.store.delivery(&id).expect("read").expect("delivery");
    assert_eq!(d.first_pulled_at.as_deref(), Some(at));
}
