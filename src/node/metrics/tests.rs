//! The metrics' names, labels and values as `/metrics` shows them.

use super::*;

#[derive(Debug)]
struct Nothing;

impl Collector for Nothing {
    fn encode(&self, _: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

fn agency(id: &str) -> AgencyId {
    AgencyId::parse(id).expect("agency id")
}

#[test]
fn recorded_values_appear_with_their_labels() {
    let api = ApiMetrics::default();
    let ledger = LedgerMetrics::default();
    let metrics = Metrics::new(&api, &ledger, Box::new(Nothing));
    let employment = agency("suwon/employment");
    for _ in 0..3 {
        api.pushed(&employment);
    }
    api.pulled(&agency("suwon/welfare"), 2);
    api.acked(&agency("suwon/welfare"), 1);
    api.request("POST", "/v1/messages", 202, Duration::from_millis(3));
    ledger.committed(5, Duration::from_micros(700));
    ledger.refused("consent-expired");
    let text = metrics.encode();
    for line in [
        r#"plusgate_messages_pushed_total{agency="suwon/employment"} 3"#,
        r#"plusgate_messages_pulled_total{agency="suwon/welfare"} 2"#,
        r#"plusgate_messages_acked_total{agency="suwon/welfare"} 1"#,
        r#"plusgate_http_request_duration_seconds_count{method="POST",route="/v1/messages",status="202"} 1"#,
        r#"plusgate_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/messages",status="202"} 1"#,
        "plusgate_ledger_group_commands_count 1",
        "plusgate_ledger_group_commands_sum 5.0",
        "plusgate_ledger_fsync_seconds_count 1",
        r#"plusgate_consent_refusals_total{reason="consent-expired"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}
