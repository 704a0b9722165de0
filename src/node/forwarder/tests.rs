//! Unit tests of the forwarder: backoff, time to live, the failure classification, and
//! rounds against a real peer node's API over loopback.

use hyper::StatusCode;
use time::OffsetDateTime;

use super::triage::*;
use super::*;
use crate::core::message::MessageId;
use crate::node::client;
use crate::node::store::StoreError;

#[test]
fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
    let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
    let ceilings: Vec<u128> = (0..12).map(|_| b.fail(1.0).as_millis()).collect();
    assert_eq!(
        ceilings,
        [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000, 60000]
    );
}

#[test]
fn jitter_spreads_each_delay_over_its_upper_half() {
    let mut low = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
    let mut high = low.clone();
    for _ in 0..5 {
        let (l, h) = (low.fail(0.0), high.fail(1.0));
        assert_eq!(l * 2, h);
    }
}

#[test]
fn a_success_starts_the_backoff_again() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    for _ in 0..20 {
        b.fail(1.0);
    }
    assert_eq!(
        b.fail(1.0),
        Duration::from_secs(10),
        "capped, never overflows"
    );
    b.reset();
    assert_eq!(b.fail(1.0), Duration::from_millis(100));
}

#[test]
fn a_peer_down_for_an_hour_is_retried_about_a_hundred_times_not_thousands() {
    // Virtual clock: add up the delays instead of sleeping through them.
    let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
    let (mut elapsed, mut attempts) = (Duration::ZERO, 0);
    while elapsed < Duration::from_secs(3600) {
        elapsed += b.fail(0.5);
        attempts += 1;
    }
    assert!(
        (70..=90).contains(&attempts),
        "{attempts} attempts in an hour"
    );
}

/// A sending node whose peer never answers, under a virtual clock. Everything else is
/// real: a dev-init federation, a sled store, the ledger, TLS configuration, and
/// connection attempts to a loopback port nobody listens on.
#[tokio::test]
async fn a_peer_that_never_answers_is_retried_with_backoff_until_the_message_dead_letters() {
    use crate::config::Config;
    use crate::core::directory::Directory;
    use crate::core::message::Envelope;
    use crate::core::routing::Route;
    use crate::node::clock::ManualClock;
    use crate::node::ledger::{LedgerOptions, Submission};
    use crate::node::store::DeliveryState;

    let tmp = tempfile::tempdir().expect("tempdir");
    // A port that was free a moment ago: nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let args = crate::dev::devinit::DevInitArgs {
        out: tmp.path().join("fed"),
        centers: vec!["suwon".into(), "gangseo".into()],
        base_port: port - 1,
    };
    let manifest = crate::dev::devinit::run(&args).expect("dev-init");
    let config = Config::load(&manifest.config_path("suwon").expect("suwon")).expect("config");
    let f = config.federation.clone().expect("federated");
    let directory = Directory::load(&f.directory, &f.authority_key).expect("directory");
    let routing = Arc::new(Routing::federated(
        config.center.clone(),
        Arc::new(directory),
    ));
    let store = Store::open(&tmp.path().join("data")).expect("store");
    // Virtual time for the ledger and the forwarder alike: every sleep jumps ahead.
    let start = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::fast_forwarding(start));
    let elapsed = || -> Duration { (clock.now() - start).unsigned_abs() };
    let (ledger, _thread) =
        Ledger::start(store.clone(), LedgerOptions::default(), clock.clone()).expect("ledger");

    // The consent the example cites, registered as its collector would.
    let (consent, collector) = manifest.example("consent").expect("consent example");
    let consent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(consent).expect("read")).expect("JSON");
    let collector = crate::core::identity::AgencyId::parse(collector).expect("collector");
    let registration =
        crate::core::consent::Registration::new(&consent, &collector, "2026-01-01T00:00:00Z")
            .expect("registration");
    ledger
        .register_consent(collector, registration.record)
        .await
        .expect("registered");

    let (example, sender) = manifest.example("referral-remote").expect("example");
    let body = crate::core::json::parse_strict(&std::fs::read(example).expect("read"))
        .expect("example JSON");
    let sender = crate::core::identity::AgencyId::parse(sender).expect("sender");
    let envelope = Envelope::from_validated(body, &sender).expect("envelope");
    let peer = envelope.to.center().clone();
    let keys = crate::core::vault::DataKeys::from_bytes([3; 32], &[]);
    let submission = Submission::new(
        &sender,
        envelope,
        Route::Remote(peer.clone()),
        Some(&keys),
        clock.now(),
    )
    .expect("sealed");
    let id = submission.id().clone();
    ledger.accept(submission).await.expect("accepted");

    let (_routing_tx, routing_rx) = watch::channel(routing);
    let (closing_tx, closing_rx) = watch::channel(false);
    let tls = crate::node::reload::forwarding_config(&config.tls).expect("tls");
    let (_tls_tx, tls) = tokio::sync::watch::channel(tls);
    let ctx = Arc::new(Forwarding {
        center: config.center.clone(),
        store: store.clone(),
        ledger: ledger.clone(),
        routing: routing_rx,
        tls,
        options: ForwardOptions {
            batch_max: 256,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(60),
            message_ttl: Duration::from_secs(3600),
        },
        closing: closing_rx,
        clock: clock.clone(),
        keys: Some(Arc::new(keys)),
        signing_key: Arc::new(
            crate::core::keys::SigningKey::generate()
                .expect("signing key")
                .0,
        ),
        metrics: Arc::default(),
    });
    let task = tokio::spawn(forward(ctx, peer.clone()));

    // Real time only for the attempts themselves; virtual time for everything else.
    let wait_until = |virtual_time: Duration| {
        let store_for_wait = store.clone();
        let id_for_wait = id.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while elapsed() < virtual_time {
                assert!(
                    std::time::Instant::now() < deadline,
                    "forwarder stalled at {:?}: {:?}",
                    elapsed(),
                    store_for_wait.delivery(&id_for_wait)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    // Half an hour in: still waiting, retried with growing delays up to the 60 s cap
    // (a few dozen attempts, not thousands).
    wait_until(Duration::from_secs(1800)).await;
    let d = store.delivery(&id).expect("read").expect("record");
    assert_eq!(d.state, DeliveryState::Forwarded, "{d:?}");
    assert!(
        (25..=60).contains(&d.failed_attempts),
        "{} attempts in 30 virtual minutes",
        d.failed_attempts
    );
    assert!(d
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("127.0.0.1")));

    // Past the time to live (one virtual hour), and not before: dead-lettered with the
    // reason, out of the outbox; the forwarder then has nothing left to try.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let d = loop {
        let d = store.delivery(&id).expect("read").expect("record");
        if d.state == DeliveryState::DeadLettered || std::time::Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let at = elapsed();
    assert!(
        at >= Duration::from_secs(3600) && at <= Duration::from_secs(3600 + 61),
        "dead-lettered at virtual {at:?}"
    );
    assert_eq!(d.state, DeliveryState::DeadLettered, "{d:?}");
    assert!(d
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("time to live")));
    assert_eq!(store.outbox(&peer, None).count(), 0);
    closing_tx.send_replace(true);
    task.await.expect("forwarder stops on closing");
}

/// The retry classification, written down: which failures send again and which
/// dead-letter, and who is likely at fault. Changing a row changes what the forwarder
/// does.
#[test]
fn what_is_sent_again_and_what_is_dead_lettered() {
    use crate::node::store::RecordError;
    use client::ClientError;
    let peer = CenterId::parse("gangseo").expect("center");
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let corrupt = || StoreError::Corrupt {
        family: "message",
        key: "m-1".into(),
        source: RecordError::Truncated(0),
    };
    let round = |e: RoundError| (e.retry(), e.fault());
    let message = |e: Undelivered| (e.retry(), e.fault());
    use Fault::{Downstream, Internal, Upstream};
    use Retry::{DeadLetter, Resend};

    for (what, got, want) in [
        (
            "store",
            round(RoundError::Store(corrupt())),
            (Resend, Internal),
        ),
        (
            "unknown peer",
            round(RoundError::UnknownPeer(peer.clone())),
            (Resend, Internal),
        ),
        (
            "connect",
            round(RoundError::Client(ClientError::Connect {
                addr,
                source: std::io::ErrorKind::ConnectionRefused.into(),
            })),
            (Resend, Upstream),
        ),
        (
            "timeout",
            round(RoundError::Client(ClientError::Timeout {
                addr,
                during: "connecting to",
                after: Duration::from_secs(10),
            })),
            (Resend, Upstream),
        ),
        (
            "bad URL in the directory",
            round(RoundError::Client(ClientError::Url {
                url: "http://x".into(),
                reason: "not https",
            })),
            (Resend, Internal),
        ),
        (
            "wrong server",
            round(RoundError::WrongServer {
                url: "https://127.0.0.1:9".into(),
                peer: peer.clone(),
                found: "urn:plusgate:node:suwon".into(),
            }),
            (Resend, Upstream),
        ),
        (
            "batch refused",
            round(RoundError::Refused {
                peer: peer.clone(),
                status: StatusCode::FORBIDDEN,
                detail: "unknown-node".into(),
            }),
            (Resend, Upstream),
        ),
        (
            "ledger",
            round(RoundError::Ledger(
                crate::node::ledger::LedgerError::Stopped,
            )),
            (Resend, Internal),
        ),
        (
            "expired",
            message(Undelivered::Expired {
                peer: peer.clone(),
                ttl_s: 60,
            }),
            (DeadLetter, Upstream),
        ),
        (
            "damaged",
            message(Undelivered::Damaged(corrupt())),
            (DeadLetter, Internal),
        ),
        (
            "unopenable",
            message(Undelivered::Unopenable(
                crate::core::vault::VaultError::Damaged,
            )),
            (DeadLetter, Internal),
        ),
        (
            "refused by the peer",
            message(Undelivered::Refused {
                peer: peer.clone(),
                reason: "no consent".into(),
            }),
            (DeadLetter, Downstream),
        ),
        (
            "bad receipt",
            message(Undelivered::BadReceipt(
                crate::core::wire::ReceiptError::BadSignature { peer: peer.clone() },
            )),
            (Resend, Upstream),
        ),
        (
            "unanswered",
            message(Undelivered::Unanswered),
            (Resend, Upstream),
        ),
    ] {
        assert_eq!(got, want, "{what}");
    }
}

/// A dead-lettered message's reason is stored and audited: its text stays as it was.
#[test]
fn dead_letter_reasons_read_as_before() {
    let peer = CenterId::parse("gangseo").expect("center");
    let cases = [
        (
            Undelivered::Expired {
                peer: peer.clone(),
                ttl_s: 3600,
            },
            "not delivered to center gangseo within its time to live (3600 s)",
        ),
        (
            Undelivered::Refused {
                peer: peer.clone(),
                reason: "no consent covers it".into(),
            },
            "refused by center gangseo: no consent covers it",
        ),
    ];
    for (why, text) in cases {
        assert_eq!(why.to_string(), text);
    }
    let (dead, again) = triage(
        &peer,
        vec![
            (MessageId::generate(), Undelivered::Unanswered),
            (
                MessageId::generate(),
                Undelivered::Refused {
                    peer: peer.clone(),
                    reason: "x".into(),
                },
            ),
        ],
    );
    assert_eq!((dead.len(), again.len()), (1, 1));
    assert_eq!(dead[0].1, "refused by center gangseo: x");
}

#[test]
fn a_message_expires_exactly_after_its_time_to_live() {
    let accepted = "2026-11-26T03:00:00.000Z";
    let at = |s: &str| crate::core::time::parse(s).expect("time");
    let ttl = Duration::from_secs(3600);
    assert!(!expired(accepted, at("2026-11-26T03:59:59Z"), ttl));
    assert!(!expired(accepted, at("2026-11-26T04:00:00Z"), ttl));
    assert!(expired(accepted, at("2026-11-26T04:00:00.001Z"), ttl));
    assert!(expired("garbage", at("2026-11-26T03:00:00Z"), ttl));
}

#[test]
fn a_resend_refused_with_a_client_error_is_not_asked_again_but_a_busy_or_broken_peer_is() {
    use super::round::resend_refused_for_good;
    for status in [404, 403, 400, 405, 413] {
        let status = StatusCode::from_u16(status).expect("status");
        assert!(resend_refused_for_good(status), "{status}");
    }
    for status in [408, 429, 500, 502, 503, 507] {
        let status = StatusCode::from_u16(status).expect("status");
        assert!(!resend_refused_for_good(status), "{status}");
    }
}

/// A peer from before pickup reports, as a TLS server with its node's certificate: it
/// refuses a batch carrying `pickups` whole (400, as its `deny_unknown_fields` did) and
/// answers any other with a receipt, signed with its key, for each message. Every batch
/// it got, as JSON, goes into `seen`.
async fn serve_older_peer(
    config: &crate::config::Config,
    key: crate::core::keys::SigningKey,
    seen: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;

    let tls = crate::node::tls::server_config(&config.tls).expect("server TLS");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .expect("bind the peer's port");
    let key = Arc::new(key);
    let center = config.center.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, key, center, seen) =
                (acceptor.clone(), key.clone(), center.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (key, center, seen) = (key.clone(), center.clone(), seen.clone());
                    async move {
                        let bytes = req.into_body().collect().await?.to_bytes();
                        let batch: serde_json::Value =
                            serde_json::from_slice(&bytes).expect("a batch is JSON");
                        seen.lock().expect("lock").push(batch.clone());
                        let (status, answer) = if batch.get("pickups").is_some() {
                            let refusal = "expected {\"messages\": [...], …}: unknown field \
                                           `pickups`";
                            (
                                StatusCode::BAD_REQUEST,
                                serde_json::json!({ "detail": refusal }),
                            )
                        } else {
                            let results: Vec<serde_json::Value> = batch["messages"]
                                .as_array()
                                .expect("messages")
                                .iter()
                                .map(|m| {
                                    let id = m["id"].as_str().expect("id");
                                    let digest = m["digest"].as_str().expect("digest");
                                    let receipt = crate::core::wire::Receipt::sign(
                                        &key,
                                        &center,
                                        id,
                                        digest,
                                        "2026-11-26T03:00:00.000Z",
                                    );
                                    serde_json::json!({ "id": id, "receipt": receipt })
                                })
                                .collect();
                            (StatusCode::OK, serde_json::json!({ "results": results }))
                        };
                        let mut resp =
                            hyper::Response::new(Full::new(bytes::Bytes::from(answer.to_string())));
                        *resp.status_mut() = status;
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
}

/// Mixed versions: gangseo owes suwon a pickup report and has a message for it, and suwon
/// runs a plusgate from before reports. The batch carrying the report is refused, sent
/// again without it and taken (the message delivered); later batches carry no report, and
/// the report waits in gangseo's queue, updated by the acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_from_before_pickup_reports_gets_its_messages_and_the_reports_wait() {
    use crate::config::Config;
    use crate::core::directory::Directory;
    use crate::core::identity::AgencyId;
    use crate::core::message::Envelope;
    use crate::core::routing::Route;
    use crate::node::clock::ManualClock;
    use crate::node::ledger::{LeaseItem, LedgerOptions, Submission};
    use crate::node::store::DeliveryState;

    let tmp = tempfile::tempdir().expect("tempdir");
    let base_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let args = crate::dev::devinit::DevInitArgs {
        out: tmp.path().join("fed"),
        centers: vec!["suwon".into(), "gangseo".into()],
        base_port,
    };
    let manifest = crate::dev::devinit::run(&args).expect("dev-init");
    let load = |center: &str| {
        Config::load(&manifest.config_path(center).expect("center")).expect("config")
    };
    let (older, config) = (load("suwon"), load("gangseo"));
    let older_key = crate::core::keys::SigningKey::load(
        &older.federation.as_ref().expect("federated").signing_key,
    )
    .expect("suwon's signing key");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    serve_older_peer(&older, older_key, seen.clone()).await;

    // gangseo's node: its ledger, with the consents the examples cite.
    let f = config.federation.clone().expect("federated");
    let directory = Directory::load(&f.directory, &f.authority_key).expect("directory");
    let routing = Arc::new(Routing::federated(
        config.center.clone(),
        Arc::new(directory),
    ));
    let store = Store::open(&tmp.path().join("data")).expect("store");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let options = LedgerOptions {
        federated_as: Some(config.center.clone()),
        ..LedgerOptions::default()
    };
    let (ledger, _thread) = Ledger::start(store.clone(), options, clock.clone()).expect("ledger");
    let example = |name: &str| {
        let (path, sender) = manifest.example(name).expect("example");
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON");
        (body, AgencyId::parse(sender).expect("sender"))
    };
    for name in ["consent", "consent-reply-remote"] {
        let (consent, collector) = example(name);
        let record =
            crate::core::consent::Registration::new(&consent, &collector, &clock.now_rfc3339())
                .expect("registration")
                .record;
        ledger
            .register_consent(collector, record)
            .await
            .expect("registered");
    }
    let submission = |name: &str, route: Route| {
        let (body, sender) = example(name);
        let envelope = Envelope::from_validated(body, &sender).expect("envelope");
        Submission::new(&sender, envelope, route, None, clock.now()).expect("submission")
    };
    // A message suwon handed over, pulled here: a report for suwon is queued.
    let taken = ledger
        .receive(
            older.center.clone(),
            Vec::new(),
            Vec::new(),
            vec![submission("referral-remote", Route::Local)],
        )
        .await
        .expect("received");
    let pulled = taken[0].as_ref().expect("taken").id.clone();
    let m = store.message(&pulled).expect("read").expect("record");
    let recipient = AgencyId::parse(&m.to).expect("recipient");
    let item = LeaseItem::of(pulled.clone(), &m);
    ledger
        .lease(recipient.clone(), vec![item])
        .await
        .expect("leased");
    let queued = |store: &Store| -> Vec<crate::node::store::Pickup> {
        store
            .pickup_reports(&older.center)
            .map(|r| r.expect("entry").1)
            .collect()
    };
    assert_eq!(queued(&store).len(), 1);
    // And the answer to it, for suwon.
    let answer = submission(
        "referral-status-remote",
        Route::Remote(older.center.clone()),
    );
    let answer = ledger.accept(answer).await.expect("accepted").id;

    let (_routing_tx, routing_rx) = watch::channel(routing);
    let (closing_tx, closing_rx) = watch::channel(false);
    let tls = crate::node::reload::forwarding_config(&config.tls).expect("tls");
    let (_tls_tx, tls) = tokio::sync::watch::channel(tls);
    let ctx = Arc::new(Forwarding {
        center: config.center.clone(),
        store: store.clone(),
        ledger: ledger.clone(),
        routing: routing_rx,
        tls,
        options: ForwardOptions {
            batch_max: 256,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(1),
            message_ttl: Duration::from_secs(3600),
        },
        closing: closing_rx,
        clock: clock.clone(),
        keys: None,
        signing_key: Arc::new(
            crate::core::keys::SigningKey::load(&f.signing_key).expect("gangseo's key"),
        ),
        metrics: Arc::default(),
    });
    let task = tokio::spawn(forward(ctx, older.center.clone()));

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = store.delivery(&answer).expect("read").expect("delivery");
        if d.state == DeliveryState::Delivered {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not delivered: {d:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0]["pickups"].as_array().map(Vec::len), Some(1));
        assert_eq!(seen[0]["messages"], seen[1]["messages"]);
        assert!(seen[1].get("pickups").is_none(), "{}", seen[1]);
    }

    // The acknowledgement updates the waiting report, and the next batches carry none.
    ledger
        .ack(recipient, vec![pulled])
        .await
        .expect("acknowledged");
    let reports = queued(&store);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].acked_at.is_some(), "{reports:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen
        .lock()
        .expect("lock")
        .iter()
        .skip(1)
        .all(|b| b.get("pickups").is_none()));
    closing_tx.send_replace(true);
    task.await.expect("forwarder stops on closing");
}
