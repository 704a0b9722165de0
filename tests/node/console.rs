//! The privacy officer's web console in a real browser: headless Chromium (Debian's
//! `chromium`) driven by playwright-core (`tests/console/`), presenting the officer's client
//! certificate to a real node filled through the real API. The browser part is
//! `tests/console/console.mjs`; this test sets the scene and requires it to pass. It
//! includes an accessibility check (axe-core, through `@axe-core/playwright`) of every view
//! in both languages, which must find nothing.
//!
//! The node's clock is shifted to 23:30 UTC today, so what it records falls on the next
//! Asia/Seoul day: the console must show Seoul times and filter by Seoul days.
//!
//! Without Chromium, Node.js or `tests/console/node_modules` this test fails (never skips):
//! `.ci/test` installs them. `CONSOLE_SCREENSHOTS=DIR` keeps screenshots of each view there;
//! `CHROMIUM=PATH` uses another Chromium than `/usr/bin/chromium`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use plusgate::node::client::HttpVersion;
use serde_json::{json, Value};

use crate::support::{
    ack, consent_of, ids_of, pull, push_accepted, referral_between, register_consent,
    run_command_to_exit, with_id, Federation, Node,
};

/// The subject of the messages the statistics count, apart from the officer views'
/// subject so that their exact lists stay as they are.
const STATS_SUBJECT: &str = "ps-57a7500000000001";

/// Fills `node` (suwon) with what the statistics view shows, on top of the officer views'
/// scene: referrals from suwon/employment to welfare (6, all pulled, 5 taken on), jobs (7)
/// and saeil (2, a count the node must suppress, with a complement), and welfare's 5
/// answers. So the tables have published counts, suppressed ones and measured times.
async fn fill_statistics(fed: &Federation, node: &Node) {
    let employment = node.agent("suwon/employment", HttpVersion::Http2);
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    let of_subject = |mut body: Value| {
        body["subject"] = json!(STATS_SUBJECT);
        body
    };
    let mut reply = of_subject(fed.example("consent-reply"));
    reply["id"] = json!("cns-stats-reply");
    register_consent(&welfare, &reply).await;
    let mut sent = Vec::new();
    for (to, n) in [("suwon/welfare", 6), ("suwon/jobs", 7), ("suwon/saeil", 2)] {
        let agency = to.split('/').nth(1).expect("agency name");
        let consent_id = format!("cns-stats-{agency}");
        let consent = of_subject(consent_of(fed, &consent_id, "suwon/employment", &[to]));
        register_consent(&employment, &consent).await;
        for i in 1..=n {
            let id = format!("ref-stats-{agency}-{i}");
            let referral = referral_between(fed, &id, "suwon/employment", to, &consent_id);
            push_accepted(&employment, &of_subject(referral)).await;
            sent.push((to, id));
        }
    }
    let to_welfare: Vec<&str> = (sent.iter())
        .filter(|(to, _)| *to == "suwon/welfare")
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(ids_of(&pull(&welfare, "max=10").await), to_welfare);
    assert_eq!(ack(&welfare, &to_welfare).await.status.as_u16(), 200);
    for (i, referral_id) in to_welfare.iter().take(5).enumerate() {
        let mut answer = of_subject(with_id(
            fed.example("referral-status"),
            &format!("sts-stats-{i}"),
        ));
        answer["consent_id"] = json!("cns-stats-reply");
        answer["payload"]["referral_id"] = json!(referral_id);
        answer["payload"]["status"] = json!("accepted");
        let payload = answer["payload"].as_object_mut().expect("payload");
        payload.remove("outcome");
        push_accepted(&welfare, &answer).await;
    }
}

/// Longest the browser test may take (it bounds itself at 120 s).
const BROWSER_TEST_TIMEOUT: Duration = Duration::from_secs(180);

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Fails, saying what to run, unless the browser test can run.
fn require_browser_tooling(dir: &Path) {
    let hint = "run `.ci/test` once (it installs Debian's chromium and runs `npm ci --prefix \
                tests/console`), or do those two steps by hand";
    assert!(
        chromium().exists(),
        "{} is missing: the console test needs Chromium; {hint}",
        chromium().display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "`node` is not on PATH: the console test needs Node.js; {hint}"
    );
    for package in ["playwright-core", "@axe-core/playwright", "axe-core"] {
        assert!(
            dir.join("node_modules")
                .join(package)
                .join("package.json")
                .exists(),
            "{} has no node_modules/{package}; {hint}",
            dir.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_uses_the_console_in_a_real_browser_a_manager_its_statistics_and_an_agency_neither(
) {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    require_browser_tooling(&tests);
    let fed = Federation::new();
    // A checkpoint soon, so the audit view has one to show.
    fed.set_option("suwon", "federation", "checkpoint_every", "3");
    // Late on a UTC day: everything the node records is on the next day in Seoul.
    let now = time::OffsetDateTime::now_utc();
    let late = now.date().midnight().assume_utc() + time::Duration::minutes(23 * 60 + 30);
    fed.shift_clock("suwon", (late - now).whole_seconds());
    let node = fed.start_bare("suwon", "");

    let employment = node.agent("suwon/employment", HttpVersion::Http2);
    let consent = fed.example("consent");
    let mut withdrawn = consent.clone();
    withdrawn["id"] = json!("cns-console-withdrawn");
    for c in [&consent, &withdrawn] {
        let r = employment
            .post_json("/v1/consents", c)
            .await
            .expect("response");
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    }
    let reason = "<img src=x onerror=alert(document.domain)> 전화로 철회";
    let r = employment
        .post_json(
            "/v1/consents/cns-console-withdrawn/withdraw",
            &json!({ "reason": reason }),
        )
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());

    let ids = ["ref-console-1", "ref-console-2"];
    let mut subject = String::new();
    for id in ids {
        let referral = fed.referral(id);
        subject = referral["subject"].as_str().expect("subject").to_owned();
        push_accepted(&employment, &referral).await;
    }
    assert_eq!(subject, consent["subject"].as_str().expect("subject"));
    let welfare = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(ids_of(&pull(&welfare, "max=10").await), ids);
    assert_eq!(ack(&welfare, &ids).await.status.as_u16(), 200);
    // One refused: it cites the withdrawn consent (the refusals view translates why).
    let mut refused = fed.referral("ref-console-refused");
    refused["consent_id"] = json!("cns-console-withdrawn");
    let r = employment
        .post_json("/v1/messages", &refused)
        .await
        .expect("response");
    assert_eq!(r.status.as_u16(), 403, "{}", r.text());
    assert!(r.text().contains("consent-withdrawn"), "{}", r.text());
    fill_statistics(&fed, &node).await;

    let officer = fed.identity("suwon/privacy-officer");
    let agency = fed.identity("suwon/welfare");
    let manager = fed.identity("suwon/manager");
    let shots = std::env::var_os("CONSOLE_SCREENSHOTS")
        .map_or_else(|| fed.scratch("screenshots"), PathBuf::from);
    let mut command = Command::new("node");
    command
        .arg(tests.join("console.mjs"))
        .current_dir(&tests)
        .env("PLUSGATE_URL", format!("https://{}", node.addr()))
        .env("OFFICER_CERT", &officer.cert)
        .env("OFFICER_KEY", &officer.key)
        .env("AGENCY_CERT", &agency.cert)
        .env("AGENCY_KEY", &agency.key)
        .env("MANAGER_CERT", &manager.cert)
        .env("MANAGER_KEY", &manager.key)
        .env("SUBJECT", &subject)
        .env("CONSENT_ID", consent["id"].as_str().expect("id"))
        .env("WITHDRAWN_ID", "cns-console-withdrawn")
        .env("MESSAGE_IDS", ids.join(","))
        .env("REFUSED_ID", "ref-console-refused")
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", chromium());
    let done = run_command_to_exit(command, BROWSER_TEST_TIMEOUT);
    // Each check the browser part passed (shown with `--nocapture`).
    println!("{}", done.stdout);
    assert!(
        done.status.success() && done.stdout.contains("console test passed"),
        "the browser test failed ({}):\n{}\n{}\nnode log:\n{}",
        done.status,
        done.stdout,
        done.stderr,
        node.log()
    );
}
