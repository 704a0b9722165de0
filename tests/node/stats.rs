//! Referral statistics (`GET /v1/stats`) over three real nodes with known referrals,
//! statuses and times: every cell of the center's and the federation's views is its true
//! value or suppressed, small counts are suppressed, and no suppressed value can be worked
//! out from the published sums (checked by linear algebra, `protection`). Also: who may
//! ask, the CSV, and the signed federation answer.
//!
//! Times are pinned: the nodes start with their clocks at 2026-03-10 12:00 Seoul (phase 1,
//! referrals sent in March) and are restarted at 2026-04-15 12:00 (phase 2: more referrals,
//! pulls and statuses). A status's time is its `changed_at`, chosen here, so times to
//! acceptance are exact; time to first pull is the nodes' (36 days, give or take the
//! seconds the test takes, which three significant digits absorb).

mod protection;

use plusgate::node::client::{Agent, HttpVersion};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::{
    assert_problem, consent_of, pull, push, push_accepted, quick_federation, referral_between,
    wait_for_status_as, Federation,
};
use protection::{assert_no_hidden_cell_is_determined, assert_true_or_hidden, Published};

const PHASE_1: &str = "2026-03-10T03:00:00Z";
const PHASE_2: &str = "2026-04-15T03:00:00Z";
const DAY: i64 = 86_400;
const RANGE: &str = "from=2026-03-01&to=2026-04-30&by=month";

fn pin_clocks(fed: &Federation, centers: &[&str], at: &str) {
    let target = OffsetDateTime::parse(at, &Rfc3339).expect("time");
    let offset = (target - OffsetDateTime::now_utc()).whole_seconds();
    for c in centers {
        fed.shift_clock(c, offset);
    }
}

fn later(at: &str, days: i64) -> String {
    let t =
        OffsetDateTime::parse(at, &Rfc3339).expect("time") + time::Duration::seconds(days * DAY);
    t.format(&Rfc3339).expect("format")
}

/// A status of `referral` (sent by `from` to `to`, taken at `accepted_at`), `days` after it.
fn status_of(
    fed: &Federation,
    id: &str,
    referral: (&str, &str, &str, &str),
    status: &str,
    days: i64,
    consent: &str,
) -> Value {
    let (referral_id, from, to, accepted_at) = referral;
    let mut body = fed.example("referral-status");
    body["id"] = json!(id);
    body["to"] = json!(from);
    body["consent_id"] = json!(consent);
    body["payload"]["referral_id"] = json!(referral_id);
    body["payload"]["status"] = json!(status);
    body["payload"]["changed_at"] = json!(later(accepted_at, days));
    body["payload"]["changed_by"]["agency"] = json!(to);
    body["payload"]
        .as_object_mut()
        .expect("payload")
        .remove("next_contact_at");
    if status == "completed" {
        body["payload"]["outcome"] = json!({"code": "employed"});
    } else {
        body["payload"]
            .as_object_mut()
            .expect("payload")
            .remove("outcome");
    }
    body
}

/// A consent valid from before the pinned times (the examples are valid from yesterday).
fn consent_since_march(fed: &Federation, id: &str, collector: &str, recipients: &[&str]) -> Value {
    let mut c = consent_of(fed, id, collector, recipients);
    if collector.ends_with("/welfare") {
        // A reply: the items a status carries, as the example reply consent lists them.
        c["items"] = fed.example("consent-reply")["items"].clone();
    }
    let at = "2026-03-01T09:00:00+09:00";
    c["valid_from"] = json!(at);
    c["valid_until"] = json!("2027-02-28T23:59:59+09:00");
    c["notice"]["shown_at"] = json!(at);
    c["collection"]["collected_at"] = json!(at);
    c["status_history"][0]["at"] = json!(at);
    c
}

/// The statistics once `ready` holds of them (within [`crate::support::CATCH_UP`]).
async fn stats_once(agent: &Agent, query: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + crate::support::CATCH_UP;
    loop {
        let s = stats(agent, query).await;
        if ready(&s) || std::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn stats(agent: &Agent, query: &str) -> Value {
    let r = agent
        .get(&format!("/v1/stats?{query}"))
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.json().expect("JSON")
}

/// Pushes `n` referrals `from` → `to` under `consent`, ids `<stem>-<i>`: (id, accepted_at).
async fn send(
    fed: &Federation,
    agent: &Agent,
    (from, to, consent): (&str, &str, &str),
    stem: &str,
    n: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 1..=n {
        let id = format!("{stem}-{i:02}");
        let answer = push_accepted(agent, &referral_between(fed, &id, from, to, consent)).await;
        out.push((
            id,
            answer["accepted_at"]
                .as_str()
                .expect("accepted_at")
                .to_owned(),
        ));
    }
    out
}

/// The rows of a table as (key fields joined by `|`) → (counts, total) of JSON values.
fn keys(table: &Value, fields: &[&str]) -> Vec<String> {
    table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            fields
                .iter()
                .map(|f| r[*f].as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

fn outcome_truth(columns: &Value, rows: &[&[(&str, u64)]]) -> Vec<Vec<u64>> {
    let columns: Vec<&str> = columns
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c.as_str().expect("column"))
        .collect();
    rows.iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| row.iter().find(|(k, _)| k == c).map_or(0, |(_, v)| *v))
                .collect()
        })
        .collect()
}

fn times(row: &Value, measure: &str) -> (Value, Value) {
    (
        row[measure]["median_s"].clone(),
        row[measure]["p90_s"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_centers_get_every_cell_true_or_suppressed_and_nothing_can_be_worked_out() {
    let centers = ["suwon", "jeonju", "gangseo"];
    let (fed, _) = quick_federation(&centers, &[]);
    pin_clocks(&fed, &centers, PHASE_1);
    let mut nodes: Vec<_> = centers.iter().map(|c| fed.start(c)).collect();

    let consents = [
        (
            "cns-stats-a",
            "suwon/employment",
            vec!["suwon/welfare", "jeonju/welfare"],
            0,
        ),
        ("cns-stats-b", "jeonju/jobs", vec!["suwon/welfare"], 1),
        (
            "cns-stats-c",
            "gangseo/employment",
            vec!["gangseo/finance"],
            2,
        ),
        ("cns-stats-w", "suwon/employment", vec!["suwon/welfare"], 0),
        ("cns-reply-s", "suwon/welfare", vec!["suwon/employment"], 0),
        ("cns-reply-j", "jeonju/welfare", vec!["suwon/employment"], 1),
    ];
    for (id, collector, recipients, node) in &consents {
        let agent = nodes[*node].agent(collector, HttpVersion::Http1);
        crate::support::register_consent(
            &agent,
            &consent_since_march(&fed, id, collector, recipients),
        )
        .await;
    }

    // Phase 1, March.
    let suwon_employment = nodes[0].agent("suwon/employment", HttpVersion::Http1);
    let within = send(
        &fed,
        &suwon_employment,
        ("suwon/employment", "suwon/welfare", "cns-stats-a"),
        "sw",
        7,
    )
    .await;
    let across = send(
        &fed,
        &suwon_employment,
        ("suwon/employment", "jeonju/welfare", "cns-stats-a"),
        "sj",
        6,
    )
    .await;
    let jeonju_jobs = nodes[1].agent("jeonju/jobs", HttpVersion::Http1);
    let back = send(
        &fed,
        &jeonju_jobs,
        ("jeonju/jobs", "suwon/welfare", "cns-stats-b"),
        "js",
        3,
    )
    .await;
    let gangseo = nodes[2].agent("gangseo/employment", HttpVersion::Http1);
    send(
        &fed,
        &gangseo,
        ("gangseo/employment", "gangseo/finance", "cns-stats-c"),
        "gf",
        2,
    )
    .await;
    // Refused for consent: 2 to an agency the consent does not name, 6 under no consent.
    let mut reasons = Vec::new();
    for (i, (to, consent)) in [("suwon/jobs", "cns-stats-a"); 2]
        .into_iter()
        .chain([("suwon/welfare", "cns-stats-none"); 6])
        .enumerate()
    {
        let body = referral_between(
            &fed,
            &format!("refused-{i}"),
            "suwon/employment",
            to,
            consent,
        );
        let r = push(&suwon_employment, &body).await;
        assert_eq!(r.status.as_u16(), 403, "{}", r.text());
        let problem: Value = r.json().expect("problem");
        let kind = problem["type"]
            .as_str()
            .expect("type")
            .rsplit(':')
            .next()
            .expect("kind")
            .to_owned();
        reasons.push(kind);
    }
    let (wrong_recipient, no_consent) = (reasons[0].clone(), reasons[7].clone());
    assert_ne!(wrong_recipient, no_consent);
    let r = suwon_employment
        .post_json(
            "/v1/consents/cns-stats-w/withdraw",
            &json!({"reason": "철회"}),
        )
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    for (id, _) in &across {
        wait_for_status_as(&suwon_employment, id, |s| s["state"] == "delivered").await;
    }
    let jeonju_for_status = nodes[1].agent("jeonju/jobs", HttpVersion::Http1);
    for (id, _) in &back {
        wait_for_status_as(&jeonju_for_status, id, |s| s["state"] == "delivered").await;
    }

    // Phase 2, April: restarted 36 days later.
    for n in &mut nodes {
        n.stop();
    }
    pin_clocks(&fed, &centers, PHASE_2);
    for n in &mut nodes {
        n.restart();
    }
    let suwon_employment = nodes[0].agent("suwon/employment", HttpVersion::Http1);
    send(
        &fed,
        &suwon_employment,
        ("suwon/employment", "suwon/welfare", "cns-stats-a"),
        "sw-april",
        5,
    )
    .await;
    // suwon/welfare pulls everything (7 + 5 from suwon/employment, 3 from jeonju/jobs).
    let suwon_welfare = nodes[0].agent("suwon/welfare", HttpVersion::Http1);
    let mut pulled = 0;
    while pulled < 15 {
        let got = pull(&suwon_welfare, "max=50").await;
        assert!(!got.is_empty(), "only {pulled} of 15 messages came");
        pulled += got.len();
    }
    // jeonju/welfare pulls the 6 from suwon.
    let jeonju_welfare = nodes[1].agent("jeonju/welfare", HttpVersion::Http1);
    assert_eq!(pull(&jeonju_welfare, "max=50").await.len(), 6);
    // Statuses: suwon/welfare answers the March referrals.
    let reply = "cns-reply-s".to_owned();
    let plan: [&[(&str, i64)]; 7] = [
        &[("accepted", 1), ("completed", 10)],
        &[("accepted", 1), ("completed", 10)],
        &[("accepted", 1), ("completed", 10)],
        &[("accepted", 2)],
        &[("accepted", 2)],
        &[("declined", 1)],
        &[],
    ];
    for ((id, at), steps) in within.iter().zip(plan) {
        for (status, days) in steps {
            let body = status_of(
                &fed,
                &format!("st-{id}-{status}"),
                (id, "suwon/employment", "suwon/welfare", at),
                status,
                *days,
                &reply,
            );
            push_accepted(&suwon_welfare, &body).await;
        }
    }
    // jeonju/welfare accepts the 6 from suwon, three days after each.
    let reply_remote = "cns-reply-j".to_owned();
    for (id, at) in &across {
        let body = status_of(
            &fed,
            &format!("st-{id}"),
            (id, "suwon/employment", "jeonju/welfare", at),
            "accepted",
            3,
            &reply_remote,
        );
        push_accepted(&jeonju_welfare, &body).await;
    }
    // ... and suwon hears of their first pulls at jeonju (reported back, signed).
    for (id, _) in &across {
        wait_for_status_as(&suwon_employment, id, |s| {
            s["lifecycle"]["status"] == "accepted" && s["first_pulled_at"].is_string()
        })
        .await;
    }

    // suwon's own view. A status's lifecycle is readable from the store a moment before
    // its group is durable and the statistics are published with it, so the test waits
    // for the last of them to be counted (their acceptances, their first pulls).
    let manager = nodes[0].agent("suwon/manager", HttpVersion::Http1);
    let s = stats_once(&manager, RANGE, |s| {
        let row = |table: &str, from: &str, to: &str| {
            s[table]["rows"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["from"] == from && r["to"] == to))
                .cloned()
                .unwrap_or_default()
        };
        // Every message counted (a status with its outcome and time, in one write), and the
        // first pulls jeonju reported.
        let times = row("times", "suwon/employment", "jeonju/welfare");
        s["messages"]["total"] == 36 && times["first_pull"]["median_s"].is_u64()
    })
    .await;
    assert_eq!(s["scope"], "center");
    let labels: Vec<&str> = s["periods"]
        .as_array()
        .expect("periods")
        .iter()
        .map(|p| p["label"].as_str().expect("label"))
        .collect();
    assert_eq!(labels, ["2026-03", "2026-04"]);
    assert_eq!(
        keys(&s["messages"], &["from", "to", "type", "direction"]),
        [
            "jeonju/jobs|suwon/welfare|referral|received",
            "jeonju/welfare|suwon/employment|referral-status|received",
            "suwon/employment|jeonju/welfare|referral|sent",
            "suwon/employment|suwon/welfare|referral|within",
            "suwon/welfare|suwon/employment|referral-status|within",
        ]
    );
    let messages = Published::of(&s["messages"]);
    assert_true_or_hidden(
        "suwon messages",
        &messages,
        &[vec![3, 0], vec![0, 6], vec![6, 0], vec![7, 5], vec![0, 9]],
    );
    // By hand: 3 is hidden with the cheapest rectangle through it, suwon → jeonju's 6.
    assert_eq!(s["messages"]["rows"][0]["counts"], json!([null, 0]));
    assert_eq!(s["messages"]["rows"][2]["counts"], json!([null, 0]));
    assert_eq!(s["messages"]["totals"], json!([16, 20]));
    assert_eq!(
        keys(&s["outcomes"], &["from", "to", "direction"]),
        [
            "jeonju/jobs|suwon/welfare|received",
            "suwon/employment|jeonju/welfare|sent",
            "suwon/employment|suwon/welfare|within",
        ]
    );
    let outcomes = Published::of(&s["outcomes"]);
    assert_true_or_hidden(
        "suwon outcomes",
        &outcomes,
        &outcome_truth(
            &s["outcomes"]["columns"],
            &[
                &[("no-answer", 3)],
                &[("accepted", 6)],
                &[
                    ("no-answer", 6),
                    ("accepted", 2),
                    ("declined", 1),
                    ("completed:employed", 3),
                ],
            ],
        ),
    );
    // The outcomes' row totals are the messages' referral row totals: one number each.
    let (m_total, o_total) = (
        2,
        s["outcomes"]["columns"].as_array().expect("columns").len(),
    );
    let links = [
        ((0, 0, m_total), (1, 0, o_total)),
        ((0, 2, m_total), (1, 1, o_total)),
        ((0, 3, m_total), (1, 2, o_total)),
    ];
    assert_no_hidden_cell_is_determined(&[messages, outcomes], &links);

    let times_rows = &s["times"]["rows"];
    assert_eq!(
        keys(&s["times"], &["from", "to"]),
        [
            "jeonju/jobs|suwon/welfare",
            "suwon/employment|jeonju/welfare",
            "suwon/employment|suwon/welfare"
        ]
    );
    let within_times = &times_rows[2];
    assert_eq!(
        times(within_times, "first_pull"),
        (json!(3_110_000), json!(3_110_000)),
        "12 pulls: 7 after 36 days, 5 at once"
    );
    assert_eq!(
        times(within_times, "acceptance"),
        (json!(86_400), json!(172_800)),
        "1, 1, 1, 2, 2 days"
    );
    assert_eq!(
        times(within_times, "completion"),
        (json!(null), json!(null)),
        "3 completions"
    );
    assert_eq!(
        times(&times_rows[0], "first_pull"),
        (json!(null), json!(null)),
        "3 pulls"
    );
    assert_eq!(
        times(&times_rows[1], "acceptance"),
        (json!(259_200), json!(259_200)),
        "6 after 3 days"
    );
    assert_eq!(
        times(&times_rows[1], "first_pull"),
        (json!(3_110_000), json!(3_110_000)),
        "6 pulled at jeonju 36 days later, as jeonju reported"
    );

    let dist = Published::of(&s["acceptance_distribution"]);
    assert_true_or_hidden(
        "suwon acceptance",
        &dist,
        &[vec![0, 0, 0, 6, 0, 0], vec![0, 0, 5, 0, 0, 0]],
    );
    assert_no_hidden_cell_is_determined(&[dist], &[]);

    let refusals = Published::of(&s["refusals"]);
    let mut want = [
        (wrong_recipient.clone(), vec![2, 0]),
        (no_consent.clone(), vec![6, 0]),
    ];
    want.sort();
    assert_eq!(
        keys(&s["refusals"], &["reason"]),
        want.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>()
    );
    assert_true_or_hidden(
        "suwon refusals",
        &refusals,
        &want.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    );
    assert_no_hidden_cell_is_determined(&[refusals], &[]);
    assert_eq!(
        s["withdrawals"],
        json!({"counts": [null, 0], "total": null})
    );
    assert_eq!(s["centers"].as_array().expect("centers").len(), 1);

    // jeonju's own view: what it received from suwon and sent to it.
    let jeonju_manager = nodes[1].agent("jeonju/manager", HttpVersion::Http1);
    let j = stats(&jeonju_manager, RANGE).await;
    assert_eq!(
        keys(&j["messages"], &["from", "to", "type", "direction"]),
        [
            "jeonju/jobs|suwon/welfare|referral|sent",
            "jeonju/welfare|suwon/employment|referral-status|sent",
            "suwon/employment|jeonju/welfare|referral|received",
        ]
    );
    let jm = Published::of(&j["messages"]);
    assert_true_or_hidden(
        "jeonju messages",
        &jm,
        &[vec![3, 0], vec![0, 6], vec![6, 0]],
    );
    let jo = Published::of(&j["outcomes"]);
    assert_true_or_hidden(
        "jeonju outcomes",
        &jo,
        &outcome_truth(
            &j["outcomes"]["columns"],
            &[&[("no-answer", 3)], &[("accepted", 6)]],
        ),
    );
    assert_no_hidden_cell_is_determined(
        &[jm, jo],
        &[((0, 0, 2), (1, 0, o_total)), ((0, 2, 2), (1, 1, o_total))],
    );

    // The federation, asked at suwon: each message counted once, by its sender's node.
    let f = stats(&manager, &format!("{RANGE}&scope=federation")).await;
    assert_eq!(f["scope"], "federation");
    let answered: Vec<&str> = f["centers"]
        .as_array()
        .expect("centers")
        .iter()
        .map(|c| {
            assert!(c["answered_at"].is_string(), "{c}");
            c["center"].as_str().expect("center")
        })
        .collect();
    assert_eq!(answered, ["suwon", "gangseo", "jeonju"]);
    assert_eq!(
        keys(&f["messages"], &["from", "to", "type", "direction"]),
        [
            "gangseo/employment|gangseo/finance|referral|within",
            "jeonju/jobs|suwon/welfare|referral|received",
            "jeonju/welfare|suwon/employment|referral-status|received",
            "suwon/employment|jeonju/welfare|referral|sent",
            "suwon/employment|suwon/welfare|referral|within",
            "suwon/welfare|suwon/employment|referral-status|within",
        ]
    );
    let fm = Published::of(&f["messages"]);
    assert_true_or_hidden(
        "federation messages",
        &fm,
        &[
            vec![2, 0],
            vec![3, 0],
            vec![0, 6],
            vec![6, 0],
            vec![7, 5],
            vec![0, 9],
        ],
    );
    let fo = Published::of(&f["outcomes"]);
    assert_true_or_hidden(
        "federation outcomes",
        &fo,
        &outcome_truth(
            &f["outcomes"]["columns"],
            &[
                &[("no-answer", 2)],
                &[("no-answer", 3)],
                &[("accepted", 6)],
                &[
                    ("no-answer", 6),
                    ("accepted", 2),
                    ("declined", 1),
                    ("completed:employed", 3),
                ],
            ],
        ),
    );
    assert_no_hidden_cell_is_determined(
        &[fm, fo],
        &[
            ((0, 0, 2), (1, 0, o_total)),
            ((0, 1, 2), (1, 1, o_total)),
            ((0, 3, 2), (1, 2, o_total)),
            ((0, 4, 2), (1, 3, o_total)),
        ],
    );
    let fr = Published::of(&f["refusals"]);
    assert_true_or_hidden(
        "federation refusals",
        &fr,
        &want.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    );
    assert_eq!(
        f["withdrawals"],
        json!({"counts": [null, 0], "total": null})
    );
    // The times across the federation: each referral measured once, at its sender's node
    // (jeonju's 3 were pulled at suwon, as suwon reported back to jeonju).
    assert_eq!(
        keys(&f["times"], &["from", "to"]),
        [
            "jeonju/jobs|suwon/welfare",
            "suwon/employment|jeonju/welfare",
            "suwon/employment|suwon/welfare"
        ]
    );
    let ft = &f["times"]["rows"];
    let null = (json!(null), json!(null));
    let days_36 = (json!(3_110_000), json!(3_110_000));
    assert_eq!(times(&ft[0], "first_pull"), null, "3 pulls");
    assert_eq!(times(&ft[0], "acceptance"), null);
    assert_eq!(times(&ft[1], "first_pull"), days_36);
    assert_eq!(
        times(&ft[1], "acceptance"),
        (json!(259_200), json!(259_200))
    );
    assert_eq!(times(&ft[1], "completion"), null);
    assert_eq!(times(&ft[2], "first_pull"), days_36);
    assert_eq!(times(&ft[2], "acceptance"), (json!(86_400), json!(172_800)));
    assert_eq!(times(&ft[2], "completion"), null, "3 completions");
    let fd = Published::of(&f["acceptance_distribution"]);
    assert_true_or_hidden(
        "federation acceptance",
        &fd,
        &[vec![0, 0, 0, 6, 0, 0], vec![0, 0, 5, 0, 0, 0]],
    );
    assert_no_hidden_cell_is_determined(&[fd], &[]);

    // gangseo's own view: two referrals within it, every count of them hidden.
    let gangseo_manager = nodes[2].agent("gangseo/manager", HttpVersion::Http1);
    let g = stats(&gangseo_manager, RANGE).await;
    assert_eq!(
        keys(&g["messages"], &["from", "to", "type", "direction"]),
        ["gangseo/employment|gangseo/finance|referral|within"]
    );
    let gm = Published::of(&g["messages"]);
    assert_true_or_hidden("gangseo messages", &gm, &[vec![2, 0]]);
    let go = Published::of(&g["outcomes"]);
    assert_true_or_hidden(
        "gangseo outcomes",
        &go,
        &outcome_truth(&g["outcomes"]["columns"], &[&[("no-answer", 2)]]),
    );
    assert_no_hidden_cell_is_determined(&[gm, go], &[((0, 0, 2), (1, 0, o_total))]);
    assert_eq!(g["times"]["rows"], json!([]));
    assert_eq!(g["refusals"]["rows"], json!([]));
    assert_eq!(g["withdrawals"], json!({"counts": [0, 0], "total": 0}));

    // A center that does not answer is named, and the rest is shown.
    nodes[2].stop();
    let partial = stats(&manager, &format!("{RANGE}&scope=federation")).await;
    let gangseo_entry = &partial["centers"].as_array().expect("centers")[1];
    assert_eq!(gangseo_entry["center"], "gangseo");
    assert!(gangseo_entry["error"].is_string(), "{gangseo_entry}");
    assert_eq!(keys(&partial["messages"], &["from"]).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_and_officers_see_statistics_and_nobody_else_does() {
    let (fed, nodes) = quick_federation(&["suwon", "gangseo"], &["suwon", "gangseo"]);
    let node = &nodes[0];
    let manager = node.agent("suwon/manager", HttpVersion::Http1);
    let officer = node.agent("suwon/privacy-officer", HttpVersion::Http1);
    let agency = node.agent("suwon/employment", HttpVersion::Http1);
    stats(&manager, "by=day&from=2026-01-01&to=2026-01-31").await;
    stats(&officer, "").await;
    // A manager sees statistics only.
    let r = manager.get("/v1/privacy/consents").await.expect("response");
    assert_problem(&r, 403, "wrong-role");
    let r = manager.get("/v1/stats").await.expect("response");
    assert_eq!(
        r.headers
            .get("cache-control")
            .map(|v| v.to_str().unwrap_or("")),
        Some("no-store")
    );
    // The console is theirs too, and says whose it is (the page shows its views by it).
    let role = |r: &plusgate::node::client::Response| {
        r.headers
            .get("plusgate-role")
            .map(|v| v.to_str().unwrap_or("").to_owned())
    };
    let r = manager.get("/console/").await.expect("response");
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(role(&r).as_deref(), Some("manager"));
    let r = officer.get("/console/labels.json").await.expect("response");
    assert_eq!(role(&r).as_deref(), Some("officer"));
    // Agencies, other centers' managers and nodes do not.
    assert_problem(
        &agency.get("/v1/stats").await.expect("response"),
        403,
        "wrong-role",
    );
    let elsewhere = node.agent("gangseo/manager", HttpVersion::Http1);
    assert_problem(
        &elsewhere.get("/v1/stats").await.expect("response"),
        403,
        "unknown-identity",
    );
    let peer = node.agent_as(Some(&fed.node_identity("gangseo")), HttpVersion::Http1);
    assert_problem(
        &peer.get("/v1/stats").await.expect("response"),
        403,
        "wrong-role",
    );
    assert_problem(
        &agency.get("/federation/v1/stats").await.expect("response"),
        403,
        "wrong-role",
    );
    // The federation endpoint answers a peer node, signed.
    let signed: Value = peer
        .get("/federation/v1/stats?from=2026-01-01&to=2026-01-31&by=week")
        .await
        .expect("response")
        .json()
        .expect("JSON");
    assert!(signed["signature"].is_string());
    assert_eq!(signed["statement"]["center"], "suwon");
    // Bad questions are named.
    for (query, names) in [
        ("from=2026-02-30", "from"),
        ("by=year", "by"),
        ("scope=everyone", "scope"),
        ("from=2020-01-01&to=2026-01-01&by=day", "periods"),
        ("subject=ps-1", "subject"),
    ] {
        let p = assert_problem(
            &manager
                .get(&format!("/v1/stats?{query}"))
                .await
                .expect("response"),
            400,
            "bad-request",
        );
        assert!(
            p["detail"].as_str().unwrap_or("").contains(names),
            "{query}: {p}"
        );
    }
    // The command line: the same numbers.
    let id = fed.identity("suwon/manager");
    let config = fed.config_path("suwon").display().to_string();
    let (cert, key) = (id.cert.display().to_string(), id.key.display().to_string());
    let done = crate::support::run_to_exit(
        &[
            "stats",
            "--config",
            &config,
            "--cert",
            &cert,
            "--key",
            &key,
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-28",
            "--format",
            "csv",
        ],
        fed.dir(),
        std::time::Duration::from_secs(30),
    );
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout
            .starts_with("\u{feff}table,from,to,type,direction,reason,column,value\r\n"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("withdrawals,*,*,*,*,*,2026-02,0\r\n"));
    let done = crate::support::run_to_exit(
        &[
            "stats", "--config", &config, "--cert", &cert, "--key", &key, "--by", "week",
        ],
        fed.dir(),
        std::time::Duration::from_secs(30),
    );
    let answer: Value = serde_json::from_str(&done.stdout).expect("JSON");
    assert_eq!(answer["by"], "week");
    let officer_only = crate::support::run_to_exit(
        &[
            "privacy", "consents", "--config", &config, "--cert", &cert, "--key", &key,
        ],
        fed.dir(),
        std::time::Duration::from_secs(30),
    );
    assert!(
        !officer_only.status.success(),
        "a manager cannot list consents"
    );
    // CSV: a byte-order mark, the header, a line per cell.
    let r = manager
        .get("/v1/stats?format=csv&from=2026-01-01&to=2026-02-28")
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 200);
    assert!(r
        .body
        .starts_with(b"\xef\xbb\xbftable,from,to,type,direction,reason,column,value\r\n"));
    assert!(
        r.text().contains("withdrawals,*,*,*,*,*,2026-02,0\r\n"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_numbers_survive_a_sigkill_exactly_as_answered_before_it() {
    let (fed, mut nodes) = quick_federation(&["suwon", "gangseo"], &["suwon"]);
    let node = &mut nodes[0];
    let employment = node.agent("suwon/employment", HttpVersion::Http1);
    let consent = fed.referral("x")["consent_id"]
        .as_str()
        .expect("consent")
        .to_owned();
    let mut sent = Vec::new();
    for i in 0..7 {
        let id = format!("kill-{i}");
        let body = referral_between(&fed, &id, "suwon/employment", "suwon/welfare", &consent);
        let accepted = push_accepted(&employment, &body).await;
        sent.push((id, accepted["accepted_at"].as_str().expect("at").to_owned()));
    }
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(pull(&welfare, "max=50").await.len(), 7);
    let reply = fed.example("consent-reply")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (id, at) in &sent[..6] {
        let body = status_of(
            &fed,
            &format!("st-{id}"),
            (id, "suwon/employment", "suwon/welfare", at),
            "accepted",
            1,
            &reply,
        );
        push_accepted(&welfare, &body).await;
    }
    let query = "by=day";
    let before = stats(&node.agent("suwon/manager", HttpVersion::Http1), query).await;
    node.kill_hard();
    node.restart();
    let after = stats(&node.agent("suwon/manager", HttpVersion::Http1), query).await;
    let strip = |mut v: Value| {
        v["generated_at"] = Value::Null;
        v["centers"] = Value::Null;
        v
    };
    assert_eq!(
        strip(before.clone()),
        strip(after),
        "the numbers changed across a SIGKILL"
    );
    // And they are the ones pushed: 7 referrals, 6 accepted a day after, 6 answers.
    let row = before["times"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["from"] == "suwon/employment" && r["to"] == "suwon/welfare")
        .cloned()
        .expect("the pair");
    assert_eq!(
        row["acceptance"],
        json!({"median_s": 86_400, "p90_s": 86_400})
    );
    assert!(row["first_pull"]["median_s"].is_u64(), "{row}");
    assert_eq!(before["messages"]["total"], json!(13));
}
