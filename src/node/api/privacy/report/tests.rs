//! Unit tests of `node::api::privacy::report`.

use super::*;

fn parse(report: Report, query: &str) -> Result<Filters, FilterError> {
    Filters::parse(Some(query), report)
}

#[test]
fn filters_name_the_bad_parameter() {
    let check = |report, query: &str, expected: &str| {
        let err = parse(report, query).expect_err(query).to_string();
        assert!(err.contains(expected), "{query}: {err}");
    };
    check(
        Report::Consents,
        "subjekt=ps-1",
        "unknown query parameter `subjekt`",
    );
    check(
        Report::Refusals,
        "subject=ps-1",
        "unknown query parameter `subject`",
    );
    check(Report::Consents, "status=revoked", "`status`");
    check(Report::Consents, "from=2026-13-01", "`from`");
    check(Report::Withdrawals, "to=yesterday", "`to`");
    check(Report::Consents, "agency=nobody", "`agency`");
    check(Report::Consents, "subject=<script>", "`subject`");
    check(Report::Consents, "format=xml", "`format`");
    check(Report::Audit, "verify=maybe", "`verify`");
    check(Report::Consents, "status=granted&status=withdrawn", "twice");
    check(Report::Consents, "from=2026-11-27&to=2026-11-26", "before");
}

/// A day is an Asia/Seoul day: 2026-11-26 runs from 2026-11-25T15:00:00Z up to
/// 2026-11-26T15:00:00Z, so an event at 23:30 UTC on the 25th is on the 26th.
#[test]
fn dates_cover_whole_seoul_days_and_date_times_are_exact() {
    let f = parse(Report::Consents, "from=2026-11-26&to=2026-11-26").expect("ok");
    for (at, inside) in [
        ("2026-11-25T14:59:59.999Z", false),
        ("2026-11-25T15:00:00Z", true),
        ("2026-11-25T23:30:00Z", true),
        ("2026-11-26T00:00:00+09:00", true),
        ("2026-11-26T14:59:59.999Z", true),
        ("2026-11-26T23:59:59.999+09:00", true),
        ("2026-11-26T15:00:00Z", false),
        ("2026-11-26T23:30:00Z", false),
        ("2026-11-27T00:00:00+09:00", false),
        ("not a time", false),
    ] {
        assert_eq!(f.range.contains(at), inside, "{at}");
    }
    let f = parse(
        Report::Consents,
        "from=2026-11-26T09:00:00%2B09:00&to=2026-11-26T01:00:00Z",
    )
    .expect("ok");
    assert!(f.range.contains("2026-11-26T00:00:00Z"));
    assert!(f.range.contains("2026-11-26T01:00:00Z"));
    assert!(!f.range.contains("2026-11-26T01:00:00.001Z"));
    assert!(parse(Report::Consents, "")
        .expect("ok")
        .range
        .contains("junk"));
    let f = parse(Report::Consents, "subject=&status=&format=csv").expect("ok");
    assert!(f.subject.is_none() && f.status.is_none() && f.csv);
}

struct Row(Vec<&'static str>);
impl CsvRow for Row {
    const HEADER: &'static [&'static str] = &["a", "b"];
    fn cells(&self) -> Vec<String> {
        self.0.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// The answer's bytes start with the UTF-8 byte-order mark, and Hangul comes back whole.
#[test]
fn csv_answers_start_with_a_utf8_bom_and_keep_hangul() {
    use http_body_util::BodyExt;
    let body = to_csv(&[Row(vec!["전화로 철회", "수원/복지"])]);
    let resp = csv_response("withdrawals", body.clone());
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    let bytes = futures_bytes(resp.into_body().collect());
    assert_eq!(bytes[..3], [0xEF, 0xBB, 0xBF]);
    let text = std::str::from_utf8(&bytes[3..]).expect("UTF-8");
    assert_eq!(text, body);
    assert!(text.contains("전화로 철회,수원/복지\r\n"), "{text}");
}

/// The collected body of a `Full` (ready at once: it never waits).
fn futures_bytes<F, E>(collect: F) -> Bytes
where
    F: std::future::Future<Output = Result<http_body_util::Collected<Bytes>, E>>,
    E: std::fmt::Debug,
{
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(collect)
        .expect("body")
        .to_bytes()
}

#[test]
fn csv_quotes_and_defuses_formulas() {
    let csv = to_csv(&[
        Row(vec!["plain", "a,b"]),
        Row(vec!["say \"hi\"", "line\nbreak"]),
        Row(vec!["=HYPERLINK(\"x\")", "@SUM(A1)"]),
    ]);
    assert_eq!(
        csv,
        "a,b\r\nplain,\"a,b\"\r\n\"say \"\"hi\"\"\",\"line\nbreak\"\r\n\"'=HYPERLINK(\"\"x\"\")\",'@SUM(A1)\r\n"
    );
}

#[test]
fn a_consent_past_its_validity_is_expired_unless_withdrawn() {
    let doc = include_str!("../../../../../schemas/examples/consent.json");
    let document: Value = serde_json::from_str(doc).expect("example");
    let agency = AgencyId::parse("suwon/employment").expect("id");
    let mut record =
        crate::core::consent::Registration::new(&document, &agency, "2026-11-26T00:00:00Z")
            .expect("registration")
            .record;
    let before = OffsetDateTime::parse("2027-01-01T00:00:00Z", &Rfc3339).expect("time");
    let after = OffsetDateTime::parse("2027-06-01T00:00:00Z", &Rfc3339).expect("time");
    let row = ConsentRow::new(&record, before);
    assert_eq!(row.status, ConsentStatus::Granted);
    assert_eq!(row.items.len(), 7);
    assert_eq!(row.purposes[0], "medical-support");
    assert_eq!(row.retention_period, "P3Y");
    assert_eq!(
        ConsentRow::new(&record, after).status,
        ConsentStatus::Expired
    );
    record.status = ConsentStatus::Withdrawn;
    record.history.push(crate::core::consent::StatusChange {
        status: ConsentStatus::Withdrawn,
        at: "2026-12-01T00:00:00Z".into(),
        by: "suwon/employment".into(),
        reason: None,
        stated_at: None,
    });
    let row = ConsentRow::new(&record, after);
    assert_eq!(row.status, ConsentStatus::Withdrawn);
    assert_eq!(row.withdrawn_at.as_deref(), Some("2026-12-01T00:00:00Z"));
    assert_eq!(
        row.cells()[10..],
        ["withdrawn".to_owned(), "2026-12-01T00:00:00Z".to_owned()]
    );
}
