//! The operations listener: plain HTTP, no client certificate, loopback. `/metrics` moves by
//! exactly what the node did and names no person or message; `/healthz` and `/readyz`
//! answer as on the mTLS listener.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{ack, pull, push, push_accepted, Federation, Node};

/// A plain-HTTP answer.
struct Plain {
    status: u16,
    content_type: String,
    body: String,
}

/// `method path` on the operations listener at `addr`, over a fresh connection.
fn plain(addr: SocketAddr, method: &str, path: &str) -> Plain {
    let mut tcp = TcpStream::connect(addr).expect("connect to the operations listener");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send request");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).expect("read answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    Plain {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// One sample of the text format: `name{k="v",…} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of an OpenMetrics text; panics on a line that is not one, and checks
/// every sample's family was declared with `# TYPE` and the text ends with `# EOF`.
fn parse_metrics(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
    let mut families = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.push(rest.split_whitespace().next().expect("family").to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("closing brace");
                let labels = rest
                    .split(',')
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').expect("label pair");
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .expect("quoted label value");
                        (k.to_owned(), v.to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        assert!(
            families
                .iter()
                .any(|f| name == *f || name.starts_with(&format!("{f}_"))),
            "{name} has no # TYPE"
        );
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// The value of the sample `name` with exactly `labels`, if there is one.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

/// The node's metrics now.
fn scrape(node: &Node) -> (String, Vec<Sample>) {
    let addr = node
        .ops_addr()
        .expect("the node has an operations listener");
    let answer = plain(addr, "GET", "/metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        answer.content_type
    );
    let samples = parse_metrics(&answer.body);
    (answer.body, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_what_the_node_did_and_name_no_person_or_message() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let welfare = node.agent("suwon/welfare", HttpVersion::Http2);
    let (_, before) = scrape(&node);
    let count = |samples: &[Sample], method: &str, route: &str, status: &str| {
        value(
            samples,
            "plusgate_http_request_duration_seconds_count",
            &[("method", method), ("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    let audit_before = value(&before, "plusgate_audit_entries", &[]).expect("audit entries");
    let fsyncs_before = value(&before, "plusgate_ledger_fsync_seconds_count", &[]).unwrap_or(0.0);

    for i in 1..=3 {
        push_accepted(&employment, &fed.referral(&format!("ref-ops-{i}"))).await;
    }
    // One the consent does not cover: refused, and counted by reason.
    let mut refused = fed.referral("ref-ops-refused");
    refused["to"] = json!("suwon/finance");
    refused["payload"]["recipient"]["agency"] = json!("suwon/finance");
    assert_eq!(push(&employment, &refused).await.status.as_u16(), 403);
    let pulled = pull(&welfare, "max=2").await;
    assert_eq!(pulled.len(), 2, "{pulled:?}");
    let first = pulled[0]["id"].as_str().expect("id");
    assert_eq!(ack(&welfare, &[first]).await.status.as_u16(), 200);

    let (text, after) = scrape(&node);
    let agency = |name: &str, agency: &str| value(&after, name, &[("agency", agency)]);
    assert_eq!(
        agency("plusgate_messages_pushed_total", "suwon/employment"),
        Some(3.0)
    );
    assert_eq!(
        agency("plusgate_messages_pulled_total", "suwon/welfare"),
        Some(2.0)
    );
    assert_eq!(
        agency("plusgate_messages_acked_total", "suwon/welfare"),
        Some(1.0)
    );
    assert_eq!(
        agency("plusgate_inbox_messages", "suwon/welfare"),
        Some(2.0)
    );
    assert_eq!(
        agency("plusgate_inbox_messages", "suwon/employment"),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "plusgate_outbox_messages", &[("peer", "gangseo")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &after,
            "plusgate_consent_refusals_total",
            &[("reason", "consent-recipient-not-named")]
        ),
        Some(1.0)
    );
    for (method, route, status, n) in [
        ("POST", "/v1/messages", "202", 3.0),
        ("POST", "/v1/messages", "403", 1.0),
        ("GET", "/v1/inbox", "200", 1.0),
        ("POST", "/v1/inbox/ack", "200", 1.0),
    ] {
        assert_eq!(
            count(&after, method, route, status) - count(&before, method, route, status),
            n,
            "{method} {route} {status}"
        );
    }
    // Three accepted, one refused, two leased, one acked.
    assert_eq!(
        value(&after, "plusgate_audit_entries", &[]),
        Some(audit_before + 7.0)
    );
    let fsyncs = value(&after, "plusgate_ledger_fsync_seconds_count", &[]).expect("fsyncs");
    assert!(fsyncs > fsyncs_before, "{fsyncs} > {fsyncs_before}");
    assert!(
        value(&after, "plusgate_tls_certificate_expiry_days", &[]).is_some_and(|d| d > 1.0),
        "{text}"
    );
    // A fresh node has signed no checkpoint yet (every 1000 entries or 60 s): no age.
    assert!(
        value(&after, "plusgate_audit_checkpoint_age_seconds", &[]).is_none_or(|s| s >= 0.0),
        "{text}"
    );
    // No subject, message or consent id anywhere.
    let referral = fed.referral("x");
    let subject = referral["subject"].as_str().expect("subject");
    let consent = referral["consent_id"].as_str().expect("consent id");
    for secret in [subject, consent, "ref-ops"] {
        assert!(!text.contains(secret), "`{secret}` in /metrics:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_on_loopback_without_a_certificate_as_on_the_api() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let addr = node.ops_addr().expect("an operations listener");
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr, node.addr());
    let api = node.agent("suwon/employment", HttpVersion::Http1);
    for path in ["/healthz", "/readyz"] {
        let plain = plain(addr, "GET", path);
        assert_eq!(plain.status, 200, "{path}: {}", plain.body);
        let over_tls = api.get(path).await.expect("mTLS answer");
        assert_eq!(over_tls.status.as_u16(), 200, "{path}");
        let body: Value = serde_json::from_str(&plain.body).expect("JSON");
        assert_eq!(body, over_tls.json::<Value>().expect("JSON"), "{path}");
    }
    // Nothing else is served there.
    assert_eq!(plain(addr, "GET", "/v1/messages/ref-1").status, 404);
    assert_eq!(plain(addr, "GET", "/v1/inbox").status, 404);
    assert_eq!(plain(addr, "POST", "/metrics").status, 405);
}

#[test]
fn ops_listen_off_means_no_operations_listener() {
    let fed = Federation::new();
    fed.set_option("suwon", "ops", "listen", "\"off\"");
    let node = fed.start_bare("suwon", "");
    assert_eq!(node.ops_addr(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_message_shows_as_delivery_lag_for_its_peer() {
    let fed = Federation::new();
    let a = fed.start("suwon");
    let b = fed.start("gangseo");
    let referral = crate::support::with_id(fed.example("referral-remote"), "ref-ops-remote");
    let to = referral["to"].as_str().expect("to").to_owned();
    let peer = to.split('/').next().expect("center").to_owned();
    let employment = a.agent("suwon/employment", HttpVersion::Http1);
    push_accepted(&employment, &referral).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, samples) = scrape(&a);
        let lag = value(
            &samples,
            "plusgate_delivery_lag_seconds_count",
            &[("peer", &peer)],
        );
        if lag == Some(1.0) {
            assert_eq!(
                value(&samples, "plusgate_outbox_messages", &[("peer", &peer)]),
                Some(0.0)
            );
            assert_eq!(
                value(&samples, "plusgate_dead_letters_total", &[("peer", &peer)]),
                None
            );
            // The receiving node counts what it took, by the center that sent it.
            let (_, at_b) = scrape(&b);
            assert_eq!(
                value(
                    &at_b,
                    "plusgate_messages_received_total",
                    &[("peer", "suwon")]
                ),
                Some(1.0)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_names_its_request_id_as_the_log_lines_do() {
    let fed = Federation::new();
    let node = fed.start_logging("suwon", "plusgate=debug");
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let accepted = push(&employment, &fed.referral("ref-ops-request-id")).await;
    let missing = employment.get("/v1/messages/nope").await.expect("answer");
    let id_of = |r: &plusgate::node::client::Response| -> u64 {
        r.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric X-Request-Id: {:?}", r.headers))
    };
    let (first, second) = (id_of(&accepted), id_of(&missing));
    assert!(second > first, "{first} then {second}");
    // A refusal names its id too, and the log line of that request carries the same.
    let log = node.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("request_id={second}")) && l.contains("status=404")),
        "{log}"
    );
}
