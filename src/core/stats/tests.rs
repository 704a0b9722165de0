//! Unit tests of the statistics rules: periods, durations and quantiles, outcome columns,
//! folding days and merging answers, and the report's protection of shared cells.

use ::time::macros::date;
use serde_json::json;

use super::report::{Context, Report};
use super::*;

#[test]
fn periods_are_clipped_calendar_months_iso_weeks_and_days() {
    let m = periods(date!(2026 - 01 - 15), date!(2026 - 03 - 02), By::Month).expect("test value");
    let labels: Vec<_> = m.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["2026-01", "2026-02", "2026-03"]);
    assert_eq!(
        (m[0].from, m[0].to),
        (date!(2026 - 01 - 15), date!(2026 - 01 - 31))
    );
    assert_eq!(
        (m[2].from, m[2].to),
        (date!(2026 - 03 - 01), date!(2026 - 03 - 02))
    );

    // 2026-01-01 is a Thursday, in ISO week 2026-W01.
    let w = periods(date!(2026 - 01 - 01), date!(2026 - 01 - 12), By::Week).expect("test value");
    let labels: Vec<_> = w.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["2026-W01", "2026-W02", "2026-W03"]);
    assert_eq!(w[0].to, date!(2026 - 01 - 04));
    assert_eq!(
        (w[1].from, w[1].to),
        (date!(2026 - 01 - 05), date!(2026 - 01 - 11))
    );

    let d = periods(date!(2024 - 02 - 28), date!(2024 - 03 - 01), By::Day).expect("test value");
    assert_eq!(d.len(), 3, "2024 is a leap year");

    assert!(matches!(
        periods(date!(2026 - 02 - 01), date!(2026 - 01 - 01), By::Day),
        Err(RangeError::Backwards { .. })
    ));
    assert!(matches!(
        periods(date!(2025 - 01 - 01), date!(2026 - 12 - 31), By::Day),
        Err(RangeError::TooLong(730))
    ));
    assert_eq!(
        periods(date!(2026 - 01 - 01), date!(2026 - 12 - 31), By::Day)
            .expect("test value")
            .len(),
        365
    );
}

#[test]
fn durations_keep_three_digits_and_quantiles_are_nearest_rank() {
    assert_eq!(quantize(9_999), 9_999);
    assert_eq!(quantize(12_345), 12_340);
    assert_eq!(quantize(86_409), 86_400);
    assert_eq!(quantize(3_110_430), 3_110_000);
    // Every band edge survives, and a time just under one stays under it.
    for (_, edge) in &ACCEPTANCE_BANDS[..ACCEPTANCE_BANDS.len() - 1] {
        assert_eq!(quantize(*edge), *edge);
        assert!(quantize(edge - 1) < *edge);
    }

    let mut d = Durations::default();
    for s in [10, 20, 30, 40] {
        d.add(s);
    }
    assert_eq!(d.quantile(1, 2), Some(20), "the 2nd of 4");
    assert_eq!(d.quantile(9, 10), Some(40), "the 4th of 4");
    d.add(20);
    assert_eq!(d.count(), 5);
    assert_eq!(d.quantile(1, 2), Some(20), "the 3rd of 10, 20, 20, 30, 40");
    assert_eq!(Durations::default().quantile(1, 2), None);

    let mut other = Durations::default();
    other.add(20);
    other.add(5_000_000);
    d.merge(&other);
    assert_eq!(d.count(), 7);
    assert_eq!(d.bands(&ACCEPTANCE_BANDS), vec![6, 0, 0, 0, 0, 1]);
}

#[test]
fn outcome_columns_follow_the_referral_status_schema() {
    assert_eq!(outcome_column(None, None), "no-answer");
    assert_eq!(outcome_column(Some("requested"), None), "no-answer");
    assert_eq!(outcome_column(Some("on-hold"), None), "on-hold");
    assert_eq!(
        outcome_column(Some("completed"), Some("employed")),
        "completed:employed"
    );
    assert_eq!(
        outcome_column(Some("completed"), Some("unheard-of")),
        "completed:other"
    );
    assert!(takes_on("in-progress") && !takes_on("declined") && !takes_on("requested"));
    // Every status of the schema but `requested` has its own column.
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../schemas/referral-status.v1.json"))
            .expect("test value");
    for s in schema["properties"]["status"]["enum"]
        .as_array()
        .expect("test value")
    {
        let s = s.as_str().expect("test value");
        let col = outcome_column(Some(s), Some("employed"));
        assert!(OUTCOME_COLUMNS.contains(&col));
        assert_eq!(col == "no-answer", s == "requested", "{s}");
    }
    for c in schema["properties"]["outcome"]["properties"]["code"]["enum"]
        .as_array()
        .expect("test value")
    {
        let col = format!("completed:{}", c.as_str().expect("test value"));
        assert!(OUTCOME_COLUMNS.contains(&col.as_str()), "{col}");
    }
}

fn day(referrals: u64, outcome: &str) -> PairDay {
    let mut d = PairDay::default();
    d.messages.insert("referral".into(), referrals);
    d.outcomes.insert(outcome.into(), referrals);
    d
}

#[test]
fn folding_puts_days_into_their_periods_and_merging_adds_answers() {
    let ps = periods(date!(2026 - 01 - 01), date!(2026 - 02 - 28), By::Month).expect("test value");
    let mut f = Folder::new(ps.clone());
    f.add_pair(date!(2026 - 01 - 05), "a/x", "a/y", &day(3, "accepted"));
    f.add_pair(date!(2026 - 02 - 05), "a/x", "a/y", &day(4, "no-answer"));
    f.add_pair(date!(2026 - 03 - 01), "a/x", "a/y", &day(100, "no-answer"));
    f.add_consents(
        date!(2026 - 02 - 10),
        &ConsentDay {
            refusals: [("consent-expired".to_owned(), 2)].into(),
            withdrawals: 1,
        },
    );
    let (_, mut raw) = f.finish();
    assert_eq!(raw.pairs.len(), 1);
    assert_eq!(
        raw.pairs[0].messages["referral"],
        vec![3, 4],
        "March is outside"
    );
    assert_eq!(raw.pairs[0].outcomes["no-answer"], 4);
    assert_eq!(raw.refusals["consent-expired"], vec![0, 2]);
    assert_eq!(raw.withdrawals, vec![0, 1]);

    let mut g = Folder::new(ps);
    g.add_pair(date!(2026 - 01 - 09), "b/x", "a/y", &day(6, "declined"));
    g.add_pair(date!(2026 - 01 - 09), "a/x", "a/y", &day(1, "declined"));
    let (_, other) = g.finish();
    other.check_shape(2).expect("test value");
    raw.merge(other);
    assert_eq!(raw.pairs.len(), 2);
    assert_eq!(raw.pairs[0].messages["referral"], vec![4, 4]);
    assert_eq!(raw.pairs[0].outcomes["declined"], 1);
    assert!(raw.check_shape(3).is_err());
}

#[test]
fn the_report_suppresses_small_counts_and_the_cells_that_would_give_them_away() {
    let ps = periods(date!(2026 - 01 - 01), date!(2026 - 02 - 28), By::Month).expect("test value");
    let mut f = Folder::new(ps.clone());
    // a/x -> a/y: 3 in January (accepted), 12 in February (no answer).
    f.add_pair(date!(2026 - 01 - 05), "a/x", "a/y", &day(3, "accepted"));
    f.add_pair(date!(2026 - 02 - 05), "a/x", "a/y", &day(12, "no-answer"));
    // a/x -> b/z: 20 and 30, all completed as employed.
    f.add_pair(
        date!(2026 - 01 - 07),
        "a/x",
        "b/z",
        &day(20, "completed:employed"),
    );
    f.add_pair(
        date!(2026 - 02 - 07),
        "a/x",
        "b/z",
        &day(30, "completed:employed"),
    );
    let (ps, raw) = f.finish();
    let ctx = Context {
        scope: "center",
        center: "a".into(),
        from: "2026-01-01".into(),
        to: "2026-02-28".into(),
        by: By::Month,
        generated_at: "2026-03-01T00:00:00.000Z".into(),
        centers: vec![],
    };
    let r = Report::new(&ctx, &ps, &raw);
    let j = r.to_json();
    let m = &j["messages"];
    assert_eq!(m["rows"][0]["direction"], "within");
    assert_eq!(m["rows"][1]["direction"], "sent");
    // 3 is hidden, and so is a rectangle through it: 12 and 20, 30 or the totals.
    assert_eq!(m["rows"][0]["counts"][0], json!(null));
    let hidden = |v: &serde_json::Value| {
        v.as_array()
            .expect("test value")
            .iter()
            .filter(|x| x.is_null())
            .count()
    };
    assert!(hidden(&m["rows"][0]["counts"]) + usize::from(m["rows"][0]["total"].is_null()) >= 2);
    // Outcomes: 3 accepted hidden; a/x->a/y's total equals its messages total, so both are
    // hidden or both shown.
    let o = &j["outcomes"];
    assert_eq!(o["rows"][0]["counts"][1], json!(null));
    assert_eq!(
        o["rows"][0]["total"].is_null(),
        m["rows"][0]["total"].is_null()
    );
    assert_eq!(j["withdrawals"]["total"], json!(0));
    let csv = r.to_csv();
    assert!(csv.starts_with("table,from,to,type,direction,reason,column,value\r\n"));
    assert!(
        csv.contains("messages,a/x,a/y,referral,within,,2026-01,x\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains("outcomes,a/x,b/z,,sent,,completed:employed,50\r\n"),
        "{csv}"
    );
    assert!(csv.contains("withdrawals,*,*,*,*,*,total,0\r\n"), "{csv}");
}
