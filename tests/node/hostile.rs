//! Hostile clients, each with a client certificate (the attacks of `plusgate-hostile`, from
//! `harness::hostile`): bodies over the limit, bodies that never end, JSON built to hurt a
//! parser, too many or too large headers, slow headers and bodies, connection floods and
//! HTTP/2 frame abuse. Each gets a clear error or a closed connection within the node's
//! (lowered) timeouts, and the node is alive and serves a good client afterwards.
//!
//! Functional only: how much the attacks slow a good client is measured by
//! `plusgate-hostile` (docs/hostile-clients.md), never asserted here.

use std::net::Ipv4Addr;
use std::time::Duration;

use harness::hostile::{self, Outcome, Target, TargetLimits};
use plusgate::node::client::HttpVersion;

use crate::support::{push_accepted, Federation, Node};

/// The node's timeouts in these tests, lowered so that the slow attacks end in seconds.
const HANDSHAKE_TIMEOUT_MS: u64 = 1_000;
const HEADER_READ_TIMEOUT_MS: u64 = 2_000;
const BODY_READ_TIMEOUT_MS: u64 = 2_000;
const IDLE_TIMEOUT_MS: u64 = 3_000;
const CONNECTIONS_PER_IDENTITY_MAX: u64 = 8;
const INBOX_WAIT_S_MAX: u64 = 2;

/// A node with the lowered timeouts, and the target of the attacks against it.
fn node() -> (Federation, Node, Target) {
    let fed = Federation::new();
    for (key, value) in [
        ("handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
        ("header_read_timeout_ms", HEADER_READ_TIMEOUT_MS),
        ("body_read_timeout_ms", BODY_READ_TIMEOUT_MS),
        ("idle_timeout_ms", IDLE_TIMEOUT_MS),
        ("connections_per_identity_max", CONNECTIONS_PER_IDENTITY_MAX),
        ("inbox_wait_s_max", INBOX_WAIT_S_MAX),
    ] {
        fed.set_option("suwon", "limits", key, &value.to_string());
    }
    // The default handshake rate per address, which the harness turns off for its clients:
    // every attack comes from an address of its own, the good client from 127.0.0.1.
    use plusgate::config::{
        HANDSHAKES_PER_ADDRESS_BURST_DEFAULT, HANDSHAKES_PER_ADDRESS_PER_S_DEFAULT,
    };
    for (key, value) in [
        (
            "handshakes_per_address_per_s",
            HANDSHAKES_PER_ADDRESS_PER_S_DEFAULT,
        ),
        (
            "handshakes_per_address_burst",
            HANDSHAKES_PER_ADDRESS_BURST_DEFAULT,
        ),
    ] {
        fed.set_option("suwon", "limits", key, &value.to_string());
    }
    let node = fed.start("suwon");
    let target = Target {
        addr: node.addr(),
        source: Ipv4Addr::new(127, 0, 0, 2),
        ca: fed.manifest().ca_path(),
        other: fed.identity("suwon/saeil"),
        same: fed.identity("suwon/employment"),
        limits: TargetLimits {
            body_bytes_max: 1 << 20,
            handshake_timeout: Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
            header_read_timeout: Duration::from_millis(HEADER_READ_TIMEOUT_MS),
            body_read_timeout: Duration::from_millis(BODY_READ_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(IDLE_TIMEOUT_MS),
            inbox_wait_max: Duration::from_secs(INBOX_WAIT_S_MAX),
            handshakes_max: plusgate::config::HANDSHAKES_MAX_DEFAULT,
            connections_per_identity_max: CONNECTIONS_PER_IDENTITY_MAX as usize,
        },
    };
    (fed, node, target)
}

fn describe(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .map(|o| {
            format!(
                "  {} {}: got {}, expected {}",
                if o.ok { "ok " } else { "BAD" },
                o.variant,
                o.got,
                o.expected
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one round of each attack of `names` and checks every outcome; then the node must
/// be alive and accept a good client's push.
async fn check(names: &[&str]) {
    let (fed, mut node, target) = node();
    let mut wrong = Vec::new();
    for (i, name) in (10u8..).zip(names) {
        // Each attack from a loopback address of its own, as from a machine of its own: the
        // floods use up their address's handshake rate, which is not what the next attack
        // is about.
        let target = Target {
            source: Ipv4Addr::new(127, 0, 0, i),
            ..target.clone()
        };
        let outcomes = hostile::round(name, &target)
            .await
            .expect("the attack runs");
        assert!(!outcomes.is_empty(), "{name}: no outcome");
        if outcomes.iter().any(|o| !o.ok) {
            wrong.push(format!("{name}:\n{}", describe(&outcomes)));
        }
        assert!(
            matches!(node.exited(), Ok(None)),
            "the node died during {name}:\n{}",
            node.log_tail(40)
        );
    }
    assert!(
        wrong.is_empty(),
        "unexpected outcomes:\n{}",
        wrong.join("\n")
    );
    for (i, version) in [HttpVersion::Http1, HttpVersion::Http2]
        .into_iter()
        .enumerate()
    {
        let agent = node.agent("suwon/employment", version);
        push_accepted(&agent, &fed.referral(&format!("after-attacks-{i}"))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_get_a_clear_error() {
    check(&[
        "body-declared-over-limit",
        "body-streamed-over-limit",
        "json-deep",
        "json-duplicate-keys",
        "json-huge-numbers",
        "json-bad-bytes",
        "headers-many",
        "header-huge",
        "uri-huge",
    ])
    .await;
}

/// Regression: the HTTP/1.1 header read timeout was a hard-coded 30 s; it is
/// `limits.header_read_timeout_ms` now, and a slowloris is closed within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_are_cut_off_within_their_timeouts() {
    check(&["slow-headers", "slow-body", "body-never-ends"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_floods_are_bounded_and_released() {
    check(&[
        "flood-no-hello",
        "flood-handshakes",
        "flood-handshakes-spread",
        "flood-idle",
    ])
    .await;
}

/// Regression (h2-zero-window): a client that never opens its window held its connection
/// and the answers until `connection_age_max_s`; now the stalled connection is closed and,
/// when its graceful close cannot finish, dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_frame_abuse_is_refused_or_absorbed() {
    check(&[
        "h2-rapid-reset",
        "h2-stream-flood",
        "h2-control-flood",
        "h2-continuation-flood",
        "h2-zero-window",
    ])
    .await;
}
