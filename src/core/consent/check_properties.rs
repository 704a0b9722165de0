//! The consent check as a specification: every combination of consent state and time,
//! against a model that says which condition must fail first.

use super::*;
use proptest::prelude::*;

/// The example consent (valid 2026-03-05T10:20+09:00 to 2027-03-04T23:59:59+09:00,
/// recipients suwon/welfare and gangseo/welfare, purposes medical-support,
/// livelihood-support, integrated-case-management, seven items).
fn example_record() -> ConsentRecord {
    let doc: Value = serde_json::from_str(include_str!("../../../schemas/examples/consent.json"))
        .expect("example");
    let collector = AgencyId::parse("suwon/employment").expect("id");
    Registration::new(&doc, &collector, "2026-03-05T01:20:00Z")
        .expect("registration")
        .record
}

/// When, relative to the validity.
#[derive(Debug, Clone, Copy)]
enum When {
    Before,
    During,
    After,
}

fn at(when: When, offset_s: i64) -> OffsetDateTime {
    let parse = |t| OffsetDateTime::parse(t, &Rfc3339).expect("time");
    match when {
        When::Before => parse("2026-03-05T10:20:00+09:00") - Duration::seconds(1 + offset_s),
        When::During => parse("2026-03-05T10:20:00+09:00") + Duration::seconds(offset_s),
        When::After => parse("2027-03-04T23:59:59+09:00") + Duration::seconds(1 + offset_s),
    }
}

const ALL_ITEMS: [&str; 10] = [
    "household",
    "needs",
    "urgency",
    "summary",
    "tried",
    "contact_preferences",
    "requested_response_by",
    // Not covered by the example:
    "outcome",
    "plan",
    "conference",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_message_passes_only_if_every_condition_holds_and_else_the_first_failure_is_named(
        exists in any::<bool>(),
        same_subject in any::<bool>(),
        sender in prop::sample::select(vec!["suwon/employment", "suwon/welfare", "suwon/finance"]),
        when in prop_oneof![Just(When::Before), Just(When::During), Just(When::After)],
        // Up to ~11 months into (or before/after) the validity.
        offset_s in 0i64..28_000_000,
        withdrawn in any::<bool>(),
        recipient in prop::sample::select(vec!["suwon/welfare", "gangseo/welfare", "suwon/jobs", "suwon/employment"]),
        purpose in prop::option::of(prop::sample::select(vec!["medical-support", "livelihood-support", "employment-support", "housing-support"])),
        items in prop::sample::subsequence(ALL_ITEMS.to_vec(), 0..=ALL_ITEMS.len()),
    ) {
        let mut record = example_record();
        if withdrawn {
            record.status = ConsentStatus::Withdrawn;
            record.history.push(StatusChange {
                status: ConsentStatus::Withdrawn,
                at: "2026-06-01T09:00:00+09:00".into(),
                by: "suwon/employment".into(),
                reason: None,
                stated_at: None,
            });
        }
        let subject = if same_subject { record.subject.clone() } else { "ps-0123456789abcdef".to_owned() };
        let items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
        let wanted = Use { subject: &subject, sender, recipient, purpose, items: &items };
        let now = at(when, offset_s);
        let during = matches!(when, When::During) && now <= at(When::After, 0) - Duration::seconds(1);
        let uncovered: Vec<String> = items
            .iter()
            .filter(|i| ["outcome", "plan", "conference"].contains(&i.as_str()))
            .cloned()
            .collect();

        let got = if exists {
            record.check(&wanted, now).map(|_| ()).map_err(|r| r.kind())
        } else {
            Err(Refusal::Unknown { id: record.id.clone() }.kind())
        };
        // The model, in the documented order.
        let expected: Result<(), &str> = if !exists || sender == "suwon/finance" {
            // No party to it: as if it did not exist.
            Err("consent-unknown")
        } else if !same_subject {
            Err("consent-other-subject")
        } else if matches!(when, When::Before) {
            Err("consent-not-yet-valid")
        } else if !during {
            Err("consent-expired")
        } else if withdrawn {
            Err("consent-withdrawn")
        } else if !["suwon/welfare", "gangseo/welfare"].contains(&recipient) {
            Err("consent-recipient-not-named")
        } else if purpose.is_none() {
            Err("consent-purpose-unknown")
        } else if !["medical-support", "livelihood-support"].contains(&purpose.unwrap_or_default()) {
            Err("consent-purpose-not-covered")
        } else if !uncovered.is_empty() {
            Err("consent-item-not-covered")
        } else {
            Ok(())
        };
        prop_assert_eq!(got, expected);
        // Data minimisation names every uncovered field, in payload order.
        if let (true, Err(Refusal::ItemNotCovered { items: named, .. })) = (exists, record.check(&wanted, now)) {
            prop_assert_eq!(named, uncovered);
        }
    }
}

#[test]
fn retention_periods_count_calendar_years_months_and_days() {
    let t = |s| OffsetDateTime::parse(s, &Rfc3339).expect("time");
    let r = |s| Retention::parse(s).expect("period");
    assert_eq!(
        r("P3Y").end(t("2026-03-05T10:20:00+09:00")),
        t("2029-03-05T10:20:00+09:00")
    );
    assert_eq!(
        r("P1Y6M").end(t("2026-08-31T00:00:00Z")),
        t("2028-02-29T00:00:00Z")
    );
    assert_eq!(
        r("P1M").end(t("2026-01-31T12:00:00Z")),
        t("2026-02-28T12:00:00Z")
    );
    assert_eq!(
        r("P90D").end(t("2026-01-01T00:00:00Z")),
        t("2026-04-01T00:00:00Z")
    );
    assert_eq!(
        r("P2W").end(t("2026-12-25T00:00:00Z")),
        t("2027-01-08T00:00:00Z")
    );
    for bad in ["", "P", "3Y", "P3X", "PY", "P-1D"] {
        assert_eq!(Retention::parse(bad), None, "{bad}");
    }
}
