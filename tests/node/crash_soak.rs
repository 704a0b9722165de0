//! The crash soak in short (`plusgate-soak` runs the long one, docs/crash-soak.md): node
//! A or node B SIGKILLed at random moments under load, a dozen or so times, then every
//! acknowledged message delivered exactly once, nothing invented, empty outboxes, and both
//! audit chains verify. Some restarts are themselves killed during start-up. The same code
//! as the long run (`harness::soak`), with a fixed seed so the kill sequence hits both nodes
//! and start-ups.

use std::time::Duration;

use harness::soak::{self, KillPlan, SoakConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_of_either_node_under_load_lose_nothing_and_duplicate_nothing() {
    let plusgate = harness::Plusgate::at(crate::support::plusgate_bin());
    let config = SoakConfig {
        plusgate,
        seed: 20_261_133,
        plan: KillPlan {
            kills: 14,
            after_min_ms: 50,
            after_max_ms: 1500,
            down_min_ms: 0,
            down_max_ms: 300,
            startup_percent: 30,
            startup_max_ms: 100,
        },
        pushers_local: 2,
        pushers_remote: 2,
        retry_percent: 50,
        conflict_percent: 5,
        push_pause: Duration::ZERO,
        drain_max: Duration::from_secs(180),
        keep: false,
    };
    let report = soak::run(&config).await.unwrap_or_else(|e| panic!("{e:#}"));
    let summary = report.summary();
    // Shown with `--nocapture`: the numbers behind a pass.
    eprintln!("{summary}");
    assert!(report.passed, "{summary}");
    assert_eq!(report.kills.node_a + report.kills.node_b, 14, "{summary}");
    assert!(
        report.kills.node_a > 0 && report.kills.node_b > 0,
        "the seed kills both nodes: {summary}"
    );
    assert!(
        report.kills.startup_kills > 0,
        "the seed kills restarts during start-up too: {summary}"
    );
    assert!(
        report.local.acked > 0 && report.remote.acked > 0,
        "load reached both recipients: {summary}"
    );
    assert_eq!(report.duplicates, 0, "{summary}");
    assert_eq!(report.lost, 0, "{summary}");
    assert_eq!(report.end.audit, ["ok", "ok"], "{summary}");
}
